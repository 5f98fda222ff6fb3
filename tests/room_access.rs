//! Who may join and post in a room (docs/security.md#room-access), over `/ws` and Socket.IO:
//! with tokens, rooms are closed until something grants them; each way in (`HUB_PUBLIC_ROOMS`,
//! the `rooms` claim, room tokens, the application's hook); each refusal, after which the
//! refused user has received nothing of the room; the hook timing out, answering garbage or
//! holding a request while other sessions go on; cached answers; read-only rooms.

mod common;
mod sio_common;

use common::room_hook::{Answer, Hook};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-room-access-test-secret-of-32-bytes";

/// A token signed with the hub's secret, valid for ten minutes, with `claims` added.
fn token(sub: &str, claims: Value) -> String {
    let mut all = json!({"sub": sub, "exp": unix_now() + 600, "iat": unix_now()});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    encode(
        &Header::default(),
        &all,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn token_hub(redis: &Redis, env: &[(&str, &str)]) -> Hub {
    let mut all = vec![("HUB_JWT_SECRET", SECRET), ("HUB_INGEST_CONNECTIONS", "1")];
    all.extend_from_slice(env);
    hub(redis, &all).await
}

/// [`token_hub`] asking `hook`, with `env` on top.
async fn hooked_hub(redis: &Redis, hook: &Hook, env: &[(&str, &str)]) -> Hub {
    let mut all = hook.env().to_vec();
    all.extend_from_slice(env);
    token_hub(redis, &all).await
}

async fn connect(hub: &Hub, token: &str) -> Client {
    let mut c = Client::connect(&hub.ws_url(&format!("token={token}"))).await;
    c.recv_type("connected").await;
    c
}

/// Sends `join-room` and returns the reply (`joined` or `error`).
async fn try_join(c: &mut Client, join: Value) -> Value {
    let mut frame = json!({"type": "join-room"});
    for (k, v) in join.as_object().unwrap() {
        frame[k] = v.clone();
    }
    c.send(frame).await;
    c.recv().await
}

/// Joins `room` and leaves it again (so that the next join is checked again).
async fn join_and_leave(c: &mut Client, room: &str) {
    c.join(room).await;
    c.send(json!({"type": "leave-room", "room": room})).await;
    c.recv_type("left").await;
}

fn refused(reply: &Value, code: &str, room: &str) {
    assert_eq!(
        (&reply["type"], &reply["code"], &reply["room"]),
        (&json!("error"), &json!(code), &json!(room)),
        "{reply}"
    );
}

/// A Socket.IO session of `token` on `hub` (WebSocket only, raw packets).
async fn sio(hub: &Hub, token: &str) -> sio_common::Ws {
    let (mut ws, _) = sio_common::Ws::open(hub.port, "/socket.io/").await;
    ws.send(&format!(r#"40{{"token":"{token}"}}"#)).await;
    let reply = ws.text_skipping_pings().await;
    assert!(reply.starts_with("40{"), "CONNECT: {reply}");
    ws
}

/// Emits `join-room` with ack `ack` and returns the ack's argument.
async fn sio_join(ws: &mut sio_common::Ws, ack: u64, room: &str) -> Value {
    ws.send(&format!(r#"42{ack}["join-room",{{"room":"{room}"}}]"#))
        .await;
    let reply = ws.text_skipping_pings().await;
    let prefix = format!("43{ack}");
    let args: Value = serde_json::from_str(reply.strip_prefix(&prefix).expect(&reply)).unwrap();
    args[0].clone()
}

#[tokio::test]
async fn with_tokens_rooms_are_closed_until_something_grants_them() {
    let redis = Redis::start().await;
    let hub = token_hub(&redis, &[]).await;
    let mut c = connect(&hub, &token("1", json!({}))).await;
    let reply = try_join(&mut c, json!({"room": "support-1", "id": 4})).await;
    refused(&reply, "forbidden", "support-1");
    assert_eq!(reply["id"], 4);
    let message = reply["message"].as_str().unwrap();
    for hint in [
        "`rooms` claim",
        "room token",
        "HUB_ROOM_AUTH_URL",
        "HUB_PUBLIC_ROOMS",
    ] {
        assert!(message.contains(hint), "says how to allow it: {message}");
    }
    let mut ws = sio(&hub, &token("1", json!({}))).await;
    let ack = sio_join(&mut ws, 1, "support-1").await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    assert_eq!(ack["error"]["room"], "support-1", "{ack}");
    // Without an ack, the refusal is an `error` event.
    ws.send(r#"42["join-room","support-1"]"#).await;
    let event = ws.text_skipping_pings().await;
    let event: Value = serde_json::from_str(&event[2..]).unwrap();
    assert_eq!(
        (&event[0], &event[1]["code"]),
        (&json!("error"), &json!("forbidden"))
    );
    let sample = r#"hub_room_joins_refused_total{reason="not_granted"}"#;
    assert_eq!(hub.metric(sample).await, 3.0);
}

#[tokio::test]
async fn each_way_in_and_each_refusal() {
    let redis = Redis::start().await;
    let hook = Hook::serve(|asked| Answer::Decide {
        allow: asked["room"].as_str().unwrap().starts_with("hooked-"),
        ttl: None,
    })
    .await;
    let hub = hooked_hub(&redis, &hook, &[("HUB_PUBLIC_ROOMS", "lobby, pub-*")]).await;
    let claims = json!({"rooms": ["support-42", "team-7-*"]});
    let mut c = connect(&hub, &token("42", claims)).await;
    for room in ["lobby", "pub-news", "support-42", "team-7-dev", "hooked-1"] {
        let reply = try_join(&mut c, json!({ "room": room })).await;
        assert_eq!(reply["type"], "joined", "{room}: {reply}");
    }
    let room_token = token("42", json!({"room": "secret-9"}));
    let reply = try_join(&mut c, json!({"room": "secret-9", "token": room_token})).await;
    assert_eq!(reply["type"], "joined", "a room token: {reply}");
    c.send(json!({"type": "leave-room", "room": "secret-9"}))
        .await;
    c.recv_type("left").await;

    let reply = try_join(&mut c, json!({"room": "support-43"})).await;
    refused(&reply, "forbidden", "support-43");
    assert!(
        reply["message"].as_str().unwrap().contains("hook"),
        "{reply}"
    );
    let others = token("7", json!({"room": "secret-9"}));
    let reply = try_join(&mut c, json!({"room": "secret-9", "token": others})).await;
    refused(&reply, "forbidden", "secret-9");
    let elsewhere = token("42", json!({"room": "secret-8"}));
    let reply = try_join(&mut c, json!({"room": "secret-9", "token": elsewhere})).await;
    refused(&reply, "forbidden", "secret-9");
    let reply = try_join(&mut c, json!({"room": "secret-9", "token": "garbage"})).await;
    refused(&reply, "forbidden", "secret-9");
    // A room token is not a connection token.
    let url = hub.ws_url(&format!("token={room_token}"));
    assert_eq!(Client::try_connect(&url, &[]).await.err(), Some(401));

    // The hook was asked only what the other ways did not grant, with the key.
    let asked = hook.asked();
    let rooms: Vec<&str> = asked
        .iter()
        .map(|a| a.body["room"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ["hooked-1", "support-43"]);
    assert_eq!(
        asked[0].body,
        json!({"userId": 42, "room": "hooked-1", "action": "join"})
    );
    assert_eq!(asked[0].authorization.as_deref(), Some("Bearer k"));
    let scrape = Scrape::of(&hub).await;
    let allowed = |by| scrape.value("hub_room_joins_allowed_total", &[("by", by)]);
    let refused_by = |reason| scrape.value("hub_room_joins_refused_total", &[("reason", reason)]);
    assert_eq!(
        [
            allowed("public"),
            allowed("claim"),
            allowed("room_token"),
            allowed("hook")
        ],
        [2.0, 2.0, 1.0, 1.0]
    );
    assert_eq!(
        [refused_by("hook_denied"), refused_by("bad_room_token")],
        [1.0, 3.0]
    );
}

/// Everything a refused user could see of a room, checked to be absent: the refusal carries
/// no history or members, no presence event tells the members, and no live message reaches
/// it (with one ingest connection a user's notification published after a room's message
/// reaches it after that message would have).
#[tokio::test]
async fn a_refused_user_receives_no_byte_of_the_room() {
    let redis = Redis::start().await;
    let hub = token_hub(&redis, &[]).await;
    let mut member = connect(&hub, &token("1", json!({"rooms": ["support-1"]})))
        .await
        .with_presence();
    member.join("support-1").await;
    member.recv_type("presence").await;
    member
        .send(json!({"type": "chat-message", "room": "support-1", "message": "private"}))
        .await;
    member.recv_type("chat-message").await;

    let mut outsider = connect(&hub, &token("2", json!({}))).await;
    let reply = try_join(&mut outsider, json!({"room": "support-1"})).await;
    refused(&reply, "forbidden", "support-1");
    assert!(reply.get("history").is_none() && reply.get("members").is_none());
    let mut outsider_sio = sio(&hub, &token("2", json!({}))).await;
    let ack = sio_join(&mut outsider_sio, 1, "support-1").await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    assert_eq!(
        ack.as_object().unwrap().len(),
        1,
        "nothing but the error: {ack}"
    );

    member
        .send(json!({"type": "chat-message", "room": "support-1", "message": "live"}))
        .await;
    member.recv_type("chat-message").await;
    redis
        .publish("user:notifications:2", &notification("2", "after"))
        .await;
    redis
        .publish("user:notifications:1", &notification("1", "after"))
        .await;
    let next = outsider.recv().await;
    assert_eq!(
        next["type"], "notification",
        "no live message first: {next}"
    );
    let next: Value = serde_json::from_str(&outsider_sio.text_skipping_pings().await[2..]).unwrap();
    assert_eq!(next[0], "notification", "no live message first: {next}");
    let next = member.recv().await;
    assert_eq!(
        next["type"], "notification",
        "no presence of the refused user: {next}"
    );
    let (_, room) = hub.http("GET", "/api/rooms/support-1", &[], "").await;
    let room: Value = serde_json::from_str(&room).unwrap();
    assert_eq!(room["memberCount"], 1, "{room}");
}

#[tokio::test]
async fn a_hook_that_times_out_or_answers_garbage_is_a_refusal() {
    let redis = Redis::start().await;
    let hook = Hook::serve(|asked| match asked["room"].as_str().unwrap() {
        "slow" => Answer::Hold,
        "garbage" => Answer::Body("<html>no</html>"),
        "wrong" => Answer::Body(r#"{"allow":"yes"}"#),
        "broken" => Answer::Status(500),
        "moved" => Answer::Status(302),
        _ => Answer::ALLOW,
    })
    .await;
    let hub = hooked_hub(&redis, &hook, &[("HUB_ROOM_AUTH_TIMEOUT_MS", "300")]).await;
    let mut c = connect(&hub, &token("5", json!({}))).await;
    for room in ["slow", "garbage", "wrong", "broken", "moved"] {
        let reply = try_join(&mut c, json!({ "room": room })).await;
        refused(&reply, "unavailable", room);
    }
    assert_eq!(
        try_join(&mut c, json!({"room": "fine"})).await["type"],
        "joined"
    );
    let scrape = Scrape::of(&hub).await;
    let answers = |result| scrape.value("hub_room_hook_answers_total", &[("result", result)]);
    assert_eq!(
        [answers("timeout"), answers("error"), answers("allow")],
        [1.0, 4.0, 1.0]
    );
    let sample = r#"hub_room_joins_refused_total{reason="hook_unavailable"}"#;
    assert_eq!(hub.metric(sample).await, 5.0);
    hook.release();
}

/// A join waiting for a slow hook holds nobody else: the waiting session still gets its
/// events, and other sessions join (by other ways, and through the hook's cache) meanwhile.
#[tokio::test]
async fn a_slow_hook_stalls_no_other_session_or_join() {
    let redis = Redis::start().await;
    let hook = Hook::serve(|asked| match asked["room"].as_str().unwrap() {
        "slow" => Answer::Hold,
        _ => Answer::ALLOW,
    })
    .await;
    let env = [
        ("HUB_PUBLIC_ROOMS", "lobby"),
        ("HUB_ROOM_AUTH_TIMEOUT_MS", "30000"),
    ];
    let hub = hooked_hub(&redis, &hook, &env).await;
    let mut other = connect(&hub, &token("2", json!({}))).await;
    join_and_leave(&mut other, "cached").await;
    let mut waiting = connect(&hub, &token("1", json!({}))).await;
    waiting
        .send(json!({"type": "join-room", "room": "slow", "id": "w"}))
        .await;
    eventually("the hook to hold the join", || async {
        (hook.count("slow", "join") == 1).then_some(())
    })
    .await;
    redis
        .publish("user:notifications:1", &notification("1", "meanwhile"))
        .await;
    assert_eq!(
        waiting.recv_type("notification").await["data"]["title"],
        "meanwhile"
    );
    other.join("lobby").await;
    other.join("cached").await;
    let mut third = connect(&hub, &token("3", json!({}))).await;
    third.join("lobby").await;
    assert_eq!(hook.count("slow", "join"), 1);
    assert_eq!(
        hook.count("cached", "join"),
        1,
        "the second join was answered from the cache"
    );
    hook.release();
    let joined = waiting.recv_type("joined").await;
    assert_eq!(
        (&joined["room"], &joined["id"]),
        (&json!("slow"), &json!("w"))
    );
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_and_posting_asks_the_hook() {
    let redis = Redis::start().await;
    let hook = Hook::serve(|asked| {
        let room = asked["room"].as_str().unwrap();
        let action = asked["action"].as_str().unwrap();
        match (room, action) {
            ("uncached", _) => Answer::Decide {
                allow: true,
                ttl: Some(0),
            },
            ("announce", "publish") => Answer::Decide {
                allow: asked["userId"] == "editor",
                ttl: None,
            },
            _ => Answer::ALLOW,
        }
    })
    .await;
    let hub = hooked_hub(&redis, &hook, &[]).await;
    let mut reader = connect(&hub, &token("reader", json!({}))).await;
    let mut editor = connect(&hub, &token("editor", json!({}))).await;
    for _ in 0..3 {
        join_and_leave(&mut reader, "cached").await;
        join_and_leave(&mut reader, "uncached").await;
    }
    assert_eq!(
        hook.count("cached", "join"),
        1,
        "cached for the default ttl"
    );
    assert_eq!(
        hook.count("uncached", "join"),
        3,
        "ttlSecs 0: asked every time"
    );

    reader.join("announce").await;
    editor.join("announce").await;
    editor
        .send(json!({"type": "chat-message", "room": "announce", "message": "news"}))
        .await;
    assert_eq!(
        reader.recv_type("chat-message").await["data"]["message"],
        "news"
    );
    reader
        .send(json!({"type": "chat-message", "room": "announce", "message": "me too", "id": 9}))
        .await;
    let reply = reader.recv().await;
    refused(&reply, "forbidden", "announce");
    assert_eq!(reply["id"], 9);
    let sample = r#"hub_room_posts_refused_total{reason="hook_denied"}"#;
    assert_eq!(hub.metric(sample).await, 1.0);
}
