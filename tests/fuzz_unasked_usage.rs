//! Property tests of the filter that keeps an unasked-for usage chunk from a Chat
//! client: any bytes, split anywhere, never panic and come out the same however they
//! are split; a stream of events loses exactly its usage-only chunks, every other byte
//! passing in order.

#[path = "common/proptest_config.rs"]
mod proptest_config;
#[path = "common/split_at_cuts.rs"]
mod split_at_cuts;

use aurora::translate::unasked_usage::UnaskedUsageFilter;
use bytes::Bytes;
use proptest::prelude::*;
use proptest_config::config;
use split_at_cuts::split;

/// What the filter lets through of `pieces`, handed over in turn as the translation
/// module hands them (`pass`, which copies only what it must), then finished.
fn filtered(pieces: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut f = UnaskedUsageFilter::default();
    let mut out = Vec::new();
    for piece in pieces {
        out.extend_from_slice(&f.pass(Bytes::copy_from_slice(piece.as_ref())));
    }
    f.finish(&mut out);
    out
}

/// The same, every piece copied (`push`).
fn pushed(pieces: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut f = UnaskedUsageFilter::default();
    let mut out = Vec::new();
    for piece in pieces {
        f.push(piece.as_ref(), &mut out);
    }
    f.finish(&mut out);
    out
}

/// Bytes that look like a Chat stream: chunk and usage fragments, line endings of
/// every kind, and arbitrary bytes between them.
fn stream_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(br#"{"choices":[],"usage":{"total_tokens":3}}"#.to_vec()),
        Just(br#"{"choices":[{"index":0}],"usage":null}"#.to_vec()),
        Just(br#""choices" : [ ]"#.to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

/// One event of a Chat stream, and whether it is the usage-only chunk.
fn event(ending: &'static str) -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        "[a-z ]{0,40}".prop_map(move |text| (
            format!(
                r#"data: {{"choices":[{{"index":0,"delta":{{"content":"{text}"}}}}],"usage":null}}{ending}{ending}"#
            ),
            false
        )),
        (0u64..1_000_000).prop_map(move |n| (
            format!(r#"data: {{"choices":[],"usage":{{"total_tokens":{n}}}}}{ending}{ending}"#),
            true
        )),
        Just((format!(": keep-alive{ending}{ending}"), false)),
        Just((format!("data: [DONE]{ending}{ending}"), false)),
    ]
}

/// A stream of events with one kind of line ending throughout.
fn chat_stream() -> impl Strategy<Value = Vec<(String, bool)>> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
        .prop_flat_map(|ending| prop::collection::vec(event(ending), 0..12))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bytes_come_out_the_same_however_they_are_split(
        bytes in stream_like_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = filtered(std::slice::from_ref(&bytes));
        let pieces = split(&bytes, &cuts);
        prop_assert_eq!(filtered(&pieces), whole.clone());
        prop_assert_eq!(pushed(&pieces), whole);
    }

    #[test]
    fn a_stream_loses_exactly_its_usage_chunks(
        events in chat_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream: String = events.iter().map(|(e, _)| e.as_str()).collect();
        let kept: String = events
            .iter()
            .filter(|(_, usage)| !usage)
            .map(|(e, _)| e.as_str())
            .collect();
        prop_assert_eq!(filtered(&split(stream.as_bytes(), &cuts)), kept.as_bytes());
    }
}
