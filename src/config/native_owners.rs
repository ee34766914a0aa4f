//! `responses.native_owner_ttl`, `responses.native_owner_max_entries` and
//! `responses.native_access`: how the gateway keeps whose each natively served
//! Responses API answer is ([`crate::proxy::native_owner`]).

use super::overlay;
use super::schema::FileConfig;
use super::{ConfigError, EnvSnapshot};
use crate::proxy::native_owner::{NativeAccess, NativeOwnerSettings};

/// The settings of the records of natively served responses, the environment over
/// the file.
pub(super) fn native_owner_settings(
    file: &FileConfig,
    env: &EnvSnapshot,
) -> Result<NativeOwnerSettings, ConfigError> {
    let defaults = NativeOwnerSettings::default();
    let r = &file.responses;
    let ttl = overlay::duration(
        env,
        "AURORA_RESPONSES_NATIVE_OWNER_TTL",
        "responses.native_owner_ttl",
        r.native_owner_ttl.as_deref(),
    )?
    .unwrap_or(defaults.ttl);
    if ttl.is_zero() {
        return Err(ConfigError::Invalid(
            "responses.native_owner_ttl must be longer than 0s: a record kept for no time \
             would leave every natively served response unreachable to its own key"
                .into(),
        ));
    }
    let max_entries = overlay::number(
        env,
        "AURORA_RESPONSES_NATIVE_OWNER_MAX_ENTRIES",
        r.native_owner_max_entries,
    )?
    .unwrap_or(defaults.max_entries);
    let access = overlay::text(
        env,
        "AURORA_RESPONSES_NATIVE_ACCESS",
        r.native_access.as_deref(),
    );
    let access = match access.as_deref().map(str::trim) {
        None | Some("") => defaults.access,
        Some("owned") => NativeAccess::Owned,
        Some("open") => NativeAccess::Open,
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "responses.native_access must be `owned` or `open`, got `{other}`"
            )))
        }
    };
    Ok(NativeOwnerSettings {
        ttl,
        max_entries,
        access,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{build_config, EnvSnapshot};
    use crate::proxy::native_owner::{NativeAccess, NativeOwnerSettings};

    fn build(yaml: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let env = EnvSnapshot::from_pairs(env.iter().copied());
        build_config(Some(yaml), None, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn native_responses_are_owned_for_thirty_days_unless_configured_otherwise() {
        let config = build("", &[]).unwrap();
        assert_eq!(config.native_owners, NativeOwnerSettings::default());
        assert_eq!(
            config.native_owners.ttl,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(config.native_owners.access, NativeAccess::Owned);
        let yaml = "responses:\n  native_owner_ttl: 7d\n  native_owner_max_entries: 5\n  native_access: open\n";
        let config = build(yaml, &[]).unwrap();
        assert_eq!(config.native_owners.ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.native_owners.max_entries, 5);
        assert_eq!(config.native_owners.access, NativeAccess::Open);
        let config = build(
            yaml,
            &[
                ("AURORA_RESPONSES_NATIVE_ACCESS", "owned"),
                ("AURORA_RESPONSES_NATIVE_OWNER_TTL", "1h"),
            ],
        )
        .unwrap();
        assert_eq!(config.native_owners.access, NativeAccess::Owned);
        assert_eq!(config.native_owners.ttl, Duration::from_secs(3600));
    }

    #[test]
    fn an_unknown_access_or_a_ttl_of_nothing_is_refused() {
        let err = build("responses: {native_access: everyone}\n", &[]).unwrap_err();
        assert!(err.contains("`owned` or `open`"), "{err}");
        let err = build("responses: {native_owner_ttl: 0s}\n", &[]).unwrap_err();
        assert!(err.contains("native_owner_ttl"), "{err}");
    }
}
