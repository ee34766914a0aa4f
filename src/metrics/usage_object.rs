//! A provider's usage object, and the objects around it, read in one pass where they
//! lie.
//!
//! Every successful answer on every route is metered, so this runs once per request.
//! A derived `serde` reader spent most of its time on what is not kept (each key
//! decoded and checked as text, members skipped by parsing them in full, the struct
//! moved through its layers), and following the structure with `memchr` costs more
//! than it saves between the short keys and numbers of a usage object. This reads
//! byte by byte, one pass, and refuses what `serde` refused: a count that is not a
//! non-negative integer (or `null`), members that are not an object's.

use std::borrow::Cow;

use super::web_searches::output_searches;
use crate::translate::json_members::{ends_scalar, skip_ws, string_end, value_end};

/// A usage object of any of the formats; members of the others are absent.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RawUsage {
    // Anthropic and the Responses API.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    // Anthropic.
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    // Chat Completions.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// xAI's counts reasoning its `completion_tokens` leave out.
    pub total_tokens: Option<u64>,
    /// DeepSeek's cache hits, said in its own member (it may say no
    /// `prompt_tokens_details`).
    pub prompt_cache_hit_tokens: Option<u64>,
    pub prompt_tokens_details: Option<Details>,
    pub completion_tokens_details: Option<Details>,
    // The Responses API.
    pub input_tokens_details: Option<Details>,
    pub output_tokens_details: Option<Details>,
    // Gemini's `usageMetadata`.
    pub prompt_token_count: Option<u64>,
    pub candidates_token_count: Option<u64>,
    pub cached_content_token_count: Option<u64>,
    pub thoughts_token_count: Option<u64>,
    pub tool_use_prompt_token_count: Option<u64>,
    // Ollama's own API, at the top of its answer.
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    /// Web searches billed per search, as Anthropic's usage reports them
    /// (`server_tool_use.web_search_requests`): its final count leaves out the
    /// searches that failed, which are not billed.
    pub web_searches: Option<u64>,
    /// Web searches counted beside the usage ([`super::web_searches`]): the Responses
    /// API's `web_search_call` items, Gemini's queries.
    pub search_items: Option<u64>,
    /// What the answer cost: xAI's `cost_in_usd_ticks`, ten billion to the dollar.
    pub cost_in_usd_ticks: Option<u64>,
    /// What the answer cost in US dollars: OpenRouter's `cost` (a number), or
    /// Perplexity's (an object, its `total_cost`).
    pub cost_usd: Option<f64>,
    /// OpenRouter's `is_byok`: the call ran on the operator's own provider key, which
    /// the provider bills apart from OpenRouter's `cost`.
    pub byok: bool,
    /// OpenRouter's `cost_details.upstream_inference_cost`, in US dollars: what the
    /// provider bills for a call on the operator's own key.
    pub upstream_cost_usd: Option<f64>,
}

/// The breakdown under a count: cached input, reasoning output.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Details {
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

/// A `usage` member's value into `slot` (left empty for `null`); `None` when it is
/// not a usage object.
pub(super) fn read_usage(value: &[u8], slot: &mut Option<RawUsage>) -> Option<()> {
    let mut scan = Scan::of(value);
    scan.usage(slot)?;
    scan.at_end().then_some(())
}

/// What a `message` or `response` member's value carries, member by member the
/// first of each found.
#[derive(Debug, Default)]
pub(super) struct Nested<'a> {
    pub usage: Option<RawUsage>,
    pub model: Option<String>,
    /// Its `id`, as the JSON text of its value.
    pub id: Option<&'a [u8]>,
    /// It says `"background": true` (a Responses API response run apart from any
    /// request).
    pub background: bool,
    /// The web searches its `output` lists (a Responses API response's).
    pub searches: Option<u64>,
}

/// The usage, model, id and background flag of a `message` or `response` member's
/// value into what `found` has not got yet; `None` when it is not an object (or
/// `null`), or its usage or model is not one.
pub(super) fn read_nested<'a>(value: &'a [u8], found: &mut Nested<'a>) -> Option<()> {
    let mut scan = Scan::of(value);
    if !scan.null() {
        scan.members(|scan, key| {
            let start = scan.at;
            match key {
                // Gemini's answers (a batch's responses) say `usageMetadata` and
                // `modelVersion`.
                b"usage" | b"usageMetadata" if found.usage.is_none() => {
                    return scan.usage(&mut found.usage)
                }
                b"model" | b"modelVersion" if found.model.is_none() => {
                    scan.skip()?;
                    found.model = read_model(&scan.doc[start..scan.at])?;
                }
                b"id" if found.id.is_none() => {
                    scan.skip()?;
                    found.id = Some(&scan.doc[start..scan.at]);
                }
                b"background" => {
                    scan.skip()?;
                    found.background |= &scan.doc[start..scan.at] == b"true";
                }
                b"output" if found.searches.is_none() => {
                    scan.skip()?;
                    found.searches = Some(output_searches(&scan.doc[start..scan.at]));
                }
                _ => return scan.skip(),
            }
            Some(())
        })?;
    }
    scan.at_end().then_some(())
}

/// A `model` member's value: a string, or `null`; `None` when it is neither.
pub(super) fn read_model(value: &[u8]) -> Option<Option<String>> {
    json_text(value)
}

/// The JSON text `value` read as `T`; bytes in it that are not UTF-8 read as a
/// decoder replaces them, so a name mangled on the wire does not cost the usage
/// beside it (serde refuses such a string).
fn json_text<T: serde::de::DeserializeOwned>(value: &[u8]) -> Option<T> {
    serde_json::from_slice(value).ok().or_else(|| {
        let text = String::from_utf8_lossy(value);
        matches!(text, std::borrow::Cow::Owned(_))
            .then(|| serde_json::from_str(&text).ok())
            .flatten()
    })
}

/// A count member's value (Ollama's `prompt_eval_count`, `eval_count`); `None` when
/// it is not a count.
pub(super) fn read_count(value: &[u8]) -> Option<Option<u64>> {
    let mut scan = Scan::of(value);
    let count = scan.count()?;
    scan.at_end().then_some(count)
}

/// A forward reader over one JSON value.
struct Scan<'a> {
    doc: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn of(doc: &'a [u8]) -> Self {
        let mut scan = Self { doc, at: 0 };
        scan.ws();
        scan
    }

    fn ws(&mut self) {
        self.at = skip_ws(self.doc, self.at);
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.ws();
        self.at == self.doc.len()
    }

    /// Past a `null` here, if there is one.
    fn null(&mut self) -> bool {
        let null = self
            .doc
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(b"null"));
        if null {
            self.at += 4;
        }
        null
    }

    /// Each member of the object here, its key given to `each` with the scan at its
    /// value, which `each` reads or skips.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.ws();
            each(self, &key)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.ws();
                }
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The key here, its escapes read (keys rarely have any).
    fn key(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let mut at = start;
        loop {
            match *self.doc.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(Cow::Borrowed(&self.doc[start..at]));
                }
                b'\\' => break,
                _ => at += 1,
            }
        }
        let end = string_end(self.doc, self.at)?;
        let key: String = json_text(&self.doc[self.at..end])?;
        self.at = end;
        Some(Cow::Owned(key.into_bytes()))
    }

    /// A count: a non-negative integer, or `null`.
    fn count(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let rest = self.doc.get(self.at..)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let text = &rest[..digits];
        // JSON writes no leading zeros; a sign, fraction or exponent is no count.
        let ends = rest.get(digits).is_none_or(|&b| ends_scalar(b));
        if digits == 0 || (digits > 1 && text[0] == b'0') || !ends {
            return None;
        }
        self.at += digits;
        text.iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .map(Some)
    }

    /// A usage object into `slot`, made there (left as it is for `null`).
    fn usage(&mut self, slot: &mut Option<RawUsage>) -> Option<()> {
        if self.null() {
            return Some(());
        }
        let u = slot.insert(RawUsage::default());
        self.members(|scan, key| {
            let count = match key {
                b"input_tokens" => &mut u.input_tokens,
                b"output_tokens" => &mut u.output_tokens,
                b"cache_read_input_tokens" => &mut u.cache_read_input_tokens,
                b"cache_creation_input_tokens" => &mut u.cache_creation_input_tokens,
                b"prompt_tokens" => &mut u.prompt_tokens,
                b"completion_tokens" => &mut u.completion_tokens,
                b"total_tokens" => &mut u.total_tokens,
                b"prompt_cache_hit_tokens" => &mut u.prompt_cache_hit_tokens,
                b"prompt_tokens_details" => return scan.details(&mut u.prompt_tokens_details),
                b"completion_tokens_details" => {
                    return scan.details(&mut u.completion_tokens_details)
                }
                b"input_tokens_details" => return scan.details(&mut u.input_tokens_details),
                b"output_tokens_details" => return scan.details(&mut u.output_tokens_details),
                b"promptTokenCount" => &mut u.prompt_token_count,
                b"candidatesTokenCount" => &mut u.candidates_token_count,
                b"cachedContentTokenCount" => &mut u.cached_content_token_count,
                b"thoughtsTokenCount" => &mut u.thoughts_token_count,
                b"toolUsePromptTokenCount" => &mut u.tool_use_prompt_token_count,
                b"server_tool_use" => return scan.server_tool_use(&mut u.web_searches),
                b"cost_in_usd_ticks" => {
                    u.cost_in_usd_ticks = scan.lenient_count()?;
                    return Some(());
                }
                b"cost" => {
                    u.cost_usd = scan.dollars(b"total_cost")?;
                    return Some(());
                }
                // OpenRouter with the operator's own provider key: its `cost` is its
                // fee, the provider's bill is apart.
                b"is_byok" => {
                    let at = scan.at;
                    scan.skip()?;
                    u.byok = &scan.doc[at..scan.at] == b"true";
                    return Some(());
                }
                b"cost_details" => {
                    u.upstream_cost_usd = scan.dollars(b"upstream_inference_cost")?;
                    return Some(());
                }
                _ => return scan.skip(),
            };
            *count = scan.count()?;
            Some(())
        })
    }

    /// A `*_tokens_details` object into `slot`.
    fn details(&mut self, slot: &mut Option<Details>) -> Option<()> {
        if self.null() {
            *slot = None;
            return Some(());
        }
        let d = slot.insert(Details::default());
        self.members(|scan, key| match key {
            b"cached_tokens" => {
                d.cached_tokens = scan.count()?;
                Some(())
            }
            b"reasoning_tokens" => {
                d.reasoning_tokens = scan.count()?;
                Some(())
            }
            _ => scan.skip(),
        })
    }

    /// Anthropic's `server_tool_use` object: its `web_search_requests` into `slot`
    /// (its web fetches are billed as tokens alone).
    /// Any other value, or a count in another shape, is passed over as none, as
    /// [`Self::lenient_count`] passes one: the tokens beside it are still read.
    fn server_tool_use(&mut self, slot: &mut Option<u64>) -> Option<()> {
        if self.peek()? != b'{' {
            return self.skip();
        }
        self.members(|scan, key| match key {
            b"web_search_requests" => {
                *slot = scan.lenient_count()?;
                Some(())
            }
            _ => scan.skip(),
        })
    }

    /// A count here, or none for any other value (passed over, not refused: a cost
    /// in a shape the gateway does not know costs the answer nothing of its usage).
    fn lenient_count(&mut self) -> Option<Option<u64>> {
        let start = self.at;
        self.skip()?;
        let mut value = Scan::of(&self.doc[start..self.at]);
        Some(value.count().filter(|_| value.at_end()).flatten())
    }

    /// US dollars here: a number (OpenRouter's `cost`), or an object whose `key`
    /// member is one (Perplexity's `cost.total_cost`, OpenRouter's
    /// `cost_details.upstream_inference_cost`). Any other value, or a number that is
    /// no cost (negative, past [`super::usage::MAX_COST_NANOS`]), is passed over as
    /// none, as [`Self::lenient_count`] passes a count.
    fn dollars(&mut self, key: &[u8]) -> Option<Option<f64>> {
        let start = self.at;
        self.skip()?;
        let value = &self.doc[start..self.at];
        let dollars = |text: &[u8]| {
            serde_json::from_slice::<f64>(text)
                .ok()
                .filter(|usd| usd.is_finite() && *usd >= 0.0 && *usd <= 1e6)
        };
        if value.first() != Some(&b'{') {
            return Some(dollars(value));
        }
        let mut inner = Scan::of(value);
        let mut total = None;
        inner.members(|scan, name| {
            if name != key {
                return scan.skip();
            }
            let at = scan.at;
            scan.skip()?;
            total = dollars(&scan.doc[at..scan.at]);
            Some(())
        })?;
        Some(total)
    }

    /// Past the value here, unread.
    fn skip(&mut self) -> Option<()> {
        self.at = value_end(self.doc, self.at)?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<Option<RawUsage>> {
        let mut slot = None;
        read_usage(text.as_bytes(), &mut slot)?;
        Some(slot)
    }

    #[test]
    fn counts_and_their_details_are_read_and_other_members_passed() {
        let u = read(
            r#" {"prompt_tokens": 17, "total_tokens": 21, "completion_tokens":4,
                "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 2, "more": {"a": [1, "}"]}},
                "note": "a \"quoted\" }", "cache_creation_input_tokens": null} "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.prompt_tokens, Some(17));
        assert_eq!(u.completion_tokens, Some(4));
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(3));
        assert_eq!(
            u.completion_tokens_details.unwrap().reasoning_tokens,
            Some(2)
        );
        assert_eq!(u.cache_creation_input_tokens, None);
        assert_eq!(u.input_tokens, None);
    }

    #[test]
    fn null_usage_is_none_and_an_empty_object_counts_nothing() {
        assert!(read("null").unwrap().is_none());
        let u = read("{ }").unwrap().unwrap();
        assert_eq!(u.output_tokens, None);
    }

    #[test]
    fn a_count_that_is_not_a_non_negative_integer_is_refused() {
        for bad in [
            "-1",
            "1.5",
            "1e3",
            "01",
            "\"7\"",
            "true",
            "18446744073709551616",
            "",
        ] {
            let text = format!(r#"{{"input_tokens":{bad}}}"#);
            assert!(read(&text).is_none(), "{text}");
        }
        let max = format!(r#"{{"input_tokens":{}}}"#, u64::MAX);
        assert_eq!(read(&max).unwrap().unwrap().input_tokens, Some(u64::MAX));
    }

    #[test]
    fn what_is_not_an_object_of_members_is_refused() {
        for bad in [
            "",
            "[]",
            "7",
            r#"{"input_tokens":1,}"#,
            r#"{"input_tokens" 1}"#,
            r#"{"input_tokens":1"#,
            r#"{"input_tokens":1} x"#,
            r#"{input_tokens:1}"#,
        ] {
            assert!(read(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn geminis_usage_metadata_is_read_as_usage() {
        let u = read(
            r#"{"promptTokenCount": 12, "candidatesTokenCount": 30, "totalTokenCount": 60,
                "cachedContentTokenCount": 4, "thoughtsTokenCount": 14,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.prompt_token_count, Some(12));
        assert_eq!(u.candidates_token_count, Some(30));
        assert_eq!(u.cached_content_token_count, Some(4));
        assert_eq!(u.thoughts_token_count, Some(14));
        assert_eq!(read_count(b" 7 "), Some(Some(7)));
        assert_eq!(read_count(b"null"), Some(None));
        assert_eq!(read_count(b"-7"), None);
    }

    #[test]
    fn anthropics_web_searches_are_read_from_its_server_tool_use() {
        let u = read(
            r#"{"input_tokens":10,"output_tokens":5,
                "server_tool_use":{"web_search_requests":3,"web_fetch_requests":2}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.web_searches, Some(3));
        for unknown in [
            r#"{"web_search_requests":-1}"#,
            r#"{"web_search_requests":3.0}"#,
            r#"{"web_search_requests":"3"}"#,
            "null",
            "[1]",
            "7",
        ] {
            let text = format!(r#"{{"input_tokens":4,"server_tool_use":{unknown}}}"#);
            let u = read(&text).unwrap().unwrap();
            assert_eq!(u.web_searches, None, "{unknown}");
            assert_eq!(
                u.input_tokens,
                Some(4),
                "the tokens are still read: {unknown}"
            );
        }
    }

    #[test]
    fn a_responses_web_search_calls_are_read_with_its_usage() {
        let mut found = Nested::default();
        read_nested(
            br#"{"id":"resp_1","output":[{"type":"web_search_call","id":"ws_1"},{"type":"message"}],"usage":{"input_tokens":3}}"#,
            &mut found,
        )
        .unwrap();
        assert_eq!(found.searches, Some(1));
        assert_eq!(found.usage.unwrap().input_tokens, Some(3));
    }

    #[test]
    fn the_cost_a_provider_reports_is_read_in_its_shape() {
        let cost = |text: &str| {
            let u = read(text).unwrap().unwrap();
            (u.cost_in_usd_ticks, u.cost_usd)
        };
        // xAI.
        assert_eq!(
            cost(r#"{"prompt_tokens":1,"cost_in_usd_ticks":37756000}"#),
            (Some(37_756_000), None)
        );
        // OpenRouter.
        assert_eq!(
            cost(r#"{"prompt_tokens":1,"cost":0.0123,"is_byok":false}"#),
            (None, Some(0.0123))
        );
        // Perplexity.
        assert_eq!(
            cost(
                r#"{"prompt_tokens":1,"cost":{"input_tokens_cost":0.001,"request_cost":0.005,"total_cost":0.006}}"#
            ),
            (None, Some(0.006))
        );
        // Shapes that say no cost pass as none, and the counts are still read.
        for unknown in [
            r#""0.5""#,
            "-1",
            "null",
            "1e400",
            "2000000",
            r#"{"total_cost":"x"}"#,
            "[1]",
        ] {
            let text = format!(r#"{{"prompt_tokens":3,"cost":{unknown}}}"#);
            let u = read(&text).unwrap().unwrap();
            assert_eq!(u.cost_usd, None, "{unknown}");
            assert_eq!(u.prompt_tokens, Some(3), "{unknown}");
        }
        for unknown in ["-5", "1.5", r#""7""#, "18446744073709551616"] {
            let text = format!(r#"{{"prompt_tokens":3,"cost_in_usd_ticks":{unknown}}}"#);
            let u = read(&text).unwrap().unwrap();
            assert_eq!(u.cost_in_usd_ticks, None, "{unknown}");
            assert_eq!(u.prompt_tokens, Some(3), "{unknown}");
        }
        // OpenRouter on the operator's own provider key.
        let byok = read(
            r#"{"prompt_tokens":1,"cost":0.001,"is_byok":true,"cost_details":{"upstream_inference_cost":0.019}}"#,
        )
        .unwrap()
        .unwrap();
        assert!(byok.byok);
        assert_eq!(byok.upstream_cost_usd, Some(0.019));
    }

    #[test]
    fn escaped_keys_are_read_as_their_text() {
        let u = read(r#"{"output\u005ftokens":9,"a\"b":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!(u.output_tokens, Some(9));
    }
}
