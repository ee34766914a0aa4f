//! Heap allocations per request, for the gateway and for the bare Pingora proxy: both
//! built with the `alloc-count` feature (separate binaries, so the speed figures stay
//! uncounted), each sent the same requests, each asked for its count before and after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::client;
use super::scenarios::{Scenario, SCENARIOS};
use super::servers::{self, Server, Target};

/// Requests sent at once while counting: few, so the count is of requests, not of
/// connections opened.
const CONCURRENCY: usize = 4;

/// One count.
#[derive(Debug, Clone)]
pub struct AllocResult {
    pub scenario: &'static str,
    pub target: Target,
    pub requests: u64,
    /// Allocations (and reallocations) per completed request.
    pub per_request: f64,
}

/// The scenarios counted, and which of them the bare proxy serves too.
const COUNTED: [&str; 2] = ["passthrough_small_json", "chat_to_anthropic_json"];

/// Counts `secs` seconds of each counted scenario against each counting binary.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    mock_port: u16,
    threads: usize,
    binaries: (&Path, &Path),
    dir: &Path,
    secs: f64,
) -> Vec<AllocResult> {
    let (aurora_bin, pingora_bin) = binaries;
    let mut out = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| COUNTED.contains(&s.name)) {
        for target in [Target::Aurora, Target::Pingora] {
            if target == Target::Pingora && !scenario.nginx {
                continue;
            }
            let counted = match target {
                Target::Pingora => {
                    let server = servers::start_pingora(pingora_bin, mock_port, threads, None, dir);
                    let port = server.port;
                    count(rt, scenario, target, &server, secs, || {
                        fetch(port, "/__allocations")
                    })
                }
                _ => {
                    let metrics_port = servers::free_port();
                    let server = servers::start_aurora_with_config(
                        aurora_bin,
                        mock_port,
                        threads,
                        "warn",
                        None,
                        dir,
                        "# Written by the load bench: counting allocations.\n",
                        Some(metrics_port),
                    );
                    count(rt, scenario, target, &server, secs, || {
                        fetch(metrics_port, "/metrics").and_then(|m| metric(&m))
                    })
                }
            };
            match counted {
                Some(r) => {
                    eprintln!(
                        "  allocations {:<24} {:<8} {:.1} per request ({} requests)",
                        r.scenario,
                        r.target.name(),
                        r.per_request,
                        r.requests
                    );
                    out.push(r);
                }
                None => eprintln!(
                    "  allocations {} / {}: could not read the count",
                    scenario.name,
                    target.name()
                ),
            }
        }
    }
    out
}

/// Warms `server` up, then counts the allocations of `secs` seconds of `scenario`,
/// less what reading the count itself costs.
fn count(
    rt: &tokio::runtime::Runtime,
    scenario: &Scenario,
    target: Target,
    server: &Server,
    secs: f64,
    read: impl Fn() -> Option<String>,
) -> Option<AllocResult> {
    let spec = Arc::new(scenario.request(target, server.port));
    let addr = server.addr();
    rt.block_on(client::closed_loop(
        addr,
        spec.clone(),
        CONCURRENCY,
        Duration::from_millis(500),
    ));
    let number = |text: Option<String>| text?.trim().parse::<u64>().ok();
    let first = number(read())?;
    let second = number(read())?;
    let reading = second.saturating_sub(first);
    let stats = rt.block_on(client::closed_loop(
        addr,
        spec,
        CONCURRENCY,
        Duration::from_secs_f64(secs),
    ));
    let after = number(read())?;
    let made = after.saturating_sub(second).saturating_sub(reading);
    (stats.requests > 0 && stats.errors == 0).then(|| AllocResult {
        scenario: scenario.name,
        target,
        requests: stats.requests,
        per_request: made as f64 / stats.requests as f64,
    })
}

/// `aurora_allocations_total`'s value in a metrics text.
fn metric(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("aurora_allocations_total "))
        .map(str::to_string)
}

/// The body of `GET path` on loopback `port`, with `Connection: close`.
fn fetch(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_count_is_read_from_the_metrics_text() {
        let text = "# HELP x y\naurora_requests_total 3\naurora_allocations_total 12345\n";
        assert_eq!(metric(text).as_deref(), Some("12345"));
        assert_eq!(metric("aurora_requests_total 3\n"), None);
    }
}
