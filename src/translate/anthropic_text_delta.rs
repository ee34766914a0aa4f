//! Reading the commonest Anthropic stream event, a text or thinking delta,
//! without serde: a stream is mostly these, and a general JSON parse costs
//! more than the rest of their translation.

/// A `content_block_delta` event whose delta is a `text_delta` or a
/// `thinking_delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PlainTextDelta<'a> {
    /// The content block's index.
    pub(super) index: u64,
    /// A `thinking_delta` rather than a `text_delta`.
    pub(super) thinking: bool,
    /// The text, which needed no unescaping.
    pub(super) text: &'a str,
}

const START: &str = r#"{"type":"content_block_delta","index":"#;
const DELTA: &str = r#","delta":{"type":""#;
const TEXT: &str = r#"text_delta","text":""#;
const THINKING: &str = r#"thinking_delta","thinking":""#;
const END: &str = r#""}}"#;

/// Reads `data` when it is exactly in the form Anthropic writes, such as
/// `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`,
/// with no whitespace, no other member and a text without escapes or
/// control characters. Any other data gives `None`, and the caller parses
/// it with serde, which reads data in this form to the same values.
pub(super) fn plain_text_delta(data: &str) -> Option<PlainTextDelta<'_>> {
    let rest = data.strip_prefix(START)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    // JSON allows no leading zero; `parse` fails on an empty or overlong number.
    if number.len() > 1 && number.starts_with('0') {
        return None;
    }
    let index = number.parse().ok()?;
    let rest = rest.strip_prefix(DELTA)?;
    let (thinking, rest) = match rest.strip_prefix(TEXT) {
        Some(rest) => (false, rest),
        None => (true, rest.strip_prefix(THINKING)?),
    };
    let text = rest.strip_suffix(END)?;
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return None;
    }
    Some(PlainTextDelta {
        index,
        thinking,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_thinking_deltas() {
        let text = r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":" Zürich 😊"}}"#;
        assert_eq!(
            plain_text_delta(text),
            Some(PlainTextDelta {
                index: 12,
                thinking: false,
                text: " Zürich 😊"
            })
        );
        let thinking = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":""}}"#;
        assert_eq!(
            plain_text_delta(thinking),
            Some(PlainTextDelta {
                index: 0,
                thinking: true,
                text: ""
            })
        );
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for data in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\nb"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"b"}}"#,
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\tb\"}}",
            r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":1.0,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":99999999999999999999,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}} "#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":1}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            r#"{"type": "content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
        ] {
            assert_eq!(plain_text_delta(data), None, "{data}");
        }
    }
}
