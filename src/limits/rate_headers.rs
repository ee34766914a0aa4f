//! OpenAI's `x-ratelimit-*` answer headers for a caller's windows. Written on every
//! answer to a key with limits, so the names are static and the numbers are
//! formatted on the stack: the header map's own copies are the only allocations.

use http::HeaderValue;
use pingora_http::ResponseHeader;

use super::RateState;

/// The limit, remaining and reset header names of the request window, then of the
/// token window.
const NAMES: [[&str; 3]; 2] = [
    [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ],
    [
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ],
];

/// OpenAI's `x-ratelimit-*` headers for the caller's windows (replacing any the
/// provider sent).
pub fn insert_rate_headers(
    resp: &mut ResponseHeader,
    rate: &RateState,
) -> pingora_core::Result<()> {
    for ([limit, remaining, reset], window) in NAMES.into_iter().zip([rate.requests, rate.tokens]) {
        let Some(w) = window else { continue };
        resp.insert_header(limit, number(w.limit))?;
        resp.insert_header(remaining, number(w.remaining))?;
        let mut text = ResetText::default();
        resp.insert_header(reset, text.write(w.reset_secs))?;
    }
    Ok(())
}

/// `n` as a header value, formatted on the stack (`HeaderValue::from(u64)` goes
/// through a growable buffer first).
fn number(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n);
    // Digits are always a valid header value; the fallback is never taken.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("0"))
}

/// Room for the longest reset text: `u64::MAX` seconds as hours, minutes and seconds.
#[derive(Default)]
pub(super) struct ResetText {
    buf: [u8; 32],
    len: usize,
}

impl ResetText {
    /// `6m0s`, `1s`, `59s`: `secs` as OpenAI's `x-ratelimit-reset-*` headers write it.
    pub(super) fn write(&mut self, secs: u64) -> &str {
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        self.len = 0;
        if h > 0 {
            self.number(h, b'h');
        }
        if h > 0 || m > 0 {
            self.number(m, b'm');
        }
        self.number(s, b's');
        // Only ASCII digits and unit letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0s")
    }

    fn number(&mut self, n: u64, unit: u8) {
        let mut digits = itoa::Buffer::new();
        for &b in digits.format(n).as_bytes().iter().chain([&unit]) {
            // 20 digits of hours, 2 of minutes, 2 of seconds and 3 units fit in 32.
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::WindowState;

    #[test]
    fn numbers_read_as_decimal_text() {
        for n in [0, 7, 1_000_000, u64::MAX] {
            assert_eq!(number(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn reset_texts_read_as_openai_writes_them() {
        let mut text = ResetText::default();
        for (secs, want) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (360, "6m0s"),
            (3600, "1h0m0s"),
            (3723, "1h2m3s"),
            (u64::MAX, "5124095576030431h0m15s"),
        ] {
            assert_eq!(text.write(secs), want);
        }
    }

    #[test]
    fn both_windows_give_six_headers_replacing_the_providers() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("x-ratelimit-limit-requests", "7")
            .unwrap();
        let window = |limit, remaining, reset_secs| {
            Some(WindowState {
                limit,
                remaining,
                reset_secs,
            })
        };
        let rate = RateState {
            requests: window(3, 2, 45),
            tokens: window(1000, 0, 75),
        };
        insert_rate_headers(&mut resp, &rate).unwrap();
        let got = |name: &str| resp.headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(got("x-ratelimit-limit-requests"), "3");
        assert_eq!(got("x-ratelimit-remaining-requests"), "2");
        assert_eq!(got("x-ratelimit-reset-requests"), "45s");
        assert_eq!(got("x-ratelimit-limit-tokens"), "1000");
        assert_eq!(got("x-ratelimit-remaining-tokens"), "0");
        assert_eq!(got("x-ratelimit-reset-tokens"), "1m15s");
        assert_eq!(resp.headers.len(), 6);
    }

    #[test]
    fn a_missing_window_gives_no_headers() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        insert_rate_headers(&mut resp, &RateState::default()).unwrap();
        assert!(resp.headers.is_empty());
    }
}
