//! Keeps provider host addresses fresh: a Pingora background service that resolves
//! every configured provider host on a timer and after each config reload, so
//! requests find addresses ready instead of waiting on DNS.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::time::MissedTickBehavior;

use crate::config::{Config, LiveConfig};
use crate::proxy::UpstreamResolver;

/// How often every provider host is resolved again: often enough that a provider
/// moving its addresses is followed within about a DNS TTL.
pub const DNS_REFRESH_PERIOD: Duration = Duration::from_secs(30);

/// Resolves the live config's provider hosts into `resolver` every `period` and at
/// every config swap, until the server shuts down.
pub struct DnsRefresh {
    live: Arc<LiveConfig>,
    resolver: UpstreamResolver,
    period: Duration,
}

impl DnsRefresh {
    /// A service filling `resolver` (a clone of the proxy's) from `live`.
    pub fn new(live: Arc<LiveConfig>, resolver: UpstreamResolver, period: Duration) -> Self {
        Self {
            live,
            resolver,
            period,
        }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut swaps = self.live.swaps();
        let mut ticks = tokio::time::interval(self.period);
        // After a slow round, wait a full period rather than catching up in a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // The first tick completes at once: resolve at start.
            tokio::select! {
                _ = ticks.tick() => {}
                changed = swaps.changed() => {
                    if changed.is_err() {
                        // The config handle is gone: nothing left to follow.
                        return;
                    }
                    log::debug!("config swapped: resolving provider hosts");
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let config = self.live.snapshot();
            let hosts = provider_hosts(&config);
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            tokio::select! {
                _ = self.resolver.refresh(&hosts) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

/// The host names (not IP literals) of every configured provider, each once.
fn provider_hosts(config: &Config) -> BTreeSet<String> {
    config
        .providers
        .configured()
        .map(|p| &p.base.host)
        .filter(|h| h.parse::<IpAddr>().is_err())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};

    /// A config with `providers`, on a local listener (an open gateway holding
    /// provider keys is refused beyond this machine).
    fn config(providers: &str) -> Config {
        let env = EnvSnapshot::from_pairs(Vec::<(String, String)>::new());
        let yaml = format!("server:\n  listen: 127.0.0.1:8080\n{providers}");
        build_config(Some(&yaml), None, &env).unwrap()
    }

    #[test]
    fn hosts_are_the_configured_providers_names() {
        let c = config(
            "providers:\n  a:\n    type: openai\n    api_key: k\n    base_url: http://localhost:9/v1\n  b:\n    type: openai\n    api_key: k\n    base_url: http://127.0.0.1:9/v1\n  c:\n    type: anthropic\n    api_key: k\n    base_url: https://localhost/v1\n",
        );
        let hosts: Vec<String> = provider_hosts(&c).into_iter().collect();
        assert_eq!(hosts, vec!["localhost".to_string()]);
    }

    #[tokio::test]
    async fn resolves_at_start_and_after_a_reload_then_stops_on_shutdown() {
        let live = Arc::new(LiveConfig::new(config("providers: {}\n")));
        let resolver = UpstreamResolver::default();
        let (stop, watch) = tokio::sync::watch::channel(false);
        // A period far longer than the test: only the start and the swap may resolve.
        let service = DnsRefresh::new(
            Arc::clone(&live),
            resolver.clone(),
            Duration::from_secs(3600),
        );
        let task = tokio::spawn(async move { service.start(watch).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(resolver.addresses("localhost").is_none());
        live.replace(config(
            "providers:\n  a:\n    type: openai\n    api_key: k\n    base_url: http://localhost:9/v1\n",
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while resolver.addresses("localhost").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "not resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
