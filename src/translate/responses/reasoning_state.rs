//! A reasoning item's `encrypted_content`, as the gateway fills it for providers
//! that keep reasoning state in the conversation: Anthropic's thinking blocks must
//! come back with their `signature` (or as the `redacted_thinking` they were) for a
//! tool loop with thinking to continue. With `store: false` (Codex) the client
//! holds that state and returns it in its next request's reasoning item.
//!
//! The content is `aurora.v1.` followed by URL-safe base64 (no padding) of a small
//! JSON object: `{"thinking": …, "signature": …}` or `{"redacted": …}`. It is not
//! secret: Anthropic's signature is what guards the thinking against tampering.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "aurora.v1.";

/// The provider's reasoning state carried by one reasoning item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReasoningState {
    /// An Anthropic `thinking` block.
    Thinking {
        /// The thinking text (may be empty when the provider omits it).
        thinking: String,
        /// Anthropic's signature over it.
        signature: String,
    },
    /// An Anthropic `redacted_thinking` block.
    Redacted {
        /// The opaque redacted data.
        redacted: String,
    },
}

impl ReasoningState {
    /// The `encrypted_content` string carrying this state.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// The state in an `encrypted_content` string the gateway made; `None` for any
    /// other (another provider's, or tampered with).
    pub fn decode(content: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(content.strip_prefix(PREFIX)?).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_foreign_content_is_not_ours() {
        for state in [
            ReasoningState::Thinking {
                thinking: "Let me think \"about\" it.\n".into(),
                signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgx".into(),
            },
            ReasoningState::Redacted {
                redacted: "EmwKAhgBEgy3va3pzix".into(),
            },
        ] {
            let encoded = state.encode();
            assert!(encoded.starts_with("aurora.v1."));
            assert_eq!(ReasoningState::decode(&encoded), Some(state));
        }
        assert_eq!(ReasoningState::decode("gAAAAABoQ_openai_blob"), None);
        assert_eq!(ReasoningState::decode("aurora.v1.!!!"), None);
    }
}
