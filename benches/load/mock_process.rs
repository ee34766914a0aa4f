//! The bench's mock provider process (this bench binary started with `--mock`): the
//! shared canned provider (`tests/common/mock/canned.rs`) on a single-threaded
//! runtime of its own, so its CPU and memory are measured apart from the load
//! generator's. It prints its port on stdout, then serves until killed.
//!
//! `AURORA_BENCH_MOCK_LATENCY_MS` delays every answer; `AURORA_BENCH_SSE_EVENTS` sets
//! the events of a stream.

use std::io::Write;
use std::time::Duration;

use super::mock::{CannedProvider, MockUpstream};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs the mock provider until the process is killed.
pub fn run_from_env() {
    let provider = CannedProvider::new(
        env_number("AURORA_BENCH_SSE_EVENTS", 100) as usize,
        Duration::from_millis(env_number("AURORA_BENCH_MOCK_LATENCY_MS", 0)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("mock runtime");
    rt.block_on(async move {
        // Nobody reads the requests back, and a run sends millions.
        let mock = MockUpstream::start_unrecorded(provider).await;
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{}", mock.addr.port());
        let _ = stdout.flush();
        std::future::pending::<()>().await;
    });
}
