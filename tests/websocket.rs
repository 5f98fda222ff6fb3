//! The native WebSocket protocol against a real hub: replies, errors and limits.

mod common;

use common::{hub, Client, Ending, Redis};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn ping_gets_pong_with_the_same_id() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("123").await;
    c.send(json!({"type": "ping", "id": 7})).await;
    let pong = c.recv_type("pong").await;
    assert_eq!(pong["id"], 7);
    assert!(pong["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    c.send(json!({"type": "ping", "id": "abc"})).await;
    assert_eq!(c.recv_type("pong").await["id"], "abc");
}

#[tokio::test]
async fn connected_carries_session_and_numeric_user_id() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = Client::connect(&hub.ws_url("userId=123&name=Alice")).await;
    let hello = c.recv_type("connected").await;
    assert_eq!(hello["userId"], 123);
    assert!(hello["sessionId"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn every_error_code_keeps_the_connection_open() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_MAX_ROOMS_PER_SESSION", "1"),
            ("HUB_ERROR_BURST", "50"),
        ],
    )
    .await;
    let mut c = hub.user("1").await;

    c.send_text("this is not json").await;
    c.expect_error("bad_request").await;
    c.send(json!({"type": "join-room", "id": 1})).await;
    assert_eq!(c.expect_error("bad_request").await["id"], 1);
    c.send(json!({"type": "ping", "bogus": true})).await;
    c.expect_error("bad_request").await;
    c.send_message(Message::binary(vec![1, 2, 3])).await;
    c.expect_error("bad_request").await;
    c.send(json!({"type": "dance", "id": "x"})).await;
    assert_eq!(c.expect_error("unknown_type").await["id"], "x");
    c.send(json!({"type": "join-room", "room": "no spaces allowed"}))
        .await;
    c.expect_error("invalid_room").await;
    c.send(json!({"type": "join-room", "room": "r".repeat(65)}))
        .await;
    c.expect_error("invalid_room").await;
    c.send(json!({"type": "leave-room", "room": "never-joined"}))
        .await;
    c.expect_error("not_in_room").await;
    c.send(json!({"type": "chat-message", "room": "never-joined", "message": "hi"}))
        .await;
    c.expect_error("not_in_room").await;
    c.join("first").await;
    c.send(json!({"type": "join-room", "room": "second"})).await;
    c.expect_error("forbidden").await;
    c.send(json!({"type": "chat-message", "room": "first", "message": "x".repeat(4001)}))
        .await;
    c.expect_error("too_large").await;

    c.send(json!({"type": "ping", "id": "still-open"})).await;
    assert_eq!(c.recv_type("pong").await["id"], "still-open");
    assert!(
        hub.metric("hub_client_errors_total{code=\"bad_request\"}")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn frames_over_64_kib_close_with_1009() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    let big = json!({"type": "ping", "pad": "x".repeat(70 * 1024)}).to_string();
    c.send_text(&big).await;
    assert_eq!(c.expect_close().await, Ending::Close(1009));
}

#[tokio::test]
async fn flooding_is_rate_limited_then_closed_with_1008() {
    let redis = Redis::start().await;
    // One frame per second with a burst of 5: the 6th frame is over the limit whatever the
    // timing, and 3 more refusals exhaust the error budget.
    let hub = hub(
        &redis,
        &[
            ("HUB_RATE_PER_SEC", "1"),
            ("HUB_RATE_BURST", "5"),
            ("HUB_ERROR_BURST", "3"),
        ],
    )
    .await;
    let mut c = hub.user("1").await;
    for i in 0..20 {
        c.send(json!({"type": "ping", "id": i})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let ending = loop {
        match c.next().await {
            Ok(v) if v["type"] == "pong" => pongs += 1,
            Ok(v) if v["code"] == "rate_limited" => limited += 1,
            Ok(v) => panic!("unexpected {v}"),
            Err(e) => break e,
        }
    };
    assert_eq!(ending, Ending::Close(1008));
    assert!((5..=6).contains(&pongs), "pongs {pongs}");
    assert!(limited >= 3, "rate_limited errors {limited}");
    assert!(hub.metric("hub_rate_limited_total").await >= 3.0);
    assert_eq!(hub.metric("hub_policy_closes_total").await, 1.0);
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame, FrameHeader,
    };
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    let text = br#"{"type":"ping","id":"frag"}"#;
    let (a, b) = text.split_at(10);
    let first = FrameHeader {
        is_final: false,
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let last = FrameHeader {
        is_final: true,
        opcode: OpCode::Data(Data::Continue),
        ..FrameHeader::default()
    };
    c.send_message(Message::Frame(Frame::from_payload(
        first,
        a.to_vec().into(),
    )))
    .await;
    c.send_message(Message::Frame(Frame::from_payload(last, b.to_vec().into())))
        .await;
    assert_eq!(c.recv_type("pong").await["id"], "frag");
}

#[tokio::test]
async fn unknown_paths_and_bad_handshakes_are_refused() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let url = format!("ws://127.0.0.1:{}/elsewhere?userId=1", hub.port);
    assert_eq!(Client::try_connect(&url, &[]).await.err(), Some(404));
    let (status, _) = hub
        .http(
            "GET",
            "/ws?userId=1",
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            "",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        Client::try_connect(&hub.ws_url(""), &[]).await.err(),
        Some(401),
        "dev mode needs a userId"
    );
    assert_eq!(
        Client::try_connect(&hub.ws_url("userId=has%20space"), &[])
            .await
            .err(),
        Some(401)
    );
}

#[tokio::test]
async fn origins_outside_the_allowed_list_get_403() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("WEBAPP_URL", "https://app.example.com"),
            ("HUB_ALLOWED_ORIGINS", "https://admin.example.com"),
        ],
    )
    .await;
    let url = hub.ws_url("userId=1");
    let evil = Client::try_connect(&url, &[("origin", "https://evil.example.com")]).await;
    assert_eq!(evil.err(), Some(403));
    for origin in ["https://app.example.com", "https://admin.example.com"] {
        let mut ok = Client::try_connect(&url, &[("origin", origin)])
            .await
            .unwrap();
        ok.recv_type("connected").await;
    }
    let same = format!("http://127.0.0.1:{}", hub.port);
    let mut own_page = Client::try_connect(&url, &[("origin", same.as_str())])
        .await
        .unwrap();
    own_page.recv_type("connected").await;
    let mut no_origin = Client::try_connect(&url, &[]).await.unwrap();
    no_origin.recv_type("connected").await;
    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"forbidden_origin\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn without_configured_origins_only_the_hubs_own_loopback_page_may_connect() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let url = hub.ws_url("userId=1");
    // Another site, and a DNS-rebound name pointing at the hub (same port, Host matches).
    let rebound = format!("http://rebound.example:{}", hub.port);
    for origin in ["https://evil.example.com", rebound.as_str()] {
        let refused = Client::try_connect(&url, &[("origin", origin)]).await;
        assert_eq!(refused.err(), Some(403), "{origin}");
    }
    for own in [
        format!("http://127.0.0.1:{}", hub.port),
        format!("http://localhost:{}", hub.port),
    ] {
        let mut ok = Client::try_connect(&url, &[("origin", own.as_str())])
            .await
            .unwrap();
        ok.recv_type("connected").await;
    }
}

#[tokio::test]
async fn idle_clients_are_pinged_then_dropped() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_HEARTBEAT_MS", "100"),
            ("HUB_CLIENT_TIMEOUT_MS", "400"),
        ],
    )
    .await;
    // A raw socket that completes the handshake and then never sends anything (tungstenite
    // would answer pings, which counts as activity).
    let mut raw = common::RawClient::connect(hub.port, "userId=1").await;
    let frames = raw.read_frames_until_close().await;
    assert!(frames.pings >= 1, "server pings seen: {}", frames.pings);
    assert_eq!(frames.close_code, Some(1000));
}
