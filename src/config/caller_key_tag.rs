//! An unquoted `api_key: !PASSTHRU` is, to YAML, an empty value tagged `!PASSTHRU`,
//! and serde reads it into a string field as `""`: the provider would silently end
//! up without a key. This puts the marker back, so quoting it is optional.

use serde_yaml::Value;

use super::schema::FileConfig;
use crate::providers::{is_caller_key_marker, CALLER_KEY_MARKER};

/// Rewrites every `api_key` / `api_keys` entry written as the bare `!PASSTHRU` tag
/// in `tree` (the same document `file` was read from) to the marker text.
pub(super) fn restore_caller_key_tags(tree: &Value, file: &mut FileConfig) {
    let Some(providers) = tree.get("providers").and_then(Value::as_mapping) else {
        return;
    };
    for (name, node) in providers {
        let Some(provider) = name.as_str().and_then(|n| file.providers.get_mut(n)) else {
            continue;
        };
        if node.get("api_key").is_some_and(is_caller_key_tag) {
            provider.api_key = Some(CALLER_KEY_MARKER.to_string());
        }
        let items = node.get("api_keys").and_then(Value::as_sequence);
        if let (Some(items), Some(keys)) = (items, provider.api_keys.as_mut()) {
            for (key, item) in keys.iter_mut().zip(items) {
                if is_caller_key_tag(item) {
                    *key = CALLER_KEY_MARKER.to_string();
                }
            }
        }
    }
}

/// Whether the YAML text may hold such a tag, so ordinary files are parsed once.
pub(super) fn may_hold_caller_key_tag(yaml: &str) -> bool {
    yaml.to_ascii_uppercase().contains(CALLER_KEY_MARKER)
}

fn is_caller_key_tag(node: &Value) -> bool {
    match node {
        Value::Tagged(t) => {
            let empty = t.value.is_null() || t.value.as_str() == Some("");
            empty && is_caller_key_marker(&t.tag.to_string())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> FileConfig {
        let mut file: FileConfig = serde_yaml::from_str(yaml).unwrap();
        let tree: Value = serde_yaml::from_str(yaml).unwrap();
        restore_caller_key_tags(&tree, &mut file);
        file
    }

    #[test]
    fn unquoted_caller_key_in_api_key_becomes_the_marker() {
        let file = read("providers:\n  openai:\n    api_key: !PASSTHRU\n");
        assert_eq!(
            file.providers["openai"].api_key.as_deref(),
            Some(CALLER_KEY_MARKER)
        );
    }

    #[test]
    fn unquoted_caller_key_in_api_keys_becomes_the_marker_in_place() {
        let file = read("providers:\n  openai:\n    api_keys:\n      - sk-a\n      - !PASSTHRU\n");
        assert_eq!(
            file.providers["openai"].api_keys.as_deref(),
            Some(&["sk-a".to_string(), CALLER_KEY_MARKER.to_string()][..])
        );
    }

    #[test]
    fn other_values_and_tags_are_left_alone() {
        let file = read("providers:\n  a: {api_key: \"!PASSTHRU\"}\n  b: {api_key: !other x}\n  c: {api_key: 0x1F}\n");
        assert_eq!(
            file.providers["a"].api_key.as_deref(),
            Some(CALLER_KEY_MARKER)
        );
        assert_eq!(file.providers["b"].api_key.as_deref(), Some("x"));
        assert_eq!(file.providers["c"].api_key.as_deref(), Some("0x1F"));
    }

    #[test]
    fn detection_ignores_case_and_skips_ordinary_files() {
        assert!(may_hold_caller_key_tag("api_key: !passthru"));
        assert!(!may_hold_caller_key_tag("api_key: sk-a"));
    }
}
