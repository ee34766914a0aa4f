//! `conf/aurora.yaml` and the README's configuration table restate the built-in
//! defaults for readers; these tests hold them to the code's `Default` values.
//!
//! Each documented value is fed back through the config loader and must build exactly
//! the config that no value builds, so `10s` and `10 s`, or `24h` and `1day`, agree,
//! while a wrong number does not.

use aurora::config::{build_config, default_config_yaml, Config, EnvSnapshot, DEFAULT_TLS_LISTEN};
use serde_yaml::{Mapping, Value};

const README: &str = include_str!("../README.md");
const CONF: &str = include_str!("../conf/aurora.yaml");

/// Documented defaults checked against a constant, because the loader only takes them
/// together with other keys (`server.tls.listen` needs a certificate).
const CHECKED_BY_CONSTANT: [(&str, &str); 1] = [("server.tls.listen", DEFAULT_TLS_LISTEN)];

fn build(yaml: &str) -> Config {
    build_config(Some(yaml), None, &EnvSnapshot::default())
        .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{yaml}"))
}

fn debug(yaml: &str) -> String {
    format!("{:?}", build(yaml))
}

/// `a.b.c` paths of every scalar or list in `value`.
fn leaf_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// `value` at `path`, every parent a mapping: `server.listen` → `{server: {listen: v}}`.
fn nested(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |inner, key| {
        let mut m = Mapping::new();
        m.insert(key.into(), inner);
        Value::Mapping(m)
    })
}

/// The backticked spans of a table cell, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Splits `a, [b, c], d` at the commas outside brackets.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut depth, mut current) = (Vec::new(), 0i32, String::new());
    for c in text.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_string());
    parts
}

/// One documented default: the YAML path and the value as written.
#[derive(Debug)]
struct Documented {
    path: String,
    text: String,
}

/// The rows of the README's configuration table whose default is a literal value
/// (the cell starts with a code span); a `{a, b}` key list spreads a `{x, y}` value
/// over its keys. Rows of lists (`auth.keys[]`) and prose defaults are left out.
fn readme_defaults() -> Vec<Documented> {
    let start = README
        .find("| YAML | environment | default |")
        .expect("the README's configuration table");
    let mut out = Vec::new();
    for line in README[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 3, "a row of three cells: {line}");
        let (key_cell, default_cell) = (cells[0].trim(), cells[2].trim());
        let key_spans = code_spans(key_cell);
        let Some(&path) = key_spans.first() else {
            continue;
        };
        if path.contains('[') || !default_cell.starts_with('`') {
            continue;
        }
        // An instance of each provider row: `openai` is a built-in type.
        let path = path.replace("<name>", "openai");
        let value = code_spans(default_cell)[0];
        let fields = key_spans.get(1).and_then(|s| {
            let inner = s.strip_prefix('{')?.strip_suffix('}')?;
            let names: Vec<&str> = inner.split(", ").collect();
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .then_some(names)
        });
        match fields {
            Some(names) => {
                let inner = value.trim_start_matches('{').trim_end_matches('}');
                let values = split_top_level(inner);
                assert_eq!(names.len(), values.len(), "{line}");
                for (name, text) in names.iter().zip(values) {
                    out.push(Documented {
                        path: format!("{path}.{name}"),
                        text,
                    });
                }
            }
            None => out.push(Documented {
                path,
                text: value.to_string(),
            }),
        }
    }
    out
}

/// Loads `documented` alone and compares the config with the one its parent section
/// builds empty.
fn check_documented(documented: &Documented, printed: &Value) -> Result<(), String> {
    if let Some((_, constant)) = CHECKED_BY_CONSTANT
        .iter()
        .find(|(path, _)| *path == documented.path)
    {
        return (documented.text == *constant)
            .then_some(())
            .ok_or_else(|| format!("the code says `{constant}`"));
    }
    let mut value: Value = serde_yaml::from_str(&documented.text).map_err(|e| e.to_string())?;
    // A list written as `a, b` in prose.
    if lookup(printed, &documented.path).is_some_and(Value::is_sequence) && !value.is_sequence() {
        value =
            serde_yaml::from_str(&format!("[{}]", documented.text)).map_err(|e| e.to_string())?;
    }
    let parent = documented
        .path
        .rsplit_once('.')
        .map_or(Value::Null, |(parent, _)| {
            nested(parent, Value::Mapping(Mapping::new()))
        });
    let with_value = serde_yaml::to_string(&nested(&documented.path, value)).unwrap();
    let without = serde_yaml::to_string(&parent).unwrap();
    let built = build_config(Some(&with_value), None, &EnvSnapshot::default())
        .map_err(|e| e.to_string())?;
    (format!("{built:?}") == debug(&without))
        .then_some(())
        .ok_or_else(|| "it builds another config than the code's default".to_string())
}

#[test]
fn the_readme_table_states_the_code_defaults() {
    let printed: Value = serde_yaml::from_str(&default_config_yaml()).unwrap();
    let documented = readme_defaults();
    let wrong: Vec<String> = documented
        .iter()
        .filter_map(|d| {
            check_documented(d, &printed)
                .err()
                .map(|why| format!("{} `{}`: {why}", d.path, d.text))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "README defaults disagree with the code:\n{}",
        wrong.join("\n")
    );

    let mut paths = Vec::new();
    leaf_paths("", &printed, &mut paths);
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !documented.iter().any(|d| &d.path == *p))
        .collect();
    assert!(
        missing.is_empty(),
        "defaults missing from the README table: {missing:?}"
    );
}

#[test]
fn conf_aurora_yaml_states_the_code_defaults() {
    assert_eq!(
        debug(CONF),
        format!(
            "{:?}",
            build_config(None, None, &EnvSnapshot::default()).unwrap()
        ),
        "conf/aurora.yaml builds another config than no file at all"
    );
    let conf: Value = serde_yaml::from_str(CONF).unwrap();
    let printed: Value = serde_yaml::from_str(&default_config_yaml()).unwrap();
    let mut paths = Vec::new();
    leaf_paths("", &printed, &mut paths);
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| lookup(&conf, p).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "defaults missing from conf/aurora.yaml: {missing:?}"
    );
    let (_, tls_listen) = CHECKED_BY_CONSTANT[0];
    assert!(
        CONF.contains(&format!("#   listen: \"{tls_listen}\"")),
        "conf/aurora.yaml's commented server.tls.listen must be {tls_listen}"
    );
}

#[test]
fn a_wrong_documented_default_is_caught() {
    let printed: Value = serde_yaml::from_str(&default_config_yaml()).unwrap();
    for (path, text) in [
        ("server.threads", "3"),
        ("server.body_timeout", "61s"),
        ("retry.on", "[connect, 429]"),
        ("providers.openai.timeouts.connect", "11s"),
        ("server.tls.listen", "0.0.0.0:9443"),
    ] {
        let documented = Documented {
            path: path.into(),
            text: text.into(),
        };
        assert!(check_documented(&documented, &printed).is_err(), "{path}");
    }
}
