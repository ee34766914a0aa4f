//! Instructions per request, counted by callgrind: the gateway (no limits, and a key
//! with limits in memory) and the bare Pingora proxy, each under `valgrind
//! --tool=callgrind`, sent the same small-JSON passthrough requests one at a time.
//!
//! Unlike the seconds the load bench measures, the count is the same from run to run
//! whatever else the machine is doing, so a change's cost shows on a shared machine.
//! It counts user-space instructions only: the kernel's share of a request (the
//! socket calls) is not in it. `cargo bench --bench load -- --instructions` (or
//! `make bench-instructions`); knob: `AURORA_BENCH_INSTRUCTION_SECS` (the counted
//! loop, default 10 s; each request takes a few hundred microseconds under callgrind).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::client;
use super::limited;
use super::scenarios::SCENARIOS;
use super::servers::{self, Server, Target};

/// One count.
#[derive(Debug, Clone)]
pub struct InstructionCount {
    pub target: Target,
    pub requests: u64,
    /// Instructions of the whole process per completed request.
    pub per_request: f64,
}

/// The measured scenario: the plainest request, so the count is what each proxy adds.
const SCENARIO: &str = "passthrough_small_json";

/// Runs the count; the exit code of the bench process.
pub fn run() -> i32 {
    if !has_callgrind() {
        eprintln!("instructions: valgrind (with callgrind_control) is not installed");
        return 1;
    }
    let dir = servers::target_dir().join("bench/instructions");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("instructions: create {}: {e}", dir.display());
        return 1;
    }
    let secs = std::env::var("AURORA_BENCH_INSTRUCTION_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(10.0)
        .max(1.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let mock = servers::start_mock(10, 0, None, &dir);
    servers::run_under(callgrind_wrapper(&dir));
    let aurora_bin = servers::aurora_binary();
    let mut counts = Vec::new();
    for target in [Target::Aurora, Target::AuroraLimited, Target::Pingora] {
        let server = match target {
            Target::Pingora => match servers::pingora_binary() {
                Some(bin) => servers::start_pingora(&bin, mock.port, 1, None, &dir),
                None => {
                    eprintln!("  bare Pingora not built (make bench-instructions builds it)");
                    continue;
                }
            },
            Target::AuroraLimited => servers::start_aurora_with_config(
                &aurora_bin,
                mock.port,
                1,
                "warn",
                None,
                &dir,
                &limited::limited_config(None),
                None,
            ),
            _ => servers::start_aurora(&aurora_bin, mock.port, 1, "warn", None, &dir),
        };
        match count(&rt, target, &server, &dir, secs) {
            Some(c) => {
                eprintln!(
                    "  {:<16} {:>9.0} instructions per request ({} requests)",
                    target.name(),
                    c.per_request,
                    c.requests
                );
                counts.push(c);
            }
            None => eprintln!("  {:<16} not counted", target.name()),
        }
    }
    let table = table(&counts);
    println!("{table}");
    let out = dir.join("instructions.md");
    if let Err(e) = std::fs::write(&out, &table) {
        eprintln!("instructions: write {}: {e}", out.display());
    }
    i32::from(counts.is_empty())
}

/// Warms `server` up, zeroes its counters, sends requests one at a time for `secs`,
/// dumps the counters and reads the total from the dump.
fn count(
    rt: &tokio::runtime::Runtime,
    target: Target,
    server: &Server,
    dir: &Path,
    secs: f64,
) -> Option<InstructionCount> {
    let scenario = SCENARIOS.iter().find(|s| s.name == SCENARIO)?;
    let spec = Arc::new(scenario.request(target, server.port));
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

fn has_callgrind() -> bool {
    let ok = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("valgrind", "--version") && ok("callgrind_control", "--version")
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

/// The markdown table of the counts, with each against bare Pingora's.
pub fn table(counts: &[InstructionCount]) -> String {
    let pingora = counts
        .iter()
        .find(|c| c.target == Target::Pingora)
        .map(|c| c.per_request);
    let mut out =
        String::from("| target | instructions / request | vs bare Pingora |\n|---|---:|---:|\n");
    for c in counts {
        let ratio = pingora.map_or("—".to_string(), |p| format!("{:.2}×", c.per_request / p));
        out.push_str(&format!(
            "| {} | {:.0} | {ratio} |\n",
            c.target.name(),
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
    fn each_count_is_set_against_bare_pingoras() {
        let count = |target, per_request| InstructionCount {
            target,
            requests: 100,
            per_request,
        };
        let table = table(&[
            count(Target::Aurora, 150_000.0),
            count(Target::Pingora, 100_000.0),
        ]);
        assert!(table.contains("| aurora | 150000 | 1.50× |"), "{table}");
        assert!(table.contains("| pingora | 100000 | 1.00× |"), "{table}");
    }
}
