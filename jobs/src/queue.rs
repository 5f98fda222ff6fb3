//! [`JobQueue`]: the Redis side of the job queue. Services and the hub enqueue and read job
//! state through it; the [`Worker`](super::Worker) claims, renews, completes, fails and
//! releases jobs through it. Each operation is one Lua script (see `scripts.rs`).

use std::{sync::Arc, time::Duration};

use hub_store::{Conn, ConnSettings, Store};
use redis::{Script, ScriptInvocation};
use serde_json::{Map, Value};

use super::{
    scripts, stats::QueueStats, Enqueued, Job, JobState, JobStatus, JobsError, NewJob, Priority,
    DEAD_LETTER_MAX, PARKED_MAX,
};
use hub_wire::protocol::AI_RESULTS;

/// Where the queue lives in Redis and how long job state is kept.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// Key prefix (`jobs`): streams `{prefix}:stream:{priority}`, state `{prefix}:job:{id}`,
    /// `{prefix}:dead`, `{prefix}:stats`, advertised job types `{prefix}:types`.
    pub prefix: String,
    /// The consumer group every worker joins.
    pub group: String,
    /// How long a job's state (and its result) is kept after its last change.
    pub state_ttl: Duration,
    /// The channel results are published to (`ai:results`).
    pub results_channel: String,
    /// A job type has a live worker while a worker advertised it within this window (the
    /// enqueue reply says so); workers advertise six times per window.
    pub live_window: Duration,
    /// A job type is known while a worker advertised it within this window
    /// ([`JobQueue::enqueue_if_known`]); types unseen for longer are forgotten.
    pub known_for: Duration,
    /// Job types always known, advertised or not (the hub's `HUB_JOB_TYPES`).
    pub known_types: Vec<String>,
    /// Jobs of one type kept parked (set aside by workers without a handler for the type);
    /// past it the oldest are dead-lettered.
    pub parked_max: usize,
}

/// The default prefix on Redis Cluster: the hash tag keeps every key of the queue in one slot,
/// so each script's keys (some built inside the script) are on the node that runs it.
pub const CLUSTER_PREFIX: &str = "{jobs}";

impl QueueSettings {
    /// The defaults, for a cluster when `cluster` (prefix [`CLUSTER_PREFIX`]).
    pub fn for_target(cluster: bool) -> Self {
        let prefix = if cluster { CLUSTER_PREFIX } else { "jobs" };
        QueueSettings {
            prefix: prefix.into(),
            ..QueueSettings::default()
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            prefix: "jobs".into(),
            group: "workers".into(),
            state_ttl: Duration::from_secs(24 * 3600),
            results_channel: AI_RESULTS.into(),
            live_window: Duration::from_secs(30),
            known_for: Duration::from_secs(24 * 3600),
            known_types: Vec::new(),
            parked_max: PARKED_MAX,
        }
    }
}

/// A job a worker holds: the job plus what proves it still holds it.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    /// The job as its handler sees it.
    pub job: Job,
    /// The stream entry id.
    pub entry: String,
    /// The lease number; every other claim of the job gets another one.
    pub lease: String,
    /// Why the entry cannot run (not written by the queue); it fails permanently.
    pub invalid: Option<String>,
}

/// What a claim found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// A job to run.
    Job(Box<Claimed>),
    /// Nothing runnable; the last entry id of each stream, to wait for newer ones.
    Empty([String; 3]),
}

/// What happened to a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailOutcome {
    /// It will run again after the backoff.
    Retry,
    /// It went to the dead-letter stream and the user got an error result.
    Dead,
    /// The lease was lost meanwhile; nothing changed.
    Stale,
}

/// A cheap-to-clone handle on the queue.
#[derive(Clone)]
pub struct JobQueue {
    conn: Conn,
    settings: Arc<QueueSettings>,
    streams: Arc<[String; 3]>,
}

fn redis_err(what: impl std::fmt::Display) -> impl FnOnce(redis::RedisError) -> JobsError {
    move |e| JobsError::Redis(format!("{what}: {e}"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// A command connection that connects lazily and reconnects by itself. `response` must exceed
/// the longest blocking command sent on it.
pub(crate) fn connection(target: &Store, response: Duration) -> Result<Conn, JobsError> {
    let settings = ConnSettings {
        response_timeout: response,
        ..ConnSettings::default()
    };
    target
        .connect(settings)
        .map_err(|e| JobsError::Redis(format!("creating the job queue connection: {e}")))
}

impl JobQueue {
    /// A queue on an existing connection (e.g. the hub's command connection).
    pub fn new(conn: Conn, settings: QueueSettings) -> Self {
        let streams = Priority::ALL.map(|p| format!("{}:stream:{}", settings.prefix, p.as_str()));
        JobQueue {
            conn,
            settings: Arc::new(settings),
            streams: Arc::new(streams),
        }
    }

    /// A queue on a connection of its own to `target` (connects on first use).
    pub fn connect(target: &Store, settings: QueueSettings) -> Result<Self, JobsError> {
        Ok(JobQueue::new(
            connection(target, Duration::from_secs(3))?,
            settings,
        ))
    }

    /// The settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The stream of a priority.
    pub fn stream(&self, priority: Priority) -> &str {
        &self.streams[priority as usize]
    }

    /// The state hash key of a job.
    pub fn state_key(&self, id: &str) -> String {
        format!("{}:job:{id}", self.settings.prefix)
    }

    /// The dead-letter stream.
    pub fn dead_key(&self) -> String {
        format!("{}:dead", self.settings.prefix)
    }

    /// The counters hash.
    pub fn stats_key(&self) -> String {
        format!("{}:stats", self.settings.prefix)
    }

    /// The sorted set of advertised job types (score: when a worker last advertised it, ms).
    pub fn types_key(&self) -> String {
        format!("{}:types", self.settings.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        ms(self.settings.state_ttl).max(1)
    }

    /// Adds a job to its priority stream unless a job with its id exists. The job's type is
    /// not checked: it waits for a worker that handles it (see [`JobQueue::enqueue_if_known`]).
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued, JobsError> {
        self.enqueue_checked(job, false).await
    }

    /// Like [`JobQueue::enqueue`], but only for a known type: one a worker advertised within
    /// [`QueueSettings::known_for`], or one of [`QueueSettings::known_types`], whatever the
    /// workers do now. Otherwise nothing is written and the answer is [`Enqueued::Unknown`].
    /// A duplicate id answers [`Enqueued::Duplicate`] either way.
    pub async fn enqueue_if_known(&self, job: &NewJob) -> Result<Enqueued, JobsError> {
        self.enqueue_checked(job, true).await
    }

    async fn enqueue_checked(&self, job: &NewJob, check: bool) -> Result<Enqueued, JobsError> {
        let user = serde_json::to_string(&job.user_id).expect("JSON values serialize");
        let body = serde_json::to_string(&job.job).expect("JSON maps serialize");
        let listed = self.settings.known_types.contains(&job.kind);
        let known_ms = if check && !listed {
            ms(self.settings.known_for).max(1)
        } else {
            0
        };
        let reply: Vec<String> = scripts::ENQUEUE
            .key(self.state_key(&job.id))
            .key(self.stream(job.priority))
            .key(self.stats_key())
            .key(self.types_key())
            .arg(&self.settings.group)
            .arg(&job.id)
            .arg(&job.kind)
            .arg(user)
            .arg(job.priority.as_str())
            .arg(body)
            .arg(self.ttl_ms())
            .arg(ms(self.settings.live_window).max(1))
            .arg(known_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("enqueue job {}", job.id)))?;
        match reply.first().map(String::as_str) {
            Some("queued") => Ok(Enqueued::Queued {
                worker_live: reply.get(2).is_some_and(|l| l == "1"),
            }),
            Some("unknown") => {
                let mut known = reply[1..].to_vec();
                known.extend(self.settings.known_types.iter().cloned());
                known.sort();
                known.dedup();
                Ok(Enqueued::Unknown(known))
            }
            Some("duplicate") => {
                let state = reply
                    .get(1)
                    .and_then(|s| JobState::parse(s))
                    .ok_or_else(|| {
                        JobsError::Corrupt(format!("job {} has an unknown state", job.id))
                    })?;
                Ok(Enqueued::Duplicate(state))
            }
            _ => Err(JobsError::Corrupt(format!("enqueue reply {reply:?}"))),
        }
    }

    /// A job's state, or `None` when no job has this id (or its state expired).
    pub async fn status(&self, id: &str) -> Result<Option<JobStatus>, JobsError> {
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.state_key(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("read job {id}")))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |what: &str| JobsError::Corrupt(format!("job {id}: {what}"));
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
        let state = fields
            .get("state")
            .and_then(|s| JobState::parse(s))
            .ok_or_else(|| corrupt("no valid state"))?;
        let user_id = fields
            .get("userId")
            .and_then(|u| serde_json::from_str(u).ok())
            .ok_or_else(|| corrupt("no valid userId"))?;
        let result = match fields.get("result") {
            Some(r) => Some(serde_json::from_str(r).map_err(|_| corrupt("result is not JSON"))?),
            None => None,
        };
        Ok(Some(JobStatus {
            id: id.to_string(),
            kind: fields.get("type").cloned().unwrap_or_default(),
            user_id,
            priority: fields.get("priority").and_then(|p| Priority::parse(p)),
            state,
            attempts: num("attempts").unwrap_or(0) as u32,
            result,
            error: fields.get("error").cloned(),
            worker: fields.get("worker").cloned(),
            enqueued_at: num("enqueuedAt"),
            started_at: num("startedAt"),
            finished_at: num("finishedAt"),
            updated_at: num("updatedAt"),
            processing_time: num("processingTime"),
        }))
    }

    /// The queue's figures: depth and pending per priority, dead letters, counters, latency.
    pub async fn stats(&self) -> Result<QueueStats, JobsError> {
        let reply: Vec<String> = scripts::STATS
            .key(&self.streams[0])
            .key(&self.streams[1])
            .key(&self.streams[2])
            .key(self.dead_key())
            .key(self.stats_key())
            .arg(&self.settings.group)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("read queue stats"))?;
        QueueStats::parse(&reply)
    }

    /// Claims the highest priority runnable job of one of `types` for `consumer` (jobs of
    /// other types it meets are parked for a worker that handles them).
    pub(crate) async fn claim(
        &self,
        consumer: &str,
        types: &[String],
        visibility: Duration,
        max_attempts: u32,
    ) -> Result<Claim, JobsError> {
        let reply: Vec<String> = scripts::CLAIM
            .key(&self.streams[0])
            .key(&self.streams[1])
            .key(&self.streams[2])
            .key(self.stats_key())
            .key(self.dead_key())
            .arg(&self.settings.prefix)
            .arg(&self.settings.group)
            .arg(consumer)
            .arg(ms(visibility).max(1))
            .arg(max_attempts)
            .arg(self.ttl_ms())
            .arg(&self.settings.results_channel)
            .arg(DEAD_LETTER_MAX)
            .arg(self.settings.parked_max.max(1))
            .arg(types)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("claim a job"))?;
        match reply.first().map(String::as_str) {
            Some("none") if reply.len() == 4 => Ok(Claim::Empty([
                reply[1].clone(),
                reply[2].clone(),
                reply[3].clone(),
            ])),
            Some("job") if reply.len() == 9 => Ok(Claim::Job(Box::new(parse_claimed(&reply)))),
            _ => Err(JobsError::Corrupt(format!("claim reply {reply:?}"))),
        }
    }

    /// Waits (on `conn`, a connection of its own: the command blocks it) until an entry newer
    /// than `marks` appears in a stream, or `timeout` passes.
    pub(crate) async fn wait_for_work(
        &self,
        conn: &mut Conn,
        marks: &[String; 3],
        timeout: Duration,
    ) -> Result<(), JobsError> {
        let _: redis::Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms(timeout).max(1))
            .arg("STREAMS")
            .arg(&self.streams[..])
            .arg(&marks[..])
            .query_async(conn)
            .await
            .map_err(redis_err("wait for jobs"))?;
        Ok(())
    }

    /// A call of a script that acts on `consumer`'s lease of `c`: KEYS[1] is the job's stream,
    /// ARGV starts with prefix, group, consumer, job id, entry id and lease token; the caller
    /// appends the rest.
    fn on_lease<'s>(
        &self,
        script: &'s Script,
        c: &Claimed,
        consumer: &str,
    ) -> ScriptInvocation<'s> {
        let mut call = script.prepare_invoke();
        call.key(self.stream(c.job.priority))
            .arg(&self.settings.prefix)
            .arg(&self.settings.group)
            .arg(consumer)
            .arg(&c.job.id)
            .arg(&c.entry)
            .arg(&c.lease);
        call
    }

    /// Renews a claimed job's lease; `false` when it was lost.
    pub(crate) async fn heartbeat(&self, c: &Claimed, consumer: &str) -> Result<bool, JobsError> {
        let renewed: i64 = self
            .on_lease(&scripts::HEARTBEAT, c, consumer)
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("renew job {}", c.job.id)))?;
        Ok(renewed == 1)
    }

    /// Records a job's result and publishes it; `false` when the lease was lost.
    pub(crate) async fn complete(
        &self,
        c: &Claimed,
        result: &Value,
        processing: Duration,
    ) -> Result<bool, JobsError> {
        let result = serde_json::to_string(result).expect("JSON values serialize");
        let mut call = scripts::COMPLETE.prepare_invoke();
        call.key(self.stream(c.job.priority))
            .key(self.stats_key())
            .arg(&self.settings.prefix)
            .arg(&self.settings.group)
            .arg(&c.job.id)
            .arg(&c.entry)
            .arg(&c.lease)
            .arg(result)
            .arg(ms(processing))
            .arg(self.ttl_ms())
            .arg(&self.settings.results_channel);
        for bound in super::stats::LATENCY_BUCKETS_MS {
            call.arg(bound);
        }
        let done: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("complete job {}", c.job.id)))?;
        Ok(done == 1)
    }

    /// Records a failed attempt: retry once `backoff` has passed, or dead letter.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fail(
        &self,
        c: &Claimed,
        consumer: &str,
        error: &str,
        permanent: bool,
        max_attempts: u32,
        visibility: Duration,
        backoff: Duration,
    ) -> Result<FailOutcome, JobsError> {
        let idle = ms(visibility.saturating_sub(backoff));
        let outcome: String = self
            .on_lease(&scripts::FAIL, c, consumer)
            .key(self.stats_key())
            .key(self.dead_key())
            .arg(error)
            .arg(if permanent { "1" } else { "0" })
            .arg(max_attempts)
            .arg(idle)
            .arg(self.ttl_ms())
            .arg(&self.settings.results_channel)
            .arg(DEAD_LETTER_MAX)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("fail job {}", c.job.id)))?;
        match outcome.as_str() {
            "retry" => Ok(FailOutcome::Retry),
            "dead" => Ok(FailOutcome::Dead),
            "stale" => Ok(FailOutcome::Stale),
            other => Err(JobsError::Corrupt(format!("fail reply {other:?}"))),
        }
    }

    /// Gives a claimed job back (not counted as an attempt); `false` when the lease was lost.
    pub(crate) async fn release(
        &self,
        c: &Claimed,
        consumer: &str,
        visibility: Duration,
    ) -> Result<bool, JobsError> {
        let released: i64 = self
            .on_lease(&scripts::RELEASE, c, consumer)
            .arg(ms(visibility).max(1))
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("release job {}", c.job.id)))?;
        Ok(released == 1)
    }

    /// Marks `types` as served now (a worker's advertisement, repeated with its heartbeat);
    /// types nobody advertised within [`QueueSettings::known_for`] are forgotten.
    pub(crate) async fn advertise(&self, types: &[String]) -> Result<(), JobsError> {
        let mut call = scripts::ADVERTISE.prepare_invoke();
        call.key(self.types_key())
            .arg(ms(self.settings.known_for).max(1));
        for t in types {
            call.arg(t);
        }
        let _: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("advertise job types"))?;
        Ok(())
    }

    /// Removes `consumer` from the group of every stream where it holds nothing.
    pub(crate) async fn retire_consumer(&self, consumer: &str) -> Result<(), JobsError> {
        let _: i64 = scripts::RETIRE_CONSUMER
            .key(&self.streams[0])
            .key(&self.streams[1])
            .key(&self.streams[2])
            .arg(&self.settings.group)
            .arg(consumer)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err(format_args!("retire consumer {consumer}")))?;
        Ok(())
    }
}

/// Reads a claim reply. An entry not written by [`JobQueue::enqueue`] (e.g. added by hand)
/// still yields a claim, with `invalid` set, so the worker can dead-letter it at once.
fn parse_claimed(reply: &[String]) -> Claimed {
    let priority = Priority::parse(&reply[1]).unwrap_or(Priority::Normal);
    let mut invalid = None;
    let job: Map<String, Value> = match serde_json::from_str(&reply[3]) {
        Ok(Value::Object(job)) => job,
        _ => {
            invalid = Some("the queued job is not a JSON object".to_string());
            Map::new()
        }
    };
    let user_id = match job.get("userId") {
        Some(u) => u.clone(),
        None => {
            invalid.get_or_insert_with(|| "the queued job has no userId".into());
            Value::Null
        }
    };
    let number = |s: &str| s.parse().unwrap_or(0);
    Claimed {
        job: Job {
            id: reply[7].clone(),
            kind: reply[8].clone(),
            user_id,
            payload: job.get("payload").cloned().unwrap_or(Value::Null),
            priority,
            attempt: number(&reply[4]) as u32,
            enqueued_at: number(&reply[6]),
            job,
        },
        entry: reply[2].clone(),
        lease: reply[5].clone(),
        invalid,
    }
}
