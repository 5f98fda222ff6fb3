//! Several Redis pub/sub connections per instance (`HUB_INGEST_CONNECTIONS`): user and room
//! channels spread across them, each channel's order kept, events from the fixed channels
//! (AI results, presence) reaching users and rooms whatever connection carries their
//! channel, and every connection resubscribing after Redis drops them.

mod common;

use common::{eventually, hub, notification, Client, Hub, Redis};
use serde_json::json;

const CONNECTIONS: &str = "3";

/// Users and rooms enough to land on every connection.
const USERS: usize = 12;

async fn users(hub: &Hub) -> Vec<Client> {
    let mut clients = Vec::new();
    for u in 0..USERS {
        let mut c = hub.user(&format!("u{u}")).await;
        c.join(&format!("room{}", u % 6)).await;
        clients.push(c);
    }
    clients
}

#[tokio::test]
async fn every_channel_is_delivered_in_order_whatever_connection_carries_it() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_INGEST_CONNECTIONS", CONNECTIONS)]).await;
    eventually("every connection to be up", || async {
        (hub.health().await.1["redis"]["connected"] == true).then_some(())
    })
    .await;
    let mut clients = users(&hub).await;
    for u in 0..USERS {
        for i in 0..5 {
            let channel = format!("user:notifications:u{u}");
            redis
                .publish(&channel, &notification(&format!("u{u}"), &format!("n{i}")))
                .await;
        }
        let result = json!({"jobId": format!("j{u}"), "userId": format!("u{u}"),
                            "status": "success", "result": {}, "processingTime": 1});
        redis.publish("ai:results", &result.to_string()).await;
    }
    // Order holds per channel: the AI result (on `ai:results`) may come anywhere among the
    // user's notifications (on the user's channel, another connection).
    for (u, c) in clients.iter_mut().enumerate() {
        let (mut titles, mut jobs) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            let frame = c.recv().await;
            match frame["type"].as_str() {
                Some("notification") => titles.push(frame["data"]["title"].clone()),
                Some("ai-result") => jobs.push(frame["data"]["jobId"].clone()),
                _ => panic!("unexpected frame {frame}"),
            }
        }
        assert_eq!(
            titles,
            ["n0", "n1", "n2", "n3", "n4"],
            "user u{u}, in order"
        );
        assert_eq!(jobs, [format!("j{u}")]);
    }
    // Chat in every room, and a presence event from a newcomer, reach every member.
    let mut newcomer = hub.user("new").await;
    for r in 0..6 {
        newcomer.join(&format!("room{r}")).await;
    }
    for r in 0..6 {
        let room = format!("room{r}");
        newcomer
            .send(json!({"type": "chat-message", "room": room, "message": "hi"}))
            .await;
    }
    for (u, c) in clients.iter_mut().enumerate() {
        let message = c.recv_type("chat-message").await;
        assert_eq!(message["data"]["roomId"], format!("room{}", u % 6));
    }
    let mut watcher = hub.user("watcher").await.with_presence();
    watcher.join("room0").await;
    assert_eq!(watcher.recv_type("presence").await["userId"], "watcher");
    let mut late = hub.user("late").await;
    late.join("room0").await;
    let joined = watcher.recv_type("presence").await;
    assert_eq!(
        (joined["event"].clone(), joined["userId"].clone()),
        (json!("join"), json!("late"))
    );
}

#[tokio::test]
async fn every_connection_resubscribes_after_redis_drops_them() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_INGEST_CONNECTIONS", CONNECTIONS)]).await;
    let mut clients = users(&hub).await;
    let killed = redis.kill_pubsub_clients().await;
    assert_eq!(killed, 3, "one pub/sub connection per ingest connection");
    eventually("every connection to be back", || async {
        let (status, body) = hub.health().await;
        (status == 200 && body["redis"]["reconnects"] == 3 && body["redis"]["connected"] == true)
            .then_some(())
    })
    .await;
    for u in 0..USERS {
        redis
            .await_numsub(&format!("user:notifications:u{u}"), 1)
            .await;
    }
    for u in 0..USERS {
        let channel = format!("user:notifications:u{u}");
        redis
            .publish(&channel, &notification(&format!("u{u}"), "after"))
            .await;
    }
    for c in &mut clients {
        assert_eq!(c.recv_type("notification").await["data"]["title"], "after");
    }
}
