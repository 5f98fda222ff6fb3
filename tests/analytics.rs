//! The analytics aggregator against a real hub and redis-server: exact figures for a known
//! event sequence, the `analytics` topic, and the same figures in `/metrics`.

mod common;

use common::{eventually, hub, Client, Redis, Scrape};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const KEY: &str = "k3y";

async fn publish_all(redis: &Redis, payloads: &[Value]) {
    let mut pipe = redis::pipe();
    for p in payloads {
        pipe.cmd("PUBLISH")
            .arg("analytics:events")
            .arg(p.to_string())
            .ignore();
    }
    pipe.query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
}

async fn snapshot(hub: &common::Hub) -> Value {
    let auth = format!("Bearer {KEY}");
    let (status, body) = hub
        .http("GET", "/api/analytics", &[("authorization", &auth)], "")
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Within the histogram's error (2 significant digits: 1%) of the exact nearest-rank value,
/// allowing one rank of difference between percentile definitions.
fn close(got: &Value, exact: f64, step: f64) {
    let got = got.as_f64().expect("a number");
    assert!(
        (got - exact).abs() <= exact * 0.01 + step,
        "{got} is not within 1% of {exact}"
    );
}

#[tokio::test]
async fn a_known_sequence_gives_exact_figures() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    redis.await_numsub("analytics:events", 1).await;
    let mut events = Vec::new();
    for i in 1..=200 {
        events.push(json!({"event": "ai_query", "userId": i % 7, "data": {
            "model": "gpt-x", "latencyMs": i, "tokens": 10, "cost": 0.25}}));
    }
    for _ in 0..50 {
        events.push(json!({"event": "ai_query", "data": {
            "model": "small", "latencyMs": 1000, "tokens": 100, "cost": 0.5}}));
    }
    for _ in 0..7 {
        events.push(json!({"event": "page_view", "data": {"path": "/"}}));
    }
    // Invalid events are dropped by validation, not counted.
    events.push(json!({"event": "ai_query", "data": {"model": "gpt-x", "tokens": -3}}));
    publish_all(&redis, &events).await;

    let s = eventually("257 events aggregated", || async {
        let s = snapshot(&hub).await;
        (s["totals"]["events"] == 257).then_some(s)
    })
    .await;
    assert_eq!(
        s["totals"],
        json!({"events": 257, "aiQueries": 250, "tokens": 7000, "cost": 75.0})
    );
    assert_eq!(s["events"]["ai_query"]["total"], 250);
    assert_eq!(s["events"]["page_view"]["total"], 7);
    let big = &s["models"]["gpt-x"];
    assert_eq!(
        (
            big["queries"].clone(),
            big["tokens"].clone(),
            big["cost"].clone()
        ),
        (json!(200), json!(2000), json!(50.0))
    );
    assert_eq!(big["latencyMs"]["count"], 200);
    assert_eq!(big["latencyMs"]["min"], 1.0);
    close(&big["latencyMs"]["p50"], 100.0, 1.0);
    close(&big["latencyMs"]["p90"], 180.0, 1.0);
    close(&big["latencyMs"]["p99"], 198.0, 1.0);
    close(&big["latencyMs"]["max"], 200.0, 0.0);
    let small = &s["models"]["small"];
    assert_eq!(
        (small["queries"].clone(), small["cost"].clone()),
        (json!(50), json!(25.0))
    );
    close(&small["latencyMs"]["p99"], 1000.0, 0.0);
    // Everything happened within the last minute.
    assert_eq!(s["lastMinute"]["events"], 257.0);
    assert_eq!(big["lastMinute"]["queries"], 200.0);
    assert_eq!(big["lastMinute"]["latencyMs"]["count"], 200);
    let series: f64 = big["queriesPerSecondSeries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(series, 200.0);
    assert!(s["lastMinute"]["aiQueriesPerSecond"].as_f64().unwrap() > 0.0);

    // The same figures in /metrics.
    let m = Scrape::of(&hub).await;
    assert_eq!(
        m.value("hub_ai_queries_total", &[("model", "gpt-x")]),
        200.0
    );
    assert_eq!(
        m.value("hub_ai_tokens_total", &[("model", "small")]),
        5000.0
    );
    assert_eq!(m.value("hub_ai_cost_total", &[("model", "gpt-x")]), 50.0);
    assert_eq!(
        m.histogram_count("hub_ai_latency_ms", &[("model", "gpt-x")]),
        200.0
    );
    assert_eq!(
        m.value("hub_analytics_events_total", &[("event", "page_view")]),
        7.0
    );
    assert_eq!(
        m.value(
            "hub_invalid_payloads_total",
            &[("channel", "analytics:events")]
        ),
        1.0
    );
}

#[tokio::test]
async fn subscribers_get_snapshots_only_while_subscribed() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut c = hub.user("ops").await;
    c.send(json!({"type": "subscribe", "topic": "analytics"}))
        .await;
    c.recv_type("subscribed").await;
    redis
        .publish(
            "analytics:events",
            &json!({"event": "ai_query", "data": {"model": "m", "latencyMs": 12}}).to_string(),
        )
        .await;
    // Snapshots arrive about once a second; wait for one that includes the event.
    let data = loop {
        let frame = c.recv_type("analytics").await;
        if frame["data"]["totals"]["events"] == 1 {
            break frame["data"].clone();
        }
    };
    assert_eq!(data["models"]["m"]["queries"], 1);
    assert!(data["instanceId"].is_string());

    c.send(json!({"type": "unsubscribe", "topic": "analytics"}))
        .await;
    // Analytics frames queued before the unsubscribe may still come first.
    loop {
        let frame = c.recv().await;
        if frame["type"] == "unsubscribed" {
            break;
        }
        assert_eq!(frame["type"], "analytics", "{frame}");
    }
    let before = Scrape::of(&hub).await;
    let pushes = before.value("hub_analytics_pushes_total", &[]);
    let idle = before.value("hub_analytics_idle_ticks_total", &[]);
    assert_eq!(
        before.value("hub_topic_subscribers", &[("topic", "analytics")]),
        0.0
    );
    // Two push ticks pass without a subscriber: nothing is built or sent.
    let after = eventually("two idle ticks", || async {
        let m = Scrape::of(&hub).await;
        (m.value("hub_analytics_idle_ticks_total", &[]) >= idle + 2.0).then_some(m)
    })
    .await;
    assert_eq!(after.value("hub_analytics_pushes_total", &[]), pushes);
    redis
        .publish(
            "user:notifications:ops",
            &common::notification("ops", "marker"),
        )
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "marker");
}

#[tokio::test]
async fn in_jwt_mode_only_admins_get_the_analytics_topic() {
    const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-s3cret";
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |claims: Value| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let user = token(json!({"sub": "1", "exp": exp}));
    let admin = token(json!({"sub": "2", "exp": exp, "role": "admin"}));
    let mut u = Client::connect(&hub.ws_url(&format!("token={user}"))).await;
    u.recv_type("connected").await;
    u.send(json!({"type": "subscribe", "topic": "analytics", "id": 1}))
        .await;
    assert_eq!(u.expect_error("forbidden").await["id"], 1);
    let mut a = Client::connect(&hub.ws_url(&format!("token={admin}"))).await;
    a.recv_type("connected").await;
    a.send(json!({"type": "subscribe", "topic": "analytics"}))
        .await;
    a.recv_type("subscribed").await;
    let snapshot = a.recv_type("analytics").await;
    assert!(snapshot["data"]["totals"].is_object());
    // The refused session got nothing: its next frame answers its ping.
    u.send(json!({"type": "ping", "id": "after"})).await;
    assert_eq!(u.recv_type("pong").await["id"], "after");
}

#[tokio::test]
async fn every_instance_aggregates_every_event() {
    let redis = Redis::start().await;
    let a = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let b = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    redis.await_numsub("analytics:events", 2).await;
    let (status, _) = a
        .http(
            "POST",
            "/api/analytics",
            &[
                ("authorization", &format!("Bearer {KEY}")),
                ("content-type", "application/json"),
            ],
            &json!({"event": "ai_query", "data": {"model": "m", "cost": 1.5}}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    for hub in [&a, &b] {
        let s = eventually("the event on each instance", || async {
            let s = snapshot(hub).await;
            (s["totals"]["events"] == 1).then_some(s)
        })
        .await;
        assert_eq!(s["models"]["m"]["cost"], 1.5, "a full view, not a share");
    }
}
