//! The worker protocol (docs/jobs.md#the-worker-protocol-redis-functions): the Redis functions
//! the hub loads, spoken with plain `FCALL`s as a worker in another language would, and
//! cancellation seen by a running `relay-hub worker`.

mod common;

use common::{
    eventually, hub,
    jobs::{worker, WorkerProc},
    Hub, Redis,
};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

/// `FCALL name 1 jobs args...`.
async fn fcall<T: redis::FromRedisValue>(redis: &Redis, name: &str, args: &[&str]) -> T {
    try_fcall(redis, name, args)
        .await
        .unwrap_or_else(|e| panic!("FCALL {name}: {e}"))
}

async fn try_fcall<T: redis::FromRedisValue>(
    redis: &Redis,
    name: &str,
    args: &[&str],
) -> redis::RedisResult<T> {
    redis::cmd("FCALL")
        .arg(name)
        .arg(1)
        .arg("jobs")
        .arg(args)
        .query_async(&mut redis.conn().await)
        .await
}

async fn get_job(hub: &Hub, id: &str) -> Value {
    let (status, body) = hub.http("GET", &format!("/api/jobs/{id}"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_worker_speaking_only_fcall_streams_and_completes_a_job_once() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("7").await;

    // The hub loaded the library at startup: a worker needs nothing else.
    let _: i64 = fcall(&redis, "relay_job_advertise", &["86400000", "py_echo"]).await;
    let (status, body) = hub
        .http(
            "POST",
            "/api/jobs",
            &[JSON],
            &json!({"id": "p-1", "type": "py_echo", "userId": 7, "payload": {"q": "hi"}})
                .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let claim: Vec<String> = fcall(
        &redis,
        "relay_job_claim",
        &["py-worker", "30000", "3", "60000", "100", "py_echo"],
    )
    .await;
    assert_eq!((claim[0].as_str(), claim[7].as_str()), ("job", "p-1"));
    assert_eq!((claim[1].as_str(), claim[4].as_str()), ("normal", "1"));
    let job: Value = serde_json::from_str(&claim[3]).unwrap();
    assert_eq!(job["payload"]["q"], "hi");
    let lease = claim[5].clone();

    assert_eq!(
        fcall::<String>(&redis, "relay_job_renew", &["p-1", &lease, "60000"]).await,
        "ok"
    );
    for (delta, seq) in [("Hel", 1), ("lo", 2)] {
        let got: i64 = fcall(&redis, "relay_job_chunk", &["p-1", &lease, delta]).await;
        assert_eq!(got, seq);
    }
    let kept: Vec<String> = fcall(&redis, "relay_job_chunks", &["p-1", "1"]).await;
    assert_eq!(kept, ["running", "2", "2", "lo"]);
    let done: i64 = fcall(
        &redis,
        "relay_job_complete",
        &["p-1", &lease, r#"{"text":"Hello"}"#, "12", "60000"],
    )
    .await;
    assert_eq!(done, 1);

    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        result,
        json!({"jobId": "p-1", "userId": 7, "type": "py_echo", "status": "success",
               "result": {"text": "Hello"}, "processingTime": 12, "chunks": 2})
    );
    let state = get_job(&hub, "p-1").await;
    assert_eq!(
        (state["state"].clone(), state["chunks"].clone()),
        (json!("done"), json!(2))
    );

    // One outcome: the lease no longer holds for anything.
    let again: i64 = fcall(
        &redis,
        "relay_job_complete",
        &["p-1", &lease, "{}", "1", "60000"],
    )
    .await;
    assert_eq!(again, 0);
    let late: i64 = fcall(&redis, "relay_job_chunk", &["p-1", &lease, "x"]).await;
    assert_eq!(late, 0);
    let failed: String = fcall(
        &redis,
        "relay_job_fail",
        &["p-1", &lease, "boom", "0", "3", "30000", "0", "60000"],
    )
    .await;
    assert_eq!(failed, "stale");

    // Bad arguments: a clear error, nothing changed.
    let err = try_fcall::<redis::Value>(&redis, "relay_job_claim", &["w", "soon", "3", "1", "1"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relay_job_claim: visibility_ms must be a whole number of ms"),
        "{err}"
    );
    let err = try_fcall::<redis::Value>(
        &redis,
        "relay_job_enqueue",
        &["x y", "t", "1", "normal", "{}", "1000", "1", "0"],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("relay_job_enqueue: id must be"), "{err}");
}

#[tokio::test]
async fn a_cancelled_running_job_stops_its_handler_and_is_not_retried() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut owner = hub.user("8").await;
    let w: WorkerProc = worker(&redis, "w1", &[]).ready().await;
    let (status, body) = hub
        .http(
            "POST",
            "/api/jobs",
            &[JSON],
            &json!({"id": "c-1", "type": "test_gate", "userId": 8,
                    "payload": {"gate": "gate:c-1", "record": "runs"}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("the handler to run", || async {
        let n: i64 = redis::cmd("LLEN")
            .arg("runs")
            .query_async(&mut redis.conn().await)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;

    // Another user may not cancel it; its owner (here via the function's user check) may.
    let other: Vec<String> = fcall(&redis, "relay_job_cancel", &["c-1", "9"]).await;
    assert_eq!(other, ["forbidden"]);
    let cancel: Vec<String> = fcall(&redis, "relay_job_cancel", &["c-1", "8"]).await;
    assert_eq!(cancel, ["cancelled", "running"]);
    let result = owner.recv_result().await["data"].clone();
    assert_eq!(
        result,
        json!({"jobId": "c-1", "userId": 8, "type": "test_gate", "status": "cancelled"})
    );
    w.await_log("job c-1: cancelled; its handler was stopped")
        .await;

    let again: Vec<String> = fcall(&redis, "relay_job_cancel", &["c-1"]).await;
    assert_eq!(again, ["finished", "cancelled"]);
    let state = get_job(&hub, "c-1").await;
    assert_eq!(
        (state["state"].clone(), state["attempts"].clone()),
        (json!("cancelled"), json!(1))
    );
    // Nothing is retried: with the gate open no second run starts, and the queue is empty.
    let _: () = redis::cmd("SET")
        .arg("gate:c-1")
        .arg(1)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let stats: Vec<String> = fcall(&redis, "relay_job_stats", &[]).await;
    assert_eq!(&stats[..6], ["0", "0", "0", "0", "0", "0"], "{stats:?}");
    let runs: i64 = redis::cmd("LLEN")
        .arg("runs")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(runs, 1);
}
