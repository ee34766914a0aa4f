//! Side by side: the comparisons the targets are judged on, measured in interleaved
//! rounds. Every server of every comparison runs at once (idle but for the one under
//! load), and each round runs one closed loop against each of them, back to back, in
//! an order that turns by one place per round. A ratio is taken within a round, from
//! loops seconds apart, and the median round's ratio is kept: on a shared machine the
//! separate loops of the main table sit minutes apart and drift by a fifth, more than
//! the few per cent some targets are about. Latency targets get an open loop (at the
//! main table's rate) against their two servers in each round as well, and are judged
//! on the difference of the two p99s.
//!
//! Part of `make bench-load`; `make bench-paired` runs it alone.
//! `AURORA_BENCH_PAIRED_ROUNDS` (7) sets the rounds, 0 leaves it out.

use std::fmt::Write;

use serde_json::{json, Value};

use super::scenarios::Scenario;
use super::servers::Target;
use super::Measured;

/// One scenario against one target: what a round runs a loop of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub scenario: &'static str,
    pub target: Target,
}

/// A target the gateway is judged on: `subject` against `baseline`.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub what: &'static str,
    pub subject: Member,
    pub baseline: Member,
    /// The least the subject's req/s may be, as a share of the baseline's, when the
    /// target bounds it.
    pub min_rps: Option<f64>,
    /// The most the subject's CPU per request may be, as a multiple of the
    /// baseline's, when the target bounds it.
    pub max_cpu: Option<f64>,
    /// The most the subject's open-loop p99 may exceed the baseline's, in ms, when
    /// the target bounds it.
    pub max_added_p99_ms: Option<f64>,
    /// Whether the p99 difference is shown where no bound judges it: where the
    /// latency a target misses comes from.
    pub shows_p99: bool,
}

impl Comparison {
    /// Whether the rounds run open loops against this comparison's servers.
    pub fn wants_open_loop(&self) -> bool {
        self.shows_p99 || self.max_added_p99_ms.is_some()
    }
}

const SMALL: &str = "passthrough_small_json";
const TRANSLATED: &str = "chat_to_anthropic_json";

const fn member(scenario: &'static str, target: Target) -> Member {
    Member { scenario, target }
}

/// The targets of the README's Targets table that loops against two servers decide,
/// then this build against another (when `AURORA_BENCH_BASELINE_BIN` names one): a
/// comparison without bounds, so without a verdict.
pub const COMPARISONS: [Comparison; 10] = [
    Comparison {
        what: "passthrough, 1 thread, against bare Pingora",
        subject: member(SMALL, Target::Aurora),
        baseline: member(SMALL, Target::Pingora),
        min_rps: Some(0.95),
        max_cpu: Some(1.05),
        max_added_p99_ms: None,
        // Aurora's own part of the latency it adds, beside the nginx target below.
        shows_p99: true,
    },
    Comparison {
        what: "passthrough, 2 threads, against bare Pingora",
        subject: member(SMALL, Target::AuroraTwoThreads),
        baseline: member(SMALL, Target::PingoraTwoThreads),
        min_rps: Some(0.95),
        max_cpu: Some(1.05),
        max_added_p99_ms: None,
        shows_p99: false,
    },
    Comparison {
        what: "passthrough, 2 threads against 1",
        subject: member(SMALL, Target::AuroraTwoThreads),
        baseline: member(SMALL, Target::Aurora),
        min_rps: Some(1.0),
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: false,
    },
    Comparison {
        what: "a key with limits, memory store",
        subject: member(SMALL, Target::AuroraLimited),
        baseline: member(SMALL, Target::Aurora),
        min_rps: Some(0.97),
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: false,
    },
    Comparison {
        what: "a key with limits, Redis store",
        subject: member(SMALL, Target::AuroraLimitedRedis),
        baseline: member(SMALL, Target::Aurora),
        min_rps: Some(0.90),
        max_cpu: None,
        max_added_p99_ms: Some(0.3),
        shows_p99: false,
    },
    Comparison {
        what: "translated Chat JSON against passthrough",
        subject: member(TRANSLATED, Target::Aurora),
        baseline: member(SMALL, Target::Aurora),
        min_rps: Some(0.85),
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: false,
    },
    // Both add to the same provider, so the difference of their p99s is the
    // difference of the latency each adds.
    Comparison {
        what: "added p99, open loop, against nginx's",
        subject: member(SMALL, Target::Aurora),
        baseline: member(SMALL, Target::Nginx),
        min_rps: None,
        max_cpu: None,
        max_added_p99_ms: Some(0.0),
        shows_p99: false,
    },
    // The engine's part: bare Pingora's p99 against nginx's, which no target bounds.
    Comparison {
        what: "added p99, open loop: bare Pingora against nginx's",
        subject: member(SMALL, Target::Pingora),
        baseline: member(SMALL, Target::Nginx),
        min_rps: None,
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: true,
    },
    Comparison {
        what: "passthrough, this build against the baseline build",
        subject: member(SMALL, Target::Aurora),
        baseline: member(SMALL, Target::AuroraBaseline),
        min_rps: None,
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: false,
    },
    Comparison {
        what: "translated Chat JSON, this build against the baseline build",
        subject: member(TRANSLATED, Target::Aurora),
        baseline: member(TRANSLATED, Target::AuroraBaseline),
        min_rps: None,
        max_cpu: None,
        max_added_p99_ms: None,
        shows_p99: false,
    },
];

/// The comparisons whose members can all run (`runnable`), each member once, in the
/// order the comparisons name them.
pub fn members_of(
    comparisons: &[Comparison],
    runnable: impl Fn(Member) -> bool,
) -> (Vec<Comparison>, Vec<Member>) {
    let kept: Vec<Comparison> = comparisons
        .iter()
        .copied()
        .filter(|c| runnable(c.subject) && runnable(c.baseline))
        .collect();
    let mut members = Vec::new();
    for m in kept.iter().flat_map(|c| [c.baseline, c.subject]) {
        if !members.contains(&m) {
            members.push(m);
        }
    }
    (kept, members)
}

/// For each of `members`, whether a comparison judges or shows its open-loop latency.
pub fn open_loop_members(comparisons: &[Comparison], members: &[Member]) -> Vec<bool> {
    members
        .iter()
        .map(|m| {
            comparisons
                .iter()
                .filter(|c| c.wants_open_loop())
                .any(|c| c.subject == *m || c.baseline == *m)
        })
        .collect()
}

/// The order of `count` members in round `round`: turned by one place per round, so
/// that no member always follows the same one or always runs first.
pub fn round_order(count: usize, round: usize) -> Vec<usize> {
    (0..count).map(|i| (i + round) % count.max(1)).collect()
}

/// The median of `figures` (the lower middle for an even count), and the least and
/// the most of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(figures: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = figures.iter().copied().filter(|f| f.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len().checked_sub(1)? / 2;
        Some(Spread {
            median: sorted[middle],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// One round's loops of one member.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loop {
    pub rps: f64,
    /// Server CPU seconds per 1,000 requests.
    pub cpu_per_1k: f64,
    /// The open loop's p99 in µs, when the member runs one.
    pub p99_us: Option<f64>,
    /// Failed requests, open loop included.
    pub failed: u64,
}

impl Loop {
    /// A closed loop's figures, and the open loop's p99 when one ran.
    pub fn of(closed: &Measured, open: Option<&Measured>) -> Self {
        Loop {
            rps: closed.stats.rps(),
            cpu_per_1k: closed.cpu_per_1k(),
            p99_us: open.map(|m| m.stats.quantile_us(0.99) as f64),
            failed: closed.stats.errors + open.map_or(0, |m| m.stats.errors),
        }
    }
}

/// A comparison over the rounds: the ratios (and p99 difference) of each round, and
/// the verdict on the median round's.
#[derive(Debug, Clone)]
pub struct Judged {
    pub comparison: Comparison,
    pub rps: Vec<f64>,
    pub cpu: Vec<f64>,
    /// The subject's open-loop p99 less the baseline's, in ms, per round.
    pub added_p99_ms: Vec<f64>,
    pub failed: u64,
}

impl Judged {
    /// `comparison` judged on `loops`, each round's loops in `members`' order.
    pub fn new(comparison: Comparison, members: &[Member], loops: &[Vec<Loop>]) -> Option<Judged> {
        let at = |m: Member| members.iter().position(|x| *x == m);
        let (s, b) = (at(comparison.subject)?, at(comparison.baseline)?);
        let pairs = || {
            loops
                .iter()
                .filter_map(|round| Some((round.get(s)?, round.get(b)?)))
        };
        let ratio = |f: fn(&Loop) -> f64| -> Vec<f64> {
            pairs()
                .filter(|(_, bl)| f(bl) > 0.0)
                .map(|(sl, bl)| f(sl) / f(bl))
                .collect()
        };
        Some(Judged {
            comparison,
            rps: ratio(|l| l.rps),
            cpu: ratio(|l| l.cpu_per_1k),
            added_p99_ms: pairs()
                .filter_map(|(sl, bl)| Some((sl.p99_us? - bl.p99_us?) / 1000.0))
                .collect(),
            failed: pairs().map(|(sl, bl)| sl.failed + bl.failed).sum(),
        })
    }

    /// Whether the median round meets every bound the target sets; no verdict
    /// without rounds, nor for a comparison that sets no bound.
    pub fn met(&self) -> Option<bool> {
        let c = &self.comparison;
        if c.min_rps.is_none() && c.max_cpu.is_none() && c.max_added_p99_ms.is_none() {
            return None;
        }
        let median = |figures: &[f64]| Spread::of(figures).map(|s| s.median);
        let rps = match c.min_rps {
            Some(least) => median(&self.rps)? >= least,
            None => true,
        };
        let cpu = match c.max_cpu {
            Some(most) => median(&self.cpu)? <= most,
            None => true,
        };
        let p99 = match c.max_added_p99_ms {
            Some(most) => median(&self.added_p99_ms)? <= most,
            None => true,
        };
        Some(rps && cpu && p99 && self.failed == 0)
    }
}

fn spread_text(figures: &[f64]) -> String {
    Spread::of(figures).map_or("–".into(), |s| {
        format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max)
    })
}

fn ms_spread_text(figures: &[f64]) -> String {
    Spread::of(figures).map_or("–".into(), |s| {
        format!("{:+.3} ms ({:+.3} to {:+.3})", s.median, s.min, s.max)
    })
}

/// A figure and, when the target bounds it, the bound in brackets.
fn bounded(figure: String, bound: Option<String>) -> String {
    match bound {
        Some(b) => format!("{figure} ({b})"),
        None => figure,
    }
}

fn member_name(m: Member) -> String {
    format!("{} / {}", m.scenario, m.target.name())
}

/// The section of `load.md`.
pub fn markdown(judged: &[Judged], rounds: usize, secs: f64) -> String {
    let mut o = String::new();
    if judged.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\n### Side by side\n\nEach comparison's servers run at once; each of {rounds} rounds runs one {secs} s closed loop against every one of them (and, for a latency target or a p99 shown, an open loop at the main table's rate), back to back, the order turned by one place per round. Ratios and p99 differences are taken within a round; the median round's is judged (least and most in brackets, then the bound). Where the list of targets above judges the same target from the main table, whose loops ran minutes apart, this judgement is the one to go by.\n"
    );
    let _ = writeln!(
        o,
        "| target | subject | baseline | req/s | CPU per request | open-loop p99 over the baseline's | failed | verdict |\n|---|---|---|---:|---:|---:|---:|---|"
    );
    for j in judged {
        let c = &j.comparison;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.what,
            member_name(c.subject),
            member_name(c.baseline),
            bounded(spread_text(&j.rps), c.min_rps.map(|m| format!("≥ {m:.2}×"))),
            bounded(spread_text(&j.cpu), c.max_cpu.map(|m| format!("≤ {m:.2}×"))),
            bounded(
                ms_spread_text(&j.added_p99_ms),
                c.max_added_p99_ms.map(|m| format!("≤ {m:+.1} ms"))
            ),
            j.failed,
            match j.met() {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "–",
            }
        );
    }
    o
}

/// The section of `load.json`.
pub fn json(judged: &[Judged]) -> Value {
    Value::Array(
        judged
            .iter()
            .map(|j| {
                let c = &j.comparison;
                json!({
                    "target": c.what,
                    "subject": {"scenario": c.subject.scenario, "target": c.subject.target.name()},
                    "baseline": {"scenario": c.baseline.scenario, "target": c.baseline.target.name()},
                    "min_requests_per_s": c.min_rps,
                    "max_cpu_per_request": c.max_cpu,
                    "max_added_p99_ms": c.max_added_p99_ms,
                    "requests_per_s_by_round": j.rps,
                    "cpu_per_request_by_round": j.cpu,
                    "added_p99_ms_by_round": j.added_p99_ms,
                    "failed": j.failed,
                    "met": j.met(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(rps: f64, cpu: f64) -> Loop {
        Loop {
            rps,
            cpu_per_1k: cpu,
            p99_us: None,
            failed: 0,
        }
    }

    #[test]
    fn every_comparison_names_scenarios_that_exist() {
        for c in COMPARISONS {
            for m in [c.subject, c.baseline] {
                let s = Scenario::named(m.scenario).expect(m.scenario);
                assert!(
                    s.targets().contains(&m.target),
                    "{} does not run {}",
                    m.scenario,
                    m.target.name()
                );
            }
        }
    }

    #[test]
    fn each_member_runs_once_and_comparisons_missing_a_server_are_left_out() {
        let (kept, members) = members_of(&COMPARISONS, |m| m.target != Target::AuroraLimitedRedis);
        assert_eq!(kept.len(), COMPARISONS.len() - 1);
        assert!(members
            .iter()
            .all(|m| m.target != Target::AuroraLimitedRedis));
        for (i, m) in members.iter().enumerate() {
            assert!(!members[i + 1..].contains(m), "{m:?} twice");
        }
        assert_eq!(members.len(), 9);
    }

    #[test]
    fn a_comparison_with_another_build_has_figures_and_no_verdict() {
        let c = COMPARISONS
            .iter()
            .copied()
            .find(|c| c.baseline.target == Target::AuroraBaseline)
            .unwrap();
        let members = [c.baseline, c.subject];
        let loops = vec![vec![l(100.0, 1.0), l(110.0, 0.9)]; 3];
        let judged = Judged::new(c, &members, &loops).unwrap();
        assert_eq!(judged.met(), None);
        assert!((Spread::of(&judged.rps).unwrap().median - 1.1).abs() < 1e-9);
        let text = markdown(&[judged], 3, 3.0);
        assert!(
            text.contains("| 1.10× (1.10–1.10) | 0.90× (0.90–0.90) | – | 0 | – |"),
            "{text}"
        );
    }

    #[test]
    fn open_loops_run_against_the_servers_whose_latency_is_judged_or_shown_only() {
        let (kept, members) = members_of(&COMPARISONS, |_| true);
        let open = open_loop_members(&kept, &members);
        let named: Vec<Target> = members
            .iter()
            .zip(&open)
            .filter(|(_, o)| **o)
            .map(|(m, _)| m.target)
            .collect();
        assert_eq!(
            named,
            [
                Target::Pingora,
                Target::Aurora,
                Target::AuroraLimitedRedis,
                Target::Nginx
            ]
        );
    }

    #[test]
    fn a_shown_p99_has_its_difference_and_no_verdict() {
        let c = COMPARISONS
            .iter()
            .copied()
            .find(|c| c.subject.target == Target::Pingora)
            .unwrap();
        assert_eq!(c.baseline.target, Target::Nginx);
        assert!(c.wants_open_loop());
        let members = [c.baseline, c.subject];
        let with_p99 = |p99_us: f64| Loop {
            p99_us: Some(p99_us),
            ..l(100.0, 1.0)
        };
        let j = Judged::new(c, &members, &[vec![with_p99(400.0), with_p99(450.0)]]).unwrap();
        assert_eq!(j.met(), None);
        assert!(markdown(&[j], 1, 3.0).contains("| +0.050 ms (+0.050 to +0.050) | 0 | – |"));
    }

    #[test]
    fn a_latency_target_is_judged_on_the_p99_difference_of_each_round() {
        let c = COMPARISONS[4];
        assert_eq!(c.subject.target, Target::AuroraLimitedRedis);
        let members = [c.baseline, c.subject];
        let with_p99 = |rps: f64, p99_us: f64| Loop {
            p99_us: Some(p99_us),
            ..l(rps, 1.0)
        };
        // The machine's p99 doubles in the second round; the difference stays small.
        let near = vec![
            vec![with_p99(100.0, 900.0), with_p99(95.0, 1_000.0)],
            vec![with_p99(100.0, 1_800.0), with_p99(95.0, 2_000.0)],
            vec![with_p99(100.0, 1_000.0), with_p99(95.0, 1_150.0)],
        ];
        let j = Judged::new(c, &members, &near).unwrap();
        assert_eq!(j.added_p99_ms.len(), 3);
        assert!((Spread::of(&j.added_p99_ms).unwrap().median - 0.15).abs() < 1e-9);
        assert_eq!(j.met(), Some(true));
        let far = vec![vec![with_p99(100.0, 900.0), with_p99(95.0, 1_300.0)]];
        assert_eq!(Judged::new(c, &members, &far).unwrap().met(), Some(false));
        // Without open loops a latency target has no verdict.
        let closed_only = vec![vec![l(100.0, 1.0), l(95.0, 1.0)]];
        assert_eq!(Judged::new(c, &members, &closed_only).unwrap().met(), None);
        assert!(markdown(&[j], 3, 3.0).contains("+0.150 ms"));
    }

    #[test]
    fn the_order_turns_one_place_per_round_and_runs_each_member_once() {
        assert_eq!(round_order(3, 0), [0, 1, 2]);
        assert_eq!(round_order(3, 1), [1, 2, 0]);
        assert_eq!(round_order(3, 4), [1, 2, 0]);
        for round in 0..5 {
            let mut order = round_order(4, round);
            order.sort();
            assert_eq!(order, [0, 1, 2, 3]);
        }
        assert!(round_order(0, 2).is_empty());
    }

    #[test]
    fn the_spread_is_the_lower_middle_and_the_extremes() {
        let s = Spread::of(&[1.1, 0.9, 1.0, f64::NAN, 0.95]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 0.95,
                min: 0.9,
                max: 1.1
            }
        );
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        let c = COMPARISONS[0];
        let members = [c.subject, c.baseline];
        // The machine slows down by half between rounds; the ratio does not move.
        let loops = vec![
            vec![l(19_000.0, 0.042), l(20_000.0, 0.040)],
            vec![l(9_500.0, 0.084), l(10_000.0, 0.080)],
        ];
        let j = Judged::new(c, &members, &loops).unwrap();
        assert_eq!(j.rps, [0.95, 0.95]);
        assert!(j.cpu.iter().all(|r| (r - 1.05).abs() < 1e-9));
        assert_eq!(j.met(), Some(true));
    }

    #[test]
    fn a_median_round_below_the_target_misses_it() {
        let c = COMPARISONS[3];
        let members = [c.baseline, c.subject];
        let loops = vec![
            vec![l(100.0, 1.0), l(99.0, 1.0)],
            vec![l(100.0, 1.0), l(90.0, 1.0)],
            vec![l(100.0, 1.0), l(95.0, 1.0)],
        ];
        let j = Judged::new(c, &members, &loops).unwrap();
        assert_eq!(j.met(), Some(false));
        assert!(markdown(&[j], 3, 3.0).contains("**missed**"));
    }

    #[test]
    fn a_failed_request_misses_the_target() {
        let c = COMPARISONS[5];
        let members = [c.baseline, c.subject];
        let mut failing = l(100.0, 1.0);
        failing.failed = 1;
        let j = Judged::new(c, &members, &[vec![l(100.0, 1.0), failing]]).unwrap();
        assert_eq!(j.failed, 1);
        assert_eq!(j.met(), Some(false));
    }

    #[test]
    fn a_cpu_bound_is_judged_where_the_target_has_one() {
        let c = COMPARISONS[0];
        let members = [c.baseline, c.subject];
        let j = Judged::new(c, &members, &[vec![l(100.0, 1.0), l(100.0, 1.2)]]).unwrap();
        assert_eq!(j.met(), Some(false));
        let value = json(&[j]);
        assert_eq!(value[0]["met"], false);
        assert_eq!(value[0]["cpu_per_request_by_round"][0], 1.2);
    }
}
