//! Telling a provider's "the prompt is too long for this model" apart from its other
//! refusals, whatever its format: a fallback may take such a prompt, and an Anthropic
//! client (Claude Code compacts its conversation on it) is told it in Anthropic's words.

/// Whether an error answer says the prompt is too long for the model: OpenAI's
/// `context_length_exceeded`, Anthropic's "prompt is too long", and the wording of
/// OpenAI-compatible servers.
pub fn is_context_overflow(status: u16, body: &[u8]) -> bool {
    matches!(status, 400 | 413 | 422) && says_context_overflow(body)
}

/// Whether `text` (an error answer, or an error event a stream ends with) says the
/// prompt is too long for the model, in the words of any provider.
pub fn says_context_overflow(text: &[u8]) -> bool {
    const SIGNS: [&[u8]; 6] = [
        b"context_length_exceeded",
        b"prompt is too long",
        b"maximum context length",
        b"context window",
        b"too many tokens",
        // Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
        b"exceeds the maximum number of tokens",
    ];
    SIGNS.iter().any(|sign| {
        text.windows(sign.len())
            .any(|w| w.eq_ignore_ascii_case(sign))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_too_long_is_told_apart_from_other_refusals() {
        let openai = br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#;
        assert!(is_context_overflow(400, openai));
        assert!(is_context_overflow(400, anthropic));
        let gemini = br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert!(is_context_overflow(400, gemini));
        assert!(!is_context_overflow(
            400,
            br#"{"error":{"message":"bad tool"}}"#
        ));
        assert!(!is_context_overflow(500, openai));
    }
}
