//! Gateway credentials: the master key, managed keys stored as SHA-256 hashes, and
//! minting new managed keys.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::lookup::LookupMap;
use crate::providers::Secret;

/// Prefix of every managed key, so leaked keys are easy to grep for.
pub const MANAGED_KEY_PREFIX: &str = "sk-aurora-";

/// A managed gateway key as configured.
#[derive(Debug, Clone)]
pub struct ManagedKey {
    /// Who the key belongs to; shown in logs instead of the key. Shared with each
    /// request the key makes.
    pub name: Arc<str>,
    /// Disabled keys are refused.
    pub enabled: bool,
    /// Keys are refused from this instant on.
    pub expires_at: Option<SystemTime>,
    /// The key may use `/p/` routes.
    pub passthrough: bool,
}

/// Who made a request, as far as the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No gateway key is configured: anyone may call.
    Open,
    /// The master key.
    Master,
    /// A managed key, by name.
    Managed(Arc<str>),
}

impl Caller {
    /// A label for logs; never the credential.
    pub fn label(&self) -> &str {
        match self {
            Caller::Open => "-",
            Caller::Master => "master",
            Caller::Managed(name) => name,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing gateway key: send it as `Authorization: Bearer <key>`, `X-Api-Key: <key>`, `x-goog-api-key: <key>` or `?key=<key>`")]
    Missing,
    #[error("invalid gateway key")]
    Invalid,
    #[error("gateway key `{0}` is disabled")]
    Disabled(String),
    #[error("gateway key `{0}` has expired")]
    Expired(String),
}

/// The gateway's credential set.
#[derive(Debug, Default)]
pub struct GatewayAuth {
    master_hash: Option<[u8; 32]>,
    managed: LookupMap<[u8; 32], ManagedKey>,
    /// The names of the managed keys kept off `/p/` routes (most configs: none).
    without_passthrough: Vec<Arc<str>>,
}

impl GatewayAuth {
    /// Builds the set from the master key and managed keys keyed by their SHA-256.
    pub fn new(master: Option<&Secret>, managed: LookupMap<[u8; 32], ManagedKey>) -> Self {
        let without_passthrough = managed
            .values()
            .filter(|k| !k.passthrough)
            .map(|k| Arc::clone(&k.name))
            .collect();
        Self {
            master_hash: master.map(|m| sha256(m.expose().as_bytes())),
            managed,
            without_passthrough,
        }
    }

    /// Whether `caller` may use `/p/` routes: every caller but a managed key
    /// configured with `passthrough: false`.
    pub fn allows_passthrough(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Managed(name) => !self.without_passthrough.contains(name),
            Caller::Open | Caller::Master => true,
        }
    }

    /// True when no key is configured and every request is let in.
    pub fn is_open(&self) -> bool {
        self.master_hash.is_none() && self.managed.is_empty()
    }

    /// Whether a master key is set.
    pub fn has_master(&self) -> bool {
        self.master_hash.is_some()
    }

    /// Whether a key goes by `name` in logs and reports: `master` with a master key
    /// set, or a managed key's name.
    pub fn has_key_named(&self, name: &str) -> bool {
        (name == "master" && self.has_master()) || self.managed.values().any(|k| *k.name == *name)
    }

    /// Number of managed keys.
    pub fn managed_len(&self) -> usize {
        self.managed.len()
    }

    /// Checks the token a client presented in `headers` or, when `query` is given, in
    /// its `key` parameter ([`presented_token`]); `now` is read only for a key that
    /// expires.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: impl FnOnce() -> SystemTime,
    ) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller::Open);
        }
        let token = presented_token(headers, query).ok_or(AuthError::Missing)?;
        self.check_token(&token, now)
    }

    /// Whether `token` is one of the gateway's own keys: the master key (compared in
    /// constant time) or any managed key, enabled or not. Such a value is never a
    /// provider credential.
    pub fn is_gateway_key(&self, token: &str) -> bool {
        let digest = sha256(token.as_bytes());
        let master = self
            .master_hash
            .as_ref()
            .is_some_and(|m| digests_equal(m, &digest));
        master || self.managed.contains_key(&digest)
    }

    /// Whether a header value is one of the gateway's own keys, bare or as a Bearer
    /// token: a provider key header is sent on as it came, so `Bearer <gateway key>`
    /// in one would hand the gateway key to the provider all the same.
    pub fn holds_gateway_key(&self, value: &str) -> bool {
        self.is_gateway_key(value) || bearer_token(value).is_some_and(|t| self.is_gateway_key(t))
    }

    /// Checks one token; `now` is read only for a key that expires.
    pub fn check_token(
        &self,
        token: &str,
        now: impl FnOnce() -> SystemTime,
    ) -> Result<Caller, AuthError> {
        // Comparing digests in constant time hides both content and length of the master key.
        let digest = sha256(token.as_bytes());
        if let Some(master) = &self.master_hash {
            if digests_equal(master, &digest) {
                return Ok(Caller::Master);
            }
        }
        let key = self.managed.get(&digest).ok_or(AuthError::Invalid)?;
        if !key.enabled {
            return Err(AuthError::Disabled(key.name.to_string()));
        }
        if key.expires_at.is_some_and(|at| now() >= at) {
            return Err(AuthError::Expired(key.name.to_string()));
        }
        Ok(Caller::Managed(key.name.clone()))
    }
}

/// The gateway token from `Authorization: Bearer`, else `X-Api-Key`, else
/// `x-goog-api-key`, else the `key` parameter of `query`: Google's Gen AI SDKs send
/// their key as `x-goog-api-key`, and Gemini's REST examples as `?key=`, so a client
/// of Gemini's own API presents the gateway key where it would put Google's.
pub fn presented_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    presented_bearer(headers)
        .or_else(|| header_token(headers, "x-api-key"))
        .or_else(|| header_token(headers, GOOG_API_KEY))
        .map(Cow::Borrowed)
        .or_else(|| query.and_then(query_key))
}

/// Gemini's key header, where Google's SDKs put the key they are given.
pub const GOOG_API_KEY: &str = "x-goog-api-key";

/// The first `key=` parameter of `query`, percent-decoded (`+` is kept: no key holds
/// a space); `None` when there is none, or it is empty or not UTF-8.
pub fn query_key(query: &str) -> Option<Cow<'_, str>> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))?;
    let key = percent_decode_str(raw).decode_utf8().ok()?;
    (!key.trim().is_empty()).then_some(key)
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn presented_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The trimmed value of header `name`, unless absent, empty or not visible ASCII.
pub fn header_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn bearer_token(value: &str) -> Option<&str> {
    // Read as bytes: every request's credential passes here, and the scheme is ASCII.
    let value = value.trim();
    let space = value.bytes().position(|b| b == b' ')?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim());
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether two digests are equal, compared in constant time a word at a time (a byte
/// at a time costs every request a few hundred instructions more).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let words = |d: &[u8; 32]| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut word = [0; 8];
            word.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(word)
        })
    };
    bool::from(words(a).ct_eq(&words(b)))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A freshly minted managed key and the YAML stanza that stores only its hash.
#[derive(Debug)]
pub struct MintedKey {
    /// The key itself, shown once.
    pub key: Secret,
    /// Lowercase hex SHA-256 of the key.
    pub sha256_hex: String,
}

impl MintedKey {
    /// The `auth.keys` entry for this key.
    pub fn yaml_stanza(&self, name: &str) -> String {
        format!(
            "auth:\n  keys:\n    - {{name: {}, sha256: \"{}\", enabled: true}}\n",
            serde_json::Value::String(name.to_string()),
            self.sha256_hex
        )
    }
}

/// Mints `sk-aurora-` + 32 random bytes in unpadded base64url.
pub fn mint_managed_key() -> Result<MintedKey, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let key = format!(
        "{MANAGED_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let sha256_hex = hex::encode(sha256(key.as_bytes()));
    Ok(MintedKey {
        key: Secret::new(key),
        sha256_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn auth_with_managed(enabled: bool, expires_at: Option<SystemTime>) -> GatewayAuth {
        let mut managed = LookupMap::default();
        managed.insert(
            sha256(b"sk-aurora-managed"),
            ManagedKey {
                name: "ci".into(),
                enabled,
                expires_at,
                passthrough: true,
            },
        );
        GatewayAuth::new(Some(&Secret::new("master-secret")), managed)
    }

    #[test]
    fn digests_differing_in_any_byte_are_not_equal() {
        let digest = sha256(b"bench-master-placeholder-key-0123456789ab");
        assert!(digests_equal(&digest, &digest.clone()));
        for byte in 0..32 {
            for bit in [0x01, 0x80] {
                let mut other = digest;
                other[byte] ^= bit;
                assert!(!digests_equal(&digest, &other), "byte {byte}, bit {bit:#x}");
            }
        }
    }

    #[test]
    fn open_gateway_lets_everyone_in() {
        let a = GatewayAuth::default();
        assert!(a.is_open());
        assert_eq!(
            a.authenticate(&HeaderMap::new(), None, SystemTime::now),
            Ok(Caller::Open)
        );
    }

    #[test]
    fn a_bearer_token_is_read_in_any_case_of_its_scheme_and_trimmed() {
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER   abc  ", Some("abc")),
            ("  Bearer abc", Some("abc")),
            ("Bearer a b", Some("a b")),
            ("Bearer ", None),
            ("Bearer", None),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("", None),
        ] {
            assert_eq!(bearer_token(value), token, "{value:?}");
        }
    }

    #[test]
    fn accepts_master_key_as_bearer_or_x_api_key() {
        let a = auth_with_managed(true, None);
        let now = SystemTime::now();
        let h = headers(&[("authorization", "Bearer master-secret")]);
        assert_eq!(a.authenticate(&h, None, || now), Ok(Caller::Master));
        let h = headers(&[("x-api-key", "master-secret")]);
        assert_eq!(a.authenticate(&h, None, || now), Ok(Caller::Master));
    }

    #[test]
    fn accepts_the_gateway_key_where_googles_sdks_put_theirs() {
        let a = auth_with_managed(true, None);
        let now = SystemTime::now();
        let h = headers(&[("x-goog-api-key", "master-secret")]);
        assert_eq!(a.authenticate(&h, None, || now), Ok(Caller::Master));
        let none = HeaderMap::new();
        for query in [
            "key=master-secret",
            "alt=sse&key=master-secret",
            "key=master%2Dsecret",
        ] {
            assert_eq!(
                a.authenticate(&none, Some(query), || now),
                Ok(Caller::Master),
                "{query}"
            );
        }
        // The headers come first, the query only when no header names a key.
        let h = headers(&[("authorization", "Bearer sk-aurora-managed")]);
        assert_eq!(
            a.authenticate(&h, Some("key=master-secret"), || now),
            Ok(Caller::Managed("ci".into()))
        );
        for query in [
            "monkey=master-secret",
            "key=",
            "KEY=master-secret",
            "keys=master-secret",
        ] {
            assert_eq!(
                a.authenticate(&none, Some(query), || now),
                Err(AuthError::Missing),
                "{query}"
            );
        }
        assert_eq!(
            a.authenticate(&none, Some("key=master-secreT"), || now),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn refuses_missing_and_wrong_keys() {
        let a = auth_with_managed(true, None);
        let now = SystemTime::now();
        assert_eq!(
            a.authenticate(&HeaderMap::new(), None, || now),
            Err(AuthError::Missing)
        );
        let h = headers(&[("authorization", "Bearer master-secreT")]);
        assert_eq!(a.authenticate(&h, None, || now), Err(AuthError::Invalid));
        let h = headers(&[("authorization", "Basic master-secret")]);
        assert_eq!(a.authenticate(&h, None, || now), Err(AuthError::Missing));
    }

    #[test]
    fn managed_keys_match_by_hash_and_honour_enabled_and_expiry() {
        let now = SystemTime::now();
        let h = headers(&[("authorization", "Bearer sk-aurora-managed")]);
        let ok = auth_with_managed(true, Some(now + Duration::from_secs(60)));
        assert_eq!(
            ok.authenticate(&h, None, || now),
            Ok(Caller::Managed("ci".into()))
        );
        let disabled = auth_with_managed(false, None);
        assert_eq!(
            disabled.authenticate(&h, None, || now),
            Err(AuthError::Disabled("ci".into()))
        );
        let expired = auth_with_managed(true, Some(now - Duration::from_secs(1)));
        assert_eq!(
            expired.authenticate(&h, None, || now),
            Err(AuthError::Expired("ci".into()))
        );
    }

    #[test]
    fn the_clock_is_read_only_for_a_key_that_expires() {
        let reads = std::cell::Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            SystemTime::now()
        };
        let h = headers(&[("authorization", "Bearer sk-aurora-managed")]);
        let lasting = auth_with_managed(true, None);
        assert!(lasting.authenticate(&h, None, clock).is_ok());
        let master = headers(&[("authorization", "Bearer master-secret")]);
        assert!(lasting.authenticate(&master, None, clock).is_ok());
        assert_eq!(reads.get(), 0);
        let expiring = auth_with_managed(true, Some(SystemTime::now() + Duration::from_secs(60)));
        assert!(expiring.authenticate(&h, None, clock).is_ok());
        assert_eq!(reads.get(), 1);
    }

    #[test]
    fn every_configured_key_is_a_gateway_key_and_nothing_else_is() {
        for auth in [
            auth_with_managed(true, None),
            auth_with_managed(false, None),
            auth_with_managed(true, Some(SystemTime::UNIX_EPOCH)),
        ] {
            assert!(auth.is_gateway_key("master-secret"));
            assert!(auth.is_gateway_key("sk-aurora-managed"));
            assert!(!auth.is_gateway_key("master-secreT"));
            assert!(!auth.is_gateway_key("sk-client-own"));
            assert!(!auth.is_gateway_key(""));
        }
        assert!(!GatewayAuth::default().is_gateway_key("master-secret"));
    }

    #[test]
    fn minted_keys_have_prefix_and_matching_hash() {
        let k = mint_managed_key().unwrap();
        let raw = k.key.expose();
        assert!(raw.starts_with(MANAGED_KEY_PREFIX));
        assert_eq!(raw.len(), MANAGED_KEY_PREFIX.len() + 43);
        assert_eq!(k.sha256_hex, hex::encode(sha256(raw.as_bytes())));
        assert!(k.yaml_stanza("ci").contains(&k.sha256_hex));
        assert!(!k.yaml_stanza("ci").contains(raw));
        assert_ne!(mint_managed_key().unwrap().key, k.key);
    }
}
