//! Faults and lifecycle: Redis restarts, Redis absent at start, SIGTERM, slow consumers.

mod common;

use common::{
    eventually, free_port, hub, hub_with_url, notification, Client, Ending, RawClient, Redis,
};
use serde_json::json;

#[tokio::test]
async fn redis_restart_is_reported_and_subscriptions_come_back() {
    let mut redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("1").await;
    c.join("r").await;
    assert_eq!(hub.health().await.0, 200);

    redis.kill();
    let health = eventually("health to report degraded", || async {
        let (status, body) = hub.health().await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["redis"]["connected"], false);
    assert_eq!(
        health["websocket"]["connections"], 1,
        "sessions survive the outage"
    );

    redis.restart().await;
    let health = eventually("health to recover", || async {
        let (status, body) = hub.health().await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(health["status"], "ok");
    assert_eq!(redis.numsub("user:notifications:1").await, 1);
    assert_eq!(redis.numsub("chat:room:r").await, 1);
    assert_eq!(redis.numsub("ai:results").await, 1);
    redis
        .publish("user:notifications:1", &notification("1", "after"))
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "after");
    c.send(json!({"type": "chat-message", "room": "r", "message": "back"}))
        .await;
    assert_eq!(c.recv_type("chat-message").await["data"]["message"], "back");
    assert!(hub.metric("hub_redis_reconnects_total").await >= 1.0);
}

#[tokio::test]
async fn a_hub_started_without_redis_connects_when_it_appears() {
    let port = free_port();
    let hub = hub_with_url(&format!("redis://127.0.0.1:{port}"), &[]).await;
    let (status, body) = hub.health().await;
    assert_eq!((status, body["status"].clone()), (503, json!("degraded")));
    // Sessions are accepted meanwhile; `connected` comes once Redis is there and they are
    // subscribed.
    let mut c = Client::connect(&hub.ws_url("userId=9")).await;
    eventually("the hub to want the user's channel", || async {
        (hub.metric("hub_users").await == 1.0).then_some(())
    })
    .await;

    let redis = Redis::start_on(port).await;
    assert_eq!(c.recv().await["type"], "connected");
    assert_eq!(redis.numsub("user:notifications:9").await, 1);
    redis
        .publish("user:notifications:9", &notification("9", "hello"))
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "hello");
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_exits_0() {
    let redis = Redis::start().await;
    let mut hub = hub(&redis, &[]).await;
    let mut a = hub.user("1").await;
    let mut b = hub.user("2").await;
    b.join("room").await;
    hub.signal(libc::SIGTERM);
    assert_eq!(a.expect_close().await, Ending::Close(1001));
    assert_eq!(b.expect_close().await, Ending::Close(1001));
    assert_eq!(hub.wait_exit().await, Some(0));
    assert_eq!(redis.numsub("user:notifications:1").await, 0);
    assert_eq!(redis.numsub("chat:room:room").await, 0);
    assert_eq!(redis.numsub("ai:results").await, 0);
}

/// A client whose socket stops taking data, with far less waiting for it than its queue
/// bound: it is dropped for the write timeout, on `/ws` and on Socket.IO alike.
#[tokio::test]
async fn a_socket_that_takes_nothing_is_dropped_after_the_write_timeout() {
    let redis = Redis::start().await;
    let env = [
        ("HUB_WRITE_TIMEOUT_MS", "300"),
        ("HUB_SESSION_QUEUE_BYTES", "16777216"),
    ];
    let hub = hub(&redis, &env).await;
    let _native = RawClient::connect_with_rcvbuf(hub.port, "userId=native", 4096).await;
    let sio_path = "/socket.io/?EIO=4&transport=websocket";
    let mut sio = RawClient::connect_to_with_rcvbuf(hub.port, sio_path, 4096).await;
    assert!(
        sio.read_frames_until_text().await.starts_with("0{"),
        "engine.io open"
    );
    sio.send_text(r#"40{"userId":"sio"}"#).await;
    assert!(
        sio.read_frames_until_text().await.starts_with("40{"),
        "socket.io connect"
    );
    redis.await_numsub("user:notifications:native", 1).await;
    redis.await_numsub("user:notifications:sio", 1).await;
    // About 1 MB each: more than the kernel buffers hold, far less than the queue bound.
    let body = "x".repeat(1000);
    let mut conn = redis.conn().await;
    let mut pipe = redis::pipe();
    for user in ["native", "sio"] {
        let payload = json!({"userId": user, "type": "t", "title": "t", "message": body});
        for _ in 0..1000 {
            pipe.cmd("PUBLISH")
                .arg(format!("user:notifications:{user}"))
                .arg(payload.to_string())
                .ignore();
        }
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
    let write_timeouts = "hub_slow_consumer_kicks_total{reason=\"write_timeout\"}";
    eventually("both stuck clients to be dropped", || async {
        (hub.metric(write_timeouts).await == 2.0).then_some(())
    })
    .await;
    assert_eq!(hub.kicks().await, 2.0, "for the write timeout only");
    redis.await_numsub("user:notifications:native", 0).await;
    redis.await_numsub("user:notifications:sio", 0).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_kicked_with_memory_bounded() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut fast = hub.user("fast").await;
    let _stuck = RawClient::connect_with_rcvbuf(hub.port, "userId=stuck", 4096).await;
    redis.await_numsub("user:notifications:stuck", 1).await;
    let rss_before = hub.rss_kib();

    // Redis never drops the hub here, so what is bounded is the hub's own buffering.
    redis.never_drop_subscribers().await;
    // 40 MB of notifications for a client that reads nothing.
    let body = "x".repeat(1000);
    let payload =
        json!({"userId": "stuck", "type": "t", "title": "t", "message": body}).to_string();
    // In pipelines of 4,000 (each well within the client's response timeout). Receivers per
    // PUBLISH: 1 until the hub unsubscribed after the kick, then 0.
    let mut conn = redis.conn().await;
    let mut sent_to_hub = 0.0;
    for _ in 0..10 {
        let mut pipe = redis::pipe();
        for _ in 0..4_000 {
            pipe.cmd("PUBLISH")
                .arg("user:notifications:stuck")
                .arg(&payload);
        }
        let receivers: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
        sent_to_hub += receivers.iter().sum::<i64>() as f64;
    }

    eventually("the stuck client to be kicked", || async {
        (hub.kicks().await == 1.0).then_some(())
    })
    .await;
    redis.await_numsub("user:notifications:stuck", 0).await;
    eventually("the hub to have read all Redis sent it", || async {
        let read = hub
            .metric("hub_redis_messages_total{channel=\"user:notifications\"}")
            .await;
        (read >= sent_to_hub).then_some(())
    })
    .await;
    // The bound: the pub/sub read-ahead (8 MiB, twice while a batch still holds the old
    // buffer), the fan-out backlog (4 MiB) and the session's queue (1 MiB), plus slack.
    let growth_kib = hub.rss_kib().saturating_sub(rss_before);
    assert!(
        growth_kib < 24 * 1024,
        "hub RSS grew by {growth_kib} KiB for {sent_to_hub} notifications of 1 KB to a stuck client"
    );

    redis
        .publish(
            "user:notifications:fast",
            &notification("fast", "unaffected"),
        )
        .await;
    assert_eq!(
        fast.recv_type("notification").await["data"]["title"],
        "unaffected"
    );
}
