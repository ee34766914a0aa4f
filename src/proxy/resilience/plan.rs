//! The attempts of one request: which instance of the requested model goes first (by
//! weight, skipping those cooling down), then, after each failure, whether to wait and
//! try again, move to another instance or key, fall back to the next model, or give up.
//! Pure but for the health book it reads and writes.

use std::time::{Duration, Instant};

use rand::Rng;

use super::failure::{backoff, AttemptFailure};
use super::health::{Admission, HealthBook, HealthKey, Transition};
use crate::config::Config;
use crate::providers::KeyId;
use crate::proxy::model_route::ModelRoute;

/// A model the request may be sent to.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The instance and the model name it gets.
    pub route: ModelRoute,
    /// The model as the client or `models.fallbacks` names it.
    pub requested: String,
    /// Not the model the client asked for, but one of its fallbacks.
    pub fallback: bool,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Wait, then try again (see [`AttemptPlan::current`] for where).
    Retry {
        /// How long to wait first.
        wait: Duration,
    },
    /// The failure goes to the client.
    GiveUp,
}

/// One attempt, for the access log and `X-Aurora-Attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The instance tried.
    pub provider: String,
    /// The model it was asked for.
    pub model: String,
    /// Its status, or how it failed (`connect`, `timeout`, `error`).
    pub outcome: String,
    /// From its start to its outcome.
    pub took: Duration,
}

/// The attempts of one request.
#[derive(Debug)]
pub struct AttemptPlan {
    /// The requested model's instances (best first), then its fallbacks in order.
    candidates: Vec<Candidate>,
    /// How many of `candidates` serve the requested model itself.
    pool: usize,
    /// The candidate tried now.
    at: usize,
    /// Retries spent on the current model (a pool counts as one model).
    retries: u32,
    /// Attempts moved to another key after a key failure, on the current model.
    key_turns: u32,
    /// The attempts so far.
    records: Vec<AttemptRecord>,
    /// When the current attempt began.
    began: Option<Instant>,
    /// The candidates the gateway refused the call before sending it (their
    /// provider's quota, or work the caller may not have done there; bit `i`: the
    /// `i`th of the first 64): never tried again by this request.
    passed_over: u64,
    /// The instance whose half-open probe this request holds, until an attempt there
    /// tells whether it is back; given back otherwise ([`Self::release_probe`]), or no
    /// other request would ever probe it again.
    probe: Option<String>,
}

impl AttemptPlan {
    /// A plan for the requested model's `pool` (every instance serving it, in
    /// configuration order) followed by `fallbacks`. The instance tried first is drawn
    /// by weight among those not cooling down; when all are, the one that failed
    /// longest ago goes first.
    pub fn new(
        pool: Vec<Candidate>,
        fallbacks: Vec<Candidate>,
        book: &HealthBook,
        now: Instant,
    ) -> Self {
        let pool = order_pool(pool, book, now, &mut rand::rng());
        let size = pool.len();
        let mut candidates = pool;
        candidates.extend(fallbacks);
        Self {
            candidates,
            pool: size,
            at: 0,
            retries: 0,
            key_turns: 0,
            records: Vec::new(),
            began: None,
            passed_over: 0,
            probe: None,
        }
    }

    /// Takes candidate `i`'s instance for the next attempt if it may be tried now,
    /// holding its probe when that is what it takes.
    fn take_instance(&mut self, i: usize, book: &HealthBook, now: Instant) -> bool {
        let name = self.candidates[i].route.provider.name.clone();
        match book.admit(&HealthKey::instance(&name), now) {
            Admission::Closed => false,
            Admission::Open => true,
            Admission::Probe => {
                self.release_probe(book);
                self.probe = Some(name);
                true
            }
        }
    }

    /// Gives back a probe this request holds and no attempt answered for: the next
    /// request may probe that instance.
    pub fn release_probe(&mut self, book: &HealthBook) {
        if let Some(name) = self.probe.take() {
            book.not_tried(&HealthKey::instance(&name));
        }
    }

    /// The probe of the current attempt's instance, if this request holds it, is
    /// settled by the attempt's outcome.
    fn probe_settled(&mut self) {
        let name = &self.current().route.provider.name;
        if self.probe.as_ref() == Some(name) {
            self.probe = None;
        }
    }

    /// Whether the gateway refused this call at candidate `i` before sending it.
    fn is_passed_over(&self, i: usize) -> bool {
        i < 64 && self.passed_over & (1 << i) != 0
    }

    /// The first candidate from `i` on that the gateway has not refused the call at.
    fn first_not_passed_over_from(&self, mut i: usize) -> usize {
        while i < self.candidates.len() && self.is_passed_over(i) {
            i += 1;
        }
        i
    }

    /// The candidate the next attempt goes to.
    pub fn current(&self) -> &Candidate {
        // `new` is always given the routed model, so the list is never empty; the
        // cursor only moves to existing entries.
        &self.candidates[self.at.min(self.candidates.len().saturating_sub(1))]
    }

    /// Where in the list of candidates the plan stands (changes when it moves on).
    pub fn position(&self) -> usize {
        self.at
    }

    /// Whether a failure could ever lead to another attempt: more than one candidate,
    /// retries configured for the first, or several keys to turn to. A plan that
    /// cannot is not worth carrying.
    pub fn can_retry(&self, config: &Config) -> bool {
        let provider = &self.current().route.provider;
        self.candidates.len() > 1
            || config.retry_for(provider).attempts > 0
            || provider.credential.static_key_count() > 1
    }

    /// Whether the current candidate is a fallback.
    pub fn on_fallback(&self) -> bool {
        self.at >= self.pool
    }

    /// The attempts so far.
    pub fn records(&self) -> &[AttemptRecord] {
        &self.records
    }

    /// Whether the latest attempt failed to connect: nothing of it reached its
    /// provider.
    pub fn last_never_connected(&self) -> bool {
        self.records
            .last()
            .is_some_and(|r| r.outcome == AttemptFailure::Connect.label())
    }

    /// An attempt at the current candidate begins.
    pub fn attempt_began(&mut self, now: Instant) {
        self.began = Some(now);
    }

    fn record(&mut self, outcome: String, now: Instant) {
        let candidate = self.current();
        let record = AttemptRecord {
            provider: candidate.route.provider.name.clone(),
            model: candidate.route.model.clone(),
            outcome,
            took: self
                .began
                .take()
                .map_or(Duration::ZERO, |b| now.saturating_duration_since(b)),
        };
        self.records.push(record);
    }

    /// Nothing is sent to the current candidate after all (its quota refused the
    /// call, or the limit store failed): a probe of its instance this request took
    /// choosing it is given up, or the instance would count as probed for good.
    pub fn not_sent(&mut self, book: &HealthBook) {
        self.release_probe(book);
    }

    /// The current candidate's provider refused the call by its own quota
    /// (`providers.<name>.limits`), before it was sent: recorded as `quota`, and the
    /// plan moves to the next candidate (the pool's next instance, then the
    /// fallbacks), if there is one.
    pub fn refused_by_quota(&mut self, book: &HealthBook, now: Instant) -> bool {
        self.refused_before_sending("quota", book, now)
    }

    /// The gateway refused the current candidate before anything was sent to it (its
    /// provider's quota, or what the caller may not have done at the gateway's
    /// expense), for the reason `outcome` records: never tried again by this request,
    /// the plan moves to the next candidate (the pool's next instance, then the
    /// fallbacks), if there is one.
    pub fn refused_before_sending(
        &mut self,
        outcome: &str,
        book: &HealthBook,
        now: Instant,
    ) -> bool {
        self.not_sent(book);
        self.record(outcome.to_string(), now);
        if self.at < 64 {
            self.passed_over |= 1 << self.at;
        }
        if self.at < self.pool {
            // Another instance of the pool, as a retry would pick it; the pool's
            // retries go on counting (it is one model).
            for step in 1..self.pool {
                let i = (self.at + step) % self.pool;
                if !self.is_passed_over(i) && self.take_instance(i, book, now) {
                    self.at = i;
                    return true;
                }
            }
        }
        let next = self.first_not_passed_over_from(self.pool.max(self.at + 1));
        if next >= self.candidates.len() {
            return false;
        }
        self.at = next;
        self.retries = 0;
        self.key_turns = 0;
        true
    }

    /// The current attempt got an answer the client takes (`status`): its instance and
    /// key are healthy.
    pub fn answered(
        &mut self,
        status: u16,
        key: Option<KeyId>,
        book: &HealthBook,
        now: Instant,
    ) -> Vec<(String, Transition)> {
        self.record(status.to_string(), now);
        self.probe_settled();
        let name = self.current().route.provider.name.clone();
        let mut changes = vec![(name.clone(), book.succeeded(&HealthKey::instance(&name)))];
        if let Some(key) = key {
            book.succeeded(&HealthKey::key(&name, key));
        }
        changes.retain(|(_, t)| *t != Transition::None);
        changes
    }

    /// The current attempt failed with `failure` (with the key `key` of the
    /// instance, when it used one of several): what happens next, and any change in an
    /// instance's availability.
    pub fn failed(
        &mut self,
        failure: AttemptFailure,
        key: Option<KeyId>,
        config: &Config,
        book: &HealthBook,
        now: Instant,
    ) -> (NextAttempt, Option<(String, Transition)>) {
        self.record(failure.label(), now);
        let provider = std::sync::Arc::clone(&self.current().route.provider);
        let policy = config.retry_for(&provider);
        let keys = provider.credential.static_key_count();
        // Only a failure worth retrying elsewhere says the instance is unwell (and
        // ends a probe as a failure); any other outcome says nothing of its health, and
        // a probe this attempt held is given back.
        let unwell = failure.is_retried_by(&policy.on) && !(failure.is_key_failure() && keys > 1);
        if unwell {
            self.probe_settled();
        } else {
            self.release_probe(book);
        }
        if let AttemptFailure::ContextOverflow { .. } = failure {
            return (self.past_context_overflow(config), None);
        }
        let mut change = None;
        // A key refused (401) or out of quota (429) among several: cool that key
        // down and go on at once with another, without counting against the instance.
        if let (true, Some(key)) = (failure.is_key_failure() && keys > 1, key) {
            let cooldown = failure.retry_after().unwrap_or(config.health.cooldown);
            book.cool_down(&HealthKey::key(&provider.name, key), cooldown, now);
            if self.key_turns + 1 < keys as u32 {
                self.key_turns += 1;
                return (
                    NextAttempt::Retry {
                        wait: Duration::ZERO,
                    },
                    None,
                );
            }
        } else if failure.is_retried_by(&policy.on) {
            let transition = book.failed(&HealthKey::instance(&provider.name), &config.health, now);
            if transition != Transition::None {
                change = Some((provider.name.clone(), transition));
            }
        }
        if !failure.is_retried_by(&policy.on) {
            return (NextAttempt::GiveUp, change);
        }
        // A provider asking for a longer pause than configured: no more tries here.
        let too_long = failure
            .retry_after()
            .is_some_and(|after| after > policy.max_retry_after);
        if !too_long && self.retries < policy.attempts {
            self.retries += 1;
            let wait = failure
                .retry_after()
                .unwrap_or_else(|| backoff(policy, self.retries, rand::rng().random::<f64>()));
            self.next_in_pool(book, now);
            return (NextAttempt::Retry { wait }, change);
        }
        let next = self.first_not_passed_over_from(if self.at < self.pool {
            self.pool
        } else {
            self.at + 1
        });
        if next < self.candidates.len() {
            self.at = next;
            self.retries = 0;
            self.key_turns = 0;
            return (
                NextAttempt::Retry {
                    wait: Duration::ZERO,
                },
                change,
            );
        }
        (NextAttempt::GiveUp, change)
    }

    /// The prompt is too long for the current model: the next fallback (past the
    /// rest of the pool, which serves the same model) when the requested model's
    /// fallbacks cover a context overflow.
    fn past_context_overflow(&mut self, config: &Config) -> NextAttempt {
        let requested = &self.candidates[0].requested;
        let next = self.pool.max(self.at + 1);
        if !config.models.fallbacks.covers_context_overflow(requested)
            || next >= self.candidates.len()
        {
            return NextAttempt::GiveUp;
        }
        self.at = next;
        self.retries = 0;
        self.key_turns = 0;
        NextAttempt::Retry {
            wait: Duration::ZERO,
        }
    }

    /// A retry within the requested model's pool goes to the next instance that is
    /// not cooling down (the same one when there is no other).
    fn next_in_pool(&mut self, book: &HealthBook, now: Instant) {
        if self.at >= self.pool || self.pool < 2 {
            return;
        }
        for step in 1..self.pool {
            let i = (self.at + step) % self.pool;
            if !self.is_passed_over(i) && self.take_instance(i, book, now) {
                self.at = i;
                return;
            }
        }
    }
}

/// The pool with the instance to try first at its head: drawn by weight among those
/// that may be tried now; when none may, the one whose last failure is oldest.
fn order_pool(
    mut pool: Vec<Candidate>,
    book: &HealthBook,
    now: Instant,
    rng: &mut impl Rng,
) -> Vec<Candidate> {
    if pool.len() < 2 {
        return pool;
    }
    let open: Vec<usize> = (0..pool.len())
        .filter(|&i| !book.is_cooling(&HealthKey::instance(&pool[i].route.provider.name), now))
        .collect();
    let first = if open.is_empty() {
        (0..pool.len())
            .min_by_key(|&i| book.last_failure(&HealthKey::instance(&pool[i].route.provider.name)))
    } else {
        let total: u64 = open
            .iter()
            .map(|&i| u64::from(pool[i].route.provider.weight))
            .sum();
        if total == 0 {
            open.first().copied()
        } else {
            let mut draw = rng.random_range(0..total);
            open.iter().copied().find(|&i| {
                let weight = u64::from(pool[i].route.provider.weight);
                if draw < weight {
                    true
                } else {
                    draw -= weight;
                    false
                }
            })
        }
    };
    if let Some(first) = first {
        let chosen = pool.remove(first);
        pool.insert(0, chosen);
    }
    pool
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{build_config, EnvSnapshot};

    fn config(yaml: &str) -> Config {
        build_config(Some(yaml), None, &EnvSnapshot::loopback()).unwrap()
    }

    fn candidate(config: &Config, provider: &str, model: &str, fallback: bool) -> Candidate {
        Candidate {
            route: ModelRoute {
                provider: Arc::clone(config.providers.configured_named(provider).unwrap()),
                model: model.into(),
            },
            requested: model.into(),
            fallback,
        }
    }

    const YAML: &str = "retry:\n  attempts: 2\n  backoff: 100ms\n  max_retry_after: 10s\nproviders:\n  east: {type: openai, api_key: k, weight: 1}\n  west: {type: openai, api_key: k, weight: 3}\n  anthropic: {api_key: k}\n  multi: {type: openai, api_keys: [k1, k2]}\n";

    fn status(code: u16, retry_after: Option<u64>) -> AttemptFailure {
        AttemptFailure::Status {
            code,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn retries_wait_then_fall_back_then_give_up() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![candidate(&c, "east", "gpt-4o", false)],
            vec![candidate(&c, "anthropic", "claude-sonnet-4-5", true)],
            &book,
            now,
        );
        for _ in 0..2 {
            let (next, _) = plan.failed(status(503, None), None, &c, &book, now);
            assert!(
                matches!(next, NextAttempt::Retry { wait } if wait <= Duration::from_millis(200)),
                "{next:?}"
            );
            assert_eq!(plan.current().route.provider.name, "east");
        }
        let (next, _) = plan.failed(status(503, None), None, &c, &book, now);
        assert_eq!(
            next,
            NextAttempt::Retry {
                wait: Duration::ZERO
            }
        );
        assert!(plan.on_fallback());
        assert_eq!(plan.current().route.provider.name, "anthropic");
        plan.failed(status(503, None), None, &c, &book, now);
        plan.failed(status(503, None), None, &c, &book, now);
        let (next, _) = plan.failed(status(503, None), None, &c, &book, now);
        assert_eq!(next, NextAttempt::GiveUp);
        assert_eq!(plan.records().len(), 6);
        assert_eq!(plan.records()[0].outcome, "503");
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_limit_and_a_longer_one_answers_at_once() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![candidate(&c, "east", "gpt-4o", false)],
            Vec::new(),
            &book,
            now,
        );
        let (next, _) = plan.failed(status(429, Some(1)), None, &c, &book, now);
        assert_eq!(
            next,
            NextAttempt::Retry {
                wait: Duration::from_secs(1)
            }
        );
        let (next, _) = plan.failed(status(429, Some(3600)), None, &c, &book, now);
        assert_eq!(next, NextAttempt::GiveUp);
    }

    #[test]
    fn a_candidate_out_of_quota_is_passed_over_and_recorded() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![candidate(&c, "east", "gpt-4o", false)],
            vec![candidate(&c, "anthropic", "claude-sonnet-4-5", true)],
            &book,
            now,
        );
        assert!(plan.refused_by_quota(&book, now));
        assert_eq!(plan.current().route.provider.name, "anthropic");
        assert!(!plan.refused_by_quota(&book, now), "no candidate left");
        let outcomes: Vec<_> = plan.records().iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["quota", "quota"]);
    }

    #[test]
    fn a_pool_instance_out_of_quota_is_not_tried_again_and_the_pools_retries_go_on() {
        // Pool [first, other]: the first is out of quota, the other fails again and
        // again. The retries must not go back to the first (to be refused, and start
        // the count over): they stay on the other, and end when they are spent.
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![
                candidate(&c, "east", "gpt-4o", false),
                candidate(&c, "west", "gpt-4o", false),
            ],
            vec![candidate(&c, "anthropic", "claude-sonnet-4-5", true)],
            &book,
            now,
        );
        let refused = plan.current().route.provider.name.clone();
        assert!(plan.refused_by_quota(&book, now));
        let other = plan.current().route.provider.name.clone();
        assert_ne!(other, refused);
        let mut tried = Vec::new();
        loop {
            let (next, _) = plan.failed(status(500, None), None, &c, &book, now);
            if next == NextAttempt::GiveUp {
                break;
            }
            tried.push(plan.current().route.provider.name.clone());
            assert!(tried.len() < 10, "no end: {tried:?}");
        }
        assert!(!tried.contains(&refused), "{tried:?}");
        // The pool's two retries, then its fallback, whose own two.
        assert_eq!(
            tried.iter().filter(|t| **t == other).count(),
            2,
            "{tried:?}"
        );
        assert_eq!(tried.last().map(String::as_str), Some("anthropic"));
    }

    #[test]
    fn an_instance_probed_then_refused_by_its_quota_may_be_probed_again() {
        // `east` cools down; once its cooldown is over, a request moving to it takes
        // its probe. Its quota refuses the call too: nothing is sent, and the probe
        // must be given up, or `east` counts as probed (cooling) for good.
        let c = config(YAML);
        let book = HealthBook::default();
        let t0 = Instant::now();
        book.cool_down(&HealthKey::instance("east"), Duration::from_secs(1), t0);
        let mut plan = AttemptPlan::new(
            vec![
                candidate(&c, "east", "gpt-4o", false),
                candidate(&c, "west", "gpt-4o", false),
            ],
            vec![candidate(&c, "anthropic", "claude-sonnet-4-5", true)],
            &book,
            t0,
        );
        assert_eq!(
            plan.current().route.provider.name,
            "west",
            "east cools down"
        );
        let later = t0 + Duration::from_secs(2);
        assert!(plan.refused_by_quota(&book, later));
        assert_eq!(plan.current().route.provider.name, "east");
        assert!(
            book.is_cooling(&HealthKey::instance("east"), later),
            "being probed"
        );
        assert!(plan.refused_by_quota(&book, later));
        assert_eq!(plan.current().route.provider.name, "anthropic");
        assert!(!book.is_cooling(&HealthKey::instance("east"), later));
    }

    #[test]
    fn a_probe_answered_with_an_unretried_status_or_abandoned_frees_the_instance() {
        let c = config(YAML);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(2);
        let east = HealthKey::instance("east");
        let probing_east = |book: &HealthBook| {
            let mut plan = AttemptPlan::new(
                vec![
                    candidate(&c, "east", "gpt-4o", false),
                    candidate(&c, "west", "gpt-4o", false),
                ],
                Vec::new(),
                book,
                t0,
            );
            assert_eq!(plan.current().route.provider.name, "west");
            // West fails: the retry takes east's probe, its cooldown being over.
            let (next, _) = plan.failed(status(503, None), None, &c, book, later);
            assert!(matches!(next, NextAttempt::Retry { .. }));
            assert_eq!(plan.current().route.provider.name, "east");
            assert!(book.is_cooling(&east, later), "being probed");
            plan
        };
        for outcome in [status(400, None), AttemptFailure::Other] {
            let book = HealthBook::default();
            book.cool_down(&east, Duration::from_secs(1), t0);
            let mut plan = probing_east(&book);
            plan.failed(outcome, None, &c, &book, later);
            assert!(
                !book.is_cooling(&east, later),
                "{outcome:?}: the probe is given back"
            );
        }
        // The client leaves before east answers: the request's end gives it back.
        let book = HealthBook::default();
        book.cool_down(&east, Duration::from_secs(1), t0);
        let mut plan = probing_east(&book);
        plan.release_probe(&book);
        assert!(!book.is_cooling(&east, later));
        // A failure worth retrying ends the probe as a failure: east cools again.
        let book = HealthBook::default();
        book.cool_down(&east, Duration::from_secs(1), t0);
        let mut plan = probing_east(&book);
        plan.failed(status(503, None), None, &c, &book, later);
        plan.release_probe(&book);
        assert!(book.is_cooling(&east, later));
    }

    #[test]
    fn what_the_policy_does_not_list_is_given_up_at_once() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![candidate(&c, "east", "gpt-4o", false)],
            vec![candidate(&c, "anthropic", "claude", true)],
            &book,
            now,
        );
        let (next, _) = plan.failed(status(400, None), None, &c, &book, now);
        assert_eq!(
            next,
            NextAttempt::GiveUp,
            "a bad request is not a provider failure"
        );
        let (next, _) = plan.failed(AttemptFailure::Other, None, &c, &book, now);
        assert_eq!(next, NextAttempt::GiveUp);
    }

    #[test]
    fn a_refused_key_among_several_moves_to_the_next_key_at_once() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![candidate(&c, "multi", "gpt-4o", false)],
            Vec::new(),
            &book,
            now,
        );
        let first = match &c.providers.find("multi").unwrap().credential {
            crate::providers::ProviderCredential::Static(ring) => ring.id(0),
            _ => panic!("multi holds keys"),
        };
        let (next, change) = plan.failed(status(429, None), Some(first), &c, &book, now);
        assert_eq!(
            next,
            NextAttempt::Retry {
                wait: Duration::ZERO
            }
        );
        assert_eq!(change, None, "the instance is not blamed for its key");
        assert!(book.is_cooling(&HealthKey::key("multi", first), now));
        assert!(!book.is_cooling(&HealthKey::instance("multi"), now));
    }

    #[test]
    fn a_keys_cooldown_follows_the_key_across_a_reload_not_its_place() {
        let with_keys = |keys: &str| {
            config(&format!(
                "providers:\n  multi: {{type: openai, api_keys: [{keys}]}}\n"
            ))
        };
        let book = HealthBook::default();
        let now = Instant::now();
        let before = with_keys("k1, k2, k3");
        let mut plan = AttemptPlan::new(
            vec![candidate(&before, "multi", "gpt-4o", false)],
            Vec::new(),
            &book,
            now,
        );
        let k1 = KeyId::of(&crate::providers::Secret::new("k1"));
        plan.failed(status(429, Some(3600)), Some(k1), &before, &book, now);
        let sent = |c: &Config| -> Vec<String> {
            let provider = c.providers.find("multi").unwrap();
            (0..6)
                .map(|_| {
                    let cred = crate::proxy::attempts::credential(
                        provider,
                        &http::HeaderMap::new(),
                        c,
                        &book,
                    )
                    .unwrap();
                    cred.key.unwrap().expose().to_string()
                })
                .collect()
        };
        // k1 replaced by k4 in its place: k4 is used, in turn with the others.
        let replaced = sent(&with_keys("k4, k2, k3"));
        assert!(replaced.iter().any(|k| k == "k4"), "{replaced:?}");
        // k1 moved: still passed over wherever it stands.
        let moved = sent(&with_keys("k2, k3, k1"));
        assert!(moved.iter().all(|k| k != "k1"), "{moved:?}");
    }

    #[test]
    fn a_context_overflow_falls_back_only_where_configured() {
        let yaml = format!("{YAML}models:\n  fallbacks_on_context_overflow: [gpt-4o]\n");
        let c = config(&yaml);
        let book = HealthBook::default();
        let now = Instant::now();
        let overflow = AttemptFailure::ContextOverflow { code: 400 };
        let plan_for = |requested: &str| {
            let mut first = candidate(&c, "east", requested, false);
            first.requested = requested.into();
            AttemptPlan::new(
                vec![first],
                vec![candidate(&c, "anthropic", "claude", true)],
                &book,
                now,
            )
        };
        let mut covered = plan_for("gpt-4o");
        let (next, _) = covered.failed(overflow, None, &c, &book, now);
        assert_eq!(
            next,
            NextAttempt::Retry {
                wait: Duration::ZERO
            }
        );
        assert!(covered.on_fallback());
        let mut not_covered = plan_for("gpt-4o-mini");
        let (next, _) = not_covered.failed(overflow, None, &c, &book, now);
        assert_eq!(next, NextAttempt::GiveUp);
    }

    #[test]
    fn a_pool_is_shared_by_weight_and_skips_instances_cooling_down() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let pool = || {
            vec![
                candidate(&c, "east", "gpt-4o", false),
                candidate(&c, "west", "gpt-4o", false),
            ]
        };
        let mut rng = rand::rng();
        let west = (0..4000)
            .filter(|_| {
                order_pool(pool(), &book, now, &mut rng)[0]
                    .route
                    .provider
                    .name
                    == "west"
            })
            .count();
        assert!((2700..3300).contains(&west), "west first {west} of 4000");

        let c2 = config(YAML);
        for _ in 0..3 {
            book.failed(&HealthKey::instance("west"), &c2.health, now);
        }
        for _ in 0..100 {
            let plan = AttemptPlan::new(pool(), Vec::new(), &book, now);
            assert_eq!(plan.current().route.provider.name, "east");
        }
        // Every instance cooling: the one that failed longest ago is tried.
        let later = now + Duration::from_millis(50);
        for _ in 0..3 {
            book.failed(&HealthKey::instance("east"), &c2.health, later);
        }
        let plan = AttemptPlan::new(pool(), Vec::new(), &book, later);
        assert_eq!(plan.current().route.provider.name, "west");
    }

    #[test]
    fn a_retry_in_a_pool_goes_to_another_instance() {
        let c = config(YAML);
        let book = HealthBook::default();
        let now = Instant::now();
        let mut plan = AttemptPlan::new(
            vec![
                candidate(&c, "east", "gpt-4o", false),
                candidate(&c, "west", "gpt-4o", false),
            ],
            Vec::new(),
            &book,
            now,
        );
        let first = plan.current().route.provider.name.clone();
        plan.failed(AttemptFailure::Connect, None, &c, &book, now);
        assert_ne!(plan.current().route.provider.name, first);
    }
}
