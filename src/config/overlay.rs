//! The environment over the file: every setting with an environment variable takes
//! the variable when it is set, else the file's value, else (at the caller) its
//! default. [`overlay`] is that rule; the typed helpers below only say how each kind
//! of value is read from either side.

use std::str::FromStr;
use std::time::Duration;

use super::env::EnvSnapshot;
use super::error::ConfigError;
use super::schema::SizeValue;

/// The environment's text when set, else the file's value; `None` when neither
/// says anything (the caller's default applies). Each side has its own reader, as the
/// environment only holds text while the file holds typed YAML values.
pub(super) fn overlay<F, T, E>(
    env_text: Option<&str>,
    file: Option<F>,
    from_env: impl FnOnce(&str) -> Result<T, E>,
    from_file: impl FnOnce(F) -> Result<T, E>,
) -> Result<Option<T>, E> {
    match env_text {
        Some(text) => from_env(text).map(Some),
        None => file.map(from_file).transpose(),
    }
}

/// Text: `var` as set, else the file's value with `${VAR}` expanded.
pub(super) fn text(env: &EnvSnapshot, var: &str, file: Option<&str>) -> Option<String> {
    let Ok(value) = overlay::<_, _, std::convert::Infallible>(
        env.get(var),
        file,
        |v| Ok(v.to_string()),
        |f| Ok(env.expand(f)),
    );
    value
}

/// Like [`text`], a blank value counting as unset (paths, names, URLs).
pub(super) fn non_blank_text(env: &EnvSnapshot, var: &str, file: Option<&str>) -> Option<String> {
    text(env, var, file).filter(|v| !v.trim().is_empty())
}

/// Like [`non_blank_text`], but a file value that names variables and expands to
/// nothing is an error, not a value left unset: `base_url: ${AZURE_URL}` with the
/// variable unset in one deployment would otherwise send the provider's key to the
/// type's public URL, and `store: ${REDIS_URL}` would count each replica alone.
/// `${VAR:-default}` says what an unset variable means (`${VAR:-}`: nothing, meant).
pub(super) fn given_text(
    env: &EnvSnapshot,
    var: &str,
    file: Option<&str>,
    setting: &str,
) -> Result<Option<String>, ConfigError> {
    match text(env, var, file) {
        Some(v) if v.trim().is_empty() => match file {
            // `${VAR:-}` says an empty value is meant.
            Some(written)
                if env.get(var).is_none() && written.contains('$') && !written.contains(":-") =>
            {
                Err(invalid(format!(
                    "{setting} `{written}` is empty once expanded: is a variable unset?"
                )))
            }
            _ => Ok(None),
        },
        value => Ok(value),
    }
}

/// A number: `var` parsed (blanks around it ignored), else the file's number.
pub(super) fn number<T: FromStr>(
    env: &EnvSnapshot,
    var: &str,
    file: Option<T>,
) -> Result<Option<T>, ConfigError> {
    overlay(
        env.get(var),
        file,
        |v| {
            v.trim()
                .parse()
                .map_err(|_| invalid(format!("{var} must be a number, got `{v}`")))
        },
        Ok,
    )
}

/// A switch: `var` as `1/true/yes/on` or `0/false/no/off`, else the file's boolean.
pub(super) fn flag(
    env: &EnvSnapshot,
    var: &str,
    file: Option<bool>,
) -> Result<Option<bool>, ConfigError> {
    overlay(
        env.get(var),
        file,
        |v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(format!("{var} must be true or false, got `{v}`"))),
        },
        Ok,
    )
}

/// A list: `var` as comma-separated entries (blank ones dropped), else the file's list.
pub(super) fn list(env: &EnvSnapshot, var: &str, file: Option<&[String]>) -> Option<Vec<String>> {
    let Ok(value) = overlay::<_, _, std::convert::Infallible>(
        env.get(var),
        file,
        |v| {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        },
        |f| Ok(f.to_vec()),
    );
    value
}

/// A size (`10MiB`, `512KiB`, bytes): `var`, else the file's `field`. An error names
/// whichever of the two was read.
pub(super) fn size(
    env: &EnvSnapshot,
    var: &str,
    field: &str,
    file: Option<&SizeValue>,
) -> Result<Option<u64>, ConfigError> {
    overlay(
        env.get(var),
        file,
        |v| parse_size(var, v),
        |f| match f {
            SizeValue::Bytes(b) => Ok(*b),
            SizeValue::Text(t) => parse_size(field, &env.expand(t)),
        },
    )
}

/// A duration (`10s`, `2m`): `var`, else the file's `field`. An error names whichever
/// of the two was read.
pub(super) fn duration(
    env: &EnvSnapshot,
    var: &str,
    field: &str,
    file: Option<&str>,
) -> Result<Option<Duration>, ConfigError> {
    overlay(
        env.get(var),
        file,
        |v| parse_duration(var, v),
        |f| parse_duration(field, &env.expand(f)),
    )
}

fn parse_size(name: &str, text: &str) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| invalid(format!("{name} `{text}` is not a size like `10MiB`: {e}")))
}

fn parse_duration(name: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| invalid(format!("{name} `{text}` is not a duration like `10s`: {e}")))
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_environment_wins_then_the_file_then_nothing() {
        let read = |e: &EnvSnapshot, file: Option<u32>| {
            overlay(
                e.get("N"),
                file,
                |v| v.parse::<u32>().map_err(|_| "env"),
                |f| Ok(f + 100),
            )
        };
        assert_eq!(read(&env(&[("N", "1")]), Some(2)), Ok(Some(1)));
        assert_eq!(read(&env(&[]), Some(2)), Ok(Some(102)));
        assert_eq!(read(&env(&[]), None), Ok(None));
        // An empty variable counts as unset.
        assert_eq!(read(&env(&[("N", "")]), Some(2)), Ok(Some(102)));
        // A broken variable is an error even when the file has a good value.
        assert_eq!(read(&env(&[("N", "x")]), Some(2)), Err("env"));
    }

    #[test]
    fn text_expands_the_file_but_not_the_environment() {
        let e = env(&[("HOST", "h"), ("LISTEN", "${HOST}:1")]);
        assert_eq!(text(&e, "LISTEN", Some("x")).as_deref(), Some("${HOST}:1"));
        assert_eq!(text(&e, "NONE", Some("${HOST}:2")).as_deref(), Some("h:2"));
        assert_eq!(text(&e, "NONE", None), None);
        assert_eq!(text(&e, "NONE", Some(" ")).as_deref(), Some(" "));
        assert_eq!(non_blank_text(&e, "NONE", Some(" ")), None);
        assert_eq!(non_blank_text(&e, "NONE", Some("${UNSET}")), None);
    }

    #[test]
    fn a_file_value_whose_variables_expand_to_nothing_is_an_error() {
        let e = EnvSnapshot::from_pairs([("SET", "https://x.example"), ("BLANK", "")]);
        let given = |file| given_text(&e, "AURORA_NONE", file, "providers.a.base_url");
        let err = given(Some("${UNSET}")).unwrap_err().to_string();
        assert!(err.contains("providers.a.base_url `${UNSET}`"), "{err}");
        assert!(given(Some(" ${BLANK} ")).is_err());
        assert_eq!(
            given(Some("${SET}")).unwrap().as_deref(),
            Some("https://x.example")
        );
        assert_eq!(
            given(Some("${UNSET:-https://d.example}"))
                .unwrap()
                .as_deref(),
            Some("https://d.example")
        );
        // Left blank as written, an empty default asked for, or not written: unset.
        assert_eq!(given(Some("")).unwrap(), None);
        assert_eq!(given(Some("${UNSET:-}")).unwrap(), None);
        assert_eq!(given(None).unwrap(), None);
    }

    #[test]
    fn numbers_and_flags_name_the_variable_when_broken() {
        let e = env(&[
            ("T", " 4 "),
            ("BAD", "many"),
            ("ON", "Yes"),
            ("NO", "maybe"),
        ]);
        assert_eq!(number::<u32>(&e, "T", Some(2)).unwrap(), Some(4));
        assert_eq!(number::<u32>(&e, "UNSET", Some(2)).unwrap(), Some(2));
        let err = number::<u32>(&e, "BAD", None).unwrap_err().to_string();
        assert!(err.contains("BAD must be a number, got `many`"), "{err}");
        assert_eq!(flag(&e, "ON", Some(false)).unwrap(), Some(true));
        assert_eq!(flag(&e, "UNSET", Some(false)).unwrap(), Some(false));
        assert_eq!(flag(&e, "UNSET", None).unwrap(), None);
        let err = flag(&e, "NO", None).unwrap_err().to_string();
        assert!(err.contains("NO must be true or false"), "{err}");
    }

    #[test]
    fn lists_split_the_environment_at_commas() {
        let e = env(&[("L", " a, ,b ,")]);
        let file = vec!["c".to_string()];
        assert_eq!(list(&e, "L", Some(&file)).unwrap(), ["a", "b"]);
        assert_eq!(list(&e, "UNSET", Some(&file)).unwrap(), ["c"]);
        assert_eq!(list(&e, "UNSET", None), None);
    }

    #[test]
    fn sizes_and_durations_name_the_side_that_was_read() {
        let e = env(&[("S", "2MiB"), ("D", "1m"), ("X", "${S}")]);
        let file_size = SizeValue::Text("1KiB".into());
        assert_eq!(
            size(&e, "S", "f.size", Some(&file_size)).unwrap(),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(
            size(&e, "UNSET", "f.size", Some(&SizeValue::Bytes(7))).unwrap(),
            Some(7)
        );
        assert_eq!(
            size(&e, "UNSET", "f.size", Some(&file_size)).unwrap(),
            Some(1024)
        );
        let err = size(&e, "UNSET", "f.size", Some(&SizeValue::Text("big".into())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.size `big`"), "{err}");
        assert_eq!(
            duration(&e, "D", "f.time", Some("5s")).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            duration(&e, "UNSET", "f.time", Some("5s")).unwrap(),
            Some(Duration::from_secs(5))
        );
        let err = duration(&e, "X", "f.time", None).unwrap_err().to_string();
        assert!(
            err.contains("X `${S}`"),
            "the environment is never expanded: {err}"
        );
    }
}
