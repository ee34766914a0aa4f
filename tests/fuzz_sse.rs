//! Property tests of the incremental SSE parser: any bytes, split anywhere,
//! never panic, give the same events however they are split, and never make
//! the parser hold more than its limit. The parser keeping bytes gives the events
//! the text one gives, as they came.

#[path = "common/proptest_config.rs"]
mod proptest_config;
#[path = "common/split_at_cuts.rs"]
mod split_at_cuts;

use aurora::translate::sse::{SseByteParser, SseError, SseEvent, SseParser};
use proptest::prelude::*;
use proptest_config::config;
use split_at_cuts::split;

/// Bytes that look like an event stream: field names, line endings of every
/// kind, comments, a BOM, and arbitrary bytes between them.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: 1".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é😊".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

/// Events from feeding `pieces`, draining after each, then finishing.
fn parse(mut p: SseParser, pieces: &[impl AsRef<[u8]>]) -> (Vec<SseEvent>, Option<SseError>) {
    let mut events = Vec::new();
    for piece in pieces {
        p.feed(piece.as_ref());
        while let Some(e) = p.next_event() {
            events.push(e);
        }
    }
    p.finish();
    while let Some(e) = p.next_event() {
        events.push(e);
    }
    (events, p.error())
}

/// [`parse`] by the parser keeping bytes: each event's name and data as they came.
type ByteEvent = (Option<Vec<u8>>, Vec<u8>);
fn parse_bytes(pieces: &[impl AsRef<[u8]>]) -> (Vec<ByteEvent>, Option<SseError>) {
    let mut p = SseByteParser::default();
    let mut events = Vec::new();
    let mut take = |p: &mut SseByteParser| {
        while let Some(e) = p.next_event_bytes() {
            events.push((e.event.map(<[u8]>::to_vec), e.data.to_vec()));
        }
    };
    for piece in pieces {
        p.feed(piece.as_ref());
        take(&mut p);
    }
    p.finish();
    take(&mut p);
    (events, p.error())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_byte_parser_gives_the_text_parsers_events_as_they_came(
        bytes in sse_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (events, error) = parse_bytes(&split(&bytes, &cuts));
        prop_assert_eq!(&(events.clone(), error), &parse_bytes(std::slice::from_ref(&bytes)));
        // As text: the same events, each field its bytes read as UTF-8 (replaced
        // where they are not).
        let (texts, text_error) = parse(SseParser::new(), std::slice::from_ref(&bytes));
        let read = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let as_text: Vec<SseEvent> = events
            .iter()
            .map(|(name, data)| SseEvent { event: name.as_deref().map(read), data: read(data) })
            .collect();
        prop_assert_eq!(as_text, texts);
        // Alike only below the limit (16 MiB here), where replaced text cannot pass it.
        prop_assert_eq!(error, text_error);
    }

    #[test]
    fn splitting_the_input_does_not_change_the_events(
        bytes in sse_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = parse(SseParser::new(), std::slice::from_ref(&bytes));
        prop_assert_eq!(parse(SseParser::new(), &split(&bytes, &cuts)), whole);
    }

    #[test]
    fn any_bytes_one_at_a_time_parse_like_the_whole(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let whole = parse(SseParser::new(), std::slice::from_ref(&bytes));
        let single: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(parse(SseParser::new(), &single), whole);
    }

    #[test]
    fn the_parser_never_holds_more_than_its_limit(
        bytes in sse_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        limit in 8usize..64,
    ) {
        let mut p = SseParser::with_limit(limit);
        for piece in split(&bytes, &cuts) {
            p.feed(piece);
            while let Some(e) = p.next_event() {
                prop_assert!(e.data.len() <= limit);
            }
            match p.error() {
                Some(e) => {
                    prop_assert_eq!(e, SseError::EventTooLong { limit });
                    prop_assert_eq!(p.buffered_len(), 0);
                }
                None => prop_assert!(p.buffered_len() <= limit, "{} > {limit}", p.buffered_len()),
            }
        }
        p.finish();
        while let Some(e) = p.next_event() {
            prop_assert!(e.data.len() <= limit);
        }
        if p.error().is_some() {
            prop_assert_eq!(p.buffered_len(), 0);
        }
    }
}
