//! Responses OpenAI makes and keeps itself (`POST /v1/responses` served natively with
//! the gateway's own key) are their maker's alone, as the responses the gateway
//! translates and stores are: another managed key reading, deleting, cancelling,
//! listing the input of, or continuing one is answered as for an unknown id, and
//! nothing reaches OpenAI; its maker reaches it at the provider that holds it; an id the
//! gateway has no record of is the master key's to forward, not a managed key's.

mod common;

use common::mock::openai_responses::{openai_responses, response_id_for};
use common::{client, sha256_hex, Gateway, MockUpstream, Recorded, Reply};
use serde_json::{json, Value};

const MASTER: &str = "gw-master-native-owners-0123456789ab";
const TEAM_A: &str = "aur_native_owners_team_a_0123456789abcdef";
const TEAM_B: &str = "aur_native_owners_team_b_0123456789abcdef";
const OAI_KEY: &str = "sk-oai-native-owners-test";

/// The two teams' keys, and `responses` settings; OpenAI at `mock` with the
/// gateway's key `openai_key`.
fn gateway_keyed(
    mock: &MockUpstream,
    responses: &str,
    providers: &str,
    openai_key: &str,
) -> Gateway {
    let yaml = format!(
        "auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n    - name: team-b\n      sha256: \"{}\"\n{responses}{providers}",
        sha256_hex(TEAM_A),
        sha256_hex(TEAM_B)
    );
    let base = mock.url("/v1");
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", openai_key),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    )
}

/// [`gateway_keyed`] with the gateway's own OpenAI key.
fn gateway(mock: &MockUpstream, responses: &str, providers: &str) -> Gateway {
    gateway_keyed(mock, responses, providers, OAI_KEY)
}

async fn create(gw: &Gateway, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A response made at OpenAI by `key`, whole: its id.
async fn made(gw: &Gateway, key: &str, input: &str) -> String {
    let resp = create(gw, key, json!({"model": "openai/gpt-4o", "input": input})).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// The four routes on a response by id, as `key` asks them: each one's status and body.
async fn by_id(gw: &Gateway, key: &str, id: &str) -> Vec<(String, u16, Value)> {
    let routes = [
        (reqwest::Method::GET, format!("/v1/responses/{id}")),
        (
            reqwest::Method::GET,
            format!("/v1/responses/{id}/input_items"),
        ),
        (reqwest::Method::POST, format!("/v1/responses/{id}/cancel")),
        (reqwest::Method::DELETE, format!("/v1/responses/{id}")),
    ];
    let mut answers = Vec::new();
    for (method, path) in routes {
        let mut request = client()
            .request(method.clone(), gw.url(&path))
            .bearer_auth(key);
        if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        answers.push((format!("{method} {path}"), status, body));
    }
    answers
}

/// The requests `mock` had for response `id`'s routes.
fn asked_of(mock: &MockUpstream, id: &str) -> Vec<Recorded> {
    let path = format!("/v1/responses/{id}");
    mock.requests()
        .into_iter()
        .filter(|r| r.path() == path || r.path().starts_with(&format!("{path}/")))
        .collect()
}

/// Asserts `answers` are each the 404 of an unknown id, as the gateway answers for
/// one it made and never stored.
fn assert_unknown(answers: &[(String, u16, Value)], id: &str) {
    for (route, status, body) in answers {
        assert_eq!(*status, 404, "{route}: {body}");
        assert_eq!(body["error"]["param"], "response_id", "{route}: {body}");
        assert_eq!(
            body["error"]["message"],
            format!("Response with id '{id}' not found."),
            "{route}: {body}"
        );
        assert!(!body.to_string().contains("secret"), "{route}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_keys_native_response_is_not_found_and_never_reaches_openai() {
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway(&mock, "", "");
    let whole = made(&gw, TEAM_A, "whole_a").await;
    let streamed = create(
        &gw,
        TEAM_A,
        json!({"model": "openai/gpt-4o", "input": "streamed_a", "stream": true}),
    )
    .await;
    assert_eq!(streamed.status(), 200);
    assert!(streamed
        .text()
        .await
        .unwrap()
        .contains("response.completed"));
    let background = create(
        &gw,
        TEAM_A,
        json!({"model": "openai/gpt-4o", "input": "background_a", "background": true}),
    )
    .await;
    assert_eq!(background.status(), 200);
    let ids = [
        whole,
        response_id_for("streamed_a"),
        response_id_for("background_a"),
    ];
    for id in &ids {
        // Team B and the master key alike: it is team A's.
        for key in [TEAM_B, MASTER] {
            assert_unknown(&by_id(&gw, key, id).await, id);
        }
        assert!(asked_of(&mock, id).is_empty(), "{id} reached OpenAI");
    }
    // Answered as a response the gateway made and never stored is.
    let never_stored = format!("resp_{}", "0123456789abcdef".repeat(2));
    assert_unknown(&by_id(&gw, TEAM_B, &never_stored).await, &never_stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_that_made_a_native_response_reads_lists_cancels_and_deletes_it_at_openai() {
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway(&mock, "", "");
    let whole = made(&gw, TEAM_A, "whole_a").await;
    let streamed = create(
        &gw,
        TEAM_A,
        json!({"model": "openai/gpt-4o", "input": "streamed_a", "stream": true}),
    )
    .await;
    assert!(streamed
        .text()
        .await
        .unwrap()
        .contains("response.completed"));
    for id in [whole, response_id_for("streamed_a")] {
        let answers = by_id(&gw, TEAM_A, &id).await;
        for (route, status, body) in &answers {
            assert_eq!(*status, 200, "{route}: {body}");
        }
        let asked = asked_of(&mock, &id);
        let routes: Vec<_> = asked
            .iter()
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect();
        assert_eq!(
            routes,
            [
                format!("GET /v1/responses/{id}"),
                format!("GET /v1/responses/{id}/input_items"),
                format!("POST /v1/responses/{id}/cancel"),
                format!("DELETE /v1/responses/{id}"),
            ]
        );
        for rec in &asked {
            assert_eq!(
                rec.header("authorization"),
                Some(format!("Bearer {OAI_KEY}").as_str())
            );
        }
        // Deleted at OpenAI, its record went with it: not asked again.
        let read = client()
            .get(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(TEAM_A)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 404);
        assert_eq!(asked_of(&mock, &id).len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_gateway_has_no_record_of_is_forwarded_for_the_master_key_alone() {
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway(&mock, "", "");
    // Made before the gateway kept records, or through `/p/openai`.
    let unrecorded = response_id_for("made_elsewhere");
    for key in [TEAM_A, TEAM_B] {
        assert_unknown(&by_id(&gw, key, &unrecorded).await, &unrecorded);
    }
    assert!(asked_of(&mock, &unrecorded).is_empty());
    for (route, status, body) in by_id(&gw, MASTER, &unrecorded).await {
        assert_eq!(status, 200, "{route}: {body}");
    }
    assert_eq!(asked_of(&mock, &unrecorded).len(), 4);
    // The master key's own are its own: not a managed key's to read.
    let masters = made(&gw, MASTER, "masters").await;
    assert_unknown(&by_id(&gw, TEAM_A, &masters).await, &masters);
    let read = client()
        .get(gw.url(&format!("/v1/responses/{masters}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_native_access_forwards_an_unrecorded_id_for_a_managed_key_but_never_anothers() {
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway(&mock, "responses:\n  native_access: open\n", "");
    let unrecorded = response_id_for("made_elsewhere");
    let read = client()
        .get(gw.url(&format!("/v1/responses/{unrecorded}")))
        .bearer_auth(TEAM_B)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let teams = made(&gw, TEAM_A, "team_a").await;
    assert_unknown(&by_id(&gw, TEAM_B, &teams).await, &teams);
    assert!(asked_of(&mock, &teams).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_keys_native_response_is_not_continued_and_its_maker_continues_it() {
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway(&mock, "", "");
    let teams = made(&gw, TEAM_A, "team_a").await;
    let unrecorded = response_id_for("made_elsewhere");
    let continued = |key: &'static str, previous: String, path: &'static str| {
        let gw = &gw;
        async move {
            client()
                .post(gw.url(path))
                .bearer_auth(key)
                .json(&json!({"model": "openai/gpt-4o", "input": "next", "previous_response_id": previous}))
                .send()
                .await
                .unwrap()
        }
    };
    let asked = mock.requests().len();
    for (key, previous) in [
        (TEAM_B, teams.clone()),
        (MASTER, teams.clone()),
        (TEAM_B, unrecorded.clone()),
    ] {
        for path in [
            "/v1/responses",
            "/v1/responses/compact",
            "/v1/responses/input_tokens",
        ] {
            let refused = continued(key, previous.clone(), path).await;
            assert_eq!(refused.status(), 400, "{path}");
            let err: Value = refused.json().await.unwrap();
            assert_eq!(err["error"]["param"], "previous_response_id", "{err}");
            assert_eq!(err["error"]["code"], "previous_response_not_found", "{err}");
            assert_eq!(
                err["error"]["message"],
                format!("Previous response with id '{previous}' not found.")
            );
        }
    }
    assert_eq!(mock.requests().len(), asked, "OpenAI was asked");
    // Its maker goes on, and the master key with an id it has no record of.
    for (key, previous) in [(TEAM_A, teams), (MASTER, unrecorded)] {
        let resp = continued(key, previous.clone(), "/v1/responses").await;
        assert_eq!(resp.status(), 200);
        let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
        assert_eq!(sent["previous_response_id"], previous.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_response_is_read_at_the_instance_that_made_it() {
    // Two OpenAI accounts: the response is kept by the one that answered, which is
    // not the one an unrecorded id would be asked of.
    let us = MockUpstream::start(|_| Reply::json(500, "{}")).await;
    let eu = MockUpstream::start(openai_responses).await;
    let providers = format!(
        "providers:\n  openai-eu:\n    type: openai\n    api_key: sk-oai-eu-native-owners\n    base_url: {}\n",
        eu.url("/v1")
    );
    let gw = gateway(&us, "", &providers);
    let resp = create(
        &gw,
        TEAM_A,
        json!({"model": "openai-eu/gpt-4o", "input": "in_europe"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = response_id_for("in_europe");
    let read = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(TEAM_A)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let asked = eu.last();
    assert_eq!(asked.uri, format!("/v1/responses/{id}"));
    assert_eq!(
        asked.header("authorization"),
        Some("Bearer sk-oai-eu-native-owners")
    );
    assert!(us.requests().is_empty(), "asked of the other account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_callers_own_openai_key_nothing_is_recorded_or_held_back() {
    // The provider account is the caller's own: OpenAI holds its responses to it.
    let mock = MockUpstream::start(openai_responses).await;
    let gw = gateway_keyed(&mock, "", "", "!PASSTHRU");
    let resp = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(TEAM_A)
        .header("x-provider-api-key", "sk-team-a-own-openai-key")
        .json(&json!({"model": "openai/gpt-4o", "input": "own_account"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = response_id_for("own_account");
    let read = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(TEAM_B)
        .header("x-provider-api-key", "sk-team-b-own-openai-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.status(),
        200,
        "OpenAI's to answer, with team B's own key"
    );
    assert_eq!(
        mock.last().header("authorization"),
        Some("Bearer sk-team-b-own-openai-key")
    );
}
