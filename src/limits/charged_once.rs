//! The answers generated apart from their request (background responses, batches)
//! this process has charged, for the memory store: each
//! remembered until [`CHARGED_ONCE_KEPT_SECS`] after its charge, at most
//! [`MAX_REMEMBERED`] at once.

use std::collections::HashMap;
use std::sync::Mutex;

use super::CHARGED_ONCE_KEPT_SECS;
use crate::metrics::deferred_answer::AnswerKey;

/// The most answers remembered (about 40 bytes each). Past it, one read
/// again is charged again, until those charged long enough ago are forgotten.
pub const MAX_REMEMBERED: usize = 1_000_000;

/// Answers charged, each with when it may be forgotten.
#[derive(Debug, Default)]
pub struct ChargedResponses {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    until: HashMap<AnswerKey, u64>,
    /// When the expired may next be looked for in a full map: a full map of fresh
    /// entries is not walked on every charge.
    next_sweep: u64,
}

impl ChargedResponses {
    /// Whether `answer` is charged for the first time at `now` (Unix seconds); it
    /// is remembered as charged from now on. `None` when the record is unusable.
    pub fn first_charge(&self, answer: &AnswerKey, now: u64) -> Option<bool> {
        // One lock for the look and the mark: two requests never both come first.
        let mut r = self.inner.lock().ok()?;
        if r.until.get(answer).is_some_and(|&until| until > now) {
            return Some(false);
        }
        if r.until.len() >= MAX_REMEMBERED && now >= r.next_sweep {
            r.until.retain(|_, until| *until > now);
            r.next_sweep = now + 60;
        }
        if r.until.len() < MAX_REMEMBERED || r.until.contains_key(answer) {
            r.until.insert(*answer, now + CHARGED_ONCE_KEPT_SECS);
        }
        Some(true)
    }

    /// Whether `answer` was charged, and is still remembered at `now`. `None` when
    /// the record is unusable.
    pub fn was_charged(&self, answer: &AnswerKey, now: u64) -> Option<bool> {
        let r = self.inner.lock().ok()?;
        Some(r.until.get(answer).is_some_and(|&until| until > now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::deferred_answer::DeferredAnswer;

    #[test]
    fn a_response_is_charged_once_until_it_is_forgotten() {
        let charged = ChargedResponses::default();
        let one = *DeferredAnswer::background_response(br#""resp_1""#).key();
        let other = *DeferredAnswer::background_response(br#""resp_2""#).key();
        assert_eq!(charged.was_charged(&one, 1_000), Some(false));
        assert_eq!(charged.first_charge(&one, 1_000), Some(true));
        assert_eq!(charged.was_charged(&one, 1_001), Some(true));
        assert_eq!(charged.first_charge(&one, 1_001), Some(false));
        assert_eq!(charged.first_charge(&other, 1_001), Some(true));
        let later = 1_000 + CHARGED_ONCE_KEPT_SECS;
        assert_eq!(charged.first_charge(&one, later - 1), Some(false));
        assert_eq!(charged.first_charge(&one, later), Some(true));
    }

    #[test]
    fn a_full_record_forgets_the_expired_to_make_room() {
        let charged = ChargedResponses::default();
        {
            let mut r = charged.inner.lock().unwrap();
            for n in 0..MAX_REMEMBERED as u64 {
                let id = format!("\"resp_{n}\"");
                r.until.insert(
                    *DeferredAnswer::background_response(id.as_bytes()).key(),
                    500 + n % 2,
                );
            }
        }
        let fresh = *DeferredAnswer::background_response(br#""resp_fresh""#).key();
        // Half expire at 500, half at 501: at 500 the first half goes.
        assert_eq!(charged.first_charge(&fresh, 500), Some(true));
        assert_eq!(charged.first_charge(&fresh, 501), Some(false));
        let len = charged.inner.lock().unwrap().until.len();
        assert!(len <= MAX_REMEMBERED / 2 + 1, "{len}");
    }
}
