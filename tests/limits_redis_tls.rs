//! Limits in a Redis reached over TLS (`rediss://`), as managed Redis services serve
//! it: a real `redis-server` with no plain port, its certificate signed by a test CA
//! given in `limits.store_tls.ca_file`; one asking clients for a certificate
//! (`tls-auth-clients yes`) given the gateway's in `cert_file` and `key_file`. The
//! stores are set to `on_store_error: deny`, so a connection that failed would answer
//! 503, not serve unlimited.

mod common;

use std::path::Path;

use common::redis::RedisServer;
use common::tls::TestPki;
use common::{client, fixture, scratch_dir, sha256_hex, Gateway, MockUpstream, Recorded, Reply};

const MASTER: &str = "gw-master-limits-redis-tls-0123456789abcdef";
const TEAM_KEY: &str = "aur_limits_redis_tls_team_key_0123456789ab";

fn provider(_: &Recorded) -> Reply {
    Reply::json(200, fixture("openai/chat_completion.json"))
}

/// A gateway keeping `team-a` to three requests a minute in the Redis at `url`,
/// `store_tls` (YAML lines under it) naming its certificates.
fn gateway(mock: &MockUpstream, url: &str, store_tls: &str) -> Gateway {
    let base = mock.url("/v1");
    let yaml = format!(
        "limits:\n  store: {url}\n  on_store_error: deny\n{store_tls}auth:\n  keys:\n    - name: team-a\n      sha256: \"{}\"\n      limits: {{requests_per_minute: 3}}\n",
        sha256_hex(TEAM_KEY),
    );
    Gateway::start(
        &yaml,
        &[
            ("AURORA_MASTER_KEY", MASTER),
            ("OPENAI_API_KEY", "sk-oai-limits-redis-tls"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    )
}

/// `store_tls` naming `ca`, and `client` (a certificate and its key) when given.
fn store_tls(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> String {
    let mut yaml = String::from("  store_tls:\n");
    if let Some(ca) = ca {
        yaml.push_str(&format!("    ca_file: {}\n", ca.display()));
    }
    if let Some((cert, key)) = client {
        yaml.push_str(&format!(
            "    cert_file: {}\n    key_file: {}\n",
            cert.display(),
            key.display()
        ));
    }
    yaml
}

async fn statuses(gw: &Gateway, n: usize) -> Vec<u16> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(TEAM_KEY)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
        }
        seen.push(resp.status().as_u16());
    }
    seen
}

/// Three served, then refused: unless a minute began between two of them.
fn held_to_three(seen: &[u16]) -> bool {
    let served = seen.iter().filter(|&&s| s == 200).count();
    seen.iter().all(|&s| s == 200 || s == 429) && (served == 3 || (served > 3 && served <= 6))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_store_holds_a_keys_limit_over_tls() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(&pki, false);
    let dir = scratch_dir();
    let ca = dir.join("redis-ca.pem");
    pki.write_ca(&ca);
    let mock = MockUpstream::start(provider).await;
    let gw = gateway(&mock, &redis.url(), &store_tls(Some(&ca), None));
    let seen = statuses(&gw, 5).await;
    assert!(held_to_three(&seen), "{seen:?}; log:\n{}", gw.log());
    assert!(
        !redis.keys("aurora:{key:team-a}:*").is_empty(),
        "the counters are in the TLS Redis"
    );
    // `aurora usage` reads the same store, over TLS, with the same certificates.
    let served = seen.iter().filter(|&&s| s == 200).count();
    let yaml = format!(
        "limits:\n  store: {}\n{}",
        redis.url(),
        store_tls(Some(&ca), None)
    );
    let config = dir.join("usage.yaml");
    std::fs::write(&config, yaml).unwrap();
    let printed = common::usage_cli::usage_printed(&config, &[], "team-a", served as u64).await;
    assert_eq!(printed["total"]["requests"], served, "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_asking_for_a_client_certificate_is_given_the_configured_one() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(&pki, true);
    let dir = scratch_dir();
    let ca = dir.join("redis-ca.pem");
    pki.write_ca(&ca);
    let (cert, key) = pki.issue_leaf().write(&dir);
    let mock = MockUpstream::start(provider).await;

    let with_certificate = gateway(
        &mock,
        &redis.url(),
        &store_tls(Some(&ca), Some((&cert, &key))),
    );
    let seen = statuses(&with_certificate, 5).await;
    assert!(
        held_to_three(&seen),
        "{seen:?}; log:\n{}",
        with_certificate.log()
    );

    // The same Redis refuses a gateway that presents none: deny answers 503.
    let without = gateway(&mock, &redis.url(), &store_tls(Some(&ca), None));
    assert_eq!(statuses(&without, 2).await, [503, 503]);
    assert!(
        without.log().contains("cannot reach Redis"),
        "{}",
        without.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_certificate_no_trusted_ca_signed_is_refused() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(&pki, false);
    let mock = MockUpstream::start(provider).await;
    // Another CA than the one that signed the store's certificate.
    let dir = scratch_dir();
    let other = dir.join("other-ca.pem");
    TestPki::new().write_ca(&other);
    let gw = gateway(&mock, &redis.url(), &store_tls(Some(&other), None));
    assert_eq!(statuses(&gw, 2).await, [503, 503]);
    let log = gw.log();
    assert!(
        log.contains("cannot reach Redis") && log.contains("certificate"),
        "{log}"
    );
    assert!(
        redis.keys("aurora:*").is_empty(),
        "nothing reached Redis: {:?}",
        redis.keys("aurora:*")
    );
}
