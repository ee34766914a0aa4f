//! Streams as real providers send them: many at once (`AURORA_BENCH_STREAMS`, 1,000),
//! each of `AURORA_BENCH_STREAM_EVENTS` events (200) one every
//! `AURORA_BENCH_STREAM_PACE_MS` (20 ms), read to their ends. What matters here is
//! the server's CPU per event and its memory per open stream, not requests per second.

use super::servers::Target;

/// The shape of the paced streams, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub streams: usize,
    pub events: usize,
    pub pace_ms: u64,
}

impl Pacing {
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(default)
        };
        Self {
            streams: number("AURORA_BENCH_STREAMS", 1000).max(1) as usize,
            events: number("AURORA_BENCH_STREAM_EVENTS", 200).max(1) as usize,
            pace_ms: number("AURORA_BENCH_STREAM_PACE_MS", 20),
        }
    }
}

/// One paced run against one target.
#[derive(Debug)]
pub struct PacedResult {
    pub scenario: &'static str,
    pub target: Target,
    pub streams: usize,
    pub completed: u64,
    pub failed: u64,
    pub events: u64,
    pub elapsed_secs: f64,
    /// CPU seconds of the server under test over the run.
    pub server_cpu: f64,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub error_samples: Vec<String>,
}

impl PacedResult {
    /// Server CPU seconds per 1,000 events delivered.
    pub fn cpu_per_1k_events(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.server_cpu * 1000.0 / self.events as f64
        }
    }

    /// Peak resident memory over the run beyond what the server held before, per
    /// stream, in KiB.
    pub fn rss_per_stream_kib(&self) -> f64 {
        self.rss_peak_kib.saturating_sub(self.rss_before_kib) as f64 / self.streams.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_per_thousand_events_and_memory_per_stream() {
        let r = PacedResult {
            scenario: "paced_streams_passthrough",
            target: Target::Aurora,
            streams: 1000,
            completed: 1000,
            failed: 0,
            events: 200_000,
            elapsed_secs: 5.0,
            server_cpu: 2.0,
            rss_before_kib: 10_000,
            rss_peak_kib: 42_000,
            error_samples: Vec::new(),
        };
        assert_eq!(r.cpu_per_1k_events(), 0.01);
        assert_eq!(r.rss_per_stream_kib(), 32.0);
    }
}
