//! The model directory against mock providers on loopback: fetched lists come back
//! prefixed, configured lists and aliases join them, broken providers contribute
//! nothing, fetched lists and failures are cached, and a listing never waits past its
//! answer budget.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora::config::{build_config, Config, EnvSnapshot};
use aurora::proxy::model_directory::{DirectoryLimits, ModelDirectory, ModelEntry, ALIAS_OWNER};
use aurora::proxy::UpstreamResolver;
use common::tls::TestPki;
use common::{closed_port, scratch_dir, MockUpstream, Reply};

const LIVE_KEY: &str = "sk-live-provider-test";
const MODELS_JSON: &str = r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"o3-mini","object":"model"}]}"#;

/// A mock that answers `GET /v1/models` with [`MODELS_JSON`] after `delay`.
async fn models_mock(delay: Duration) -> MockUpstream {
    MockUpstream::start(move |rec| {
        let reply = if rec.uri.starts_with("/v1/models") {
            Reply::json(200, MODELS_JSON)
        } else {
            Reply::json(404, r#"{"error":"no such path"}"#)
        };
        Reply::Delayed(delay, Box::new(reply))
    })
    .await
}

fn config(yaml: &str) -> Config {
    build_config(
        Some(yaml),
        None,
        // A loopback listener: these providers hold keys and the gateway has none.
        &EnvSnapshot::from_pairs([("AURORA_LISTEN", "127.0.0.1:8080")]),
    )
    .unwrap()
}

fn ids(entries: &[ModelEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn owner<'a>(entries: &'a [ModelEntry], id: &str) -> &'a str {
    &entries.iter().find(|e| e.id == id).unwrap().owned_by
}

/// `live` fetches from `mock`, `down` points at a closed port, `listed` has a
/// `models:` list (and a closed port, so it must never be asked), `nokey` lacks its key.
fn mixed_config(mock: &MockUpstream) -> Config {
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    config(&format!(
        "
models:
  aliases:
    fast: listed/claude-haiku-4-5
providers:
  live: {{type: openai, api_key: {LIVE_KEY}, base_url: '{live}'}}
  down: {{type: openai, api_key: sk-down-test, base_url: '{closed}'}}
  listed:
    type: anthropic
    api_key: sk-listed-test
    base_url: '{closed}'
    models: [claude-sonnet-4-5, claude-haiku-4-5]
  nokey: {{type: openai, base_url: '{live}'}}
",
        live = mock.url("/v1"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_joins_fetched_configured_and_alias_ids_and_skips_broken_providers() {
    let mock = models_mock(Duration::ZERO).await;
    let config = mixed_config(&mock);
    let entries = ModelDirectory::new()
        .list(&config, &UpstreamResolver::default())
        .await;
    assert_eq!(
        ids(&entries),
        vec![
            "fast",
            "listed/claude-haiku-4-5",
            "listed/claude-sonnet-4-5",
            "live/gpt-4o",
            "live/o3-mini",
        ]
    );
    assert_eq!(owner(&entries, "live/gpt-4o"), "live");
    assert_eq!(owner(&entries, "listed/claude-sonnet-4-5"), "listed");
    assert_eq!(owner(&entries, "fast"), ALIAS_OWNER);
    // Only `live` was asked: `nokey` shares the mock but has no key.
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let rec = &requests[0];
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.uri, "/v1/models");
    assert_eq!(
        rec.header("authorization"),
        Some(format!("Bearer {LIVE_KEY}").as_str())
    );
    assert_eq!(rec.header("host"), Some(mock.addr.to_string().as_str()));
    assert!(rec.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_listing_within_the_ttl_does_not_ask_the_provider_again() {
    let mock = models_mock(Duration::ZERO).await;
    let config = mixed_config(&mock);
    let directory = ModelDirectory::new();
    let resolver = UpstreamResolver::default();
    let first = directory.list(&config, &resolver).await;
    // A clone shares the cache.
    let second = directory.clone().list(&config, &resolver).await;
    assert_eq!(first, second);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_cache_entries_are_fetched_again() {
    let mock = models_mock(Duration::ZERO).await;
    let config = mixed_config(&mock);
    let directory = ModelDirectory::with_limits(DirectoryLimits {
        list_ttl: Duration::from_millis(100),
        ..DirectoryLimits::default()
    });
    let resolver = UpstreamResolver::default();
    directory.list(&config, &resolver).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let entries = directory.list(&config, &resolver).await;
    assert!(ids(&entries).contains(&"live/gpt-4o"));
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_contribute_nothing_and_are_remembered() {
    let mock = MockUpstream::start(|_| Reply::json(500, r#"{"error":"boom"}"#)).await;
    let config = config(&format!(
        "providers:\n  flaky: {{type: groq, api_key: sk-flaky-test, base_url: '{}'}}\n",
        mock.url("/openai/v1")
    ));
    let directory = ModelDirectory::new();
    let resolver = UpstreamResolver::default();
    assert!(directory.list(&config, &resolver).await.is_empty());
    assert!(directory.list(&config, &resolver).await.is_empty());
    // The failure is cached like a list: the provider was asked once.
    assert_eq!(mock.requests().len(), 1);
    assert_eq!(mock.last().uri, "/openai/v1/models");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_provider_comes_back_after_the_failure_period() {
    // Fails the first time it is asked, answers its list from then on.
    let asked = Arc::new(AtomicUsize::new(0));
    let mock = {
        let asked = Arc::clone(&asked);
        MockUpstream::start(move |_| {
            if asked.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::json(503, r#"{"error":"overloaded"}"#)
            } else {
                Reply::json(200, MODELS_JSON)
            }
        })
        .await
    };
    let config = config(&format!(
        "providers:\n  flaky: {{type: openai, api_key: sk-flaky-test, base_url: '{}'}}\n",
        mock.url("/v1")
    ));
    let failure_ttl = Duration::from_millis(300);
    let directory = ModelDirectory::with_limits(DirectoryLimits {
        failure_ttl,
        ..DirectoryLimits::default()
    });
    let resolver = UpstreamResolver::default();
    assert!(directory.list(&config, &resolver).await.is_empty());
    // Within the failure period the provider is left out without being asked.
    assert!(directory.list(&config, &resolver).await.is_empty());
    assert_eq!(mock.requests().len(), 1);
    tokio::time::sleep(failure_ttl + Duration::from_millis(200)).await;
    let entries = directory.list(&config, &resolver).await;
    assert_eq!(ids(&entries), vec!["flaky/gpt-4o", "flaky/o3-mini"]);
    assert_eq!(mock.requests().len(), 2);
}

/// A loopback listener that accepts connections and never says a word; the sockets
/// stay open until the test ends.
async fn silent_provider() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_provider_costs_one_wait_within_the_answer_budget() {
    let (silent, _listener) = silent_provider().await;
    let fast = models_mock(Duration::ZERO).await;
    let config = config(&format!(
        "providers:\n  silent: {{type: openai, api_key: sk-silent-test, base_url: '{silent}'}}\n  fast: {{type: openai, api_key: sk-fast-test, base_url: '{}'}}\n",
        fast.url("/v1")
    ));
    let directory = ModelDirectory::new();
    let resolver = UpstreamResolver::default();
    let started = Instant::now();
    let first = directory.list(&config, &resolver).await;
    // The 2 s budget, not the 5 s fetch timeout (bounds with a wide margin).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ids(&first), vec!["fast/gpt-4o", "fast/o3-mini"]);
    // The fetch still runs in the background; the next listing does not wait for it.
    let started = Instant::now();
    let second = directory.list(&config, &resolver).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first, second);
    // Nor once the fetch has timed out: the failure is remembered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = Instant::now();
    let third = directory.list(&config, &resolver).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first, third);
    assert_eq!(fast.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_fills_the_cache_for_the_next_listing() {
    let late = models_mock(Duration::from_millis(1500)).await;
    let config = config(&format!(
        "providers:\n  late: {{type: openai, api_key: sk-late-test, base_url: '{}'}}\n",
        late.url("/v1")
    ));
    let directory = ModelDirectory::with_limits(DirectoryLimits {
        answer_within: Duration::from_millis(300),
        ..DirectoryLimits::default()
    });
    let resolver = UpstreamResolver::default();
    assert!(directory.list(&config, &resolver).await.is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entries = directory.list(&config, &resolver).await;
    assert_eq!(ids(&entries), vec!["late/gpt-4o", "late/o3-mini"]);
    assert_eq!(late.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_model_lists_contribute_nothing() {
    let mock = MockUpstream::start(|_| Reply::json(200, "<html>hello</html>")).await;
    let config = config(&format!(
        "providers:\n  odd: {{type: openai, api_key: sk-odd-test, base_url: '{}'}}\n",
        mock.url("/v1")
    ));
    let entries = ModelDirectory::new()
        .list(&config, &UpstreamResolver::default())
        .await;
    assert!(entries.is_empty());
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_is_cut_off_by_the_fetch_timeout() {
    let slow = models_mock(Duration::from_secs(10)).await;
    let fast = models_mock(Duration::ZERO).await;
    let config = config(&format!(
        "providers:\n  slow: {{type: openai, api_key: sk-slow-test, base_url: '{}'}}\n  fast: {{type: openai, api_key: sk-fast-test, base_url: '{}'}}\n",
        slow.url("/v1"),
        fast.url("/v1")
    ));
    let directory = ModelDirectory::with_limits(DirectoryLimits {
        fetch_timeout: Duration::from_millis(300),
        ..DirectoryLimits::default()
    });
    let started = Instant::now();
    let entries = directory.list(&config, &UpstreamResolver::default()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ids(&entries), vec!["fast/gpt-4o", "fast/o3-mini"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_asked_concurrently() {
    let delay = Duration::from_millis(1000);
    let one = models_mock(delay).await;
    let two = models_mock(delay).await;
    let config = config(&format!(
        "providers:\n  one: {{type: openai, api_key: sk-one-test, base_url: '{}'}}\n  two: {{type: openai, api_key: sk-two-test, base_url: '{}'}}\n",
        one.url("/v1"),
        two.url("/v1")
    ));
    let started = Instant::now();
    let entries = ModelDirectory::new()
        .list(&config, &UpstreamResolver::default())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(entries.len(), 4);
    // One after the other would take at least twice the delay.
    assert!(
        elapsed < delay * 2 - Duration::from_millis(200),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_provider_over_tls_gets_its_own_headers() {
    let pki = TestPki::new();
    let mock = MockUpstream::start_tls(
        |rec| {
            if rec.uri.starts_with("/v1/models") {
                Reply::json(
                    200,
                    r#"{"data":[{"type":"model","id":"claude-sonnet-4-5"}],"has_more":false}"#,
                )
            } else {
                Reply::json(404, "{}")
            }
        },
        pki.acceptor.clone(),
    )
    .await;
    let dir = scratch_dir();
    let ca = dir.join("ca.pem");
    pki.write_ca(&ca);
    let config = config(&format!(
        "providers:\n  claude: {{type: anthropic, api_key: sk-ant-tls-test, base_url: 'https://localhost:{}/v1', ca_file: '{}'}}\n",
        mock.addr.port(),
        ca.display()
    ));
    let entries = ModelDirectory::new()
        .list(&config, &UpstreamResolver::default())
        .await;
    assert_eq!(ids(&entries), vec!["claude/claude-sonnet-4-5"]);
    let rec = mock.last();
    assert_eq!(rec.uri, "/v1/models?limit=1000");
    assert_eq!(rec.header("x-api-key"), Some("sk-ant-tls-test"));
    assert!(rec.header("anthropic-version").is_some());
    assert!(rec.header("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_provider_with_an_untrusted_certificate_contributes_nothing() {
    let pki = TestPki::new();
    let mock =
        MockUpstream::start_tls(|_| Reply::json(200, MODELS_JSON), pki.acceptor.clone()).await;
    // No ca_file: the test CA is not among the system roots.
    let config = config(&format!(
        "providers:\n  private: {{type: openai, api_key: sk-private-test, base_url: 'https://localhost:{}/v1'}}\n",
        mock.addr.port()
    ));
    let entries = ModelDirectory::new()
        .list(&config, &UpstreamResolver::default())
        .await;
    assert!(entries.is_empty());
    assert!(mock.requests().is_empty());
}
