//! Stored Responses API answers, for `previous_response_id`, `GET` and `DELETE
//! /v1/responses/{id}` on providers that keep no such state themselves (every
//! provider the gateway translates for).
//!
//! A stored response keeps its own input items and the id of the response it
//! continued, not the whole conversation, so a long conversation costs memory in
//! proportion to its length rather than its square; the history is rebuilt by
//! walking back the chain. The store is a trait so that a store shared by several
//! replicas can stand in for the in-memory one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::native_owner::{NativeOwner, NativeOwnerBook, NativeOwnerSettings};

/// Whose a stored response is: only the caller that made it reads, continues or
/// deletes it, as at a provider, where an API key's project holds its own. The master
/// key, a managed key by its name, or without gateway auth the provider key the caller
/// brought (by its digest), else anyone.
pub fn owner_of(
    caller: Option<&crate::auth::Caller>,
    caller_key_digest: impl FnOnce() -> Option<String>,
) -> Arc<str> {
    use crate::auth::Caller;
    match caller {
        Some(Caller::Master) => "master".into(),
        Some(Caller::Managed(name)) => format!("key:{name}").into(),
        Some(Caller::Open) | None => match caller_key_digest() {
            Some(digest) => format!("caller:{digest}").into(),
            None => "open".into(),
        },
    }
}

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Whose it is ([`owner_of`]).
    pub owner: Arc<str>,
    /// The `response` object as the client received it.
    pub response: Bytes,
    /// The request's own input items (a JSON array).
    pub input_items: Bytes,
    /// The response it continued (`previous_response_id`), if any.
    pub previous: Option<String>,
}

impl StoredResponse {
    /// The bytes it holds, as the store's bounds count them.
    pub fn size(&self) -> usize {
        self.response.len()
            + self.input_items.len()
            + self.previous.as_ref().map_or(0, String::len)
            + self.owner.len()
    }
}

/// How much the store may hold; read from the live config at each insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Responses kept at most.
    pub max_entries: usize,
    /// Bytes kept at most, all responses together.
    pub max_bytes: usize,
    /// How long a response is kept.
    pub ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a conversation could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The response (or one it continued) is unknown, expired or evicted.
    #[error("response `{0}` not found: it was never stored here, or it expired")]
    NotFound(String),
    /// A stored response is not what the store wrote.
    #[error("stored response `{0}` cannot be read")]
    Corrupt(String),
    /// The conversation is larger than a request may be.
    #[error("the conversation up to response `{0}` is larger than the {1} bytes a request body may still hold beside this turn: start a new one, or raise server.body_size_limit")]
    TooLarge(String, u64),
    /// The store could not be asked (a shared store out of reach).
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
}

/// A shared store that could not be asked: said as such (503), never as a response
/// not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store of Responses API answers cannot be reached: {0}")]
pub struct StoreUnavailable(pub String);

/// Where stored responses live. Every call returns a future so a remote store can
/// stand behind the trait; the in-memory store has done its work before it returns,
/// so a response is there for the client's next request the moment it completes.
pub trait ResponseStore: Send + Sync {
    /// Keeps `stored` under `id`, within `limits`.
    fn put(
        &self,
        id: String,
        stored: StoredResponse,
        limits: StoreLimits,
    ) -> BoxFuture<'static, ()>;
    /// The response stored under `id`.
    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>>;
    /// `id` is under way: its answer is to be stored when it ends. A shared store
    /// marks it (what to run for that; none in memory), so that a read at another replica waits a moment for a write that may
    /// land just after the client's next turn got there.
    fn mark_under_way(&self, _id: &str) -> Option<BoxFuture<'static, ()>> {
        None
    }
    /// `id` ended without an answer to store (the call failed, its client left): its
    /// mark goes, so that a read of it is not kept waiting.
    fn unmark(&self, _id: &str) -> Option<BoxFuture<'static, ()>> {
        None
    }
    /// Makes, as the process ends, the writes its server's runtimes dropped unfinished
    /// as they stopped, within `bound`, on a runtime and a connection of its own. The
    /// in-memory store has made each write before `put` returns: nothing to do.
    fn write_out_at_exit(&self, _bound: Duration) {}
    /// Forgets `id`; whether it was there.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;
    /// Remembers whose the response `id` a provider made and keeps is, and at which
    /// provider ([`super::native_owner`]), for `settings.ttl`. The in-memory store has
    /// it once this returns; a shared one when the future completes.
    fn record_native(
        &self,
        id: &str,
        record: NativeOwner,
        settings: NativeOwnerSettings,
    ) -> BoxFuture<'static, Result<(), StoreUnavailable>>;
    /// The record of the response `id` a provider keeps, if the gateway made one.
    fn native_owner<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<NativeOwner>, StoreUnavailable>>;
    /// Forgets the record of `id`, its response deleted at its provider.
    fn forget_native(&self, id: &str) -> BoxFuture<'static, Result<(), StoreUnavailable>>;
    /// The responses the chain holds from `id` back, each `owner`'s: at most `most`,
    /// and none past the one that takes their own bytes over `max_bytes`; fewer when a
    /// link is missing or another's (asked for alone, it is then said not found). A
    /// shared store reads them in one call.
    fn chain<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        most: usize,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<(String, StoredResponse)>, StoreUnavailable>> {
        Box::pin(async move {
            let mut links = Vec::new();
            let mut held = 0u64;
            let mut next = Some(id.to_string());
            while let Some(id) = next.take() {
                let Some(stored) = self.get_owned(&id, owner).await? else {
                    break;
                };
                held = held.saturating_add(stored.size() as u64);
                next = stored.previous.clone();
                links.push((id, stored));
                if links.len() >= most || held > max_bytes {
                    break;
                }
            }
            Ok(links)
        })
    }
    /// The response stored under `id` when `owner` made it ([`owner_of`]).
    fn get_owned<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        Box::pin(async move { Ok(self.get(id).await?.filter(|s| &*s.owner == owner)) })
    }
}

/// The response stored under `id`, when `owner` made it ([`owner_of`]): another
/// caller's is not found.
pub async fn owned(
    store: &dyn ResponseStore,
    id: &str,
    owner: &str,
) -> Result<Option<StoredResponse>, StoreUnavailable> {
    store.get_owned(id, owner).await
}

/// The whole conversation up to and including response `id`, as one JSON array of
/// items (each response's input items, then its output), oldest first: every link
/// `owner`'s, their items within `max_bytes` (what is left of the largest request
/// body beside the new turn's: the request to the provider carries them all).
pub async fn history(
    store: &dyn ResponseStore,
    id: &str,
    owner: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, HistoryError> {
    // Each link holds its input items and output as JSON array texts; what the
    // conversation weighs is theirs alone (a response object also repeats its
    // instructions and tools, which the history does not carry).
    let mut links = Vec::new();
    let mut held = 0u64;
    let mut next = Some(id.to_string());
    let first = id;
    while let Some(id) = next.take() {
        // The first is asked for alone (a read of it waits for a write under way);
        // the rest in batches, a round trip each to a shared store.
        let batch = if links.is_empty() {
            owned(store, &id, owner)
                .await?
                .map(|stored| vec![(id.clone(), stored)])
                .unwrap_or_default()
        } else {
            let left = max_bytes.saturating_sub(held);
            store.chain(&id, owner, CHAIN_BATCH, left).await?
        };
        if batch.is_empty() {
            return Err(HistoryError::NotFound(id));
        }
        for (id, stored) in batch {
            let output =
                output_items(&stored.response).ok_or_else(|| HistoryError::Corrupt(id.clone()))?;
            held = held.saturating_add((stored.input_items.len() + output.len()) as u64);
            if held > max_bytes {
                return Err(HistoryError::TooLarge(first.to_string(), max_bytes));
            }
            next = stored.previous.clone();
            links.push((id, stored.input_items, output));
        }
        if links.len() > MAX_CHAIN {
            break;
        }
    }
    let mut out = Vec::with_capacity(usize::try_from(held).unwrap_or(0) + 2);
    out.push(b'[');
    for (id, input_items, output) in links.iter().rev() {
        for array in [&input_items[..], output.as_bytes()] {
            let inner = array_contents(array).ok_or_else(|| HistoryError::Corrupt(id.clone()))?;
            if !inner.is_empty() {
                if out.len() > 1 {
                    out.push(b',');
                }
                out.extend_from_slice(inner);
            }
        }
    }
    out.push(b']');
    Ok(out)
}

/// How many links of a conversation are read at once.
const CHAIN_BATCH: usize = 64;

/// More links than any real conversation has: a cycle cannot loop forever.
const MAX_CHAIN: usize = 100_000;

/// The `output` array of a `response` object, as its text.
fn output_items(response: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Output<'a> {
        #[serde(borrow)]
        output: &'a RawValue,
    }
    let parsed: Output<'_> = serde_json::from_slice(response).ok()?;
    Some(parsed.output.get().to_string())
}

/// What is between the brackets of a JSON array's text.
fn array_contents(array: &[u8]) -> Option<&[u8]> {
    let trimmed = array.trim_ascii();
    trimmed
        .strip_prefix(b"[")?
        .strip_suffix(b"]")
        .map(<[u8]>::trim_ascii)
}

/// How many links behind a new turn are renewed at most: no more than the store
/// holds, nor than [`history`] reads back.
pub(super) fn renewed_at_most(limits: &StoreLimits) -> usize {
    limits.max_entries.min(MAX_CHAIN + CHAIN_BATCH)
}

/// The default store: this process's memory, bounded in entries, bytes and age. A
/// conversation in use stays: each turn stored renews every link before it (its age
/// starts over, and it counts as just used). The expired go first; then room is made
/// at the expense of whoever holds the most of what ran out (entries or bytes), its
/// least recently used first: one key filling the store evicts its own responses, not
/// every other key's (with one key, that is the least recently used first).
#[derive(Debug, Default)]
pub struct MemoryResponseStore {
    inner: Mutex<Entries>,
    /// Whose the responses natively served providers keep are.
    natives: NativeOwnerBook,
}

#[derive(Debug, Default)]
struct Entries {
    /// Id → the response, when it expires and its place in `order`.
    map: HashMap<String, Entry>,
    /// Least recently used first, for eviction: `(id, seq)`, skipped once the id is
    /// gone or holds another place (its `seq` no longer the entry's).
    order: VecDeque<(String, u64)>,
    /// The next place in `order`.
    next_seq: u64,
    bytes: usize,
    /// What each owner holds.
    held: HashMap<Arc<str>, Holding>,
}

/// One stored response, as the memory store keeps it.
#[derive(Debug)]
struct Entry {
    stored: Arc<StoredResponse>,
    expires: Instant,
    /// Its place in `order`.
    seq: u64,
}

/// What one owner holds in the store.
#[derive(Debug, Default, Clone, Copy)]
struct Holding {
    entries: usize,
    bytes: usize,
}

/// The store's bound that ran out, which decides whose responses make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortage {
    Entries,
    Bytes,
}

impl Entries {
    fn remove(&mut self, id: &str) -> bool {
        match self.map.remove(id) {
            Some(Entry { stored, .. }) => {
                let size = stored.size();
                self.bytes -= size;
                if let Some(held) = self.held.get_mut(&stored.owner) {
                    held.bytes = held.bytes.saturating_sub(size);
                    held.entries = held.entries.saturating_sub(1);
                    if held.entries == 0 {
                        self.held.remove(&stored.owner);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Removes the oldest response of the owner holding the most of what is short:
    /// by bytes alone, a key storing many small responses would evict, one by one, the
    /// oldest links of another key's few large ones (and with them its conversations);
    /// whether one was there.
    /// Between holders of as much, `inserting`'s own go.
    fn evict_from_largest_holder(&mut self, short: Shortage, inserting: &Arc<str>) -> bool {
        let Some(largest) = self
            .held
            .iter()
            .max_by_key(|(owner, held)| {
                let most = match short {
                    Shortage::Entries => held.entries,
                    Shortage::Bytes => held.bytes,
                };
                (most, *owner == inserting)
            })
            .map(|(owner, _)| Arc::clone(owner))
        else {
            return false;
        };
        let oldest = self.order.iter().position(|(id, seq)| {
            self.map
                .get(id)
                .is_some_and(|entry| entry.seq == *seq && entry.stored.owner == largest)
        });
        match oldest.and_then(|at| self.order.remove(at)) {
            Some((id, _)) => self.remove(&id),
            None => false,
        }
    }

    /// Removes the least recently used while they have expired by `now`, and the
    /// places left behind before them. A place taken at the newest end gets the
    /// latest expiry (the ttl unchanged), so the expired are at the front.
    fn sweep_expired(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            let expired = match self.map.get(&front.0) {
                Some(entry) if entry.seq == front.1 => entry.expires <= now,
                // A place left behind: only the place goes.
                _ => {
                    self.order.pop_front();
                    continue;
                }
            };
            if !expired {
                break;
            }
            if let Some((id, _)) = self.order.pop_front() {
                self.remove(&id);
            }
        }
    }

    /// Puts `id` at the newest end of `order`, expiring at `expires`.
    fn touch(&mut self, id: &str, expires: Instant) {
        let seq = self.next_seq;
        let Some(entry) = self.map.get_mut(id) else {
            return;
        };
        self.next_seq += 1;
        entry.expires = expires;
        entry.seq = seq;
        self.order.push_back((id.to_string(), seq));
    }

    /// Renews the chain behind a new turn of `owner`'s, from `previous` back: each
    /// link lives another ttl from `now` and counts as just used, so that a
    /// conversation in use keeps its first turns. As far back as the store could hold (no more links
    /// than its entries, [`renewed_at_most`], nor bytes than its bytes); it stops at a
    /// link missing, expired or another's, as [`history`] would.
    fn renew_chain(
        &mut self,
        previous: Option<&str>,
        owner: &Arc<str>,
        limits: &StoreLimits,
        now: Instant,
    ) {
        let most = renewed_at_most(limits);
        let mut links = Vec::new();
        let mut held = 0usize;
        let mut next = previous.map(str::to_string);
        while let Some(id) = next.take() {
            if links.len() >= most {
                break;
            }
            let Some(entry) = self.map.get(&id) else {
                break;
            };
            if entry.stored.owner != *owner || entry.expires <= now {
                break;
            }
            held = held.saturating_add(entry.stored.size());
            if held > limits.max_bytes {
                break;
            }
            next = entry.stored.previous.clone();
            links.push(id);
        }
        // Oldest first, so the newest link is the most recently used.
        for id in links.iter().rev() {
            self.touch(id, now + limits.ttl);
        }
    }
}

impl ResponseStore for MemoryResponseStore {
    fn put(
        &self,
        id: String,
        stored: StoredResponse,
        limits: StoreLimits,
    ) -> BoxFuture<'static, ()> {
        self.insert(id, stored, limits);
        Box::pin(std::future::ready(()))
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        Box::pin(std::future::ready(Ok(self.lookup(id))))
    }

    fn get_owned<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        let found = self.lookup(id).filter(|s| &*s.owner == owner);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        Box::pin(std::future::ready(Ok(self
            .inner
            .lock()
            .is_ok_and(|mut e| e.remove(id)))))
    }

    fn record_native(
        &self,
        id: &str,
        record: NativeOwner,
        settings: NativeOwnerSettings,
    ) -> BoxFuture<'static, Result<(), StoreUnavailable>> {
        self.natives.put(id, record, &settings);
        Box::pin(std::future::ready(Ok(())))
    }

    fn native_owner<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<NativeOwner>, StoreUnavailable>> {
        Box::pin(std::future::ready(Ok(self.natives.get(id))))
    }

    fn forget_native(&self, id: &str) -> BoxFuture<'static, Result<(), StoreUnavailable>> {
        self.natives.forget(id);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl MemoryResponseStore {
    fn insert(&self, id: String, stored: StoredResponse, limits: StoreLimits) {
        self.insert_at(id, stored, limits, Instant::now());
    }

    /// [`Self::insert`] as at `now`.
    fn insert_at(&self, id: String, stored: StoredResponse, limits: StoreLimits, now: Instant) {
        let size = stored.size();
        if size > limits.max_bytes || limits.max_entries == 0 {
            return;
        }
        let Ok(mut entries) = self.inner.lock() else {
            return;
        };
        entries.remove(&id);
        entries.sweep_expired(now);
        // Before any eviction: the links this turn continues are the last to go.
        entries.renew_chain(stored.previous.as_deref(), &stored.owner, &limits, now);
        loop {
            let short = if entries.map.len() >= limits.max_entries {
                Shortage::Entries
            } else if entries.bytes + size > limits.max_bytes {
                Shortage::Bytes
            } else {
                break;
            };
            if !entries.evict_from_largest_holder(short, &stored.owner) {
                break;
            }
        }
        entries.bytes += size;
        let held = entries.held.entry(Arc::clone(&stored.owner)).or_default();
        held.bytes += size;
        held.entries += 1;
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.order.push_back((id.clone(), seq));
        let entry = Entry {
            stored: Arc::new(stored),
            expires: now + limits.ttl,
            seq,
        };
        entries.map.insert(id, entry);
        // The places of ids replaced, deleted or renewed linger in `order`; keep it
        // from growing past the map.
        if entries.order.len() > 2 * entries.map.len() + 16 {
            let Entries { map, order, .. } = &mut *entries;
            order.retain(|(id, seq)| map.get(id).is_some_and(|entry| entry.seq == *seq));
        }
    }

    fn lookup(&self, id: &str) -> Option<StoredResponse> {
        let entries = self.inner.lock().ok()?;
        let entry = entries.map.get(id)?;
        // Past its age it is gone, even before an insert evicts it.
        (entry.expires > Instant::now()).then(|| StoredResponse::clone(&entry.stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(previous: Option<&str>, input: &str, output: &str) -> StoredResponse {
        StoredResponse {
            owner: "key:a".into(),
            response: Bytes::from(format!(
                r#"{{"id":"x","object":"response","output":{output}}}"#
            )),
            input_items: Bytes::from(input.to_string()),
            previous: previous.map(str::to_string),
        }
    }

    fn limits() -> StoreLimits {
        StoreLimits::default()
    }

    #[test]
    fn the_memory_store_marks_nothing_under_way() {
        let store = MemoryResponseStore::default();
        assert!(store.mark_under_way("resp_x").is_none());
        assert!(store.unmark("resp_x").is_none());
    }

    #[tokio::test]
    async fn the_memory_store_has_nothing_left_to_write_at_exit() {
        let store = MemoryResponseStore::default();
        store
            .put("r1".into(), stored(None, "[]", "[]"), limits())
            .await;
        let started = Instant::now();
        store.write_out_at_exit(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(store.get("r1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn history_walks_back_the_chain_oldest_first() {
        let store = MemoryResponseStore::default();
        store
            .put(
                "r1".into(),
                stored(None, r#"[{"a":1}]"#, r#"[{"b":2}]"#),
                limits(),
            )
            .await;
        store
            .put(
                "r2".into(),
                stored(Some("r1"), r#"[{"c":3}]"#, "[]"),
                limits(),
            )
            .await;
        store
            .put(
                "r3".into(),
                stored(Some("r2"), "[]", r#"[{"d":4},{"e":5}]"#),
                limits(),
            )
            .await;
        let got = history(&store, "r3", "key:a", u64::MAX).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            r#"[{"a":1},{"b":2},{"c":3},{"d":4},{"e":5}]"#
        );
        assert_eq!(store.delete("r2").await, Ok(true));
        assert_eq!(store.delete("r2").await, Ok(false));
        assert_eq!(
            history(&store, "r3", "key:a", u64::MAX).await,
            Err(HistoryError::NotFound("r2".into()))
        );
        assert_eq!(
            history(&store, "nope", "key:a", u64::MAX).await,
            Err(HistoryError::NotFound("nope".into()))
        );
    }

    #[tokio::test]
    async fn another_callers_responses_are_not_found() {
        let store = MemoryResponseStore::default();
        store
            .put("r1".into(), stored(None, "[]", r#"[{"b":2}]"#), limits())
            .await;
        let mut theirs = stored(Some("r1"), "[]", "[]");
        theirs.owner = "key:b".into();
        store.put("r2".into(), theirs, limits()).await;
        assert!(owned(&store, "r1", "key:a").await.unwrap().is_some());
        assert!(owned(&store, "r1", "key:b").await.unwrap().is_none());
        assert!(owned(&store, "r1", "master").await.unwrap().is_none());
        // B's continuation of A's response cannot read A's part either.
        assert_eq!(
            history(&store, "r2", "key:b", u64::MAX).await,
            Err(HistoryError::NotFound("r1".into()))
        );
        assert_eq!(
            history(&store, "r1", "key:b", u64::MAX).await,
            Err(HistoryError::NotFound("r1".into()))
        );
    }

    #[tokio::test]
    async fn a_conversation_larger_than_a_request_may_be_is_not_rebuilt() {
        let store = MemoryResponseStore::default();
        let big = format!(r#"[{{"text":"{}"}}]"#, "w".repeat(1000));
        store
            .put("r1".into(), stored(None, &big, "[]"), limits())
            .await;
        store
            .put("r2".into(), stored(Some("r1"), &big, "[]"), limits())
            .await;
        assert!(history(&store, "r2", "key:a", 4000).await.is_ok());
        assert_eq!(
            history(&store, "r2", "key:a", 1500).await,
            Err(HistoryError::TooLarge("r2".into(), 1500))
        );
    }

    #[test]
    fn the_owner_is_the_gateway_key_else_the_callers_own_provider_key() {
        use crate::auth::Caller;
        let digest = || Some("ab12".to_string());
        assert_eq!(&*owner_of(Some(&Caller::Master), digest), "master");
        assert_eq!(
            &*owner_of(Some(&Caller::Managed("ci".into())), digest),
            "key:ci"
        );
        assert_eq!(&*owner_of(Some(&Caller::Open), digest), "caller:ab12");
        assert_eq!(&*owner_of(Some(&Caller::Open), || None), "open");
    }

    #[tokio::test]
    async fn one_key_filling_the_store_evicts_its_own_responses_not_anothers() {
        let store = MemoryResponseStore::default();
        let four = StoreLimits {
            max_entries: 4,
            ..limits()
        };
        let of = |owner: &str| StoredResponse {
            owner: owner.into(),
            ..stored(None, "[]", "[]")
        };
        store.put("b1".into(), of("key:b"), four).await;
        for id in ["a1", "a2", "a3", "a4", "a5", "a6"] {
            store.put(id.into(), of("key:a"), four).await;
        }
        assert!(
            store.get("b1").await.unwrap().is_some(),
            "the other key's survives"
        );
        for id in ["a4", "a5", "a6"] {
            assert!(store.get(id).await.unwrap().is_some(), "{id}");
        }
        assert!(
            store.get("a3").await.unwrap().is_none(),
            "the filler's oldest went"
        );
        // The other key, now the smaller holder, still gets its room.
        store.put("b2".into(), of("key:b"), four).await;
        assert!(
            store.get("b1").await.unwrap().is_some() && store.get("b2").await.unwrap().is_some()
        );
        assert!(store.get("a4").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_key_filling_the_store_with_small_responses_does_not_evict_a_larger_holders_chain() {
        let store = MemoryResponseStore::default();
        let four = StoreLimits {
            max_entries: 4,
            ..limits()
        };
        let large = StoredResponse {
            owner: "key:b".into(),
            ..stored(None, "[]", &format!(r#"["{}"]"#, "x".repeat(4096)))
        };
        store.put("b1".into(), large.clone(), four).await;
        store
            .put(
                "b2".into(),
                StoredResponse {
                    previous: Some("b1".into()),
                    ..large
                },
                four,
            )
            .await;
        let small = StoredResponse {
            owner: "key:a".into(),
            ..stored(None, "[]", "[]")
        };
        for i in 0..10 {
            store.put(format!("a{i}"), small.clone(), four).await;
        }
        assert!(
            store.get("b1").await.unwrap().is_some(),
            "the chain's first link stays"
        );
        assert!(store.get("b2").await.unwrap().is_some());
        assert!(
            store.get("a9").await.unwrap().is_some() && store.get("a8").await.unwrap().is_some()
        );
        assert!(
            store.get("a7").await.unwrap().is_none(),
            "the filler's own oldest went"
        );
    }

    #[tokio::test]
    async fn the_oldest_go_first_when_entries_or_bytes_run_out() {
        let store = MemoryResponseStore::default();
        let few = StoreLimits {
            max_entries: 2,
            ..limits()
        };
        for id in ["a", "b", "c"] {
            store.put(id.into(), stored(None, "[]", "[]"), few).await;
        }
        assert!(store.get("a").await.unwrap().is_none());
        assert!(store.get("b").await.unwrap().is_some() && store.get("c").await.unwrap().is_some());
        let one_size = stored(None, "[]", "[]").size();
        let small = StoreLimits {
            max_bytes: 2 * one_size,
            ..limits()
        };
        for id in ["d", "e", "f"] {
            store.put(id.into(), stored(None, "[]", "[]"), small).await;
        }
        assert!(store.get("d").await.unwrap().is_none());
        assert!(store.get("f").await.unwrap().is_some());
        // One response larger than the whole store is not kept at all.
        let tiny = StoreLimits {
            max_bytes: 4,
            ..limits()
        };
        store.put("g".into(), stored(None, "[]", "[]"), tiny).await;
        assert!(store.get("g").await.unwrap().is_none());
    }

    /// `now` less `ago`.
    fn before_now(ago: Duration) -> Instant {
        Instant::now().checked_sub(ago).unwrap()
    }

    #[tokio::test]
    async fn a_conversation_continued_within_the_ttl_outlives_its_first_turns_own() {
        let store = MemoryResponseStore::default();
        let ten_seconds = StoreLimits {
            ttl: Duration::from_secs(10),
            ..limits()
        };
        let turn = |previous, input| stored(previous, input, "[]");
        // The first turn, on its own, expired 5 s ago; the second came while it lived.
        store.insert_at(
            "r1".into(),
            turn(None, r#"[{"a":1}]"#),
            ten_seconds,
            before_now(Duration::from_secs(15)),
        );
        store.insert_at(
            "r2".into(),
            turn(Some("r1"), r#"[{"b":2}]"#),
            ten_seconds,
            before_now(Duration::from_secs(8)),
        );
        store
            .put("r3".into(), turn(Some("r2"), r#"[{"c":3}]"#), ten_seconds)
            .await;
        let got = history(&store, "r3", "key:a", u64::MAX).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            r#"[{"a":1},{"b":2},{"c":3}]"#
        );
        // Swept as an expired front would be: the renewed first turn stays.
        store
            .put("other".into(), turn(None, "[]"), ten_seconds)
            .await;
        assert!(history(&store, "r3", "key:a", u64::MAX).await.is_ok());
    }

    #[tokio::test]
    async fn at_the_entries_bound_idle_responses_go_before_the_first_turn_of_a_conversation_in_use()
    {
        let store = MemoryResponseStore::default();
        let three = StoreLimits {
            max_entries: 3,
            ..limits()
        };
        for id in ["r1", "idle1", "idle2"] {
            store.put(id.into(), stored(None, "[]", "[]"), three).await;
        }
        // The store is full as the conversation goes on: not at the expense of its root.
        store
            .put("r2".into(), stored(Some("r1"), "[]", "[]"), three)
            .await;
        store
            .put("new".into(), stored(None, "[]", "[]"), three)
            .await;
        for id in ["idle1", "idle2"] {
            assert!(store.get(id).await.unwrap().is_none(), "{id} stays");
        }
        for id in ["r1", "r2", "new"] {
            assert!(store.get(id).await.unwrap().is_some(), "{id} went");
        }
        assert!(history(&store, "r2", "key:a", u64::MAX).await.is_ok());
    }

    #[tokio::test]
    async fn another_owners_chain_is_not_renewed_by_a_continuation() {
        let store = MemoryResponseStore::default();
        let ten_seconds = StoreLimits {
            ttl: Duration::from_secs(10),
            ..limits()
        };
        let theirs = StoredResponse {
            owner: "key:b".into(),
            ..stored(None, "[]", "[]")
        };
        store.insert_at(
            "b1".into(),
            theirs,
            ten_seconds,
            before_now(Duration::from_secs(8)),
        );
        store
            .put("a2".into(), stored(Some("b1"), "[]", "[]"), ten_seconds)
            .await;
        let entries = store.inner.lock().unwrap();
        let expires = entries.map["b1"].expires;
        assert!(expires < Instant::now() + Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_expired_response_is_gone() {
        let store = MemoryResponseStore::default();
        let brief = StoreLimits {
            ttl: Duration::ZERO,
            ..limits()
        };
        store.put("a".into(), stored(None, "[]", "[]"), brief).await;
        assert!(store.get("a").await.unwrap().is_none());
        store
            .put("b".into(), stored(None, "[]", "[]"), limits())
            .await;
        // The expired one was evicted by the next insert.
        assert_eq!(store.inner.lock().unwrap().map.len(), 1);
    }
}
