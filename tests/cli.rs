//! The `aurora` command line: `--check-config`, `--print-default-config` and `keys new`.

mod common;

use std::process::Output;

use common::{client, run_cli, scratch_dir, Gateway, MockUpstream, Reply};

/// `aurora --check-config` on `yaml`, saved as `name` in a scratch directory.
fn check_config(name: &str, yaml: &str, env: &[(&str, &str)]) -> Output {
    let dir = scratch_dir();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    run_cli(&["--config", path.to_str().unwrap(), "--check-config"], env)
}

#[test]
fn check_config_accepts_a_valid_file() {
    let out = check_config(
        "ok.yaml",
        "providers:\n  anthropic:\n    api_key: ${ANT}\nserver:\n  master_key: cli-test-master-key-0123456789abcdef\n",
        &[("ANT", "sk-ant-secret-value")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config OK"), "{stdout}");
    assert!(stdout.contains("anthropic"), "{stdout}");
    assert!(!stdout.contains("sk-ant-secret-value"));
}

#[test]
fn check_config_refuses_a_broken_file_with_its_position() {
    let out = check_config("bad.yaml", "server:\n  threads: [\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:"), "{stderr}");

    let out = check_config("bad.yaml", "providers:\n  mystery: {}\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown type `mystery`"));
}

#[test]
fn check_config_refuses_caller_key_mixed_with_static_keys_naming_the_provider() {
    for yaml in [
        "providers:\n  openai-east:\n    type: openai\n    api_keys: [\"!PASSTHRU\", sk-static-test]\n",
        "providers:\n  openai-east:\n    type: openai\n    api_key: \"!PASSTHRU\"\n    api_keys: [sk-static-test]\n",
    ] {
        let out = check_config("mixed.yaml", yaml, &[]);
        assert_eq!(out.status.code(), Some(1), "{yaml}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("provider `openai-east`"), "{stderr}");
        assert!(stderr.contains("!PASSTHRU"), "{stderr}");
        assert!(!stderr.contains("sk-static-test"), "{stderr}");
    }
}

#[test]
fn check_config_accepts_caller_key_and_api_keys() {
    let out = check_config(
        "keys.yaml",
        "providers:\n  anthropic:\n    api_key: !PASSTHRU\n  openai:\n    api_keys: [sk-a-test, sk-b-test]\n",
        &[("AURORA_LISTEN", "127.0.0.1:8080")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("anthropic, openai"), "{stdout}");
    assert!(!stdout.contains("sk-a-test"), "{stdout}");
}

#[test]
fn check_config_fails_for_a_missing_explicit_file() {
    let out = run_cli(
        &["--config", "/nonexistent/aurora.yaml", "--check-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run_cli(
        &["--check-config"],
        &[("AURORA_CONFIG", "/nonexistent/a.yaml")],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_new_prints_a_key_whose_stanza_lets_it_in() {
    let out = run_cli(&["keys", "new", "--name", "ci"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("sk-aurora-"))
        .unwrap()
        .to_string();
    assert_eq!(key.len(), "sk-aurora-".len() + 43);
    let yaml_start = stdout.find("auth:").unwrap();
    let yaml = &stdout[yaml_start..];
    assert!(!yaml.contains(&key), "the stanza must hold only the hash");

    let mock = MockUpstream::start(|_| Reply::json(200, "{}")).await;
    let gw = Gateway::start(
        yaml,
        &[
            ("OPENAI_API_KEY", "sk-p"),
            ("OPENAI_BASE_URL", &mock.url("/v1")),
        ],
    );
    let c = client();
    let ok = c
        .get(gw.url("/p/openai/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = c.get(gw.url("/p/openai/models")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
}

#[test]
fn print_default_config_prints_the_code_defaults_and_they_check() {
    let out = run_cli(&["--print-default-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, aurora::config::default_config_yaml());
    assert!(printed.contains("grace_period_seconds: 30"), "{printed}");
    let out = check_config("defaults.yaml", &printed, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_config_passes_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/aurora.yaml");
    let out = run_cli(&["--config", path, "--check-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_checks_the_config_first_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/aurora.service"))
        .unwrap();
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let values = |key: &str| -> Vec<&str> {
        directives
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    let check = values("ExecStartPre");
    assert!(
        check.iter().any(|v| v.contains("--check-config")),
        "{check:?}"
    );
    assert_eq!(values("ExecReload"), vec!["/bin/kill -HUP $MAINPID"]);
    assert!(values("ExecStart").iter().all(|v| v.ends_with(" -d")));
    // systemd watches the pid file the daemon writes.
    let pid_file = values("PIDFile");
    assert_eq!(pid_file.len(), 1);
    let expected = format!("AURORA_PID_FILE={}", pid_file[0]);
    assert!(values("Environment").contains(&expected.as_str()), "{unit}");
    // Each credential is loaded and handed over as a *_FILE variable of the same name.
    let credentials = values("LoadCredential");
    assert!(credentials.len() >= 2, "{unit}");
    for credential in credentials {
        let (name, _) = credential.split_once(':').unwrap();
        let wanted = format!("=%d/{name}");
        assert!(
            values("Environment")
                .iter()
                .any(|e| e.ends_with(&wanted) && e.split('=').next().unwrap().ends_with("_FILE")),
            "{name} is loaded but never read: {unit}"
        );
    }
}

#[test]
fn an_open_gateway_on_a_public_address_does_not_start_and_check_config_says_why() {
    let yaml = "providers:\n  openai:\n    api_key: sk-openai-cli-test\n";
    let out = check_config("open.yaml", yaml, &[("AURORA_LISTEN", "0.0.0.0:8080")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for way_out in [
        "AURORA_MASTER_KEY",
        "127.0.0.1",
        "AURORA_ALLOW_UNAUTHENTICATED",
    ] {
        assert!(stderr.contains(way_out), "{stderr}");
    }
    assert!(!stderr.contains("sk-openai-cli-test"), "{stderr}");
    // Starting refuses the same way, before listening.
    let dir = scratch_dir();
    let path = dir.join("open.yaml");
    std::fs::write(&path, yaml).unwrap();
    let port = common::free_port().to_string();
    let listen = format!("0.0.0.0:{port}");
    let out = run_cli(
        &["--config", path.to_str().unwrap()],
        &[("AURORA_LISTEN", listen.as_str())],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing an open gateway"));
    // Said on purpose, it starts checking fine.
    let out = check_config(
        "open.yaml",
        yaml,
        &[
            ("AURORA_LISTEN", "0.0.0.0:8080"),
            ("AURORA_ALLOW_UNAUTHENTICATED", "1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_weak_master_key_is_refused_with_how_to_mint_one() {
    let out = check_config("weak.yaml", "server:\n  master_key: changeme\n", &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("openssl rand -hex 24"), "{stderr}");
    assert!(!stderr.contains("changeme"), "{stderr}");
}
