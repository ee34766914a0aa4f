//! Hands every TLS handshake the certificate of the current live config.

use std::sync::Arc;

use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, ResolvesServerCert};

use crate::config::LiveConfig;

/// A rustls certificate resolver reading `server.tls` from the live config, so a
/// reload's new certificate is used from the next handshake on.
#[derive(Debug)]
pub struct LiveCertResolver {
    live: Arc<LiveConfig>,
}

impl LiveCertResolver {
    /// A resolver over `live`.
    pub fn new(live: Arc<LiveConfig>) -> Self {
        Self { live }
    }
}

impl ResolvesServerCert for LiveCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A reload keeps the running certificate when the new file drops `server.tls`,
        // so a listener that exists always finds one here.
        self.live
            .snapshot()
            .server
            .tls_cert
            .as_ref()
            .map(|tls| tls.cert.certified_key())
    }
}
