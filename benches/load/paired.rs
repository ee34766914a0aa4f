//! Side by side: the comparisons the targets are judged on, measured in interleaved
//! rounds. Every server of every comparison runs at once (idle but for the one under
//! load), and each round runs one closed loop against each of them, back to back, in
//! an order that turns by one place per round. A ratio is taken within a round, from
//! loops seconds apart, and the median round's ratio is kept: on a shared machine the
//! separate loops of the main table sit minutes apart and drift by a fifth, more than
//! the few per cent some targets are about.
//!
//! Part of `make bench-load`; `make bench-paired` runs it alone.
//! `AURORA_BENCH_PAIRED_ROUNDS` (7) sets the rounds, 0 leaves it out.

use std::fmt::Write;

use serde_json::{json, Value};

use super::scenarios::{Scenario, SCENARIOS};
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
    /// The least the subject's req/s may be, as a share of the baseline's.
    pub min_rps: f64,
    /// The most the subject's CPU per request may be, as a multiple of the
    /// baseline's, when the target bounds it.
    pub max_cpu: Option<f64>,
}

const SMALL: &str = "passthrough_small_json";
const TRANSLATED: &str = "chat_to_anthropic_json";

const fn member(scenario: &'static str, target: Target) -> Member {
    Member { scenario, target }
}

/// The targets of the README's Targets table that a closed loop decides.
pub const COMPARISONS: [Comparison; 6] = [
    Comparison {
        what: "passthrough, 1 thread, against bare Pingora",
        subject: member(SMALL, Target::Aurora),
        baseline: member(SMALL, Target::Pingora),
        min_rps: 0.95,
        max_cpu: Some(1.05),
    },
    Comparison {
        what: "passthrough, 2 threads, against bare Pingora",
        subject: member(SMALL, Target::AuroraTwoThreads),
        baseline: member(SMALL, Target::PingoraTwoThreads),
        min_rps: 0.95,
        max_cpu: Some(1.05),
    },
    Comparison {
        what: "passthrough, 2 threads against 1",
        subject: member(SMALL, Target::AuroraTwoThreads),
        baseline: member(SMALL, Target::Aurora),
        min_rps: 1.0,
        max_cpu: None,
    },
    Comparison {
        what: "a key with limits, memory store",
        subject: member(SMALL, Target::AuroraLimited),
        baseline: member(SMALL, Target::Aurora),
        min_rps: 0.97,
        max_cpu: None,
    },
    Comparison {
        what: "a key with limits, Redis store",
        subject: member(SMALL, Target::AuroraLimitedRedis),
        baseline: member(SMALL, Target::Aurora),
        min_rps: 0.90,
        max_cpu: None,
    },
    Comparison {
        what: "translated Chat JSON against passthrough",
        subject: member(TRANSLATED, Target::Aurora),
        baseline: member(SMALL, Target::Aurora),
        min_rps: 0.85,
        max_cpu: None,
    },
];

/// The scenario named `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
}

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

/// One round's loop of one member.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loop {
    pub rps: f64,
    /// Server CPU seconds per 1,000 requests.
    pub cpu_per_1k: f64,
    pub failed: u64,
}

impl From<&Measured> for Loop {
    fn from(m: &Measured) -> Self {
        Loop {
            rps: m.stats.rps(),
            cpu_per_1k: m.cpu_per_1k(),
            failed: m.stats.errors,
        }
    }
}

/// A comparison over the rounds: the ratio of each round, and the verdict on the
/// median round's.
#[derive(Debug, Clone)]
pub struct Judged {
    pub comparison: Comparison,
    pub rps: Vec<f64>,
    pub cpu: Vec<f64>,
    pub failed: u64,
}

impl Judged {
    /// `comparison` judged on `loops`, each round's loops in `members`' order.
    pub fn new(comparison: Comparison, members: &[Member], loops: &[Vec<Loop>]) -> Option<Judged> {
        let at = |m: Member| members.iter().position(|x| *x == m);
        let (s, b) = (at(comparison.subject)?, at(comparison.baseline)?);
        let per_round = |f: fn(&Loop) -> f64| -> Vec<f64> {
            loops
                .iter()
                .filter_map(|round| {
                    let (sv, bv) = (f(round.get(s)?), f(round.get(b)?));
                    (bv > 0.0).then(|| sv / bv)
                })
                .collect()
        };
        Some(Judged {
            comparison,
            rps: per_round(|l| l.rps),
            cpu: per_round(|l| l.cpu_per_1k),
            failed: loops
                .iter()
                .filter_map(|r| Some(r.get(s)?.failed + r.get(b)?.failed))
                .sum(),
        })
    }

    /// Whether the median round meets the target (req/s, and CPU where bounded); no
    /// verdict without rounds.
    pub fn met(&self) -> Option<bool> {
        let rps = Spread::of(&self.rps)?.median >= self.comparison.min_rps;
        let cpu = match self.comparison.max_cpu {
            Some(most) => Spread::of(&self.cpu)?.median <= most,
            None => true,
        };
        Some(rps && cpu && self.failed == 0)
    }
}

fn spread_text(figures: &[f64]) -> String {
    Spread::of(figures).map_or("–".into(), |s| {
        format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max)
    })
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
        "\n### Side by side\n\nEach comparison's servers run at once; each of {rounds} rounds runs one {secs} s closed loop against every one of them, back to back, the order turned by one place per round. Ratios are taken within a round; the median round's is judged (least–most in brackets). Where the list of targets above judges the same target from the main table, whose loops ran minutes apart, this judgement is the one to go by.\n"
    );
    let _ = writeln!(
        o,
        "| target | subject | baseline | req/s (≥) | CPU per request (≤) | failed | verdict |\n|---|---|---|---:|---:|---:|---|"
    );
    for j in judged {
        let c = &j.comparison;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} ({:.2}×) | {}{} | {} | {} |",
            c.what,
            member_name(c.subject),
            member_name(c.baseline),
            spread_text(&j.rps),
            c.min_rps,
            spread_text(&j.cpu),
            c.max_cpu.map_or(String::new(), |m| format!(" ({m:.2}×)")),
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
                    "requests_per_s_by_round": j.rps,
                    "cpu_per_request_by_round": j.cpu,
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
            failed: 0,
        }
    }

    #[test]
    fn every_comparison_names_scenarios_that_exist() {
        for c in COMPARISONS {
            for m in [c.subject, c.baseline] {
                let s = scenario(m.scenario).expect(m.scenario);
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
        assert_eq!(members.len(), 6);
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
