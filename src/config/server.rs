//! `server:` as the gateway uses it: the part fixed when the process starts (sockets,
//! runtimes, Pingora's server settings) and the part every reload replaces.

use std::time::Duration;

use super::observability::{AccessLogFormat, DEFAULT_METRICS_LISTEN};
use super::tls_listener::ListenerCert;

/// Default plain HTTP listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Default worker threads.
pub const DEFAULT_THREADS: usize = 2;

/// Default seconds SIGTERM waits for in-flight requests.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;

/// Default pid file of a daemonized gateway.
pub const DEFAULT_PID_FILE: &str = "/tmp/aurora.pid";

/// Default socket for handing the listeners to a new process (`-u`).
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/aurora_upgrade.sock";

/// Default body size limit: 10 MiB.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 10 * 1024 * 1024;

/// Default limit of a `/p/` body streamed to the provider unread: 512 MiB (OpenAI's
/// and Anthropic's file uploads take as much).
pub const DEFAULT_PASSTHROUGH_BODY_SIZE_LIMIT: u64 = 512 * 1024 * 1024;

/// Default whole-header deadline: a request header must arrive within 10 s of its first byte.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on a request header (request line and fields): 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Default whole-body deadline for a request body: 60 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a kept-alive client connection may wait for its next request: 60 s.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time one write of an answer may wait for a client that does not read: 60 s.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Default cap on the request bodies held in memory at once across the gateway: 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 256 * 1024 * 1024;

/// Passthrough providers enabled when config says nothing.
pub const DEFAULT_PASSTHROUGH_PROVIDERS: [&str; 5] =
    ["openai", "anthropic", "openrouter", "zai", "vllm"];

/// The settings fixed when the process starts. A reload keeps their running values; a
/// graceful upgrade (`-u`) or a restart applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStartup {
    /// Plain HTTP listener (`host:port`).
    pub listen: String,
    /// Worker threads.
    pub threads: usize,
    /// Seconds SIGTERM waits for in-flight requests.
    pub grace_period_seconds: u64,
    /// Pid file written when running as a daemon.
    pub pid_file: String,
    /// Unix socket the listeners are handed over on during an upgrade.
    pub upgrade_sock: String,
    /// The metrics listener (`GET /metrics` without auth), `None` when off.
    pub metrics_listen: Option<String>,
    /// The HTTPS listener (`host:port`), `None` when there is none. Its certificate
    /// is in [`ServerSettings::tls_cert`], which reloads.
    pub tls_listen: Option<String>,
}

impl Default for ServerStartup {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            threads: DEFAULT_THREADS,
            grace_period_seconds: DEFAULT_GRACE_PERIOD_SECONDS,
            pid_file: DEFAULT_PID_FILE.to_string(),
            upgrade_sock: DEFAULT_UPGRADE_SOCK.to_string(),
            metrics_listen: Some(DEFAULT_METRICS_LISTEN.to_string()),
            tls_listen: None,
        }
    }
}

impl ServerStartup {
    /// The addresses clients reach the gateway on: the plain listener, then the HTTPS
    /// one when there is one.
    pub fn listeners(&self) -> Vec<&str> {
        let mut listeners = vec![self.listen.as_str()];
        listeners.extend(self.tls_listen.as_deref());
        listeners
    }

    /// The YAML keys whose values differ between `self` and `other`, in field order:
    /// what a reload from `other` would leave unapplied.
    pub fn differing_keys(&self, other: &Self) -> Vec<&'static str> {
        // Destructured so a new field fails to compile until it is named here.
        let Self {
            listen,
            threads,
            grace_period_seconds,
            pid_file,
            upgrade_sock,
            metrics_listen,
            tls_listen,
        } = self;
        let tls_key = match (tls_listen, &other.tls_listen) {
            (Some(a), Some(b)) => (a != b).then_some("server.tls.listen"),
            (None, None) => None,
            // Adding or removing the HTTPS listener.
            _ => Some("server.tls"),
        };
        [
            (*listen != other.listen).then_some("server.listen"),
            (*threads != other.threads).then_some("server.threads"),
            (*grace_period_seconds != other.grace_period_seconds)
                .then_some("server.grace_period_seconds"),
            (*pid_file != other.pid_file).then_some("server.pid_file"),
            (*upgrade_sock != other.upgrade_sock).then_some("server.upgrade_sock"),
            (*metrics_listen != other.metrics_listen).then_some("server.metrics_listen"),
            tls_key,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Gateway-wide settings: [`ServerStartup`], fixed for the life of the process, and
/// every other field, which a reload replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Listeners, threads and process files: fixed at start.
    pub startup: ServerStartup,
    /// Largest request body accepted, in bytes.
    pub body_size_limit: u64,
    /// Largest `/p/` request body the gateway streams to the provider without reading
    /// it (file and audio uploads), in bytes; a `/p/` body it reads is held to
    /// `body_size_limit`.
    pub passthrough_body_size_limit: u64,
    /// Time a client has to send a whole request header, from its first byte (408).
    pub header_timeout: Duration,
    /// Largest request header accepted, in bytes (431).
    pub max_header_bytes: u64,
    /// Time a client has to send a whole request body, from the end of its header (408).
    pub body_timeout: Duration,
    /// Request bodies held in memory at once, gateway-wide; past it, 503.
    pub max_buffered_bytes: u64,
    /// Time a kept-alive client connection may wait for its next request; past it, the
    /// connection closes.
    pub keepalive_timeout: Duration,
    /// Time one write of an answer may wait for the client to read; past it, the
    /// connection closes.
    pub send_timeout: Duration,
    /// Whether `/p/{provider}/…` is served at all.
    pub enable_passthrough_routes: bool,
    /// Whether `/p/{provider}/v1/x` is read as `/p/{provider}/x`.
    pub allow_passthrough_v1_alias: bool,
    /// Serve without a gateway key on a non-loopback listener while holding provider
    /// credentials (otherwise refused).
    pub allow_unauthenticated: bool,
    /// Instance names or types reachable through `/p/`.
    pub enabled_passthrough_providers: Vec<String>,
    /// Origins whose web pages may call the gateway (`*` any); none: CORS off.
    pub cors_allow_origins: Vec<String>,
    /// Log filter in `RUST_LOG` syntax, already checked.
    pub log_level: String,
    /// The certificate the HTTPS listener presents, when `server.tls` is configured.
    pub tls_cert: Option<ListenerCert>,
    /// How finished requests are logged.
    pub access_log: AccessLogFormat,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            startup: ServerStartup::default(),
            body_size_limit: DEFAULT_BODY_SIZE_LIMIT,
            passthrough_body_size_limit: DEFAULT_PASSTHROUGH_BODY_SIZE_LIMIT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            enable_passthrough_routes: true,
            allow_passthrough_v1_alias: true,
            allow_unauthenticated: false,
            enabled_passthrough_providers: DEFAULT_PASSTHROUGH_PROVIDERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            cors_allow_origins: Vec::new(),
            log_level: crate::logging::DEFAULT_LOG_FILTER.to_string(),
            tls_cert: None,
            access_log: AccessLogFormat::default(),
        }
    }
}

impl ServerSettings {
    /// Takes `running`'s startup part in place of this one's and names the keys this
    /// one wanted to change.
    pub fn keep_startup_of(&mut self, running: &ServerSettings) -> Vec<&'static str> {
        let kept = running.startup.differing_keys(&self.startup);
        self.startup = running.startup.clone();
        // A running HTTPS listener keeps its certificate when the new file drops
        // `server.tls`, so every handshake still finds one.
        if self.startup.tls_listen.is_some() && self.tls_cert.is_none() {
            self.tls_cert = running.tls_cert.clone();
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_field_changed() -> ServerStartup {
        ServerStartup {
            listen: "127.0.0.1:1".into(),
            threads: 9,
            grace_period_seconds: 1,
            pid_file: "/tmp/other.pid".into(),
            upgrade_sock: "/tmp/other.sock".into(),
            metrics_listen: None,
            tls_listen: Some("127.0.0.1:2".into()),
        }
    }

    #[test]
    fn every_startup_field_is_named_when_it_differs() {
        let running = ServerStartup::default();
        assert_eq!(running.differing_keys(&running.clone()), Vec::<&str>::new());
        assert_eq!(
            running.differing_keys(&every_field_changed()),
            [
                "server.listen",
                "server.threads",
                "server.grace_period_seconds",
                "server.pid_file",
                "server.upgrade_sock",
                "server.metrics_listen",
                "server.tls",
            ]
        );
    }

    #[test]
    fn a_moved_https_listener_is_named_apart_from_an_added_or_removed_one() {
        let with = |listen: &str| ServerStartup {
            tls_listen: Some(listen.into()),
            ..ServerStartup::default()
        };
        let none = ServerStartup::default();
        assert_eq!(
            with("0.0.0.0:1").differing_keys(&with("0.0.0.0:2")),
            ["server.tls.listen"]
        );
        assert_eq!(with("0.0.0.0:1").differing_keys(&none), ["server.tls"]);
        assert_eq!(none.differing_keys(&with("0.0.0.0:1")), ["server.tls"]);
    }

    #[test]
    fn keeping_the_startup_part_changes_nothing_else() {
        let running = ServerSettings::default();
        let mut next = ServerSettings {
            startup: every_field_changed(),
            body_size_limit: 1,
            ..ServerSettings::default()
        };
        let kept = next.keep_startup_of(&running);
        assert_eq!(kept.len(), 7, "{kept:?}");
        assert_eq!(next.startup, running.startup);
        assert_eq!(next.body_size_limit, 1, "reloadable");
    }
}
