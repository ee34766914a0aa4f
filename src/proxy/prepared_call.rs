//! A `/v1` call, read and prepared: its model routed, its attempts planned, its body
//! shaped for the first provider with that provider's credential, and the way its
//! body goes upstream decided ([`Delivery`]).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use pingora_http::RequestHeader;

use super::attempts::{self, HeldCall};
use super::model_request::{ModelEndpoint, ModelField, PreparedRequest, ResponsesPlan};
use super::observe;
use super::resilience::{AttemptPlan, HealthBook};
use super::response_store::{ResponseStore, StoredResponse};
use super::{GatewayError, RequestContext, UpstreamTarget};
use crate::config::Config;
use crate::translate::{ClientEncoder, OnCompleted, ResponseCodecs};

/// What a `/v1` call brings to [`PreparedCall::prepare`].
#[derive(Debug)]
pub struct CallRequest<'a> {
    /// The endpoint called.
    pub endpoint: ModelEndpoint,
    /// The client's request header.
    pub req: &'a RequestHeader,
    /// The client's body, read whole.
    pub body: Bytes,
    /// Its model and the other top-level members the gateway acts on, read as the
    /// body was held to JSON's rules.
    pub field: ModelField,
    /// The stored conversation a translated Responses request continues.
    pub history: Option<Vec<u8>>,
    /// The Unix time a translated response reports.
    pub created: u64,
    /// Its `previous_response_id` may not be continued with the gateway's credential
    /// ([`super::native_responses::previous_refused`]).
    pub previous_refused: bool,
}

/// Where preparing a call looks things up.
#[derive(Clone, Copy)]
pub struct CallSources<'a> {
    /// The request's config snapshot.
    pub config: &'a Config,
    /// Which instances and keys are failing.
    pub health: &'a HealthBook,
    /// Where translated Responses answers are kept.
    pub responses: &'a Arc<dyn ResponseStore>,
}

/// A `/v1` call ready for its first attempt.
#[derive(Debug)]
pub struct PreparedCall {
    /// Provider, upstream path and credential of the first attempt.
    target: UpstreamTarget,
    /// The body the first provider receives.
    body: Bytes,
    /// How the provider's answer becomes the client's, when it must change.
    translation: Option<ResponseCodecs>,
    /// Where the call's attempts go.
    plan: AttemptPlan,
    /// The call as read, to prepare again for a fallback.
    held: HeldCall,
    /// The model has fallbacks for a context overflow: an error answer is read whole.
    overflow_falls_back: bool,
}

/// How a prepared call's body goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The gateway drives the exchange and reads the answer whole (a translated
    /// answer the client takes whole, or one whose errors must be read for a context
    /// overflow). `streamed`: the client asked for a stream, which flows on once a
    /// successful answer starts.
    Whole {
        /// The client asked for a stream.
        streamed: bool,
    },
    /// The client's session proxies it, the prepared body swapped into Pingora's
    /// replay of the client's (see [`super::model_call_body::ModelCallBody::Replayed`]).
    Replayed,
    /// Past Pingora's retry buffer: a subrequest carries it.
    Subrequest,
}

/// What decides a call's [`Delivery`] but the translation of the candidate it goes to.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRule {
    overflow_falls_back: bool,
    streamed: bool,
    past_replay: bool,
}

impl DeliveryRule {
    /// The delivery of an attempt translated by `translation` (`None`: its answer
    /// passes as it is).
    pub fn for_translation(&self, translation: Option<&ResponseCodecs>) -> Delivery {
        let whole = match translation {
            Some(translation) => !translation.stream_requested() || self.overflow_falls_back,
            None => self.overflow_falls_back,
        };
        if whole {
            Delivery::Whole {
                streamed: self.streamed,
            }
        } else if self.past_replay {
            Delivery::Subrequest
        } else {
            Delivery::Replayed
        }
    }
}

impl PreparedCall {
    /// Routes `call`'s model, plans its attempts and prepares the first: the body as
    /// its provider speaks it, and the provider's credential. The model and what a
    /// translated Responses answer leaves out are noted in `ctx` as soon as they are
    /// known (a refused credential is logged with its model).
    pub fn prepare(
        ctx: &mut RequestContext,
        call: CallRequest<'_>,
        sources: CallSources<'_>,
    ) -> Result<Self, GatewayError> {
        let CallSources { config, health, .. } = sources;
        let field = call.field;
        let stateful = call.endpoint.is_responses_api() && field.continues_conversation;
        let plan =
            attempts::plan_for_model(&field.name, stateful, &call.req.headers, config, health)?;
        let held = HeldCall {
            endpoint: call.endpoint,
            body: call.body,
            field,
            query: call
                .req
                .uri
                .query()
                // Any provider may take the call (Gemini among them): none of Google's
                // reshaping parameters is an OpenAI or Anthropic one.
                .and_then(|q| super::client_query::upstream_query(q, true))
                .map(std::borrow::Cow::into_owned),
            history: call.history,
            created: call.created,
            previous_refused: call.previous_refused,
        };
        let (target, body, translation) = prepare_attempt(ctx, &plan, &held, sources)?;
        let credential = attempts::credential(&target.provider, &call.req.headers, config, health)?;
        let name = &held.field.name;
        let overflow_falls_back = config.models.fallbacks.covers_context_overflow(name)
            && !config.models.fallbacks.after(name).is_empty();
        Ok(Self {
            target: UpstreamTarget {
                credential,
                ..target
            },
            body,
            translation,
            plan,
            held,
            overflow_falls_back,
        })
    }

    /// Provider, upstream path and credential of the first attempt.
    pub fn target(&self) -> &UpstreamTarget {
        &self.target
    }

    /// How the body goes upstream; `past_replay`: it did not fit Pingora's retry
    /// buffer.
    pub fn delivery(&self, past_replay: bool) -> Delivery {
        self.delivery_rule(past_replay)
            .for_translation(self.translation.as_ref())
    }

    /// How this call's body goes upstream, whichever candidate it goes to.
    pub fn delivery_rule(&self, past_replay: bool) -> DeliveryRule {
        DeliveryRule {
            overflow_falls_back: self.overflow_falls_back,
            streamed: self.held.field.stream,
            past_replay,
        }
    }

    /// The first attempt's target, body and translation. The attempts are left with
    /// `ctx` when the plan may try again (with the call, to prepare again), the first
    /// one already readied; otherwise they end here.
    pub fn into_first_attempt(self, ctx: &mut RequestContext, config: &Config) -> FirstAttempt {
        if self.plan.can_retry(config) {
            ctx.plan = Some(self.plan);
            ctx.held_call = Some(self.held);
            ctx.attempt_ready = true;
        }
        FirstAttempt {
            target: self.target,
            body: self.body,
            translation: self.translation,
        }
    }
}

/// What the first attempt of a prepared call sends.
#[derive(Debug)]
pub struct FirstAttempt {
    /// Provider, upstream path and credential.
    pub target: UpstreamTarget,
    /// The body the provider receives.
    pub body: Bytes,
    /// How the provider's answer becomes the client's, when it must change.
    pub translation: Option<ResponseCodecs>,
}

/// Prepares the plan's current candidate for `held`: the model noted in `ctx`, a
/// translated Responses answer kept as the client asked, and the target (its
/// credential still to be chosen: that needs the client's headers and the keys'
/// health), body and translation.
fn prepare_attempt(
    ctx: &mut RequestContext,
    plan: &AttemptPlan,
    held: &HeldCall,
    sources: CallSources<'_>,
) -> Result<(UpstreamTarget, Bytes, Option<ResponseCodecs>), GatewayError> {
    let mut prepared = attempts::prepare_current(plan, held, sources.config)?;
    observe::model_routed(ctx, std::mem::take(&mut prepared.model));
    if let Some(responses) = prepared.responses.take() {
        keep_responses(&mut prepared, responses, sources, ctx);
    }
    Ok((prepared.target, prepared.body, prepared.translation))
}

/// Readies the next attempt of a request carrying a plan: a fresh credential
/// (another key after a refused one), and, when the plan moved to another model,
/// its request prepared again: the new body and how its answer is translated.
pub fn ready_attempt(
    ctx: &mut RequestContext,
    headers: &HeaderMap,
    health: &HealthBook,
    responses: &Arc<dyn ResponseStore>,
) -> Result<Option<(Bytes, Option<ResponseCodecs>)>, GatewayError> {
    if std::mem::take(&mut ctx.attempt_ready) {
        // Readied with the request (or by the main request, for a subrequest), and
        // admitted there.
        ctx.later_attempt = false;
        return Ok(None);
    }
    let Some(config) = ctx.config.clone() else {
        return Ok(None);
    };
    let Some(plan) = ctx.plan.take() else {
        return Ok(None);
    };
    let moved = prepare_moved(ctx, &plan, health, responses, &config);
    ctx.plan = Some(plan);
    let moved = moved?;
    // Another request to a provider: counted where it goes, once more where the one
    // before went (a retry, or a fallback to another of its models).
    ctx.later_attempt = true;
    if let Some(upstream) = ctx.upstream.as_mut() {
        upstream.credential = attempts::credential(&upstream.provider, headers, &config, health)?;
    }
    Ok(moved)
}

/// When `plan` moved past the model the request was prepared for: the new model's
/// request, its target left in `ctx`.
fn prepare_moved(
    ctx: &mut RequestContext,
    plan: &AttemptPlan,
    health: &HealthBook,
    responses: &Arc<dyn ResponseStore>,
    config: &Config,
) -> Result<Option<(Bytes, Option<ResponseCodecs>)>, GatewayError> {
    if plan.position() == ctx.prepared_at {
        return Ok(None);
    }
    let Some(held) = ctx.held_call.take() else {
        return Err(GatewayError::bad_gateway(
            "no request to send to the fallback",
        ));
    };
    let sources = CallSources {
        config,
        health,
        responses,
    };
    // A Responses call falling back to a translated model: its answer is kept as the
    // first model's would have been.
    let prepared = prepare_attempt(ctx, plan, &held, sources);
    ctx.held_call = Some(held);
    let (target, body, translation) = prepared?;
    ctx.prepared_at = plan.position();
    ctx.upstream = Some(target);
    Ok(Some((body, translation)))
}

/// Notes what a translated Responses answer leaves out, and has it stored when it
/// completes if the client asked for that.
fn keep_responses(
    prepared: &mut PreparedRequest,
    plan: ResponsesPlan,
    sources: CallSources<'_>,
    ctx: &mut RequestContext,
) {
    if !plan.omitted_tools.is_empty() {
        ctx.omitted_tools = Some(plan.omitted_tools.join(","));
    }
    let Some(ResponseCodecs {
        client: ClientEncoder::Responses { on_completed, .. },
        ..
    }) = prepared.translation.as_mut()
    else {
        return;
    };
    if !plan.store {
        return;
    }
    let store = Arc::clone(sources.responses);
    let under_way = store.mark_under_way(&plan.id).map(|mark| {
        tokio::spawn(mark);
        UnderWay::new(&store, &plan.id)
    });
    let limits = sources.config.responses;
    let Some(owner) = ctx.responses_owner.clone() else {
        // Every Responses call is given its owner before it is prepared.
        debug_assert!(false, "a Responses call without its owner");
        return;
    };
    *on_completed = Some(OnCompleted(Arc::new(move |response: &[u8]| {
        let stored = StoredResponse {
            owner: Arc::clone(&owner),
            response: Bytes::copy_from_slice(response),
            input_items: plan.input_items.clone(),
            previous: plan.previous.clone(),
        };
        // The in-memory store has it once `put` returns; a remote one when the
        // future completes (which clears the mark).
        let pending = store.put(plan.id.clone(), stored, limits);
        if let Some(under_way) = &under_way {
            under_way.ended_with_answer();
        }
        tokio::spawn(pending);
    })));
}

/// A response marked as under way in a shared store. Dropped with the call's
/// translation: when the call ended without an answer to store, the mark is cleared,
/// so that a read of its id is not kept waiting for a write that never comes.
struct UnderWay {
    store: Arc<dyn ResponseStore>,
    id: String,
    answered: std::sync::atomic::AtomicBool,
}

impl UnderWay {
    fn new(store: &Arc<dyn ResponseStore>, id: &str) -> Self {
        Self {
            store: Arc::clone(store),
            id: id.to_string(),
            answered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Its answer is being stored: the write clears the mark.
    fn ended_with_answer(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        if self.answered.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // Dropped on the worker that ran the call; without a runtime (the process
        // ending), the mark lapses by itself.
        if let (Some(unmark), Ok(runtime)) = (
            self.store.unmark(&self.id),
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(unmark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};
    use crate::proxy::model_call_body::{hand_back, ModelCallBody, SubrequestReturn};
    use crate::proxy::response_store::MemoryResponseStore;
    use std::time::Duration;

    const PROVIDERS: &str =
        "providers:\n  openai: {api_key: sk-openai}\n  anthropic: {api_key: sk-anthropic}\n";

    fn config(models: &str) -> Config {
        let yaml = format!("{models}{PROVIDERS}");
        build_config(Some(&yaml), None, &EnvSnapshot::loopback()).unwrap()
    }

    fn prepare(
        ctx: &mut RequestContext,
        config: &Config,
        endpoint: ModelEndpoint,
        body: &'static str,
    ) -> Result<PreparedCall, GatewayError> {
        let req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        let responses: Arc<dyn ResponseStore> = Arc::new(MemoryResponseStore::default());
        let health = HealthBook::default();
        let call = CallRequest {
            endpoint,
            req: &req,
            body: Bytes::from_static(body.as_bytes()),
            field: ModelField::find(body.as_bytes())?,
            history: None,
            created: 1,
            previous_refused: false,
        };
        let sources = CallSources {
            config,
            health: &health,
            responses: &responses,
        };
        PreparedCall::prepare(ctx, call, sources)
    }

    #[test]
    fn prepare_routes_the_model_and_fills_in_the_credential() {
        let config = config("");
        let mut ctx = RequestContext::new();
        let body = r#"{"model":"gpt-4o","messages":[]}"#;
        let call = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, body).unwrap();
        assert_eq!(call.target().provider.name, "openai");
        assert!(
            call.target().credential.key.is_some(),
            "no placeholder left"
        );
        assert_eq!(call.target().path_and_query, "/v1/chat/completions");
        assert_eq!(
            call.body,
            body.as_bytes(),
            "a same-format body goes as sent"
        );
        assert!(call.translation.is_none());
        assert_eq!(
            ctx.obs.model(),
            Some("gpt-4o"),
            "the model is noted at once"
        );
    }

    #[test]
    fn a_streamed_or_same_format_call_is_replayed_when_it_fits_and_a_subrequest_when_not() {
        let config = config("");
        let mut ctx = RequestContext::new();
        let same = r#"{"model":"gpt-4o","messages":[]}"#;
        let call = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, same).unwrap();
        assert_eq!(call.delivery(false), Delivery::Replayed);
        assert_eq!(call.delivery(true), Delivery::Subrequest);

        let streamed = r#"{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let call = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, streamed).unwrap();
        assert!(call.translation.is_some(), "OpenAI format to Anthropic's");
        assert_eq!(call.delivery(false), Delivery::Replayed);
        assert_eq!(call.delivery(true), Delivery::Subrequest);
    }

    #[test]
    fn a_translated_answer_the_client_takes_whole_is_read_whole() {
        let config = config("");
        let mut ctx = RequestContext::new();
        let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
        let call = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, body).unwrap();
        assert_eq!(call.target().provider.name, "anthropic");
        assert_ne!(call.body, body.as_bytes(), "translated for the provider");
        let whole = Delivery::Whole { streamed: false };
        assert_eq!(call.delivery(false), whole);
        assert_eq!(call.delivery(true), whole, "whatever its size");
    }

    #[test]
    fn a_model_falling_back_on_context_overflow_has_its_errors_read_whole() {
        let models = "models:\n  fallbacks:\n    gpt-4o: [anthropic/claude-sonnet-4-5]\n  fallbacks_on_context_overflow: [gpt-4o]\n";
        let config = config(models);
        let mut ctx = RequestContext::new();
        let body = r#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
        let call = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, body).unwrap();
        assert_eq!(call.delivery(false), Delivery::Whole { streamed: true });
    }

    #[test]
    fn prepare_refuses_a_body_without_a_routable_model() {
        let config = config("");
        let mut ctx = RequestContext::new();
        for body in [r#"{"messages":[]}"#, "not json", r#"{"model":"nobody/x"}"#] {
            let err = prepare(&mut ctx, &config, ModelEndpoint::ChatCompletions, body)
                .err()
                .unwrap_or_else(|| panic!("{body} was prepared"));
            assert_eq!(err.status, 400, "{body}: {err}");
        }
        assert_eq!(ctx.obs.model(), None, "nothing was routed");
    }

    #[test]
    fn the_attempts_stay_with_the_request_only_when_it_may_try_again() {
        let body = r#"{"model":"gpt-4o","messages":[]}"#;
        let alone = config("");
        let mut ctx = RequestContext::new();
        let call = prepare(&mut ctx, &alone, ModelEndpoint::ChatCompletions, body).unwrap();
        let first = call.into_first_attempt(&mut ctx, &alone);
        assert_eq!(first.target.provider.name, "openai");
        assert!(ctx.plan.is_none() && ctx.held_call.is_none());
        assert!(!ctx.attempt_ready);

        let backed = config("models:\n  fallbacks:\n    gpt-4o: [anthropic/claude-sonnet-4-5]\n");
        let mut ctx = RequestContext::new();
        let call = prepare(&mut ctx, &backed, ModelEndpoint::ChatCompletions, body).unwrap();
        let first = call.into_first_attempt(&mut ctx, &backed);
        assert_eq!(first.body, body.as_bytes());
        assert!(ctx.plan.is_some() && ctx.held_call.is_some());
        assert!(ctx.attempt_ready, "the first attempt is readied");
    }

    #[test]
    fn a_subrequest_hands_its_attempts_back_to_the_main_request() {
        let backed = config("models:\n  fallbacks:\n    gpt-4o: [anthropic/claude-sonnet-4-5]\n");
        let body = r#"{"model":"gpt-4o","messages":[]}"#;
        let returns = SubrequestReturn::default();
        let mut sub = RequestContext::new();
        sub.body = ModelCallBody::subrequest(returns.clone());
        let call = prepare(&mut sub, &backed, ModelEndpoint::ChatCompletions, body).unwrap();
        call.into_first_attempt(&mut sub, &backed);
        assert!(hand_back(&mut sub, Duration::from_millis(7)));
        assert!(sub.body.handed_back(), "the subrequest answers nothing");
        assert!(sub.plan.is_none() && sub.held_call.is_none());
        assert_eq!(sub.retry_wait, None, "the main request waits, not Pingora");
        let back = returns.take_handback().unwrap();
        assert_eq!(back.wait, Some(Duration::from_millis(7)));
        assert_eq!(back.call.expect("the call").field.name, "gpt-4o");
    }

    #[test]
    fn the_next_attempt_on_a_fallback_is_prepared_for_its_own_provider() {
        let backed = Arc::new(config(
            "models:\n  fallbacks:\n    gpt-4o: [anthropic/claude-sonnet-4-5]\n",
        ));
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let health = HealthBook::default();
        let responses: Arc<dyn ResponseStore> = Arc::new(MemoryResponseStore::default());
        let headers = HeaderMap::new();
        let mut ctx = RequestContext::new();
        ctx.config = Some(Arc::clone(&backed));
        let call = prepare(&mut ctx, &backed, ModelEndpoint::ChatCompletions, body).unwrap();
        ctx.upstream = Some(call.target().clone());
        call.into_first_attempt(&mut ctx, &backed);
        let first = ready_attempt(&mut ctx, &headers, &health, &responses).unwrap();
        assert!(first.is_none(), "readied with the request");

        let failure = crate::proxy::resilience::AttemptFailure::Status {
            code: 500,
            retry_after: None,
        };
        assert!(attempts::after_failure(&mut ctx, failure, &health).is_some());
        let (next, translation) = ready_attempt(&mut ctx, &headers, &health, &responses)
            .unwrap()
            .expect("the fallback's own body");
        let target = ctx.upstream.as_ref().unwrap();
        assert_eq!(target.provider.name, "anthropic");
        assert!(target.credential.key.is_some());
        assert_ne!(next, body.as_bytes());
        assert!(translation.is_some());
        assert_eq!(ctx.obs.model(), Some("claude-sonnet-4-5"));
    }
}
