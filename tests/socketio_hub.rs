//! The hub's `/socket.io/` endpoint: Engine.IO served next to the native `/ws`, behind the
//! same origin check and connection limits, closed at shutdown; Socket.IO sessions are hub
//! sessions (same users, rooms and fan-out as `/ws`). The end-to-end tests run the original
//! frontend snippet, unmodified, with the real `socket.io-client` (`tests/socketio/hub.mjs`).

mod common;
mod sio_common;

use std::{path::Path, process::Stdio};

use common::{eventually, hub, hub_on_port, notification, Redis};
use serde_json::{json, Value};
use sio_common::{http, Frame, Polling, Ws};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

fn sio(port: u16) -> Polling {
    Polling {
        port,
        path: "/socket.io/",
    }
}

#[tokio::test]
async fn the_hub_serves_engineio_next_to_ws() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let open = sio(hub.port).open().await;
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 20_000);
    assert_eq!(open["maxPayload"], 65_536, "the native frame limit applies");
    assert_eq!(open["upgrades"], json!(["websocket"]));

    let (mut ws, open) = Ws::open(hub.port, "/socket.io/").await;
    assert_eq!(open["upgrades"], json!([]));
    ws.send("40/custom,").await;
    assert_eq!(
        ws.text().await,
        r#"44/custom,{"message":"Invalid namespace"}"#
    );
    ws.send("40").await;
    let refused: Value = serde_json::from_str(&ws.text().await[2..]).unwrap();
    assert_eq!(
        refused["data"],
        json!({"code": "unauthorized"}),
        "dev mode needs a userId"
    );
    ws.send(r#"40{"userId":"7"}"#).await;
    let accepted: Value = serde_json::from_str(&ws.text().await[2..]).unwrap();
    assert!(accepted["sid"].is_string(), "{accepted}");

    // The native protocol is unchanged.
    let mut native = hub.user("7").await;
    native.send(json!({"type": "ping"})).await;
    native.recv_type("pong").await;
    // Path without the trailing slash works too; other paths stay 404.
    let r = http(
        hub.port,
        "GET",
        "/socket.io?EIO=4&transport=polling",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(hub.metric("hub_engineio_sessions").await >= 2.0);
}

#[tokio::test]
async fn failed_connects_use_up_the_addresss_budget_and_close_the_connection() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_AUTH_FAILURES_PER_MINUTE", "2")]).await;
    let code = |text: String| -> Value {
        let packet: Value = serde_json::from_str(&text[2..]).unwrap();
        packet["data"]["code"].clone()
    };
    let (mut ws, _) = Ws::open(hub.port, "/socket.io/").await;
    ws.send("40").await;
    assert_eq!(code(ws.text().await), json!("unauthorized"));
    ws.send(r#"40{"userId":"bad id"}"#).await;
    assert_eq!(code(ws.text().await), json!("unauthorized"));
    // The budget is used up: the refusal is followed by the Engine.IO close.
    assert_eq!(ws.next().await, Frame::Text("1".into()));
    // A new connection from the same address gets no try, even with good credentials.
    let (mut again, _) = Ws::open(hub.port, "/socket.io/").await;
    again.send(r#"40{"userId":"7"}"#).await;
    assert_eq!(code(again.text().await), json!("too_many_auth_failures"));
    assert_eq!(again.next().await, Frame::Text("1".into()));
    // Native /ws shares the budget.
    let native = common::Client::try_connect(&hub.ws_url("userId=7"), &[]).await;
    assert_eq!(native.err(), Some(429));
}

/// A handshake from another site: refused (403, code 4) with no CORS grant.
async fn refused_cross_origin(port: u16, handshake: &str) -> sio_common::Response {
    let evil = [("origin", "http://evil.example")];
    let r = http(port, "GET", handshake, &evil, b"").await;
    r.assert_error(403, 4);
    assert_eq!(r.header("access-control-allow-origin"), None);
    r
}

#[tokio::test]
async fn without_configured_origins_other_sites_get_no_cors_grant() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let r = refused_cross_origin(hub.port, handshake).await;
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let own = format!("http://127.0.0.1:{}", hub.port);
    let r = http(hub.port, "GET", handshake, &[("origin", own.as_str())], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(own.as_str()));
}

#[tokio::test]
async fn origins_are_checked_and_cors_answers_allowed_ones() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("WEBAPP_URL", "http://app.example")]).await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    refused_cross_origin(hub.port, handshake).await;
    let (status, body) = Ws::try_connect(
        hub.port,
        "/socket.io/?EIO=4&transport=websocket",
        &[("origin", "http://evil.example")],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(status, 403, "{body}");

    let r = http(
        hub.port,
        "GET",
        handshake,
        &[("origin", "http://app.example")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // No Origin header (not a browser): not subject to the check.
    assert_eq!(http(hub.port, "GET", handshake, &[], b"").await.status, 200);

    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"forbidden_origin\"}")
            .await,
        2.0
    );
    assert_eq!(
        hub.metric("hub_engineio_requests_refused_total{code=\"forbidden\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn socketio_sessions_count_against_the_connection_limit() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_MAX_CONNECTIONS", "1")]).await;
    let eio = sio(hub.port);
    let sid = eio.sid().await;
    let r = http(hub.port, "GET", &eio.url(None), &[], b"").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let (status, _) = Ws::try_connect(hub.port, "/socket.io/?EIO=4&transport=websocket", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 503);
    // The limit is shared with the native protocol.
    let native = common::Client::try_connect(&hub.ws_url("userId=1"), &[]).await;
    assert_eq!(native.err(), Some(503));
    // Closing the session frees its slot.
    eio.post_ok(&sid, b"1").await;
    eventually("the slot to be free", || async {
        (http(hub.port, "GET", &eio.url(None), &[], b"").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_socketio_sessions() {
    let redis = Redis::start().await;
    let mut hub = hub(&redis, &[]).await;
    let (mut ws, _) = Ws::open(hub.port, "/socket.io/").await;
    hub.signal(libc::SIGTERM);
    // The Engine.IO close packet, then the WebSocket close (going away).
    assert_eq!(ws.next().await, Frame::Text("1".into()));
    assert_eq!(ws.closed().await, Some(1001));
    assert_eq!(hub.wait_exit().await, Some(0));
}

/// A `tests/socketio/hub.mjs` scenario: the real socket.io-client in Node, talking to the
/// test in lines (`READY ...` when the test should act, then a JSON result).
struct Scenario {
    child: tokio::process::Child,
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Scenario {
    async fn start(port: u16, name: &str, arg: &str) -> Scenario {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
        assert!(
            dir.join("node_modules/socket.io-client").is_dir(),
            "socket.io-client is not installed: run `npm ci --prefix tests/socketio`"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("hub.mjs"))
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(name)
            .arg(arg)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node 18+ must be installed)");
        let stdout = child.stdout.take().expect("piped stdout");
        Scenario {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        common::node_line(&mut self.lines).await
    }

    /// Waits for `READY <json>`.
    async fn ready(&mut self) -> Value {
        let line = self.line().await;
        let info = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("expected READY, got {line}"));
        serde_json::from_str(info).unwrap()
    }

    /// The final JSON line; the scenario must exit 0.
    async fn result(mut self) -> Value {
        let line = self.line().await;
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "scenario failed after printing {line}");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("scenario output: {line}"))
    }
}

/// The original frontend snippet over one transport: a notification and an AI result
/// published to Redis reach it, it joins `room-123` and exchanges chat messages with a
/// native `/ws` client in the same room, and `ping` gets `pong`.
async fn snippet(transport: &str) -> Value {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut native = common::Client::connect(&hub.ws_url("userId=1&name=Native")).await;
    native.recv_type("connected").await;
    native.join("room-123").await;

    let mut node = Scenario::start(hub.port, "snippet", transport).await;
    assert_eq!(node.ready().await["joined"], "room-123");
    redis
        .publish("user:notifications:4242", &notification("4242", "toast"))
        .await;
    let result =
        json!({"jobId": "j1", "userId": 4242, "status": "success", "result": {"words": 2}});
    redis.publish("ai:results", &result.to_string()).await;
    native
        .send(json!({"type": "chat-message", "room": "room-123", "message": "from native"}))
        .await;
    // The native client sees the socket.io client's message (and its own).
    let mut from_sio = None;
    for _ in 0..2 {
        let msg = native.recv_type("chat-message").await["data"].clone();
        if msg["userId"] == 4242 {
            from_sio = Some(msg);
        }
    }
    let from_sio = from_sio.expect("the socket.io client's message reached the native client");
    assert_eq!(
        from_sio["message"],
        format!("hello from socket.io over {transport}")
    );

    let out = node.result().await;
    assert_eq!(
        out["toasts"],
        json!(["m"]),
        "notification.message reached toast.success"
    );
    assert_eq!(out["aiResults"][0], result);
    let texts: Vec<&str> = out["chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"from native"), "{texts:?}");
    assert!(out["chat"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["roomId"] == "room-123"));
    assert!(out["pongs"][0]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(out["joined"]["members"].as_array().unwrap().len(), 2);
    out
}

#[tokio::test]
async fn the_original_snippet_works_unchanged_with_default_transports() {
    let out = snippet("default").await;
    assert_eq!(out["firstTransport"], "polling");
    assert_eq!(out["finalTransport"], "websocket", "upgraded from polling");
}

#[tokio::test]
async fn the_original_snippet_works_over_websocket_only() {
    let out = snippet("websocket").await;
    assert_eq!(out["firstTransport"], "websocket");
}

#[tokio::test]
async fn the_original_snippet_works_over_polling_only() {
    let out = snippet("polling").await;
    assert_eq!(out["finalTransport"], "polling");
}

#[tokio::test]
async fn replies_and_errors_go_to_acks_when_asked() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let out = Scenario::start(hub.port, "acks", "").await.result().await;
    assert_eq!(out["joined"]["type"], "joined");
    assert_eq!(out["joined"]["room"], "r-ack");
    assert_eq!(out["joined"]["members"][0]["username"], "Ack Er");
    assert_eq!(out["published"]["type"], "published");
    assert_eq!(
        out["chat"]["id"], out["published"]["id"],
        "the ack carries the history id"
    );
    assert_eq!(out["notInRoom"]["error"]["code"], "not_in_room");
    assert_eq!(out["badRoom"]["error"]["code"], "invalid_room");
    assert_eq!(out["unknown"]["error"]["code"], "unknown_type");
    assert!(out["pong"]["timestamp"].is_u64());
    assert_eq!(
        out["errorEvent"]["code"], "not_in_room",
        "without an ack: an error event"
    );
}

#[tokio::test]
async fn a_refused_token_gives_connect_error() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[("HUB_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")],
    )
    .await;
    let out = Scenario::start(hub.port, "refused", "not-a-jwt")
        .await
        .result()
        .await;
    assert_eq!(out["data"], json!({"code": "unauthorized"}));
    assert!(
        out["message"].as_str().unwrap().contains("invalid"),
        "{out}"
    );
    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"unauthorized\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_token_refreshes_over_socketio_and_its_expiry_disconnects() {
    const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-s3cret";
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;
    let now = common::unix_now();
    let token = |sub: &str, exp: i64| {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let claims = json!({"sub": sub, "exp": exp});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    // Past `exp` but inside the 5 s leeway: the session lives 2 to 4 seconds.
    let arg = json!({
        "expiring": token("1", now - 2),
        "later": token("1", now - 1),
        "other": token("2", now + 600),
    });
    let out = Scenario::start(hub.port, "expiry", &arg.to_string())
        .await
        .result()
        .await;
    assert_eq!(out["refusedSame"]["error"]["code"], "bad_request", "{out}");
    assert_eq!(out["refreshed"]["type"], "token-refreshed", "{out}");
    assert_eq!(out["refusedOther"]["error"]["code"], "forbidden", "{out}");
    assert_eq!(out["expired"]["code"], "unauthorized", "{out}");
    assert!(out["expired"]["message"]
        .as_str()
        .unwrap()
        .starts_with("token expired"));
    assert_eq!(out["reason"], "io server disconnect");
    assert_eq!(hub.metric("hub_token_expiries_total").await, 1.0);
}

#[tokio::test]
async fn the_client_reconnects_after_the_hub_restarts() {
    let redis = Redis::start().await;
    let mut first = hub(&redis, &[]).await;
    let port = first.port;
    let mut node = Scenario::start(port, "reconnect", "").await;
    node.ready().await;
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit().await, Some(0));
    let _second = hub_on_port(&redis.url(), port, &[("HUB_AUTH", "dev")]).await;
    let out = node.result().await;
    assert_ne!(out["first"], out["second"], "a new session");
    assert_eq!(out["joinedAfter"], "after-restart");
    assert_eq!(out["reasons"], json!(["transport close"]));
}
