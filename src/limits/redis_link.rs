//! The Redis connection the store shares between requests and its writer, and the
//! names of its keys.
//!
//! The connection is made on first use and kept by redis-rs's connection manager,
//! which reconnects by itself: when Redis goes away, calls fail (and
//! `limits.on_store_error` decides) until it is back. A call that got no answer in
//! time makes the calls of the next [`QUIET_AFTER_LOSS`] fail at once: requests do
//! not queue behind a Redis that has stopped answering, each waiting out its own
//! timeout. It also drops the connection, which the next call makes anew: a
//! connection black-holed (its Redis failed over, its path gone) would otherwise be
//! kept until the kernel gives up on it, many minutes later, since a timeout is no
//! error the connection manager reconnects for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use crate::config::RedisAddress;
use std::sync::Arc;
use tokio::sync::Mutex;

use super::{usd_nanos, StoreError};

/// The longest a call waits on Redis before the store counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// After a call got no answer, how long Redis is not asked again: calls fail at once.
pub const QUIET_AFTER_LOSS: Duration = Duration::from_secs(1);

/// The longest a connection may take to be made (name lookup, TCP, TLS, the client's
/// setup commands: several round trips). Longer than a call's time: a Redis far enough
/// away that each call takes most of [`CALL_TIMEOUT`] takes several times that to be
/// connected to. No request waits it out: it goes on apart from the calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection being made, apart from the calls that wait for it.
type Connecting = tokio::task::JoinHandle<Result<ConnectionManager, StoreError>>;

/// A Redis to connect to, and the connection once made.
pub struct Link {
    client: Client,
    connection: ArcSwapOption<ConnectionManager>,
    /// Held while a call waits for a connection: one waits at a time.
    connecting: Mutex<()>,
    /// A connection still being made when the call that started it stopped waiting:
    /// the next call waits for it, rather than start another.
    underway: std::sync::Mutex<Option<Connecting>>,
    /// How many connections were made: a call that fails drops the connection only
    /// when none was made since it began (a slow call failing late on an old one
    /// leaves the one made since alone).
    made_count: AtomicU64,
    /// The link's clock, for [`Self::quiet_until_ms`].
    born: Instant,
    /// Until when (milliseconds on the link's clock) Redis is not asked.
    quiet_until_ms: AtomicU64,
    /// Why the last call or connection that failed did: what the calls failed at once
    /// after it say, so the log (once a minute) names the cause, not the quiet.
    cause: ArcSwapOption<String>,
}

impl Link {
    /// A link to the Redis at `address`; it connects on first use.
    pub fn new(address: &RedisAddress) -> Result<Self, StoreError> {
        let client = address
            .client()
            .map_err(|e| StoreError(format!("the Redis URL cannot be used: {}", e.kind_text())))?;
        Ok(Self {
            client,
            connection: ArcSwapOption::empty(),
            connecting: Mutex::new(()),
            underway: std::sync::Mutex::new(None),
            made_count: AtomicU64::new(0),
            born: Instant::now(),
            quiet_until_ms: AtomicU64::new(0),
            cause: ArcSwapOption::empty(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The error of a call not made: a call failed a moment ago.
    fn quiet(&self) -> Option<StoreError> {
        if self.now_ms() >= self.quiet_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let cause = self.cause.load();
        let cause = cause
            .as_deref()
            .map_or("Redis left a call unanswered", String::as_str);
        Some(StoreError(format!(
            "{cause}; not asked again for {QUIET_AFTER_LOSS:?}"
        )))
    }

    /// A call failed for `cause`: Redis is not asked for [`QUIET_AFTER_LOSS`].
    fn lost_one(&self, cause: &StoreError) {
        self.cause.store(Some(Arc::new(cause.0.clone())));
        let until = self
            .now_ms()
            .saturating_add(QUIET_AFTER_LOSS.as_millis() as u64);
        self.quiet_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// The connection, made now if it was not yet (or was dropped).
    pub async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(made) = self.made() {
            return Ok(made);
        }
        if let Some(quiet) = self.quiet() {
            return Err(quiet);
        }
        let _turn = self.connecting.lock().await;
        // Made by the one whose turn came first; or those that waited for its try
        // fail at once after it failed.
        if let Some(made) = self.made() {
            return Ok(made);
        }
        if let Some(quiet) = self.quiet() {
            return Err(quiet);
        }
        // The try under way, or a new one; waited for a call's time at most. One not
        // made by then goes on (up to `CONNECT_TIMEOUT`), for the next call to find.
        let taken = self.underway.lock().ok().and_then(|mut u| u.take());
        let mut connecting = taken.unwrap_or_else(|| tokio::spawn(self.connect()));
        let made = match tokio::time::timeout(CALL_TIMEOUT, &mut connecting).await {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => Err(StoreError(format!("connecting to Redis failed: {e}"))),
            Err(_) => {
                if let Ok(mut underway) = self.underway.lock() {
                    *underway = Some(connecting);
                }
                Err(StoreError(
                    "Redis is not connected to yet (it takes longer than a call's time); \
                     still trying"
                        .into(),
                ))
            }
        };
        match made {
            Ok(manager) => {
                self.connection.store(Some(Arc::new(manager.clone())));
                self.made_count.fetch_add(1, Ordering::Relaxed);
                Ok(manager)
            }
            Err(e) => {
                self.lost_one(&e);
                Err(e)
            }
        }
    }

    /// One try at a connection, within [`CONNECT_TIMEOUT`]: the link tries again a
    /// moment later by itself (after `QUIET_AFTER_LOSS`), and a try that fails says why
    /// (a refused connection, a certificate not trusted) rather than running out of
    /// time retrying. The manager's own reconnects (after the network broke) are held to
    /// the same time: a host gone silent does not keep one waiting for the kernel.
    fn connect(&self) -> impl std::future::Future<Output = Result<ConnectionManager, StoreError>> {
        let once = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CONNECT_TIMEOUT);
        let connect = ConnectionManager::new_with_config(self.client.clone(), once);
        async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(manager)) => Ok(manager),
                Ok(Err(e)) => Err(StoreError(format!("cannot reach Redis: {}", e.kind_text()))),
                Err(_) => Err(StoreError(format!(
                    "Redis was not connected to within {CONNECT_TIMEOUT:?}"
                ))),
            }
        }
    }

    /// Awaits `call` for at most [`CALL_TIMEOUT`] (`patience` times it), naming
    /// `what` in the error.
    pub async fn within<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
        what: &str,
        patience: u32,
    ) -> Result<T, StoreError> {
        match self.called(call, what, patience).await {
            Called::Done(answer) => Ok(answer),
            Called::Refused(e) | Called::Unsent(e) | Called::NotMade(e) | Called::InDoubt(e) => {
                Err(e)
            }
        }
    }

    /// [`Self::within`], telling what became of a call that failed. After one whose
    /// answer never came, or that Redis could take none of, Redis is not asked for
    /// [`QUIET_AFTER_LOSS`] (such calls fail at once, unsent). One that failed on a
    /// connection older than the one kept now changes nothing.
    pub async fn called<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
        what: &str,
        patience: u32,
    ) -> Called<T> {
        if let Some(quiet) = self.quiet() {
            return Called::Unsent(quiet);
        }
        let made_before = self.made_count.load(Ordering::Relaxed);
        let called = called(call, what, patience).await;
        if self.made_count.load(Ordering::Relaxed) != made_before {
            // Failed on a connection made before the one now kept: says nothing of it.
            return called;
        }
        if let Called::Unsent(e) | Called::NotMade(e) | Called::InDoubt(e) = &called {
            self.lost_one(e);
        }
        if let Called::NotMade(_) | Called::InDoubt(_) = called {
            // Made anew by the next call. One unanswered may be black-holed for good.
            // One Redis takes no writes on may be to a primary that failed over (its
            // name now points at another), or a connection the connection manager
            // failed to make again (refused at AUTH, say): it keeps that failure, and
            // makes none anew for an error other than the network's.
            self.connection.store(None);
        }
        called
    }

    /// Forgets the connection, any try at one under way and the quiet after a loss:
    /// the runtime that drove them is gone (the server stopped), and the next call
    /// makes a connection anew on its own.
    pub fn start_over(&self) {
        self.connection.store(None);
        if let Ok(mut underway) = self.underway.lock() {
            *underway = None;
        }
        self.quiet_until_ms.store(0, Ordering::Relaxed);
    }

    /// Runs `work` as the process ends, the server's runtimes gone: on a runtime of its
    /// own and a connection made anew, for `bound` at most. `None` when it did not end
    /// within it (or no runtime could be had). The runtime is let go without waiting for
    /// its blocking threads: a host name still being resolved must not hold the exit
    /// past its bound.
    pub fn run_at_exit<F: std::future::Future>(
        &self,
        bound: Duration,
        work: F,
    ) -> Option<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        self.start_over();
        // The timer is made inside the runtime, which it needs.
        let done = runtime.block_on(async { tokio::time::timeout(bound, work).await });
        runtime.shutdown_background();
        done.ok()
    }

    /// How many connections were made so far: one more than before means a new
    /// connection, perhaps to another Redis (a failover) or one restarted.
    pub fn connections_made(&self) -> u64 {
        self.made_count.load(Ordering::Relaxed)
    }

    /// The connection when it has been made (and not dropped since).
    pub fn made(&self) -> Option<ConnectionManager> {
        self.connection
            .load_full()
            .map(|c| ConnectionManager::clone(&c))
    }
}

/// How a call Redis may have run went.
pub enum Called<T> {
    /// Redis ran it and answered.
    Done(T),
    /// Redis answered with an error one command made: the commands of a pipeline
    /// but the failing one ran all the same.
    Refused(StoreError),
    /// It was not sent: Redis refused the connection, or was not asked.
    Unsent(StoreError),
    /// Redis takes no writes now (a replica, out of memory, loading, failing over):
    /// nothing of a command it answered so was made, though the commands of a pipeline
    /// before it may have been.
    NotMade(StoreError),
    /// Sent, and no answer came (the connection broke, or the time ran out): Redis
    /// may have made it, or make it yet when it reads what waits.
    InDoubt(StoreError),
}

/// Awaits `call` for at most [`CALL_TIMEOUT`] (`patience` times it), telling a call
/// Redis refused from one whose answer never came.
async fn called<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
    what: &str,
    patience: u32,
) -> Called<T> {
    match tokio::time::timeout(CALL_TIMEOUT * patience, call).await {
        Ok(Ok(answer)) => Called::Done(answer),
        Ok(Err(e)) => {
            let error = StoreError(format!("Redis refused {what}: {}", e.kind_text()));
            if e.is_connection_refusal() {
                Called::Unsent(error)
            } else if takes_no_writes(&e) {
                Called::NotMade(error)
            } else if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                Called::InDoubt(error)
            } else {
                Called::Refused(error)
            }
        }
        Err(_) => Called::InDoubt(StoreError(format!("Redis did not answer {what} in time"))),
    }
}

/// Whether `e` says Redis takes no writes at all now, whatever the command: nothing of
/// a pipeline it answered so was made.
fn takes_no_writes(e: &redis::RedisError) -> bool {
    use redis::ErrorKind::{
        AuthenticationFailed, BusyLoadingError, ClusterConnectionNotFound, ClusterDown, MasterDown,
        ReadOnly, TryAgain,
    };
    matches!(
        e.kind(),
        ReadOnly
            | BusyLoadingError
            | MasterDown
            | TryAgain
            | ClusterDown
            | AuthenticationFailed
            | ClusterConnectionNotFound
    ) || matches!(
        e.code(),
        Some(
            "OOM"
                | "MISCONF"
                | "BUSY"
                | "NOAUTH"
                | "NOPERM"
                | "READONLY"
                | "LOADING"
                | "WRONGPASS"
                | "DENIED"
        )
    ) || e
        .detail()
        .is_some_and(|d| d.contains("max number of clients reached"))
}

/// A key of `subject`'s counters, `aurora:{SUBJECT}:WHAT:PERIOD`; the braces keep a
/// subject's keys in one cluster slot.
pub fn key(subject: &str, what: &str, period: u64) -> String {
    joined(&["aurora:{", subject, "}:", what, ":"], period)
}

/// The hash of what `key` (a gateway key's name) used on `day`,
/// `aurora:{key:KEY}:usage:DAY`, field `model|kind`.
pub fn usage_key(key: &str, day: u64) -> String {
    joined(&["aurora:{key:", key, "}:usage:"], day)
}

/// `parts` then `number`, in one allocation of the exact size: a request charges up to
/// three keys, and `format!` reaches them through the formatting machinery and a
/// buffer that grows as it goes.
fn joined(parts: &[&str], number: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let number = digits.format(number);
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + number.len();
    let mut out = String::with_capacity(len);
    for part in parts {
        out.push_str(part);
    }
    out.push_str(number);
    out
}

/// A limit as a Redis integer argument, -1 for none.
pub fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// A limit in US dollars as a Redis integer argument: [`usd_nanos`].
pub fn usd_arg(usd: f64) -> i64 {
    i64::try_from(usd_nanos(usd)).unwrap_or(i64::MAX)
}

/// A Redis error without its details.
pub trait KindText {
    /// The error's kind only: details may quote the URL.
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    fn kind_text(&self) -> String {
        if self.is_io_error() {
            // The system's words (a refused connection, a certificate not trusted), in
            // which no URL is.
            format!("{:?} ({self})", self.kind())
        } else if let Some(code) = self.code() {
            // Redis's own word for it (`NOAUTH`, `WRONGPASS`, `OOM`): never a URL.
            format!("{:?} ({code})", self.kind())
        } else {
            format!("{:?}", self.kind())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_error_is_told_by_its_kind_and_code_not_its_details() {
        let e = redis::RedisError::from((
            redis::ErrorKind::ReadOnly,
            "read only",
            "redis://:secret@host/0".to_string(),
        ));
        assert_eq!(e.kind_text(), "ReadOnly (READONLY)");
    }

    #[test]
    fn work_at_exit_is_let_go_at_its_bound_even_with_a_blocking_thread_still_busy() {
        let link = Link::new(&RedisAddress::plain("redis://127.0.0.1:1/0")).unwrap();
        let started = std::time::Instant::now();
        // A host name's lookup runs on a blocking thread, as this does, for as long as
        // the resolver takes.
        let done = link.run_at_exit(Duration::from_millis(50), async {
            let _ =
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(20))).await;
        });
        assert!(done.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            link.run_at_exit(Duration::from_secs(5), async { 7 }),
            Some(7)
        );
    }

    #[tokio::test]
    async fn a_late_failure_on_an_old_connection_leaves_the_one_made_since_alone() {
        let link = Link::new(&RedisAddress::plain("redis://127.0.0.1:1/0")).unwrap();
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        // A slow call on the connection of the moment, which breaks late...
        let late = link.called(
            async move {
                let _ = failed.await;
                Err::<(), _>(redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))
            },
            "a slow read",
            4,
        );
        let breaks_late = async {
            // ...after another connection was made meanwhile.
            link.made_count.fetch_add(1, Ordering::Relaxed);
            let _ = fail.send(());
        };
        let (called, ()) = tokio::join!(late, breaks_late);
        assert!(matches!(called, Called::InDoubt(_)));
        assert!(
            link.quiet().is_none(),
            "calls on the new connection fail at once"
        );
    }

    #[tokio::test]
    async fn calls_failed_at_once_after_a_failed_connection_say_why_it_failed() {
        // Nothing listens on port 1: the connection is refused.
        let link = Link::new(&RedisAddress::plain("redis://:pw-not-shown@127.0.0.1:1/0")).unwrap();
        let refused = link.connection().await.err().expect("no Redis there");
        assert!(
            refused.0.starts_with("cannot reach Redis: IoError ("),
            "{}",
            refused.0
        );
        assert!(
            refused.0.contains("refused"),
            "the system's words: {}",
            refused.0
        );
        let quiet = match link.called(async { Ok(()) }, "a test call", 1).await {
            Called::Unsent(e) => e,
            _ => panic!("not sent in the moment after"),
        };
        assert_eq!(
            quiet.0,
            format!("{}; not asked again for {QUIET_AFTER_LOSS:?}", refused.0)
        );
        assert!(!quiet.0.contains("pw-not-shown"), "{}", quiet.0);
    }

    #[test]
    fn keys_read_as_their_layout_says() {
        for (subject, what, period) in [
            ("key:team-a", "tok", 29_000_000),
            ("provider:openai", "calls", 0),
            ("key:ünï", "usd", u64::MAX),
        ] {
            let made = key(subject, what, period);
            assert_eq!(made, format!("aurora:{{{subject}}}:{what}:{period}"));
            assert_eq!(
                made.capacity(),
                made.len(),
                "one allocation of the exact size"
            );
        }
        let made = usage_key("team-a", 20_426);
        assert_eq!(made, "aurora:{key:team-a}:usage:20426");
        assert_eq!(made.capacity(), made.len());
    }
}
