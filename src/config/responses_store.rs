//! `responses.store`: where the Responses API answers the gateway translated are kept,
//! for `previous_response_id` and reads by id.

use super::overlay::text;
use super::schema::FileConfig;
use super::{ConfigError, EnvSnapshot, LimitStoreKind, RedisAddress};

/// Where translated Responses API answers are kept; chosen at start (restart only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ResponsesStoreKind {
    /// This process's memory: a conversation comes back to the replica that holds it.
    #[default]
    Memory,
    /// The Redis of `limits.store`, shared by every replica.
    Redis(RedisAddress),
}

/// `responses.store` (`AURORA_RESPONSES_STORE`): `memory`, or `redis` for the Redis
/// the limits are counted in (`limits.store`), which must then be one.
pub(super) fn responses_store(
    file: &FileConfig,
    env: &EnvSnapshot,
    limits_store: &LimitStoreKind,
) -> Result<ResponsesStoreKind, ConfigError> {
    let chosen = text(
        env,
        "AURORA_RESPONSES_STORE",
        file.responses.store.as_deref(),
    );
    match chosen.as_deref().map(str::trim) {
        None | Some("") | Some("memory") => Ok(ResponsesStoreKind::Memory),
        Some("redis") => match limits_store {
            LimitStoreKind::Redis(address) => Ok(ResponsesStoreKind::Redis(address.clone())),
            LimitStoreKind::Memory => Err(ConfigError::Invalid(
                "responses.store `redis` keeps the answers in the Redis of limits.store (or \
                 AURORA_REDIS_URL), which is not set: name that Redis there"
                    .into(),
            )),
        },
        Some(other) => Err(ConfigError::Invalid(format!(
            "responses.store must be `memory` or `redis`, got `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{build_config, EnvSnapshot, ResponsesStoreKind};

    fn build(yaml: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let env = EnvSnapshot::from_pairs(env.iter().copied());
        build_config(Some(yaml), None, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_responses_store_is_memory_unless_redis_is_asked_for_and_named() {
        let config = build("", &[]).unwrap();
        assert_eq!(config.responses_store, ResponsesStoreKind::Memory);
        let err = build("responses: {store: redis}\n", &[]).unwrap_err();
        assert!(err.contains("limits.store"), "{err}");
        let config = build(
            "limits: {store: \"redis://127.0.0.1:6390/0\"}\nresponses: {store: redis}\n",
            &[],
        )
        .unwrap();
        assert!(matches!(
            config.responses_store,
            ResponsesStoreKind::Redis(_)
        ));
        let from_env = build(
            "",
            &[
                ("AURORA_REDIS_URL", "redis://127.0.0.1:6390/0"),
                ("AURORA_RESPONSES_STORE", "redis"),
            ],
        )
        .unwrap();
        assert!(matches!(
            from_env.responses_store,
            ResponsesStoreKind::Redis(_)
        ));
        let err = build("responses: {store: disk}\n", &[]).unwrap_err();
        assert!(err.contains("`memory` or `redis`"), "{err}");
    }
}
