//! A model name as a client or the configuration writes it: `provider/model`,
//! `provider:model`, or a bare model id.
//!
//! Parsing alone cannot say whether a prefix names a provider: a bare id may contain a
//! `/` or `:` itself (`meta-llama/Llama-3`). [`ModelRef::parse`] only splits; callers
//! look the prefix up among the configured providers and decide.

/// The separators between a provider and its model; whichever comes first wins.
const SEPARATORS: [char; 2] = ['/', ':'];

/// A model name split at its first `/` or `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRef<'a> {
    /// No separator at all: only a bare model id.
    Bare(&'a str),
    /// The text before the first separator and the text after it, either possibly
    /// empty. `model` keeps any later separator (`openrouter/google/gemini-2.5` →
    /// `openrouter` and `google/gemini-2.5`).
    Prefixed {
        /// Before the first separator: a provider instance name, or part of a bare id.
        prefix: &'a str,
        /// After the first separator.
        model: &'a str,
    },
}

/// Why the part after a provider prefix is no usable model name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModelAfterPrefixError {
    /// Nothing (or only blanks) after the separator: `groq/`.
    #[error("no model after the provider")]
    Missing,
    /// A second separator right after the first: `groq//x`, `groq::x`, `groq:/x`.
    #[error("a doubled separator after the provider")]
    DoubledSeparator,
}

impl<'a> ModelRef<'a> {
    /// Splits `name` at its first `/` or `:`, whichever comes first.
    pub fn parse(name: &'a str) -> Self {
        match name.find(SEPARATORS) {
            Some(at) => ModelRef::Prefixed {
                prefix: &name[..at],
                model: &name[at + 1..],
            },
            None => ModelRef::Bare(name),
        }
    }

    /// The text before the first separator, when there is one.
    pub fn prefix(&self) -> Option<&'a str> {
        match self {
            ModelRef::Bare(_) => None,
            ModelRef::Prefixed { prefix, .. } => Some(prefix),
        }
    }

    /// The model after the prefix, when it is a usable name: not blank and not
    /// starting with another separator. `None` for a bare name.
    pub fn model_after_prefix(&self) -> Option<Result<&'a str, ModelAfterPrefixError>> {
        match self {
            ModelRef::Bare(_) => None,
            ModelRef::Prefixed { model, .. } if model.trim().is_empty() => {
                Some(Err(ModelAfterPrefixError::Missing))
            }
            ModelRef::Prefixed { model, .. } if model.starts_with(SEPARATORS) => {
                Some(Err(ModelAfterPrefixError::DoubledSeparator))
            }
            ModelRef::Prefixed { model, .. } => Some(Ok(model)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed<'a>(prefix: &'a str, model: &'a str) -> ModelRef<'a> {
        ModelRef::Prefixed { prefix, model }
    }

    #[test]
    fn splits_at_the_first_separator_whichever_it_is() {
        assert_eq!(
            ModelRef::parse("openrouter/google/gemini-2.5"),
            prefixed("openrouter", "google/gemini-2.5")
        );
        assert_eq!(
            ModelRef::parse("openrouter:google/gemini-2.5"),
            prefixed("openrouter", "google/gemini-2.5")
        );
        assert_eq!(
            ModelRef::parse("groq:llama:8b"),
            prefixed("groq", "llama:8b")
        );
        assert_eq!(ModelRef::parse("groq/a:b"), prefixed("groq", "a:b"));
        assert_eq!(ModelRef::parse("a:b/c"), prefixed("a", "b/c"));
    }

    #[test]
    fn a_name_without_separator_is_bare() {
        assert_eq!(ModelRef::parse("gpt-4o"), ModelRef::Bare("gpt-4o"));
        assert_eq!(ModelRef::parse(""), ModelRef::Bare(""));
        assert_eq!(ModelRef::parse("gpt-4o").prefix(), None);
        assert_eq!(ModelRef::parse("gpt-4o").model_after_prefix(), None);
    }

    #[test]
    fn either_side_may_be_empty() {
        assert_eq!(ModelRef::parse("::x"), prefixed("", ":x"));
        assert_eq!(ModelRef::parse(":"), prefixed("", ""));
        assert_eq!(ModelRef::parse("/x").prefix(), Some(""));
        assert_eq!(ModelRef::parse("groq:"), prefixed("groq", ""));
    }

    #[test]
    fn the_model_after_the_prefix_must_be_a_name() {
        assert_eq!(
            ModelRef::parse("groq/llama-3.1-8b").model_after_prefix(),
            Some(Ok("llama-3.1-8b"))
        );
        for missing in ["groq/", "groq:", "groq/  "] {
            assert_eq!(
                ModelRef::parse(missing).model_after_prefix(),
                Some(Err(ModelAfterPrefixError::Missing)),
                "{missing}"
            );
        }
        for doubled in ["groq//x", "groq::x", "groq:/x", "groq/:x"] {
            assert_eq!(
                ModelRef::parse(doubled).model_after_prefix(),
                Some(Err(ModelAfterPrefixError::DoubledSeparator)),
                "{doubled}"
            );
        }
    }
}
