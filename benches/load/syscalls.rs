//! System calls per request, counted by `strace -f -c`: the gateway, bare Pingora and
//! nginx, each sent the same small-JSON passthrough requests one at a time, so the
//! figures show what each server asks of the kernel per request (reads, writes,
//! polls, timers), the part of a request's cost that instruction counts leave out;
//! the gateway with a key with limits too, and translating `/v1/chat/completions` to
//! Anthropic.
//!
//! strace counts a process's whole life, and starting one costs thousands of calls (the
//! gateway reads the system's CA certificates for each TLS connector it builds). So
//! each target runs twice, a short run and a long one, and the figures are the
//! difference of the two counts over the difference of their requests: what one more
//! request costs, with start and stop cancelled out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::client;
use super::instructions::{self, SCENARIO, TRANSLATED};
use super::scenarios::Scenario;
use super::servers::{self, Server, Target};

/// The system calls listed one by one in the table (the rest count in the total).
const LISTED: [&str; 8] = [
    "read",
    "recvfrom",
    "write",
    "writev",
    "sendto",
    "epoll_wait",
    "epoll_ctl",
    "futex",
];

/// One count.
#[derive(Debug, Clone)]
pub struct SyscallCount {
    pub target: Target,
    /// The scenario sent.
    pub scenario: &'static str,
    /// Requests the long run answered beyond the short one.
    pub requests: u64,
    /// All system calls per completed request.
    pub per_request: f64,
    /// The [`LISTED`] calls per request, in that order.
    pub listed: Vec<f64>,
}

/// Whether strace is installed.
pub fn available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Counts each target for `secs` seconds of requests, its files under `dir`.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    mock_port: u16,
    nginx: Option<(&Path, u64)>,
    dir: &Path,
    secs: f64,
) -> Vec<SyscallCount> {
    let aurora_bin = servers::aurora_binary();
    let mut counts = Vec::new();
    let counted = [
        (Target::Aurora, SCENARIO),
        (Target::AuroraLimited, SCENARIO),
        (Target::Pingora, SCENARIO),
        (Target::Nginx, SCENARIO),
        (Target::Aurora, TRANSLATED),
    ];
    let short_secs = (secs / 4.0).max(1.0);
    for (target, scenario) in counted {
        let run = |secs: f64, name: &str| {
            let summary = dir.join(format!("strace-{}-{scenario}-{name}.txt", target.name()));
            let _ = std::fs::remove_file(&summary);
            servers::run_under(strace_wrapper(&summary));
            let server = match (target, nginx) {
                (Target::Nginx, Some((bin, nofile))) => {
                    Some(servers::start_nginx(bin, mock_port, nofile, None, dir))
                }
                (Target::Nginx, None) => None,
                _ => instructions::start(target, &aurora_bin, mock_port, None, dir),
            };
            servers::run_under(Vec::new());
            let mut server = server?;
            let requests = send(rt, target, scenario, &server, secs);
            let stopped = server.stop_wrapped(Duration::from_secs(30));
            let text = std::fs::read_to_string(&summary).unwrap_or_default();
            stopped.then_some(Run::read(requests?, &text)?)
        };
        let (Some(short), Some(long)) = (run(short_secs, "short"), run(secs, "long")) else {
            eprintln!(
                "  {:<16} {scenario:<24} system calls not counted",
                target.name()
            );
            continue;
        };
        let Some(c) = SyscallCount::between(target, scenario, &short, &long) else {
            eprintln!(
                "  {:<16} {scenario:<24} too few requests apart to count",
                target.name()
            );
            continue;
        };
        eprintln!(
            "  {:<16} {scenario:<24} {:>6.1} system calls per request ({} requests apart)",
            target.name(),
            c.per_request,
            c.requests
        );
        counts.push(c);
    }
    counts
}

/// One process's life under strace: the requests it answered and its calls.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    requests: u64,
    total: u64,
    /// The [`LISTED`] calls, in that order.
    listed: Vec<u64>,
}

impl Run {
    /// The run of `requests` whose strace summary is `text`.
    fn read(requests: u64, text: &str) -> Option<Self> {
        Some(Self {
            requests,
            total: calls(text)?,
            listed: LISTED
                .iter()
                .map(|name| calls_of(text, name).unwrap_or(0))
                .collect(),
        })
    }
}

impl SyscallCount {
    /// What one more request costs: the calls `long` made beyond `short`, over the
    /// requests it answered beyond it. `None` when it answered no more.
    fn between(target: Target, scenario: &'static str, short: &Run, long: &Run) -> Option<Self> {
        let requests = long
            .requests
            .checked_sub(short.requests)
            .filter(|n| *n > 0)?;
        let per = |long: u64, short: u64| (long as f64 - short as f64) / requests as f64;
        Some(Self {
            target,
            scenario,
            requests,
            per_request: per(long.total, short.total),
            listed: long
                .listed
                .iter()
                .zip(&short.listed)
                .map(|(l, s)| per(*l, *s))
                .collect(),
        })
    }
}

/// Sends `secs` seconds of the scenario's requests, one at a time; the number answered
/// (`None` if any failed).
fn send(
    rt: &tokio::runtime::Runtime,
    target: Target,
    scenario: &str,
    server: &Server,
    secs: f64,
) -> Option<u64> {
    let spec = Arc::new(Scenario::request_named(scenario, target, server.port)?);
    let stats = rt.block_on(client::closed_loop(
        server.addr(),
        spec,
        1,
        Duration::from_secs_f64(secs),
    ));
    (stats.requests > 0 && stats.errors == 0).then_some(stats.requests)
}

/// The command the servers run under: strace following every thread and child,
/// its summary written to `summary`.
fn strace_wrapper(summary: &Path) -> Vec<String> {
    let summary: PathBuf = summary.to_path_buf();
    vec![
        "strace".into(),
        "-f".into(),
        "-c".into(),
        "-o".into(),
        summary.display().to_string(),
    ]
}

/// The total number of calls in an `strace -c` summary: the sum of its lines (the
/// `total` line's columns differ between strace versions).
fn calls(summary: &str) -> Option<u64> {
    let counted: Vec<u64> = summary
        .lines()
        .filter_map(|line| {
            let (name, calls) = calls_on(line)?;
            (name != "total").then_some(calls)
        })
        .collect();
    (!counted.is_empty()).then(|| counted.iter().sum())
}

/// The calls of `name` in an `strace -c` summary.
fn calls_of(summary: &str, name: &str) -> Option<u64> {
    summary
        .lines()
        .filter_map(calls_on)
        .find_map(|(n, calls)| (n == name).then_some(calls))
}

/// The system call and its calls on one line of an `strace -c` summary: `% time,
/// seconds, usecs/call, calls, [errors,] syscall`.
fn calls_on(line: &str) -> Option<(&str, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let name = *fields.last()?;
    let calls = fields.get(3)?.parse().ok()?;
    (fields.len() >= 5).then_some((name, calls))
}

/// The markdown table of the counts.
pub fn table(counts: &[SyscallCount]) -> String {
    let mut out = String::from("| target | scenario | system calls / request |");
    for name in LISTED {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|---|---:|");
    out.push_str(&"---:|".repeat(LISTED.len()));
    out.push('\n');
    for c in counts {
        out.push_str(&format!(
            "| {} | {} | {:.1} |",
            c.target.name(),
            c.scenario,
            c.per_request
        ));
        for n in &c.listed {
            // A difference of two counts may come out a hair below zero.
            let n = if n.abs() < 0.005 { 0.0 } else { *n };
            out.push_str(&format!(" {n:.2} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.004000           2      2000           writev
 30.00    0.003000           1      3000       500 recvfrom
 30.00    0.003000           1      3000           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           1      8000       500 total
";

    #[test]
    fn calls_are_read_from_an_strace_summary() {
        assert_eq!(calls(SUMMARY), Some(8000));
        assert_eq!(calls_of(SUMMARY, "writev"), Some(2000));
        assert_eq!(calls_of(SUMMARY, "recvfrom"), Some(3000));
        assert_eq!(calls_of(SUMMARY, "sendto"), None);
    }

    #[test]
    fn start_and_stop_cancel_out_between_a_short_and_a_long_run() {
        // 5,000 calls to start and stop, 9 per request.
        let run = |requests: u64| Run {
            requests,
            total: 5_000 + 9 * requests,
            listed: vec![0, 2 * requests, 1_000, 0, 3 * requests, 2 * requests, 16, 0],
        };
        let c = SyscallCount::between(Target::Aurora, SCENARIO, &run(1_000), &run(5_000)).unwrap();
        assert_eq!(c.requests, 4_000);
        assert!((c.per_request - 9.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.listed, vec![0.0, 2.0, 0.0, 0.0, 3.0, 2.0, 0.0, 0.0]);
        assert!(SyscallCount::between(Target::Aurora, SCENARIO, &run(10), &run(10)).is_none());
    }

    #[test]
    fn the_table_lists_each_target_per_request() {
        let count = SyscallCount {
            target: Target::Nginx,
            scenario: SCENARIO,
            requests: 1000,
            per_request: 8.0,
            listed: vec![0.0, 3.0, 0.0, 2.0, 0.0, 3.0, 0.0, -0.001],
        };
        let table = table(&[count]);
        assert!(
            table.starts_with("| target | scenario | system calls / request | read |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| nginx | passthrough_small_json | 8.0 | 0.00 | 3.00 | 0.00 | 2.00 | 0.00 | 3.00 | 0.00 | 0.00 |"
            ),
            "{table}"
        );
    }
}
