//! The most output tokens each Claude family answers with, for a translated request
//! that names no limit: Anthropic requires `max_tokens`, where an OpenAI client that
//! leaves it out means the model's own maximum (Codex never sends one). A limit past
//! the model's is refused by Anthropic, so a family not listed gets none from here.

/// What follows `claude-` in the names of the families with a smaller ceiling than
/// [`LATER_CEILING`], lowercase, the more specific first (Anthropic's model overview).
const OLDER_CEILINGS: &[(&str, u32)] = &[
    ("3-haiku", 4_096),
    ("3-opus", 4_096),
    ("3-sonnet", 4_096),
    ("3-5-", 8_192),
    ("3-7-sonnet", 64_000),
    ("opus-4-0", 32_000),
    ("opus-4-1", 32_000),
    // `claude-opus-4-20250514`, Opus 4's dated name.
    ("opus-4-2025", 32_000),
];

/// Sonnet 4, the 4.5 family and every later Claude answer with 64,000 at least.
const LATER_CEILING: u32 = 64_000;

/// The output ceiling of `model`'s Claude family, if it is one. Asked for every
/// translated call to an Anthropic-format provider: most names are told by their
/// first letters.
pub fn claude_output_ceiling(model: &str) -> Option<u32> {
    const CLAUDE: &str = "claude-";
    let head = model.get(..CLAUDE.len())?;
    if !head.eq_ignore_ascii_case(CLAUDE) {
        return None;
    }
    let rest = &model[CLAUDE.len()..];
    // Only `3…` and `opus-4…` names are older families.
    if !matches!(rest.as_bytes().first(), Some(b'3' | b'o' | b'O')) {
        return Some(LATER_CEILING);
    }
    let ceiling = OLDER_CEILINGS.iter().find_map(|&(start, ceiling)| {
        rest.get(..start.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(start))
            .then_some(ceiling)
    });
    Some(ceiling.unwrap_or(LATER_CEILING))
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
