//! The HTTP API against a real hub and redis-server.

mod common;

use common::{hub, Redis};
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
