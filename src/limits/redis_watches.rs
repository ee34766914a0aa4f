//! The background work each replica polls, kept in Redis beside its own list: a
//! replica that stops (an upgrade, a crash) leaves its work to the others, which
//! take it over once its lease on it has run out, and a `DELETE` at any replica finds
//! work another one watches.
//!
//! Keys, all under one hash tag: `aurora:{poll}:work` (name → the work's record, as
//! the poll writes it), `aurora:{poll}:owner` (name → the replica polling it),
//! `aurora:{poll}:due` (name → when it is next polled, Unix milliseconds) and
//! `aurora:{poll}:alive` (replica → until when it polls, Unix milliseconds).

use std::sync::Arc;

use redis::Script;

use super::redis_link::Link;
use super::StoreError;

const WORK: &str = "aurora:{poll}:work";
const OWNER: &str = "aurora:{poll}:owner";
const DUE: &str = "aurora:{poll}:due";
const ALIVE: &str = "aurora:{poll}:alive";

/// Takes over work whose replica stopped: of the work due by `now` (at most `scan`
/// names), each whose owner is not alive at `now` is given to `me` and not due again
/// before `lease until` (the new owner polls it and says when). KEYS: work, owner,
/// due, alive. ARGV: me, now, lease until, scan, most taken. Returns name, record,
/// name, record, ….
const CLAIM: &str = r"
local me, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local scan, most = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, taken = {}, 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, scan)) do
  if taken >= most then break end
  local owner = redis.call('HGET', KEYS[2], name)
  local record = redis.call('HGET', KEYS[1], name)
  if not record then
    redis.call('ZREM', KEYS[3], name)
    redis.call('HDEL', KEYS[2], name)
  elseif owner ~= me then
    local alive = owner and tonumber(redis.call('ZSCORE', KEYS[4], owner))
    if not alive or alive < now then
      redis.call('HSET', KEYS[2], name, me)
      redis.call('ZADD', KEYS[3], lease, name)
      out[#out + 1] = name
      out[#out + 1] = record
      taken = taken + 1
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
return out
";

/// The work replicas poll, in Redis.
pub struct SharedWatches {
    link: Arc<Link>,
    claim: Script,
}

impl SharedWatches {
    pub fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            claim: Script::new(CLAIM),
        }
    }

    /// `me` polls the work `name` (its `record`) next at `due`.
    pub async fn keep(
        &self,
        me: &str,
        name: &str,
        record: &str,
        due: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hset(WORK, name, record)
            .ignore()
            .hset(OWNER, name, me)
            .ignore()
            .zadd(DUE, name, due)
            .ignore();
        self.run(pipe, "a background work's record").await
    }

    /// The work `name` is settled, or given up: no replica polls it any more.
    pub async fn forget(&self, name: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hdel(WORK, name)
            .ignore()
            .hdel(OWNER, name)
            .ignore()
            .zrem(DUE, name)
            .ignore();
        self.run(pipe, "a background work's record").await
    }

    /// `me` polls its work until `until` (or, with `None`, stops now: its work goes to
    /// the others at once).
    pub async fn alive(&self, me: &str, until: Option<u64>) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        match until {
            Some(until) => pipe.zadd(ALIVE, me, until).ignore(),
            None => pipe.zrem(ALIVE, me).ignore(),
        };
        self.run(pipe, "a poll's lease").await
    }

    /// Takes over for `me` up to `most` pieces of work due by `now` whose replica
    /// stopped, each not due again before `lease_until`: their names and records.
    pub async fn claim(
        &self,
        me: &str,
        now: u64,
        lease_until: u64,
        most: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.link.connection().await?;
        let mut call = self.claim.prepare_invoke();
        call.key(WORK)
            .key(OWNER)
            .key(DUE)
            .key(ALIVE)
            .arg(me)
            .arg(now)
            .arg(lease_until)
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

    async fn run(&self, pipe: redis::Pipeline, what: &str) -> Result<(), StoreError> {
        let mut conn = self.link.connection().await?;
        self.link
            .within(pipe.query_async::<()>(&mut conn), what, 1)
            .await
    }
}
