//! `aurora usage` run as an operator runs it, read until the report shows what a test
//! waits for: charges reach the store shortly after their calls.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::run_cli;

/// `aurora usage --key KEY` with the config at `config` and `env`, whose JSON report
/// is read again (for up to 5 s) until its total counts `requests`; the last one read.
/// The command must succeed.
pub async fn usage_printed(config: &Path, env: &[(&str, &str)], key: &str, requests: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let printed = usage_once(config, env, key, Instant::now() > deadline).await;
        if let Some(printed) = printed {
            if printed["total"]["requests"] == requests || Instant::now() > deadline {
                return printed;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `aurora usage --key KEY` with the config at `config` and `env`: its report;
/// none while a name the config does not know has nothing used under it yet (its
/// charges are on their way), unless `last`.
async fn usage_once(config: &Path, env: &[(&str, &str)], key: &str, last: bool) -> Option<Value> {
    let (config, key) = (config.to_path_buf(), key.to_string());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = config.to_str().unwrap();
        run_cli(&["usage", "--key", &key, "--config", config], &env)
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !last && said.contains("no key is named") {
        return None;
    }
    assert!(out.status.success(), "{said}");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}
