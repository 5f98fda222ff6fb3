//! Redis -> WebSocket fan-out against a real redis-server and real hub processes.
//!
//! "Does not receive" is checked with a barrier: after the event that must not arrive, a
//! marker is published to the same session; its next frame must be the marker (the hub keeps
//! per-session order across channels).

mod common;

use common::{hub, notification, Redis};
use serde_json::json;

#[tokio::test]
async fn notification_reaches_every_session_of_the_user_and_no_one_else() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut tab1 = hub.user("42").await;
    let mut tab2 = hub.user("42").await;
    let mut other = hub.user("43").await;

    let payload = json!({
        "userId": 42, "type": "info", "title": "Hi", "message": "m",
        "data": {"k": [1, 2]}, "custom": "kept"
    });
    assert_eq!(
        redis
            .publish("user:notifications:42", &payload.to_string())
            .await,
        1,
        "one hub instance subscribed"
    );
    for tab in [&mut tab1, &mut tab2] {
        let frame = tab.recv_type("notification").await;
        assert_eq!(
            frame["data"], payload,
            "payload reaches the client unchanged"
        );
    }
    redis
        .publish("user:notifications:43", &notification("43", "marker"))
        .await;
    let next = other.recv_type("notification").await;
    assert_eq!(
        next["data"]["title"], "marker",
        "user 43 got user 42's event"
    );
}

#[tokio::test]
async fn numsub_follows_the_users_sessions() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let channel = "user:notifications:7";
    assert_eq!(redis.numsub(channel).await, 0);
    let a = hub.user("7").await;
    // `connected` is only sent once the subscription is confirmed.
    assert_eq!(redis.numsub(channel).await, 1);
    let b = hub.user("7").await;
    assert_eq!(
        redis.numsub(channel).await,
        1,
        "one subscription per instance"
    );
    a.close().await;
    let (_, health) = hub.health().await;
    assert_eq!(health["websocket"]["users"], 1);
    b.close().await;
    redis.await_numsub(channel, 0).await;
    let (_, health) = hub.health().await;
    assert_eq!(health["websocket"]["users"], 0);
}

#[tokio::test]
async fn ai_results_are_routed_by_user_id() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut alice = hub.user("alice").await;
    let mut bob = hub.user("bob").await;
    let result = json!({"jobId": "j-1", "userId": "alice", "status": "success",
                        "result": {"words": 3}, "processingTime": 12});
    redis.publish("ai:results", &result.to_string()).await;
    assert_eq!(alice.recv_type("ai-result").await["data"], result);
    let marker = json!({"jobId": "j-2", "userId": "bob", "status": "error", "error": "boom"});
    redis.publish("ai:results", &marker.to_string()).await;
    assert_eq!(bob.recv_type("ai-result").await["data"]["jobId"], "j-2");
}

#[tokio::test]
async fn chat_identity_comes_from_the_session() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = common::Client::connect(&hub.ws_url("userId=1&name=Ann")).await;
    ann.recv_type("connected").await;
    let mut bob = hub.user("2").await;
    ann.join("room-1").await;
    let joined = bob.join("room-1").await;
    let members = joined["members"].as_array().unwrap();
    assert!(members.contains(&json!({"userId": 1, "username": "Ann"})));
    assert!(members.contains(&json!({"userId": 2, "username": "2"})));

    ann.send(
        json!({"type": "chat-message", "room": "room-1", "message": "Hello!",
                    "userId": "2", "username": "Mallory", "timestamp": 5}),
    )
    .await;
    for member in [&mut ann, &mut bob] {
        let msg = member.recv_type("chat-message").await["data"].clone();
        assert_eq!(msg["roomId"], "room-1");
        assert_eq!(msg["userId"], 1, "spoofed userId ignored");
        assert_eq!(msg["username"], "Ann", "spoofed username ignored");
        assert_eq!(msg["message"], "Hello!");
        assert!(msg["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }
}

#[tokio::test]
async fn leaving_stops_delivery_and_unsubscribes_the_room() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    c.join("lobby").await;
    assert_eq!(redis.numsub("chat:room:lobby").await, 1);
    c.send(json!({"type": "leave-room", "room": "lobby", "id": 3}))
        .await;
    let left = c.recv_type("left").await;
    assert_eq!(
        (left["room"].clone(), left["id"].clone()),
        (json!("lobby"), json!(3))
    );
    redis.await_numsub("chat:room:lobby", 0).await;
    let chat = json!({"roomId": "lobby", "userId": 9, "username": "x", "message": "late",
                      "timestamp": 1});
    assert_eq!(redis.publish("chat:room:lobby", &chat.to_string()).await, 0);
    redis
        .publish("user:notifications:1", &notification("1", "marker"))
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "marker");
    let (_, health) = hub.health().await;
    assert_eq!(health["websocket"]["rooms"], 0);
}

#[tokio::test]
async fn bogus_redis_payloads_are_dropped_and_counted() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("5").await;
    c.join("r").await;
    let bogus = [
        ("user:notifications:5", "not json".to_string()),
        ("user:notifications:5", json!({"userId": 5}).to_string()),
        ("user:notifications:5", notification("6", "wrong user")),
        (
            "user:notifications:5",
            "[5, \"a\", \"b\", \"c\"]".to_string(),
        ),
        (
            "ai:results",
            json!({"jobId": "j", "userId": 5, "status": "meh"}).to_string(),
        ),
        (
            "chat:room:r",
            json!({"roomId": "other", "userId": 1, "username": "u",
                                "message": "m", "timestamp": 1})
            .to_string(),
        ),
        (
            "cache:invalidate",
            json!({"reason": "no pattern"}).to_string(),
        ),
        ("analytics:events", json!({"event": "x"}).to_string()),
        (
            "user:notifications:5",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
    ];
    for (channel, payload) in &bogus {
        redis.publish(channel, payload).await;
    }
    redis
        .publish("user:notifications:5", &notification("5", "valid"))
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "valid");
    let dropped = hub
        .metric("hub_invalid_payloads_total{channel=\"user:notifications\"}")
        .await;
    assert_eq!(dropped, 5.0);
    for label in [
        "ai:results",
        "chat:room",
        "cache:invalidate",
        "analytics:events",
    ] {
        let sample = format!("hub_invalid_payloads_total{{channel=\"{label}\"}}");
        assert_eq!(hub.metric(&sample).await, 1.0, "{label}");
    }
}

#[tokio::test]
async fn two_instances_deliver_to_each_others_users_and_rooms() {
    let redis = Redis::start().await;
    let hub_a = hub(&redis, &[]).await;
    let hub_b = hub(&redis, &[]).await;
    let mut on_a = hub_a.user("100").await;
    let mut on_b = hub_b.user("200").await;
    let mut also_b = hub_b.user("100").await;
    assert_eq!(redis.numsub("user:notifications:100").await, 2);

    redis
        .publish("user:notifications:100", &notification("100", "both"))
        .await;
    assert_eq!(
        on_a.recv_type("notification").await["data"]["title"],
        "both"
    );
    assert_eq!(
        also_b.recv_type("notification").await["data"]["title"],
        "both"
    );

    on_a.join("shared").await;
    on_b.join("shared").await;
    on_a.send(json!({"type": "chat-message", "room": "shared", "message": "from A"}))
        .await;
    on_b.send(json!({"type": "chat-message", "room": "shared", "message": "from B"}))
        .await;
    for client in [&mut on_a, &mut on_b] {
        let mut got = vec![
            client.recv_type("chat-message").await["data"]["message"].clone(),
            client.recv_type("chat-message").await["data"]["message"].clone(),
        ];
        got.sort_by_key(|v| v.to_string());
        assert_eq!(
            got,
            vec![json!("from A"), json!("from B")],
            "each message once"
        );
    }
}

#[tokio::test]
async fn cache_topic_subscribers_get_invalidations() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    c.send(json!({"type": "subscribe", "topic": "cache", "id": 1}))
        .await;
    assert_eq!(c.recv_type("subscribed").await["topic"], "cache");
    let inv = json!({"pattern": "user:*", "reason": "profile update"});
    redis.publish("cache:invalidate", &inv.to_string()).await;
    assert_eq!(c.recv_type("cache-invalidate").await["data"], inv);
    c.send(json!({"type": "unsubscribe", "topic": "cache"}))
        .await;
    c.recv_type("unsubscribed").await;
    redis.publish("cache:invalidate", &inv.to_string()).await;
    redis
        .publish("user:notifications:1", &notification("1", "marker"))
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "marker");
}
