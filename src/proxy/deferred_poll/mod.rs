//! Work a call starts apart from itself (a Responses API response run in the
//! background, an OpenAI batch, an Anthropic message batch) is answered "queued"
//! without its usage; the usage comes with whichever read finds the work ended, and
//! is charged then. A client that never reads it back (its output went elsewhere,
//! through a remote tool, or it does not care) would spend past its limits and budget
//! without end. So the gateway polls each such piece of work a counted caller
//! started, with the provider key that started it, until it ends, and charges its
//! usage then, once: a client's read before the poll makes the poll charge nothing,
//! and one after is charged nothing.
//!
//! The watch list lives in this process: work started before a restart or an upgrade
//! is charged only when read. In Redis, every replica sees a charge made once.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

mod shared_record;
mod sharing;
mod watch_list;

use super::context::UpstreamTarget;
use super::limit_check::{charge_polled, StartedBy};
use super::provider_fetch::{fetch_each, provider_get};
use super::upstream::UpstreamResolver;
use crate::config::Config;
use crate::limits::LimitStore;
use crate::metrics::deferred_answer::{ApartKind, DeferredAnswer, StartedApart};
use crate::metrics::usage::{Charge, Usage, UsageMeter};
#[cfg(test)]
use crate::providers::Provider;
use crate::providers::{ProviderCredential, Secret};
use shared_record::shared_name;
use sharing::{Shared, SHARE_EVERY};
use watch_list::{Named, WatchList, Watched};
pub use watch_list::{MAX_WATCHED, MAX_WATCHED_PER_CALLER};

/// The longest wait between two polls of one piece of work.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// How long work is polled before the gateway gives up on it: longer than a batch's
/// 24-hour window.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(48 * 3600);

/// Polls under way at once, each started as soon as one ends (a delete's own poll
/// aside).
const POLLS_AT_ONCE: usize = 16;

/// How long one poll may take, its host's lookup included.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest one read of a Gemini batch's operation may take, its inlined responses
/// coming at least every [`RESULTS_IDLE`].
const LARGE_POLL_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an ended message batch's results may go without a byte: a file of many
/// lines takes as long as it takes, as long as it comes.
const RESULTS_IDLE: Duration = Duration::from_secs(30);

/// The most keys configured now that work refused its rotated-out key is tried with.
const ROTATED_KEYS_TRIED: usize = 4;

/// How long a delete waits for a poll of its work already under way before it is
/// refused (503, to be sent again).
const DELETE_WAITS: Duration = Duration::from_secs(10);

/// The headers a client scopes its own provider key's work with (an OpenAI key may
/// serve several organizations and projects): sent again with every poll. The
/// gateway's own key goes without them ([`super::headers::KeyScope::Gateways`]).
const SCOPE_HEADERS: [&str; 2] = super::headers::KEY_SCOPE;

/// Why a delete of watched work is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRefused {
    /// Its usage could not be read yet (the provider did not say, the store failed,
    /// a poll of it went on too long): to be sent again.
    Undecided,
    /// A Gemini batch still at work, which its delete would not stop (Google goes on
    /// with it, and bills it) and whose usage could then never be read: to be
    /// cancelled first.
    StillAtWork,
}

/// How a poll of one piece of work left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollOutcome {
    /// Charged, or let go.
    Settled,
    /// Still at work: watched again.
    AtWork,
    /// The provider did not say, or the store failed: watched again.
    Undecided,
}

/// What a poll learnt of the work.
#[derive(Debug, PartialEq)]
pub enum Polled {
    /// Still at work: polled again.
    UnderWay,
    /// The provider could not say now (a timeout, a conflict, a rate limit, a server
    /// error, results not there yet): polled again.
    Unanswered,
    /// Ended: its usage, when it reported any, the model that answered, and for a
    /// batch's results of several models, each model's usage.
    Ended {
        charge: Option<Charge>,
        model: Option<String>,
        by_model: Vec<(String, Usage)>,
    },
    /// The provider does not have it for this key (deleted, or the key was revoked).
    Gone,
    /// The provider refused the key (401, 403): revoked, or rotated out.
    Refused,
    /// Ended without saying what it used: its output file (an OpenAI batch's, by its
    /// id) says it, a line per request.
    OutputToRead(String),
    /// Ended, and charged already by a client's read of its output.
    Charged,
}

/// What the provider's answer to a poll says of the work: its `status`, its body
/// read into `meter` (a JSON meter: a large answer is read from its ends, never held
/// whole).
pub fn polled(status: u16, mut meter: UsageMeter) -> Polled {
    match status {
        200..=299 => {}
        // Worth asking again: a timeout, a conflict, a rate limit, a server error.
        408 | 409 | 429 | 500.. => return Polled::Unanswered,
        401 | 403 => return Polled::Refused,
        _ => return Polled::Gone,
    }
    let charge = meter.finish();
    let whole = charge.filter(|c| c.deferred.is_some_and(|d| d.read_whole()));
    match meter.work_ended() {
        Some(false) => Polled::UnderWay,
        // Ended by its status, or by its usage where it says no status.
        Some(true) => match (whole, meter.take_output_file()) {
            (None, Some(file)) => Polled::OutputToRead(file),
            // A Gemini batch's inlined responses, of their models.
            (charge, _) => Polled::Ended {
                charge,
                model: meter.take_model(),
                by_model: meter.take_usage_by_model(),
            },
        },
        None if whole.is_some() => Polled::Ended {
            charge: whole,
            model: meter.take_model(),
            by_model: Vec::new(),
        },
        None => Polled::Unanswered,
    }
}

/// A meter for a poll's answer, read as JSON whatever its `Content-Type` says.
fn poll_meter() -> Option<UsageMeter> {
    UsageMeter::for_answer(Some("application/json"), None)
}

/// Where the work a call to `call_path` (its path and query) started is read: the
/// collection it was made in (`…/responses`, `…/batches`, `…/messages/batches`), then
/// its id; a Gemini batch made by `…/models/{model}:batchGenerateContent` at
/// `…/batches/{id}`; and the call's query (an `api-version`, say), sent with every
/// read. `None` when the call was not made in the collection of its kind (a cancel,
/// say).
pub fn poll_path(call_path: &str, started: &StartedApart) -> Option<(String, Option<String>)> {
    let call_path = call_path.split('#').next()?;
    let (path, query) = match call_path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (call_path, None),
    };
    let path = path.trim_end_matches('/');
    let (rest, last) = path.rsplit_once('/')?;
    let query = query.filter(|q| !q.is_empty()).map(str::to_string);
    if started.kind == ApartKind::GeminiBatch {
        // Read without the call's query: Google's are system parameters (`alt`),
        // none of them the batch's.
        let made = last.ends_with(":batchGenerateContent");
        let versioned = rest.strip_suffix("/models").filter(|_| made)?;
        return Some((format!("{versioned}/batches/{}", started.id), None));
    }
    let in_messages = rest.rsplit('/').next() == Some("messages");
    let made_here = match started.kind {
        ApartKind::Response => last == "responses",
        ApartKind::Batch => last == "batches" && !in_messages,
        ApartKind::MessageBatch => last == "batches" && in_messages,
        ApartKind::GeminiBatch => false,
    };
    made_here.then(|| (format!("{path}/{}", started.id), query))
}

/// The work a `DELETE` of `endpoint` (a provider's path, after its base) removes, when
/// it removes any the poll may watch: a response (`…/responses/{id}`), an Anthropic
/// message batch (`…/messages/batches/{id}`, whose results go with it) or, at a
/// Gemini provider (`gemini`), a Gemini batch (`…/batches/{id}`), under any prefix, as
/// [`poll_path`] watches it. Empty segments are skipped, and a `;`
/// parameter dropped, as servers read them.
pub fn deleted_work(endpoint: &str, gemini: bool) -> Option<(ApartKind, &str)> {
    let mut segments = endpoint.rsplit('/').filter(|s| !s.is_empty());
    let id = segments.next()?.split(';').next()?;
    let kind = match (segments.next()?, segments.next()) {
        ("responses", _) => ApartKind::Response,
        ("batches", Some("messages")) => ApartKind::MessageBatch,
        ("batches", _) if gemini => ApartKind::GeminiBatch,
        _ => return None,
    };
    (!id.is_empty()).then_some((kind, id))
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

#[cfg(test)]
impl Start {
    /// `id` of `kind`, started by the managed key `caller` at `openai`.
    fn test(id: &str, kind: ApartKind, caller: &str) -> Self {
        Start {
            started: StartedApart {
                id: id.into(),
                kind,
            },
            by: StartedBy {
                caller: crate::auth::Caller::Managed(caller.into()),
                provider: "openai".into(),
                brought_key: false,
            },
            scope: Vec::new(),
            charged: Usage::default(),
        }
    }

    /// This work as watched at `path`, with `query`.
    fn watched_at(self, path: &str, query: Option<&str>) -> Watched {
        let provider = Provider::unconfigured(crate::providers::ProviderKind::OpenAi);
        Watched {
            start: self,
            provider: Arc::new(provider),
            path: path.into(),
            query: query.map(str::to_string),
            key: None,
            until: Instant::now() + GIVE_UP_AFTER,
            wait: Duration::from_secs(1),
        }
    }
}

/// The work started apart from its calls that the gateway polls for its usage.
#[derive(Clone)]
pub struct DeferredPoll {
    inner: Arc<Inner>,
}

struct Inner {
    list: Mutex<WatchList>,
    wake: Notify,
    /// The poll has stopped (the server shuts down).
    stopped: AtomicBool,
    // Built with the poll, at startup: building it reads the system trust store.
    connector: Connector,
    /// This replica's name among those sharing their work.
    me: String,
    /// The store the work is shared in, when it shares any (Redis), once the poll runs.
    shared: OnceLock<Arc<dyn LimitStore>>,
    /// What the store is told, in order, by one writer.
    changes: OnceLock<mpsc::Sender<Shared>>,
}

impl DeferredPoll {
    /// An empty watch list.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                list: Mutex::default(),
                wake: Notify::new(),
                stopped: AtomicBool::new(false),
                connector: Connector::new(None),
                me: uuid::Uuid::new_v4().simple().to_string(),
                shared: OnceLock::new(),
                changes: OnceLock::new(),
            }),
        }
    }

    /// The list; a poisoned lock is taken as it is (the list stays consistent at
    /// every step).
    fn list(&self) -> MutexGuard<'_, WatchList> {
        self.inner
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many pieces of work wait for their next poll.
    pub fn len(&self) -> usize {
        self.list().len()
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
            brought_key: target.credential.caller_key_label.is_some(),
        };
        if !by.is_counted(config) {
            return;
        }
        let scope = SCOPE_HEADERS
            .iter()
            .filter(|_| by.brought_key)
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
        let Some((path, query)) = poll_path(&target.path_and_query, &start.started) else {
            return false;
        };
        let now = Instant::now();
        let watched = Watched {
            start,
            provider: Arc::clone(&target.provider),
            path,
            query,
            key: target.credential.key.clone(),
            until: now + GIVE_UP_AFTER,
            wait: first,
        };
        let shared = self.shared_record(&watched, now, first);
        if !self.list().add(watched, now + first) {
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
        self.inner.wake.notify_one();
        if let Some(shared) = shared {
            self.tell(shared);
        }
        true
    }

    /// A call deletes the work `kind` `id` (a response, an Anthropic message batch, a
    /// Gemini batch): when it is watched, it is polled now, before the delete goes on,
    /// and charged to whoever started it if it has ended (deleted, it can no longer be
    /// read, and would escape its charge). `Err` when that could not be decided (the
    /// provider did not say, the store failed, or a poll of it under way went on too
    /// long), or when it is a Gemini batch still at work: the delete is refused. The
    /// polls run on a task of their own: they end, and the work stays counted, even if
    /// the delete's client leaves.
    pub async fn poll_before_delete(
        &self,
        kind: ApartKind,
        id: &str,
        config: Arc<Config>,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
    ) -> Result<(), DeleteRefused> {
        let until = Instant::now() + DELETE_WAITS;
        let taken = loop {
            if self.inner.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            let named = self.list().take_named(kind, id);
            match named {
                Named::Unwatched => {
                    // Watched by another replica: polled here too, as this one's own.
                    let elsewhere = self.watched_elsewhere(kind, id, &config).await;
                    let elsewhere = elsewhere.map_err(|()| DeleteRefused::Undecided)?;
                    let Some(watched) = elsewhere else {
                        return Ok(());
                    };
                    if !self.list().add(watched, until) {
                        return Ok(());
                    }
                }
                Named::Taken(taken) => break taken,
                Named::Polling if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Named::Polling => return Err(DeleteRefused::Undecided),
            }
        };
        let (poll, resolver, store) = (self.clone(), resolver.clone(), Arc::clone(store));
        let polled = tokio::spawn(async move {
            let mut refused = None;
            for watched in taken {
                let config = Arc::clone(&config);
                let kind = watched.start.started.kind;
                match poll.poll(watched, config, &resolver, &store).await {
                    PollOutcome::Settled => {}
                    PollOutcome::AtWork if kind == ApartKind::GeminiBatch => {
                        refused = refused.or(Some(DeleteRefused::StillAtWork));
                    }
                    PollOutcome::AtWork => {}
                    PollOutcome::Undecided => refused = Some(DeleteRefused::Undecided),
                }
            }
            refused
        });
        match polled.await {
            Ok(None) => Ok(()),
            Ok(Some(refused)) => Err(refused),
            Err(e) => {
                log::warn!("polling work before its delete: {e}");
                Err(DeleteRefused::Undecided)
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
        self.start_sharing(store);
        let mut share = tokio::time::interval(SHARE_EVERY);
        share.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(metrics) = crate::metrics::metrics() {
                metrics.background_watched(self.list().watched());
            }
            let room = POLLS_AT_ONCE.saturating_sub(polls.len());
            let due = self.list().take_due(Instant::now(), room);
            if !due.is_empty() {
                let config = config();
                for watched in due {
                    let poll = self.poll(watched, Arc::clone(&config), resolver, store);
                    // A poll that panicked loses its work, not the poll of the rest.
                    polls.push(AssertUnwindSafe(poll).catch_unwind());
                }
            }
            let next = (polls.len() < POLLS_AT_ONCE)
                .then(|| self.list().next_at())
                .flatten();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                Some(polled) = polls.next(), if !polls.is_empty() => {
                    if polled.is_err() {
                        log::error!("a poll of background work failed; its work is not charged");
                    }
                }
                _ = self.inner.wake.notified() => {}
                _ = share.tick(), if self.inner.shared.get().is_some() => {
                    let (poll, config) = (self.clone(), config());
                    tokio::spawn(async move { poll.take_over(&config).await });
                }
                _ = &mut stop => {
                    // Polls dropped here leave their work counted as being polled:
                    // deletes no longer wait for any.
                    self.inner.stopped.store(true, Ordering::Relaxed);
                    self.stop_sharing().await;
                    return;
                }
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
    ) -> PollOutcome {
        let mut polled = self.ask(&watched, resolver, store).await;
        if matches!(polled, Ok(Polled::Refused)) {
            // The key that started it was rotated out since: the provider may read it
            // with a key the config holds now (the same project's).
            for key in rotated_in(&config, &watched) {
                watched.key = Some(key);
                polled = self.ask(&watched, resolver, store).await;
                if !matches!(polled, Ok(Polled::Refused | Polled::Gone)) {
                    break;
                }
            }
        }
        let started = &watched.start.started;
        let mut decided = true;
        let settled = match polled {
            Ok(Polled::UnderWay) => false,
            Ok(Polled::Charged) => true,
            Ok(Polled::Unanswered) => {
                decided = false;
                false
            }
            Ok(Polled::Gone | Polled::Refused) => {
                log::warn!(
                    "{} `{}` at `{}` cannot be read with the key that started it (nor \
                     one configured now, when that key was rotated out): its usage is not \
                     charged",
                    kind(started),
                    started.id,
                    watched.provider.name
                );
                true
            }
            Ok(polled @ (Polled::Ended { .. } | Polled::OutputToRead(_))) => {
                let ended = match polled {
                    Polled::Ended {
                        charge,
                        model,
                        by_model,
                    } => Ended {
                        charge,
                        model,
                        by_model,
                    },
                    // Read by `ask` when it can be: one it could not is charged nothing.
                    _ => Ended::unreported(),
                };
                let charged = charge_ended(store, &config, &watched.start, ended).await;
                decided = charged;
                charged
            }
            Err(why) => {
                log::debug!(
                    "polling {} `{}` at `{}`: {why}",
                    kind(started),
                    started.id,
                    watched.provider.name
                );
                decided = false;
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
        let shared = if settled || given_up {
            self.inner.shared.get().map(|_| {
                let started = &watched.start.started;
                Shared::Forgotten(shared_name(started.kind, &started.id))
            })
        } else {
            self.shared_record(&watched, Instant::now(), watched.wait)
        };
        if let Some(shared) = shared {
            self.tell(shared);
        }
        // No longer polled, and settled or back in the list, in one step: a delete
        // never finds it in neither.
        let mut list = self.list();
        if settled || given_up {
            list.settle(&watched);
        } else {
            list.back(watched, at);
            drop(list);
            self.inner.wake.notify_one();
        }
        match (decided, settled || given_up) {
            (false, _) => PollOutcome::Undecided,
            (true, true) => PollOutcome::Settled,
            (true, false) => PollOutcome::AtWork,
        }
    }

    /// Asks the provider for the work; its answer is read as it comes, never held
    /// whole.
    async fn ask(
        &self,
        watched: &Watched,
        resolver: &UpstreamResolver,
        store: &Arc<dyn LimitStore>,
    ) -> Result<Polled, String> {
        // A Gemini batch's operation holds its responses: as long as they keep coming.
        let (limit, idle) = match watched.start.started.kind {
            ApartKind::GeminiBatch => (LARGE_POLL_TIMEOUT, Some(RESULTS_IDLE)),
            _ => (POLL_TIMEOUT, None),
        };
        let object = async {
            let addr = resolver
                .resolve_base(&watched.provider.base, 0)
                .await
                .map_err(|e| e.message.to_string())?;
            let meter = poll_meter().ok_or("no meter for JSON")?;
            let (status, meter) = self
                .read(watched, addr, &watched.url(""), meter, idle)
                .await?;
            Ok::<_, String>((addr, polled(status, meter)))
        };
        let (addr, polled) = tokio::time::timeout(limit, object)
            .await
            .map_err(|_| format!("no answer within {limit:?}"))??;
        match (polled, watched.start.started.kind) {
            (Polled::Ended { .. }, ApartKind::MessageBatch) => {
                let results = DeferredAnswer::message_batch_results(&watched.start.started.id);
                let url = watched.url("/results");
                // Results not there yet are asked for again.
                let results = self.read_results(watched, addr, results, &url);
                results.await.map(|r| r.unwrap_or(Polled::Unanswered))
            }
            (Polled::OutputToRead(file), _) => {
                let Some(url) = watched.output_file_url(&file) else {
                    // Its id is not a path segment: charged nothing, as `poll` logs.
                    return Ok(Polled::OutputToRead(file));
                };
                let output = match watched.start.started.kind {
                    // Known by what it reports too: read, and charged once by that.
                    ApartKind::GeminiBatch => {
                        DeferredAnswer::gemini_responses(file.as_bytes(), &watched.provider.name)
                    }
                    _ => DeferredAnswer::batch_output(file.as_bytes()),
                };
                // A client read it whole already: not downloaded again.
                let known = output.known_by_name();
                if known && store.was_charged(output.key(), unix_now()).await == Ok(true) {
                    return Ok(Polled::Charged);
                }
                // A file the key cannot read, or that was deleted, will not come back.
                let results = self.read_results(watched, addr, output, &url);
                results.await.map(|r| r.unwrap_or(Polled::Gone))
            }
            (polled, _) => Ok(polled),
        }
    }

    /// A batch has ended: its `results` at `url` (an Anthropic message batch's, or
    /// an OpenAI batch's output file), a line per request, say what it used (read as
    /// they come, never held whole). `None` when the provider did not give them: a
    /// timeout, a conflict, a rate limit or a server error is asked again, anything
    /// else as the caller says.
    async fn read_results(
        &self,
        watched: &Watched,
        addr: SocketAddr,
        results: DeferredAnswer,
        url: &str,
    ) -> Result<Option<Polled>, String> {
        let meter = UsageMeter::for_batch_results(results, None).ok_or("no meter for results")?;
        let idle = Some(RESULTS_IDLE);
        let (status, mut meter) = self.read(watched, addr, url, meter, idle).await?;
        match status {
            200..=299 => {}
            408 | 409 | 429 | 500.. => return Ok(Some(Polled::Unanswered)),
            _ => return Ok(None),
        }
        let charge = meter.finish();
        Ok(Some(Polled::Ended {
            charge,
            model: meter.take_model(),
            by_model: meter.take_usage_by_model(),
        }))
    }

    /// `GET` `url` (the work's, or its results') at its provider, with the key and
    /// scope that started it: the answer's status, its body read into `meter`.
    async fn read(
        &self,
        watched: &Watched,
        addr: SocketAddr,
        url: &str,
        mut meter: UsageMeter,
        idle: Option<Duration>,
    ) -> Result<(u16, UsageMeter), String> {
        let provider = &*watched.provider;
        let (key, scope) = (watched.key.as_ref(), &watched.start.scope);
        let request = provider_get(provider, url, key, scope)
            .map_err(|e| format!("cannot build request: {e}"))?;
        let connector = &self.inner.connector;
        let status = fetch_each(connector, provider, addr, request, idle, |piece| {
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

impl Ended {
    /// Work that ended without saying what it used.
    fn unreported() -> Self {
        Self {
            charge: None,
            model: None,
            by_model: Vec::new(),
        }
    }
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
        if start.started.kind != ApartKind::Response {
            log::warn!(
                "{} `{}` ended without saying what it used, nor did what the gateway \
                 could read of its output: it is charged only if a client reads output \
                 that does",
                kind(&start.started),
                start.started.id
            );
        }
        return true;
    };
    // The store bounds its own calls in time; one cut short here could have marked
    // the work charged without its charge.
    match store.first_charge(answer.key(), unix_now()).await {
        Ok(true) => {
            if let Some(name) = answer.name_mark() {
                // For clients' reads in part after it, which report less.
                let _ = store.first_charge(name, unix_now()).await;
            }
        }
        Ok(false) => return true,
        Err(e) => {
            log::warn!("{e}; a background response or batch is charged later");
            return false;
        }
    }
    let (by, batch) = (&start.by, answer.is_batch());
    let model = ended.model.as_deref();
    if ended.by_model.len() > 1 {
        // Results of several models: each at its own price (a line naming none, at
        // the first's).
        for (named, usage) in &ended.by_model {
            let part = Some(named.as_str()).filter(|m| !m.is_empty()).or(model);
            charge_polled(store, config, by, (usage, &Usage::default()), part, batch);
        }
        return true;
    }
    charge_polled(
        store,
        config,
        by,
        (&charge.usage, &start.charged),
        model,
        batch,
    );
    true
}

fn kind(started: &StartedApart) -> &'static str {
    match started.kind {
        ApartKind::Response => "background response",
        ApartKind::Batch => "batch",
        ApartKind::MessageBatch => "message batch",
        ApartKind::GeminiBatch => "Gemini batch",
    }
}

/// The keys `config` holds now for the provider of `watched` (at most
/// [`ROTATED_KEYS_TRIED`]), when the one it was started with is no longer among them
/// (rotated out by a reload); none for work started with a caller's own key, whose
/// key is still configured, or whose provider is now elsewhere (another kind or
/// address): a key is never sent to a host that is not its provider's.
pub(super) fn rotated_in(config: &Config, watched: &Watched) -> Vec<Secret> {
    if watched.start.by.brought_key {
        return Vec::new();
    }
    let Some(provider) = config.providers.configured_named(&watched.provider.name) else {
        return Vec::new();
    };
    let ProviderCredential::Static(ring) = &provider.credential else {
        return Vec::new();
    };
    let (then, now) = (&watched.provider, provider);
    if then.kind != now.kind || then.base != now.base {
        return Vec::new();
    }
    let started_with = watched.key.as_ref().map(Secret::expose);
    let keys = ring.keys();
    if keys.iter().any(|k| Some(k.expose()) == started_with) {
        return Vec::new();
    }
    keys.iter().take(ROTATED_KEYS_TRIED).cloned().collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_out_key_is_replaced_only_by_its_providers_keys_at_its_address() {
        let config = |provider: &str| {
            let yaml =
                format!("server:\n  listen: 127.0.0.1:8080\nproviders:\n  openai:\n{provider}");
            let env = crate::config::EnvSnapshot::from_pairs(Vec::<(String, String)>::new());
            crate::config::build_config(Some(&yaml), None, &env).unwrap()
        };
        let mut work = Start::test("resp_1", ApartKind::Response, "a")
            .watched_at("/v1/responses/resp_1", None);
        work.key = Some(Secret::new("sk-old-0123456789"));
        let exposed = |keys: Vec<Secret>| {
            keys.iter()
                .map(|k| k.expose().to_string())
                .collect::<Vec<_>>()
        };
        let rotated = config("    api_keys: [sk-new-0123456789, sk-other-0123456789]\n");
        assert_eq!(
            exposed(rotated_in(&rotated, &work)),
            ["sk-new-0123456789", "sk-other-0123456789"]
        );
        // Still configured: the refusal stands.
        let kept = config("    api_keys: [sk-new-0123456789, sk-old-0123456789]\n");
        assert!(rotated_in(&kept, &work).is_empty());
        // Moved elsewhere: its new keys never go to the old address.
        let moved =
            config("    api_key: sk-new-0123456789\n    base_url: https://proxy.example.com/v1\n");
        assert!(rotated_in(&moved, &work).is_empty());
        // A caller's own key: nothing of the config's replaces it.
        work.start.by.brought_key = true;
        assert!(rotated_in(&rotated, &work).is_empty());
    }

    /// [`polled`] for an answer `body` at hand.
    fn read_poll(status: u16, body: &[u8]) -> Polled {
        let mut meter = poll_meter().unwrap();
        meter.feed(body);
        polled(status, meter)
    }

    fn started(id: &str, kind: ApartKind) -> StartedApart {
        StartedApart {
            id: id.into(),
            kind,
        }
    }

    #[test]
    fn a_gemini_batchs_poll_keeps_its_responses_apart_by_model() {
        let response = |model: &str, input: u64| {
            format!(
                r#"{{"response":{{"usageMetadata":{{"promptTokenCount":{input},"candidatesTokenCount":1}},"modelVersion":"{model}"}}}}"#
            )
        };
        let op = format!(
            r#"{{"name":"batches/b-1","metadata":{{"state":"BATCH_STATE_SUCCEEDED","output":{{"inlinedResponses":{{"inlinedResponses":[{},{}]}}}}}}}}"#,
            response("gemini-2.5-pro", 10),
            response("gemini-2.5-flash", 20)
        );
        let Polled::Ended {
            charge, by_model, ..
        } = read_poll(200, op.as_bytes())
        else {
            panic!("not ended");
        };
        assert_eq!(charge.unwrap().usage.input, 30);
        let inputs: Vec<_> = by_model
            .iter()
            .map(|(m, u)| (m.as_str(), u.input))
            .collect();
        assert_eq!(inputs, [("gemini-2.5-pro", 10), ("gemini-2.5-flash", 20)]);
    }

    #[test]
    fn work_is_read_back_in_the_collection_it_was_made_in() {
        let response = started("resp_1", ApartKind::Response);
        let batch = started("batch_1", ApartKind::Batch);
        let message_batch = started("msgbatch_1", ApartKind::MessageBatch);
        let at =
            |path: &str, query: Option<&str>| Some((path.to_string(), query.map(str::to_string)));
        assert_eq!(
            poll_path("/v1/responses", &response),
            at("/v1/responses/resp_1", None)
        );
        assert_eq!(
            poll_path("/openai/v1/responses/?api-version=1", &response),
            at("/openai/v1/responses/resp_1", Some("api-version=1"))
        );
        assert_eq!(
            poll_path("/v1/batches", &batch),
            at("/v1/batches/batch_1", None)
        );
        // A cancel answers the response too; it was not made there.
        assert_eq!(poll_path("/v1/responses/resp_1/cancel", &response), None);
        assert_eq!(poll_path("/v1/responses", &batch), None);
        assert_eq!(
            poll_path("/v1/messages/batches?beta=true", &message_batch),
            at("/v1/messages/batches/msgbatch_1", Some("beta=true"))
        );
        assert_eq!(poll_path("/v1/messages/batches", &batch), None);
        assert_eq!(poll_path("/v1/batches", &message_batch), None);
        assert_eq!(poll_path("responses", &response), None);
        // A Gemini batch is made by its model's method, and read in `batches`.
        let gemini = started("b-1", ApartKind::GeminiBatch);
        assert_eq!(
            poll_path(
                "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                &gemini
            ),
            at("/v1beta/batches/b-1", None)
        );
        assert_eq!(
            poll_path("/models/m:batchGenerateContent?alt=json", &gemini),
            at("/batches/b-1", None)
        );
        for other in [
            "/v1beta/models/m:generateContent",
            "/v1beta/tunedModels/m:batchGenerateContent",
            "/v1beta/batches",
        ] {
            assert_eq!(poll_path(other, &gemini), None, "{other}");
        }
    }

    #[test]
    fn a_delete_names_the_work_it_removes_as_servers_read_its_path() {
        for endpoint in [
            "responses/resp_1",
            "v1/responses/resp_1",
            "responses//resp_1",
            "responses/resp_1/",
            "responses/resp_1;p=1",
        ] {
            assert_eq!(
                deleted_work(endpoint, false),
                Some((ApartKind::Response, "resp_1")),
                "{endpoint}"
            );
        }
        assert_eq!(
            deleted_work("v1/messages/batches/msgbatch_1", false),
            Some((ApartKind::MessageBatch, "msgbatch_1"))
        );
        // Under any prefix, as the poll watches it (a base URL of the host alone).
        assert_eq!(
            deleted_work("openai/v1/responses/resp_1", false),
            Some((ApartKind::Response, "resp_1"))
        );
        // Only a Gemini batch is deleted by its `batches/{id}` (OpenAI's are not).
        for endpoint in ["batches/b-1", "v1beta/batches/b-1"] {
            let deleted = deleted_work(endpoint, true);
            assert_eq!(deleted, Some((ApartKind::GeminiBatch, "b-1")), "{endpoint}");
            assert_eq!(deleted_work(endpoint, false), None, "{endpoint}");
        }
        for endpoint in [
            "responses/resp_1/input_items",
            "responses",
            "batches",
            "batches/b-1:cancel/x",
            "messages/batches/msgbatch_1/results",
            "files/file_1",
        ] {
            assert_eq!(deleted_work(endpoint, false), None, "{endpoint}");
        }
    }

    #[test]
    fn the_url_read_keeps_the_calls_query_after_what_is_read() {
        let mut watched = Start::test("msgbatch_1", ApartKind::MessageBatch, "a")
            .watched_at("/v1/messages/batches/msgbatch_1", Some("beta=true"));
        assert_eq!(watched.url(""), "/v1/messages/batches/msgbatch_1?beta=true");
        assert_eq!(
            watched.url("/results"),
            "/v1/messages/batches/msgbatch_1/results?beta=true"
        );
        watched.query = None;
        assert_eq!(
            watched.url("/results"),
            "/v1/messages/batches/msgbatch_1/results"
        );
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
        for status in [401, 403] {
            assert_eq!(read_poll(status, b"{}"), Polled::Refused, "{status}");
        }
        for status in [404, 410] {
            assert_eq!(read_poll(status, b"{}"), Polled::Gone, "{status}");
        }
        for status in [429, 500, 503, 408] {
            assert_eq!(read_poll(status, b"{}"), Polled::Unanswered, "{status}");
        }
        assert_eq!(read_poll(200, b"not json"), Polled::Unanswered);
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

    #[test]
    fn a_batch_ended_without_usage_is_read_in_its_output_file() {
        let batch = |status: &str, file: &str| {
            format!(
                r#"{{"id":"batch_1","object":"batch","status":"{status}","output_file_id":{file},"request_counts":{{"total":2,"completed":2,"failed":0}}}}"#
            )
        };
        assert_eq!(
            read_poll(200, batch("completed", r#""file-out""#).as_bytes()),
            Polled::OutputToRead("file-out".into())
        );
        assert_eq!(
            read_poll(200, batch("in_progress", "null").as_bytes()),
            Polled::UnderWay
        );
        // Usage of nothing at all says nothing either.
        let zero = batch("completed", r#""file-out""#).replace(
            r#""request_counts""#,
            r#""usage":{"input_tokens":0,"output_tokens":0,"total_tokens":0},"request_counts""#,
        );
        assert_eq!(
            read_poll(200, zero.as_bytes()),
            Polled::OutputToRead("file-out".into())
        );
        // Failed before making any output: nothing to read.
        assert!(matches!(
            read_poll(200, batch("failed", "null").as_bytes()),
            Polled::Ended { charge: None, .. }
        ));
    }

    #[test]
    fn a_batchs_output_file_is_read_beside_the_collection_it_was_made_in() {
        let mut watched = Start::test("batch_1", ApartKind::Batch, "a")
            .watched_at("/openai/v1/batches/batch_1", Some("api-version=2025-04-01"));
        assert_eq!(
            watched.output_file_url("file-out_2").as_deref(),
            Some("/openai/v1/files/file-out_2/content?api-version=2025-04-01")
        );
        for not_a_segment in ["", "../x", "file/2", "file?x=1", "file%2F"] {
            assert_eq!(
                watched.output_file_url(not_a_segment),
                None,
                "{not_a_segment}"
            );
        }
        watched.query = None;
        assert_eq!(
            watched.output_file_url("file-out").as_deref(),
            Some("/openai/v1/files/file-out/content")
        );
        let response = Start::test("resp_1", ApartKind::Response, "a")
            .watched_at("/v1/responses/resp_1", None);
        assert_eq!(response.output_file_url("file-out"), None);
        // A Gemini batch's responses file is downloaded as media.
        let mut gemini =
            Start::test("b-1", ApartKind::GeminiBatch, "a").watched_at("/v1beta/batches/b-1", None);
        assert_eq!(
            gemini.output_file_url("batch-out").as_deref(),
            Some("/v1beta/files/batch-out:download?alt=media")
        );
        gemini.query = Some("x=1".into());
        assert_eq!(
            gemini.output_file_url("batch-out").as_deref(),
            Some("/v1beta/files/batch-out:download?alt=media&x=1")
        );
    }

    #[tokio::test]
    async fn work_not_made_in_its_collection_is_not_watched() {
        let poll = DeferredPoll::new();
        let provider = Arc::new(Provider::unconfigured(
            crate::providers::ProviderKind::OpenAi,
        ));
        let target = UpstreamTarget::new(provider, "/v1/responses".into(), Default::default());
        let later = Duration::from_secs(60);
        assert!(poll.watch(
            Start::test("resp_1", ApartKind::Response, "a"),
            &target,
            later
        ));
        assert!(!poll.watch(
            Start::test("batch_1", ApartKind::Batch, "a"),
            &target,
            later
        ));
        assert_eq!(poll.len(), 1);
    }
}
