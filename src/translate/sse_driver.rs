//! What every stream translator shares, [`SseDriver`]: an incremental SSE parser
//! feeding one direction's [`EventHandler`] events and keep-alive comments, and the
//! rule that translation stops after the provider's end marker, after an error the
//! translator reported, or when the parser gives up on an event that never ends.

use super::sse::{SseError, SseEventRef, SseItem, SseParser};

/// Lifecycle of a stream translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Still translating events.
    Streaming,
    /// The end marker was written; later input is ignored.
    Done,
    /// An error was written; nothing follows it.
    Failed,
}

/// One direction's translation of parsed events: the state a stream translator keeps
/// between events, and what it writes for each.
pub(super) trait EventHandler {
    /// Where the translation is.
    fn phase(&self) -> Phase;
    /// Translates one upstream event, appending client bytes to `out`.
    fn handle(&mut self, ev: SseEventRef<'_>, out: &mut Vec<u8>);
    /// The provider sent a comment line, its keep-alive while it has nothing to say
    /// (DeepSeek queueing, OpenRouter): write the client's own, so that a hop with an
    /// idle timeout sees the stream alive.
    fn keep_alive(&mut self, out: &mut Vec<u8>);
    /// The provider's input ended while still streaming: complete the answer or
    /// report it cut short.
    fn end_of_input(&mut self, out: &mut Vec<u8>);
    /// The provider's stream cannot be read any further: end the client's
    /// stream with an error, as for a provider that hangs up mid-answer.
    fn unreadable(&mut self, out: &mut Vec<u8>, error: SseError);
}

/// The client-facing message for an unreadable stream.
pub(super) fn unreadable_message(error: SseError) -> String {
    format!("the provider's stream could not be read ({error}); retry the request")
}

/// Drives an [`EventHandler`] with a parser: bytes in, translated bytes out.
#[derive(Debug)]
pub(super) struct SseDriver<S> {
    parser: SseParser,
    pub(super) state: S,
}

impl<S: EventHandler> SseDriver<S> {
    pub(super) fn new(state: S) -> Self {
        Self {
            parser: SseParser::new(),
            state,
        }
    }

    /// Translates a chunk of upstream bytes; input after the end or an error is ignored.
    pub(super) fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.state.phase() != Phase::Streaming {
            return;
        }
        self.parser.feed(chunk);
        self.drain(out);
    }

    /// Signals the end of upstream input.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state.phase() != Phase::Streaming {
            return;
        }
        self.parser.finish();
        self.drain(out);
        if self.state.phase() == Phase::Streaming {
            self.state.end_of_input(out);
        }
    }

    pub(super) fn phase(&self) -> Phase {
        self.state.phase()
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(item) = self.parser.next_item() {
            match item {
                SseItem::Event(ev) => self.state.handle(ev, out),
                SseItem::Comment => self.state.keep_alive(out),
            }
            if self.state.phase() != Phase::Streaming {
                return;
            }
        }
        if let Some(error) = self.parser.error() {
            self.state.unreadable(out, error);
        }
    }
}
