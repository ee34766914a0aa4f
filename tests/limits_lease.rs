//! Leases and gathered writes of the Redis store, with two stores on one real Redis
//! standing for two replicas: the bounds the README states (Limits and budgets) hold.
//! Requests per minute are never exceeded and the only shortfall is what other
//! replicas hold unused; a budget is overshot by at most one lease per other replica,
//! and by none once little of it is left; a busy key rarely asks Redis; charges and
//! usage are summed and sent later, a slot's charges with its release.

mod common;

use std::time::{Duration, Instant};

use aurora::config::{Budget, BudgetPeriod, KeyLimits};
use aurora::limits::{LimitStore, RedisStore, Refusal, UsageRecord, LEASE_MAX};
use common::redis::{RedisServer, Relay};

/// 2026-12-04T02:30:15Z: 45 s left in its minute, so its window keys outlive the test.
const NOW: u64 = 1_796_351_415;
const SUBJECT: &str = "key:team-lease-0123456789abcdef0123456789";

fn stores(redis: &RedisServer) -> [RedisStore; 2] {
    [
        RedisStore::new(&redis.url()).unwrap(),
        RedisStore::new(&redis.url()).unwrap(),
    ]
}

fn per_minute(n: u64) -> KeyLimits {
    KeyLimits {
        requests_per_minute: Some(n),
        ..KeyLimits::default()
    }
}

fn token_budget(tokens: u64) -> KeyLimits {
    KeyLimits {
        budget: Some(Budget {
            usd: None,
            tokens: Some(tokens),
            period: BudgetPeriod::Day,
        }),
        ..KeyLimits::default()
    }
}

async fn admitted(store: &RedisStore, limits: &KeyLimits) -> bool {
    store
        .admit(SUBJECT, limits, NOW)
        .await
        .unwrap()
        .refused
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_several_round_trips_away_is_connected_to_all_the_same() {
    // Each call is answered within its 500 ms (a round trip of 200 ms), but making the
    // connection (a slow handshake, then the client's setup commands) takes longer.
    let redis = RedisServer::start();
    let far = Relay::start_far(
        redis.port,
        Duration::from_millis(100),
        Duration::from_millis(600),
    )
    .await;
    let store = RedisStore::new(&far.url()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut failures = Vec::new();
    loop {
        match store.admit(SUBJECT, &per_minute(100), NOW).await {
            Ok(admission) => {
                assert!(admission.refused.is_none());
                break;
            }
            Err(e) => failures.push(e.to_string()),
        }
        assert!(Instant::now() < deadline, "never connected: {failures:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_is_served_from_leases_and_never_past_its_minute() {
    let redis = RedisServer::start();
    let replicas = stores(&redis);
    let limits = per_minute(3000);
    let mut served = 0;
    let mut refused_in_a_row = 0;
    for i in 0.. {
        if admitted(&replicas[i % 2], &limits).await {
            served += 1;
            refused_in_a_row = 0;
        } else {
            refused_in_a_row += 1;
            if refused_in_a_row == 2 {
                break;
            }
        }
    }
    assert_eq!(served, 3000, "every unit leased is served, none more");
    let asked = redis.calls("evalsha");
    assert!(
        asked <= 3000 / 10,
        "Redis was asked {asked} times for 3000 calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_falls_short_only_by_what_another_replica_holds_unused() {
    let redis = RedisServer::start();
    let [one, two] = stores(&redis);
    let limits = per_minute(3000);
    assert!(
        admitted(&one, &limits).await,
        "one takes a lease and goes quiet"
    );
    let mut served_by_two = 0;
    while admitted(&two, &limits).await {
        served_by_two += 1;
    }
    let short = 3000 - 1 - served_by_two;
    assert!(
        short < LEASE_MAX,
        "{short} units were out of reach, more than one lease"
    );
    let mut served_by_one = 1;
    while admitted(&one, &limits).await {
        served_by_one += 1;
    }
    assert_eq!(served_by_one + served_by_two, 3000, "and they were one's");
}

/// Admits and charges `tokens` at `store` (its charges sent at once, so the figure
/// is about leases alone) until it is refused; how many were admitted.
async fn spend(store: &RedisStore, limits: &KeyLimits, tokens: u64, at_most: u64) -> u64 {
    let mut n = 0;
    while n < at_most && admitted(store, limits).await {
        store.charge(SUBJECT, limits, tokens, 0.0, NOW).unwrap();
        store.flush().await.unwrap();
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_overshot_by_at_most_one_lease_per_other_replica() {
    let redis = RedisServer::start();
    let [one, two] = stores(&redis);
    // 100 calls of 1,000 tokens; two takes a lease while the budget is whole.
    let limits = token_budget(100_000);
    assert_eq!(spend(&two, &limits, 1000, 1).await, 1);
    let by_one = spend(&one, &limits, 1000, u64::MAX).await;
    assert_eq!(by_one, 99, "one counts two's charge and its own exactly");
    // Past the budget, two goes on from its lease until it asks Redis again.
    let stale = spend(&two, &limits, 1000, u64::MAX).await;
    assert!(
        stale < LEASE_MAX,
        "{stale} calls past the budget at one other replica"
    );
    let last = two.admit(SUBJECT, &limits, NOW).await.unwrap();
    assert_eq!(last.refused.map(|r| r.0), Some(Refusal::Budget));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_shrink_to_one_call_when_little_of_a_budget_is_left() {
    let redis = RedisServer::start();
    let [one, two] = stores(&redis);
    let limits = token_budget(100_000);
    // 99 % spent; then two takes its lease, then one spends the rest.
    assert_eq!(spend(&one, &limits, 1000, 99).await, 99);
    assert_eq!(spend(&two, &limits, 10, 1).await, 1);
    assert!(spend(&one, &limits, 1000, u64::MAX).await >= 1);
    assert_eq!(
        spend(&two, &limits, 10, u64::MAX).await,
        0,
        "two's lease was that one call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_charges_are_summed_and_reach_redis_without_being_awaited() {
    let redis = RedisServer::start();
    let [one, two] = stores(&redis);
    let usage = UsageRecord {
        requests: 1,
        input: 10,
        output: 2,
        ..UsageRecord::default()
    };
    let limits = token_budget(1000);
    for _ in 0..200 {
        one.record_usage("team-lease", "gpt-4o", 20_426, &usage)
            .unwrap();
    }
    one.charge(SUBJECT, &limits, 1000, 0.0, NOW).unwrap();
    // `two` has nothing of its own to send: what it reads came from one's writer.
    let spent = format!("aurora:{{{SUBJECT}}}:btok:{}", NOW / 86_400);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = two.usage("team-lease", 20_426, 20_426).await.unwrap();
        let charged = redis.get(&spent);
        if seen.get("gpt-4o").map(|u| u.requests) == Some(200) && charged.as_deref() == Some("1000")
        {
            assert_eq!(seen["gpt-4o"].input, 2000);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one's writes never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let increments = redis.calls("hincrby");
    assert!(
        increments < 200,
        "{increments} increments for 200 requests: not summed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slots_charges_travel_with_its_release() {
    let redis = RedisServer::start();
    let [one, two] = stores(&redis);
    let limits = KeyLimits {
        concurrent: Some(1),
        ..token_budget(100)
    };
    let a = one.admit(SUBJECT, &limits, NOW).await.unwrap();
    let slot = a.slot.expect("a slot taken");
    let asked = redis.calls("evalsha");
    one.charge(SUBJECT, &limits, 100, 0.0, NOW).unwrap();
    one.release(SUBJECT, slot);
    let slots = format!("aurora:{{{SUBJECT}}}:slots:0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.zcard(&slots) != 0 {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = two.admit(SUBJECT, &limits, NOW).await.unwrap();
    assert_eq!(
        b.refused.map(|r| r.0),
        Some(Refusal::Budget),
        "the free slot came with the charge"
    );
    assert_eq!(
        redis.calls("evalsha"),
        asked + 2,
        "one script for the release and its charge, one for the admission"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_together_share_one_lease() {
    let redis = RedisServer::start();
    let store = std::sync::Arc::new(RedisStore::new(&redis.url()).unwrap());
    let limits = per_minute(3000);
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { admitted(&store, &limits).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap());
    }
    // The first ask may find the script not yet loaded and send it again.
    let asked = redis.calls("evalsha");
    assert!(asked <= 2, "{asked} leases for 32 calls that fit in one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_allowance_is_spent_without_waiting_and_concurrency_always_asks_redis() {
    let redis = RedisServer::start();
    let [store, _] = stores(&redis);
    let limits = per_minute(3000);
    assert!(
        store.admit_now(SUBJECT, &limits, NOW).is_none(),
        "no lease yet: the admission has to ask Redis"
    );
    assert!(admitted(&store, &limits).await);
    let now = store.admit_now(SUBJECT, &limits, NOW);
    assert!(
        matches!(now, Some(Ok(ref a)) if a.refused.is_none()),
        "the lease taken covers the next request: {now:?}"
    );
    let slots = KeyLimits {
        concurrent: Some(4),
        ..per_minute(3000)
    };
    assert!(store.admit_now(SUBJECT, &slots, NOW).is_none());
}

/// A store through a relay to `redis`, its key admitted once and limited so that each
/// lease is one call, and charged 21 tokens off the runtime (the charge wakes no
/// flusher): the charge goes with the next lease request.
async fn a_charge_waiting_for_the_next_lease(
    redis: &RedisServer,
) -> (Relay, RedisStore, KeyLimits) {
    let relay = Relay::start(redis.port).await;
    let store = RedisStore::new(&relay.url()).unwrap();
    // Under 32 requests a minute, each lease is one call: the next asks Redis.
    let limits = KeyLimits {
        requests_per_minute: Some(20),
        ..token_budget(1000)
    };
    assert!(admitted(&store, &limits).await);
    std::thread::scope(|s| {
        s.spawn(|| store.charge(SUBJECT, &limits, 21, 0.0, NOW).unwrap());
    });
    (relay, store, limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_sent_with_a_lease_whose_answer_was_lost_count_once() {
    // A lease carries the replica's waiting charges; Redis adds them and its answer
    // is lost. The replica sends them again (it cannot tell): Redis must add them once.
    let redis = RedisServer::start();
    let (relay, store, limits) = a_charge_waiting_for_the_next_lease(&redis).await;
    relay.mute();
    let scripts = redis.calls("evalsha");
    assert!(
        store.admit(SUBJECT, &limits, NOW).await.is_err(),
        "its answer was lost"
    );
    // The lease, then (Redis not asked for a second after the lost answer) its charge
    // sent again on a new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.calls("evalsha") < scripts + 2 {
        assert!(Instant::now() < deadline, "the charge was not sent again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spent = format!("aurora:{{{SUBJECT}}}:btok:*");
    assert_eq!(
        redis.get(&redis.keys(&spent)[0]).as_deref(),
        Some("21"),
        "counted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_leaves_the_rest_of_a_write_made() {
    // A subject's write carries its usage and a call slot given back (the give-back
    // waited: there was no connection yet). The day's usage hash is a string, so
    // Redis refuses that part: the slot must come back all the same.
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let slots = "aurora:{key:team-wrong}:slots:0";
    redis.plant_slot(slots, &format!("{}.7", store.replica()), 100);
    redis.set("aurora:{key:team-wrong}:usage:20000", "not a hash", None);
    let used = UsageRecord {
        requests: 1,
        input: 5,
        ..UsageRecord::default()
    };
    store
        .record_usage("team-wrong", "gpt", 20_000, &used)
        .unwrap();
    store.release("key:team-wrong", 7);
    let _ = store.flush().await;
    assert_eq!(redis.zcard(slots), 0, "the slot was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_made_while_a_lease_is_asked_for_counts_in_that_lease() {
    // Redis 200 ms away: the charge comes while the lease is on its way, so Redis's
    // answer cannot hold it (it is sent 20 ms after it, behind the lease).
    let redis = RedisServer::start();
    let far = Relay::start_far(redis.port, Duration::from_millis(100), Duration::ZERO).await;
    let store = std::sync::Arc::new(RedisStore::new(&far.url()).unwrap());
    let limits = KeyLimits {
        tokens_per_minute: Some(1000),
        ..KeyLimits::default()
    };
    // Connected, and the lease script loaded, by another key's lease.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.admit("key:another", &limits, NOW).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asking = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move { admitted(&store, &limits).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.charge(SUBJECT, &limits, 1000, 0.0, NOW).unwrap();
    assert!(asking.await.unwrap(), "the lease was granted");
    let next = store.admit(SUBJECT, &limits, NOW).await.unwrap();
    assert_eq!(
        next.refused.map(|r| r.0),
        Some(Refusal::Tokens),
        "the minute's tokens were spent by this replica's own charge"
    );
}

fn usd_budget(usd: f64) -> KeyLimits {
    KeyLimits {
        budget: Some(Budget {
            usd: Some(usd),
            tokens: None,
            period: BudgetPeriod::Month,
        }),
        ..KeyLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_too_cheap_for_a_millionth_of_a_dollar_each_add_up_to_a_usd_budget() {
    let redis = RedisServer::start();
    let [store, _] = stores(&redis);
    let limits = usd_budget(0.001);
    assert!(admitted(&store, &limits).await);
    // 20 tokens of a cheap embedding model each: $0.0000004 a call.
    for _ in 0..2_600 {
        store
            .charge(SUBJECT, &limits, 20, 0.000_000_4, NOW)
            .unwrap();
    }
    store.flush().await.unwrap();
    let a = store.admit(SUBJECT, &limits, NOW).await.unwrap();
    assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Budget), "$0.00104");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usd_budget_spent_in_millionths_before_an_upgrade_still_counts() {
    // Replicas before counted a budget's dollars in millionths, under `usd:`; those
    // of now count billionths under `usdn:` and read both.
    let redis = RedisServer::start();
    let [store, _] = stores(&redis);
    let (month, _) = aurora::limits::budget_period(NOW, BudgetPeriod::Month);
    for (subject, concurrent) in [(SUBJECT, None), ("key:team-slots", Some(4))] {
        let spent = format!("aurora:{{{subject}}}:usd:{month}");
        redis.set(&spent, "999", None);
        let limits = KeyLimits {
            concurrent,
            ..usd_budget(0.001)
        };
        let a = store.admit(subject, &limits, NOW).await.unwrap();
        assert_eq!(a.refused, None, "$0.000999 of $0.001");
        store
            .charge(subject, &limits, 20, 0.000_000_5, NOW)
            .unwrap();
        store
            .charge(subject, &limits, 20, 0.000_000_5, NOW)
            .unwrap();
        store.flush().await.unwrap();
        let a = store.admit(subject, &limits, NOW).await.unwrap();
        assert_eq!(a.refused.map(|r| r.0), Some(Refusal::Budget), "{subject}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_together_for_leases_of_one_call_wait_about_one_call_not_one_each() {
    // Redis 200 ms away, and a key under 32 requests a minute: each lease the replica
    // asks for alone is one call. Were the 30 requests arriving together each to ask
    // Redis in turn, the last would wait 30 round trips (6 s).
    let redis = RedisServer::start();
    let far = Relay::start_far(redis.port, Duration::from_millis(100), Duration::ZERO).await;
    let store = std::sync::Arc::new(RedisStore::new(&far.url()).unwrap());
    let limits = per_minute(31);
    // Connected, and the lease script loaded, by another key's lease.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.admit("key:another", &limits, NOW).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { (admitted(&store, &limits).await, started.elapsed()) })
        })
        .collect();
    for call in calls {
        let (admitted, took) = call.await.unwrap();
        assert!(admitted, "30 of 31 a minute");
        assert!(
            took < Duration::from_secs(2),
            "one waited {took:?}: a round trip for each request queued before it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_that_went_with_a_lease_request_dropped_mid_call_are_sent_again() {
    // A lease request carries the replica's waiting charges; the admission is dropped
    // while Redis has it (cancelled, or its runtime shut down at the end of a graceful
    // stop): Redis may or may not have added them, so they are sent again, once.
    let redis = RedisServer::start();
    let (relay, store, limits) = a_charge_waiting_for_the_next_lease(&redis).await;
    relay.cut();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        store.admit(SUBJECT, &limits, NOW),
    )
    .await;
    assert!(dropped.is_err(), "dropped while Redis had the request");
    // The relay carries new connections: the charge reaches Redis on one.
    let spent = format!("aurora:{{{SUBJECT}}}:btok:{}", NOW / 86_400);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.get(&spent).is_none() {
        assert!(
            Instant::now() < deadline,
            "the charge that went with the dropped request was lost"
        );
        let _ = store.flush().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis.get(&spent).as_deref(), Some("21"));
}

/// The first second of `NOW`'s minute, and the second its next begins.
fn minute_bounds() -> (u64, u64) {
    let start = NOW - NOW % 60;
    (start, start + 60)
}

/// `SUBJECT`'s counter `what` in `NOW`'s minute.
fn minute_key(what: &str) -> String {
    format!("aurora:{{{SUBJECT}}}:{what}:{}", NOW / 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_lags_finds_the_minute_another_replica_ended() {
    // `ahead` spends the minute in its last second; `behind`, its clock 12 s behind,
    // asks 3 s later, still in that minute by its own clock: the minute is spent.
    let redis = RedisServer::start();
    let [ahead, behind] = stores(&redis);
    let limits = per_minute(100);
    let (_, minute_end) = minute_bounds();
    let mut served = 0;
    while ahead
        .admit(SUBJECT, &limits, minute_end - 1)
        .await
        .unwrap()
        .refused
        .is_none()
    {
        served += 1;
    }
    assert_eq!(served, 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = behind
        .admit(SUBJECT, &limits, minute_end - 10)
        .await
        .unwrap();
    assert_eq!(
        late.refused.map(|r| r.0),
        Some(Refusal::Requests),
        "the minute's count had expired: counted again from zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_late_in_a_minute_never_shortens_the_life_its_keys_had() {
    // `early` writes the minute's keys at its first second, `late` at its last: each
    // script (a lease, an exact admission, a charge) keeps the longer life.
    let redis = RedisServer::start();
    let [early, late] = stores(&redis);
    let (minute_start, minute_end) = minute_bounds();
    let leased = KeyLimits {
        tokens_per_minute: Some(100_000),
        ..per_minute(100)
    };
    let exact = KeyLimits {
        concurrent: Some(10),
        ..per_minute(100)
    };
    const EXACT: &str = "key:team-lease-exact";
    let exact_requests = format!("aurora:{{{EXACT}}}:req:{}", NOW / 60);
    let keys = [minute_key("req"), minute_key("tok"), exact_requests];
    let mut lives = Vec::new();
    for (store, at) in [(&early, minute_start), (&late, minute_end - 1)] {
        let a = store.admit(SUBJECT, &leased, at).await.unwrap();
        assert!(a.refused.is_none());
        store.charge(SUBJECT, &leased, 10, 0.0, at).unwrap();
        store.flush().await.unwrap();
        let a = store.admit(EXACT, &exact, at).await.unwrap();
        assert!(a.refused.is_none());
        lives.push(keys.each_ref().map(|k| redis.ttl(k)));
    }
    for (i, key) in keys.iter().enumerate() {
        let (first, last) = (lives[0][i], lives[1][i]);
        assert!(
            first >= 55,
            "{key} lives {first} s from its minute's first second"
        );
        // A second or two passed between the two reads.
        assert!(
            last >= first - 2,
            "{key} lived {first} s more, then {last} s: the last write cut it short"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_written_at_once_after_redis_restarts_empty() {
    // Redis restarts (or fails over) without the scripts the writer had loaded: its
    // next write loads them, rather than failing and waiting in doubt for a retry.
    let mut redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let limits = KeyLimits {
        requests_per_minute: Some(20),
        ..token_budget(1000)
    };
    // Charged off the runtime (no flushing task starts): only `flush` sends them.
    let charge = |tokens| {
        std::thread::scope(|s| {
            s.spawn(|| store.charge(SUBJECT, &limits, tokens, 0.0, NOW).unwrap());
        })
    };
    assert!(admitted(&store, &limits).await);
    charge(5);
    store.flush().await.unwrap();
    let spent = format!("aurora:{{{SUBJECT}}}:btok:{}", NOW / 86_400);
    assert_eq!(redis.get(&spent).as_deref(), Some("5"));
    redis.stop();
    assert!(store.admit(SUBJECT, &limits, NOW).await.is_err());
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.admit(SUBJECT, &limits, NOW).await.is_err() {
        assert!(Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    charge(7);
    store.flush().await.unwrap();
    assert_eq!(redis.get(&spent).as_deref(), Some("7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_written_at_once_after_redis_flushed_its_scripts() {
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let limits = token_budget(1000);
    let charge = |tokens| {
        std::thread::scope(|s| {
            s.spawn(|| store.charge(SUBJECT, &limits, tokens, 0.0, NOW).unwrap());
        })
    };
    charge(5);
    store.flush().await.unwrap();
    redis.run(&["SCRIPT", "FLUSH"]);
    charge(7);
    store.flush().await.unwrap();
    let spent = format!("aurora:{{{SUBJECT}}}:btok:{}", NOW / 86_400);
    assert_eq!(redis.get(&spent).as_deref(), Some("12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_a_lease_carries_reach_the_budget_though_a_minute_key_is_of_another_type() {
    // The minute's tokens key is a hash: the lease cannot count tokens there, and
    // the charge it carries must reach the budget all the same.
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let limits = KeyLimits {
        tokens_per_minute: Some(100_000),
        ..token_budget(1000)
    };
    // Charged off the runtime (no flushing task starts): the lease carries it.
    std::thread::scope(|s| {
        s.spawn(|| store.charge(SUBJECT, &limits, 21, 0.0, NOW).unwrap());
    });
    redis.run(&["HSET", &minute_key("tok"), "not", "a counter"]);
    let _ = store.admit(SUBJECT, &limits, NOW).await;
    let spent = format!("aurora:{{{SUBJECT}}}:btok:{}", NOW / 86_400);
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.get(&spent).as_deref() != Some("21") {
        assert!(
            Instant::now() < deadline,
            "the budget never got the charge: {:?}",
            redis.get(&spent)
        );
        let _ = store.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
