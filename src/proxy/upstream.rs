//! Choosing the upstream peer: provider hosts resolved off the request path (Pingora's
//! `HttpPeer::new` would resolve synchronously and panic on failure; see [`resolver`])
//! and peer options from the provider's timeouts and trust roots.

mod lookup;
mod resolver;

use std::net::SocketAddr;

use pingora_core::upstreams::peer::HttpPeer;

use crate::providers::Provider;

pub use resolver::UpstreamResolver;

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
