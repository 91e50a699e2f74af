//! An rmcp client talks to the real `mcp-echo` server through the gateway: tools listed and
//! called, progress notifications delivered one by one, the session kept, OAuth enforced.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header};
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ProgressNotificationParam, Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::support::*;
use crate::config::{AuthConfig, KeySource};
use crate::directory::ServerState;
use crate::gateway::GatewayOptions;

/// The `mcp-echo` binary: `$MCPD_TEST_ECHO_BIN`, else built once with cargo into the target
/// directory these tests run from.
fn echo_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("MCPD_TEST_ECHO_BIN") {
            return PathBuf::from(path);
        }
        // <target>/<profile>/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "mcp-echo"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p mcp-echo failed");
        profile_dir.join("mcp-echo")
    })
}

/// A running `mcp-echo`, killed when dropped.
struct Echo {
    port: u16,
    _child: Child,
}

impl Echo {
    async fn start() -> Echo {
        let binary = echo_binary().clone();
        let port = closed_port().await;
        let mut child = Command::new(binary)
            .env("MCP_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("mcp-echo starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("listening") {
                    return;
                }
            }
            panic!("mcp-echo exited before listening");
        };
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("mcp-echo listens in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Echo {
            port,
            _child: child,
        }
    }
}

const SECRET: &str = "echo-test-secret";

struct Setup {
    _dir: TempDir,
    _echo: Echo,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let auth = AuthConfig {
        keys: vec![KeySource::Hs256SecretFile(secret)],
        leeway: Duration::from_secs(5),
        ..AuthConfig::default()
    };
    let config = daemon_config(dir.path(), auth);
    let echo = Echo::start().await;
    let running = status(ServerState::Running, Some(echo.port));
    let servers = vec![
        (
            server_config(&config, "echo", "/mcp", no_oauth()),
            running.clone(),
        ),
        (
            server_config(&config, "secure", "/mcp", oauth(&["user"])),
            running,
        ),
    ];
    let gateway = Gateway::start(directory(servers), config, GatewayOptions::default()).await;
    Setup {
        _dir: dir,
        _echo: echo,
        gateway,
    }
}

/// A client that forwards every progress notification, with its arrival time.
#[derive(Clone)]
struct ProgressClient {
    progress: mpsc::UnboundedSender<(Instant, ProgressNotificationParam)>,
}

impl ClientHandler for ProgressClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send((Instant::now(), params));
    }
}

type Client = RunningService<RoleClient, ProgressClient>;

async fn connect(
    url: String,
    token: Option<String>,
) -> Result<
    (
        Client,
        mpsc::UnboundedReceiver<(Instant, ProgressNotificationParam)>,
    ),
    String,
> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = ProgressClient { progress: tx };
    let client = tokio::time::timeout(WAIT, handler.serve(transport))
        .await
        .map_err(|_| "initialize timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok((client, rx))
}

fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}

async fn call(client: &Client, tool: &'static str, arguments: serde_json::Value) -> String {
    let result = tokio::time::timeout(
        WAIT,
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments))),
    )
    .await
    .expect("call answers in time")
    .expect("call succeeds");
    let content = serde_json::to_value(&result.content).unwrap();
    content[0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rmcp_client_through_the_gateway() {
    let s = setup().await;
    let (client, mut progress) = connect(s.gateway.url("/api/v1/mcp/echo/mcp"), None)
        .await
        .unwrap();

    let info = client.peer_info().expect("server info after initialize");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("mcp-echo")
    );
    let tools = tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "progress", "sleep"]);

    // Several calls on one session: the session id travels through the gateway both ways
    // (the server refuses requests of an unknown session).
    assert_eq!(
        call(&client, "echo", serde_json::json!({"text": "hi"})).await,
        "hi"
    );
    assert_eq!(
        call(&client, "add", serde_json::json!({"a": 2, "b": 3})).await,
        "5"
    );

    // Progress notifications arrive one by one while the call runs, not all at the end.
    let interval = Duration::from_millis(300);
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("progress").with_arguments(args(serde_json::json!({
            "steps": 3,
            "interval_ms": interval.as_millis() as u64,
        }))),
    ));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let mut arrivals = Vec::new();
    for step in 1..=3u32 {
        let (at, params) = tokio::time::timeout(WAIT, progress.recv())
            .await
            .expect("progress notification in time")
            .unwrap();
        assert_eq!(params.progress, f64::from(step));
        assert_eq!(params.total, Some(3.0));
        arrivals.push(at);
    }
    // Over at least half the server's span (two intervals): buffered notifications would
    // arrive together. Not per gap: one late wake-up of this test shortens the gap after it.
    let spread = arrivals[2] - arrivals[0];
    assert!(
        spread >= interval,
        "notifications arrived together ({spread:?} from first to last): buffered somewhere"
    );
    let response = tokio::time::timeout(WAIT, handle.await_response())
        .await
        .unwrap()
        .unwrap();
    let ServerResult::CallToolResult(result) = response else {
        panic!("unexpected response {response:?}");
    };
    let content = serde_json::to_value(&result.content).unwrap();
    assert_eq!(content[0]["text"], "completed 3 steps");

    assert_eq!(
        call(&client, "echo", serde_json::json!({"text": "still"})).await,
        "still"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_client_with_oauth() {
    let s = setup().await;
    let url = s.gateway.url("/api/v1/mcp/secure/mcp");
    assert!(
        connect(url.clone(), None).await.is_err(),
        "no token, no session"
    );

    let claims = serde_json::json!({
        "sub": "bob",
        "aud": "mcp",
        "scope": "user",
        "exp": jsonwebtoken::get_current_timestamp() + 300,
    });
    let token = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (client, _progress) = connect(url, Some(token)).await.unwrap();
    assert_eq!(
        call(&client, "echo", serde_json::json!({"text": "authorized"})).await,
        "authorized"
    );
    client.cancel().await.unwrap();
}
