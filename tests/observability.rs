//! `/metrics` parsed as Prometheus text while traffic flows, and the `/health` canary against
//! a pub/sub connection that silently stops delivering.

mod common;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use common::{eventually, hub, hub_with_url, Redis, Scrape};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_traffic() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_CANARY_INTERVAL_MS", "100")]).await;
    let before = Scrape::of(&hub).await;
    for (name, kind) in [
        ("hub_connections", "gauge"),
        ("hub_frames_in_total", "counter"),
        ("hub_bytes_in_by_type_total", "counter"),
        ("hub_bytes_out_by_type_total", "counter"),
        ("hub_redis_connected", "gauge"),
        ("hub_canary_delivering", "gauge"),
        ("hub_topic_subscribers", "gauge"),
        ("hub_deliver_latency_ms", "histogram"),
        ("hub_canary_round_trip_ms", "histogram"),
    ] {
        assert!(before.0.docs.contains_key(name), "{name} has a HELP line");
        let sample = before.samples(name, &[]).next().expect(name);
        let got = match sample.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            prometheus_parse::Value::Histogram(_) => "histogram",
            _ => "other",
        };
        assert_eq!(got, kind, "{name}");
    }

    let mut c = hub.user("5").await;
    let ping = json!({"type": "ping", "id": 1}).to_string();
    c.send_text(&ping).await;
    c.recv_type("pong").await;
    c.send(json!({"type": "subscribe", "topic": "cache"})).await;
    c.recv_type("subscribed").await;
    let note = json!({"userId": 5, "type": "info", "title": "t", "message": "m",
        "timestamp": now_ms()})
    .to_string();
    redis.publish("user:notifications:5", &note).await;
    let frame = c.recv_type("notification").await.to_string();
    redis
        .publish(
            "analytics:events",
            &json!({"event": "ai_query", "data": {"model": "m", "latencyMs": 30,
                "tokens": 4, "cost": 0.125}})
            .to_string(),
        )
        .await;

    let after = eventually("the analytics event in /metrics", || async {
        let m = Scrape::of(&hub).await;
        (m.value("hub_ai_queries_total", &[("model", "m")]) == 1.0).then_some(m)
    })
    .await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(delta("hub_frames_in_total", &[("type", "ping")]), 1.0);
    assert_eq!(
        delta("hub_bytes_in_by_type_total", &[("type", "ping")]),
        ping.len() as f64
    );
    assert_eq!(
        delta("hub_frames_out_total", &[("type", "notification")]),
        1.0
    );
    assert_eq!(
        delta("hub_bytes_out_by_type_total", &[("type", "notification")]),
        // the frame as queued: the JSON plus a 2- or 4-byte WebSocket header
        (frame.len() + if frame.len() < 126 { 2 } else { 4 }) as f64
    );
    assert_eq!(delta("hub_connections", &[]), 1.0);
    assert_eq!(delta("hub_users", &[]), 1.0);
    assert_eq!(delta("hub_topic_subscribers", &[("topic", "cache")]), 1.0);
    assert_eq!(
        delta(
            "hub_redis_messages_total",
            &[("channel", "user:notifications")]
        ),
        1.0
    );
    assert_eq!(
        after.histogram_count("hub_deliver_latency_ms", &[])
            - before.histogram_count("hub_deliver_latency_ms", &[]),
        1.0,
        "the notification carried a timestamp"
    );
    assert_eq!(after.value("hub_ai_tokens_total", &[("model", "m")]), 4.0);
    assert_eq!(after.value("hub_ai_cost_total", &[("model", "m")]), 0.125);
    assert_eq!(
        after.histogram_count("hub_ai_latency_ms", &[("model", "m")]),
        1.0
    );
    assert_eq!(after.value("hub_redis_connected", &[]), 1.0);
    eventually("canaries to come back", || async {
        let m = Scrape::of(&hub).await;
        (m.value("hub_canary_received_total", &[]) >= 2.0
            && m.histogram_count("hub_canary_round_trip_ms", &[]) >= 2.0)
            .then_some(())
    })
    .await;
}

/// A TCP proxy between the hub and Redis that can stop forwarding Redis's bytes to the
/// hub's pub/sub connection (the one that sent SUBSCRIBE) while keeping every socket open:
/// to the hub the subscription looks connected, but nothing arrives.
struct Proxy {
    port: u16,
    stall: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stall, _) = watch::channel(false);
        let stall_rx = stall.subscribe();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pubsub = Arc::new(AtomicBool::new(false));
                tokio::spawn(upstream_pump(cr, sw, pubsub.clone()));
                tokio::spawn(downstream_pump(sr, cw, pubsub, stall_rx.clone()));
            }
        });
        Proxy { port, stall }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stall(&self, on: bool) {
        self.stall.send_replace(on);
    }
}

/// Hub -> Redis, noting whether the connection subscribes.
async fn upstream_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pubsub: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
        if text.contains("SUBSCRIBE") {
            pubsub.store(true, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Redis -> hub; holds the bytes of a pub/sub connection while stalled.
async fn downstream_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pubsub: Arc<AtomicBool>,
    mut stall: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while *stall.borrow() && pubsub.load(Ordering::SeqCst) {
            if stall.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = stall.changed() => continue,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn health_degrades_when_the_subscription_stops_delivering() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.port).await;
    let hub = hub_with_url(
        &proxy.url(),
        &[
            ("HUB_CANARY_INTERVAL_MS", "100"),
            ("HUB_CANARY_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let healthy = eventually("/health ok with canaries coming back", || async {
        let (status, body) = hub.health().await;
        (status == 200 && body["redis"]["canaryRoundTripMs"].is_number()).then_some(body)
    })
    .await;
    assert_eq!(healthy["status"], "ok");
    assert_eq!(healthy["redis"]["delivering"], true);

    proxy.stall(true);
    // The socket stays open and the hub's pings are not yet overdue (5 s): only the canary
    // can tell that nothing arrives any more.
    let degraded = eventually("/health degraded by the canary", || async {
        let (status, body) = hub.health().await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(degraded["status"], "degraded");
    assert_eq!(
        degraded["redis"]["connected"], true,
        "the connection still looks up"
    );
    assert_eq!(degraded["redis"]["delivering"], false);
    assert_eq!(
        Scrape::of(&hub).await.value("hub_canary_delivering", &[]),
        0.0
    );

    proxy.stall(false);
    let recovered = eventually("/health ok again", || async {
        let (status, body) = hub.health().await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(recovered["redis"]["delivering"], true);
}

#[tokio::test]
async fn the_dashboard_is_served() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    for (path, needle) in [
        ("/dashboard.html", "<canvas id=\"chart-qps\""),
        ("/dashboard.js", "subscribe('analytics')"),
        ("/dashboard.css", ".charts"),
    ] {
        let (status, body) = hub.http("GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path} is the dashboard's");
    }
}
