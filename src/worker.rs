//! `relay-hub worker`: a job worker process built on the `hub_jobs` library, with the
//! built-in `llama_inference` demo handler.
//!
//! With `HUB_WORKER_TEST_HANDLERS=1` it also serves job types meant only for the test suite
//! (they let a test control a job from outside the process). Each one first appends
//! `"{jobId}|{workerId}|{attempt}"` to the Redis list named by `payload.record` (if given),
//! so a test can prove which worker ran what, and how often:
//! - `test_sleep`: sleeps `payload.ms` (default 0) and returns `{"worker", "slept"}`.
//! - `test_gate`: waits until the Redis key `payload.gate` exists, returns `{"worker"}`.
//! - `test_fail`: always fails (retryable).

use std::{future::Future, time::Duration};

use hub_jobs::{
    demo::{llama_inference, LLAMA_INFERENCE},
    Job, JobError, QueueSettings, Worker,
};
use hub_store::{Conn, ConnSettings};
use serde_json::{json, Value};

use crate::config::WorkerEnv;

/// Runs a worker until `stop` resolves; errors only when it cannot be set up.
pub async fn run(env: WorkerEnv, stop: impl Future<Output = ()>) -> Result<(), String> {
    let target = env.redis.target()?;
    let settings = QueueSettings {
        state_ttl: env.job_state_ttl,
        ..QueueSettings::for_target(target.is_cluster())
    };
    let consumer = env.worker.consumer.clone();
    let mut worker = Worker::new(&target, settings, env.worker).map_err(|e| e.to_string())?;
    worker.handle(LLAMA_INFERENCE, llama_inference(env.demo_latency));
    if env.test_handlers {
        let conn = target.connect(ConnSettings::default())?;
        register_test_handlers(&mut worker, conn, consumer);
    }
    worker.run(stop).await;
    Ok(())
}

/// Appends `"{jobId}|{worker}|{attempt}"` to `payload.record` when the payload names a list.
async fn record(conn: &Conn, job: &Job, worker: &str) -> Result<(), JobError> {
    let Some(list) = job.payload.get("record").and_then(Value::as_str) else {
        return Ok(());
    };
    redis::cmd("RPUSH")
        .arg(list)
        .arg(format!("{}|{worker}|{}", job.id, job.attempt))
        .query_async::<i64>(&mut conn.clone())
        .await
        .map(|_| ())
        .map_err(|e| JobError::retry(format!("record to {list}: {e}")))
}

fn register_test_handlers(worker: &mut Worker, conn: Conn, consumer: String) {
    let (c, w) = (conn.clone(), consumer.clone());
    worker.handle("test_sleep", move |job: Job| {
        let (conn, worker) = (c.clone(), w.clone());
        async move {
            record(&conn, &job, &worker).await?;
            let ms = job.payload.get("ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({"worker": worker, "slept": ms}))
        }
    });
    let (c, w) = (conn.clone(), consumer.clone());
    worker.handle("test_gate", move |job: Job| {
        let (conn, worker) = (c.clone(), w.clone());
        async move {
            record(&conn, &job, &worker).await?;
            let Some(gate) = job.payload.get("gate").and_then(Value::as_str) else {
                return Err(JobError::permanent("test_gate needs `payload.gate`"));
            };
            loop {
                let open: bool = redis::cmd("EXISTS")
                    .arg(gate)
                    .query_async(&mut conn.clone())
                    .await
                    .unwrap_or(false);
                if open {
                    return Ok(json!({"worker": worker}));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    worker.handle("test_fail", move |job: Job| {
        let (conn, worker) = (conn.clone(), consumer.clone());
        async move {
            record(&conn, &job, &worker).await?;
            Err(JobError::retry(format!(
                "test_fail always fails (attempt {})",
                job.attempt
            )))
        }
    });
}
