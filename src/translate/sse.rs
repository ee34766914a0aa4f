//! Incremental Server-Sent Events parsing and writing.
//!
//! The parser follows the WHATWG event-stream rules that matter for LLM
//! streams: `\n`, `\r\n` and `\r` line endings, comment lines starting with
//! `:` (skipped, or told as [`SseItem::Comment`] to a translator passing a provider's
//! keep-alives on), one optional space after the field colon, multiple `data:` lines
//! joined with `\n`, and events dispatched on a blank line. Input may be split
//! anywhere (inside a `\r\n` pair or a multi-byte UTF-8 character); only the
//! unfinished line is kept between calls. An event that never ends cannot
//! grow without bound: past [`MAX_PENDING_BYTES`] the parser stops with an
//! [`SseError`].
//!
//! An event's fields are kept as text ([`SseParser`], what the translators read:
//! invalid UTF-8 replaced) or as the bytes that came ([`SseByteParser`], what the
//! usage meter reads without checking each line's text).

use serde::Serialize;

/// One dispatched event, owning its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent or empty (the default "message").
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// One dispatched event, borrowing the parser's buffers (valid until the next
/// call on the parser). Lets hot paths avoid an allocation per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// The `event:` field; `None` when absent or empty.
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
}

impl SseEventRef<'_> {
    /// Copies the event into an owned [`SseEvent`].
    pub fn to_event(&self) -> SseEvent {
        SseEvent {
            event: self.event.map(str::to_owned),
            data: self.data.to_owned(),
        }
    }
}

/// What [`SseParser::next_item`] reads next: an event, or a comment line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// A dispatched event.
    Event(SseEventRef<'a>),
    /// A comment line (`: keep-alive`), which providers send to keep an idle
    /// stream open.
    Comment,
}

/// The keep-alive an OpenAI-format client gets for each of the provider's: a comment.
pub const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// Which `ping` events of the stream an OpenAI-format client is told of.
#[derive(Debug, Default, Clone, Copy)]
pub struct PingFilter {
    /// Anthropic's first ping is left out: Anthropic sends one as every stream
    /// begins (after its first block's start), which marks no wait. Passed on, it
    /// would put a comment in every stream, and some SSE readers (openai-go before
    /// its 2026 fix) end a stream at a comment. A chat server's comments, which its
    /// decoder makes pings, are waits every one.
    skip_first: bool,
    seen: bool,
}

impl PingFilter {
    /// All of Anthropic's pings but its first.
    pub fn anthropics() -> Self {
        Self {
            skip_first: true,
            seen: false,
        }
    }

    /// Whether the ping that came now is passed on.
    pub fn passes(&mut self) -> bool {
        let first = !std::mem::replace(&mut self.seen, true);
        !(first && self.skip_first)
    }
}

/// The keep-alive an Anthropic-format client gets for each of the provider's:
/// Anthropic's own `ping` event.
pub const PING_EVENT: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The most bytes the parser holds for one event still being received: its
/// unfinished line plus the data lines already read. Real events are a few
/// KiB; a provider sending more without ending the event is broken.
pub const MAX_PENDING_BYTES: usize = 16 << 20;

/// Why the parser stopped reading its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event (or a single line) grew past the limit without ending.
    #[error("an SSE event grew past {limit} bytes without ending")]
    EventTooLong {
        /// The limit in bytes, [`MAX_PENDING_BYTES`] unless set otherwise.
        limit: usize,
    },
}

/// The two ways an event's fields are kept, [`String`] and [`Vec<u8>`]: no other.
mod sealed {
    pub trait Sealed {}
    impl Sealed for String {}
    impl Sealed for Vec<u8> {}
}

/// How an event's fields are kept as its lines arrive.
pub trait EventField: sealed::Sealed + Default {
    /// Appends one line's value.
    fn push_line(&mut self, value: &[u8]);
    /// Appends the `\n` that joins two data lines.
    fn push_newline(&mut self);
    /// Its length in bytes.
    fn len(&self) -> usize;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Empties it, keeping its room.
    fn clear(&mut self);
}

/// Text: what is not UTF-8 becomes U+FFFD, and counts as such against the limit.
impl EventField for String {
    fn push_line(&mut self, value: &[u8]) {
        match std::str::from_utf8(value) {
            Ok(s) => self.push_str(s),
            Err(_) => self.push_str(&String::from_utf8_lossy(value)),
        }
    }

    fn push_newline(&mut self) {
        self.push('\n');
    }

    fn len(&self) -> usize {
        String::len(self)
    }

    fn clear(&mut self) {
        String::clear(self)
    }
}

/// The bytes as they came, not checked.
impl EventField for Vec<u8> {
    fn push_line(&mut self, value: &[u8]) {
        self.extend_from_slice(value);
    }

    fn push_newline(&mut self) {
        self.push(b'\n');
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn clear(&mut self) {
        Vec::clear(self)
    }
}

/// What one complete line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Added to the event being assembled, or was ignored.
    Read,
    /// Ended an event that has data: it is to be dispatched.
    EndsEvent,
    /// A comment.
    Comment,
}

/// What the parser read up to: an event (held in `pending`), a comment, or the end
/// of what it has (or of what it reads, once stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Event,
    Comment,
    Nothing,
}

/// Fields of the event being assembled. Kept apart from the input buffer so a
/// line borrowed from the buffer can be applied to it.
#[derive(Debug, Default)]
struct Pending<F> {
    event: F,
    data: F,
    has_data: bool,
    /// The previous call dispatched this event; clear it before reuse.
    dispatched: bool,
}

impl<F: EventField> Pending<F> {
    fn reset_if_dispatched(&mut self) {
        if self.dispatched {
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            self.dispatched = false;
        }
    }

    /// Applies one complete line. Data past `limit` bytes is refused.
    fn apply_line(&mut self, line: &[u8], limit: usize) -> Result<Line, SseError> {
        if line.is_empty() {
            if self.has_data {
                self.dispatched = true;
                return Ok(Line::EndsEvent);
            }
            // A block without data is not an event; forget its `event:` field.
            self.event.clear();
            return Ok(Line::Read);
        }
        if line[0] == b':' {
            return Ok(Line::Comment);
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let joined = self.data.len() + usize::from(self.has_data) + value.len();
                if joined > limit {
                    return Err(SseError::EventTooLong { limit });
                }
                if self.has_data {
                    self.data.push_newline();
                }
                self.data.push_line(value);
                self.has_data = true;
                // Invalid UTF-8 grows when replaced as text, so check again.
                if self.data.len() > limit {
                    return Err(SseError::EventTooLong { limit });
                }
            }
            b"event" => {
                self.event.clear();
                self.event.push_line(value);
            }
            // `id`, `retry` and unknown fields carry nothing the translators use.
            _ => {}
        }
        Ok(Line::Read)
    }
}

impl Pending<String> {
    fn as_ref(&self) -> SseEventRef<'_> {
        SseEventRef {
            event: (!self.event.is_empty()).then_some(self.event.as_str()),
            data: &self.data,
        }
    }
}

impl Pending<Vec<u8>> {
    fn as_bytes(&self) -> SseEventBytes<'_> {
        SseEventBytes {
            event: (!self.event.is_empty()).then_some(self.event.as_slice()),
            data: &self.data,
        }
    }
}

/// One dispatched event as the bytes that came, borrowing the parser's buffers
/// (valid until the next call on the parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventBytes<'a> {
    /// The `event:` field; `None` when absent or empty.
    pub event: Option<&'a [u8]>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// Incremental SSE parser: [`feed`](Self::feed) bytes as they arrive, then
/// drain events with [`next_event`](Self::next_event) (or the allocation-free
/// [`next_event_ref`](Self::next_event_ref)) until it returns `None`.
/// At end of input call [`finish`](Self::finish) and drain once more, so a
/// final event without a trailing blank line is still delivered.
///
/// When an event grows past the limit the parser drops what it holds,
/// ignores further input and reports [`error`](Self::error); `next_event*`
/// then return `None`.
pub type SseParser = EventParser<String>;

/// [`SseParser`] keeping the bytes that came: events from
/// [`next_event_bytes`](EventParser::next_event_bytes), their text not checked.
pub type SseByteParser = EventParser<Vec<u8>>;

/// The parser, its events' fields kept as `F`.
#[derive(Debug)]
pub struct EventParser<F> {
    /// Input not yet consumed, starting at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for a line ending, so a long
    /// unfinished line is scanned once, not once per feed.
    scanned: usize,
    limit: usize,
    error: Option<SseError>,
    /// The last line ended with `\r` at the end of the input seen so far; a
    /// `\n` arriving next belongs to that line ending.
    skip_lf: bool,
    bom_checked: bool,
    eof: bool,
    pending: Pending<F>,
}

impl<F: EventField> Default for EventParser<F> {
    fn default() -> Self {
        Self::with_limit(MAX_PENDING_BYTES)
    }
}

impl SseParser {
    /// Creates an empty parser holding at most [`MAX_PENDING_BYTES`] for one
    /// event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the next complete event, owned.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.next_event_ref().map(|e| e.to_event())
    }

    /// Returns the next complete event, borrowing the parser's buffers.
    pub fn next_event_ref(&mut self) -> Option<SseEventRef<'_>> {
        loop {
            match self.advance() {
                Next::Event => return Some(self.pending.as_ref()),
                Next::Comment => {}
                Next::Nothing => return None,
            }
        }
    }

    /// Returns the next complete event or comment line, borrowing the parser's
    /// buffers.
    pub fn next_item(&mut self) -> Option<SseItem<'_>> {
        match self.advance() {
            Next::Event => Some(SseItem::Event(self.pending.as_ref())),
            Next::Comment => Some(SseItem::Comment),
            Next::Nothing => None,
        }
    }
}

impl SseByteParser {
    /// Returns the next complete event as its bytes, borrowing the parser's buffers.
    pub fn next_event_bytes(&mut self) -> Option<SseEventBytes<'_>> {
        loop {
            match self.advance() {
                Next::Event => return Some(self.pending.as_bytes()),
                Next::Comment => {}
                Next::Nothing => return None,
            }
        }
    }
}

impl<F: EventField> EventParser<F> {
    /// Creates an empty parser holding at most `limit` bytes for one event.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            limit,
            error: None,
            skip_lf: false,
            bom_checked: false,
            eof: false,
            pending: Pending::default(),
        }
    }

    /// Why the parser stopped, once it has.
    pub fn error(&self) -> Option<SseError> {
        self.error
    }

    /// Appends input bytes. Events become available through `next_event*`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.pos > 0 {
            if self.pos >= self.buf.len() {
                self.buf.clear();
            } else {
                self.buf.drain(..self.pos);
            }
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Marks the end of input: the unterminated last line is treated as
    /// complete and a pending event is dispatched by the next `next_event*`.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Bytes held for an unfinished line or event.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos + self.pending.data.len()
    }

    /// Reads on to the next complete event, held in `pending`, or the next comment
    /// line; `Nothing` when neither has ended yet (or the parser has stopped).
    fn advance(&mut self) -> Next {
        if self.error.is_some() {
            return Next::Nothing;
        }
        self.pending.reset_if_dispatched();
        if !self.bom_checked {
            let rest = &self.buf[self.pos..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) && !self.eof {
                return Next::Nothing;
            }
            if rest.starts_with(BOM) {
                self.pos += BOM.len();
            }
            self.bom_checked = true;
        }
        loop {
            if self.skip_lf {
                match self.buf.get(self.pos) {
                    Some(&b) => {
                        if b == b'\n' {
                            self.pos += 1;
                        }
                        self.skip_lf = false;
                    }
                    None if self.eof => self.skip_lf = false,
                    None => return Next::Nothing,
                }
            }
            let rest = &self.buf[self.pos..];
            let unscanned = rest.get(self.scanned..).unwrap_or_default();
            match memchr::memchr2(b'\n', b'\r', unscanned) {
                Some(at) => {
                    let i = self.scanned + at;
                    self.scanned = 0;
                    let line = &rest[..i];
                    let mut consumed = i + 1;
                    if rest[i] == b'\r' {
                        match rest.get(i + 1) {
                            Some(b'\n') => consumed += 1,
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    let read = match self.pending.apply_line(line, self.limit) {
                        Ok(read) => read,
                        Err(e) => return self.fail(e),
                    };
                    self.pos += consumed;
                    match read {
                        Line::Read => {}
                        Line::EndsEvent => return Next::Event,
                        Line::Comment => return Next::Comment,
                    }
                }
                None => {
                    if !self.eof {
                        if rest.len() + self.pending.data.len() > self.limit {
                            return self.fail(SseError::EventTooLong { limit: self.limit });
                        }
                        self.scanned = rest.len();
                        return Next::Nothing;
                    }
                    if !rest.is_empty() {
                        // The unterminated final line counts as complete (a comment
                        // there keeps nothing alive: the stream has ended).
                        if let Err(e) = self.pending.apply_line(rest, self.limit) {
                            return self.fail(e);
                        }
                        self.pos = self.buf.len();
                    }
                    if self.pending.has_data {
                        self.pending.dispatched = true;
                        return Next::Event;
                    }
                    return Next::Nothing;
                }
            }
        }
    }

    /// Stops for good: drops the held input and remembers why.
    fn fail(&mut self, error: SseError) -> Next {
        self.error = Some(error);
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
        self.pending = Pending::default();
        Next::Nothing
    }
}

/// Appends one event: `event: <name>\n` (when given), one `data:` line per
/// line of `data` (any of `\n`, `\r\n`, `\r` ends a line, so a reader gets
/// the lines back joined with `\n`), and the blank line that dispatches it.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    write_event_header(out, event);
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' | b'\r' => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\ndata: ");
                if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.extend_from_slice(b"\n\n");
}

/// Appends one event whose data is `value` serialized as JSON (a single line,
/// since JSON output escapes newlines). On a serialization error nothing is
/// appended.
pub fn write_json_event<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    event: Option<&str>,
    value: &T,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    write_event_header(out, event);
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(b"\n\n");
    Ok(())
}

fn write_event_header(out: &mut Vec<u8>, event: Option<&str>) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c);
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        p.finish();
        while let Some(e) = p.next_event() {
            out.push(e);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn parses_event_and_data_fields() {
        let got = parse_all(&[b"event: ping\ndata: {\"a\":1}\n\n"]);
        assert_eq!(got, vec![ev(Some("ping"), "{\"a\":1}")]);
    }

    #[test]
    fn joins_multiple_data_lines_with_newline() {
        let got = parse_all(&[b"data: a\ndata:b\ndata:  c\n\n"]);
        assert_eq!(got, vec![ev(None, "a\nb\n c")]);
    }

    #[test]
    fn strips_only_one_space_after_colon() {
        let got = parse_all(&[b"data:   x\n\n"]);
        assert_eq!(got, vec![ev(None, "  x")]);
    }

    #[test]
    fn ignores_comments_and_unknown_fields() {
        let got = parse_all(&[b": keep-alive\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n:ping\n\n"]);
        assert_eq!(got, vec![ev(None, "x")]);
    }

    #[test]
    fn comment_lines_are_told_apart_as_items_once_each() {
        let input: &[u8] = b": keep-alive\n\n:a\r\n:b\rdata: x\n: mid-event\n\n: tail";
        let read = |pieces: &[&[u8]]| {
            let mut p = SseParser::new();
            let mut items = Vec::new();
            let mut take = |p: &mut SseParser| {
                while let Some(item) = p.next_item() {
                    items.push(match item {
                        SseItem::Event(e) => Some(e.to_event()),
                        SseItem::Comment => None,
                    });
                }
            };
            for piece in pieces {
                p.feed(piece);
                take(&mut p);
            }
            p.finish();
            take(&mut p);
            items
        };
        let whole = read(&[input]);
        // The unterminated last comment comes as the stream ends: nothing to keep alive.
        assert_eq!(whole, [None, None, None, None, Some(ev(None, "x"))]);
        for i in 0..=input.len() {
            assert_eq!(read(&[&input[..i], &input[i..]]), whole, "split at {i}");
        }
        assert_eq!(parse_all(&[input]), [ev(None, "x")]);
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        let got = parse_all(&[b"data\n\n"]);
        assert_eq!(got, vec![ev(None, "")]);
    }

    #[test]
    fn block_without_data_is_not_dispatched_and_forgets_its_event_name() {
        let got = parse_all(&[b"event: a\n\ndata: x\n\n"]);
        assert_eq!(got, vec![ev(None, "x")]);
    }

    #[test]
    fn handles_crlf_and_cr_line_endings() {
        let expected = vec![ev(Some("e"), "1"), ev(None, "2")];
        assert_eq!(
            parse_all(&[b"event: e\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n"]),
            expected
        );
        assert_eq!(parse_all(&[b"event: e\rdata: 1\r\rdata: 2\r\r"]), expected);
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_ending() {
        let got = parse_all(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n"]);
        assert_eq!(got, vec![ev(None, "1"), ev(None, "2")]);
    }

    #[test]
    fn multibyte_utf8_split_across_chunks_is_preserved() {
        let full = "data: héllo — 😊\n\n".as_bytes();
        for i in 0..full.len() {
            let got = parse_all(&[&full[..i], &full[i..]]);
            assert_eq!(got, vec![ev(None, "héllo — 😊")], "split at {i}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let got = parse_all(&[b"data: a\xFFb\n\n"]);
        assert_eq!(got, vec![ev(None, "a\u{FFFD}b")]);
    }

    #[test]
    fn finish_flushes_final_event_without_blank_line() {
        assert_eq!(parse_all(&[b"data: [DONE]\n"]), vec![ev(None, "[DONE]")]);
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec![ev(None, "[DONE]")]);
        assert_eq!(parse_all(&[b"data: x\r"]), vec![ev(None, "x")]);
    }

    #[test]
    fn incomplete_event_is_not_dispatched_before_finish() {
        let mut p = SseParser::new();
        p.feed(b"data: x\n");
        assert_eq!(p.next_event(), None);
        p.feed(b"\n");
        assert_eq!(p.next_event(), Some(ev(None, "x")));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn leading_bom_is_stripped_even_when_split() {
        let got = parse_all(&[b"\xEF", b"\xBB\xBFdata: x\n\n"]);
        assert_eq!(got, vec![ev(None, "x")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input: &[u8] = b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: c\rdata: \xC3\xA9\r\rid: 1\ndata:3\n\ndata: tail";
        let whole = parse_all(&[input]);
        assert_eq!(whole.len(), 4);
        for i in 0..=input.len() {
            assert_eq!(
                parse_all(&[&input[..i], &input[i..]]),
                whole,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn buffers_only_the_unfinished_line() {
        let mut p = SseParser::new();
        p.feed(b"data: 1\n\ndata: 2");
        assert!(p.next_event().is_some());
        assert_eq!(p.next_event(), None);
        p.feed(b"");
        assert_eq!(p.buffered_len(), "data: 2".len());
    }

    #[test]
    fn an_unfinished_line_past_the_limit_stops_the_parser() {
        let mut p = SseParser::with_limit(16);
        p.feed(b"data: 0123456789");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.error(), None);
        p.feed(b"x");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.error(), Some(SseError::EventTooLong { limit: 16 }));
        // What it held is dropped and later input ignored.
        assert_eq!(p.buffered_len(), 0);
        p.feed(b"\n\ndata: y\n\n");
        p.finish();
        assert_eq!(p.next_event(), None);
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn an_event_whose_data_lines_never_end_stops_the_parser() {
        let mut p = SseParser::with_limit(64);
        for _ in 0..40 {
            p.feed(b"data: x\n");
            assert_eq!(p.next_event(), None);
        }
        assert_eq!(p.error(), Some(SseError::EventTooLong { limit: 64 }));
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn the_limit_applies_to_each_event_not_the_stream() {
        let mut p = SseParser::with_limit(16);
        let mut got = 0;
        for _ in 0..100 {
            p.feed(b"data: 0123456789\n\n");
            while p.next_event().is_some() {
                got += 1;
            }
        }
        assert_eq!((got, p.error()), (100, None));
        // Data of exactly the limit is still an event.
        p.feed(b"data: ");
        p.feed(&[b'x'; 16]);
        p.feed(b"\n\n");
        assert_eq!(p.next_event().map(|e| e.data.len()), Some(16));
    }

    #[test]
    fn invalid_utf8_counts_as_its_replacement_characters() {
        // Each invalid byte becomes U+FFFD, three bytes long.
        let mut p = SseParser::with_limit(16);
        p.feed(b"data: \x80\x80\x80\x80\x80\x80\n\n");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.error(), Some(SseError::EventTooLong { limit: 16 }));
    }

    #[test]
    fn the_byte_parser_counts_the_bytes_that_came_against_its_limit() {
        // Six bytes that are not UTF-8: 18 as text, past the limit; 6 as they came.
        let mut p = SseByteParser::with_limit(16);
        p.feed(b"data: \x80\x80\x80\x80\x80\x80\n\n");
        assert_eq!(p.next_event_bytes().map(|e| e.data.len()), Some(6));
        assert_eq!(p.error(), None);
    }

    #[test]
    fn the_default_limit_is_16_mib() {
        assert_eq!(MAX_PENDING_BYTES, 16 * 1024 * 1024);
        let mut p = SseParser::new();
        p.feed(b"data: ");
        let chunk = vec![b'x'; 64 * 1024];
        let mut fed = "data: ".len();
        while fed <= MAX_PENDING_BYTES {
            assert_eq!(p.next_event(), None);
            assert_eq!(p.error(), None, "after {fed} bytes");
            p.feed(&chunk);
            fed += chunk.len();
        }
        assert_eq!(p.next_event(), None);
        assert_eq!(
            p.error(),
            Some(SseError::EventTooLong {
                limit: MAX_PENDING_BYTES
            })
        );
    }

    #[test]
    fn an_unterminated_final_line_past_the_limit_is_an_error_at_finish() {
        let mut p = SseParser::with_limit(10);
        p.feed(b"data: 1234\ndata: 567890");
        p.finish();
        assert_eq!(p.next_event(), None);
        assert!(p.error().is_some());
    }

    #[test]
    fn write_event_formats_name_and_data() {
        let mut out = Vec::new();
        write_event(&mut out, Some("x"), "y");
        write_event(&mut out, None, "a\nb");
        assert_eq!(out, b"event: x\ndata: y\n\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn write_event_splits_on_every_line_break() {
        let mut out = Vec::new();
        write_event(&mut out, None, "a\r\nb\rc\n");
        assert_eq!(out, b"data: a\ndata: b\ndata: c\ndata: \n\n");
        assert_eq!(parse_all(&[&out]), vec![ev(None, "a\nb\nc\n")]);
    }

    #[test]
    fn written_events_parse_back() {
        let mut out = Vec::new();
        write_event(&mut out, Some("m"), "l1\nl2");
        write_json_event(&mut out, None, &serde_json::json!({"k": "v\nw"})).unwrap();
        assert_eq!(
            parse_all(&[&out]),
            vec![ev(Some("m"), "l1\nl2"), ev(None, r#"{"k":"v\nw"}"#)]
        );
    }
}
