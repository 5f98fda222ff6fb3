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

/// Sends `method path` with the test key and an optional JSON body; returns status, the
/// response head (lower-cased) and the JSON body.
async fn call(hub: &common::Hub, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .unwrap();
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let req = common::request_bytes(hub.port, method, path, &headers, body.as_bytes());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {text}"));
    (status, head.to_ascii_lowercase(), json)
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_big_bodies_get_json_errors() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    for path in ["/api/nope", "/api/", "/api/jobs/a/b", "/api/dev/nope"] {
        let (status, _, err) = call(&hub, "GET", path, "").await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (404, json!("not_found")),
            "{path}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(path),
            "{err}"
        );
    }
    for (method, path, allow) in [
        ("GET", "/api/notify", "POST"),
        ("GET", "/api/jobs", "POST"),
        ("PUT", "/api/jobs/j1", "GET, DELETE"),
        ("PUT", "/api/analytics", "GET, POST"),
        ("GET", "/api/cache/invalidate", "POST"),
        ("GET", "/api/chat/room-1", "POST"),
        ("POST", "/api/rooms/room-1", "GET"),
    ] {
        let (status, head, err) = call(&hub, method, path, "").await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (405, json!("method_not_allowed")),
            "{method} {path}"
        );
        assert!(
            head.contains(&format!("\r\nallow: {}", allow.to_ascii_lowercase())),
            "{method} {path}: {head}"
        );
    }
    for path in [
        "/api/notify",
        "/api/jobs",
        "/api/analytics",
        "/api/cache/invalidate",
        "/api/chat/room-1",
    ] {
        let (status, _, err) = call(&hub, "POST", path, &oversized("message")).await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (413, json!("payload_too_large")),
            "{path}"
        );
    }
    let errors = |status: &str| {
        let sample = format!("hub_api_errors_total{{status=\"{status}\"}}");
        let hub = &hub;
        async move { hub.metric(&sample).await }
    };
    assert_eq!(errors("404").await, 4.0);
    assert_eq!(errors("405").await, 7.0);
    assert_eq!(errors("413").await, 5.0);
}

#[tokio::test]
async fn bad_bodies_are_explained_in_the_callers_terms() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    for (path, body, expected) in [
        (
            "/api/notify",
            json!({"userId": 12, "type": "info", "message": "M"}).to_string(),
            "missing field `title`",
        ),
        (
            "/api/notify",
            json!({"userId": 12, "type": "info", "title": 5, "message": "M"}).to_string(),
            "invalid type: integer `5`, expected a string",
        ),
        (
            "/api/notify",
            "[1]".to_string(),
            "the body must be a JSON object",
        ),
        (
            "/api/notify",
            "{\"userId\": 12,".to_string(),
            "the body is not valid JSON (line 1, column 14)",
        ),
        (
            "/api/chat/room-1",
            json!({"userId": 1, "message": "hi"}).to_string(),
            "missing field `username`",
        ),
    ] {
        let (status, _, err) = call(&hub, "POST", path, &body).await;
        assert_eq!(status, 400, "{path} {body}");
        assert_eq!(err["error"]["message"], expected, "{path} {body}");
    }
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
