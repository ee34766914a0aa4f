//! OpenAI's `x-ratelimit-*` answer headers for a caller's windows. Written on every
//! answer to a key with limits, so what is the same on every answer is made once: the
//! names are constants, a key's limits are texts made when its config is read
//! ([`LimitTexts`]), and a minute window's reset is one of 61 static texts. Only the
//! remaining counts are formatted per answer.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, MaxSizeReached};

use super::RateState;
use crate::config::KeyLimits;

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

/// A key's request and token limits as `x-ratelimit-limit-*` values, each with the
/// number it says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitTexts {
    requests: Option<(u64, HeaderValue)>,
    tokens: Option<(u64, HeaderValue)>,
}

impl LimitTexts {
    /// The texts of `limits`' request and token windows.
    pub fn of(limits: &KeyLimits) -> Self {
        let text = |limit: Option<u64>| limit.map(|n| (n, HeaderValue::from(n)));
        Self {
            requests: text(limits.requests_per_minute),
            tokens: text(limits.tokens_per_minute),
        }
    }
}

/// OpenAI's `x-ratelimit-*` headers for the caller's windows (replacing any the
/// provider sent). `limit_texts`, the caller's limits as made with its config, are
/// used for the limits they say; any other number is formatted.
pub fn insert_rate_headers(
    headers: &mut HeaderMap,
    rate: &RateState,
    limit_texts: Option<&LimitTexts>,
) -> Result<(), MaxSizeReached> {
    let made = [
        limit_texts.and_then(|t| t.requests.as_ref()),
        limit_texts.and_then(|t| t.tokens.as_ref()),
    ];
    for (([limit, remaining, reset], window), made) in NAMES
        .into_iter()
        .zip([rate.requests, rate.tokens])
        .zip(made)
    {
        let Some(w) = window else { continue };
        let limit_value = match made {
            Some((n, text)) if *n == w.limit => text.clone(),
            _ => HeaderValue::from(w.limit),
        };
        headers.try_insert(limit, limit_value)?;
        headers.try_insert(remaining, HeaderValue::from(w.remaining))?;
        headers.try_insert(reset, reset_value(w.reset_secs))?;
    }
    Ok(())
}

/// The prefixes of the headers in which providers tell their quota (OpenAI's, Groq's,
/// xAI's and OpenRouter's `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`).
const PROVIDER_QUOTA_PREFIXES: [&str; 2] = ["x-ratelimit-", "anthropic-ratelimit-"];

/// Removes the provider's quota headers from an answer to a key with limits: what such
/// a key is told of its windows is its own, never the operator's quota, not even for a
/// window the key has no limit for (the key's own are written after).
pub fn remove_provider_quota_headers(headers: &mut HeaderMap) {
    let is_quota = |name: &HeaderName| {
        PROVIDER_QUOTA_PREFIXES
            .iter()
            .any(|prefix| name.as_str().starts_with(prefix))
    };
    // Most answers carry none: nothing is allocated for them.
    if !headers.keys().any(is_quota) {
        return;
    }
    let quota: Vec<HeaderName> = headers.keys().filter(|n| is_quota(n)).cloned().collect();
    for name in quota {
        headers.remove(name);
    }
}

/// Every reset a minute window can have, `0s` to `1m0s`, padded to four bytes.
static MINUTE_RESETS: [[u8; 4]; 61] = minute_resets();

const fn minute_resets() -> [[u8; 4]; 61] {
    let mut texts = [[0u8; 4]; 61];
    let mut secs = 0;
    while secs < 60 {
        let text = &mut texts[secs];
        if secs < 10 {
            text[0] = b'0' + secs as u8;
            text[1] = b's';
        } else {
            text[0] = b'0' + (secs / 10) as u8;
            text[1] = b'0' + (secs % 10) as u8;
            text[2] = b's';
        }
        secs += 1;
    }
    texts[60] = *b"1m0s";
    texts
}

/// `secs` as an `x-ratelimit-reset-*` value: a static text within a minute (always,
/// for the minute windows), formatted beyond it.
fn reset_value(secs: u64) -> HeaderValue {
    let value = match minute_reset(secs) {
        Some(text) => HeaderValue::from_maybe_shared(Bytes::from_static(text)),
        None => HeaderValue::from_str(ResetText::default().write(secs)),
    };
    // Only ASCII digits and unit letters: always a valid header value.
    value.unwrap_or(HeaderValue::from_static("0s"))
}

/// The static text of a reset within a minute.
fn minute_reset(secs: u64) -> Option<&'static [u8]> {
    let i = usize::try_from(secs).ok()?;
    let len = match i {
        0..=9 => 2,
        10..=59 => 3,
        _ => 4,
    };
    MINUTE_RESETS.get(i)?.get(..len)
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

    fn window(limit: u64, remaining: u64, reset_secs: u64) -> Option<WindowState> {
        Some(WindowState {
            limit,
            remaining,
            reset_secs,
        })
    }

    fn limits(requests: u64, tokens: u64) -> KeyLimits {
        KeyLimits {
            requests_per_minute: Some(requests),
            tokens_per_minute: Some(tokens),
            ..KeyLimits::default()
        }
    }

    #[test]
    fn the_longest_values_are_written_whole() {
        let rate = RateState {
            requests: window(u64::MAX, u64::MAX, u64::MAX),
            tokens: window(u64::MAX, u64::MAX, u64::MAX),
        };
        let mut headers = HeaderMap::new();
        insert_rate_headers(&mut headers, &rate, None).unwrap();
        for [limit, remaining, reset] in &NAMES {
            assert_eq!(headers[limit], u64::MAX.to_string().as_str());
            assert_eq!(headers[remaining], u64::MAX.to_string().as_str());
            assert_eq!(headers[reset], "5124095576030431h0m15s");
        }
    }

    #[test]
    fn every_reset_within_a_minute_is_its_static_text() {
        let statics = MINUTE_RESETS.as_ptr_range();
        let statics = statics.start.cast::<u8>()..statics.end.cast::<u8>();
        for secs in 0..=60 {
            let value = reset_value(secs);
            assert_eq!(value.to_str().unwrap(), ResetText::default().write(secs));
            // Read from the table, not formatted.
            assert!(statics.contains(&value.as_bytes().as_ptr()), "{secs}");
        }
        assert_eq!(reset_value(61), "1m1s");
        assert!(!statics.contains(&reset_value(61).as_bytes().as_ptr()));
    }

    #[test]
    fn a_limit_made_with_the_config_is_shared_not_formatted() {
        let texts = LimitTexts::of(&limits(60, 100_000));
        let rate = RateState {
            requests: window(60, 59, 30),
            tokens: window(100_000, 99_000, 30),
        };
        let mut headers = HeaderMap::new();
        insert_rate_headers(&mut headers, &rate, Some(&texts)).unwrap();
        let made = |t: &Option<(u64, HeaderValue)>| t.as_ref().unwrap().1.as_bytes().as_ptr();
        let sent = |name: &str| headers[name].as_bytes().as_ptr();
        assert_eq!(sent("x-ratelimit-limit-requests"), made(&texts.requests));
        assert_eq!(sent("x-ratelimit-limit-tokens"), made(&texts.tokens));
        assert_eq!(headers["x-ratelimit-limit-requests"], "60");
        assert_eq!(headers["x-ratelimit-limit-tokens"], "100000");
    }

    #[test]
    fn a_limit_other_than_the_made_one_is_written_as_it_is() {
        // Texts of other limits (a config read again): the windows' own numbers count.
        let texts = LimitTexts::of(&limits(60, 100_000));
        let rate = RateState {
            requests: window(10, 9, 30),
            tokens: window(500, 0, 30),
        };
        let mut headers = HeaderMap::new();
        insert_rate_headers(&mut headers, &rate, Some(&texts)).unwrap();
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        assert_eq!(headers["x-ratelimit-limit-tokens"], "500");
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
        let rate = RateState {
            requests: window(3, 2, 45),
            tokens: window(1000, 0, 75),
        };
        assert_eq!(rate.header_count(), 6);
        insert_rate_headers(&mut headers, &rate, None).unwrap();
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
        insert_rate_headers(&mut headers, &none, None).unwrap();
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
        insert_rate_headers(&mut headers, &requests_only, None).unwrap();
        assert_eq!(headers.len(), 3);
    }
}
