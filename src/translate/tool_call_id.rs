//! Tool-call ids as a provider takes them.
//!
//! Mistral takes only ids of exactly nine ASCII letters and digits (400, code 3280);
//! Claude Code's (`toolu_…`) and Codex's (`call_…`) are longer, and reach it when a
//! conversation begun on another model goes on there. Each other id becomes nine
//! letters and digits of its SHA-256: the same in a call and in its result, and from
//! turn to turn, as an agent sends its whole conversation again. An id already of that
//! form (Mistral's own, which come back with the next turn) is kept.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// How many characters such a provider's ids have.
const SHORT_ID_LEN: usize = 9;

const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `id` as the provider takes it: unchanged, unless `short` (the provider takes only
/// nine letters and digits) and it is not of that form.
pub(super) fn provider_tool_call_id(id: &str, short: bool) -> Cow<'_, str> {
    if !short || is_short_id(id) {
        return Cow::Borrowed(id);
    }
    let mut short_id = String::with_capacity(SHORT_ID_LEN);
    push_digest(&mut short_id, id);
    Cow::Owned(short_id)
}

/// `id` as Anthropic takes a `tool_use` id and a `tool_result`'s `tool_use_id`: only
/// letters, digits, `_` and `-` (400 "String should match pattern
/// '^[a-zA-Z0-9_-]+$'"). Other providers' ids reach it when a conversation begun on
/// one of them goes on there (Kimi K2's `functions.shell:0`): each other character
/// becomes `_`, and nine letters and digits of the id's SHA-256 follow, so that two
/// ids differing only there stay two; the same in a call and in its result, and from
/// turn to turn. An id Anthropic takes is kept.
pub(super) fn anthropic_tool_use_id(id: &str) -> Cow<'_, str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !id.is_empty() && id.bytes().all(allowed) {
        return Cow::Borrowed(id);
    }
    let mut taken = String::with_capacity(id.len() + 1 + SHORT_ID_LEN);
    taken.extend(id.chars().map(|c| {
        if c.is_ascii() && allowed(c as u8) {
            c
        } else {
            '_'
        }
    }));
    if !taken.is_empty() {
        taken.push('_');
    }
    push_digest(&mut taken, id);
    Cow::Owned(taken)
}

/// Appends nine letters and digits of `id`'s SHA-256.
fn push_digest(out: &mut String, id: &str) {
    let digest = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 62^9 is below 2^64: nine base-62 digits of 64 bits of the hash.
    let mut n = u64::from_be_bytes(head);
    for _ in 0..SHORT_ID_LEN {
        out.push(char::from(ALPHANUMERIC[(n % 62) as usize]));
        n /= 62;
    }
}

fn is_short_id(id: &str) -> bool {
    id.len() == SHORT_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_ids_become_nine_letters_and_digits_the_same_every_time() {
        for id in ["toolu_01A09q90qw90lq917835lq9", "call_1", "", "é"] {
            let short = provider_tool_call_id(id, true);
            assert!(is_short_id(&short), "{id} → {short}");
            assert_eq!(short, provider_tool_call_id(id, true));
        }
        assert_ne!(
            provider_tool_call_id("call_1", true),
            provider_tool_call_id("call_2", true)
        );
    }

    #[test]
    fn ids_anthropic_refuses_become_ones_it_takes_the_same_every_time() {
        let takes = |id: &str| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        for id in ["functions.shell:0", "call 1", "", "é", "a/b"] {
            let taken = anthropic_tool_use_id(id);
            assert!(takes(&taken), "{id} → {taken}");
            assert_eq!(taken, anthropic_tool_use_id(id));
        }
        assert!(anthropic_tool_use_id("functions.shell:0").starts_with("functions_shell_0_"));
        // Two ids that differ only in a replaced character stay two.
        assert_ne!(
            anthropic_tool_use_id("functions.shell:0"),
            anthropic_tool_use_id("functions.shell.0")
        );
        for id in ["toolu_01A09q90qw90lq917835lq9", "call_abc-1", "D681PevKs"] {
            assert_eq!(anthropic_tool_use_id(id), id);
        }
    }

    #[test]
    fn ids_already_short_and_ids_for_other_providers_are_kept() {
        assert_eq!(provider_tool_call_id("D681PevKs", true), "D681PevKs");
        assert_eq!(provider_tool_call_id("call_1", false), "call_1");
    }
}
