//! The Redis the limit counters live in: its URL and, for `rediss://`, the
//! certificates it is checked against and presents (`limits.store_tls`).
//!
//! Everything is read while the config is built: a missing, unreadable or mismatched
//! file is refused like any other invalid value, not found at the first connection
//! with every request already failing over to `on_store_error`; and a connection made
//! later (after Redis restarts) reads nothing from disk.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use redis::{ClientTlsConfig, TlsCertificates};

use super::error::ConfigError;
use super::overlay::non_blank_text;
use super::schema::FileStoreTls;
use super::tls_listener::{certified_pair, read_pem};
use super::EnvSnapshot;
use crate::providers::{read_ca_file, usable_system_roots};

/// A Redis to keep the counters in.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// `redis://` or `rediss://`, with the password when Redis asks for one.
    pub url: String,
    /// For `rediss://`: what its certificate is checked against, and the gateway's.
    pub tls: Option<Arc<StoreTls>>,
}

/// How the gateway checks a `rediss://` store, and the certificate it presents to one.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreTls {
    /// PEM certificates the store's own is checked against: `ca_file`'s, else the
    /// system's roots.
    pub roots_pem: Vec<u8>,
    /// The roots are `ca_file`'s.
    pub roots_from_file: bool,
    /// The chain and key the gateway presents when Redis asks clients for a
    /// certificate (its `tls-auth-clients`, on unless turned off).
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

// Never print the password or key material.
impl fmt::Debug for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAddress")
            .field("url", &without_password(&self.url))
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for StoreTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTls")
            .field("roots_from_file", &self.roots_from_file)
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// `url` with the password of its user part, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let name = user.split_once(':').map_or("", |(name, _)| name);
            format!("{scheme}://{name}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

impl RedisAddress {
    /// `url` as it is, a `rediss://` one checked against the public roots built into
    /// the redis client (Mozilla's), not the system's: the config reads those.
    pub fn plain(url: &str) -> Self {
        Self {
            url: url.to_string(),
            tls: None,
        }
    }

    /// A client for this Redis; it connects when first asked to.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        if is_tls(&self.url) {
            // rustls takes the process's provider; the listener installs the same one.
            pingora_core::tls::install_default_crypto_provider();
        }
        match &self.tls {
            None => redis::Client::open(self.url.as_str()),
            Some(tls) => redis::Client::build_with_tls(
                self.url.as_str(),
                TlsCertificates {
                    client_tls: tls.client.as_ref().map(|c| ClientTlsConfig {
                        client_cert: c.cert_pem.clone(),
                        client_key: c.key_pem.clone(),
                    }),
                    root_cert: Some(tls.roots_pem.clone()),
                },
            ),
        }
    }
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// The variables that name `limits.store_tls`'s files.
const TLS_VARS: [&str; 3] = [
    "AURORA_REDIS_CA_FILE",
    "AURORA_REDIS_CERT_FILE",
    "AURORA_REDIS_KEY_FILE",
];

/// Refuses certificates for a store that is not `rediss://` (`what` says which it is).
pub fn no_store_tls(
    file: Option<&FileStoreTls>,
    env: &EnvSnapshot,
    what: &str,
) -> Result<(), ConfigError> {
    let named = TLS_VARS
        .iter()
        .any(|var| env.get(var).is_some_and(|v| !v.trim().is_empty()));
    if file.is_some() || named {
        return Err(invalid(format!(
            "limits.store_tls (or AURORA_REDIS_CA_FILE, AURORA_REDIS_CERT_FILE, \
             AURORA_REDIS_KEY_FILE) is for a rediss:// store; limits.store is {what}"
        )));
    }
    Ok(())
}

/// The Redis of `url` (from `limits.store` or `AURORA_REDIS_URL`) with the
/// certificates of `limits.store_tls` (or `AURORA_REDIS_CA_FILE`,
/// `AURORA_REDIS_CERT_FILE`, `AURORA_REDIS_KEY_FILE`), checked.
pub fn redis_address(
    url: &str,
    file: Option<&FileStoreTls>,
    env: &EnvSnapshot,
) -> Result<RedisAddress, ConfigError> {
    let tls = if is_tls(url) {
        Some(Arc::new(store_tls(file, env)?))
    } else {
        no_store_tls(file, env, "a redis:// URL")?;
        None
    };
    let address = RedisAddress {
        url: url.to_string(),
        tls,
    };
    // Its URL is never quoted: it may hold the password.
    let client = address
        .client()
        .map_err(|_| invalid("limits.store (or AURORA_REDIS_URL) is not a usable redis:// URL"))?;
    let info = client.get_connection_info();
    if info.redis.username.is_some() && info.redis.password.is_none() {
        // The client sends a user only with a password: it would connect as `default`.
        return Err(invalid(
            "limits.store (or AURORA_REDIS_URL) names a user but no password \
             (redis://USER:PASSWORD@host): the user alone is not sent",
        ));
    }
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = info.addr {
        return Err(invalid(
            "limits.store: a rediss:// store's certificate is always checked (`#insecure` is \
             not taken); name its CA in limits.store_tls.ca_file",
        ));
    }
    Ok(address)
}

/// The certificates of a `rediss://` store, read and checked.
fn store_tls(file: Option<&FileStoreTls>, env: &EnvSnapshot) -> Result<StoreTls, ConfigError> {
    let named =
        |var: &str, value: Option<&String>| non_blank_text(env, var, value.map(String::as_str));
    let [ca_var, cert_var, key_var] = TLS_VARS;
    let ca_file = named(ca_var, file.and_then(|f| f.ca_file.as_ref()));
    let cert_file = named(cert_var, file.and_then(|f| f.cert_file.as_ref()));
    let key_file = named(key_var, file.and_then(|f| f.key_file.as_ref()));
    let (roots_pem, roots_from_file) = match ca_file {
        Some(path) => (
            read_ca(Path::new(&path))
                .map_err(|e| invalid(format!("limits.store_tls.ca_file: {e}")))?,
            true,
        ),
        None => (system_roots_pem()?, false),
    };
    let client = match (cert_file, key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(
            read_identity(Path::new(&cert), Path::new(&key))
                .map_err(|e| invalid(format!("limits.store_tls: {e}")))?,
        ),
        _ => {
            return Err(invalid(
                "limits.store_tls: cert_file and key_file are given together",
            ))
        }
    };
    Ok(StoreTls {
        roots_pem,
        roots_from_file,
        client,
    })
}

/// The system's trust roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), as PEM:
/// read here once, where the redis client would read them at every connection.
fn system_roots_pem() -> Result<Vec<u8>, ConfigError> {
    let roots = usable_system_roots().map_err(|e| {
        invalid(format!(
            "limits.store is rediss:// and the system's trust roots cannot be read ({e}): \
             name the CA of the store's certificate in limits.store_tls.ca_file"
        ))
    })?;
    if roots.is_empty() {
        return Err(invalid(
            "limits.store is rediss:// and the system holds no trust roots: name the CA of \
             the store's certificate in limits.store_tls.ca_file",
        ));
    }
    Ok(roots.iter().flat_map(|der| pem_certificate(der)).collect())
}

/// One DER certificate as PEM.
fn pem_certificate(der: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in text.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

/// The CA file's PEM, holding at least one usable certificate.
fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    read_ca_file(path).map(|(pem, _)| pem)
}

/// The chain and key's PEM, the key matching the chain's leaf.
fn read_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, String> {
    let (cert_pem, key_pem) = (read_pem(cert)?, read_pem(key)?);
    certified_pair((&cert_pem, cert), (&key_pem, key))?;
    Ok(ClientIdentity { cert_pem, key_pem })
}

fn invalid(text: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(text.into())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use pingora_core::tls::load_native_certs;

    use super::super::build::tests::build;
    use super::super::tls_listener::tests::write_pair;
    use super::super::{Config, LimitStoreKind};
    use super::*;

    fn address(config: &Config) -> &RedisAddress {
        match &config.limits.store {
            LimitStoreKind::Redis(address) => address,
            other => panic!("a Redis store, not {other:?}"),
        }
    }

    fn refusal(yaml: &str, env: &[(&str, &str)]) -> String {
        match build(yaml, env) {
            Err(ConfigError::Invalid(text)) => text,
            other => panic!("refused, not {other:?}"),
        }
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("aurora-store-tls")
            .tempdir()
            .unwrap()
    }

    /// `store_tls` naming `ca_file` and the pair written in `dir`.
    fn with_files(url: &str, ca: &Path, (cert, key): (&Path, &Path)) -> String {
        format!(
            "limits:\n  store: {url}\n  store_tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
            ca.display(),
            cert.display(),
            key.display()
        )
    }

    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = write_pair(dir, "client");
        let (ca, _) = write_pair(dir, "ca");
        (ca, cert, key)
    }

    #[test]
    fn a_rediss_store_is_taken_checked_against_the_system_roots() {
        let config = build("limits:\n  store: rediss://:secret@localhost:6380/0\n", &[]).unwrap();
        assert_eq!(address(&config).url, "rediss://:secret@localhost:6380/0");
        let tls = address(&config).tls.as_deref().expect("its roots");
        assert!(!tls.roots_from_file && tls.client.is_none());
        // Read once, here: each a certificate the system holds.
        let roots = rustls_pemfile::certs(&mut tls.roots_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let system = load_native_certs().unwrap_or_default();
        assert!(!roots.is_empty() && roots.len() <= system.len());
        assert!(roots.iter().all(|r| system.contains(r)));
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "no password in {shown}");
        let config = build("", &[("AURORA_REDIS_URL", "rediss://localhost/0")]).unwrap();
        assert!(address(&config).client().is_ok());
    }

    #[test]
    fn a_store_url_with_a_user_but_no_password_is_refused() {
        for url in [
            "redis://aurora@127.0.0.1:6379/0",
            "rediss://aurora@localhost/0",
        ] {
            let err = build(&format!("limits:\n  store: {url}\n"), &[]).unwrap_err();
            assert!(err.to_string().contains("no password"), "{err}");
        }
        // A user with a password, or a password alone, is taken.
        for url in ["redis://aurora:pw@127.0.0.1/0", "redis://:pw@127.0.0.1/0"] {
            build(&format!("limits:\n  store: {url}\n"), &[]).unwrap();
        }
    }

    #[test]
    fn a_store_url_is_shown_without_its_password() {
        for (url, shown) in [
            ("rediss://:pw@host:6380/0", "rediss://:***@host:6380/0"),
            ("redis://user:p@ss:w@host/1", "redis://user:***@host/1"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("rediss://user@host/0#x", "rediss://:***@host/0#x"),
            ("no-scheme:pw@host", "***"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }

    #[test]
    fn store_tls_reads_the_ca_and_the_client_certificate() {
        let dir = scratch();
        let (ca, cert, key) = files(dir.path());
        let config = build(
            &with_files("rediss://localhost:6380/0", &ca, (&cert, &key)),
            &[],
        )
        .unwrap();
        let tls = address(&config).tls.as_deref().expect("its certificates");
        assert!(tls.roots_from_file);
        assert_eq!(tls.roots_pem, std::fs::read(&ca).unwrap());
        let client = tls.client.as_ref().expect("a client certificate");
        assert_eq!(client.cert_pem, std::fs::read(&cert).unwrap());
        assert_eq!(client.key_pem, std::fs::read(&key).unwrap());
        assert!(address(&config).client().is_ok());
        let shown = format!("{config:?}");
        assert!(!shown.contains("PRIVATE KEY"), "no key material in {shown}");
    }

    #[test]
    fn store_tls_files_may_come_from_the_environment() {
        let dir = scratch();
        let (ca, cert, key) = files(dir.path());
        let (ca, cert, key) = (
            ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        );
        let config = build(
            "",
            &[
                ("AURORA_REDIS_URL", "rediss://localhost:6380/0"),
                ("AURORA_REDIS_CA_FILE", &ca),
                ("AURORA_REDIS_CERT_FILE", &cert),
                ("AURORA_REDIS_KEY_FILE", &key),
            ],
        )
        .unwrap();
        let tls = address(&config).tls.as_deref().expect("its certificates");
        assert!(tls.roots_from_file && tls.client.is_some());
        // A CA alone: the gateway presents no certificate.
        let config = build(
            "limits:\n  store: rediss://localhost:6380/0\n",
            &[("AURORA_REDIS_CA_FILE", &ca)],
        )
        .unwrap();
        let tls = address(&config).tls.as_deref().expect("its CA");
        assert!(tls.roots_from_file && tls.client.is_none());
    }

    #[test]
    fn store_tls_is_refused_beside_a_store_without_tls() {
        let dir = scratch();
        let (ca, cert, key) = files(dir.path());
        for url in ["redis://localhost:6379/0", "memory"] {
            let text = refusal(&with_files(url, &ca, (&cert, &key)), &[]);
            assert!(text.contains("is for a rediss:// store"), "{text}");
        }
        let ca = ca.display().to_string();
        for store in [None, Some("redis://localhost:6379/0")] {
            let mut env = vec![("AURORA_REDIS_CA_FILE", ca.as_str())];
            env.extend(store.map(|url| ("AURORA_REDIS_URL", url)));
            let text = refusal("", &env);
            assert!(text.contains("is for a rediss:// store"), "{text}");
        }
    }

    #[test]
    fn store_tls_files_that_cannot_serve_are_refused_when_the_config_is_read() {
        let dir = scratch();
        let (ca, cert, key) = files(dir.path());
        let (_, other_key) = write_pair(dir.path(), "other");
        let text_file = dir.path().join("notes.txt");
        std::fs::write(&text_file, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let url = "rediss://localhost:6380/0";
        for (yaml, says) in [
            (with_files(url, &missing, (&cert, &key)), "cannot read"),
            (
                with_files(url, &text_file, (&cert, &key)),
                "holds no PEM certificate",
            ),
            (with_files(url, &ca, (&cert, &other_key)), "does not fit"),
            (
                with_files(url, &ca, (&text_file, &key)),
                "holds no PEM certificate",
            ),
            (
                with_files(url, &ca, (&cert, &text_file)),
                "holds no PEM private key",
            ),
            (
                format!(
                    "limits:\n  store: {url}\n  store_tls:\n    cert_file: {}\n",
                    cert.display()
                ),
                "cert_file and key_file are given together",
            ),
        ] {
            let text = refusal(&yaml, &[]);
            assert!(text.contains(says), "{says}: {text}");
        }
    }

    #[test]
    fn a_store_whose_certificate_would_go_unchecked_is_refused() {
        let text = refusal(
            "limits:\n  store: rediss://:pw-not-shown@localhost:6380/0#insecure\n",
            &[],
        );
        assert!(text.contains("always checked"), "{text}");
        assert!(
            !text.contains("pw-not-shown"),
            "the URL is not quoted: {text}"
        );
    }
}
