//! Hostile input against a real hub: garbage byte streams, invalid UTF-8, oversized
//! fragmented messages, join floods, absurd room names, deep JSON, Unicode names, connection
//! limits, paced shutdown. Every case gets its documented error or close code, the hub stays
//! healthy, other users keep receiving, and memory stays bounded.

mod common;

use std::time::Instant;

use common::{eventually, hub, notification, Client, Ending, RawClient, Redis};
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::TestRunner,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{
    protocol::frame::{
        coding::{Data, OpCode},
        Frame, FrameHeader,
    },
    Message,
};

#[tokio::test]
async fn random_byte_streams_never_hurt_the_hub() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut bystander = hub.user("bystander").await;
    let rss_before = hub.rss_kib();

    // 300 generated streams: random bytes, and random bytes after a valid frame header.
    let mut runner = TestRunner::deterministic();
    let strategy = (
        proptest::bool::ANY,
        proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
    );
    for batch in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..30 {
            let (with_header, bytes) = strategy.new_tree(&mut runner).unwrap().current();
            let port = hub.port;
            let user = format!("fuzz-{batch}-{i}");
            tasks.push(tokio::spawn(async move {
                let mut raw = RawClient::connect(port, &format!("userId={user}")).await;
                let mut stream = Vec::new();
                if with_header {
                    stream.extend_from_slice(&[0x81, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4]);
                }
                stream.extend_from_slice(&bytes);
                let _ = raw.stream.write_all(&stream).await;
                let _ = raw.stream.shutdown().await;
                // The hub must end the connection (close frame or EOF), never hang it.
                let mut sink = Vec::new();
                tokio::time::timeout(common::WAIT, raw.stream.read_to_end(&mut sink))
                    .await
                    .expect("the hub ends a garbage connection")
                    .ok();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert_eq!(hub.health().await.0, 200);
    redis
        .publish(
            "user:notifications:bystander",
            &notification("bystander", "still here"),
        )
        .await;
    assert_eq!(
        bystander.recv_type("notification").await["data"]["title"],
        "still here"
    );
    let growth = hub.rss_kib().saturating_sub(rss_before);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB after 300 garbage streams"
    );
    eventually("garbage sessions to be gone", || async {
        let (_, h) = hub.health().await;
        (h["websocket"]["connections"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut raw = RawClient::connect(hub.port, "userId=1").await;
    raw.read_frames_until_text().await; // connected
                                        // A masked text frame (zero mask) holding 0xFF 0xFE.
    raw.stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xFF, 0xFE])
        .await
        .unwrap();
    assert_eq!(raw.read_frames_until_close().await.close_code, Some(1007));
}

#[tokio::test]
async fn fragments_adding_up_past_the_limit_close_with_1009() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    let chunk = vec![b'a'; 30 * 1024];
    let first = FrameHeader {
        is_final: false,
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let more = FrameHeader {
        is_final: false,
        opcode: OpCode::Data(Data::Continue),
        ..FrameHeader::default()
    };
    c.send_message(Message::Frame(Frame::from_payload(
        first,
        chunk.clone().into(),
    )))
    .await;
    for _ in 0..2 {
        c.send_message(Message::Frame(Frame::from_payload(
            more.clone(),
            chunk.clone().into(),
        )))
        .await;
    }
    assert_eq!(c.expect_close().await, Ending::Close(1009));
}

#[tokio::test]
async fn join_floods_hit_the_room_limit_and_leave_nothing_behind() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_RATE_PER_SEC", "100000"),
            ("HUB_RATE_BURST", "100000"),
            ("HUB_ERROR_BURST", "1000"),
            ("HUB_USER_JOINS_PER_SEC", "100000"),
            ("HUB_USER_JOIN_BURST", "100000"),
        ],
    )
    .await;
    let mut c = hub.user("1").await;
    let (mut joined, mut forbidden) = (0, 0);
    for i in 0..150 {
        c.send(json!({"type": "join-room", "room": format!("flood-{i}")}))
            .await;
        let reply = c.recv().await;
        match (reply["type"].as_str(), reply["code"].as_str()) {
            (Some("joined"), _) => joined += 1,
            (Some("error"), Some("forbidden")) => forbidden += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((joined, forbidden), (100, 50));
    assert_eq!(redis.numsub("chat:room:flood-99").await, 1);
    c.close().await;
    redis.await_numsub("chat:room:flood-0", 0).await;
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("chat:room:*")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(channels.is_empty(), "left over: {channels:?}");
}

#[tokio::test]
async fn ten_thousand_room_requests_are_refused_and_closed() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let rss_before = hub.rss_kib();
    let mut c = hub.user("1").await;
    for i in 0..10_000 {
        let frame = json!({"type": "join-room", "room": format!("r{i}")}).to_string();
        if c.try_send_text(&frame).await.is_err() {
            break; // the hub closed the connection: expected
        }
    }
    let mut rate_limited = 0;
    let ending = loop {
        match c.next().await {
            Ok(v) if v["code"] == "rate_limited" => rate_limited += 1,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(ending, Ending::Close(1008));
    assert!(rate_limited >= 1);
    eventually("no rooms left", || async {
        let (_, h) = hub.health().await;
        (h["websocket"]["rooms"] == 0 && h["websocket"]["connections"] == 0).then_some(())
    })
    .await;
    let growth = hub.rss_kib().saturating_sub(rss_before);
    assert!(growth < 16 * 1024, "RSS grew {growth} KiB");
}

#[tokio::test]
async fn absurd_names_and_deep_json_get_errors() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    for room in [
        "a".repeat(65),
        "x".repeat(10_000),
        "ünïcödé".into(),
        "a/b".into(),
        "".into(),
    ] {
        c.send(json!({"type": "join-room", "room": room})).await;
        c.expect_error("invalid_room").await;
    }
    let deep = format!(
        "{{\"type\":\"ping\",\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    c.send_text(&deep).await;
    c.expect_error("bad_request").await;
    c.send(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(c.recv_type("pong").await["id"], "alive");
}

#[tokio::test]
async fn unicode_usernames_round_trip() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let name = "Zoë 日本 🎉";
    let query = format!("userId=7&name={}", urlencode(name));
    let mut c = Client::connect(&hub.ws_url(&query)).await;
    c.recv_type("connected").await;
    let joined = c.join("intl").await;
    assert_eq!(joined["members"][0]["username"], name);
    c.send(json!({"type": "chat-message", "room": "intl", "message": "héllo ✓"}))
        .await;
    let msg = c.recv_type("chat-message").await;
    assert_eq!(msg["data"]["username"], name);
    assert_eq!(msg["data"]["message"], "héllo ✓");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn connection_limits_refuse_at_the_upgrade() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_MAX_CONNECTIONS", "3"),
            ("HUB_MAX_CONNECTIONS_PER_IP", "2"),
        ],
    )
    .await;
    let a1 = hub.user("a").await;
    let _a2 = hub.user("a").await;
    let same_ip = Client::try_connect(&hub.ws_url("userId=b"), &[]).await;
    assert_eq!(same_ip.err(), Some(429), "per-IP limit");
    let mut c = Client::try_connect_from([127, 0, 0, 2], &hub.ws_url("userId=c"), &[])
        .await
        .unwrap();
    c.recv_type("connected").await;
    let fourth = hub.ws_url("userId=d");
    let refused = Client::try_connect_from([127, 0, 0, 3], &fourth, &[]).await;
    assert_eq!(refused.err(), Some(503), "total limit");
    a1.close().await;
    let mut again = eventually("a slot to free up", || async {
        Client::try_connect_from([127, 0, 0, 3], &fourth, &[])
            .await
            .ok()
    })
    .await;
    again.recv_type("connected").await;
    let refused = hub
        .metric("hub_connections_rejected_total{reason=\"connection_limit\"}")
        .await;
    assert!(refused >= 1.0);
    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"ip_limit\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn shutdown_closes_sessions_in_paced_batches() {
    let redis = Redis::start().await;
    let mut hub = hub(
        &redis,
        &[
            ("HUB_SHUTDOWN_BATCH", "2"),
            ("HUB_SHUTDOWN_BATCH_PAUSE_MS", "700"),
        ],
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(hub.user(&format!("u{i}")).await);
    }
    let start = Instant::now();
    hub.signal(libc::SIGTERM);
    let mut closes = Vec::new();
    for mut c in clients {
        closes.push(tokio::spawn(async move {
            let ending = c.expect_close().await;
            (ending, start.elapsed().as_millis())
        }));
    }
    let mut at = Vec::new();
    for t in closes {
        let (ending, ms) = t.await.unwrap();
        assert_eq!(ending, Ending::Close(1001));
        at.push(ms);
    }
    at.sort();
    assert_eq!(hub.wait_exit().await, Some(0));
    // Three batches of two: the gaps between batches are the configured pause.
    let groups = at.windows(2).filter(|w| w[1] - w[0] > 350).count() + 1;
    assert_eq!(groups, 3, "close times (ms): {at:?}");
}
