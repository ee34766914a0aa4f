//! A Chat Completions stream whose usage the gateway asked for
//! (`stream_options.include_usage`) where the client did not: the provider's last,
//! usage-only chunk (`"choices": []`) is kept from the client, which never asked for
//! it (code reading `choices[0]` of every chunk would fail on it); every other byte
//! passes as it came. The gateway has read the usage from the provider's bytes before
//! this point.
//!
//! Split anywhere: an event is judged once its blank line has arrived, and only the
//! bytes of the event still arriving are held. An event too large to be a usage chunk
//! is not held past [`MAX_HELD_BYTES`]: it passes on as it arrives.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The most of one event held for judging; a usage-only chunk is a few hundred bytes.
pub const MAX_HELD_BYTES: usize = 64 * 1024;

/// How many bytes of a passing event are kept to find its end across chunks: the
/// longest blank-line ending (`\r\n\r\n`) less one.
const TAIL: usize = 3;

/// Keeps the usage-only chunk of a Chat Completions stream from a client that did not
/// ask for it.
#[derive(Debug, Default)]
pub struct UnaskedUsageFilter {
    /// While judging: the start of an event whose blank line has not arrived. While
    /// passing: the last bytes of the passing event.
    held: Vec<u8>,
    /// An event too large to judge is passing on as it arrives.
    passing: bool,
}

impl UnaskedUsageFilter {
    /// What of `chunk` the client gets now. Nearly every chunk of a stream is whole
    /// events without the usage chunk, nothing held from before it: such a chunk is
    /// told apart in one search and passes on itself, its bytes not copied.
    pub fn pass(&mut self, chunk: Bytes) -> Bytes {
        if !self.passing
            && self.held.is_empty()
            && ends_an_event(&chunk)
            && !has_empty_choices(&chunk)
        {
            return chunk;
        }
        let mut out = Vec::with_capacity(chunk.len());
        self.push(&chunk, &mut out);
        Bytes::from(out)
    }

    /// Appends to `out` what of `chunk` the client gets now.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        if self.passing {
            match self.passing_end(rest) {
                Some(end) => {
                    out.extend_from_slice(&rest[..end]);
                    rest = &rest[end..];
                    self.passing = false;
                    self.held.clear();
                }
                None => {
                    out.extend_from_slice(rest);
                    self.keep_tail(rest);
                    return;
                }
            }
        }
        if self.held.is_empty() {
            let left = judge_events(rest, out);
            self.hold(&rest[left..], out);
            return;
        }
        // The held event's start was searched already: only its last bytes again.
        let searched = self.held.len().saturating_sub(TAIL);
        let mut held = std::mem::take(&mut self.held);
        held.extend_from_slice(rest);
        match event_end(&held[searched..]) {
            Some(len) => {
                let end = searched + len;
                if !is_usage_only(&held[..end]) {
                    out.extend_from_slice(&held[..end]);
                }
                let left = end + judge_events(&held[end..], out);
                self.hold(&held[left..], out);
            }
            // Still unfinished: kept as it is, unless it has grown too large to judge.
            None if held.len() <= MAX_HELD_BYTES => self.held = held,
            None => self.hold(&held, out),
        }
    }

    /// The stream ended: what is held is judged (an event may end without its blank
    /// line) and goes to `out` unless it is the usage chunk, or the start of one that
    /// broke off (an empty `choices` already in it; an SSE client drops an unfinished
    /// event anyway).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        let usage = is_usage_only(&held) || (has_empty_choices(&held) && is_cut_short(&held));
        if !self.passing && !usage {
            out.extend_from_slice(&held);
        }
        self.passing = false;
    }

    /// Holds `unfinished`, the start of an event, for judging; too large an event
    /// passes on instead.
    fn hold(&mut self, unfinished: &[u8], out: &mut Vec<u8>) {
        if unfinished.len() > MAX_HELD_BYTES {
            out.extend_from_slice(unfinished);
            self.passing = true;
            self.keep_tail(unfinished);
        } else {
            self.held.extend_from_slice(unfinished);
        }
    }

    /// Where in `chunk` the passing event ends (past its blank line), if it does: found
    /// with the event's last bytes before it, since a blank line may be split.
    fn passing_end(&self, chunk: &[u8]) -> Option<usize> {
        let mut joined = Vec::with_capacity(self.held.len() + chunk.len().min(TAIL + 1));
        joined.extend_from_slice(&self.held);
        // A blank line ending in `chunk` past its first bytes is found there alone.
        let head = &chunk[..chunk.len().min(TAIL + 1)];
        joined.extend_from_slice(head);
        if let Some(end) = event_end(&joined) {
            return Some(end.saturating_sub(self.held.len()));
        }
        event_end(chunk)
    }

    /// Keeps the last bytes of the passing event, `more` being its latest.
    fn keep_tail(&mut self, more: &[u8]) {
        self.held.extend_from_slice(more);
        let excess = self.held.len().saturating_sub(TAIL);
        self.held.drain(..excess);
    }
}

/// Appends to `out` every complete event of `buf` but a usage-only chunk; returns
/// where the unfinished rest begins.
fn judge_events(buf: &[u8], out: &mut Vec<u8>) -> usize {
    let mut start = 0;
    // Events that pass are written in runs, not one by one.
    let mut run = 0;
    while let Some(len) = event_end(&buf[start..]) {
        let end = start + len;
        if is_usage_only(&buf[start..end]) {
            out.extend_from_slice(&buf[run..start]);
            run = end;
        }
        start = end;
    }
    out.extend_from_slice(&buf[run..start]);
    start
}

/// The end of the first event of `buf`, just past the blank line that ends it, once
/// that has arrived (`\n`, `\r\n` and `\r` line endings).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        at += memchr::memchr2(b'\n', b'\r', buf.get(at..)?)?;
        // Past the line ending found; a lone `\r` at the end may yet be `\r\n`.
        let line_end = match (buf[at], buf.get(at + 1)) {
            (b'\r', Some(b'\n')) => at + 2,
            (b'\r', None) => return None,
            _ => at + 1,
        };
        // A line ending right after it ends an empty line: the event's end.
        match (buf.get(line_end), buf.get(line_end + 1)) {
            (Some(b'\n'), _) => return Some(line_end + 1),
            (Some(b'\r'), Some(b'\n')) => return Some(line_end + 2),
            (Some(b'\r'), Some(_)) => return Some(line_end + 1),
            (Some(b'\r'), None) | (None, _) => return None,
            (Some(_), _) => at = line_end,
        }
    }
}

/// Whether `buf` ends where an event ends, as [`event_end`] reads it: with a blank
/// line (`\n\n` or `\r\n\r\n`) after a byte that ends no line, so that no earlier
/// event's end can have taken its first line ending.
fn ends_an_event(buf: &[u8]) -> bool {
    let before = |ending: &[u8]| {
        buf.strip_suffix(ending)
            .and_then(|rest| rest.last())
            .is_some_and(|b| !matches!(b, b'\n' | b'\r'))
    };
    before(b"\n\n") || before(b"\r\n\r\n")
}

/// Whether `event` is a Chat chunk with an empty `choices` and a `usage`: the chunk
/// `stream_options.include_usage` adds at a stream's end.
fn is_usage_only(event: &[u8]) -> bool {
    // Most chunks have a choice: told apart without parsing them.
    if !has_empty_choices(event) {
        return false;
    }
    let Some(data) = data_of(event) else {
        return false;
    };
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow, default)]
        choices: Option<Vec<&'a RawValue>>,
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Chunk<'_>>(&data)
        .is_ok_and(|c| c.choices.is_some_and(|c| c.is_empty()) && c.usage.is_some())
}

/// Whether the data of `event` is not whole JSON (the stream broke off in it).
fn is_cut_short(event: &[u8]) -> bool {
    data_of(event)
        .is_some_and(|data| serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_err())
}

/// The member name a usage-only chunk's empty array follows.
const CHOICES: &[u8] = b"\"choices\"";

/// Whether `event` (or any bytes) has `"choices"` followed by an empty array. Read
/// back from each `]`: an event has one or two, where it has several `"choices"`
/// keys' worth of bytes to search.
fn has_empty_choices(event: &[u8]) -> bool {
    // Where the last byte before `end` that is not JSON whitespace is.
    let before = |end: usize| {
        event[..end]
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    };
    memchr::memchr_iter(b']', event).any(|close| {
        let Some(open) = before(close).filter(|&at| event[at] == b'[') else {
            return false;
        };
        let Some(colon) = before(open).filter(|&at| event[at] == b':') else {
            return false;
        };
        before(colon).is_some_and(|name_end| event[..=name_end].ends_with(CHOICES))
    })
}

/// The `data:` lines of `event`, joined with `\n` (borrowed when there is one).
fn data_of(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n' || b == b'\r')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = first.to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.push(b'\n');
        joined.extend_from_slice(line);
    }
    Some(Cow::Owned(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const LAST: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn filtered(pieces: &[&[u8]]) -> Vec<u8> {
        let mut f = UnaskedUsageFilter::default();
        let mut out = Vec::new();
        for piece in pieces {
            f.push(piece, &mut out);
        }
        f.finish(&mut out);
        out
    }

    #[test]
    fn chunks_of_whole_events_without_the_usage_chunk_pass_uncopied() {
        let mut f = UnaskedUsageFilter::default();
        let whole = Bytes::from([CHUNK, LAST].concat());
        let at = whole.as_ptr();
        let passed = f.pass(whole);
        assert_eq!(passed.as_ptr(), at, "the same bytes");
        assert_eq!(&passed[..], [CHUNK, LAST].concat().as_bytes());
        let crlf = Bytes::from(CHUNK.replace('\n', "\r\n"));
        let at = crlf.as_ptr();
        assert_eq!(f.pass(crlf).as_ptr(), at);
        // An unfinished event is held; what came before it passes.
        let split = Bytes::from([CHUNK, &USAGE[..20]].concat());
        assert_eq!(&f.pass(split)[..], CHUNK.as_bytes());
        // The usage chunk is still found across the cut, and dropped.
        let rest = Bytes::from([&USAGE[20..], DONE].concat());
        assert_eq!(&f.pass(rest)[..], DONE.as_bytes());
    }

    #[test]
    fn a_usage_chunk_cut_short_at_the_stream_end_is_kept_back_too() {
        let cut = &USAGE[..USAGE.len() - 20];
        assert_eq!(
            filtered(&[CHUNK.as_bytes(), cut.as_bytes()]),
            CHUNK.as_bytes()
        );
        // Any other unfinished event at the end goes on as it came: one cut short, or
        // a whole one with an empty `choices` and no usage (Azure's prompt filters).
        let partial = &CHUNK[..40];
        let filters = "data: {\"choices\":[],\"prompt_filter_results\":[]}";
        for last in [partial, filters] {
            let both = [CHUNK, last].concat();
            assert_eq!(filtered(&[both.as_bytes()]), both.as_bytes(), "{last}");
        }
        let whole = [filters, "\n\n", CHUNK].concat();
        assert_eq!(filtered(&[whole.as_bytes()]), whole.as_bytes());
    }

    #[test]
    fn an_empty_choices_array_is_found_however_it_is_spaced() {
        for empty in [
            r#"{"choices":[]}"#,
            r#"{"choices" : [ ]}"#,
            "{\"choices\":\r\n\t[\n]}",
            r#"{"x":[1],"choices":[],"y":[]}"#,
            r#"{"choices":[{"a":[]}],"choices":[]}"#,
        ] {
            assert!(has_empty_choices(empty.as_bytes()), "{empty}");
        }
        for not in [
            r#"{"choices":[{"index":0}]}"#,
            r#"{"choices":[0]}"#,
            r#"{"x":[],"choices":null}"#,
            r#"{"choices":"[]"}"#,
            r#"{"not_choices":[]}"#,
            "]]",
            "[]",
            ":[]",
        ] {
            assert!(!has_empty_choices(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn an_event_ends_a_chunk_only_after_a_byte_that_ends_no_line() {
        for ends in ["a\n\n", "}\r\n\r\n", "data: x\n\n"] {
            assert!(ends_an_event(ends.as_bytes()), "{ends:?}");
            assert_eq!(event_end(ends.as_bytes()), Some(ends.len()), "{ends:?}");
        }
        for not in ["\n\n", "a\n\n\n", "a\r\r", "a\n\r\n", "a\n", ""] {
            assert!(!ends_an_event(not.as_bytes()), "{not:?}");
        }
    }

    #[test]
    fn the_usage_only_chunk_is_dropped_wherever_the_stream_is_split() {
        let stream = [CHUNK, LAST, USAGE, DONE].concat();
        let expected = [CHUNK, LAST, DONE].concat();
        let bytes = stream.as_bytes();
        assert_eq!(filtered(&[bytes]), expected.as_bytes());
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(filtered(&[a, b]), expected.as_bytes(), "split at {at}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(filtered(&bytewise), expected.as_bytes());
    }

    #[test]
    fn every_other_event_passes_byte_for_byte_as_soon_as_it_ends() {
        let mut f = UnaskedUsageFilter::default();
        let mut out = Vec::new();
        // A usage beside a choice (Groq's last chunk) is not the added chunk.
        let groq = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":3}}\n\n";
        let comment = ": keep-alive\n\n";
        let no_usage = "data: {\"choices\":[],\"usage\":null}\n\n";
        let stream = [CHUNK, groq, comment, no_usage].concat();
        f.push(stream.as_bytes(), &mut out);
        assert_eq!(out, stream.as_bytes());
        // Half an event waits for its end; nothing else does.
        f.push(&CHUNK.as_bytes()[..20], &mut out);
        assert_eq!(out.len(), stream.len());
        f.push(&CHUNK.as_bytes()[20..], &mut out);
        assert_eq!(out, [stream.as_str(), CHUNK].concat().as_bytes());
    }

    #[test]
    fn carriage_return_line_endings_and_pretty_json_are_read_too() {
        let usage = "data: {\"choices\" : [ ],\r\ndata: \"usage\": {\"total_tokens\": 11}}\r\n\r\n";
        let chunk = "data: {\"choices\":[{\"index\":0}]}\r\n\r\n";
        let stream = [chunk, usage, "data: [DONE]\r\n\r\n"].concat();
        assert_eq!(
            filtered(&[stream.as_bytes()]),
            [chunk, "data: [DONE]\r\n\r\n"].concat().as_bytes()
        );
        // A stream ending without the blank line after its usage chunk.
        let cut = [chunk, USAGE.trim_end()].concat();
        assert_eq!(filtered(&[cut.as_bytes()]), chunk.as_bytes());
    }

    #[test]
    fn an_event_too_large_to_be_the_usage_chunk_is_not_held() {
        let mut f = UnaskedUsageFilter::default();
        let mut out = Vec::new();
        let big = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}",
            "x".repeat(MAX_HELD_BYTES)
        );
        let (a, b) = big.as_bytes().split_at(MAX_HELD_BYTES + 10);
        f.push(a, &mut out);
        assert_eq!(out, a, "held past the limit");
        f.push(b, &mut out);
        assert_eq!(out, big.as_bytes());
        // Its blank line split across chunks still ends it: the next event is judged.
        f.push(b"\n", &mut out);
        f.push(
            [b"\n", USAGE.as_bytes(), CHUNK.as_bytes()]
                .concat()
                .as_slice(),
            &mut out,
        );
        f.finish(&mut out);
        assert_eq!(out, [big.as_str(), "\n\n", CHUNK].concat().as_bytes());
    }
}
