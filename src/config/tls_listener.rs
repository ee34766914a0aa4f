//! The optional HTTPS listener: where it listens and the certificate it presents.
//!
//! The certificate is loaded while the config is built, so a reload that names an
//! unreadable or mismatched pair is refused like any other invalid value, and the
//! handshake code only ever sees a certificate that already parsed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{CertificateDer, CryptoProvider, PrivateKeyDer};

/// Default HTTPS listen address when `server.tls` gives none.
pub const DEFAULT_TLS_LISTEN: &str = "0.0.0.0:8443";

/// The certificate of `server.tls`, the HTTPS listener (HTTP/2 and HTTP/1.1) beside
/// the plain one. Its address is a startup setting ([`super::ServerStartup`]); the
/// certificate reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerCert {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key matching the leaf.
    pub key_file: PathBuf,
    /// The pair as loaded when this config was built.
    pub cert: ServerCert,
}

/// A certificate chain and its signing key, ready for handshakes.
#[derive(Clone)]
pub struct ServerCert(Arc<CertifiedKey>);

impl ServerCert {
    /// Reads and checks `cert_file` and `key_file`: both PEM, the key matching the leaf.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let (cert_pem, key_pem) = (read_pem(cert_file)?, read_pem(key_file)?);
        certified_pair((&cert_pem, cert_file), (&key_pem, key_file))
            .map(|certified| Self(Arc::new(certified)))
    }

    /// The chain and key, as rustls wants them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.0)
    }

    /// DER of the leaf certificate.
    pub fn leaf_der(&self) -> &[u8] {
        self.0.cert.first().map_or(&[], |c| c.as_ref())
    }
}

// Same loaded pair, same value: a reload that re-reads unchanged files still counts as
// a change, which is harmless and keeps comparison cheap.
impl PartialEq for ServerCert {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServerCert {}

// Never print key material.
impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerCert({} certificates)", self.0.cert.len())
    }
}

/// The chain (`cert`, PEM, read from its path) and its key (`key`, likewise), checked
/// to belong together.
pub(super) fn certified_pair(
    (cert, cert_file): (&[u8], &Path),
    (key, key_file): (&[u8], &Path),
) -> Result<CertifiedKey, String> {
    let chain = chain_in(cert, cert_file)?;
    let key = key_in(key, key_file)?;
    pingora_core::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider is installed".to_string())?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "{} does not fit {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// The bytes of the PEM file at `path`.
pub(super) fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates of `pem`, read from `path`: at least one.
pub(super) fn chain_in(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = rustls_pemfile::certs(&mut &*pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(chain)
}

fn key_in(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &*pem)
        .map_err(|e| format!("{} is not a PEM key file: {e}", path.display()))?
        .ok_or_else(|| format!("{} holds no PEM private key", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, written as
    /// `{name}.crt` and `{name}.key` in `dir`.
    pub(crate) fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("aurora-unit-tls-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn loads_a_matching_pair() {
        let dir = scratch();
        let (c, k) = write_pair(dir.path(), "a");
        let cert = ServerCert::load(&c, &k).unwrap();
        assert!(!cert.leaf_der().is_empty());
        assert_eq!(format!("{cert:?}"), "ServerCert(1 certificates)");
    }

    #[test]
    fn refuses_a_key_of_another_certificate_and_missing_files() {
        let dir = scratch();
        let (c, _) = write_pair(dir.path(), "a");
        let (_, other_key) = write_pair(dir.path(), "b");
        let err = ServerCert::load(&c, &other_key).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        let err = ServerCert::load(&dir.path().join("none.crt"), &other_key).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let err = ServerCert::load(&other_key, &other_key).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
