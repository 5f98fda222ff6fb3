//! Test harness for Engine.IO / Socket.IO: the `sio-compliance` server as a process, raw HTTP
//! long-polling requests and a WebSocket client that sends and receives text and binary
//! messages exactly as the test says (it never answers Engine.IO pings by itself).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::process::{Child, Command};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::common::{eventually, free_port, WAIT};

/// The `sio-compliance` server on a free port.
pub struct Compliance {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Compliance {
    /// Starts one and waits for it to listen.
    pub async fn start() -> Compliance {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sio-compliance"))
            .env("PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("HUB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .expect("start sio-compliance");
        eventually("sio-compliance to listen", || async {
            TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        Compliance { child, port }
    }

    /// A metric sample's value (0 if absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text =
            String::from_utf8(http(self.port, "GET", "/metrics", &[], b"").await.body).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Waits until a metric sample equals `value`.
    pub async fn await_metric_eq(&self, sample: &str, value: f64) {
        eventually(&format!("{sample} == {value}"), || async {
            (self.metric(sample).await == value).then_some(())
        })
        .await
    }

    /// Waits until a metric sample reaches `at_least`.
    pub async fn await_metric(&self, sample: &str, at_least: f64) {
        eventually(&format!("{sample} >= {at_least}"), || async {
            (self.metric(sample).await >= at_least).then_some(())
        })
        .await
    }

    /// Waits until at least `count` Engine.IO sessions were closed for `reason`.
    pub async fn await_closed(&self, reason: &str, count: f64) {
        let sample = format!("hub_engineio_sessions_closed_total{{reason=\"{reason}\"}}");
        self.await_metric(&sample, count).await
    }
}

impl Drop for Compliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("JSON body: {}", self.text()))
    }

    /// Asserts an Engine.IO error response: status, `code`, and the protocol's message.
    pub fn assert_error(&self, status: u16, code: u64) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert!(body["message"].is_string(), "body: {body}");
    }

    /// Asserts the end of a poll that raced the session's close: a poll parked before it gets
    /// `packet`, one that arrives after it is refused (400).
    pub fn assert_parked_or_refused(&self, packet: &str) {
        assert!(
            (self.status, self.text()) == (200, packet.to_owned()) || self.status == 400,
            "{} {}",
            self.status,
            self.text()
        );
    }
}

/// An HTTP request in flight (sent; the response is read by [`Pending::response`]).
pub struct Pending {
    stream: TcpStream,
}

impl Pending {
    /// Sends a request with `Connection: close`.
    pub async fn send(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Pending {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let bytes = crate::common::request_bytes(port, method, path, headers, body);
        // A server may answer (413) and close before taking a whole large body.
        let _ = stream.write_all(&bytes).await;
        Pending { stream }
    }

    /// Reads the whole response.
    pub async fn response(mut self) -> Response {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        read.expect("HTTP response in time");
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "chunked responses are not parsed here"
    );
    Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// One HTTP request with `Connection: close`.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    Pending::send(port, method, path, headers, body)
        .await
        .response()
        .await
}

/// Long-polling requests of one endpoint (e.g. `/engine.io/`).
#[derive(Clone, Copy)]
pub struct Polling {
    /// Server port.
    pub port: u16,
    /// Endpoint path with its trailing slash.
    pub path: &'static str,
}

impl Polling {
    /// The URL path and query of a request of session `sid` (none for a handshake).
    pub fn url(&self, sid: Option<&str>) -> String {
        match sid {
            None => format!("{}?EIO=4&transport=polling", self.path),
            Some(sid) => format!("{}?EIO=4&transport=polling&sid={sid}", self.path),
        }
    }

    /// Opens a session; returns the open packet's JSON.
    pub async fn open(&self) -> Value {
        let r = http(self.port, "GET", &self.url(None), &[], b"").await;
        assert_eq!(r.status, 200, "handshake: {}", r.text());
        let text = r.text();
        assert!(text.starts_with('0'), "open packet: {text}");
        serde_json::from_str(&text[1..]).expect("open packet JSON")
    }

    /// Opens a session; returns its id.
    pub async fn sid(&self) -> String {
        self.open().await["sid"].as_str().unwrap().to_owned()
    }

    /// A `GET` of session `sid`.
    pub async fn get(&self, sid: &str) -> Response {
        http(self.port, "GET", &self.url(Some(sid)), &[], b"").await
    }

    /// Starts a `GET` of session `sid` without waiting for the answer.
    pub async fn start_get(&self, sid: &str) -> Pending {
        Pending::send(self.port, "GET", &self.url(Some(sid)), &[], b"").await
    }

    /// A `POST` of `body` to session `sid`.
    pub async fn post(&self, sid: &str, body: &[u8]) -> Response {
        http(self.port, "POST", &self.url(Some(sid)), &[], body).await
    }

    /// `POST`s `body`, which must be accepted with `ok`.
    pub async fn post_ok(&self, sid: &str, body: &[u8]) {
        let r = self.post(sid, body).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "POST {body:?}");
    }

    /// The packets of the next `GET` (split at `\x1e`).
    pub async fn get_packets(&self, sid: &str) -> Vec<String> {
        let r = self.get(sid).await;
        assert_eq!(r.status, 200, "GET: {}", r.text());
        r.text().split('\x1e').map(str::to_owned).collect()
    }

    /// Polls until `want` packets other than pings arrived (answering pings); returns them.
    pub async fn get_skipping_pings(&self, sid: &str, want: usize) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        while out.len() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out polling for {want} packets; got {out:?}"
            );
            for p in self.get_packets(sid).await {
                if p == "2" {
                    self.post_ok(sid, b"3").await;
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// A message received over WebSocket.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame (its code, 1005 when none) or the end of the connection (`None`).
    Closed(Option<u16>),
}

/// A WebSocket client for Engine.IO endpoints.
pub struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// `inbox-state` events are skipped (tests about the inbox turn this off).
    skip_inbox_state: bool,
}

impl Ws {
    /// Connects to `path_and_query`; `Err((status, body))` when the upgrade is refused.
    pub async fn try_connect(
        port: u16,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, (u16, String)> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Ws::try_connect_on(stream, port, path_and_query, headers).await
    }

    /// Like [`Ws::try_connect`] over a given socket (e.g. one with a small receive buffer).
    pub async fn try_connect_on(
        stream: TcpStream,
        port: u16,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, (u16, String)> {
        let url = format!("ws://127.0.0.1:{port}{path_and_query}");
        let mut req = url.as_str().into_client_request().unwrap();
        for (k, v) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await {
            Ok((ws, _)) => Ok(Ws {
                ws,
                skip_inbox_state: true,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).to_string())
                    .unwrap_or_default();
                Err((resp.status().as_u16(), body))
            }
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// Connects (panics when refused).
    pub async fn connect(port: u16, path_and_query: &str) -> Ws {
        Ws::try_connect(port, path_and_query, &[])
            .await
            .unwrap_or_else(|(status, body)| panic!("upgrade refused: {status} {body}"))
    }

    /// Opens a WebSocket-only Engine.IO session at `path`; returns it and the open packet.
    pub async fn open(port: u16, path: &str) -> (Ws, Value) {
        let mut ws = Ws::connect(port, &format!("{path}?EIO=4&transport=websocket")).await;
        let open = ws.text().await;
        assert!(open.starts_with('0'), "open packet: {open}");
        (ws, serde_json::from_str(&open[1..]).unwrap())
    }

    /// Makes `next` and the like return `inbox-state` events too.
    pub fn with_inbox_state(mut self) -> Self {
        self.skip_inbox_state = false;
        self
    }

    /// Sends a text message.
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    /// Sends a text message; false once the connection is gone.
    pub async fn try_send_binary(&mut self, data: &[u8]) -> bool {
        self.ws.send(Message::binary(data.to_vec())).await.is_ok()
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) {
        assert!(self.try_send_binary(data).await, "send binary");
    }

    /// The next message (WebSocket pings and pongs skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time");
            return match msg {
                Some(Ok(Message::Text(t)))
                    if self.skip_inbox_state && t.starts_with("42[\"inbox-state\"") =>
                {
                    continue
                }
                Some(Ok(Message::Text(t))) => Frame::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => {
                    Frame::Closed(Some(c.map_or(1005, |c| u16::from(c.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Frame::Closed(None),
            };
        }
    }

    /// The next message, which must be text.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Frame::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message that is not an Engine.IO ping (pings are answered).
    pub async fn next_skipping_pings(&mut self) -> Frame {
        loop {
            match self.next().await {
                Frame::Text(t) if t == "2" => self.send("3").await,
                other => return other,
            }
        }
    }

    /// The next text message that is not a ping.
    pub async fn text_skipping_pings(&mut self) -> String {
        match self.next_skipping_pings().await {
            Frame::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads until the connection ends; returns the close code (`None`: no close frame).
    /// Pings are not answered.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Frame::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// Reads until the connection ends, answering pings.
    pub async fn closed_answering_pings(&mut self) -> Option<u16> {
        loop {
            if let Frame::Closed(code) = self.next_skipping_pings().await {
                return code;
            }
        }
    }
}

/// Opens a WebSocket-only Engine.IO session on a hub and CONNECTs with `auth`; the session and
/// the CONNECT reply.
pub async fn connect_with(port: u16, auth: &Value) -> (Ws, Value) {
    let (mut ws, _) = Ws::open(port, "/socket.io/").await;
    ws.send(&format!("40{auth}")).await;
    let text = ws.text().await;
    let reply = serde_json::from_str(text.strip_prefix("40").expect("a CONNECT reply")).unwrap();
    (ws, reply)
}

/// Resumes `rita`'s Socket.IO session `pid` from `offset`; asserts it resumed.
pub async fn resume_sio(hub: &crate::common::Hub, pid: &str, offset: &str) -> Ws {
    let auth = serde_json::json!({"userId": "rita", "pid": pid, "offset": offset});
    let (ws, reply) = connect_with(hub.port, &auth).await;
    assert_eq!(reply["pid"], pid, "recovered: {reply}");
    ws
}
