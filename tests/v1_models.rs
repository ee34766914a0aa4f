//! `/v1/models` and `/v1/models/{id}` through the gateway: every configured provider's
//! models as `provider/model` ids, one provider being down or silent never failing or
//! stalling the listing.

mod common;

use std::time::{Duration, Instant};

use common::{client, closed_port, Gateway, MockUpstream, Reply};
use serde_json::Value;

const MASTER: &str = "gw-master-models-test-0123456789";

async fn listing_gateway() -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start(|rec| {
        if rec.uri == "/v1/models" {
            Reply::json(
                200,
                r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#,
            )
        } else {
            Reply::json(404, "{}")
        }
    })
    .await;
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let yaml = format!(
        "
models:
  aliases:
    fast: anthropic/claude-haiku-4-5
providers:
  openai: {{api_key: sk-oai-models-test, base_url: '{live}'}}
  groq: {{api_key: sk-groq-models-test, base_url: '{closed}'}}
  anthropic: {{api_key: sk-ant-models-test, base_url: '{closed}', models: [claude-haiku-4-5, claude-sonnet-4-5]}}
",
        live = mock.url("/v1"),
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    (mock, gw)
}

async fn get(gw: &Gateway, path: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_every_provider_as_prefixed_ids_despite_one_being_down() {
    let (mock, gw) = listing_gateway().await;
    let resp = get(&gw, "/v1/models").await;
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            m["id"].as_str().unwrap()
        })
        .collect();
    for id in [
        "openai/gpt-4o",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-5",
        "fast",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(!ids.iter().any(|id| id.starts_with("groq/")));
    // The provider list was fetched with the provider's key, never the gateway's.
    let rec = mock.last();
    assert_eq!(
        rec.header("authorization"),
        Some("Bearer sk-oai-models-test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_by_id_describes_listed_and_routable_models_and_404s_the_rest() {
    let (_mock, gw) = listing_gateway().await;
    let listed: Value = get(&gw, "/v1/models/openai/gpt-4o")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["id"], "openai/gpt-4o");
    assert_eq!(listed["owned_by"], "openai");
    let routable: Value = get(&gw, "/v1/models/claude-opus-4-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(routable["id"], "claude-opus-4-1");
    assert_eq!(routable["owned_by"], "anthropic");
    let missing = get(&gw, "/v1/models/no-such-model").await;
    assert_eq!(missing.status(), 404);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["type"], "not_found_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_need_the_gateway_key() {
    let (mock, gw) = listing_gateway().await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(mock.requests().is_empty());
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_delays_only_the_first_listing() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/v1", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mock = MockUpstream::start(|_| {
        Reply::json(
            200,
            r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#,
        )
    })
    .await;
    let yaml = format!(
        "
providers:
  openai: {{api_key: sk-oai-models-test, base_url: '{live}'}}
  groq: {{api_key: sk-groq-models-test, base_url: '{silent_url}'}}
",
        live = mock.url("/v1"),
    );
    let gw = Gateway::start(&yaml, &[("AURORA_MASTER_KEY", MASTER)]);
    let started = Instant::now();
    let first = get(&gw, "/v1/models").await;
    let waited = started.elapsed();
    assert_eq!(first.status(), 200);
    // The gateway answers within its 2 s budget, not after the 5 s fetch timeout
    // (bounds with a wide margin: they prove the behaviour, not a speed).
    assert!(
        waited < Duration::from_secs(4),
        "first listing took {waited:?}"
    );
    let first: Value = first.json().await.unwrap();
    assert_eq!(listed_ids(&first), ["openai/gpt-4o"]);
    let started = Instant::now();
    let second = get(&gw, "/v1/models").await;
    let waited = started.elapsed();
    assert_eq!(second.status(), 200);
    assert!(
        waited < Duration::from_millis(1500),
        "second listing took {waited:?}"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(listed_ids(&second), ["openai/gpt-4o"]);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_provider_key_lists_its_models_at_once() {
    // The provider refuses the revoked key and lists for the new one.
    let mock = MockUpstream::start(|rec| {
        if rec.header("authorization") == Some("Bearer sk-oai-new-key") {
            Reply::json(
                200,
                r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#,
            )
        } else {
            Reply::json(401, r#"{"error":{"message":"revoked"}}"#)
        }
    })
    .await;
    let yaml = |key: &str| {
        format!(
            "providers:\n  openai: {{api_key: {key}, base_url: '{}'}}\n",
            mock.url("/v1")
        )
    };
    let gw = Gateway::start(&yaml("sk-oai-revoked"), &[("AURORA_MASTER_KEY", MASTER)]);
    let list: Value = get(&gw, "/v1/models").await.json().await.unwrap();
    assert!(
        !listed_ids(&list).contains(&"openai/gpt-4o".to_string()),
        "{list}"
    );
    gw.write_config(&yaml("sk-oai-new-key"));
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    let list: Value = get(&gw, "/v1/models").await.json().await.unwrap();
    assert!(
        listed_ids(&list).contains(&"openai/gpt-4o".to_string()),
        "the refusal of the replaced key is not kept: {list}"
    );
}
