//! Runs the proxy's poll of background responses and batches (a Pingora background
//! service): what is due is polled with the live config, until the server shuts down.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::LiveConfig;
use crate::limits::LimitStore;
use crate::proxy::deferred_poll::DeferredPoll;
use crate::proxy::UpstreamResolver;

/// The proxy's poll, with what it polls and charges through.
pub struct DeferredPollService {
    pub poll: DeferredPoll,
    pub live: Arc<LiveConfig>,
    pub resolver: UpstreamResolver,
    pub store: Arc<dyn LimitStore>,
}

#[async_trait]
impl BackgroundService for DeferredPollService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        let config = || self.live.snapshot();
        self.poll
            .run(config, &self.resolver, &self.store, stop)
            .await;
    }
}
