//! What the job tests share: real `relay-hub worker` processes with the test-only job types
//! (`test_sleep`, `test_gate`, `test_fail`, which record every run in a Redis list), and the
//! job routes of a real hub.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use super::{eventually, Hub, Redis};

pub const JSON: (&str, &str) = ("content-type", "application/json");

/// A `relay-hub worker` process.
pub struct WorkerProc {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

/// Starts a worker named `id` against `redis` with the test handlers, no demo latency, and
/// `env` on top. Its log (stderr, info level) is collected for [`WorkerProc::await_log`].
pub fn worker(redis: &Redis, id: &str, env: &[(&str, &str)]) -> WorkerProc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-hub"));
    cmd.arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "info")
        .env("HUB_WORKER_ID", id)
        .env("HUB_WORKER_TEST_HANDLERS", "1")
        .env("HUB_DEMO_LATENCY_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start relay-hub worker");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    let echo = std::env::var("HUB_TEST_LOG").is_ok();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("{line}");
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    WorkerProc {
        child: Some(child),
        log,
    }
}

impl WorkerProc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("worker running").id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("worker running");
        tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap()
    }

    /// Waits until the worker has advertised its job types and takes jobs.
    pub async fn ready(self) -> Self {
        self.await_log("taking jobs").await;
        self
    }

    /// Waits until the worker's log contains `text`.
    pub async fn await_log(&self, text: &str) {
        eventually(&format!("worker log line `{text}`"), || async {
            self.log.lock().unwrap().contains(text).then_some(())
        })
        .await
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `POST /api/jobs` (202 expected); returns the reply.
pub async fn post_job(hub: &Hub, headers: &[(&str, &str)], job: Value) -> Value {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    let (status, body) = hub.http("POST", "/api/jobs", &all, &job.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["status"], "queued");
    reply
}

/// Enqueues a job with the given id through `POST /api/jobs` (a worker for `kind` runs).
pub async fn enqueue(hub: &Hub, id: &str, kind: &str, user: Value, payload: Value) {
    let reply = post_job(
        hub,
        &[],
        json!({"id": id, "type": kind, "userId": user, "payload": payload}),
    )
    .await;
    assert_eq!(reply["id"], id);
}

/// Like [`enqueue`], before any worker for `kind` runs (`waitForWorker`).
pub async fn enqueue_early(hub: &Hub, id: &str, kind: &str, user: Value, payload: Value) {
    let reply = post_job(
        hub,
        &[],
        json!({"id": id, "type": kind, "userId": user, "payload": payload,
               "waitForWorker": true}),
    )
    .await;
    assert_eq!(reply["id"], id);
}

/// `GET /api/jobs/{id}` as (status, JSON).
pub async fn get_job(hub: &Hub, id: &str) -> (u16, Value) {
    let (status, body) = hub.http("GET", &format!("/api/jobs/{id}"), &[], "").await;
    (status, serde_json::from_str(&body).expect("JSON body"))
}

/// Waits until a job reaches `state`; returns its JSON.
pub async fn await_state(hub: &Hub, id: &str, state: &str) -> Value {
    eventually(&format!("job {id} to be {state}"), || async {
        let (status, job) = get_job(hub, id).await;
        (status == 200 && job["state"] == state).then_some(job)
    })
    .await
}

pub async fn xlen(redis: &Redis, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

/// A job streamed by hand, as a worker streams it with the job library's functions: enqueued
/// (type `stream_test`), claimed by worker `w`, its chunks recorded with its lease. `prefix`
/// is the queue's (`jobs`, `{jobs}` on a cluster).
pub struct HandJob {
    pub id: String,
    prefix: String,
    lease: String,
}

/// `FCALL <name> 1 <prefix> <args>` on `conn`.
pub async fn job_fcall<T: redis::FromRedisValue>(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
    name: &str,
    args: &[&str],
) -> T {
    redis::cmd("FCALL")
        .arg(name)
        .arg(1)
        .arg(prefix)
        .arg(args)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("FCALL {name}: {e}"))
}

/// [`job_fcall`] on `redis`'s queue (prefix `jobs`).
pub async fn fcall<T: redis::FromRedisValue>(redis: &Redis, name: &str, args: &[&str]) -> T {
    job_fcall(&mut redis.conn().await, "jobs", name, args).await
}

/// Enqueues a `stream_test` job of `user` through the hub's API (the type advertised first,
/// so that the hub takes it) and claims it as worker `w`; returns the lease.
pub async fn enqueue_and_claim(hub: &Hub, redis: &Redis, id: &str, user: &str) -> String {
    let _: i64 = fcall(redis, "relay_job_advertise", &["86400000", "stream_test"]).await;
    let job = json!({"id": id, "type": "stream_test", "userId": user, "payload": {}});
    let (status, body) = hub
        .http("POST", "/api/jobs", &[JSON], &job.to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    let claim_args = ["w", "30000", "3", "60000", "100", "stream_test"];
    let claim: Vec<String> = fcall(redis, "relay_job_claim", &claim_args).await;
    assert_eq!(claim[7], id);
    claim[5].clone()
}

impl HandJob {
    /// Enqueues job `id` of `user` and claims it.
    pub async fn start(
        conn: &mut impl redis::aio::ConnectionLike,
        prefix: &str,
        id: &str,
        user: &str,
    ) -> HandJob {
        let user = Value::from(user).to_string();
        let args = [id, "stream_test", &user, "normal", "{}", "600000", "0", "0"];
        let queued: Vec<String> = job_fcall(conn, prefix, "relay_job_enqueue", &args).await;
        assert_eq!(queued[0], "queued", "{queued:?}");
        let claim_args = ["w", "30000", "3", "600000", "100", "stream_test"];
        let claim: Vec<String> = job_fcall(conn, prefix, "relay_job_claim", &claim_args).await;
        assert_eq!(claim.get(7).map(String::as_str), Some(id), "{claim:?}");
        HandJob {
            id: id.to_owned(),
            prefix: prefix.to_owned(),
            lease: claim[5].clone(),
        }
    }

    /// Records the next chunk; asserts it got `seq`.
    pub async fn chunk(&self, conn: &mut impl redis::aio::ConnectionLike, seq: u64, delta: &str) {
        let args = [self.id.as_str(), &self.lease, delta];
        let got: i64 = job_fcall(conn, &self.prefix, "relay_job_chunk", &args).await;
        assert_eq!(got, seq as i64, "chunk {delta:?} of {}", self.id);
    }

    /// Fails this attempt (to be retried at once) and claims the job again: the new attempt's
    /// chunks continue the job's seq.
    pub async fn retry(self, conn: &mut impl redis::aio::ConnectionLike) -> HandJob {
        let args = [
            &self.id,
            &self.lease,
            "boom",
            "0",
            "3",
            "30000",
            "0",
            "600000",
        ];
        let failed: String = job_fcall(conn, &self.prefix, "relay_job_fail", &args).await;
        assert_eq!(failed, "retry");
        let claim_args = ["w", "30000", "3", "600000", "100", "stream_test"];
        let claim: Vec<String> =
            job_fcall(conn, &self.prefix, "relay_job_claim", &claim_args).await;
        assert_eq!(claim.get(7), Some(&self.id), "{claim:?}");
        assert_eq!(claim[4], "2", "the second attempt: {claim:?}");
        HandJob {
            lease: claim[5].clone(),
            ..self
        }
    }
}

/// A job's text as a client builds it from `ai-chunk` payloads (a replay may merge a run of
/// chunks into one: `seq` its last, `from` its first): each must follow the last one seen,
/// so a chunk lost, repeated or out of order fails.
#[derive(Debug, Default)]
pub struct JobText {
    pub last: u64,
    pub text: String,
    /// Payloads that held more than one chunk.
    pub merged: usize,
}

impl JobText {
    /// Text seen up to chunk `last` (the client's own before it came back).
    pub fn after(last: u64, text: &str) -> JobText {
        JobText {
            last,
            text: text.to_owned(),
            merged: 0,
        }
    }

    /// Applies one `ai-chunk` payload.
    pub fn apply(&mut self, data: &Value) {
        let seq = data["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("a seq: {data}"));
        let from = data.get("from").map_or(seq, |f| f.as_u64().expect("from"));
        assert_eq!(
            from,
            self.last + 1,
            "every chunk once and in order: {data} after chunk {} ({:?})",
            self.last,
            self.text
        );
        assert!(seq >= from, "{data}");
        if seq > from {
            self.merged += 1;
        }
        self.last = seq;
        self.text.push_str(data["delta"].as_str().expect("a delta"));
    }
}
