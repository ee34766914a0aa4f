//! A provider's `api_key` / `api_keys` (and its `<NAME>_API_KEY` override) as a
//! [`ProviderCredential`], refusing combinations that would be ambiguous.

use super::schema::FileProvider;
use super::{ConfigError, EnvSnapshot};
use crate::providers::{is_caller_key_marker, KeyRing, ProviderCredential, Secret};

/// The credential of provider `name`. The file's fields are checked even when the
/// environment variable `key_env` overrides them, so a file that only works while
/// the variable is set is refused at once rather than on some later deploy.
pub(super) fn provider_credential(
    name: &str,
    key_env: &str,
    p: &FileProvider,
    env: &EnvSnapshot,
) -> Result<ProviderCredential, ConfigError> {
    let file = file_credential(name, p, env)?;
    if let Some(key) = env.get(key_env).map(str::trim).filter(|k| !k.is_empty()) {
        return Ok(from_one(key));
    }
    let file_var = format!("{key_env}_FILE");
    match env.get(&file_var) {
        Some(path) => {
            let key = super::build::read_secret_file(&file_var, path)?;
            Ok(if key.trim().is_empty() {
                ProviderCredential::None
            } else {
                from_one(key.trim())
            })
        }
        None => Ok(file),
    }
}

fn file_credential(
    name: &str,
    p: &FileProvider,
    env: &EnvSnapshot,
) -> Result<ProviderCredential, ConfigError> {
    if p.api_key.is_some() && p.api_key_file.is_some() {
        return Err(invalid(format!(
            "provider `{name}`: set `api_key` or `api_key_file`, not both"
        )));
    }
    let one = match (&p.api_key, &p.api_key_file) {
        (Some(k), _) => Some(env.expand(k).trim().to_string()),
        (None, Some(path)) => Some(
            super::build::read_secret_file(
                &format!("provider `{name}`: api_key_file"),
                &env.expand(path),
            )?
            .trim()
            .to_string(),
        ),
        (None, None) => None,
    };
    let many = match &p.api_keys {
        None => None,
        Some(list) => Some(expanded_list(name, list, env)?),
    };
    let caller_key_anywhere = one.as_deref().is_some_and(is_caller_key_marker)
        || many.iter().flatten().any(|k| is_caller_key_marker(k));
    match (one, many) {
        (Some(_), Some(_)) if caller_key_anywhere => Err(mixed(name)),
        (Some(_), Some(_)) => Err(invalid(format!(
            "provider `{name}`: set `api_key` (one key) or `api_keys` (several, used in turn), not both"
        ))),
        (Some(key), None) if key.is_empty() => Ok(ProviderCredential::None),
        (Some(key), None) => Ok(from_one(&key)),
        (None, Some(keys)) => from_list(name, keys),
        (None, None) => Ok(ProviderCredential::None),
    }
}

/// Each entry expanded and trimmed; an empty entry is refused because silently
/// rotating through fewer keys than listed hides a missing variable.
fn expanded_list(
    name: &str,
    list: &[String],
    env: &EnvSnapshot,
) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, raw)| {
            let key = env.expand(raw).trim().to_string();
            if key.is_empty() {
                Err(invalid(format!(
                    "provider `{name}`: api_keys[{i}] is empty (an unset variable?)"
                )))
            } else {
                Ok(key)
            }
        })
        .collect()
}

fn from_one(key: &str) -> ProviderCredential {
    if is_caller_key_marker(key) {
        ProviderCredential::CallerKey
    } else {
        ProviderCredential::single(Secret::new(key))
    }
}

fn from_list(name: &str, keys: Vec<String>) -> Result<ProviderCredential, ConfigError> {
    let caller_keys = keys.iter().filter(|k| is_caller_key_marker(k)).count();
    if caller_keys > 0 && caller_keys < keys.len() {
        return Err(mixed(name));
    }
    if caller_keys > 0 {
        return Ok(ProviderCredential::CallerKey);
    }
    Ok(KeyRing::new(keys.into_iter().map(Secret::new).collect())
        .map_or(ProviderCredential::None, ProviderCredential::Static))
}

fn mixed(name: &str) -> ConfigError {
    invalid(format!(
        "provider `{name}`: `!PASSTHRU` (caller keys: each caller sends its own key) cannot be mixed with static keys; use either `api_key: \"!PASSTHRU\"` or static keys"
    ))
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(api_key: Option<&str>, api_keys: Option<&[&str]>) -> FileProvider {
        FileProvider {
            api_key: api_key.map(str::to_string),
            api_keys: api_keys.map(|l| l.iter().map(|k| k.to_string()).collect()),
            ..FileProvider::default()
        }
    }

    fn credential(
        p: &FileProvider,
        env: &[(&str, &str)],
    ) -> Result<ProviderCredential, ConfigError> {
        let env = EnvSnapshot::from_pairs(env.to_vec());
        provider_credential("acme", "ACME_API_KEY", p, &env)
    }

    fn static_keys(c: &ProviderCredential) -> Vec<&str> {
        match c {
            ProviderCredential::Static(ring) => ring.keys().iter().map(|k| k.expose()).collect(),
            other => panic!("expected static keys, got {other:?}"),
        }
    }

    #[test]
    fn no_key_anywhere_is_no_credential() {
        assert!(matches!(
            credential(&file(None, None), &[]).unwrap(),
            ProviderCredential::None
        ));
        assert!(matches!(
            credential(&file(Some("${UNSET}"), None), &[]).unwrap(),
            ProviderCredential::None
        ));
        assert!(matches!(
            credential(&file(None, Some(&[])), &[]).unwrap(),
            ProviderCredential::None
        ));
    }

    #[test]
    fn api_key_is_one_static_key_after_expansion() {
        let c = credential(&file(Some(" ${K} "), None), &[("K", "sk-one")]).unwrap();
        assert_eq!(static_keys(&c), ["sk-one"]);
    }

    #[test]
    fn api_keys_are_static_keys_in_order() {
        let c = credential(&file(None, Some(&["sk-a", "${B}"])), &[("B", "sk-b")]).unwrap();
        assert_eq!(static_keys(&c), ["sk-a", "sk-b"]);
    }

    #[test]
    fn caller_key_marker_in_api_key_api_keys_or_env_means_caller_key() {
        for c in [
            credential(&file(Some("!PASSTHRU"), None), &[]),
            credential(&file(None, Some(&["!PASSTHRU"])), &[]),
            credential(&file(None, None), &[("ACME_API_KEY", "!PASSTHRU")]),
            credential(&file(Some("${K}"), None), &[("K", "!PASSTHRU")]),
        ] {
            assert!(c.unwrap().is_caller_key());
        }
    }

    #[test]
    fn env_key_overrides_the_file_either_way() {
        let c = credential(
            &file(None, Some(&["sk-a", "sk-b"])),
            &[("ACME_API_KEY", "!PASSTHRU")],
        )
        .unwrap();
        assert!(c.is_caller_key());
        let c = credential(
            &file(Some("!PASSTHRU"), None),
            &[("ACME_API_KEY", "sk-env")],
        )
        .unwrap();
        assert_eq!(static_keys(&c), ["sk-env"]);
    }

    #[test]
    fn api_key_with_api_keys_is_refused_naming_the_provider() {
        let e = credential(&file(Some("sk-a"), Some(&["sk-b"])), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("provider `acme`") && e.contains("not both"),
            "{e}"
        );
    }

    #[test]
    fn caller_key_mixed_with_static_keys_is_refused_naming_the_provider() {
        for p in [
            file(None, Some(&["!PASSTHRU", "sk-a"])),
            file(None, Some(&["sk-a", "!passthru"])),
            file(Some("!PASSTHRU"), Some(&["sk-a"])),
            file(Some("sk-a"), Some(&["!PASSTHRU"])),
        ] {
            let e = credential(&p, &[]).unwrap_err().to_string();
            assert!(e.contains("provider `acme`"), "{e}");
            assert!(e.contains("!PASSTHRU") && e.contains("mixed"), "{e}");
        }
    }

    #[test]
    fn file_mistakes_are_refused_even_when_env_overrides() {
        let p = file(None, Some(&["!PASSTHRU", "sk-a"]));
        assert!(credential(&p, &[("ACME_API_KEY", "sk-env")]).is_err());
    }

    #[test]
    fn empty_api_keys_entry_is_refused_with_its_index() {
        let e = credential(&file(None, Some(&["sk-a", "${UNSET}"])), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_keys[1] is empty"), "{e}");
    }
}
