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
    let digest = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 62^9 is below 2^64: nine base-62 digits of 64 bits of the hash.
    let mut n = u64::from_be_bytes(head);
    let mut short_id = String::with_capacity(SHORT_ID_LEN);
    for _ in 0..SHORT_ID_LEN {
        short_id.push(char::from(ALPHANUMERIC[(n % 62) as usize]));
        n /= 62;
    }
    Cow::Owned(short_id)
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
    fn ids_already_short_and_ids_for_other_providers_are_kept() {
        assert_eq!(provider_tool_call_id("D681PevKs", true), "D681PevKs");
        assert_eq!(provider_tool_call_id("call_1", false), "call_1");
    }
}
