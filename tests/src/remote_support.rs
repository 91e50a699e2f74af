//! Remote servers for the `url:` tests: a certificate authority made in the test
//! ([`Pki`], rcgen), and [`Front`], a small TLS (or plain) listener in front of another
//! mcpd's gateway that can be stopped and started again on the same port, or made hostile
//! to the requests a gateway forwards (they carry `X-Forwarded-For`; probes do not), so a
//! remote can pass its probes and still misbehave toward callers. [`FakeMcp`] is a remote
//! that answers probes with whatever tool list a test gives it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A certificate authority of the test, and server certificates it signs.
pub struct Pki {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcpd test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = params.self_signed(&key).expect("CA certificate");
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// TLS settings of a server for `localhost` and 127.0.0.1, signed by this CA.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        tls_config(cert.pem(), key.serialize_pem())
    }

    /// TLS settings of a server whose certificate no CA signed (self-signed).
    pub fn rogue_config() -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("rogue key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("rogue params");
        let cert = params.self_signed(&key).expect("rogue cert");
        tls_config(cert.pem(), key.serialize_pem())
    }
}

fn tls_config(cert_pem: String, key_pem: String) -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server TLS config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What a [`Front`] does with a request a gateway forwarded (probes are always passed on).
#[derive(Clone)]
pub enum Hostile {
    /// Passes every request on.
    None,
    /// Answers forwarded requests with these bytes, then closes.
    Answer(Vec<u8>),
    /// Answers forwarded requests with a 200 whose chunked body never ends.
    EndlessBody,
}

/// A listener in front of `127.0.0.1:<upstream>`, with TLS when given settings.
pub struct Front {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Front {
    pub async fn start(
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
        upstream: u16,
        hostile: Hostile,
    ) -> Front {
        let listener = bind(port).await;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                let hostile = hostile.clone();
                connections.spawn(async move {
                    match tls {
                        Some(tls) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, upstream, hostile).await;
                            }
                        }
                        None => serve(stream, upstream, hostile).await,
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Front { port, task }
    }

    /// Stops listening and cuts every connection (the remote goes away).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Binds `127.0.0.1:port`, retrying while a just-closed listener's port is still taken.
async fn bind(port: u16) -> TcpListener {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cannot bind 127.0.0.1:{port}: {err}"),
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, upstream: u16, hostile: Hostile) {
    if matches!(hostile, Hostile::None) {
        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        return;
    }
    // One request per connection: read it, then answer it or pass it on with
    // `Connection: close` and copy the answer back.
    let Some((head, body)) = read_request(&mut client).await else {
        return;
    };
    if head.to_ascii_lowercase().contains("\r\nx-forwarded-for:") {
        match hostile {
            Hostile::Answer(bytes) => {
                let _ = client.write_all(&bytes).await;
            }
            Hostile::EndlessBody => {
                let _ = client
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                while client.write_all(chunk.as_bytes()).await.is_ok() {}
            }
            Hostile::None => {}
        }
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    if server.write_all(head.as_bytes()).await.is_err() || server.write_all(&body).await.is_err() {
        return;
    }
    let _ = tokio::io::copy(&mut server, &mut client).await;
    let _ = client.shutdown().await;
}

/// One request: its head (through the blank line) and its `Content-Length` body.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > 1 << 20 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some((head, body))
}

/// A plain-HTTP MCP server that answers the probes (session generation, no session id) and
/// lists `tools_json` (the bytes of a JSON array, written as given) as its tools.
pub struct FakeMcp {
    pub port: u16,
    task: JoinHandle<()>,
}

impl FakeMcp {
    pub async fn start(port: u16, tools_json: Vec<u8>) -> FakeMcp {
        let listener = bind(port).await;
        let tools = Arc::new(tools_json);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let tools = tools.clone();
                connections.spawn(async move {
                    while let Some((_, body)) = read_request(&mut stream).await {
                        let answer = fake_answer(&body, &tools);
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        FakeMcp { port, task }
    }
}

impl Drop for FakeMcp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fake_answer(body: &[u8], tools: &[u8]) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let id = request["id"].to_string();
    let method = request["method"].as_str().unwrap_or_default();
    let result: Vec<u8> = match method {
        "initialize" => br#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}"#.to_vec(),
        "notifications/initialized" => {
            return b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec();
        }
        "tools/list" => {
            let mut result = br#"{"tools":"#.to_vec();
            result.extend_from_slice(tools);
            result.push(b'}');
            result
        }
        "ping" => b"{}".to_vec(),
        _ => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"no such method"}}}}"#
            );
            return format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
    };
    let mut body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#).into_bytes();
    body.extend_from_slice(&result);
    body.push(b'}');
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}
