//! The Pingora `ProxyHttp` service. The hooks stay thin: routing, header rules,
//! error mapping and logging live in the sibling modules as plain functions.

mod access_log;
mod answer_decoder;
mod attempts;
mod batch_links;
mod body_budget;
mod body_deadline;
mod chat_body_fit;
mod client_hangup;
mod client_query;
mod context;
pub mod cors;
pub mod deferred_poll;
mod error;
mod framing;
pub mod header_maps;
pub mod headers;
mod held_chat_body;
mod input_items;
mod limit_check;
mod messages_body_fit;
mod model_call;
mod model_call_body;
pub mod model_directory;
mod model_field;
pub mod model_request;
pub mod model_route;
pub mod native_owner;
mod native_owner_redis;
mod native_responses;
mod observe;
mod open_answer;
pub mod passthrough;
mod prepared_call;
mod provider_fetch;
pub mod provider_key;
mod provider_redirect;
pub mod request_id;
pub mod resilience;
mod respond;
mod response_cork;
mod response_parts;
pub mod response_store;
mod response_store_redis;
mod response_write_redis;
pub mod retry_advice;
pub mod route;
mod settle_on_drop;
mod subrequest;
mod unfinished_writes;
mod upstream;
mod upstream_failure;
mod whole_answer;
mod write_cost;

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::connectors::http::v1::Connector;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use context::{RequestContext, UpstreamTarget};
pub use error::{ErrorKind, GatewayError};
pub use route::Route;
pub use upstream::{AnswerShape, UpstreamResolver, UpstreamWait};
pub use upstream_failure::gateway_error_for;

use crate::config::{Config, LiveConfig};
use crate::metrics;
use crate::metrics::deferred_answer::ApartKind;
use crate::providers::WireFormat;
use crate::telemetry;
use crate::translate::response_translator::MAX_WHOLE_ANSWER_BYTES;
use crate::translate::{
    ResponseCodecs, ResponseTranslator, ResponseTranslatorBuilder, UsageRead, OMITTED_TOOLS_HEADER,
};
use answer_decoder::AnswerDecoder;
use body_deadline::BodyDeadline;
use client_hangup::ClientSocket;
use deferred_poll::DeleteRefused;
use held_chat_body::HeldBody;
use model_call_body::{hand_back, return_plan, ChunkSource};
use model_directory::{openai_list_body, openai_model_body, ModelDirectory, ModelEntry};
use model_field::ModelField;
use request_id::RequestId;
use resilience::{is_context_overflow, retry_after, AttemptFailure, HealthBook};
use response_store::{MemoryResponseStore, ResponseStore};

/// Aurora's proxy service.
pub struct AuroraProxy {
    config: Arc<LiveConfig>,
    resolver: UpstreamResolver,
    models: ModelDirectory,
    /// Upstream connections for exchanges the gateway drives itself (whole answers).
    connector: Connector,
    /// Request bodies held in memory, all requests together.
    bodies: Arc<body_budget::BodyBudget>,
    /// Translated Responses API answers kept for `previous_response_id`.
    responses: Arc<dyn ResponseStore>,
    /// Which provider instances and keys are failing (passive health).
    health: HealthBook,
    /// Where the counters of limits live.
    limits: Arc<dyn crate::limits::LimitStore>,
    /// Where a request dropped unended is charged, when the store outlives the process.
    settler: Option<Arc<settle_on_drop::Settler>>,
    /// Background responses and batches polled for their usage.
    deferred: deferred_poll::DeferredPoll,
}

impl AuroraProxy {
    /// A proxy reading its configuration from `config` on every request.
    pub fn new(config: Arc<LiveConfig>) -> Self {
        // Read once: the store is chosen at start (restart only).
        let limits = crate::limits::store_for(&config.snapshot().limits).unwrap_or_else(|e| {
            log::error!("{e}; limits are counted in this process instead");
            Arc::new(crate::limits::MemoryStore::default())
        });
        Self {
            settler: settle_on_drop::Settler::for_store(&limits, &config),
            limits,
            resolver: UpstreamResolver::default(),
            models: ModelDirectory::new(),
            // Built once here: it loads the system trust roots.
            connector: Connector::new(None),
            bodies: Arc::default(),
            responses: response_store_for(&config.snapshot()),
            config,
            health: HealthBook::default(),
            deferred: deferred_poll::DeferredPoll::new(),
        }
    }

    /// The background responses and batches this proxy polls for their usage.
    pub fn deferred_poll(&self) -> &deferred_poll::DeferredPoll {
        &self.deferred
    }

    /// The store of limit counters and usage (shared with the usage report).
    pub fn limit_store(&self) -> Arc<dyn crate::limits::LimitStore> {
        Arc::clone(&self.limits)
    }

    /// The store of translated Responses API answers, for the writes a stop left
    /// unfinished.
    pub fn response_store(&self) -> Arc<dyn ResponseStore> {
        Arc::clone(&self.responses)
    }

    /// The resolver this proxy connects with; a clone shares its address table.
    pub fn resolver(&self) -> &UpstreamResolver {
        &self.resolver
    }

    /// The route of a request the gateway accepts: authenticated (but for `/health`),
    /// the right method, a declared body within the limit.
    fn admit(
        &self,
        session: &Session,
        config: &Config,
        ctx: &mut RequestContext,
    ) -> std::result::Result<Route, GatewayError> {
        let req = session.req_header();
        let route = route::classify(req.uri.path(), &config.server);
        if let Ok(Route::ModelCall(endpoint)) = &route {
            // Even a refused key must come back in the envelope the client's SDK reads
            // (on `/p/`, [`error_format`] tells it when an error is answered).
            ctx.error_format = endpoint.error_format();
        }
        if let Ok(open @ (Route::Health | Route::Root)) = route {
            ctx.route_kind = open.kind();
            check_method(&open, req)?;
            return Ok(open);
        }
        // Everything but /health needs the gateway key, even to learn that a route is wrong.
        let caller = config
            .auth
            .authenticate(&req.headers, req.uri.query(), SystemTime::now)
            .map_err(|e| GatewayError::unauthorized(e.to_string()))?;
        let managed = matches!(caller, crate::auth::Caller::Managed(_));
        let passthrough_allowed = config.auth.allows_passthrough(&caller);
        ctx.caller = Some(caller);
        let route = route?;
        ctx.route_kind = route.kind();
        check_method(&route, req)?;
        if matches!(route, Route::Passthrough(_)) && !passthrough_allowed {
            return Err(GatewayError::forbidden(
                "this key may not use `/p/` routes (`passthrough: false`): they act on the \
                 provider account as a whole; call models through `/v1`",
            ));
        }
        if route == Route::Metrics && managed {
            // Every key's requests, tokens and spend by name: not for a tenant's key.
            return Err(GatewayError::forbidden(
                "`/metrics` names every key's usage: it is served to the master key, or \
                 without a key on the metrics listener",
            ));
        }
        framing::check_transfer_coding(req)?;
        let (limit, too_large) = body_limit(config, matches!(route, Route::Passthrough(_)));
        if declared_length(req).is_some_and(|len| len > limit) {
            return Err(too_large(limit));
        }
        Ok(route)
    }

    /// The conversation a translated Responses request of `owner` continues, from
    /// the store: within what `body_size_limit` leaves beside the request's own body
    /// (`body_len` bytes), as the request to the provider carries both.
    async fn stored_history(
        &self,
        field: &ModelField,
        config: &Config,
        owner: &str,
        body_len: usize,
    ) -> std::result::Result<Option<Vec<u8>>, GatewayError> {
        let Some(previous) = model_request::stored_history_needed(field, config) else {
            return Ok(None);
        };
        let max = config
            .server
            .body_size_limit
            .saturating_sub(body_len as u64);
        response_store::history(&*self.responses, previous, owner, max)
            .await
            .map(Some)
            .map_err(|e| match e {
                response_store::HistoryError::TooLarge(..) => {
                    GatewayError::conversation_too_large(e.to_string())
                }
                response_store::HistoryError::Unavailable(e) => store_unavailable(e),
                _ => GatewayError::not_found(e.to_string()).with_param("previous_response_id"),
            })
    }

    /// A `DELETE` of work at its provider (`deleted`: a response, an Anthropic message
    /// batch, by id): when the gateway polls it for its usage, it is polled first, as
    /// it cannot be read once deleted; a delete whose work's usage could not be read
    /// then is refused (503), to be sent again.
    async fn before_delete(
        &self,
        deleted: Option<(ApartKind, &str)>,
        config: &Arc<Config>,
    ) -> Result<(), GatewayError> {
        let Some((kind, id)) = deleted else {
            return Ok(());
        };
        let (resolver, store) = (&self.resolver, &self.limits);
        // Boxed: its state is no part of every request's.
        Box::pin(
            self.deferred
                .poll_before_delete(kind, id, Arc::clone(config), resolver, store),
        )
        .await
        .map_err(|refused| match refused {
            DeleteRefused::Undecided => GatewayError::overloaded(
                "the usage of what this request deletes could not be read yet; retry shortly",
                5,
            ),
            DeleteRefused::StillAtWork => GatewayError::still_running(format!(
                "batch `{id}` is still running, and deleting it would not stop it: cancel it \
                 first (`POST …/batches/{id}:cancel`), then delete it once it has ended"
            )),
        })
    }

    /// `GET` or `DELETE /v1/responses/{id}`.
    async fn stored_response(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Arc<Config>,
        id: &str,
    ) -> Result<bool> {
        let not_found = || response_not_found(id);
        let method = session.req_header().method.clone();
        if ![http::Method::GET, http::Method::HEAD, http::Method::DELETE].contains(&method) {
            let err = GatewayError::method_not_allowed(
                session.req_header().uri.path(),
                &http::Method::GET,
            );
            return reject(session, ctx, err).await;
        }
        let owner = responses_owner(ctx, session.req_header(), config);
        // Another caller's is not found, as a response of another project is not at
        // the provider.
        let stored = match response_store::owned(&*self.responses, id, &owner).await {
            Ok(stored) => stored,
            Err(e) => return reject(session, ctx, store_unavailable(e)).await,
        };
        let stored_here = match (&method, &stored) {
            (&http::Method::DELETE, Some(_)) => match self.responses.delete(id).await {
                Ok(deleted) => deleted,
                Err(e) => return reject(session, ctx, store_unavailable(e)).await,
            },
            _ => stored.is_some(),
        };
        if !stored_here {
            // An id made here is never the provider's: one not found (another caller's,
            // or gone) is not sent on with whatever key this caller brought.
            if crate::translate::generated_id::is_generated(id, "resp_") {
                return reject(session, ctx, not_found()).await;
            }
            // Not one of the gateway's own: the provider that serves the Responses API
            // itself may hold it, for its owner alone.
            // Boxed: only a read of a provider's response waits on its record.
            let target =
                Box::pin(self.native_target(ctx, session.req_header(), config, id, "")).await;
            match target {
                Ok(None) => return reject(session, ctx, not_found()).await,
                Ok(Some((target, recorded))) => {
                    ctx.upstream = Some(target);
                    observe::stored_response_read(ctx, id);
                    if method == http::Method::DELETE && recorded {
                        let forget = native_responses::NativeOwnerStep::ForgetOnDelete(id.into());
                        ctx.native_owner = forget;
                    }
                    if method == http::Method::DELETE {
                        let deleted = Some((ApartKind::Response, id));
                        if let Err(err) = self.before_delete(deleted, config).await {
                            return reject(session, ctx, err).await;
                        }
                    }
                    // The provider's quota holds for a read forwarded to it too, once
                    // the gateway has nothing to refuse of it itself.
                    if let Err(err) = limit_check::admit_provider(&self.limits, ctx).await {
                        return reject(session, ctx, err).await;
                    }
                    return Ok(false);
                }
                Err(err) => return reject(session, ctx, err).await,
            }
        }
        if method == http::Method::DELETE {
            let mut body = br#"{"deleted":true,"id":"#.to_vec();
            body.extend_from_slice(serde_json::Value::from(id).to_string().as_bytes());
            body.extend_from_slice(br#","object":"response"}"#);
            respond::send_json_within(session, 200, body, &ctx.request_id, ctx.rate.as_ref())
                .await?;
            return Ok(true);
        }
        match stored {
            Some(stored) => {
                let body = stored.response.to_vec();
                respond::send_json_within(session, 200, body, &ctx.request_id, ctx.rate.as_ref())
                    .await?;
                Ok(true)
            }
            None => reject(session, ctx, not_found()).await,
        }
    }

    /// The peer for `provider`, its host resolved without blocking a worker; a retry
    /// (`attempt` > 0) goes to the host's next address.
    async fn peer_for(
        &self,
        target: &UpstreamTarget,
        attempt: usize,
    ) -> std::result::Result<Box<HttpPeer>, GatewayError> {
        let provider = &target.provider;
        let base = &provider.base;
        let addr = self.resolver.resolve_base(base, attempt).await?;
        Ok(upstream::provider_peer(
            provider,
            addr,
            &target.timeouts,
            target.shape,
        ))
    }

    /// A failed exchange (`e`, counted as `failure`): whether the plan tries again;
    /// when it does, the failure is counted and traced now, as the request's final
    /// error would be.
    fn retry_after_error(
        &self,
        ctx: &mut RequestContext,
        e: &Error,
        failure: AttemptFailure,
    ) -> bool {
        match attempts::after_failure(ctx, failure, &self.health) {
            Some(wait) => {
                observe::upstream_failed(ctx, e);
                telemetry::attempt_failed(ctx, e);
                // A subrequest's body is not replayed: its main request tries again.
                !hand_back(ctx, wait)
            }
            None => {
                return_plan(ctx, None);
                false
            }
        }
    }

    /// A translated answer the client takes whole: read the provider's answer to its
    /// end, then send the client its status and body together, so an answer that
    /// cannot be translated is a 502 rather than a `200` carrying an error. A failed
    /// attempt is retried, or falls back, as the request's plan says, before anything
    /// reaches the client. A `streamed` call comes here only to have its errors read
    /// whole; its successful answer is streamed on.
    async fn answer_whole(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        target: UpstreamTarget,
        mut body: Bytes,
        mut translation: Option<ResponseCodecs>,
        streamed: bool,
    ) -> Result<bool> {
        ctx.upstream = Some(target);
        let client = ClientSocket::of(session);
        let mut answer = loop {
            let headers = &session.req_header().headers;
            if let Err(err) = self
                .ready_attempt_into(ctx, headers, &mut body, &mut translation)
                .await
            {
                return reject(session, ctx, err).await;
            }
            let Some(target) = ctx.upstream.clone() else {
                return reject(session, ctx, GatewayError::not_found("no upstream")).await;
            };
            let attempt = ctx.plan.as_ref().map_or(0, |p| p.records().len());
            let peer = match self.peer_for(&target, attempt).await {
                Ok(peer) => peer,
                Err(err) => return reject(session, ctx, err).await,
            };
            let translated = translation.is_some();
            let mut request =
                whole_exchange_request(session.req_header(), &target, body.len(), translated, ctx)?;
            let provider = target.provider.name.clone();
            observe::attempt_began(ctx);
            observe::upstream_request_ready(ctx);
            telemetry::attempt_began(ctx, session.req_header().method.as_str());
            telemetry::inject(ctx, &mut request);
            if let Some(plan) = ctx.plan.as_mut() {
                plan.attempt_began(Instant::now());
            }
            let sent = AtomicBool::new(false);
            let answered = AtomicU16::new(0);
            let call = whole_answer::Exchange {
                peer: &peer,
                body: &body,
                max_body: MAX_WHOLE_ANSWER_BYTES,
                timeouts: &target.timeouts,
                open_success: streamed,
                sent: &sent,
                answered: &answered,
            };
            // The same header again, for a retry on a new connection.
            let again = |client_request: &RequestHeader, ctx: &mut RequestContext| {
                let mut request =
                    whole_exchange_request(client_request, &target, body.len(), translated, ctx)?;
                telemetry::inject(ctx, &mut request);
                Ok(request)
            };
            // An HTTP/2 client's hang-up is watched through its session, which the
            // retry's header then cannot borrow: that one gets a copy.
            let h2_request = session
                .downstream_session
                .is_http2()
                .then(|| session.req_header().clone());
            // Boxed: Pingora's connector (TLS handshake included) makes it kilobytes.
            let answer = match &h2_request {
                Some(client_request) => {
                    let exchange = Box::pin(whole_answer::exchange(
                        &self.connector,
                        &call,
                        request,
                        || again(client_request, ctx),
                    ));
                    tokio::select! {
                        answer = exchange => Some(answer),
                        () = client_hangup::hung_up(session, client) => None,
                    }
                }
                None => {
                    let exchange = Box::pin(whole_answer::exchange(
                        &self.connector,
                        &call,
                        request,
                        || again(session.req_header(), ctx),
                    ));
                    tokio::select! {
                        answer = exchange => Some(answer),
                        () = client.hung_up() => None,
                    }
                }
            };
            let Some(answer) = answer else {
                // Dropping the exchange closed the upstream connection: the provider
                // stops working for a client that is gone.
                if !sent.load(Ordering::Relaxed) {
                    observe::attempt_not_sent(ctx);
                }
                session.set_keepalive(None);
                ctx.error = Some(GatewayError::client_gone());
                return Ok(true);
            };
            let failure = match &answer {
                Ok(answer) => {
                    let status = answer.header.status.as_u16();
                    observe::upstream_answered(ctx, answer.header_at, status);
                    telemetry::attempt_answered(ctx, status);
                    if status < 400 {
                        attempts::after_answer(ctx, status, &self.health);
                        None
                    } else if is_context_overflow(status, &answer.body) {
                        Some(AttemptFailure::ContextOverflow { code: status })
                    } else {
                        Some(AttemptFailure::Status {
                            code: status,
                            retry_after: retry_after(&answer.header.headers, SystemTime::now()),
                        })
                    }
                }
                Err(e) => {
                    let status = answered.load(Ordering::Relaxed);
                    observe::failed_after_answering(ctx, status);
                    observe::upstream_failed(ctx, e);
                    telemetry::attempt_failed(ctx, e);
                    // A provider that said 200 did the work (and bills it) before its
                    // body broke off: asking again would have it done twice.
                    (!(100..400).contains(&status)).then(|| attempts::failure_of(e))
                }
            };
            let retry = match failure {
                Some(failure) if ctx.plan.is_some() => {
                    attempts::after_failure(ctx, failure, &self.health)
                }
                _ => None,
            };
            let Some(wait) = retry else {
                match answer {
                    Ok(answer) => break answer,
                    Err(e) => {
                        let err = gateway_error_for(&e, Some(&provider)).unwrap_or_else(|| {
                            GatewayError::bad_gateway(format!(
                                "provider `{provider}` broke the exchange"
                            ))
                        });
                        let err = err.after_answer(answered.load(Ordering::Relaxed));
                        return reject(session, ctx, err).await;
                    }
                }
            };
            if !client_hangup::wait_for_retry(session, ctx, client, wait).await {
                return Ok(true);
            }
        };
        if let Some(open) = answer.open.take() {
            return Box::pin(open_answer::stream_to_client(
                session,
                ctx,
                answer.header,
                open,
                translation,
                &self.connector,
                &self.responses,
            ))
            .await;
        }
        let provider = ctx.provider_name().unwrap_or("-").to_string();
        // The gateway's own work on the answer starts here (part of its overhead).
        let work_began = Instant::now();
        let status = answer.header.status.as_u16();
        ctx.upstream_status = Some(status);
        telemetry::answer_body(ctx, &answer.body);
        let mut usage_read = UsageRead::Unread;
        let translated = match &translation {
            Some(translation) => match translation.answer_whole(status, &answer.body) {
                Ok(translated) => {
                    usage_read = translated.usage;
                    Bytes::from(translated.body)
                }
                Err(e) => {
                    log::warn!("untranslatable answer from provider `{provider}`: {e}");
                    let err = GatewayError::bad_provider_answer(format!(
                        "provider `{provider}` answered {status} with a body that could not be translated: {e}"
                    ))
                    .after_answer(status);
                    return reject(session, ctx, err).await;
                }
            },
            // A fallback that speaks the client's own format: its answer as it is.
            None => answer.body.clone(),
        };
        if answer.header.status.is_success() {
            let reported = match usage_read {
                UsageRead::Read(usage) => usage,
                UsageRead::Unread => None,
            };
            native_responses::answer_begins(ctx, true);
            observe::answer_read_whole(ctx, &answer.body, reported);
            native_responses::record_named(&self.responses, ctx);
        }
        let mut header = answer.header;
        let omitted = translation.as_ref().and_then(|t| t.client.omitted_tools());
        let location = client_location(ctx, session.req_header(), &header);
        header_maps::open_answer(&mut header, |map| {
            headers::strip_upstream_response_headers(map);
            location.apply(map);
            map.remove(http::header::TRANSFER_ENCODING);
            if translation.is_some() {
                // The gateway's own bytes (a compressed answer was decoded or failed).
                map.remove(http::header::CONTENT_ENCODING);
            }
            header_maps::make_room(map, 5)?;
            if let Some(translation) = &translation {
                let json = http::HeaderValue::from_static("application/json");
                header_maps::put(map, http::header::CONTENT_TYPE, json)?;
                if status >= 400 {
                    let added = translation.client.error_headers(map, SystemTime::now());
                    for (name, value) in added.into_iter().flatten() {
                        header_maps::put(map, name, value)?;
                    }
                }
            }
            let length = http::HeaderValue::from(translated.len());
            header_maps::put(map, http::header::CONTENT_LENGTH, length)?;
            if let Some(tools) = omitted {
                header_maps::put(map, OMITTED_TOOLS_HEADER, header_maps::text(tools)?)?;
            }
            attempts::describe_answer(map, ctx)
        })?;
        observe::response_work(ctx, work_began.elapsed());
        // Header and body leave as one TCP segment.
        let corked = if response_cork::needs_cork(&header, translated.len()) {
            response_cork::CorkedSocket::cork(session)
        } else {
            None
        };
        let written = respond::send_header_and_body(session, header, translated).await;
        if let Some(corked) = corked {
            corked.release();
        }
        written.map(|()| true)
    }

    /// `/v1/models/{id}`: a listed model, or any id the gateway can route.
    async fn describe_model(
        &self,
        config: &Config,
        id: &str,
    ) -> std::result::Result<ModelEntry, GatewayError> {
        let listed = self.models.list(config, &self.resolver).await;
        if let Some(entry) = listed.into_iter().find(|e| e.id == id) {
            return Ok(entry);
        }
        match model_route::route_model(id, config) {
            Ok(route) => Ok(ModelEntry {
                id: id.to_string(),
                owned_by: route.provider.name.clone(),
            }),
            Err(_) => Err(GatewayError::not_found(format!(
                "model `{id}` not found: GET /v1/models lists the models this gateway serves"
            ))
            .with_param("model")),
        }
    }
}

/// The header of a whole exchange with `target`: the client's, rewritten for the
/// provider (HTTP/1.1, the provider's path and credential, a body of `body_len`).
fn whole_exchange_request(
    client: &RequestHeader,
    target: &UpstreamTarget,
    body_len: usize,
    translated: bool,
    ctx: &RequestContext,
) -> Result<RequestHeader> {
    let mut request = client.clone();
    request.set_version(http::Version::HTTP_11);
    rewrite_upstream_request(
        &mut request,
        target,
        Some(body_len),
        translated,
        &ctx.request_id,
    )?;
    Ok(request)
}

/// A `/p/` request held to limits (its caller's, or its provider's) does not mint a
/// credential the client would use at the provider directly, past them; and a caller
/// held to tokens or a budget does not have the provider do work the gateway cannot
/// meter ([`write_cost`]). A caller's own provider key (`!PASSTHRU`) does what it
/// likes. What the request costs, when the caller is held to tokens or a budget.
fn no_work_past_limits(
    session: &Session,
    ctx: &RequestContext,
    pt: &passthrough::PassthroughRoute,
) -> Result<Option<write_cost::WriteCost>, GatewayError> {
    // By the config, not by what was counted: a store that failed (`allow`) counted
    // nothing, and the work would escape the limits all the same.
    let req = session.req_header();
    let Some(target) = ctx.upstream.as_ref() else {
        return Ok(None);
    };
    if with_callers_own_key(ctx) {
        return Ok(None);
    }
    // Told by the admission without a lookup; only a caller not charged by usage has
    // the config asked.
    let by_usage = limit_check::caller_charged_by_usage(ctx);
    if !by_usage && !limit_check::held_to_limits(ctx) {
        return Ok(None);
    }
    if req.method == http::Method::POST && passthrough::mints_a_credential(&pt.endpoint) {
        return Err(GatewayError::forbidden(format!(
            "`{}` hands out a credential used at the provider directly, past the limits \
             this request is held to: not served for a key or provider with limits",
            pt.endpoint
        )));
    }
    if !by_usage {
        return Ok(None);
    }
    let at_openai = at_openais_api(&target.provider);
    match write_cost::write_cost(&req.method, &pt.endpoint, at_openai) {
        write_cost::WriteCost::Unmetered => Err(GatewayError::forbidden(format!(
            "`{} {}` has the provider do work billed by what the gateway cannot meter (or \
             does not know): not served for a key held to tokens or a budget",
            req.method, pt.endpoint
        ))),
        // A body the gateway cannot read says nothing of what it asks.
        write_cost::WriteCost::Metered(_) if request_is_encoded(req) => {
            Err(GatewayError::invalid_request(
                "a model call's body cannot be compressed (`Content-Encoding`) for a key held \
                 to tokens or a budget: the gateway reads it to count its input",
            )
            .with_code("unsupported_content_encoding"))
        }
        cost => Ok(Some(cost)),
    }
}

/// Whether the request ended because its client left (or stopped reading its answer).
fn client_left(ctx: &RequestContext) -> bool {
    ctx.error
        .as_ref()
        .is_some_and(|err| err.code == Some("client_closed"))
}

/// Whether the request goes with the caller's own provider key (`!PASSTHRU`), which
/// does what it likes: the provider bills the caller, not the gateway's keys.
fn with_callers_own_key(ctx: &RequestContext) -> bool {
    ctx.upstream
        .as_ref()
        .is_some_and(|t| t.credential.caller_key_label.is_some())
}

/// The host of OpenAI's own API, whose free endpoints other OpenAI-format servers
/// may bill.
const OPENAI_API_HOST: &str = "api.openai.com";

/// Whether the request's body comes encoded (`Content-Encoding` other than `identity`).
fn request_is_encoded(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

/// Whether `provider` is OpenAI's own API, where some endpoints bill nothing that
/// other OpenAI-format providers bill ([`write_cost`]).
fn at_openais_api(provider: &crate::providers::Provider) -> bool {
    provider.kind == crate::providers::ProviderKind::OpenAi
        && provider.base.host.eq_ignore_ascii_case(OPENAI_API_HOST)
}

/// A moderation is free at OpenAI's own API and billed by the token elsewhere
/// (Mistral's), where its answer reports no usage: there it is refused for a caller
/// held to tokens or a budget, as through `/p/`; a caller's own provider key asks what
/// it likes.
fn no_unmetered_moderation(
    ctx: &RequestContext,
    endpoint: model_request::ModelEndpoint,
) -> Result<(), GatewayError> {
    if endpoint != model_request::ModelEndpoint::Moderations
        || with_callers_own_key(ctx)
        || !limit_check::caller_charged_by_usage(ctx)
        || ctx
            .upstream
            .as_ref()
            .is_some_and(|t| at_openais_api(&t.provider))
    {
        return Ok(());
    }
    Err(GatewayError::forbidden(
        "moderation is billed by the token at this provider, which does not report it: \
         not served for a key held to tokens or a budget",
    ))
}

/// A `/v1` call's attempt is held to what its caller may have done at the gateway's
/// expense ([`no_unmetered_ask`] of the client's `body`, [`no_unmetered_moderation`]
/// at `endpoint`), as the attempt's provider and credential say: checked for each
/// attempt, as a later one may go with the gateway's key where the first went with
/// the caller's own, or to a provider that bills what the first did not.
fn no_unmetered_work(
    ctx: &RequestContext,
    body: &[u8],
    endpoint: model_request::ModelEndpoint,
) -> Result<(), GatewayError> {
    no_unmetered_ask(ctx, body).and_then(|()| no_unmetered_moderation(ctx, endpoint))
}

/// A model call that has the provider bill past the usage its answer reports
/// ([`write_cost::unmetered_ask`]: xAI's `deferred`, the `image_generation` tool) is
/// refused for a caller held to tokens or a budget; a caller's own provider key asks
/// what it likes.
fn no_unmetered_ask(ctx: &RequestContext, body: &[u8]) -> Result<(), GatewayError> {
    if with_callers_own_key(ctx) || !limit_check::caller_charged_by_usage(ctx) {
        return Ok(());
    }
    match write_cost::unmetered_ask(body) {
        Some(why) => Err(GatewayError::forbidden(format!(
            "{why}: not served for a key held to tokens or a budget"
        ))),
        None => Ok(()),
    }
}

/// Why the body of a `/p/` request is read whole before it goes upstream, if it is: a
/// Chat stream to ask for its usage (`asks_usage`, [`held_chat_body::applies`]), or a
/// model call that has a model generate, of a caller held to tokens or a budget (not a
/// caller's own provider key: `cost` is what [`no_work_past_limits`] found), for its
/// input's estimate, whatever type it says (servers read JSON without one), refused
/// unless it is a JSON object the gateway reads. A Gemini provider's (`gemini`) body
/// in protobuf or JSPB, Google's own clients' formats, passes unread (a whole
/// answer's input is then counted by the body's size; a stream's by none). So does a
/// compressed Chat body, which the gateway cannot read to ask for the usage: sent as
/// it came, as passthrough sends bodies (a caller held to tokens or a budget is
/// refused such a body before this, its input being unreadable).
fn held_body(
    asks_usage: bool,
    cost: Option<write_cost::WriteCost>,
    gemini: bool,
    req: &RequestHeader,
) -> Option<HeldBody> {
    if asks_usage && !request_is_encoded(req) {
        return Some(HeldBody::AskingUsage);
    }
    let generates = write_cost::WriteCost::Metered(Some(metrics::usage::ModelWork::Generates));
    let protobuf = gemini && request_is_protobuf(req);
    (cost == Some(generates) && !protobuf).then_some(HeldBody::ForInputEstimate)
}

/// The upstream of a `/p/{provider}/…` request.
fn passthrough_target(
    config: &Config,
    pt: &passthrough::PassthroughRoute,
    req: &RequestHeader,
) -> std::result::Result<UpstreamTarget, GatewayError> {
    let provider = config
        .providers
        .find(&pt.provider)
        .ok_or_else(|| GatewayError::provider_not_found(&pt.provider, &config.providers))?;
    if !config.passthrough_enabled(&provider.name, provider.kind.name()) {
        return Err(GatewayError::invalid_request(format!(
            "provider `{}` is not enabled for passthrough; enabled: {}",
            pt.provider,
            config.server.enabled_passthrough_providers.join(", ")
        )));
    }
    if provider.missing_key() {
        return Err(GatewayError::missing_provider_key(provider));
    }
    let credential = provider_key::upstream_credential(provider, &req.headers, &config.auth)?;
    // Google's APIs (Gemini's own) take parameters that would hide an answer's usage.
    let google = provider.kind == crate::providers::ProviderKind::Gemini;
    let query = req
        .uri
        .query()
        .and_then(|q| client_query::upstream_query(q, google));
    let at_root = provider
        .kind
        .facts()
        .root_endpoints
        .iter()
        .any(|prefix| pt.endpoint.starts_with(prefix));
    let base_path = if at_root { "" } else { &provider.base.path };
    Ok(UpstreamTarget::new(
        Arc::clone(provider),
        pt.upstream_path(base_path, query.as_deref()),
        credential,
    ))
}

/// The store of translated Responses API answers the config names, chosen at start.
fn response_store_for(config: &Config) -> Arc<dyn ResponseStore> {
    match &config.responses_store {
        crate::config::ResponsesStoreKind::Memory => Arc::new(MemoryResponseStore::default()),
        crate::config::ResponsesStoreKind::Redis(address) => {
            match response_store_redis::RedisResponseStore::at(address) {
                Ok(store) => Arc::new(store),
                Err(e) => {
                    log::error!("{e}; Responses API answers are kept in this process instead");
                    Arc::new(MemoryResponseStore::default())
                }
            }
        }
    }
}

/// The answer to a response id unknown to this caller: one the gateway never stored
/// (or that expired), another caller's, or one a provider keeps that a managed key
/// has no record of, all alike, so that no caller learns whether another's exists.
fn response_not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("Response with id '{id}' not found.")).with_param("response_id")
}

/// A shared store of Responses API answers out of reach: a 503 to try again, never
/// a response not found.
fn store_unavailable(e: response_store::StoreUnavailable) -> GatewayError {
    GatewayError::overloaded(e.to_string(), 1).with_code("response_store_unavailable")
}

/// Whose the stored responses a request reads, continues or stores are
/// ([`response_store::owner_of`]).
fn responses_owner(ctx: &RequestContext, req: &RequestHeader, config: &Config) -> Arc<str> {
    response_store::owner_of(ctx.caller.as_ref(), || {
        provider_key::caller_key_digest(&req.headers, &config.auth)
    })
}

/// Where `GET`/`DELETE /v1/responses/{id}` (and `suffix` below it: `/input_items`,
/// `/cancel`) goes when the gateway did not store `id`:
/// the configured provider that serves the Responses API itself (the one `recorded` as
/// holding it, else an `openai`-type instance first), with its credential; `None` when
/// there is none. Whether the caller may reach it is [`AuroraProxy::native_target`]'s
/// to say. One that takes the
/// caller's own key is asked only when no provider elsewhere could hold the response:
/// the id does not say whose it is, and the caller's key must not go where the caller
/// did not send it (a caller's xAI key to OpenAI).
fn native_responses_target(
    config: &Config,
    id: &str,
    suffix: &str,
    req: &RequestHeader,
    recorded: Option<&str>,
) -> Option<std::result::Result<UpstreamTarget, GatewayError>> {
    // Response ids are `resp_` and hex; nothing else is put into an upstream path.
    if !native_responses::is_id_text(id) {
        return None;
    }
    let natives = || {
        config
            .providers
            .configured()
            .filter(|p| p.kind.facts().serves_responses_api && p.format == WireFormat::OpenAi)
    };
    let first = natives().next()?;
    let provider = recorded
        .and_then(|name| natives().find(|p| p.name == name))
        .or_else(|| natives().find(|p| p.kind == crate::providers::ProviderKind::OpenAi))
        .unwrap_or(first);
    if provider.credential.is_caller_key()
        && natives().any(|p| !p.base.is_same_place(&provider.base))
    {
        return Some(Err(GatewayError::invalid_request(format!(
            "response `{id}` was not made through this gateway's translation, and more than one \
             configured provider serves the Responses API: with your own provider key, read it \
             at its provider, `/p/{{provider}}/responses/{id}`"
        ))
        .with_param("response_id")
        .with_code("ambiguous_provider")));
    }
    if provider.missing_key() {
        return Some(Err(GatewayError::missing_provider_key(provider)));
    }
    let credential = match provider_key::upstream_credential(provider, &req.headers, &config.auth) {
        Ok(credential) => credential,
        Err(err) => return Some(Err(err)),
    };
    let query = req
        .uri
        .query()
        .and_then(|q| client_query::upstream_query(q, false));
    let path_and_query = match query {
        Some(query) => format!("{}/responses/{id}{suffix}?{query}", provider.base.path),
        None => format!("{}/responses/{id}{suffix}", provider.base.path),
    };
    Some(Ok(UpstreamTarget::new(
        Arc::clone(provider),
        path_and_query,
        credential,
    )))
}

/// What the client's answer says of the provider's `Location`: on a model route, none;
/// on `/p/`, for an answer that redirects (3xx) or names what it made (201), one below
/// the provider's base URL comes back through the gateway ([`passthrough_location`]).
fn client_location(
    ctx: &RequestContext,
    req: &RequestHeader,
    resp: &ResponseHeader,
) -> provider_redirect::LocationEdit {
    use provider_redirect::LocationEdit;
    if ctx.route_kind != "passthrough" {
        return if resp.headers.contains_key(http::header::LOCATION) {
            LocationEdit::Removed
        } else {
            LocationEdit::AsSent
        };
    }
    match passthrough_location(ctx, req, resp) {
        Some(location) => LocationEdit::Through(location),
        None => LocationEdit::AsSent,
    }
}

/// The `Location` the client gets for a `/p/` answer that redirects (3xx) or names what
/// it made (201), when the provider's points below its base URL
/// ([`provider_redirect::client_location`]); `None` leaves the answer's as it is.
fn passthrough_location(
    ctx: &RequestContext,
    req: &RequestHeader,
    resp: &ResponseHeader,
) -> Option<http::HeaderValue> {
    let status = resp.status;
    if !(status.is_redirection() || status == http::StatusCode::CREATED) {
        return None;
    }
    let location = resp.headers.get(http::header::LOCATION)?.to_str().ok()?;
    let provider = &ctx.upstream.as_ref()?.provider;
    let prefix = passthrough::client_prefix(req.uri.path())?;
    let allow_v1_alias = ctx
        .config
        .as_ref()
        .is_none_or(|config| config.server.allow_passthrough_v1_alias);
    let client =
        provider_redirect::client_location(location, &provider.base, prefix, allow_v1_alias)?;
    http::HeaderValue::from_str(&client).ok()
}

/// The envelope of an error the gateway answers itself: the `/v1` route's, else the
/// one a `/p/` client reads ([`passthrough::error_format`]). Told when an error is
/// answered, so that a request its provider answers never pays for the telling.
fn error_format(session: &Session, ctx: &RequestContext) -> WireFormat {
    if ctx.error_format != WireFormat::OpenAi {
        return ctx.error_format;
    }
    let req = session.req_header();
    ctx.config.as_deref().map_or(WireFormat::OpenAi, |config| {
        passthrough::error_format(req.uri.path(), &req.headers, &config.providers)
    })
}

/// Answers with `err` from `request_filter`.
async fn reject(
    session: &mut Session,
    ctx: &mut RequestContext,
    err: GatewayError,
) -> Result<bool> {
    // A client that is gone gets nothing, and its connection is not kept; its access
    // line says why.
    if err.code == Some("client_closed") {
        session.set_keepalive(None);
    } else {
        let rate = ctx.rate.as_ref();
        let format = error_format(session, ctx);
        respond::send_error(session, &err, format, &ctx.request_id, rate).await?;
    }
    ctx.error = Some(err);
    Ok(true)
}

/// Seconds since the Unix epoch, for `created` fields.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `/v1` stream the provider answers in the client's own format, under way: a
/// failure now ends it with an error event. Passthrough streams are the provider's
/// bytes alone, and error answers are not streams.
fn streams_as_is(ctx: &RequestContext) -> bool {
    !ctx.translated
        && ctx.upstream_status.is_some_and(|s| s < 400)
        && ctx
            .upstream
            .as_ref()
            .is_some_and(|u| u.shape == AnswerShape::Stream)
}

/// Ends an answer already under way after a failure: the translation module closes a
/// translated stream with its error event, a same-format `/v1` stream gets the route's
/// error event, anything else stays cut. Whether the answer ended cleanly (the client
/// connection can then be reused).
async fn end_answer_under_way(
    session: &mut Session,
    ctx: &RequestContext,
    err: &GatewayError,
) -> bool {
    let translated = session
        .downstream_modules_ctx
        .get_mut::<ResponseTranslator>()
        .is_some_and(|m| m.is_mid_response());
    let ended = if translated {
        match session.write_response_body(Some(Bytes::new()), true).await {
            // A subrequest session needs the explicit finish to pass the end on.
            Ok(()) => session.downstream_session.finish_body().await,
            Err(e) => Err(e),
        }
    } else if streams_as_is(ctx) {
        let format = error_format(session, ctx);
        respond::end_stream_with_error(session, err, format, after_the_error(ctx)).await
    } else {
        return false;
    };
    match ended {
        Ok(()) => true,
        Err(write_err) => {
            log::debug!("could not end the answer: {write_err}");
            false
        }
    }
}

/// What ends a same-format stream after the gateway's error event: a Responses
/// stream's `response.failed`, which Responses clients read its failure from, unless
/// the provider's own terminal event already ended the response.
fn after_the_error(ctx: &RequestContext) -> respond::AfterTheError<'_> {
    if ctx.route_kind == model_request::ModelEndpoint::Responses.label()
        && !observe::stream_said_its_last_word(ctx)
    {
        respond::AfterTheError::ResponseFailed(observe::streamed_response_id(ctx))
    } else {
        respond::AfterTheError::Nothing
    }
}

/// Switches the translation module on for this session's response.
pub(crate) fn translate_response(
    session: &mut Session,
    ctx: &mut RequestContext,
    translation: ResponseCodecs,
) {
    ctx.translated = true;
    if let Some(module) = session
        .downstream_modules_ctx
        .get_mut::<ResponseTranslator>()
    {
        module.translate(translation);
    }
}

/// Leaves this session's response in the client's format: the translation module
/// stays idle, but for the usage-only chunk of a Chat stream whose usage the gateway
/// asked for and the client did not.
pub(crate) fn answer_as_is(session: &mut Session, ctx: &mut RequestContext) {
    ctx.translated = false;
    if let Some(module) = session
        .downstream_modules_ctx
        .get_mut::<ResponseTranslator>()
    {
        module.pass_as_is(ctx.usage_asked());
    }
}

/// The route's one method (a `GET` route answers `HEAD` too), or a 405.
fn check_method(route: &Route, req: &RequestHeader) -> std::result::Result<(), GatewayError> {
    // (Pingora itself refuses `CONNECT` before any hook runs.)
    if req.method == http::Method::TRACE {
        return Err(GatewayError::method_not_forwarded(&req.method));
    }
    // A WebSocket (OpenAI's Realtime, Gemini Live) would reach the provider as a plain
    // request stripped of its upgrade, answered with whatever it makes of that.
    if wants_websocket(req) {
        return Err(GatewayError::not_implemented(
            "WebSocket upgrades (OpenAI's Realtime API, Gemini Live) are not proxied; use the provider's HTTP API through the gateway",
        ));
    }
    match route.method() {
        Some(method)
            if req.method != method
                && !(method == http::Method::GET && req.method == http::Method::HEAD) =>
        {
            Err(GatewayError::method_not_allowed(req.uri.path(), &method))
        }
        _ => Ok(()),
    }
}

/// The largest body a request may send, and the refusal past it: a `/p/` body is
/// streamed unread unless the gateway reads it, which holds it to `body_size_limit`
/// as it reads.
fn body_limit(config: &Config, passthrough: bool) -> (u64, fn(u64) -> GatewayError) {
    if passthrough {
        (
            config.server.passthrough_body_size_limit,
            GatewayError::passthrough_too_large,
        )
    } else {
        (
            config.server.body_size_limit,
            GatewayError::payload_too_large,
        )
    }
}

/// Whether the request asks to become a WebSocket.
fn wants_websocket(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// Whether the request reads (`GET`, `HEAD`): the usage of an answer it reads back is
/// not its own work, whether it ends in its `logging` hook or is dropped unended.
fn request_reads(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
}

/// Whether the request says its body is JSON.
fn request_is_json(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            crate::metrics::usage::starts_with_ignoring_case(ct.trim_start(), "application/json")
        })
}

/// Whether the request says, once, that its body is protobuf or JSPB
/// (`application/x-protobuf`, `application/protobuf`, `application/json+protobuf`, its
/// parameters aside): Google's own clients' formats.
fn request_is_protobuf(req: &RequestHeader) -> bool {
    let mut types = req.headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(content_type), None) = (types.next(), types.next()) else {
        return false;
    };
    let media = content_type.as_bytes().split(|&b| b == b';').next();
    media.is_some_and(|m| {
        let m = m.trim_ascii();
        PROTOBUF_TYPES
            .iter()
            .any(|t| m.eq_ignore_ascii_case(t.as_bytes()))
    })
}

/// The media types of protobuf and JSPB bodies.
const PROTOBUF_TYPES: [&str; 3] = [
    "application/x-protobuf",
    "application/protobuf",
    "application/json+protobuf",
];

fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The status of the final response the client was sent, if any: an informational
/// answer such as `100 Continue` is not a response, and an error may still follow it.
fn final_status(session: &Session) -> Option<u16> {
    session
        .response_written()
        .map(|r| r.status.as_u16())
        .filter(|status| *status >= 200)
}

/// Turns a copy of the client's request header into the provider's: its path, one
/// `Content-Length` (the prepared body's, when the gateway rewrote the body), no client
/// credentials or hop-by-hop headers, and the provider's own credential and headers.
fn rewrite_upstream_request(
    req: &mut RequestHeader,
    target: &UpstreamTarget,
    prepared_len: Option<usize>,
    translated: bool,
    request_id: &RequestId,
) -> Result<()> {
    let uri: http::Uri = target
        .path_and_query
        .parse()
        .map_err(|_| status_error(400))?;
    header_maps::open_request(req, uri, |req| {
        let headers = &mut req.headers;
        framing::collapse_content_length(headers);
        let scope = if target.credential.caller_key_label.is_none() {
            headers::KeyScope::Gateways
        } else {
            headers::KeyScope::Callers
        };
        headers::strip_client_headers(headers, scope);
        if let Some(len) = prepared_len {
            // Framed for the prepared body, whatever the client's framing was; the
            // client's `Expect` was answered before its body was read.
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.remove(http::header::EXPECT);
            header_maps::make_room(headers, 1)?;
            let len = http::HeaderValue::from(len);
            header_maps::put(headers, http::header::CONTENT_LENGTH, len)?;
        }
        if translated {
            headers::strip_foreign_format_headers(headers, target.provider.format);
        }
        // Every answer is read for its usage (and translated, or its usage chunk hidden):
        // compressed, it would be decoded first, work the provider can be spared. A
        // client that names no encoding is sent on without one (only the gateway's own
        // readers ask when they must).
        if translated || target.usage_asked || headers.contains_key(http::header::ACCEPT_ENCODING) {
            header_maps::make_room(headers, 1)?;
            let identity = http::HeaderValue::from_static("identity");
            header_maps::put(headers, http::header::ACCEPT_ENCODING, identity)?;
        }
        headers::add_provider_headers(
            req,
            &target.provider,
            target.credential.key.as_ref(),
            request_id,
        )
    })
}

/// A Pingora error carrying nothing but its HTTP status; the details wait in the context.
fn status_error(status: u16) -> Box<Error> {
    Error::new(ErrorType::HTTPStatus(status))
}

#[async_trait]
impl ProxyHttp for AuroraProxy {
    type CTX = Box<RequestContext>;

    fn new_ctx(&self) -> Self::CTX {
        Box::new(RequestContext::new())
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(ResponseTranslatorBuilder));
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Self::CTX, _error: &Error) -> bool {
        // Not a failure of the request: its main request tries again, or its client left.
        ctx.body.handed_back() || client_left(ctx)
    }

    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        access_log::request_summary(session.req_header())
    }

    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Self::CTX) -> bool {
        // Only client requests spawn (the subrequest of a body read before it goes
        // upstream: `/v1`, and a `/p/` Chat body).
        session.subrequest_ctx.is_none()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if let Some(plan) = subrequest::take_plan(session) {
            model_call::begin_subrequest(session, ctx, plan);
            return Ok(false);
        }
        // Pingora copies the client's header for the provider, spelling record and all;
        // without the record that copy, and every edit to it, costs half.
        header_maps::forget_request_spelling(session.req_header_mut());
        if session.req_header().version < http::Version::HTTP_11 {
            // HTTP/1.0's keep-alive (an extension) is not kept: an answer whose end is
            // the connection's close could not say `Connection: keep-alive` truthfully.
            session.set_keepalive(None);
            // Nor does it know interim answers (RFC 9110 §15.2): a 1.0 client would
            // take a provider's `103` for its answer. Its `Expect` is to be ignored
            // (§10.1.1), so no `100 Continue` is asked of the provider either.
            session.set_ignore_info_resp(true);
            session
                .req_header_mut()
                .remove_header(&http::header::EXPECT);
            if let Some(module) = session
                .downstream_modules_ctx
                .get_mut::<ResponseTranslator>()
            {
                module.answers_http10_client();
            }
        }
        let config = self.config.snapshot();
        // No read of the body waits past its whole-body deadline; a trickled body is
        // caught in `request_body_filter`.
        session.set_read_timeout(Some(config.server.body_timeout));
        // A client that stops reading its answer is cut once a write has waited this
        // long, rather than hold its connection, its provider call and its body's
        // share of the buffer budget for ever.
        session.set_write_timeout(Some(config.server.send_timeout));
        ctx.request_id = RequestId::of(session.req_header());
        ctx.config = Some(Arc::clone(&config));
        if let Some(settler) = &self.settler {
            let req = session.req_header();
            let (json_body, read) = (request_is_json(req), request_reads(req));
            ctx.settle_on_drop = Some(settle_on_drop::SettleOnDrop::new(settler, json_body, read));
        }
        if let Some(origin) =
            cors::allowed_origin(session.req_header(), &config.server.cors_allow_origins)
        {
            if let Some(module) = session
                .downstream_modules_ctx
                .get_mut::<ResponseTranslator>()
            {
                module.answers_origin(origin);
            }
            // A browser's preflight carries no credential: answered before auth, and
            // counted as a request refused before routing is (its access line says so).
            if cors::is_preflight(session.req_header()) {
                observe::request_admitted(ctx);
                let answer = cors::preflight_answer(session.req_header())?;
                session
                    .write_response_header(Box::new(answer), true)
                    .await?;
                return Ok(true);
            }
        }
        let admitted = self.admit(session, &config, ctx);
        observe::request_admitted(ctx);
        telemetry::request_admitted(session.req_header(), ctx);
        let route = match admitted {
            Ok(route) => route,
            Err(err) => {
                // Refused before the limits' admission: a key with limits still hears
                // its windows, as every answer to it does, counting nothing.
                limit_check::peek_caller(&self.limits, ctx).await;
                return reject(session, ctx, err).await;
            }
        };
        // A stored response's read counts as a request too, as a `/p/` read does.
        if matches!(
            route,
            Route::Passthrough(_)
                | Route::ModelCall(_)
                | Route::StoredResponse(_)
                | Route::ResponsePart(..)
        ) {
            if let Err(err) = limit_check::admit_caller(&self.limits, ctx).await {
                return reject(session, ctx, err).await;
            }
        }
        match route {
            Route::Passthrough(pt) => {
                match passthrough_target(&config, &pt, session.req_header()) {
                    Ok(target) => {
                        // Only a connection that was never made is tried again: the
                        // provider may have started on a body that streamed.
                        if config.retry_for(&target.provider).attempts > 0 {
                            ctx.plan =
                                Some(attempts::plan_for_provider(&target.provider, &self.health));
                            ctx.attempt_ready = true;
                        }
                        let asks_usage = held_chat_body::applies(
                            &target.provider,
                            &pt.endpoint,
                            &session.req_header().method,
                        );
                        observe::passthrough_endpoint(
                            ctx,
                            &session.req_header().method,
                            &pt.endpoint,
                            &target,
                        );
                        if let Some(rewrite) = batch_links::results_url_rewrite(
                            &target.provider,
                            &pt,
                            session.req_header(),
                            || session.digest().is_some_and(|d| d.ssl_digest.is_some()),
                        ) {
                            if let Some(module) = session
                                .downstream_modules_ctx
                                .get_mut::<ResponseTranslator>()
                            {
                                module.rewrite_results_urls(rewrite);
                            }
                        }
                        ctx.upstream = Some(target);
                        // What the gateway refuses itself is refused before the
                        // provider's quota counts the request or holds a call slot.
                        let cost = match no_work_past_limits(session, ctx, &pt) {
                            Ok(cost) => cost,
                            Err(err) => return reject(session, ctx, err).await,
                        };
                        let gemini = ctx.upstream.as_ref().is_some_and(|t| {
                            t.provider.kind == crate::providers::ProviderKind::Gemini
                        });
                        let held = held_body(asks_usage, cost, gemini, session.req_header());
                        if session.req_header().method == http::Method::DELETE {
                            let deleted = deferred_poll::deleted_work(&pt.endpoint, gemini);
                            if let Err(err) = self.before_delete(deleted, &config).await {
                                return reject(session, ctx, err).await;
                            }
                        }
                        if let Some(held) = held {
                            // Admitted once its body is read and accepted.
                            return Box::pin(self.pass_held_body(session, ctx, &config, held))
                                .await;
                        }
                        if let Err(err) = limit_check::admit_provider(&self.limits, ctx).await {
                            return reject(session, ctx, err).await;
                        }
                        Ok(false)
                    }
                    Err(err) => reject(session, ctx, err).await,
                }
            }
            Route::Health => {
                respond::send_json(
                    session,
                    200,
                    br#"{"status":"ok"}"#.to_vec(),
                    &ctx.request_id,
                )
                .await?;
                Ok(true)
            }
            Route::Root => {
                respond::send(session, 200, "text/plain", Vec::new(), &ctx.request_id).await?;
                Ok(true)
            }
            // The model routes' futures are large (the whole exchange with a provider
            // may run inside them): boxed, so that the future of every request's
            // `request_filter`, allocated and moved per request, stays small.
            Route::ModelCall(endpoint) => {
                if let Some(work) = endpoint.model_work() {
                    observe::model_asked(ctx, work);
                }
                Box::pin(self.call_model(session, ctx, &config, endpoint)).await
            }
            Route::Models => {
                let entries = Box::pin(self.models.list(&config, &self.resolver)).await;
                let body = openai_list_body(&entries, unix_now());
                limit_check::peek_caller(&self.limits, ctx).await;
                respond::send_json_within(session, 200, body, &ctx.request_id, ctx.rate.as_ref())
                    .await?;
                Ok(true)
            }
            Route::Metrics => {
                let body = metrics::metrics().map(|m| m.render()).unwrap_or_default();
                respond::send(session, 200, metrics::CONTENT_TYPE, body, &ctx.request_id).await?;
                Ok(true)
            }
            Route::StoredResponse(id) => {
                Box::pin(self.stored_response(session, ctx, &config, &id)).await
            }
            Route::ResponsePart(id, part) => {
                Box::pin(self.response_part(session, ctx, &config, &id, part)).await
            }
            Route::Model(id) => {
                let described = Box::pin(self.describe_model(&config, &id)).await;
                limit_check::peek_caller(&self.limits, ctx).await;
                match described {
                    Ok(entry) => {
                        let body = openai_model_body(&entry, unix_now());
                        let rate = ctx.rate.as_ref();
                        respond::send_json_within(session, 200, body, &ctx.request_id, rate)
                            .await?;
                        Ok(true)
                    }
                    Err(err) => reject(session, ctx, err).await,
                }
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        if let Some(wait) = ctx.retry_wait.take() {
            // A client gone while the retry waits gets no further attempt: the
            // provider would work (and bill) for nobody.
            let client = client_hangup::ClientSocket::of(session);
            if !client_hangup::wait_for_retry(session, ctx, client, wait).await {
                return Err(Error::create(
                    ErrorType::ConnectionClosed,
                    ErrorSource::Downstream,
                    Some("the client left while a retry waited".into()),
                    None,
                ));
            }
        }
        // Another attempt (a retry, or a fallback) has its own answer to decode.
        ctx.answer_decoder = None;
        loop {
            let readied = match self.ready_attempt(ctx, &session.req_header().headers) {
                Ok(Some((body, translation))) => {
                    ctx.body.prepare_again(body);
                    match translation {
                        Some(translation) => translate_response(session, ctx, translation),
                        // A fallback in the client's own format: its answer passes as is.
                        None => answer_as_is(session, ctx),
                    }
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(err) => Err(err),
            };
            // Every attempt after the first (the first was admitted with the request)
            // counts against the quota of the provider it goes to, a retry at the same
            // one too; one out of quota is passed over. Nothing of the attempt is held
            // across the wait: this future is every request's.
            let admitted = match readied {
                Ok(_) if ctx.later_attempt => {
                    let asked = ctx.held_call.as_ref().map(|c| (c.body.clone(), c.endpoint));
                    // Boxed: only a later attempt pays for its future.
                    Box::pin(self.admit_attempt(ctx, asked)).await
                }
                Ok(_) => Ok(limit_check::ProviderAdmission::Admitted),
                Err(err) => Err(err),
            };
            match admitted {
                Ok(limit_check::ProviderAdmission::Admitted) => break,
                Ok(limit_check::ProviderAdmission::MovedOn) => {}
                Err(err) => {
                    let status = err.status;
                    ctx.error = Some(err);
                    return Err(status_error(status));
                }
            }
        }
        observe::attempt_began(ctx);
        telemetry::attempt_began(ctx, session.req_header().method.as_str());
        let Some(target) = ctx.upstream.as_ref() else {
            ctx.error = Some(GatewayError::not_found("no upstream for this request"));
            return Err(status_error(404));
        };
        let attempt = ctx.plan.as_ref().map_or(0, |p| p.records().len());
        ctx.answer_due =
            (target.shape == AnswerShape::Whole).then(|| Instant::now() + target.timeouts.total);
        match self.peer_for(target, attempt).await {
            Ok(peer) => {
                if let Some(plan) = ctx.plan.as_mut() {
                    plan.attempt_began(Instant::now());
                }
                Ok(peer)
            }
            Err(err) => {
                let status = err.status;
                ctx.error = Some(err);
                Err(status_error(status))
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the provider: safe to try again on every route.
        if ctx.plan.is_some() {
            let retry = self.retry_after_error(ctx, &e, AttemptFailure::Connect);
            e.set_retry(retry);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if let Some(retry) = ctx.retry_decided.take() {
            // A provider status the plan retries (see `upstream_response_filter`).
            e.set_retry(retry);
            return e;
        }
        // A `/v1` body held whole for its plan (a `/p/` one is tried again only when
        // no connection was made): while the client has heard nothing, a failed
        // exchange may go again, as the plan says.
        let replayable = ctx.held_call.is_some()
            && final_status(session).is_none()
            && !session.as_ref().retry_buffer_truncated();
        if ctx.plan.is_some() && replayable {
            let failure = attempts::failure_of(&e);
            let retry = self.retry_after_error(ctx, &e, failure);
            e.set_retry(retry);
            return e;
        }
        // Pingora's own rule: only idempotent requests, on a reused connection.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        observe::upstream_request_ready(ctx);
        telemetry::inject(ctx, upstream_request);
        let Some(target) = ctx.upstream.as_ref() else {
            return Err(status_error(404));
        };
        // A new attempt at an upstream replays the body from its start.
        let prepared_len = ctx.body.attempt_begins();
        rewrite_upstream_request(
            upstream_request,
            target,
            prepared_len,
            ctx.translated,
            &ctx.request_id,
        )?;
        if observe::reads_batch_results(ctx) {
            upstream_request.remove_header(&http::header::RANGE);
            upstream_request.remove_header(&http::header::IF_RANGE);
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.request_body_ended |= end_of_stream;
        if ctx.body.carry(body) == ChunkSource::Prepared {
            // The prepared body was checked against the limit as the client sent it.
            return Ok(());
        }
        if let Some(chunk) = body.as_ref() {
            ctx.request_body_bytes += chunk.len() as u64;
            if let Some(config) = ctx.config.as_ref() {
                let (limit, too_large) = body_limit(config, ctx.route_kind == "passthrough");
                if ctx.request_body_bytes > limit {
                    ctx.error = Some(too_large(limit));
                    return Err(status_error(413));
                }
            }
            let deadline = ctx
                .config
                .as_ref()
                .map(|c| BodyDeadline::new(ctx.started, c.server.body_timeout));
            if let Some(deadline) = deadline.filter(|_| !session.was_upgraded()) {
                match deadline.time_left(Instant::now()) {
                    // A client that goes silent is cut at the deadline too.
                    Some(left) => session.set_read_timeout(Some(left)),
                    None => {
                        ctx.error = Some(deadline.error());
                        session.set_keepalive(None);
                        return Err(status_error(408));
                    }
                }
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if upstream_response.status.is_informational() {
            // `100 Continue`, `103 Early Hints`: the provider's real answer is still to
            // come. Pingora passes this one on to an HTTP/1.1 client: without what a
            // provider may not send back (cookies, hop-by-hop headers), as the answer.
            header_maps::open_answer(upstream_response, headers::strip_upstream_response_headers);
            return Ok(());
        }
        let answered = Instant::now();
        observe::upstream_answered(ctx, answered, upstream_response.status.as_u16());
        telemetry::attempt_answered(ctx, upstream_response.status.as_u16());
        if ctx.plan.is_some() {
            let status = upstream_response.status.as_u16();
            let failure = (status >= 400).then(|| AttemptFailure::Status {
                code: status,
                retry_after: retry_after(&upstream_response.headers, SystemTime::now()),
            });
            match failure {
                // Only a `/v1` body, held whole, can go to the provider again: a `/p/`
                // error answer goes to the client, counted against the instance's
                // health as the failure it is (not as an answer that says it is well).
                Some(failure) if ctx.held_call.is_none() => {
                    attempts::after_failure(ctx, failure, &self.health);
                }
                Some(failure) => {
                    if let Some(wait) = attempts::after_failure(ctx, failure, &self.health) {
                        // Nothing has reached the client: this answer is dropped unread
                        // and the request goes out again (from the main request, when
                        // this is a subrequest).
                        ctx.retry_decided = Some(!hand_back(ctx, wait));
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(status),
                            "provider failure, trying again",
                        ));
                    }
                }
                None => attempts::after_answer(ctx, status, &self.health),
            }
        }
        // Only translated answers are held whole; passthrough skips the module lookup.
        if ctx.translated
            && session
                .downstream_modules_ctx
                .get::<ResponseTranslator>()
                .is_some_and(|m| m.answers_whole(upstream_response))
        {
            ctx.corked = response_cork::CorkedSocket::cork(session);
        }
        let status = upstream_response.status.as_u16();
        ctx.upstream_status = Some(status);
        ctx.body.answered(status);
        let to_head = session.req_header().method == http::Method::HEAD;
        ctx.answer_decoder = AnswerDecoder::of(upstream_response, to_head);
        observe::answer_header(ctx, upstream_response);
        native_responses::answer_begins(ctx, upstream_response.status.is_success());
        let location = client_location(ctx, session.req_header(), upstream_response);
        header_maps::open_answer(upstream_response, |map| {
            headers::strip_upstream_response_headers(map);
            location.apply(map);
            attempts::describe_answer(map, ctx)
        })?;
        // This answer goes to the client: the main request logs the attempts.
        return_plan(ctx, None);
        observe::response_work(ctx, answered.elapsed());
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        // The provider's bytes, before the translation module rewrites them: read for
        // their token usage and model, never changed.
        let began = Instant::now();
        if ctx.answer_due.is_some_and(|due| began > due) {
            // A whole answer still trickling in at its `total`: each read was within
            // the read timer, all of them together are not.
            let who = ctx.provider_name().unwrap_or("upstream");
            ctx.error = Some(GatewayError::gateway_timeout(
                upstream_failure::waited_too_long(who, UpstreamWait::Total),
            ));
            // The provider's time ran out, as its read timers' do: the call was given
            // up on, and is charged as such.
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "whole answer past timeouts.total",
            )
            .into_up());
        }
        if ctx.answer_decoder.is_some() {
            match answer_decoder::decode_piece(&mut ctx.answer_decoder, body.take(), end_of_stream)
            {
                Ok(decoded) => *body = decoded,
                Err(undecodable) => {
                    ctx.error = Some(GatewayError::bad_provider_answer(undecodable.message()));
                    return Err(undecodable.into());
                }
            }
        }
        if let Some(model) = observe::answer_bytes(ctx, body.as_deref(), end_of_stream) {
            telemetry::response_model(ctx, &model);
            observe::answering_model(ctx, model);
        }
        native_responses::record_named(&self.responses, ctx);
        observe::response_work(ctx, began.elapsed());
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        if ctx.body.handed_back() || client_left(ctx) {
            // The main request tries again, or the client is gone (or stopped reading):
            // nothing goes to the client from here.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if observe::gave_up_waiting(e) {
            // Told before the error answer goes: a subrequest's main request may settle
            // as soon as it has it, before this request's logging.
            observe::attempt_failed(ctx, e);
        }
        let err = ctx.error.clone().or_else(|| {
            upstream_failure::read_timer_error(e, ctx.upstream.as_ref())
                .or_else(|| gateway_error_for(e, ctx.provider_name()))
        });
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        // Once the provider's status line went out, the client already has its answer,
        // unless a translated stream can still be closed with an error event.
        let mut ended_cleanly = false;
        if final_status(session).is_none() {
            // This connection is not reused after a failed attempt: the answer says so.
            session.set_keepalive(None);
            // The gateway's own envelope is already in the client's format.
            if let Some(module) = session
                .downstream_modules_ctx
                .get_mut::<ResponseTranslator>()
            {
                module.disable();
            }
            let (rate, format) = (ctx.rate.as_ref(), error_format(session, ctx));
            if let Err(write_err) =
                respond::send_error(session, &err, format, &ctx.request_id, rate).await
            {
                log::debug!("could not send error response: {write_err}");
            }
        } else {
            ended_cleanly = end_answer_under_way(session, ctx, &err).await;
        }
        ctx.error = Some(err.clone());
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: ended_cleanly,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        // Settled here: not again when it is dropped.
        ctx.settle_on_drop = None;
        if let Some(corked) = ctx.corked.take() {
            corked.release();
        }
        // A probe taken for an attempt that never came to a verdict (the client left,
        // the plan gave up before sending) is given back.
        if let Some(plan) = ctx.plan.as_mut() {
            plan.release_probe(&self.health);
        }
        if let Some(model) = observe::answer_unfinished(ctx) {
            telemetry::response_model(ctx, &model);
            observe::answering_model(ctx, model);
        }
        // A whole answer the proxy loop ended without telling its body filter.
        native_responses::record_named(&self.responses, ctx);
        if let Some(module) = session.downstream_modules_ctx.get::<ResponseTranslator>() {
            observe::response_work(ctx, module.busy());
        }
        if let Some(model) = observe::delegated_answering_model(ctx) {
            // Read in the subrequest, which has no request span to write it on.
            telemetry::response_model(ctx, &model);
            observe::answering_model(ctx, model);
        }
        let req = session.req_header();
        let read = request_reads(req);
        observe::settle_usage(ctx, read, |ctx| observe::RequestEnd {
            client_left: e.is_some_and(|e| *e.esource() == ErrorSource::Downstream)
                || ctx
                    .error
                    .as_ref()
                    .is_some_and(|err| err.code == Some("client_closed")),
            gave_up: e.is_some_and(observe::gave_up_waiting),
            // A body the client left part way was of no use to the provider either.
            json_bytes: if ctx.request_body_ended && request_is_json(req) {
                ctx.request_body_bytes
            } else {
                0
            },
            body_bytes: if ctx.request_body_ended {
                ctx.request_body_bytes
            } else {
                0
            },
            answer_bytes: session.body_bytes_sent() as u64,
            failed: e.is_some(),
        });
        if !ctx.body.is_subrequest() {
            if observe::deferred_charged(ctx).is_some() {
                limit_check::charge_deferred_once(&self.limits, ctx).await;
            }
            limit_check::settle(&self.limits, ctx, &self.config);
        }
        // A subrequest watches what its own answer started.
        self.deferred
            .watch_call(ctx, &session.req_header().headers, read);
        native_responses::forget_if_deleted(&self.responses, ctx);
        // Counted before its line is written, so a line in the log means the metrics
        // already show the request.
        observe::request_finished(session, e, ctx);
        // The main request logs for its subrequest.
        if !ctx.body.is_subrequest() {
            access_log::log_request(session, e, ctx);
        }
        telemetry::request_finished(session, e, ctx);
    }
}
