//! The engine alone, for the load bench: a minimal Pingora `ProxyHttp` with one peer
//! and the provider's header set (the `/p/openai` prefix dropped, the client's
//! credentials replaced by the provider key, `Host` set), nothing else, with the
//! gateway's allocator (jemalloc by default). Measured beside Aurora, it separates
//! what Pingora costs from what Aurora adds.
//!
//! `bare_pingora --listen PORT --upstream PORT --threads N --key KEY`; built with
//! `--features alloc-count`, `GET /__allocations` answers the allocations made so far.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};

#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: aurora::alloc_count::CountingAllocator = aurora::alloc_count::CountingAllocator;

// The gateway's allocator, so the comparison shows the proxy logic, not the allocator.
#[cfg(all(feature = "jemalloc", not(feature = "alloc-count")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Aurora's engine settings that bear on speed, so only the proxy logic differs.
const FAST_TIMEOUT_LIMIT_SECS: u64 = 10;

struct BareProxy {
    upstream: SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<bool> {
        #[cfg(feature = "alloc-count")]
        if _session.req_header().uri.path() == "/__allocations" {
            let body = bytes::Bytes::from(aurora::alloc_count::allocations().to_string());
            let mut header = pingora_http::ResponseHeader::build(200, Some(2))?;
            header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
            _session
                .write_response_header(Box::new(header), false)
                .await?;
            _session.write_response_body(Some(body), true).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // Aurora's provider defaults.
        let o = &mut peer.options;
        o.connection_timeout = Some(Duration::from_secs(10));
        o.total_connection_timeout = Some(Duration::from_secs(20));
        o.read_timeout = Some(Duration::from_secs(600));
        o.write_timeout = Some(Duration::from_secs(60));
        o.idle_timeout = Some(Duration::from_secs(90));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        let upstream_path = req
            .uri
            .path_and_query()
            .and_then(|pq| pq.as_str().strip_prefix("/p/openai"))
            .map(|rest| rest.parse::<http::Uri>());
        if let Some(Ok(uri)) = upstream_path {
            req.set_uri(uri);
        }
        req.remove_header("x-api-key");
        req.insert_header(http::header::AUTHORIZATION, self.authorization.clone())?;
        req.insert_header(http::header::HOST, self.host.clone())?;
        Ok(())
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: u16 = arg(&args, "--listen")
        .and_then(|p| p.parse().ok())
        .expect("--listen PORT");
    let upstream: u16 = arg(&args, "--upstream")
        .and_then(|p| p.parse().ok())
        .expect("--upstream PORT");
    let threads: usize = arg(&args, "--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let key = arg(&args, "--key").expect("--key KEY");
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMEOUT_LIMIT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = BareProxy {
        upstream: SocketAddr::from(([127, 0, 0, 1], upstream)),
        host: HeaderValue::from_str(&format!("127.0.0.1:{upstream}")).expect("host"),
        authorization: HeaderValue::from_str(&format!("Bearer {key}")).expect("key"),
    };
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&format!("127.0.0.1:{listen}"));
    server.add_service(service);
    server.run_forever();
}
