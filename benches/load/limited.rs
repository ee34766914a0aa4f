//! What limits cost: a managed gateway key with every limit set too high to refuse,
//! counted in memory or in a `redis-server` the bench starts on a free loopback port
//! (in a scratch directory, nothing saved) and stops.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest;

use super::servers::{self, Server};

/// The gateway key a limited target's client sends: a placeholder, not a credential.
pub const LIMITED_KEY: &str = "bench-limited-placeholder-key-0123456789";

/// The gateway config of a limited target: the key with its limits, and the store
/// (`None`: memory).
pub fn limited_config(redis_url: Option<&str>) -> String {
    let store = redis_url.map_or(String::new(), |url| format!("limits:\n  store: {url}\n"));
    let sha = hex::encode(sha2::Sha256::digest(LIMITED_KEY.as_bytes()));
    format!(
        "{store}auth:\n  keys:\n    - name: bench-limited\n      sha256: \"{sha}\"\n      limits: {{requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, budget: {{tokens: 1000000000000000, period: month}}}}\n"
    )
}

/// `redis-server` on the `PATH`, if any.
pub fn redis_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"])
        .map(|d| Path::new(d).join("redis-server"))
        .find(|p| p.is_file());
    found
}

/// Starts `bin` on a free loopback port with its files under `dir`, on `cpus`.
pub fn start_redis(bin: &Path, cpus: Option<&[usize]>, dir: &Path) -> Server {
    let port = servers::free_port();
    let scratch = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&scratch).expect("redis scratch dir");
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    servers::prepare(&mut cmd, cpus);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let mut server = Server::new(port, child, libc::SIGTERM);
    servers::wait_until(&mut server, "redis-server", &scratch.join("none.log"), ping);
    server
}

/// Whether a Redis answers on `port`.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limited_key_has_every_limit_and_the_store_asked_for() {
        let memory = limited_config(None);
        assert!(!memory.contains("store:"));
        for limit in ["requests_per_minute", "tokens_per_minute", "budget"] {
            assert!(memory.contains(limit), "{memory}");
        }
        let sha = hex::encode(sha2::Sha256::digest(LIMITED_KEY.as_bytes()));
        assert!(memory.contains(&sha));
        let redis = limited_config(Some("redis://127.0.0.1:7000/0"));
        assert!(redis.starts_with("limits:\n  store: redis://127.0.0.1:7000/0\n"));
    }
}
