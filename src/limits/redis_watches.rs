//! The background work each replica polls, kept in Redis beside its own list: a
//! replica that stops (an upgrade, a crash) leaves its work to the others, which
//! take it over once its lease has run out, and a `DELETE` at any replica finds work
//! another one watches.
//!
//! Keys, all under one hash tag: `aurora:{poll}:work` (name → the work's record, as
//! the poll writes it), `aurora:{poll}:owner` (name → the replica polling it),
//! `aurora:{poll}:seen` (name → when its owner last wrote it), `aurora:{poll}:due`
//! (name → when to look at it again) and `aurora:{poll}:alive` (replica → until when
//! it polls). Every time is Redis's own (`TIME`, in milliseconds), so replicas whose
//! clocks differ agree on it. The calls go through a connection of their own: one
//! slow or lost never holds up the requests' limits.

use redis::Script;

use super::redis_link::Link;
use super::StoreError;
use crate::config::RedisAddress;

const WORK: &str = "aurora:{poll}:work";
const OWNER: &str = "aurora:{poll}:owner";
const SEEN: &str = "aurora:{poll}:seen";
const DUE: &str = "aurora:{poll}:due";
const ALIVE: &str = "aurora:{poll}:alive";

/// Redis's time in milliseconds, as `now`, in each script that starts with it (its
/// effects replicated, as a script that reads `TIME` and then writes must ask for on
/// Redis before 5).
pub const REDIS_NOW_MS: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
";

/// Writes the work `name` that `me` polls, due in `wait` ms. KEYS: work, owner, seen,
/// due. ARGV: me, name, record, wait.
const KEEP: &str = r"
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], now)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[2])
return 1
";

/// Gives the work `name` back, for any replica to take over in `delay` ms. KEYS:
/// owner, due. ARGV: name, delay.
const GIVE_BACK: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// Says `me` polls its work for `lease` more ms (a negative lease: no more). KEYS:
/// alive. ARGV: me, lease.
const ALIVE_FOR: &str = r"
local lease = tonumber(ARGV[2])
if lease < 0 then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], now + lease, ARGV[1]) end
return 1
";

/// Takes over for `me` the work that is due and whose replica stopped (its lease has
/// run out), or that nobody wrote for `stale` ms (a replica that lost it): at most
/// `most` of the first `scan` due, each then due again in `lease` ms, when its new
/// owner has not written it by then. Work whose replica is alive is looked at again
/// when that replica's lease runs out, out of the way of the rest. KEYS: work, owner,
/// seen, due, alive. ARGV: me, lease, stale, scan, most. Returns name, record, name,
/// record, ….
const CLAIM: &str = r"
local me, lease, stale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local scan, most = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, taken = {}, 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, scan)) do
  if taken >= most then break end
  local record = redis.call('HGET', KEYS[1], name)
  if not record then
    redis.call('ZREM', KEYS[4], name)
    redis.call('HDEL', KEYS[2], name)
    redis.call('HDEL', KEYS[3], name)
  else
    local owner = redis.call('HGET', KEYS[2], name)
    local alive = owner and tonumber(redis.call('ZSCORE', KEYS[5], owner))
    local seen = tonumber(redis.call('HGET', KEYS[3], name)) or now
    if not alive or alive < now or seen + stale < now then
      redis.call('HSET', KEYS[2], name, me)
      redis.call('HSET', KEYS[3], name, now)
      redis.call('ZADD', KEYS[4], now + lease, name)
      out[#out + 1] = name
      out[#out + 1] = record
      taken = taken + 1
    else
      redis.call('ZADD', KEYS[4], alive, name)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
return out
";

/// The work replicas poll, in Redis.
pub struct SharedWatches {
    link: Link,
    keep: Script,
    give_back: Script,
    alive: Script,
    claim: Script,
}

impl SharedWatches {
    /// The work shared in the Redis at `address`, through a connection of its own.
    pub fn new(address: &RedisAddress) -> Result<Self, StoreError> {
        let script = |body: &str| Script::new(&format!("{REDIS_NOW_MS}{body}"));
        Ok(Self {
            link: Link::new(address)?,
            keep: script(KEEP),
            give_back: script(GIVE_BACK),
            alive: script(ALIVE_FOR),
            claim: script(CLAIM),
        })
    }

    /// `me` polls the work `name` (its `record`) next in `wait_ms`.
    pub async fn keep(
        &self,
        me: &str,
        name: &str,
        record: &str,
        wait_ms: u64,
    ) -> Result<(), StoreError> {
        let mut call = self.keep.prepare_invoke();
        call.key(WORK).key(OWNER).key(SEEN).key(DUE);
        call.arg(me).arg(name).arg(record).arg(wait_ms);
        self.run(call, "a background work's record").await
    }

    /// The work `name` is settled, or given up: no replica polls it any more.
    pub async fn forget(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.link.connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(WORK, name)
            .ignore()
            .hdel(OWNER, name)
            .ignore()
            .hdel(SEEN, name)
            .ignore()
            .zrem(DUE, name)
            .ignore();
        self.link
            .within(
                pipe.query_async::<()>(&mut conn),
                "a background work's record",
                1,
            )
            .await
    }

    /// This replica cannot poll the work `name` it took over: any replica may take it
    /// in `delay_ms`.
    pub async fn give_back(&self, name: &str, delay_ms: u64) -> Result<(), StoreError> {
        let mut call = self.give_back.prepare_invoke();
        call.key(OWNER).key(DUE).arg(name).arg(delay_ms);
        self.run(call, "a background work's record").await
    }

    /// `me` polls its work for `lease_ms` more (or, with `None`, no more: its work goes
    /// to the others as it comes due).
    pub async fn alive(&self, me: &str, lease_ms: Option<u64>) -> Result<(), StoreError> {
        let lease = lease_ms.map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let mut call = self.alive.prepare_invoke();
        call.key(ALIVE).arg(me).arg(lease);
        self.run(call, "a poll's lease").await
    }

    /// Takes over for `me` up to `most` pieces of due work whose replica stopped, or
    /// that nobody wrote for `stale_ms`, each due again in `lease_ms` unless its new
    /// owner writes it: their names and records.
    pub async fn claim(
        &self,
        me: &str,
        lease_ms: u64,
        stale_ms: u64,
        most: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.link.connection().await?;
        let mut call = self.claim.prepare_invoke();
        call.key(WORK).key(OWNER).key(SEEN).key(DUE).key(ALIVE);
        call.arg(me)
            .arg(lease_ms)
            .arg(stale_ms)
            .arg(most.saturating_mul(4))
            .arg(most);
        let flat: Vec<String> = self
            .link
            .within(
                call.invoke_async(&mut conn),
                "a takeover of background work",
                2,
            )
            .await?;
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(name), Some(record)) = (items.next(), items.next()) {
            pairs.push((name, record));
        }
        Ok(pairs)
    }

    /// The record of the work `name`, if some replica polls it.
    pub async fn find(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.link.connection().await?;
        let mut get = redis::cmd("HGET");
        get.arg(WORK).arg(name);
        self.link
            .within(get.query_async(&mut conn), "a background work's record", 1)
            .await
    }

    async fn run(&self, call: redis::ScriptInvocation<'_>, what: &str) -> Result<(), StoreError> {
        let mut conn = self.link.connection().await?;
        self.link
            .within(call.invoke_async::<()>(&mut conn), what, 1)
            .await
    }
}
