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
            message: err.to_string(),
        }
    }
}
