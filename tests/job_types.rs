//! Job types and the workers that handle them (docs/jobs.md#job-types-and-workers), against a
//! private redis-server, the real hub, and real `relay-hub worker` processes (the embeddable
//! worker library where a type no worker process has is needed): a known type is queued
//! whatever the workers do now, a type never seen is refused, and jobs set aside for a worker
//! of their type are capped and go with their state.

mod common;

use std::collections::HashMap;

use common::jobs::{await_state, enqueue_early, get_job, worker, xlen, JSON};
use common::{eventually, hub, Hub, Redis};
use hub_jobs::{JobError, QueueSettings, Worker, WorkerConfig};
use serde_json::{json, Value};

/// `POST /api/jobs` as (status, JSON).
async fn post(hub: &Hub, job: Value) -> (u16, Value) {
    let (status, body) = hub
        .http("POST", "/api/jobs", &[JSON], &job.to_string())
        .await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The Redis server's clock, in ms (the clock of the advertisements).
async fn redis_ms(redis: &Redis) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    secs * 1000 + micros / 1000
}

/// Makes the advertisement of `kind` `age_ms` old, as if its worker had stopped then.
async fn age_advertisement(redis: &Redis, kind: &str, age_ms: u64) {
    let at = redis_ms(redis).await - age_ms;
    let _: i64 = redis::cmd("ZADD")
        .arg("jobs:types")
        .arg(at)
        .arg(kind)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
}

/// A counter of the `jobs:stats` hash.
async fn stat(redis: &Redis, field: &str) -> u64 {
    let v: Option<u64> = redis::cmd("HGET")
        .arg("jobs:stats")
        .arg(field)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    v.unwrap_or(0)
}

/// An in-process worker for the type `square` (no worker process has it), until dropped.
struct Squares(
    Option<tokio::sync::oneshot::Sender<()>>,
    tokio::task::JoinHandle<()>,
);

fn squares(redis: &Redis, settings: QueueSettings, concurrency: usize) -> Squares {
    let store = hub_store::Store::server(&redis.url()).unwrap();
    let config = WorkerConfig {
        consumer: "squares".into(),
        concurrency,
        ..WorkerConfig::default()
    };
    let mut w = Worker::new(&store, settings, config).unwrap();
    w.handle("square", |job| async move {
        let n = job
            .payload
            .as_u64()
            .ok_or_else(|| JobError::permanent("not a number"))?;
        Ok(json!(n * n))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        w.run(async {
            let _ = stopped.await;
        })
        .await;
    });
    Squares(Some(stop), run)
}

impl Squares {
    async fn stop(mut self) {
        let _ = self.0.take().unwrap().send(());
        (&mut self.1).await.unwrap();
    }
}

#[tokio::test]
async fn a_type_never_seen_is_refused_unless_the_caller_waits_for_a_worker() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let job = json!({"id": "j1", "type": "test_sleep", "userId": 1, "payload": {}});

    // No worker ever ran: refused in plain words, nothing queued, counted.
    let (status, err) = post(&hub, job.clone()).await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("no_worker"))
    );
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no worker ever handled job type `test_sleep` (no type is known")
            && message.contains("HUB_JOB_TYPES")
            && message.contains("\"waitForWorker\": true"),
        "{message}"
    );
    assert_eq!(xlen(&redis, "jobs:stream:normal").await, 0);
    assert_eq!(get_job(&hub, "j1").await.0, 404);
    assert_eq!(hub.metric("hub_jobs_rejected_total").await, 1.0);

    // The caller opts in: queued for a worker yet to come (none is live), without the option
    // in the job.
    let mut early = job.clone();
    early["waitForWorker"] = json!(true);
    let (status, reply) = post(&hub, early).await;
    assert_eq!((status, reply["workerLive"].clone()), (202, json!(false)));
    let stored: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("jobs:stream:normal")
        .arg("-")
        .arg("+")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&stored[0].1["job"]).unwrap();
    assert!(body.get("waitForWorker").is_none(), "{body}");

    // A worker advertises its types: they are known and live, others still refused, and the
    // early job runs.
    let _w = worker(&redis, "w1", &[]).ready().await;
    await_state(&hub, "j1", "done").await;
    let (status, reply) = post(
        &hub,
        json!({"id": "j2", "type": "test_sleep", "userId": 1, "payload": {}}),
    )
    .await;
    assert_eq!(
        (status, reply["status"].clone(), reply["workerLive"].clone()),
        (202, json!("queued"), json!(true))
    );
    let (status, err) = post(
        &hub,
        json!({"type": "translate", "userId": 1, "payload": {}}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("no_worker"))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("known types: llama_inference, test_fail, test_gate, test_sleep"),
        "{err}"
    );
    // A duplicate id stays idempotent, even with a type never seen.
    let mut again = job;
    again["type"] = json!("translate");
    let (status, reply) = post(&hub, again).await;
    assert_eq!((status, reply["duplicate"].clone()), (202, json!(true)));
}

#[tokio::test]
async fn a_known_type_is_queued_while_no_worker_is_live() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JOB_TYPES", "square")]).await;

    // A worker ran, and crashed a minute ago (its deploy, or a crash loop, takes longer than
    // the 30 s liveness window); another type was last seen two days ago.
    let crashed = worker(&redis, "crashed", &[]).ready().await;
    drop(crashed);
    for kind in ["llama_inference", "test_fail", "test_gate", "test_sleep"] {
        age_advertisement(&redis, kind, 60_000).await;
    }
    age_advertisement(&redis, "gone_type", 2 * 24 * 3600 * 1000).await;

    // Advertised within the day: queued, and the reply says no worker is live.
    let (status, reply) = post(
        &hub,
        json!({"id": "deploy-1", "type": "test_sleep", "userId": 1, "payload": {}}),
    )
    .await;
    assert_eq!(
        (status, reply["status"].clone(), reply["workerLive"].clone()),
        (202, json!("queued"), json!(false)),
        "{reply}"
    );
    // Listed in HUB_JOB_TYPES, never advertised: queued too.
    let (status, reply) = post(
        &hub,
        json!({"id": "listed-1", "type": "square", "userId": 1, "payload": 3}),
    )
    .await;
    assert_eq!((status, reply["workerLive"].clone()), (202, json!(false)));
    // Seen too long ago, or never: refused, nothing queued.
    for kind in ["gone_type", "never_seen"] {
        let (status, err) = post(&hub, json!({"type": kind, "userId": 1, "payload": {}})).await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (400, json!("no_worker")),
            "{kind}"
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message
                .contains("known types: llama_inference, square, test_fail, test_gate, test_sleep"),
            "{message}"
        );
    }
    assert_eq!(xlen(&redis, "jobs:stream:normal").await, 2);

    // The workers are back: what was queued meanwhile runs.
    let _w = worker(&redis, "back", &[]).ready().await;
    await_state(&hub, "deploy-1", "done").await;
    let squares = squares(&redis, QueueSettings::default(), 1);
    assert_eq!(await_state(&hub, "listed-1", "done").await["result"], 9);
    squares.stop().await;
    let (_, reply) = post(
        &hub,
        json!({"type": "test_sleep", "userId": 1, "payload": {}}),
    )
    .await;
    assert_eq!(reply["workerLive"], true);
}
#[tokio::test]
async fn a_worker_without_the_jobs_type_leaves_it_for_one_that_has_it() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("7").await;
    // This worker handles llama_inference and the test types, not `square`.
    let _other = worker(&redis, "other", &[]).ready().await;
    enqueue_early(&hub, "sq", "square", json!(7), json!(4)).await;

    // It meets the job and sets it aside: queued, no attempt counted, nothing sent to the user.
    eventually("the job to be parked", || async {
        let parked: Option<u64> = redis::cmd("HGET")
            .arg("jobs:stats")
            .arg("parked")
            .query_async(&mut redis.conn().await)
            .await
            .unwrap();
        (parked == Some(1)).then_some(())
    })
    .await;
    let (_, job) = get_job(&hub, "sq").await;
    assert_eq!(
        (job["state"].clone(), job["attempts"].clone()),
        (json!("queued"), json!(0))
    );
    assert_eq!(xlen(&redis, "jobs:stream:normal").await, 0);

    // A worker for the type comes and runs it on its first attempt.
    let store = hub_store::Store::server(&redis.url()).unwrap();
    let config = WorkerConfig {
        consumer: "squares".into(),
        ..WorkerConfig::default()
    };
    let mut squares = Worker::new(&store, QueueSettings::default(), config).unwrap();
    squares.handle("square", |job| async move {
        let n = job
            .payload
            .as_u64()
            .ok_or_else(|| JobError::permanent("not a number"))?;
        Ok(json!(n * n))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(squares.run(async {
        let _ = stopped.await;
    }));
    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        (
            result["jobId"].clone(),
            result["status"].clone(),
            result["result"].clone()
        ),
        (json!("sq"), json!("success"), json!(16))
    );
    let job = await_state(&hub, "sq", "done").await;
    assert_eq!(
        (job["attempts"].clone(), job["worker"].clone()),
        (json!(1), json!("squares"))
    );
    assert_eq!(hub.metric("hub_jobs_parked_total").await, 1.0);
    stop.send(()).unwrap();
    run.await.unwrap();
}

#[tokio::test]
async fn parked_jobs_past_the_cap_are_dead_lettered_oldest_first() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("5").await;
    // A worker without the type `square`, whose queue keeps at most 2 jobs of a type parked.
    let store = hub_store::Store::server(&redis.url()).unwrap();
    let settings = QueueSettings {
        parked_max: 2,
        ..QueueSettings::default()
    };
    let config = WorkerConfig {
        consumer: "cubes".into(),
        ..WorkerConfig::default()
    };
    let mut cubes = Worker::new(&store, settings.clone(), config).unwrap();
    cubes.handle("cube", |job| async move { Ok(json!(job.payload)) });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(cubes.run(async {
        let _ = stopped.await;
    }));
    for i in 0..3 {
        enqueue_early(&hub, &format!("sq-{i}"), "square", json!(5), json!(i)).await;
        eventually("the job to be parked", || async {
            (stat(&redis, "parked").await == i + 1).then_some(())
        })
        .await;
    }

    // The oldest went to the dead letters, the user was told; the two newest wait.
    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        (result["jobId"].clone(), result["status"].clone()),
        (json!("sq-0"), json!("error"))
    );
    assert!(
        result["error"].as_str().unwrap().contains("parked cap"),
        "{result}"
    );
    assert_eq!(get_job(&hub, "sq-0").await.1["state"], "failed");
    assert_eq!(xlen(&redis, "jobs:parked:square").await, 2);
    assert_eq!(xlen(&redis, "jobs:dead").await, 1);
    assert_eq!(hub.metric("hub_jobs_failed_total").await, 1.0);
    stop.send(()).unwrap();
    run.await.unwrap();

    // A worker of the type runs the two that waited.
    let squares = squares(&redis, settings, 1);
    for (id, square) in [("sq-1", 1), ("sq-2", 4)] {
        assert_eq!(await_state(&hub, id, "done").await["result"], square);
    }
    squares.stop().await;
}

#[tokio::test]
async fn a_parked_job_goes_with_its_state() {
    let redis = Redis::start().await;
    let ttl = [("HUB_JOB_STATE_TTL_SECS", "4")];
    let hub = hub(&redis, &ttl).await;
    // This worker process handles the test types, not `square`: it parks square jobs.
    let _other = worker(&redis, "other", &ttl).ready().await;
    let park = |id: &'static str, n: u64| {
        let (hub, redis) = (&hub, &redis);
        async move {
            enqueue_early(hub, id, "square", json!(1), json!(n)).await;
            eventually(&format!("{id} to be parked"), || async {
                let parked = stat(redis, "parked").await;
                (parked == if id == "old" { 1 } else { 2 }).then_some(())
            })
            .await;
        }
    };
    let pttl = |key: &'static str| {
        let redis = &redis;
        async move {
            let ms: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut redis.conn().await)
                .await
                .unwrap();
            ms
        }
    };
    park("old", 2).await;
    let parked_at = redis_ms(&redis).await;
    // Half the TTL later, another job of the type is parked.
    eventually("half the state TTL to pass", || async {
        (redis_ms(&redis).await >= parked_at + 2000).then_some(())
    })
    .await;
    park("new", 3).await;
    // The parked stream lives no longer than its newest job's state (read first: both tick).
    let state = pttl("jobs:job:new").await;
    assert!(pttl("jobs:parked:square").await <= state);

    // The first job's state expires while no worker of its type comes; then one comes (one
    // job at a time: the expired job, were it put back, would run first). Only the live job
    // runs; the expired one does not come back.
    eventually("the old job's state to expire", || async {
        (get_job(&hub, "old").await.0 == 404).then_some(())
    })
    .await;
    let settings = QueueSettings {
        state_ttl: std::time::Duration::from_secs(4),
        ..QueueSettings::default()
    };
    let squares = squares(&redis, settings, 1);
    assert_eq!(await_state(&hub, "new", "done").await["result"], 9);
    assert_eq!(get_job(&hub, "old").await.0, 404);
    assert_eq!(xlen(&redis, "jobs:parked:square").await, 0);
    assert_eq!(hub.metric("hub_jobs_parked_expired_total").await, 1.0);
    squares.stop().await;
}

/// `n` with thousands separators, as the docs write it (`10,000`).
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The queue's figures the docs repeat are the code's: the parked and dead-letter caps, the
/// liveness window (30 s), how long a type stays known (a day), how often workers advertise.
#[test]
fn the_docs_give_the_queues_figures() {
    let read = |page: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
        let text = std::fs::read_to_string(path).unwrap();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let (jobs, api) = (read("docs/jobs.md"), read("docs/http-api.md"));
    let d = QueueSettings::default();
    assert_eq!(d.known_for.as_secs(), 24 * 3600, "the docs say a day");
    let live = format!("{} s", d.live_window.as_secs());
    let beat = format!("{} s", d.live_window.as_secs() / 6);
    let wants = [
        (
            &jobs,
            format!("At most {} jobs of one type", grouped(d.parked_max)),
        ),
        (&jobs, format!("at most {} entries", grouped(d.parked_max))),
        (
            &jobs,
            format!("capped at ~{} entries", grouped(hub_jobs::DEAD_LETTER_MAX)),
        ),
        (&jobs, format!("advertised the type in the last {live}")),
        (&jobs, format!("known for a day, live for {live}")),
        (&jobs, format!("then every {beat} while it runs")),
        (&jobs, "advertised within the last day".to_string()),
        (&api, format!("advertised it in the last {live}")),
        (&api, "within the last day".to_string()),
    ];
    for (page, want) in wants {
        assert!(page.contains(&want), "the docs do not say `{want}`");
    }
}
