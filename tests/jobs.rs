//! The AI job queue end to end: a private redis-server, the real hub, and real
//! `relay-hub worker` processes (with the test-only job types `test_sleep`, `test_gate` and
//! `test_fail`, which record every run in a Redis list the test reads). The embeddable worker
//! library is also run in-process where the library itself is under test.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::jobs::{
    await_state, enqueue, enqueue_early, get_job, post_job, worker, xlen, WorkerProc, JSON,
};
use common::{eventually, hub, notification, Redis};
use hub_jobs::{JobError, JobQueue, JobState, NewJob, QueueSettings, Worker, WorkerConfig};
use serde_json::{json, Value};

/// The runs recorded by the test handlers in `list`: (job id, worker, attempt).
async fn runs(redis: &Redis, list: &str) -> Vec<(String, String, u32)> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(list)
        .arg(0)
        .arg(-1)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    raw.iter()
        .map(|r| {
            let parts: Vec<&str> = r.split('|').collect();
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts[2].parse().unwrap(),
            )
        })
        .collect()
}

/// Waits until `n` runs are recorded in `list` (the handler has started, not just the claim).
async fn await_runs(redis: &Redis, list: &str, n: usize) {
    eventually(&format!("{n} runs recorded in {list}"), || async {
        (runs(redis, list).await.len() >= n).then_some(())
    })
    .await
}

async fn set_key(redis: &Redis, key: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_worker_takes_the_highest_priority_first_under_backlog() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    // Interleaved backlog, enqueued while no worker runs.
    let mut ids = Vec::new();
    for i in 0..3 {
        for p in ["low", "normal", "high"] {
            let id = format!("{p}-{i}");
            post_job(
                &hub,
                &[],
                json!({"id": id, "type": "test_sleep", "userId": 1, "priority": p,
                       "payload": {"record": "runs"}, "waitForWorker": true}),
            )
            .await;
            ids.push(id);
        }
    }
    assert_eq!(
        hub.metric("hub_jobs_queue_depth{priority=\"high\"}").await,
        3.0
    );
    let _w = worker(&redis, "w1", &[("HUB_WORKER_CONCURRENCY", "1")]);
    eventually("all 9 jobs to run", || async {
        (runs(&redis, "runs").await.len() == 9).then_some(())
    })
    .await;
    let order: Vec<String> = runs(&redis, "runs")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    let expected: Vec<String> = ["high", "normal", "low"]
        .iter()
        .flat_map(|p| (0..3).map(move |i| format!("{p}-{i}")))
        .collect();
    assert_eq!(
        order, expected,
        "priority first, then FIFO within a priority"
    );
}

#[tokio::test]
async fn three_workers_run_300_jobs_exactly_once() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .map(|id| worker(&redis, id, &[("HUB_WORKER_CONCURRENCY", "4")]))
        .collect();
    for w in &workers {
        w.await_log("taking jobs").await;
    }
    let mut ids = HashSet::new();
    for i in 0..300 {
        let id = format!("job-{i}");
        let priority = ["high", "normal", "low"][i % 3];
        post_job(
            &hub,
            &[],
            json!({"id": id, "type": "test_sleep", "userId": i, "priority": priority,
                   "payload": {"record": "runs", "ms": i % 3}}),
        )
        .await;
        ids.insert(id);
    }
    eventually("300 recorded runs", || async {
        (runs(&redis, "runs").await.len() >= 300).then_some(())
    })
    .await;
    // Stop every worker (they finish what they hold) so no later run can hide.
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in &mut workers {
        assert_eq!(w.wait_exit().await, Some(0));
    }
    let recorded = runs(&redis, "runs").await;
    assert_eq!(recorded.len(), 300, "a job ran more than once");
    let ran: HashSet<String> = recorded.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ran, ids, "every job ran");
    assert!(
        recorded.iter().all(|r| r.2 == 1),
        "no job needed a second attempt"
    );
    for id in ["job-0", "job-150", "job-299"] {
        assert_eq!(get_job(&hub, id).await.1["state"], "done");
    }
    assert_eq!(hub.metric("hub_jobs_done_total").await, 300.0);
    assert_eq!(hub.metric("hub_jobs_latency_ms_count").await, 300.0);
    for p in ["high", "normal", "low"] {
        let depth = format!("hub_jobs_queue_depth{{priority=\"{p}\"}}");
        assert_eq!(hub.metric(&depth).await, 0.0);
    }
}

#[tokio::test]
async fn a_job_of_a_killed_worker_completes_on_another_after_the_visibility_timeout() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("7").await;
    let short = [("HUB_JOB_VISIBILITY_MS", "1000")];
    let mut a = worker(&redis, "A", &short).ready().await;
    enqueue(
        &hub,
        "crash-1",
        "test_gate",
        json!(7),
        json!({"gate": "gate:crash", "record": "runs"}),
    )
    .await;
    let running = await_state(&hub, "crash-1", "running").await;
    assert_eq!(running["worker"], "A");
    await_runs(&redis, "runs", 1).await;
    a.signal(libc::SIGKILL);
    a.wait_exit().await;
    set_key(&redis, "gate:crash").await;
    let _b = worker(&redis, "B", &short);

    let result = user.recv_result().await["data"].clone();
    assert_eq!(result["jobId"], "crash-1");
    assert_eq!(result["userId"], 7);
    assert_eq!(result["status"], "success");
    assert_eq!(result["result"]["worker"], "B");
    let done = await_state(&hub, "crash-1", "done").await;
    assert_eq!(
        (done["attempts"].clone(), done["worker"].clone()),
        (json!(2), json!("B"))
    );
    let recorded = runs(&redis, "runs").await;
    let who: Vec<(&str, u32)> = recorded.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(who, [("A", 1), ("B", 2)]);
    assert_eq!(hub.metric("hub_jobs_reclaimed_total").await, 1.0);
}

#[tokio::test]
async fn a_stalled_worker_that_wakes_up_after_a_takeover_publishes_nothing() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("6").await;
    let short = [("HUB_JOB_VISIBILITY_MS", "1000")];
    let a = worker(&redis, "A", &short).ready().await;
    enqueue(
        &hub,
        "stall-1",
        "test_gate",
        json!(6),
        json!({"gate": "gate:stall", "record": "runs"}),
    )
    .await;
    await_runs(&redis, "runs", 1).await;
    a.signal(libc::SIGSTOP);
    set_key(&redis, "gate:stall").await;
    let _b = worker(&redis, "B", &short);
    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        (result["jobId"].clone(), result["result"]["worker"].clone()),
        (json!("stall-1"), json!("B"))
    );

    // A wakes up with the gate open: its lease is gone, so its outcome is discarded.
    a.signal(libc::SIGCONT);
    a.await_log("lease lost").await;
    redis
        .publish("user:notifications:6", &notification("6", "marker"))
        .await;
    assert_eq!(
        user.recv_type("notification").await["data"]["title"],
        "marker",
        "exactly one result per job"
    );
    let done = get_job(&hub, "stall-1").await.1;
    assert_eq!(
        (done["worker"].clone(), done["attempts"].clone()),
        (json!("B"), json!(2))
    );
    let who: Vec<String> = runs(&redis, "runs")
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(who, ["A", "B"]);
}

#[tokio::test]
async fn an_always_failing_job_is_dead_lettered_and_the_user_gets_an_error() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("8").await;
    let _w = worker(&redis, "w1", &[("HUB_JOB_RETRY_BACKOFF_MS", "20")])
        .ready()
        .await;
    enqueue(
        &hub,
        "fail-1",
        "test_fail",
        json!("8"),
        json!({"record": "runs"}),
    )
    .await;

    let result = user.recv_result().await["data"].clone();
    assert_eq!(result["jobId"], "fail-1");
    assert_eq!(result["userId"], "8");
    assert_eq!(result["status"], "error");
    assert_eq!(result["attempts"], 3);
    assert!(
        result["error"].as_str().unwrap().contains("attempt 3"),
        "{result}"
    );
    let attempts: Vec<u32> = runs(&redis, "runs").await.iter().map(|r| r.2).collect();
    assert_eq!(attempts, [1, 2, 3], "maxAttempts defaults to 3");
    let failed = await_state(&hub, "fail-1", "failed").await;
    assert_eq!(failed["attempts"], 3);
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("jobs:dead")
        .arg("-")
        .arg("+")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["id"], "fail-1");
    assert_eq!(dead[0].1["attempts"], "3");

    // A permanent error (bad payload for the demo handler) is dead-lettered at once.
    enqueue(
        &hub,
        "bad-text",
        "llama_inference",
        json!("8"),
        json!({"text": 5}),
    )
    .await;
    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        (result["jobId"].clone(), result["status"].clone()),
        (json!("bad-text"), json!("error"))
    );
    assert!(result["error"].as_str().unwrap().contains("payload.text"));
    assert_eq!(await_state(&hub, "bad-text", "failed").await["attempts"], 1);

    // An entry some service added by hand, not through the queue, is dead-lettered as well.
    let _: String = redis::cmd("XADD")
        .arg("jobs:stream:normal")
        .arg("*")
        .arg(&[
            "id", "junk-1", "type", "x", "userId", "8", "job", "not json",
        ])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let result = user.recv_result().await["data"].clone();
    assert_eq!(
        (result["jobId"].clone(), result["status"].clone()),
        (json!("junk-1"), json!("error"))
    );
    assert!(result["error"]
        .as_str()
        .unwrap()
        .contains("not a JSON object"));

    assert_eq!(hub.metric("hub_jobs_failed_total").await, 3.0);
    assert_eq!(hub.metric("hub_jobs_retried_total").await, 2.0);
    assert_eq!(hub.metric("hub_jobs_dead_letters").await, 3.0);
}

#[tokio::test]
async fn jobs_enqueued_while_no_worker_runs_are_processed_when_one_starts() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("9").await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        let id = format!("early-{i}");
        enqueue_early(
            &hub,
            &id,
            "llama_inference",
            json!(9),
            json!({"text": format!("Job number {i}.")}),
        )
        .await;
        ids.insert(id);
    }
    assert_eq!(
        hub.metric("hub_jobs_queue_depth{priority=\"normal\"}")
            .await,
        5.0
    );
    assert_eq!(
        hub.metric("hub_jobs_pending{priority=\"normal\"}").await,
        0.0
    );
    assert_eq!(get_job(&hub, "early-0").await.1["state"], "queued");

    let _w = worker(&redis, "late", &[]);
    let mut got = HashSet::new();
    for _ in 0..5 {
        let result = user.recv_result().await["data"].clone();
        assert_eq!(result["status"], "success");
        assert_eq!(result["result"]["words"], 3);
        got.insert(result["jobId"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ids);
    eventually("the queue to drain", || async {
        (hub.metric("hub_jobs_queue_depth{priority=\"normal\"}")
            .await
            == 0.0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_result_reaches_the_users_websocket_end_to_end() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", "k3y")]).await;
    let mut alice = hub.user("42").await;
    let mut bob = hub.user("43").await;
    let _w = worker(&redis, "w1", &[]).ready().await;

    // No key: refused, nothing queued.
    let job = json!({"type": "llama_inference", "userId": 42,
                     "payload": {"text": "Rust workers analyse text. Redis keeps the queue!"}});
    let (status, _) = hub
        .http("POST", "/api/jobs", &[JSON], &job.to_string())
        .await;
    assert_eq!(status, 401);

    let reply = post_job(&hub, &[("authorization", "Bearer k3y")], job).await;
    let id = reply["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated id");
    let frame = alice.recv_result().await;
    let data = &frame["data"];
    assert_eq!(data["jobId"], id.as_str());
    assert_eq!(data["userId"], 42);
    assert_eq!(data["type"], "llama_inference");
    assert_eq!(data["status"], "success");
    assert_eq!(data["result"]["words"], 8);
    assert_eq!(data["result"]["sentences"], 2);
    assert_eq!(
        data["result"]["keywords"],
        json!(["analyse", "keeps", "queue", "redis", "rust"])
    );
    assert!(data["processingTime"].as_u64().is_some());

    // The dev route needs no key in dev mode, and the result arrives the same way.
    let (status, body) = hub
        .http(
            "POST",
            "/api/dev/jobs",
            &[JSON],
            &json!({"id": "dev-1", "type": "llama_inference", "userId": 42,
                    "payload": {"text": "From the demo page."}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let data = alice.recv_result().await["data"].clone();
    assert_eq!(
        (data["jobId"].clone(), data["result"]["words"].clone()),
        (json!("dev-1"), json!(4))
    );

    // Bob got neither result: his next frame is a marker sent after both.
    redis
        .publish("user:notifications:43", &notification("43", "marker"))
        .await;
    assert_eq!(
        bob.recv_type("notification").await["data"]["title"],
        "marker"
    );

    // Without dev mode the dev route does not exist.
    let jwt_hub = common::hub(
        &redis,
        &[("HUB_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")],
    )
    .await;
    let (status, _) = jwt_hub
        .http(
            "POST",
            "/api/dev/jobs",
            &[JSON],
            &json!({"type": "llama_inference", "userId": 1, "payload": {"text": "x"}}).to_string(),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn get_job_follows_a_job_through_each_state() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    assert_eq!(get_job(&hub, "nope").await.0, 404);
    let (status, err) = get_job(&hub, "a%20b").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("bad_request"))
    );

    enqueue_early(
        &hub,
        "life-1",
        "test_gate",
        json!(5),
        json!({"gate": "gate:life"}),
    )
    .await;
    let queued = get_job(&hub, "life-1").await.1;
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["attempts"], 0);
    assert_eq!(queued["type"], "test_gate");
    assert_eq!(queued["userId"], 5);
    assert_eq!(queued["priority"], "normal");
    assert!(queued["enqueuedAt"].as_u64().is_some());
    assert!(queued.get("startedAt").is_none() && queued.get("result").is_none());

    let _w = worker(&redis, "w1", &[("HUB_JOB_MAX_ATTEMPTS", "1")]);
    let running = await_state(&hub, "life-1", "running").await;
    assert_eq!(running["attempts"], 1);
    assert_eq!(running["worker"], "w1");
    assert!(running["startedAt"].as_u64() >= queued["enqueuedAt"].as_u64());

    set_key(&redis, "gate:life").await;
    let done = await_state(&hub, "life-1", "done").await;
    assert_eq!(done["result"], json!({"worker": "w1"}));
    assert!(done["finishedAt"].as_u64() >= running["startedAt"].as_u64());
    assert!(done["processingTime"].as_u64().is_some());
    assert!(done.get("error").is_none());

    enqueue(&hub, "life-2", "test_fail", json!(5), json!({})).await;
    let failed = await_state(&hub, "life-2", "failed").await;
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["error"], "test_fail always fails (attempt 1)");
    assert!(failed["finishedAt"].as_u64().is_some());
}

#[tokio::test]
async fn bad_jobs_are_refused_and_enqueue_is_idempotent() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let bad = [
        "not json".to_string(),
        json!([1]).to_string(),
        json!({"userId": 1, "payload": {}}).to_string(),
        json!({"type": "t", "payload": {}}).to_string(),
        json!({"type": "t", "userId": 1}).to_string(),
        json!({"type": "t", "userId": "a b", "payload": 1}).to_string(),
        json!({"type": "t", "userId": 1, "payload": 1, "priority": "urgent"}).to_string(),
        json!({"type": "t", "userId": 1, "payload": 1, "id": "has space"}).to_string(),
        json!({"type": "t", "userId": 1, "payload": 1, "waitForWorker": "yes"}).to_string(),
    ];
    for body in &bad {
        let (status, reply) = hub.http("POST", "/api/jobs", &[JSON], body).await;
        assert_eq!(status, 400, "{body:.60}");
        let err: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(err["error"]["code"], "bad_request");
    }
    assert_eq!(
        hub.metric("hub_jobs_rejected_total").await,
        bad.len() as f64
    );
    for p in ["high", "normal", "low"] {
        assert_eq!(xlen(&redis, &format!("jobs:stream:{p}")).await, 0);
    }

    let job = json!({"id": "once", "type": "t", "userId": 1, "payload": {},
                     "waitForWorker": true});
    assert!(post_job(&hub, &[], job.clone())
        .await
        .get("duplicate")
        .is_none());
    assert_eq!(post_job(&hub, &[], job).await["duplicate"], true);
    assert_eq!(xlen(&redis, "jobs:stream:normal").await, 1);
    assert_eq!(hub.metric("hub_jobs_enqueued_total").await, 1.0);
}

#[tokio::test]
async fn a_stopping_worker_finishes_or_releases_its_running_jobs() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;

    // Within the drain timeout: the job finishes on the stopping worker.
    let mut a = worker(&redis, "A", &[]).ready().await;
    enqueue(
        &hub,
        "drain-1",
        "test_gate",
        json!(1),
        json!({"gate": "gate:drain"}),
    )
    .await;
    await_state(&hub, "drain-1", "running").await;
    a.signal(libc::SIGTERM);
    a.await_log("stopping: waiting").await;
    set_key(&redis, "gate:drain").await;
    assert_eq!(a.wait_exit().await, Some(0));
    let done = get_job(&hub, "drain-1").await.1;
    assert_eq!(
        (done["state"].clone(), done["worker"].clone()),
        (json!("done"), json!("A"))
    );

    // Past the drain timeout: the job is released (not counted as an attempt) and another
    // worker takes it.
    let mut b = worker(&redis, "B", &[("HUB_WORKER_DRAIN_MS", "0")])
        .ready()
        .await;
    enqueue(
        &hub,
        "drain-2",
        "test_gate",
        json!(1),
        json!({"gate": "gate:release"}),
    )
    .await;
    await_state(&hub, "drain-2", "running").await;
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit().await, Some(0));
    let released = get_job(&hub, "drain-2").await.1;
    assert_eq!(
        (released["state"].clone(), released["attempts"].clone()),
        (json!("queued"), json!(0))
    );
    set_key(&redis, "gate:release").await;
    let _c = worker(&redis, "C", &[]);
    let done = await_state(&hub, "drain-2", "done").await;
    assert_eq!(
        (done["worker"].clone(), done["attempts"].clone()),
        (json!("C"), json!(1))
    );
    assert_eq!(hub.metric("hub_jobs_reclaimed_total").await, 0.0);
}

#[tokio::test]
async fn the_embedded_worker_library_runs_handlers_with_bounded_concurrency() {
    let redis = Redis::start().await;
    let store = hub_store::Store::server(&redis.url()).unwrap();
    let queue = JobQueue::connect(&store, QueueSettings::default()).unwrap();
    for i in 0..6 {
        let job = NewJob::from_value(
            json!({"id": format!("lib-{i}"), "type": "square", "userId": 1, "payload": i}),
            0,
        )
        .unwrap();
        queue.enqueue(&job).await.unwrap();
    }
    let config = WorkerConfig {
        consumer: "embedded".into(),
        concurrency: 3,
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(&store, QueueSettings::default(), config).unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Jobs meet in threes: with fewer than 3 slots they would wait forever (the test times out).
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let (flight, peak, meet) = (in_flight.clone(), most.clone(), barrier.clone());
    worker.handle("square", move |job| {
        let (flight, peak, meet) = (flight.clone(), peak.clone(), meet.clone());
        async move {
            let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            meet.wait().await;
            flight.fetch_sub(1, Ordering::SeqCst);
            let n = job
                .payload
                .as_u64()
                .ok_or_else(|| JobError::permanent("not a number"))?;
            Ok(json!(n * n))
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    for i in 0..6 {
        let id = format!("lib-{i}");
        let status = eventually(&format!("{id} done"), || async {
            let s = queue.status(&id).await.unwrap()?;
            (s.state == JobState::Done).then_some(s)
        })
        .await;
        assert_eq!(status.result, Some(json!(i * i)));
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "at most `concurrency` jobs at once"
    );
    stop.send(()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stops")
        .unwrap();
    assert_eq!(summary.done, 6);
}
