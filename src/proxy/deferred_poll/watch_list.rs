//! The list of work the poll watches, by when each is due, by id (for a delete) and
//! by caller (for each caller's share): bookkeeping only, no I/O.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Start;
use crate::metrics::deferred_answer::ApartKind;
use crate::providers::{Provider, Secret};

/// The most pieces of work watched at once; past it, new work is charged only when
/// read (said once).
pub const MAX_WATCHED: usize = 100_000;

/// The most pieces of work one caller has watched at once: one caller filling the
/// list does not leave every other one's work unwatched.
pub const MAX_WATCHED_PER_CALLER: usize = 10_000;

/// One piece of work watched.
#[derive(Debug)]
pub struct Watched {
    pub start: Start,
    pub provider: Arc<Provider>,
    /// Where it is read, without the query.
    pub path: String,
    /// The call's query, sent with every read.
    pub query: Option<String>,
    pub key: Option<Secret>,
    /// When it is given up.
    pub until: Instant,
    /// The wait before the next poll, doubled after each.
    pub wait: Duration,
}

impl Watched {
    /// `path` under the work's own, with the call's query.
    pub fn url(&self, under: &str) -> String {
        match &self.query {
            Some(query) => format!("{}{under}?{query}", self.path),
            None => format!("{}{under}", self.path),
        }
    }

    /// Where a batch's output file `file` is read, beside the collection the batch
    /// was made in, with the call's query: an OpenAI batch's at
    /// `files/{file}/content`, a Gemini batch's at `files/{file}:download?alt=media`.
    /// `None` for other work, or an id that is not one path segment of plain
    /// characters.
    pub fn output_file_url(&self, file: &str) -> Option<String> {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if file.is_empty() || !file.bytes().all(plain) {
            return None;
        }
        let prefix = self
            .path
            .strip_suffix(self.start.started.id.as_str())?
            .strip_suffix("batches/")?;
        let (at, media) = match self.start.started.kind {
            ApartKind::Batch => (format!("{prefix}files/{file}/content"), None),
            ApartKind::GeminiBatch => (format!("{prefix}files/{file}:download"), Some("alt=media")),
            _ => return None,
        };
        let query: Vec<&str> = media.into_iter().chain(self.query.as_deref()).collect();
        Some(match query.is_empty() {
            true => at,
            false => format!("{at}?{}", query.join("&")),
        })
    }

    fn name(&self) -> (ApartKind, String) {
        (self.start.started.kind, self.start.started.id.clone())
    }
}

/// What a delete finds of the work it names.
#[derive(Debug)]
pub enum Named {
    /// Not watched.
    Unwatched,
    /// Being polled right now.
    Polling,
    /// Taken out of the list, to be polled now.
    Taken(Vec<Watched>),
}

/// Work waiting for its poll, by when it is due (entries taken out early, by a
/// delete, leave their place in the heap behind, skipped when it comes up).
#[derive(Debug, Default)]
pub struct WatchList {
    waiting: HashMap<u64, Watched>,
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    /// What waits, by kind and id.
    by_name: HashMap<(ApartKind, String), Vec<u64>>,
    /// What is being polled now, by kind and id: how many.
    polling: HashMap<(ApartKind, String), usize>,
    /// What each caller ([`caller_bucket`]) has watched, waiting or being polled.
    per_caller: HashMap<String, usize>,
    total: usize,
    seq: u64,
}

/// The share of the list a caller's work counts against.
fn caller_bucket(start: &Start) -> String {
    super::shared_record::caller_name(&start.by.caller)
}

impl WatchList {
    /// How many pieces of work wait for a poll.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// How many pieces of work are watched, waiting or being polled.
    pub fn watched(&self) -> usize {
        self.total
    }

    /// Adds new work, due `at`: `false` when the list, or its caller's share, is full.
    pub fn add(&mut self, watched: Watched, at: Instant) -> bool {
        let bucket = caller_bucket(&watched.start);
        let own = self.per_caller.get(&bucket).copied().unwrap_or(0);
        if self.total >= MAX_WATCHED || own >= MAX_WATCHED_PER_CALLER {
            return false;
        }
        *self.per_caller.entry(bucket).or_default() += 1;
        self.total += 1;
        self.wait(watched, at);
        true
    }

    fn wait(&mut self, watched: Watched, at: Instant) {
        let seq = self.seq;
        self.seq += 1;
        self.by_name.entry(watched.name()).or_default().push(seq);
        self.due.push(Reverse((at, seq)));
        self.waiting.insert(seq, watched);
    }

    /// Takes what waits under `seq` out, counted as being polled.
    fn take(&mut self, seq: u64) -> Option<Watched> {
        let watched = self.waiting.remove(&seq)?;
        let name = watched.name();
        if let Some(seqs) = self.by_name.get_mut(&name) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_name.remove(&name);
            }
        }
        *self.polling.entry(name).or_default() += 1;
        Some(watched)
    }

    /// When the next poll is due.
    pub fn next_at(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, seq))) = self.due.peek().copied() {
            if self.waiting.contains_key(&seq) {
                return Some(at);
            }
            self.due.pop();
        }
        None
    }

    /// The work due at `now`, at most `most` of it, taken out to be polled.
    pub fn take_due(&mut self, now: Instant, most: usize) -> Vec<Watched> {
        let mut taken = Vec::new();
        while taken.len() < most {
            match self.due.peek().copied() {
                Some(Reverse((at, seq))) if at <= now => {
                    self.due.pop();
                    taken.extend(self.take(seq));
                }
                _ => break,
            }
        }
        taken
    }

    /// Whether the work `kind` `id` is watched, waiting or being polled.
    pub fn has(&self, kind: ApartKind, id: &str) -> bool {
        let name = (kind, id.to_string());
        self.by_name.contains_key(&name) || self.polling.contains_key(&name)
    }

    /// What a delete of the work `kind` `id` finds: waiting work is taken out, to be
    /// polled now.
    pub fn take_named(&mut self, kind: ApartKind, id: &str) -> Named {
        let name = (kind, id.to_string());
        if self.polling.contains_key(&name) {
            return Named::Polling;
        }
        let Some(seqs) = self.by_name.get(&name).cloned() else {
            return Named::Unwatched;
        };
        Named::Taken(seqs.into_iter().filter_map(|seq| self.take(seq)).collect())
    }

    /// Polled, `watched` is no longer being polled.
    fn polled(&mut self, watched: &Watched) {
        let name = watched.name();
        if let Some(n) = self.polling.get_mut(&name) {
            *n -= 1;
            if *n == 0 {
                self.polling.remove(&name);
            }
        }
    }

    /// Polled and still at work: it waits again, due `at`.
    pub fn back(&mut self, watched: Watched, at: Instant) {
        self.polled(&watched);
        self.wait(watched, at);
    }

    /// Polled and settled (charged, gone or given up): its caller's share is freed.
    pub fn settle(&mut self, watched: &Watched) {
        self.polled(watched);
        let bucket = caller_bucket(&watched.start);
        if let Some(n) = self.per_caller.get_mut(&bucket) {
            *n -= 1;
            if *n == 0 {
                self.per_caller.remove(&bucket);
            }
        }
        self.total = self.total.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(id: &str, kind: ApartKind, caller: &str) -> Watched {
        Start::test(id, kind, caller).watched_at(&format!("/v1/responses/{id}"), None)
    }

    #[test]
    fn work_comes_due_earliest_first_and_a_delete_takes_it_early() {
        let mut list = WatchList::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert!(list.add(watched("resp_late", ApartKind::Response, "a"), later));
        assert!(list.add(watched("resp_now", ApartKind::Response, "a"), now));
        assert_eq!(list.len(), 2);
        let due = list.take_due(now, 8);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].start.started.id, "resp_now");
        // Watched, waiting or being polled; not under another kind.
        assert!(list.has(ApartKind::Response, "resp_now"));
        assert!(list.has(ApartKind::Response, "resp_late"));
        assert!(!list.has(ApartKind::Batch, "resp_late"));
        assert_eq!(list.next_at(), Some(later));
        // Being polled: a delete waits for it.
        assert!(matches!(
            list.take_named(ApartKind::Response, "resp_now"),
            Named::Polling
        ));
        // Same id, another kind: not it.
        assert!(matches!(
            list.take_named(ApartKind::MessageBatch, "resp_late"),
            Named::Unwatched
        ));
        let Named::Taken(taken) = list.take_named(ApartKind::Response, "resp_late") else {
            panic!("taken");
        };
        assert_eq!(taken.len(), 1);
        // Its place in the heap is left behind, and skipped.
        assert_eq!(list.next_at(), None);
        assert!(list.take_due(later, 8).is_empty());
        // Back after its poll: it waits again, and a delete finds it.
        list.back(due.into_iter().next().unwrap(), later);
        assert!(
            matches!(list.take_named(ApartKind::Response, "resp_now"), Named::Taken(t) if t.len() == 1)
        );
    }

    #[test]
    fn one_caller_filling_its_share_leaves_room_for_the_others() {
        let mut list = WatchList::default();
        let at = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_WATCHED_PER_CALLER {
            assert!(list.add(
                watched(&format!("resp_{i}"), ApartKind::Response, "busy"),
                at
            ));
        }
        assert!(!list.add(watched("resp_more", ApartKind::Response, "busy"), at));
        assert!(list.add(watched("resp_other", ApartKind::Response, "quiet"), at));
        // Work settled frees its caller's share; work back after a poll keeps it.
        let Named::Taken(taken) = list.take_named(ApartKind::Response, "resp_0") else {
            panic!("taken");
        };
        list.back(taken.into_iter().next().unwrap(), at);
        assert!(!list.add(watched("resp_more", ApartKind::Response, "busy"), at));
        let Named::Taken(taken) = list.take_named(ApartKind::Response, "resp_0") else {
            panic!("taken");
        };
        list.settle(&taken[0]);
        assert!(list.add(watched("resp_more", ApartKind::Response, "busy"), at));
    }
}
