//! Where a host name's addresses come from: the system resolver in the gateway, a
//! scripted answer in tests.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;

/// Why a host name gave no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The resolver failed (no such name, no answer, resolver unreachable).
    #[error("{0}")]
    Failed(String),
    /// The resolver answered with no address.
    #[error("no address")]
    Empty,
    /// The resolver did not answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Looks up every address of a host name.
///
/// The resolver orders and deduplicates the answer itself, so an implementation
/// returns addresses as its source lists them.
#[async_trait]
pub trait HostLookup: fmt::Debug + Send + Sync {
    /// All addresses of `host`, a name (never an IP literal).
    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread, through tokio),
/// so `/etc/hosts` and the system's DNS settings apply.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemLookup;

#[async_trait]
impl HostLookup for SystemLookup {
    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        // The port is required by the API and discarded: ports are added per request.
        let addrs = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| LookupError::Failed(e.to_string()))?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn system_lookup_finds_localhost() {
        let ips = SystemLookup.lookup("localhost").await.unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }

    #[tokio::test]
    async fn system_lookup_fails_for_reserved_names() {
        // `.invalid` never resolves (RFC 2606).
        assert!(SystemLookup.lookup("no-such-host.invalid").await.is_err());
    }
}
