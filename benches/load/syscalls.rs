//! System calls per request, counted by `strace -f -c`: the gateway, bare Pingora and
//! nginx, each sent the same small-JSON passthrough requests one at a time, so the
//! figures show what each server asks of the kernel per request (reads, writes,
//! polls, timers), the part of a request's cost that instruction counts leave out;
//! and the gateway translating `/v1/chat/completions` to Anthropic.
//!
//! The count covers the process's whole life (start, warm-up and stop too); with some
//! thousands of requests counted, that adds well under 1 % per request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::client;
use super::instructions::{self, SCENARIO, TRANSLATED};
use super::scenarios::SCENARIOS;
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
        (Target::Pingora, SCENARIO),
        (Target::Nginx, SCENARIO),
        (Target::Aurora, TRANSLATED),
    ];
    for (target, scenario) in counted {
        let summary = dir.join(format!("strace-{}-{scenario}.txt", target.name()));
        let _ = std::fs::remove_file(&summary);
        servers::run_under(strace_wrapper(&summary));
        let server = match (target, nginx) {
            (Target::Nginx, Some((bin, nofile))) => {
                Some(servers::start_nginx(bin, mock_port, nofile, None, dir))
            }
            (Target::Nginx, None) => None,
            _ => instructions::start(target, &aurora_bin, mock_port, dir),
        };
        servers::run_under(Vec::new());
        let Some(mut server) = server else { continue };
        let requests = send(rt, target, scenario, &server, secs);
        let stopped = server.stop_wrapped(Duration::from_secs(30));
        let text = std::fs::read_to_string(&summary).unwrap_or_default();
        match (requests, stopped, calls(&text)) {
            (Some(requests), true, Some(total)) => {
                let per = |n: u64| n as f64 / requests as f64;
                let listed = LISTED
                    .iter()
                    .map(|name| per(calls_of(&text, name).unwrap_or(0)))
                    .collect();
                let c = SyscallCount {
                    target,
                    scenario,
                    requests,
                    per_request: per(total),
                    listed,
                };
                eprintln!(
                    "  {:<16} {scenario:<24} {:>6.1} system calls per request ({} requests)",
                    target.name(),
                    c.per_request,
                    c.requests
                );
                counts.push(c);
            }
            _ => eprintln!(
                "  {:<16} {scenario:<24} system calls not counted",
                target.name()
            ),
        }
    }
    counts
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
    let scenario = SCENARIOS.iter().find(|s| s.name == scenario)?;
    let spec = Arc::new(scenario.request(target, server.port));
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
    fn the_table_lists_each_target_per_request() {
        let count = SyscallCount {
            target: Target::Nginx,
            scenario: SCENARIO,
            requests: 1000,
            per_request: 8.0,
            listed: vec![0.0, 3.0, 0.0, 2.0, 0.0, 3.0, 0.0, 0.0],
        };
        let table = table(&[count]);
        assert!(
            table.starts_with("| target | scenario | system calls / request | read |"),
            "{table}"
        );
        assert!(
            table.contains("| nginx | passthrough_small_json | 8.0 | 0.00 | 3.00 | 0.00 | 2.00 |"),
            "{table}"
        );
    }
}
