//! Limits shared by two gateway replicas through a real Redis: requests per minute
//! held exactly across both, calls at once counted across both, a token budget
//! charged at one and refused at the other; Redis going away (`allow` serves and
//! counts, `deny` answers 503) and coming back (limits enforced again, no restart).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::redis::{RedisServer, Relay};
use common::{client, fixture, sha256_hex, Gateway, MockUpstream, Recorded, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-limits-redis-0123456789abcdef";
const TEAM_KEY: &str = "aur_limits_redis_team_key_0123456789abcdef";

fn provider_like(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/messages" if streamed => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: fixture("anthropic/messages_stream.txt").into(),
        },
        "/v1/chat/completions" => Reply::json(200, fixture("openai/chat_completion.json")),
        _ => Reply::json(404, "{}"),
    }
}

/// A replica: the same config (and Redis) as every other one.
fn replica(mock: &MockUpstream, redis: &RedisServer, team_limits: &str, extra: &str) -> Gateway {
    replica_at(mock, &redis.url(), team_limits, extra)
}

/// [`replica`] with its store at `redis_url`.
fn replica_at(mock: &MockUpstream, redis_url: &str, team_limits: &str, extra: &str) -> Gateway {
    let base = mock.url("/v1");
    let yaml = format!(
        "limits:\n  store: {redis_url}\n{extra}auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {team_limits}\n",
        sha256_hex(TEAM_KEY),
    );
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-limits-redis"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-limits-redis"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("AURORA_METRICS_LISTEN", common::PICKED_PORT),
        ],
    )
}

/// A provider answering as [`provider_like`], each answer `delay` after its call.
async fn provider_answering_after(delay: Duration) -> MockUpstream {
    MockUpstream::start(move |rec: &Recorded| Reply::Delayed(delay, Box::new(provider_like(rec))))
        .await
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

async fn chat(gw: &Gateway) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_keys_requests_per_minute_exactly() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let replicas = [
        replica(&mock, &redis, "{requests_per_minute: 10}", ""),
        replica(&mock, &redis, "{requests_per_minute: 10}", ""),
    ];
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..20 {
        let resp = chat(&replicas[i % 2]).await;
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(
                    resp.headers()["x-ratelimit-remaining-requests"],
                    "0",
                    "429s carry the headers"
                );
                assert!(resp.headers().contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // A minute boundary between two requests would reset the window: allow for it.
    assert!(ok == 10 || (ok > 10 && ok <= 20), "{ok} successes");
    assert_eq!(ok + refused, 20);
    assert_eq!(mock.requests().len(), ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_list_tells_a_limited_key_its_windows_at_either_replica() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let limits = "{requests_per_minute: 10}";
    let (a, b) = (
        replica(&mock, &redis, limits, ""),
        replica(&mock, &redis, limits, ""),
    );
    let remaining = |resp: &reqwest::Response| {
        resp.headers()["x-ratelimit-remaining-requests"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let list = |gw: &Gateway| {
        client()
            .get(gw.url("/v1/models"))
            .bearer_auth(TEAM_KEY)
            .send()
    };
    common::clear_of_a_minute_boundary().await;
    let mut left = 10;
    for _ in 0..3 {
        left = remaining(&chat(&a).await);
    }
    // Where the calls were made, the lease says it; counting nothing.
    for _ in 0..3 {
        let resp = list(&a).await.unwrap();
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "10");
        assert_eq!(remaining(&resp), left);
    }
    // At the other replica, Redis says it (what the first holds leased counts spent).
    let resp = list(&b).await.unwrap();
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "10");
    assert!(remaining(&resp) <= 7, "{}", remaining(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_at_once_are_counted_across_replicas() {
    let redis = RedisServer::start();
    let mock = provider_answering_after(Duration::from_millis(800)).await;
    let one = Arc::new(replica(&mock, &redis, "{concurrent: 2}", ""));
    let two = replica(&mock, &redis, "{concurrent: 2}", "");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let one = Arc::clone(&one);
            tokio::spawn(async move { chat(&one).await.status() })
        })
        .collect();
    // Both calls hold their slots once the provider has them.
    for _ in 0..500 {
        if mock.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = chat(&two).await;
    assert_eq!(
        third.status(),
        429,
        "two calls are in flight at the other replica"
    );
    for call in slow {
        assert_eq!(call.await.unwrap(), 200);
    }
    // The slots are given back asynchronously: soon.
    let mut status = 0;
    for _ in 0..50 {
        status = chat(&two).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_charged_at_one_replica_refuses_at_the_other() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let limits = "{budget: {tokens: 20, period: day}}";
    let one = replica(&mock, &redis, limits, "");
    let two = replica(&mock, &redis, limits, "");
    let stream = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..2 {
        let resp = client()
            .post(one.url("/p/anthropic/v1/messages"))
            .bearer_auth(TEAM_KEY)
            .body(stream)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // One's charges reach Redis a moment after its answers end, not awaited: two
    // refuses once they have, having served at most one lease meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut served_meanwhile = 0;
    let resp = loop {
        let resp = chat(&two).await;
        if resp.status() != 200 {
            break resp;
        }
        served_meanwhile += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "two never saw one's charges"
        );
    };
    assert!(
        served_meanwhile < aurora::limits::LEASE_MAX,
        "{served_meanwhile}"
    );
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_allow_serves_and_counts_deny_refuses_and_both_recover() {
    let mut redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let base = mock.url("/v1");
    let start = |on_error: &str, metrics: &str| {
        let yaml = format!(
            "limits:\n  store: {}\n  on_store_error: {on_error}\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {{requests_per_minute: 2}}\n",
            redis.url(),
            sha256_hex(TEAM_KEY),
        );
        Gateway::start(
            &yaml,
            &[
                ("AURORA_MASTER_KEY", MASTER),
                ("OPENAI_API_KEY", "sk-oai-limits-redis"),
                ("OPENAI_BASE_URL", base.as_str()),
                ("AURORA_METRICS_LISTEN", metrics),
            ],
        )
    };
    let allow = start("allow", common::PICKED_PORT);
    let metrics_listen = allow.metrics_listen();
    let deny = start("deny", "");
    // Both connected while Redis was up.
    assert_eq!(chat(&allow).await.status(), 200);
    redis.stop();
    for _ in 0..3 {
        assert_eq!(chat(&allow).await.status(), 200, "allow: served unlimited");
        assert_eq!(chat(&deny).await.status(), 503, "deny: refused");
    }
    let scrape = common::scrape(&metrics_listen).await;
    let errors: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("aurora_limit_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 3.0, "{scrape}");

    redis.resume();
    // The connection manager reconnects by itself: the limit holds again.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(chat(&deny).await.status().as_u16());
        if statuses.ends_with(&[200, 200, 429]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        statuses.ends_with(&[200, 200, 429]),
        "two allowed, then refused: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_served_while_redis_was_away_are_charged_to_the_budget_once_it_is_back() {
    let mut redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    // Calls at once are asked of Redis on every call: with it gone, each admission fails.
    let gw = replica(
        &mock,
        &redis,
        "{concurrent: 4, budget: {tokens: 1000000, period: day}}",
        "  on_store_error: allow\n",
    );
    redis.stop();
    for _ in 0..2 {
        assert_eq!(chat(&gw).await.status(), 200, "allow: served");
    }
    redis.resume();
    // The recorded completion reports 21 tokens: both calls are charged to the day's
    // budget once Redis takes writes again (it came back empty).
    let budget = || redis.keys("aurora:{key:team-a}:btok:*");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let charged = loop {
        let charged = budget().first().and_then(|key| redis.get(key));
        if charged.as_deref() == Some("42") || std::time::Instant::now() > deadline {
            break charged;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(charged.as_deref(), Some("42"), "{:?}", budget());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_kept_in_redis_is_summed_per_model_over_the_period() {
    use aurora::limits::{LimitStore, RedisStore, UsageRecord};
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let one = UsageRecord {
        requests: 1,
        input: 10,
        output: 4,
        cost_nanos: 250_000,
        estimated: 1,
        ..UsageRecord::default()
    };
    let today = 20_426;
    store.record_usage("team-a", "gpt-4o", today, &one).unwrap();
    store
        .record_usage("team-a", "gpt-4o", today - 1, &one)
        .unwrap();
    store.record_usage("team-a", "claude", today, &one).unwrap();
    store
        .record_usage("team-a", "gpt-4o", today - 40, &one)
        .unwrap();
    let usage = store.usage("team-a", today - 6, today).await.unwrap();
    assert_eq!(usage["gpt-4o"].requests, 2);
    assert_eq!(usage["gpt-4o"].input, 20);
    assert_eq!(usage["gpt-4o"].cost_nanos, 500_000);
    assert_eq!(usage["gpt-4o"].estimated, 2);
    assert_eq!(usage["claude"].output, 4);
    assert_eq!(usage.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_in_the_usage_report_written_in_millionths_before_an_upgrade_still_counts() {
    use aurora::limits::{LimitStore, RedisStore, UsageRecord};
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    // A replica before wrote costs in millionths, as `MODEL|cost_micros`.
    let day = "aurora:{key:team-a}:usage:20426";
    redis.run(&["HINCRBY", day, "gpt-4o|cost_micros", "250"]);
    let one = UsageRecord {
        requests: 1,
        cost_nanos: 400,
        ..UsageRecord::default()
    };
    store
        .record_usage("team-a", "gpt-4o", 20_426, &one)
        .unwrap();
    let usage = store.usage("team-a", 20_426, 20_426).await.unwrap();
    assert_eq!(usage["gpt-4o"].cost_nanos, 250_400);
    assert!(redis.hgetall(day).contains_key("gpt-4o|cost_nanos"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_read_at_every_replica_is_charged_once() {
    use aurora::limits::{LimitStore, RedisStore};
    let redis = RedisServer::start();
    // Started with `background: true`: its usage (17 input, 5 output tokens) comes
    // with whichever read finds it complete, at any replica, as often as it is read.
    let mock = MockUpstream::start(|rec| match rec.uri.as_str() {
        "/v1/responses/resp_bg" => Reply::json(
            200,
            fixture("openai/responses.json")
                .replace(
                    "resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b",
                    "resp_bg",
                )
                .replace(r#""background": false"#, r#""background": true"#),
        ),
        _ => provider_like(rec),
    })
    .await;
    let limits = "{budget: {tokens: 1000, period: day}}";
    let replicas = [
        replica(&mock, &redis, limits, ""),
        replica(&mock, &redis, limits, ""),
    ];
    for gw in replicas.iter().chain(&replicas) {
        let resp = client()
            .get(gw.url("/p/openai/responses/resp_bg"))
            .bearer_auth(TEAM_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // The four reads reach the shared usage report a moment after they end.
    let store = RedisStore::new(&redis.url()).unwrap();
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let total = loop {
        let mut total = aurora::limits::UsageRecord::default();
        for record in store
            .usage("team-a", today - 1, today)
            .await
            .unwrap()
            .values()
        {
            total.add(record);
        }
        if total.requests >= 4 || std::time::Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(total.requests, 4);
    assert_eq!(
        (total.input, total.output),
        (17, 5),
        "charged once: {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_marked_charged_at_one_replica_is_known_at_the_other() {
    use aurora::limits::{LimitStore, RedisStore};
    use aurora::metrics::deferred_answer::DeferredAnswer;
    let redis = RedisServer::start();
    let one = RedisStore::new(&redis.url()).unwrap();
    let two = RedisStore::new(&redis.url()).unwrap();
    let batch = *DeferredAnswer::batch(br#""batch_1""#, Some(br#""file-out""#)).key();
    let other = *DeferredAnswer::background_response(br#""resp_1""#).key();
    let now = 1_796_351_415;
    assert!(!two.was_charged(&batch, now).await.unwrap());
    assert!(one.first_charge(&batch, now).await.unwrap());
    assert!(two.was_charged(&batch, now).await.unwrap());
    assert!(!two.first_charge(&batch, now).await.unwrap());
    assert!(!one.was_charged(&other, now).await.unwrap());
    assert!(two.first_charge(&other, now).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_refused_in_part_counts_once() {
    // The day's usage hash is a string, so Redis refuses the usage write; the budget
    // charge in the same write was made all the same. Sent again (or not), it must
    // count once.
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica(
        &mock,
        &redis,
        "{budget: {tokens: 1000000, period: month}}",
        "",
    );
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // Today's and, should the call cross midnight, tomorrow's.
    for day in [day, day + 1] {
        redis.set(
            &format!("aurora:{{key:team-a}}:usage:{day}"),
            "not a hash",
            None,
        );
    }
    assert_eq!(chat(&gw).await.status(), 200);
    // Made again each time it is sent, the charge would count once more each time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let budget = redis.keys("aurora:{key:team-a}:btok:*");
    assert_eq!(budget.len(), 1, "{budget:?}");
    // The recorded completion reports 17 input and 4 output tokens.
    assert_eq!(redis.get(&budget[0]).as_deref(), Some("21"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_does_not_keep_lost_slots_alive() {
    // A slot lost (its replica gone mid-call) lapses when its lease ends: a client
    // trying again and again, refused each time, must not renew it.
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica(&mock, &redis, "{concurrent: 1}", "");
    let slots = "aurora:{key:team-a}:slots:0";
    redis.plant_slot(slots, "gone.1", 100);
    for _ in 0..3 {
        assert_eq!(chat(&gw).await.status(), 429);
    }
    let left = redis.slot_lapses_in(slots, "gone.1");
    assert!(
        left.is_some_and(|s| (1..=100).contains(&s)),
        "the lost slot was renewed: {left:?}"
    );
}

/// A provider that holds a call whose prompt says `slow` for a minute and answers any
/// other at once.
async fn provider_holding_slow_calls() -> MockUpstream {
    MockUpstream::start(|rec: &Recorded| {
        if String::from_utf8_lossy(&rec.body).contains("slow") {
            Reply::Delayed(Duration::from_secs(60), Box::new(provider_like(rec)))
        } else {
            provider_like(rec)
        }
    })
    .await
}

/// Starts a call at `gw` that the provider holds, and waits until the provider has
/// it (the call holds its slot).
async fn hold_a_call(gw: &Arc<Gateway>, mock: &MockUpstream) -> tokio::task::JoinHandle<()> {
    let before = mock.requests().len();
    let url = gw.url("/v1/chat/completions");
    let held = tokio::spawn(async move {
        let slow = CHAT.replace("hi", "slow");
        let _ = client()
            .post(url)
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json")
            .body(slow)
            .send()
            .await;
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mock.requests().len() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_slots_come_back_while_its_key_stays_busy() {
    // Replica one is killed while its call holds one of the key's two slots. Replica
    // two keeps the key busy: its own call holds the other slot, renewed as it runs.
    // The dead replica's slot lapses a lease (2 s) after its last renewal however
    // busy the key stays, and the live call's slot does not.
    let redis = RedisServer::start();
    let mock = provider_holding_slow_calls().await;
    let lease = "  slot_lease: 2s\n";
    let one = Arc::new(replica(&mock, &redis, "{concurrent: 2}", lease));
    let two = Arc::new(replica(&mock, &redis, "{concurrent: 2}", lease));
    let _lost = hold_a_call(&one, &mock).await;
    drop(Arc::into_inner(one).expect("one handle"));
    let _held = hold_a_call(&two, &mock).await;
    assert_eq!(chat(&two).await.status(), 429, "both slots are held");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = chat(&two).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped replica's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past two leases since it was taken, the live call still holds its slot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _second = hold_a_call(&two, &mock).await;
    assert_eq!(
        chat(&two).await.status(),
        429,
        "the running call's slot lapsed: it was not renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_whose_admission_lost_its_answer_is_given_back() {
    // Redis takes the slot and its answer is lost: the replica cannot tell, and must
    // give it back (which does nothing had it not been taken), or the key is a call
    // short until the slot lapses.
    use aurora::config::KeyLimits;
    use aurora::limits::{LimitStore, RedisStore};
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let store = RedisStore::new(&relay.url()).unwrap();
    let one = KeyLimits {
        concurrent: Some(1),
        ..KeyLimits::default()
    };
    let (subject, now) = ("key:team-lost", 1_796_351_415);
    let slots = "aurora:{key:team-lost}:slots:0";
    // A call made and ended, so the connection that loses the answer is made.
    let slot = store.admit(subject, &one, now).await.unwrap().slot.unwrap();
    store.release(subject, slot);
    wait_until(|| redis.zcard(slots) == 0).await;
    relay.mute();
    assert!(store.admit(subject, &one, now).await.is_err());
    assert_eq!(redis.zcard(slots), 1, "Redis took the slot");
    // Given back, else it would stay for its lease (a minute).
    wait_until(|| redis.zcard(slots) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_slot_an_admission_dropped_unanswered_asked_for_is_given_back() {
    use aurora::config::KeyLimits;
    use aurora::limits::{LimitStore, RedisStore};
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let one = KeyLimits {
        concurrent: Some(1),
        ..KeyLimits::default()
    };
    let (subject, now) = ("key:team-dropped", 1_796_351_415);
    // A call made and ended, so the connection the dropped admission uses is made.
    let slot = store.admit(subject, &one, now).await.unwrap().slot.unwrap();
    store.release(subject, slot);
    wait_until(|| redis.zcard("aurora:{key:team-dropped}:slots:0") == 0).await;
    // The admission is dropped while Redis has its call (a graceful stop's grace
    // period ending, say), before the link's own patience runs out.
    redis.freeze();
    let dropped =
        tokio::time::timeout(Duration::from_millis(150), store.admit(subject, &one, now)).await;
    assert!(dropped.is_err(), "answered while frozen");
    redis.thaw();
    // Redis took the slot as it ran the call: given back, else the key's one call at
    // once would be refused until the slot's lease (a minute) lapsed.
    let taken = store.admit(subject, &one, now).await.unwrap();
    assert!(taken.slot.is_some(), "refused: {:?}", taken.refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_slot_is_renewed_and_lapses_once_its_replica_stops() {
    use aurora::config::KeyLimits;
    use aurora::limits::{LimitStore, RedisStore, Refusal};
    let redis = RedisServer::start();
    let lease = Duration::from_secs(2);
    let one = RedisStore::with_slot_lease(&redis.url(), lease).unwrap();
    let two = RedisStore::with_slot_lease(&redis.url(), lease).unwrap();
    let limits = KeyLimits {
        concurrent: Some(1),
        ..KeyLimits::default()
    };
    let now = 1_796_351_415;
    let subject = "key:team-renewed";
    let slot = one
        .admit(subject, &limits, now)
        .await
        .unwrap()
        .slot
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let name = format!("{}.{slot}", one.replica());
    let left = redis.slot_lapses_in("aurora:{key:team-renewed}:slots:0", &name);
    assert!(left.is_some_and(|s| s >= 1), "not renewed: {left:?}");
    let refused = two.admit(subject, &limits, now).await.unwrap().refused;
    assert_eq!(refused.map(|r| r.0), Some(Refusal::Concurrency));
    // The replica stops without giving it back: the slot lapses a lease later.
    drop(one);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let taken = two.admit(subject, &limits, now).await.unwrap();
    assert!(taken.slot.is_some(), "the stopped replica's slot came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_do_not_queue_behind_a_redis_that_stopped_answering() {
    // A Redis that takes connections and never answers (a host black-holed, not
    // down): the first request waits out the call timeout; those arriving meanwhile
    // must not each wait out one more, in turn, asking it again and again.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let asked = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&asked);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = silent.accept().await {
            let counting = Arc::clone(&counting);
            counting.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // Every call read, none answered.
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let calls = buf[..n].windows(4).filter(|w| w == b"EVAL").count();
                    counting.fetch_add(calls, Ordering::SeqCst);
                }
            });
        }
    });
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica_at(
        &mock,
        &format!("redis://127.0.0.1:{port}/0"),
        "{requests_per_minute: 100}",
        "  on_store_error: allow\n",
    );
    let calls = (0..10).map(|_| chat(&gw));
    for resp in futures_util::future::join_all(calls).await {
        assert_eq!(resp.status(), 200, "allowed while Redis is silent");
    }
    // Asked once (a connection, or a call on it), give or take one that came late;
    // in turn, every request would have asked it.
    let asked = asked.load(Ordering::SeqCst);
    assert!(asked <= 3, "Redis was asked {asked} times for 10 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_slot_given_back_while_redis_is_not_asked_is_given_back_later() {
    // A call that Redis left unanswered (another request's, against a Redis that
    // stopped answering) makes it not asked for a second; a call ending within that
    // second gives its slot back once Redis is asked again, rather than losing it
    // until it lapses.
    let redis = RedisServer::start();
    let mock = provider_answering_after(Duration::from_millis(1200)).await;
    let gw = Arc::new(replica(&mock, &redis, "{concurrent: 1}", ""));
    let call = |gw: &Arc<Gateway>| {
        let gw = Arc::clone(gw);
        tokio::spawn(async move { chat(&gw).await.status() })
    };
    let holding = call(&gw);
    wait_until(|| mock.requests().len() == 1).await;
    let slots = "aurora:{key:team-a}:slots:0";
    assert_eq!(redis.zcard(slots), 1, "the call holds its slot");
    redis.freeze();
    // Its limit check unanswered, this one goes through (`on_store_error: allow`).
    let unchecked = call(&gw);
    assert_eq!(holding.await.unwrap(), 200);
    assert_eq!(unchecked.await.unwrap(), 200);
    redis.thaw();
    wait_until(|| redis.zcard(slots) == 0).await;
    assert_eq!(chat(&gw).await.status(), 200, "the slot is free again");
}

/// Waits (at most 10 s) until `done`.
async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not done after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_black_holed_is_made_anew_not_kept() {
    // The path to Redis goes away for the connection the gateway holds (Redis failed
    // over, the old route drops every packet), while a new connection gets through:
    // the gateway must make one, not wait on the dead one until the kernel gives up.
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica_at(
        &mock,
        &relay.url(),
        "{concurrent: 5}",
        "  on_store_error: deny\n",
    );
    assert_eq!(chat(&gw).await.status(), 200);
    relay.cut();
    assert_eq!(
        chat(&gw).await.status(),
        503,
        "its limit check went unanswered"
    );
    // Once Redis is asked again (a second on), a new connection answers.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let status = chat(&gw).await.status();
        statuses.push(status.as_u16());
        if status == 200 {
            return;
        }
    }
    panic!("the dead connection was kept: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_answer_was_lost_counts_once() {
    // Redis makes the charge and its answer is lost (the connection's path went away
    // after the write got through): the replica cannot tell it from a charge never
    // made, and sends it again on a new connection. Redis must make it once.
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let mock = provider_answering_after(Duration::from_millis(300)).await;
    let gw = replica_at(
        &mock,
        &relay.url(),
        "{budget: {tokens: 1000000, period: month}}",
        "",
    );
    let call = tokio::spawn({
        let url = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(TEAM_KEY)
                .header("content-type", "application/json")
                .body(CHAT)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    wait_until(|| mock.requests().len() == 1).await;
    relay.mute();
    let scripts = redis.calls("evalsha");
    assert_eq!(call.await.unwrap(), 200);
    let budget = || redis.keys("aurora:{key:team-a}:btok:*");
    // Made, its answer lost after 500 ms, Redis not asked for a second, then sent
    // again on a new connection.
    wait_until(|| redis.calls("evalsha") >= scripts + 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The recorded completion reports 17 input and 4 output tokens.
    assert_eq!(
        redis.get(&budget()[0]).as_deref(),
        Some("21"),
        "counted twice"
    );
    let usage = redis.keys("aurora:{key:team-a}:usage:*");
    assert_eq!(usage.len(), 1, "{usage:?}");
    let used = redis.hgetall(&usage[0]);
    let requests: Vec<_> = used
        .iter()
        .filter(|(f, _)| f.ends_with("|requests"))
        .collect();
    assert_eq!(requests.len(), 1, "{used:?}");
    assert_eq!(requests[0].1, "1", "{used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_slot_whose_give_back_was_lost_is_given_back_again() {
    // The give-back goes into a connection whose path went away: it never reached
    // Redis, which the replica cannot tell from an answer lost. Sent again (Redis
    // makes it once), the slot comes back now, not when it lapses.
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let mock = provider_answering_after(Duration::from_millis(300)).await;
    let gw = Arc::new(replica_at(&mock, &relay.url(), "{concurrent: 1}", ""));
    let holding = tokio::spawn({
        let gw = Arc::clone(&gw);
        async move { chat(&gw).await.status() }
    });
    wait_until(|| mock.requests().len() == 1).await;
    let slots = "aurora:{key:team-a}:slots:0";
    assert_eq!(redis.zcard(slots), 1);
    relay.cut();
    assert_eq!(holding.await.unwrap(), 200);
    wait_until(|| redis.zcard(slots) == 0).await;
    assert_eq!(chat(&gw).await.status(), 200, "the slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_only_the_write_ids_whose_answers_were_lost() {
    // Each write goes under an id Redis keeps so it makes it once; a write whose
    // answer came back cannot come again, and its id is forgotten with the next one.
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica(
        &mock,
        &redis,
        "{concurrent: 4, budget: {tokens: 1000000, period: month}}",
        "",
    );
    let budget = || redis.keys("aurora:{key:team-a}:btok:*");
    for calls in 1..=12 {
        assert_eq!(chat(&gw).await.status(), 200);
        let spent = (21 * calls).to_string();
        wait_until(|| {
            budget().len() == 1 && redis.get(&budget()[0]).as_deref() == Some(spent.as_str())
        })
        .await;
    }
    let ids = redis.keys("aurora:{key:team-a}:once:*");
    assert_eq!(ids.len(), 1, "one set per replica: {ids:?}");
    let kept = redis.zcard(&ids[0]);
    // The last write's, and one whose answer was read after the next was made.
    assert!(kept <= 3, "{kept} ids kept for 12 writes answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_is_charged_once_by_the_poll_or_a_read_at_another_replica() {
    let redis = RedisServer::start();
    // Each call starts its own background response, queued; each is complete (17
    // input, 5 output tokens) whenever it is read.
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") => {
            let id = if String::from_utf8_lossy(&rec.body).contains("read") {
                "resp_read"
            } else {
                "resp_unread"
            };
            Reply::json(
                200,
                format!(
                    r#"{{"id":"{id}","object":"response","created_at":1,"status":"queued","background":true,"model":"gpt-4o-mini","output":[],"usage":null}}"#
                ),
            )
        }
        ("GET", "/v1/responses/resp_read") => Reply::json(200, completed_response("resp_read")),
        ("GET", "/v1/responses/resp_unread") => {
            Reply::json(200, completed_response("resp_unread"))
        }
        _ => provider_like(rec),
    })
    .await;
    let limits = "{budget: {tokens: 1000, period: day}}";
    let polling = replica(&mock, &redis, limits, "  poll_background: 1s\n");
    let other = replica(&mock, &redis, limits, "");
    for input in ["read", "never"] {
        let resp = client()
            .post(polling.url("/p/openai/responses"))
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"gpt-4o-mini","input":"{input}","background":true}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // One is read at the other replica before the first poll: charged there, and
    // not again by the poll.
    let resp = client()
        .get(other.url("/p/openai/responses/resp_read"))
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let polled = |uri: &str| gets(&mock, uri);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (polled("/v1/responses/resp_read") < 2 || polled("/v1/responses/resp_unread") < 1)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other, never read, is charged by the poll.
    let total = tokens_in(&redis, 10, Duration::from_secs(10)).await;
    // A moment more: a second charge by the poll would show by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = tokens_in(&redis, u64::MAX, Duration::ZERO).await;
    assert_eq!(total, (34, 10));
    assert_eq!(again, (34, 10), "charged once each");
    assert_eq!(
        polled("/v1/responses/resp_read"),
        2,
        "polled once, then let go"
    );
    assert_eq!(polled("/v1/responses/resp_unread"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_under_way_across_a_reload_of_its_budgets_period_charges_the_new_period() {
    let redis = RedisServer::start();
    // Each answer reports 21 tokens, a second after its call.
    let mock = provider_answering_after(Duration::from_secs(1)).await;
    let monthly = "{budget: {tokens: 30, period: month}}";
    let gw = replica(&mock, &redis, monthly, "");
    let under_way = tokio::spawn(chat_owned(gw.url("/v1/chat/completions")));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mock.requests().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reloaded while the call is at the provider: the budget is now per day.
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    gw.write_config(&config.replace("period: month", "period: day"));
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    assert_eq!(under_way.await.unwrap(), 200);
    // Its 21 tokens count in the day's budget, where admissions now look, not in the
    // month's, which nothing reads any more.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let day_key = format!("aurora:{{key:team-a}}:btok:{today}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.get(&day_key).is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.get(&day_key).as_deref(), Some("21"));
    assert_eq!(redis.keys("aurora:{key:team-a}:btok:*"), [day_key]);
}

async fn chat_owned(url: String) -> u16 {
    client()
        .post(url)
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A background response `id` as OpenAI answers it once complete: 17 input and 5
/// output tokens.
fn completed_response(id: &str) -> String {
    fixture("openai/responses.json")
        .replace(
            "resp_0d8b81b7c805508d0069a31431b68c8194af45c94a6952706b",
            id,
        )
        .replace(r#""background": false"#, r#""background": true"#)
}

/// The background response `id`, queued or in progress.
fn response_under_way(id: &str, status: &str) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"id":"{id}","object":"response","created_at":1,"status":"{status}","background":true,"model":"gpt-4o-mini","output":[],"usage":null}}"#
        ),
    )
}

/// A provider whose background response `id`, started queued, is at work until the
/// flag returned is set, and complete after.
async fn response_ending_when_told(
    id: &'static str,
) -> (MockUpstream, Arc<std::sync::atomic::AtomicBool>) {
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let now_ended = Arc::clone(&ended);
    let path = format!("/v1/responses/{id}");
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") => response_under_way(id, "queued"),
        ("GET", uri) if uri == path && now_ended.load(Ordering::SeqCst) => {
            Reply::json(200, completed_response(id))
        }
        ("GET", uri) if uri == path => response_under_way(id, "in_progress"),
        _ => provider_like(rec),
    })
    .await;
    (mock, ended)
}

/// How many times `mock` was asked `GET uri`.
fn gets(mock: &MockUpstream, uri: &str) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.uri == uri)
        .count()
}

/// Starts a background response at `gw`.
async fn start_background(gw: &Gateway) {
    let resp = client()
        .post(gw.url("/p/openai/responses"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","input":"hi","background":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
}

/// team-a's tokens in `redis` today, input and output, once `output` are there (or
/// after `patience`).
async fn tokens_in(redis: &RedisServer, output: u64, patience: Duration) -> (u64, u64) {
    use aurora::limits::{LimitStore, RedisStore};
    let store = RedisStore::new(&redis.url()).unwrap();
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let deadline = std::time::Instant::now() + patience;
    loop {
        let mut total = aurora::limits::UsageRecord::default();
        for record in store
            .usage("team-a", today - 1, today)
            .await
            .unwrap()
            .values()
        {
            total.add(record);
        }
        if total.output >= output || std::time::Instant::now() > deadline {
            return (total.input, total.output);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_of_a_replica_that_stopped_is_charged_by_another() {
    // The replica that started the work polls it, then dies with it still at work.
    // Its lease on the work runs out, and another replica takes it over from Redis:
    // polled there, and charged once it has ended.
    let redis = RedisServer::start();
    let (mock, ended) = response_ending_when_told("resp_left").await;
    let limits = "{budget: {tokens: 1000, period: day}}";
    let polled = || gets(&mock, "/v1/responses/resp_left");
    let starting = replica(&mock, &redis, limits, "  poll_background: 100ms\n");
    start_background(&starting).await;
    wait_until(|| polled() >= 2).await;
    drop(starting);
    ended.store(true, Ordering::SeqCst);
    let _other = replica(&mock, &redis, limits, "  poll_background: 100ms\n");
    assert_eq!(tokens_in(&redis, 5, Duration::from_secs(60)).await, (17, 5));
    // Settled there: not polled, nor charged, again.
    let settled = polled();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(polled(), settled);
    assert_eq!(tokens_in(&redis, 10, Duration::ZERO).await, (17, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_at_one_replica_charges_work_another_watches_first() {
    // The replica that started the work would poll it only in an hour; its delete
    // comes to another replica, which finds the work in Redis, polls it and charges
    // it before the delete goes on.
    let redis = RedisServer::start();
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("POST", "/v1/responses") => response_under_way("resp_del", "queued"),
        ("GET", "/v1/responses/resp_del") => Reply::json(200, completed_response("resp_del")),
        ("DELETE", "/v1/responses/resp_del") => Reply::json(
            200,
            r#"{"id":"resp_del","object":"response.deleted","deleted":true}"#,
        ),
        _ => provider_like(rec),
    })
    .await;
    let limits = "{budget: {tokens: 1000, period: day}}";
    let starting = replica(&mock, &redis, limits, "  poll_background: 1h\n");
    let other = replica(&mock, &redis, limits, "  poll_background: 1h\n");
    start_background(&starting).await;
    let watches = aurora::limits::RedisStore::new(&redis.url()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        use aurora::limits::LimitStore;
        let shared = watches.shared_watches().unwrap();
        let found = shared.find("response:resp_del").await.unwrap();
        if found.is_some() || std::time::Instant::now() > deadline {
            assert!(found.is_some(), "the work was not shared");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = client()
        .delete(other.url("/p/openai/responses/resp_del"))
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let calls: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /v1/responses",
            "GET /v1/responses/resp_del",
            "DELETE /v1/responses/resp_del"
        ]
    );
    assert_eq!(tokens_in(&redis, 5, Duration::from_secs(10)).await, (17, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_while_redis_is_away_goes_on_where_the_store_allows_it() {
    // Whether another replica watches the work cannot be asked: with `allow`, the
    // delete goes on (as requests are served); it is not refused until Redis is back.
    let mut redis = RedisServer::start();
    let mock = MockUpstream::start(move |rec| match (rec.method.as_str(), rec.uri.as_str()) {
        ("DELETE", "/v1/responses/resp_away") => Reply::json(
            200,
            r#"{"id":"resp_away","object":"response.deleted","deleted":true}"#,
        ),
        _ => provider_like(rec),
    })
    .await;
    let gw = replica(&mock, &redis, "{budget: {tokens: 1000, period: day}}", "");
    // Connected while Redis was up.
    assert_eq!(chat(&gw).await.status(), 200);
    redis.stop();
    let resp = client()
        .delete(gw.url("/p/openai/responses/resp_away"))
        .bearer_auth(TEAM_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.uri == "/v1/responses/resp_away"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_work_is_taken_over_only_from_a_replica_that_stopped_or_lost_it() {
    use aurora::limits::SharedWatches;
    let redis = RedisServer::start();
    let watches = SharedWatches::new(&aurora::config::RedisAddress::plain(&redis.url())).unwrap();
    let lease = 60_000;
    let claim = |stale: u64| watches.claim("b", lease, stale, 10);
    watches.alive("a", Some(lease)).await.unwrap();
    watches.alive("b", Some(lease)).await.unwrap();
    watches.keep("a", "batch:1", "{one}", 0).await.unwrap();
    watches
        .keep("a", "batch:2", "{two}", 3_600_000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Its replica is alive, and wrote it just now: not taken, though due (and looked
    // at again when that replica's lease runs out).
    assert_eq!(claim(60_000).await.unwrap(), []);
    // Written again by its replica, due now; then not written for longer than the
    // stale time: lost by its replica, taken.
    watches.keep("a", "batch:1", "{one}", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lost = claim(5).await.unwrap();
    assert_eq!(lost, [("batch:1".to_string(), "{one}".to_string())]);
    // Taken, it is due again only after its lease: not taken twice.
    assert_eq!(claim(5).await.unwrap(), []);
    // Its new owner gives it back: any replica takes it once due again.
    watches.give_back("batch:1", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(claim(60_000).await.unwrap().len(), 1);
    // A replica that stopped leaves what is due to the others, not what is not yet.
    watches.keep("a", "batch:3", "{three}", 0).await.unwrap();
    watches.alive("a", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = claim(60_000).await.unwrap();
    assert_eq!(taken, [("batch:3".to_string(), "{three}".to_string())]);
    // Forgotten, it is nowhere.
    watches.forget("batch:2").await.unwrap();
    assert_eq!(watches.find("batch:2").await.unwrap(), None);
    assert_eq!(
        watches.find("batch:3").await.unwrap().as_deref(),
        Some("{three}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopping_gracefully_hands_its_work_over_before_its_lease_runs_out() {
    // Stopped with SIGTERM (as an upgrade's old process is), the replica says at once
    // that it no longer polls: another takes its work over at its next look, within
    // 5 s, not after the 20 s the word of a crashed one holds.
    let redis = RedisServer::start();
    let (mock, ended) = response_ending_when_told("resp_handed").await;
    let limits = "{budget: {tokens: 1000, period: day}}";
    let polled = || gets(&mock, "/v1/responses/resp_handed");
    let other = replica(&mock, &redis, limits, "  poll_background: 100ms\n");
    let stopping = replica(&mock, &redis, limits, "  poll_background: 100ms\n");
    start_background(&stopping).await;
    wait_until(|| polled() >= 2).await;
    let handed = std::time::Instant::now();
    stopping.signal("TERM");
    // Ended once the stopping replica's poll has stopped (at once, with the signal,
    // though its requests drain for a while): only the other can charge it.
    stopping.wait_for_log("SIGTERM received", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ended.store(true, Ordering::SeqCst);
    assert_eq!(tokens_in(&redis, 5, Duration::from_secs(30)).await, (17, 5));
    let took = handed.elapsed();
    assert!(took < Duration::from_secs(15), "taken over after {took:?}");
    // By the other replica, as its log and its metrics say.
    other.wait_for_log("took over 1 background", 1).await;
    let scrape = common::scrape(&other.metrics_listen()).await;
    assert!(
        scrape.contains("\naurora_background_work_taken_over_total 1\n"),
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_limits_cannot_mint_a_credential_while_redis_is_away() {
    // Redis cannot be reached and `allow` serves calls uncounted: a credential minted
    // meanwhile would outlive the outage, past every limit.
    let mock = MockUpstream::start(provider_like).await;
    let redis_url = format!("redis://127.0.0.1:{}/0", common::closed_port());
    let gw = replica_at(
        &mock,
        &redis_url,
        "{budget: {usd: 5, period: month}}",
        "  on_store_error: allow\n",
    );
    assert_eq!(chat(&gw).await.status(), 200, "served uncounted");
    let minted = client()
        .post(gw.url("/p/openai/realtime/client_secrets"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 403);
    assert_eq!(
        mock.requests().len(),
        1,
        "only the chat reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stopped_taking_writes_is_connected_to_anew() {
    // A primary that failed over: the name the URL gives points at the new one, and the
    // connection to the old one (now a replica) answers every write READONLY. The
    // store drops that connection and makes another once Redis takes writes.
    use aurora::config::KeyLimits;
    use aurora::limits::{LimitStore, RedisStore};
    let redis = RedisServer::start();
    let store = RedisStore::new(&redis.url()).unwrap();
    let limits = KeyLimits {
        requests_per_minute: Some(10),
        ..KeyLimits::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    store.admit("key:failover", &limits, now).await.unwrap();
    let before = redis.connections_last_running("evalsha");
    assert_eq!(before.len(), 1, "one connection ran the admission");
    let closed = common::closed_port().to_string();
    redis.run(&["REPLICAOF", "127.0.0.1", &closed]);
    let refused = store.admit("key:failover", &limits, now).await.unwrap_err();
    assert!(refused.0.contains("ReadOnly"), "{}", refused.0);
    // Calls in the moment after fail at once, naming why.
    let quiet = store.admit("key:failover", &limits, now).await.unwrap_err();
    assert!(
        quiet.0.contains("ReadOnly") && quiet.0.contains("not asked again"),
        "{}",
        quiet.0
    );
    redis.run(&["REPLICAOF", "NO", "ONE"]);
    tokio::time::sleep(aurora::limits::QUIET_AFTER_LOSS + Duration::from_millis(200)).await;
    store.admit("key:failover", &limits, now).await.unwrap();
    let after = redis.connections_last_running("evalsha");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the admission came through a new connection");
}

/// `aurora usage --key team-a` with only `yaml` for its config and no master key: the
/// report it prints once its total shows `requests`.
async fn usage_printed_from(yaml: &str, requests: u64) -> Value {
    let dir = common::scratch_dir();
    let path = dir.join("aurora.yaml");
    std::fs::write(&path, yaml).unwrap();
    common::usage_cli::usage_printed(&path, &[], "team-a", requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_the_usage_report_from_redis_with_no_gateway_running() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let priced = "models:\n  prices:\n    gpt-4o-mini: {input: 1.0, output: 2.0}\n";
    let gw = replica(&mock, &redis, "{requests_per_minute: 100}", priced);
    for _ in 0..2 {
        assert_eq!(chat(&gw).await.status(), 200);
    }
    // Neither a master key nor a metrics listener: the store is read itself.
    let yaml = format!("limits:\n  store: {}\n", redis.url());
    let printed = usage_printed_from(&yaml, 2).await;
    assert_eq!(printed["key"], "team-a");
    let model = &printed["models"]["gpt-4o-mini"];
    assert_eq!(model["requests"], 2, "{printed}");
    // The recorded completion reports 17 input and 4 output tokens.
    assert_eq!(model["tokens"]["input"], 34, "{printed}");
    let cost = (34.0 * 1.0 + 8.0 * 2.0) / 1e6;
    assert!(
        (model["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{printed}"
    );
    // And with the gateway gone.
    drop(gw);
    assert_eq!(usage_printed_from(&yaml, 2).await, printed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_says_a_name_no_key_goes_by_rather_than_printing_zeros() {
    let redis = RedisServer::start();
    let dir = common::scratch_dir();
    let path = dir.join("aurora.yaml");
    // With a master key and a gateway to ask, Redis's answer is the answer all the
    // same: the key is not sent on to whatever listens there.
    let yaml = format!(
        "server:\n  master_key: {MASTER}\n  metrics_listen: 127.0.0.1:{}\nlimits:\n  store: {}\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n",
        common::closed_port(),
        redis.url(),
        common::sha256_hex("gw-team-a-usage-cli-0123456789")
    );
    std::fs::write(&path, yaml).unwrap();
    let config = path.to_str().unwrap().to_string();
    let run = |key: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            common::run_cli(&["usage", "--key", key, "--config", &config], &[])
        })
    };
    let idle = run("team-a").await.unwrap();
    assert!(
        idle.status.success(),
        "{}",
        String::from_utf8_lossy(&idle.stderr)
    );
    for (key, says) in [
        ("team-aa", "no key is named `team-aa`"),
        ("", "name the key"),
    ] {
        let out = run(key).await.unwrap();
        assert!(!out.status.success(), "`{key}` was reported");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(says), "{said}");
        assert!(!said.contains("through the gateway"), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_asks_the_gateway_for_a_report_in_a_redis_it_cannot_reach() {
    // The gateway reaches its Redis; the host `aurora usage` runs on does not (here: a
    // config naming a port nothing listens on).
    let redis = RedisServer::start();
    let mock = MockUpstream::start(provider_like).await;
    let gw = replica(&mock, &redis, "{requests_per_minute: 100}", "");
    for _ in 0..2 {
        assert_eq!(chat(&gw).await.status(), 200);
    }
    let dir = common::scratch_dir();
    let path = dir.join("aurora.yaml");
    let unreachable = format!("redis://127.0.0.1:{}/0", common::closed_port());
    std::fs::write(&path, format!("limits:\n  store: {unreachable}\n")).unwrap();
    let listen = gw.metrics_listen();
    let config = path.to_str().unwrap().to_string();
    let alone = tokio::task::spawn_blocking(move || {
        common::run_cli(&["usage", "--key", "team-a", "--config", &config], &[])
    })
    .await
    .unwrap();
    assert!(!alone.status.success());
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(said.contains("cannot read the usage from Redis"), "{said}");
    let env = [
        ("AURORA_METRICS_LISTEN", listen.as_str()),
        ("AURORA_MASTER_KEY", MASTER),
    ];
    let printed = common::usage_cli::usage_printed(&path, &env, "team-a", 2).await;
    assert_eq!(printed["total"]["requests"], 2, "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_still_open_when_a_graceful_stop_ends_is_charged_before_the_process_exits() {
    // Whether the key holds a call slot (given back as the request is dropped) or not.
    for limits in [
        "{budget: {tokens: 100000, period: day}}",
        "{concurrent: 4, budget: {tokens: 100000, period: day}}",
    ] {
        let tokens = charged_for_a_stream_cut_at_stop(limits).await;
        assert!(tokens > 0, "{limits}: the cut stream was charged nothing");
    }
}

/// The tokens a key held to `limits` is charged for a stream its gateway cuts as it
/// stops. The provider streams some text, then holds the stream open. The gateway,
/// told to stop, cuts it once its grace period (1 s) is over: its request is dropped,
/// never ended, and is charged all the same (an estimate, as for a client that left),
/// written to Redis before the process exits.
async fn charged_for_a_stream_cut_at_stop(limits: &str) -> u64 {
    let redis = RedisServer::start();
    let chunk = r#"data: {"id":"c-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Bonjour, tout le monde: here is a long answer."}}]}"#;
    let mock = MockUpstream::start(move |_| {
        Reply::held_sse(vec![bytes::Bytes::from(format!("{chunk}\n\n"))])
    })
    .await;
    let extra = "server:\n  grace_period_seconds: 1\n";
    let mut gw = replica(&mock, &redis, limits, extra);
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(TEAM_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Bonjour"));
    gw.signal("TERM");
    let status = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(
        status.is_some(),
        "the gateway must exit after its grace period"
    );
    let budget = redis.keys("aurora:{key:team-a}:btok:*");
    let charged = budget.first().and_then(|key| redis.get(key));
    charged.as_deref().unwrap_or("0").parse().unwrap()
}
