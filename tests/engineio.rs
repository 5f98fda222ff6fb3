//! Engine.IO v4 against the compliance server (`sio-compliance`), over raw HTTP requests and
//! WebSocket frames: handshake, the protocol's error responses, long-polling payloads,
//! heartbeat, close, upgrade, `maxPayload` and slow consumers. The cases follow the official
//! `engine.io-protocol` test suite, plus the edge cases it leaves out.

mod common;
mod sio_common;

use std::time::{Duration, Instant};

use serde_json::json;
use sio_common::{http, Compliance, Frame, Polling, Ws};

const ECHO: &str = "/engine.io/";

fn echo(server: &Compliance) -> Polling {
    Polling {
        port: server.port,
        path: ECHO,
    }
}

/// Opens a polling session on the echo app and starts its upgrade: a WebSocket for the same
/// `sid` that answered the probe. Returns the session, its sid, the WebSocket URL and socket.
async fn probing(server: &Compliance) -> (Polling, String, String, Ws) {
    let eio = echo(server);
    let sid = eio.sid().await;
    let url = format!("{ECHO}?EIO=4&transport=websocket&sid={sid}");
    let mut ws = Ws::connect(server.port, &url).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    (eio, sid, url, ws)
}

#[tokio::test]
async fn polling_handshake_announces_the_parameters() {
    let server = Compliance::start().await;
    for path in ["/engine.io/", "/socket.io/"] {
        let r = http(
            server.port,
            "GET",
            &format!("{path}?EIO=4&transport=polling"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let text = r.text();
        assert!(text.starts_with('0'), "{text}");
        let open: serde_json::Value = serde_json::from_str(&text[1..]).unwrap();
        let mut keys: Vec<&str> = open
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "maxPayload",
                "pingInterval",
                "pingTimeout",
                "sid",
                "upgrades"
            ]
        );
        assert!(open["sid"].as_str().is_some_and(|s| s.len() >= 16));
        assert_eq!(open["upgrades"], json!(["websocket"]));
        assert_eq!(open["pingInterval"], 300);
        assert_eq!(open["pingTimeout"], 200);
        assert_eq!(open["maxPayload"], 1_000_000);
    }
}

#[tokio::test]
async fn bad_requests_get_the_protocol_error_codes() {
    let server = Compliance::start().await;
    let port = server.port;
    let get =
        |q: &'static str| async move { http(port, "GET", &format!("{ECHO}?{q}"), &[], b"").await };
    // 5: unsupported protocol version (missing, not a number, or 3)
    for q in [
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=3&transport=polling",
    ] {
        get(q).await.assert_error(400, 5);
    }
    // 0: unknown transport
    for q in ["EIO=4", "EIO=4&transport=abc"] {
        get(q).await.assert_error(400, 0);
    }
    let r = get("EIO=4").await;
    assert_eq!(r.json(), json!({"code": 0, "message": "Transport unknown"}));
    // 2: a handshake that is not a GET
    for method in ["POST", "PUT"] {
        http(
            port,
            method,
            &format!("{ECHO}?EIO=4&transport=polling"),
            &[],
            b"",
        )
        .await
        .assert_error(400, 2);
    }
    // 1: unknown session, for GET and POST
    let bogus = format!("{ECHO}?EIO=4&transport=polling&sid=01234567890123456789");
    let r = http(port, "GET", &bogus, &[], b"").await;
    assert_eq!(
        r.json(),
        json!({"code": 1, "message": "Session ID unknown"})
    );
    http(port, "POST", &bogus, &[], b"4x")
        .await
        .assert_error(400, 1);
    // 3: the WebSocket transport without an upgrade
    get("EIO=4&transport=websocket").await.assert_error(400, 3);

    // The same checks on WebSocket upgrades.
    for (q, code) in [
        ("transport=websocket", 5),
        ("EIO=abc&transport=websocket", 5),
        ("EIO=4", 0),
        ("EIO=4&transport=abc", 0),
        ("EIO=4&transport=websocket&sid=01234567890123456789", 1),
    ] {
        let (status, body) = Ws::try_connect(port, &format!("{ECHO}?{q}"), &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{q}: upgrade accepted"));
        assert_eq!(status, 400, "{q}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], code, "{q}: {body}");
    }
    server
        .await_metric(
            "hub_engineio_requests_refused_total{code=\"unsupported_protocol_version\"}",
            5.0,
        )
        .await;
    server
        .await_metric(
            "hub_engineio_requests_refused_total{code=\"unknown_sid\"}",
            3.0,
        )
        .await;
}

#[tokio::test]
async fn polling_carries_text_and_binary_packets() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    for body in [
        "4hello",
        "4test1\x1e4test2\x1e4test3",
        "4hello\x1ebAQIDBA==",
        "4\x1e4ünïcödé",
    ] {
        eio.post_ok(&sid, body.as_bytes()).await;
        let r = eio.get(&sid).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body);
    }
}

#[tokio::test]
async fn an_invalid_packet_closes_the_polling_session() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    for bad in [
        &b"abc"[..],
        b"4ok\x1e",
        b"bnot-base64!",
        b"0{}",
        &[b'4', 0xff],
    ] {
        let sid = eio.sid().await;
        eio.post(&sid, bad).await.assert_error(400, 3);
        eio.get(&sid).await.assert_error(400, 1);
    }
    server.await_closed("parse_error", 5.0).await;
}

#[tokio::test]
async fn a_duplicate_poll_closes_the_session() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    let first = eio.start_get(&sid).await;
    let second = eio.start_get(&sid).await;
    let (a, b) = tokio::join!(first.response(), second.response());
    // One of them was parked and gets the close packet; the other is refused.
    let mut outcomes = [(a.status, a.text()), (b.status, b.text())];
    outcomes.sort();
    assert_eq!(outcomes[0], (200, "1".to_owned()), "{outcomes:?}");
    assert_eq!(outcomes[1].0, 400, "{outcomes:?}");
    eio.get(&sid).await.assert_error(400, 1);
    server.await_closed("overlap", 1.0).await;
}

#[tokio::test]
async fn polling_heartbeat_pings_after_one_interval_and_pongs_keep_it_alive() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let opened = Instant::now();
    let sid = eio.sid().await;
    for _ in 0..3 {
        assert_eq!(eio.get_packets(&sid).await, ["2"]);
        eio.post_ok(&sid, b"3").await;
    }
    // The first ping came one pingInterval after the open (a lower bound: delays only add).
    assert!(opened.elapsed() >= Duration::from_millis(3 * 300));
    eio.post_ok(&sid, b"4still-open").await;
    assert_eq!(eio.get_packets(&sid).await, ["4still-open"]);
}

#[tokio::test]
async fn a_missing_pong_closes_the_polling_session() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    assert_eq!(eio.get_packets(&sid).await, ["2"]);
    // No pong: the next poll is parked until the timeout ends it with a close packet (or,
    // if it arrives after the timeout, is refused).
    let r = eio.get(&sid).await;
    r.assert_parked_or_refused("1");
    eio.get(&sid).await.assert_error(400, 1);
    server.await_closed("ping_timeout", 1.0).await;
}

#[tokio::test]
async fn a_poll_at_ping_interval_plus_timeout_finds_the_session_closed() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    // As the official suite: poll once `pingInterval + pingTimeout` have passed since the
    // open packet arrived, never having answered the ping. The deadline counts from before
    // the open packet was written, and the poll checks it itself, so no timer latency can
    // let the poll through. Sixteen sessions opened a few ms apart (so that they meet the
    // server's timers at different phases): a server that loses this race now and then loses
    // it here.
    let polls = (0..16u64).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(3 * i)).await;
        let sid = eio.sid().await;
        tokio::time::sleep(Duration::from_millis(300 + 200)).await;
        eio.get(&sid).await
    });
    for r in futures_util::future::join_all(polls).await {
        r.assert_error(400, 1);
    }
    server.await_closed("ping_timeout", 16.0).await;
}

#[tokio::test]
async fn a_poll_right_after_the_client_closed_gets_the_noop() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    // The official suite sends a poll and the close together; here the close surely arrives
    // first. The poll still gets the noop it would have got parked, then the session is gone.
    eio.post_ok(&sid, b"1").await;
    let r = eio.get(&sid).await;
    assert_eq!((r.status, r.text().as_str()), (200, "6"));
    eio.get(&sid).await.assert_error(400, 1);
    eio.post(&sid, b"4late").await.assert_error(400, 1);
    server.await_closed("client_close", 1.0).await;
}

#[tokio::test]
async fn a_second_websocket_of_an_upgrading_or_upgraded_session_is_closed_after_its_handshake() {
    let server = Compliance::start().await;
    let (_, _, url, mut ws) = probing(&server).await;
    // While the first one probes: the handshake completes (101), then a close frame.
    let mut extra = Ws::connect(server.port, &url).await;
    assert_eq!(extra.closed().await, Some(1000));
    ws.send("5").await;
    // After the upgrade, the same (as the reference server, and as the official suite wants).
    let mut extra = Ws::connect(server.port, &url).await;
    assert_eq!(extra.closed().await, Some(1000));
    ws.send("4hello").await;
    assert_eq!(ws.text_skipping_pings().await, "4hello");
}

#[tokio::test]
async fn a_close_packet_ends_the_polling_session() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    let poll = eio.start_get(&sid).await;
    eio.post_ok(&sid, b"1").await;
    let r = poll.response().await;
    // Parked before the close or arriving just after it, the poll gets a noop.
    assert_eq!((r.status, r.text().as_str()), (200, "6"));
    eio.get(&sid).await.assert_error(400, 1);
    server.await_closed("client_close", 1.0).await;
}

#[tokio::test]
async fn websocket_session_echoes_text_and_binary_and_pings() {
    let server = Compliance::start().await;
    let (mut ws, open) = Ws::open(server.port, ECHO).await;
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 1_000_000);
    ws.send("4hello").await;
    assert_eq!(ws.next_skipping_pings().await, Frame::Text("4hello".into()));
    ws.send_binary(&[1, 2, 3, 4]).await;
    assert_eq!(
        ws.next_skipping_pings().await,
        Frame::Binary(vec![1, 2, 3, 4])
    );
    for _ in 0..3 {
        assert_eq!(ws.text().await, "2");
        ws.send("3").await;
    }
}

#[tokio::test]
async fn websocket_missing_pong_closes() {
    let server = Compliance::start().await;
    let (mut ws, _) = Ws::open(server.port, ECHO).await;
    assert_eq!(ws.text().await, "2");
    // Not answered: the server sends its close packet, then closes the WebSocket.
    assert_eq!(ws.next().await, Frame::Text("1".into()));
    assert_eq!(ws.closed().await, Some(1000));
    server.await_closed("ping_timeout", 1.0).await;
}

#[tokio::test]
async fn websocket_invalid_packet_or_close_packet_closes() {
    let server = Compliance::start().await;
    let (mut ws, _) = Ws::open(server.port, ECHO).await;
    ws.send("abc").await;
    assert_eq!(ws.closed().await, Some(1008));
    let (mut ws, _) = Ws::open(server.port, ECHO).await;
    ws.send("1").await;
    assert_eq!(ws.closed().await, Some(1000));
    // A v4 client never pings: a ping from it is refused too.
    let (mut ws, _) = Ws::open(server.port, ECHO).await;
    ws.send("2").await;
    assert_eq!(ws.closed().await, Some(1008));
    server.await_closed("parse_error", 2.0).await;
    server.await_closed("client_close", 1.0).await;
}

#[tokio::test]
async fn upgrade_moves_the_session_to_websocket_and_refuses_polling_after() {
    let server = Compliance::start().await;
    let (eio, sid, url, mut ws) = probing(&server).await;
    // While upgrading, polls end at once with a noop; what is sent meanwhile waits.
    assert_eq!(eio.get_packets(&sid).await, ["6"]);
    eio.post_ok(&sid, b"4sent-while-upgrading").await;
    ws.send("5").await;
    assert_eq!(ws.text_skipping_pings().await, "4sent-while-upgrading");
    ws.send("4hello").await;
    assert_eq!(ws.text_skipping_pings().await, "4hello");
    ws.send_binary(&[9, 8, 7]).await;
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![9, 8, 7]));
    // Upgrade then polling: refused (transport mismatch), and the session lives on.
    eio.get(&sid).await.assert_error(400, 3);
    eio.post(&sid, b"4x").await.assert_error(400, 3);
    // A second WebSocket with the same sid gets its handshake, then is closed.
    let mut extra = Ws::connect(server.port, &url).await;
    assert_eq!(extra.closed().await, Some(1000));
    ws.send("4after").await;
    assert_eq!(ws.text_skipping_pings().await, "4after");
    server
        .await_metric("hub_engineio_upgrades_total", 1.0)
        .await;
}

#[tokio::test]
async fn upgrade_flushes_a_pending_poll_and_quick_probe_then_upgrade_works() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    let mut ws = Ws::connect(
        server.port,
        &format!("{ECHO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    // As the official suite does: probe and upgrade without waiting, then poll.
    ws.send("2probe").await;
    ws.send("5").await;
    assert_eq!(ws.text().await, "3probe");
    ws.send("4hello").await;
    assert_eq!(ws.text_skipping_pings().await, "4hello");
    eio.get(&sid).await.assert_error(400, 3);
}

#[tokio::test]
async fn a_bad_probe_ends_the_upgrade_but_not_the_session() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    let mut ws = Ws::connect(
        server.port,
        &format!("{ECHO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    ws.send("4not-a-probe").await;
    assert!(matches!(ws.next().await, Frame::Closed(_)));
    eio.post_ok(&sid, b"4still-polling").await;
    assert_eq!(eio.get_skipping_pings(&sid, 1).await, ["4still-polling"]);
}

#[tokio::test]
async fn max_payload_is_enforced_on_both_transports() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    let mut big = b"4".to_vec();
    big.resize(1_000_001, b'x');
    let r = eio.post(&sid, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    eio.get(&sid).await.assert_error(400, 1);
    // Exactly maxPayload is fine.
    let sid = eio.sid().await;
    eio.post_ok(&sid, &big[..1_000_000]).await;
    let echoed = eio.get_skipping_pings(&sid, 1).await;
    assert_eq!(echoed[0].len(), 1_000_000);

    let (mut ws, _) = Ws::open(server.port, ECHO).await;
    ws.send(std::str::from_utf8(&big).unwrap()).await;
    assert_eq!(ws.closed().await, Some(1009));
    server.await_closed("payload_too_large", 2.0).await;
}

#[tokio::test]
async fn a_client_that_never_polls_is_dropped_at_the_queue_limit() {
    let server = Compliance::start().await;
    let eio = echo(&server);
    let sid = eio.sid().await;
    // ~23,000 small messages in one payload: their echoes pass the 2 MB queue limit (each
    // queued packet also costs its bookkeeping) long before anything could be polled.
    let packet = format!("4{}", "x".repeat(40));
    let body = vec![packet.as_str(); 999_000 / (packet.len() + 1)].join("\x1e");
    eio.post_ok(&sid, body.as_bytes()).await;
    eio.get(&sid).await.assert_error(400, 1);
    server
        .await_metric("hub_engineio_slow_consumer_total", 1.0)
        .await;
    server.await_closed("slow_consumer", 1.0).await;
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_dropped() {
    let server = Compliance::start().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], server.port).into())
        .await
        .unwrap();
    let mut ws = Ws::try_connect_on(
        stream,
        server.port,
        &format!("{ECHO}?EIO=4&transport=websocket"),
        &[],
    )
    .await
    .expect("upgrade");
    // Send echoes of 500 KB and never read them: the server's queue passes its limit.
    let chunk = vec![7u8; 500_000];
    for _ in 0..40 {
        if !ws.try_send_binary(&chunk).await
            || server.metric("hub_engineio_slow_consumer_total").await >= 1.0
        {
            break;
        }
    }
    server
        .await_metric("hub_engineio_slow_consumer_total", 1.0)
        .await;
    server.await_metric_eq("hub_engineio_sessions", 0.0).await;
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let server = Compliance::start().await;
    let r = http(
        server.port,
        "OPTIONS",
        "/socket.io/?EIO=4&transport=polling",
        &[
            ("origin", "http://example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
}
