//! Where a stream translator is: both directions stop translating after the
//! provider's end marker or after an error they reported.

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
