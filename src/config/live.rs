//! The live configuration handle: one atomic pointer, swapped whole.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::Config;

/// Shared handle to the current [`Config`]. A request takes one snapshot at its start
/// and keeps it to the end, so a swap never changes a request midway.
#[derive(Debug)]
pub struct LiveConfig {
    current: ArcSwap<Config>,
    /// Marked on every swap, so background work that depends on the config (resolving
    /// provider hosts) can follow a reload at once instead of on its next tick.
    swaps: watch::Sender<()>,
}

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            current: ArcSwap::from_pointee(config),
            swaps: watch::Sender::new(()),
        }
    }

    /// The current configuration.
    pub fn snapshot(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Whether `config` is the current configuration (no reload since it was taken).
    pub fn is_current(&self, config: &Arc<Config>) -> bool {
        Arc::ptr_eq(&self.current.load(), config)
    }

    /// Replaces the configuration for every request that starts from now on.
    pub fn replace(&self, config: Config) {
        self.current.store(Arc::new(config));
        self.swaps.send_replace(());
    }

    /// A receiver whose `changed()` completes after each later [`replace`](Self::replace).
    pub fn swaps(&self) -> watch::Receiver<()> {
        self.swaps.subscribe()
    }
}
