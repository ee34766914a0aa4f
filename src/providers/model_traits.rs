//! What the gateway knows about one model beyond its name: its output-token ceiling
//! and whether it reasons. Both come from configuration (`models.limits` and a
//! provider's `models:` entries); reasoning is also known by name for OpenAI's own
//! reasoning families.

/// Facts about a model that shape a translated request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTraits {
    /// The most output tokens the model takes; a larger request is lowered to it.
    pub max_output_tokens: Option<u32>,
    /// The model takes a reasoning effort (`reasoning_effort`).
    pub reasoning: Option<bool>,
}

impl ModelTraits {
    /// These traits, each missing one taken from `fallback`.
    pub fn or(self, fallback: ModelTraits) -> ModelTraits {
        ModelTraits {
            max_output_tokens: self.max_output_tokens.or(fallback.max_output_tokens),
            reasoning: self.reasoning.or(fallback.reasoning),
        }
    }

    /// Whether `model` reasons: as configured, else by its name.
    pub fn reasons(&self, model: &str) -> bool {
        self.reasoning.unwrap_or_else(|| reasoning_family(model))
    }
}

/// OpenAI's reasoning families by name: the o-series (`o1`, `o3-mini`, `o4-mini`) and
/// GPT-5 (`gpt-5`, `gpt-5.1-codex`). A vendor prefix (`openai/o3` on OpenRouter) is
/// looked through.
pub fn reasoning_family(model: &str) -> bool {
    let name = bare_name(model);
    o_series(name)
        || name
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case("gpt-5"))
}

/// OpenAI's o-series by name (`o1`, `o3-mini`, `o4-mini-2025-04-16`), a vendor prefix
/// looked through: reasoning models that refuse a member GPT-5 takes
/// (`parallel_tool_calls`).
pub fn o_series(model: &str) -> bool {
    let mut name = bare_name(model).chars();
    matches!(name.next(), Some('o' | 'O')) && name.next().is_some_and(|c| c.is_ascii_digit())
}

/// `model` without a vendor prefix (`openai/o3` → `o3`).
fn bare_name(model: &str) -> &str {
    model.rsplit('/').next().unwrap_or(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o_series_and_gpt_5_reason_by_name() {
        for model in [
            "o1",
            "o3-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5.1-codex",
            "openai/o3",
        ] {
            assert!(reasoning_family(model), "{model}");
        }
        for model in [
            "gpt-4o-mini",
            "gpt-4.1",
            "openchat",
            "olmo-2",
            "llama-3.1-8b",
            "o",
        ] {
            assert!(!reasoning_family(model), "{model}");
        }
    }

    #[test]
    fn the_o_series_is_told_from_gpt_5_by_name() {
        for model in ["o1", "O3", "o3-mini-2025-01-31", "o4-mini", "openai/o3"] {
            assert!(o_series(model), "{model}");
        }
        for model in [
            "gpt-5",
            "gpt-5.1-codex",
            "gpt-4o",
            "olmo-2",
            "o",
            "openai/gpt-5",
        ] {
            assert!(!o_series(model), "{model}");
        }
    }

    #[test]
    fn configured_reasoning_wins_over_the_name() {
        let on = ModelTraits {
            reasoning: Some(true),
            ..ModelTraits::default()
        };
        let off = ModelTraits {
            reasoning: Some(false),
            ..ModelTraits::default()
        };
        assert!(on.reasons("llama-3.1-8b"));
        assert!(!off.reasons("o3-mini"));
        assert!(ModelTraits::default().reasons("o3-mini"));
    }

    #[test]
    fn missing_traits_come_from_the_fallback() {
        let own = ModelTraits {
            max_output_tokens: Some(100),
            reasoning: None,
        };
        let fallback = ModelTraits {
            max_output_tokens: Some(5),
            reasoning: Some(true),
        };
        assert_eq!(
            own.or(fallback),
            ModelTraits {
                max_output_tokens: Some(100),
                reasoning: Some(true)
            }
        );
    }
}
