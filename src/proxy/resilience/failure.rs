//! What went wrong with one attempt at a provider, and how long to wait before the
//! next one.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::config::{RetryOn, RetryPolicy};

/// How one attempt at a provider failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection could be made: the provider never saw the request.
    Connect,
    /// The provider did not answer in time, or dropped the connection before it did.
    Timeout,
    /// The provider answered with an error status.
    Status {
        /// The status.
        code: u16,
        /// Its `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider refused the prompt as too long for the model (`code`, usually
    /// 400): only a fallback with more room may help, and only where configured.
    ContextOverflow {
        /// The status.
        code: u16,
    },
    /// Anything else (a TLS or protocol failure): never retried.
    Other,
}

impl AttemptFailure {
    /// Whether `on` retries this failure.
    pub fn is_retried_by(&self, on: &RetryOn) -> bool {
        match self {
            AttemptFailure::Connect => on.connect,
            AttemptFailure::Timeout => on.timeout,
            AttemptFailure::Status { code, .. } => on.statuses.contains(code),
            AttemptFailure::ContextOverflow { .. } | AttemptFailure::Other => false,
        }
    }

    /// A failure of the key rather than of the provider: another key may work at once.
    pub fn is_key_failure(&self) -> bool {
        matches!(
            self,
            AttemptFailure::Status {
                code: 401 | 429,
                ..
            }
        )
    }

    /// The provider's own `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptFailure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label for logs and headers: `connect`, `timeout`, the status, `error`.
    pub fn label(&self) -> String {
        match self {
            AttemptFailure::Connect => "connect".into(),
            AttemptFailure::Timeout => "timeout".into(),
            AttemptFailure::Status { code, .. } | AttemptFailure::ContextOverflow { code } => {
                code.to_string()
            }
            AttemptFailure::Other => "error".into(),
        }
    }
}

pub use crate::translate::is_context_overflow;

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3), from `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before retry number `retry` (1 for the first retry): `backoff` doubled per
/// retry, capped at `max_backoff`, scaled by `jitter` in `[0, 1)` (full jitter, so
/// clients that failed together do not come back together).
pub fn backoff(policy: &RetryPolicy, retry: u32, jitter: f64) -> Duration {
    let doubling = 2u32.saturating_pow(retry.saturating_sub(1));
    let ceiling = policy
        .backoff
        .saturating_mul(doubling)
        .min(policy.max_backoff);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers("3"), now),
            Some(Duration::from_secs(3))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_scaled_by_the_jitter() {
        let policy = RetryPolicy {
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        assert_eq!(backoff(&policy, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&policy, 2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&policy, 3, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(&policy, 30, 0.5), Duration::from_millis(250));
        assert_eq!(backoff(&policy, 1, 0.0), Duration::ZERO);
    }

    #[test]
    fn failures_are_retried_as_the_policy_lists_them() {
        let on = RetryOn::default();
        assert!(AttemptFailure::Connect.is_retried_by(&on));
        assert!(AttemptFailure::Timeout.is_retried_by(&on));
        let status = |code| AttemptFailure::Status {
            code,
            retry_after: None,
        };
        assert!(status(529).is_retried_by(&on));
        assert!(!status(400).is_retried_by(&on));
        assert!(!AttemptFailure::Other.is_retried_by(&on));
        assert!(status(429).is_key_failure() && status(401).is_key_failure());
        assert!(!status(503).is_key_failure());
    }
}
