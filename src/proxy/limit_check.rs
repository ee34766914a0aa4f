//! Holding callers and providers to their limits: admission before anything goes
//! upstream, the `x-ratelimit-*` headers, and the charge once the answer has said
//! what it used.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;

use crate::metrics::usage::Price;

use super::resilience::HealthBook;
use super::{GatewayError, RequestContext};
use crate::auth::Caller;
use crate::config::{Config, KeyLimits, Limited, LiveConfig, OnStoreError};
use crate::limits::{usd_nanos, CallSlot, LimitStore, RateState, Refusal, UsageRecord};

/// What a request is held to: the subject it counts against, its limits, and the call
/// slot it holds while it runs.
#[derive(Debug)]
pub struct HeldTo {
    pub subject: Arc<str>,
    pub limits: KeyLimits,
    _slot: Option<CallSlot>,
}

/// The subjects a request counts against: its caller's key and the provider it goes
/// to, each at most once (kept in place: a limited request allocates nothing for them).
#[derive(Debug, Default)]
pub struct HeldToSubjects {
    key: Option<HeldTo>,
    provider: Option<HeldTo>,
    /// The caller's key is held to what its calls use (tokens per minute, or a budget).
    caller_by_usage: bool,
}

impl HeldToSubjects {
    /// Whether the request counts against nothing.
    fn is_empty(&self) -> bool {
        self.key.is_none() && self.provider.is_none()
    }
}

/// Whether the request's config holds it to any limit, its caller's key's or its
/// provider's: told by the config, not by what was counted (a store that failed,
/// under `allow`, counts nothing; the provider may not be admitted yet).
pub fn held_to_limits(ctx: &RequestContext) -> bool {
    let provider_limited = match (ctx.config.as_deref(), ctx.provider_name()) {
        (Some(config), Some(name)) => config.limits.for_provider(name).is_some(),
        _ => false,
    };
    provider_limited || caller_limits(ctx).is_some()
}

/// Unix seconds now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Admits the request against the limits of its caller's key, if it has any.
pub async fn admit_caller(
    store: &Arc<dyn LimitStore>,
    ctx: &mut RequestContext,
) -> Result<(), GatewayError> {
    let Some(config) = ctx.config.clone() else {
        return Ok(());
    };
    let Some(limited) = ctx
        .caller
        .as_ref()
        .and_then(|c| config.limits.for_caller(c))
    else {
        return Ok(());
    };
    ctx.held_to.caller_by_usage =
        limited.limits.tokens_per_minute.is_some() || limited.limits.budget.is_some();
    let (held, windows) = admit(store, limited, config.limits.on_store_error, Whose::Key).await?;
    ctx.rate = windows.or(ctx.rate);
    ctx.held_to.key = Some(held);
    Ok(())
}

/// For an answer the gateway gives itself without counting the request (the model
/// list): the caller's windows as they stand, so that its answer carries the
/// `x-ratelimit-*` headers every answer to a key with limits carries.
pub async fn peek_caller(store: &Arc<dyn LimitStore>, ctx: &mut RequestContext) {
    let Some(limited) = caller_limits(ctx) else {
        return;
    };
    let (subject, limits) = (Arc::clone(&limited.subject), limited.limits);
    if let Some(state) = store.peek(&subject, &limits, now()).await {
        ctx.rate = Some(state);
    }
}

/// The limits the config holds the caller's key to (counted or not; told in a
/// subrequest too, which holds no subjects of its own), with their texts made with the
/// config for the `x-ratelimit-limit-*` values of its answer.
pub fn caller_limits(ctx: &RequestContext) -> Option<&Limited> {
    ctx.config
        .as_deref()?
        .limits
        .for_caller(ctx.caller.as_ref()?)
}

/// Whether the caller's key is held to what its calls use (tokens per minute, or a
/// budget), not only to their number: such a key's calls must be metered.
pub fn caller_charged_by_usage(ctx: &RequestContext) -> bool {
    // Told by the admission, which found the key's limits.
    ctx.held_to.caller_by_usage
}

/// Admits the request against the limits of the provider it goes to, if any, as its
/// config has them.
pub async fn admit_provider(
    store: &Arc<dyn LimitStore>,
    ctx: &mut RequestContext,
) -> Result<(), GatewayError> {
    let Some(config) = ctx.config.clone() else {
        return Ok(());
    };
    admit_provider_under(store, ctx, &config).await
}

/// Admits the request against the limits `config` gives the provider it goes to, if
/// any.
async fn admit_provider_under(
    store: &Arc<dyn LimitStore>,
    ctx: &mut RequestContext,
    config: &Config,
) -> Result<(), GatewayError> {
    let Some(provider) = ctx.provider_name() else {
        return Ok(());
    };
    let Some(limited) = config.limits.for_provider(provider) else {
        return Ok(());
    };
    let whose = Whose::Provider(provider);
    let (held, _) = admit(store, limited, config.limits.on_store_error, whose)
        .await
        .map_err(|mut refused| {
            // The provider's quota is the operator's own business: a refusal by it
            // tells the caller its own windows (if it has any), not the quota's.
            refused.rate = ctx.rate.map(Box::new);
            refused
        })?;
    ctx.held_to.provider = Some(held);
    Ok(())
}

/// What a provider's quota said of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAdmission {
    /// Admitted (or the provider has no quota).
    Admitted,
    /// Refused, and the request's plan moved on to its next candidate, to be readied.
    MovedOn,
}

/// Admits the attempt against its provider's quota ([`admit_provider`] for the first,
/// [`admit_provider_of_attempt`] for a later one); a refusal moves the plan on to its
/// next candidate when it has one, rather than end the call: a provider out of quota
/// is passed over for the pool's other instances and the fallbacks.
pub async fn admit_provider_or_move_on(
    store: &Arc<dyn LimitStore>,
    health: &HealthBook,
    ctx: &mut RequestContext,
    (first, live): (bool, &LiveConfig),
) -> Result<ProviderAdmission, GatewayError> {
    let admitted = if first {
        admit_provider(store, ctx).await
    } else {
        admit_provider_of_attempt(store, ctx, live).await
    };
    match admitted {
        Ok(()) => Ok(ProviderAdmission::Admitted),
        // Refused by the quota (a store that cannot be reached is a 503, not passed over).
        Err(refused) if refused.status == 429 => move_on_or(ctx, health, refused, "quota"),
        Err(err) => {
            if let Some(plan) = ctx.plan.as_mut() {
                plan.not_sent(health);
            }
            Err(err)
        }
    }
}

/// The gateway refused the readied attempt before sending it (`refused`, recorded as
/// `outcome`): the request's plan moves on to its next candidate, to be readied, when
/// it has one; otherwise `refused` is the request's answer.
pub fn move_on_or(
    ctx: &mut RequestContext,
    health: &HealthBook,
    refused: GatewayError,
    outcome: &str,
) -> Result<ProviderAdmission, GatewayError> {
    let now = std::time::Instant::now();
    let moved = ctx
        .plan
        .as_mut()
        .is_some_and(|p| p.refused_before_sending(outcome, health, now));
    if moved {
        Ok(ProviderAdmission::MovedOn)
    } else {
        Err(refused)
    }
}

/// Admits an attempt after the first against the limits of the provider it goes to,
/// as the `live` config has them now (a reload since the request began may have
/// changed them; the counters, and a replica's lease, are kept for the limits in
/// force): every request sent counts where it goes (a retry at the same provider, a
/// pool's other instance, a fallback), and the tokens are charged to the provider
/// that answered. An attempt after one that never reached its provider (no
/// connection) at the same provider is the request that attempt was admitted as.
async fn admit_provider_of_attempt(
    store: &Arc<dyn LimitStore>,
    ctx: &mut RequestContext,
    live: &LiveConfig,
) -> Result<(), GatewayError> {
    let Some(provider) = ctx.provider_name() else {
        return Ok(());
    };
    let config = live.snapshot();
    let limited = config.limits.for_provider(provider);
    if limited.is_none() && ctx.held_to.provider.is_none() {
        return Ok(());
    }
    if limited.is_some_and(|limited| still_admitted(ctx, limited)) {
        return Ok(());
    }
    // The attempt before counted against its own provider; its slot is freed.
    ctx.held_to.provider = None;
    admit_provider_under(store, ctx, &config).await
}

/// Whether the request is still admitted as `limited` has it: the attempt before went
/// to the same subject under the same limits, and never reached it (no connection
/// was made), so nothing was sent there against its admission.
fn still_admitted(ctx: &RequestContext, limited: &Limited) -> bool {
    let held_there = ctx
        .held_to
        .provider
        .as_ref()
        .is_some_and(|held| held.subject == limited.subject && held.limits == limited.limits);
    held_there && ctx.plan.as_ref().is_some_and(|p| p.last_never_connected())
}

/// One admission: the subject held to (with its windows when it has any, and its call
/// slot when it counts calls at once). When the store failed and `on_error` lets the
/// request through, the subject is held to all the same, with no windows and no slot:
/// what the call uses is charged to it once the store takes writes again, so that work
/// served while the store was away is not free.
async fn admit(
    store: &Arc<dyn LimitStore>,
    limited: &Limited,
    on_error: OnStoreError,
    whose: Whose<'_>,
) -> Result<(HeldTo, Option<RateState>), GatewayError> {
    let Limited {
        subject, limits, ..
    } = limited;
    let now = now();
    let decided = match store.admit_now(subject, limits, now) {
        Some(decided) => decided,
        None => store.admit(subject, limits, now).await,
    };
    let admission = match decided {
        Ok(admission) => admission,
        Err(e) => {
            store_failed(&e, on_error)?;
            let held = HeldTo {
                subject: Arc::clone(subject),
                limits: *limits,
                _slot: None,
            };
            return Ok((held, None));
        }
    };
    if let Some((refusal, retry_after)) = admission.refused {
        let (what, budget) = match refusal {
            Refusal::Requests => ("requests per minute", false),
            Refusal::Tokens => ("tokens per minute", false),
            Refusal::Concurrency => ("calls at once", false),
            Refusal::Budget => ("budget for this period", true),
        };
        return Err(GatewayError::rate_limited(
            format!("{whose} has used its {what}; retry after {retry_after} s"),
            budget,
            retry_after,
            admission.state,
        ));
    }
    let slot = admission
        .slot
        .map(|slot| CallSlot::new(Arc::clone(store), Arc::clone(subject), slot));
    let windows = admission.state;
    let has_windows = windows.requests.is_some() || windows.tokens.is_some();
    Ok((
        HeldTo {
            subject: Arc::clone(subject),
            limits: *limits,
            _slot: slot,
        },
        has_windows.then_some(windows),
    ))
}

/// Whose limits a refusal names.
#[derive(Clone, Copy)]
enum Whose<'a> {
    /// The caller's gateway key.
    Key,
    /// A provider instance, by name.
    Provider(&'a str),
}

impl std::fmt::Display for Whose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Whose::Key => f.write_str("your key"),
            Whose::Provider(name) => write!(f, "provider `{name}`"),
        }
    }
}

fn store_failed(e: &crate::limits::StoreError, on_error: OnStoreError) -> Result<(), GatewayError> {
    if let Some(m) = crate::metrics::metrics() {
        m.limit_store_error();
    }
    // Said once a minute at most: every request would say it otherwise.
    static SAID: crate::limits::OnceAMinute = crate::limits::OnceAMinute::new();
    match on_error {
        OnStoreError::Allow => {
            if SAID.due() {
                log::warn!("{e}; serving without limits (limits.on_store_error: allow)");
            }
            Ok(())
        }
        OnStoreError::Deny => {
            if SAID.due() {
                log::warn!("{e}; answering 503 (limits.on_store_error: deny)");
            }
            Err(GatewayError::overloaded(
                "the limit store cannot be reached; retry shortly",
                1,
            ))
        }
    }
}

/// A read of an answer generated apart from any call (a background response, a
/// batch) is charged its usage only when no request charged it whole before: asked
/// of the store, where every replica asks; read whole, it is marked charged. A call
/// that gets one whole is charged all the same, and marks it. When the store cannot
/// say, the usage is charged (a budget errs on the side of what the provider bills).
pub async fn charge_deferred_once(store: &Arc<dyn LimitStore>, ctx: &mut RequestContext) {
    let Some(answer) = super::observe::deferred_charged(ctx) else {
        return;
    };
    let read = super::observe::is_read(ctx);
    let charged_before = if answer.read_whole() {
        let first = store.first_charge(answer.key(), now()).await;
        if let (Ok(true), Some(name)) = (&first, answer.name_mark()) {
            // For the reads in part after it, which report less.
            let _ = store.first_charge(name, now()).await;
        }
        first.map(|first| !first)
    } else if read {
        // Read in part: charged what it got, unless the whole was charged already.
        store.was_charged(answer.part_read_key(), now()).await
    } else {
        return;
    };
    match charged_before {
        Ok(true) if read => super::observe::already_charged(ctx),
        Ok(_) => {}
        Err(e) => log::warn!("{e}; an answer read again may be charged again"),
    }
}

/// The finished request's usage, read once: charged to every subject it counted
/// against, and added to its gateway key's usage report (per model, per day) for
/// every request a named key sent to a provider, where the report can be read.
pub fn settle(store: &Arc<dyn LimitStore>, ctx: &RequestContext, live: &LiveConfig) {
    let key = report_key(
        ctx.caller.as_ref(),
        super::observe::went_to_provider(ctx),
        ctx.config.as_deref(),
    );
    let usage = ctx.obs.usage();
    if key.is_none() && (!counts_against_any(ctx) || usage.is_none()) {
        return;
    }
    let cost = super::observe::cost_usd(ctx);
    let now = now();
    if let Some(usage) = &usage {
        charge(store, ctx, live, usage, cost, now);
    }
    let Some(key) = key else {
        return;
    };
    let estimated = u64::from(ctx.obs.usage_estimated());
    let record = |usage: &crate::metrics::usage::Usage, cost: Option<f64>, requests: u64| {
        usage_record(usage, cost, requests, requests * estimated)
    };
    let mut parts = super::observe::batch_models(ctx).peekable();
    let recorded = if parts.peek().is_some() {
        // A batch of several models: each model's lines under its own, the request
        // counted once.
        parts.enumerate().try_for_each(|(i, (label, usage, cost))| {
            let model = label.as_deref().unwrap_or("-");
            let part = record(usage, cost, u64::from(i == 0));
            store.record_usage(key, model, now / 86_400, &part)
        })
    } else {
        let whole = record(&usage.unwrap_or_default(), cost, 1);
        let model = ctx.obs.model_label().unwrap_or("-");
        store.record_usage(key, model, now / 86_400, &whole)
    };
    if let Err(e) = recorded {
        log::warn!("{e}; this request is missing from the usage report");
    }
}

/// A line of the usage report: `usage` costing `cost`, over `requests` requests of
/// which `estimated` were charged an estimate.
fn usage_record(
    usage: &crate::metrics::usage::Usage,
    cost: Option<f64>,
    requests: u64,
    estimated: u64,
) -> UsageRecord {
    UsageRecord {
        requests,
        input: usage.input,
        output: usage.output,
        cache_read: usage.cache_read,
        cache_write: usage.cache_write,
        reasoning: usage.reasoning,
        web_searches: usage.web_searches,
        cost_nanos: usd_nanos(cost.unwrap_or(0.0)),
        estimated,
    }
}

/// The gateway key whose usage report counts a request from `caller`: a named key's
/// request that went to a provider, when the report can be read (`config` serves it,
/// or keeps it where another replica does).
fn report_key<'a>(
    caller: Option<&'a Caller>,
    sent_upstream: bool,
    config: Option<&Config>,
) -> Option<&'a str> {
    if !sent_upstream || !config.is_some_and(Config::usage_reported) {
        return None;
    }
    match caller? {
        Caller::Master => Some("master"),
        Caller::Managed(name) => Some(name),
        _ => None,
    }
}

/// Whether the request counted against any subject: its key, its provider, or the
/// provider of an attempt given up on.
fn counts_against_any(ctx: &RequestContext) -> bool {
    !ctx.held_to.is_empty() || !super::observe::attempts_given_up(ctx).0.is_empty()
}

/// Charges `usage` (costing `cost`) to every subject the request counted against, as
/// it is limited now: after a reload since the admission, as the `live` config limits
/// it (a budget's period changed, a budget or a token rate added or taken away),
/// where admissions count now, so that the counters survive the reload. The input of
/// attempts the gateway gave up on is the key's, and the provider's that had each of
/// them, not the provider's that answered last.
fn charge(
    store: &Arc<dyn LimitStore>,
    ctx: &RequestContext,
    live: &LiveConfig,
    usage: &crate::metrics::usage::Usage,
    cost: Option<f64>,
    now: u64,
) {
    if !counts_against_any(ctx) {
        return;
    }
    let model = || super::observe::priced_model(ctx);
    let price = || super::observe::price_of(ctx);
    let reloaded = ctx
        .config
        .as_ref()
        .filter(|c| !live.is_current(c))
        .map(|_| live.snapshot());
    let (key, provider) = match reloaded.as_deref() {
        None => (
            ctx.held_to.key.as_ref().map(|h| (&h.subject, &h.limits)),
            ctx.held_to
                .provider
                .as_ref()
                .map(|h| (&h.subject, &h.limits)),
        ),
        Some(current) => {
            let caller = ctx.caller.as_ref().filter(|_| ctx.held_to.key.is_some());
            let provider = ctx.held_to.provider.as_ref();
            let provider =
                provider.and_then(|held| crate::limits::provider_of_subject(&held.subject));
            (
                limited_subjects(current, caller, None).next(),
                limited_subjects(current, None, provider).next(),
            )
        }
    };
    let (given_up, each) = super::observe::attempts_given_up(ctx);
    if given_up.is_empty() {
        let subjects = key.into_iter().chain(provider);
        charge_subjects(store, subjects, usage, (cost, price), model, now);
        return;
    }
    charge_subjects(store, key.into_iter(), usage, (cost, price), model, now);
    let each = crate::metrics::usage::Usage {
        input: each,
        ..Default::default()
    };
    let each_cost = price().map(|p| p.cost(&each));
    let mut moved = crate::metrics::usage::Usage::default();
    let config = reloaded.as_deref().or(ctx.config.as_deref());
    for name in given_up {
        moved.add(&each);
        let limited = config.and_then(|c| c.limits.for_provider(name));
        let subject = limited.map(|l| (&l.subject, &l.limits));
        charge_subjects(
            store,
            subject.into_iter(),
            &each,
            (each_cost, price),
            model,
            now,
        );
    }
    let own = usage.less(&moved);
    let moved_cost = price().map_or(0.0, |p| p.cost(&moved));
    let own_cost = cost.map(|c| (c - moved_cost).max(0.0));
    charge_subjects(
        store,
        provider.into_iter(),
        &own,
        (own_cost, price),
        model,
        now,
    );
}

/// The subjects `config` limits of a call by `caller` to `provider` (either left out
/// when `None`), with their limits.
fn limited_subjects<'a>(
    config: &'a Config,
    caller: Option<&Caller>,
    provider: Option<&str>,
) -> impl Iterator<Item = (&'a Arc<str>, &'a KeyLimits)> + Clone {
    let key = caller.and_then(|c| config.limits.for_caller(c));
    let provider = provider.and_then(|name| config.limits.for_provider(name));
    key.into_iter()
        .chain(provider)
        .map(|l| (&l.subject, &l.limits))
}

/// Charges `usage` (costing `cost` at `price`, of the model `model` names, asked
/// only to say a model or its searches have no price) to each subject with its
/// limits.
fn charge_subjects<'a, 'm, 'p, P: FnOnce() -> Option<&'p Price>>(
    store: &Arc<dyn LimitStore>,
    subjects: impl Iterator<Item = (&'a Arc<str>, &'a KeyLimits)> + Clone,
    usage: &crate::metrics::usage::Usage,
    (cost, price): (Option<f64>, P),
    model: impl FnOnce() -> Option<&'m str>,
    now: u64,
) {
    let tokens = usage
        .input
        .saturating_add(usage.cache_read)
        .saturating_add(usage.cache_write)
        .saturating_add(usage.output);
    let usd_budget = || {
        subjects
            .clone()
            .any(|(_, limits)| limits.budget.is_some_and(|b| b.usd.is_some()))
    };
    let usd = match cost {
        Some(cost) => {
            // The price is looked up only for a call that searched.
            let unpriced = |p: &Price| p.leaves_out_searches(usage);
            if usage.web_searches > 0 && usd_budget() && price().is_some_and(unpriced) {
                searches_unpriced_once(model().unwrap_or("-"));
            }
            cost
        }
        None => {
            if usd_budget() {
                unpriced_once(model().unwrap_or("-"));
            }
            0.0
        }
    };
    for (subject, limits) in subjects {
        if !counts_tokens(limits) {
            continue;
        }
        if let Err(e) = store.charge(subject, limits, tokens, usd, now) {
            log::warn!("{e}; this request's usage is not charged");
        }
    }
}

/// Whether `limits` count tokens (a rate of them, or a budget).
fn counts_tokens(limits: &KeyLimits) -> bool {
    limits.tokens_per_minute.is_some() || limits.budget.is_some()
}

/// Who started work apart from its call (a background response, a batch), and where:
/// what the usage the gateway's poll reads of it is charged to.
#[derive(Debug, Clone)]
pub struct StartedBy {
    /// The caller's gateway key.
    pub caller: Caller,
    /// The provider instance that runs it.
    pub provider: Arc<str>,
    /// The caller brought its own provider key (`!PASSTHRU`): what its token metrics
    /// are labelled by when it has no gateway key.
    pub brought_key: bool,
}

impl StartedBy {
    /// Whether the tokens of a call by this caller to this provider are counted
    /// anywhere under `config`: the caller's or the provider's token limits or
    /// budget, or the key's usage report.
    pub fn is_counted(&self, config: &Config) -> bool {
        self.subjects(config)
            .any(|(_, limits)| counts_tokens(limits))
            || report_key(Some(&self.caller), true, Some(config)).is_some()
    }

    /// The subjects counted, with their limits as `config` has them now.
    fn subjects<'a>(
        &'a self,
        config: &'a Config,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a KeyLimits)> + Clone {
        limited_subjects(config, Some(&self.caller), Some(&self.provider))
    }
}

/// Charges what is left of `whole`, the usage the gateway's poll read of work started
/// apart from its call (`model` answering, a `batch` at its price) when it had ended,
/// once what the call was `charged` is taken off: to the limits of the caller and the
/// provider as `config` has them now, the key's usage report and the token metrics.
/// Its cost is the whole's less the charged part's, so that a cost the provider
/// reported for the whole is not added to the estimate the call paid. The caller
/// marked it charged first, as a read would.
pub fn charge_polled(
    store: &Arc<dyn LimitStore>,
    config: &Arc<Config>,
    by: &StartedBy,
    (whole, charged): (&crate::metrics::usage::Usage, &crate::metrics::usage::Usage),
    model: Option<&str>,
    batch: bool,
) {
    let usage = &whole.less(charged);
    if *usage == crate::metrics::usage::Usage::default() {
        return;
    }
    let now = now();
    let factor = if batch {
        crate::metrics::deferred_answer::BATCH_PRICE_FACTOR
    } else {
        1.0
    };
    let price = model.and_then(|m| config.models.price(&by.provider, m));
    let paid = charged.cost(price, factor).unwrap_or(0.0);
    let cost = whole.cost(price, factor).map(|cost| (cost - paid).max(0.0));
    charge_subjects(
        store,
        by.subjects(config),
        usage,
        (cost, || price),
        || model,
        now,
    );
    let handles = crate::metrics::handles_for(config);
    let label = match (&handles, model) {
        (Some(h), Some(model)) => h.model_label(model),
        _ => Arc::from("-"),
    };
    if let Some(key) = report_key(Some(&by.caller), true, Some(config)) {
        // The call that started it counted as the request.
        let record = usage_record(usage, cost, 0, 0);
        if let Err(e) = store.record_usage(key, &label, now / 86_400, &record) {
            log::warn!("{e}; work polled is missing from the usage report");
        }
    }
    if let Some(h) = handles {
        let provider = h.provider_label(h.provider(Some(&by.provider)));
        let key = crate::metrics::labels::key_label(Some(&by.caller), by.brought_key);
        h.tokens_used(provider, &label, key, usage, cost);
    }
}

/// At most this many models without a price are told apart, each said once: the
/// names come from clients.
const UNPRICED_SAID_AT_MOST: usize = 256;

/// A USD budget counts a model without a price as free: said once per model, for
/// the first [`UNPRICED_SAID_AT_MOST`] models (then once for all the others). The
/// name is a client's: escaped, so it cannot break the line.
fn unpriced_once(model: &str) {
    static SAID: Lazy<Mutex<HashSet<String>>> = Lazy::new(Mutex::default);
    said_once(&SAID, model, |named| match named {
        Some(model) => log::warn!(
            "model `{}` has no price in models.prices: USD budgets count its calls as free",
            super::access_log::escape(model)
        ),
        None => log::warn!(
            "more than {UNPRICED_SAID_AT_MOST} models have no price in models.prices: USD \
             budgets count their calls as free; the others are not named"
        ),
    });
}

/// A USD budget counts the web searches of a model whose price has none as free:
/// said once per model, as [`unpriced_once`] says it.
fn searches_unpriced_once(model: &str) {
    static SAID: Lazy<Mutex<HashSet<String>>> = Lazy::new(Mutex::default);
    said_once(&SAID, model, |named| match named {
        Some(model) => log::warn!(
            "model `{}` ran web searches and its price in models.prices has no \
             `web_search`: USD budgets count them as free",
            super::access_log::escape(model)
        ),
        None => log::warn!(
            "more than {UNPRICED_SAID_AT_MOST} models ran web searches without a \
             `web_search` price: USD budgets count them as free; the others are not named"
        ),
    });
}

/// Has `say` tell of `model` the first time it is told (`Some`), for the first
/// [`UNPRICED_SAID_AT_MOST`] models, then once for all the others (`None`): the
/// names come from clients.
fn said_once(said: &Mutex<HashSet<String>>, model: &str, say: impl FnOnce(Option<&str>)) {
    let Ok(mut told) = said.lock() else {
        return;
    };
    if told.contains(model) {
        return;
    }
    if told.len() < UNPRICED_SAID_AT_MOST {
        told.insert(model.to_string());
        drop(told);
        say(Some(model));
    } else if told.insert(String::new()) {
        drop(told);
        say(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitStoreKind;

    #[tokio::test]
    async fn work_polled_costs_the_whole_less_what_its_call_paid() {
        use crate::metrics::usage::Usage;
        let yaml = "server:\n  listen: 127.0.0.1:8080\n  metrics_listen: 127.0.0.1:9090\nmodels:\n  prices:\n    m: {input: 1000, output: 1000}\nproviders:\n  p:\n    type: openai\n    base_url: http://127.0.0.1:9\n    api_key: sk-p\n";
        let env = crate::config::EnvSnapshot::from_pairs(Vec::<(&str, &str)>::new());
        let config = Arc::new(crate::config::build_config(Some(yaml), None, &env).unwrap());
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        let by = StartedBy {
            caller: Caller::Master,
            provider: Arc::from("p"),
            brought_key: false,
        };
        // The call was charged an estimate of 10 tokens ($0.01); the provider then
        // said the whole cost $0.05, for 12 tokens ($0.012 at the price).
        let charged = Usage {
            input: 10,
            ..Usage::default()
        };
        let whole = Usage {
            input: 10,
            output: 2,
            cost_nanos: 50_000_000,
            ..Usage::default()
        };
        charge_polled(&store, &config, &by, (&whole, &charged), Some("m"), false);
        let report = crate::limits::usage_report(
            store.as_ref(),
            "master",
            crate::config::BudgetPeriod::Month,
            now(),
        )
        .await
        .unwrap();
        let cost = report["total"]["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - 0.04).abs() < 1e-9,
            "the $0.05 less the $0.01 paid: {report}"
        );
        assert_eq!(report["total"]["tokens"]["output"], 2);
    }

    /// A config whose provider `p` allows `per_minute` requests a minute.
    fn provider_limited(per_minute: u64) -> Config {
        let yaml = format!("server:\n  listen: 127.0.0.1:8080\nproviders:\n  p:\n    type: openai\n    base_url: http://127.0.0.1:9\n    api_key: sk-p\n    limits: {{requests_per_minute: {per_minute}}}\n");
        let env = crate::config::EnvSnapshot::from_pairs(Vec::<(&str, &str)>::new());
        crate::config::build_config(Some(&yaml), None, &env).unwrap()
    }

    /// A request of `config` bound for provider `p`.
    fn bound_for_p(config: Arc<Config>) -> RequestContext {
        let mut ctx = RequestContext::new();
        let provider = Arc::clone(config.providers.find("p").unwrap());
        ctx.upstream = Some(crate::proxy::UpstreamTarget::new(
            provider,
            String::new(),
            Default::default(),
        ));
        ctx.config = Some(config);
        ctx
    }

    #[tokio::test]
    async fn a_later_attempt_is_held_to_its_providers_limits_as_a_reload_left_them() {
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        let live = LiveConfig::new(provider_limited(1));
        // A request begun after the reload takes the minute's one request.
        let mut after = bound_for_p(live.snapshot());
        admit_provider(&store, &mut after).await.unwrap();
        // One begun before it, under 100 a minute, tries again: held to the one.
        let mut before = bound_for_p(Arc::new(provider_limited(100)));
        let refused = admit_provider_of_attempt(&store, &mut before, &live).await;
        assert_eq!(refused.map_err(|e| e.status), Err(429));
    }

    #[tokio::test]
    async fn calls_too_cheap_for_a_millionth_of_a_dollar_each_add_up_in_the_usage_report() {
        use crate::metrics::usage::Usage;
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        let embedded = Usage {
            input: 20,
            ..Usage::default()
        };
        let day = now() / 86_400;
        for _ in 0..1_000 {
            let record = usage_record(&embedded, Some(0.000_000_4), 1, 0);
            store.record_usage("master", "embed", day, &record).unwrap();
        }
        let report = crate::limits::usage_report(
            store.as_ref(),
            "master",
            crate::config::BudgetPeriod::Day,
            now(),
        )
        .await
        .unwrap();
        let cost = report["total"]["cost_usd"].as_f64().unwrap();
        assert!((cost - 0.0004).abs() < 1e-12, "{report}");
    }

    #[test]
    fn a_usage_report_is_kept_where_it_can_be_read() {
        let team = Caller::Managed("team-a".into());
        let served = Config::default();
        assert_eq!(report_key(Some(&team), true, Some(&served)), Some("team-a"));
        assert_eq!(
            report_key(Some(&Caller::Master), true, Some(&served)),
            Some("master")
        );
        assert_eq!(
            report_key(Some(&team), false, Some(&served)),
            None,
            "never sent"
        );
        assert_eq!(
            report_key(None, true, Some(&served)),
            None,
            "no gateway key"
        );

        let mut unserved = Config::default();
        unserved.server.startup.metrics_listen = None;
        assert_eq!(
            report_key(Some(&team), true, Some(&unserved)),
            None,
            "nobody reads it"
        );
        unserved.limits.store =
            LimitStoreKind::Redis(crate::config::RedisAddress::plain("redis://127.0.0.1/0"));
        assert_eq!(
            report_key(Some(&team), true, Some(&unserved)),
            Some("team-a"),
            "another replica serves it"
        );
    }

    /// The output `ctx`'s answer is charged once settled for a `read` (or a call) and
    /// checked against what `store` remembers.
    fn charged_output(
        store: &Arc<dyn LimitStore>,
        mut ctx: RequestContext,
        read: bool,
    ) -> Option<u64> {
        crate::proxy::observe::settle_usage(&mut ctx, read, |_| {
            crate::proxy::observe::RequestEnd::default()
        });
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(charge_deferred_once(store, &mut ctx));
        ctx.obs.usage().map(|u| u.output)
    }

    /// A request's target at a provider of `kind`.
    fn target_at(kind: crate::providers::ProviderKind) -> crate::proxy::UpstreamTarget {
        let provider = Arc::new(crate::providers::Provider::unconfigured(kind));
        crate::proxy::UpstreamTarget::new(provider, String::new(), Default::default())
    }

    /// The output charged for a read of a batch's `results`, all of them or only as
    /// far as `cut_at`, after what `store` remembers.
    fn results_read(
        store: &Arc<dyn LimitStore>,
        results: &str,
        cut_at: Option<usize>,
    ) -> Option<u64> {
        let anthropic = crate::providers::ProviderKind::Anthropic;
        let endpoint = "messages/batches/msgbatch_1/results";
        results_read_at(store, results, cut_at, anthropic, endpoint)
    }

    /// [`results_read`] at a provider of `kind`, of `endpoint`.
    fn results_read_at(
        store: &Arc<dyn LimitStore>,
        results: &str,
        cut_at: Option<usize>,
        kind: crate::providers::ProviderKind,
        endpoint: &str,
    ) -> Option<u64> {
        use crate::proxy::observe;
        let mut ctx = RequestContext::new();
        let target = target_at(kind);
        observe::passthrough_endpoint(&mut ctx, &http::Method::GET, endpoint, &target);
        let resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        observe::answer_header(&mut ctx, &resp);
        match cut_at {
            Some(at) => {
                observe::answer_bytes(&mut ctx, Some(&results.as_bytes()[..at]), false);
                observe::answer_unfinished(&mut ctx);
            }
            None => {
                observe::answer_bytes(&mut ctx, Some(results.as_bytes()), true);
            }
        }
        charged_output(store, ctx, true)
    }

    #[test]
    fn results_read_in_part_are_charged_what_was_read_until_they_are_read_whole() {
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        let line = r#"{"custom_id":"a","result":{"type":"succeeded","message":{"model":"m","usage":{"input_tokens":3,"output_tokens":5}}}}"#;
        let results = format!("{line}\n{line}\n");
        let first_line = line.len() + 1;
        // Left after the first line: charged it, not remembered; and again.
        assert_eq!(
            results_read(&store, &results, Some(first_line + 4)),
            Some(5)
        );
        assert_eq!(
            results_read(&store, &results, Some(first_line + 4)),
            Some(5)
        );
        // Read whole: charged all of it, once.
        assert_eq!(results_read(&store, &results, None), Some(10));
        assert_eq!(results_read(&store, &results, None), None);
        // Left part way once the whole was charged: nothing more.
        assert_eq!(results_read(&store, &results, Some(first_line + 4)), None);
    }

    #[test]
    fn a_gemini_responses_file_read_in_part_after_it_was_read_whole_is_charged_nothing() {
        // Known by what it reports once read whole: a read in part reports less, and
        // asks after the file's name, which the whole read marked too.
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        let line = r#"{"key":"a","response":{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":5},"modelVersion":"m"}}"#;
        let results = format!("{line}\n{line}\n");
        let part = Some(line.len() + 5);
        let gemini = crate::providers::ProviderKind::Gemini;
        let read =
            |cut| results_read_at(&store, &results, cut, gemini, "v1beta/files/f-1:download");
        assert_eq!(read(part), Some(5));
        assert_eq!(read(None), Some(10));
        assert_eq!(read(None), None);
        assert_eq!(read(part), None);
    }

    /// The output charged for a background response answered whole to a read or to
    /// a call, after what `store` remembers.
    fn background_response(store: &Arc<dyn LimitStore>, read: bool) -> Option<u64> {
        use crate::proxy::observe;
        let mut ctx = RequestContext::new();
        let mut resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/json")
            .unwrap();
        observe::answer_header(&mut ctx, &resp);
        let body = br#"{"id":"resp_bg","object":"response","background":true,"model":"m","usage":{"input_tokens":3,"output_tokens":5}}"#;
        observe::answer_bytes(&mut ctx, Some(body), true);
        charged_output(store, ctx, read)
    }

    /// The output charged for a resumed stream of `resp_bg` its client leaves, after
    /// what `store` remembers.
    fn resumed_stream_left(store: &Arc<dyn LimitStore>) -> Option<u64> {
        use crate::proxy::observe;
        let mut ctx = RequestContext::new();
        let openai = target_at(crate::providers::ProviderKind::OpenAi);
        observe::passthrough_endpoint(&mut ctx, &http::Method::GET, "responses/resp_bg", &openai);
        let mut resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "text/event-stream")
            .unwrap();
        observe::answer_header(&mut ctx, &resp);
        let events = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Bonjour, tout le monde\"}\n\n";
        observe::answer_bytes(&mut ctx, Some(events), false);
        observe::answer_unfinished(&mut ctx);
        charged_output(store, ctx, true)
    }

    #[test]
    fn a_resumed_stream_left_is_charged_an_estimate_until_its_response_was_charged_whole() {
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        assert!(resumed_stream_left(&store).is_some_and(|out| out > 0));
        assert!(
            resumed_stream_left(&store).is_some(),
            "a part is not remembered"
        );
        assert_eq!(background_response(&store, true), Some(5));
        assert_eq!(resumed_stream_left(&store), None);
    }

    #[test]
    fn a_call_is_charged_what_it_got_whole_even_when_a_read_charged_it_before() {
        let store: Arc<dyn LimitStore> = Arc::new(crate::limits::MemoryStore::default());
        assert_eq!(background_response(&store, true), Some(5));
        assert_eq!(background_response(&store, true), None);
        // A call's answer is its own, whatever id it carries.
        assert_eq!(background_response(&store, false), Some(5));
        assert_eq!(background_response(&store, true), None);
    }
}
