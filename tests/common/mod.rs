//! Shared integration-test harness: the mock provider and the real gateway.
#![allow(dead_code, unused_imports)]

pub mod gateway;
pub mod load;
pub mod mock;
pub mod otlp;
pub mod redis;
pub mod sse;
pub mod tls;
pub mod usage_cli;

pub use gateway::{
    aurora_command, client, closed_port, free_port, get_json, raw_request, run_cli, scratch_dir,
    Gateway, PICKED_PORT,
};
pub use load::Load;
pub use mock::{CannedProvider, MockUpstream, Recorded, Reply};

/// Memory of process `pid` from `/proc/<pid>/status`, in bytes: `field` is `VmRSS`
/// (resident now) or `VmHWM` (its peak).
pub fn process_memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Reads a fixture under `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The SHA-256 of a managed key, in hex, as `auth.keys[].sha256` holds it.
pub fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// One scrape of a gateway's metrics listener at `listen` (`ip:port`).
pub async fn scrape(listen: &str) -> String {
    client()
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits out the end of the current minute when it is less than 5 s away: a minute
/// window resets at its end, and a test counting one must not straddle it.
pub async fn clear_of_a_minute_boundary() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_minute = now.as_millis() % 60_000;
    if into_minute > 55_000 {
        let wait = std::time::Duration::from_millis((60_000 - into_minute) as u64 + 100);
        tokio::time::sleep(wait).await;
    }
}
