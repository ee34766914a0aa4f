//! The processes under test: the mock provider, the Aurora release binary and nginx,
//! each started on loopback, optionally pinned to CPUs, and stopped when dropped.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::procfs;

/// A command every proxy started from this bench process runs under (callgrind or
/// strace, for the counts of `counts.rs`); empty: none.
static RUN_UNDER: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Makes every proxy started from now on run under `wrapper` (its program and
/// arguments, the proxy's command line after them); an empty one ends that.
pub fn run_under(wrapper: Vec<String>) {
    if let Ok(mut current) = RUN_UNDER.lock() {
        *current = wrapper;
    }
}

/// The wrapper set by [`run_under`], if any.
fn wrapper() -> Option<Vec<String>> {
    RUN_UNDER
        .lock()
        .ok()
        .map(|w| w.clone())
        .filter(|w| !w.is_empty())
}

/// `cmd`, or `cmd` under the wrapper set by [`run_under`].
fn under_wrapper(cmd: Command) -> Command {
    match wrapper() {
        Some(wrapper) => wrapped(&cmd, &wrapper),
        None => cmd,
    }
}

/// `cmd` run under `wrapper`: the same arguments and (cleared) environment.
fn wrapped(cmd: &Command, wrapper: &[String]) -> Command {
    let mut out = Command::new(&wrapper[0]);
    out.args(&wrapper[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            out.env(key, value);
        }
    }
    out
}

/// The gateway key clients present to Aurora: a placeholder, not a credential.
pub const GATEWAY_KEY: &str = "bench-gateway-placeholder-key-012345678";
/// The provider key the gateway (and nginx) send upstream: a placeholder as well.
pub const PROVIDER_KEY: &str = "sk-bench-provider-placeholder";

/// Who answers the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The mock provider itself: the baseline for "latency added".
    Direct,
    Aurora,
    /// Aurora with its access log written and its metrics scraped every second.
    AuroraObserved,
    /// Aurora asked by a key with limits, counted in memory.
    AuroraLimited,
    /// Aurora asked by a key with limits, counted in a local Redis.
    AuroraLimitedRedis,
    /// Aurora with two worker threads, free to use every CPU.
    AuroraTwoThreads,
    /// Aurora as users run it: the provider by host name, the access log written,
    /// metrics scraped, a key with limits (memory store).
    AuroraProduction,
    Nginx,
    /// The engine alone: a minimal Pingora proxy (`benches/load/bare_pingora.rs`).
    Pingora,
    /// The engine alone with two worker threads, free to use every CPU.
    PingoraTwoThreads,
    /// Another build of Aurora (`AURORA_BENCH_BASELINE_BIN`, say an earlier commit's),
    /// run as `aurora` is: what a change does, side by side.
    AuroraBaseline,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Aurora => "aurora",
            Target::AuroraObserved => "aurora_observed",
            Target::AuroraLimited => "aurora_limited",
            Target::AuroraLimitedRedis => "aurora_limited_redis",
            Target::AuroraTwoThreads => "aurora_2t",
            Target::AuroraProduction => "aurora_production",
            Target::Nginx => "nginx",
            Target::Pingora => "pingora",
            Target::PingoraTwoThreads => "pingora_2t",
            Target::AuroraBaseline => "aurora_baseline",
        }
    }

    /// The bare-Pingora target run with the same threads as this Aurora target.
    pub fn pingora_peer(self) -> Option<Target> {
        match self {
            Target::Aurora => Some(Target::Pingora),
            Target::AuroraTwoThreads => Some(Target::PingoraTwoThreads),
            _ => None,
        }
    }

    /// Whether this target is the bare Pingora proxy.
    pub fn is_pingora(self) -> bool {
        matches!(self, Target::Pingora | Target::PingoraTwoThreads)
    }

    /// Worker threads of a two-thread target, which is never pinned to one CPU.
    pub fn own_threads(self) -> Option<usize> {
        matches!(self, Target::AuroraTwoThreads | Target::PingoraTwoThreads).then_some(2)
    }
}

/// A running server process (and, for nginx, its worker).
pub struct Server {
    pub port: u16,
    child: Child,
    /// Processes whose CPU and memory count for this server.
    pids: Vec<u32>,
    stop_signal: i32,
    /// Scrapes the server's metrics listener while it runs.
    scraper: Option<MetricsScraper>,
}

/// A thread that fetches `/metrics` once a second, as Prometheus would.
struct MetricsScraper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsScraper {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if probe(port, "GET", "/metrics", &[]) != Some(200) {
                    eprintln!("  metrics scrape on port {port} failed");
                }
                // A second between scrapes, noticing a stop within 50 ms.
                for _ in 0..20 {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for MetricsScraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    /// A started `child` listening on `port`, stopped with `stop_signal`.
    pub fn new(port: u16, child: Child, stop_signal: i32) -> Self {
        let pid = child.id();
        Self {
            port,
            child,
            pids: vec![pid],
            stop_signal,
            scraper: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id of the server (the master, for nginx).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File descriptors the server's processes hold open.
    pub fn open_fds(&self) -> usize {
        self.pids.iter().map(|&p| procfs::open_fds(p)).sum()
    }

    /// CPU seconds used so far by the server's processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|&p| procfs::cpu_seconds(p)).sum()
    }

    /// Resident memory (`VmRSS`) of the server's processes, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids
            .iter()
            .map(|&p| procfs::status_kib(p, "VmRSS"))
            .sum()
    }

    /// Peak resident memory (`VmHWM`) of the server's processes, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.pids
            .iter()
            .map(|&p| procfs::status_kib(p, "VmHWM"))
            .sum()
    }

    /// Starts the peak-memory count afresh.
    pub fn reset_peak_rss(&self) {
        for &p in &self.pids {
            procfs::reset_peak_rss(p);
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the program a wrapper runs (the wrapper's child; the process itself when
    /// the wrapper became it, as valgrind does) and waits for the wrapper to end, as
    /// strace writes its summary only then. Whether it ended within `patience`.
    pub fn stop_wrapped(&mut self, patience: Duration) -> bool {
        let pid = self.child.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        let program = children
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse::<i32>().ok())
            .unwrap_or(pid as i32);
        // SAFETY: signalling our own child, or its child, by pid.
        unsafe {
            libc::kill(program, self.stop_signal);
        }
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, self.stop_signal);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the child run on `cpus` (when given) and die with the bench.
pub fn prepare(cmd: &mut Command, cpus: Option<&[usize]>) {
    let set = cpus.map(procfs::cpu_set);
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(set) = &set {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The allocator's tuning variables of this process (`MALLOC_ARENA_MAX`, glibc's
/// `GLIBC_TUNABLES`, jemalloc's `MALLOC_CONF` / `_RJEM_MALLOC_CONF`), handed to the
/// gateway, whose environment is otherwise cleared: memory is studied by setting them
/// on the bench's command line.
fn allocator_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES" || k == "_RJEM_MALLOC_CONF"
        })
        .collect()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Status of a one-off request with `Connection: close`, if any answer came.
pub fn probe(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

pub fn wait_until(server: &mut Server, what: &str, log: &Path, ready: impl Fn(u16) -> bool) {
    // Under callgrind a start takes many times longer.
    let patience = if wrapper().is_some() { 180 } else { 30 };
    let deadline = Instant::now() + Duration::from_secs(patience);
    while Instant::now() < deadline {
        if !server.is_running() {
            panic!(
                "{what} exited at startup; its log ({}):\n{}",
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if ready(server.port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{what} did not become ready; its log ({}):\n{}",
        log.display(),
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Starts this bench binary as the mock provider and reads the port it bound.
pub fn start_mock(events: usize, latency_ms: u64, cpus: Option<&[usize]>, dir: &Path) -> Server {
    let exe = std::env::current_exe().expect("bench binary path");
    let log = dir.join("mock.log");
    let mut cmd = Command::new(exe);
    cmd.arg("--mock")
        .env("AURORA_BENCH_SSE_EVENTS", events.to_string())
        .env("AURORA_BENCH_MOCK_LATENCY_MS", latency_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(fs::File::create(&log).expect("mock log")));
    prepare(&mut cmd, cpus);
    let mut child = cmd.spawn().expect("start the mock provider");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("mock stdout"))
        .read_line(&mut line)
        .expect("mock port");
    let port = line.trim().parse().unwrap_or_else(|_| {
        panic!(
            "the mock provider printed no port: {}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let pid = child.id();
    Server {
        port,
        child,
        pids: vec![pid],
        stop_signal: libc::SIGKILL,
        scraper: None,
    }
}

/// Where the gateway binary is: `AURORA_BIN`, else the one cargo built beside this bench.
pub fn aurora_binary() -> PathBuf {
    std::env::var_os("AURORA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_aurora")))
}

/// The build `aurora_baseline` runs: `AURORA_BENCH_BASELINE_BIN`, when set.
pub fn baseline_binary() -> Option<PathBuf> {
    std::env::var_os("AURORA_BENCH_BASELINE_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Starts the gateway with both providers on the mock and only a gateway key.
pub fn start_aurora(
    bin: &Path,
    mock_port: u16,
    threads: usize,
    log_filter: &str,
    cpus: Option<&[usize]>,
    dir: &Path,
) -> Server {
    let config = format!(
        "# Written by the load bench; providers and keys come from the environment.\n{}",
        extra_config()
    );
    start_aurora_with_config(
        bin, mock_port, threads, log_filter, cpus, dir, &config, None,
    )
}

/// `AURORA_BENCH_CONFIG`: YAML added to the gateway's config (to measure what a
/// setting costs, e.g. `retry: {attempts: 2}`).
pub fn extra_config() -> String {
    std::env::var("AURORA_BENCH_CONFIG")
        .map(|yaml| format!("{yaml}\n"))
        .unwrap_or_default()
}

/// [`start_aurora`] as operators run it: the access log written (text, to the log
/// file) and the metrics listener scraped every second.
pub fn start_aurora_observed(
    bin: &Path,
    mock_port: u16,
    threads: usize,
    cpus: Option<&[usize]>,
    dir: &Path,
) -> Server {
    let config = format!(
        "# Written by the load bench; providers and keys come from the environment.\nserver:\n  access_log: text\n{}",
        extra_config()
    );
    let upstream = format!("http://127.0.0.1:{mock_port}/v1");
    start_observed_at(bin, &upstream, threads, cpus, dir, &config)
}

/// The gateway with providers at `upstream` and `yaml`, its access log written at
/// `info` (the filter keeps other records quiet) and its metrics scraped every second.
fn start_observed_at(
    bin: &Path,
    upstream: &str,
    threads: usize,
    cpus: Option<&[usize]>,
    dir: &Path,
    yaml: &str,
) -> Server {
    let metrics_port = free_port();
    let mut server = start_aurora_at(
        bin,
        upstream,
        threads,
        "warn,aurora::access=info",
        cpus,
        dir,
        yaml,
        Some(metrics_port),
    );
    server.scraper = Some(MetricsScraper::start(metrics_port));
    server
}

/// [`start_aurora`] with `yaml` in its config file (`dir/aurora.yaml`), which the
/// environment's providers and keys join, and its metrics listener on
/// `metrics_port` (off when `None`).
#[allow(clippy::too_many_arguments)]
pub fn start_aurora_with_config(
    bin: &Path,
    mock_port: u16,
    threads: usize,
    log_filter: &str,
    cpus: Option<&[usize]>,
    dir: &Path,
    yaml: &str,
    metrics_port: Option<u16>,
) -> Server {
    let upstream = format!("http://127.0.0.1:{mock_port}/v1");
    start_aurora_at(
        bin,
        &upstream,
        threads,
        log_filter,
        cpus,
        dir,
        yaml,
        metrics_port,
    )
}

/// [`start_aurora`] as users run it: the provider named by host name (`localhost`,
/// resolved by the gateway's DNS service), the access log written at `info`, the
/// metrics listener scraped every second, and the client a key with limits.
pub fn start_aurora_production(
    bin: &Path,
    mock_port: u16,
    threads: usize,
    cpus: Option<&[usize]>,
    dir: &Path,
) -> Server {
    let config = format!(
        "# Written by the load bench: the production shape.\nserver:\n  access_log: text\n{}{}",
        super::limited::limited_config(None),
        extra_config()
    );
    let upstream = format!("http://localhost:{mock_port}/v1");
    start_observed_at(bin, &upstream, threads, cpus, dir, &config)
}

/// Starts the gateway with both providers at `upstream` (a base URL).
#[allow(clippy::too_many_arguments)]
fn start_aurora_at(
    bin: &Path,
    upstream: &str,
    threads: usize,
    log_filter: &str,
    cpus: Option<&[usize]>,
    dir: &Path,
    yaml: &str,
    metrics_port: Option<u16>,
) -> Server {
    let port = free_port();
    let metrics_listen = metrics_port.map_or(String::new(), |p| format!("127.0.0.1:{p}"));
    let config = dir.join("aurora.yaml");
    fs::write(&config, yaml).expect("aurora config");
    let log = dir.join("aurora.log");
    let base = upstream;
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AURORA_LISTEN", format!("127.0.0.1:{port}"))
        .env("AURORA_METRICS_LISTEN", metrics_listen)
        .env("AURORA_THREADS", threads.to_string())
        .env("AURORA_MASTER_KEY", GATEWAY_KEY)
        .env("OPENAI_API_KEY", PROVIDER_KEY)
        .env("OPENAI_BASE_URL", base)
        .env("ANTHROPIC_API_KEY", PROVIDER_KEY)
        .env("ANTHROPIC_BASE_URL", base)
        .env("AURORA_PID_FILE", dir.join("aurora.pid"))
        .env("AURORA_UPGRADE_SOCK", dir.join("aurora-upgrade.sock"))
        .env("AURORA_GRACE_PERIOD_SECONDS", "0")
        .env("RUST_LOG", log_filter)
        .envs(allocator_env());
    spawn_server(cmd, port, cpus, "aurora", "make release", &log, |p| {
        probe(p, "GET", "/health", &[]) == Some(200)
    })
}

/// Starts `cmd` (a server listening on `port`) with its output appended to `log` and
/// on `cpus`, and waits until `ready`; stopped with SIGINT.
fn spawn_server(
    cmd: Command,
    port: u16,
    cpus: Option<&[usize]>,
    what: &str,
    build_with: &str,
    log: &Path,
    ready: impl Fn(u16) -> bool,
) -> Server {
    let mut cmd = under_wrapper(cmd);
    let output = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{what} log {}: {e}", log.display()));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(output));
    prepare(&mut cmd, cpus);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e} (build it: {build_with})"));
    let pid = child.id();
    let mut server = Server {
        port,
        child,
        pids: vec![pid],
        stop_signal: libc::SIGINT,
        scraper: None,
    };
    wait_until(&mut server, what, log, ready);
    server
}

/// The bare Pingora proxy: `AURORA_PINGORA_BIN`, else the release example cargo built
/// (`make bench-load` builds it); `None` when it is not there.
pub fn pingora_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AURORA_PINGORA_BIN") {
        return Some(PathBuf::from(p));
    }
    let built = target_dir().join("release/examples/bare_pingora");
    built.is_file().then_some(built)
}

/// The binaries that count their allocations (`make bench-load` builds them with the
/// `alloc-count` feature): the gateway and the bare Pingora proxy, when both are there.
pub fn counting_binaries() -> Option<(PathBuf, PathBuf)> {
    let dir = target_dir().join("alloc-count");
    let aurora = dir.join("aurora");
    let pingora = dir.join("examples/bare_pingora");
    (aurora.is_file() && pingora.is_file()).then_some((aurora, pingora))
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target` in the crate.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Starts the bare Pingora proxy in front of the mock with `threads` workers.
pub fn start_pingora(
    bin: &Path,
    mock_port: u16,
    threads: usize,
    cpus: Option<&[usize]>,
    dir: &Path,
) -> Server {
    let port = free_port();
    let log = dir.join("pingora.log");
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", &port.to_string()])
        .args(["--upstream", &mock_port.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--key", PROVIDER_KEY])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(allocator_env());
    // Any HTTP answer means it listens (an unknown path is proxied to the mock).
    spawn_server(
        cmd,
        port,
        cpus,
        "bare pingora",
        "make bench-load",
        &log,
        |p| probe(p, "GET", "/p/openai/v1/small", &[]).is_some(),
    )
}

/// nginx: `AURORA_NGINX`, else `nginx` on the `PATH` or in the usual sbin directories.
pub fn nginx_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AURORA_NGINX") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file());
    found
}

/// A plain reverse proxy to the mock under `/p/openai/`, as the gateway's passthrough
/// route: one worker, keep-alive both ways, request bodies streamed, and responses of
/// the streaming paths unbuffered.
fn nginx_conf(dir: &Path, port: u16, mock_port: u16, nofile: u64) -> String {
    let d = dir.display();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As root the worker would switch to `nobody`; keep it the current user instead.
    let user = if root { "user root;\n" } else { "" };
    let common = format!(
        "proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host 127.0.0.1:{mock_port};
            proxy_set_header Authorization \"Bearer {PROVIDER_KEY}\";
            proxy_request_buffering off;
            proxy_read_timeout 600s;"
    );
    let worker_connections = nofile.clamp(1024, 65536);
    format!(
        "# Written by the load bench.
{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /p/openai/v1/chat/completions {{
            proxy_pass http://mock/v1/chat/completions;
            proxy_buffering off;
            {common}
        }}
        location /p/openai/v1/idle {{
            proxy_pass http://mock/v1/idle;
            proxy_buffering off;
            {common}
        }}
        location /p/openai/ {{
            proxy_pass http://mock/;
            {common}
        }}
    }}
}}
"
    )
}

/// Starts nginx in the foreground (master + one worker) with its files under `dir`.
pub fn start_nginx(
    bin: &Path,
    mock_port: u16,
    nofile: u64,
    cpus: Option<&[usize]>,
    dir: &Path,
) -> Server {
    let port = free_port();
    fs::create_dir_all(dir.join("nginx-tmp")).expect("nginx temp dir");
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(dir, port, mock_port, nofile)).expect("nginx config");
    let log = dir.join("nginx-error.log");
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::File::create(dir.join("nginx-stderr.log")).expect("nginx stderr"),
        ));
    let mut cmd = under_wrapper(cmd);
    prepare(&mut cmd, cpus);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let master = child.id();
    let mut server = Server {
        port,
        child,
        pids: vec![master],
        // Fast shutdown: the master stops its worker and exits.
        stop_signal: libc::SIGTERM,
        scraper: None,
    };
    wait_until(&mut server, "nginx", &log, |p| {
        probe(p, "GET", "/p/openai/v1/small", &[]) == Some(200)
    });
    server.pids.extend(procfs::children_of(master));
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_listens_on_loopback_only_and_proxies_like_the_gateway() {
        let conf = nginx_conf(Path::new("/tmp/bench"), 8080, 9090, 4096);
        let listens: Vec<&str> = conf
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("listen"))
            .collect();
        assert_eq!(listens, ["listen 127.0.0.1:8080 backlog=4096;"]);
        assert!(conf.contains("server 127.0.0.1:9090;"));
        assert!(conf.contains("worker_processes 1;"));
        // Keep-alive to the mock, as the gateway's pool does, and the provider key swap.
        assert!(conf.contains("keepalive 256;"));
        assert!(conf.contains(&format!("Authorization \"Bearer {PROVIDER_KEY}\"")));
        // Streams are passed on as they come; so are request bodies.
        let sse = conf
            .split("location ")
            .find(|b| b.starts_with("/p/openai/v1/chat/completions"))
            .unwrap();
        assert!(sse.contains("proxy_buffering off;"));
        assert!(sse.contains("proxy_request_buffering off;"));
        assert!(conf.contains("pid /tmp/bench/nginx.pid;"));
    }
}
