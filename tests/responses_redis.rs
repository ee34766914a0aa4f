//! Translated Responses API answers kept in Redis (`responses.store: redis`): a
//! conversation stored at one replica goes on, is read and is deleted at another;
//! each key keeps its own newest within the store's bounds; a Redis out of reach is a
//! 503, never a response not found; a write a graceful stop cut short is made before
//! the process exits.

mod common;

use std::time::{Duration, Instant};

use common::mock::openai_responses::{openai_responses, response_id_for};
use common::redis::{RedisServer, Relay};
use common::{client, fixture, sha256_hex, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-responses-redis-0123456789";
const TEAM_KEY: &str = "gw-team-responses-redis-0123456789";
const MODEL: &str = "anthropic:claude-sonnet-4-5";

/// Anthropic, whole or streamed as asked.
fn anthropic(rec: &Recorded) -> Reply {
    let streamed = String::from_utf8_lossy(&rec.body).contains(r#""stream":true"#);
    match rec.uri.as_str() {
        "/v1/messages" if String::from_utf8_lossy(&rec.body).contains("fail here") => Reply::json(
            500,
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
        ),
        "/v1/messages" if streamed => Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: fixture("anthropic/messages_stream.txt").into(),
        },
        "/v1/messages" => Reply::json(200, fixture("anthropic/messages.json")),
        uri if uri.starts_with("/v1/responses/") => {
            Reply::json(200, fixture("openai/responses.json"))
        }
        _ => Reply::json(404, "{}"),
    }
}

/// A replica keeping its Responses API answers in `redis`; `extra` goes under
/// `responses:`.
fn replica(mock: &MockUpstream, redis: &RedisServer, extra: &str) -> Gateway {
    replica_at(mock, &redis.url(), extra, "")
}

/// A replica keeping its Responses API answers in the Redis at `redis_url`; `extra`
/// goes under `responses:`, `top` at the top of the file.
fn replica_at(mock: &MockUpstream, redis_url: &str, extra: &str, top: &str) -> Gateway {
    let base = mock.url("/v1");
    let yaml = format!(
        "{top}limits:\n  store: {redis_url}\nresponses:\n  store: redis\n{extra}auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n",
        sha256_hex(TEAM_KEY),
    );
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("ANTHROPIC_API_KEY", "sk-ant-responses-redis"),
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", "sk-oai-responses-redis"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    )
}

async fn respond(gw: &Gateway, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A response made at `gw` by `key`: its id.
async fn stored(gw: &Gateway, key: &str, input: &str) -> String {
    let resp = respond(gw, key, json!({"model": MODEL, "input": input})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

async fn delete(gw: &Gateway, key: &str, id: &str) -> reqwest::Response {
    client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn read(gw: &Gateway, key: &str, id: &str) -> reqwest::Response {
    client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_stored_at_one_replica_goes_on_is_read_and_deleted_at_another() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let (a, b) = (replica(&mock, &redis, ""), replica(&mock, &redis, ""));
    let first = respond(
        &a,
        MASTER,
        json!({"model": MODEL, "input": "first question"}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();

    // The next turn reaches the other replica, streamed.
    let second = respond(
        &b,
        MASTER,
        json!({"model": MODEL, "input": "second question", "previous_response_id": id,
            "stream": true}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let text = second.text().await.unwrap();
    assert!(text.contains("response.completed"), "{text}");
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[0]["content"][0]["text"], "first question");
    assert_eq!(messages[1]["role"], "assistant");

    let read_at_b = read(&b, MASTER, &id).await;
    assert_eq!(read_at_b.status(), 200);
    assert_eq!(read_at_b.json::<Value>().await.unwrap(), first);
    // Another key's is not found, as at a provider.
    assert_eq!(read(&b, TEAM_KEY, &id).await.status(), 404);

    assert_eq!(delete(&b, MASTER, &id).await.status(), 200);
    assert_eq!(read(&a, MASTER, &id).await.status(), 404);
    assert!(redis.keys(&format!("aurora:resp:{id}")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_stores_bounds_the_key_holding_most_loses_its_oldest_and_no_other_keys() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "  store_max_entries: 3\n");
    let theirs = stored(&gw, TEAM_KEY, "the team's").await;
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(stored(&gw, MASTER, &format!("turn {n}")).await);
    }
    // Written as each answer ends: a read waits for one still under way.
    assert_eq!(read(&gw, MASTER, &mine[2]).await.status(), 200);
    assert_eq!(
        read(&gw, MASTER, &mine[0]).await.status(),
        404,
        "the oldest went"
    );
    assert_eq!(read(&gw, MASTER, &mine[1]).await.status(), 200);
    assert_eq!(read(&gw, TEAM_KEY, &theirs).await.status(), 200);
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 2);
    assert_eq!(redis.hgetall("aurora:resps:totals")["entries"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_give_back_what_a_deleted_response_held() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "");
    let first = stored(&gw, MASTER, "first").await;
    assert_eq!(read(&gw, MASTER, &first).await.status(), 200);
    let held = redis.hgetall("aurora:resps:totals");
    let one: u64 = held["bytes"].parse().unwrap();
    assert!(one > 0, "{held:?}");
    assert_eq!(held["entries"], "1");
    let second = stored(&gw, MASTER, "first").await;
    assert_eq!(read(&gw, MASTER, &second).await.status(), 200);
    for id in [&first, &second] {
        assert_eq!(delete(&gw, MASTER, id).await.status(), 200);
    }
    let held = redis.hgetall("aurora:resps:totals");
    assert_eq!(
        (held["bytes"].as_str(), held["entries"].as_str()),
        ("0", "0")
    );
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_reach_is_a_503_not_a_response_not_found() {
    let mut redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "");
    let id = stored(&gw, MASTER, "first").await;
    assert_eq!(read(&gw, MASTER, &id).await.status(), 200);
    redis.stop();
    let unreached = read(&gw, MASTER, &id).await;
    assert_eq!(unreached.status(), 503);
    let continued = respond(
        &gw,
        MASTER,
        json!({"model": MODEL, "input": "more", "previous_response_id": id}),
    )
    .await;
    assert_eq!(continued.status(), 503);
    let said: Value = continued.json().await.unwrap();
    assert_eq!(
        said["error"]["code"], "response_store_unavailable",
        "{said}"
    );

    // A response OpenAI keeps itself goes there only for its owner, whom the store
    // names: out of reach, it is a 503 too, and OpenAI is not asked.
    let native = format!("resp_{}", "0a".repeat(24));
    let asked = mock.requests().len();
    let read_there = read(&gw, MASTER, &native).await;
    assert_eq!(read_there.status(), 503);
    assert_eq!(mock.requests().len(), asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_gone_idle_holds_no_place_past_its_responses_time() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "  store_max_entries: 2\n  store_ttl: 2s\n");
    let wait = |ms| tokio::time::sleep(std::time::Duration::from_millis(ms));
    stored(&gw, TEAM_KEY, "the team's").await;
    wait(1200).await;
    // Written while the team's still holds its place, and kept past its time.
    let first = stored(&gw, MASTER, "one").await;
    wait(1200).await;
    // The team's has expired, its key storing nothing more: the place is free.
    let second = stored(&gw, MASTER, "two").await;
    for id in [&first, &second] {
        assert_eq!(read(&gw, MASTER, id).await.status(), 200, "{id}");
    }
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_ends_without_an_answer_leaves_no_mark_to_wait_on() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "");
    let failed = respond(&gw, MASTER, json!({"model": MODEL, "input": "fail here"})).await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !redis.keys("aurora:resps:under_way:*").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the mark of a call that failed is kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A call that completes leaves none either: its write clears it.
    let id = stored(&gw, MASTER, "first").await;
    assert_eq!(read(&gw, MASTER, &id).await.status(), 200);
    assert!(redis.keys("aurora:resps:under_way:*").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_is_read_back_in_one_call_not_one_per_turn() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let (a, b) = (replica(&mock, &redis, ""), replica(&mock, &redis, ""));
    let mut previous = stored(&a, MASTER, "turn 0").await;
    for n in 1..6 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let resp = respond(
            gw,
            MASTER,
            json!({"model": MODEL, "input": format!("turn {n}"), "previous_response_id": previous}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        previous = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let reads_before = redis.calls("exists");
    let last = respond(
        &b,
        MASTER,
        json!({"model": MODEL, "input": "turn 6", "previous_response_id": previous}),
    )
    .await;
    assert_eq!(last.status(), 200);
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    // Seven turns asked, six answered, one asked now.
    assert_eq!(sent["messages"].as_array().unwrap().len(), 13, "{sent}");
    // The newest link alone is read by itself (its read checks for a write under
    // way); the six before it come in one call.
    assert_eq!(redis.calls("exists") - reads_before, 1);
}

/// How long the provider takes to answer in the tests of writes cut short: the
/// response is marked under way well before its answer is written.
const ANSWER_AFTER: Duration = Duration::from_millis(800);

/// How long after its mark is seen in Redis Redis's answer to it has surely reached the
/// gateway (through a relay too): what holds up the write then leaves the mark alone.
const MARK_ANSWERED: Duration = Duration::from_millis(200);

/// Anthropic, answering [`ANSWER_AFTER`] the call.
fn slow_anthropic(rec: &Recorded) -> Reply {
    Reply::Delayed(ANSWER_AFTER, Box::new(anthropic(rec)))
}

/// Waits until `done` holds, for a few seconds at most.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The id of a response made at `gw`, its write held up: once the call is marked as
/// under way and the mark answered (and before its answer comes), `hold_up` runs.
async fn answered_with_write_held_up(
    gw: &Gateway,
    redis: &RedisServer,
    input: &str,
    hold_up: impl FnOnce(),
) -> String {
    let call = respond(gw, MASTER, json!({"model": MODEL, "input": input}));
    let held_up = async {
        until("the call's mark", || {
            !redis.keys("aurora:resps:under_way:*").is_empty()
        })
        .await;
        tokio::time::sleep(MARK_ANSWERED).await;
        hold_up();
    };
    let (resp, ()) = tokio::join!(call, held_up);
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// What the store's books say it holds: entries and bytes.
fn books(redis: &RedisServer) -> (u64, u64) {
    let totals = redis.hgetall("aurora:resps:totals");
    let field = |name: &str| totals.get(name).map_or(0, |v| v.parse().unwrap());
    (field("entries"), field("bytes"))
}

/// The bytes the response `id` holds, as its hash says.
fn size_of(redis: &RedisServer, id: &str) -> u64 {
    redis.hgetall(&format!("aurora:resp:{id}"))["size"]
        .parse()
        .unwrap()
}

/// A gateway told to stop, and its exit waited for.
async fn stopped(mut gw: Gateway) -> (Gateway, std::process::ExitStatus) {
    gw.signal("TERM");
    tokio::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(20));
        let status = status.expect("the gateway exits after its grace period and the exit write");
        (gw, status)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_write_a_graceful_stop_cut_short_is_written_before_the_process_exits() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(slow_anthropic).await;
    let fast_stop = "server:\n  grace_period_seconds: 1\n";
    let gw = replica_at(&mock, &redis.url(), "", fast_stop);
    // Redis takes no write from the moment the call is marked: the answer's write waits.
    let id = answered_with_write_held_up(&gw, &redis, "first question", || {
        redis.run(&["CLIENT", "PAUSE", "30000", "WRITE"]);
    })
    .await;
    gw.signal("TERM");
    // Redis answers again only once the server's runtimes are gone, and with them the
    // write they were making.
    gw.wait_for_log("All runtimes exited", 1).await;
    redis.run(&["CLIENT", "UNPAUSE"]);
    let (gw, status) = stopped(gw).await;
    assert!(status.success(), "{status}");

    // The client's next turn reaches another replica (or the next process).
    let other = replica(&mock, &redis, "");
    let read_there = read(&other, MASTER, &id).await;
    assert_eq!(read_there.status(), 200, "{}", gw.log());
    assert_eq!(read_there.json::<Value>().await.unwrap()["id"], id.as_str());
    let next = respond(
        &other,
        MASTER,
        json!({"model": MODEL, "input": "second question", "previous_response_id": id}),
    )
    .await;
    assert_eq!(next.status(), 200);
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][0]["content"][0]["text"], "first question");
    let next_id = next.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(read(&other, MASTER, &next_id).await.status(), 200);

    // Counted once each in the books, and no mark left to wait on.
    assert_eq!(
        books(&redis),
        (2, size_of(&redis, &id) + size_of(&redis, &next_id))
    );
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 2);
    assert!(redis.keys("aurora:resps:under_way:*").is_empty());
    assert!(
        gw.log()
            .contains("Responses API answers written to Redis at exit: 1"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_short_and_not_made_at_exit_in_time_is_said_by_its_count_alone() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(slow_anthropic).await;
    let gw = replica_at(
        &mock,
        &redis.url(),
        "",
        "server:\n  grace_period_seconds: 1\n",
    );
    let input = "a question that is never logged";
    let id = answered_with_write_held_up(&gw, &redis, input, || {
        redis.run(&["CLIENT", "PAUSE", "30000", "WRITE"]);
    })
    .await;
    let started = Instant::now();
    let (gw, status) = stopped(gw).await;
    assert!(status.success(), "{status}");
    // One grace second, then the exit's own bound (5 s), not more.
    assert!(started.elapsed() < Duration::from_secs(15));
    redis.run(&["CLIENT", "UNPAUSE"]);
    let log = gw.log();
    let said = "Responses API answers not written to Redis at exit within 5s: 1;";
    assert_eq!(log.matches(said).count(), 1, "{log}");
    for secret in [input, MASTER, "sk-ant-responses-redis", id.as_str()] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_twice_counts_once_in_the_books() {
    // Whether its hash is still there when the write is made again, or gone (evicted).
    for hash_gone in [false, true] {
        let redis = RedisServer::start();
        let relay = Relay::start(redis.port).await;
        let mock = MockUpstream::start(slow_anthropic).await;
        let gw = replica_at(&mock, &relay.url(), "", "");
        // Written as usual first: Redis holds the writing script from then on.
        let first = stored(&gw, MASTER, "first").await;
        assert_eq!(read(&gw, MASTER, &first).await.status(), 200);
        // Redis makes the next write, and its answer is lost: the write is made again
        // on a connection made anew.
        let id = answered_with_write_held_up(&gw, &redis, "second", || relay.mute()).await;
        let key = format!("aurora:resp:{id}");
        until("the first try's write", || !redis.keys(&key).is_empty()).await;
        if hash_gone {
            redis.run(&["DEL", &key]);
            until("the write made again", || !redis.keys(&key).is_empty()).await;
        } else {
            // A field the write made again clears, as it writes the hash anew.
            redis.run(&["HSET", &key, "probe", "1"]);
            until("the write made again", || {
                !redis.hgetall(&key).contains_key("probe")
            })
            .await;
        }
        assert_eq!(
            books(&redis),
            (2, size_of(&redis, &first) + size_of(&redis, &id)),
            "hash gone: {hash_gone}"
        );
        assert_eq!(redis.zcard("aurora:resps:ids:master"), 2);
        assert_eq!(redis.zcard("aurora:resps:expiries"), 2);
        assert_eq!(read(&gw, MASTER, &id).await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_deleted_before_its_write_is_made_again_stays_deleted() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let mock = MockUpstream::start(slow_anthropic).await;
    let gw = replica_at(&mock, &relay.url(), "", "");
    let other = replica(&mock, &redis, "");
    // Written as usual first: Redis holds the writing script from then on.
    let first = stored(&gw, MASTER, "first").await;
    // Redis makes the next write, and its answer is lost: the write is made again a
    // moment later, on a connection made anew.
    let id = answered_with_write_held_up(&gw, &redis, "second", || relay.mute()).await;
    let key = format!("aurora:resp:{id}");
    until("the first try's write", || !redis.keys(&key).is_empty()).await;
    // Meanwhile the client, its answer in hand, deletes the response at another replica.
    assert_eq!(delete(&other, MASTER, &id).await.status(), 200);
    // Made again on a connection of its own, the gateway's last ones being lost.
    let before = redis.connections_last_running("evalsha");
    until("the write made again", || {
        redis
            .connections_last_running("evalsha")
            .iter()
            .any(|c| !before.contains(c))
    })
    .await;
    assert!(
        redis.keys(&key).is_empty(),
        "the deleted response came back"
    );
    assert_eq!(read(&other, MASTER, &id).await.status(), 404);
    assert_eq!(books(&redis), (1, size_of(&redis, &first)));
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 1);
}

/// The id of the turn `key` makes at `gw` continuing `previous`, which it must rebuild.
async fn continued(gw: &Gateway, key: &str, previous: &str, input: &str) -> String {
    let resp = respond(
        gw,
        key,
        json!({"model": MODEL, "input": input, "previous_response_id": previous}),
    )
    .await;
    assert_eq!(resp.status(), 200, "continuing {previous}");
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_continued_within_the_ttl_outlives_its_first_turns_own() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "  store_ttl: 2s\n");
    let wait = |ms| tokio::time::sleep(Duration::from_millis(ms));
    let first = stored(&gw, MASTER, "first question").await;
    wait(1200).await;
    let second = continued(&gw, MASTER, &first, "second question").await;
    // The first turn's own time is over by now; the second renewed it.
    wait(1200).await;
    continued(&gw, MASTER, &second, "third question").await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][0]["content"][0]["text"], "first question");
    assert_eq!(read(&gw, MASTER, &first).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_stores_bound_idle_responses_go_before_the_first_turn_of_a_conversation_in_use() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(anthropic).await;
    let gw = replica(&mock, &redis, "  store_max_entries: 3\n");
    let first = stored(&gw, MASTER, "first question").await;
    let idle = [
        stored(&gw, MASTER, "idle one").await,
        stored(&gw, MASTER, "idle two").await,
    ];
    // The store is full as the conversation goes on: not at the expense of its root.
    let second = continued(&gw, MASTER, &first, "second question").await;
    let newest = stored(&gw, MASTER, "another").await;
    assert_eq!(read(&gw, MASTER, &newest).await.status(), 200);
    for id in &idle {
        assert_eq!(read(&gw, MASTER, id).await.status(), 404, "{id} stays");
    }
    for id in [&first, &second] {
        assert_eq!(read(&gw, MASTER, id).await.status(), 200, "{id} went");
    }
    // Each renewed, still counted once.
    assert_eq!(
        books(&redis),
        (
            3,
            size_of(&redis, &first) + size_of(&redis, &second) + size_of(&redis, &newest)
        )
    );
    assert_eq!(redis.zcard("aurora:resps:ids:master"), 3);
    assert_eq!(redis.zcard("aurora:resps:expiries"), 3);
    continued(&gw, MASTER, &second, "third question").await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["messages"][0]["content"][0]["text"], "first question");
}

const OTHER_TEAM_KEY: &str = "gw-other-team-responses-redis-0123456789";

/// A replica keeping its Responses API answers in `redis`, OpenAI at `mock` with the
/// gateway's key, two teams' keys.
fn native_replica(mock: &MockUpstream, redis: &RedisServer) -> Gateway {
    let yaml = format!(
        "limits:\n  store: {}\nresponses:\n  store: redis\nauth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n    - name: team-b\n      sha256: \"{}\"\n",
        redis.url(),
        sha256_hex(TEAM_KEY),
        sha256_hex(OTHER_TEAM_KEY),
    );
    let base = mock.url("/v1");
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-responses-redis"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    )
}

/// `GET`s and `DELETE`s of `id` that reached `mock`.
fn asked_for(mock: &MockUpstream, id: &str) -> usize {
    let path = format!("/v1/responses/{id}");
    mock.requests().iter().filter(|r| r.path() == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_responses_owner_recorded_at_one_replica_holds_at_another() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(openai_responses).await;
    let (a, b) = (native_replica(&mock, &redis), native_replica(&mock, &redis));
    let whole = respond(
        &a,
        TEAM_KEY,
        json!({"model": "openai/gpt-4o", "input": "whole_at_a"}),
    )
    .await;
    assert_eq!(whole.status(), 200);
    let streamed = respond(
        &b,
        TEAM_KEY,
        json!({"model": "openai/gpt-4o", "input": "streamed_at_b", "stream": true}),
    )
    .await;
    assert!(streamed
        .text()
        .await
        .unwrap()
        .contains("response.completed"));
    let (whole, streamed) = (
        response_id_for("whole_at_a"),
        response_id_for("streamed_at_b"),
    );
    for (gw, id) in [(&b, &whole), (&a, &streamed)] {
        // Another team's, at the replica that did not make it: not found, not asked.
        assert_eq!(read(gw, OTHER_TEAM_KEY, id).await.status(), 404);
        assert_eq!(delete(gw, OTHER_TEAM_KEY, id).await.status(), 404);
        let continued = respond(
            gw,
            OTHER_TEAM_KEY,
            json!({"model": "openai/gpt-4o", "input": "next", "previous_response_id": id}),
        )
        .await;
        assert_eq!(continued.status(), 400);
        assert_eq!(asked_for(&mock, id), 0, "{id} reached OpenAI");
        // Its team's, read there.
        assert_eq!(read(gw, TEAM_KEY, id).await.status(), 200);
        assert_eq!(asked_for(&mock, id), 1);
    }
    // Kept as long as OpenAI keeps the response: 30 days.
    let record = format!("aurora:resps:native:{whole}");
    let ttl = redis.ttl(&record);
    assert!(ttl > 29 * 24 * 3600 && ttl <= 30 * 24 * 3600, "{ttl}");
    assert!(
        !redis.get(&record).unwrap().contains("sk-"),
        "no key in the record"
    );
    // Deleted at OpenAI by its team, its record goes too.
    assert_eq!(delete(&b, TEAM_KEY, &whole).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis.keys(&record).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        redis.keys(&record).is_empty(),
        "the record outlived its response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_out_of_reach_a_native_read_is_a_503_and_a_create_is_answered_and_counted() {
    let mut redis = RedisServer::start();
    let mock = MockUpstream::start(openai_responses).await;
    let gw = native_replica(&mock, &redis);
    let made = respond(
        &gw,
        TEAM_KEY,
        json!({"model": "openai/gpt-4o", "input": "before"}),
    )
    .await;
    assert_eq!(made.status(), 200);
    let id = response_id_for("before");
    // Its record written (after the answer: it is a whole one) before Redis goes.
    let record = format!("aurora:resps:native:{id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.get(&record).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(redis.get(&record).is_some(), "never recorded");
    redis.stop();
    let asked = mock.requests().len();
    let unreached = read(&gw, TEAM_KEY, &id).await;
    assert_eq!(unreached.status(), 503);
    let said: Value = unreached.json().await.unwrap();
    assert_eq!(
        said["error"]["code"], "response_store_unavailable",
        "{said}"
    );
    let continued = respond(
        &gw,
        TEAM_KEY,
        json!({"model": "openai/gpt-4o", "input": "next", "previous_response_id": id}),
    )
    .await;
    assert_eq!(continued.status(), 503);
    assert_eq!(mock.requests().len(), asked, "OpenAI was asked");
    // A create is answered all the same; its owner, unrecorded, is counted.
    let made = respond(
        &gw,
        TEAM_KEY,
        json!({"model": "openai/gpt-4o", "input": "during"}),
    )
    .await;
    assert_eq!(made.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client()
            .get(gw.url("/metrics"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("\naurora_response_owners_unrecorded_total 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.log();
    assert!(log.contains("was not recorded"), "{log}");
    assert!(!log.contains("sk-oai-responses-redis"));
}
