//! The notification inbox (docs/delivery.md): notifications sent through `relay_notify` or
//! `POST /api/notify` carry an `inboxId`, a client reconnecting with the last one it saw gets
//! what it missed, and what a pub/sub outage hid is delivered from the inbox afterwards.

mod common;
mod sio_common;

use common::*;
use serde_json::{json, Value};

/// A Notification for `user` titled `title`.
fn note(user: &str, title: &str) -> String {
    json!({"userId": user, "type": "info", "title": title, "message": "m"}).to_string()
}

/// `FCALL relay_notify 1 inbox:{user:notifications:USER} <payload>` as a service would call it.
async fn fcall(redis: &Redis, user: &str, payload: &str) -> redis::RedisResult<(String, i64)> {
    redis.relay_notify(user, payload).await
}

/// The next notification's title and inbox id.
async fn next_note(client: &mut Client) -> (String, String) {
    let frame = client.recv_type("notification").await;
    let data = &frame["data"];
    (
        data["title"].as_str().unwrap().to_string(),
        data["inboxId"].as_str().expect("an inboxId").to_string(),
    )
}

#[tokio::test]
async fn services_notify_through_the_inbox_and_get_its_id() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", "k3y")]).await;
    let mut ann = hub.user("ann").await;

    let (id, receivers) = fcall(&redis, "ann", &note("ann", "via fcall"))
        .await
        .unwrap();
    assert_eq!(receivers, 1, "one hub instance holds ann");
    assert_eq!(next_note(&mut ann).await, ("via fcall".into(), id));

    let (status, body) = hub
        .http(
            "POST",
            "/api/notify",
            &[
                ("authorization", "Bearer k3y"),
                ("content-type", "application/json"),
            ],
            &note("ann", "via api"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let (title, id) = next_note(&mut ann).await;
    assert_eq!(
        (title.as_str(), reply["inboxId"].as_str()),
        ("via api", Some(id.as_str()))
    );

    // Bad calls get a clear error and store nothing.
    let wrong_key = fcall(&redis, "bob", &note("ann", "x")).await.unwrap_err();
    assert!(wrong_key
        .to_string()
        .contains("KEYS[1] must be inbox:{user:notifications:ann}"));
    let no_title = fcall(
        &redis,
        "ann",
        r#"{"userId":"ann","type":"t","message":"m"}"#,
    )
    .await;
    assert!(no_title
        .unwrap_err()
        .to_string()
        .contains("title (string) is required"));
    let own_id = r#"{"inboxId":"1-1","userId":"ann","type":"t","title":"t","message":"m"}"#;
    let own_id = fcall(&redis, "ann", own_id).await.unwrap_err();
    assert!(own_id.to_string().contains("inboxId is set by the inbox"));
    let bad_user = fcall(&redis, "a b", &note("a b", "x")).await.unwrap_err();
    assert!(bad_user.to_string().contains("userId"), "{bad_user}");
    let stored: i64 = redis::cmd("XLEN")
        .arg("inbox:{user:notifications:ann}")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn a_client_reconnecting_with_since_gets_what_it_missed_once_and_in_order() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = hub.user("ann").await;
    fcall(&redis, "ann", &note("ann", "seen")).await.unwrap();
    let (_, seen) = next_note(&mut ann).await;
    ann.close().await;

    for i in 1..=3 {
        fcall(&redis, "ann", &note("ann", &format!("missed-{i}")))
            .await
            .unwrap();
    }
    let mut back = Client::connect(&hub.ws_url(&format!("userId=ann&since={seen}"))).await;
    let connected = back.recv_type("connected").await;
    assert_eq!(connected["recovered"], true);
    for i in 1..=3 {
        assert_eq!(next_note(&mut back).await.0, format!("missed-{i}"));
    }
    fcall(&redis, "ann", &note("ann", "live")).await.unwrap();
    assert_eq!(next_note(&mut back).await.0, "live", "nothing twice");
    assert_eq!(hub.metric("hub_notifications_replayed_total").await, 3.0);

    // A bad `since` is refused before the upgrade.
    let refused = Client::try_connect(&hub.ws_url("userId=ann&since=yesterday"), &[]).await;
    assert_eq!(refused.err(), Some(400));
}

#[tokio::test]
async fn a_gap_longer_than_the_inbox_says_recovered_false() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_INBOX_MAXLEN", "2")]).await;
    let mut ann = hub.user("ann").await;
    fcall(&redis, "ann", &note("ann", "seen")).await.unwrap();
    let (_, seen) = next_note(&mut ann).await;
    ann.close().await;

    for i in 1..=4 {
        fcall(&redis, "ann", &note("ann", &format!("missed-{i}")))
            .await
            .unwrap();
    }
    let mut back = Client::connect(&hub.ws_url(&format!("userId=ann&since={seen}"))).await;
    assert_eq!(back.recv_type("connected").await["recovered"], false);
    assert_eq!(
        next_note(&mut back).await.0,
        "missed-3",
        "what the inbox still holds"
    );
    assert_eq!(next_note(&mut back).await.0, "missed-4");
}

/// Notifications sent through the inbox while the hub cannot subscribe (its pub/sub
/// connection cut, SUBSCRIBE refused) reach the user once it can, from the inbox; a plain
/// PUBLISH in the same window is lost, as documented.
#[tokio::test]
async fn inbox_notifications_missed_during_a_pubsub_outage_are_delivered_afterwards() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    // No notification before the outage: the gap starts when the user was subscribed.
    let mut ann = hub.user("ann").await;

    redis.cut_pubsub().await;
    eventually("the hub to notice", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
    redis
        .publish("user:notifications:ann", &note("ann", "plain publish"))
        .await;
    for i in 1..=3 {
        fcall(&redis, "ann", &note("ann", &format!("gap-{i}")))
            .await
            .unwrap();
    }
    redis.allow_subscribe().await;

    for i in 1..=3 {
        assert_eq!(next_note(&mut ann).await.0, format!("gap-{i}"));
    }
    fcall(&redis, "ann", &note("ann", "after")).await.unwrap();
    assert_eq!(next_note(&mut ann).await.0, "after", "nothing twice");
    assert_eq!(hub.metric("hub_notifications_gap_filled_total").await, 3.0);
}

/// A restarted Redis without persistence has lost the function: the hub loads it again.
#[tokio::test]
async fn the_function_is_loaded_again_after_redis_restarts() {
    let mut redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = hub.user("ann").await;
    redis.kill();
    redis.restart().await;
    eventually("the hub to load relay_notify again", || async {
        fcall(&redis, "ann", &note("ann", "after restart"))
            .await
            .ok()
    })
    .await;
    assert_eq!(next_note(&mut ann).await.0, "after restart");
}

/// Socket.IO clients pass `since` in their CONNECT auth, like `?since=` on `/ws`.
#[tokio::test]
async fn socketio_clients_reconnect_with_since_in_their_auth() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (seen, _) = fcall(&redis, "ann", &note("ann", "seen")).await.unwrap();
    fcall(&redis, "ann", &note("ann", "missed")).await.unwrap();

    let (mut ws, _) = sio_common::Ws::open(hub.port, "/socket.io/").await;
    ws.send(&format!(r#"40{{"userId":"ann","since":"{seen}"}}"#))
        .await;
    assert!(ws.text().await.starts_with("40{"), "CONNECT accepted");
    let event: Value = serde_json::from_str(&ws.text().await[2..]).unwrap();
    assert_eq!(event[0], "notification");
    assert_eq!(event[1]["title"], "missed");

    let (mut bad, _) = sio_common::Ws::open(hub.port, "/socket.io/").await;
    bad.send(r#"40{"userId":"ann","since":"soon"}"#).await;
    let refused: Value = serde_json::from_str(&bad.text().await[2..]).unwrap();
    assert_eq!(refused["data"]["code"], "bad_request", "{refused}");
}

/// A client that authenticates with its first frame passes `since` in that `auth` frame.
#[tokio::test]
async fn the_auth_frame_carries_since() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let secret = "an-inbox-test-secret-of-32-bytes-or-more";
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", secret)]).await;
    let (seen, _) = fcall(&redis, "7", &note("7", "seen")).await.unwrap();
    fcall(&redis, "7", &note("7", "missed")).await.unwrap();

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = encode(
        &Header::default(),
        &json!({"sub": "7", "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut client = Client::connect(&hub.ws_url("")).await;
    client
        .send(json!({"type": "auth", "token": token, "since": seen}))
        .await;
    assert_eq!(client.recv_type("connected").await["recovered"], true);
    assert_eq!(next_note(&mut client).await.0, "missed");
}
