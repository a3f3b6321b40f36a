//! Fixtures for the process-level tests: real `kontor serve` processes on ephemeral loopback
//! ports, over SQLite (a temporary data directory) or a fresh PostgreSQL database, plus small
//! in-test helpers (API client, SSE reader, webhook receiver, TCP proxy).
//!
//! The database comes from `kontor-testkit` (`PostgresDatabase`): PostgreSQL is taken from
//! `KONTOR_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); each
//! test gets its own database `kontor_t_<random>`, dropped afterwards. If the server cannot be
//! reached, the test is skipped with a notice, unless `CI=true`, where it fails.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use kontor_testkit::sse::{SseNext, SseReader};
use kontor_testkit::url::{host_port, with_host};
use kontor_testkit::PostgresDatabase;
use serde_json::{json, Value};
use sha2::Sha256;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Per-request time limit of the API client: no request may hang longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// Runs `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Database and nodes
// ---------------------------------------------------------------------------------------------

/// Where a test's nodes keep their data: a temporary directory, and the database URL.
pub struct Deployment {
    pub dir: TempDir,
    /// `--data-dir` of every node.
    pub data_dir: PathBuf,
    /// `--database-url` of every node (None: SQLite in the data directory).
    pub database_url: Option<String>,
    pg: Option<PostgresDatabase>,
}

impl Deployment {
    /// SQLite in a temporary data directory.
    pub fn sqlite() -> Deployment {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data_dir = dir.path().join("data");
        Deployment { dir, data_dir, database_url: None, pg: None }
    }

    /// A fresh PostgreSQL database, or `None` (test skipped) if the server is unreachable
    /// outside CI. With `CI=true` an unreachable server fails the test.
    pub async fn postgres() -> Option<Deployment> {
        let pg = PostgresDatabase::create().await?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let data_dir = dir.path().join("data");
        Some(Deployment { dir, data_dir, database_url: Some(pg.url().to_string()), pg: Some(pg) })
    }

    /// True for PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// `host:port` of the PostgreSQL server (for putting a proxy in front of it).
    pub fn pg_server_addr(&self) -> String {
        host_port(self.database_url.as_deref().expect("a PostgreSQL deployment"), 5432)
    }

    /// The database URL with the server address replaced by `host_port`.
    pub fn database_url_via(&self, host_port: &str) -> String {
        with_host(self.database_url.as_deref().expect("a PostgreSQL deployment"), host_port)
    }

    /// A `kontor` command with this deployment's store arguments, a clean environment (no
    /// `KONTOR_*` variables of the caller) and the temporary directory as working
    /// directory (so no stray `kontor.toml` is read).
    fn command(&self, database_url: Option<&str>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kontor"));
        cmd.current_dir(self.dir.path());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("KONTOR_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("KONTOR_LOG", "info,tower_http=warn");
        cmd.arg("--data-dir").arg(&self.data_dir);
        if let Some(u) = database_url.or(self.database_url.as_deref()) {
            cmd.arg("--database-url").arg(u);
        }
        cmd
    }

    /// Creates an admin API token with `kontor token create` (this also migrates).
    pub fn token(&self) -> String {
        let out = self
            .command(None)
            .args(["token", "create", "--name", "process-tests", "--role", "admin"])
            .stdin(Stdio::null())
            .output()
            .expect("run kontor token create");
        assert!(
            out.status.success(),
            "kontor token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let token = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        assert!(!token.is_empty(), "kontor token create printed no token: {stdout:?}");
        token
    }

    /// Starts `kontor serve` named `name` with extra environment variables; waits for `/healthz`.
    pub async fn start_node(&self, name: &str, env: &[(&str, &str)]) -> Node {
        self.start_node_with(name, None, env).await
    }

    /// Like `start_node`, with another database URL (e.g. through a proxy).
    pub async fn start_node_with(&self, name: &str, database_url: Option<&str>, env: &[(&str, &str)]) -> Node {
        // The port is free when picked, but another process may take it before the node
        // binds it: then try another one.
        for attempt in 1..=3 {
            let port = free_port();
            let log = self.dir.path().join(format!("{name}.log"));
            let log_file = std::fs::File::create(&log).expect("node log file");
            let mut cmd = self.command(database_url);
            cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log_file));
            let child = cmd.spawn().expect("start kontor serve");
            let mut node =
                Node { name: name.to_string(), base: format!("http://127.0.0.1:{port}"), child: Some(child), log };
            match node.wait_healthy(port, Duration::from_secs(30)).await {
                Ok(()) => return node,
                Err(e) if attempt < 3 && e.contains("cannot listen") => {
                    eprintln!("node {name} could not listen on port {port}; retrying on another port");
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// A running `kontor serve` process; killed (SIGKILL) when dropped.
pub struct Node {
    pub name: String,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Absolute URL of `path` on this node.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Waits until this process (not another one on the same port) listens on `port` and
    /// `/healthz` answers.
    async fn wait_healthy(&mut self, port: u16, limit: Duration) -> Result<(), String> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("HTTP client");
        let start = Instant::now();
        let listening = format!("127.0.0.1:{port}");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "node {} exited during start-up ({status}); log:\n{}",
                        self.name,
                        self.log_tail(40)
                    ));
                }
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.lines().any(|l| l.contains("Kontor is listening") && l.contains(&listening)) {
                if let Ok(r) = http.get(self.url("/healthz")).send().await {
                    if r.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "node {} did not become healthy within {limit:?}; log:\n{}",
                    self.name,
                    self.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- log of node {} (last lines) ----\n{}", self.name, self.log_tail(30));
        }
    }
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// API client
// ---------------------------------------------------------------------------------------------

/// A client of one node's API with a token; every request is limited to `REQUEST_TIMEOUT`.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(node: &Node, token: &str) -> Api {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("HTTP client");
        Api { http, base: node.base.clone(), token: token.to_string() }
    }

    /// The same client against another node.
    pub fn on(&self, node: &Node) -> Api {
        Api { http: self.http.clone(), base: node.base.clone(), token: self.token.clone() }
    }

    async fn answer(r: reqwest::Response) -> reqwest::Result<(u16, Value)> {
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        Self::answer(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Result<(u16, Value)> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body).send().await?;
        Self::answer(r).await
    }

    /// `POST /api/v1/inbound` of a text message from `email` with `provider_message_id`.
    pub async fn inbound(&self, provider_message_id: &str, email: &str, text: &str) -> reqwest::Result<(u16, Value)> {
        self.post(
            "/api/v1/inbound",
            &json!({ "from": { "email": email }, "text": text, "provider_message_id": provider_message_id }),
        )
        .await
    }

    /// Status of `/readyz` (no token needed).
    pub async fn readyz(&self) -> reqwest::Result<u16> {
        Ok(self.http.get(format!("{}/readyz", self.base)).send().await?.status().as_u16())
    }

    /// The whole event log, paged with `GET /api/v1/events?after=N`.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut after = 0i64;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let (status, page) =
                self.get(&format!("/api/v1/events?after={after}&limit=1000")).await.expect("GET /api/v1/events");
            assert_eq!(status, 200, "GET /api/v1/events?after={after}: {page}");
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return out;
            }
            let next = page["next_after"].as_i64().expect("next_after");
            assert!(next > after, "event paging does not advance: after={after}, next_after={next}");
            after = next;
            out.extend(items);
        }
        panic!("event log paging did not end");
    }
}

/// `provider_message_id` → message ids of its `message.received` events.
pub fn received_by_provider_id(events: &[Value]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "message.received") {
        let m = &e["payload"]["message"];
        if let Some(p) = m["provider_message_id"].as_str() {
            out.entry(p.to_string()).or_default().push(m["id"].as_i64().unwrap_or(0));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------------

/// A reader of `GET /api/v1/events/stream`.
pub struct SseStream(SseReader);

pub use kontor_testkit::sse::SseEvent;

impl SseStream {
    /// Opens the stream (optionally resuming after `last_event_id`); returns once the
    /// response headers arrived, i.e. once the server fixed the starting point.
    pub async fn open(node: &Node, token: &str, last_event_id: Option<i64>) -> SseStream {
        // No overall timeout: the body is endless. Reads are bounded by `next`.
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("HTTP client");
        let mut rb = http.get(node.url("/api/v1/events/stream")).bearer_auth(token);
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let r =
            within(REQUEST_TIMEOUT, "opening the event stream", rb.send()).await.expect("GET /api/v1/events/stream");
        assert_eq!(r.status().as_u16(), 200, "event stream status");
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ct.starts_with("text/event-stream"), "event stream content type {ct:?}");
        SseStream(SseReader::new(r))
    }

    /// The next event, or None if none arrives before `deadline`; the stream must not end.
    pub async fn next(&mut self, deadline: Instant) -> Option<SseEvent> {
        match self.0.next(deadline).await {
            SseNext::Event(e) => Some(e),
            SseNext::Timeout => None,
            SseNext::Ended => panic!("event stream ended"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook receiver
// ---------------------------------------------------------------------------------------------

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub idempotency_key: Option<String>,
    /// Ok, or why the `X-Kontor-Signature` header did not verify.
    pub signature: Result<(), String>,
    pub body: Value,
    /// The status the receiver answered with.
    pub status: u16,
}

/// A tiny HTTP/1.1 server that records signed webhook deliveries and answers with the
/// status `respond` picks for the JSON body.
pub struct Webhook {
    pub url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: JoinHandle<()>,
}

type Responder = Arc<dyn Fn(&Value) -> u16 + Send + Sync>;

impl Webhook {
    pub async fn start(secret: &str, respond: impl Fn(&Value) -> u16 + Send + Sync + 'static) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind webhook receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("webhook address"));
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let secret = secret.as_bytes().to_vec();
        let respond: Responder = Arc::new(respond);
        let recorded = deliveries.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (recorded, secret, respond) = (recorded.clone(), secret.clone(), respond.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), serve_one(stream, &secret, &*respond, &recorded))
                            .await;
                });
            }
        });
        Webhook { url, deliveries, task }
    }

    /// Everything received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries lock").clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, records it, answers, closes the connection.
async fn serve_one(
    mut stream: TcpStream,
    secret: &[u8],
    respond: &(dyn Fn(&Value) -> u16 + Send + Sync),
    recorded: &Mutex<Vec<Delivery>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut headers = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let signature = match headers.get("x-kontor-signature") {
        Some(h) => verify_signature(secret, h, body),
        None => Err("no X-Kontor-Signature header".to_string()),
    };
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let status = respond(&json);
    let answer = {
        let mut rec = recorded.lock().expect("deliveries lock");
        rec.push(Delivery { idempotency_key: headers.get("idempotency-key").cloned(), signature, body: json, status });
        if (200..300).contains(&status) {
            format!("{{\"id\":\"rcv-{}\"}}", rec.len())
        } else {
            format!("{{\"error\":\"answering {status}\"}}")
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// Checks `t=<secs>,v1=<hex>` = HMAC-SHA256(secret, "<t>.<body>"), timestamp within 5 minutes.
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8]) -> Result<(), String> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|e| format!("v1 is not hex: {e}"))?),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| format!("no timestamp in {header:?}"))?;
    if sigs.is_empty() {
        return Err(format!("no v1 signature in {header:?}"));
    }
    if (unix_now() - t).abs() > 300 {
        return Err(format!("timestamp {t} is more than 5 minutes off"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if sigs.iter().any(|s| s.as_slice() == expected.as_slice()) {
        Ok(())
    } else {
        Err(format!("signature mismatch in {header:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// TCP proxy
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1:`port` to `target`; `stop` drops the listener and cuts every
/// forwarded connection, as if the database had gone away.
pub struct Proxy {
    pub port: u16,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    pub async fn start(port: u16, target: &str) -> Proxy {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("proxy address");
        let started = Instant::now();
        let listener = loop {
            let socket = TcpSocket::new_v4().expect("proxy socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            match socket.bind(addr).and_then(|()| socket.listen(128)) {
                Ok(l) => break l,
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("proxy cannot bind {addr} yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("proxy cannot bind {addr}: {e}"),
            }
        };
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_string();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("proxy connections").push(h.abort_handle());
            }
        });
        Proxy { port, accept, conns }
    }

    /// Stops accepting and cuts all forwarded connections; returns once the listener is closed.
    pub async fn stop(self) {
        self.cut();
        wait_finished(&self.accept).await;
        // `self` is dropped here; cutting again is harmless.
    }

    fn cut(&self) {
        self.accept.abort();
        for h in self.conns.lock().expect("proxy connections").drain(..) {
            h.abort();
        }
    }
}

/// Waits (at most 2 s) until an aborted task has finished, i.e. dropped what it owned.
async fn wait_finished(h: &JoinHandle<()>) {
    for _ in 0..200 {
        if h.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
