//! Configuration errors, worded for the operator who has to fix the file.

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax or schema error, with position when YAML gives one.
    #[error("{path}{position}: {message}")]
    Yaml {
        path: String,
        position: String,
        message: String,
    },
    /// A value is present but unusable.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl ConfigError {
    pub(crate) fn yaml(path: &str, err: &serde_yaml::Error) -> Self {
        let position = err
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        ConfigError::Yaml {
            path: path.to_string(),
            position,
            message: without_quoted_strings(&err.to_string()),
        }
    }
}

/// `message` with the text of every string value it quotes (serde's `invalid type:
/// string "…", expected …`) left out: a key pasted where a list or a stanza belongs
/// would be repeated on the terminal and in the log of a reload. The path and the
/// position still say where it is.
fn without_quoted_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        let value = at + MARK.len();
        out.push_str(&rest[..value]);
        out.push('…');
        // The closing quote: serde writes the string as Debug does, `\"` escaped.
        let bytes = rest.as_bytes();
        let mut i = value;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        rest = &rest[i.min(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_value_in_a_yaml_error_is_not_repeated() {
        let yaml = "providers:\n  openai:\n    api_keys: sk-proj-LIVE\\\"SECRET\n";
        let err = serde_yaml::from_str::<crate::config::schema::FileConfig>(yaml).unwrap_err();
        let shown = ConfigError::yaml("aurora.yaml", &err).to_string();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("sk-proj"), "{shown}");
        assert!(shown.contains("string \"…\""), "{shown}");
        assert!(shown.contains("aurora.yaml:3:"), "{shown}");
    }
}
