//! Per-request state shared by the proxy hooks.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Caller;
use crate::config::Config;
use crate::providers::{Provider, WireFormat};

use super::provider_key::UpstreamCredential;
use super::response_cork::CorkedSocket;
use super::GatewayError;

/// Where an accepted request goes.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// The provider instance.
    pub provider: Arc<Provider>,
    /// Path and query sent upstream.
    pub path_and_query: String,
    /// The key sent upstream (see [`super::provider_key::upstream_credential`]).
    pub credential: UpstreamCredential,
    /// The provider's timeouts, with what the model changes of them.
    pub timeouts: crate::providers::Timeouts,
    /// Whether the answer is streamed, as far as the gateway knows.
    pub shape: super::upstream::AnswerShape,
    /// The gateway asked for this Chat stream's usage (`stream_options.include_usage`)
    /// where the client did not: the usage-only chunk is kept from the client.
    pub usage_asked: bool,
}

impl UpstreamTarget {
    /// `provider` at `path_and_query` with its own timeouts, for an answer of unknown shape.
    pub fn new(
        provider: Arc<Provider>,
        path_and_query: String,
        credential: UpstreamCredential,
    ) -> Self {
        Self {
            timeouts: provider.timeouts,
            path_and_query,
            provider,
            credential,
            shape: Default::default(),
            usage_asked: false,
        }
    }

    /// This target, noting whether the gateway asked for the stream's usage on the
    /// client's behalf.
    pub fn asking_usage(self, usage_asked: bool) -> Self {
        Self {
            usage_asked,
            ..self
        }
    }

    /// This target with a model's `timeouts`, for an answer of `shape`.
    pub fn timed(
        self,
        timeouts: crate::providers::Timeouts,
        shape: super::upstream::AnswerShape,
    ) -> Self {
        Self {
            timeouts,
            shape,
            ..self
        }
    }
}

/// State of one request across hooks.
#[derive(Debug)]
pub struct RequestContext {
    /// When the request arrived.
    pub started: Instant,
    /// The config snapshot this request uses throughout.
    pub config: Option<Arc<Config>>,
    /// The gateway's request id: sent upstream as `X-Request-Id`, back as `X-Aurora-Request-Id`.
    pub request_id: super::request_id::RequestId,
    /// Route label for logs.
    pub route_kind: &'static str,
    /// Who called.
    pub caller: Option<Caller>,
    /// Chosen upstream.
    pub upstream: Option<UpstreamTarget>,
    /// A gateway error raised inside a hook, rendered by `fail_to_proxy`.
    pub error: Option<GatewayError>,
    /// Status the upstream answered with.
    pub upstream_status: Option<u16>,
    /// Request body bytes seen so far.
    pub request_body_bytes: u64,
    /// Whose the Responses answer this request may store is
    /// ([`super::response_store::owner_of`]); set for Responses calls.
    pub responses_owner: Option<Arc<str>>,
    /// What the request records or forgets of whose a natively served response is.
    pub native_owner: super::native_responses::NativeOwnerStep,
    /// The client's body passed to its end (not cut off by the client leaving).
    pub request_body_ended: bool,
    /// How the body reaches the provider: the client's as it streams, or a `/v1`
    /// body the gateway read and prepared (replayed here, or carried by a subrequest).
    pub body: super::model_call_body::ModelCallBody,
    /// The share of the gateway's body budget this request's body holds.
    pub body_permit: Option<super::body_budget::BodyPermit>,
    /// The client socket, corked while a whole translated answer is written.
    pub corked: Option<CorkedSocket>,
    /// The response is translated into the client's format.
    pub translated: bool,
    /// The API the client speaks, which fixes the envelope of gateway errors.
    pub error_format: WireFormat,
    /// What the metrics and the access log learn about the request.
    pub obs: super::observe::Observation,
    /// The request's spans, when tracing is on.
    pub trace: crate::telemetry::RequestTrace,
    /// Hosted tools a translated Responses request offered and the provider did not
    /// get, comma-separated.
    pub omitted_tools: Option<String>,
    /// The request's attempts: where each goes, and what follows a failure.
    pub plan: Option<super::resilience::AttemptPlan>,
    /// A `/v1` call kept to be prepared again for another model.
    pub held_call: Option<super::attempts::HeldCall>,
    /// The plan position the prepared body and target were made for.
    pub prepared_at: usize,
    /// How long to wait before the next attempt.
    pub retry_wait: Option<std::time::Duration>,
    /// A failure already decided in a hook (a retried status), for `error_while_proxy`.
    pub retry_decided: Option<bool>,
    /// The next attempt is already readied (target, body and key chosen).
    pub attempt_ready: bool,
    /// The attempt readied last is one after the first (a retry, another key, a
    /// fallback): one more request against the quota of the provider it goes to, even
    /// the one the attempt before went to.
    pub later_attempt: bool,
    /// The limits the request counts against (its call slots are held here).
    pub held_to: super::limit_check::HeldToSubjects,
    /// The caller's rate windows, for the `x-ratelimit-*` headers.
    pub rate: Option<crate::limits::RateState>,
    /// When the current attempt's whole (not streamed) answer must be over.
    pub answer_due: Option<Instant>,
    /// The decoding of the current attempt's answer, when it came compressed.
    pub answer_decoder: Option<super::answer_decoder::AnswerDecoder>,
    /// The request's charge should the server drop it unended (a graceful stop's grace
    /// period over); taken when `logging` settles it.
    pub settle_on_drop: Option<super::settle_on_drop::SettleOnDrop>,
}

impl RequestContext {
    /// A fresh context.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            config: None,
            request_id: Default::default(),
            route_kind: "-",
            caller: None,
            upstream: None,
            error: None,
            upstream_status: None,
            request_body_bytes: 0,
            responses_owner: None,
            native_owner: Default::default(),
            request_body_ended: false,
            body: Default::default(),
            body_permit: None,
            corked: None,
            translated: false,
            error_format: WireFormat::OpenAi,
            obs: Default::default(),
            trace: Default::default(),
            omitted_tools: None,
            plan: None,
            held_call: None,
            prepared_at: 0,
            retry_wait: None,
            retry_decided: None,
            attempt_ready: false,
            later_attempt: false,
            held_to: Default::default(),
            rate: None,
            answer_due: None,
            answer_decoder: None,
            settle_on_drop: None,
        }
    }

    /// Whether the gateway asked for this stream's usage on the client's behalf.
    pub fn usage_asked(&self) -> bool {
        self.upstream.as_ref().is_some_and(|u| u.usage_asked)
    }

    /// The provider name for logs.
    pub fn provider_name(&self) -> Option<&str> {
        self.upstream.as_ref().map(|u| u.provider.name.as_str())
    }

    /// The provider the latest attempt went to, as the metrics, the access line and
    /// the trace name it: `None` when the gateway answered before any attempt (a
    /// refusal after the provider was chosen included), so that no provider is named
    /// for a request it never saw.
    pub fn attempted_provider(&self) -> Option<&Provider> {
        self.upstream
            .as_ref()
            .filter(|_| self.obs.attempted())
            .map(|u| &*u.provider)
    }

    /// The log label of the caller's own provider key, when it sent one.
    pub fn caller_key_label(&self) -> Option<&str> {
        self.upstream
            .as_ref()
            .and_then(|u| u.credential.caller_key_label.as_deref())
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        if let Some(settle) = self.settle_on_drop.take() {
            settle.settle(self);
        }
    }
}

impl Default for RequestContext {
    fn default() -> Self {
        Self::new()
    }
}
