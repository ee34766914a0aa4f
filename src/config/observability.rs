//! The observability settings of `server:`: the metrics listener and the access log.

use super::env::EnvSnapshot;
use super::error::ConfigError;
use super::overlay::{overlay, text};

/// Where the metrics listener binds when nothing says otherwise: loopback only, as
/// it answers without a key.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// How finished requests are logged (`server.access_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// `key=value` fields under the `aurora::access` target.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// No access lines.
    Off,
}

/// `server.metrics_listen` (env `AURORA_METRICS_LISTEN` wins, even set empty): the
/// address of the metrics listener, `None` when empty or `off` (no listener).
pub fn metrics_listen(
    file: Option<&str>,
    env: &EnvSnapshot,
) -> Result<Option<String>, ConfigError> {
    // `get_raw`: an empty variable means "no listener", not "unset".
    let Ok(value) = overlay::<_, _, std::convert::Infallible>(
        env.get_raw("AURORA_METRICS_LISTEN"),
        file,
        |v| Ok(v.to_string()),
        |f| Ok(env.expand(f)),
    );
    let value = value.unwrap_or_else(|| DEFAULT_METRICS_LISTEN.to_string());
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse::<std::net::SocketAddr>().map_err(|_| {
        ConfigError::Invalid(format!(
            "server.metrics_listen must be `ip:port`, empty or `off`, got `{value}`"
        ))
    })?;
    Ok(Some(value.to_string()))
}

/// `server.access_log` (env `AURORA_ACCESS_LOG` wins): `text`, `json` or `off`.
pub fn access_log(file: Option<&str>, env: &EnvSnapshot) -> Result<AccessLogFormat, ConfigError> {
    let Some(value) = text(env, "AURORA_ACCESS_LOG", file) else {
        return Ok(AccessLogFormat::default());
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(AccessLogFormat::Text),
        "json" => Ok(AccessLogFormat::Json),
        "off" => Ok(AccessLogFormat::Off),
        other => Err(ConfigError::Invalid(format!(
            "server.access_log must be `text`, `json` or `off`, got `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_empty_or_off_disables_it() {
        assert_eq!(
            metrics_listen(None, &env(&[])).unwrap().as_deref(),
            Some(DEFAULT_METRICS_LISTEN)
        );
        assert_eq!(metrics_listen(Some(""), &env(&[])).unwrap(), None);
        assert_eq!(metrics_listen(Some("off"), &env(&[])).unwrap(), None);
        assert_eq!(
            metrics_listen(Some("0.0.0.0:9100"), &env(&[("AURORA_METRICS_LISTEN", "")])).unwrap(),
            None,
            "the environment wins, even set empty"
        );
        assert_eq!(
            metrics_listen(None, &env(&[("AURORA_METRICS_LISTEN", "127.0.0.1:1")]))
                .unwrap()
                .as_deref(),
            Some("127.0.0.1:1")
        );
        assert!(metrics_listen(Some("localhost"), &env(&[])).is_err());
    }

    #[test]
    fn access_log_is_text_json_or_off_and_the_environment_wins() {
        assert_eq!(access_log(None, &env(&[])).unwrap(), AccessLogFormat::Text);
        assert_eq!(
            access_log(Some("JSON"), &env(&[])).unwrap(),
            AccessLogFormat::Json
        );
        assert_eq!(
            access_log(Some("json"), &env(&[("AURORA_ACCESS_LOG", "off")])).unwrap(),
            AccessLogFormat::Off
        );
        let err = access_log(Some("xml"), &env(&[])).unwrap_err().to_string();
        assert!(err.contains("server.access_log"), "{err}");
    }
}
