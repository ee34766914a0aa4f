//! The provider host address table.
//!
//! A background service ([`UpstreamResolver::refresh`], driven from
//! `server::dns_service`) resolves every configured provider host on a timer and at
//! each config reload; requests only read the latest table, an [`ArcSwap`] snapshot,
//! so picking an address takes no lock and allocates nothing. A host the table does
//! not know yet (a request arriving before the first refresh) is looked up once on the
//! request path and stored for every later request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;

use super::lookup::{HostLookup, LookupError, SystemLookup};
use crate::lookup::LookupMap;
use crate::providers::BaseUrl;
use crate::proxy::GatewayError;

/// How long a host that stops resolving keeps its last good addresses: a resolver
/// outage shorter than this does not take a provider down.
pub const DNS_GRACE: Duration = Duration::from_secs(10 * 60);

/// Longest wait for one host's answer; the system resolver can hang for much longer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One host's addresses and when they were last confirmed.
#[derive(Debug, Clone)]
struct Resolved {
    /// IPv4 first, then IPv6, each in the resolver's order; never empty.
    addrs: Arc<[IpAddr]>,
    /// The last successful lookup.
    at: Instant,
}

/// Provider hosts from the config → their addresses.
type Table = LookupMap<Box<str>, Resolved>;

/// One lookup's outcome, in connection order.
type Answer = Result<Arc<[IpAddr]>, LookupError>;

/// Resolves provider hosts off the request path and hands out their addresses.
///
/// Cloning is cheap and shares the table, so the proxy and the refresh service work on
/// the same one.
#[derive(Debug, Clone)]
pub struct UpstreamResolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: ArcSwap<Table>,
    lookup: Arc<dyn HostLookup>,
    grace: Duration,
}

impl Default for UpstreamResolver {
    /// The system resolver with the [`DNS_GRACE`] period.
    fn default() -> Self {
        Self::with_lookup(Arc::new(SystemLookup), DNS_GRACE)
    }
}

impl UpstreamResolver {
    /// A resolver asking `lookup`, keeping a failing host's addresses for `grace`.
    pub(crate) fn with_lookup(lookup: Arc<dyn HostLookup>, grace: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(Table::default()),
                lookup,
                grace,
            }),
        }
    }

    /// The first address to connect to for `host:port`; the same as
    /// [`resolve_nth`](Self::resolve_nth) with attempt 0.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, GatewayError> {
        self.resolve_nth(host, port, 0).await
    }

    /// The address for connection attempt `attempt` to a provider at `base`: its IP
    /// literal as read with the config, or its host name resolved
    /// ([`resolve_nth`](Self::resolve_nth)).
    pub async fn resolve_base(
        &self,
        base: &BaseUrl,
        attempt: usize,
    ) -> Result<SocketAddr, GatewayError> {
        match base.ip_literal() {
            Some(ip) => Ok(SocketAddr::new(ip, base.port)),
            None => self.resolve_nth(&base.host, base.port, attempt).await,
        }
    }

    /// The address for connection attempt `attempt` (0 for the first) to `host:port`:
    /// address `attempt % n` of the host's `n` addresses, so each retry after a failed
    /// connect moves to the next address and wraps around. An IP literal is its own
    /// only address.
    ///
    /// A host missing from the table (not resolved yet, or dropped after failing for
    /// longer than the grace period) is looked up now; when that fails too, the answer
    /// is a 502 "cannot resolve provider host".
    pub async fn resolve_nth(
        &self,
        host: &str,
        port: u16,
        attempt: usize,
    ) -> Result<SocketAddr, GatewayError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        // The guard is dropped before any await: arc-swap guards are meant to be brief.
        if let Some(ip) = self.known(host, attempt) {
            return Ok(SocketAddr::new(ip, port));
        }
        let addrs = self.resolve_missing(host).await?;
        Ok(SocketAddr::new(nth(&addrs, attempt), port))
    }

    /// The addresses the table holds for `host`, in connection order.
    pub fn addresses(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        self.inner
            .table
            .load()
            .get(host)
            .map(|r| Arc::clone(&r.addrs))
    }

    /// Looks up every host in `hosts` (IP literals are skipped) and makes them the
    /// table: new answers replace old ones; a host that fails keeps its last good
    /// addresses for the grace period, then is dropped; hosts not listed are dropped.
    pub async fn refresh(&self, hosts: &[&str]) {
        self.refresh_at(hosts, Instant::now()).await;
    }

    /// [`refresh`](Self::refresh) as if it ran at `now`, so the grace period can be
    /// tested without waiting for it.
    async fn refresh_at(&self, hosts: &[&str], now: Instant) {
        let mut names: Vec<&str> = hosts
            .iter()
            .copied()
            .filter(|h| h.parse::<IpAddr>().is_err())
            .collect();
        names.sort_unstable();
        names.dedup();
        // Concurrently: one hanging name must not hold up the others.
        let answers = join_all(names.iter().map(|h| self.lookup_ordered(h))).await;
        let results: Vec<(&str, Answer)> = names.into_iter().zip(answers).collect();
        let grace = self.inner.grace;
        let previous = self.inner.table.rcu(|current| {
            let mut next = Table::with_capacity_and_hasher(results.len(), Default::default());
            for (host, result) in &results {
                let kept = match result {
                    Ok(addrs) => Some(Resolved {
                        addrs: Arc::clone(addrs),
                        at: now,
                    }),
                    // A request may have stored a newer answer while this refresh waited.
                    Err(_) => current
                        .get(*host)
                        .filter(|old| now.saturating_duration_since(old.at) < grace)
                        .cloned(),
                };
                if let Some(entry) = kept {
                    next.insert((*host).into(), entry);
                }
            }
            next
        });
        let table = self.inner.table.load();
        for (host, result) in &results {
            let Err(e) = result else { continue };
            match (table.get(*host), previous.get(*host)) {
                (Some(kept), _) => log::warn!(
                    "provider host `{host}` does not resolve ({e}): keeping its {} last known address(es) for up to {:?} after the last good answer",
                    kept.addrs.len(),
                    grace
                ),
                (None, Some(_)) => log::warn!(
                    "provider host `{host}` does not resolve ({e}) and has not for {grace:?}: its addresses are dropped"
                ),
                (None, None) => log::warn!("provider host `{host}` does not resolve ({e})"),
            }
        }
    }

    /// Address `attempt` of `host` from the current table, when it is there.
    fn known(&self, host: &str, attempt: usize) -> Option<IpAddr> {
        let table = self.inner.table.load();
        table.get(host).map(|r| nth(&r.addrs, attempt))
    }

    /// Looks up a host the table lacks, on the request path, and stores the answer
    /// for every later request.
    async fn resolve_missing(&self, host: &str) -> Result<Arc<[IpAddr]>, GatewayError> {
        let addrs = self.lookup_ordered(host).await.map_err(|e| {
            GatewayError::bad_gateway(format!("cannot resolve provider host `{host}`: {e}"))
        })?;
        let entry = Resolved {
            addrs: Arc::clone(&addrs),
            at: Instant::now(),
        };
        self.inner.table.rcu(|current| {
            let mut next = Table::clone(current);
            next.insert(host.into(), entry.clone());
            next
        });
        Ok(addrs)
    }

    /// The addresses of `host` in connection order, within [`LOOKUP_TIMEOUT`].
    async fn lookup_ordered(&self, host: &str) -> Answer {
        let ips = tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.lookup.lookup(host))
            .await
            .map_err(|_| LookupError::TimedOut(LOOKUP_TIMEOUT))??;
        ordered(&ips).ok_or(LookupError::Empty)
    }
}

/// IPv4 addresses first, then IPv6, each family in the given order, without repeats;
/// `None` when there are none. IPv4 leads because `localhost` often lists `::1` first
/// while local servers bind 127.0.0.1.
fn ordered(ips: &[IpAddr]) -> Option<Arc<[IpAddr]>> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(ips.len());
    let v4 = ips.iter().filter(|ip| ip.is_ipv4());
    let v6 = ips.iter().filter(|ip| ip.is_ipv6());
    for ip in v4.chain(v6) {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    (!out.is_empty()).then(|| out.into())
}

/// Address `attempt % len`; `addrs` is never empty (see [`ordered`]).
fn nth(addrs: &[IpAddr], attempt: usize) -> IpAddr {
    addrs[attempt % addrs.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// Answers from a script the test edits, counting the lookups.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<HashMap<String, Result<Vec<IpAddr>, LookupError>>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn answer(&self, host: &str, ips: &[&str]) {
            let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
            self.answers
                .lock()
                .unwrap()
                .insert(host.to_string(), Ok(ips));
        }

        fn fail(&self, host: &str) {
            self.answers.lock().unwrap().insert(
                host.to_string(),
                Err(LookupError::Failed("scripted failure".into())),
            );
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl HostLookup for Scripted {
        async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answers
                .lock()
                .unwrap()
                .get(host)
                .cloned()
                .unwrap_or_else(|| Err(LookupError::Failed("unknown host".into())))
        }
    }

    fn scripted() -> (Arc<Scripted>, UpstreamResolver) {
        let script = Arc::new(Scripted::default());
        let resolver = UpstreamResolver::with_lookup(script.clone(), DNS_GRACE);
        (script, resolver)
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn ip_literals_skip_lookup() {
        let (script, r) = scripted();
        let a = r.resolve("127.0.0.1", 9).await.unwrap();
        assert_eq!(a, "127.0.0.1:9".parse().unwrap());
        let a = r.resolve_nth("::1", 9, 3).await.unwrap();
        assert_eq!(a, "[::1]:9".parse().unwrap());
        r.refresh(&["10.0.0.1", "::1"]).await;
        assert_eq!(script.calls(), 0);
    }

    #[tokio::test]
    async fn a_base_url_names_its_ip_literal_or_has_its_host_resolved() {
        let (script, r) = scripted();
        let literal = BaseUrl::parse("http://10.0.0.7:8000/v1").unwrap();
        let a = r.resolve_base(&literal, 2).await.unwrap();
        assert_eq!(a, "10.0.0.7:8000".parse().unwrap());
        assert_eq!(script.calls(), 0);
        script.answer("api.test", &["10.0.0.1", "10.0.0.2"]);
        let named = BaseUrl::parse("https://api.test/v1").unwrap();
        let a = r.resolve_base(&named, 1).await.unwrap();
        assert_eq!(a, "10.0.0.2:443".parse().unwrap());
        assert_eq!(script.calls(), 1);
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
    async fn refresh_resolves_localhost_for_real() {
        let r = UpstreamResolver::default();
        r.refresh(&["localhost"]).await;
        let addrs = r.addresses("localhost").unwrap();
        assert_eq!(addrs[0], "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn unknown_hosts_are_bad_gateway() {
        let r = UpstreamResolver::default();
        let e = r.resolve("no-such-host.invalid", 80).await.unwrap_err();
        assert_eq!(e.status, 502);
        assert!(
            e.message.contains("cannot resolve provider host"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn every_address_is_kept_ipv4_first_in_order() {
        let (script, r) = scripted();
        script.answer(
            "api.test",
            &[
                "2001:db8::1",
                "10.0.0.2",
                "2001:db8::2",
                "10.0.0.1",
                "10.0.0.2",
            ],
        );
        r.refresh(&["api.test"]).await;
        assert_eq!(
            &*r.addresses("api.test").unwrap(),
            ips(&["10.0.0.2", "10.0.0.1", "2001:db8::1", "2001:db8::2"]).as_slice()
        );
    }

    #[tokio::test]
    async fn attempts_rotate_through_the_addresses() {
        let (script, r) = scripted();
        script.answer("api.test", &["10.0.0.1", "10.0.0.2", "2001:db8::1"]);
        r.refresh(&["api.test"]).await;
        let mut got = Vec::new();
        for attempt in 0..5 {
            got.push(r.resolve_nth("api.test", 443, attempt).await.unwrap());
        }
        let want: Vec<SocketAddr> = [
            "10.0.0.1:443",
            "10.0.0.2:443",
            "[2001:db8::1]:443",
            "10.0.0.1:443",
            "10.0.0.2:443",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(got, want);
        assert_eq!(
            r.resolve("api.test", 443).await.unwrap(),
            r.resolve_nth("api.test", 443, 0).await.unwrap()
        );
    }

    #[tokio::test]
    async fn refresh_picks_up_new_answers() {
        let (script, r) = scripted();
        script.answer("api.test", &["10.0.0.1"]);
        r.refresh(&["api.test"]).await;
        assert_eq!(
            r.resolve("api.test", 80).await.unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        script.answer("api.test", &["10.0.0.9", "10.0.0.8"]);
        r.refresh(&["api.test"]).await;
        assert_eq!(
            &*r.addresses("api.test").unwrap(),
            ips(&["10.0.0.9", "10.0.0.8"]).as_slice()
        );
        assert_eq!(
            r.resolve("api.test", 80).await.unwrap(),
            "10.0.0.9:80".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn hosts_no_longer_listed_are_dropped() {
        let (script, r) = scripted();
        script.answer("old.test", &["10.0.0.1"]);
        script.answer("new.test", &["10.0.0.2"]);
        r.refresh(&["old.test"]).await;
        r.refresh(&["new.test"]).await;
        assert!(r.addresses("old.test").is_none());
        assert!(r.addresses("new.test").is_some());
    }

    #[tokio::test]
    async fn failing_host_keeps_its_addresses_for_the_grace_period() {
        let (script, r) = scripted();
        let start = Instant::now();
        script.answer("api.test", &["10.0.0.1", "10.0.0.2"]);
        r.refresh_at(&["api.test"], start).await;
        script.fail("api.test");
        // Failing, within the grace period: the last good answer stays in use.
        r.refresh_at(&["api.test"], start + DNS_GRACE / 2).await;
        r.refresh_at(&["api.test"], start + DNS_GRACE - Duration::from_secs(1))
            .await;
        assert_eq!(
            &*r.addresses("api.test").unwrap(),
            ips(&["10.0.0.1", "10.0.0.2"]).as_slice()
        );
        let calls = script.calls();
        assert_eq!(
            r.resolve_nth("api.test", 80, 1).await.unwrap(),
            "10.0.0.2:80".parse().unwrap()
        );
        assert_eq!(script.calls(), calls, "served from the table");
        // Past the grace period (counted from the last good answer): dropped, and a
        // request gets the 502.
        r.refresh_at(&["api.test"], start + DNS_GRACE).await;
        assert!(r.addresses("api.test").is_none());
        let e = r.resolve("api.test", 80).await.unwrap_err();
        assert_eq!(e.status, 502);
        assert!(e
            .message
            .contains("cannot resolve provider host `api.test`"));
    }

    #[tokio::test]
    async fn a_good_answer_restarts_the_grace_period() {
        let (script, r) = scripted();
        let start = Instant::now();
        script.answer("api.test", &["10.0.0.1"]);
        r.refresh_at(&["api.test"], start).await;
        r.refresh_at(&["api.test"], start + DNS_GRACE / 2).await;
        script.fail("api.test");
        r.refresh_at(&["api.test"], start + DNS_GRACE).await;
        assert!(r.addresses("api.test").is_some());
    }

    #[tokio::test]
    async fn a_host_that_never_resolved_is_not_kept() {
        let (script, r) = scripted();
        script.fail("api.test");
        r.refresh(&["api.test"]).await;
        assert!(r.addresses("api.test").is_none());
        script.answer("empty.test", &[]);
        r.refresh(&["empty.test"]).await;
        assert!(r.addresses("empty.test").is_none());
        let e = r.resolve("empty.test", 80).await.unwrap_err();
        assert_eq!(e.status, 502);
    }

    #[tokio::test]
    async fn requests_do_not_look_up_once_the_table_is_filled() {
        let (script, r) = scripted();
        script.answer("api.test", &["10.0.0.1"]);
        script.answer("other.test", &["10.0.0.2"]);
        r.refresh(&["api.test", "other.test", "api.test"]).await;
        assert_eq!(script.calls(), 2, "one lookup per distinct host");
        for attempt in 0..100 {
            r.resolve_nth("api.test", 443, attempt).await.unwrap();
            r.resolve("other.test", 443).await.unwrap();
        }
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test]
    async fn a_host_missing_from_the_table_is_looked_up_once_and_shared() {
        let (script, r) = scripted();
        script.answer("api.test", &["10.0.0.1"]);
        let shared = r.clone();
        assert_eq!(
            r.resolve("api.test", 80).await.unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        shared.resolve("api.test", 80).await.unwrap();
        assert_eq!(script.calls(), 1);
        assert!(shared.addresses("api.test").is_some());
    }

    #[tokio::test]
    async fn refresh_keeps_an_answer_stored_by_a_request_meanwhile() {
        let (script, r) = scripted();
        script.answer("api.test", &["10.0.0.1"]);
        r.resolve("api.test", 80).await.unwrap();
        script.fail("api.test");
        r.refresh(&["api.test"]).await;
        assert!(r.addresses("api.test").is_some());
    }

    #[test]
    fn ordering_puts_ipv4_first_and_drops_repeats() {
        let got = ordered(&ips(&["::1", "127.0.0.1", "::1"])).unwrap();
        assert_eq!(&*got, ips(&["127.0.0.1", "::1"]).as_slice());
        assert!(ordered(&[]).is_none());
    }
}
