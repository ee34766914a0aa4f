//! The process environment as configuration input: a snapshot taken once per load so
//! a load is consistent, and `${VAR}` expansion inside YAML values.

use std::collections::HashMap;

/// A snapshot of environment variables. Empty values count as unset, so
/// `ANTHROPIC_API_KEY=` behaves like no key at all.
#[derive(Debug, Clone, Default)]
pub struct EnvSnapshot {
    vars: HashMap<String, String>,
}

impl EnvSnapshot {
    /// Snapshot of the current process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Snapshot from explicit pairs (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// For tests of routing and other settings: a loopback listener, so the refusal of
    /// an open gateway facing the network stays out of them (its own tests set the
    /// listener).
    #[cfg(test)]
    pub fn loopback() -> Self {
        Self::from_pairs([("AURORA_LISTEN", "127.0.0.1:8080")])
    }

    /// The value of `name`, unless unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name` when set, even empty: for the few settings where an empty
    /// value means something (`AURORA_METRICS_LISTEN=` turns the listener off).
    pub fn get_raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Expands `${VAR}` and `${VAR:-default}` in `input`. An unset variable expands to
    /// the default or to nothing; `$$` stands for a literal `$`.
    pub fn expand(&self, input: &str) -> String {
        if !input.contains('$') {
            return input.to_string();
        }
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body) = after.strip_prefix('{') {
                match body.find('}') {
                    Some(end) => {
                        let expr = &body[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        match self.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(default.unwrap_or("")),
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[pos..]);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

/// The environment variable prefix for a provider instance: `openai-east` → `OPENAI_EAST`.
pub fn env_prefix(instance: &str) -> String {
    instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> EnvSnapshot {
        EnvSnapshot::from_pairs([("KEY", "sk-test"), ("EMPTY", "")])
    }

    #[test]
    fn expands_braced_variables() {
        assert_eq!(env().expand("${KEY}"), "sk-test");
        assert_eq!(env().expand("Bearer ${KEY}!"), "Bearer sk-test!");
    }

    #[test]
    fn unset_and_empty_variables_expand_to_default_or_nothing() {
        assert_eq!(env().expand("${MISSING}"), "");
        assert_eq!(env().expand("${EMPTY:-x}"), "x");
        assert_eq!(env().expand("${MISSING:-http://h}"), "http://h");
    }

    #[test]
    fn keeps_lone_dollars_and_unclosed_braces() {
        assert_eq!(env().expand("a$b"), "a$b");
        assert_eq!(env().expand("$${KEY}"), "${KEY}");
        assert_eq!(env().expand("${KEY"), "${KEY");
    }

    #[test]
    fn instance_names_map_to_env_prefixes() {
        assert_eq!(env_prefix("openai-east"), "OPENAI_EAST");
        assert_eq!(env_prefix("zai"), "ZAI");
    }
}
