//! Starts the real `aurora` binary on an ephemeral loopback port with a given config
//! and environment, and stops it when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test's own scratch directory (config, logs, pid file, certificates). It is
/// removed when dropped, unless the test is failing: then it stays, and its path is
/// printed, so the gateway's log can be read.
pub struct ScratchDir(Option<tempfile::TempDir>);

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.0.take() {
                eprintln!("test files kept in {}", dir.keep().display());
            }
        }
    }
}

/// A fresh scratch directory for one test.
pub fn scratch_dir() -> ScratchDir {
    ScratchDir(Some(
        tempfile::Builder::new()
            .prefix("aurora-test-")
            .tempdir()
            .unwrap(),
    ))
}

/// The `AURORA_METRICS_LISTEN` or `AURORA_TLS_LISTEN` value that asks
/// [`Gateway::start`] to pick that listener's port, as it picks the gateway's (and
/// again when another test took it first): [`Gateway::metrics_port`] and
/// [`Gateway::tls_port`] say which.
pub const PICKED_PORT: &str = "127.0.0.1:0";

/// The listeners whose port [`Gateway::start`] picks when asked with [`PICKED_PORT`].
const PICKED_LISTENERS: [&str; 2] = ["AURORA_METRICS_LISTEN", "AURORA_TLS_LISTEN"];

/// A loopback port bound and never listened on, until the test process ends: a
/// connection to it is refused, and no other test's server can take it meanwhile (as
/// one could a port merely free when asked).
pub fn closed_port() -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    // Held, not closed: a few sockets for the life of a test binary.
    std::mem::forget(socket);
    port
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether process `pid` holds the socket listening on loopback `port` (Linux
/// `/proc`): an answer on the port alone may come from another test's gateway.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    // Columns: sl, local address, remote address, state (0A: listening), …, inode.
    let Some(inode) = table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"0A"))
            .then(|| cols.get(9).map(|i| format!("socket:[{i}]")))
            .flatten()
    }) else {
        return false;
    };
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == inode.as_str()))
    })
}

/// Runs `aurora` with `args` and a clean environment plus `env`, to completion.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    base_command(env).args(args).output().unwrap()
}

/// The `aurora` binary with a clean environment plus `env`.
pub fn aurora_command(env: &[(&str, &str)]) -> Command {
    base_command(env)
}

fn base_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aurora"));
    // No RUST_LOG: the gateway's default is `info`, and tests that reload
    // `server.log_level` need the file to decide.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running gateway.
pub struct Gateway {
    pub port: u16,
    /// The ports picked for [`PICKED_LISTENERS`] asked with [`PICKED_PORT`].
    picked: Vec<(&'static str, u16)>,
    pub log_path: PathBuf,
    /// Scratch directory holding the config, logs, pid file and upgrade socket.
    pub dir: PathBuf,
    /// Keeps `dir` until the last gateway using it (an upgrade shares it) is gone.
    scratch: Arc<ScratchDir>,
    env: Vec<(String, String)>,
    child: Child,
}

impl Gateway {
    /// Starts the gateway with `yaml` as its config file and `env` as its environment.
    /// The pid file and upgrade socket live in the test's own scratch directory.
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> Self {
        let scratch = Arc::new(scratch_dir());
        let dir = scratch.to_path_buf();
        std::fs::write(dir.join("aurora.yaml"), yaml).unwrap();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push((
            "AURORA_PID_FILE".into(),
            dir.join("aurora.pid").display().to_string(),
        ));
        env.push((
            "AURORA_UPGRADE_SOCK".into(),
            dir.join("upgrade.sock").display().to_string(),
        ));
        // Gateways run side by side: none takes the metrics listener's fixed default
        // port unless its test asks for one.
        if !env.iter().any(|(k, _)| k == "AURORA_METRICS_LISTEN") {
            env.push(("AURORA_METRICS_LISTEN".into(), String::new()));
        }
        // Tests run in parallel, each asking the OS for a free port: another test's
        // gateway may take the same one first. Then this one cannot bind (Pingora
        // retries) while that one answers: start again on other ports.
        let to_pick: Vec<&'static str> = PICKED_LISTENERS
            .into_iter()
            .filter(|name| env.iter().any(|(k, v)| k == name && v == PICKED_PORT))
            .collect();
        for _ in 0..5 {
            let port = free_port();
            let mut env = env.clone();
            env.push(("AURORA_LISTEN".into(), format!("127.0.0.1:{port}")));
            let picked: Vec<(&'static str, u16)> =
                to_pick.iter().map(|name| (*name, free_port())).collect();
            for (name, port) in &picked {
                env.retain(|(k, _)| k != name);
                env.push((name.to_string(), format!("127.0.0.1:{port}")));
            }
            let mut gw = Self::spawn(scratch.clone(), port, env, &[], "aurora.log");
            gw.picked = picked;
            if gw.wait_ready() {
                return gw;
            }
        }
        panic!("no free port for the gateway after 5 tries");
    }

    fn spawn(
        scratch: Arc<ScratchDir>,
        port: u16,
        env: Vec<(String, String)>,
        args: &[&str],
        log_name: &str,
    ) -> Self {
        let dir = scratch.to_path_buf();
        let log_path = dir.join(log_name);
        let log = std::fs::File::create(&log_path).unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let child = base_command(&pairs)
            .arg("--config")
            .arg(dir.join("aurora.yaml"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Gateway {
            port,
            picked: Vec::new(),
            log_path,
            dir,
            scratch,
            env,
            child,
        }
    }

    /// Starts a second gateway with `-u` on the same config, port, pid file and upgrade
    /// socket. It waits for this one's listeners, which it gets once this one is sent
    /// SIGQUIT.
    pub fn spawn_upgrade(&self) -> Gateway {
        Self::spawn(
            self.scratch.clone(),
            self.port,
            self.env.clone(),
            &["-u"],
            "aurora-upgraded.log",
        )
    }

    /// The config file the gateway reads (again on SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("aurora.yaml")
    }

    /// The upgrade socket path.
    pub fn upgrade_sock(&self) -> PathBuf {
        self.dir.join("upgrade.sock")
    }

    /// Replaces the config file; takes effect on the next SIGHUP.
    pub fn write_config(&self, yaml: &str) {
        // Write then rename, as an operator's editor or deploy tool would: a reload
        // never sees half a file.
        let tmp = self.dir.join("aurora.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the log holds `needle` at least `count` times; panics with the log
    /// after a generous deadline.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not appear {count} times in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this gateway listens on its port and answers `/health`; `false`
    /// when another process holds the port.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited early ({status}): {}", self.log());
            }
            if self.log().contains("is in use") {
                return false;
            }
            let others_ready = self
                .picked
                .iter()
                .all(|(_, port)| listens_on(self.child.id(), *port));
            if others_ready && listens_on(self.child.id(), self.port) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = s
                        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    let mut out = String::new();
                    let _ = s.read_to_string(&mut out);
                    if out.starts_with("HTTP/1.1 200") {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not become ready: {}", self.log());
    }

    /// The port picked for `listener` (asked with [`PICKED_PORT`]).
    fn picked(&self, listener: &str) -> u16 {
        self.picked
            .iter()
            .find(|(name, _)| *name == listener)
            .map(|(_, port)| *port)
            .unwrap_or_else(|| panic!("{listener} was not asked for with PICKED_PORT"))
    }

    /// The metrics listener's port, picked by [`Gateway::start`] when asked with
    /// [`PICKED_PORT`].
    pub fn metrics_port(&self) -> u16 {
        self.picked("AURORA_METRICS_LISTEN")
    }

    /// The TLS listener's port, picked by [`Gateway::start`] when asked with
    /// [`PICKED_PORT`].
    pub fn tls_port(&self) -> u16 {
        self.picked("AURORA_TLS_LISTEN")
    }

    /// The metrics listener's address (`127.0.0.1:port`).
    pub fn metrics_listen(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port())
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `POST` of the JSON `body` to `path` with `key` as bearer.
    pub async fn post_json(&self, key: &str, path: &str, body: &str) -> reqwest::Response {
        client()
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` to the gateway process.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .unwrap()
}

/// The JSON a `GET` of `url` answers, asked with `key` as the bearer.
pub async fn get_json(url: &str, key: &str) -> serde_json::Value {
    client()
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `request` verbatim (it must ask for `Connection: close`) and reads the whole
/// answer; for paths an HTTP library would normalise before sending.
pub async fn raw_request(addr: &str, request: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head,
        body: out[split..].to_vec(),
    }
}
