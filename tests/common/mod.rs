//! Test harness: a private `redis-server` and a real hub process per test, spoken to over real
//! sockets. Nothing is mocked.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod cache;
pub mod cluster;
pub mod jobs;
pub mod resume;
pub mod room_hook;

use std::{
    collections::BTreeSet,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long any awaited event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A free TCP port on loopback, never the same one twice in this test binary: its tests run in
/// parallel, and a port released here could otherwise be handed to two servers at once (one
/// of them then fails to bind while the test talks to the other).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private redis-server on a free port.
pub struct Redis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// `FCALL relay_notify` as a service calls it: `payload` into `user`'s inbox; its reply
    /// (the inbox id and how many instances received it).
    pub async fn relay_notify(
        &self,
        user: &str,
        payload: &str,
    ) -> redis::RedisResult<(String, i64)> {
        redis::cmd("FCALL")
            .arg("relay_notify")
            .arg(1)
            .arg(format!("inbox:{{user:notifications:{user}}}"))
            .arg(payload)
            .query_async(&mut self.conn().await)
            .await
    }

    /// Starts one and waits until it answers.
    pub async fn start() -> Redis {
        Redis::start_on(free_port()).await
    }

    /// Starts one on a given port.
    pub async fn start_on(port: u16) -> Redis {
        let mut redis = Redis { child: None, port };
        redis.restart().await;
        redis
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (after [`Redis::kill`]).
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        eventually("redis-server to answer", || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
        })
        .await;
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Cuts every subscriber off and refuses new subscriptions (`ACL` `-subscribe`, then
    /// `CLIENT KILL TYPE pubsub`): a hub keeps reconnecting and cannot subscribe until
    /// [`Redis::allow_subscribe`].
    pub async fn cut_pubsub(&self) {
        let mut admin = self.conn().await;
        let _: () = acl_default("-subscribe")
            .query_async(&mut admin)
            .await
            .unwrap();
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut admin)
            .await
            .unwrap();
    }

    /// Allows subscriptions again after [`Redis::cut_pubsub`].
    pub async fn allow_subscribe(&self) {
        let _: () = acl_default("+subscribe")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
    }

    /// Lifts the pub/sub output-buffer limit, so Redis never drops a subscriber that falls
    /// behind (what a test then measures is the hub's own buffering).
    pub async fn never_drop_subscribers(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("pubsub 0 0 0")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
    }

    /// Closes every pub/sub connection (what Redis does to a subscriber over its output-buffer
    /// limit); returns how many there were.
    pub async fn kill_pubsub_clients(&self) -> i64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }

    /// A connection for test commands. It waits up to [`WAIT`] for an answer (not redis-rs's
    /// default 500 ms: a pipeline of thousands of commands takes longer on a loaded machine).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let mut conn = redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis");
        conn.set_response_timeout(WAIT);
        conn
    }

    /// `PUBLISH`; returns the receiver count.
    pub async fn publish(&self, channel: &str, payload: &str) -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }

    /// `PUBSUB NUMSUB channel`.
    pub async fn numsub(&self, channel: &str) -> i64 {
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        reply.1
    }

    /// Waits until `PUBSUB NUMSUB channel` equals `n`.
    pub async fn await_numsub(&self, channel: &str, n: i64) {
        eventually(&format!("NUMSUB {channel} == {n}"), || async {
            (self.numsub(channel).await == n).then_some(())
        })
        .await
    }
}

/// `ACL SETUSER default <rule>`.
fn acl_default(rule: &str) -> redis::Cmd {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(rule)
        .clone()
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub process.
pub struct Hub {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

/// Starts a hub in dev mode (plus `env`) against `redis`, and waits for it to listen.
pub async fn hub(redis: &Redis, env: &[(&str, &str)]) -> Hub {
    hub_with_url(&redis.url(), env).await
}

/// Starts a hub against a Redis URL (which may not answer).
pub async fn hub_with_url(redis_url: &str, env: &[(&str, &str)]) -> Hub {
    hub_on_port(redis_url, free_port(), env).await
}

/// Starts a hub on a given port (e.g. to restart one where its clients reconnect).
pub async fn hub_on_port(redis_url: &str, port: u16, env: &[(&str, &str)]) -> Hub {
    start_hub(redis_url, port, env, None).await
}

/// Starts a hub whose working directory is `dir` (not the source tree).
pub async fn hub_in_dir(redis: &Redis, dir: &std::path::Path, env: &[(&str, &str)]) -> Hub {
    start_hub(&redis.url(), free_port(), env, Some(dir)).await
}

async fn start_hub(
    redis_url: &str,
    port: u16,
    env: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> Hub {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-hub"));
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HUB_HOST", "127.0.0.1")
        .env("HUB_WORKERS", "2")
        .env(
            "RUST_LOG",
            std::env::var("HUB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let given = |name: &str| env.iter().any(|(k, _)| *k == name);
    if !given("REDIS_CLUSTER_URLS") {
        cmd.env("REDIS_URL", redis_url);
    }
    let keyed = ["HUB_JWT_SECRET", "HUB_JWKS_URL", "HUB_JWT_PUBLIC_KEY_FILE"]
        .iter()
        .any(|k| given(k));
    if !keyed {
        cmd.env("HUB_AUTH", "dev");
    } else if !given("HUB_API_KEY") && !given("HUB_API_OPEN") {
        // Token-mode tests that use the API without a key open it explicitly.
        cmd.env("HUB_API_OPEN", "1");
    }
    if !given("HUB_AUTH_FAILURES_PER_MINUTE") {
        cmd.env("HUB_AUTH_FAILURES_PER_MINUTE", "0");
    }
    if !given("HUB_MAX_CONNECTIONS_PER_IP") {
        // Every test client comes from 127.0.0.1.
        cmd.env("HUB_MAX_CONNECTIONS_PER_IP", "0");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start the hub binary");
    let hub = Hub {
        child: Some(child),
        port,
    };
    // Ready once it answers HTTP (any status: without Redis `/health` says 503).
    eventually("the hub to answer HTTP", || async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = request_bytes(port, "GET", "/health", &[], b"");
        stream.write_all(&req).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        raw.starts_with(b"HTTP/1.1 ").then_some(())
    })
    .await;
    hub
}

impl Hub {
    /// The hub's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("hub running").id()
    }

    /// Sends a signal to the hub.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for the hub to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("hub running");
        tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap()
    }

    /// `ws://127.0.0.1:{port}/ws?{query}`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?{query}", self.port)
    }

    /// A plain HTTP request; returns status and body.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http_request(self.port, method, path, headers, body).await
    }

    /// `GET /health` as (status, JSON).
    pub async fn health(&self) -> (u16, Value) {
        let (status, body) = self.http("GET", "/health", &[], "").await;
        (status, serde_json::from_str(&body).expect("health is JSON"))
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http("GET", "/metrics", &[], "").await.1
    }

    /// The value of one metric sample (e.g. `hub_slow_consumer_kicks_total` or
    /// `hub_invalid_payloads_total{channel="ai:results"}`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// The sum of every sample of a metric family (all label values).
    pub async fn metric_sum(&self, family: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name.split('{').next() == Some(family)).then(|| value.parse::<f64>().unwrap())
            })
            .sum()
    }

    /// Sessions dropped as slow consumers, for any reason.
    pub async fn kicks(&self) -> f64 {
        self.metric_sum("hub_slow_consumer_kicks_total").await
    }

    /// Resident memory of the hub process in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Connects a dev-mode client as `user` and awaits `connected`.
    pub async fn user(&self, user: &str) -> Client {
        let mut c = Client::connect(&self.ws_url(&format!("userId={user}"))).await;
        let hello = c.recv_type("connected").await;
        assert_eq!(hello["userId"].to_string().trim_matches('"'), user);
        c
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The bytes of an HTTP/1.1 request with `Connection: close`.
pub fn request_bytes(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = request_bytes(port, method, path, headers, body.as_bytes());
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A WebSocket client speaking the native protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frame types `next` skips: `presence`, `inbox-state` unless asked (they would interleave).
    skip: Vec<&'static str>,
}

/// How a connection attempt or a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A close frame with this code.
    Close(u16),
    /// The connection ended without a close frame.
    Dropped,
}

impl Client {
    /// Opens a WebSocket (panics on HTTP refusal).
    pub async fn connect(url: &str) -> Client {
        Client::try_connect(url, &[])
            .await
            .unwrap_or_else(|status| panic!("upgrade refused with {status}"))
    }

    /// Opens a WebSocket with extra headers; `Err(status)` when the upgrade is refused.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        Client::try_connect_from([127, 0, 0, 1], url, headers).await
    }

    /// Like [`Client::try_connect`], from a chosen loopback source address.
    pub async fn try_connect_from(
        source: [u8; 4],
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("header name");
            req.headers_mut()
                .insert(name, v.parse().expect("header value"));
        }
        let uri = req.uri().clone();
        let port = uri.port_u16().expect("test URLs carry a port");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                skip: vec!["presence", "inbox-state"],
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// Makes `recv`/`next` return `presence` frames too.
    pub fn with_presence(mut self) -> Self {
        self.skip.retain(|t| *t != "presence");
        self
    }

    /// Makes `recv`/`next` return `inbox-state` frames too.
    pub fn with_inbox_state(mut self) -> Self {
        self.skip.retain(|t| *t != "inbox-state");
        self
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends frames in one write, so the hub reads them together.
    pub async fn send_together(&mut self, frames: &[Value]) {
        for frame in frames {
            self.ws
                .feed(Message::text(frame.to_string()))
                .await
                .expect("queue a frame");
        }
        self.ws.flush().await.expect("send the frames");
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a frame");
    }

    /// Sends a raw text frame; `Err` once the connection is gone.
    pub async fn try_send_text(&mut self, text: &str) -> Result<(), ()> {
        self.ws.send(Message::text(text)).await.map_err(|_| ())
    }

    /// Sends a raw WebSocket message.
    pub async fn send_message(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send a message");
    }

    /// The next JSON frame (server pings are answered and skipped).
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Ok(v) => v,
            Err(ending) => panic!("connection ended ({ending:?}) while a frame was expected"),
        }
    }

    /// The next JSON frame, or how the connection ended.
    pub async fn next(&mut self) -> Result<Value, Ending> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let frame: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    let kind = frame["type"].as_str().unwrap_or_default();
                    if self.skip.contains(&kind) {
                        continue;
                    }
                    return Ok(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ending::Close(frame.map_or(1005, |f| u16::from(f.code))))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("unexpected binary frame"),
                Some(Err(_)) | None => return Err(Ending::Dropped),
            }
        }
    }

    /// The next frame, which must have `type` == `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected a `{kind}` frame, got {v}");
        v
    }

    /// The next `ai-result` frame, skipping the job's `job-state` state pushes and `ai-chunk`s
    /// before it (any other frame fails).
    pub async fn recv_result(&mut self) -> Value {
        loop {
            let v = self.recv().await;
            match v["type"].as_str() {
                Some("job-state" | "ai-chunk") => continue,
                _ => {
                    assert_eq!(
                        v["type"], "ai-result",
                        "expected an `ai-result` frame, got {v}"
                    );
                    return v;
                }
            }
        }
    }

    /// The next frame must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv_type("error").await;
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Skips frames until the connection ends; returns the close code.
    pub async fn expect_close(&mut self) -> Ending {
        loop {
            if let Err(ending) = self.next().await {
                return ending;
            }
        }
    }

    /// Joins a room and returns the `joined` frame.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"type": "join-room", "room": room}))
            .await;
        let joined = self.recv_type("joined").await;
        assert_eq!(joined["room"], room);
        joined
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// A notification payload for `user`.
pub fn notification(user: &str, title: &str) -> String {
    serde_json::json!({
        "userId": user, "type": "info", "title": title, "message": "m", "timestamp": 1
    })
    .to_string()
}

/// What a [`RawClient`] saw until the connection ended.
#[derive(Debug, Default)]
pub struct RawFrames {
    /// Server pings.
    pub pings: usize,
    /// Text frames.
    pub texts: Vec<String>,
    /// The close frame's code, if one arrived.
    pub close_code: Option<u16>,
}

/// A WebSocket client on a bare socket: it does the handshake and then only what the test
/// says (never answers pings, may never read).
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and completes the handshake.
    pub async fn connect(port: u16, query: &str) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        RawClient::handshake(stream, port, &format!("/ws?{query}")).await
    }

    /// Connects with a small receive buffer (for clients that stop reading).
    pub async fn connect_with_rcvbuf(port: u16, query: &str, rcvbuf: u32) -> RawClient {
        RawClient::connect_to_with_rcvbuf(port, &format!("/ws?{query}"), rcvbuf).await
    }

    /// [`RawClient::connect_with_rcvbuf`] on any WebSocket path (e.g. `/socket.io/...`).
    pub async fn connect_to_with_rcvbuf(port: u16, path: &str, rcvbuf: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        RawClient::handshake(stream, port, path).await
    }

    async fn handshake(mut stream: TcpStream, port: u16, path: &str) -> RawClient {
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("handshake reply in time")
                .unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buf.drain(..end);
        RawClient { stream, buf }
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    /// Sends one masked frame with `opcode` (e.g. a Pong, 0xA, echoing a Ping's payload).
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads server frames until the first text frame and returns it.
    pub async fn read_frames_until_text(&mut self) -> String {
        loop {
            if let (0x1, payload) = self.read_frame().await {
                return String::from_utf8(payload).unwrap();
            }
        }
    }

    /// Reads the next server frame: its opcode and payload.
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut chunk = vec![0u8; 4096];
        loop {
            if let Some((opcode, payload, len)) = parse_server_frame(&self.buf) {
                self.buf.drain(..len);
                return (opcode, payload);
            }
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("a frame in time")
                .unwrap();
            assert!(n > 0, "connection ended before a frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads server frames until a close frame or the end of the connection.
    pub async fn read_frames_until_close(&mut self) -> RawFrames {
        let mut seen = RawFrames::default();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some((opcode, payload, len)) = parse_server_frame(&self.buf) {
                self.buf.drain(..len);
                match opcode {
                    0x1 => seen.texts.push(String::from_utf8(payload).unwrap()),
                    0x8 => {
                        seen.close_code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return seen;
                    }
                    0x9 => seen.pings += 1,
                    _ => {}
                }
            }
            let n = match tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("frames in time")
            {
                Ok(n) => n,
                Err(_) => return seen,
            };
            if n == 0 {
                return seen;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Parses one unmasked server frame: (opcode, payload, total length).
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let (len, at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((opcode, payload, at + len))
}

/// A test-side subscriber on one Redis channel: proves what was (and was not) published.
pub struct ChannelWatch {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl ChannelWatch {
    /// Subscribes to `channel` on `redis` (resolves once Redis confirmed the subscription).
    pub async fn start(redis: &Redis, channel: &str) -> ChannelWatch {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.expect("pub/sub connection");
        pubsub.subscribe(channel).await.expect("subscribe");
        ChannelWatch {
            stream: Box::pin(pubsub.into_on_message()),
        }
    }

    /// The next payload published on the channel, as JSON.
    pub async fn next(&mut self) -> Value {
        let msg = tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("a message in time")
            .expect("the subscription is open");
        serde_json::from_slice(msg.get_payload_bytes()).expect("payloads are JSON")
    }
}

/// `/metrics` of a hub, parsed with a Prometheus text-format parser.
pub struct Scrape(pub prometheus_parse::Scrape);

impl Scrape {
    /// Fetches and parses `/metrics` (panics if it does not parse).
    pub async fn of(hub: &Hub) -> Scrape {
        let text = hub.metrics().await;
        for line in text.lines() {
            // The parser skips lines it does not understand; every line must be understood.
            assert!(
                !matches!(
                    prometheus_parse::LineInfo::parse(line),
                    prometheus_parse::LineInfo::Ignored
                ),
                "not Prometheus text: {line}"
            );
        }
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text"))
    }

    /// The samples of `name` whose labels include all of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of a counter, gauge or untyped sample (0 when absent).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name} is not a single value: {other:?}"),
            })
            .next()
            .unwrap_or(0.0)
    }

    /// The count of observations of a histogram (0 when absent).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .next()
            .unwrap_or(0.0)
    }
}

/// base64url without padding, as JWTs use it.
pub fn base64_url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Seconds since the Unix epoch (for token claims).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The next line a Node scenario (`tests/socketio/*.mjs`) printed on stdout.
pub async fn node_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(WAIT * 2, lines.next_line())
        .await
        .expect("the node scenario to answer in time")
        .expect("read the scenario's output")
        .unwrap_or_else(|| panic!("the scenario ended early (see its stderr above)"))
}
