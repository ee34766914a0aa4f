//! Anthropic's message batch objects name where their results are read,
//! `results_url`: an address at the provider, which a client of the gateway holds no
//! key for (the SDKs fetch it as given, sending the gateway's key to the provider).
//! A batch object answered through `/p/` is held whole and each such address that
//! points below the provider's base URL is rewritten to the same endpoint below the
//! gateway's `/p/{provider}/` address, as the client reached it.

use bytes::Bytes;
use memchr::memmem;

/// The most of a batch object (or a page of them) held to rewrite; a larger answer
/// passes as it is.
pub const MAX_HELD: usize = 4 * 1024 * 1024;

/// Rewrites the `results_url` members of one answer, held until its end.
#[derive(Debug)]
pub struct ResultsUrlRewrite {
    /// `scheme://host[:port]/base-path/` of the provider.
    from: String,
    /// `scheme://host[:port]/p/{provider}/` of the gateway.
    to: String,
    held: Vec<u8>,
    /// Past [`MAX_HELD`]: the rest passes as it comes.
    passing: bool,
}

impl ResultsUrlRewrite {
    /// A rewrite of addresses below `from` to the same paths below `to`; `None` when
    /// `to` is not fit to stand in a JSON string as it is (a `Host` with a quote, a
    /// backslash or a control character).
    pub fn new(from: String, to: String) -> Option<Self> {
        let plain = |s: &str| !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        (plain(&from) && plain(&to)).then_some(Self {
            from,
            to,
            held: Vec::new(),
            passing: false,
        })
    }

    /// The bytes the client gets for `chunk` (nothing while the answer is held);
    /// at `end_of_stream`, the answer rewritten.
    pub fn pass(&mut self, chunk: Option<Bytes>, end_of_stream: bool) -> Bytes {
        if self.passing {
            return chunk.unwrap_or_default();
        }
        if let Some(chunk) = &chunk {
            if self.held.len() + chunk.len() > MAX_HELD {
                self.passing = true;
                let mut out = std::mem::take(&mut self.held);
                out.extend_from_slice(chunk);
                return Bytes::from(out);
            }
            self.held.extend_from_slice(chunk);
        }
        if !end_of_stream {
            return Bytes::new();
        }
        let held = std::mem::take(&mut self.held);
        Bytes::from(rewritten(&held, &self.from, &self.to).unwrap_or(held))
    }
}

/// `doc` with each `"results_url": "{from}…"` value's `from` (its slashes written as
/// they are or escaped, `\/`) replaced by `to`; `None` when there is none.
pub fn rewritten(doc: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let escaped = from.replace('/', "\\/");
    const KEY: &[u8] = b"\"results_url\"";
    let mut out = Vec::new();
    let mut copied = 0;
    for at in memmem::find_iter(doc, KEY) {
        if at < copied {
            continue;
        }
        let mut i = at + KEY.len();
        let skip_ws = |i: &mut usize| {
            while doc.get(*i).is_some_and(u8::is_ascii_whitespace) {
                *i += 1;
            }
        };
        skip_ws(&mut i);
        if doc.get(i) != Some(&b':') {
            // The text inside a string, not a key.
            continue;
        }
        i += 1;
        skip_ws(&mut i);
        if doc.get(i) != Some(&b'"') {
            continue;
        }
        let value = &doc[i + 1..];
        let Some(spelled) = [from, escaped.as_str()]
            .into_iter()
            .find(|f| value.starts_with(f.as_bytes()))
        else {
            continue;
        };
        out.extend_from_slice(&doc[copied..=i]);
        out.extend_from_slice(to.as_bytes());
        copied = i + 1 + spelled.len();
    }
    if copied == 0 {
        return None;
    }
    out.extend_from_slice(&doc[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "https://api.anthropic.com/v1/";
    const TO: &str = "http://gw.internal:8080/p/anthropic/v1/";

    fn batch(id: &str, results: &str) -> String {
        format!(
            r#"{{"id":"{id}","type":"message_batch","processing_status":"ended","request_counts":{{"processing":0,"succeeded":2,"errored":0,"canceled":0,"expired":0}},"ended_at":"2026-12-06T02:00:00Z","created_at":"2026-12-06T01:00:00Z","expires_at":"2026-12-07T01:00:00Z","cancel_initiated_at":null,"results_url":{results}}}"#
        )
    }

    #[test]
    fn a_batchs_results_url_points_at_the_gateway() {
        let doc = batch(
            "msgbatch_1",
            r#""https://api.anthropic.com/v1/messages/batches/msgbatch_1/results""#,
        );
        let out = rewritten(doc.as_bytes(), FROM, TO).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["results_url"],
            "http://gw.internal:8080/p/anthropic/v1/messages/batches/msgbatch_1/results"
        );
        assert_eq!(v["id"], "msgbatch_1");
    }

    #[test]
    fn escaped_slashes_are_the_same_address() {
        let doc =
            r#"{"results_url" : "https:\/\/api.anthropic.com\/v1\/messages\/batches\/m\/results"}"#;
        let out = rewritten(doc.as_bytes(), FROM, TO).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["results_url"], format!("{TO}messages/batches/m/results"));
    }

    #[test]
    fn every_batch_of_a_page_is_rewritten_and_nothing_else() {
        let page = format!(
            r#"{{"data":[{},{},{}],"has_more":false,"note":"\"results_url\": \"https://api.anthropic.com/v1/x\""}}"#,
            batch(
                "a",
                r#""https://api.anthropic.com/v1/messages/batches/a/results""#
            ),
            batch("b", "null"),
            batch("c", r#" "https://elsewhere.example/v1/c/results""#),
        );
        let out = rewritten(page.as_bytes(), FROM, TO).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["data"][0]["results_url"],
            format!("{TO}messages/batches/a/results")
        );
        assert!(v["data"][1]["results_url"].is_null());
        assert_eq!(
            v["data"][2]["results_url"],
            "https://elsewhere.example/v1/c/results"
        );
        assert_eq!(
            v["note"],
            r#""results_url": "https://api.anthropic.com/v1/x""#
        );
        assert_eq!(rewritten(batch("b", "null").as_bytes(), FROM, TO), None);
    }

    #[test]
    fn the_answer_is_held_to_its_end_and_a_large_one_passes() {
        let doc = batch(
            "m",
            r#""https://api.anthropic.com/v1/messages/batches/m/results""#,
        );
        let mut rewrite = ResultsUrlRewrite::new(FROM.into(), TO.into()).unwrap();
        let (head, tail) = doc.as_bytes().split_at(40);
        assert!(rewrite
            .pass(Some(Bytes::copy_from_slice(head)), false)
            .is_empty());
        let out = rewrite.pass(Some(Bytes::copy_from_slice(tail)), true);
        assert!(String::from_utf8_lossy(&out).contains(TO));

        let mut rewrite = ResultsUrlRewrite::new(FROM.into(), TO.into()).unwrap();
        assert!(rewrite
            .pass(Some(Bytes::from(vec![b' '; 10])), false)
            .is_empty());
        let big = rewrite.pass(Some(Bytes::from(vec![b' '; MAX_HELD])), false);
        assert_eq!(big.len(), MAX_HELD + 10);
        assert_eq!(rewrite.pass(Some(Bytes::from_static(b"x")), true), "x");

        assert!(ResultsUrlRewrite::new(FROM.into(), "http://a\"b/".into()).is_none());
    }
}
