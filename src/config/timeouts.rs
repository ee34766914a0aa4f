//! Upstream timeouts: `providers.<name>.timeouts` and `models.timeouts`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::schema::{FileModelTimeouts, FileTimeouts};
use super::ConfigError;
use crate::providers::{Provider, Timeouts};

/// What one model changes of its provider's timeouts (`models.timeouts.<model>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    /// Connect (and, doubled, connect plus TLS handshake).
    pub connect: Option<Duration>,
    /// Request sent → first byte of the answer.
    pub first_byte: Option<Duration>,
    /// Silence between two pieces of an answer.
    pub idle: Option<Duration>,
    /// A whole (not streamed) answer, request sent → last byte.
    pub total: Option<Duration>,
}

impl ModelTimeouts {
    /// `base` with what this model sets.
    pub fn over(&self, base: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(base.connect),
            first_byte: self.first_byte.unwrap_or(base.first_byte),
            idle: self.idle.unwrap_or(base.idle),
            total: self.total.unwrap_or(base.total),
            ..base
        }
    }
}

/// The timeouts `model` gets at `provider`: the first of `models.timeouts` under
/// `provider/upstream`, the client's name and the provider's name that exists, over
/// the provider's own.
pub fn timeouts_for(
    models: &BTreeMap<String, ModelTimeouts>,
    provider: &Provider,
    client_name: &str,
    upstream: &str,
) -> Timeouts {
    if models.is_empty() {
        return provider.timeouts;
    }
    let own = models
        .get(&format!("{}/{upstream}", provider.name))
        .or_else(|| models.get(client_name))
        .or_else(|| models.get(upstream));
    match own {
        Some(own) => own.over(provider.timeouts),
        None => provider.timeouts,
    }
}

/// A provider's `timeouts:`, its defaults filled in. `read` is the older name for
/// `first_byte` and `idle` together; each of those, when set, wins over it.
pub fn provider_timeouts(provider: &str, file: &FileTimeouts) -> Result<Timeouts, ConfigError> {
    let at = |field: &str| format!("provider `{provider}`: timeouts.{field}");
    let d = Timeouts::default();
    let read = duration(&at("read"), &file.read)?;
    Ok(Timeouts {
        connect: duration(&at("connect"), &file.connect)?.unwrap_or(d.connect),
        first_byte: duration(&at("first_byte"), &file.first_byte)?
            .or(read)
            .unwrap_or(d.first_byte),
        idle: duration(&at("idle"), &file.idle)?
            .or(read)
            .unwrap_or(d.idle),
        total: duration(&at("total"), &file.total)?.unwrap_or(d.total),
        write: duration(&at("write"), &file.write)?.unwrap_or(d.write),
        keepalive: duration(&at("keepalive"), &file.keepalive)?.unwrap_or(d.keepalive),
    })
}

/// `models.timeouts`, checked.
pub fn model_timeouts(
    file: &BTreeMap<String, FileModelTimeouts>,
) -> Result<BTreeMap<String, ModelTimeouts>, ConfigError> {
    let mut out = BTreeMap::new();
    for (model, t) in file {
        let model = model.trim();
        if model.is_empty() {
            return Err(ConfigError::Invalid(
                "models.timeouts: a model name must not be empty".into(),
            ));
        }
        let at = |field: &str| format!("models.timeouts.{model}.{field}");
        out.insert(
            model.to_string(),
            ModelTimeouts {
                connect: duration(&at("connect"), &t.connect)?,
                first_byte: duration(&at("first_byte"), &t.first_byte)?,
                idle: duration(&at("idle"), &t.idle)?,
                total: duration(&at("total"), &t.total)?,
            },
        );
    }
    Ok(out)
}

/// A duration setting at `at`; zero would time every request out at once.
fn duration(at: &str, value: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let d = humantime::parse_duration(v.trim()).map_err(|e| {
        ConfigError::Invalid(format!("{at} `{v}` is not a duration like `10s`: {e}"))
    })?;
    if d.is_zero() {
        return Err(ConfigError::Invalid(format!(
            "{at} must be longer than zero"
        )));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn read_sets_first_byte_and_idle_unless_they_are_set() {
        let file = FileTimeouts {
            read: Some("30s".into()),
            idle: Some("5s".into()),
            ..Default::default()
        };
        let t = provider_timeouts("p", &file).unwrap();
        assert_eq!((t.first_byte, t.idle), (secs(30), secs(5)));
        assert_eq!(t.total, Timeouts::default().total);
    }

    #[test]
    fn zero_and_unparsable_durations_are_refused_with_their_place() {
        let zero = FileTimeouts {
            total: Some("0s".into()),
            ..Default::default()
        };
        let e = provider_timeouts("p", &zero).unwrap_err().to_string();
        assert!(e.contains("timeouts.total"), "{e}");
        let mut models = BTreeMap::new();
        models.insert(
            "o1".to_string(),
            FileModelTimeouts {
                first_byte: Some("soon".into()),
                ..Default::default()
            },
        );
        let e = model_timeouts(&models).unwrap_err().to_string();
        assert!(e.contains("models.timeouts.o1.first_byte"), "{e}");
    }

    #[test]
    fn a_model_overrides_its_provider_by_qualified_then_client_then_upstream_name() {
        let provider = Provider::unconfigured(ProviderKind::OpenAi);
        let mut models = BTreeMap::new();
        let only_first_byte = |s| ModelTimeouts {
            first_byte: Some(secs(s)),
            ..Default::default()
        };
        models.insert("openai/o1".to_string(), only_first_byte(1));
        models.insert("thinker".to_string(), only_first_byte(2));
        models.insert("o1".to_string(), only_first_byte(3));
        models.insert("o3".to_string(), only_first_byte(4));
        let t = |client, upstream| timeouts_for(&models, &provider, client, upstream).first_byte;
        assert_eq!(t("thinker", "o1"), secs(1));
        assert_eq!(t("thinker", "o3"), secs(2));
        assert_eq!(t("x", "o3"), secs(4));
        let untouched = timeouts_for(&models, &provider, "gpt-4o", "gpt-4o");
        assert_eq!(untouched, provider.timeouts);
        // What a model does not set stays its provider's.
        let o1 = timeouts_for(&models, &provider, "o1", "o1");
        assert_eq!(o1.idle, provider.timeouts.idle);
    }
}
