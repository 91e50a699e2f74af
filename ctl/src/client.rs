//! A control-socket connection: connect, handshake, then request/response frames.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::GenericFilePath;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use mcpd_protocol::codec::{self, CodecError};
use mcpd_protocol::{ErrorReply, Hello, PROTOCOL_VERSION, Request, Response};

use crate::socket::TrustedOwners;

/// How long connecting and the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (or it does not exist).
    #[error("cannot connect to mcpd: is mcpd running? socket: {}", path.display())]
    Unreachable { path: PathBuf },
    #[error("cannot connect to mcpd: permission denied on socket {}; join the socket's group or use sudo", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to mcpd: {source}: socket: {}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    /// The socket (or the process listening on it) belongs to a user mcpctl does not trust.
    #[error(
        "refusing to talk to {}: {what} belongs to uid {owner}, which is not you, root or \
         mcpd's user ({daemon_user}); another user may be listening there to read what mcpctl \
         sends. Check who created it; if mcpd runs as that user, set MCPD_USER",
        path.display()
    )]
    UntrustedSocket {
        path: PathBuf,
        what: &'static str,
        owner: u32,
        daemon_user: String,
    },
    #[error("mcpd did not answer within {timeout:?} on {}", path.display())]
    NoAnswer { path: PathBuf, timeout: Duration },
    #[error(
        "mcpd {daemon_version} speaks control protocol {daemon} but this mcpctl speaks {client}; \
         use the mcpctl that ships with mcpd {daemon_version}"
    )]
    Incompatible {
        daemon: u32,
        client: u32,
        daemon_version: String,
    },
    /// The daemon answered the request with an error.
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    #[error("the connection to mcpd failed: {0}")]
    Codec(#[from] CodecError),
    #[error("mcpd closed the connection")]
    Closed,
    #[error("unexpected answer from mcpd: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// True when the daemon could not be reached at all (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::PermissionDenied { .. }
                | ClientError::Connect { .. }
                | ClientError::NoAnswer { .. }
        )
    }

    /// The stable code of `--json` error output.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Daemon(reply) => reply.code.as_str(),
            ClientError::Incompatible { .. } => "incompatible",
            ClientError::UntrustedSocket { .. } => "untrusted_socket",
            e if e.is_unreachable() => "unreachable",
            _ => "connection",
        }
    }
}

/// A connection that completed the handshake.
pub struct Client {
    stream: Stream,
    pub daemon_version: String,
}

impl Client {
    /// Connects to `path` and exchanges `Hello`/`Welcome`, once the socket file and the
    /// process listening on it are known to belong to a `trusted` user.
    pub async fn connect(path: &Path, trusted: &TrustedOwners) -> Result<Client, ClientError> {
        let no_answer = || ClientError::NoAnswer {
            path: path.to_owned(),
            timeout: HANDSHAKE_TIMEOUT,
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, Client::handshake(path, trusted))
            .await
            .map_err(|_| no_answer())?
    }

    async fn handshake(path: &Path, trusted: &TrustedOwners) -> Result<Client, ClientError> {
        let untrusted = |what, owner| ClientError::UntrustedSocket {
            path: path.to_owned(),
            what,
            owner,
            daemon_user: trusted
                .daemon_user
                .clone()
                .unwrap_or_else(|| "no user mcpd here and MCPD_USER unset".to_owned()),
        };
        // The file first, for a clear error before anything is sent ...
        if let Ok(meta) = std::fs::metadata(path)
            && !trusted.trusts(meta.uid())
        {
            return Err(untrusted("the socket file", meta.uid()));
        }
        let name = path
            .to_fs_name::<GenericFilePath>()
            .map_err(|source| ClientError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let mut stream = Stream::connect(name)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::Unreachable {
                        path: path.to_owned(),
                    }
                }
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    path: path.to_owned(),
                },
                _ => ClientError::Connect {
                    path: path.to_owned(),
                    source,
                },
            })?;
        // ... then the process that listens (the file could have been swapped meanwhile).
        if let Some(owner) = stream.peer_creds().ok().and_then(|creds| creds.euid())
            && !trusted.trusts(owner)
        {
            return Err(untrusted("the process listening on it", owner));
        }
        codec::write_message(
            &mut stream,
            &Request::Hello(Hello {
                protocol: PROTOCOL_VERSION,
            }),
        )
        .await?;
        match codec::read_message::<Response, _>(&mut stream).await? {
            Some(Response::Welcome(welcome)) => Ok(Client {
                stream,
                daemon_version: welcome.daemon_version,
            }),
            Some(Response::Incompatible(i)) => Err(ClientError::Incompatible {
                daemon: i.daemon,
                client: i.client,
                daemon_version: i.daemon_version,
            }),
            Some(Response::Error(e)) => Err(ClientError::Daemon(e)),
            Some(other) => Err(ClientError::Unexpected(format!("{other:?}"))),
            None => Err(ClientError::Closed),
        }
    }

    /// Sends `request` and returns the reply; an error reply becomes [`ClientError::Daemon`].
    pub async fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        codec::write_message(&mut self.stream, request).await?;
        self.next().await?.ok_or(ClientError::Closed)
    }

    /// The next frame of a stream (`logs --follow`); `None` when the daemon closed it.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        match codec::read_message::<Response, _>(&mut self.stream).await? {
            Some(Response::Error(e)) => Err(ClientError::Daemon(e)),
            other => Ok(other),
        }
    }
}

/// A typed error for replies of the wrong kind.
pub fn unexpected(response: Response) -> ClientError {
    ClientError::Unexpected(format!("{response:?}"))
}
