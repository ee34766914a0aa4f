//! Instructions per request, counted by callgrind: the gateway (no limits, a key with
//! limits in memory, and the same key in a Redis the count starts when `redis-server`
//! is installed; Redis itself is not counted) and the bare Pingora proxy, each under `valgrind
//! --tool=callgrind`, sent the same small-JSON passthrough requests one at a time;
//! and the gateway sent `/v1/chat/completions` translated to Anthropic, whose cost
//! against the passthrough's is the translation's; a passthrough Chat stream, sent at
//! once and paced (an event every 2 ms, each read and written on its own: counted per
//! event too), for the gateway and bare Pingora.
//!
//! It counts user-space instructions only: the kernel's share of a request (the
//! socket calls) is not in it (`syscalls.rs` counts those calls).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::client::{self, RequestSpec};
use super::limited;
use super::mock::canned::{EVENTS_HEADER, PACE_HEADER};
use super::scenarios::Scenario;
use super::servers::{self, Server, Target};

/// One count.
#[derive(Debug, Clone)]
pub struct InstructionCount {
    pub target: Target,
    /// The scenario sent.
    pub scenario: &'static str,
    pub requests: u64,
    /// Instructions of the whole process per completed request.
    pub per_request: f64,
}

/// The measured scenario: the plainest request, so the count is what each proxy adds.
pub const SCENARIO: &str = "passthrough_small_json";

/// The translated scenario, counted for the gateway alone.
pub const TRANSLATED: &str = "chat_to_anthropic_json";

/// A passthrough Chat stream (14 events: the counting mock's ten of text, the role's,
/// the stop, the usage and `[DONE]`), whose usage the gateway asks for and keeps from
/// the client: counted for the gateway and bare Pingora.
pub const STREAM: &str = "passthrough_sse";

/// The same passthrough stream as providers send one: [`PACED_EVENTS`] events of text
/// one every [`PACED_MS`] milliseconds, so each is read, metered and written on its
/// own (as in the load bench's paced streams, faster): counted per event.
pub const PACED: &str = "paced_streams_passthrough";

/// The events of text of a counted paced stream.
const PACED_EVENTS: usize = 50;

/// The events of a counted paced stream: the mock adds four to its text (the role's,
/// the stop, the usage and `[DONE]`).
const PACED_SENT: usize = PACED_EVENTS + 4;

/// Milliseconds between two events of a counted paced stream.
const PACED_MS: u64 = 2;

/// What is counted: each target on the plainest request, the gateway translating, and
/// the gateway and bare Pingora on a stream, sent at once and paced; then the
/// gateway's again for another build, when `AURORA_BENCH_BASELINE_BIN` names one.
const COUNTED: [(Target, &str); 13] = [
    (Target::Aurora, SCENARIO),
    (Target::AuroraLimited, SCENARIO),
    (Target::AuroraLimitedRedis, SCENARIO),
    (Target::Pingora, SCENARIO),
    (Target::Aurora, TRANSLATED),
    (Target::Aurora, STREAM),
    (Target::Pingora, STREAM),
    (Target::Aurora, PACED),
    (Target::Pingora, PACED),
    (Target::AuroraBaseline, SCENARIO),
    (Target::AuroraBaseline, TRANSLATED),
    (Target::AuroraBaseline, STREAM),
    (Target::AuroraBaseline, PACED),
];

/// The request `scenario` sends `target` on `port`: a paced stream's at this count's
/// own pace and length.
fn counted_request(scenario: &str, target: Target, port: u16) -> Option<RequestSpec> {
    let mut spec = Scenario::request_named(scenario, target, port)?;
    if scenario == PACED {
        let mut put = |name: &'static str, value: String| {
            spec.headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(&value).expect("a number"),
            );
        };
        put(PACE_HEADER, PACED_MS.to_string());
        put(EVENTS_HEADER, PACED_EVENTS.to_string());
    }
    Some(spec)
}

/// Whether valgrind and `callgrind_control` are installed.
pub fn available() -> bool {
    let ok = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("valgrind") && ok("callgrind_control")
}

/// Counts each target for `secs` seconds of requests, its files under `dir`.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    mock_port: u16,
    dir: &Path,
    secs: f64,
) -> Vec<InstructionCount> {
    // Started before the servers go under callgrind: Redis's own work is not counted.
    let mut redis = limited::redis_binary().map(|bin| limited::start_redis(&bin, None, dir));
    let redis_port = redis.as_ref().map(|r| r.port);
    servers::run_under(callgrind_wrapper(dir));
    let aurora_bin = servers::aurora_binary();
    let mut counts = Vec::new();
    for (target, scenario) in COUNTED {
        let Some(mut server) = start(target, &aurora_bin, mock_port, redis_port, dir) else {
            continue;
        };
        match count(rt, target, scenario, &server, dir, secs) {
            Some(c) => {
                eprintln!(
                    "  {:<16} {scenario:<24} {:>9.0} instructions per request ({} requests)",
                    target.name(),
                    c.per_request,
                    c.requests
                );
                counts.push(c);
            }
            None => eprintln!("  {:<16} {scenario:<24} not counted", target.name()),
        }
        server.stop_wrapped(Duration::from_secs(30));
    }
    servers::run_under(Vec::new());
    if let Some(redis) = redis.as_mut() {
        redis.stop_wrapped(Duration::from_secs(5));
    }
    counts
}

/// Starts `target` (the gateway, the limited gateway in memory or in the Redis on
/// `redis_port`, or bare Pingora) on the mock.
pub fn start(
    target: Target,
    aurora_bin: &Path,
    mock_port: u16,
    redis_port: Option<u16>,
    dir: &Path,
) -> Option<Server> {
    let limited = |store: Option<&str>| {
        servers::start_aurora_with_config(
            aurora_bin,
            mock_port,
            1,
            "warn",
            None,
            dir,
            &limited::limited_config(store),
            None,
        )
    };
    Some(match target {
        Target::Pingora => match servers::pingora_binary() {
            Some(bin) => servers::start_pingora(&bin, mock_port, 1, None, dir),
            None => {
                eprintln!("  bare Pingora not built (make bench-counts builds it)");
                return None;
            }
        },
        Target::AuroraLimited => limited(None),
        // Counted only when named.
        Target::AuroraBaseline => {
            let bin = servers::baseline_binary()?;
            servers::start_aurora(&bin, mock_port, 1, "warn", None, dir)
        }
        Target::AuroraLimitedRedis => match redis_port {
            Some(port) => limited(Some(&format!("redis://127.0.0.1:{port}/0"))),
            None => {
                eprintln!("  redis-server not installed (make redis installs it)");
                return None;
            }
        },
        _ => servers::start_aurora(aurora_bin, mock_port, 1, "warn", None, dir),
    })
}

/// Warms `server` up, zeroes its counters, sends requests one at a time for `secs`,
/// dumps the counters and reads the total from the dump.
fn count(
    rt: &tokio::runtime::Runtime,
    target: Target,
    scenario: &'static str,
    server: &Server,
    dir: &Path,
    secs: f64,
) -> Option<InstructionCount> {
    let spec = Arc::new(counted_request(scenario, target, server.port)?);
    let warm = rt.block_on(client::closed_loop(
        server.addr(),
        spec.clone(),
        1,
        Duration::from_secs(2),
    ));
    if warm.requests == 0 || warm.errors > 0 {
        return None;
    }
    let pid = server.pid().to_string();
    callgrind_control(&["-z", &pid])?;
    let stats = rt.block_on(client::closed_loop(
        server.addr(),
        spec,
        1,
        Duration::from_secs_f64(secs),
    ));
    callgrind_control(&["-d", &pid])?;
    if stats.requests == 0 || stats.errors > 0 {
        return None;
    }
    let dump = dir.join(format!("callgrind.{pid}.1"));
    let total = summary(&std::fs::read_to_string(&dump).ok()?)?;
    Some(InstructionCount {
        target,
        scenario,
        requests: stats.requests,
        per_request: total as f64 / stats.requests as f64,
    })
}

/// The command the servers run under: callgrind, its files in `dir`.
fn callgrind_wrapper(dir: &Path) -> Vec<String> {
    let out: PathBuf = dir.join("callgrind.%p");
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
    ]
}

/// Runs `callgrind_control` with `args`; `None` when it fails.
fn callgrind_control(args: &[&str]) -> Option<()> {
    let out = Command::new("callgrind_control").args(args).output().ok()?;
    out.status.success().then_some(())
}

/// The instruction total of a callgrind dump (its `summary:` line).
fn summary(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The markdown table of the counts: the passthrough's against bare Pingora's, the
/// translated request's against the gateway's passthrough, another build's against
/// this build's on the same scenario.
pub fn table(counts: &[InstructionCount]) -> String {
    let find = |target, scenario| {
        counts
            .iter()
            .find(|c| c.target == target && c.scenario == scenario)
            .map(|c| c.per_request)
    };
    let passthrough = find(Target::Aurora, SCENARIO);
    let mut out = String::from(
        "| target | scenario | instructions / request | against |\n|---|---|---:|---:|\n",
    );
    for c in counts {
        let (base, base_name) = if c.target == Target::AuroraBaseline {
            (find(Target::Aurora, c.scenario), "this build")
        } else if [SCENARIO, STREAM, PACED].contains(&c.scenario) {
            (find(Target::Pingora, c.scenario), "bare Pingora")
        } else {
            (passthrough, "aurora's passthrough")
        };
        let ratio = base.map_or("—".to_string(), |b| {
            format!("{:.2}× {base_name}", c.per_request / b)
        });
        let per_event = if c.scenario == PACED {
            format!(" ({:.0} an event)", c.per_request / PACED_SENT as f64)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {:.0}{per_event} | {ratio} |\n",
            c.target.name(),
            c.scenario,
            c.per_request
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_the_dump_summary() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 279288929\ntotals: 279301961\n";
        assert_eq!(summary(dump), Some(279_288_929));
        assert_eq!(summary("events: Ir\n"), None);
    }

    #[test]
    fn limits_are_counted_in_memory_and_in_redis() {
        for target in [Target::AuroraLimited, Target::AuroraLimitedRedis] {
            assert!(COUNTED.contains(&(target, SCENARIO)), "{}", target.name());
        }
    }

    #[test]
    fn each_count_is_set_against_bare_pingoras() {
        let count = |target, scenario, per_request| InstructionCount {
            target,
            scenario,
            requests: 100,
            per_request,
        };
        let table = table(&[
            count(Target::Aurora, SCENARIO, 150_000.0),
            count(Target::Pingora, SCENARIO, 100_000.0),
            count(Target::Aurora, TRANSLATED, 225_000.0),
            count(Target::AuroraBaseline, SCENARIO, 165_000.0),
            count(Target::AuroraBaseline, TRANSLATED, 270_000.0),
            count(Target::Aurora, STREAM, 660_000.0),
            count(Target::Pingora, STREAM, 600_000.0),
            count(Target::Aurora, PACED, 864_000.0),
            count(Target::Pingora, PACED, 720_000.0),
        ]);
        let row = |target: &str, scenario: &str, n: &str, against: &str| {
            format!("| {target} | {scenario} | {n} | {against} |")
        };
        for expected in [
            row("aurora", SCENARIO, "150000", "1.50× bare Pingora"),
            row("pingora", SCENARIO, "100000", "1.00× bare Pingora"),
            row("aurora", TRANSLATED, "225000", "1.50× aurora's passthrough"),
            row("aurora_baseline", SCENARIO, "165000", "1.10× this build"),
            row("aurora_baseline", TRANSLATED, "270000", "1.20× this build"),
            row("aurora", STREAM, "660000", "1.10× bare Pingora"),
            // 54 events a paced stream: 16,000 an event.
            row(
                "aurora",
                PACED,
                "864000 (16000 an event)",
                "1.20× bare Pingora",
            ),
        ] {
            assert!(table.contains(&expected), "{table}");
        }
    }

    #[test]
    fn a_paced_stream_is_asked_of_the_mock_at_the_counts_pace() {
        for target in [Target::Aurora, Target::Pingora] {
            assert!(COUNTED.contains(&(target, PACED)), "{}", target.name());
            let spec = counted_request(PACED, target, 8080).unwrap();
            assert_eq!(spec.headers[PACE_HEADER], PACED_MS.to_string().as_str());
            assert_eq!(
                spec.headers[EVENTS_HEADER],
                PACED_EVENTS.to_string().as_str()
            );
        }
        // Any other scenario goes as the load bench sends it.
        let spec = counted_request(STREAM, Target::Aurora, 8080).unwrap();
        assert!(!spec.headers.contains_key(PACE_HEADER));
    }
}
