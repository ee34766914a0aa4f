//! The built-in defaults written out as `aurora.yaml` (`aurora --print-default-config`),
//! generated from the `Default` impls so the printed file cannot drift from the code.
//! Tests compare `conf/aurora.yaml` and the README's configuration table with it.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::{
    AccessLogFormat, HealthPolicy, LimitSettings, LimitStoreKind, ModelSettings, OnStoreError,
    RetryOn, RetryPolicy, ServerSettings, ServerStartup, TelemetrySettings,
};
use crate::proxy::native_owner::NativeOwnerSettings;
use crate::proxy::response_store::StoreLimits;

/// Every setting that has a default, as the YAML an operator would write for it.
/// Settings without one (keys, providers, `server.tls`) are left out.
pub fn default_config_yaml() -> String {
    let mut root = Mapping::new();
    root.insert("server".into(), server().into());
    let models = models();
    if !models.is_empty() {
        root.insert("models".into(), models.into());
    }
    root.insert("retry".into(), retry(&RetryPolicy::default()).into());
    root.insert("health".into(), health(HealthPolicy::default()).into());
    root.insert("limits".into(), limits(&LimitSettings::default()).into());
    root.insert(
        "responses".into(),
        responses(&StoreLimits::default(), &NativeOwnerSettings::default()).into(),
    );
    root.insert(
        "telemetry".into(),
        telemetry(&TelemetrySettings::default()).into(),
    );
    // Serialising a mapping of strings, numbers and lists cannot fail; an empty
    // answer would show at once in the tests that read it back.
    serde_yaml::to_string(&Value::Mapping(root)).unwrap_or_default()
}

fn server() -> Mapping {
    // Destructured whole so a new setting fails to compile until it is printed here
    // (or said to have no YAML default).
    let ServerSettings {
        startup:
            ServerStartup {
                listen,
                threads,
                grace_period_seconds,
                pid_file,
                upgrade_sock,
                metrics_listen,
                tls_listen: _, // only with a certificate: no listener by default
            },
        body_size_limit,
        passthrough_body_size_limit,
        header_timeout,
        max_header_bytes,
        body_timeout,
        max_buffered_bytes,
        keepalive_timeout,
        send_timeout,
        enable_passthrough_routes,
        allow_passthrough_v1_alias,
        allow_unauthenticated,
        enabled_passthrough_providers,
        cors_allow_origins,
        log_level,
        tls_cert: _, // no certificate by default
        access_log,
    } = ServerSettings::default();
    let mut m = Mapping::new();
    m.insert("listen".into(), listen.into());
    m.insert("threads".into(), threads.into());
    m.insert("allow_unauthenticated".into(), allow_unauthenticated.into());
    m.insert("body_size_limit".into(), size(body_size_limit));
    m.insert(
        "passthrough_body_size_limit".into(),
        size(passthrough_body_size_limit),
    );
    m.insert("header_timeout".into(), duration(header_timeout));
    m.insert("max_header_bytes".into(), size(max_header_bytes));
    m.insert("body_timeout".into(), duration(body_timeout));
    m.insert("max_buffered_bytes".into(), size(max_buffered_bytes));
    m.insert("keepalive_timeout".into(), duration(keepalive_timeout));
    m.insert("send_timeout".into(), duration(send_timeout));
    m.insert(
        "enable_passthrough_routes".into(),
        enable_passthrough_routes.into(),
    );
    m.insert(
        "allow_passthrough_v1_alias".into(),
        allow_passthrough_v1_alias.into(),
    );
    m.insert(
        "enabled_passthrough_providers".into(),
        enabled_passthrough_providers.into(),
    );
    m.insert("cors_allow_origins".into(), cors_allow_origins.into());
    m.insert("grace_period_seconds".into(), grace_period_seconds.into());
    m.insert("log_level".into(), log_level.into());
    m.insert("pid_file".into(), pid_file.into());
    m.insert("upgrade_sock".into(), upgrade_sock.into());
    m.insert(
        "metrics_listen".into(),
        metrics_listen.unwrap_or_else(|| "off".into()).into(),
    );
    let access_log = match access_log {
        AccessLogFormat::Text => "text",
        AccessLogFormat::Json => "json",
        AccessLogFormat::Off => "off",
    };
    m.insert("access_log".into(), access_log.into());
    m
}

fn models() -> Mapping {
    let mut m = Mapping::new();
    // Unset by default: a translated request without a limit gets the model's ceiling.
    if let Some(tokens) = ModelSettings::default().default_max_tokens {
        m.insert("default_max_tokens".into(), tokens.into());
    }
    m
}

fn retry(policy: &RetryPolicy) -> Mapping {
    let mut m = Mapping::new();
    m.insert("attempts".into(), policy.attempts.into());
    m.insert("backoff".into(), duration(policy.backoff));
    m.insert("max_backoff".into(), duration(policy.max_backoff));
    m.insert("max_retry_after".into(), duration(policy.max_retry_after));
    m.insert("on".into(), retry_on(&policy.on).into());
    m
}

fn retry_on(on: &RetryOn) -> Vec<Value> {
    let kinds = [("connect", on.connect), ("timeout", on.timeout)];
    let kinds = kinds
        .into_iter()
        .filter(|&(_, on)| on)
        .map(|(name, _)| Value::from(name));
    kinds
        .chain(on.statuses.iter().map(|&s| Value::from(s)))
        .collect()
}

fn health(policy: HealthPolicy) -> Mapping {
    let mut m = Mapping::new();
    m.insert("failures".into(), policy.failures.into());
    m.insert("cooldown".into(), duration(policy.cooldown));
    m
}

fn limits(settings: &LimitSettings) -> Mapping {
    let mut m = Mapping::new();
    let store = match &settings.store {
        LimitStoreKind::Memory => "memory".to_string(),
        LimitStoreKind::Redis(address) => address.url.clone(),
    };
    m.insert("store".into(), store.into());
    let on_store_error = match settings.on_store_error {
        OnStoreError::Allow => "allow",
        OnStoreError::Deny => "deny",
    };
    m.insert("on_store_error".into(), on_store_error.into());
    let poll = settings.poll_background.unwrap_or_default();
    m.insert("poll_background".into(), duration(poll));
    m.insert("slot_lease".into(), duration(settings.slot_lease));
    m
}

fn responses(limits: &StoreLimits, natives: &NativeOwnerSettings) -> Mapping {
    let mut m = Mapping::new();
    m.insert("store".into(), "memory".into());
    m.insert("store_max_entries".into(), limits.max_entries.into());
    m.insert("store_max_bytes".into(), size(limits.max_bytes as u64));
    m.insert("store_ttl".into(), duration(limits.ttl));
    m.insert("native_owner_ttl".into(), duration(natives.ttl));
    m.insert(
        "native_owner_max_entries".into(),
        natives.max_entries.into(),
    );
    m.insert("native_access".into(), natives.access.name().into());
    m
}

fn telemetry(settings: &TelemetrySettings) -> Mapping {
    let mut m = Mapping::new();
    if let Some(url) = &settings.otlp_traces_url {
        m.insert("otlp_endpoint".into(), url.clone().into());
    }
    m.insert("service_name".into(), settings.service_name.clone().into());
    m
}

/// A size the way the file writes it: the largest binary unit that divides it.
fn size(bytes: u64) -> Value {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|&&(unit, _)| bytes >= unit && bytes % unit == 0)
        .map_or(Value::from(bytes), |&(unit, name)| {
            Value::from(format!("{}{name}", bytes / unit))
        })
}

/// A duration the way the file writes it (`200ms`, `60s`, `24h`).
fn duration(d: Duration) -> Value {
    let text = if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if d.as_secs() >= 3600 && d.as_secs() % 3600 == 0 {
        format!("{}h", d.as_secs() / 3600)
    } else {
        format!("{}s", d.as_secs())
    };
    Value::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};

    #[test]
    fn sizes_and_durations_are_written_in_file_units() {
        assert_eq!(size(10 * 1024 * 1024), Value::from("10MiB"));
        assert_eq!(size(64 * 1024), Value::from("64KiB"));
        assert_eq!(size(1000), Value::from(1000u64));
        assert_eq!(duration(Duration::from_millis(200)), Value::from("200ms"));
        assert_eq!(duration(Duration::from_secs(60)), Value::from("60s"));
        assert_eq!(duration(Duration::from_secs(86_400)), Value::from("24h"));
    }

    #[test]
    fn the_printed_defaults_build_the_default_config() {
        let printed = default_config_yaml();
        let env = EnvSnapshot::default();
        let from_printed = build_config(Some(&printed), None, &env).unwrap();
        let from_nothing = build_config(None, None, &env).unwrap();
        assert_eq!(
            format!("{from_printed:?}"),
            format!("{from_nothing:?}"),
            "{printed}"
        );
        assert!(printed.contains("listen: 0.0.0.0:8080"), "{printed}");
    }
}
