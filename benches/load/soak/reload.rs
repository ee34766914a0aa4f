//! The soak gateway's config file, rewritten with a new alias before each SIGHUP, and
//! the check that the running gateway took the new file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::client::{self, Failure, RequestSpec};

/// How long a reload may take to show.
const RELOAD_DEADLINE: Duration = Duration::from_secs(5);

/// The alias that reload number `generation` adds.
pub fn alias(generation: u64) -> String {
    format!("soak-{generation}")
}

/// The config file of reload number `generation` (0 at start). Keys and base URLs come
/// from the environment; upstream connections idle for a second are closed, so a gateway
/// without traffic holds none and its open descriptors can be compared.
pub fn config_yaml(generation: u64) -> String {
    format!(
        "# Written by the soak; provider keys and base URLs come from the environment.
providers:
  openai: {{timeouts: {{keepalive: 1s}}}}
  anthropic: {{timeouts: {{keepalive: 1s}}}}
models:
  aliases:
    soak-steady: openai/gpt-4o-mini
    {}: anthropic/claude-sonnet-4-5
",
        alias(generation)
    )
}

/// Replaces the file in one step: the gateway never reads half of it.
fn rewrite(path: &Path, yaml: &str) -> Result<(), String> {
    let next = path.with_extension("yaml.next");
    std::fs::write(&next, yaml).map_err(|e| format!("write {}: {e}", next.display()))?;
    std::fs::rename(&next, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

/// `GET /v1/models/{alias}` as the gateway answers it now.
async fn alias_status(
    addr: SocketAddr,
    base: &RequestSpec,
    alias: &str,
) -> Result<StatusCode, String> {
    let spec = RequestSpec {
        method: Method::GET,
        path: format!("/v1/models/{alias}"),
        body: Bytes::new(),
        ..base.clone()
    };
    let mut sender = client::connect(addr).await?;
    match client::exchange_answer(&mut sender, &spec).await {
        Ok(answer) => Ok(answer.status),
        Err(Failure::Closed) => Err("connection closed".into()),
        Err(Failure::Request(why)) => Err(why),
    }
}

/// Writes config `generation` to `path`, sends SIGHUP to `pid`, and waits until the
/// gateway at `addr` serves the new alias. `base` supplies the gateway key.
pub async fn reload(
    pid: u32,
    path: &Path,
    generation: u64,
    addr: SocketAddr,
    base: &RequestSpec,
) -> Result<(), String> {
    rewrite(path, &config_yaml(generation))?;
    // SAFETY: signalling the gateway the soak started, by its pid.
    if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
        return Err(format!(
            "SIGHUP to {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let alias = alias(generation);
    let deadline = Instant::now() + RELOAD_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        match alias_status(addr, base, &alias).await {
            Ok(StatusCode::OK) => return Ok(()),
            Ok(status) => last = format!("status {status}"),
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "alias {alias} not served within {RELOAD_DEADLINE:?} ({last})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generation_changes_one_alias_and_keeps_the_rest() {
        let (one, two) = (config_yaml(1), config_yaml(2));
        assert_ne!(one, two);
        assert!(one.contains("    soak-1: anthropic/claude-sonnet-4-5\n"));
        assert!(two.contains("    soak-2: anthropic/claude-sonnet-4-5\n"));
        assert!(two.contains("soak-steady: openai/gpt-4o-mini"));
        assert!(!two.contains("soak-1:"));
    }

    #[test]
    fn the_config_is_one_the_gateway_accepts() {
        // As the soak starts the gateway: on loopback, with the bench's gateway key.
        let env = aurora::config::EnvSnapshot::from_pairs([
            ("AURORA_LISTEN", "127.0.0.1:8080"),
            ("AURORA_MASTER_KEY", super::super::servers::GATEWAY_KEY),
            ("OPENAI_API_KEY", "sk-soak-placeholder"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("ANTHROPIC_API_KEY", "sk-soak-placeholder"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1"),
        ]);
        let config = aurora::config::build_config(Some(&config_yaml(3)), None, &env).unwrap();
        assert!(config.models.aliases.contains_key("soak-3"));
        assert!(config.models.aliases.contains_key("soak-steady"));
        // Pooled upstream connections idle for a second are closed, so that a gateway
        // without traffic holds none when its descriptors are counted; the pieces of a
        // stream may keep their usual silence.
        for name in ["openai", "anthropic"] {
            let timeouts = config.providers.find(name).unwrap().timeouts;
            assert_eq!(
                timeouts.keepalive,
                std::time::Duration::from_secs(1),
                "{name}"
            );
            assert_eq!(
                timeouts.idle,
                aurora::providers::Timeouts::default().idle,
                "{name}"
            );
        }
    }
}
