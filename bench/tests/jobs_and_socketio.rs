//! Smoke tests of the `jobs` scenario and of the hub driven through `--proto socketio`: a real
//! hub and a real job worker (both started in this process through the library, on real
//! sockets) and a private redis-server. Every job and notification must be accounted for; speed
//! is not asserted here (the benchmark reports it).

mod common;

use common::{bench, hub, redis, vars, Redis};
use serde_json::Value;

/// A job worker with the no-op demo handler on its own thread; stops when the sender drops.
fn worker(redis: &Redis) -> tokio::sync::oneshot::Sender<()> {
    let env = vars(vec![
        ("REDIS_URL", format!("redis://{}", redis.addr)),
        ("HUB_WORKER_CONCURRENCY", "2".into()),
        ("HUB_DEMO_LATENCY_MS", "0".into()),
        ("HUB_WORKER_ID", "bench-smoke".into()),
    ]);
    let env = relay_hub::config::WorkerEnv::from_vars(&env).expect("valid worker configuration");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new()
            .block_on(relay_hub::worker::run(env, async {
                let _ = stopped.await;
            }))
            .expect("the worker runs");
    });
    stop
}

fn assert_every_job_delivered(r: &Value, jobs: u64) {
    assert_eq!(r["enqueued"], jobs, "{r}");
    assert_eq!(r["delivered"], r["enqueued"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["latency_us"]["count"], r["delivered"], "{r}");
    assert_eq!(r["enqueue_us"]["count"], r["enqueued"], "{r}");
    for odd in [
        "refused",
        "error_results",
        "misrouted_results",
        "unexpected_results",
    ] {
        assert_eq!(r[odd], 0, "{odd}: {r}");
    }
    // The hub's cluster-wide counters saw exactly the measured jobs complete.
    assert_eq!(r["hub_metrics"]["done"], jobs as f64, "{r}");
}

#[test]
fn jobs_paced_and_closed_loop_deliver_every_result() {
    let redis = redis();
    let (hub, _stop_hub) = hub(&redis);
    let _stop_worker = worker(&redis);
    let hub = hub.to_string();
    let common = [
        "jobs",
        "--target",
        hub.as_str(),
        "--users",
        "5",
        "--jobs",
        "12",
        "--seconds",
        "10",
        "--warmup-jobs",
        "4",
        "--http-conns",
        "2",
    ];

    let paced = bench(&[&common[..], &["--rate", "100"]].concat());
    assert_every_job_delivered(&paced, 12);
    assert_eq!(paced["rate"], 100.0, "{paced}");

    let closed = bench(&[&common[..], &["--rate", "0", "--window", "3"]].concat());
    assert_every_job_delivered(&closed, 12);
    assert_eq!(closed["rate"], "max", "{closed}");
}

#[test]
fn notify_through_the_hubs_socketio_endpoint_accounts_for_every_message() {
    let redis = redis();
    let (hub, _stop) = hub(&redis);
    let (hub, redis_addr) = (hub.to_string(), redis.addr.to_string());
    let r = bench(&[
        "notify",
        "--target",
        hub.as_str(),
        "--redis",
        redis_addr.as_str(),
        "--proto",
        "socketio",
        "--server",
        "hub-sio",
        "--users",
        "10",
        "--rate",
        "200",
        "--seconds",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(r["proto"], "socketio", "{r}");
    assert_eq!(r["connected"], 10, "{r}");
    assert_eq!(r["connect_failures"], 0, "{r}");
    assert!(r["published"].as_u64().unwrap() >= 150, "{r}");
    assert_eq!(r["delivered"], r["published"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
}
