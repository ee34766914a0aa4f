//! Reading the commonest OpenAI stream chunk, a text (or reasoning) delta of
//! the first choice, without serde: a stream is mostly these, and a general
//! JSON parse of the members around the text (`id`, `model`,
//! `system_fingerprint`, `obfuscation`…) costs more than the rest of their
//! translation.

/// What the translator reads from a chunk the fast path accepted. Every
/// string is as written in the data, which needed no unescaping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ContentChunk<'a> {
    /// The chunk's `id`.
    pub(super) id: Option<&'a str>,
    /// `delta.content` of the first choice.
    pub(super) content: Option<&'a str>,
    /// `delta.reasoning_content` of the first choice.
    pub(super) reasoning_content: Option<&'a str>,
    /// `delta.reasoning` of the first choice.
    pub(super) reasoning: Option<&'a str>,
    /// `delta.refusal` of the first choice.
    pub(super) refusal: Option<&'a str>,
}

/// Reads `data` when it is a chunk in a plain form, such as
/// `{"id":"c1","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}`:
/// no whitespace, no escapes in keys or strings, no repeated member the
/// translator reads, at most one choice (of index 0) with a null (or `""`,
/// `"null"`) `finish_reason`, `usage` null or absent, no `error`, no tool calls, and
/// every member the translator ignores a string, a non-negative integer,
/// `true`, `false` or `null`. Any other data gives `None`, and the caller
/// parses it with serde, which reads data in this form to the same values.
pub(super) fn content_chunk(data: &str) -> Option<ContentChunk<'_>> {
    let mut c = Cursor { data, pos: 0 };
    let mut chunk = ContentChunk::default();
    let (mut id, mut choices, mut usage) = (false, false, false);
    c.object(|c, key| match key {
        "id" => {
            first(&mut id)?;
            chunk.id = Some(c.string()?);
            Some(())
        }
        "choices" => {
            first(&mut choices)?;
            c.choices(&mut chunk)
        }
        "usage" => {
            first(&mut usage)?;
            c.literal("null")
        }
        "error" => None,
        _ => c.ignored(),
    })?;
    (c.pos == data.len()).then_some(chunk)
}

/// Marks a member as seen; `None` when it was already, since serde refuses
/// a repeated field.
fn first(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// The bytes that end a string in the accepted form: its closing quote, an
/// escape, or a control character (a malformed string). One table lookup
/// per byte rather than three comparisons.
static ENDS_PLAIN_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A position in the data being read. Each reader returns `None` as soon as
/// the data leaves the accepted form.
struct Cursor<'a> {
    data: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.data.as_bytes().get(self.pos).copied()
    }

    fn literal(&mut self, lit: &str) -> Option<()> {
        let rest = self.data.get(self.pos..)?;
        rest.starts_with(lit).then(|| self.pos += lit.len())
    }

    /// A string without escapes or control characters (which JSON forbids
    /// unescaped), returned without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.literal("\"")?;
        let start = self.pos;
        let rest = self.data.as_bytes().get(start..)?;
        let len = rest
            .iter()
            .position(|&b| ENDS_PLAIN_STRING[usize::from(b)])?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        self.data.get(start..start + len)
    }

    /// A string or `null`, as read into an optional text.
    fn string_or_null(&mut self) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A member the translator does not read: a string, an integer without
    /// sign, fraction or exponent, `true`, `false` or `null`.
    fn ignored(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'0' => self.literal("0"),
            b'1'..=b'9' => {
                let digits = self
                    .data
                    .as_bytes()
                    .get(self.pos..)?
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                self.pos += digits;
                Some(())
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => None,
        }
    }

    /// An object, each member's value read by `member` given its key.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.literal("{")?;
        if self.literal("}").is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.literal(":")?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `choices`: empty, or one choice of index 0 still streaming.
    fn choices(&mut self, chunk: &mut ContentChunk<'a>) -> Option<()> {
        self.literal("[")?;
        if self.literal("]").is_some() {
            return Some(());
        }
        let (mut index, mut delta, mut finish) = (false, false, false);
        self.object(|c, key| match key {
            "index" => {
                first(&mut index)?;
                c.literal("0")
            }
            "delta" => {
                first(&mut delta)?;
                c.delta(chunk)
            }
            "finish_reason" => {
                first(&mut finish)?;
                c.no_finish_reason()
            }
            _ => c.ignored(),
        })?;
        self.literal("]")
    }

    /// A `finish_reason` saying the choice goes on: `null`, or the `""` and `"null"`
    /// that SGLang, older Ollama and KoboldCpp write on every chunk (serde reads all
    /// three as none).
    fn no_finish_reason(&mut self) -> Option<()> {
        self.literal("null")
            .or_else(|| self.literal(r#""""#))
            .or_else(|| self.literal(r#""null""#))
    }

    /// A choice's `delta`: text members and members the translator ignores.
    fn delta(&mut self, chunk: &mut ContentChunk<'a>) -> Option<()> {
        let mut tool_calls = false;
        let (mut content, mut reasoning_content, mut reasoning, mut refusal) =
            (false, false, false, false);
        self.object(|c, key| {
            let (seen, field) = match key {
                "content" => (&mut content, &mut chunk.content),
                "reasoning_content" => (&mut reasoning_content, &mut chunk.reasoning_content),
                "reasoning" => (&mut reasoning, &mut chunk.reasoning),
                "refusal" => (&mut refusal, &mut chunk.refusal),
                "tool_calls" => {
                    first(&mut tool_calls)?;
                    return c.literal("null");
                }
                _ => return c.ignored(),
            };
            first(seen)?;
            *field = c.string_or_null()?;
            Some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = r#"{"id":"chatcmpl-D0q8","object":"chat.completion.chunk","created":1769092764,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_29330a9688","choices":[{"index":0,"delta":{"content":" Zürich 😊"},"logprobs":null,"finish_reason":null}],"obfuscation":"ZGF"}"#;

    #[test]
    fn reads_openai_content_chunks() {
        assert_eq!(
            content_chunk(OPENAI),
            Some(ContentChunk {
                id: Some("chatcmpl-D0q8"),
                content: Some(" Zürich 😊"),
                ..ContentChunk::default()
            })
        );
        let first = r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#;
        assert_eq!(
            content_chunk(first),
            Some(ContentChunk {
                id: Some("c"),
                content: Some(""),
                ..ContentChunk::default()
            })
        );
    }

    #[test]
    fn reads_reasoning_and_empty_chunks() {
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"Think","reasoning":null,"content":null,"tool_calls":null}}]}"#;
        assert_eq!(
            content_chunk(reasoning),
            Some(ContentChunk {
                reasoning_content: Some("Think"),
                ..ContentChunk::default()
            })
        );
        for data in [
            "{}",
            r#"{"choices":[]}"#,
            r#"{"choices":[{}]}"#,
            r#"{"choices":[{"delta":{}}]}"#,
        ] {
            assert_eq!(content_chunk(data), Some(ContentChunk::default()), "{data}");
        }
    }

    #[test]
    fn reads_an_empty_or_null_string_finish_reason_as_none() {
        // SGLang, older Ollama and KoboldCpp write these on chunks still streaming.
        for finish in [r#""""#, r#""null""#] {
            let data = format!(
                r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"Hi"}},"finish_reason":{finish}}}]}}"#
            );
            assert_eq!(
                content_chunk(&data),
                Some(ContentChunk {
                    id: Some("c"),
                    content: Some("Hi"),
                    ..ContentChunk::default()
                }),
                "{data}"
            );
        }
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for data in [
            // Whitespace, escapes and control characters.
            r#"{"id":"c", "choices":[]}"#,
            r#"{"choices":[{"delta":{"content":"a\nb"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a\"b"}}]}"#,
            "{\"choices\":[{\"delta\":{\"content\":\"a\tb\"}}]}",
            r#"{"i\u0064":"c"}"#,
            r#"{"model":"a\/b"}"#,
            // Members the translator reads beyond text.
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"error":{"message":"x"}}"#,
            r#"{"error":null}"#,
            r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{}}]}"#,
            r#"{"choices":[{"delta":null}]}"#,
            r#"{"id":null}"#,
            r#"{"choices":null}"#,
            // Texts that are not strings.
            r#"{"choices":[{"delta":{"reasoning":{"text":"x"}}}]}"#,
            r#"{"choices":[{"delta":{"content":1}}]}"#,
            // Repeated members serde refuses.
            r#"{"id":"a","id":"b"}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"index":0,"index":0}]}"#,
            // Ignored members of other types or numbers in other forms.
            r#"{"created":1.5}"#,
            r#"{"created":-1}"#,
            r#"{"created":01}"#,
            r#"{"created":1e3}"#,
            r#"{"x_groq":{"id":"q"}}"#,
            r#"{"logprobs":[]}"#,
            // Not one whole object.
            r#"{"id":"c"} "#,
            r#"{"id":"c"}{}"#,
            r#"{"id":"c""#,
            r#"{"id":"c",}"#,
            r#"["c"]"#,
            "",
        ] {
            assert_eq!(content_chunk(data), None, "{data}");
        }
    }
}
