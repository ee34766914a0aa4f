//! The soak's verdicts: every request that should have succeeded did, every reload
//! took effect, resident memory grew by at most a tenth, and no file descriptor was
//! left behind. Pure functions of the figures, so they are tested with the load
//! harness's other tests.

use std::fmt;

/// Resident memory may grow by this share of its size after warm-up.
pub const MAX_RSS_GROWTH: f64 = 0.10;

/// The gateway as measured with no traffic: after warm-up, and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Resident memory (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub open_fds: usize,
}

/// What a soak run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Requests answered as they should have been (errors included where one was due).
    pub served: u64,
    /// Requests that should have succeeded (or failed in a given way) and did not.
    pub failed: u64,
    /// Config reloads sent.
    pub reloads: u64,
    /// Reloads whose change the gateway never showed.
    pub reloads_unseen: u64,
    pub start: Sample,
    pub end: Sample,
}

impl Figures {
    /// Growth of resident memory from start to end, as a share of the start (negative
    /// when it shrank).
    pub fn rss_growth(&self) -> f64 {
        if self.start.rss_kib == 0 {
            return f64::INFINITY;
        }
        (self.end.rss_kib as f64 - self.start.rss_kib as f64) / self.start.rss_kib as f64
    }

    /// Descriptors open at the end beyond those open at the start.
    pub fn extra_fds(&self) -> usize {
        self.end.open_fds.saturating_sub(self.start.open_fds)
    }
}

/// One check and how it came out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "PASS" } else { "FAIL" };
        write!(f, "{mark}  {}: {}", self.check, self.detail)
    }
}

/// Every verdict on `figures`.
pub fn judge(figures: &Figures) -> Vec<Verdict> {
    let growth = figures.rss_growth();
    vec![
        Verdict {
            check: "requests",
            // A run that served nothing proved nothing.
            passed: figures.failed == 0 && figures.served > 0,
            detail: format!(
                "{} served, {} failed that should have succeeded",
                figures.served, figures.failed
            ),
        },
        Verdict {
            check: "reloads",
            passed: figures.reloads_unseen == 0,
            detail: format!(
                "{} sent, {} never took effect",
                figures.reloads, figures.reloads_unseen
            ),
        },
        Verdict {
            check: "memory",
            passed: growth <= MAX_RSS_GROWTH,
            detail: format!(
                "RSS {:.1} → {:.1} MiB ({:+.1} %, at most {:+.0} %)",
                figures.start.rss_kib as f64 / 1024.0,
                figures.end.rss_kib as f64 / 1024.0,
                growth * 100.0,
                MAX_RSS_GROWTH * 100.0
            ),
        },
        Verdict {
            check: "file descriptors",
            passed: figures.extra_fds() == 0,
            detail: format!("{} → {} open", figures.start.open_fds, figures.end.open_fds),
        },
    ]
}

/// Whether every verdict passed.
pub fn all_passed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(start_kib: u64, end_kib: u64, start_fds: usize, end_fds: usize) -> Figures {
        Figures {
            served: 1000,
            failed: 0,
            reloads: 60,
            reloads_unseen: 0,
            start: Sample {
                rss_kib: start_kib,
                open_fds: start_fds,
            },
            end: Sample {
                rss_kib: end_kib,
                open_fds: end_fds,
            },
        }
    }

    fn passed(figures: &Figures, check: &str) -> bool {
        judge(figures)
            .into_iter()
            .find(|v| v.check == check)
            .unwrap()
            .passed
    }

    #[test]
    fn a_steady_gateway_passes_every_verdict() {
        let f = figures(20_000, 21_000, 12, 12);
        let verdicts = judge(&f);
        assert!(all_passed(&verdicts), "{verdicts:?}");
        assert_eq!(verdicts.len(), 4);
    }

    #[test]
    fn memory_may_grow_by_a_tenth_and_no_more() {
        assert!(passed(&figures(10_000, 11_000, 12, 12), "memory"));
        assert!(!passed(&figures(10_000, 11_001, 12, 12), "memory"));
        // Shrinking is fine.
        assert!(passed(&figures(10_000, 8_000, 12, 12), "memory"));
        // A gateway that could not be measured does not pass.
        assert!(!passed(&figures(0, 8_000, 12, 12), "memory"));
    }

    #[test]
    fn one_more_open_descriptor_at_the_end_is_a_leak() {
        assert!(!passed(
            &figures(10_000, 10_000, 12, 13),
            "file descriptors"
        ));
        assert!(passed(&figures(10_000, 10_000, 12, 11), "file descriptors"));
        assert_eq!(figures(1, 1, 12, 11).extra_fds(), 0);
    }

    #[test]
    fn any_failed_request_or_an_empty_run_fails_the_requests_verdict() {
        let one_failed = Figures {
            failed: 1,
            ..figures(10_000, 10_000, 12, 12)
        };
        assert!(!passed(&one_failed, "requests"));
        assert!(!all_passed(&judge(&one_failed)));
        let nothing = Figures {
            served: 0,
            ..figures(10_000, 10_000, 12, 12)
        };
        assert!(!passed(&nothing, "requests"));
    }

    #[test]
    fn a_reload_that_never_took_effect_fails() {
        let unseen = Figures {
            reloads_unseen: 1,
            ..figures(10_000, 10_000, 12, 12)
        };
        assert!(!passed(&unseen, "reloads"));
    }

    #[test]
    fn verdicts_print_their_outcome_and_figures() {
        let line = judge(&figures(10_240, 20_480, 12, 12))
            .into_iter()
            .find(|v| v.check == "memory")
            .unwrap()
            .to_string();
        assert_eq!(
            line,
            "FAIL  memory: RSS 10.0 → 20.0 MiB (+100.0 %, at most +10 %)"
        );
    }
}
