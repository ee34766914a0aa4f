//! Property tests of both stream translators: any input never panics and
//! always ends the client's stream one way (end marker or error, nothing
//! after it), and a recorded provider stream gives the same output however
//! it is split, its keep-alives passed on one for each.

#[path = "common/proptest_config.rs"]
mod proptest_config;
#[path = "common/split_at_cuts.rs"]
mod split_at_cuts;

use aurora::translate::sse::SseParser;
use aurora::translate::{
    AnthropicToOpenAiStream, MessageOptions, OpenAiToAnthropicStream, StreamOptions,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest_config::config;
use serde_json::Value;
use split_at_cuts::split;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const ANTHROPIC_STREAMS: [&str; 1] = ["anthropic/messages_stream.txt"];
const OPENAI_STREAMS: [&str; 4] = [
    "openai/chat_completion_stream.txt",
    "groq/chat_completion_stream.txt",
    "xai/chat_completion_stream.txt",
    "gemini/chat_completion_stream.txt",
];

/// What a translator did with one input.
struct Run {
    out: Vec<u8>,
    done: bool,
    failed: bool,
}

fn anthropic_to_openai(pieces: &[&[u8]]) -> Run {
    let mut t = AnthropicToOpenAiStream::new(StreamOptions {
        model: "claude-sonnet-4-5".into(),
        created: 1_700_000_000,
        include_usage: true,
    });
    let mut out = Vec::new();
    for p in pieces {
        t.push(p, &mut out);
    }
    t.finish(&mut out);
    Run {
        out,
        done: t.is_done(),
        failed: t.is_failed(),
    }
}

fn openai_to_anthropic(pieces: &[&[u8]]) -> Run {
    let mut t = OpenAiToAnthropicStream::new(MessageOptions {
        model: "gpt-4o-mini".into(),
    });
    let mut out = Vec::new();
    for p in pieces {
        t.push(p, &mut out);
    }
    t.finish(&mut out);
    Run {
        out,
        done: t.is_done(),
        failed: t.is_failed(),
    }
}

/// Output events as (event name, data).
fn events(out: &[u8]) -> Vec<(Option<String>, String)> {
    let mut p = SseParser::new();
    p.feed(out);
    p.finish();
    let mut v = Vec::new();
    while let Some(e) = p.next_event() {
        v.push((e.event, e.data));
    }
    v
}

/// OpenAI clients get JSON chunks, then either `[DONE]` or one error chunk last.
fn check_openai_output(run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(
        run.done != run.failed,
        "done {} failed {}",
        run.done,
        run.failed
    );
    let evs = events(&run.out);
    let last = evs.len().saturating_sub(1);
    for (i, (name, data)) in evs.iter().enumerate() {
        prop_assert_eq!(name, &None);
        if data == "[DONE]" {
            prop_assert!(run.done && i == last);
            continue;
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if v.get("error").is_some() {
            prop_assert!(run.failed && i == last, "error chunk not last: {}", data);
        }
    }
    if run.failed {
        prop_assert!(evs.last().is_some_and(|(_, d)| d.contains("\"error\"")));
    } else {
        prop_assert!(evs.last().is_some_and(|(_, d)| d == "[DONE]"));
    }
    Ok(())
}

/// Anthropic clients get named JSON events whose `type` is the name, then
/// either `message_stop` or one `error` last.
fn check_anthropic_output(run: &Run) -> Result<(), TestCaseError> {
    prop_assert!(
        run.done != run.failed,
        "done {} failed {}",
        run.done,
        run.failed
    );
    let evs = events(&run.out);
    let last = evs.len().saturating_sub(1);
    for (i, (name, data)) in evs.iter().enumerate() {
        let name = name.as_deref().unwrap_or("");
        let v: Value =
            serde_json::from_str(data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(v["type"].as_str(), Some(name));
        if matches!(name, "error" | "message_stop") {
            prop_assert_eq!(i, last, "{} is not last", name);
        }
    }
    let last_name = evs.last().and_then(|(n, _)| n.as_deref());
    prop_assert_eq!(
        last_name,
        Some(if run.failed { "error" } else { "message_stop" })
    );
    Ok(())
}

/// The recorded stream's events, some dropped, repeated or reordered, with
/// some bytes changed: plausible and broken streams alike.
fn shuffled_stream(path: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let recorded = fixture(path);
    let events: Vec<String> = recorded
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect();
    (
        prop::collection::vec(select(events), 0..24),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(events, edits)| {
            let mut bytes = events.concat().into_bytes();
            for (at, byte) in edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            bytes
        })
}

/// The recorded stream with a provider's keep-alive comment before each event that
/// `before` picks (DeepSeek's, while a request queues), and how many were put in.
fn with_keep_alives(path: &str, before: &[prop::sample::Index]) -> (Vec<u8>, usize) {
    let recorded = fixture(path);
    let events: Vec<&str> = recorded.split_inclusive("\n\n").collect();
    let mut bytes = String::new();
    for (i, event) in events.iter().enumerate() {
        for _ in before.iter().filter(|b| b.index(events.len()) == i) {
            bytes.push_str(": keep-alive\n\n");
        }
        bytes.push_str(event);
    }
    (bytes.into_bytes(), before.len())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn keep_alives_pass_on_one_for_each_however_split(
        path in select(&OPENAI_STREAMS[..]),
        before in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        let (bytes, comments) = with_keep_alives(path, &before);
        let whole = openai_to_anthropic(&[&bytes]);
        prop_assert!(whole.done);
        let pings = events(&whole.out).iter().filter(|(n, _)| n.as_deref() == Some("ping")).count();
        prop_assert_eq!(pings, comments);
        prop_assert_eq!(openai_to_anthropic(&split(&bytes, &cuts)).out, whole.out);

        // Anthropic's own stream carries one ping; each becomes a comment too.
        let (bytes, comments) = with_keep_alives(ANTHROPIC_STREAMS[0], &before);
        let whole = anthropic_to_openai(&[&bytes]);
        prop_assert!(whole.done);
        let kept = whole.out.windows(14).filter(|w| w == b": keep-alive\n\n").count();
        prop_assert_eq!(kept, comments + 1);
        prop_assert_eq!(anthropic_to_openai(&split(&bytes, &cuts)).out, whole.out);
    }

    #[test]
    fn anthropic_stream_split_anywhere_translates_the_same(
        path in select(&ANTHROPIC_STREAMS[..]),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        let bytes = fixture(path).into_bytes();
        let whole = anthropic_to_openai(&[&bytes]);
        prop_assert!(whole.done);
        let pieces = split(&bytes, &cuts);
        prop_assert_eq!(anthropic_to_openai(&pieces).out, whole.out);
    }

    #[test]
    fn openai_stream_split_anywhere_translates_the_same(
        path in select(&OPENAI_STREAMS[..]),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        let bytes = fixture(path).into_bytes();
        let whole = openai_to_anthropic(&[&bytes]);
        prop_assert!(whole.done);
        let pieces = split(&bytes, &cuts);
        prop_assert_eq!(openai_to_anthropic(&pieces).out, whole.out);
    }

    #[test]
    fn any_bytes_end_an_openai_client_stream_once(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        check_openai_output(&anthropic_to_openai(&split(&bytes, &cuts)))?;
    }

    #[test]
    fn any_bytes_end_an_anthropic_client_stream_once(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        check_anthropic_output(&openai_to_anthropic(&split(&bytes, &cuts)))?;
    }

    #[test]
    fn reordered_anthropic_events_end_the_stream_once(
        bytes in shuffled_stream(ANTHROPIC_STREAMS[0]),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        check_openai_output(&anthropic_to_openai(&split(&bytes, &cuts)))?;
    }

    #[test]
    fn reordered_openai_chunks_end_the_stream_once(
        bytes in prop_oneof![
            shuffled_stream(OPENAI_STREAMS[0]),
            shuffled_stream(OPENAI_STREAMS[1]),
            shuffled_stream(OPENAI_STREAMS[2]),
            shuffled_stream(OPENAI_STREAMS[3]),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        check_anthropic_output(&openai_to_anthropic(&split(&bytes, &cuts)))?;
    }
}
