//! Which face of the gateway a request path addresses.

use super::passthrough::{PassthroughRoute, PASSTHROUGH_PREFIX};
use super::GatewayError;
use crate::config::ServerSettings;

/// The route a request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`, answered by the gateway without auth.
    Health,
    /// `/p/{provider}/{endpoint}`.
    Passthrough(PassthroughRoute),
}

impl Route {
    /// Short label for access logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Passthrough(_) => "passthrough",
        }
    }
}

/// Classifies `path` (raw, still percent-encoded) under the current settings.
pub fn classify(path: &str, settings: &ServerSettings) -> Result<Route, GatewayError> {
    if path == "/health" {
        return Ok(Route::Health);
    }
    if let Some(rest) = path.strip_prefix(PASSTHROUGH_PREFIX) {
        if !settings.enable_passthrough_routes {
            return Err(GatewayError::not_found(
                "passthrough routes (/p/) are disabled on this gateway",
            ));
        }
        return PassthroughRoute::parse(rest, settings.allow_passthrough_v1_alias)
            .map(Route::Passthrough);
    }
    if path == "/p" {
        return Err(GatewayError::invalid_request(
            "missing provider: use /p/{provider}/{endpoint}",
        ));
    }
    Err(GatewayError::not_found(format!(
        "no route for `{path}`: provider APIs are served under /p/{{provider}}/{{endpoint}}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_passthrough_are_routed() {
        let s = ServerSettings::default();
        assert_eq!(classify("/health", &s), Ok(Route::Health));
        assert!(matches!(
            classify("/p/openai/models", &s),
            Ok(Route::Passthrough(_))
        ));
        assert_eq!(classify("/nope", &s).unwrap_err().status, 404);
    }

    #[test]
    fn disabled_passthrough_is_not_found() {
        let s = ServerSettings {
            enable_passthrough_routes: false,
            ..ServerSettings::default()
        };
        assert_eq!(classify("/p/openai/models", &s).unwrap_err().status, 404);
    }
}
