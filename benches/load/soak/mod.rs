//! The soak (`cargo bench --bench load -- --soak`, or `make soak`): the release gateway
//! and the load bench's mock provider on loopback, a paced mix of every kind of traffic
//! for `AURORA_SOAK_SECS` (600), and a config reload (the file rewritten, then SIGHUP)
//! every `AURORA_SOAK_RELOAD_SECS` (10). The gateway's resident memory and open
//! descriptors are sampled with no traffic after a warm-up and at the end. It prints
//! what was served and the verdicts, and exits non-zero when one fails.
//!
//! Knobs (environment): `AURORA_SOAK_SECS`, `AURORA_SOAK_WARMUP_SECS` (20),
//! `AURORA_SOAK_RATE` (requests/s in all, 200), `AURORA_SOAK_WORKERS` (16),
//! `AURORA_SOAK_THREADS` (gateway worker threads, 2), `AURORA_SOAK_RELOAD_SECS`,
//! `AURORA_SOAK_KINDS` (comma-separated kinds of request to send, all by default),
//! `AURORA_BENCH_LOG` (gateway log filter, `warn`), `AURORA_BIN`.

mod reload;
mod traffic;
mod verdict;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{client, env_or, mock, output_dir, procfs, scenarios, servers};
use servers::Server;
use traffic::{Tally, Traffic};
use verdict::{Figures, Sample};

/// SSE events per streamed answer of the mock.
const SSE_EVENTS: usize = 100;

/// With no traffic, the descriptor count must hold still this long to count as settled
/// (upstream connections idle for 1 s are closed by then).
const SETTLE_QUIET: Duration = Duration::from_secs(3);
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// Settings of a soak run, from the environment.
#[derive(Debug, Clone)]
struct SoakSettings {
    secs: f64,
    warmup_secs: f64,
    rate: f64,
    workers: usize,
    threads: usize,
    reload_every: f64,
    kinds: Option<Vec<String>>,
    log_filter: String,
}

impl SoakSettings {
    fn from_env() -> Self {
        Self {
            secs: env_or("AURORA_SOAK_SECS", 600.0f64).max(1.0),
            warmup_secs: env_or("AURORA_SOAK_WARMUP_SECS", 20.0f64).max(1.0),
            rate: env_or("AURORA_SOAK_RATE", 200.0f64).max(1.0),
            workers: env_or("AURORA_SOAK_WORKERS", 16usize).max(1),
            threads: env_or("AURORA_SOAK_THREADS", 2usize).max(1),
            reload_every: env_or("AURORA_SOAK_RELOAD_SECS", 10.0f64).max(1.0),
            kinds: std::env::var("AURORA_SOAK_KINDS")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            log_filter: std::env::var("AURORA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        }
    }
}

/// Reloads sent and those that never showed.
#[derive(Default)]
struct Reloads {
    generation: AtomicU64,
    sent: AtomicU64,
    unseen: AtomicU64,
}

/// Reloads the gateway every `every` until `until`.
async fn keep_reloading(
    gateway: GatewayRef,
    reloads: Arc<Reloads>,
    base: client::RequestSpec,
    every: Duration,
    until: Instant,
) {
    let mut next = Instant::now() + every;
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        let generation = reloads.generation.fetch_add(1, Ordering::SeqCst) + 1;
        reloads.sent.fetch_add(1, Ordering::SeqCst);
        let done = reload::reload(
            gateway.pid,
            &gateway.config,
            generation,
            gateway.addr,
            &base,
        );
        if let Err(why) = done.await {
            reloads.unseen.fetch_add(1, Ordering::SeqCst);
            eprintln!("  reload {generation}: {why}");
        }
        next += every;
    }
}

/// What the reload task needs of the gateway.
#[derive(Clone)]
struct GatewayRef {
    pid: u32,
    addr: std::net::SocketAddr,
    config: std::path::PathBuf,
}

/// Prints progress every minute until `until`.
async fn report_progress(pid: u32, tally: Arc<Tally>, started: Instant, until: Instant) {
    let mut next = Instant::now() + PROGRESS_EVERY;
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        let (served, failed) = tally.totals();
        eprintln!(
            "  {:>4.0} s: {served} served, {failed} failed; gateway RSS {:.1} MiB, {} open descriptors",
            started.elapsed().as_secs_f64(),
            procfs::status_kib(pid, "VmRSS") as f64 / 1024.0,
            procfs::open_fds(pid)
        );
        next += PROGRESS_EVERY;
    }
}

/// The gateway with no traffic, once its descriptor count has held still.
fn settled(gateway: &Server) -> Sample {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut fds = gateway.open_fds();
    let mut still_since = Instant::now();
    while Instant::now() < deadline && still_since.elapsed() < SETTLE_QUIET {
        std::thread::sleep(Duration::from_millis(250));
        let now = gateway.open_fds();
        if now != fds {
            fds = now;
            still_since = Instant::now();
        }
    }
    Sample {
        rss_kib: gateway.rss_kib(),
        open_fds: fds,
    }
}

/// Lines of the gateway's log that report a panic.
fn panics_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked"))
        .count()
}

fn print_counts(title: &str, tally: &Tally) {
    println!("{title}");
    println!("| kind | served | failed |");
    println!("|---|---:|---:|");
    for (kind, count) in tally.counts() {
        println!("| {} | {} | {} |", kind.name(), count.served, count.failed);
        for sample in &count.samples {
            println!("|   ↳ {sample} | | |");
        }
    }
}

/// Runs the soak; the process's exit code.
pub fn run() -> i32 {
    let s = SoakSettings::from_env();
    let schedule = match traffic::schedule(s.kinds.as_deref()) {
        Ok(schedule) => Arc::new(schedule),
        Err(unknown) => {
            eprintln!("soak: unknown kinds in AURORA_SOAK_KINDS: {unknown}");
            return 2;
        }
    };
    let machine = procfs::machine();
    let nofile = procfs::raise_nofile_limit();
    let dir = output_dir().join("soak");
    std::fs::create_dir_all(&dir).expect("create target/bench/soak");
    let aurora_bin = servers::aurora_binary();
    eprintln!(
        "soak: {} CPUs ({}), {:.1} GiB, kernel {}; open files {nofile}",
        machine.nproc, machine.cpu_model, machine.mem_gib, machine.kernel
    );
    eprintln!(
        "  aurora: {} ({} threads); {:.0} s after a {:.0} s warm-up, {:.0} req/s from {} workers, a reload every {:.0} s; files in {}",
        aurora_bin.display(),
        s.threads,
        s.secs,
        s.warmup_secs,
        s.rate,
        s.workers,
        s.reload_every,
        dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let mock = servers::start_mock(SSE_EVENTS, 0, None, &dir);
    let gateway = servers::start_aurora_with_config(
        &aurora_bin,
        mock.port,
        s.threads,
        &s.log_filter,
        None,
        &dir,
        &reload::config_yaml(0),
        None,
    );
    let handle = GatewayRef {
        pid: gateway.pid(),
        addr: gateway.addr(),
        config: dir.join("aurora.yaml"),
    };
    let traffic = Arc::new(Traffic::new(gateway.addr()));
    let base = scenarios::SCENARIOS[0].request(servers::Target::Aurora, gateway.port);
    let reloads = Arc::new(Reloads::default());
    let every = Duration::from_secs_f64(s.reload_every);

    // Warm-up, reloads included: one-time allocations land before the first sample.
    let warm = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs_f64(s.warmup_secs);
    rt.block_on(async {
        let reloading = tokio::spawn(keep_reloading(
            handle.clone(),
            reloads.clone(),
            base.clone(),
            every.min(Duration::from_secs_f64(s.warmup_secs / 2.0)),
            until,
        ));
        traffic::run(
            traffic.clone(),
            warm.clone(),
            schedule.clone(),
            s.workers,
            s.rate,
            until,
        )
        .await;
        let _ = reloading.await;
    });
    let start = settled(&gateway);
    let start_kinds = procfs::fd_kinds(gateway.pid());
    eprintln!(
        "  after warm-up: RSS {:.1} MiB, {} open descriptors",
        start.rss_kib as f64 / 1024.0,
        start.open_fds
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(s.secs);
    rt.block_on(async {
        let reloading = tokio::spawn(keep_reloading(
            handle.clone(),
            reloads.clone(),
            base.clone(),
            every,
            until,
        ));
        let progress = tokio::spawn(report_progress(handle.pid, tally.clone(), started, until));
        traffic::run(
            traffic.clone(),
            tally.clone(),
            schedule.clone(),
            s.workers,
            s.rate,
            until,
        )
        .await;
        let _ = reloading.await;
        let _ = progress.await;
    });
    let elapsed = started.elapsed();
    let end = settled(&gateway);
    let end_kinds = procfs::fd_kinds(gateway.pid());
    drop(rt);

    let (warm_served, warm_failed) = warm.totals();
    let (served, failed) = tally.totals();
    let figures = Figures {
        served: served + warm_served,
        failed: failed + warm_failed,
        reloads: reloads.sent.load(Ordering::SeqCst),
        reloads_unseen: reloads.unseen.load(Ordering::SeqCst),
        start,
        end,
    };
    let verdicts = verdict::judge(&figures);
    print_counts(
        &format!(
            "## Soak: {:.0} s, {:.0} req/s asked, {:.0} req/s served",
            elapsed.as_secs_f64(),
            s.rate,
            served as f64 / elapsed.as_secs_f64().max(1e-9)
        ),
        &tally,
    );
    println!();
    println!(
        "Warm-up ({:.0} s): {warm_served} served, {warm_failed} failed.",
        s.warmup_secs
    );
    println!(
        "Gateway at start (after warm-up): RSS {:.1} MiB, {} open descriptors; at the end: RSS {:.1} MiB, {} open descriptors.",
        start.rss_kib as f64 / 1024.0,
        start.open_fds,
        end.rss_kib as f64 / 1024.0,
        end.open_fds
    );
    if start_kinds != end_kinds {
        println!(
            "Open descriptors by kind, at start and at the end: {start_kinds:?}; {end_kinds:?}."
        );
    }
    println!(
        "Panics in the gateway's log: {}.",
        panics_logged(&dir.join("aurora.log"))
    );
    println!();
    for v in &verdicts {
        println!("{v}");
    }
    drop(gateway);
    drop(mock);
    if verdict::all_passed(&verdicts) {
        0
    } else {
        1
    }
}
