//! The Pingora `ProxyHttp` service. The hooks stay thin: routing, header rules,
//! error mapping and logging live in the sibling modules as plain functions.

mod access_log;
mod context;
mod error;
pub mod headers;
pub mod model_directory;
pub mod model_route;
pub mod passthrough;
mod respond;
pub mod route;
mod upstream;
mod upstream_failure;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use context::{RequestContext, UpstreamTarget};
pub use error::{ErrorKind, GatewayError};
pub use route::Route;
pub use upstream::UpstreamResolver;
pub use upstream_failure::gateway_error_for;

use crate::config::{Config, LiveConfig};

/// Aurora's proxy service.
pub struct AuroraProxy {
    config: Arc<LiveConfig>,
    resolver: UpstreamResolver,
}

impl AuroraProxy {
    /// A proxy reading its configuration from `config` on every request.
    pub fn new(config: Arc<LiveConfig>) -> Self {
        Self {
            config,
            resolver: UpstreamResolver::default(),
        }
    }

    /// Decides what to do with a request; `Ok(None)` means "answered: health".
    fn admit(
        &self,
        session: &Session,
        config: &Config,
        ctx: &mut RequestContext,
    ) -> std::result::Result<Option<UpstreamTarget>, GatewayError> {
        let req = session.req_header();
        let route = route::classify(req.uri.path(), &config.server);
        if let Ok(Route::Health) = route {
            ctx.route_kind = "health";
            return Ok(None);
        }
        // Everything but /health needs the gateway key, even to learn that a route is wrong.
        let caller = config
            .auth
            .authenticate(&req.headers, SystemTime::now())
            .map_err(|e| GatewayError::unauthorized(e.to_string()))?;
        ctx.caller = Some(caller);
        let route = route?;
        ctx.route_kind = route.kind();
        let Route::Passthrough(pt) = route else {
            return Ok(None);
        };
        let provider = config.providers.find(&pt.provider).ok_or_else(|| {
            GatewayError::not_found(format!(
                "unknown provider `{}`: configure it under `providers:` or use a built-in type",
                pt.provider
            ))
        })?;
        if !config.passthrough_enabled(&provider.name, provider.kind.name()) {
            return Err(GatewayError::invalid_request(format!(
                "provider `{}` is not enabled for passthrough; enabled: {}",
                pt.provider,
                config.server.enabled_passthrough_providers.join(", ")
            )));
        }
        if provider.missing_key() {
            return Err(GatewayError::invalid_request(format!(
                "provider `{}` has no API key: set {} on the gateway",
                provider.name, provider.key_env
            )));
        }
        let limit = config.server.body_size_limit;
        if declared_length(req).is_some_and(|len| len > limit) {
            return Err(GatewayError::payload_too_large(limit));
        }
        Ok(Some(UpstreamTarget {
            path_and_query: pt.upstream_path(&provider.base.path, req.uri.query()),
            provider: Arc::clone(provider),
        }))
    }
}

fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A Pingora error carrying nothing but its HTTP status; the details wait in the context.
fn status_error(status: u16) -> Box<Error> {
    Error::new(ErrorType::HTTPStatus(status))
}

#[async_trait]
impl ProxyHttp for AuroraProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let config = self.config.snapshot();
        ctx.request_id = headers::request_id_for(session.req_header());
        ctx.config = Some(Arc::clone(&config));
        match self.admit(session, &config, ctx) {
            Ok(Some(target)) => {
                ctx.upstream = Some(target);
                Ok(false)
            }
            Ok(None) => {
                respond::send_json(
                    session,
                    200,
                    br#"{"status":"ok"}"#.to_vec(),
                    &ctx.request_id,
                )
                .await?;
                Ok(true)
            }
            Err(err) => {
                respond::send_error(session, &err, &ctx.request_id).await?;
                ctx.error = Some(err);
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = ctx.upstream.as_ref() else {
            ctx.error = Some(GatewayError::not_found("no upstream for this request"));
            return Err(status_error(404));
        };
        let base = &target.provider.base;
        match self.resolver.resolve(&base.host, base.port).await {
            Ok(addr) => Ok(Box::new(upstream::provider_peer(&target.provider, addr))),
            Err(err) => {
                let status = err.status;
                ctx.error = Some(err);
                Err(status_error(status))
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(target) = ctx.upstream.as_ref() else {
            return Err(status_error(404));
        };
        let uri: http::Uri = target
            .path_and_query
            .parse()
            .map_err(|_| status_error(400))?;
        upstream_request.set_uri(uri);
        headers::strip_client_headers(upstream_request);
        headers::add_provider_headers(upstream_request, &target.provider, &ctx.request_id)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.request_body_bytes += chunk.len() as u64;
            let limit = ctx
                .config
                .as_ref()
                .map_or(u64::MAX, |c| c.server.body_size_limit);
            if ctx.request_body_bytes > limit {
                ctx.error = Some(GatewayError::payload_too_large(limit));
                return Err(status_error(413));
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        headers::strip_upstream_response_headers(upstream_response);
        upstream_response.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let err = ctx
            .error
            .clone()
            .or_else(|| gateway_error_for(e, ctx.provider_name()));
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        // Once the provider's status line went out, the client already has its answer.
        if session.response_written().is_none() {
            if let Err(write_err) = respond::send_error(session, &err, &ctx.request_id).await {
                log::debug!("could not send error response: {write_err}");
            }
        }
        ctx.error = Some(err.clone());
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        access_log::log_request(session, e, ctx);
    }
}
