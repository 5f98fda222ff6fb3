//! The reliable AI job queue (`docs/jobs.md`) and the worker library that runs its jobs.
//!
//! # Layout
//! - this file: the job types (what a service enqueues, what a handler receives, what
//!   `GET /api/jobs/{id}` shows) and their validation (pure functions).
//! - [`queue`]: [`JobQueue`], every Redis operation, each one atomic (Redis functions, the worker
//!   protocol of `docs/jobs.md`).
//! - [`worker`]: [`Worker`], the embeddable runtime: handlers per job `type`, N concurrent
//!   jobs, heartbeats, graceful stop.
//! - [`stream`]: [`JobStream`], a handler's chunks and cancellation.
//! - [`scripts`]: the Redis function library (the worker protocol of `docs/jobs.md`).
//! - [`demo`]: the built-in `llama_inference` handler (real, cheap text analysis).
//! - [`stats`]: queue metrics for `/metrics`, read from Redis at scrape time.
//!
//! # Redis keys (prefix `jobs` by default)
//! - `jobs:stream:{high|normal|low}`: one stream per priority, consumer group `workers`.
//!   An entry holds the job (`id`, `type`, `userId`, `enqueuedAt`, `job` = the AIJob JSON).
//!   An entry is deleted once its job is done or dead-lettered, so a stream's length is the
//!   number of unfinished jobs of that priority.
//! - `jobs:job:{id}`: a hash with the job's state (`queued`, `running`, `done`, `failed`),
//!   attempts, result or error and timestamps; its TTL (24 h by default) restarts at every
//!   change.
//! - `jobs:chunks:{id}`: the chunks the current attempt streamed (`s` = seq, `d` = delta);
//!   expires with the state hash.
//! - `jobs:dead`: the dead-letter stream (capped at about [`DEAD_LETTER_MAX`] entries).
//! - `jobs:parked:{type}`: jobs set aside by workers without a handler for `type`, at most
//!   [`QueueSettings::parked_max`]; an entry goes with its job's state (same TTL).
//! - `jobs:stats`: cluster-wide counters and the latency histogram, written by the scripts.
//! - `jobs:types`: the job types workers handle (sorted set, score = when a worker last
//!   advertised the type, Redis clock in ms). Each worker advertises its types at start and
//!   then six times per [`QueueSettings::live_window`] (30 s by default) while it runs.
//!
//! # Guarantees
//! - Enqueue is idempotent by job id while the job's state exists (its TTL).
//! - [`JobQueue::enqueue_if_known`] (what `POST /api/jobs` uses) adds a job of a known type
//!   (advertised within [`QueueSettings::known_for`], a day by default, or configured in
//!   [`QueueSettings::known_types`]) whether or not a worker runs now, and says whether one
//!   is live; [`JobQueue::enqueue`] adds any type. The job waits for a worker of its type.
//! - Each stream entry is delivered by the consumer group to one worker; a worker takes the
//!   highest priority job available (an expired one before a new one within a priority).
//! - A running job is held by a lease: the worker renews it (heartbeat) every third of the
//!   visibility timeout. A job whose worker stopped renewing is taken over by another worker
//!   once the visibility timeout has passed; the lease number fences the old worker, so
//!   exactly one result is recorded and published per job even if a stalled worker wakes up.
//!   Execution is at-least-once (a stalled worker may have run part of the handler); the
//!   recorded and published outcome is exactly-once.
//! - A failed attempt is retried after a backoff; after `maxAttempts` attempts (a worker lost
//!   mid-job counts as one) the job moves to `jobs:dead`, its state becomes `failed`, and an
//!   AIResult with `status: "error"` is published to `ai:results`.
//! - State changes, acknowledgements and the AIResult publish happen in one script, so a
//!   crash never leaves a job `done` without its result published, or the reverse.

pub mod demo;
pub mod queue;
pub mod scripts;
pub mod stats;
pub mod stream;
pub mod worker;

use std::fmt;

use serde_json::{Map, Value};

use hub_wire::protocol::is_valid_user_id;

pub use queue::Emitted;
pub use queue::{JobQueue, QueueSettings};
pub use stream::JobStream;
pub use worker::{Handler, JobError, Worker, WorkerConfig};

/// Dead-letter entries kept (approximately; older ones are trimmed).
pub const DEAD_LETTER_MAX: usize = 10_000;

/// Jobs of one type kept parked by default ([`QueueSettings::parked_max`]).
pub const PARKED_MAX: usize = 10_000;

/// Longest job id and job type.
pub const MAX_ID_LEN: usize = 128;

/// A job priority; each has its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Taken before everything else.
    High,
    /// The default.
    Normal,
    /// Taken when nothing else waits.
    Low,
}

impl Priority {
    /// Every priority, highest first (the order workers look in).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The name on the wire and in key names.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parses `high`, `normal` or `low`.
    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The lifecycle of a job, as stored in its state hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker (first time, or between attempts).
    Queued,
    /// A worker holds it.
    Running,
    /// Finished; the result is stored and was published.
    Done,
    /// Dead-lettered after its last attempt; the error was published.
    Failed,
    /// Cancelled by its user or the API before it finished; nothing is retried.
    Cancelled,
}

impl JobState {
    /// The name stored in Redis and shown over HTTP.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// What can go wrong talking to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobsError {
    /// A Redis command or script failed (the message names the operation).
    Redis(String),
    /// Redis answered something the queue did not write (a foreign or corrupted key).
    Corrupt(String),
}

impl fmt::Display for JobsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobsError::Redis(m) => write!(f, "redis: {m}"),
            JobsError::Corrupt(m) => write!(f, "unexpected data in redis: {m}"),
        }
    }
}

impl std::error::Error for JobsError {}

/// Why an AIJob was refused (the message is meant for the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidJob(pub String);

impl fmt::Display for InvalidJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidJob {}

/// A validated AIJob ready to enqueue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// The job id (given, or generated).
    pub id: String,
    /// The job `type`, which selects the handler.
    pub kind: String,
    /// The `userId` as given (number or string), so the AIResult carries it unchanged.
    pub user_id: Value,
    /// The priority stream it goes to.
    pub priority: Priority,
    /// The whole AIJob object: `id`, `priority` and `timestamp` filled in, unknown keys kept.
    pub job: Map<String, Value>,
}

/// True for ids and types of 1-128 characters of `A-Z a-z 0-9 : _ . -`.
pub fn is_valid_name(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'))
}

/// Parses a comma-separated list of job types (`HUB_JOB_TYPES`); blanks are skipped.
pub fn parse_types(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            is_valid_name(t)
                .then(|| t.to_string())
                .ok_or_else(|| format!("`{t}` is not a job type (1-128 of A-Z a-z 0-9 : _ . -)"))
        })
        .collect()
}

/// A fresh random job id (UUID v4 form).
pub fn generate_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to time and a process-wide counter, still unique.
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_be_bytes());
        b[12..].copy_from_slice(&(NEXT.fetch_add(1, Ordering::Relaxed) as u32).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn bad(message: impl Into<String>) -> InvalidJob {
    InvalidJob(message.into())
}

impl NewJob {
    /// Validates an AIJob `{id?, type, userId, payload, priority?, timestamp?}`. `now_ms` fills
    /// a missing `timestamp`; a missing `id` is generated. Unknown keys are kept.
    pub fn from_value(value: Value, now_ms: u64) -> Result<NewJob, InvalidJob> {
        let Value::Object(mut job) = value else {
            return Err(bad("the job must be a JSON object"));
        };
        let id = match job.get("id") {
            None | Some(Value::Null) => generate_id(),
            Some(Value::String(s)) if is_valid_name(s) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => return Err(bad(
                "`id` must be 1-128 characters of A-Z a-z 0-9 : _ . - (or a non-negative integer)",
            )),
        };
        let kind = match job.get("type") {
            Some(Value::String(s)) if is_valid_name(s) => s.clone(),
            Some(_) => {
                return Err(bad(
                    "`type` must be 1-128 characters of A-Z a-z 0-9 : _ . -",
                ))
            }
            None => return Err(bad("`type` is required")),
        };
        let user_id = match job.get("userId") {
            Some(v @ Value::String(s)) if is_valid_user_id(s) => v.clone(),
            Some(v @ Value::Number(n)) if n.is_u64() || n.is_i64() => {
                if !is_valid_user_id(&n.to_string()) {
                    return Err(bad("`userId` is not a valid user id"));
                }
                v.clone()
            }
            Some(_) => {
                return Err(bad(
                    "`userId` must be an integer or 1-128 characters of A-Z a-z 0-9 : _ . - @",
                ))
            }
            None => return Err(bad("`userId` is required")),
        };
        match job.get("payload") {
            None | Some(Value::Null) => return Err(bad("`payload` is required")),
            Some(_) => {}
        }
        let priority = match job.get("priority") {
            None | Some(Value::Null) => Priority::Normal,
            Some(Value::String(s)) => Priority::parse(s)
                .ok_or_else(|| bad("`priority` must be \"high\", \"normal\" or \"low\""))?,
            Some(_) => return Err(bad("`priority` must be \"high\", \"normal\" or \"low\"")),
        };
        match job.get("timestamp") {
            None | Some(Value::Null) => {
                job.insert("timestamp".into(), Value::from(now_ms));
            }
            Some(Value::Number(n)) if n.as_f64().is_some_and(|t| t >= 0.0) => {}
            Some(_) => return Err(bad("`timestamp` must be a non-negative number")),
        }
        job.insert("id".into(), Value::from(id.clone()));
        job.insert("priority".into(), Value::from(priority.as_str()));
        Ok(NewJob {
            id,
            kind,
            user_id,
            priority,
            job,
        })
    }
}

/// What enqueueing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The job was added to its priority stream; `worker_live` tells whether a worker
    /// advertised its type within [`QueueSettings::live_window`] (otherwise it waits for one).
    Queued {
        /// A worker for the type advertised it lately.
        worker_live: bool,
    },
    /// A job with this id already exists (idempotent enqueue): nothing was added.
    Duplicate(JobState),
    /// The job's type is unknown: no worker advertised it within
    /// [`QueueSettings::known_for`] and it is not one of [`QueueSettings::known_types`]
    /// ([`JobQueue::enqueue_if_known`]). Nothing was added. Holds the known types.
    Unknown(Vec<String>),
}

/// What cancelling a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was cancelled; it was in this state (queued or running).
    Cancelled(JobState),
    /// It had already ended in this state; nothing changed.
    Finished(JobState),
    /// No job has this id (or its state expired).
    Unknown,
    /// It is another user's job; nothing changed.
    Forbidden,
}

/// The chunks kept for a job (its current attempt), as `relay_job_chunks` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobChunks {
    /// The job's state now.
    pub state: JobState,
    /// The last seq emitted.
    pub last: u64,
    /// `(seq, delta)` after the asked seq, in order.
    pub chunks: Vec<(u64, String)>,
}

impl JobChunks {
    fn parse(reply: &[String]) -> Result<Option<JobChunks>, JobsError> {
        if reply.is_empty() {
            return Ok(None);
        }
        let corrupt =
            || JobsError::Corrupt(format!("chunks reply {:?}", &reply[..2.min(reply.len())]));
        if !reply.len().is_multiple_of(2) {
            return Err(corrupt());
        }
        let state = JobState::parse(&reply[0]).ok_or_else(corrupt)?;
        let last = reply[1].parse().map_err(|_| corrupt())?;
        let chunks = reply[2..]
            .chunks(2)
            .map(|c| Ok((c[0].parse().map_err(|_| corrupt())?, c[1].clone())))
            .collect::<Result<_, JobsError>>()?;
        Ok(Some(JobChunks {
            state,
            last,
            chunks,
        }))
    }
}

/// A job as its handler receives it.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The job `type`.
    pub kind: String,
    /// The `userId` as enqueued.
    pub user_id: Value,
    /// The job's `payload`.
    pub payload: Value,
    /// Its priority.
    pub priority: Priority,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// When it was enqueued (Redis clock, ms since the epoch).
    pub enqueued_at: u64,
    /// The whole AIJob object, unknown keys included.
    pub job: Map<String, Value>,
    /// Streams chunks of the result to the user and tells whether the job was cancelled.
    pub stream: stream::JobStream,
}

/// A job's state as `GET /api/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStatus {
    /// The job id.
    pub id: String,
    /// The job `type`.
    pub kind: String,
    /// The `userId` as enqueued.
    pub user_id: Value,
    /// Its priority.
    pub priority: Option<Priority>,
    /// Where it is in its lifecycle.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// The handler's result, once done.
    pub result: Option<Value>,
    /// The last error (while queued for a retry, or once failed).
    pub error: Option<String>,
    /// The consumer (worker) that ran or runs it last.
    pub worker: Option<String>,
    /// Enqueue time (Redis clock, ms).
    pub enqueued_at: Option<u64>,
    /// Start of the latest attempt.
    pub started_at: Option<u64>,
    /// When it finished (done or failed).
    pub finished_at: Option<u64>,
    /// Last state change.
    pub updated_at: Option<u64>,
    /// How long the successful attempt's handler ran, in ms.
    pub processing_time: Option<u64>,
    /// Chunks streamed so far (the last chunk's seq; 0 when the job streams nothing).
    pub chunks: u64,
}

impl JobStatus {
    /// The JSON shown over HTTP (camelCase; absent values left out).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id.clone()));
        m.insert("type".into(), Value::from(self.kind.clone()));
        m.insert("userId".into(), self.user_id.clone());
        if let Some(p) = self.priority {
            m.insert("priority".into(), Value::from(p.as_str()));
        }
        m.insert("state".into(), Value::from(self.state.as_str()));
        m.insert("attempts".into(), Value::from(self.attempts));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("result", self.result.clone());
        put("error", self.error.clone().map(Value::from));
        put("worker", self.worker.clone().map(Value::from));
        put("enqueuedAt", self.enqueued_at.map(Value::from));
        put("startedAt", self.started_at.map(Value::from));
        put("finishedAt", self.finished_at.map(Value::from));
        put("updatedAt", self.updated_at.map(Value::from));
        put("processingTime", self.processing_time.map(Value::from));
        put(
            "chunks",
            (self.chunks > 0).then_some(Value::from(self.chunks)),
        );
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: Value) -> Result<NewJob, InvalidJob> {
        NewJob::from_value(v, 1000)
    }

    #[test]
    fn a_minimal_job_gets_id_priority_and_timestamp() {
        let j = job(json!({"type": "llama_inference", "userId": 7, "payload": {"text": "hi"}}))
            .unwrap();
        assert_eq!(j.priority, Priority::Normal);
        assert_eq!(j.user_id, json!(7));
        assert_eq!(j.id.len(), 36);
        assert_eq!(j.job["id"], json!(j.id));
        assert_eq!(j.job["timestamp"], json!(1000));
        assert_eq!(j.job["priority"], json!("normal"));
    }

    #[test]
    fn given_fields_and_unknown_keys_are_kept() {
        let j = job(
            json!({"id": "a-1", "type": "t", "userId": "u@x", "payload": 1,
                           "priority": "high", "timestamp": 5, "extra": [1]}),
        )
        .unwrap();
        assert_eq!((j.id.as_str(), j.priority), ("a-1", Priority::High));
        assert_eq!(j.job["timestamp"], json!(5));
        assert_eq!(j.job["extra"], json!([1]));
        assert_eq!(
            job(json!({"id": 42, "type": "t", "userId": 1, "payload": {}}))
                .unwrap()
                .id,
            "42"
        );
    }

    #[test]
    fn bad_jobs_are_refused_with_a_reason() {
        let cases = [
            (json!([1]), "object"),
            (json!({"userId": 1, "payload": {}}), "`type` is required"),
            (json!({"type": "", "userId": 1, "payload": {}}), "`type`"),
            (json!({"type": "a b", "userId": 1, "payload": {}}), "`type`"),
            (json!({"type": "t", "payload": {}}), "`userId` is required"),
            (
                json!({"type": "t", "userId": 1.5, "payload": {}}),
                "`userId`",
            ),
            (
                json!({"type": "t", "userId": "a b", "payload": {}}),
                "`userId`",
            ),
            (json!({"type": "t", "userId": 1}), "`payload`"),
            (
                json!({"type": "t", "userId": 1, "payload": null}),
                "`payload`",
            ),
            (
                json!({"type": "t", "userId": 1, "payload": 1, "priority": "urgent"}),
                "`priority`",
            ),
            (
                json!({"type": "t", "userId": 1, "payload": 1, "priority": 1}),
                "`priority`",
            ),
            (
                json!({"type": "t", "userId": 1, "payload": 1, "id": "x y"}),
                "`id`",
            ),
            (
                json!({"type": "t", "userId": 1, "payload": 1, "id": -1}),
                "`id`",
            ),
            (
                json!({"type": "t", "userId": 1, "payload": 1, "timestamp": "now"}),
                "`timestamp`",
            ),
        ];
        for (v, expected) in cases {
            let err = job(v.clone()).unwrap_err();
            assert!(err.0.contains(expected), "{v}: {err}");
        }
    }

    #[test]
    fn generated_ids_are_distinct_uuid_v4() {
        let a = generate_id();
        let b = generate_id();
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert!(is_valid_name(&a));
    }

    #[test]
    fn names_round_trip() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        for s in ["queued", "running", "done", "failed", "cancelled"] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(JobState::parse("x"), None);
    }
}
