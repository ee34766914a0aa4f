//! Loopback load bench: Aurora (the release binary) against nginx as a plain reverse
//! proxy and against the mock provider called directly, under the same load.
//!
//! `cargo bench --bench load` (or `make bench-load`, which builds the release binary
//! and installs nginx first). Each scenario runs against each target as a closed loop
//! at fixed concurrency and as an open loop at a fixed rate (latency from the intended
//! send time), then idle SSE streams are held open to measure memory per stream. The
//! results go to `target/bench/load.md` and `target/bench/load.json`, and the table to
//! stdout. Knobs (environment): `AURORA_BENCH_SECS` (per loop, default 3),
//! `AURORA_BENCH_ROUNDS` (each loop run this often, the median round kept; 3),
//! `AURORA_BENCH_WARMUP_SECS` (1), `AURORA_BENCH_CONCURRENCY` (32), `AURORA_BENCH_RATE`
//! (open-loop requests/s for the small-JSON scenario, others get a share; 2000),
//! `AURORA_BENCH_IDLE_STREAMS` (2000), `AURORA_BENCH_SSE_EVENTS` (100),
//! `AURORA_BENCH_MOCK_LATENCY_MS` (0), `AURORA_BENCH_THREADS` (gateway worker threads,
//! 1, like nginx's one worker), `AURORA_BENCH_LOG` (gateway log filter, `warn`),
//! `AURORA_BENCH_SCENARIOS` (comma-separated names to run), `AURORA_BENCH_PAIRED_ROUNDS`
//! (rounds of the side-by-side comparisons, 7; 0 leaves them out), `AURORA_BIN`,
//! `AURORA_NGINX`, `AURORA_BENCH_BASELINE_BIN` (another build of Aurora, run as the
//! `aurora_baseline` target and compared side by side with this one).
//!
//! `cargo bench --bench load -- --paired` (or `make bench-paired`) runs only the
//! side-by-side comparisons the targets are judged on (see `paired.rs`).
//!
//! `cargo bench --bench load -- --counts` (or `make bench-counts`) counts instructions
//! and system calls per request instead, figures the machine's noise cannot move (see
//! `counts.rs`).
//!
//! `cargo bench --bench load -- --train` sends the workload a profile-guided build
//! learns from (`make release-pgo`; see `train.rs`).
//!
//! `cargo bench --bench load -- --soak` (or `make soak`) runs the soak instead: mixed
//! traffic for ten minutes with a config reload every ten seconds, judged on failed
//! requests, memory growth and leaked descriptors (see `soak/mod.rs`).

// Also a module of `tests/load_harness.rs`, where only the tests call in; and when the
// bench itself is checked with `cfg(test)` (clippy --all-targets), without a test
// harness its `#[test]` functions are left out, leaving their imports unused.
#![cfg_attr(test, allow(dead_code, unused_imports))]

mod allocations;
mod client;
mod counts;
mod instructions;
mod limited;
// The mock provider the integration tests use too: one mock, two users.
#[path = "../../tests/common/mock/mod.rs"]
mod mock;
mod mock_process;
mod paced;
mod paired;
mod procfs;
mod report;
mod scenarios;
mod servers;
mod soak;
mod syscalls;
mod train;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::RunStats;
use scenarios::{Scenario, SCENARIOS};
use servers::{Server, Target};

/// Settings of one run, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secs: f64,
    pub rounds: usize,
    pub warmup_secs: f64,
    pub concurrency: usize,
    pub rate: f64,
    pub idle_streams: usize,
    pub sse_events: usize,
    pub mock_latency_ms: u64,
    pub threads: usize,
    pub log_filter: String,
    pub only: Option<Vec<String>>,
    /// Rounds of the side-by-side comparisons (`paired.rs`); 0 leaves them out.
    pub paired_rounds: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    /// The open-loop rate of `scenario`: heavier requests get a share of
    /// `AURORA_BENCH_RATE`.
    pub fn open_loop_rate(&self, scenario: &Scenario) -> f64 {
        (self.rate * scenario.rate_share).max(1.0)
    }

    /// Whether the scenario named `name` is to run (`AURORA_BENCH_SCENARIOS`).
    pub fn selects(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    }

    fn from_env() -> Self {
        Self {
            secs: env_or("AURORA_BENCH_SECS", 3.0f64).max(0.5),
            rounds: env_or("AURORA_BENCH_ROUNDS", 3usize).max(1),
            warmup_secs: env_or("AURORA_BENCH_WARMUP_SECS", 1.0f64).max(0.0),
            concurrency: env_or("AURORA_BENCH_CONCURRENCY", 32usize).max(1),
            rate: env_or("AURORA_BENCH_RATE", 2000.0f64).max(1.0),
            idle_streams: env_or("AURORA_BENCH_IDLE_STREAMS", 2000usize),
            sse_events: env_or("AURORA_BENCH_SSE_EVENTS", 100usize),
            mock_latency_ms: env_or("AURORA_BENCH_MOCK_LATENCY_MS", 0u64),
            threads: env_or("AURORA_BENCH_THREADS", 1usize).max(1),
            log_filter: std::env::var("AURORA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            only: std::env::var("AURORA_BENCH_SCENARIOS")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            paired_rounds: env_or("AURORA_BENCH_PAIRED_ROUNDS", 7usize),
        }
    }
}

/// Which CPUs the generator and the servers run on.
#[derive(Debug, Clone)]
pub struct Placement {
    pub generator: Vec<usize>,
    pub server: Option<Vec<usize>>,
    pub how: String,
}

fn place() -> Placement {
    let cpus = procfs::allowed_cpus();
    if cpus.len() < 2 {
        return Placement {
            generator: cpus,
            server: None,
            how: "one CPU available: generator, mock and servers share it (no pinning)".into(),
        };
    }
    // The server under test gets one CPU (like nginx's single worker); the generator
    // (client and mock provider) gets the rest.
    let server = vec![cpus[1]];
    let generator: Vec<usize> = cpus.iter().copied().filter(|c| *c != cpus[1]).collect();
    let pinned = procfs::pin_current_thread(&generator);
    let how = if pinned {
        format!(
            "load generator (client + mock provider) pinned to CPU {:?}, server under test (aurora / nginx) to CPU {:?}, with sched_setaffinity",
            generator, server
        )
    } else {
        "pinning failed: processes float over all CPUs".into()
    };
    Placement {
        generator,
        server: pinned.then_some(server),
        how,
    }
}

/// One loop and what it cost.
#[derive(Debug)]
pub struct Measured {
    pub stats: RunStats,
    /// CPU seconds of the server under test.
    pub server_cpu: f64,
    /// CPU seconds of the load generator (the client, plus the mock when it is not
    /// the server under test).
    pub generator_cpu: f64,
    /// Open loop: the intended rate.
    pub rate: Option<f64>,
    /// CPU seconds the machine spent in processes other than the bench's own.
    pub other_cpu: f64,
    /// CPUs of the machine.
    pub cpus: usize,
    /// How often the loop was run again because other processes disturbed it.
    pub repeats: u32,
    /// The figure each round was ranked by (req/s closed, p99 µs open), in run order;
    /// this is the median round.
    pub rounds: Vec<f64>,
}

/// Of `rounds`, the one whose `figure` is the median (the lower middle for an even
/// count), carrying every round's figure: one noisy round on a shared machine neither
/// flatters nor sinks a target.
pub fn median_round(rounds: Vec<Measured>, figure: impl Fn(&Measured) -> f64) -> Option<Measured> {
    let figures: Vec<f64> = rounds.iter().map(&figure).collect();
    let mut ranked = rounds;
    ranked.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    let middle = ranked.len().checked_sub(1)? / 2;
    let mut m = ranked.swap_remove(middle);
    m.rounds = figures;
    Some(m)
}

/// Loops disturbed by other processes are run again at most this often.
const MAX_REPEATS: u32 = 2;

impl Measured {
    /// How busy the machine's CPUs were with processes outside the bench.
    pub fn other_share(&self) -> f64 {
        self.other_cpu / self.stats.elapsed.as_secs_f64().max(1e-9) / self.cpus as f64
    }

    /// Server CPU seconds per 1,000 completed requests.
    pub fn cpu_per_1k(&self) -> f64 {
        if self.stats.requests == 0 {
            0.0
        } else {
            self.server_cpu * 1000.0 / self.stats.requests as f64
        }
    }
}

/// A scenario against one target.
#[derive(Debug)]
pub struct LoadResult {
    pub scenario: Scenario,
    pub target: Target,
    pub check_error: Option<String>,
    pub closed: Option<Measured>,
    pub open: Option<Measured>,
    pub peak_rss_kib: u64,
}

/// Idle streams against one target.
#[derive(Debug)]
pub struct IdleResult {
    pub target: Target,
    pub requested: usize,
    pub opened: usize,
    pub failed: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub error_samples: Vec<String>,
}

impl IdleResult {
    pub fn per_stream_bytes(&self) -> f64 {
        if self.opened == 0 {
            0.0
        } else {
            (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.opened as f64
        }
    }
}

struct Bench {
    settings: Settings,
    placement: Placement,
    rt: tokio::runtime::Runtime,
    mock: Server,
    aurora_bin: PathBuf,
    nginx_bin: Option<PathBuf>,
    /// The bare Pingora proxy, when built.
    pingora_bin: Option<PathBuf>,
    /// Another build of Aurora to compare this one with, when named.
    baseline_bin: Option<PathBuf>,
    /// The Redis of the limited-in-Redis target, when redis-server is installed.
    redis: Option<Server>,
    nofile: u64,
    dir: PathBuf,
}

impl Bench {
    /// The gateway as a key with limits finds it, counted in Redis at `redis_port`
    /// (else in memory).
    fn start_limited(&self, redis_port: Option<u16>, dir: &std::path::Path) -> Server {
        let url = redis_port.map(|p| format!("redis://127.0.0.1:{p}/0"));
        let config = format!(
            "# Written by the load bench; providers come from the environment.\n{}{}",
            limited::limited_config(url.as_deref()),
            servers::extra_config()
        );
        servers::start_aurora_with_config(
            &self.aurora_bin,
            self.mock.port,
            self.settings.threads,
            &self.settings.log_filter,
            self.server_cpus(),
            dir,
            &config,
            None,
        )
    }

    fn server_cpus(&self) -> Option<&[usize]> {
        self.placement.server.as_deref()
    }

    /// Whether `target` can run here: its program is installed or built.
    fn can_run(&self, target: Target) -> bool {
        match target {
            Target::Nginx => self.nginx_bin.is_some(),
            Target::AuroraLimitedRedis => self.redis.is_some(),
            Target::AuroraBaseline => self.baseline_bin.is_some(),
            t if t.is_pingora() => self.pingora_bin.is_some(),
            _ => true,
        }
    }

    /// Starts `target` (the mock is always running); `None` for the mock itself.
    fn start(&self, target: Target) -> Option<Server> {
        self.start_in(target, &self.dir)
    }

    /// [`Self::start`] with the server's config, log and pid files in `dir`.
    fn start_in(&self, target: Target, dir: &std::path::Path) -> Option<Server> {
        match target {
            Target::Direct => None,
            Target::Aurora | Target::AuroraBaseline => Some(servers::start_aurora(
                if target == Target::Aurora {
                    &self.aurora_bin
                } else {
                    self.baseline_bin.as_deref()?
                },
                self.mock.port,
                self.settings.threads,
                &self.settings.log_filter,
                self.server_cpus(),
                dir,
            )),
            Target::AuroraObserved => Some(servers::start_aurora_observed(
                &self.aurora_bin,
                self.mock.port,
                self.settings.threads,
                self.server_cpus(),
                dir,
            )),
            Target::AuroraLimited => Some(self.start_limited(None, dir)),
            Target::AuroraLimitedRedis => Some(
                self.start_limited(Some(self.redis.as_ref().expect("redis running").port), dir),
            ),
            Target::Nginx => Some(servers::start_nginx(
                self.nginx_bin.as_deref().expect("nginx present"),
                self.mock.port,
                self.nofile,
                self.server_cpus(),
                dir,
            )),
            Target::AuroraProduction => Some(servers::start_aurora_production(
                &self.aurora_bin,
                self.mock.port,
                self.settings.threads,
                self.server_cpus(),
                dir,
            )),
            // Two threads on a CPU of their own would measure nothing: these float.
            Target::AuroraTwoThreads => Some(servers::start_aurora(
                &self.aurora_bin,
                self.mock.port,
                2,
                &self.settings.log_filter,
                None,
                dir,
            )),
            Target::Pingora | Target::PingoraTwoThreads => Some(servers::start_pingora(
                self.pingora_bin.as_deref().expect("bare pingora built"),
                self.mock.port,
                target.own_threads().unwrap_or(self.settings.threads),
                if target == Target::Pingora {
                    self.server_cpus()
                } else {
                    None
                },
                dir,
            )),
        }
    }

    fn measure(
        &self,
        server: &Server,
        target: Target,
        run: impl std::future::Future<Output = RunStats>,
        rate: Option<f64>,
    ) -> Measured {
        let mock_is_generator = target != Target::Direct;
        // Redis stands for a service elsewhere, like the mock: it runs beside the
        // generator and counts with it.
        let redis = self
            .redis
            .as_ref()
            .filter(|_| target == Target::AuroraLimitedRedis);
        let generator_cpu = || {
            procfs::self_cpu_seconds()
                + if mock_is_generator {
                    self.mock.cpu_seconds()
                } else {
                    0.0
                }
                + redis.map_or(0.0, |r| r.cpu_seconds())
        };
        let (s0, g0, m0) = (
            server.cpu_seconds(),
            generator_cpu(),
            procfs::machine_busy_seconds(),
        );
        let stats = self.rt.block_on(run);
        let server_cpu = server.cpu_seconds() - s0;
        let generator_cpu = generator_cpu() - g0;
        // The server, the client and the mock, whichever role the mock plays.
        let ours = server_cpu + generator_cpu;
        let machine_cpu = procfs::machine_busy_seconds() - m0;
        Measured {
            server_cpu,
            generator_cpu,
            stats,
            rate,
            other_cpu: (machine_cpu - ours).max(0.0),
            cpus: procfs::online_cpus(),
            repeats: 0,
            rounds: Vec::new(),
        }
    }

    /// Runs `loop_once` again (at most twice more) while other processes took more than
    /// a tenth of the machine during it: the figures then measure the neighbours too.
    fn measure_quietly(
        &self,
        scenario: Scenario,
        target: Target,
        loop_once: impl Fn() -> Measured,
    ) -> Measured {
        let mut m = loop_once();
        for _ in 0..MAX_REPEATS {
            let share = m.other_share();
            if share <= 0.10 {
                break;
            }
            eprintln!(
                "  {} / {}: other processes used {:.0}% of the machine; running that loop again",
                scenario.name,
                target.name(),
                share * 100.0
            );
            let repeats = m.repeats + 1;
            m = loop_once();
            m.repeats = repeats;
        }
        m
    }

    /// `loop_once` run `AURORA_BENCH_ROUNDS` times (each quietly), and the median
    /// round by `figure`.
    fn median_of_rounds(
        &self,
        scenario: Scenario,
        target: Target,
        figure: impl Fn(&Measured) -> f64,
        loop_once: impl Fn() -> Measured,
    ) -> Measured {
        let rounds = (0..self.settings.rounds)
            .map(|_| self.measure_quietly(scenario, target, &loop_once))
            .collect();
        median_round(rounds, figure).expect("at least one round")
    }

    fn run_load(&self, scenario: Scenario, target: Target) -> LoadResult {
        let started = self.start(target);
        let server = started.as_ref().unwrap_or(&self.mock);
        let addr = server.addr();
        let spec = Arc::new(scenario.request(target, server.port));
        let mut result = LoadResult {
            scenario,
            target,
            check_error: None,
            closed: None,
            open: None,
            peak_rss_kib: 0,
        };
        if let Err(e) = self.check_and_warm(scenario, target, addr, &spec) {
            result.check_error = Some(e);
            return result;
        }
        let s = &self.settings;
        let secs = Duration::from_secs_f64(s.secs);
        server.reset_peak_rss();
        let closed = self.median_of_rounds(
            scenario,
            target,
            |m| m.stats.rps(),
            || {
                self.measure(
                    server,
                    target,
                    client::closed_loop(addr, spec.clone(), s.concurrency, secs),
                    None,
                )
            },
        );
        let rate = s.open_loop_rate(&scenario);
        let open = self.median_of_rounds(
            scenario,
            target,
            |m| m.stats.quantile_us(0.99) as f64,
            || {
                self.measure(
                    server,
                    target,
                    client::open_loop(addr, spec.clone(), s.concurrency, rate, secs),
                    Some(rate),
                )
            },
        );
        result.peak_rss_kib = server.peak_rss_kib();
        eprintln!(
            "  {:<26} {:<6} closed {:>9.0} req/s p99 {:>8.3} ms fail {} | open {:>6.0}/s p99 {:>8.3} ms fail {}",
            scenario.name,
            target.name(),
            closed.stats.rps(),
            closed.stats.quantile_us(0.99) as f64 / 1000.0,
            closed.stats.errors,
            rate,
            open.stats.quantile_us(0.99) as f64 / 1000.0,
            open.stats.errors,
        );
        result.closed = Some(closed);
        result.open = Some(open);
        result
    }

    /// Checks that `target` answers `spec` rightly (saying so when it does not), then
    /// warms it up with `AURORA_BENCH_WARMUP_SECS` of closed loop.
    fn check_and_warm(
        &self,
        scenario: Scenario,
        target: Target,
        addr: std::net::SocketAddr,
        spec: &Arc<client::RequestSpec>,
    ) -> Result<(), String> {
        if let Err(e) = self.rt.block_on(client::check(addr, spec)) {
            eprintln!(
                "  {}: {} answers wrongly: {e}",
                scenario.name,
                target.name()
            );
            return Err(e);
        }
        let s = &self.settings;
        if s.warmup_secs > 0.0 {
            let warm = Duration::from_secs_f64(s.warmup_secs);
            self.rt
                .block_on(client::closed_loop(addr, spec.clone(), s.concurrency, warm));
        }
        Ok(())
    }

    /// The side-by-side comparisons (`paired.rs`) of the selected scenarios whose
    /// servers can run here: every server started at once, then the rounds.
    fn run_paired(&self) -> Vec<paired::Judged> {
        let s = &self.settings;
        if s.paired_rounds == 0 {
            return Vec::new();
        }
        let (comparisons, members) = paired::members_of(&paired::COMPARISONS, |m| {
            s.selects(m.scenario) && self.can_run(m.target)
        });
        let mut servers: Vec<(Target, Server)> = Vec::new();
        for m in &members {
            if servers.iter().any(|(t, _)| *t == m.target) {
                continue;
            }
            // Servers running at once keep their files apart.
            let dir = self.dir.join("side-by-side").join(m.target.name());
            std::fs::create_dir_all(&dir).expect("side-by-side directory");
            for log in ["aurora.log", "pingora.log"] {
                let _ = std::fs::remove_file(dir.join(log));
            }
            if let Some(server) = self.start_in(m.target, &dir) {
                servers.push((m.target, server));
            }
        }
        let mut runs = Vec::new();
        for m in &members {
            let (Some(scenario), Some((_, server))) = (
                Scenario::named(m.scenario),
                servers.iter().find(|(t, _)| *t == m.target),
            ) else {
                eprintln!("  side by side: {} has no server", m.scenario);
                return Vec::new();
            };
            let spec = Arc::new(scenario.request(m.target, server.port));
            if self
                .check_and_warm(scenario, m.target, server.addr(), &spec)
                .is_err()
            {
                return Vec::new();
            }
            runs.push((scenario, m.target, server, spec));
        }
        let secs = Duration::from_secs_f64(s.secs);
        let open_loop = paired::open_loop_members(&comparisons, &members);
        let mut loops = vec![vec![paired::Loop::default(); members.len()]; s.paired_rounds];
        for (round, row) in loops.iter_mut().enumerate() {
            for i in paired::round_order(members.len(), round) {
                let (scenario, target, server, spec) = &runs[i];
                let closed = self.measure_quietly(*scenario, *target, || {
                    self.measure(
                        server,
                        *target,
                        client::closed_loop(server.addr(), spec.clone(), s.concurrency, secs),
                        None,
                    )
                });
                // At the main table's rate, so that the p99s are the same kind.
                let rate = s.open_loop_rate(scenario);
                let open = open_loop[i].then(|| {
                    self.measure_quietly(*scenario, *target, || {
                        self.measure(
                            server,
                            *target,
                            client::open_loop(
                                server.addr(),
                                spec.clone(),
                                s.concurrency,
                                rate,
                                secs,
                            ),
                            Some(rate),
                        )
                    })
                });
                row[i] = paired::Loop::of(&closed, open.as_ref());
            }
            eprintln!(
                "  side by side, round {}: {}",
                round + 1,
                members
                    .iter()
                    .zip(row.iter())
                    .map(|(m, l)| {
                        let p99 = l.p99_us.map_or(String::new(), |p| {
                            format!(" (open p99 {:.3} ms)", p / 1000.0)
                        });
                        format!("{}/{} {:.0} req/s{p99}", m.scenario, m.target.name(), l.rps)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        comparisons
            .into_iter()
            .filter_map(|c| paired::Judged::new(c, &members, &loops))
            .collect()
    }

    fn run_paced(&self, scenario: Scenario, target: Target) -> paced::PacedResult {
        let mut pacing = paced::Pacing::from_env();
        // Each stream holds a socket here and at the mock; the proxies hold two.
        let fits = (self.nofile.saturating_sub(512) / 2) as usize;
        if pacing.streams > fits {
            eprintln!(
                "  open-file limit {}: paced streams scaled down from {} to {fits}",
                self.nofile, pacing.streams
            );
            pacing.streams = fits;
        }
        let started = self.start(target);
        let server = started.as_ref().unwrap_or(&self.mock);
        let spec = Arc::new(scenario.request(target, server.port));
        let addr = server.addr();
        // A few streams first, so one-time allocations are not charged to the run.
        let limit = Duration::from_millis(pacing.pace_ms * pacing.events as u64 * 3 + 30_000);
        self.rt
            .block_on(client::run_streams(addr, spec.clone(), 8, limit));
        std::thread::sleep(Duration::from_millis(300));
        let rss_before_kib = server.rss_kib();
        server.reset_peak_rss();
        let cpu_before = server.cpu_seconds();
        let run = self
            .rt
            .block_on(client::run_streams(addr, spec, pacing.streams, limit));
        let result = paced::PacedResult {
            scenario: scenario.name,
            target,
            streams: pacing.streams,
            completed: run.completed,
            failed: run.failed,
            events: run.events,
            elapsed_secs: run.elapsed.as_secs_f64(),
            server_cpu: server.cpu_seconds() - cpu_before,
            rss_before_kib,
            rss_peak_kib: server.peak_rss_kib(),
            error_samples: run.error_samples,
        };
        eprintln!(
            "  {:<32} {:<8} {} of {} streams, {} events in {:.1} s, {:.4} CPU s per 1k events, {:.1} KiB per stream",
            scenario.name,
            target.name(),
            result.completed,
            result.streams,
            result.events,
            result.elapsed_secs,
            result.cpu_per_1k_events(),
            result.rss_per_stream_kib()
        );
        // Let the closed connections drain before the next server starts.
        std::thread::sleep(Duration::from_millis(300));
        result
    }

    fn run_idle(&self, scenario: Scenario, target: Target) -> IdleResult {
        let started = self.start(target);
        let server = started.as_ref().unwrap_or(&self.mock);
        let spec = Arc::new(scenario.request(target, server.port));
        let addr = server.addr();
        // A few streams first, so one-time allocations are not charged to the streams.
        let warm = self
            .rt
            .block_on(client::hold_streams(addr, spec.clone(), 16, 16));
        drop(warm);
        std::thread::sleep(Duration::from_millis(300));
        let rss_before_kib = server.rss_kib();
        let n = self.settings.idle_streams;
        let held = self.rt.block_on(client::hold_streams(addr, spec, n, 64));
        std::thread::sleep(Duration::from_millis(1000));
        let rss_after_kib = server.rss_kib();
        let result = IdleResult {
            target,
            requested: n,
            opened: held.open(),
            failed: held.failed,
            rss_before_kib,
            rss_after_kib,
            error_samples: held.error_samples.clone(),
        };
        drop(held);
        eprintln!(
            "  {:<26} {:<6} {} of {} open, RSS {:.1} → {:.1} MiB, {:.1} KiB per stream",
            scenario.name,
            target.name(),
            result.opened,
            n,
            rss_before_kib as f64 / 1024.0,
            rss_after_kib as f64 / 1024.0,
            result.per_stream_bytes() / 1024.0
        );
        // Let the closed connections drain before the next server starts.
        std::thread::sleep(Duration::from_millis(300));
        result
    }
}

/// `target/bench`, under `CARGO_TARGET_DIR` when set.
fn output_dir() -> PathBuf {
    servers::target_dir().join("bench")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--mock") {
        mock_process::run_from_env();
        return;
    }
    if args.iter().any(|a| a == "--soak") {
        std::process::exit(soak::run());
    }
    if args.iter().any(|a| a == "--counts") {
        std::process::exit(counts::run());
    }
    if args.iter().any(|a| a == "--train") {
        std::process::exit(train::run());
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` and friends: nothing to check here.
        println!("load bench: run it with `cargo bench --bench load` or `make bench-load`");
        return;
    }
    let settings = Settings::from_env();
    let placement = place();
    let nofile = procfs::raise_nofile_limit();
    let machine = procfs::machine();
    let dir = output_dir();
    std::fs::create_dir_all(&dir).expect("create target/bench");
    // The servers append to their logs; a run starts them afresh, so that the access
    // log of the observed rows (gigabytes over many runs) does not pile up.
    for log in ["aurora.log", "pingora.log", "mock.log"] {
        let _ = std::fs::remove_file(dir.join(log));
    }
    let aurora_bin = servers::aurora_binary();
    let nginx_bin = servers::nginx_binary();
    let pingora_bin = servers::pingora_binary();
    let baseline_bin = servers::baseline_binary();
    if let Some(bin) = &baseline_bin {
        eprintln!("  aurora_baseline: {}", bin.display());
    }
    if let Some(bin) = &pingora_bin {
        eprintln!("  bare pingora: {}", bin.display());
    }
    eprintln!(
        "load bench: {} CPUs ({}), {:.1} GiB; {}",
        machine.nproc, machine.cpu_model, machine.mem_gib, placement.how
    );
    eprintln!(
        "  aurora: {}; nginx: {}; open files: {nofile}",
        aurora_bin.display(),
        nginx_bin
            .as_ref()
            .map_or("not found (install it: make bench-deps)".into(), |p| p
                .display()
                .to_string())
    );
    let idle_streams = settings.idle_streams;
    // Each idle stream holds a socket here and at the mock; the proxies hold two.
    let settings = if (idle_streams as u64) * 2 + 512 > nofile {
        let scaled = (nofile.saturating_sub(512) / 2) as usize;
        eprintln!(
            "  open-file limit {nofile}: idle streams scaled down from {idle_streams} to {scaled}"
        );
        Settings {
            idle_streams: scaled,
            ..settings
        }
    } else {
        settings
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(placement.generator.len().max(1))
        .enable_all()
        .build()
        .expect("client runtime");
    let mock = servers::start_mock(
        settings.sse_events,
        settings.mock_latency_ms,
        Some(&placement.generator)
            .filter(|g| !g.is_empty())
            .map(|g| g.as_slice()),
        &dir,
    );
    let wants_redis = SCENARIOS
        .iter()
        .any(|s| s.targets().contains(&Target::AuroraLimitedRedis) && settings.selects(s.name));
    let redis = match limited::redis_binary() {
        Some(bin) if wants_redis => Some(limited::start_redis(
            &bin,
            Some(&placement.generator)
                .filter(|g| !g.is_empty())
                .map(|g| g.as_slice()),
            &dir,
        )),
        None if wants_redis => {
            eprintln!("  redis-server not found (install it: make redis): no limited-in-Redis row");
            None
        }
        _ => None,
    };
    let bench = Bench {
        settings,
        placement,
        rt,
        mock,
        aurora_bin,
        nginx_bin,
        pingora_bin,
        baseline_bin,
        redis,
        nofile,
        dir: dir.clone(),
    };
    let started = Instant::now();
    if args.iter().any(|a| a == "--paired") {
        let judged = bench.run_paired();
        let markdown = paired::markdown(&judged, bench.settings.paired_rounds, bench.settings.secs);
        std::fs::write(dir.join("side-by-side.md"), &markdown).expect("write side-by-side.md");
        let json = serde_json::to_string_pretty(&paired::json(&judged)).expect("json");
        std::fs::write(dir.join("side-by-side.json"), json).expect("write side-by-side.json");
        println!("{markdown}");
        eprintln!(
            "load bench: wrote {} in {:.0} s",
            dir.join("side-by-side.md").display(),
            started.elapsed().as_secs_f64()
        );
        return;
    }
    let mut loads = Vec::new();
    let mut idles = Vec::new();
    let mut paced_runs = Vec::new();
    for scenario in SCENARIOS {
        if !bench.settings.selects(scenario.name) {
            continue;
        }
        for target in scenario.targets() {
            if !bench.can_run(target) {
                continue;
            }
            if scenario.idle {
                idles.push(bench.run_idle(scenario, target));
            } else if scenario.paced {
                paced_runs.push(bench.run_paced(scenario, target));
            } else {
                loads.push(bench.run_load(scenario, target));
            }
        }
    }
    let side_by_side = bench.run_paired();
    let allocs = match servers::counting_binaries() {
        Some((aurora, pingora)) => allocations::measure(
            &bench.rt,
            bench.mock.port,
            bench.settings.threads,
            (&aurora, &pingora),
            &bench.dir,
            bench.settings.secs,
        ),
        None => {
            eprintln!("  allocation counting binaries not built (make bench-load builds them): no allocations table");
            Vec::new()
        }
    };
    let report = report::Report {
        settings: &bench.settings,
        placement: &bench.placement,
        machine: &machine,
        aurora_bin: &bench.aurora_bin,
        nginx_bin: bench.nginx_bin.as_deref(),
        loads: &loads,
        idles: &idles,
        allocs: &allocs,
        paced: &paced_runs,
        side_by_side: &side_by_side,
        wall: started.elapsed(),
    };
    let markdown = report.markdown();
    std::fs::write(dir.join("load.md"), &markdown).expect("write load.md");
    let json = serde_json::to_string_pretty(&report.json()).expect("json");
    std::fs::write(dir.join("load.json"), json).expect("write load.json");
    println!("{markdown}");
    eprintln!(
        "load bench: wrote {} and {}",
        dir.join("load.md").display(),
        dir.join("load.json").display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(rps: u64) -> Measured {
        Measured {
            stats: RunStats {
                requests: rps,
                errors: 0,
                reconnects: 0,
                elapsed: Duration::from_secs(1),
                latency_us: hdrhistogram::Histogram::new(3).unwrap(),
                send_lag_us: None,
                error_samples: Vec::new(),
            },
            server_cpu: rps as f64 / 1e5,
            generator_cpu: 0.0,
            rate: None,
            other_cpu: 0.0,
            cpus: 2,
            repeats: 0,
            rounds: Vec::new(),
        }
    }

    #[test]
    fn every_scenario_runs_unless_some_are_named() {
        let mut settings = Settings::from_env();
        settings.only = None;
        assert!(settings.selects("passthrough_small_json"));
        settings.only = Some(vec!["chat_to_anthropic_json".into()]);
        assert!(settings.selects("chat_to_anthropic_json"));
        assert!(!settings.selects("passthrough_small_json"));
    }

    #[test]
    fn the_median_round_is_kept_whole_with_every_rounds_figure() {
        let rounds = vec![round(30_000), round(18_000), round(24_000)];
        let m = median_round(rounds, |m| m.stats.rps()).unwrap();
        assert_eq!(m.stats.requests, 24_000);
        // Its CPU comes with it: figures of one round are never mixed with another's.
        assert_eq!(m.server_cpu, 0.24);
        assert_eq!(m.rounds, [30_000.0, 18_000.0, 24_000.0]);
    }

    #[test]
    fn an_even_count_keeps_the_lower_middle_and_none_keeps_nothing() {
        let m = median_round(vec![round(4), round(1), round(3), round(2)], |m| {
            m.stats.rps()
        });
        assert_eq!(m.unwrap().stats.requests, 2);
        assert!(median_round(Vec::new(), |m| m.stats.rps()).is_none());
        let one = median_round(vec![round(7)], |m| m.stats.rps()).unwrap();
        assert_eq!(one.rounds, [7.0]);
    }
}
