//! A real `redis-server` on a free loopback port, with its own scratch directory and
//! nothing saved; stopped when dropped. `make test` installs redis-server when missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use super::gateway::ScratchDir;
use super::tls::{Leaf, TestPki};
use super::{free_port, scratch_dir};

/// A running (or stopped) Redis.
pub struct RedisServer {
    pub port: u16,
    dir: ScratchDir,
    child: Option<Child>,
    tls: Option<TlsServing>,
}

/// A Redis serving TLS only (no plain port), its certificate signed by a test CA.
struct TlsServing {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Whether it asks clients for a certificate the CA signed.
    client_certificates: bool,
    /// The certificate this helper presents, signed by the same CA.
    own: Leaf,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            dir: scratch_dir(),
            child: None,
            tls: None,
        };
        server.resume();
        server
    }

    /// Starts one serving TLS only, its certificate (for `127.0.0.1`) signed by `pki`'s
    /// CA; asking clients for a certificate that CA signed when `client_certificates`.
    pub fn start_tls(pki: &TestPki, client_certificates: bool) -> Self {
        let dir = scratch_dir();
        let ca = dir.join("ca.pem");
        pki.write_ca(&ca);
        let (cert, key) = pki.issue_leaf().write(&dir);
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            tls: Some(TlsServing {
                ca,
                cert,
                key,
                client_certificates,
                own: pki.issue_leaf(),
            }),
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:port/0`, or `rediss://` for one serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Stops it, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (`SIGSTOP`): connections stay open and nothing is answered, as from
    /// a host black-holed; [`Self::thaw`] lets it answer again.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server answer again (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running redis-server").id();
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub fn resume(&mut self) {
        let port = self.port.to_string();
        let ports: Vec<&std::ffi::OsStr> = match &self.tls {
            None => vec!["--port".as_ref(), port.as_ref()],
            Some(tls) => vec![
                "--port".as_ref(),
                "0".as_ref(),
                "--tls-port".as_ref(),
                port.as_ref(),
                "--tls-cert-file".as_ref(),
                tls.cert.as_os_str(),
                "--tls-key-file".as_ref(),
                tls.key.as_os_str(),
                "--tls-ca-cert-file".as_ref(),
                tls.ca.as_os_str(),
                "--tls-auth-clients".as_ref(),
                if tls.client_certificates { "yes" } else { "no" }.as_ref(),
            ],
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&*self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (make test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn ping(&self) -> bool {
        if self.tls.is_some() {
            return self
                .try_connection()
                .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisServer {
    /// How many times Redis ran `command` (lower case, from `INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = ::redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("INFO commandstats");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<String> {
        ::redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection())
            .expect("GET")
    }

    /// Sets `key` to the string `value`, for `secs` seconds (forever: `None`).
    pub fn set(&self, key: &str, value: &str, secs: Option<u64>) {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(secs) = secs {
            cmd.arg("EX").arg(secs);
        }
        cmd.query::<()>(&mut self.connection()).expect("SET")
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        ::redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("KEYS")
    }

    /// The seconds `key` has left to live (-1: no expiry, -2: no key).
    pub fn ttl(&self, key: &str) -> i64 {
        ::redis::cmd("TTL")
            .arg(key)
            .query(&mut self.connection())
            .expect("TTL")
    }

    fn connection(&self) -> ::redis::Connection {
        self.try_connection()
            .expect("a connection to the test Redis")
    }

    /// A connection of this helper's own: over TLS, trusting the test CA and
    /// presenting its own certificate, for one that serves TLS.
    fn try_connection(&self) -> ::redis::RedisResult<::redis::Connection> {
        let client = match &self.tls {
            None => ::redis::Client::open(self.url())?,
            Some(tls) => {
                let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
                ::redis::Client::build_with_tls(
                    self.url(),
                    ::redis::TlsCertificates {
                        client_tls: Some(::redis::ClientTlsConfig {
                            client_cert: tls.own.cert_pem.clone().into_bytes(),
                            client_key: tls.own.key_pem.clone().into_bytes(),
                        }),
                        root_cert: Some(std::fs::read(&tls.ca).expect("the test CA")),
                    },
                )?
            }
        };
        client.get_connection_with_timeout(Duration::from_secs(2))
    }
}

impl RedisServer {
    /// How many members the sorted set `key` has.
    pub fn zcard(&self, key: &str) -> u64 {
        ::redis::cmd("ZCARD")
            .arg(key)
            .query(&mut self.connection())
            .expect("ZCARD")
    }

    /// Puts `slot` in the call slots `key`, lapsing `secs` from now on Redis's clock,
    /// as a replica's call takes one.
    pub fn plant_slot(&self, key: &str, slot: &str, secs: u64) {
        ::redis::cmd("EVAL")
            .arg("return redis.call('ZADD', KEYS[1], tonumber(redis.call('TIME')[1]) + ARGV[1], ARGV[2])")
            .arg(1)
            .arg(key)
            .arg(secs)
            .arg(slot)
            .query::<()>(&mut self.connection())
            .expect("ZADD")
    }

    /// When `slot` of the call slots `key` lapses, less Redis's time now, in seconds
    /// (`None`: it is not there).
    pub fn slot_lapses_in(&self, key: &str, slot: &str) -> Option<i64> {
        ::redis::cmd("EVAL")
            .arg("local at = redis.call('ZSCORE', KEYS[1], ARGV[1]) if not at then return nil end return tonumber(at) - tonumber(redis.call('TIME')[1])")
            .arg(1)
            .arg(key)
            .arg(slot)
            .query(&mut self.connection())
            .expect("ZSCORE")
    }

    /// Every field of the hash `key`.
    pub fn hgetall(&self, key: &str) -> std::collections::HashMap<String, String> {
        ::redis::cmd("HGETALL")
            .arg(key)
            .query(&mut self.connection())
            .expect("HGETALL")
    }

    /// Runs the command `args` (its name first), which must succeed.
    pub fn run(&self, args: &[&str]) {
        let (name, rest) = args.split_first().expect("a command");
        ::redis::cmd(name)
            .arg(rest)
            .query::<::redis::Value>(&mut self.connection())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }

    /// The ids of the connections whose last command was `command` (lower case, as
    /// `CLIENT LIST` names it).
    pub fn connections_last_running(&self, command: &str) -> Vec<u64> {
        let list: String = ::redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.connection())
            .expect("CLIENT LIST");
        let field = |line: &str, name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_string)
        };
        list.lines()
            .filter(|line| field(line, "cmd=").as_deref() == Some(command))
            .filter_map(|line| field(line, "id=")?.parse().ok())
            .collect()
    }
}

/// A relay to Redis that can black-hole the connections it carries (stop passing
/// their bytes and keep them open, as a network path that went away does), or only
/// their answers (Redis makes what they send, and its answers are lost), while new
/// connections still get through.
pub struct Relay {
    pub port: u16,
    cuts: Arc<AtomicU64>,
    mutes: Arc<AtomicU64>,
}

impl Relay {
    /// A relay to the Redis on `redis`'s port.
    pub async fn start(redis: u16) -> Self {
        Self::start_far(redis, Duration::ZERO, Duration::ZERO).await
    }

    /// [`Self::start`], as to a Redis far away: each piece passed `each_way` late (a
    /// round trip takes twice that), and a connection carried only `setup` after it came
    /// (a slow handshake, name lookup or TLS).
    pub async fn start_far(redis: u16, each_way: Duration, setup: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicU64::new(0));
        let mutes = Arc::new(AtomicU64::new(0));
        let (cut, muted) = (Arc::clone(&cuts), Arc::clone(&mutes));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::time::sleep(setup).await;
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", redis)).await else {
                    continue;
                };
                let (client_in, client_out) = client.into_split();
                let (server_in, server_out) = server.into_split();
                // Asks stop at a cut; answers at a cut or a mute.
                let asks_stop = [Arc::clone(&cut)];
                let answers_stop = [Arc::clone(&cut), Arc::clone(&muted)];
                tokio::spawn(pass(client_in, server_out, watch(&asks_stop), each_way));
                tokio::spawn(pass(server_in, client_out, watch(&answers_stop), each_way));
            }
        });
        Self { port, cuts, mutes }
    }

    /// `redis://127.0.0.1:port/0`, through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Black-holes every connection it carries now.
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Loses every answer Redis sends on the connections it carries now; what they
    /// send still reaches Redis.
    pub fn mute(&self) {
        self.mutes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counters, and their values now: a change in any stops the bytes.
fn watch(counters: &[Arc<AtomicU64>]) -> Vec<(Arc<AtomicU64>, u64)> {
    counters
        .iter()
        .map(|c| (Arc::clone(c), c.load(Ordering::SeqCst)))
        .collect()
}

/// Passes bytes from `from` to `to` until either closes, or black-holes them (nothing
/// passes, nothing closes) once a `stops` counter moves.
async fn pass(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    stops: Vec<(Arc<AtomicU64>, u64)>,
    late: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::io::AsyncReadExt::read(&mut from, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stops.iter().any(|(c, at)| c.load(Ordering::SeqCst) != *at) {
            std::future::pending::<()>().await;
        }
        if !late.is_zero() {
            tokio::time::sleep(late).await;
        }
        if tokio::io::AsyncWriteExt::write_all(&mut to, &buf[..n])
            .await
            .is_err()
        {
            return;
        }
    }
}
