//! Stored Responses API answers in Redis (`responses.store: redis`), shared by every
//! replica: a conversation goes on at whichever replica its next turn reaches.
//!
//! Each response is a hash that expires with `store_ttl`; each turn stored renews the
//! conversation behind it, so a conversation in use stays. The store's bounds hold for
//! the store as a whole, as in memory: past one, the key holding the most of what ran
//! out loses its least recently used (one key filling the store evicts its own
//! responses, never another key's). For that each owner has a sorted set of its
//! `{size}:{id}` scored by when each expires (renewed as it is used, so the soonest
//! to expire is the least recently used), two sorted sets give each owner's bytes and
//! entries, and a hash the totals; one script per write keeps them, on Redis's clock.
//! The key names a script builds are its only undeclared ones: the store is a single
//! Redis or a primary, never a Cluster.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::Script;

use super::native_owner::{NativeOwner, NativeOwnerSettings};
use super::native_owner_redis;
use super::response_store::{ResponseStore, StoreLimits, StoreUnavailable, StoredResponse};
use super::response_write_redis::{self as write, ResponseWrite};
use super::unfinished_writes::UnfinishedWrites;
use crate::config::RedisAddress;
use crate::limits::{OnceAMinute, RedisCalled, RedisLink, QUIET_AFTER_LOSS, REDIS_NOW_MS};
use crate::translate::generated_id::is_generated;

/// How a response's key starts; its id follows.
pub(super) const ENTRY_PREFIX: &str = "aurora:resp:";
const OWNER_IDS_PREFIX: &str = "aurora:resps:ids:";
/// How the key marking a response under way starts; its id follows.
pub(super) const UNDER_WAY_PREFIX: &str = "aurora:resps:under_way:";
/// How the key saying a response was deleted starts; its id follows.
pub(super) const DELETED_PREFIX: &str = "aurora:resps:deleted:";
/// How long a deletion is remembered: well past the last time a write of the response
/// may be made again (its tries, a second apart; the exit's, within its bound).
const DELETED_KEPT_MS: u64 = 10 * 60 * 1000;
const BYTES_HELD: &str = "aurora:resps:bytes";
const ENTRIES_HELD: &str = "aurora:resps:entries";
const TOTALS: &str = "aurora:resps:totals";
const EXPIRIES: &str = "aurora:resps:expiries";

/// What the writing scripts share, after Redis's clock ([`REDIS_NOW_MS`]): `forget`, which takes one of an owner's
/// responses out of the books (not the response itself), once: the index of every
/// response by when it expires says whether the books still count it; `sweep`, which
/// takes every owner's expired responses out of them. KEYS[2..5]: bytes held, entries
/// held, totals, every response by when it expires (`{owner}\0{size}:{id}`). ARGV[1]:
/// the owners' id sets' prefix.
const BOOKS: &str = r"
local function forget(holder, member)
  redis.call('ZREM', ARGV[1] .. holder, member)
  if redis.call('ZREM', KEYS[5], holder .. '\0' .. member) == 0 then return end
  local size = tonumber(string.sub(member, 1, string.find(member, ':', 1, true) - 1))
  redis.call('HINCRBY', KEYS[4], 'bytes', -size)
  redis.call('HINCRBY', KEYS[4], 'entries', -1)
  redis.call('ZINCRBY', KEYS[2], -size, holder)
  if tonumber(redis.call('ZINCRBY', KEYS[3], -1, holder)) <= 0 then
    redis.call('ZREM', KEYS[2], holder)
    redis.call('ZREM', KEYS[3], holder)
  end
end
local function sweep(most)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, most)
  for _, entry in ipairs(expired) do
    local sep = string.find(entry, '\0', 1, true)
    if sep then
      forget(string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1))
    else
      redis.call('ZREM', KEYS[5], entry)
    end
  end
  return #expired
end
";

/// Keeps one response within the store's bounds, and renews the conversation it
/// continues. KEYS: the response, bytes held, entries held, totals, expiries. ARGV:
/// the owners' id sets' prefix, the responses' prefix, ttl (ms), max entries, max
/// bytes, id, size, owner, response, input items, previous id (empty for none), the
/// prefix of the marks of responses under way, the prefix of the deletions
/// remembered, how many links behind it are renewed at most.
const PUT: &str = r"
-- A response deleted since this write was first made (a try whose answer was lost,
-- then made again; a write made again as its replica stops) stays deleted.
if redis.call('GET', ARGV[13] .. ARGV[6]) then
  redis.call('DEL', ARGV[12] .. ARGV[6])
  return 0
end
local ttl = tonumber(ARGV[3])
local max_entries = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[5])
local id, size, owner = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local mine = ARGV[1] .. owner
-- Kept as long as what they count: the longest time any replica keeps a response.
local function last(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
-- The expired are gone from Redis by themselves: out of the books here, every
-- owner's, a few hundred at a time, so that a key gone idle holds no place past
-- its responses' time.
sweep(256)
local before = redis.call('HMGET', KEYS[1], 'owner', 'size')
if before[1] then forget(before[1], before[2] .. ':' .. id) end
-- This very write may be counted already, its hash gone since (a write made again
-- after a try whose answer was lost, the hash evicted meanwhile): counted once.
forget(owner, size .. ':' .. id)
-- A conversation in use stays: every link behind this one, its owner's, lives another
-- ttl and counts as just used (eviction takes the soonest to expire), before any
-- eviction. As far back as the store could hold, no further than a read of it goes:
-- at most so many links, and no more bytes than the store's.
local link, links, behind = ARGV[11], 0, 0
while link ~= '' and links < tonumber(ARGV[14]) do
  local f = redis.call('HMGET', ARGV[2] .. link, 'owner', 'size', 'previous')
  local link_size = tonumber(f[2])
  if f[1] ~= owner or not link_size then break end
  behind = behind + link_size
  if behind > max_bytes then break end
  local member = f[2] .. ':' .. link
  -- Only what the books count is renewed: they go on counting it once.
  if redis.call('ZSCORE', KEYS[5], owner .. '\0' .. member) then
    redis.call('PEXPIRE', ARGV[2] .. link, ttl)
    redis.call('ZADD', mine, now + ttl, member)
    redis.call('ZADD', KEYS[5], now + ttl, owner .. '\0' .. member)
  end
  links = links + 1
  link = f[3] or ''
end
-- At a bound, every expired response leaves the books before a live one goes.
local swept_all = false
while true do
  local totals = redis.call('HMGET', KEYS[4], 'entries', 'bytes')
  local short
  if tonumber(totals[1] or '0') >= max_entries then
    short = KEYS[3]
  elseif tonumber(totals[2] or '0') + size > max_bytes then
    short = KEYS[2]
  else
    break
  end
  if not swept_all then
    swept_all = true
    sweep(-1)
  else
    local largest = redis.call('ZREVRANGE', short, 0, 0, 'WITHSCORES')
    if not largest[1] then
      -- Nothing is held by the books, whatever the totals say: they start over.
      redis.call('DEL', KEYS[4])
      break
    end
    local holder = largest[1]
    local own = redis.call('ZSCORE', short, owner)
    if own and tonumber(own) == tonumber(largest[2]) then holder = owner end
    local oldest = redis.call('ZRANGE', ARGV[1] .. holder, 0, 0)[1]
    if oldest then
      forget(holder, oldest)
      redis.call('DEL', ARGV[2] .. string.sub(oldest, string.find(oldest, ':', 1, true) + 1))
    elseif sweep(-1) == 0 then
      -- Held by the books to what neither its set nor the index lists: that goes.
      local bytes = tonumber(redis.call('ZSCORE', KEYS[2], holder) or '0')
      local entries = tonumber(redis.call('ZSCORE', KEYS[3], holder) or '0')
      redis.call('HINCRBY', KEYS[4], 'bytes', -bytes)
      redis.call('HINCRBY', KEYS[4], 'entries', -entries)
      redis.call('ZREM', KEYS[2], holder)
      redis.call('ZREM', KEYS[3], holder)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', owner, 'response', ARGV[9], 'input', ARGV[10],
  'previous', ARGV[11], 'size', size)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', mine, now + ttl, size .. ':' .. id)
redis.call('ZADD', KEYS[5], now + ttl, owner .. '\0' .. size .. ':' .. id)
redis.call('ZINCRBY', KEYS[2], size, owner)
redis.call('ZINCRBY', KEYS[3], 1, owner)
redis.call('HINCRBY', KEYS[4], 'bytes', size)
redis.call('HINCRBY', KEYS[4], 'entries', 1)
for _, key in ipairs({mine, KEYS[2], KEYS[3], KEYS[4], KEYS[5]}) do last(key) end
redis.call('DEL', ARGV[12] .. id)
return 1
";

/// Forgets one response and its place in the books, and remembers for a while that it
/// was deleted, so that a write of it made again does not bring it back. KEYS: the
/// response, bytes held, entries held, totals, expiries. ARGV: the owners' id sets'
/// prefix, the id, the prefix of the deletions remembered, how long (ms). 1 if it was
/// there.
const DELETE: &str = r"
local held = redis.call('HMGET', KEYS[1], 'owner', 'size')
if not held[1] then return 0 end
redis.call('DEL', KEYS[1])
forget(held[1], held[2] .. ':' .. ARGV[2])
redis.call('SET', ARGV[3] .. ARGV[2], 1, 'PX', ARGV[4])
return 1
";

/// Follows a conversation back from one response, each link its owner's, at most a
/// number of links and no link past the one that takes their bytes over a bound. ARGV:
/// the responses' prefix, the first id, the owner, most links, most bytes. Each link
/// as four values: id, response, input items, previous id (empty for none).
const CHAIN: &str = r"
local links = {}
local id = ARGV[2]
local held = 0
for _ = 1, tonumber(ARGV[4]) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'owner', 'response', 'input', 'previous')
  if f[1] ~= ARGV[3] or not f[2] or not f[3] then break end
  local previous = f[4] or ''
  for _, value in ipairs({id, f[2], f[3], previous}) do links[#links + 1] = value end
  held = held + #f[2] + #f[3]
  if held > tonumber(ARGV[5]) or previous == '' then break end
  id = previous
end
return links
";

/// After a response under way is not found, how long its read waits for it, in steps:
/// the replica that answers it writes it as the answer ends, and the client's next
/// turn may reach another replica a moment before that write lands.
const LATE_WRITE_WAITS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(150),
];

/// How long a response stays marked as under way, unless its write clears the mark
/// sooner: as long as an answer may take.
const UNDER_WAY_KEPT_MS: u64 = 30 * 60 * 1000;

/// How often a write is tried: one that failed is tried again once Redis is asked
/// again, past the quiet after a loss.
const WRITE_TRIES: u32 = 3;

/// The store in Redis.
pub struct RedisResponseStore {
    link: Arc<RedisLink>,
    put: Script,
    delete: Script,
    chain: Script,
    unwritten: Arc<OnceAMinute>,
    /// The writes begun and not ended: those the runtimes dropped as the server
    /// stopped are made again at exit.
    unfinished: Arc<UnfinishedWrites<ResponseWrite>>,
}

impl std::fmt::Debug for RedisResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("RedisResponseStore")
    }
}

/// A stored response's fields, as read.
type Fields = (
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
);

impl RedisResponseStore {
    /// A store in the Redis at `address`; it connects on first use.
    pub fn at(address: &RedisAddress) -> Result<Self, StoreUnavailable> {
        let link = RedisLink::new(address).map_err(|e| StoreUnavailable(e.0))?;
        Ok(Self {
            link: Arc::new(link),
            put: Script::new(&writing_script(PUT)),
            delete: Script::new(&writing_script(DELETE)),
            chain: Script::new(CHAIN),
            unwritten: Arc::new(OnceAMinute::new()),
            unfinished: Arc::default(),
        })
    }

    /// The response under `id`, and whether it is marked as under way.
    async fn read(&self, id: &str) -> Result<(Option<StoredResponse>, bool), StoreUnavailable> {
        let mut conn = self.link.connection().await.map_err(unavailable)?;
        let mut read = redis::pipe();
        read.cmd("HMGET")
            .arg(format!("{ENTRY_PREFIX}{id}"))
            .arg("owner")
            .arg("response")
            .arg("input")
            .arg("previous");
        read.cmd("EXISTS").arg(format!("{UNDER_WAY_PREFIX}{id}"));
        let (fields, under_way): (Fields, bool) = self
            .link
            .within(read.query_async(&mut conn), "a stored response's read", 1)
            .await
            .map_err(unavailable)?;
        let (Some(owner), Some(response), Some(input), previous) = fields else {
            return Ok((None, under_way));
        };
        let stored = StoredResponse {
            owner: owner.into(),
            response: Bytes::from(response),
            input_items: Bytes::from(input),
            previous: previous.filter(|p| !p.is_empty()),
        };
        Ok((Some(stored), under_way))
    }

    /// `command` (a mark's write or removal), sent apart from any request: a mark not
    /// made or not removed costs a read at another replica its wait, nothing more.
    fn send_mark(&self, command: redis::Cmd, what: &'static str) -> BoxFuture<'static, ()> {
        let link = Arc::clone(&self.link);
        Box::pin(async move {
            if let Ok(mut conn) = link.connection().await {
                let _ = link
                    .within(command.query_async::<()>(&mut conn), what, 1)
                    .await;
            }
        })
    }
}

/// A script that writes the books: Redis's clock, what the books share, then `body`.
fn writing_script(body: &str) -> String {
    format!("{REDIS_NOW_MS}{BOOKS}{body}")
}

fn unavailable(e: crate::limits::StoreError) -> StoreUnavailable {
    StoreUnavailable(e.0)
}

/// The books' keys, after the response's own.
pub(super) fn books(call: &mut redis::ScriptInvocation<'_>, id: &str) {
    call.key(format!("{ENTRY_PREFIX}{id}"))
        .key(BYTES_HELD)
        .key(ENTRIES_HELD)
        .key(TOTALS)
        .key(EXPIRIES)
        .arg(OWNER_IDS_PREFIX);
}

impl ResponseStore for RedisResponseStore {
    fn put(
        &self,
        id: String,
        stored: StoredResponse,
        limits: StoreLimits,
    ) -> BoxFuture<'static, ()> {
        if stored.size() > limits.max_bytes || limits.max_entries == 0 {
            // Never kept: its mark goes, so that a read is not kept waiting for it.
            return self.unmark(&id).unwrap_or_else(|| Box::pin(async {}));
        }
        let (link, unwritten) = (Arc::clone(&self.link), Arc::clone(&self.unwritten));
        let (script, unfinished) = (self.put.clone(), Arc::clone(&self.unfinished));
        // Held from now, not from the future's first poll: a future dropped unpolled
        // (its runtime stopping) leaves it to be made at exit all the same.
        let (ticket, write) = self.unfinished.begin(ResponseWrite { id, stored, limits });
        Box::pin(async move {
            let mut tries = 0;
            let failed = loop {
                tries += 1;
                match write.try_once(&link, &script).await {
                    RedisCalled::Done(_) => break None,
                    RedisCalled::Unsent(e)
                    | RedisCalled::Refused(e)
                    | RedisCalled::NotMade(e)
                    | RedisCalled::InDoubt(e) => {
                        if tries >= WRITE_TRIES {
                            break Some(e);
                        }
                    }
                }
                tokio::time::sleep(QUIET_AFTER_LOSS).await;
            };
            // Written, or given up on and said: not made again at exit.
            unfinished.finish(ticket);
            if let Some(failed) = failed {
                if unwritten.due() {
                    log::warn!(
                        "a Responses API answer was not stored, so it cannot be continued or \
                         read: {failed} (said once a minute)"
                    );
                }
            }
        })
    }

    fn write_out_at_exit(&self, bound: Duration) {
        write::write_out_at_exit(&self.unfinished, &self.link, &self.put, bound);
    }

    fn mark_under_way(&self, id: &str) -> Option<BoxFuture<'static, ()>> {
        let mut mark = redis::cmd("SET");
        mark.arg(format!("{UNDER_WAY_PREFIX}{id}"))
            .arg(1)
            .arg("PX")
            .arg(UNDER_WAY_KEPT_MS);
        Some(self.send_mark(mark, "a response's mark"))
    }

    fn unmark(&self, id: &str) -> Option<BoxFuture<'static, ()>> {
        let mut unmark = redis::cmd("DEL");
        unmark.arg(format!("{UNDER_WAY_PREFIX}{id}"));
        Some(self.send_mark(unmark, "a response's unmark"))
    }

    fn chain<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        most: usize,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<(String, StoredResponse)>, StoreUnavailable>> {
        Box::pin(async move {
            if !is_generated(id, "resp_") {
                return Ok(Vec::new());
            }
            let mut conn = self.link.connection().await.map_err(unavailable)?;
            let mut call = self.chain.prepare_invoke();
            call.arg(ENTRY_PREFIX)
                .arg(id)
                .arg(owner)
                .arg(most)
                .arg(max_bytes);
            let values: Vec<Vec<u8>> = self
                .link
                .within(call.invoke_async(&mut conn), "a conversation's read", 4)
                .await
                .map_err(unavailable)?;
            let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
            let owner: Arc<str> = owner.into();
            let mut values = values.into_iter();
            let mut links = Vec::new();
            while let (Some(id), Some(response), Some(input), Some(previous)) =
                (values.next(), values.next(), values.next(), values.next())
            {
                let stored = StoredResponse {
                    owner: Arc::clone(&owner),
                    response: Bytes::from(response),
                    input_items: Bytes::from(input),
                    previous: Some(text(previous)).filter(|p| !p.is_empty()),
                };
                links.push((text(id), stored));
            }
            Ok(links)
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        Box::pin(async move {
            // Only ids the gateway made are ever stored: another is not asked for.
            if !is_generated(id, "resp_") {
                return Ok(None);
            }
            Ok(self.read(id).await?.0)
        })
    }

    fn get_owned<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        Box::pin(async move {
            if !is_generated(id, "resp_") {
                return Ok(None);
            }
            let owned = |found: Option<StoredResponse>| found.filter(|s| &*s.owner == owner);
            let (found, under_way) = self.read(id).await?;
            if found.is_some() || !under_way {
                return Ok(owned(found));
            }
            for wait in LATE_WRITE_WAITS {
                tokio::time::sleep(wait).await;
                if let (Some(found), _) = self.read(id).await? {
                    return Ok(owned(Some(found)));
                }
            }
            Ok(None)
        })
    }

    fn record_native(
        &self,
        id: &str,
        record: NativeOwner,
        settings: NativeOwnerSettings,
    ) -> BoxFuture<'static, Result<(), StoreUnavailable>> {
        let (link, id) = (Arc::clone(&self.link), id.to_string());
        Box::pin(async move { native_owner_redis::write(&link, &id, &record, &settings).await })
    }

    fn native_owner<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<NativeOwner>, StoreUnavailable>> {
        Box::pin(native_owner_redis::read(&self.link, id))
    }

    fn forget_native(&self, id: &str) -> BoxFuture<'static, Result<(), StoreUnavailable>> {
        let (link, id) = (Arc::clone(&self.link), id.to_string());
        Box::pin(async move { native_owner_redis::forget(&link, &id).await })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        Box::pin(async move {
            if !is_generated(id, "resp_") {
                return Ok(false);
            }
            let mut conn = self.link.connection().await.map_err(unavailable)?;
            let mut call = self.delete.prepare_invoke();
            books(&mut call, id);
            call.arg(id).arg(DELETED_PREFIX).arg(DELETED_KEPT_MS);
            let deleted: i64 = self
                .link
                .within(
                    call.invoke_async(&mut conn),
                    "a stored response's delete",
                    1,
                )
                .await
                .map_err(unavailable)?;
            Ok(deleted == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_reads_redis_clock_with_its_writes_replicated() {
        for body in [PUT, DELETE] {
            let script = writing_script(body);
            assert!(script
                .trim_start()
                .starts_with("if redis.replicate_commands"));
            assert!(script.contains("redis.call('TIME')"));
        }
    }
}
