//! Hub messages on a user's channel (docs/protocol.md#hub-messages): a JSON object whose first
//! key is `$hub`, published by the hub on `user:notifications:{id}`, reaches every session of
//! the user on every instance, in order with the user's notifications; services cannot send
//! one, and a malformed one is an invalid payload.

mod common;
mod sio_common;

use common::*;
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

/// `POST /api/notify` for `user`, awaited (so that what follows is published after it).
async fn notify(hub: &Hub, user: &str, title: &str) {
    let body = json!({"userId": user, "type": "info", "title": title, "message": "m"});
    let (status, reply) = hub
        .http("POST", "/api/notify", &[JSON], &body.to_string())
        .await;
    assert_eq!(status, 202, "{reply}");
}

/// The next Socket.IO packet that is not an Engine.IO ping.
async fn sio_packet(ws: &mut sio_common::Ws) -> String {
    ws.text_skipping_pings().await
}

#[tokio::test]
async fn a_disconnect_closes_every_session_of_the_user_on_every_instance_in_order() {
    let redis = Redis::start().await;
    let a = hub(&redis, &[]).await;
    let b = hub(&redis, &[]).await;
    let mut ann_a1 = a.user("ann").await;
    let mut ann_a2 = a.user("ann").await;
    let mut ann_b = b.user("ann").await;
    let mut bob = a.user("bob").await;
    let (mut ann_sio, _) = sio_common::Ws::open(b.port, "/socket.io/").await;
    ann_sio.send(r#"40{"userId":"ann"}"#).await;
    assert!(sio_packet(&mut ann_sio).await.starts_with("40{"), "CONNECT");

    notify(&b, "ann", "before").await;
    let (status, body) = b.http("POST", "/api/users/ann/disconnect", &[], "").await;
    assert_eq!(status, 202, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["instances"], 2, "both instances hold ann: {reply}");
    notify(&b, "ann", "after").await;
    notify(&b, "bob", "for bob").await;

    for ann in [&mut ann_a1, &mut ann_a2, &mut ann_b] {
        let before = ann.recv_type("notification").await;
        assert_eq!(before["data"]["title"], "before");
        assert_eq!(
            ann.next().await.unwrap_err(),
            Ending::Close(4003),
            "closed right after what came before the disconnect"
        );
    }
    let before: Value = serde_json::from_str(&sio_packet(&mut ann_sio).await[2..]).unwrap();
    assert_eq!(
        (&before[0], &before[1]["title"]),
        (&json!("notification"), &json!("before"))
    );
    assert_eq!(sio_packet(&mut ann_sio).await, "41", "a server disconnect");

    let bob_note = bob.recv_type("notification").await;
    assert_eq!(
        bob_note["data"]["title"], "for bob",
        "other users are untouched"
    );
    assert_eq!(a.metric("hub_user_disconnects_total").await, 2.0);
    assert_eq!(b.metric("hub_user_disconnects_total").await, 2.0);

    // Nobody to disconnect, a bad id, a body that is not an object.
    let (status, body) = a
        .http("POST", "/api/users/nobody/disconnect", &[], "{}")
        .await;
    assert_eq!(
        (status, body.contains("\"instances\":0")),
        (202, true),
        "{body}"
    );
    let (status, body) = a.http("POST", "/api/users/a%20b/disconnect", &[], "").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = a
        .http("POST", "/api/users/ann/disconnect", &[JSON], "[1]")
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn services_cannot_send_hub_messages_and_malformed_ones_are_invalid_payloads() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = hub.user("ann").await;

    let forged = json!({"$hub": "disconnect", "userId": "ann", "type": "t", "title": "t",
                        "message": "m"});
    let (status, body) = hub
        .http("POST", "/api/notify", &[JSON], &forged.to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("bad_request") && body.contains("$hub"),
        "{body}"
    );
    let fcall: redis::RedisResult<(String, i64)> = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg("inbox:{user:notifications:ann}")
        .arg(forged.to_string())
        .query_async(&mut redis.conn().await)
        .await;
    let err = fcall.unwrap_err().to_string();
    assert!(err.contains("$hub is reserved"), "{err}");

    let invalid = r#"hub_invalid_payloads_total{channel="user:notifications"}"#;
    for bad in [
        r#"{"$hub":"dance","userId":"ann"}"#,
        r#"{"$hub":"disconnect","userId":"bob"}"#,
        r#"{"userId":"ann","type":"t","title":"t","message":"m","$hub":"disconnect"}"#,
    ] {
        redis.publish("user:notifications:ann", bad).await;
    }
    redis
        .publish("user:notifications:ann", &notification("ann", "still here"))
        .await;
    let note = ann.recv_type("notification").await;
    assert_eq!(
        note["data"]["title"], "still here",
        "nothing closed the session"
    );
    assert_eq!(hub.metric(invalid).await, 3.0);
    assert_eq!(hub.metric("hub_user_disconnects_total").await, 0.0);
}
