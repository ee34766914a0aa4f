//! Refusals that keep a gateway from being an open door: no gateway key while
//! provider credentials are held and a listener faces the network, and no gateway
//! key anyone could guess. Checked wherever a config is built, so startup,
//! `--check-config` and a reload (which keeps the old config) all refuse alike.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use super::ConfigError;
use crate::auth::GatewayAuth;
use crate::providers::{ProviderCatalogue, ProviderCredential, Secret};

/// The shortest master key accepted.
pub const MIN_MASTER_KEY_LEN: usize = 32;

/// How to mint a good key, for the refusals' messages.
const MINT: &str =
    "mint one with `aurora keys new --name NAME` (a managed key) or `openssl rand -hex 24`";

/// Keys published as examples (in docs and sample configs, Aurora's own included)
/// or guessed first: never accepted as a gateway key, whatever their length.
const SAMPLE_KEYS: [&str; 16] = [
    "sk-1234",
    "sk-12345",
    "sk-123456789",
    "sk-1234567890",
    "changeme",
    "change-me",
    "password",
    "secret",
    "admin",
    "master",
    "masterkey",
    "master-key",
    "test",
    "aurora",
    "sk-aurora-master-key-change-me-please",
    "your-master-key-here-at-least-32-chars",
];

/// A master key is long and not a published sample.
pub fn check_master_key(master: &Secret) -> Result<(), ConfigError> {
    let key = master.expose();
    if is_sample(key) {
        return Err(ConfigError::Invalid(format!(
            "the master key is a published sample key, which anyone could try; {MINT}"
        )));
    }
    if key.chars().count() < MIN_MASTER_KEY_LEN {
        return Err(ConfigError::Invalid(format!(
            "the master key is shorter than {MIN_MASTER_KEY_LEN} characters, which is guessable; {MINT}"
        )));
    }
    Ok(())
}

/// A managed key (stored by its SHA-256) is not a published sample.
pub fn check_managed_key(name: &str, sha256: &[u8; 32]) -> Result<(), ConfigError> {
    let sample = SAMPLE_KEYS
        .iter()
        .any(|k| Sha256::digest(k.as_bytes()).as_slice() == sha256);
    if sample {
        return Err(ConfigError::Invalid(format!(
            "auth.keys `{name}` is the SHA-256 of a published sample key, which anyone could try; {MINT}"
        )));
    }
    Ok(())
}

fn is_sample(key: &str) -> bool {
    SAMPLE_KEYS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key.trim()))
}

/// With gateway auth off, provider credentials held and a listener beyond loopback,
/// anyone who reaches the machine spends the credentials: refused unless
/// `allow_unauthenticated` says it is meant.
pub fn check_open_gateway(
    auth: &GatewayAuth,
    providers: &ProviderCatalogue,
    listeners: &[&str],
    allow_unauthenticated: bool,
) -> Result<(), ConfigError> {
    if !auth.is_open() || allow_unauthenticated {
        return Ok(());
    }
    // A key in a configured header (Azure's `api-key`, a `Bearer` for a keyless type)
    // is spent as surely as an `api_key`.
    let holds_credentials = providers.configured().any(|p| {
        matches!(p.credential, ProviderCredential::Static(_))
            || p.headers
                .iter()
                .any(|(name, _)| crate::logging::is_credential_header(name.as_str()))
    });
    let Some(public) = listeners.iter().find(|l| !is_loopback(l)) else {
        return Ok(());
    };
    if !holds_credentials {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "refusing an open gateway: no gateway key is configured, the gateway holds provider credentials, and it listens on {public}, beyond this machine, so anyone who reaches it could spend them. Either set AURORA_MASTER_KEY (or auth.keys; {MINT}), or listen on 127.0.0.1, or set server.allow_unauthenticated: true (AURORA_ALLOW_UNAUTHENTICATED=1) if an open gateway is what you mean"
    )))
}

/// Whether a `host:port` listener is reachable only from this machine.
fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_sample_master_keys_are_refused_with_how_to_mint_one() {
        for weak in ["sk-1234", "changeme", "PASSWORD", "short-but-not-a-sample"] {
            let e = check_master_key(&Secret::new(weak))
                .unwrap_err()
                .to_string();
            assert!(e.contains("openssl rand -hex 24"), "{e}");
            assert!(!e.contains(weak), "the key itself is never echoed: {e}");
        }
        let sample = "your-master-key-here-at-least-32-chars";
        assert!(check_master_key(&Secret::new(sample)).is_err());
        assert!(check_master_key(&Secret::new("k".repeat(32))).is_ok());
    }

    #[test]
    fn managed_keys_hashing_to_a_sample_are_refused() {
        let hash: [u8; 32] = Sha256::digest(b"changeme").into();
        let e = check_managed_key("ci", &hash).unwrap_err().to_string();
        assert!(e.contains("auth.keys `ci`"), "{e}");
        let good: [u8; 32] = Sha256::digest(b"a-long-random-key-nobody-published").into();
        assert!(check_managed_key("ci", &good).is_ok());
    }

    #[test]
    fn loopback_listeners_are_told_apart() {
        for l in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.1.2.3:1",
            "localhost:80",
        ] {
            assert!(is_loopback(l), "{l}");
        }
        for l in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "example.com:80",
        ] {
            assert!(!is_loopback(l), "{l}");
        }
    }
}
