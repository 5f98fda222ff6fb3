//! Taking access back across instances (docs/security.md#room-access): the application removes
//! a user from a room (`DELETE /api/rooms/{room}/members/{userId}`) or adds it (`PUT`),
//! disconnects a user (`POST /api/users/{userId}/disconnect`) and revokes its tokens, on every
//! instance and through resume; per-user limits hold across all of a user's sessions.

mod common;
mod sio_common;

use common::resume::{kept, resume_token};
use common::room_hook::{Answer, Hook};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-taking-back-test-secret-of-32-bytes";

/// A token issued at `iat`, valid for ten minutes.
fn token_at(sub: &str, iat: i64) -> String {
    let claims = json!({"sub": sub, "exp": unix_now() + 600, "iat": iat});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn token(sub: &str) -> String {
    token_at(sub, unix_now())
}

async fn token_hub(redis: &Redis, env: &[(&str, &str)]) -> Hub {
    let mut all = vec![("HUB_JWT_SECRET", SECRET), ("HUB_PUBLIC_ROOMS", "team-*")];
    all.extend_from_slice(env);
    hub(redis, &all).await
}

async fn connect(hub: &Hub, query: &str) -> Client {
    let mut c = Client::connect(&hub.ws_url(query)).await;
    c.recv_type("connected").await;
    c
}

/// The next Socket.IO packet that is no ping and no `presence` event.
async fn sio_next(ws: &mut sio_common::Ws) -> String {
    loop {
        let packet = ws.text_skipping_pings().await;
        if !packet.starts_with(r#"42["presence""#) {
            return packet;
        }
    }
}

async fn api(hub: &Hub, method: &str, path: &str, body: &str) -> Value {
    let headers = [("content-type", "application/json")];
    let (status, reply) = hub.http(method, path, &headers, body).await;
    assert_eq!(status, 202, "{method} {path}: {reply}");
    serde_json::from_str(&reply).unwrap()
}

#[tokio::test]
async fn a_member_removed_mid_session_leaves_on_every_instance() {
    let redis = Redis::start().await;
    let a = token_hub(&redis, &[]).await;
    let b = token_hub(&redis, &[]).await;
    let mut ann_a = connect(&a, &format!("token={}", token("ann"))).await;
    let mut ann_b = connect(&b, &format!("token={}", token("ann"))).await;
    let mut bob = connect(&b, &format!("token={}", token("bob"))).await;
    let (mut ann_sio, _) = sio_common::Ws::open(a.port, "/socket.io/").await;
    ann_sio
        .send(&format!(r#"40{{"token":"{}"}}"#, token("ann")))
        .await;
    assert!(ann_sio.text_skipping_pings().await.starts_with("40{"));
    ann_sio.send(r#"421["join-room","team-1"]"#).await;
    assert!(ann_sio.text_skipping_pings().await.starts_with("431["));
    for c in [&mut ann_a, &mut ann_b, &mut bob] {
        c.join("team-1").await;
    }

    let reply = api(&a, "DELETE", "/api/rooms/team-1/members/ann", "").await;
    assert_eq!(reply["instances"], 2, "{reply}");
    for ann in [&mut ann_a, &mut ann_b] {
        let left = ann.recv_type("left").await;
        assert_eq!(
            left,
            json!({"type": "left", "room": "team-1", "reason": "removed"})
        );
    }
    let left = sio_next(&mut ann_sio).await;
    assert_eq!(
        left,
        r#"42["left",{"reason":"removed","room":"team-1","type":"left"}]"#
    );

    bob.send(json!({"type": "chat-message", "room": "team-1", "message": "hi"}))
        .await;
    assert_eq!(bob.recv_type("chat-message").await["data"]["message"], "hi");
    redis
        .publish("user:notifications:ann", &notification("ann", "next"))
        .await;
    for ann in [&mut ann_a, &mut ann_b] {
        let next = ann.recv().await;
        assert_eq!(
            next["type"], "notification",
            "no message of the room: {next}"
        );
        ann.send(json!({"type": "chat-message", "room": "team-1", "message": "x"}))
            .await;
        ann.expect_error("not_in_room").await;
    }
    assert_eq!(a.metric("hub_room_removals_total").await, 2.0);
    assert_eq!(b.metric("hub_room_removals_total").await, 1.0);

    // `PUT` puts the user back, as if it had joined (no rule needs to grant it).
    api(&b, "PUT", "/api/rooms/private-9/members/ann", "").await;
    for ann in [&mut ann_a, &mut ann_b] {
        let joined = ann.recv_type("joined").await;
        assert_eq!(joined["room"], "private-9", "{joined}");
    }
    let next = sio_next(&mut ann_sio).await;
    assert!(
        next.starts_with(r#"42["notification""#),
        "no message of the room: {next}"
    );
    let event = sio_next(&mut ann_sio).await;
    assert!(event.starts_with(r#"42["joined",{"#), "{event}");
    let (status, body) = a.http("PUT", "/api/rooms/a%20b/members/ann", &[], "").await;
    assert_eq!(status, 400, "{body}");
}

/// A removal also drops the hook's cached answers for the pair, on every instance: on the one
/// that cached it while the user was connected there and is no more.
#[tokio::test]
async fn a_removal_drops_cached_hook_answers_on_every_instance() {
    let redis = Redis::start().await;
    let hook = Hook::serve(|_| Answer::ALLOW).await;
    let env = hook.env();
    let a = token_hub(&redis, &env).await;
    let b = token_hub(&redis, &env).await;
    let mut on_b = connect(&b, &format!("token={}", token("ann"))).await;
    on_b.join("hooked").await;
    on_b.close().await;
    let mut on_a = connect(&a, &format!("token={}", token("ann"))).await;
    on_a.join("hooked").await;
    assert_eq!(hook.count("hooked", "join"), 2);

    api(&a, "DELETE", "/api/rooms/hooked/members/ann", "").await;
    on_a.recv_type("left").await;
    on_a.join("hooked").await;
    assert_eq!(
        hook.count("hooked", "join"),
        3,
        "asked again on this instance"
    );
    let mut on_b = connect(&b, &format!("token={}", token("ann"))).await;
    on_b.join("hooked").await;
    assert_eq!(hook.count("hooked", "join"), 4, "and on the other one");
}

#[tokio::test]
async fn disconnect_with_revocation_closes_everywhere_and_refuses_old_tokens_and_resumes() {
    let redis = Redis::start().await;
    let a = token_hub(&redis, &[]).await;
    let b = token_hub(&redis, &[]).await;
    let old = token_at("ann", unix_now() - 5);
    // A resumable session whose connection drops: kept in Redis for resume.
    let mut dropped = Client::connect(&a.ws_url(&format!("token={old}&resume=true"))).await;
    let pid = resume_token(&mut dropped).await;
    drop(dropped);
    kept(&redis, &pid).await;
    let mut on_a = connect(&a, &format!("token={old}")).await;
    let mut on_b = connect(&b, &format!("token={old}")).await;
    let (mut on_sio, _) = sio_common::Ws::open(b.port, "/socket.io/").await;
    on_sio.send(&format!(r#"40{{"token":"{old}"}}"#)).await;
    assert!(on_sio.text_skipping_pings().await.starts_with("40{"));

    let body = r#"{"revokeTokens": true}"#;
    let reply = api(&b, "POST", "/api/users/ann/disconnect", body).await;
    assert_eq!(
        (
            &reply["instances"],
            &reply["revoked"],
            &reply["resumeRecords"]
        ),
        (&json!(2), &json!(true), &json!(1)),
        "{reply}"
    );
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.next().await.unwrap_err(), Ending::Close(4003));
    }
    assert_eq!(on_sio.text_skipping_pings().await, "41");
    assert!(
        !common::resume::record_exists(&redis, &pid).await,
        "the record is gone"
    );

    // The old token is refused from now on: on connect, through resume, in an `auth` frame,
    // over Socket.IO.
    for query in [
        format!("token={old}"),
        format!("token={old}&resume={pid}&offset=0"),
    ] {
        let mut c = Client::connect(&a.ws_url(&query)).await;
        let err = c.expect_error("unauthorized").await;
        assert!(
            err["message"].as_str().unwrap().contains("revoked"),
            "{err}"
        );
        assert_eq!(c.expect_close().await, Ending::Close(4001));
    }
    let mut c = Client::connect(&b.ws_url("")).await;
    c.send(json!({"type": "auth", "token": old})).await;
    c.expect_error("unauthorized").await;
    assert_eq!(c.expect_close().await, Ending::Close(4001));
    let (mut sio, _) = sio_common::Ws::open(a.port, "/socket.io/").await;
    sio.send(&format!(r#"40{{"token":"{old}"}}"#)).await;
    let refused = sio.text_skipping_pings().await;
    assert!(refused.starts_with("44{"), "CONNECT_ERROR: {refused}");
    assert!(refused.contains("revoked"), "{refused}");

    // A token issued after the revocation connects.
    let fresh = token_at("ann", unix_now() + 1);
    connect(&b, &format!("token={fresh}")).await;
    let refused = a
        .metric(r#"hub_token_revocation_checks_total{result="refused"}"#)
        .await;
    assert_eq!(refused, 3.0);
}

#[tokio::test]
async fn a_plain_disconnect_deletes_resume_records_and_lets_the_user_back() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut dropped = Client::connect(&hub.ws_url("userId=ann&resume=true")).await;
    let pid = resume_token(&mut dropped).await;
    drop(dropped);
    kept(&redis, &pid).await;
    let reply = api(&hub, "POST", "/api/users/ann/disconnect", "").await;
    assert_eq!(
        (&reply["revoked"], &reply["resumeRecords"]),
        (&json!(false), &json!(1))
    );
    let mut back = Client::connect(&hub.ws_url(&format!("userId=ann&resume={pid}&offset=0"))).await;
    let connected = back.recv_type("connected").await;
    assert_eq!(
        connected["resumed"], false,
        "nothing to resume: {connected}"
    );
}

/// Reads `c`'s frames until its own chat message `text` came back (`true`) or an error
/// (`false`); other frames (other sessions' messages) are skipped.
async fn posted(c: &mut Client, room: &str, text: &str) -> bool {
    c.send(json!({"type": "chat-message", "room": room, "message": text}))
        .await;
    loop {
        let frame = c.recv().await;
        match frame["type"].as_str() {
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                return false;
            }
            Some("chat-message") if frame["data"]["message"] == text => return true,
            _ => {}
        }
    }
}

#[tokio::test]
async fn per_user_limits_hold_across_all_sessions_on_every_instance() {
    let redis = Redis::start().await;
    let limits = [
        ("HUB_USER_MESSAGES_PER_SEC", "1"),
        ("HUB_USER_MESSAGE_BURST", "2"),
        ("HUB_USER_JOINS_PER_SEC", "1"),
        ("HUB_USER_JOIN_BURST", "2"),
    ];
    let a = hub(&redis, &limits).await;
    let b = hub(&redis, &limits).await;
    let mut ann = [a.user("ann").await, b.user("ann").await];
    let mut bob = a.user("bob").await;
    // Two joins at once are the burst; more within the second are refused, whichever session
    // or instance asks.
    ann[0].join("r").await;
    ann[1].join("r").await;
    let mut refused = 0;
    for (i, room) in ["r2", "r3", "r4"].iter().enumerate() {
        let c = &mut ann[i % 2];
        c.send(json!({"type": "join-room", "room": room})).await;
        let reply = c.recv().await;
        if reply["type"] == "error" {
            assert_eq!(
                (&reply["code"], &reply["room"]),
                (&json!("rate_limited"), &json!(room))
            );
            refused += 1;
        }
    }
    assert!(refused >= 1, "the third join within a second is refused");
    let joins = r#"hub_user_rate_limited_total{action="join"}"#;
    assert_eq!(
        a.metric(joins).await + b.metric(joins).await,
        refused as f64
    );

    let mut refused = 0;
    for i in 0..5 {
        if !posted(&mut ann[i % 2], "r", &format!("m{i}")).await {
            refused += 1;
        }
    }
    assert!(
        refused >= 2,
        "two messages at once, then one per second: {refused}"
    );
    let chats = r#"hub_user_rate_limited_total{action="chat"}"#;
    assert_eq!(
        a.metric(chats).await + b.metric(chats).await,
        refused as f64
    );
    // Another user has a budget of its own.
    bob.join("r").await;
    assert!(posted(&mut bob, "r", "bob's").await);
}

/// A session kept for resume when its user is removed from a room comes back without it.
#[tokio::test]
async fn a_removal_reaches_sessions_kept_for_resume() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut dropped = Client::connect(&hub.ws_url("userId=ann&resume=true")).await;
    let pid = resume_token(&mut dropped).await;
    dropped.join("team-1").await;
    dropped.join("team-2").await;
    drop(dropped);
    kept(&redis, &pid).await;
    api(&hub, "DELETE", "/api/rooms/team-1/members/ann", "").await;
    let query = format!("userId=ann&resume={pid}&offset=0");
    let mut back = Client::connect(&hub.ws_url(&query)).await;
    let connected = back.recv_type("connected").await;
    assert_eq!(connected["resumed"], true, "{connected}");
    back.send(json!({"type": "chat-message", "room": "team-1", "message": "x"}))
        .await;
    back.expect_error("not_in_room").await;
    back.send(json!({"type": "chat-message", "room": "team-2", "message": "y"}))
        .await;
    assert_eq!(back.recv_type("chat-message").await["data"]["message"], "y");
}
