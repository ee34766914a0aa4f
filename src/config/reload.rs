//! Reloading the configuration while serving: re-read the file and the environment,
//! validate everything, and swap the result in whole — or change nothing.
//!
//! The signal plumbing lives with the server; this type is plain so it can be tested
//! without processes or signals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{exposure, ConfigError, ConfigSource, EnvSnapshot, LimitStoreKind, LiveConfig};

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new configuration serves every request that starts from now on.
    Applied {
        /// `3 providers, 2 keys`.
        counts: String,
        /// Restart-only keys that changed in the file but kept their running values.
        kept: Vec<&'static str>,
    },
    /// The new configuration was refused; the running one stays.
    Rejected(ConfigError),
}

/// Re-reads a [`ConfigSource`] into a [`LiveConfig`] and counts every attempt.
#[derive(Debug)]
pub struct ConfigReloader {
    source: ConfigSource,
    /// The running config came from the file: a reload needs it whole.
    from_file: bool,
    live: Arc<LiveConfig>,
    attempts: AtomicU64,
    failures: AtomicU64,
}

impl ConfigReloader {
    /// A reloader feeding `live` from `source`.
    pub fn new(source: ConfigSource, live: Arc<LiveConfig>) -> Self {
        Self {
            from_file: source.has_content(),
            source,
            live,
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The live configuration this reloader swaps.
    pub fn live(&self) -> &Arc<LiveConfig> {
        &self.live
    }

    /// Reloads from the file and the current process environment.
    pub fn reload(&self) -> ReloadOutcome {
        self.reload_with(&EnvSnapshot::from_process())
    }

    /// Reloads from the file and `env`, logs the outcome and, when applied, switches
    /// the log filter to the new one (after logging, so the line obeys the filter in
    /// force when the reload was asked for).
    pub fn reload_with(&self, env: &EnvSnapshot) -> ReloadOutcome {
        let attempt = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let loaded = if self.from_file {
            self.source.load_whole(env)
        } else {
            self.source.load(env)
        };
        let mut next = match loaded {
            Ok(config) => config,
            Err(err) => return self.rejected(attempt, err),
        };
        let running = self.live.snapshot();
        let mut kept = next.server.keep_startup_of(&running.server);
        // The new file was checked against its own listeners; the running ones are
        // those that will serve it.
        if let Err(err) = exposure::check_open_gateway(
            &next.auth,
            &next.providers,
            &next.server.startup.listeners(),
            next.server.allow_unauthenticated,
        ) {
            return self.rejected(attempt, err);
        }
        // The limit store is connected and the span exporter built once, at start.
        if next.limits.store != running.limits.store {
            kept.push(store_change(&running.limits.store, &next.limits.store));
            next.limits.store = running.limits.store.clone();
        }
        // Its Redis is limits.store's, whose change is said above: only its kind here.
        if std::mem::discriminant(&next.responses_store)
            != std::mem::discriminant(&running.responses_store)
        {
            kept.push("responses.store");
        }
        next.responses_store = running.responses_store.clone();
        // A Redis store holds its call slots for the lease it was built with.
        if next.limits.slot_lease != running.limits.slot_lease
            && matches!(running.limits.store, LimitStoreKind::Redis(_))
        {
            next.limits.slot_lease = running.limits.slot_lease;
            kept.push("limits.slot_lease");
        }
        if next.telemetry != running.telemetry {
            next.telemetry = running.telemetry.clone();
            kept.push("telemetry");
        }
        if !kept.is_empty() {
            log::warn!(
                "config reload: restart-only settings changed and were not applied: {}; still using the running values. {}",
                kept.join(", "),
                how_to_apply(&kept)
            );
        }
        if next.auth.is_open() && !running.auth.is_open() {
            log::warn!(
                "GATEWAY AUTH IS OFF after this reload: no master_key or managed key is configured"
            );
        }
        let counts = next.counts();
        let log_level = next.server.log_level.clone();
        self.live.replace(next);
        log::info!("config reloaded: {counts} (reload {attempt})");
        if let Err(e) = crate::logging::set_filter(&log_level) {
            // Validated while building the config; kept as a guard, not expected.
            log::error!("config reload: log filter not applied: {e}");
        }
        ReloadOutcome::Applied { counts, kept }
    }

    fn rejected(&self, attempt: u64, err: ConfigError) -> ReloadOutcome {
        let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        log::error!(
            "config reload failed: {err}; still serving the previous config (reload {attempt}, {failed} failed so far)"
        );
        ReloadOutcome::Rejected(err)
    }

    /// Reloads attempted so far, successful or not.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Reloads refused so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// How the restart-only settings `kept` can be applied. A graceful upgrade finds the
/// running process by its upgrade socket, so it cannot change that socket's path: the
/// new process would wait on a path nobody writes to, then give up.
fn how_to_apply(kept: &[&str]) -> &'static str {
    if kept.contains(&"server.upgrade_sock") {
        "Apply them with a restart: a graceful upgrade cannot change server.upgrade_sock"
    } else {
        "Apply them with a graceful upgrade (start the new process with `-u`, then send SIGQUIT to this one) or a restart"
    }
}

/// What of the limit store a reload changed: its URL, or only its certificates (a CA
/// or client certificate rotated on disk, the system's roots updated), which take a
/// restart to be used.
fn store_change(running: &LimitStoreKind, next: &LimitStoreKind) -> &'static str {
    let (LimitStoreKind::Redis(was), LimitStoreKind::Redis(now)) = (running, next) else {
        return "limits.store";
    };
    match (&was.tls, &now.tls) {
        _ if was.url != now.url => "limits.store",
        (Some(was), Some(now))
            if !was.roots_from_file && !now.roots_from_file && was.client == now.client =>
        {
            "the system trust roots of limits.store"
        }
        _ => "limits.store_tls",
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{build_config, Config};

    struct Fixture {
        /// Removed with the fixture.
        _dir: tempfile::TempDir,
        path: PathBuf,
        reloader: ConfigReloader,
    }

    fn env() -> EnvSnapshot {
        EnvSnapshot::from_pairs([(
            "AURORA_MASTER_KEY",
            "reload-test-master-key-0123456789abcdef",
        )])
    }

    fn fixture(yaml: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("aurora-unit-reload-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("aurora.yaml");
        std::fs::write(&path, yaml).unwrap();
        let first = build_config(Some(yaml), Some(&path), &env()).unwrap();
        let live = Arc::new(LiveConfig::new(first));
        let source = ConfigSource {
            path: path.clone(),
            required: true,
        };
        Fixture {
            _dir: dir,
            path,
            reloader: ConfigReloader::new(source, live),
        }
    }

    fn key_of(config: &Config, provider: &str) -> String {
        let p = config.providers.find(provider).unwrap();
        p.credential.next_static_key().unwrap().expose().to_string()
    }

    const KEY_A: &str = "providers:\n  openai:\n    api_key: sk-fake-a\n";
    const KEY_B: &str = "providers:\n  openai:\n    api_key: sk-fake-b\n";

    #[test]
    fn a_valid_file_replaces_the_config_for_later_snapshots_only() {
        let f = fixture(KEY_A);
        let before = f.reloader.live().snapshot();
        std::fs::write(&f.path, KEY_B).unwrap();
        let outcome = f.reloader.reload_with(&env());
        assert!(
            matches!(&outcome, ReloadOutcome::Applied { kept, counts } if kept.is_empty() && counts == "1 providers, 1 keys"),
            "{outcome:?}"
        );
        assert_eq!(
            key_of(&before, "openai"),
            "sk-fake-a",
            "a taken snapshot never changes"
        );
        assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-b");
    }

    #[test]
    fn a_reload_into_an_open_public_gateway_or_a_weak_key_keeps_the_old_config() {
        let public_keyed = format!("{KEY_A}server:\n  listen: 0.0.0.0:8080\n");
        let f = fixture(&public_keyed);
        // The master key came from the environment; the reload's environment has none.
        let bare = EnvSnapshot::default();
        let ReloadOutcome::Rejected(err) = f.reloader.reload_with(&bare) else {
            panic!("an open gateway facing the network must be refused");
        };
        assert!(
            err.to_string().contains("refusing an open gateway"),
            "{err}"
        );
        assert!(f.reloader.live().snapshot().auth.has_master());
        let weak = EnvSnapshot::from_pairs([("AURORA_MASTER_KEY", "changeme")]);
        assert!(matches!(
            f.reloader.reload_with(&weak),
            ReloadOutcome::Rejected(_)
        ));
        assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-a");
    }

    #[test]
    fn a_reload_cannot_leave_a_running_public_listener_without_auth() {
        let f = fixture(&format!("{KEY_A}server:\n  listen: 0.0.0.0:8080\n"));
        // The new file listens on loopback alone, which a restart would make true; a
        // reload keeps the public listener running.
        std::fs::write(
            &f.path,
            format!("{KEY_A}server:\n  listen: 127.0.0.1:8080\n"),
        )
        .unwrap();
        let ReloadOutcome::Rejected(err) = f.reloader.reload_with(&EnvSnapshot::default()) else {
            panic!("auth off on the running public listener must be refused");
        };
        assert!(
            err.to_string().contains("refusing an open gateway"),
            "{err}"
        );
        assert!(f.reloader.live().snapshot().auth.has_master());
        // With the key kept, the same file reloads (its listener change is named kept).
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a keyed reload applies");
        };
        assert_eq!(kept, ["server.listen"]);
    }

    #[test]
    fn a_file_emptied_or_gone_changes_nothing() {
        let f = fixture(KEY_A);
        for emptied in ["", "  \n# nothing yet\n"] {
            std::fs::write(&f.path, emptied).unwrap();
            let ReloadOutcome::Rejected(err) = f.reloader.reload_with(&env()) else {
                panic!("an emptied file must be refused");
            };
            assert!(err.to_string().contains("is empty"), "{err}");
            assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-a");
        }
        std::fs::remove_file(&f.path).unwrap();
        assert!(matches!(
            f.reloader.reload_with(&env()),
            ReloadOutcome::Rejected(_)
        ));
        assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-a");
    }

    #[test]
    fn a_config_that_never_had_a_file_reloads_from_the_environment() {
        let f = fixture("");
        std::fs::remove_file(&f.path).unwrap();
        let reloader = ConfigReloader::new(
            ConfigSource {
                path: f.path.clone(),
                required: false,
            },
            Arc::clone(f.reloader.live()),
        );
        let with_key = EnvSnapshot::from_pairs([
            (
                "AURORA_MASTER_KEY",
                "reload-test-master-key-0123456789abcdef",
            ),
            ("OPENAI_API_KEY", "sk-fake-env"),
        ]);
        assert!(matches!(
            reloader.reload_with(&with_key),
            ReloadOutcome::Applied { .. }
        ));
        assert_eq!(key_of(&reloader.live().snapshot(), "openai"), "sk-fake-env");
    }

    #[test]
    fn a_changed_upgrade_socket_is_said_to_need_a_restart() {
        assert!(how_to_apply(&["server.threads"]).contains("graceful upgrade (start"));
        let advice = how_to_apply(&["server.threads", "server.upgrade_sock"]);
        assert!(advice.contains("with a restart"), "{advice}");
        assert!(!advice.contains("`-u`"), "{advice}");
    }

    #[test]
    fn a_broken_file_changes_nothing_and_says_where() {
        let f = fixture(KEY_A);
        std::fs::write(&f.path, "providers:\n  openai:\n    api_key: [unclosed\n").unwrap();
        let ReloadOutcome::Rejected(err) = f.reloader.reload_with(&env()) else {
            panic!("a broken file must be refused");
        };
        let text = err.to_string();
        assert!(text.contains("aurora.yaml:"), "{text}");
        assert!(
            text.contains(":3:") || text.contains(":4:"),
            "line number missing: {text}"
        );
        assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-a");

        std::fs::write(&f.path, "providers:\n  openai:\n    base_url: nope\n").unwrap();
        assert!(matches!(
            f.reloader.reload_with(&env()),
            ReloadOutcome::Rejected(_)
        ));
        assert_eq!(key_of(&f.reloader.live().snapshot(), "openai"), "sk-fake-a");
    }

    #[test]
    fn every_attempt_and_failure_is_counted() {
        let f = fixture(KEY_A);
        f.reloader.reload_with(&env());
        std::fs::write(&f.path, "server: [").unwrap();
        f.reloader.reload_with(&env());
        std::fs::write(&f.path, KEY_B).unwrap();
        f.reloader.reload_with(&env());
        assert_eq!(f.reloader.attempts(), 3);
        assert_eq!(f.reloader.failures(), 1);
    }

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_named() {
        let f =
            fixture("server:\n  listen: 127.0.0.1:7001\n  threads: 2\n  body_size_limit: 1MiB\n");
        std::fs::write(
            &f.path,
            "server:\n  listen: 127.0.0.1:7002\n  threads: 4\n  grace_period_seconds: 1\n  pid_file: /tmp/x.pid\n  upgrade_sock: /tmp/x.sock\n  body_size_limit: 2MiB\n",
        )
        .unwrap();
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(
            kept,
            vec![
                "server.listen",
                "server.threads",
                "server.grace_period_seconds",
                "server.pid_file",
                "server.upgrade_sock"
            ]
        );
        let now = f.reloader.live().snapshot();
        assert_eq!(now.server.startup.listen, "127.0.0.1:7001");
        assert_eq!(now.server.startup.threads, 2);
        assert_eq!(now.server.startup.grace_period_seconds, 30);
        assert_eq!(now.server.body_size_limit, 2 * 1024 * 1024, "reloadable");
    }

    fn write_cert_pair(dir: &std::path::Path, name: &str) -> (String, String) {
        let (c, k) = crate::config::tls_listener::tests::write_pair(dir, name);
        (c.display().to_string(), k.display().to_string())
    }

    fn tls_yaml(listen: &str, (cert, key): &(String, String)) -> String {
        format!("server:\n  tls: {{listen: \"{listen}\", cert_file: {cert}, key_file: {key}}}\n")
    }

    #[test]
    fn the_https_certificate_reloads_while_its_listener_stays() {
        let certs = tempfile::Builder::new()
            .prefix("aurora-unit-reload-tls-")
            .tempdir()
            .unwrap();
        let first = write_cert_pair(certs.path(), "first");
        let second = write_cert_pair(certs.path(), "second");
        let f = fixture(&tls_yaml("127.0.0.1:8443", &first));
        std::fs::write(&f.path, tls_yaml("127.0.0.1:8444", &second)).unwrap();
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(kept, vec!["server.tls.listen"]);
        let now = f.reloader.live().snapshot();
        assert_eq!(
            now.server.startup.tls_listen.as_deref(),
            Some("127.0.0.1:8443")
        );
        let served = now.server.tls_cert.clone().unwrap();
        assert!(served.cert_file.ends_with("second.crt"), "{served:?}");

        // Dropping `server.tls` keeps the listener and the certificate it serves.
        std::fs::write(&f.path, "server:\n  metrics_listen: off\n").unwrap();
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(kept, vec!["server.metrics_listen", "server.tls"]);
        let now = f.reloader.live().snapshot();
        assert!(now.server.startup.tls_listen.is_some());
        assert_eq!(now.server.tls_cert, Some(served));
        assert!(now.server.startup.metrics_listen.is_some());
    }

    #[test]
    fn the_limit_store_is_kept_over_a_reload() {
        let f = fixture("limits:\n  default: {requests_per_minute: 5}\n");
        std::fs::write(
            &f.path,
            "limits:\n  store: redis://127.0.0.1:1/0\n  default: {requests_per_minute: 7}\n",
        )
        .unwrap();
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(kept, vec!["limits.store"]);
        let now = f.reloader.live().snapshot();
        assert_eq!(now.limits.store, crate::config::LimitStoreKind::Memory);
    }

    #[test]
    fn a_store_certificate_rotated_on_disk_is_named_as_kept_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let write_ca = |name: &str| {
            let (cert, _) = crate::config::tls_listener::tests::write_pair(dir.path(), name);
            std::fs::copy(cert, &ca).unwrap();
        };
        write_ca("first");
        let yaml = format!(
            "limits:\n  store: rediss://127.0.0.1:1/0\n  store_tls: {{ca_file: {}}}\n",
            ca.display()
        );
        let f = fixture(&yaml);
        let started = f.reloader.live().snapshot().limits.store.clone();
        // The same files: nothing to say.
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert!(kept.is_empty(), "{kept:?}");
        write_ca("second");
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(kept, vec!["limits.store_tls"]);
        assert_eq!(f.reloader.live().snapshot().limits.store, started);
    }

    #[test]
    fn a_reload_that_changes_the_slot_lease_of_a_redis_store_names_it_kept() {
        let store = "limits:\n  store: redis://127.0.0.1:1/0\n";
        let f = fixture(&format!("{store}  slot_lease: 60s\n"));
        std::fs::write(&f.path, format!("{store}  slot_lease: 5s\n")).unwrap();
        let ReloadOutcome::Applied { kept, .. } = f.reloader.reload_with(&env()) else {
            panic!("a valid file must apply");
        };
        assert_eq!(kept, vec!["limits.slot_lease"]);
        let live = f.reloader.live().snapshot().limits.slot_lease;
        assert_eq!(live, std::time::Duration::from_secs(60));
    }

    #[test]
    fn passthrough_switches_auth_and_limits_reload() {
        let _guard = crate::logging::TEST_FILTER_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let f = fixture(KEY_A);
        let hash = "ab".repeat(32);
        std::fs::write(
            &f.path,
            format!(
                "{KEY_A}server:\n  enabled_passthrough_providers: [anthropic]\n  allow_passthrough_v1_alias: false\n  log_level: warn\nauth:\n  keys:\n    - {{name: ci, sha256: \"{hash}\"}}\n"
            ),
        )
        .unwrap();
        f.reloader.reload_with(&env());
        let now = f.reloader.live().snapshot();
        assert!(!now.passthrough_enabled("openai", "openai"));
        assert!(!now.server.allow_passthrough_v1_alias);
        assert_eq!(now.auth.managed_len(), 1);
        assert_eq!(now.server.log_level, "warn");
        assert_eq!(crate::logging::max_level(), log::LevelFilter::Warn);
    }
}
