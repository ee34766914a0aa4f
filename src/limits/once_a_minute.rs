//! A warning said at most once a minute: the limit store's failures would otherwise be
//! said by every request, flush or renewal while Redis is away.

use std::sync::atomic::{AtomicU64, Ordering};

/// When a warning was last said, as the minute (since 1970, plus one) it was said in.
#[derive(Debug, Default)]
pub struct OnceAMinute(AtomicU64);

impl OnceAMinute {
    /// Never said yet.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Whether the warning is due: not yet said this minute (it counts as said now).
    pub fn due(&self) -> bool {
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60 + 1);
        self.due_in(minute)
    }

    fn due_in(&self, minute: u64) -> bool {
        self.0.swap(minute, Ordering::Relaxed) != minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_due_once_in_a_minute() {
        let said = OnceAMinute::new();
        assert!(said.due_in(5));
        assert!(!said.due_in(5));
        assert!(said.due_in(6));
        assert!(OnceAMinute::new().due());
    }
}
