//! End to end with the real `socket.io-client` 4.x from npm (`tests/socketio/e2e.mjs`, run by
//! Node) against the compliance server: long-polling only, WebSocket only, the upgrade path,
//! a custom namespace, event and ack round trips with binary attachments, and a refused
//! namespace. `npm ci --prefix tests/socketio` installs the client (`.ci/run` and `make test`
//! do it).

mod common;
mod sio_common;

use std::{path::Path, process::Stdio};

use serde_json::{json, Value};
use sio_common::Compliance;

/// Runs one scenario of `e2e.mjs` against `server`; returns what the client observed.
async fn scenario(server: &Compliance, name: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run `npm ci --prefix tests/socketio`"
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join("e2e.mjs"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(common::WAIT * 2, output)
        .await
        .expect("the node scenario in time")
        .expect("run node (Node 18+ must be installed)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scenario {name} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("scenario output: {stdout}"))
}

/// What every round trip must have seen, whatever the transport.
fn assert_round_trip(out: &Value, token: &str) {
    assert_eq!(out["auth"], json!({ "token": token }));
    assert_eq!(out["back"], json!([1, "2", {"3": [true]}]));
    assert_eq!(out["ack"], json!(["a", {"b": [1, null]}]));
    assert_eq!(
        out["binaryAck"],
        json!([{"binary": [1, 2, 3]}, {"nested": {"binary": [4, 5]}}])
    );
    assert_eq!(out["binaryBack"], json!([{"binary": [6, 7]}]));
    assert!(out["socketId"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn long_polling_only() {
    let server = Compliance::start().await;
    let out = scenario(&server, "polling").await;
    assert_eq!(out["firstTransport"], "polling");
    assert_eq!(out["transport"], "polling");
    assert_round_trip(&out, "p");
    server
        .await_metric(
            "hub_engineio_sessions_opened_total{transport=\"polling\"}",
            1.0,
        )
        .await;
    assert_eq!(server.metric("hub_engineio_upgrades_total").await, 0.0);
}

#[tokio::test]
async fn websocket_only() {
    let server = Compliance::start().await;
    let out = scenario(&server, "websocket").await;
    assert_eq!(out["firstTransport"], "websocket");
    assert_eq!(out["transport"], "websocket");
    assert_round_trip(&out, "w");
    assert_eq!(
        server
            .metric("hub_engineio_sessions_opened_total{transport=\"polling\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let server = Compliance::start().await;
    let out = scenario(&server, "upgrade").await;
    assert_eq!(out["firstTransport"], "polling");
    assert_eq!(out["transport"], "websocket");
    assert_round_trip(&out, "u");
    server
        .await_metric("hub_engineio_upgrades_total", 1.0)
        .await;
}

#[tokio::test]
async fn custom_namespace_gets_its_auth() {
    let server = Compliance::start().await;
    let out = scenario(&server, "custom").await;
    assert_eq!(out["auth"], json!({"userId": 7}));
}

#[tokio::test]
async fn an_unknown_namespace_gives_connect_error() {
    let server = Compliance::start().await;
    let out = scenario(&server, "refused").await;
    assert_eq!(out, json!({"connectError": "Invalid namespace"}));
}
