//! The hub's `/socket.io/` endpoint: Engine.IO served next to the native `/ws`, behind the
//! same origin check and connection limits, closed at shutdown. (Namespaces, i.e. the mapping
//! of Socket.IO events to the hub's users and rooms, are not mounted yet: every CONNECT is
//! refused with `Invalid namespace`.)

mod common;
mod sio_common;

use common::{eventually, hub, Redis};
use serde_json::json;
use sio_common::{http, Frame, Polling, Ws};

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
    ws.send("40").await;
    assert_eq!(ws.text().await, r#"44{"message":"Invalid namespace"}"#);

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
async fn origins_are_checked_and_cors_answers_allowed_ones() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("WEBAPP_URL", "http://app.example")]).await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let r = http(
        hub.port,
        "GET",
        handshake,
        &[("origin", "http://evil.example")],
        b"",
    )
    .await;
    r.assert_error(403, 4);
    assert_eq!(r.header("access-control-allow-origin"), None);
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
