//! Label values, each drawn from a fixed set or from configuration: a client can never
//! add a series by what it sends.

use std::sync::Arc;

use once_cell::sync::Lazy;
use pingora_core::{Error, ErrorSource, ErrorType};

use crate::auth::Caller;
use crate::config::Config;
use crate::lookup::LookupSet;

/// The `model` label of a request whose model is neither configured nor listed.
pub const OTHER_MODEL: &str = "other";

/// The `model` (and `provider`) label of a request that names none: a passthrough
/// call, a refused request, a gateway route.
pub const NONE: &str = "-";

/// The route labels [`crate::proxy::Route::kind`] gives, and `-` for a request refused
/// before it was routed.
pub const ROUTE_KINDS: [&str; 13] = [
    "-",
    "health",
    "root",
    "passthrough",
    "chat_completions",
    "embeddings",
    "completions",
    "moderations",
    "messages",
    "count_tokens",
    "responses",
    "models",
    "metrics",
];

/// The index of `route` in [`ROUTE_KINDS`]; an unknown label counts as `-`.
pub fn route_index(route: &str) -> usize {
    ROUTE_KINDS.iter().position(|r| *r == route).unwrap_or(0)
}

/// Every real HTTP status (100–599) as a label, written once for the process.
static STATUS_LABELS: Lazy<Vec<String>> =
    Lazy::new(|| (100u16..600).map(|s| s.to_string()).collect());

/// The `status` label: the code itself for a real HTTP status, `0` for anything else
/// (no response could be sent).
pub fn status_label(status: u16) -> &'static str {
    match status {
        100..=599 => STATUS_LABELS
            .get(usize::from(status - 100))
            .map_or("0", String::as_str),
        _ => "0",
    }
}

/// The `key` label: the gateway key's name (`master` or a managed key's name); on a
/// gateway without keys, `caller_key` for a caller who brought its own provider key and
/// `open` otherwise; `-` when no caller was authenticated (a refused key, `/health`).
/// Never anything derived from a provider key.
pub fn key_label(caller: Option<&Caller>, brought_provider_key: bool) -> &str {
    match caller {
        Some(Caller::Master) => "master",
        Some(Caller::Managed(name)) => name,
        Some(Caller::Open) if brought_provider_key => "caller_key",
        Some(Caller::Open) => "open",
        None => NONE,
    }
}

/// The kinds of upstream failure `aurora_upstream_errors_total` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The provider could not be reached (refused, no route, socket errors).
    Connect,
    /// The TLS handshake failed or the certificate was refused.
    Tls,
    /// Connecting, writing or waiting for the answer took too long.
    Timeout,
    /// The provider closed or reset the connection midway.
    Reset,
    /// The provider's answer was not valid HTTP.
    Protocol,
}

impl UpstreamErrorKind {
    /// Every kind, in label order.
    pub const ALL: [UpstreamErrorKind; 5] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }

    /// The kind of a failed exchange with a provider, or `None` when the failure was
    /// not the provider's (the client, the gateway itself).
    pub fn of(e: &Error) -> Option<Self> {
        let kind = match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout => UpstreamErrorKind::Timeout,
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::SocketError
            | ErrorType::ConnectProxyFailure => UpstreamErrorKind::Connect,
            ErrorType::TLSHandshakeFailure
            | ErrorType::TLSWantX509Lookup
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError => UpstreamErrorKind::Tls,
            _ if e.esource() != &ErrorSource::Upstream => return None,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
                UpstreamErrorKind::Reset
            }
            ErrorType::HTTPStatus(_) => return None,
            _ => UpstreamErrorKind::Protocol,
        };
        // A timeout reading the client's body is the client's, not the provider's.
        if e.esource() == &ErrorSource::Downstream {
            return None;
        }
        Some(kind)
    }
}

/// The model names configuration knows: alias names and the models they point at,
/// every provider's `models:` list, the keys of `models.limits` and the models
/// `models.prices` prices (a `provider/model` key names its model too).
#[derive(Debug, Default)]
pub struct KnownModels {
    names: LookupSet<Arc<str>>,
}

impl KnownModels {
    /// The names `config` knows.
    pub fn of(config: &Config) -> Self {
        let mut names: LookupSet<Arc<str>> = LookupSet::default();
        for (alias, target) in &config.models.aliases {
            names.insert(Arc::from(alias.as_str()));
            if let Some((_, model)) = target.split_once(['/', ':']) {
                names.insert(Arc::from(model));
            }
        }
        for provider in config.providers.configured() {
            names.extend(provider.models.iter().map(|m| Arc::from(m.as_str())));
            names.extend(provider.model_traits.keys().map(|m| Arc::from(m.as_str())));
        }
        names.extend(config.models.limits.keys().map(|m| Arc::from(m.as_str())));
        for priced in config.models.prices.keys() {
            names.insert(Arc::from(priced.as_str()));
            if let Some((_, model)) = priced.split_once('/') {
                names.insert(Arc::from(model));
            }
        }
        Self { names }
    }

    /// The `model` label of a request routed to `model`: the configured name, or
    /// [`OTHER_MODEL`].
    pub fn label(&self, model: &str) -> Arc<str> {
        self.names
            .get(model)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER_MODEL))
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether configuration names no model.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_label_is_the_code_for_real_statuses_and_zero_otherwise() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(100), "100");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(0), "0");
        assert_eq!(status_label(99), "0");
        assert_eq!(status_label(600), "0");
        assert_eq!(status_label(u16::MAX), "0");
    }

    #[test]
    fn key_label_names_the_gateway_key_else_caller_key_else_open() {
        assert_eq!(key_label(Some(&Caller::Master), true), "master");
        assert_eq!(key_label(Some(&Caller::Managed("ci".into())), true), "ci");
        assert_eq!(key_label(Some(&Caller::Open), true), "caller_key");
        assert_eq!(key_label(Some(&Caller::Open), false), "open");
        assert_eq!(key_label(None, true), "-", "nobody was authenticated");
    }

    #[test]
    fn every_route_kind_has_a_label_slot() {
        use crate::proxy::model_request::ModelEndpoint;
        for endpoint in [
            ModelEndpoint::ChatCompletions,
            ModelEndpoint::Embeddings,
            ModelEndpoint::Completions,
            ModelEndpoint::Moderations,
            ModelEndpoint::Messages,
            ModelEndpoint::CountTokens,
            ModelEndpoint::Responses,
        ] {
            assert_ne!(route_index(endpoint.label()), 0, "{}", endpoint.label());
        }
        assert_eq!(route_index("unheard-of"), 0);
    }

    #[test]
    fn upstream_failures_map_to_their_kind_and_client_failures_to_none() {
        let kind = |e: Box<Error>| UpstreamErrorKind::of(&e);
        assert_eq!(
            kind(Error::new_up(ErrorType::ConnectRefused)),
            Some(UpstreamErrorKind::Connect)
        );
        assert_eq!(
            kind(Error::new_up(ErrorType::InvalidCert)),
            Some(UpstreamErrorKind::Tls)
        );
        assert_eq!(
            kind(Error::new_up(ErrorType::ReadTimedout)),
            Some(UpstreamErrorKind::Timeout)
        );
        assert_eq!(
            kind(Error::new_up(ErrorType::ConnectionClosed)),
            Some(UpstreamErrorKind::Reset)
        );
        assert_eq!(
            kind(Error::new_up(ErrorType::InvalidHTTPHeader)),
            Some(UpstreamErrorKind::Protocol)
        );
        assert_eq!(kind(Error::new_down(ErrorType::ReadTimedout)), None);
        assert_eq!(kind(Error::new_down(ErrorType::WriteError)), None);
        assert_eq!(kind(Error::new(ErrorType::HTTPStatus(413))), None);
    }

    #[test]
    fn known_models_come_from_aliases_provider_lists_and_limits() {
        let mut config = Config::default();
        config
            .models
            .aliases
            .insert("fast".into(), "openai/gpt-4o-mini".into());
        config
            .models
            .limits
            .insert("o3".into(), crate::providers::ModelTraits::default());
        let known = KnownModels::of(&config);
        assert_eq!(&*known.label("fast"), "fast");
        assert_eq!(&*known.label("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(&*known.label("o3"), "o3");
        assert_eq!(&*known.label("made-up-model-42"), OTHER_MODEL);
    }
}
