//! The Lua scripts the Redis store runs: each one atomic, so replicas never race each
//! other past a limit. Each one that reads Redis's clock (`TIME`) and then writes
//! first asks for its effects to be replicated rather than the script (Redis before 5
//! refuses a write after `TIME` otherwise: a replica running the script again would
//! read another time); Redis 5 and later, and Valkey, do so always.
//!
//! A window's or budget's key is given a life by each write (`outlive`), set only
//! when longer than the one it has: each replica counts its life from its own clock,
//! and one whose clock is ahead, writing in the last second of its minute, would
//! otherwise cut the key short under a replica still counting that minute. The life
//! is compared by `PTTL` in the script rather than `EXPIRE … GT`, which Redis before 7
//! does not know.

/// One exact admission, for a subject with calls at once: checks budgets, then the
/// token and request windows, then takes a call slot and counts the request. The
/// slots are a sorted set of the calls holding one, each scored by when its slot
/// lapses (on Redis's clock): its replica renews it while the call runs
/// ([`RENEW_SLOTS`]) and removes it when the call ends. Lapsed slots (a replica gone
/// mid-call, an admission whose answer never came back) are dropped here before they
/// are counted, however often the subject takes others meanwhile. KEYS: requests
/// window, tokens window, slots, budget USD (billionths), budget tokens, budget USD
/// as replicas before counted it (millionths; read, never written). ARGV:
/// requests per minute, tokens per minute, calls at once, budget USD (billionths),
/// budget tokens (-1: no limit), seconds left in the window, seconds left in the
/// period, slot lease (seconds), the slot's name, the window's keys' life (seconds).
/// Returns {refusal, retry after,
/// requests, tokens, slot}: refusal 0 (none), 1 requests, 2 tokens, 3 calls, 4 budget.
pub const ADMIT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local function outlive(k, secs)
  local left = redis.pcall('PTTL', k)
  if type(left) == 'number' and left < secs * 1000 then redis.pcall('EXPIRE', k, secs) end
end
local rpm, tpm, calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local usd, btok = tonumber(ARGV[4]), tonumber(ARGV[5])
local wleft, pleft, slot_ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local wttl = tonumber(ARGV[10])
local reqs = tonumber(redis.call('GET', KEYS[1]) or '0')
local toks = tonumber(redis.call('GET', KEYS[2]) or '0')
if usd >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + 1000 * tonumber(redis.call('GET', KEYS[6]) or '0') >= usd then return {4, pleft, reqs, toks, 0} end
if btok >= 0 and tonumber(redis.call('GET', KEYS[5]) or '0') >= btok then return {4, pleft, reqs, toks, 0} end
if tpm >= 0 and toks >= tpm then return {2, wleft, reqs, toks, 0} end
if rpm >= 0 and reqs >= rpm then return {1, wleft, reqs, toks, 0} end
local slot = 0
if calls >= 0 then
  local now = tonumber(redis.call('TIME')[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= calls then return {3, 1, reqs, toks, 0} end
  redis.call('ZADD', KEYS[3], now + slot_ttl, ARGV[9])
  if redis.call('TTL', KEYS[3]) < slot_ttl then redis.call('EXPIRE', KEYS[3], slot_ttl) end
  slot = 1
end
if rpm >= 0 then
  reqs = redis.call('INCR', KEYS[1])
  outlive(KEYS[1], wttl)
end
return {0, 0, reqs, toks, slot}
";

/// A lease, for a subject without calls at once: first adds the replica's charges
/// still waiting for this minute and period, then checks budgets and windows as
/// [`ADMIT`] does, then grants up to `lease_max` calls: at most 1/`share` of the
/// minute's requests left, at most `lease_max` times the share left of the tokens per
/// minute or budget, at least one per call `wanted` (the replica's requests waiting
/// for the lease: each takes its unit at once) up to `lease_max`, never more than the
/// requests left (the units are counted at once). The charges are added once, under the write id the replica gave
/// them (see [`APPLY_ONCE`]): sent again after the answer was lost, they are not
/// added again; and, as there, each key's adding stands alone (one refused, a key of
/// another type, leaves the others made, as their id says). KEYS: requests window, tokens window, budget USD (billionths), budget
/// tokens, the replica's applied write ids, budget USD as replicas before counted it
/// (millionths; read, never written). ARGV: requests per minute, tokens per minute,
/// budget USD (billionths), budget tokens (-1: no limit), seconds left in the window,
/// seconds left in the period, lease max, share, tokens to add, USD to add, budget
/// tokens to add, budget key TTL, the charges' write id (0: none), how long ids are
/// kept, calls wanted, the window's keys' life (seconds). Returns {refusal, retry
/// after, requests, tokens, USD spent (billionths, both keys), budget tokens spent,
/// calls granted}.
pub const LEASE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local function outlive(k, secs)
  local left = redis.pcall('PTTL', k)
  if type(left) == 'number' and left < secs * 1000 then redis.pcall('EXPIRE', k, secs) end
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local usd, btok = tonumber(ARGV[3]), tonumber(ARGV[4])
local wleft, pleft = tonumber(ARGV[5]), tonumber(ARGV[6])
local lease_max, share = tonumber(ARGV[7]), tonumber(ARGV[8])
local add_tok, add_usd, add_btok = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local budget_ttl, wttl = tonumber(ARGV[12]), tonumber(ARGV[16])
local now, kept = tonumber(redis.call('TIME')[1]), tonumber(ARGV[14])
if ARGV[13] ~= '0' and redis.call('ZADD', KEYS[5], 'NX', now, ARGV[13]) == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - kept)
  redis.call('EXPIRE', KEYS[5], kept)
  -- The id is recorded: a write refused here is never sent again, so each stands
  -- alone (as in APPLY_ONCE) and the others are made.
  if add_tok > 0 then
    redis.pcall('INCRBY', KEYS[2], add_tok)
    outlive(KEYS[2], wttl)
  end
  if add_usd > 0 then
    redis.pcall('INCRBY', KEYS[3], add_usd)
    outlive(KEYS[3], budget_ttl)
  end
  if add_btok > 0 then
    redis.pcall('INCRBY', KEYS[4], add_btok)
    outlive(KEYS[4], budget_ttl)
  end
end
local reqs = tonumber(redis.call('GET', KEYS[1]) or '0')
local toks = tonumber(redis.call('GET', KEYS[2]) or '0')
local spent_usd = tonumber(redis.call('GET', KEYS[3]) or '0') + 1000 * tonumber(redis.call('GET', KEYS[6]) or '0')
local spent_btok = tonumber(redis.call('GET', KEYS[4]) or '0')
if usd >= 0 and spent_usd >= usd then return {4, pleft, reqs, toks, spent_usd, spent_btok, 0} end
if btok >= 0 and spent_btok >= btok then return {4, pleft, reqs, toks, spent_usd, spent_btok, 0} end
if tpm >= 0 and toks >= tpm then return {2, wleft, reqs, toks, spent_usd, spent_btok, 0} end
if rpm >= 0 and reqs >= rpm then return {1, wleft, reqs, toks, spent_usd, spent_btok, 0} end
local n = lease_max
if rpm >= 0 then n = math.min(n, math.floor((rpm - reqs) / share)) end
if tpm > 0 then n = math.min(n, math.floor(lease_max * (tpm - toks) / tpm)) end
if usd > 0 then n = math.min(n, math.floor(lease_max * (usd - spent_usd) / usd)) end
if btok > 0 then n = math.min(n, math.floor(lease_max * (btok - spent_btok) / btok)) end
local wanted = math.max(1, math.min(tonumber(ARGV[15]), lease_max))
if n < wanted then n = wanted end
if rpm >= 0 then
  n = math.min(n, rpm - reqs)
  reqs = redis.call('INCRBY', KEYS[1], n)
  outlive(KEYS[1], wttl)
end
return {0, 0, reqs, toks, spent_usd, spent_btok, n}
";

/// One subject's writes no request waits for (charges, usage, call slots given back),
/// made once however often they are sent: a replica sends again what it sent when the
/// answer was lost, and Redis may have made it, or make it yet (bytes left on a
/// connection whose path went away can arrive minutes later). Each write carries an id
/// of its replica, kept in the replica's sorted set for the subject (scored by when it
/// was made, on Redis's clock) until the replica says its answer came back, or `kept`
/// seconds: a write whose id is there is not made again. Each key's writing stands
/// alone (`pcall`): one refused (a key of another type, a counter at its largest)
/// leaves the others made, a call slot given back above all. KEYS: the replica's
/// write ids for the subject, then each key written. ARGV: the write id, `kept`, the
/// number of ids to forget and those ids (writes whose answers came back: none of
/// them can come again), then three per key written: what (`incr`: by, TTL; `hincr`:
/// field, by; `expire`: TTL, -; `release`: the slots' names joined by commas, -) and
/// its two operands. Returns 1
/// when made, 0 when it had been.
pub const APPLY_ONCE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local function outlive(k, secs)
  local left = redis.pcall('PTTL', k)
  if type(left) == 'number' and left < secs * 1000 then redis.pcall('EXPIRE', k, secs) end
end
local id, kept, forget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(redis.call('TIME')[1])
for f = 4, 3 + forget do redis.call('ZREM', KEYS[1], ARGV[f]) end
if redis.call('ZADD', KEYS[1], 'NX', now, id) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - kept)
redis.call('EXPIRE', KEYS[1], kept)
local base = 3 + forget
for i = 2, #KEYS do
  local at = base + 3 * (i - 2)
  local what, a, b = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  if what == 'incr' then
    redis.pcall('INCRBY', KEYS[i], a)
    outlive(KEYS[i], tonumber(b))
  elseif what == 'hincr' then
    redis.pcall('HINCRBY', KEYS[i], a, b)
  elseif what == 'expire' then
    outlive(KEYS[i], tonumber(a))
  elseif what == 'release' then
    for slot in string.gmatch(a, '[^,]+') do redis.pcall('ZREM', KEYS[i], slot) end
  end
end
return 1
";

/// Renews the slots a replica's calls still hold: each lapses a slot lease from now (on
/// Redis's clock), and the set no sooner (never sooner than it would: another
/// replica's lease may be longer). Only slots still there are renewed (`XX`):
/// one given back, or lapsed and dropped, is not taken again. KEYS: the slots. ARGV:
/// the slot lease (seconds), then the slots' names.
pub const RENEW_SLOTS: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local lease = tonumber(ARGV[1])
local lapses = tonumber(redis.call('TIME')[1]) + lease
local renewed = 0
for i = 2, #ARGV do renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', lapses, ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('TTL', KEYS[1]) < lease then
  redis.call('EXPIRE', KEYS[1], lease)
end
return renewed
";

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line of a script that reads `TIME` and then writes.
    const EFFECTS: &str = "if redis.replicate_commands then redis.replicate_commands() end\n";

    #[test]
    fn every_script_that_reads_redis_time_replicates_its_effects_for_redis_before_5() {
        for (name, script) in [
            ("ADMIT", ADMIT),
            ("LEASE", LEASE),
            ("APPLY_ONCE", APPLY_ONCE),
            ("RENEW_SLOTS", RENEW_SLOTS),
        ] {
            assert!(script.contains("redis.call('TIME')"), "{name} reads TIME");
            assert!(
                script.trim_start_matches('\n').starts_with(EFFECTS),
                "{name} writes after TIME without asking for effects replication first"
            );
        }
    }
}
