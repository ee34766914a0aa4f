//! The `telemetry:` section: where traces go (OTLP over HTTP), and under which
//! service name. Off unless an endpoint is set.

use super::env::EnvSnapshot;
use super::error::ConfigError;
use super::overlay::{non_blank_text, overlay};
use super::schema::FileTelemetry;

/// The service name spans carry when nothing says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "aurora";

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP traces URL (`…/v1/traces`); `None`: no spans at all.
    pub otlp_traces_url: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_traces_url: None,
            service_name: DEFAULT_SERVICE_NAME.to_string(),
        }
    }
}

/// `telemetry.otlp_endpoint` (env `OTEL_EXPORTER_OTLP_ENDPOINT` wins) and
/// `telemetry.service_name` (env `OTEL_SERVICE_NAME` wins).
pub fn telemetry_settings(
    file: &FileTelemetry,
    env: &EnvSnapshot,
) -> Result<TelemetrySettings, ConfigError> {
    // `get_raw`: an empty variable turns traces off, whatever the file says.
    let Ok(endpoint) = overlay::<_, _, std::convert::Infallible>(
        env.get_raw("OTEL_EXPORTER_OTLP_ENDPOINT"),
        file.otlp_endpoint.as_deref(),
        |v| Ok(v.to_string()),
        |f| Ok(env.expand(f)),
    );
    let otlp_traces_url = endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("off"))
        .map(traces_url)
        .transpose()?;
    let service_name = non_blank_text(env, "OTEL_SERVICE_NAME", file.service_name.as_deref())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    Ok(TelemetrySettings {
        otlp_traces_url,
        service_name,
    })
}

/// The traces URL of an OTLP/HTTP `endpoint`: as the OTLP exporter specification
/// reads `OTEL_EXPORTER_OTLP_ENDPOINT`, a base URL to which `/v1/traces` is added
/// (unless it is already there).
fn traces_url(endpoint: &str) -> Result<String, ConfigError> {
    let invalid = || {
        ConfigError::Invalid(format!(
            "telemetry.otlp_endpoint must be an http:// or https:// URL such as http://collector:4318 with no query, got `{}`",
            super::shown_url::shown_url(endpoint)
        ))
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid())?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // Not echoed: the part before `@` is a credential.
        return Err(ConfigError::Invalid(
            "telemetry.otlp_endpoint must not hold a user or password; give the collector's credentials in OTEL_EXPORTER_OTLP_HEADERS".into(),
        ));
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid());
    }
    if uri.query().is_some() {
        return Err(invalid());
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        Ok(base.to_string())
    } else {
        Ok(format!("{base}/v1/traces"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_pairs(pairs.iter().copied())
    }

    fn file(endpoint: Option<&str>) -> FileTelemetry {
        FileTelemetry {
            otlp_endpoint: endpoint.map(str::to_string),
            service_name: None,
        }
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let off = telemetry_settings(&file(None), &env(&[])).unwrap();
        assert_eq!(off, TelemetrySettings::default());
        assert_eq!(off.otlp_traces_url, None);
        let empty = telemetry_settings(&file(Some("")), &env(&[])).unwrap();
        assert_eq!(empty.otlp_traces_url, None);
    }

    #[test]
    fn the_endpoint_is_a_base_url_that_gets_the_traces_path() {
        let s = telemetry_settings(&file(Some("http://collector:4318/")), &env(&[])).unwrap();
        assert_eq!(
            s.otlp_traces_url.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let full = telemetry_settings(&file(Some("https://otel.example.com/v1/traces")), &env(&[]))
            .unwrap();
        assert_eq!(
            full.otlp_traces_url.as_deref(),
            Some("https://otel.example.com/v1/traces")
        );
    }

    #[test]
    fn the_environment_wins_even_set_empty() {
        let s = telemetry_settings(
            &file(Some("http://file:4318")),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")]),
        )
        .unwrap();
        assert_eq!(
            s.otlp_traces_url.as_deref(),
            Some("http://env:4318/v1/traces")
        );
        let off = telemetry_settings(
            &file(Some("http://file:4318")),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]),
        )
        .unwrap();
        assert_eq!(off.otlp_traces_url, None);
        let named =
            telemetry_settings(&file(None), &env(&[("OTEL_SERVICE_NAME", "edge")])).unwrap();
        assert_eq!(named.service_name, "edge");
    }

    #[test]
    fn a_refused_endpoint_with_a_password_is_not_echoed() {
        let err = telemetry_settings(&file(Some("http://user:s3cret@c:4318")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_is_refused() {
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://c:4318/?x=1",
            "http://user:secret@c:4318",
        ] {
            assert!(
                telemetry_settings(&file(Some(bad)), &env(&[])).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
