//! Choosing the upstream peer: provider hosts resolved off the request path (Pingora's
//! `HttpPeer::new` would resolve synchronously and panic on failure; see [`resolver`])
//! and peer options from the provider's timeouts and trust roots.

mod lookup;
mod resolver;
mod waits;

use std::net::SocketAddr;

use pingora_core::upstreams::peer::HttpPeer;

use crate::providers::{Provider, Timeouts};

pub use resolver::UpstreamResolver;
pub use waits::{read_timer, AnswerShape, UpstreamWait};

/// The Pingora peer for `provider` at `addr`, its reads timed for an answer of
/// `shape` (see [`read_timer`]) under `timeouts` (the provider's, or a model's).
pub fn provider_peer(
    provider: &Provider,
    addr: SocketAddr,
    timeouts: &Timeouts,
    shape: AnswerShape,
) -> Box<HttpPeer> {
    // The name is sent as SNI; a plain-HTTP provider has no use for it (its `Host`
    // header is set per request), so it costs no copy there.
    let sni = if provider.base.tls {
        provider.base.host.clone()
    } else {
        String::new()
    };
    // Boxed where it is made: Pingora takes it boxed, and the peer (672 bytes) would
    // be copied on each return on its way there.
    let mut peer = Box::new(HttpPeer::new(addr, provider.base.tls, sni));
    let o = &mut peer.options;
    o.connection_timeout = Some(timeouts.connect);
    o.total_connection_timeout = Some(timeouts.connect.saturating_mul(2));
    o.read_timeout = Some(read_timer(timeouts, shape).0);
    o.write_timeout = Some(timeouts.write);
    o.idle_timeout = Some(timeouts.keepalive);
    o.ca = provider.tls_roots.clone();
    peer.group_key = provider.tls_roots_group;
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
        let t = Timeouts {
            idle: std::time::Duration::from_secs(7),
            ..p.timeouts
        };
        let peer = provider_peer(
            &p,
            "127.0.0.1:443".parse().unwrap(),
            &t,
            AnswerShape::Stream,
        );
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "api.example.com");
        assert_eq!(peer.options.read_timeout, Some(t.idle));
        assert_eq!(peer.options.idle_timeout, Some(t.keepalive));
    }

    #[test]
    fn peers_checked_against_other_roots_never_share_a_pooled_connection() {
        use pingora_core::upstreams::peer::Peer;
        let at = |group: u64| {
            let p = Provider {
                base: BaseUrl::parse("https://llm.internal/v1").unwrap(),
                tls_roots_group: group,
                ..Provider::unconfigured(ProviderKind::OpenAi)
            };
            let addr = "127.0.0.1:443".parse().unwrap();
            provider_peer(&p, addr, &p.timeouts, AnswerShape::Whole).reuse_hash()
        };
        assert_eq!(at(0), at(0), "the same roots share the pool");
        assert_ne!(at(0), at(7), "a private CA's connections are its own");
        assert_ne!(at(7), at(8), "a CA file that changed starts a new pool");
    }
}
