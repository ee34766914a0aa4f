//! Writes begun and not finished yet. A write holds its place from the moment it is
//! begun until it ends (written, or given up on); a write whose future was dropped
//! with the runtime that ran it (the server stopping) keeps its place, and is found
//! there to be made again as the process ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The place a write holds among the unfinished ones, given back by
/// [`UnfinishedWrites::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The writes begun and not finished, each with what it needs to be made again.
#[derive(Debug)]
pub struct UnfinishedWrites<T> {
    next: AtomicU64,
    held: Mutex<HashMap<Ticket, Arc<T>>>,
}

impl<T> Default for UnfinishedWrites<T> {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> UnfinishedWrites<T> {
    /// Holds `write` until [`Self::finish`] is told its ticket; the write is shared,
    /// not copied, with whoever makes it.
    pub fn begin(&self, write: T) -> (Ticket, Arc<T>) {
        let ticket = Ticket(self.next.fetch_add(1, Ordering::Relaxed));
        let write = Arc::new(write);
        self.held().insert(ticket, Arc::clone(&write));
        (ticket, write)
    }

    /// The write of `ticket` ended: it is no longer held. A ticket given back already
    /// changes nothing.
    pub fn finish(&self, ticket: Ticket) {
        self.held().remove(&ticket);
    }

    /// Every write still held, with its ticket; they stay held until finished.
    pub fn unfinished(&self) -> Vec<(Ticket, Arc<T>)> {
        self.held()
            .iter()
            .map(|(ticket, write)| (*ticket, Arc::clone(write)))
            .collect()
    }

    /// How many writes are held.
    pub fn len(&self) -> usize {
        self.held().len()
    }

    /// The map, even after a thread panicked holding it: each change is one insert or
    /// one remove, never left half made.
    fn held(&self) -> MutexGuard<'_, HashMap<Ticket, Arc<T>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_held_from_its_beginning_until_it_is_finished() {
        let writes = UnfinishedWrites::default();
        assert_eq!(writes.len(), 0);
        let (first, shared) = writes.begin("resp_a");
        let (second, _) = writes.begin("resp_b");
        assert_ne!(first, second);
        assert_eq!(*shared, "resp_a");
        assert_eq!(writes.len(), 2);
        writes.finish(first);
        let left = writes.unfinished();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].0, *left[0].1), (second, "resp_b"));
        // Listing them holds them still: only finishing gives a place back.
        assert_eq!(writes.len(), 1);
        writes.finish(second);
        writes.finish(second);
        assert_eq!(writes.len(), 0);
    }

    #[test]
    fn a_write_whose_maker_was_dropped_unfinished_stays_held() {
        let writes = Arc::new(UnfinishedWrites::default());
        let (ticket, write) = writes.begin(String::from("resp_c"));
        let maker = {
            let writes = Arc::clone(&writes);
            async move {
                // Never reached: the future is dropped before it is polled.
                writes.finish(ticket);
                drop(write);
            }
        };
        drop(maker);
        let left = writes.unfinished();
        assert_eq!(left.len(), 1);
        assert_eq!(*left[0].1, "resp_c");
    }

    #[test]
    fn the_same_write_begun_twice_holds_two_places() {
        // A second write of one id (a fallback's answer, say) is held apart: the first
        // one finishing does not give back the second's place.
        let writes = UnfinishedWrites::default();
        let (first, _) = writes.begin("resp_d");
        let (second, _) = writes.begin("resp_d");
        writes.finish(first);
        assert_eq!(writes.unfinished().first().map(|(t, _)| *t), Some(second));
    }
}
