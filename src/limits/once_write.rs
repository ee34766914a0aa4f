//! The writes no request waits for (charges, usage, call slots given back) as Redis
//! receives them: one write per subject, under an id of the replica that Redis makes
//! once ([`APPLY_ONCE`](super::redis_scripts::APPLY_ONCE)). A write whose answer was
//! lost (Redis may have made it, or may make it yet) is sent again as it was, under
//! its id, and never counts twice; nor does a call slot come back twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::pending::{Counters, Pending};
use super::redis_link::{key, usage_key};
use super::redis_writer::SLOT_TTL_SECS;
use crate::lookup::LookupMap;

/// How many of a replica's latest write ids Redis keeps per subject: far more than a
/// replica sends while a write of that subject is in doubt (about one try a second),
/// and few enough for Redis's compact sorted sets.
pub const IDS_KEPT: u64 = 128;
/// How long Redis keeps a subject's write ids after the last write: a write in doubt
/// is sent again at most this long, then dropped.
pub const IDS_TTL_SECS: u64 = 86_400;

/// What a write does to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `INCRBY` then `EXPIRE`.
    Incr { by: i64, ttl_secs: u64 },
    /// `HINCRBY` of one field.
    HashIncr { field: String, by: i64 },
    /// `EXPIRE`.
    Expire { ttl_secs: u64 },
    /// Gives call slots back, never below zero.
    Release { slots: u32 },
}

/// One subject's writes under one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceWrite {
    /// The subject whose keys it writes: their cluster hash tag.
    pub subject: String,
    pub id: u64,
    /// Each key written, and what is done to it, in order.
    pub ops: Vec<(String, Op)>,
    /// Past this instant it is dropped rather than sent again: what it writes has
    /// expired, or Redis no longer keeps its id.
    pub stale_at: Instant,
}

impl OnceWrite {
    /// The write of `counters` (of `subject`) under `id`, made at `now`.
    pub fn of_counters(subject: &str, id: u64, counters: &Counters, now: Instant) -> Self {
        let mut write = Self::new(subject, id, now);
        write.add_counters(counters);
        write
    }

    fn new(subject: &str, id: u64, now: Instant) -> Self {
        Self {
            subject: subject.to_string(),
            id,
            ops: Vec::new(),
            stale_at: now,
        }
    }

    fn stays_until(&mut self, at: Instant) {
        self.stale_at = self.stale_at.max(at);
    }

    fn add_counters(&mut self, counters: &Counters) {
        for (key, add) in counters {
            self.ops.push((
                key.clone(),
                Op::Incr {
                    by: add.by,
                    ttl_secs: add.ttl_secs,
                },
            ));
            self.stays_until(add.stale_at);
        }
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `EVALSHA` of [`APPLY_ONCE`](super::redis_scripts::APPLY_ONCE) (its SHA
    /// `script`) that makes it, its ids kept under `replica`.
    pub fn command(&self, script: &str, replica: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script)
            .arg(1 + self.ops.len())
            .arg(once_key(&self.subject, replica));
        for (key, _) in &self.ops {
            cmd.arg(key);
        }
        cmd.arg(self.id).arg(IDS_KEPT).arg(IDS_TTL_SECS);
        for (_, op) in &self.ops {
            match op {
                Op::Incr { by, ttl_secs } => cmd.arg("incr").arg(*by).arg(*ttl_secs),
                Op::HashIncr { field, by } => cmd.arg("hincr").arg(field).arg(*by),
                Op::Expire { ttl_secs } => cmd.arg("expire").arg(*ttl_secs).arg(0),
                Op::Release { slots } => cmd.arg("release").arg(*slots).arg(0),
            };
        }
        cmd
    }
}

/// The sorted set of the write ids `replica` made for `subject`,
/// `aurora:{SUBJECT}:once:REPLICA`, in the subject's cluster slot.
pub fn once_key(subject: &str, replica: &str) -> String {
    format!("aurora:{{{subject}}}:once:{replica}")
}

/// A replica's write ids: its own name (random, new with each process) and a count
/// that only grows.
#[derive(Debug)]
pub struct WriteIds {
    replica: String,
    next: AtomicU64,
}

impl Default for WriteIds {
    fn default() -> Self {
        let mut bytes = [0u8; 8];
        // Without the system's randomness, the clock tells replicas apart well enough.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64).to_le_bytes();
        }
        Self {
            replica: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }
}

impl WriteIds {
    /// The replica's name in its keys.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A new id, never 0 (a lease's "no charges").
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// The writes of `batch` (but its writes sent before, [`Pending::sealed`]), one per
/// subject, each under a new id: a subject's charges, then its usage (a gateway key's
/// usage is written under the key's subject), then the call slots it gives back.
pub fn writes_of(batch: &Pending, ids: &WriteIds, now: Instant) -> Vec<OnceWrite> {
    let mut writes: LookupMap<String, OnceWrite> = LookupMap::default();
    for (subject, counters) in &batch.charges {
        write_of(&mut writes, subject, ids, now).add_counters(counters);
    }
    for (name, days) in &batch.usage {
        let write = write_of(&mut writes, &super::key_subject(name), ids, now);
        for (day, on_day) in days {
            let hash = usage_key(name, *day);
            for (model, usage) in &on_day.models {
                for (kind, value) in usage.fields().into_iter().filter(|(_, v)| *v > 0) {
                    let by = i64::try_from(value).unwrap_or(i64::MAX);
                    let field = format!("{model}|{kind}");
                    write.ops.push((hash.clone(), Op::HashIncr { field, by }));
                }
            }
            let ttl_secs = on_day.ttl_secs;
            write.ops.push((hash, Op::Expire { ttl_secs }));
            write.stays_until(now + Duration::from_secs(ttl_secs));
        }
    }
    for (subject, slots) in &batch.releases {
        let write = write_of(&mut writes, subject, ids, now);
        let slots = *slots;
        write
            .ops
            .push((key(subject, "calls", 0), Op::Release { slots }));
        write.stays_until(now + Duration::from_secs(SLOT_TTL_SECS));
    }
    let ids_kept_until = now + Duration::from_secs(IDS_TTL_SECS);
    writes
        .into_values()
        .map(|mut write| {
            write.stale_at = write.stale_at.min(ids_kept_until);
            write
        })
        .collect()
}

/// `subject`'s write in `writes`, made (under a new id) when it has none yet.
fn write_of<'a>(
    writes: &'a mut LookupMap<String, OnceWrite>,
    subject: &str,
    ids: &WriteIds,
    now: Instant,
) -> &'a mut OnceWrite {
    writes
        .entry(subject.to_string())
        .or_insert_with(|| OnceWrite::new(subject, ids.next(), now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::UsageRecord;

    fn args(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Arg::Cursor => "cursor".into(),
            })
            .collect()
    }

    #[test]
    fn a_subjects_charges_usage_and_slots_are_one_write_in_that_order() {
        let now = Instant::now();
        let ids = WriteIds::default();
        let mut batch = Pending::default();
        batch.release("key:a");
        batch.charge("key:a", "aurora:{key:a}:tok:7".into(), 21, 61, now);
        batch.charge(
            "provider:p",
            "aurora:{provider:p}:tok:7".into(),
            21,
            61,
            now,
        );
        let used = UsageRecord {
            input: 17,
            output: 4,
            requests: 1,
            ..UsageRecord::default()
        };
        batch.usage("a", 3, "gpt", &used, 400);
        let writes = writes_of(&batch, &ids, now);
        assert_eq!(writes.len(), 2, "{writes:?}");
        let a = writes.iter().find(|w| w.subject == "key:a").unwrap();
        let p = writes.iter().find(|w| w.subject == "provider:p").unwrap();
        assert_ne!(a.id, p.id);
        let kinds: Vec<&str> = a
            .ops
            .iter()
            .map(|(_, op)| match op {
                Op::Incr { .. } => "incr",
                Op::HashIncr { .. } => "hincr",
                Op::Expire { .. } => "expire",
                Op::Release { .. } => "release",
            })
            .collect();
        assert_eq!(kinds.first(), Some(&"incr"), "charges first");
        assert_eq!(kinds.last(), Some(&"release"), "the slot given back last");
        assert!(kinds.contains(&"hincr") && kinds.contains(&"expire"));
        assert_eq!(a.stale_at, now + Duration::from_secs(SLOT_TTL_SECS));
        assert_eq!(p.stale_at, now + Duration::from_secs(61));

        let sent = args(&a.command("SHA", ids.replica()));
        assert_eq!(sent[0], "EVALSHA");
        assert_eq!(sent[2], (1 + a.ops.len()).to_string(), "{sent:?}");
        assert_eq!(sent[3], format!("aurora:{{key:a}}:once:{}", ids.replica()));
        let first_arg = 4 + a.ops.len();
        assert_eq!(sent[first_arg], a.id.to_string());
        assert_eq!(sent[first_arg + 3..first_arg + 6], ["incr", "21", "61"]);
        assert_eq!(sent.len(), first_arg + 3 + 3 * a.ops.len());
        assert!(sent.contains(&"gpt|input".to_string()), "{sent:?}");
    }

    #[test]
    fn ids_grow_and_replicas_are_told_apart() {
        let (one, two) = (WriteIds::default(), WriteIds::default());
        assert_ne!(one.replica(), two.replica());
        assert_eq!(one.replica().len(), 16);
        let first = one.next();
        assert!(first > 0 && one.next() > first);
    }

    #[test]
    fn a_write_is_kept_no_longer_than_redis_keeps_its_id() {
        let now = Instant::now();
        let mut batch = Pending::default();
        batch.charge("key:a", "aurora:{key:a}:usd:1".into(), 5, 40 * 86_400, now);
        let writes = writes_of(&batch, &WriteIds::default(), now);
        assert_eq!(writes[0].stale_at, now + Duration::from_secs(IDS_TTL_SECS));
    }
}
