//! Stored Responses API answers in Redis (`responses.store: redis`), shared by every
//! replica: a conversation goes on at whichever replica its next turn reaches.
//!
//! Each response is a hash that expires with `store_ttl`. What each owner holds is a
//! sorted set of `{size}:{id}` scored by when each expires, beside a count of its
//! bytes, so that one script per store keeps every owner within `store_max_entries`
//! and `store_max_bytes`, its oldest going first: one key filling the store evicts its
//! own responses, never another key's. The key names are the script's only
//! undeclared ones; the store is a single Redis or a primary, never a Cluster.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::Script;

use super::response_store::{ResponseStore, StoreLimits, StoreUnavailable, StoredResponse};
use crate::config::RedisAddress;
use crate::limits::{OnceAMinute, RedisLink};
use crate::translate::generated_id::is_generated;

const ENTRY_PREFIX: &str = "aurora:resp:";
const OWNER_IDS_PREFIX: &str = "aurora:resps:ids:";
const OWNER_BYTES_PREFIX: &str = "aurora:resps:bytes:";

/// Keeps one response within its owner's bounds. KEYS: the response, its owner's ids,
/// its owner's bytes. ARGV: now (ms), ttl (ms), max entries, max bytes, id, size,
/// owner, response, input items, previous id (empty for none), the response keys'
/// prefix.
const PUT: &str = r"
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local size = tonumber(ARGV[6])
local bytes = tonumber(redis.call('GET', KEYS[3]) or '0')
local function forget(member)
  if redis.call('ZREM', KEYS[2], member) == 0 then return nil end
  local sep = string.find(member, ':', 1, true)
  bytes = bytes - tonumber(string.sub(member, 1, sep - 1))
  return string.sub(member, sep + 1)
end
-- The expired are gone from Redis by themselves: their bytes are given back here.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  forget(member)
end
local before = redis.call('HGET', KEYS[1], 'size')
if before then forget(before .. ':' .. ARGV[5]) end
while redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) or bytes + size > tonumber(ARGV[4]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  local id = forget(oldest)
  if id then redis.call('DEL', ARGV[11] .. id) end
end
if bytes < 0 then bytes = 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[7], 'response', ARGV[8], 'input', ARGV[9],
  'previous', ARGV[10], 'size', size)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, size .. ':' .. ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[3], bytes + size, 'PX', ttl)
return 1
";

/// Forgets one response and what its owner held of it. KEYS: the response. ARGV: the
/// owners' ids prefix, the owners' bytes prefix, the id. 1 if it was there.
const DELETE: &str = r"
local held = redis.call('HMGET', KEYS[1], 'owner', 'size')
if not held[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('ZREM', ARGV[1] .. held[1], held[2] .. ':' .. ARGV[3]) == 1 then
  local bytes = ARGV[2] .. held[1]
  if redis.call('EXISTS', bytes) == 1 then redis.call('DECRBY', bytes, held[2]) end
end
return 1
";

/// After a response the gateway made is not found, how long its read waits for it,
/// in steps: the replica that answered it writes it as the answer ends, and the
/// client's next turn may reach another replica a moment before that write lands.
const LATE_WRITE_WAITS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(150),
];

/// The store in Redis.
pub struct RedisResponseStore {
    link: Arc<RedisLink>,
    put: Script,
    delete: Script,
    unwritten: Arc<OnceAMinute>,
}

impl std::fmt::Debug for RedisResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("RedisResponseStore")
    }
}

impl RedisResponseStore {
    /// A store in the Redis at `address`; it connects on first use.
    pub fn at(address: &RedisAddress) -> Result<Self, StoreUnavailable> {
        let link = RedisLink::new(address).map_err(|e| StoreUnavailable(e.0))?;
        Ok(Self {
            link: Arc::new(link),
            put: Script::new(PUT),
            delete: Script::new(DELETE),
            unwritten: Arc::new(OnceAMinute::new()),
        })
    }

    async fn read(&self, id: &str) -> Result<Option<StoredResponse>, StoreUnavailable> {
        let mut conn = self.link.connection().await.map_err(unavailable)?;
        let mut read = redis::cmd("HMGET");
        read.arg(entry_key(id))
            .arg("owner")
            .arg("response")
            .arg("input")
            .arg("previous");
        type Fields = (
            Option<String>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<String>,
        );
        let fields: Fields = self
            .link
            .within(read.query_async(&mut conn), "a stored response's read", 1)
            .await
            .map_err(unavailable)?;
        let (Some(owner), Some(response), Some(input), previous) = fields else {
            return Ok(None);
        };
        Ok(Some(StoredResponse {
            owner: owner.into(),
            response: Bytes::from(response),
            input_items: Bytes::from(input),
            previous: previous.filter(|p| !p.is_empty()),
        }))
    }
}

fn unavailable(e: crate::limits::StoreError) -> StoreUnavailable {
    StoreUnavailable(e.0)
}

fn entry_key(id: &str) -> String {
    format!("{ENTRY_PREFIX}{id}")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ResponseStore for RedisResponseStore {
    fn put(
        &self,
        id: String,
        stored: StoredResponse,
        limits: StoreLimits,
    ) -> BoxFuture<'static, ()> {
        let (link, unwritten) = (Arc::clone(&self.link), Arc::clone(&self.unwritten));
        let script = self.put.clone();
        let size = stored.size();
        let storable = size <= limits.max_bytes && limits.max_entries > 0;
        Box::pin(async move {
            if !storable {
                return;
            }
            let owner = &*stored.owner;
            let mut call = script.prepare_invoke();
            call.key(entry_key(&id))
                .key(format!("{OWNER_IDS_PREFIX}{owner}"))
                .key(format!("{OWNER_BYTES_PREFIX}{owner}"))
                .arg(unix_ms())
                .arg(
                    u64::try_from(limits.ttl.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )
                .arg(limits.max_entries)
                .arg(limits.max_bytes)
                .arg(&id)
                .arg(size)
                .arg(owner)
                .arg(&stored.response[..])
                .arg(&stored.input_items[..])
                .arg(stored.previous.as_deref().unwrap_or(""))
                .arg(ENTRY_PREFIX);
            let written = match link.connection().await {
                Ok(mut conn) => {
                    let call = call.invoke_async::<i64>(&mut conn);
                    link.within(call, "a response's write", 1).await.map(drop)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                if unwritten.due() {
                    log::warn!(
                        "a Responses API answer was not stored, so it cannot be continued: {e} \
                         (said once a minute)"
                    );
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredResponse>, StoreUnavailable>> {
        Box::pin(async move {
            let found = self.read(id).await?;
            if found.is_some() || !is_generated(id, "resp_") {
                return Ok(found);
            }
            for wait in LATE_WRITE_WAITS {
                tokio::time::sleep(wait).await;
                if let Some(found) = self.read(id).await? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        Box::pin(async move {
            let mut conn = self.link.connection().await.map_err(unavailable)?;
            let mut call = self.delete.prepare_invoke();
            call.key(entry_key(id))
                .arg(OWNER_IDS_PREFIX)
                .arg(OWNER_BYTES_PREFIX)
                .arg(id);
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
