//! Carrying out a request's [`AttemptPlan`]: building it from the routed model and
//! its fallbacks, preparing the body for whichever candidate comes next, and turning a
//! failed attempt into the decision the proxy hooks act on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use pingora_core::Error;

use super::header_maps;
use super::headers::AURORA_REQUEST_ID;
use super::model_request::{self, ModelCall, ModelEndpoint, ModelField, PreparedRequest};
use super::model_route::{route_model, route_pool, ModelRoute};
use super::provider_key::{upstream_credential_avoiding, UpstreamCredential};
use super::resilience::{
    AttemptFailure, AttemptPlan, Candidate, HealthBook, HealthKey, NextAttempt, Transition,
};
use super::{GatewayError, RequestContext};
use crate::config::Config;
use crate::limits::RateState;
use crate::metrics::UpstreamErrorKind;
use crate::providers::{Provider, ProviderCredential};

/// The header with which a client turns fallbacks off for one request.
pub const FALLBACKS_HEADER: &str = "x-aurora-fallbacks";
/// Response header: the instance that answered.
pub const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-aurora-provider");
/// Response header: the model it was asked for.
pub const MODEL_HEADER: HeaderName = HeaderName::from_static("x-aurora-model");
/// Response header: how many attempts the answer took.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-aurora-attempts");

/// A client's `/v1` call, kept so that a retry on another model can prepare it again.
#[derive(Debug)]
pub struct HeldCall {
    /// The endpoint called.
    pub endpoint: ModelEndpoint,
    /// The client's body as read.
    pub body: Bytes,
    /// Where its `model` sits.
    pub field: ModelField,
    /// The client's query string, less its credential parameters
    /// ([`super::client_query::upstream_query`]).
    pub query: Option<String>,
    /// The stored conversation a translated Responses request continues.
    pub history: Option<Vec<u8>>,
    /// The Unix time a translated response reports.
    pub created: u64,
    /// Its `previous_response_id` may not be continued with the gateway's credential.
    pub previous_refused: bool,
}

impl HeldCall {
    /// The call as [`model_request::prepare_for`] reads it.
    pub fn view(&self) -> ModelCall<'_> {
        ModelCall {
            endpoint: self.endpoint,
            body: &self.body,
            field: &self.field,
            query: self.query.as_deref(),
            history: self.history.as_deref(),
            created: self.created,
            previous_refused: self.previous_refused,
        }
    }
}

/// The plan of a `/v1` call for `requested`: every instance serving it, then its
/// fallbacks unless the client sent `X-Aurora-Fallbacks: none` or the call continues
/// a conversation another provider may hold (`stateful`: a Responses API call naming
/// `previous_response_id` or `conversation`).
pub fn plan_for_model(
    requested: &str,
    stateful: bool,
    headers: &HeaderMap,
    config: &Config,
    book: &HealthBook,
) -> Result<AttemptPlan, GatewayError> {
    let pool = route_pool(requested, config)?
        .into_iter()
        .map(|route| Candidate {
            route,
            requested: requested.to_string(),
            fallback: false,
        })
        .collect();
    let refused = headers
        .get(FALLBACKS_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let mut fallbacks = if refused || stateful {
        Vec::new()
    } else {
        config
            .models
            .fallbacks
            .after(requested)
            .iter()
            // Checked at load time; an entry that no longer routes is passed over.
            .filter_map(|target| {
                route_model(target, config).ok().map(|route| Candidate {
                    route,
                    requested: target.clone(),
                    fallback: true,
                })
            })
            .collect()
    };
    let mut pool: Vec<Candidate> = pool;
    keep_caller_keys_at_one_base_url(&mut pool, &mut fallbacks);
    Ok(AttemptPlan::new(pool, fallbacks, book, Instant::now()))
}

/// Leaves out of a plan the instances that take the caller's own provider key
/// (`!PASSTHRU`) at another base URL than the first such instance of the model asked
/// for (its pool, in config order): the caller gave its key for that model's provider,
/// and a fallback to another (an OpenAI key sent on to Anthropic) would hand it to a
/// third party. When the model asked for is served with the gateway's own keys, no
/// fallback takes the caller's key: what the caller sent (with gateway auth off, its
/// own `Authorization`) was never given for that fallback. The path counts too: a
/// gateway at one host may route by path to several providers (`…/openai`,
/// `…/anthropic`).
fn keep_caller_keys_at_one_base_url(pool: &mut Vec<Candidate>, fallbacks: &mut Vec<Candidate>) {
    let takes_caller_key =
        |c: &Candidate| matches!(c.route.provider.credential, ProviderCredential::CallerKey);
    let Some(first) = pool
        .iter()
        .find(|c| takes_caller_key(c))
        .map(|c| Arc::clone(&c.route.provider))
    else {
        fallbacks.retain(|c| !takes_caller_key(c));
        return;
    };
    let keep =
        |c: &Candidate| !takes_caller_key(c) || c.route.provider.base.is_same_place(&first.base);
    pool.retain(keep);
    fallbacks.retain(keep);
}

/// The plan of a passthrough request: its one provider, retried only where the
/// provider never saw the request.
pub fn plan_for_provider(provider: &Arc<Provider>, book: &HealthBook) -> AttemptPlan {
    let candidate = Candidate {
        route: ModelRoute {
            provider: Arc::clone(provider),
            model: String::new(),
        },
        requested: String::new(),
        fallback: false,
    };
    AttemptPlan::new(vec![candidate], Vec::new(), book, Instant::now())
}

/// The request for the plan's current candidate.
pub fn prepare_current(
    plan: &AttemptPlan,
    call: &HeldCall,
    config: &Config,
) -> Result<PreparedRequest, GatewayError> {
    let candidate = plan.current();
    model_request::prepare_for(
        &call.view(),
        &candidate.requested,
        candidate.route.clone(),
        config,
    )
}

/// The credential for `provider`, passing over keys cooling down.
pub fn credential(
    provider: &Provider,
    headers: &HeaderMap,
    config: &Config,
    book: &HealthBook,
) -> Result<UpstreamCredential, GatewayError> {
    let now = Instant::now();
    upstream_credential_avoiding(provider, headers, &config.auth, |id| {
        book.is_cooling(&HealthKey::key(&provider.name, id), now)
    })
}

/// How a failed exchange counts for the plan.
pub fn failure_of(e: &Error) -> AttemptFailure {
    match UpstreamErrorKind::of(e) {
        Some(UpstreamErrorKind::Connect) => AttemptFailure::Connect,
        // Dropped or silent before an answer came: the provider may do better next time.
        Some(UpstreamErrorKind::Timeout | UpstreamErrorKind::Reset) => AttemptFailure::Timeout,
        _ => AttemptFailure::Other,
    }
}

/// The current attempt failed with `failure`: `Some(wait)` when the plan tries again
/// (its current candidate is then the next one), `None` when the failure stands.
pub fn after_failure(
    ctx: &mut RequestContext,
    failure: AttemptFailure,
    book: &HealthBook,
) -> Option<Duration> {
    let key = ctx.upstream.as_ref().and_then(|u| u.credential.key_id);
    let config = ctx.config.clone()?;
    let plan = ctx.plan.as_mut()?;
    let (next, change) = plan.failed(failure, key, &config, book, Instant::now());
    if let Some((provider, transition)) = change {
        availability_changed(&provider, transition);
    }
    match next {
        NextAttempt::Retry { wait } => Some(wait),
        NextAttempt::GiveUp => None,
    }
}

/// The current attempt got the answer the client takes, with `status`.
pub fn after_answer(ctx: &mut RequestContext, status: u16, book: &HealthBook) {
    let key = ctx.upstream.as_ref().and_then(|u| u.credential.key_id);
    if let Some(plan) = ctx.plan.as_mut() {
        for (provider, transition) in plan.answered(status, key, book, Instant::now()) {
            availability_changed(&provider, transition);
        }
    }
}

fn availability_changed(provider: &str, transition: Transition) {
    let available = match transition {
        Transition::CooledDown => {
            log::warn!("provider `{provider}` keeps failing: skipped while it cools down");
            false
        }
        Transition::Recovered => {
            log::info!("provider `{provider}` answers again");
            true
        }
        Transition::None => return,
    };
    if let Some(m) = crate::metrics::metrics() {
        m.upstream_available(provider, available);
    }
}

/// How many attempts the answer took (`X-Aurora-Attempts`).
pub fn attempt_count(plan: &AttemptPlan) -> usize {
    plan.records().len().max(1)
}

/// The access log's list of attempts (`provider/model:outcome:ms`, comma-separated),
/// when there was more than one.
pub fn attempts_list(plan: &AttemptPlan) -> Option<String> {
    let records = plan.records();
    if records.len() < 2 {
        return None;
    }
    let list = records
        .iter()
        .map(|r| {
            let who = if r.model.is_empty() {
                r.provider.clone()
            } else {
                format!("{}/{}", r.provider, r.model)
            };
            format!("{who}:{}:{}ms", r.outcome, r.took.as_millis())
        })
        .collect::<Vec<_>>()
        .join(",");
    Some(list)
}

/// Says who answered, replacing what the provider sent under the same names:
/// `X-Aurora-Request-Id`, then `X-Aurora-Provider`, `X-Aurora-Model` (when the request
/// named one) and `X-Aurora-Attempts`, then the caller's `x-ratelimit-*` windows. Room
/// for all of them is made in one step. A key with limits is told none of the
/// provider's quota headers.
pub fn describe_answer(headers: &mut HeaderMap, ctx: &RequestContext) -> pingora_core::Result<()> {
    let attempts = ctx.plan.as_ref().map_or(1, attempt_count);
    // A passthrough call named its provider and model itself: its answer says only
    // that it took more than one attempt, when it did.
    let routed = ctx.route_kind != "passthrough";
    let provider = ctx.provider_name().filter(|_| routed);
    let model = ctx.obs.request_model().filter(|_| routed);
    let counted = routed || attempts > 1;
    let rate_headers = ctx.rate.as_ref().map_or(0, RateState::header_count);
    let room = 1
        + usize::from(provider.is_some())
        + usize::from(model.is_some())
        + usize::from(counted)
        + rate_headers;
    // A caller's own provider key (`!PASSTHRU`) has its own account's quota to hear of.
    let own_limits = super::limit_check::caller_limits(ctx);
    if own_limits.is_some() && !super::with_callers_own_key(ctx) {
        crate::limits::remove_provider_quota_headers(headers);
    }
    header_maps::make_room(headers, room)?;
    header_maps::put(headers, AURORA_REQUEST_ID, ctx.request_id.header_value())?;
    if let Some(provider) = provider {
        header_maps::put(headers, PROVIDER_HEADER, header_maps::text(provider)?)?;
    }
    if let Some(model) = model {
        header_maps::put(headers, MODEL_HEADER, header_maps::text(model)?)?;
    }
    if counted {
        header_maps::put(headers, ATTEMPTS_HEADER, HeaderValue::from(attempts))?;
    }
    match &ctx.rate {
        Some(rate) => {
            let limit_texts = own_limits.map(|limited| &limited.limit_texts);
            crate::limits::insert_rate_headers(headers, rate, limit_texts)
                .map_err(header_maps::too_many_headers)
        }
        None => Ok(()),
    }
}
