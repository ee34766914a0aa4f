//! `GET /metrics`: Prometheus text behind the gateway key, counting requests by route,
//! provider, status and caller, where a caller's own provider key shows only as a hash.

mod common;

use common::{client, Gateway, MockUpstream, Reply};

const MASTER: &str = "gw-master-metrics-test";
const CLIENT_PROVIDER_KEY: &str = "sk-client-own-metrics-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_name_passthru_callers_by_hash_only() {
    let mock = MockUpstream::start(|_| Reply::json(200, r#"{"ok":true}"#)).await;
    let base = mock.url("/v1");
    let gw = Gateway::start(
        "",
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "!PASSTHRU"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let c = client();
    for _ in 0..3 {
        let resp = c
            .get(gw.url("/p/openai/models"))
            .bearer_auth(MASTER)
            .header("x-provider-api-key", CLIENT_PROVIDER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        c.get(gw.url("/metrics")).send().await.unwrap().status(),
        401
    );
    let resp = c
        .get(gw.url("/metrics"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let label = aurora::proxy::provider_key::passthru_label(CLIENT_PROVIDER_KEY);
    let line = format!(
        r#"aurora_requests_total{{caller="master+{label}",provider="openai",route="passthrough",status="200"}} 3"#
    );
    assert!(text.contains(&line), "{text}");
    assert!(text.contains("aurora_request_duration_seconds_bucket"));
    assert!(!text.contains(CLIENT_PROVIDER_KEY));
    assert!(!text.contains(MASTER));
}
