//! Builds the Pingora server: the proxy service on the plain listener and, when
//! configured, the HTTPS one; the metrics listener; and the background services that
//! reload the config on SIGHUP and keep provider host addresses resolved. Every HTTP/1
//! connection's request headers are held to `header_timeout` and `max_header_bytes`
//! below Pingora (see [`GuardedHttpApp`]).

mod cert_resolver;
mod deferred_poll_service;
mod dns_service;
mod guarded_app;
mod guarded_stream;
mod metrics_service;
mod reload_service;
pub mod request_guard;
mod usage_client;

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

pub use cert_resolver::LiveCertResolver;
pub use dns_service::{DnsRefresh, DNS_REFRESH_PERIOD};
pub use guarded_app::GuardedHttpApp;
pub use guarded_stream::GuardedStream;
pub use metrics_service::{metrics_service, MetricsApp};
pub use reload_service::ReloadOnHangup;
pub use usage_client::{fetch_usage_report, usage_report_text};

use crate::config::{Config, ConfigReloader, ConfigSource, ListenerCert, LiveConfig};
use crate::proxy::AuroraProxy;

/// Timeouts longer than this run on tokio's timer instead of Pingora's fast one.
///
/// Pingora's fast timer keeps, per worker thread, one entry for each 10 ms slot in
/// which a timeout was set, until that slot's time comes, even when the timeout was
/// cancelled long before (as nearly all are: the answer came). Pingora's default limit
/// is 900 s, so with the 600 s provider read timeout every request proxied upstream
/// added to a tree that only stopped growing after ten minutes (up to 60,000 entries
/// per thread, each also pinning allocator pages): the soak's steady RSS growth. A
/// tokio timer is freed when it is cancelled; at 10 s the fast timer holds at most
/// 1,000 entries per thread, full within seconds, and keeps the short timeouts
/// (connect) it is built for.
pub const FAST_TIMEOUT_LIMIT_SECS: u64 = 10;

/// The most tries Pingora makes of one request: past any plan's length, a bound only
/// against a loop.
pub const MAX_PROXY_TRIES: usize = 1024;

/// Pingora's server settings derived from Aurora's config.
pub fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.server.startup.threads,
        pid_file: config.server.startup.pid_file.clone(),
        upgrade_sock: config.server.startup.upgrade_sock.clone(),
        // Pingora waits 300 s by default; an edge proxy should drain faster.
        grace_period_seconds: Some(config.server.startup.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(5),
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMEOUT_LIMIT_SECS),
        // The attempt plan decides how often a call is tried (retries, a pool, its
        // fallbacks); Pingora's own cap (16) would cut a longer plan short with its
        // own error in place of the provider's last answer.
        max_retries: MAX_PROXY_TRIES,
        ..ServerConf::default()
    }
}

/// A server ready to run, and the reloader its SIGHUP service drives.
pub struct AuroraServer {
    /// The Pingora server; call `run_forever` or `run`.
    pub server: Server,
    /// Reloads `source` into the live config; counts attempts and failures.
    pub reloader: Arc<ConfigReloader>,
    /// The limit store, for what waits to be written once the server has run.
    pub limit_store: Arc<dyn crate::limits::LimitStore>,
    /// The store of Responses API answers, for the writes the server's runtimes left
    /// unfinished as they stopped.
    pub response_store: Arc<dyn crate::proxy::response_store::ResponseStore>,
}

/// Builds the server for `config`, which was loaded from `source`.
///
/// With `-u` in `opt` this blocks until the running process hands its listening
/// sockets over (after it receives SIGQUIT).
pub fn build_server(
    config: Config,
    source: ConfigSource,
    opt: Option<Opt>,
) -> pingora_core::Result<AuroraServer> {
    let mut conf = server_conf(&config);
    // A daemon (`-d`) would otherwise move to `/`, breaking relative paths in the
    // config (CA and certificate files) for reloads.
    conf.working_directory = std::env::current_dir().ok();
    let listen = config.server.startup.listen.clone();
    let tls = config
        .server
        .startup
        .tls_listen
        .clone()
        .zip(config.server.tls_cert.clone());
    let metrics_listen = config.server.startup.metrics_listen.clone();
    match crate::telemetry::install(&config.telemetry) {
        Ok(true) => log::info!(
            "traces go to {}",
            config.telemetry.otlp_traces_url.as_deref().unwrap_or("-")
        ),
        Ok(false) => {}
        Err(e) => log::error!("traces are off: {e}"),
    }
    let live = Arc::new(LiveConfig::new(config));
    let reloader = Arc::new(ConfigReloader::new(source, Arc::clone(&live)));

    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let reload = server.add_service(background_service(
        "config reload",
        ReloadOnHangup::new(Arc::clone(&reloader)),
    ));
    let aurora = AuroraProxy::new(Arc::clone(&live));
    let limit_store = aurora.limit_store();
    let response_store = aurora.response_store();
    // Not a dependency of the proxy: a request for a host not resolved yet looks it up
    // itself, so a slow resolver never delays the listener.
    server.add_service(background_service(
        "provider dns",
        DnsRefresh::new(
            Arc::clone(&live),
            aurora.resolver().clone(),
            DNS_REFRESH_PERIOD,
        ),
    ));
    server.add_service(background_service(
        "background work poll",
        deferred_poll_service::DeferredPollService {
            poll: aurora.deferred_poll().clone(),
            live: Arc::clone(&live),
            resolver: aurora.resolver().clone(),
            store: Arc::clone(&limit_store),
        },
    ));
    let mut proxy_app = pingora_proxy::http_proxy(&server.configuration, aurora);
    // An HTTP/2 connection with no stream open closes at the keep-alive timeout, as
    // an idle HTTP/1 one does (Pingora's default keeps it for ever). Taken at start.
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(live.snapshot().server.keepalive_timeout);
    proxy_app.server_options = Some(options);
    let mut proxy = Service::new(
        "aurora".to_string(),
        GuardedHttpApp::new(proxy_app, Arc::clone(&live)),
    );
    // Plain TCP reads straight into Pingora's HTTP buffers: the 64 KiB L4 read buffer
    // in front of them serves TLS's record-sized reads, and on a plain connection only
    // holds memory for as long as the connection lives (an idle stream, for one).
    proxy.add_listener(
        ListenerConfig::tcp(listen.clone()).l4_buffer(L4BufferSettings::default().read(0)),
    );
    if let Some((tls_listen, cert)) = &tls {
        proxy.add_tls_with_settings(tls_listen, None, tls_settings(cert, &live)?);
    }
    let proxy = server.add_service(proxy);
    // SIGHUP's default action ends the process: accept connections only once the
    // reload handler is installed.
    proxy.add_dependency(&reload);
    if let Some(addr) = &metrics_listen {
        server.add_service(metrics_service(
            addr,
            Arc::clone(&live),
            Arc::clone(&limit_store),
        ));
    }
    Ok(AuroraServer {
        server,
        reloader,
        limit_store,
        response_store,
    })
}

/// HTTPS with HTTP/2 offered first (ALPN h2, http/1.1). The certificate is looked up
/// in the live config on every handshake, so a reload that re-reads the files reaches
/// new connections without restarting the listener.
fn tls_settings(tls: &ListenerCert, live: &Arc<LiveConfig>) -> pingora_core::Result<TlsSettings> {
    // The paths are not read here: the resolver supplies the certificate.
    let mut settings = TlsSettings::intermediate(
        &tls.cert_file.to_string_lossy(),
        &tls.key_file.to_string_lossy(),
    )?;
    settings.set_cert_resolver(Arc::new(LiveCertResolver::new(Arc::clone(live))));
    settings.enable_h2();
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};
    use crate::providers::Timeouts;

    #[test]
    fn long_timeouts_leave_pingora_fast_timer() {
        let env = EnvSnapshot::from_pairs(Vec::<(String, String)>::new());
        let config = build_config(None, None, &env).unwrap();
        let limit = server_conf(&config)
            .fast_timeout_to_tokio_threshold_seconds
            .unwrap();
        assert_eq!(limit, FAST_TIMEOUT_LIMIT_SECS);
        // The provider write and keepalive timeouts, set by Pingora on every upstream
        // request, must be above the limit, so their cancelled timers are freed at
        // once (reads are timed by the connection itself, on tokio's timer).
        let t = Timeouts::default();
        for long in [t.write, t.keepalive] {
            assert!(long.as_secs() > limit, "{long:?}");
        }
    }
}
