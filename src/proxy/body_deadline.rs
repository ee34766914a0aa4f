//! The whole-body deadline: a request body must arrive completely within
//! `server.body_timeout` of the end of its header. Pingora's own downstream timeout
//! applies to each read, so a body trickled a byte at a time would never be cut.

use std::time::{Duration, Instant};

use super::GatewayError;

/// When the body of one request must have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    at: Instant,
    timeout: Duration,
}

impl BodyDeadline {
    /// The deadline of a body whose header ended at `header_end`.
    pub fn new(header_end: Instant, timeout: Duration) -> Self {
        Self {
            at: header_end + timeout,
            timeout,
        }
    }

    /// The instant the body must have arrived by.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Time left at `now`; `None` once the deadline has passed.
    pub fn time_left(&self, now: Instant) -> Option<Duration> {
        self.at
            .checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    /// The 408 for a body that missed the deadline.
    pub fn error(&self) -> GatewayError {
        GatewayError::request_timeout(format!(
            "the request body did not arrive within {} of its header; send it without pauses or raise server.body_timeout",
            humantime::format_duration(self.timeout)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_runs_out_at_header_end_plus_timeout() {
        let start = Instant::now();
        let deadline = BodyDeadline::new(start, Duration::from_secs(2));
        assert_eq!(deadline.at(), start + Duration::from_secs(2));
        assert_eq!(deadline.time_left(start), Some(Duration::from_secs(2)));
        assert_eq!(
            deadline.time_left(start + Duration::from_millis(1500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(deadline.time_left(start + Duration::from_secs(2)), None);
        assert_eq!(deadline.time_left(start + Duration::from_secs(3)), None);
    }

    #[test]
    fn a_missed_deadline_is_a_408_naming_the_setting() {
        let err = BodyDeadline::new(Instant::now(), Duration::from_secs(2)).error();
        assert_eq!(err.status, 408);
        assert_eq!(err.code, Some("request_timeout"));
        assert!(err.message.contains("within 2s"), "{}", err.message);
        assert!(
            err.message.contains("server.body_timeout"),
            "{}",
            err.message
        );
    }
}
