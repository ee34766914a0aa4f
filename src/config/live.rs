//! The live configuration handle: one atomic pointer, swapped whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Config;

/// Shared handle to the current [`Config`]. A request takes one snapshot at its start
/// and keeps it to the end, so a swap never changes a request midway.
#[derive(Debug)]
pub struct LiveConfig {
    current: ArcSwap<Config>,
}

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            current: ArcSwap::from_pointee(config),
        }
    }

    /// The current configuration.
    pub fn snapshot(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Replaces the configuration for every request that starts from now on.
    pub fn replace(&self, config: Config) {
        self.current.store(Arc::new(config));
    }
}
