//! `kill -HUP` re-reads the config file while the gateway serves: every request sees
//! exactly one config, a broken file changes nothing, restart-only settings are kept,
//! and the log filter follows the file.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{client, sse, Gateway, Load, MockUpstream, Reply};

const MASTER: &str = "gw-master-test-key-0123456789abc";
const KEY_A: &str = "sk-fake-provider-a";
const KEY_B: &str = "sk-fake-provider-b";

/// What a config does to `GET /p/openai/models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Served {
    KeyA,
    KeyB,
    Disabled,
}

/// A config file: the key the openai provider holds, whether `/p/` reaches it, and
/// any extra `server:` lines.
fn config(mock: &MockUpstream, key: &str, enabled: bool, server_extra: &str) -> String {
    format!(
        "server:\n  enabled_passthrough_providers: [{}]\n{server_extra}providers:\n  openai:\n    api_key: {key}\n    base_url: {}\n",
        if enabled { "openai" } else { "anthropic" },
        mock.url("/v1")
    )
}

/// The config in force after `reload` reloads: the first one, then alternately a new
/// key and the provider switched off.
fn served_after(reload: usize) -> Served {
    match reload {
        0 => Served::KeyA,
        r if r % 2 == 1 => Served::KeyB,
        _ => Served::Disabled,
    }
}

fn config_after(mock: &MockUpstream, reload: usize) -> String {
    match served_after(reload) {
        Served::KeyA => config(mock, KEY_A, true, ""),
        Served::KeyB => config(mock, KEY_B, true, ""),
        Served::Disabled => config(mock, KEY_A, false, ""),
    }
}

/// A gateway on `yaml` whose clients present `MASTER`.
fn gateway(yaml: &str) -> Gateway {
    Gateway::start(yaml, &[("AURORA_MASTER_KEY", MASTER)])
}

/// A provider that answers with the credential it received, and streams chat
/// completions from `stream`.
async fn echo_mock(stream: Option<Arc<sse::SseSource>>) -> MockUpstream {
    MockUpstream::start(move |r| {
        if let (Some(s), true) = (&stream, r.uri.ends_with("/chat/completions")) {
            return s.reply();
        }
        let key = r
            .header("authorization")
            .unwrap_or_default()
            .trim_start_matches("Bearer ");
        Reply::json(200, serde_json::json!({ "key": key }).to_string())
    })
    .await
}

async fn models(c: &reqwest::Client, url: &str, request_id: &str) -> Result<Served, String> {
    let resp = c
        .get(url)
        .bearer_auth(MASTER)
        .header("x-request-id", request_id)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("body: {e:?}"))?;
    match status {
        200 if body.contains(KEY_A) => Ok(Served::KeyA),
        200 if body.contains(KEY_B) => Ok(Served::KeyB),
        400 if body.contains("not enabled for passthrough") => Ok(Served::Disabled),
        _ => Err(format!("{status}: {body}")),
    }
}

/// One request of the load: the reload phase when it started and ended, and what
/// served it. Phase `2k` means "reload k is logged as applied"; `2k+1` means "reload
/// k+1 may be under way".
#[derive(Debug)]
struct Outcome {
    started: usize,
    ended: usize,
    result: Result<Served, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_switches_configs_without_failing_a_request() {
    const RELOADS: usize = 10;
    let (mut feed, source) = sse::channel();
    let mock = echo_mock(Some(source)).await;
    let gw = gateway(&config_after(&mock, 0));
    let c = client();

    // Opened under the first config, this stream must outlive every reload.
    let stream = sse::open_passthrough_stream(&gw, MASTER, &feed).await;

    let phase = Arc::new(AtomicUsize::new(0));
    let url = gw.url("/p/openai/models");
    let load = Load::start(2, {
        let (c, phase) = (c.clone(), phase.clone());
        move || {
            let (c, url, phase) = (c.clone(), url.clone(), phase.clone());
            async move {
                let started = phase.load(Ordering::SeqCst);
                let result = models(&c, &url, "load").await;
                Outcome {
                    started,
                    ended: phase.load(Ordering::SeqCst),
                    result,
                }
            }
        }
    });

    let mut done = load.wait_more(0, 10).await;
    for reload in 1..=RELOADS {
        phase.store(2 * reload - 1, Ordering::SeqCst);
        gw.write_config(&config_after(&mock, reload));
        gw.signal("HUP");
        gw.wait_for_log("config reloaded:", reload).await;
        phase.store(2 * reload, Ordering::SeqCst);
        feed.send(reload);
        stream.wait_events(reload + 1).await;
        done = load.wait_more(done, 10).await;
    }
    feed.close();
    let outcomes = load.stop().await;
    let (text, end) = stream.finish().await;
    assert_eq!(end, Ok(()), "the stream must end cleanly");
    assert_eq!(
        text,
        sse::events(RELOADS + 1),
        "the stream must arrive intact"
    );

    let mut seen: HashMap<Served, usize> = HashMap::new();
    for o in &outcomes {
        let served = match &o.result {
            Ok(s) => *s,
            Err(e) => panic!("a request failed during reloads: {e} ({o:?})"),
        };
        // A request inside one phase sees exactly that phase's config; one spanning
        // a reload sees one of the configs of the phases it spans.
        let allowed: Vec<Served> = (o.started / 2..=o.ended.div_ceil(2))
            .map(served_after)
            .collect();
        assert!(allowed.contains(&served), "{o:?} not in {allowed:?}");
        *seen.entry(served).or_default() += 1;
    }
    for config in [Served::KeyA, Served::KeyB, Served::Disabled] {
        assert!(
            seen.contains_key(&config),
            "{config:?} never served: {seen:?}"
        );
    }

    // Each 200 reached the provider exactly once, carrying one of the two keys.
    let upstream: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.uri == "/v1/models")
        .collect();
    assert_eq!(upstream.len(), seen[&Served::KeyA] + seen[&Served::KeyB]);
    let (bearer_a, bearer_b) = (format!("Bearer {KEY_A}"), format!("Bearer {KEY_B}"));
    for r in &upstream {
        let auth = r.header("authorization").unwrap_or_default();
        assert!(
            auth == bearer_a || auth == bearer_b,
            "unexpected credential"
        );
    }

    let log = gw.log();
    assert!(log.contains(&format!("(reload {RELOADS})")), "{log}");
    assert!(!log.contains("config reload failed"), "{log}");
    for secret in [MASTER, KEY_A, KEY_B] {
        assert!(!log.contains(secret), "a credential reached the log");
    }
}

/// `file:line:column` right after the file name in the failure line.
fn has_position(line: &str) -> bool {
    let Some((_, after)) = line.split_once("aurora.yaml:") else {
        return false;
    };
    let mut parts = after.splitn(3, ':');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_on_sighup_changes_nothing_and_logs_where() {
    let mock = echo_mock(None).await;
    let gw = gateway(&config(&mock, KEY_A, true, ""));
    let c = client();
    let url = gw.url("/p/openai/models");
    assert_eq!(models(&c, &url, "before").await, Ok(Served::KeyA));

    gw.write_config(&config(&mock, KEY_B, true, "").replace(KEY_B, "[unclosed"));
    gw.signal("HUP");
    let log = gw.wait_for_log("config reload failed", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("config reload failed"))
        .unwrap_or_default();
    assert!(has_position(line), "no file:line:column in {line}");
    assert!(line.contains("still serving the previous config"), "{line}");
    assert_eq!(models(&c, &url, "after-syntax").await, Ok(Served::KeyA));

    // Well-formed YAML that fails validation is refused the same way.
    gw.write_config(&config(&mock, KEY_B, true, "").replace("[openai]", "[typo]"));
    gw.signal("HUP");
    let log = gw.wait_for_log("config reload failed", 2).await;
    assert!(log.contains("`typo`"), "{log}");
    assert_eq!(models(&c, &url, "after-invalid").await, Ok(Served::KeyA));

    // A good file afterwards applies as usual.
    gw.write_config(&config(&mock, KEY_B, true, ""));
    gw.signal("HUP");
    let log = gw.wait_for_log("config reloaded:", 1).await;
    assert!(log.contains("(reload 3)"), "every reload is counted: {log}");
    assert_eq!(models(&c, &url, "after-fix").await, Ok(Served::KeyB));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_changes_are_kept_and_named_in_a_warning() {
    let mock = echo_mock(None).await;
    let gw = gateway(&config(&mock, KEY_A, true, ""));
    gw.write_config(&config(
        &mock,
        KEY_B,
        true,
        "  threads: 3\n  grace_period_seconds: 7\n",
    ));
    gw.signal("HUP");
    let log = gw.wait_for_log("config reloaded:", 1).await;
    let warning = log
        .lines()
        .find(|l| l.contains("restart-only settings changed"))
        .unwrap_or_else(|| panic!("no restart-only warning: {log}"));
    assert!(
        warning.contains("server.threads, server.grace_period_seconds"),
        "{warning}"
    );
    assert!(
        warning.contains("-u"),
        "the warning points at the upgrade: {warning}"
    );
    // Everything else in the same file did apply.
    let c = client();
    assert_eq!(
        models(&c, &gw.url("/p/openai/models"), "x").await,
        Ok(Served::KeyB)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_follows_the_file_on_sighup() {
    let mock = echo_mock(None).await;
    let gw = gateway(&config(&mock, KEY_A, true, ""));
    let c = client();
    let url = gw.url("/p/openai/models");
    models(&c, &url, "loud-first").await.unwrap();
    gw.wait_for_log("request_id=loud-first", 1).await;

    gw.write_config(&config(&mock, KEY_A, true, "  log_level: warn\n"));
    gw.signal("HUP");
    // Logged under the filter in force when the signal came, so still visible.
    gw.wait_for_log("config reloaded:", 1).await;
    models(&c, &url, "quiet").await.unwrap();

    gw.write_config(&config(&mock, KEY_A, true, "  log_level: info\n"));
    gw.signal("HUP");
    // That reload's own line is filtered out; access lines coming back show it applied.
    for n in 0.. {
        let id = format!("loud-again-{n}");
        models(&c, &url, &id).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if gw.log().contains(&format!("request_id={id}")) {
            break;
        }
        assert!(n < 400, "access lines never came back: {}", gw.log());
    }
    assert!(
        !gw.log().contains("request_id=quiet"),
        "an info line was written under `warn`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_are_read_again_on_sighup() {
    let mock = echo_mock(None).await;
    let dir = common::scratch_dir();
    let master_file = dir.join("master_key");
    let provider_file = dir.join("openai_key");
    let (old_master, new_master) = (
        "old-master-key-from-a-file-0123456789",
        "new-master-key-from-a-file-9876543210",
    );
    std::fs::write(&master_file, format!("{old_master}\n")).unwrap();
    std::fs::write(&provider_file, format!("{KEY_A}\n")).unwrap();
    let yaml = format!(
        "server:\n  master_key_file: {}\nproviders:\n  openai:\n    api_key_file: {}\n    base_url: {}\n",
        master_file.display(),
        provider_file.display(),
        mock.url("/v1")
    );
    let gw = Gateway::start(&yaml, &[]);
    let ask = |key: &'static str| {
        let url = gw.url("/p/openai/models");
        async move { client().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let resp = ask(old_master).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!(r#"{{"key":"{KEY_A}"}}"#)
    );

    // Both secrets rotated in their files (a systemd credential or a mounted secret).
    std::fs::write(&master_file, format!("{new_master}\n")).unwrap();
    std::fs::write(&provider_file, format!("{KEY_B}\n")).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("config reloaded:", 1).await;
    assert_eq!(ask(old_master).await.status(), 401);
    let resp = ask(new_master).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!(r#"{{"key":"{KEY_B}"}}"#)
    );

    // A file that cannot be read is a failed reload naming its path; the keys stay.
    std::fs::remove_file(&master_file).unwrap();
    gw.signal("HUP");
    let log = gw.wait_for_log("config reload failed", 1).await;
    assert!(log.contains(&master_file.display().to_string()), "{log}");
    assert!(!log.contains(new_master) && !log.contains(KEY_B), "{log}");
    assert_eq!(ask(new_master).await.status(), 200);
}
