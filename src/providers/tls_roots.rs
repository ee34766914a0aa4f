//! Trust roots for HTTPS upstreams that bring their own CA.
//!
//! Pingora's rustls connector uses a per-peer CA list *instead of* the system roots,
//! so a provider with `ca_file` gets the system roots plus the file's certificates.

use std::sync::Arc;

use pingora_core::tls::{load_native_certs, RootCertStore};
use pingora_core::utils::tls::{parse_x509, WrappedX509};

/// The CA list attached to a provider's upstream peers.
pub type TlsRoots = Arc<[WrappedX509]>;

/// Loads the system roots and every certificate in the PEM file at `ca_file`.
pub fn load_roots_with_ca_file(ca_file: &str) -> Result<TlsRoots, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read {ca_file}: {e}"))?;
    let mut extra = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| format!("{ca_file} is not a PEM certificate file: {e}"))?;
        extra.push(der.to_vec());
    }
    if extra.is_empty() {
        return Err(format!("{ca_file} holds no PEM certificate"));
    }
    // Validate with webpki first: the x509 wrapper below would panic on malformed DER.
    let mut check = RootCertStore::empty();
    for der in &extra {
        check
            .add(der.clone().into())
            .map_err(|e| format!("{ca_file} holds an unusable CA certificate: {e}"))?;
    }
    let mut roots: Vec<WrappedX509> = Vec::new();
    for der in load_native_certs().unwrap_or_default() {
        let raw = der.to_vec();
        if RootCertStore::empty().add(raw.clone().into()).is_ok() {
            roots.push(WrappedX509::new(raw, parse_x509));
        }
    }
    roots.extend(
        extra
            .into_iter()
            .map(|raw| WrappedX509::new(raw, parse_x509)),
    );
    Ok(roots.into())
}
