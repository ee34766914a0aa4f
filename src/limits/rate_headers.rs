//! OpenAI's `x-ratelimit-*` answer headers for a caller's windows. Written on every
//! answer to a key with limits, so the names are constants and the numbers are
//! formatted on the stack into one buffer the six values share.

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue, MaxSizeReached};

use super::RateState;

/// The limit, remaining and reset header names of the request window, then of the
/// token window.
const NAMES: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

impl RateState {
    /// How many `x-ratelimit-*` headers [`insert_rate_headers`] writes for these windows.
    pub fn header_count(&self) -> usize {
        3 * (usize::from(self.requests.is_some()) + usize::from(self.tokens.is_some()))
    }
}

/// OpenAI's `x-ratelimit-*` headers for the caller's windows (replacing any the
/// provider sent).
pub fn insert_rate_headers(
    headers: &mut HeaderMap,
    rate: &RateState,
) -> Result<(), MaxSizeReached> {
    // The values are written into one buffer and share it: one allocation (and the
    // share count) for all six instead of one each.
    let mut text = BytesMut::with_capacity(VALUES_ROOM);
    for ([limit, remaining, reset], window) in NAMES.into_iter().zip([rate.requests, rate.tokens]) {
        let Some(w) = window else { continue };
        let mut digits = itoa::Buffer::new();
        headers.try_insert(limit, value(&mut text, digits.format(w.limit)))?;
        headers.try_insert(remaining, value(&mut text, digits.format(w.remaining)))?;
        let mut reset_text = ResetText::default();
        headers.try_insert(reset, value(&mut text, reset_text.write(w.reset_secs)))?;
    }
    Ok(())
}

/// Two windows' longest values: two numbers of 20 digits and a reset text of 32 bytes
/// each.
const VALUES_ROOM: usize = 2 * (20 + 20 + 32);

/// `digits` (or a reset text) as a header value sharing `buf`.
fn value(buf: &mut BytesMut, digits: &str) -> HeaderValue {
    buf.extend_from_slice(digits.as_bytes());
    // Only ASCII digits and unit letters: always a valid header value.
    HeaderValue::from_maybe_shared(buf.split().freeze()).unwrap_or(HeaderValue::from_static("0"))
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
        let mut buf = BytesMut::new();
        for n in [0, 7, 1_000_000, u64::MAX] {
            let text = n.to_string();
            assert_eq!(value(&mut buf, &text).to_str().unwrap(), text);
        }
    }

    #[test]
    fn the_six_values_share_one_buffer_even_at_their_longest() {
        let longest = Some(WindowState {
            limit: u64::MAX,
            remaining: u64::MAX,
            reset_secs: u64::MAX,
        });
        let rate = RateState {
            requests: longest,
            tokens: longest,
        };
        let mut headers = HeaderMap::new();
        insert_rate_headers(&mut headers, &rate).unwrap();
        let values: Vec<&[u8]> = NAMES
            .iter()
            .flatten()
            .map(|name| headers[name].as_bytes())
            .collect();
        for pair in values.windows(2) {
            // Each value starts where the one before it ends: one buffer, never moved.
            assert_eq!(pair[0].as_ptr_range().end, pair[1].as_ptr(), "{pair:?}");
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
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("7"));
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
        assert_eq!(rate.header_count(), 6);
        insert_rate_headers(&mut headers, &rate).unwrap();
        let got = |name: &str| headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(got("x-ratelimit-limit-requests"), "3");
        assert_eq!(got("x-ratelimit-remaining-requests"), "2");
        assert_eq!(got("x-ratelimit-reset-requests"), "45s");
        assert_eq!(got("x-ratelimit-limit-tokens"), "1000");
        assert_eq!(got("x-ratelimit-remaining-tokens"), "0");
        assert_eq!(got("x-ratelimit-reset-tokens"), "1m15s");
        assert_eq!(headers.len(), 6);
    }

    #[test]
    fn a_missing_window_gives_no_headers() {
        let mut headers = HeaderMap::new();
        let none = RateState::default();
        assert_eq!(none.header_count(), 0);
        insert_rate_headers(&mut headers, &none).unwrap();
        assert!(headers.is_empty());
        let requests_only = RateState {
            requests: Some(WindowState {
                limit: 1,
                remaining: 1,
                reset_secs: 1,
            }),
            tokens: None,
        };
        assert_eq!(requests_only.header_count(), 3);
        insert_rate_headers(&mut headers, &requests_only).unwrap();
        assert_eq!(headers.len(), 3);
    }
}
