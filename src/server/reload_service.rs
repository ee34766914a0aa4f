//! The SIGHUP handler: a Pingora background service that runs the config reloader.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{ConfigReloader, ReloadOutcome};

/// Reloads the configuration on every SIGHUP until the server shuts down.
///
/// Reports ready once the signal handler is installed; the proxy service depends on
/// it, so SIGHUP is never fatal once the gateway listens. The handler stays installed
/// for the life of the process (tokio never removes it), so a SIGHUP during shutdown
/// is ignored rather than fatal.
pub struct ReloadOnHangup {
    reloader: Arc<ConfigReloader>,
}

impl ReloadOnHangup {
    /// A service driving `reloader`.
    pub fn new(reloader: Arc<ConfigReloader>) -> Self {
        Self { reloader }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!(
                    "cannot handle SIGHUP ({e}): config reload is unavailable and SIGHUP would stop the gateway"
                );
                ready.notify_ready();
                return;
            }
        };
        ready.notify_ready();
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    log::info!("SIGHUP received: reloading the config");
                    let reloader = Arc::clone(&self.reloader);
                    // File reads and certificate parsing block: keep them off the runtime.
                    let applied = match tokio::task::spawn_blocking(move || reloader.reload()).await {
                        Ok(outcome) => matches!(outcome, ReloadOutcome::Applied { .. }),
                        Err(e) => {
                            log::error!("config reload task failed: {e}");
                            false
                        }
                    };
                    if let Some(m) = crate::metrics::metrics() {
                        m.reload_finished(applied);
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
