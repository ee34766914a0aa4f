//! Choosing the upstream peer: asynchronous, cached name resolution (Pingora's
//! `HttpPeer::new` would resolve synchronously and panic on failure) and peer options
//! from the provider's timeouts and trust roots.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use pingora_core::upstreams::peer::HttpPeer;

use super::GatewayError;
use crate::providers::Provider;

/// How long a resolved address is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Resolves provider hosts without blocking a worker, remembering answers for [`DNS_TTL`].
#[derive(Debug, Default)]
pub struct UpstreamResolver {
    cache: RwLock<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl UpstreamResolver {
    /// The address to connect to for `host:port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, GatewayError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Ok(cache) = self.cache.read() {
            if let Some((addr, at)) = cache.get(&key) {
                if at.elapsed() < DNS_TTL {
                    return Ok(*addr);
                }
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                GatewayError::bad_gateway(format!("cannot resolve provider host `{host}`: {e}"))
            })?
            .collect();
        // Prefer IPv4: `localhost` often lists ::1 first while local servers bind 127.0.0.1.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| {
                GatewayError::bad_gateway(format!("provider host `{host}` has no address"))
            })?;
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key, (addr, Instant::now()));
        }
        Ok(addr)
    }
}

/// The Pingora peer for `provider` at `addr`.
pub fn provider_peer(provider: &Provider, addr: SocketAddr) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, provider.base.tls, provider.base.host.clone());
    let t = provider.timeouts;
    let o = &mut peer.options;
    o.connection_timeout = Some(t.connect);
    o.total_connection_timeout = Some(t.connect.saturating_mul(2));
    o.read_timeout = Some(t.read);
    o.write_timeout = Some(t.write);
    o.idle_timeout = Some(t.idle);
    o.ca = provider.tls_roots.clone();
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{BaseUrl, ProviderKind};

    #[tokio::test]
    async fn ip_literals_skip_lookup() {
        let r = UpstreamResolver::default();
        let a = r.resolve("127.0.0.1", 9).await.unwrap();
        assert_eq!(a, "127.0.0.1:9".parse().unwrap());
    }

    #[tokio::test]
    async fn localhost_resolves_to_ipv4_loopback() {
        let r = UpstreamResolver::default();
        assert_eq!(
            r.resolve("localhost", 80).await.unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_hosts_are_bad_gateway() {
        let r = UpstreamResolver::default();
        let e = r.resolve("no-such-host.invalid", 80).await.unwrap_err();
        assert_eq!(e.status, 502);
    }

    #[test]
    fn peer_carries_timeouts_and_tls() {
        let p = Provider {
            base: BaseUrl::parse("https://api.example.com/v1").unwrap(),
            ..Provider::unconfigured(ProviderKind::OpenAi)
        };
        let peer = provider_peer(&p, "127.0.0.1:443".parse().unwrap());
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "api.example.com");
        assert_eq!(peer.options.read_timeout, Some(p.timeouts.read));
    }
}
