//! Trust roots for HTTPS upstreams that bring their own CA.
//!
//! Pingora's rustls connector uses a per-peer CA list *instead of* the system roots,
//! so a provider with `ca_file` gets the system roots plus the file's certificates.

use std::path::Path;
use std::sync::Arc;

use pingora_core::tls::{load_native_certs, CertificateDer, RootCertStore};
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use sha2::{Digest, Sha256};

/// The CA list attached to a provider's upstream peers.
pub type TlsRoots = Arc<[WrappedX509]>;

/// Loads the system roots and every certificate in the PEM file at `ca_file`, with
/// what tells these roots from others ([`roots_group`]).
pub fn load_roots_with_ca_file(ca_file: &str) -> Result<(TlsRoots, u64), String> {
    let (_, extra) = read_ca_file(Path::new(ca_file))?;
    let ders: Vec<CertificateDer<'static>> = usable_system_roots()
        .unwrap_or_default()
        .into_iter()
        .chain(extra)
        .collect();
    let group = roots_group(&ders);
    let roots: Vec<WrappedX509> = ders
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
        .collect();
    Ok((roots.into(), group))
}

/// The connection-pool group of peers checked against `roots`: Pingora pools upstream
/// connections by address and name, not by the CA that checked them, so a provider
/// with other roots (or the same one after a reload changed its file) must not take
/// a connection another's roots accepted. Never 0, the group of the system roots.
fn roots_group(roots: &[CertificateDer<'_>]) -> u64 {
    let mut digest = Sha256::new();
    for der in roots {
        digest.update((der.len() as u64).to_le_bytes());
        digest.update(der.as_ref());
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.finalize()[..8]);
    u64::from_le_bytes(first).max(1)
}

/// The PEM file of CA certificates at `path`, and its certificates: at least one, each
/// one webpki takes as a trust anchor.
pub fn read_ca_file(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    // Validated with webpki first: the x509 wrapper would panic on malformed DER.
    let mut check = RootCertStore::empty();
    for cert in &certs {
        check
            .add(cert.clone())
            .map_err(|e| format!("{shown} holds an unusable CA certificate: {e}"))?;
    }
    Ok((pem, certs))
}

/// The system's trust roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) that webpki
/// takes as trust anchors; the error when they cannot be read.
pub fn usable_system_roots() -> Result<Vec<CertificateDer<'static>>, std::io::Error> {
    let mut check = RootCertStore::empty();
    Ok(load_native_certs()?
        .into_iter()
        .filter(|der| check.add(der.clone()).is_ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_roots_are_another_pool_group_and_none_is_the_system_roots() {
        let der = |b: &[u8]| CertificateDer::from(b.to_vec());
        let a = roots_group(&[der(b"one"), der(b"two")]);
        assert_eq!(a, roots_group(&[der(b"one"), der(b"two")]));
        assert_ne!(a, roots_group(&[der(b"one"), der(b"three")]));
        assert_ne!(
            a,
            roots_group(&[der(b"onetwo")]),
            "each certificate's bounds count"
        );
        assert_ne!(roots_group(&[]), 0);
    }
}
