//! A credential value that never prints itself.

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

/// A secret string (provider key, master key). `Debug` and `Display` are redacted so a
/// stray `{:?}` in a log line cannot leak it.
/// Shared, so handing a request its provider key copies nothing; the header values
/// that carry it are made once per key, not once per request.
#[derive(Clone)]
pub struct Secret(Arc<SecretValue>);

struct SecretValue {
    text: Box<str>,
    /// The key as `X-Api-Key`-style headers send it; `None` inside when it cannot be
    /// a header value.
    plain: OnceLock<Option<HeaderValue>>,
    /// `Bearer <key>`, as `Authorization` sends it.
    bearer: OnceLock<Option<HeaderValue>>,
}

/// How a header carries a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// The key alone (`X-Api-Key`, `X-Goog-Api-Key`).
    Plain,
    /// `Bearer <key>` (`Authorization`).
    Bearer,
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(SecretValue {
            text: value.into().into_boxed_str(),
            plain: OnceLock::new(),
            bearer: OnceLock::new(),
        }))
    }

    /// The raw value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0.text
    }

    /// The key as a header value in `form`, marked sensitive (HTTP/2 never indexes
    /// it); `None` when the key holds bytes no header may carry. Made on first use and
    /// shared after: a request's copy costs a reference count.
    pub fn header_value(&self, form: KeyForm) -> Option<HeaderValue> {
        let (cell, prefix) = match form {
            KeyForm::Plain => (&self.0.plain, ""),
            KeyForm::Bearer => (&self.0.bearer, "Bearer "),
        };
        cell.get_or_init(|| {
            let mut value = bytes::BytesMut::with_capacity(prefix.len() + self.0.text.len());
            value.extend_from_slice(prefix.as_bytes());
            value.extend_from_slice(self.0.text.as_bytes());
            let mut value = HeaderValue::from_maybe_shared(value.freeze()).ok()?;
            value.set_sensitive(true);
            Some(value)
        })
        .clone()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("sk-live-123");
        assert!(!format!("{s:?} {s}").contains("sk-live"));
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn header_values_carry_the_key_alone_or_as_a_bearer_token() {
        let s = Secret::new("sk-live-123");
        let plain = s.header_value(KeyForm::Plain).unwrap();
        let bearer = s.header_value(KeyForm::Bearer).unwrap();
        assert_eq!(plain, "sk-live-123");
        assert_eq!(bearer, "Bearer sk-live-123");
        assert!(plain.is_sensitive() && bearer.is_sensitive());
        assert!(!format!("{plain:?} {bearer:?}").contains("sk-live"));
    }

    #[test]
    fn a_keys_header_value_is_made_once_and_shared() {
        let s = Secret::new("sk-live-123");
        let first = s.header_value(KeyForm::Bearer).unwrap();
        // A clone of the key (as each request holds) shares the value, bytes and all.
        let again = s.clone().header_value(KeyForm::Bearer).unwrap();
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
    }

    #[test]
    fn a_key_no_header_may_carry_has_no_header_value() {
        let s = Secret::new("sk-live\r\nx-injected: 1");
        assert!(s.header_value(KeyForm::Plain).is_none());
        assert!(s.header_value(KeyForm::Bearer).is_none());
        assert_eq!(s, Secret::new("sk-live\r\nx-injected: 1"));
        assert_ne!(s, Secret::new("sk-live"));
    }
}
