//! TLS client settings of remote servers: rustls (ring) trusting the system's certificate
//! store (`/etc/ssl/certs` through rustls-native-certs, read once per process) plus the
//! server's own `tls.ca_file`. HTTP/1.1 only (ALPN `http/1.1`), TLS 1.2 and 1.3.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("is not valid PEM: {0}")]
    Pem(String),
    #[error("holds a certificate that cannot be trusted as an authority: {0}")]
    Certificate(String),
    #[error("TLS set-up failed: {0}")]
    Setup(String),
}

/// The system's trusted authorities, loaded once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(cause = %error, "a system certificate could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system certificate authorities loaded");
        roots
    })
}

/// The certificates of a PEM file (`tls.ca_file`), at least one.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem(err.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// The client settings: the system's roots plus `ca_pem`'s certificates.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = system_roots().clone();
    if let Some(pem) = ca_pem {
        for cert in ca_certificates(pem)? {
            roots
                .add(cert)
                .map_err(|err| TlsError::Certificate(err.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Setup(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
