//! The most output tokens each Claude family answers with, for a translated request
//! that names no limit: Anthropic requires `max_tokens`, where an OpenAI client that
//! leaves it out means the model's own maximum (Codex never sends one). A limit past
//! the model's is refused by Anthropic, so a family not listed gets none from here.

/// Lowercase name prefixes and their families' output ceilings, the more specific
/// first (Anthropic's model overview).
const CEILINGS: &[(&str, u32)] = &[
    ("claude-3-haiku", 4_096),
    ("claude-3-opus", 4_096),
    ("claude-3-sonnet", 4_096),
    ("claude-3-5-", 8_192),
    ("claude-3-7-sonnet", 64_000),
    ("claude-opus-4-0", 32_000),
    ("claude-opus-4-1", 32_000),
    // `claude-opus-4-20250514`, Opus 4's dated name.
    ("claude-opus-4-2025", 32_000),
    // Sonnet 4, the 4.5 family and every later Claude answer with 64,000 at least.
    ("claude-", 64_000),
];

/// The output ceiling of `model`'s Claude family, if it is one.
pub fn claude_output_ceiling(model: &str) -> Option<u32> {
    CEILINGS.iter().find_map(|&(prefix, ceiling)| {
        model
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            .then_some(ceiling)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_claude_family_has_its_own_ceiling_and_others_none() {
        for (model, ceiling) in [
            ("claude-3-haiku-20240307", Some(4_096)),
            ("claude-3-5-haiku-latest", Some(8_192)),
            ("claude-3-5-sonnet-20241022", Some(8_192)),
            ("claude-3-7-sonnet-20250219", Some(64_000)),
            ("claude-opus-4-20250514", Some(32_000)),
            ("claude-opus-4-1-20250805", Some(32_000)),
            ("claude-sonnet-4-20250514", Some(64_000)),
            ("Claude-Sonnet-4-5", Some(64_000)),
            ("claude-opus-4-5", Some(64_000)),
            ("claude-haiku-4-5-20251001", Some(64_000)),
            ("glm-4.6", None),
            ("gpt-4o", None),
            ("claude", None),
        ] {
            assert_eq!(claude_output_ceiling(model), ceiling, "{model}");
        }
    }
}
