//! The HTTP API against a real hub and redis-server.

mod common;

use common::{hub, ChannelWatch, Redis};
use serde_json::{json, Value};

const KEY: &str = "k3y";

#[tokio::test]
async fn notify_publishes_to_the_users_sessions() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut c = hub.user("12").await;
    let auth = format!("Bearer {KEY}");
    let body = json!({"userId": 12, "type": "info", "title": "T", "message": "M", "extra": 1});
    let (status, _) = hub
        .http(
            "POST",
            "/api/notify",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await;
    assert_eq!(status, 202);
    let data = c.recv_type("notification").await["data"].clone();
    assert_eq!(
        (data["title"].clone(), data["extra"].clone()),
        (json!("T"), json!(1))
    );
    assert!(
        data["timestamp"].as_u64().is_some(),
        "the hub fills timestamp"
    );
}

#[tokio::test]
async fn notify_refuses_bad_keys_and_bodies_without_publishing() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut c = hub.user("12").await;
    let json_ct = ("content-type", "application/json");
    let good = json!({"userId": 12, "type": "info", "title": "T", "message": "M"}).to_string();
    for headers in [
        vec![json_ct],
        vec![json_ct, ("authorization", "Bearer wrong")],
    ] {
        let (status, body) = hub.http("POST", "/api/notify", &headers, &good).await;
        assert_eq!(status, 401);
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["error"]["code"], "unauthorized");
    }
    let auth = format!("Bearer {KEY}");
    let headers = [json_ct, ("authorization", auth.as_str())];
    for bad in [
        "not json".to_string(),
        json!({"userId": 12}).to_string(),
        json!({"type": "info", "title": "T", "message": "M"}).to_string(),
        json!({"userId": "a b", "type": "info", "title": "T", "message": "M"}).to_string(),
        format!(
            r#"{{"userId":12,"type":"i","title":"T","message":"{}"}}"#,
            "x".repeat(70_000)
        ),
    ] {
        let (status, body) = hub.http("POST", "/api/notify", &headers, &bad).await;
        assert_eq!(status, 400, "{bad:.60}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["error"]["code"], "bad_request");
    }
    // Nothing was published: the next frame is the marker.
    redis
        .publish(
            "user:notifications:12",
            &common::notification("12", "marker"),
        )
        .await;
    assert_eq!(c.recv_type("notification").await["data"]["title"], "marker");
}

/// Sends `body` to `path` with the test key (or `auth` instead) and a JSON content type.
async fn post(hub: &common::Hub, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", auth.unwrap_or(KEY));
    let mut headers = vec![("content-type", "application/json")];
    if auth != Some("") {
        headers.push(("authorization", bearer.as_str()));
    }
    let (status, body) = hub.http("POST", path, &headers, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn oversized(key: &str) -> String {
    format!(r#"{{"{key}":"{}"}}"#, "x".repeat(70_000))
}

#[tokio::test]
async fn cache_invalidate_publishes_to_caches_and_topic_subscribers() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut c = hub.user("1").await;
    c.send(json!({"type": "subscribe", "topic": "cache"})).await;
    c.recv_type("subscribed").await;
    let body = json!({"pattern": "user:[0-9]*", "reason": "profile update"});
    let (status, reply) = post(&hub, "/api/cache/invalidate", None, &body.to_string()).await;
    assert_eq!((status, reply["status"].clone()), (202, json!("published")));
    let data = c.recv_type("cache-invalidate").await["data"].clone();
    assert_eq!(data["pattern"], "user:[0-9]*");
    assert_eq!(data["reason"], "profile update");
    assert!(
        data["timestamp"].as_u64().is_some(),
        "the hub fills timestamp"
    );
}

#[tokio::test]
async fn cache_invalidate_refuses_bad_keys_and_bodies_without_publishing() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut watch = ChannelWatch::start(&redis, "cache:invalidate").await;
    let good = json!({"pattern": "user:*"}).to_string();
    for auth in ["", "wrong"] {
        let (status, err) = post(&hub, "/api/cache/invalidate", Some(auth), &good).await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
    }
    for bad in [
        "not json".to_string(),
        "[]".to_string(),
        json!({}).to_string(),
        json!({"pattern": ""}).to_string(),
        json!({"pattern": 5}).to_string(),
        json!({"pattern": "user:[abc"}).to_string(),
        json!({"pattern": "user\\"}).to_string(),
        json!({"pattern": "[z-a]"}).to_string(),
        json!({"pattern": "*a".repeat(200)}).to_string(),
        json!({"pattern": "user:*", "reason": 7}).to_string(),
        oversized("pattern"),
    ] {
        let (status, err) = post(&hub, "/api/cache/invalidate", None, &bad).await;
        assert_eq!(status, 400, "{bad:.60}");
        assert_eq!(err["error"]["code"], "bad_request", "{bad:.60}");
    }
    // Nothing was published: the first message the watcher sees is the marker.
    redis
        .publish("cache:invalidate", r#"{"pattern":"marker"}"#)
        .await;
    assert_eq!(watch.next().await["pattern"], "marker");
}

#[tokio::test]
async fn analytics_events_are_published_and_aggregated() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut watch = ChannelWatch::start(&redis, "analytics:events").await;
    let event = json!({"event": "ai_query", "userId": 7,
        "data": {"model": "m1", "latencyMs": 42.5, "tokens": 12, "cost": 0.5, "extra": [1]}});
    let (status, reply) = post(&hub, "/api/analytics", None, &event.to_string()).await;
    assert_eq!((status, reply["status"].clone()), (202, json!("published")));
    let published = watch.next().await;
    assert_eq!(published["data"], event["data"], "unknown keys are kept");
    assert!(
        published["timestamp"].as_u64().is_some(),
        "the hub fills timestamp"
    );

    let auth = format!("Bearer {KEY}");
    let snapshot = common::eventually("the event in the snapshot", || async {
        let (status, body) = hub
            .http("GET", "/api/analytics", &[("authorization", &auth)], "")
            .await;
        assert_eq!(status, 200);
        let s: Value = serde_json::from_str(&body).unwrap();
        (s["totals"]["events"] == 1).then_some(s)
    })
    .await;
    let m1 = &snapshot["models"]["m1"];
    assert_eq!(
        (
            m1["queries"].clone(),
            m1["tokens"].clone(),
            m1["cost"].clone()
        ),
        (json!(1), json!(12), json!(0.5))
    );
    assert_eq!(snapshot["events"]["ai_query"]["total"], 1);
}

#[tokio::test]
async fn analytics_refuses_bad_keys_and_bodies_without_publishing() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut watch = ChannelWatch::start(&redis, "analytics:events").await;
    let good = json!({"event": "x", "data": {}}).to_string();
    for auth in ["", "wrong"] {
        let (status, err) = post(&hub, "/api/analytics", Some(auth), &good).await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let bearer = format!("Bearer {auth}");
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", bearer.as_str())]
        };
        let (status, _) = hub.http("GET", "/api/analytics", &headers, "").await;
        assert_eq!(status, 401, "GET /api/analytics needs the key too");
    }
    for bad in [
        "not json".to_string(),
        json!({"event": "x"}).to_string(),
        json!({"data": {}}).to_string(),
        json!({"event": "", "data": {}}).to_string(),
        json!({"event": "x", "data": []}).to_string(),
        json!({"event": "q", "data": {"model": 3}}).to_string(),
        json!({"event": "q", "data": {"latencyMs": "slow"}}).to_string(),
        json!({"event": "q", "data": {"latencyMs": -1}}).to_string(),
        json!({"event": "q", "data": {"tokens": 1.5}}).to_string(),
        json!({"event": "q", "data": {"cost": "free"}}).to_string(),
        json!({"event": "x".repeat(129), "data": {}}).to_string(),
        oversized("event"),
    ] {
        let (status, err) = post(&hub, "/api/analytics", None, &bad).await;
        assert_eq!(status, 400, "{bad:.60}");
        assert_eq!(err["error"]["code"], "bad_request", "{bad:.60}");
    }
    redis
        .publish("analytics:events", r#"{"event":"marker","data":{}}"#)
        .await;
    assert_eq!(watch.next().await["event"], "marker");
}

#[tokio::test]
async fn without_a_key_the_api_is_closed_unless_opened() {
    let redis = Redis::start().await;
    let secret = ("HUB_JWT_SECRET", "a-secret-of-thirty-two-bytes-or-more");
    let closed = hub(&redis, &[secret, ("HUB_API_OPEN", "0")]).await;
    let body = json!({"userId": 12, "type": "info", "title": "T", "message": "M"});
    let json_ct = ("content-type", "application/json");
    let (status, answer) = closed
        .http("POST", "/api/notify", &[json_ct], &body.to_string())
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("HUB_API_KEY"), "{answer}");
    let open = hub(&redis, &[secret, ("HUB_API_OPEN", "1")]).await;
    let (status, answer) = open
        .http("POST", "/api/notify", &[json_ct], &body.to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
}
