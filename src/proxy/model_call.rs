//! A `/v1` call from `request_filter` to the provider: its body read, the call
//! prepared ([`PreparedCall`]), then sent the way its [`Delivery`] says: through the
//! client's own session ([`ModelCallBody::Replayed`]), through subrequests, or by the
//! gateway's own exchange.

use std::sync::Arc;

use bytes::Bytes;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::body_deadline::BodyDeadline;
use super::client_hangup::{self, ClientSocket};
use super::held_chat_body::{self, HeldBody};
use super::limit_check::ProviderAdmission;
use super::model_call_body::{ModelCallBody, SubrequestReturn};
use super::model_field::{readable_body, with_model_if_absent, ModelField};
use super::model_request::ModelEndpoint;
use super::prepared_call::{self, CallRequest, CallSources, Delivery, FirstAttempt, PreparedCall};
use super::subrequest::{self, SubrequestPlan};
use super::{
    answer_as_is, final_status, limit_check, observe, reject, translate_response, unix_now,
    AuroraProxy, GatewayError, RequestContext, UpstreamTarget,
};
use crate::config::Config;
use crate::telemetry;
use crate::translate::ResponseCodecs;

impl AuroraProxy {
    /// `/v1/chat/completions`, `/v1/embeddings` and `/v1/messages`: the provider is
    /// named by the body, so the body is read first. A body that fits Pingora's retry
    /// buffer (64 KiB, nearly every chat request) is proxied by this very session, the
    /// replayed body swapped for the prepared one; a larger one goes through a subrequest.
    pub(super) async fn call_model(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Arc<Config>,
        endpoint: ModelEndpoint,
    ) -> Result<bool> {
        let body = match self.read_whole_body(session, ctx, config).await? {
            Ok(body) => body,
            Err(err) => return reject(session, ctx, err).await,
        };
        let body = match endpoint.default_model() {
            Some(model) => match with_model_if_absent(body, model) {
                Ok(body) => body,
                Err(err) => return reject(session, ctx, err).await,
            },
            None => body,
        };
        // The one pass over the whole body: its model, its conversation, and JSON's
        // rules held (the request translators rely on it).
        let field = match ModelField::find(&body) {
            Ok(field) => field,
            Err(err) => return reject(session, ctx, err).await,
        };
        let history = match endpoint {
            ModelEndpoint::Responses => {
                let owner = super::responses_owner(ctx, session.req_header(), config);
                let history = self
                    .stored_history(&field, config, &owner, body.len())
                    .await;
                ctx.responses_owner = Some(owner);
                let history = match history {
                    Ok(history) => history,
                    Err(err) => return reject(session, ctx, err).await,
                };
                // The conversation goes upstream with the body: it is held as long,
                // within the gateway's budget for bodies.
                let held = (body.len() + history.as_ref().map_or(0, Vec::len)) as u64;
                if let Some(Err(err)) = ctx.body_permit.as_mut().map(|p| p.cover(held)) {
                    return reject(session, ctx, err).await;
                }
                history
            }
            _ => None,
        };
        // Boxed, and only for a call that continues a response: only such a call waits
        // on a record, and every other is spared the future.
        let previous_refused = if field.previous_response_id.is_none() {
            false
        } else {
            let refused = Box::pin(self.previous_refused(
                ctx,
                session.req_header(),
                config,
                endpoint,
                &field,
            ));
            match refused.await {
                Ok(refused) => refused,
                Err(err) => return reject(session, ctx, err).await,
            }
        };
        let request = CallRequest {
            endpoint,
            req: session.req_header(),
            body: body.clone(),
            field,
            history,
            created: unix_now(),
            previous_refused,
        };
        let prepared = match PreparedCall::prepare(ctx, request, self.call_sources(config)) {
            Ok(prepared) => prepared,
            Err(err) => return reject(session, ctx, err).await,
        };
        ctx.upstream = Some(prepared.target().clone());
        let past_replay = session.as_ref().retry_buffer_truncated();
        let rule = prepared.delivery_rule(past_replay);
        let mut delivery = prepared.delivery(past_replay);
        let mut first = prepared.into_first_attempt(ctx, config);
        // A candidate the gateway refuses (its provider out of quota, or work its
        // caller may not have done there) is passed over for the plan's next one.
        loop {
            match self
                .admit_attempt(ctx, Some((body.clone(), endpoint)))
                .await
            {
                Ok(ProviderAdmission::Admitted) => break,
                Ok(ProviderAdmission::MovedOn) => {
                    ctx.attempt_ready = false;
                    let headers = &session.req_header().headers;
                    let next = match self.ready_attempt(ctx, headers) {
                        Ok(next) => next,
                        Err(err) => return reject(session, ctx, err).await,
                    };
                    let (Some((body, translation)), Some(target)) = (next, ctx.upstream.clone())
                    else {
                        let err = GatewayError::bad_gateway("no attempt to move on to");
                        return reject(session, ctx, err).await;
                    };
                    // Read whole, or not, as the candidate moved to needs.
                    delivery = rule.for_translation(translation.as_ref());
                    first = FirstAttempt {
                        target,
                        body,
                        translation,
                    };
                    // Readied here: the attempt's own hook does not ready it again.
                    ctx.attempt_ready = true;
                }
                Err(err) => return reject(session, ctx, err).await,
            }
        }
        observe::request_body(ctx, &first.body);
        // The gateway's own exchanges are boxed where they are taken: inline, their
        // futures would make every call's future (moved whole into its box by
        // `request_filter`) many kilobytes, a replayed call's too.
        match delivery {
            Delivery::Whole { streamed } => {
                Box::pin(self.answer_whole(
                    session,
                    ctx,
                    first.target,
                    first.body,
                    first.translation,
                    streamed,
                ))
                .await
            }
            Delivery::Replayed => {
                ctx.upstream = Some(first.target);
                ctx.body = ModelCallBody::replayed(first.body);
                match first.translation {
                    Some(translation) => translate_response(session, ctx, translation),
                    None => answer_as_is(session, ctx),
                }
                Ok(false)
            }
            Delivery::Subrequest => {
                Box::pin(self.call_through_subrequests(
                    session,
                    ctx,
                    config,
                    first.target,
                    first.body,
                    first.translation,
                ))
                .await
            }
        }
    }

    /// Reads the whole body of a request the gateway must read before it goes
    /// upstream, within `body_size_limit`, `body_timeout` and the gateway-wide
    /// `max_buffered_bytes` (its share held until the request ends: the body and what
    /// is prepared from it live as long). A body that fits Pingora's retry buffer
    /// (64 KiB) stays in it, which tells the proxy loop to send it on. The inner
    /// error is the client's: the connection is not kept after it, as whatever
    /// follows cannot be trusted to start a request.
    pub(super) async fn read_whole_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Config,
    ) -> Result<std::result::Result<Bytes, GatewayError>> {
        let admission = ModelCallBody::admit(session.req_header());
        session.as_mut().enable_retry_buffering();
        let mut permit = self.bodies.permit(config.server.max_buffered_bytes);
        if let Err(err) = admission.check_declared(&permit) {
            // Refused before the client is told to send: no `100 Continue` first, so
            // the client never starts an upload that is already turned down.
            session.set_keepalive(None);
            return Ok(Err(err));
        }
        if admission.send_continue {
            let proceed = ResponseHeader::build(100, Some(0))?;
            // Pingora keeps no connection alive that answered before its body came,
            // and the `100` is such an answer: the body it asks for is read whole
            // below (any failure to closes the connection then).
            session.set_close_on_response_before_downstream_finish(false);
            let written = session
                .write_response_header(Box::new(proceed), false)
                .await;
            session.set_close_on_response_before_downstream_finish(true);
            written?;
        }
        let limit = config.server.body_size_limit;
        let deadline = BodyDeadline::new(ctx.started, config.server.body_timeout);
        // Cut short, malformed or too large: the connection closes after the answer.
        let read = subrequest::read_body_within(session, limit, &mut permit, deadline).await;
        ctx.body_permit = Some(permit);
        Ok(read)
    }

    /// A `/p/` model call's body held ([`HeldBody`]): read whole before it goes
    /// upstream, then sent with its exact length, through this session (a body that
    /// fits Pingora's retry buffer) or a subrequest, as a `/v1` body is. A Chat body
    /// held to ask for its stream's usage ([`held_chat_body`]) is refused with 400
    /// before anything reaches the provider when it cannot be read; one held only for
    /// its input's estimate goes as it came.
    pub(super) async fn pass_held_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Arc<Config>,
        held: HeldBody,
    ) -> Result<bool> {
        let read = match self.read_whole_body(session, ctx, config).await? {
            Ok(body) => match super::no_unmetered_ask(ctx, &body) {
                Ok(()) if held == HeldBody::AskingUsage => held_chat_body::asking_usage(body),
                Ok(()) if body.is_empty() => Ok((body, false)),
                Ok(()) => readable_body(&body).map(|()| (body, false)),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        let (body, asked) = match read {
            Ok(read) => read,
            Err(err) => return reject(session, ctx, err).await,
        };
        // Only a body read whole and accepted counts against the provider's quota: a
        // refused one never reaches it, and a slow upload holds none of its call slots.
        if let Err(err) = limit_check::admit_provider(&self.limits, ctx).await {
            return reject(session, ctx, err).await;
        }
        let Some(target) = ctx.upstream.take() else {
            return reject(session, ctx, GatewayError::not_found("no upstream")).await;
        };
        let target = target.asking_usage(asked);
        observe::request_body(ctx, &body);
        if !session.as_ref().retry_buffer_truncated() {
            ctx.upstream = Some(target);
            ctx.body = ModelCallBody::replayed(body);
            answer_as_is(session, ctx);
            return Ok(false);
        }
        Box::pin(self.call_through_subrequests(session, ctx, config, target, body, None)).await
    }

    /// Where preparing a call looks things up.
    pub(super) fn call_sources<'a>(&'a self, config: &'a Config) -> CallSources<'a> {
        CallSources {
            config,
            health: &self.health,
            responses: &self.responses,
        }
    }

    /// Readies the next attempt of a request carrying a plan (see
    /// [`prepared_call::ready_attempt`]).
    pub(super) fn ready_attempt(
        &self,
        ctx: &mut RequestContext,
        headers: &http::HeaderMap,
    ) -> std::result::Result<Option<(Bytes, Option<ResponseCodecs>)>, GatewayError> {
        let next = prepared_call::ready_attempt(ctx, headers, &self.health, &self.responses)?;
        if let Some((body, _)) = &next {
            // What a stream of this attempt's is estimated by, should it need to be.
            observe::request_body(ctx, body);
        }
        Ok(next)
    }

    /// [`Self::ready_attempt`], the request admitted against the limits of the
    /// provider a new attempt goes to.
    pub(super) async fn ready_attempt_admitted(
        &self,
        ctx: &mut RequestContext,
        headers: &http::HeaderMap,
    ) -> std::result::Result<Option<(Bytes, Option<ResponseCodecs>)>, GatewayError> {
        loop {
            let next = self.ready_attempt(ctx, headers)?;
            // The first attempt was admitted with the request; every later one counts
            // where it goes, a retry at the same provider too.
            if !ctx.later_attempt {
                return Ok(next);
            }
            let asked = ctx.held_call.as_ref().map(|c| (c.body.clone(), c.endpoint));
            match self.admit_attempt(ctx, asked).await? {
                ProviderAdmission::Admitted => return Ok(next),
                // The plan moved past a provider out of quota: the next one is readied.
                ProviderAdmission::MovedOn => {}
            }
        }
    }

    /// Admits the readied attempt: a `/v1` call (`asked`: the client's body and
    /// endpoint; `None` for a passthrough request, held to its one provider at its
    /// start) is refused where its credential would have the provider do work its
    /// caller's limits cannot meter ([`super::no_unmetered_work`]), then every attempt
    /// is held to its provider's quota. A candidate refused either way is passed over
    /// for the plan's next one, when it has one.
    pub(super) async fn admit_attempt(
        &self,
        ctx: &mut RequestContext,
        asked: Option<(Bytes, ModelEndpoint)>,
    ) -> std::result::Result<ProviderAdmission, GatewayError> {
        if let Some((body, endpoint)) = asked {
            if let Err(refused) = super::no_unmetered_work(ctx, &body, endpoint) {
                return limit_check::move_on_or(ctx, &self.health, refused, "not_allowed");
            }
        }
        // The first attempt was admitted with the request's config; a later one as
        // the limits stand now.
        let first = !ctx.later_attempt;
        let live = &*self.config;
        limit_check::admit_provider_or_move_on(&self.limits, &self.health, ctx, (first, live)).await
    }

    /// [`Self::ready_attempt_admitted`] in a loop that holds the attempt's body and
    /// codecs: a plan moved to another model replaces them.
    pub(super) async fn ready_attempt_into(
        &self,
        ctx: &mut RequestContext,
        headers: &http::HeaderMap,
        body: &mut Bytes,
        translation: &mut Option<ResponseCodecs>,
    ) -> std::result::Result<(), GatewayError> {
        if let Some((new_body, new_translation)) = self.ready_attempt_admitted(ctx, headers).await?
        {
            *body = new_body;
            *translation = new_translation;
        }
        Ok(())
    }

    /// A body past Pingora's retry buffer goes through a subrequest. A subrequest does
    /// not send its body twice: when its attempt fails in a way the plan retries, it
    /// hands the plan back and the next attempt is a new subrequest.
    async fn call_through_subrequests(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Arc<Config>,
        mut target: UpstreamTarget,
        mut body: Bytes,
        mut translation: Option<ResponseCodecs>,
    ) -> Result<bool> {
        let timings = observe::delegate(ctx);
        let client = ClientSocket::of(session);
        // The first attempt, readied with the call, is the first subrequest's; each
        // one handed back is readied here (another instance, a fallback, another key).
        ctx.attempt_ready = false;
        loop {
            ctx.upstream = Some(target.clone());
            let returns = SubrequestReturn::default();
            let attempts = ctx.plan.take().map(|plan| (plan, ctx.held_call.take()));
            let plan = SubrequestPlan {
                config: Arc::clone(config),
                request_id: ctx.request_id.clone(),
                caller: ctx.caller.clone(),
                responses_owner: ctx.responses_owner.clone(),
                route_kind: ctx.route_kind,
                target: target.clone(),
                translation: translation.clone(),
                error_format: ctx.error_format,
                started: ctx.started,
                timings: Arc::clone(&timings),
                trace: telemetry::handoff(ctx),
                attempts,
                rate: ctx.rate,
                returns: returns.clone(),
            };
            let outcome = subrequest::run(session, plan, body.clone()).await;
            ctx.upstream_status = returns.status();
            let Some(back) = returns.take_handback() else {
                return outcome.map(|()| true);
            };
            ctx.plan = Some(back.plan);
            ctx.held_call = back.call;
            let Some(wait) = back.wait.filter(|_| final_status(session).is_none()) else {
                return outcome.map(|()| true);
            };
            if !client_hangup::wait_for_retry(session, ctx, client, wait).await {
                return Ok(true);
            }
            let headers = &session.req_header().headers;
            if let Err(err) = self
                .ready_attempt_into(ctx, headers, &mut body, &mut translation)
                .await
            {
                return reject(session, ctx, err).await;
            }
            match ctx.upstream.clone() {
                Some(next) => target = next,
                None => return reject(session, ctx, GatewayError::not_found("no upstream")).await,
            }
        }
    }
}

/// Applies the main request's plan to its subrequest.
pub(super) fn begin_subrequest(
    session: &mut Session,
    ctx: &mut RequestContext,
    plan: SubrequestPlan,
) {
    ctx.body = ModelCallBody::subrequest(plan.returns);
    ctx.config = Some(plan.config);
    ctx.request_id = plan.request_id;
    ctx.caller = plan.caller;
    ctx.responses_owner = plan.responses_owner;
    ctx.route_kind = plan.route_kind;
    ctx.upstream = Some(plan.target);
    ctx.error_format = plan.error_format;
    ctx.started = plan.started;
    ctx.rate = plan.rate;
    if let Some((attempts, call)) = plan.attempts {
        ctx.prepared_at = attempts.position();
        ctx.plan = Some(attempts);
        ctx.held_call = call;
        ctx.attempt_ready = true;
    }
    observe::subrequest_began(ctx, plan.timings);
    telemetry::subrequest_began(ctx, plan.trace);
    match plan.translation {
        Some(translation) => translate_response(session, ctx, translation),
        None => answer_as_is(session, ctx),
    }
}
