//! Socket.IO v5 against the compliance server (`sio-compliance`), over raw WebSocket frames
//! and long-polling requests: namespaces and the auth payload, events and acknowledgements in
//! both directions, binary attachments, disconnects, strict decoding and the connect timeout.
//! The cases follow the official `socket.io-protocol` test suite.

mod common;
mod sio_common;

use std::time::Instant;

use serde_json::Value;
use sio_common::{Compliance, Frame, Polling, Ws};

const PH0: &str = r#"{"_placeholder":true,"num":0}"#;
const PH1: &str = r#"{"_placeholder":true,"num":1}"#;

/// A WebSocket Engine.IO session on `/socket.io/`, before any namespace.
async fn engine(server: &Compliance) -> Ws {
    Ws::open(server.port, "/socket.io/").await.0
}

/// A connection to the main namespace, past its `auth` event.
async fn connected(server: &Compliance) -> Ws {
    let mut ws = engine(server).await;
    ws.send("40").await;
    assert!(ws.text_skipping_pings().await.starts_with("40{"));
    assert_eq!(ws.text_skipping_pings().await, r#"42["auth",{}]"#);
    ws
}

fn sid_of(packet: &str, prefix: &str) -> String {
    let body: Value = serde_json::from_str(packet.strip_prefix(prefix).unwrap()).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["sid"], "{packet}");
    body["sid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn connects_to_namespaces_and_echoes_the_auth_payload() {
    let server = Compliance::start().await;
    for (connect, reply_prefix, auth) in [
        ("40", "40", r#"42["auth",{}]"#),
        (
            r#"40{"token":"123"}"#,
            "40",
            r#"42["auth",{"token":"123"}]"#,
        ),
        ("40/custom,", "40/custom,", r#"42/custom,["auth",{}]"#),
        (
            r#"40/custom,{"token":"abc"}"#,
            "40/custom,",
            r#"42/custom,["auth",{"token":"abc"}]"#,
        ),
    ] {
        let mut ws = engine(&server).await;
        ws.send(connect).await;
        let reply = ws.text_skipping_pings().await;
        let sid = sid_of(&reply, reply_prefix);
        assert!(sid.len() >= 16);
        assert_eq!(ws.text_skipping_pings().await, auth, "after {connect}");
    }
}

#[tokio::test]
async fn the_auth_event_does_not_leave_with_the_connect_reply() {
    let server = Compliance::start().await;
    for (connect, auth) in [
        ("40", r#"42["auth",{}]"#),
        ("40/custom,", r#"42/custom,["auth",{}]"#),
    ] {
        let mut ws = engine(&server).await;
        let sent = Instant::now();
        ws.send(connect).await;
        assert!(ws.text_skipping_pings().await.starts_with(connect));
        assert_eq!(ws.text_skipping_pings().await, auth);
        // A lower bound (delays only add): the event came `AUTH_DELAY` after the connect,
        // not in the reply's write, where the official suite's client would miss it.
        assert!(sent.elapsed() >= relay_hub::compliance::AUTH_DELAY);
    }
}

#[tokio::test]
async fn an_unknown_namespace_is_refused_and_the_connection_stays() {
    let server = Compliance::start().await;
    let mut ws = engine(&server).await;
    ws.send("40/random").await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws.send("40").await;
    assert!(ws.text_skipping_pings().await.starts_with("40{"));
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let server = Compliance::start().await;
    for bad in [
        "4abc",                                             // unknown packet type
        "42{}",                                             // payload not an array
        r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#, // invalid ack id
        r#"42["connect"]"#,                                 // reserved event name
        "42[]",                                             // no event name
        r#"452-["message",{"_placeholder":true,"num":5}]"#, // placeholder without attachment
        r#"45x-["message"]"#,                               // bad attachment count
        r#"42/custom,["message"]"#,                         // namespace not connected
        "43",                                               // ack without id and arguments
        r#"44{"message":"x"}"#,                             // CONNECT_ERROR from a client
        "40",                                               // CONNECT to a connected namespace
    ] {
        let mut ws = connected(&server).await;
        ws.send(bad).await;
        assert!(
            matches!(ws.closed_answering_pings().await, Some(1008)),
            "{bad} did not close with 1008"
        );
    }
    // Before any CONNECT too.
    let mut ws = engine(&server).await;
    ws.send("4abc").await;
    assert!(matches!(ws.closed_answering_pings().await, Some(1008)));
    // Binary data nobody announced.
    let mut ws = connected(&server).await;
    ws.send_binary(&[1, 2, 3]).await;
    assert!(matches!(ws.closed_answering_pings().await, Some(1008)));
    // Text while attachments are due.
    let mut ws = connected(&server).await;
    ws.send(&format!(r#"451-["message",{PH0}]"#)).await;
    ws.send(r#"42["message","x"]"#).await;
    assert!(matches!(ws.closed_answering_pings().await, Some(1008)));
    server.await_closed("protocol_error", 14.0).await;
}

#[tokio::test]
async fn disconnect_leaves_the_namespace_but_keeps_the_connection() {
    let server = Compliance::start().await;
    let mut ws = connected(&server).await;
    ws.send("41").await;
    // Still open: the next packet is the heartbeat.
    assert_eq!(ws.text().await, "2");
    ws.send("3").await;
    // Events to the namespace it left break the protocol.
    ws.send(r#"42["message","x"]"#).await;
    assert_eq!(ws.closed_answering_pings().await, Some(1008));

    let mut ws = connected(&server).await;
    ws.send("40/custom").await;
    assert!(ws.text_skipping_pings().await.starts_with("40/custom,{"));
    assert_eq!(ws.text_skipping_pings().await, r#"42/custom,["auth",{}]"#);
    ws.send("41/custom").await;
    ws.send(r#"42["message","message to main namespace",1,2]"#)
        .await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"42["message-back","message to main namespace",1,2]"#
    );
}

#[tokio::test]
async fn events_are_emitted_back() {
    let server = Compliance::start().await;
    let mut ws = connected(&server).await;
    ws.send(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    // Events on other namespaces are not echoed: `/custom` only says `auth`.
    ws.send("40/custom,").await;
    ws.text_skipping_pings().await;
    ws.text_skipping_pings().await;
    ws.send(r#"42/custom,["message","x"]"#).await;
    ws.send(r#"42["message","y"]"#).await;
    assert_eq!(ws.text_skipping_pings().await, r#"42["message-back","y"]"#);
}

#[tokio::test]
async fn binary_attachments_travel_both_ways() {
    let server = Compliance::start().await;
    let mut ws = connected(&server).await;
    ws.send(&format!(r#"452-["message",1,{PH0},{PH1}]"#)).await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        format!(r#"452-["message-back",1,{PH0},{PH1}]"#)
    );
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![4, 5, 6]));
}

#[tokio::test]
async fn acks_answer_with_the_same_arguments() {
    let server = Compliance::start().await;
    let mut ws = connected(&server).await;
    ws.send(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#)
        .await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"43456[1,"2",{"3":[false]}]"#
    );

    ws.send(&format!(r#"452-789["message-with-ack",1,{PH0},{PH1}]"#))
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        format!(r#"462-789[1,{PH0},{PH1}]"#)
    );
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![4, 5, 6]));
}

#[tokio::test]
async fn server_acks_requests_reach_the_client_and_back() {
    let server = Compliance::start().await;
    let mut ws = connected(&server).await;
    ws.send(r#"42["emit-with-ack",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"421["emit-with-ack",1,"2",{"3":[true]}]"#
    );
    ws.send(r#"431[1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"42["emit-with-ack",1,"2",{"3":[true]}]"#
    );

    let data = format!(r#"{PH0},{PH1},"test""#);
    ws.send(&format!(r#"452-["emit-with-ack",{data}]"#)).await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        format!(r#"452-2["emit-with-ack",{data}]"#)
    );
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![4, 5, 6]));
    ws.send(&format!("462-2[{data}]")).await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        format!(r#"452-["emit-with-ack",{data}]"#)
    );
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings().await, Frame::Binary(vec![4, 5, 6]));
    // An ack nobody asked for is ignored.
    ws.send(r#"43999["x"]"#).await;
    ws.send(r#"42["message","still here"]"#).await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"42["message-back","still here"]"#
    );
}

#[tokio::test]
async fn a_connection_without_a_namespace_is_closed_after_the_connect_timeout() {
    let server = Compliance::start().await;
    let mut ws = engine(&server).await;
    // Pongs keep the Engine.IO session alive; the Socket.IO connect timeout (1 s) ends it.
    assert_eq!(ws.closed_answering_pings().await, Some(1000));
    server.await_closed("connect_timeout", 1.0).await;
}

/// The connect timeout is the client's time to ask: a CONNECT still being answered when it
/// passes gets its answer, and the connection stays if that is an accept.
#[tokio::test]
async fn a_connect_answered_after_the_connect_timeout_is_not_cut_off() {
    let server = Compliance::start().await;
    let mut ws = engine(&server).await;
    ws.send(r#"40/late,{"accept":true}"#).await;
    let reply = ws.text_skipping_pings().await;
    assert!(reply.starts_with("40/late,{"), "the CONNECT reply: {reply}");
    // Still open: it connects another namespace.
    ws.send("40").await;
    assert!(ws.text_skipping_pings().await.starts_with("40{"));
    assert_eq!(ws.text_skipping_pings().await, r#"42["auth",{}]"#);
    assert_eq!(
        server
            .metric("hub_engineio_sessions_closed_total{reason=\"connect_timeout\"}")
            .await,
        0.0
    );
}

/// A CONNECT refused after the connect timeout passed leaves no namespace: the connection
/// closes then, as it would have at the timeout.
#[tokio::test]
async fn a_connect_refused_after_the_connect_timeout_closes_the_connection() {
    let server = Compliance::start().await;
    let mut ws = engine(&server).await;
    ws.send("40/late,{}").await;
    assert_eq!(
        ws.text_skipping_pings().await,
        r#"44/late,{"message":"refused late"}"#
    );
    assert_eq!(ws.closed_answering_pings().await, Some(1000));
    server.await_closed("connect_timeout", 1.0).await;
}

#[tokio::test]
async fn socketio_over_long_polling() {
    let server = Compliance::start().await;
    let sio = Polling {
        port: server.port,
        path: "/socket.io/",
    };
    let sid = sio.sid().await;
    sio.post_ok(&sid, br#"40{"token":"123"}"#).await;
    let packets = sio.get_skipping_pings(&sid, 2).await;
    sid_of(&packets[0], "40");
    assert_eq!(packets[1], r#"42["auth",{"token":"123"}]"#);
    // Binary attachments in a payload, base64 both ways.
    let body = format!("451-[\"message\",{PH0}]\x1ebAQID");
    sio.post_ok(&sid, body.as_bytes()).await;
    let packets = sio.get_skipping_pings(&sid, 2).await;
    assert_eq!(packets[0], format!(r#"451-["message-back",{PH0}]"#));
    assert_eq!(packets[1], "bAQID");
    // Several packets in one payload, answered in order.
    sio.post_ok(&sid, b"42[\"message\",1]\x1e421[\"message-with-ack\",2]")
        .await;
    let packets = sio.get_skipping_pings(&sid, 2).await;
    assert_eq!(packets, [r#"42["message-back",1]"#, "431[2]"]);
}
