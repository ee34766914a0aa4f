//! What the metrics and the access log learn about a request as it goes: its handles,
//! its in-flight gauge, the routed model, and when the provider got the request and
//! answered. The hooks call these; the figures are plain subtractions of instants.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora_core::Error;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use prometheus::IntGauge;

use super::RequestContext;
use crate::metrics::deferred_answer::{DeferredAnswer, StartedApart, BATCH_PRICE_FACTOR};
use crate::metrics::labels::{key_label, status_label, NONE};
use crate::metrics::usage::{Charge, ModelWork, Usage, UsageMeter};
use crate::metrics::usage_estimate;
use crate::metrics::{handles_for, MetricHandles, RequestOutcome, UpstreamErrorKind};

/// One request's observations.
#[derive(Default)]
pub struct Observation {
    /// The metric handles of the request's config snapshot.
    handles: Option<Arc<MetricHandles>>,
    /// The gauge this request incremented, decremented when it ends.
    in_flight: Option<IntGauge>,
    /// The model the request was routed to, as sent to the provider; for a request
    /// whose body is not read (passthrough), the model its answer names.
    model: Option<String>,
    /// `model` was named by the answer, not by the request.
    model_from_answer: bool,
    /// The model the answer named as having answered, when the request had named
    /// `model` already: priced first, as the provider bills it (a fallback it chose
    /// over `model`), and `model` when it has no price.
    answered_model: Option<String>,
    /// The `model` label: `model` when configuration names it, else `other`.
    model_label: Option<Arc<str>>,
    /// From arrival to the first request header handed to a provider.
    upstream_sent: Option<Duration>,
    /// From arrival to the latest attempt's request header handed to a provider.
    attempt_sent: Option<Duration>,
    /// From the latest attempt's request header to the provider's response header.
    first_byte: Option<Duration>,
    /// Where the latest attempt's answer stands.
    answer: AnswerState,
    /// Attempts the gateway stopped waiting for, the provider having the call: each
    /// may have been done and billed, by the provider named. Kept in `shared` instead
    /// when there is one.
    given_up: Vec<Arc<str>>,
    /// The attempts before the latest one given up on, by their providers, each
    /// charged `given_up_input` input tokens once the request is settled.
    earlier_given_up: Vec<Arc<str>>,
    /// The input tokens charged for each of `earlier_given_up`.
    given_up_input: u64,
    /// Whether the call has a model generate (or embed) for it, which the provider
    /// bills once it has the call, whether or not the client stays for the answer.
    asks_model: ModelAsked,
    /// The gateway's own work on the answer: response filters and translation.
    response_work: Duration,
    /// A subrequest does the exchange: its timings come back through here.
    shared: Option<Arc<SharedTimings>>,
    /// The exchange with the provider happened in a subrequest, which counts its errors.
    delegated: bool,
    /// An attempt at a provider began (its connection included), here or in the
    /// subrequest: the request is that provider's, failed or not.
    attempted: bool,
    /// Reads the provider's answer as it passes, for its token usage.
    meter: Option<UsageMeter>,
    /// What this request's own exchange charges its answer, as the meter gave it.
    charge: Option<Charge>,
    /// The tokens charged, once the request is over ([`settle_usage`]): reported, or
    /// for a stream without its final usage, the estimate.
    usage: Option<Usage>,
    /// `usage` was estimated, in part or whole.
    usage_estimated: bool,
    /// `usage` is that of an answer generated apart from this request (a background
    /// response, a batch): charged only when no request has charged it yet
    /// ([`deferred_charged`]), a batch's at its price.
    deferred: Option<DeferredAnswer>,
    /// The request reads an Anthropic message batch's results.
    batch_results: Option<DeferredAnswer>,
    /// The request reads a stored response (`GET responses/{id}`), which may be a
    /// background one's stream resumed.
    stored_response: Option<DeferredAnswer>,
    /// The request is a read (`GET`, `HEAD`), not a call.
    read: bool,
    /// The work apart from the call (a background response, a batch) its answer
    /// named, still under way.
    started: Option<StartedApart>,
    /// A batch's results: their usage by the model each line named, each priced at
    /// its own model's price.
    usage_by_model: Vec<(String, Usage)>,
    /// The body the provider got, when the gateway read it: a stream without its
    /// final usage is charged the input estimated from it.
    request_body: Option<Bytes>,
    /// The answer's response id is kept as the meter reads it ([`keep_response_id`]).
    keeps_response_id: bool,
    /// The id of the response the answer was, once the meter that read it is gone.
    response_id: Option<String>,
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("model", &self.model)
            .field("upstream_sent", &self.upstream_sent)
            .field("first_byte", &self.first_byte)
            .finish_non_exhaustive()
    }
}

impl Observation {
    /// The routed model, as sent to the provider; else the model the answer named.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The bounded `model` label: the model when configuration names it, else `other`.
    pub fn model_label(&self) -> Option<&str> {
        self.model_label.as_deref()
    }

    /// [`Self::model_label`], to hand on (to a subrequest's trace).
    pub fn shared_model_label(&self) -> Option<Arc<str>> {
        self.model_label.clone()
    }

    /// The model the request asked for, when the gateway read it from the request.
    pub fn request_model(&self) -> Option<&str> {
        self.model.as_deref().filter(|_| !self.model_from_answer)
    }

    /// The gateway's own time: before the provider got the request, plus its work on
    /// the answer (filters and translation). `None` when no provider got the request.
    pub fn overhead(&self) -> Option<Duration> {
        let before = self
            .upstream_sent
            .or_else(|| self.shared.as_ref().and_then(|s| load(&s.overhead_ns)))?;
        let delegated_work = self.shared.as_ref().map_or(Duration::ZERO, |s| {
            Duration::from_nanos(s.response_work_ns.load(Ordering::Relaxed))
        });
        Some(before + self.response_work + delegated_work)
    }

    /// The tokens this request's answer is charged, once the request is over
    /// ([`settle_usage`]): what the provider reported, or for a stream without its
    /// final usage, the estimate.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether [`Self::usage`] was estimated, in part or whole.
    pub fn usage_estimated(&self) -> bool {
        self.usage_estimated
    }

    /// The provider's time to its response header.
    pub fn first_byte(&self) -> Option<Duration> {
        self.first_byte
            .or_else(|| self.shared.as_ref().and_then(|s| load(&s.first_byte_ns)))
    }

    /// Whether an attempt at a provider began, in this request or in the subrequest it
    /// handed its exchange to.
    pub fn attempted(&self) -> bool {
        self.attempted
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.attempted.load(Ordering::Relaxed))
    }

    /// Where the latest attempt's answer stands: this request's, or its subrequest's.
    fn latest_answer(&self) -> AnswerState {
        match (self.answer, &self.shared) {
            (AnswerState::Unsent, Some(shared)) => {
                AnswerState::of(shared.answer.load(Ordering::Relaxed))
            }
            (state, _) => state,
        }
    }
}

/// Whether a call has a model generate (or embed) for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ModelAsked {
    #[default]
    No,
    Yes(ModelWork),
    /// A `/p/` `POST`: its endpoint tells ([`super::passthrough::model_work`]), read
    /// only when a call's charge needs it.
    ByEndpoint,
}

/// Where the latest attempt's answer stands: what a call its client leaves before any
/// of the answer passed is charged ([`settle_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
enum AnswerState {
    /// No provider got the request.
    #[default]
    Unsent = 0,
    /// The provider got the request and has not answered yet.
    Awaited = 1,
    /// The provider answered with a failure, which bills nothing.
    Refused = 2,
    /// The provider answered with success, not a stream.
    Whole = 3,
    /// The provider answered with success, a stream.
    Streamed = 4,
    /// The provider answered with success, in a type (or encoding) the gateway does
    /// not read for usage: what of it passed is not known.
    Unmetered = 5,
    /// The provider got the request whole and the gateway stopped waiting for its
    /// answer (its time ran out): the provider may finish the work and bill it.
    GivenUp = 6,
}

impl AnswerState {
    fn of(code: u8) -> Self {
        match code {
            1 => Self::Awaited,
            2 => Self::Refused,
            3 => Self::Whole,
            4 => Self::Streamed,
            5 => Self::Unmetered,
            6 => Self::GivenUp,
            _ => Self::Unsent,
        }
    }
}

/// Timings a subrequest leaves for the main request's access line (nanoseconds + 1;
/// 0 is "not yet").
#[derive(Debug, Default)]
pub struct SharedTimings {
    overhead_ns: AtomicU64,
    first_byte_ns: AtomicU64,
    /// The subrequest's work on the answer, in nanoseconds (a plain sum).
    response_work_ns: AtomicU64,
    /// What the answer is charged so far, as the subrequest's meter gave it.
    charge: Mutex<Option<Charge>>,
    /// The model the answer named, for a request whose body the gateway did not route
    /// on (a `/p/` call): what its cost is priced by.
    model: Mutex<Option<String>>,
    /// Where the subrequest's latest attempt's answer stands ([`AnswerState`]).
    answer: AtomicU8,
    /// A subrequest began an attempt at a provider.
    attempted: AtomicBool,
    /// Attempts the gateway stopped waiting for, the provider having the call, by
    /// either request: the providers that had them.
    given_up: Mutex<Vec<Arc<str>>>,
    /// The work apart from the call that the subrequest's answer started, handed to
    /// whichever of the two requests ends last.
    started: Mutex<StartedHandoff>,
}

/// Work a subrequest's answer started apart from the call: the subrequest knows the
/// work, its main request what the call was charged, and either may end first.
#[derive(Debug, Default)]
struct StartedHandoff {
    /// The work, left by a subrequest that ended first.
    started: Option<StartedApart>,
    /// Set once the main request has settled: what it charged of the work (`None`
    /// when it charged it whole, and there is nothing to watch).
    charged: Option<Option<Usage>>,
}

fn store(cell: &AtomicU64, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
    cell.store(ns + 1, Ordering::Relaxed);
}

/// [`store`], unless the cell holds a value already.
fn store_first(cell: &AtomicU64, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
    // Lost only to a value stored first, which is the one to keep.
    let _ = cell.compare_exchange(0, ns + 1, Ordering::Relaxed, Ordering::Relaxed);
}

fn load(cell: &AtomicU64) -> Option<Duration> {
    match cell.load(Ordering::Relaxed) {
        0 => None,
        ns => Some(Duration::from_nanos(ns - 1)),
    }
}

/// The request was routed (or refused): it counts as in flight on its route from now.
pub fn request_admitted(ctx: &mut RequestContext) {
    let Some(config) = ctx.config.as_ref() else {
        return;
    };
    let Some(handles) = handles_for(config) else {
        return;
    };
    let gauge = handles.in_flight(ctx.route_kind);
    gauge.inc();
    ctx.obs.in_flight = Some(gauge);
    ctx.obs.handles = Some(handles);
}

/// A subrequest carries out the main request's exchange with the provider: it works
/// under the main request's config, arrival time and route.
pub fn subrequest_began(ctx: &mut RequestContext, shared: Arc<SharedTimings>) {
    ctx.obs.handles = ctx.config.as_ref().and_then(handles_for);
    ctx.obs.shared = Some(shared);
}

/// The main request hands its exchange to a subrequest: the timings to share with it.
pub fn delegate(ctx: &mut RequestContext) -> Arc<SharedTimings> {
    ctx.obs.delegated = true;
    let shared = Arc::new(SharedTimings::default());
    ctx.obs.shared = Some(Arc::clone(&shared));
    shared
}

/// The provider gets `body`, read by the gateway (a `/v1` call's, a `/p/` Chat
/// body's): the input of a stream without its final usage is estimated from it.
pub fn request_body(ctx: &mut RequestContext, body: &Bytes) {
    ctx.obs.request_body = Some(body.clone());
}

/// The request was routed to `model` (the name the provider gets).
pub fn model_routed(ctx: &mut RequestContext, model: String) {
    ctx.obs.model_label = ctx.obs.handles.as_ref().map(|h| h.model_label(&model));
    ctx.obs.model = Some(model);
}

/// An attempt at the provider begins (each attempt, before its connection).
pub fn attempt_began(ctx: &mut RequestContext) {
    ctx.obs.attempted = true;
    if let Some(shared) = &ctx.obs.shared {
        shared.attempted.store(true, Ordering::Relaxed);
    }
}

/// The request header is about to go to the provider (each attempt).
pub fn upstream_request_ready(ctx: &mut RequestContext) {
    let now = ctx.started.elapsed();
    ctx.obs.attempt_sent = Some(now);
    answer_now(ctx, AnswerState::Awaited);
    if ctx.obs.upstream_sent.is_some() {
        return;
    }
    ctx.obs.upstream_sent = Some(now);
    if let Some(shared) = &ctx.obs.shared {
        // Each attempt past the replay buffer is a subrequest of its own, which starts
        // knowing nothing: the first attempt's stands, failed ones and waits after it
        // are not the gateway's.
        store_first(&shared.overhead_ns, now);
    }
}

/// Whether a provider got the request (its header went, in this request or in the
/// subrequest it handed its exchange to): not one refused before, by the gateway or a
/// provider's quota, nor one whose client left before it was sent.
pub fn went_to_provider(ctx: &RequestContext) -> bool {
    ctx.obs.upstream_sent.is_some()
        || ctx
            .obs
            .shared
            .as_ref()
            .is_some_and(|s| load(&s.overhead_ns).is_some())
}

/// The gateway spent `work` on the answer (a response filter, translation): part of
/// its overhead. A subrequest's work counts for the main request it serves.
pub fn response_work(ctx: &mut RequestContext, work: Duration) {
    match (&ctx.obs.shared, ctx.body.is_subrequest()) {
        (Some(shared), true) => {
            let ns = u64::try_from(work.as_nanos()).unwrap_or(u64::MAX);
            shared.response_work_ns.fetch_add(ns, Ordering::Relaxed);
        }
        _ => ctx.obs.response_work += work,
    }
}

/// The call has a model do `work` for it (a `/p/` call's endpoint tells:
/// [`passthrough_endpoint`]).
pub fn model_asked(ctx: &mut RequestContext, work: ModelWork) {
    ctx.obs.asks_model = ModelAsked::Yes(work);
}

/// What the call has a model do for it, if anything.
fn model_work(ctx: &RequestContext) -> Option<ModelWork> {
    match ctx.obs.asks_model {
        ModelAsked::No => None,
        ModelAsked::Yes(work) => Some(work),
        ModelAsked::ByEndpoint => ctx.upstream.as_ref().and_then(|u| {
            let path = u.path_and_query.split('?').next().unwrap_or_default();
            super::passthrough::model_work(path)
        }),
    }
}

/// The latest attempt bills nothing: it failed, or never reached the provider whole
/// (the client left while it connected or sent the request).
pub fn attempt_not_sent(ctx: &mut RequestContext) {
    answer_now(ctx, AnswerState::Unsent);
}

/// Where the latest attempt's answer stands now, for the main request too when this
/// is its subrequest.
fn answer_now(ctx: &mut RequestContext, state: AnswerState) {
    ctx.obs.answer = state;
    if let Some(shared) = &ctx.obs.shared {
        shared.answer.store(state as u8, Ordering::Relaxed);
    }
}

/// The provider's response header arrived (not an informational one) at `at`, with
/// `status`.
pub fn upstream_answered(ctx: &mut RequestContext, at: Instant, status: u16) {
    let state = if (200..300).contains(&status) {
        AnswerState::Whole
    } else {
        AnswerState::Refused
    };
    answer_now(ctx, state);
    let Some(sent) = ctx.obs.attempt_sent else {
        return;
    };
    let waited = at
        .saturating_duration_since(ctx.started)
        .saturating_sub(sent);
    ctx.obs.first_byte = Some(waited);
    if let Some(shared) = &ctx.obs.shared {
        store(&shared.first_byte_ns, waited);
    }
    if let Some(h) = &ctx.obs.handles {
        h.observe_first_byte(h.provider(ctx.provider_name()), waited.as_secs_f64());
    }
}

/// The provider's response header, as the body filters will see its body: a
/// successful answer is metered for its usage as it passes. Every answer is decoded
/// before them (its `Content-Encoding` gone); one in an encoding no decoder reads
/// keeps it, and is not read.
pub fn answer_header(ctx: &mut RequestContext, resp: &ResponseHeader) {
    // An earlier attempt's meter never reads this answer.
    ctx.obs.meter = None;
    ctx.obs.usage_by_model.clear();
    ctx.obs.keeps_response_id = false;
    ctx.obs.response_id = None;
    if !resp.status.is_success() {
        return;
    }
    let header = |name| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let encoding = header(http::header::CONTENT_ENCODING);
    let call = may_be_a_call(ctx);
    ctx.obs.meter = match ctx.obs.batch_results {
        // A range of the results is only part of them, however it ends.
        Some(results)
            if resp.status != 200 || resp.headers.contains_key(http::header::CONTENT_RANGE) =>
        {
            UsageMeter::for_batch_results(results.in_part(), encoding)
        }
        Some(results) => UsageMeter::for_batch_results(results, encoding),
        None => {
            // A model's answer that names no type is read as the JSON it would be.
            let json = call.then_some("application/json");
            let content_type = header(http::header::CONTENT_TYPE).or(json);
            UsageMeter::for_answer(content_type, encoding)
        }
    };
    // Set in place: a meter is too large to move for what most answers never have.
    if let Some(meter) = ctx.obs.meter.as_mut() {
        if let Some(resumed) = ctx.obs.stored_response {
            meter.resumes(resumed);
        }
        if call && ctx.obs.batch_results.is_none() {
            meter.may_answer_a_call();
        }
        if meter.is_stream() {
            answer_now(ctx, AnswerState::Streamed);
        }
    } else {
        answer_now(ctx, AnswerState::Unmetered);
    }
}

/// Whether the request may be a call asking a model, as its answer's meter needs to
/// know: it asks one, may (a `/p/` `POST`, whose endpoint is read only if its answer
/// reports no usage), or is the subrequest of a `/v1` call; [`settle_usage`] decides.
fn may_be_a_call(ctx: &RequestContext) -> bool {
    ctx.obs.asks_model != ModelAsked::No || ctx.body.is_subrequest()
}

/// A successful answer the gateway read whole itself (a translated call's, or a
/// fallback's), which `reported` usage as its translator read it: that, or what the
/// meter makes of the answer (the estimate of a model's answer that reported none).
pub fn answer_read_whole(ctx: &mut RequestContext, body: &[u8], reported: Option<Usage>) {
    let charge = match reported {
        // Zeros are no count.
        Some(mut usage) if usage != Usage::default() => {
            // A translator reads the tokens; a cost the provider said (OpenRouter's
            // Anthropic-format endpoint) is read from the answer itself.
            if crate::metrics::usage::may_say_its_cost(body) {
                let said = crate::metrics::usage::usage_of_json(body);
                usage.cost_nanos = said.map_or(0, |u| u.cost_nanos);
            }
            Some(Charge::reported(usage))
        }
        _ if ctx.obs.keeps_response_id => {
            let (charge, id) =
                crate::metrics::usage::charge_and_response_of_call_answer(body, true);
            ctx.obs.response_id = id;
            charge
        }
        _ => crate::metrics::usage::charge_of_call_answer(body),
    };
    if let Some(charge) = charge {
        answer_charged(ctx, charge);
    }
}

/// A `/p/` request to `endpoint` at `target`: when it is a `GET` of a batch's results
/// (an Anthropic message batch's, an OpenAI batch's output file, a Gemini batch's
/// responses file), its answer is read as those, for their usage (and asked for
/// whole: [`reads_batch_results`]).
pub fn passthrough_endpoint(
    ctx: &mut RequestContext,
    method: &http::Method,
    endpoint: &str,
    target: &super::context::UpstreamTarget,
) {
    if method == http::Method::POST {
        ctx.obs.asks_model = ModelAsked::ByEndpoint;
    }
    if method == http::Method::GET {
        let provider = &target.provider;
        let anthropic = provider.format == crate::providers::WireFormat::Anthropic;
        let gemini = (provider.kind == crate::providers::ProviderKind::Gemini)
            .then_some(provider.name.as_str());
        ctx.obs.batch_results = DeferredAnswer::batch_results(endpoint, anthropic, gemini);
        if let Some(("responses", id)) = endpoint.split_once('/') {
            stored_response_read(ctx, id);
        }
    }
}

/// The request reads the stored response `id` (through `/p/`, or `/v1/responses/{id}`
/// at the provider that stored it): a resumed stream of it left part way is charged
/// as read in part of that response.
pub fn stored_response_read(ctx: &mut RequestContext, id: &str) {
    if !id.is_empty() && !id.contains('/') {
        ctx.obs.stored_response = Some(DeferredAnswer::background_response_named(id.as_bytes()));
    }
}

/// The request reads a batch's results: the provider is asked for all of them, not
/// a range (a range counts only the lines it holds whole, and a client could read
/// every line cut across two ranges).
pub fn reads_batch_results(ctx: &RequestContext) -> bool {
    ctx.obs.batch_results.is_some()
}

/// The next bytes of the provider's answer, as it sent them. At its end, the model
/// the answer names as having answered, if it names one: hand it to
/// [`answering_model`] once the trace has it.
pub fn answer_bytes(
    ctx: &mut RequestContext,
    bytes: Option<&[u8]>,
    end_of_stream: bool,
) -> Option<String> {
    let meter = ctx.obs.meter.as_mut()?;
    let bytes = bytes.unwrap_or_default();
    if !end_of_stream {
        meter.feed(bytes);
        if ctx.body.is_subrequest() {
            // The main request settles on its own, and may before this answer ends
            // (its client left): what was reported so far is there for it already.
            if let Some(charge) = meter.so_far() {
                share(ctx, Some(charge));
            }
        }
        return None;
    }
    let charge = meter.finish_with(bytes);
    let model = meter.take_model();
    ctx.obs.usage_by_model = meter.take_usage_by_model();
    if ctx.obs.keeps_response_id {
        ctx.obs.response_id = meter.take_response_id();
    }
    let started = under_way(meter);
    ctx.obs.meter = None;
    keep_started(ctx, started);
    match charge {
        Some(charge) => answer_charged(ctx, charge),
        // What a subrequest shared while the answer was under way is void.
        None => share(ctx, None),
    }
    model
}

/// The id of the response the provider's Responses stream is of, as its first event
/// named it to the meter (which reads that event anyway, for the model).
pub fn streamed_response_id(ctx: &RequestContext) -> Option<&str> {
    ctx.obs.meter.as_ref()?.response_id()
}

/// The answer now coming is to be known by the response id it names (a natively
/// served Responses create, whose owner the gateway records): the meter that reads
/// it for its usage keeps the id of a whole answer too, read in the same pass
/// ([`named_response_id`]). Asked for after [`answer_header`], each attempt anew.
pub fn keep_response_id(ctx: &mut RequestContext) {
    ctx.obs.keeps_response_id = true;
    if let Some(meter) = ctx.obs.meter.as_mut() {
        meter.keeps_response_id();
    }
}

/// The id of the response the provider's answer is, once read ([`keep_response_id`]):
/// a stream's from its first event, a whole answer's at its end.
pub fn named_response_id(ctx: &RequestContext) -> Option<&str> {
    match &ctx.obs.response_id {
        Some(id) => Some(id),
        None => ctx.obs.meter.as_ref()?.response_id(),
    }
}

/// Whether the provider's stream already said its last word (a Responses stream's
/// terminal event, with its usage), as the meter read it.
pub fn stream_said_its_last_word(ctx: &RequestContext) -> bool {
    ctx.obs
        .meter
        .as_ref()
        .is_some_and(|meter| meter.said_its_last_word())
}

/// The request ends with the provider's answer unfinished (the client left, or the
/// answer broke off): what it reported by then is its usage (an Anthropic stream's
/// input, from `message_start`), a stream's with the rest estimated, charged and
/// counted like a whole answer's; and the model it named, if it named one, as
/// [`answer_bytes`] gives it.
pub fn answer_unfinished(ctx: &mut RequestContext) -> Option<String> {
    let mut meter = ctx.obs.meter.take()?;
    if let Some(charge) = meter.cut_short() {
        answer_charged(ctx, charge);
    }
    if ctx.obs.keeps_response_id {
        ctx.obs.response_id = meter.take_response_id();
    }
    ctx.obs.usage_by_model = meter.take_usage_by_model();
    let started = under_way(&mut meter);
    keep_started(ctx, started);
    meter.take_model()
}

/// The work apart from the call that the meter's answer named, unless it said that
/// work has ended.
fn under_way(meter: &mut UsageMeter) -> Option<StartedApart> {
    let started = meter.take_started()?;
    (meter.work_ended() != Some(true)).then_some(started)
}

/// Keeps what the answer `started` apart from the call.
fn keep_started(ctx: &mut RequestContext, started: Option<StartedApart>) {
    if started.is_some() {
        ctx.obs.started = started;
    }
}

/// The work apart from this call (a background response, a batch) that its answer
/// named, still under way and not charged whole by it, with what the call was
/// charged (the estimate of a stream the client left, or of its input): the gateway
/// polls it for its usage (`deferred_poll`) and charges the rest. Asked once each
/// request is over, after [`settle_usage`]; `None` for a `read` (a client's poll of
/// work it started before). For a call whose exchange a subrequest made, the one of
/// the two that ends last gets it: the subrequest knows the work, the main request
/// what the call was charged.
pub fn started_uncharged(ctx: &mut RequestContext, read: bool) -> Option<(StartedApart, Usage)> {
    let own = ctx.obs.started.take();
    if read {
        return None;
    }
    let Some(shared) = ctx.obs.shared.clone() else {
        return Some((own?, charged_of_call(ctx)?));
    };
    if ctx.body.is_subrequest() {
        // A subrequest whose answer started nothing has nothing to hand over (and a
        // retried one's late end takes nothing from the one after).
        let own = own?;
        let mut handoff = shared.started.lock().ok()?;
        match handoff.charged {
            Some(charged) => Some((own, charged?)),
            None => {
                handoff.started = Some(own);
                None
            }
        }
    } else {
        let mut handoff = shared.started.lock().ok()?;
        let charged = charged_of_call(ctx);
        handoff.charged = Some(charged);
        Some((handoff.started.take()?, charged?))
    }
}

/// What this call was charged of the work its answer started: `None` when it charged
/// that work whole (read it ended), else its own charge (an estimate, or nothing).
fn charged_of_call(ctx: &RequestContext) -> Option<Usage> {
    let whole = deferred_charged(ctx).is_some_and(|answer| answer.read_whole());
    (!whole).then(|| ctx.obs.usage.unwrap_or_default())
}

/// The answer named `model` as having answered. A passthrough request's body is not
/// read, so this is the model its metrics and log name.
pub fn answering_model(ctx: &mut RequestContext, model: String) {
    if !ctx.obs.delegated {
        // A subrequest's answer: the main request settles and logs it.
        if let Some(mut cell) = ctx.obs.shared.as_ref().and_then(|s| s.model.lock().ok()) {
            *cell = Some(model.clone());
        }
    }
    if ctx.obs.model.is_some() {
        ctx.obs.answered_model = Some(model);
        return;
    }
    model_routed(ctx, model);
    ctx.obs.model_from_answer = true;
}

/// The model a subrequest's answer named, for its main request to take with
/// [`answering_model`] (and its trace) before it is priced, counted and logged: as its
/// model when it knew none (a `/p/` call), else as the model that answered. `None`
/// for a request that handed no exchange to a subrequest.
pub fn delegated_answering_model(ctx: &RequestContext) -> Option<String> {
    if !ctx.obs.delegated {
        return None;
    }
    ctx.obs
        .shared
        .as_ref()
        .and_then(|s| s.model.lock().ok().and_then(|mut m| m.take()))
}

/// This request's answer is charged `charge`.
fn answer_charged(ctx: &mut RequestContext, charge: Charge) {
    ctx.obs.charge = Some(charge);
    share(ctx, Some(charge));
}

/// Hands `charge` (or none, voiding what was handed before) to the main request,
/// when this is its subrequest.
fn share(ctx: &RequestContext, charge: Option<Charge>) {
    if let Some(shared) = &ctx.obs.shared {
        if let Ok(mut cell) = shared.charge.lock() {
            *cell = charge;
        }
    }
}

/// The latest attempt failed with `e`: it bills nothing, whatever the attempt after
/// it does, unless the gateway stopped waiting for a provider that had the call
/// (which may do the work, and bill it, all the same): that attempt is counted once,
/// however often its failure is told.
pub fn attempt_failed(ctx: &mut RequestContext, e: &Error) {
    let had_it = match ctx.obs.latest_answer() {
        AnswerState::Awaited
        | AnswerState::Whole
        | AnswerState::Streamed
        | AnswerState::Unmetered => true,
        AnswerState::GivenUp => false,
        AnswerState::Unsent | AnswerState::Refused => {
            attempt_not_sent(ctx);
            return;
        }
    };
    if !gave_up_waiting(e) {
        attempt_not_sent(ctx);
        return;
    }
    if !had_it {
        // Given up on already: told again.
        return;
    }
    // Its input is owed by the provider that had it, whichever answers in the end.
    let provider = Arc::from(ctx.provider_name().unwrap_or_default());
    match &ctx.obs.shared {
        Some(shared) => {
            if let Ok(mut given_up) = shared.given_up.lock() {
                given_up.push(provider);
            }
        }
        None => ctx.obs.given_up.push(provider),
    }
    answer_now(ctx, AnswerState::GivenUp);
}

/// The provider answered the latest attempt with `status` and the exchange failed
/// after (its body stalled, broke off): a failure's is the provider's failure, which
/// bills nothing, not work left unanswered.
pub fn failed_after_answering(ctx: &mut RequestContext, status: u16) {
    if status >= 400 {
        answer_now(ctx, AnswerState::Refused);
    }
}

/// Whether `e` is the gateway's time running out on a provider's answer (its first
/// byte, a pause, the whole exchange): the provider had the request.
pub fn gave_up_waiting(e: &Error) -> bool {
    e.etype() == &pingora_core::ErrorType::ReadTimedout
        && e.esource() == &pingora_core::ErrorSource::Upstream
}

/// How the request ended, for [`settle_usage`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestEnd {
    /// The client left before the answer's end.
    pub client_left: bool,
    /// The gateway stopped waiting for the provider's answer (its time ran out): for
    /// the charge, as if the client had left.
    pub gave_up: bool,
    /// The size of the request's JSON body (zero for any other body, and for one the
    /// client did not send whole).
    pub json_bytes: u64,
    /// The size of the request's body, whatever its type (zero for one the client did
    /// not send whole).
    pub body_bytes: u64,
    /// The size of the answer's body as the client got it.
    pub answer_bytes: u64,
    /// The request ended on an error (the client's leaving, or any other).
    pub failed: bool,
}

/// The request is over: what its answer is charged is settled, once, for the limits,
/// the metrics, the access line and the trace to read alike (a subrequest may still
/// be changing what it shares). A read (`GET`, `HEAD`) gets what a call made, and was
/// charged for, before: its answer is charged only when it reads an answer made apart
/// from any call (a background response, a batch) whole, and then only if no request
/// did before ([`deferred_charged`]), or when it streams text it is charged an
/// estimate for (a background response's stream resumed and left). Any other request
/// is a call, charged what it reported or an estimate. The input of an answer charged
/// an estimate is counted here, from the request, when the answer did not report it;
/// the estimate of a whole answer cut short stands only when the client left. So does
/// that of a call the client left before any of its answer passed, which the provider
/// bills all the same: its input (counted by its size only when it was not answered
/// as a stream, as for a stream cut short). A model call whose answer passed whole
/// without a usage the gateway could read is charged an estimate whether the client
/// left or not: its input, and the output of its text, or of its size when it came in
/// a format the gateway does not read (JSPB, protobuf, an unknown encoding); an
/// embedding call's, its input alone. `end` says how the request ended; it is asked
/// only for an estimate that needs it.
pub fn settle_usage(
    ctx: &mut RequestContext,
    read: bool,
    end: impl FnOnce(&RequestContext) -> RequestEnd,
) {
    settle_latest_attempt(ctx, read, end);
    charge_attempts_given_up(ctx, read);
}

/// Attempts before the latest one that the gateway gave up waiting for, the provider
/// having them whole, are each charged their input as a call left unanswered is: a
/// retry does not make the work the provider may have done free.
fn charge_attempts_given_up(ctx: &mut RequestContext, read: bool) {
    let mut given_up = std::mem::take(&mut ctx.obs.given_up);
    if let Some(Ok(shared)) = ctx.obs.shared.as_ref().map(|s| s.given_up.lock()) {
        given_up.extend(shared.iter().cloned());
    }
    // The latest attempt's (the last given up on) is charged as a call left
    // unanswered.
    if ctx.obs.latest_answer() == AnswerState::GivenUp {
        given_up.pop();
    }
    if given_up.is_empty() || read || model_work(ctx).is_none() {
        return;
    }
    let each = Charge::left_unanswered()
        .with_input_of(ctx.obs.request_body.as_deref(), 0)
        .usage
        .input;
    if each == 0 {
        return;
    }
    let earlier = given_up.len() as u64;
    let mut usage = ctx.obs.usage.unwrap_or_default();
    usage.input = usage.input.saturating_add(each.saturating_mul(earlier));
    ctx.obs.usage = Some(usage);
    ctx.obs.usage_estimated = true;
    ctx.obs.earlier_given_up = given_up;
    ctx.obs.given_up_input = each;
}

/// The providers of the attempts before the latest one that the gateway gave up
/// waiting for, and the input tokens each was charged ([`settle_usage`]): part of the
/// request's usage, owed by those providers rather than by the latest attempt's.
pub fn attempts_given_up(ctx: &RequestContext) -> (&[Arc<str>], u64) {
    (&ctx.obs.earlier_given_up, ctx.obs.given_up_input)
}

/// [`settle_usage`] for the latest attempt.
fn settle_latest_attempt(
    ctx: &mut RequestContext,
    read: bool,
    end: impl FnOnce(&RequestContext) -> RequestEnd,
) {
    let charge = ctx.obs.charge.or_else(|| {
        ctx.obs
            .shared
            .as_ref()
            .and_then(|s| s.charge.lock().ok().and_then(|c| *c))
    });
    let answer = ctx.obs.latest_answer();
    // Read only when the charge needs it: most answers report their usage.
    let estimate = |c: Charge| c.is_unreported() || c.is_cut_whole();
    let work = match charge {
        Some(charge) if !estimate(charge) => None,
        _ if read => None,
        _ => model_work(ctx),
    };
    // No answer passed: the provider was left to work unanswered.
    let unanswered = charge.is_none();
    let mut charge = match (charge, work) {
        // A model's answer that reported no usage, or that its client left before
        // its usage, is charged an estimate; any other answer without one (a batch
        // made, a file uploaded) bills nothing.
        (Some(charge), Some(work)) if charge.is_unreported() => charge.for_work(work),
        (Some(charge), None) if estimate(charge) && !read => return,
        (Some(charge), _) => charge,
        (None, None) => return,
        (None, Some(work)) => match answer {
            AnswerState::Awaited
            | AnswerState::Whole
            | AnswerState::Streamed
            | AnswerState::GivenUp => Charge::left_unanswered(),
            // In a format, or an encoding, the gateway does not read: its size counts.
            AnswerState::Unmetered => Charge::unreported(0).for_work(work),
            AnswerState::Unsent | AnswerState::Refused => return,
        },
    };
    let streamed_estimate = charge.estimated && !charge.is_cut_whole();
    if read && charge.deferred.is_none() && !streamed_estimate {
        return;
    }
    let mut sized_input = 0;
    // The gateway giving up on a provider that had the call before any of its answer
    // passed leaves it as a client leaving does. An answer cut part way by anything
    // but its client is of no use to it, and is not charged.
    let gave_up = answer == AnswerState::GivenUp;
    let left = |end: &RequestEnd, nothing_passed: bool| {
        end.client_left || (nothing_passed && (end.gave_up || gave_up))
    };
    if charge.is_unreported() {
        let end = end(ctx);
        // Whatever type the client declared: a model's request is its prompt.
        sized_input = end.body_bytes;
        if answer == AnswerState::Unmetered {
            // Cut by anything but its client, it is of no use: not charged, as a
            // whole answer cut so is not. Left before any of it passed, it is a call
            // left unanswered.
            let passed = end.answer_bytes > 0 && (end.client_left || !end.failed);
            if !passed {
                if !left(&end, end.answer_bytes == 0) {
                    return;
                }
                charge = Charge::left_unanswered();
                sized_input = end.json_bytes;
            } else if work == Some(ModelWork::Generates) {
                charge.usage.output = usage_estimate::input_tokens_of_size(end.answer_bytes);
            }
        }
    } else if charge.is_cut_whole() {
        let end = end(ctx);
        if !left(&end, unanswered) {
            return;
        }
        if answer != AnswerState::Streamed {
            sized_input = end.json_bytes;
        }
    }
    let request = ctx.obs.request_body.as_deref();
    let model = ctx.obs.answered_model.as_deref().or(ctx.obs.model());
    let charge = charge.with_input_of(request, sized_input);
    if charge.estimated && charge.usage == Usage::default() {
        // Nothing to count (an answer that was not a model's).
        return;
    }
    let charge = charge.with_searches_asked(request, model);
    ctx.obs.usage = Some(charge.usage);
    ctx.obs.usage_estimated = charge.estimated;
    ctx.obs.deferred = charge.deferred;
    ctx.obs.read = read;
}

/// The answer generated apart from any call whose usage this request settled. Read
/// whole, the caller marks it charged in the limit store; read in part, it asks
/// whether it was. For a read of one charged before, [`already_charged`] takes the
/// usage back (a call is charged all the same).
pub fn deferred_charged(ctx: &RequestContext) -> Option<DeferredAnswer> {
    ctx.obs.usage.and(ctx.obs.deferred)
}

/// Whether the request is a read (`GET`, `HEAD`), as [`settle_usage`] was told.
pub fn is_read(ctx: &RequestContext) -> bool {
    ctx.obs.read
}

/// Another request charged the usage of the answer this one read already: this one
/// is charged nothing for reading it again.
pub fn already_charged(ctx: &mut RequestContext) {
    ctx.obs.usage = None;
    ctx.obs.usage_estimated = false;
}

/// The cost of this request's reported tokens, when its model has a price; a batch's
/// at half, each of its models' tokens at that model's price.
pub fn cost_usd(ctx: &RequestContext) -> Option<f64> {
    let usage = ctx.obs.usage()?;
    if ctx.obs.usage_by_model.len() > 1 {
        // One without a price counts nothing, as alone.
        return batch_models(ctx)
            .filter_map(|(_, _, cost)| cost)
            .reduce(|a, b| a + b);
    }
    let factor = match ctx.obs.deferred {
        Some(d) if d.is_batch() => BATCH_PRICE_FACTOR,
        _ => 1.0,
    };
    usage.cost(price_of(ctx), factor)
}

/// The price of the call's model, by the first of these with a price: the model that
/// answered (the one the provider bills: a fallback it chose, a snapshot), the model
/// the request asked for (or, for a `/p/` call, the one its answer named), then for a
/// `/p/` call the one its path names (Gemini's `models/{model}:{method}`) and the one
/// its body named, when the gateway read it. An answer naming a model without a price
/// (a snapshot or variant the table lacks) is priced as the model asked for, not free.
pub fn price_of(ctx: &RequestContext) -> Option<&crate::metrics::usage::Price> {
    let config = ctx
        .config
        .as_ref()
        .filter(|c| !c.models.prices.is_empty())?;
    let provider = ctx.provider_name()?;
    let priced = |model: &str| config.models.price(provider, model);
    if let Some(price) = ctx.obs.answered_model.as_deref().and_then(priced) {
        return Some(price);
    }
    if let Some(price) = ctx.obs.model().and_then(priced) {
        return Some(price);
    }
    let path = ctx.upstream.as_ref().map(|u| u.path_and_query.as_str());
    if let Some(price) = path
        .and_then(super::passthrough::path_model)
        .and_then(priced)
    {
        return Some(price);
    }
    let body = ctx.obs.request_body.as_deref()?;
    let named = super::model_field::ModelField::find(body).ok()?;
    priced(&named.name)
}

/// The model [`price_of`] looked for a price of first: for the log of a model
/// without one.
pub fn priced_model(ctx: &RequestContext) -> Option<&str> {
    ctx.obs.model().or_else(|| {
        let path = ctx.upstream.as_ref()?.path_and_query.as_str();
        super::passthrough::path_model(path)
    })
}

/// The models of a batch of several (none for any other answer): each model's `model`
/// label, the usage of its lines, and their cost when it has a price (halved, as
/// batches are billed). Lines naming none (or past the models kept apart) count as
/// the batch's first model's.
pub fn batch_models(
    ctx: &RequestContext,
) -> impl Iterator<Item = (Option<Arc<str>>, &Usage, Option<f64>)> {
    let parts = match (ctx.obs.usage, ctx.obs.usage_by_model.len()) {
        (Some(_), 2..) => &ctx.obs.usage_by_model[..],
        _ => &[],
    };
    let first = ctx.obs.model().unwrap_or_default();
    parts.iter().map(move |(model, usage)| {
        let model = if model.is_empty() {
            first
        } else {
            model.as_str()
        };
        let price = ctx
            .config
            .as_ref()
            .zip(ctx.provider_name())
            .and_then(|(config, provider)| config.models.price(provider, model));
        let cost = usage.cost(price, BATCH_PRICE_FACTOR);
        let label = ctx.obs.handles.as_ref().map(|h| h.model_label(model));
        (label, usage, cost)
    })
}

/// An exchange with the provider failed with `e`.
pub fn upstream_failed(ctx: &mut RequestContext, e: &Error) {
    attempt_failed(ctx, e);
    let (Some(h), Some(kind)) = (&ctx.obs.handles, UpstreamErrorKind::of(e)) else {
        return;
    };
    h.upstream_error(h.provider(ctx.provider_name()), kind);
}

/// The request is over: count it, and its provider's failure if that ended it.
pub fn request_finished(session: &Session, e: Option<&Error>, ctx: &mut RequestContext) {
    // A failure handed back for another attempt was counted when it happened.
    if let Some(e) = e.filter(|_| !ctx.obs.delegated && !ctx.body.handed_back()) {
        upstream_failed(ctx, e);
    }
    if let Some(gauge) = ctx.obs.in_flight.take() {
        gauge.dec();
    }
    if ctx.body.is_subrequest() {
        // The main request counts itself.
        return;
    }
    let Some(h) = &ctx.obs.handles else {
        return;
    };
    let provider = h.provider(ctx.attempted_provider().map(|p| p.name.as_str()));
    h.request_finished(&RequestOutcome {
        route: ctx.route_kind,
        provider: h.provider_label(provider),
        model: ctx.obs.model_label.as_deref().unwrap_or(NONE),
        status: status_label(super::final_status(session).unwrap_or(0)),
        key: key_label(ctx.caller.as_ref(), ctx.caller_key_label().is_some()),
    });
    h.observe_duration(
        ctx.route_kind,
        provider,
        ctx.started.elapsed().as_secs_f64(),
    );
    if let Some(overhead) = ctx.obs.overhead() {
        h.observe_overhead(ctx.route_kind, overhead.as_secs_f64());
    }
    if let Some(usage) = ctx.obs.usage() {
        let (provider, model) = (
            h.provider_label(provider),
            ctx.obs.model_label.as_deref().unwrap_or(NONE),
        );
        let key = key_label(ctx.caller.as_ref(), ctx.caller_key_label().is_some());
        let mut batch = batch_models(ctx).peekable();
        if batch.peek().is_none() {
            h.tokens_used(provider, model, key, &usage, cost_usd(ctx));
        }
        // A batch of several models: each model's tokens under its own label.
        for (label, usage, cost) in batch {
            h.tokens_used(
                provider,
                label.as_deref().unwrap_or(model),
                key,
                usage,
                cost,
            );
        }
        if ctx.obs.usage_estimated() {
            h.usage_estimated(provider, model, key);
        }
    }
}

/// The `key` the access log names the caller by (as the metrics do).
pub fn key_name(ctx: &RequestContext) -> &str {
    key_label(ctx.caller.as_ref(), ctx.caller_key_label().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::deferred_answer::AnswerKey;
    use crate::proxy::model_call_body::ModelCallBody;

    #[test]
    fn the_answering_model_names_a_passthrough_request_and_leaves_a_routed_one() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/json")
            .unwrap();
        let body =
            br#"{"model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":3,"completion_tokens":2}}"#;

        let mut passthrough = RequestContext::new();
        answer_header(&mut passthrough, &resp);
        let named = answer_bytes(&mut passthrough, Some(body), true).unwrap();
        assert_eq!(named, "gpt-4o-2024-08-06");
        settle_usage(&mut passthrough, false, |_| RequestEnd::default());
        assert_eq!(passthrough.obs.usage().map(|u| u.output), Some(2));
        answering_model(&mut passthrough, named);
        assert_eq!(passthrough.obs.model(), Some("gpt-4o-2024-08-06"));
        assert_eq!(passthrough.obs.request_model(), None, "named by the answer");

        let mut routed = RequestContext::new();
        model_routed(&mut routed, "gpt-4o".into());
        answer_header(&mut routed, &resp);
        let named = answer_bytes(&mut routed, Some(body), true).unwrap();
        answering_model(&mut routed, named);
        assert_eq!(routed.obs.model(), Some("gpt-4o"));
        assert_eq!(routed.obs.request_model(), Some("gpt-4o"));
    }

    /// The usage settled for `body`, answered to a call (`post`) or to a read.
    fn settled(body: &str, post: bool) -> (Option<Usage>, Option<AnswerKey>) {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/json")
            .unwrap();
        let mut ctx = RequestContext::new();
        answer_header(&mut ctx, &resp);
        answer_bytes(&mut ctx, Some(body.as_bytes()), true);
        settle_usage(&mut ctx, !post, |_| RequestEnd::default());
        let whole = deferred_charged(&ctx).filter(DeferredAnswer::read_whole);
        (ctx.obs.usage(), whole.map(|d| *d.key()))
    }

    #[test]
    fn a_read_is_charged_only_for_a_background_response_it_reads_complete() {
        let stored = r#"{"id":"resp_1","object":"response","background":false,"model":"m","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let (usage, background) = settled(stored, true);
        assert_eq!(usage.map(|u| u.output), Some(2), "a call is charged");
        assert_eq!(background, None);
        assert_eq!(settled(stored, false), (None, None), "a read is not");

        let background = stored.replace(r#""background":false"#, r#""background":true"#);
        let named = Some(*DeferredAnswer::background_response(br#""resp_1""#).key());
        for post in [true, false] {
            let (usage, background) = settled(&background, post);
            assert_eq!(usage.map(|u| u.output), Some(2), "{post}");
            assert_eq!(background, named, "{post}");
        }
    }

    /// A call whose background stream (`response.created` named it) the client left
    /// before any text: charged the estimate of its input, from `body`.
    fn background_stream_left(ctx: &mut RequestContext, body: &str) {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/event-stream")
            .unwrap();
        model_asked(ctx, ModelWork::Generates);
        request_body(ctx, &Bytes::from(body.to_string()));
        upstream_request_ready(ctx);
        answer_header(ctx, &resp);
        let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"queued\",\"background\":true,\"model\":\"gpt-4o-mini\",\"usage\":null}}\n\n";
        answer_bytes(ctx, Some(created.as_bytes()), false);
        answer_unfinished(ctx);
    }

    #[test]
    fn work_a_call_started_is_watched_once_with_what_the_call_was_charged() {
        let body = r#"{"model":"gpt-4o-mini","input":"a question of some length, to count","background":true,"stream":true}"#;
        let left = |_: &RequestContext| RequestEnd {
            client_left: true,
            ..RequestEnd::default()
        };
        let mut alone = RequestContext::new();
        background_stream_left(&mut alone, body);
        settle_usage(&mut alone, false, left);
        let charged = alone.obs.usage().unwrap();
        assert!(charged.input > 0, "its input estimated");
        let (started, was) = started_uncharged(&mut alone, false).unwrap();
        assert_eq!(started.id, "resp_1");
        assert_eq!(was, charged, "the poll charges the rest");
        assert!(started_uncharged(&mut alone, false).is_none(), "once");

        // A read of it is not the call that started it.
        let mut read = RequestContext::new();
        background_stream_left(&mut read, body);
        settle_usage(&mut read, true, left);
        assert!(started_uncharged(&mut read, true).is_none());

        // Made by a subrequest: whichever of the two ends last has it, with what the
        // main request charged.
        for subrequest_first in [true, false] {
            let mut main = RequestContext::new();
            model_asked(&mut main, ModelWork::Generates);
            request_body(&mut main, &Bytes::from(body.to_string()));
            let shared = delegate(&mut main);
            let mut sub = RequestContext::new();
            sub.body = super::super::model_call_body::ModelCallBody::subrequest(Default::default());
            subrequest_began(&mut sub, shared);
            background_stream_left(&mut sub, body);
            settle_usage(&mut sub, false, left);
            let mut ends = [&mut sub, &mut main];
            if !subrequest_first {
                ends.reverse();
            }
            let [first, last] = ends;
            assert!(
                started_uncharged(first, false).is_none(),
                "{subrequest_first}"
            );
            let (started, _) = started_uncharged(last, false).unwrap();
            assert_eq!(started.id, "resp_1", "{subrequest_first}");
        }
    }

    #[test]
    fn a_read_streaming_text_it_leaves_is_charged_an_estimate() {
        // A background response's stream resumed (`GET …?stream=true&starting_after=`)
        // carries its text without the event naming the response: left before it
        // completes, it is charged what its text makes, as a call would be.
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/event-stream")
            .unwrap();
        let mut ctx = RequestContext::new();
        answer_header(&mut ctx, &resp);
        let events = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Bonjour, tout le monde\"}\n\n";
        answer_bytes(&mut ctx, Some(events.as_bytes()), false);
        answer_unfinished(&mut ctx);
        settle_usage(&mut ctx, true, |_| RequestEnd::default());
        assert!(ctx.obs.usage().is_some_and(|u| u.output > 0));
        assert!(ctx.obs.usage_estimated());
    }

    /// What a call asking a model for `work` (or no call: `None`), its JSON request
    /// of 400 bytes unread, is charged for `body` answered whole as `content_type`
    /// (none: no header), the client staying: (input, output, estimated).
    fn charged_whole(
        work: Option<ModelWork>,
        content_type: Option<&str>,
        body: &str,
    ) -> Option<(u64, u64, bool)> {
        charged_whole_through(work, content_type, body, false)
    }

    /// [`charged_whole`], the answer read by a subrequest of the call when `delegated`.
    fn charged_whole_through(
        work: Option<ModelWork>,
        content_type: Option<&str>,
        body: &str,
        delegated: bool,
    ) -> Option<(u64, u64, bool)> {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        if let Some(content_type) = content_type {
            resp.insert_header("content-type", content_type).unwrap();
        }
        let mut main = RequestContext::new();
        if let Some(work) = work {
            model_asked(&mut main, work);
        }
        let mut sub = RequestContext::new();
        let answered = if delegated {
            let shared = delegate(&mut main);
            sub.body = ModelCallBody::subrequest(Default::default());
            subrequest_began(&mut sub, shared);
            &mut sub
        } else {
            &mut main
        };
        upstream_request_ready(answered);
        upstream_answered(answered, Instant::now(), 200);
        answer_header(answered, &resp);
        answer_bytes(answered, Some(body.as_bytes()), true);
        // A body sent whole that is not JSON: counted all the same.
        settle_usage(&mut main, false, |_| RequestEnd {
            json_bytes: 0,
            body_bytes: 400,
            answer_bytes: body.len() as u64,
            ..RequestEnd::default()
        });
        let estimated = main.obs.usage_estimated();
        main.obs.usage().map(|u| (u.input, u.output, estimated))
    }

    #[test]
    fn a_model_calls_answer_without_a_usage_it_reads_is_charged_an_estimate() {
        let generates = Some(ModelWork::Generates);
        let json = Some("application/json");
        // Text the gateway reads: "Hello there, general Kenobi", 7 tokens.
        let chat = r#"{"choices":[{"message":{"role":"assistant","content":"Hello there, general Kenobi"}}]}"#;
        assert_eq!(charged_whole(generates, json, chat), Some((100, 7, true)));
        // JSPB, arrays of arrays: its size, four bytes a token.
        let jspb =
            r#"[[[[[["Hello there, general Kenobi"]],"model"],1]],[10,12,22],"gemini-2.5-flash"]"#;
        let size = jspb.len().div_ceil(4) as u64;
        let jspb_type = Some("application/json+protobuf");
        assert_eq!(
            charged_whole(generates, jspb_type, jspb),
            Some((100, size, true))
        );
        // Protobuf, which the gateway does not read at all: its size too.
        let proto = Some("application/x-protobuf");
        assert_eq!(
            charged_whole(generates, proto, jspb),
            Some((100, size, true))
        );
        // Embeddings bill their input alone.
        let vectors = r#"{"embedding":{"values":[0.0123,-0.0456,0.0789]}}"#;
        assert_eq!(
            charged_whole(Some(ModelWork::Embeds), json, vectors),
            Some((100, 0, true))
        );
        assert_eq!(
            charged_whole(Some(ModelWork::Embeds), proto, vectors),
            Some((100, 0, true))
        );
        // A batch made, a file uploaded: no model worked, nothing billed.
        assert_eq!(charged_whole(None, json, chat), None);
        assert_eq!(charged_whole(None, proto, jspb), None);
        // Work a call started in the background is charged once it ends, not now.
        let queued = r#"{"id":"resp_1","object":"response","status":"queued","background":true,"model":"gpt-4o-mini","output":[],"usage":null}"#;
        assert_eq!(charged_whole(generates, json, queued), None);
        // What a provider reported stands, read as JSON when it names no type.
        let reported = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        assert_eq!(
            charged_whole(generates, None, reported),
            Some((3, 2, false))
        );
        assert_eq!(
            charged_whole(generates, json, reported),
            Some((3, 2, false))
        );
        // An answer a subrequest of the call read: as the call's own.
        for (content_type, body, charged) in [
            (json, chat, Some((100, 7, true))),
            (proto, jspb, Some((100, size, true))),
            (json, reported, Some((3, 2, false))),
        ] {
            let through = charged_whole_through(generates, content_type, body, true);
            assert_eq!(through, charged, "{body}");
        }
        assert_eq!(charged_whole_through(None, json, chat, true), None);

        // Zeros are no count.
        let zeros = r#"{"choices":[{"message":{"content":"Hello there, general Kenobi"}}],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#;
        assert_eq!(charged_whole(generates, json, zeros), Some((100, 7, true)));
        // An answer that says no model worked, or that is empty, bills nothing.
        let error = r#"{"error":{"message":"upstream overloaded","code":502}}"#;
        assert_eq!(charged_whole(generates, json, error), None);
        let errors = format!("[{error}]");
        assert_eq!(
            charged_whole(generates, json, &errors),
            None,
            "Gemini's array"
        );
        let responses = r#"{"id":"resp_1","object":"response","status":"completed","error":null,"output":[{"type":"message","content":[{"type":"output_text","text":"Hello there, general Kenobi"}]}]}"#;
        assert_eq!(
            charged_whole(generates, json, responses),
            Some((100, 7, true)),
            "a Responses object says `error: null`"
        );
        let loaded = r#"{"model":"llama3.2","created_at":"2026-12-06T00:00:00Z","response":"","done":true,"done_reason":"load"}"#;
        assert_eq!(charged_whole(generates, json, loaded), None);
        assert_eq!(charged_whole(generates, None, ""), None, "a 204");
    }

    #[test]
    fn a_cost_the_provider_said_is_kept_beside_what_a_translator_read() {
        let messages = br#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"output_tokens":2,"cost":0.004}}"#;
        let mut ctx = RequestContext::new();
        model_asked(&mut ctx, ModelWork::Generates);
        let read = Usage {
            input: 10,
            output: 2,
            ..Usage::default()
        };
        answer_read_whole(&mut ctx, messages, Some(read));
        settle_usage(&mut ctx, false, |_| RequestEnd::default());
        assert_eq!(ctx.obs.usage().map(|u| u.cost_nanos), Some(4_000_000));
    }

    #[test]
    fn zeros_a_translator_read_are_no_count() {
        let chat = br#"{"choices":[{"message":{"content":"Hello there, general Kenobi"}}],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#;
        let mut ctx = RequestContext::new();
        model_asked(&mut ctx, ModelWork::Generates);
        answer_read_whole(&mut ctx, chat, Some(Usage::default()));
        settle_usage(&mut ctx, false, |_| RequestEnd {
            body_bytes: 400,
            ..RequestEnd::default()
        });
        assert_eq!(ctx.obs.usage().map(|u| (u.input, u.output)), Some((100, 7)));
        assert!(ctx.obs.usage_estimated());
    }

    /// What a call is charged for an answer in a format the gateway does not read,
    /// of `answer_bytes` as the client got them, its request of 400 bytes, the request
    /// ending as `end` says.
    fn charged_unread(answer_bytes: u64, client_left: bool, failed: bool) -> Option<(u64, u64)> {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/x-protobuf")
            .unwrap();
        let mut ctx = RequestContext::new();
        model_asked(&mut ctx, ModelWork::Generates);
        upstream_request_ready(&mut ctx);
        upstream_answered(&mut ctx, Instant::now(), 200);
        answer_header(&mut ctx, &resp);
        settle_usage(&mut ctx, false, |_| RequestEnd {
            client_left,
            json_bytes: 200,
            body_bytes: 400,
            answer_bytes,
            failed,
            ..RequestEnd::default()
        });
        ctx.obs.usage().map(|u| (u.input, u.output))
    }

    #[test]
    fn an_answer_the_gateway_does_not_read_is_charged_by_what_of_it_passed() {
        // Whole, or left by its client part way: by its size.
        assert_eq!(charged_unread(800, false, false), Some((100, 200)));
        assert_eq!(charged_unread(800, true, true), Some((100, 200)));
        // Broken off by the provider: of no use, as a whole answer cut so.
        assert_eq!(charged_unread(800, false, true), None);
        // None of it passed: a call left unanswered, charged its input (by the size
        // of a JSON body) only when its client left.
        assert_eq!(charged_unread(0, false, false), None);
        assert_eq!(charged_unread(0, true, true), Some((50, 0)));
    }

    #[test]
    fn a_call_is_priced_as_the_model_that_answered_then_the_ones_it_named() {
        use crate::config::{build_config, EnvSnapshot};
        use crate::providers::{Provider, ProviderKind};
        let yaml = "models:\n  prices:\n    gemini-2.5-flash: {input: 1, output: 0}\n    gpt-4o-2024-08-06: {input: 2, output: 0}\n    gpt-4o-mini: {input: 3, output: 0}\n";
        let config = Arc::new(build_config(Some(yaml), None, &EnvSnapshot::loopback()).unwrap());
        let call = |kind, path: &str| {
            let mut ctx = RequestContext::new();
            ctx.config = Some(Arc::clone(&config));
            let provider = Arc::new(Provider::unconfigured(kind));
            let target =
                super::super::UpstreamTarget::new(provider, path.into(), Default::default());
            ctx.upstream = Some(target);
            ctx
        };
        let input_price = |ctx: &RequestContext| {
            price_of(ctx).map(|p| {
                p.cost(&Usage {
                    input: 1_000_000,
                    ..Usage::default()
                })
            })
        };
        // A `/p/` Gemini call whose answer named no model (JSPB, `embedContent`, left
        // before it): by its path.
        let gemini = call(
            ProviderKind::Gemini,
            "/v1beta/models/gemini-2.5-flash:embedContent",
        );
        assert_eq!(input_price(&gemini), Some(1.0));
        assert_eq!(priced_model(&gemini), Some("gemini-2.5-flash"));
        // A `/p/` Chat call the gateway read the body of, its answer naming none.
        let unread = call(ProviderKind::OpenAi, "/v1/chat/completions");
        assert_eq!(input_price(&unread), None);
        let mut held = call(ProviderKind::OpenAi, "/v1/chat/completions");
        request_body(
            &mut held,
            &Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[]}"#),
        );
        assert_eq!(input_price(&held), Some(3.0));
        // An alias without a price: the model that answered has one.
        let mut unpriced = call(ProviderKind::OpenAi, "/v1/chat/completions");
        model_routed(&mut unpriced, "gpt-4o-latest".into());
        assert_eq!(input_price(&unpriced), None);
        let mut alias = call(ProviderKind::OpenAi, "/v1/chat/completions");
        model_routed(&mut alias, "gpt-4o-latest".into());
        answering_model(&mut alias, "gpt-4o-2024-08-06".into());
        assert_eq!(
            alias.obs.model(),
            Some("gpt-4o-latest"),
            "the request's stays"
        );
        assert_eq!(input_price(&alias), Some(2.0));
        // Answered through a subrequest: the model that answered reaches the main
        // request, which keeps its own.
        let mut main = call(ProviderKind::OpenAi, "/v1/chat/completions");
        model_routed(&mut main, "gpt-4o-latest".into());
        let shared = delegate(&mut main);
        let mut sub = RequestContext::new();
        sub.body = ModelCallBody::subrequest(Default::default());
        subrequest_began(&mut sub, shared);
        model_routed(&mut sub, "gpt-4o-latest".into());
        answering_model(&mut sub, "gpt-4o-2024-08-06".into());
        if let Some(model) = delegated_answering_model(&main) {
            answering_model(&mut main, model);
        }
        assert_eq!(main.obs.model(), Some("gpt-4o-latest"));
        assert_eq!(input_price(&main), Some(2.0));
        // The model that answered comes first: the provider bills it, whatever was
        // asked for (a fallback the provider chose).
        let mut priced = call(ProviderKind::OpenAi, "/v1/chat/completions");
        model_routed(&mut priced, "gpt-4o-mini".into());
        answering_model(&mut priced, "gpt-4o-2024-08-06".into());
        assert_eq!(input_price(&priced), Some(2.0));
        // An answer naming a model without a price is priced as the one asked for.
        let mut variant = call(ProviderKind::OpenAi, "/v1/chat/completions");
        model_routed(&mut variant, "gpt-4o-mini".into());
        answering_model(&mut variant, "gpt-4o-mini-variant".into());
        assert_eq!(input_price(&variant), Some(3.0));
    }

    #[test]
    fn a_call_the_gateway_stopped_waiting_for_is_charged_its_input() {
        use pingora_core::{ErrorSource, ErrorType};
        let stayed = RequestEnd {
            json_bytes: 400,
            ..RequestEnd::default()
        };
        let settled = |ctx: &mut RequestContext, end: RequestEnd| {
            settle_usage(ctx, false, |_| end);
            ctx.obs.usage().map(|u| (u.input, u.output))
        };
        let call = || {
            let mut ctx = RequestContext::new();
            model_asked(&mut ctx, ModelWork::Generates);
            upstream_request_ready(&mut ctx);
            ctx
        };
        let timed_out = |source| {
            let e = Error::explain(
                ErrorType::ReadTimedout,
                "no answer within timeouts.first_byte",
            );
            match source {
                ErrorSource::Upstream => e.into_up(),
                _ => e.into_down(),
            }
        };
        // The gateway's time ran out on the provider (a `/v1` call's exchange):
        // charged as though its client had left, though the client stayed.
        let mut given_up = call();
        upstream_failed(&mut given_up, &timed_out(ErrorSource::Upstream));
        assert_eq!(settled(&mut given_up, stayed), Some((100, 0)));
        assert!(given_up.obs.usage_estimated());
        // A `/p/` call whose exchange Pingora ended so.
        let passed_on = RequestEnd {
            gave_up: true,
            ..stayed
        };
        assert_eq!(settled(&mut call(), passed_on), Some((100, 0)));
        // The client's own slowness, or a connection never made, bills nothing.
        let mut slow_client = call();
        upstream_failed(&mut slow_client, &timed_out(ErrorSource::Downstream));
        assert_eq!(settled(&mut slow_client, stayed), None);
        let mut never_made = call();
        let connect = Error::explain(ErrorType::ConnectTimedout, "no connection");
        upstream_failed(&mut never_made, &connect);
        assert_eq!(settled(&mut never_made, stayed), None);
        // Nor a failure whose body stalled after its status came.
        let mut failing = call();
        failed_after_answering(&mut failing, 500);
        upstream_failed(&mut failing, &timed_out(ErrorSource::Upstream));
        assert_eq!(settled(&mut failing, stayed), None);
        // Nor a call asking no model.
        let mut no_model = RequestContext::new();
        upstream_request_ready(&mut no_model);
        upstream_failed(&mut no_model, &timed_out(ErrorSource::Upstream));
        assert_eq!(settled(&mut no_model, stayed), None);

        // Tried again: each attempt given up on counts its input, whatever the last
        // one does.
        let body = Bytes::from_static(
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"a question forty characters long, to ask\"}]}",
        );
        let retried = |last: &dyn Fn(&mut RequestContext)| {
            let mut ctx = call();
            request_body(&mut ctx, &body);
            upstream_failed(&mut ctx, &timed_out(ErrorSource::Upstream));
            upstream_request_ready(&mut ctx);
            upstream_failed(&mut ctx, &timed_out(ErrorSource::Upstream));
            upstream_request_ready(&mut ctx);
            last(&mut ctx);
            settled(&mut ctx, stayed)
        };
        let refused = |ctx: &mut RequestContext| upstream_answered(ctx, Instant::now(), 503);
        let each = Charge::left_unanswered()
            .with_input_of(Some(&body), 0)
            .usage
            .input;
        assert!(each >= 10, "{each}");
        assert_eq!(retried(&refused), Some((2 * each, 0)));
        let answered = |ctx: &mut RequestContext| {
            upstream_answered(ctx, Instant::now(), 200);
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_header("content-type", "application/json")
                .unwrap();
            answer_header(ctx, &resp);
            let reported = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
            answer_bytes(ctx, Some(reported), true);
        };
        assert_eq!(retried(&answered), Some((3 + 2 * each, 2)));
        // A connection that fails after a timeout does not take the timeout back.
        let unreachable = |ctx: &mut RequestContext| {
            let refused = Error::explain(ErrorType::ConnectRefused, "closed");
            upstream_failed(ctx, &refused);
        };
        assert_eq!(retried(&unreachable), Some((2 * each, 0)));

        // Through subrequests, one per attempt: each counts for the main request, its
        // failure told twice (before its error answer, and when it is logged).
        let mut main = RequestContext::new();
        model_asked(&mut main, ModelWork::Generates);
        request_body(&mut main, &body);
        let shared = delegate(&mut main);
        for _ in 0..2 {
            let mut sub = RequestContext::new();
            sub.body = ModelCallBody::subrequest(Default::default());
            subrequest_began(&mut sub, Arc::clone(&shared));
            upstream_request_ready(&mut sub);
            attempt_failed(&mut sub, &timed_out(ErrorSource::Upstream));
            upstream_failed(&mut sub, &timed_out(ErrorSource::Upstream));
        }
        assert_eq!(settled(&mut main, stayed), Some((2 * each, 0)));
    }

    #[test]
    fn a_call_left_before_any_of_its_answer_passed_is_charged_its_input() {
        let left = RequestEnd {
            client_left: true,
            json_bytes: 400,
            ..RequestEnd::default()
        };
        let settled = |ctx: &mut RequestContext, read: bool, end: RequestEnd| {
            settle_usage(ctx, read, |_| end);
            ctx.obs.usage().map(|u| (u.input, u.output))
        };
        let answer = |content_type: &str| {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_header("content-type", content_type).unwrap();
            resp
        };
        // A call asking a model, its request header about to go.
        let call = || {
            let mut ctx = RequestContext::new();
            model_asked(&mut ctx, ModelWork::Generates);
            upstream_request_ready(&mut ctx);
            ctx
        };

        let mut unsent = RequestContext::new();
        model_asked(&mut unsent, ModelWork::Generates);
        assert_eq!(settled(&mut unsent, false, left), None);

        // Awaited: by the body's size, and only when the client left.
        let mut awaited = call();
        assert_eq!(settled(&mut awaited, true, left), None, "a read");
        assert_eq!(
            settled(&mut awaited, false, RequestEnd::default()),
            None,
            "the client stayed"
        );
        assert_eq!(settled(&mut awaited, false, left), Some((100, 0)));
        assert!(awaited.obs.usage_estimated());

        // Counting tokens, a batch, a file: no model works for them.
        let mut no_model = RequestContext::new();
        upstream_request_ready(&mut no_model);
        assert_eq!(settled(&mut no_model, false, left), None);
        // Nor when the client leaves part of their answer: no usage was to come.
        let part_read = |ctx: &mut RequestContext| {
            upstream_request_ready(ctx);
            upstream_answered(ctx, Instant::now(), 200);
            answer_header(ctx, &answer("application/json"));
            answer_bytes(
                ctx,
                Some(br#"{"object":"list","data":[{"content":"some text"#),
                false,
            );
            answer_unfinished(ctx);
        };
        let mut left_no_model = RequestContext::new();
        part_read(&mut left_no_model);
        assert_eq!(settled(&mut left_no_model, false, left), None);
        let mut left_call = call();
        part_read(&mut left_call);
        assert_eq!(settled(&mut left_call, false, left), Some((100, 0)));

        // A failure bills nothing, nor an attempt that failed or never went whole;
        // the attempt after them does.
        let mut refused = call();
        upstream_answered(&mut refused, Instant::now(), 503);
        assert_eq!(settled(&mut refused, false, left), None);
        upstream_request_ready(&mut refused);
        let refused_conn = Error::explain(pingora_core::ErrorType::ConnectRefused, "closed");
        upstream_failed(&mut refused, &refused_conn);
        assert_eq!(settled(&mut refused, false, left), None);
        upstream_request_ready(&mut refused);
        attempt_not_sent(&mut refused);
        assert_eq!(settled(&mut refused, false, left), None);
        upstream_request_ready(&mut refused);
        assert_eq!(settled(&mut refused, false, left), Some((100, 0)));

        // An answer the gateway does not read is charged by its size, whether the
        // client left or not (none of it passed here).
        let mut unmetered = call();
        upstream_answered(&mut unmetered, Instant::now(), 200);
        answer_header(&mut unmetered, &answer("application/x-protobuf"));
        assert_eq!(settled(&mut unmetered, false, left), Some((100, 0)));

        // A stream counts the input of a body read, never its size.
        let mut streamed = call();
        upstream_answered(&mut streamed, Instant::now(), 200);
        answer_header(&mut streamed, &answer("text/event-stream"));
        answer_unfinished(&mut streamed);
        assert_eq!(settled(&mut streamed, false, left), None);
        request_body(
            &mut streamed,
            &Bytes::from_static(b"{\"input\":\"a question\"}"),
        );
        let charged = settled(&mut streamed, false, left);
        assert!(charged.is_some_and(|(input, output)| input > 0 && output == 0));

        // A subrequest's attempt counts for the main request it serves.
        let mut main = RequestContext::new();
        model_asked(&mut main, ModelWork::Generates);
        let shared = delegate(&mut main);
        let mut sub = RequestContext::new();
        sub.body = ModelCallBody::subrequest(Default::default());
        subrequest_began(&mut sub, shared);
        upstream_request_ready(&mut sub);
        assert_eq!(settled(&mut main, false, left), Some((100, 0)));
    }

    #[test]
    fn overhead_is_the_time_before_the_provider_plus_the_work_on_the_answer() {
        let mut ctx = RequestContext::new();
        response_work(&mut ctx, Duration::from_millis(3));
        assert_eq!(ctx.obs.overhead(), None, "no provider got the request");
        ctx.obs.upstream_sent = Some(Duration::from_millis(2));
        assert_eq!(ctx.obs.overhead(), Some(Duration::from_millis(5)));

        // A subrequest's work on the answer counts for the main request it serves.
        let shared = delegate(&mut ctx);
        let mut sub = RequestContext::new();
        sub.body = ModelCallBody::subrequest(Default::default());
        subrequest_began(&mut sub, shared);
        response_work(&mut sub, Duration::from_millis(4));
        assert_eq!(sub.obs.response_work, Duration::ZERO);
        assert_eq!(ctx.obs.overhead(), Some(Duration::from_millis(9)));
    }
}
