//! Work a call starts apart from itself (a Responses API response run in the
//! background, an OpenAI batch) is answered "queued" without its usage; the usage
//! comes with whichever read finds the work ended, and is charged then. A client that
//! never reads it back (its output went elsewhere, through a remote tool, or it does
//! not care) would spend past its limits and budget without end. So the gateway polls
//! each such piece of work a counted caller started, with the provider key that
//! started it, until it ends, and charges its usage then, once: a client's read before
//! the poll makes the poll charge nothing, and one after is charged nothing.
//!
//! The watch list lives in this process: work started before a restart or an upgrade
//! is charged only when read. In Redis, every replica sees a charge made once.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::context::UpstreamTarget;
use super::limit_check::{charge_polled, StartedBy};
use super::provider_fetch::{fetch_each, provider_get};
use super::upstream::UpstreamResolver;
use crate::config::Config;
use crate::limits::LimitStore;
use crate::metrics::deferred_answer::{ApartKind, DeferredAnswer, StartedApart};
use crate::metrics::usage::{Charge, Usage, UsageMeter};
use crate::providers::{Provider, Secret};

/// The longest wait between two polls of one piece of work.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// How long work is polled before the gateway gives up on it: longer than a batch's
/// 24-hour window.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(48 * 3600);

/// The most pieces of work watched at once; past it, new work is charged only when
/// read (said once).
pub const MAX_WATCHED: usize = 100_000;

/// The most pieces of work one caller has watched at once: one caller filling the
/// list does not leave every other one's work unwatched.
pub const MAX_WATCHED_PER_CALLER: usize = 10_000;

/// Polls under way at once; one slow provider holds up only its own.
const POLLS_AT_ONCE: usize = 16;

/// How long one poll may take, its host's lookup included.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The headers a client scopes its provider key's work with (an OpenAI key may serve
/// several organizations and projects): sent again with every poll.
const SCOPE_HEADERS: [&str; 2] = ["openai-organization", "openai-project"];

/// What a poll learnt of the work.
#[derive(Debug, PartialEq)]
pub enum Polled {
    /// Still at work (or the provider could not say now): polled again.
    UnderWay,
    /// Ended: its usage, when it reported any, the model that answered, and for a
    /// batch's results of several models, each model's usage.
    Ended {
        charge: Option<Charge>,
        model: Option<String>,
        by_model: Vec<(String, Usage)>,
    },
    /// The provider does not have it for this key (deleted, or the key was revoked).
    Gone,
}

/// What the provider's answer to a poll says of the work: its `status`, its body
/// read into `meter` (a JSON meter: a large answer is read from its ends, never held
/// whole).
pub fn polled(status: u16, mut meter: UsageMeter) -> Polled {
    match status {
        200..=299 => {}
        // Worth asking again: a timeout, a conflict, a rate limit, a server error.
        408 | 409 | 429 | 500.. => return Polled::UnderWay,
        _ => return Polled::Gone,
    }
    let charge = meter.finish();
    let whole = charge.filter(|c| c.deferred.is_some_and(|d| d.read_whole()));
    match meter.work_ended() {
        Some(false) => Polled::UnderWay,
        // Ended by its status, or by its usage where it says no status.
        Some(true) => Polled::Ended {
            charge: whole,
            model: meter.take_model(),
            by_model: Vec::new(),
        },
        None if whole.is_some() => Polled::Ended {
            charge: whole,
            model: meter.take_model(),
            by_model: Vec::new(),
        },
        None => Polled::UnderWay,
    }
}

/// A meter for a poll's answer, read as JSON whatever its `Content-Type` says.
fn poll_meter() -> Option<UsageMeter> {
    UsageMeter::for_answer(Some("application/json"), None)
}

/// [`polled`] for an answer `body` at hand.
pub fn read_poll(status: u16, body: &[u8]) -> Polled {
    let Some(mut meter) = poll_meter() else {
        return Polled::UnderWay;
    };
    meter.feed(body);
    polled(status, meter)
}

/// Where the work a call to `call_path` (its path and query) started is read: the
/// collection it was made in (`…/responses`, `…/batches`, `…/messages/batches`), then
/// its id, with the call's query (an `api-version`, say). `None` when the call was
/// not made in the collection of its kind (a cancel, say).
pub fn poll_path(call_path: &str, started: &StartedApart) -> Option<String> {
    let call_path = call_path.split('#').next()?;
    let (path, query) = match call_path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (call_path, None),
    };
    let path = path.trim_end_matches('/');
    let (rest, last) = path.rsplit_once('/')?;
    let in_messages = rest.rsplit('/').next() == Some("messages");
    let made_here = match started.kind {
        ApartKind::Response => last == "responses",
        ApartKind::Batch => last == "batches" && !in_messages,
        ApartKind::MessageBatch => last == "batches" && in_messages,
    };
    let id = &started.id;
    made_here.then(|| match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{path}/{id}?{query}"),
        None => format!("{path}/{id}"),
    })
}

/// Work a call started, as the gateway watches it.
#[derive(Debug)]
pub struct Start {
    /// The work, by its id.
    pub started: StartedApart,
    /// Whom its usage is charged to.
    pub by: StartedBy,
    /// The client's [`SCOPE_HEADERS`], sent again with each poll.
    pub scope: Vec<(HeaderName, HeaderValue)>,
    /// What the call that started it was charged of it already (the estimate of a
    /// stream the client left): charged less when it ends.
    pub charged: Usage,
}

/// One piece of work watched.
struct Watched {
    start: Start,
    provider: Arc<Provider>,
    path: String,
    key: Option<Secret>,
    until: Instant,
    /// The wait before the next poll, doubled after each.
    wait: Duration,
}

/// A piece of work and when it is polled next, the earliest first.
struct Due {
    at: Instant,
    seq: u64,
    watched: Box<Watched>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: the heap's top is the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The work started apart from its calls that the gateway polls for its usage.
#[derive(Clone)]
pub struct DeferredPoll {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    seq: AtomicU64,
    wake: Notify,
    // Built with the poll, at startup: building it reads the system trust store.
    connector: Connector,
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Due>,
    /// How many pieces of work each caller ([`caller_bucket`]) has watched, being
    /// polled or not.
    per_caller: HashMap<String, usize>,
    /// The background responses watched, by id: how many (waiting or being polled),
    /// so that a delete finds out whether it names one without a search.
    responses: HashMap<String, usize>,
    /// The background responses being polled now, by id.
    polling: HashMap<String, usize>,
}

impl State {
    fn count(map: &mut HashMap<String, usize>, id: &str, up: bool) {
        if up {
            *map.entry(id.to_string()).or_default() += 1;
        } else if let Some(n) = map.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                map.remove(id);
            }
        }
    }

    /// `watched` is settled (charged, gone or given up): its caller's share is freed.
    fn settled(&mut self, watched: &Watched) {
        let bucket = caller_bucket(&watched.start.by.caller);
        Self::count(&mut self.per_caller, &bucket, false);
        if watched.start.started.kind == ApartKind::Response {
            Self::count(&mut self.responses, &watched.start.started.id, false);
        }
    }

    /// Counts `watched` as being polled (`up`) or no longer.
    fn polling(&mut self, watched: &Watched, up: bool) {
        if watched.start.started.kind == ApartKind::Response {
            Self::count(&mut self.polling, &watched.start.started.id, up);
        }
    }
}

/// What a delete finds of the response it names.
enum Named {
    /// Not watched (or not its caller's at its provider).
    Unwatched,
    /// Being polled right now.
    Polling,
    /// Taken out of the list, to be polled now.
    Taken(Vec<Watched>),
}

/// The share of the list a caller's work counts against.
fn caller_bucket(caller: &crate::auth::Caller) -> String {
    match caller {
        crate::auth::Caller::Managed(name) => format!("key:{name}"),
        crate::auth::Caller::Master => "master".into(),
        crate::auth::Caller::Open => "open".into(),
    }
}

impl DeferredPoll {
    /// An empty watch list.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                seq: AtomicU64::new(0),
                wake: Notify::new(),
                connector: Connector::new(None),
            }),
        }
    }

    /// How many pieces of work wait for their next poll.
    pub fn len(&self) -> usize {
        self.inner.state.lock().map_or(0, |s| s.due.len())
    }

    /// Whether nothing waits for a poll.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watches the work a call started apart from itself and its charge left
    /// uncharged (see [`super::observe::started_uncharged`]), when the call counts
    /// for token limits, budgets or a usage report and the config polls such work.
    /// `client` is the call's request header, whose scope the polls keep.
    pub fn watch_call(
        &self,
        ctx: &mut super::RequestContext,
        client: &http::HeaderMap,
        read: bool,
    ) {
        let Some((started, charged)) = super::observe::started_uncharged(ctx, read) else {
            return;
        };
        let (Some(config), Some(target), Some(caller)) = (
            ctx.config.as_deref(),
            ctx.upstream.as_ref(),
            ctx.caller.as_ref(),
        ) else {
            return;
        };
        let Some(first) = config.limits.poll_background else {
            return;
        };
        let by = StartedBy {
            caller: caller.clone(),
            provider: Arc::from(target.provider.name.as_str()),
        };
        if !by.is_counted(config) {
            return;
        }
        let scope = SCOPE_HEADERS
            .iter()
            .filter_map(|name| {
                let value = client.get(*name)?;
                Some((HeaderName::from_static(name), value.clone()))
            })
            .collect();
        let start = Start {
            started,
            by,
            scope,
            charged,
        };
        self.watch(start, target, first);
    }

    /// Watches `start`, made by a call to `target`, first polled after `first`.
    /// Whether it is watched: not when it cannot be read back where it was made, or
    /// when the list (or the caller's share of it) is full.
    pub fn watch(&self, start: Start, target: &UpstreamTarget, first: Duration) -> bool {
        let Some(path) = poll_path(&target.path_and_query, &start.started) else {
            return false;
        };
        let now = Instant::now();
        let first = first.min(MAX_POLL_INTERVAL);
        let caller = caller_bucket(&start.by.caller);
        let watched = Watched {
            start,
            provider: Arc::clone(&target.provider),
            path,
            key: target.credential.key.clone(),
            until: now + GIVE_UP_AFTER,
            wait: first,
        };
        let Ok(mut state) = self.inner.state.lock() else {
            return false;
        };
        let total: usize = state.per_caller.values().sum();
        let own = state.per_caller.get(&caller).copied().unwrap_or(0);
        if total >= MAX_WATCHED || own >= MAX_WATCHED_PER_CALLER {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                log::warn!(
                    "as many background responses and batches as are polled at once: \
                     more are charged only when read ({MAX_WATCHED} in all, \
                     {MAX_WATCHED_PER_CALLER} per gateway key)"
                )
            });
            return false;
        }
        *state.per_caller.entry(caller).or_default() += 1;
        if watched.start.started.kind == ApartKind::Response {
            State::count(&mut state.responses, &watched.start.started.id, true);
        }
        self.push(&mut state, now + first, watched);
        drop(state);
        self.inner.wake.notify_one();
        true
    }

    fn push(&self, state: &mut State, at: Instant, watched: Watched) {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        state.due.push(Due {
            at,
            seq,
            watched: Box::new(watched),
        });
    }

    /// The work is settled (charged, gone or given up): its caller's share is freed.
    #[cfg(test)]
    fn settled(&self, watched: &Watched) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.settled(watched);
        }
    }

    /// When the next poll is due.
    fn next_at(&self) -> Option<Instant> {
        self.inner.state.lock().ok()?.due.peek().map(|d| d.at)
    }

    /// The work due at `now`, at most `most` of it, out of the list.
    fn take_due(&self, now: Instant, most: usize) -> Vec<Watched> {
        let Ok(mut state) = self.inner.state.lock() else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while taken.len() < most && state.due.peek().is_some_and(|d| d.at <= now) {
            if let Some(d) = state.due.pop() {
                state.polling(&d.watched, true);
                taken.push(*d.watched);
            }
        }
        taken
    }

    /// Takes the background response `id` that `by` started out of the list, to be
    /// polled now.
    fn take_response(&self, id: &str, by: &StartedBy) -> Named {
        let Ok(mut state) = self.inner.state.lock() else {
            return Named::Unwatched;
        };
        if !state.responses.contains_key(id) {
            return Named::Unwatched;
        }
        if state.polling.contains_key(id) {
            return Named::Polling;
        }
        let all = std::mem::take(&mut state.due).into_vec();
        let (found, rest): (Vec<Due>, Vec<Due>) = all.into_iter().partition(|d| {
            let start = &d.watched.start;
            start.started.kind == ApartKind::Response
                && start.started.id == id
                && start.by.caller == by.caller
                && start.by.provider == by.provider
        });
        state.due = rest.into();
        let found: Vec<Watched> = found.into_iter().map(|d| *d.watched).collect();
        for watched in &found {
            state.polling(watched, true);
        }
        Named::Taken(found)
    }

    /// A call by `by` deletes the background response `id`: when `by` started it and
    /// it is watched, it is polled now, before the delete goes on, and charged if it
    /// has ended (a deleted response can no longer be read, and would escape its
    /// charge). A poll under way is waited for. The poll runs on its own task: it
    /// ends, and the work stays counted, even if the delete's client leaves.
    pub async fn poll_before_delete(
        &self,
        id: &str,
        by: &StartedBy,
        config: Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
    ) {
        let until = Instant::now() + POLL_TIMEOUT;
        let taken = loop {
            match self.take_response(id, by) {
                Named::Unwatched => return,
                Named::Taken(taken) => break taken,
                Named::Polling if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Named::Polling => return,
            }
        };
        for watched in taken {
            let (poll, config) = (self.clone(), Arc::clone(&config));
            let (resolver, store) = (resolver.clone(), Arc::clone(store));
            let polled = tokio::spawn(async move {
                poll.poll(watched, config, &resolver, &store).await;
            });
            if let Err(e) = polled.await {
                log::warn!("polling a response before its delete: {e}");
            }
        }
    }

    /// Polls what is due, as it comes due, with `config`'s config, until `stop` ends:
    /// up to [`POLLS_AT_ONCE`] at once, each started as soon as there is room.
    pub async fn run(
        &self,
        config: impl Fn() -> Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut polls = FuturesUnordered::new();
        loop {
            let room = POLLS_AT_ONCE.saturating_sub(polls.len());
            let due = self.take_due(Instant::now(), room);
            if !due.is_empty() {
                let config = config();
                for watched in due {
                    polls.push(self.poll(watched, Arc::clone(&config), resolver, store));
                }
            }
            let next = (polls.len() < POLLS_AT_ONCE)
                .then(|| self.next_at())
                .flatten();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                Some(()) = polls.next(), if !polls.is_empty() => {}
                _ = self.inner.wake.notified() => {}
                _ = &mut stop => return,
            }
        }
    }

    /// Polls one piece of work: charged once ended, else watched again.
    async fn poll(
        &self,
        mut watched: Watched,
        config: Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
    ) {
        let polled = match tokio::time::timeout(POLL_TIMEOUT, self.ask(&watched, resolver)).await {
            Ok(polled) => polled,
            Err(_) => Err(format!("no answer within {POLL_TIMEOUT:?}")),
        };
        let started = &watched.start.started;
        let settled = match polled {
            Ok(Polled::UnderWay) => false,
            Ok(Polled::Gone) => {
                log::warn!(
                    "{} `{}` at `{}` cannot be read with the key that started it: \
                     its usage is not charged",
                    kind(started),
                    started.id,
                    watched.provider.name
                );
                true
            }
            Ok(Polled::Ended {
                charge,
                model,
                by_model,
            }) => {
                let ended = Ended {
                    charge,
                    model,
                    by_model,
                };
                charge_ended(store, &config, &watched.start, ended).await
            }
            Err(why) => {
                log::debug!(
                    "polling {} `{}` at `{}`: {why}",
                    kind(started),
                    started.id,
                    watched.provider.name
                );
                false
            }
        };
        watched.wait = watched.wait.saturating_mul(2).min(MAX_POLL_INTERVAL);
        let at = Instant::now() + watched.wait;
        let given_up = !settled && at > watched.until;
        if given_up {
            log::warn!(
                "{} `{}` at `{}` did not end within {}h: its usage is charged only if read",
                kind(&watched.start.started),
                watched.start.started.id,
                watched.provider.name,
                GIVE_UP_AFTER.as_secs() / 3600
            );
        }
        // No longer polled, and settled or back in the list, in one step: a delete
        // never finds it in neither.
        let Ok(mut state) = self.inner.state.lock() else {
            return;
        };
        state.polling(&watched, false);
        if settled || given_up {
            state.settled(&watched);
        } else {
            self.push(&mut state, at, watched);
        }
    }

    /// Asks the provider for the work; its answer is read as it comes, never held
    /// whole.
    async fn ask(&self, watched: &Watched, resolver: &UpstreamResolver) -> Result<Polled, String> {
        let addr = resolver
            .resolve_base(&watched.provider.base, 0)
            .await
            .map_err(|e| e.message.to_string())?;
        let meter = poll_meter().ok_or("no meter for JSON")?;
        let (status, meter) = self.read(watched, addr, &watched.path, meter).await?;
        let polled = polled(status, meter);
        match (&polled, watched.start.started.kind) {
            (Polled::Ended { .. }, ApartKind::MessageBatch) => {
                self.read_results(watched, addr).await
            }
            _ => Ok(polled),
        }
    }

    /// An Anthropic message batch has ended: its results, a line per request, say
    /// what it used (read as they come, never held whole).
    async fn read_results(&self, watched: &Watched, addr: SocketAddr) -> Result<Polled, String> {
        let results = DeferredAnswer::message_batch_results(&watched.start.started.id);
        let meter = UsageMeter::for_batch_results(results, None).ok_or("no meter for results")?;
        let path = format!("{}/results", watched.path);
        let (status, mut meter) = self.read(watched, addr, &path, meter).await?;
        if !(200..300).contains(&status) {
            // Ended, its results not there yet: asked again.
            return Ok(Polled::UnderWay);
        }
        let charge = meter.finish();
        Ok(Polled::Ended {
            charge,
            model: meter.take_model(),
            by_model: meter.take_usage_by_model(),
        })
    }

    /// `GET path` at the work's provider, with the key and scope that started it: the
    /// answer's status, its body read into `meter`.
    async fn read(
        &self,
        watched: &Watched,
        addr: SocketAddr,
        path: &str,
        mut meter: UsageMeter,
    ) -> Result<(u16, UsageMeter), String> {
        let provider = &*watched.provider;
        let (key, scope) = (watched.key.as_ref(), &watched.start.scope);
        let request = provider_get(provider, path, key, scope)
            .map_err(|e| format!("cannot build request: {e}"))?;
        let status = fetch_each(&self.inner.connector, provider, addr, request, |piece| {
            meter.feed(piece);
            Ok(())
        })
        .await?;
        Ok((status, meter))
    }
}

impl Default for DeferredPoll {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DeferredPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredPoll")
            .field("waiting", &self.len())
            .finish()
    }
}

/// What a poll read of work that has ended.
struct Ended {
    charge: Option<Charge>,
    model: Option<String>,
    by_model: Vec<(String, Usage)>,
}

/// Charges work `start` found ended, once, by the first to read it (this poll, or any
/// request): whether it is settled (`false` when the store could not say, and the
/// work is asked for again).
async fn charge_ended(
    store: &Arc<dyn LimitStore>,
    config: &Arc<Config>,
    start: &Start,
    ended: Ended,
) -> bool {
    let Some((charge, answer)) = ended.charge.zip(ended.charge.and_then(|c| c.deferred)) else {
        return true;
    };
    let first = tokio::time::timeout(POLL_TIMEOUT, store.first_charge(answer.key(), unix_now()));
    match first.await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return true,
        Ok(Err(e)) => {
            log::warn!("{e}; a background response or batch is charged later");
            return false;
        }
        Err(_) => return false,
    }
    let (by, batch) = (&start.by, answer.is_batch());
    let model = ended.model.as_deref();
    if ended.by_model.len() > 1 {
        // Results of several models: each at its own price (a line naming none, at
        // the first's).
        for (named, usage) in &ended.by_model {
            let part = Some(named.as_str()).filter(|m| !m.is_empty()).or(model);
            charge_polled(store, config, by, usage, part, batch);
        }
        return true;
    }
    let usage = charge.usage.less(&start.charged);
    if usage != Usage::default() {
        charge_polled(store, config, by, &usage, model, batch);
    }
    true
}

fn kind(started: &StartedApart) -> &'static str {
    match started.kind {
        ApartKind::Response => "background response",
        ApartKind::Batch => "batch",
        ApartKind::MessageBatch => "message batch",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: &str, kind: ApartKind) -> StartedApart {
        StartedApart {
            id: id.into(),
            kind,
        }
    }

    #[test]
    fn work_is_read_back_in_the_collection_it_was_made_in() {
        let response = started("resp_1", ApartKind::Response);
        let batch = started("batch_1", ApartKind::Batch);
        let message_batch = started("msgbatch_1", ApartKind::MessageBatch);
        assert_eq!(
            poll_path("/v1/responses", &response).as_deref(),
            Some("/v1/responses/resp_1")
        );
        assert_eq!(
            poll_path("/openai/v1/responses/?api-version=1", &response).as_deref(),
            Some("/openai/v1/responses/resp_1?api-version=1")
        );
        assert_eq!(
            poll_path("/v1/batches", &batch).as_deref(),
            Some("/v1/batches/batch_1")
        );
        // A cancel answers the response too; it was not made there.
        assert_eq!(poll_path("/v1/responses/resp_1/cancel", &response), None);
        assert_eq!(poll_path("/v1/responses", &batch), None);
        assert_eq!(
            poll_path("/v1/messages/batches", &message_batch).as_deref(),
            Some("/v1/messages/batches/msgbatch_1")
        );
        assert_eq!(poll_path("/v1/messages/batches", &batch), None);
        assert_eq!(poll_path("/v1/batches", &message_batch), None);
        assert_eq!(poll_path("responses", &response), None);
    }

    /// A background response as OpenAI answers it, in `status`, with 17 input and 5
    /// output tokens once it has ended.
    fn response(status: &str) -> String {
        let usage = if status == "queued" || status == "in_progress" {
            "null".to_string()
        } else {
            r#"{"input_tokens":17,"output_tokens":5,"total_tokens":22}"#.to_string()
        };
        format!(
            r#"{{"id":"resp_1","object":"response","status":"{status}","background":true,"model":"gpt-4o-mini-2024-07-18","output":[],"usage":{usage}}}"#
        )
    }

    #[test]
    fn a_poll_tells_work_under_way_from_work_ended_and_gone() {
        for status in ["queued", "in_progress"] {
            assert_eq!(
                read_poll(200, response(status).as_bytes()),
                Polled::UnderWay
            );
        }
        let Polled::Ended { charge, model, .. } = read_poll(200, response("completed").as_bytes())
        else {
            panic!("ended");
        };
        let charge = charge.unwrap();
        assert_eq!((charge.usage.input, charge.usage.output), (17, 5));
        assert!(charge.deferred.unwrap().read_whole());
        assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        // Cancelled before it used anything: ended, nothing to charge.
        let cancelled = response("cancelled").replace(
            r#"{"input_tokens":17,"output_tokens":5,"total_tokens":22}"#,
            "null",
        );
        assert!(matches!(
            read_poll(200, cancelled.as_bytes()),
            Polled::Ended { charge: None, .. }
        ));
        for status in [404, 401, 403, 410] {
            assert_eq!(read_poll(status, b"{}"), Polled::Gone, "{status}");
        }
        for status in [429, 500, 503, 408] {
            assert_eq!(read_poll(status, b"{}"), Polled::UnderWay, "{status}");
        }
        assert_eq!(read_poll(200, b"not json"), Polled::UnderWay);
    }

    #[test]
    fn a_batch_is_ended_by_its_status() {
        let batch = |status: &str| {
            format!(
                r#"{{"id":"batch_1","object":"batch","model":"gpt-4o-mini","status":"{status}","output_file_id":"file-out","usage":{{"input_tokens":1000,"output_tokens":200,"total_tokens":1200}}}}"#
            )
        };
        assert_eq!(
            read_poll(200, batch("in_progress").as_bytes()),
            Polled::UnderWay
        );
        let Polled::Ended { charge, .. } = read_poll(200, batch("completed").as_bytes()) else {
            panic!("ended");
        };
        let charge = charge.unwrap();
        assert_eq!(charge.usage.output, 200);
        assert!(charge.deferred.unwrap().is_batch());
    }

    fn start(id: &str, batch: bool, caller: &str) -> Start {
        let kind = if batch {
            ApartKind::Batch
        } else {
            ApartKind::Response
        };
        Start {
            started: started(id, kind),
            by: StartedBy {
                caller: crate::auth::Caller::Managed(caller.into()),
                provider: "openai".into(),
            },
            scope: Vec::new(),
            charged: Usage::default(),
        }
    }

    fn target() -> UpstreamTarget {
        let provider = Arc::new(Provider::unconfigured(
            crate::providers::ProviderKind::OpenAi,
        ));
        UpstreamTarget::new(provider, "/v1/responses".into(), Default::default())
    }

    #[tokio::test]
    async fn work_comes_due_earliest_first() {
        let poll = DeferredPoll::new();
        let target = target();
        let later = Duration::from_secs(60);
        assert!(poll.watch(start("resp_late", false, "a"), &target, later));
        assert!(poll.watch(start("resp_now", false, "a"), &target, Duration::ZERO));
        // Not made in the collection of its kind: nowhere to read it back.
        assert!(!poll.watch(start("batch_1", true, "a"), &target, Duration::ZERO));
        assert_eq!(poll.len(), 2);
        let due = poll.take_due(Instant::now(), 8);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].path, "/v1/responses/resp_now");
        assert!(poll.next_at().is_some_and(|at| at > Instant::now()));
        // A delete by another caller, or at another provider, takes nothing.
        let by = |caller: &str, provider: &str| StartedBy {
            caller: crate::auth::Caller::Managed(caller.into()),
            provider: provider.into(),
        };
        for other in [by("b", "openai"), by("a", "openai-eu")] {
            assert!(
                matches!(poll.take_response("resp_late", &other), Named::Taken(t) if t.is_empty())
            );
        }
        // One being polled is waited for.
        assert!(matches!(
            poll.take_response("resp_now", &by("a", "openai")),
            Named::Polling
        ));
        // Its caller's delete takes the response out of the list, to be polled at once.
        let Named::Taken(taken) = poll.take_response("resp_late", &by("a", "openai")) else {
            panic!("taken");
        };
        assert_eq!(taken.len(), 1);
        assert!(poll.is_empty());
        assert!(matches!(
            poll.take_response("resp_late", &by("a", "openai")),
            Named::Polling
        ));
    }

    #[tokio::test]
    async fn one_caller_filling_its_share_leaves_room_for_the_others() {
        let poll = DeferredPoll::new();
        let target = target();
        let later = Duration::from_secs(60);
        for i in 0..MAX_WATCHED_PER_CALLER {
            assert!(poll.watch(start(&format!("resp_{i}"), false, "busy"), &target, later));
        }
        assert!(!poll.watch(start("resp_more", false, "busy"), &target, later));
        assert!(poll.watch(start("resp_other", false, "quiet"), &target, later));
        // Work settled frees its caller's share.
        let by = StartedBy {
            caller: crate::auth::Caller::Managed("busy".into()),
            provider: "openai".into(),
        };
        let Named::Taken(taken) = poll.take_response("resp_0", &by) else {
            panic!("taken");
        };
        poll.settled(&taken[0]);
        assert!(poll.watch(start("resp_more", false, "busy"), &target, later));
    }
}
