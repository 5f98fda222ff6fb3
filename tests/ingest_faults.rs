//! The ingest side under the failures it exists for (docs/delivery.md): `connected` waits
//! for a subscription across outages and what is sent meanwhile is filled in; only ids the
//! hub wrote move a gap fill; writes retried after a lost reply run once.

mod common;
#[path = "common/redis_proxy.rs"]
mod redis_proxy;

use common::*;
use redis_proxy::RedisProxy;
use serde_json::json;

/// A Notification for `user` titled `title`.
fn note(user: &str, title: &str) -> String {
    json!({"userId": user, "type": "info", "title": title, "message": "m"}).to_string()
}

/// `FCALL relay_notify` as a service calls it; the inbox id.
async fn fcall(redis: &Redis, user: &str, payload: &str) -> String {
    redis
        .relay_notify(user, payload)
        .await
        .expect("relay_notify")
        .0
}

/// `ACL SETUSER default <rules>`.
async fn acl(redis: &Redis, rules: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("default");
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = cmd.query_async(&mut redis.conn().await).await.unwrap();
}

/// How many subscriptions Redis refused for a channel the ACL forbids (`ACL LOG`).
async fn channel_denials(redis: &Redis) -> i64 {
    let log: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    log.iter()
        .filter(|e| matches!(e.get("reason"), Some(redis::Value::BulkString(r)) if r == b"channel"))
        .map(|e| match e.get("count") {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        })
        .sum()
}

/// A session that registers while the hub cannot subscribe (the connection cut and rebuilt,
/// SUBSCRIBE refused) gets `connected` once it is subscribed, and an inbox notification sent
/// in that window reaches it, filled from the inbox.
#[tokio::test]
async fn a_notification_sent_while_a_new_session_waits_for_its_subscription_is_delivered() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    redis.cut_pubsub().await;
    eventually("the hub to notice", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
    let mut ann = Client::connect(&hub.ws_url("userId=ann")).await;
    // The subscriber has ann's interest (and cannot subscribe her channel).
    eventually("the hub to want ann's channel", || async {
        (hub.metric("hub_users").await == 1.0).then_some(())
    })
    .await;
    fcall(&redis, "ann", &note("ann", "in the window")).await;
    redis.allow_subscribe().await;

    let first = ann.recv().await;
    assert_eq!(first["type"], "connected", "{first}");
    let frame = ann.recv_type("notification").await;
    assert_eq!(frame["data"]["title"], "in the window");
    fcall(&redis, "ann", &note("ann", "after")).await;
    let frame = ann.recv_type("notification").await;
    assert_eq!(frame["data"]["title"], "after", "nothing twice");
}

/// With several ingest connections, `connected` also waits for the first one, which carries
/// AI results and presence: an AI result published right after `connected` is delivered,
/// although the user's own channel was subscribed (on another connection) long before.
#[tokio::test]
async fn connected_waits_for_the_connection_carrying_ai_results() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_INGEST_CONNECTIONS", "2")]).await;
    eventually("both connections to be up", || async {
        (hub.health().await.1["redis"]["connected"] == true).then_some(())
    })
    .await;
    // The fixed channels are refused (Redis drops the connection holding them); user
    // channels and the other connection's hello are not.
    acl(
        &redis,
        &["resetchannels", "&user:*", "&chat:*", "&hub:ingest"],
    )
    .await;
    eventually("the hub to notice", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
    let mut clients = Vec::new();
    for u in 0..8 {
        let user = format!("u{u}");
        clients.push((
            user.clone(),
            Client::connect(&hub.ws_url(&format!("userId={user}"))).await,
        ));
    }
    // A user whose channel the second connection subscribed.
    let users: Vec<String> = clients.iter().map(|(user, _)| user.clone()).collect();
    let i = eventually(
        "a user on the second connection to be subscribed",
        || async {
            for (i, user) in users.iter().enumerate() {
                if redis.numsub(&format!("user:notifications:{user}")).await == 1 {
                    return Some(i);
                }
            }
            None
        },
    )
    .await;
    let (user, mut client) = clients.swap_remove(i);
    // Its `connected` must not come while the first connection is still refused: two more
    // refusals prove the hub went on without subscribing the fixed channels.
    let refused = channel_denials(&redis).await;
    tokio::select! {
        frame = client.recv() => panic!(
            "{user} got {frame} while the fixed channels were not subscribed"
        ),
        _ = eventually("two more refusals", || async {
            (channel_denials(&redis).await >= refused + 2).then_some(())
        }) => {}
    }
    acl(&redis, &["allchannels"]).await;
    let first = client.recv().await;
    assert_eq!(first["type"], "connected", "{first}");
    let result = json!({"jobId": "j1", "userId": user, "status": "success", "result": {},
                        "processingTime": 1});
    redis.publish("ai:results", &result.to_string()).await;
    let frame = client.recv_type("ai-result").await;
    assert_eq!(frame["data"]["jobId"], "j1");
}

/// Cuts the hub's pub/sub off until `gap` has run, then lets it subscribe again.
async fn outage<F: std::future::Future<Output = ()>>(redis: &Redis, hub: &Hub, gap: F) {
    redis.cut_pubsub().await;
    eventually("the hub to notice", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
    gap.await;
    redis.allow_subscribe().await;
}

/// A service's plain `PUBLISH` carrying a stream-shaped `inboxId` (far in the future, then
/// long past) is delivered, but does not move where the next gap fill starts: what an outage
/// hid right after it is delivered, once, and nothing older comes again.
#[tokio::test]
async fn inbox_ids_from_services_do_not_move_the_gap_fill() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = hub.user("ann").await;
    let title = |frame: serde_json::Value| frame["data"]["title"].as_str().unwrap().to_string();
    fcall(&redis, "ann", &note("ann", "first")).await;
    assert_eq!(title(ann.recv_type("notification").await), "first");
    for (forged, missed) in [("99999999999999-0", "hidden?"), ("1-0", "again?")] {
        let plain = json!({"inboxId": forged, "userId": "ann", "type": "info",
                           "title": forged, "message": "m"});
        redis
            .publish("user:notifications:ann", &plain.to_string())
            .await;
        let frame = ann.recv_type("notification").await;
        assert_eq!(frame["data"]["inboxId"], forged, "delivered as published");
        outage(&redis, &hub, async {
            fcall(&redis, "ann", &note("ann", missed)).await;
        })
        .await;
        assert_eq!(title(ann.recv_type("notification").await), missed);
    }
    fcall(&redis, "ann", &note("ann", "live")).await;
    assert_eq!(
        title(ann.recv_type("notification").await),
        "live",
        "nothing twice"
    );
}

/// The same for chat: a service's stream-shaped `id` does not move the room's gap fill.
#[tokio::test]
async fn chat_ids_from_services_do_not_move_the_gap_fill() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ann = hub.user("ann").await;
    ann.join("r").await;
    let text = |frame: serde_json::Value| frame["data"]["message"].as_str().unwrap().to_string();
    let post = |message: &str| {
        let body = json!({"userId": "svc", "username": "svc", "message": message});
        let hub = &hub;
        async move {
            let (status, reply) = hub
                .http(
                    "POST",
                    "/api/chat/r",
                    &[("content-type", "application/json")],
                    &body.to_string(),
                )
                .await;
            assert_eq!(status, 202, "{reply}");
        }
    };
    let plain = json!({"id": "99999999999999-0", "roomId": "r", "userId": "svc",
                       "username": "svc", "message": "future", "timestamp": 1});
    redis.publish("chat:room:r", &plain.to_string()).await;
    assert_eq!(text(ann.recv_type("chat-message").await), "future");
    outage(&redis, &hub, post("in the gap")).await;
    assert_eq!(text(ann.recv_type("chat-message").await), "in the gap");
    post("live").await;
    assert_eq!(
        text(ann.recv_type("chat-message").await),
        "live",
        "nothing twice"
    );
}

/// `XLEN key`.
async fn xlen(redis: &Redis, key: &str) -> i64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

/// Posts `body` to the hub's API at `path`; returns the reply's JSON (after a 202).
async fn post(hub: &Hub, path: &str, body: serde_json::Value) -> serde_json::Value {
    let headers = [("content-type", "application/json")];
    let (status, reply) = hub.http("POST", path, &headers, &body.to_string()).await;
    assert_eq!(status, 202, "{reply}");
    serde_json::from_str(&reply).unwrap()
}

/// Drops the hub's command connection right after Redis ran the write carrying `key` (its
/// reply never arrives), while `write` is under way; returns what `write` returned.
async fn drop_after_the_write<T>(
    redis: &Redis,
    proxy: &RedisProxy,
    key: &str,
    write: impl std::future::Future<Output = T>,
) -> T {
    proxy.swallow_reply_to(key);
    let cut = async {
        proxy.swallowing().await;
        eventually("the write to have run", || async {
            (xlen(redis, key).await == 2).then_some(())
        })
        .await;
        proxy.cut();
    };
    let (out, ()) = tokio::join!(write, cut);
    out
}

/// A notification whose reply from Redis was lost (the connection dropped after
/// `relay_notify` ran) is retried without running twice: one inbox entry, one delivery, and
/// the API answers with its id.
#[tokio::test]
async fn a_notify_retried_after_its_reply_was_lost_is_stored_once() {
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let hub = hub_with_url(&proxy.url(), &[]).await;
    let mut ann = hub.user("ann").await;
    let title = |frame: serde_json::Value| frame["data"]["title"].as_str().unwrap().to_string();
    let notify = |t: &str| {
        post(
            &hub,
            "/api/notify",
            serde_json::from_str(&note("ann", t)).unwrap(),
        )
    };
    notify("first").await;
    assert_eq!(title(ann.recv_type("notification").await), "first");

    let key = "inbox:{user:notifications:ann}";
    let reply = drop_after_the_write(&redis, &proxy, key, notify("once")).await;
    let frame = ann.recv_type("notification").await;
    assert_eq!(frame["data"]["title"], "once");
    assert_eq!(
        frame["data"]["inboxId"], reply["inboxId"],
        "the first run's id"
    );
    notify("after").await;
    assert_eq!(
        title(ann.recv_type("notification").await),
        "after",
        "nothing twice"
    );
    assert_eq!(xlen(&redis, key).await, 3);
}

/// The same for a chat message appended to a room's history.
#[tokio::test]
async fn a_chat_append_retried_after_its_reply_was_lost_is_stored_once() {
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let hub = hub_with_url(&proxy.url(), &[]).await;
    let mut ann = hub.user("ann").await;
    ann.join("r").await;
    let text = |frame: serde_json::Value| frame["data"]["message"].as_str().unwrap().to_string();
    let say = |m: &str| {
        let body = json!({"userId": "svc", "username": "svc", "message": m});
        post(&hub, "/api/chat/r", body)
    };
    say("first").await;
    assert_eq!(text(ann.recv_type("chat-message").await), "first");

    let key = "chat:history:r";
    let reply = drop_after_the_write(&redis, &proxy, key, say("once")).await;
    let frame = ann.recv_type("chat-message").await;
    assert_eq!(frame["data"]["message"], "once");
    assert_eq!(frame["data"]["id"], reply["id"], "the first run's id");
    say("after").await;
    assert_eq!(
        text(ann.recv_type("chat-message").await),
        "after",
        "nothing twice"
    );
    assert_eq!(xlen(&redis, key).await, 3);
}

/// Gap reads after an outage run at most `GAP_READS` (32) at a time, and one that takes longer
/// than the hub's 3 s Redis timeout is tried again instead of losing its gap: with every
/// user's read held 3.5 s, each user still gets the notification the outage hid.
#[tokio::test]
async fn slow_gap_reads_are_bounded_and_retried() {
    const USERS: usize = 40;
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let hub = hub_with_url(&proxy.url(), &[]).await;
    let mut clients = Vec::new();
    for u in 0..USERS {
        clients.push(hub.user(&format!("u{u}")).await);
    }
    outage(&redis, &hub, async {
        for u in 0..USERS {
            let user = format!("u{u}");
            fcall(&redis, &user, &note(&user, "in the gap")).await;
        }
        // Redis answers the first reads (the inbox's gap is read with `FCALL
        // relay_inbox_range`) only after the hub gave up waiting for them.
        proxy.hold("FCALL", 32, std::time::Duration::from_millis(3500));
    })
    .await;
    for client in &mut clients {
        let frame = client.recv_type("notification").await;
        assert_eq!(frame["data"]["title"], "in the gap");
    }
    // Sent within 2 s, well inside the hub's 3 s timeout: reads it waited for at once.
    let at_once = proxy.sent_within(std::time::Duration::from_secs(2));
    assert!(at_once <= 32, "{at_once} gap reads at once");
    assert!(hub.metric("hub_gap_read_errors_total").await >= 1.0);
}
