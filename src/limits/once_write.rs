//! The writes no request waits for (charges, usage, call slots given back) as Redis
//! receives them: one write per subject, under an id of the replica that Redis makes
//! once ([`APPLY_ONCE`](super::redis_scripts::APPLY_ONCE)). A write whose answer was
//! lost (Redis may have made it, or may make it yet) is sent again as it was, under
//! its id, and never counts twice; nor does a call slot come back twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::pending::{Counters, Pending};
use super::redis_link::usage_key;
use super::redis_slots::{slot_names, slots_key};
use super::SlotId;
use crate::lookup::LookupMap;

/// The longest a call slot can last unrenewed: a slot given back has lapsed by then
/// anyway.
const SLOT_LEASE_AT_MOST: Duration = *crate::config::SLOT_LEASES.end();

/// How long Redis keeps the id of a write whose answer the replica did not get (ids
/// whose answers came back are forgotten with the subject's next write): longer than
/// a write is sent again ([`RESENT_FOR`]), and than TCP keeps trying to deliver bytes
/// left on a connection whose path went away (about 15 minutes).
pub const IDS_KEPT_SECS: u64 = 7_200;
/// How long a write in doubt is sent again before it is dropped.
pub const RESENT_FOR: Duration = Duration::from_secs(3_600);
/// At most this many ids wait to be forgotten per subject; the rest expire.
const FORGET_AT_MOST: usize = 64;

/// What a write does to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `INCRBY` then `EXPIRE`.
    Incr { by: i64, ttl_secs: u64 },
    /// `HINCRBY` of one field.
    HashIncr { field: String, by: i64 },
    /// `EXPIRE`.
    Expire { ttl_secs: u64 },
    /// Gives call slots back (removes them from the subject's slots).
    Release { slots: Vec<SlotId> },
}

/// One subject's writes under one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceWrite {
    /// The subject whose keys it writes: their cluster hash tag.
    pub subject: String,
    pub id: u64,
    /// Each key written, and what is done to it, in order.
    pub ops: Vec<(String, Op)>,
    /// Ids of the subject's earlier writes whose answers came back, for Redis to forget.
    pub forget: Vec<u64>,
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
            forget: Vec::new(),
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
    /// `script`) that makes it, its id kept under `replica`.
    pub fn command(&self, script: &str, replica: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script)
            .arg(1 + self.ops.len())
            .arg(once_key(&self.subject, replica));
        for (key, _) in &self.ops {
            cmd.arg(key);
        }
        cmd.arg(self.id).arg(IDS_KEPT_SECS).arg(self.forget.len());
        for id in &self.forget {
            cmd.arg(*id);
        }
        for (_, op) in &self.ops {
            match op {
                Op::Incr { by, ttl_secs } => cmd.arg("incr").arg(*by).arg(*ttl_secs),
                Op::HashIncr { field, by } => cmd.arg("hincr").arg(field).arg(*by),
                Op::Expire { ttl_secs } => cmd.arg("expire").arg(*ttl_secs).arg(0),
                Op::Release { slots } => cmd.arg("release").arg(slot_names(replica, slots)).arg(0),
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

/// The writes of `batch`, one per subject, each under a new id: a subject's charges,
/// then its usage (a gateway key's usage is written under the key's subject), then
/// the call slots it gives back. Each takes the ids its subject has waiting in
/// `forget`.
pub fn writes_of(
    batch: &Pending,
    forget: &mut LookupMap<String, Vec<u64>>,
    ids: &WriteIds,
    now: Instant,
) -> Vec<OnceWrite> {
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
        let slots = slots.clone();
        write.ops.push((slots_key(subject), Op::Release { slots }));
        // Past a slot lease the slots have lapsed anyway.
        write.stays_until(now + SLOT_LEASE_AT_MOST);
    }
    let resent_until = now + RESENT_FOR;
    writes
        .into_values()
        .map(|mut write| {
            write.stale_at = write.stale_at.min(resent_until);
            write.forget = forget.remove(&write.subject).unwrap_or_default();
            write
        })
        .collect()
}

/// What `writes` add to each counter key.
pub fn increments<'a>(writes: impl IntoIterator<Item = &'a OnceWrite>) -> LookupMap<String, i64> {
    let mut added: LookupMap<String, i64> = LookupMap::default();
    for (key, op) in writes.into_iter().flat_map(|w| &w.ops) {
        if let Op::Incr { by, .. } = op {
            let total = added.entry(key.clone()).or_default();
            *total = total.saturating_add(*by);
        }
    }
    added
}

/// Keeps `id`, of a write of `subject` whose answer came back, for Redis to forget with
/// the subject's next write.
pub fn forget_later(forget: &mut LookupMap<String, Vec<u64>>, subject: &str, id: u64) {
    let ids = match forget.get_mut(subject) {
        Some(ids) => ids,
        None => forget.entry(subject.to_string()).or_default(),
    };
    if ids.len() < FORGET_AT_MOST {
        ids.push(id);
    }
}

/// Writes sent whose answers were lost: sent again as they were, under their ids, until
/// an answer comes back. A subject with one here writes nothing new meanwhile (its
/// charges wait, merged), so there are at most a few per subject however long Redis
/// stays away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InDoubt {
    writes: Vec<OnceWrite>,
    /// Subject → how many of its writes are here or being sent again.
    subjects: LookupMap<String, u32>,
}

impl InDoubt {
    /// Nothing waits to be sent again.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Whether a write of `subject` is in doubt.
    pub fn holds(&self, subject: &str) -> bool {
        self.subjects.contains_key(subject)
    }

    /// What the writes of `subject` in doubt add to its counter `key`.
    pub fn adds_to(&self, subject: &str, key: &str) -> i64 {
        (self.writes.iter().filter(|w| w.subject == subject))
            .flat_map(|w| &w.ops)
            .filter_map(|(k, op)| match op {
                Op::Incr { by, .. } if k == key => Some(*by),
                _ => None,
            })
            .fold(0, i64::saturating_add)
    }

    /// `writes`, just sent, whose answers were lost, to send again for [`RESENT_FOR`]
    /// at most (Redis keeps their ids longer); but those with nothing to write or
    /// whose time has passed.
    pub fn add(&mut self, writes: impl IntoIterator<Item = OnceWrite>, now: Instant) {
        for mut write in writes {
            if write.is_empty() || write.stale_at <= now {
                continue;
            }
            write.stale_at = write.stale_at.min(now + RESENT_FOR);
            *self.subjects.entry(write.subject.clone()).or_default() += 1;
            self.writes.push(write);
        }
    }

    /// The writes to send again; those whose time has passed are dropped.
    pub fn take(&mut self, now: Instant) -> Vec<OnceWrite> {
        let (fresh, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut self.writes)
            .into_iter()
            .partition(|w| w.stale_at > now);
        if !stale.is_empty() {
            log::warn!(
                "{} writes to Redis whose answers were lost were sent again for {RESENT_FOR:?} without an answer; dropped",
                stale.len()
            );
        }
        self.answered(&stale);
        fresh
    }

    /// `writes`, taken to be sent again, got no answer again.
    pub fn put_back(&mut self, writes: Vec<OnceWrite>) {
        self.writes.extend(writes);
    }

    /// `writes`, taken to be sent again, were answered: made now or before.
    pub fn answered(&mut self, writes: &[OnceWrite]) {
        for write in writes {
            if let Some(n) = self.subjects.get_mut(&write.subject) {
                *n -= 1;
                if *n == 0 {
                    self.subjects.remove(&write.subject);
                }
            }
        }
    }
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
        batch.release("key:a", 5);
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
        let mut forget = LookupMap::default();
        forget_later(&mut forget, "key:a", 3);
        forget_later(&mut forget, "key:b", 4);
        let writes = writes_of(&batch, &mut forget, &ids, now);
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(
            forget.contains_key("key:b"),
            "a subject without a write keeps its ids"
        );
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
        assert_eq!(a.stale_at, now + SLOT_LEASE_AT_MOST);
        assert_eq!(p.stale_at, now + Duration::from_secs(61));

        assert_eq!(a.forget, [3]);
        assert!(p.forget.is_empty());
        let sent = args(&a.command("SHA", ids.replica()));
        assert_eq!(sent[0], "EVALSHA");
        assert_eq!(sent[2], (1 + a.ops.len()).to_string(), "{sent:?}");
        assert_eq!(sent[3], format!("aurora:{{key:a}}:once:{}", ids.replica()));
        let first_arg = 4 + a.ops.len();
        assert_eq!(
            sent[first_arg..first_arg + 4],
            [&a.id.to_string(), "7200", "1", "3"]
        );
        assert_eq!(sent[first_arg + 4..first_arg + 7], ["incr", "21", "61"]);
        assert_eq!(sent.len(), first_arg + 4 + 3 * a.ops.len());
        assert!(sent.contains(&"gpt|input".to_string()), "{sent:?}");
        assert!(
            sent.contains(&"aurora:{key:a}:slots:0".to_string()),
            "{sent:?}"
        );
        let given_back = format!("{}.5", ids.replica());
        assert_eq!(sent[sent.len() - 3..], ["release", &given_back, "0"]);
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
    fn a_write_is_sent_again_for_an_hour_at_most() {
        let now = Instant::now();
        let mut batch = Pending::default();
        batch.charge("key:a", "aurora:{key:a}:usd:1".into(), 5, 40 * 86_400, now);
        let writes = writes_of(&batch, &mut LookupMap::default(), &WriteIds::default(), now);
        assert_eq!(writes[0].stale_at, now + RESENT_FOR);
        assert!(
            RESENT_FOR.as_secs() < IDS_KEPT_SECS,
            "an id outlives its resends"
        );
    }

    #[test]
    fn a_subject_stays_in_doubt_until_its_writes_are_answered_or_dropped() {
        let now = Instant::now();
        let ids = WriteIds::default();
        let mut batch = Pending::default();
        batch.charge("key:a", "aurora:{key:a}:tok:1".into(), 5, 61, now);
        batch.charge("key:b", "aurora:{key:b}:tok:1".into(), 5, 61, now);
        let writes = writes_of(&batch, &mut LookupMap::default(), &ids, now);
        let mut doubt = InDoubt::default();
        doubt.add(writes, now);
        assert!(doubt.holds("key:a") && doubt.holds("key:b"));
        let resent = doubt.take(now);
        assert!(
            doubt.is_empty() && doubt.holds("key:a"),
            "held while sent again"
        );
        doubt.put_back(resent);
        let mut resent = doubt.take(now);
        let b = resent.pop().unwrap();
        doubt.answered(&resent);
        doubt.put_back(vec![b.clone()]);
        assert_ne!(doubt.holds("key:a"), doubt.holds("key:b"));
        assert!(
            doubt.take(now + Duration::from_secs(62)).is_empty(),
            "stale"
        );
        assert!(
            !doubt.holds(&b.subject),
            "a write dropped no longer holds its subject"
        );
    }
}
