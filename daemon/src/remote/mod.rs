//! Remote servers (`url:`): MCP servers mcpd fronts but does not run. This module owns what
//! reaching one takes: the parsed URL ([`RemoteUrl`]), the operator's credential
//! ([`Credential`], never the caller's), the TLS client settings (`tls.rs`) and the one
//! connection type, plain or TLS, that the probes and the gateway's pool use (`stream.rs`).
//!
//! A [`RemoteTarget`] is built only by the configuration's validation (`config::validate`),
//! which reads the CA and credential files, so a target always holds a usable TLS
//! configuration and a credential that is safe in a header.

mod credential;
mod stream;
mod tls;
mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;

pub use credential::{Credential, CredentialError, refused_header_name};
pub use stream::{ConnectError, Stream, connect};
pub use tls::{TlsError, client_config};
pub use url::RemoteUrl;

/// Everything needed to reach one remote server.
pub struct RemoteTarget {
    pub url: RemoteUrl,
    /// `tls.ca_file`, resolved, and its bytes (compared on reload).
    pub ca_file: Option<(PathBuf, Vec<u8>)>,
    /// The TLS client settings (system roots plus `ca_file`); `None` for an `http:` URL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub credential: Option<Credential>,
    /// Unique per target built: the gateway pools connections by it, so a reload that changes
    /// anything starts on fresh connections.
    pub id: u64,
}

impl RemoteTarget {
    pub fn new(
        url: RemoteUrl,
        ca_file: Option<(PathBuf, Vec<u8>)>,
        credential: Option<Credential>,
    ) -> Result<Self, TlsError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let tls = if url.https {
            Some(client_config(
                ca_file.as_ref().map(|(_, pem)| pem.as_slice()),
            )?)
        } else {
            None
        };
        Ok(RemoteTarget {
            url,
            ca_file,
            tls,
            credential,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The `Host` header of every request to it: the URL's authority.
    pub fn host_header(&self) -> &HeaderValue {
        &self.url.authority
    }

    /// Opens a connection (TCP, then TLS for `https:`) within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Stream, ConnectError> {
        connect(self, timeout).await
    }
}

impl PartialEq for RemoteTarget {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.ca_file == other.ca_file
            && self.credential == other.credential
    }
}

impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTarget")
            .field("url", &self.url.text)
            .field("ca_file", &self.ca_file.as_ref().map(|(path, _)| path))
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}
