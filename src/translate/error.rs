//! Errors raised while translating between the OpenAI and Anthropic formats.

/// Why a body could not be translated.
///
/// Request-side variants (`InvalidJson`, `Unsupported`, `InvalidField`) are the
/// client's fault and map to HTTP 400; `UpstreamResponse` means the provider
/// answered with something that is not a valid response in its own format and
/// maps to HTTP 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The request body is not a JSON object.
    #[error("request body is not valid JSON ({0}); send a single JSON object")]
    InvalidJson(String),

    /// A field is valid in the client's format but cannot be expressed in the
    /// provider's format, so honouring the request is impossible.
    #[error("`{field}` is not supported for this model: {reason}")]
    Unsupported {
        /// Path of the offending field, e.g. `n` or `messages[2].content[0]`.
        field: String,
        /// What the provider lacks and what the client can do instead.
        reason: String,
    },

    /// A field has a value that is wrong in the client's own format.
    #[error("invalid `{field}`: {message}")]
    InvalidField {
        /// Path of the offending field, e.g. `messages[1].tool_calls[0].function.arguments`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The provider's response body could not be read as a response in its
    /// own format.
    #[error("the provider returned a response that could not be translated ({0}); retry the request, and report it if it persists")]
    UpstreamResponse(String),
}

impl TranslateError {
    /// Builds an [`TranslateError::Unsupported`].
    pub fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Builds an [`TranslateError::InvalidField`].
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending request field, for the `param` member of an OpenAI error.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Unsupported { field, .. } | Self::InvalidField { field, .. } => Some(field),
            Self::InvalidJson(_) | Self::UpstreamResponse(_) => None,
        }
    }

    /// True when the client caused the error (HTTP 400), false when the
    /// provider did (HTTP 502).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::UpstreamResponse(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_names_the_offending_field() {
        assert_eq!(TranslateError::unsupported("n", "x").param(), Some("n"));
        assert_eq!(
            TranslateError::invalid_field("messages[0].role", "x").param(),
            Some("messages[0].role")
        );
        assert_eq!(TranslateError::InvalidJson("eof".into()).param(), None);
        assert_eq!(TranslateError::UpstreamResponse("x".into()).param(), None);
    }

    #[test]
    fn messages_name_the_field_and_the_remedy() {
        let e = TranslateError::unsupported("n", "only one choice is returned; omit `n`");
        assert_eq!(
            e.to_string(),
            "`n` is not supported for this model: only one choice is returned; omit `n`"
        );
        let e = TranslateError::InvalidJson("expected value at line 1 column 1".into());
        assert!(e.to_string().contains("send a single JSON object"));
    }

    #[test]
    fn upstream_errors_are_not_client_errors() {
        assert!(!TranslateError::UpstreamResponse("x".into()).is_client_error());
        assert!(TranslateError::InvalidJson("x".into()).is_client_error());
    }
}
