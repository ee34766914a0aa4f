//! Builds the Pingora server that hosts Aurora's proxy service.

use std::sync::Arc;

use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;

use crate::config::{Config, LiveConfig};
use crate::proxy::AuroraProxy;

/// Where a daemonized Aurora writes its pid.
pub const PID_FILE: &str = "/tmp/aurora.pid";
/// The socket a new binary started with `-u` takes the listeners over from.
pub const UPGRADE_SOCK: &str = "/tmp/aurora_upgrade.sock";

/// Pingora's server settings derived from Aurora's config.
pub fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.server.threads,
        pid_file: PID_FILE.to_string(),
        upgrade_sock: UPGRADE_SOCK.to_string(),
        // Pingora waits 300 s by default; an edge proxy should drain faster.
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    }
}

/// A ready-to-run server: the proxy service listening on `server.listen`.
pub fn build_server(config: Config, opt: Option<Opt>) -> Server {
    let conf = server_conf(&config);
    let listen = config.server.listen.clone();
    let live = Arc::new(LiveConfig::new(config));
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        AuroraProxy::new(live),
        "aurora",
    );
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server
}
