//! How long an exchange with a provider may wait, by what the answer is.
//!
//! Pingora times every read of an upstream connection with one timer, the answer's
//! header included, and it cannot be changed once the exchange has begun. So the
//! proxy path picks that one timer per attempt from what it knows of the answer; the
//! gateway's own whole-answer path times each stage apart ([`super::super::whole_answer`]).

use std::time::Duration;

use crate::providers::Timeouts;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamWait {
    /// Request sent, no answer yet (`timeouts.first_byte`).
    FirstByte,
    /// The answer stopped midway (`timeouts.idle`).
    Idle,
    /// A whole answer took too long (`timeouts.total`).
    Total,
}

impl UpstreamWait {
    /// The config field that sets this wait.
    pub fn field(self) -> &'static str {
        match self {
            UpstreamWait::FirstByte => "first_byte",
            UpstreamWait::Idle => "idle",
            UpstreamWait::Total => "total",
        }
    }
}

impl std::fmt::Display for UpstreamWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timeouts.{} ran out", self.field())
    }
}

impl std::error::Error for UpstreamWait {}

/// What the gateway knows of an answer before asking for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerShape {
    /// Not streamed (`"stream"` absent or false): `total` bounds it.
    Whole,
    /// Streamed: each silence is bounded by `idle`.
    Stream,
    /// A passthrough request the gateway does not read.
    #[default]
    Unknown,
}

/// The one read timer of an attempt on the proxy path, and the setting it comes from.
///
/// - A whole answer comes in one piece after the model has finished, so its header
///   wait is what matters: `first_byte`, and never more than `total`.
/// - A stream's header comes at once and its pieces follow; `idle` bounds every read,
///   the header's included.
/// - An answer of unknown shape gets the longer of `first_byte` and `idle`, so neither
///   kind is cut short.
pub fn read_timer(timeouts: &Timeouts, shape: AnswerShape) -> (Duration, UpstreamWait) {
    let first_byte = (timeouts.first_byte, UpstreamWait::FirstByte);
    let idle = (timeouts.idle, UpstreamWait::Idle);
    match shape {
        AnswerShape::Whole if timeouts.total < timeouts.first_byte => {
            (timeouts.total, UpstreamWait::Total)
        }
        AnswerShape::Whole => first_byte,
        AnswerShape::Stream => idle,
        AnswerShape::Unknown if timeouts.idle > timeouts.first_byte => idle,
        AnswerShape::Unknown => first_byte,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(first_byte: u64, idle: u64, total: u64) -> Timeouts {
        Timeouts {
            first_byte: Duration::from_secs(first_byte),
            idle: Duration::from_secs(idle),
            total: Duration::from_secs(total),
            ..Timeouts::default()
        }
    }

    #[test]
    fn whole_answers_wait_for_the_first_byte_within_the_total() {
        let t = timeouts(300, 30, 120);
        assert_eq!(
            read_timer(&t, AnswerShape::Whole),
            (Duration::from_secs(120), UpstreamWait::Total)
        );
        let t = timeouts(60, 30, 120);
        assert_eq!(
            read_timer(&t, AnswerShape::Whole),
            (Duration::from_secs(60), UpstreamWait::FirstByte)
        );
    }

    #[test]
    fn streams_are_timed_by_idle_and_unknown_answers_by_the_longer_wait() {
        let t = timeouts(300, 30, 120);
        assert_eq!(
            read_timer(&t, AnswerShape::Stream),
            (Duration::from_secs(30), UpstreamWait::Idle)
        );
        assert_eq!(
            read_timer(&t, AnswerShape::Unknown),
            (Duration::from_secs(300), UpstreamWait::FirstByte)
        );
        let t = timeouts(30, 300, 120);
        assert_eq!(
            read_timer(&t, AnswerShape::Unknown),
            (Duration::from_secs(300), UpstreamWait::Idle)
        );
    }
}
