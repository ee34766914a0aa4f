//! The series of `aurora_requests_total` and of the token and cost counters, kept by
//! each worker thread under their label values once it has counted into them.
//!
//! Their labels name the caller's key and the model, too many combinations to
//! resolve ahead as the other handles are (see [`super::handles`]). Prometheus finds
//! a series by its label values under a lock every thread takes, hashing them a byte
//! at a time; a thread's own table is looked up without a lock (only the counters
//! themselves are shared). Series are never removed from the registry, so a handle
//! kept here stays the series its labels name; a table belongs to one set of handles
//! and is emptied when its thread counts through another (a reload, or a test's own
//! registry).

use std::cell::RefCell;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};
use prometheus::{Counter, IntCounter};

/// Series found by `N` label values.
pub struct SeriesTable<const N: usize, S> {
    series: HashMap<[Box<str>; N], S>,
}

impl<const N: usize, S> Default for SeriesTable<N, S> {
    fn default() -> Self {
        Self {
            series: HashMap::default(),
        }
    }
}

/// Label values as a request has them, borrowed; hashed as the owned ones are.
struct Borrowed<'a, const N: usize>([&'a str; N]);

impl<const N: usize> Hash for Borrowed<'_, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `[&str; N]` and `[Box<str>; N]` both hash as a slice of `str`s.
        self.0.hash(state);
    }
}

impl<const N: usize> Equivalent<[Box<str>; N]> for Borrowed<'_, N> {
    fn equivalent(&self, key: &[Box<str>; N]) -> bool {
        self.0.iter().zip(key).all(|(a, b)| *a == &**b)
    }
}

impl<const N: usize, S> SeriesTable<N, S> {
    /// The series named by `labels`, made by `make` the first time they are seen.
    pub fn get_or_make(&mut self, labels: [&str; N], make: impl FnOnce() -> S) -> &mut S {
        // Looked up borrowed: a known series costs no owned copy of its labels.
        let (_, series) = self
            .series
            .raw_entry_mut()
            .from_key(&Borrowed(labels))
            .or_insert_with(|| (labels.map(Box::from), make()));
        series
    }

    /// How many series the table holds.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the table holds none.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn clear(&mut self) {
        self.series.clear();
    }
}

/// The token and cost counters of one provider, model and key.
#[derive(Default)]
pub struct UsageSeries {
    /// By [`crate::metrics::usage::Usage::by_kind`]'s order; a kind gets a series once used.
    pub tokens: [Option<IntCounter>; 5],
    /// Made once a priced answer is counted.
    pub cost: Option<Counter>,
}

/// One thread's tables, for the handles numbered `owner`.
#[derive(Default)]
pub struct ThreadSeries {
    owner: u64,
    /// `aurora_requests_total` by route, provider, model, status and key.
    pub requests: SeriesTable<5, IntCounter>,
    /// Token and cost counters by provider, model and key.
    pub usage: SeriesTable<3, UsageSeries>,
}

thread_local! {
    static THREAD_SERIES: RefCell<ThreadSeries> = RefCell::new(ThreadSeries::default());
}

/// Runs `count` on this thread's tables for the handles numbered `owner` (never 0),
/// emptied first if they were another's. `None` when the tables cannot be reached
/// (the thread is exiting): the caller counts through the registry itself.
pub fn with_thread_series<T>(owner: u64, count: impl FnOnce(&mut ThreadSeries) -> T) -> Option<T> {
    THREAD_SERIES
        .try_with(|cell| {
            let mut tables = cell.try_borrow_mut().ok()?;
            if tables.owner != owner {
                tables.requests.clear();
                tables.usage.clear();
                tables.owner = owner;
            }
            Some(count(&mut tables))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_labels_find_the_series_made_for_them() {
        let mut table = SeriesTable::<3, u32>::default();
        let mut made = 0;
        for _ in 0..3 {
            *table.get_or_make(["openai", "gpt-4o", "team-a"], || {
                made += 1;
                0
            }) += 1;
        }
        *table.get_or_make(["openai", "gpt-4o", "team-b"], || 100) += 1;
        assert_eq!(made, 1, "a known series is not made again");
        assert_eq!(*table.get_or_make(["openai", "gpt-4o", "team-a"], || 0), 3);
        assert_eq!(
            *table.get_or_make(["openai", "gpt-4o", "team-b"], || 0),
            101
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn labels_are_told_apart_where_their_joins_would_agree() {
        let mut table = SeriesTable::<2, u32>::default();
        *table.get_or_make(["ab", "c"], || 0) += 1;
        *table.get_or_make(["a", "bc"], || 0) += 1;
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn another_owners_tables_are_emptied_first() {
        let counted = |owner| {
            with_thread_series(owner, |t| {
                let n = t.requests.len();
                t.requests
                    .get_or_make(["passthrough", "openai", "-", "200", "master"], || {
                        // Named by a variable: this counter is no metric of the gateway's.
                        let name = "test_counter";
                        IntCounter::new(name, name).unwrap()
                    })
                    .inc();
                n
            })
        };
        let owner = u64::MAX - 1;
        assert_eq!(counted(owner), Some(0));
        assert_eq!(counted(owner), Some(1), "kept for the same owner");
        assert_eq!(counted(owner + 1), Some(0), "emptied for another");
    }
}
