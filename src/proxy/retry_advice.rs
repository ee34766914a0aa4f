//! `x-should-retry`: telling a client's SDK not to retry an error. The OpenAI and
//! Anthropic SDKs, Claude Code and Codex retry a 429 and every 5xx by themselves, and
//! obey this header before their own rules. A wait longer than a minute is not worth
//! retrying after: the Anthropic SDKs sleep for whatever `Retry-After` says, days, and
//! older OpenAI SDKs retry at once for nothing.

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::resilience::retry_after;

/// The header the SDKs obey.
pub const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The longest wait a client is told to wait for and then retry: a minute, as long as
/// a rate window lasts.
const LONGEST_WAIT_WORTH_RETRYING: Duration = Duration::from_secs(60);

/// `false`, the one value the gateway sends.
pub fn do_not_retry() -> HeaderValue {
    HeaderValue::from_static("false")
}

/// Whether a wait of `seconds` is longer than a retry is worth.
pub fn too_long_to_wait(seconds: u64) -> bool {
    Duration::from_secs(seconds) > LONGEST_WAIT_WORTH_RETRYING
}

/// Whether a provider's error answer with `headers`, translated for a client of
/// another API, should tell that client not to retry: its `Retry-After` is too long
/// to wait, and the provider said nothing of retrying itself (a provider speaking the
/// client's API says it in that API's terms; one speaking another cannot).
pub fn translated_error_not_worth_retrying(headers: &HeaderMap, now: SystemTime) -> bool {
    !headers.contains_key(SHOULD_RETRY)
        && retry_after(headers, now).is_some_and(|wait| wait > LONGEST_WAIT_WORTH_RETRYING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn only_a_wait_past_a_minute_is_too_long() {
        assert!(!too_long_to_wait(0));
        assert!(!too_long_to_wait(60));
        assert!(too_long_to_wait(61));
        assert!(too_long_to_wait(u64::MAX));
    }

    #[test]
    fn a_translated_error_is_not_worth_retrying_past_a_minute_unless_the_provider_said() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(!translated_error_not_worth_retrying(&HeaderMap::new(), now));
        assert!(!translated_error_not_worth_retrying(&waiting("7"), now));
        assert!(translated_error_not_worth_retrying(&waiting("3600"), now));
        let in_two_hours = httpdate::fmt_http_date(now + Duration::from_secs(7200));
        assert!(translated_error_not_worth_retrying(
            &waiting(&in_two_hours),
            now
        ));
        let mut said = waiting("3600");
        said.insert(SHOULD_RETRY, HeaderValue::from_static("true"));
        assert!(!translated_error_not_worth_retrying(&said, now));
    }
}
