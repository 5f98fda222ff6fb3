//! The load generator's side of the worker protocol (docs/jobs.md#the-worker-protocol-redis-functions):
//! one job per stream enqueued and claimed once (`relay_job_enqueue`, `relay_job_claim`), then
//! paced `relay_job_chunk` calls from a few threads, each with its own Redis connection and
//! pipelining the chunks due in one time slot, and `relay_job_complete` at the end.
//!
//! Each chunk's delta carries the benchmark marker `@bt=<us>@bs=<seq>@` with the time the
//! pipeline holding it was written, so the receiving client measures emit -> frame.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{report, sys};

/// The queue prefix of a single Redis server (docs/jobs.md).
const PREFIX: &str = "jobs";
/// The job type the streams run as (not served by any `relay-hub worker`).
pub const JOB_TYPE: &str = "bench_stream";
/// Job state TTL and lease visibility: longer than any run, so no lease is taken over.
const LONG_MS: u64 = 3_600_000;

/// A claimed job: what each `relay_job_chunk` names.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The lease the claim returned.
    pub lease: String,
}

/// Enqueues one job per user (`{tag}-{i}` for user `users[i]`) and claims every one of them as
/// consumer `hub-bench`; returns the jobs in the users' order.
pub fn enqueue_and_claim(
    conn: &mut redis::Connection,
    tag: &str,
    users: &[String],
) -> Result<Vec<Job>, String> {
    let mut pipe = redis::pipe();
    for (i, user) in users.iter().enumerate() {
        pipe.cmd("FCALL")
            .arg("relay_job_enqueue")
            .arg(1)
            .arg(PREFIX)
            .arg(format!("{tag}-{i}"))
            .arg(JOB_TYPE)
            .arg(serde_json::Value::String(user.clone()).to_string())
            .arg("normal")
            .arg(r#"{"payload":{"stream":true}}"#)
            .arg(LONG_MS)
            .arg(30_000)
            .arg(0);
    }
    let replies: Vec<Vec<String>> = pipe
        .query(conn)
        .map_err(|e| format!("relay_job_enqueue: {e}"))?;
    if let Some(bad) = replies
        .iter()
        .find(|r| r.first().map(String::as_str) != Some("queued"))
    {
        return Err(format!("relay_job_enqueue answered {bad:?}"));
    }
    let mut pipe = redis::pipe();
    for _ in users {
        pipe.cmd("FCALL")
            .arg("relay_job_claim")
            .arg(1)
            .arg(PREFIX)
            .arg("hub-bench")
            .arg(LONG_MS)
            .arg(1)
            .arg(LONG_MS)
            .arg(10_000)
            .arg(JOB_TYPE);
    }
    let claims: Vec<Vec<String>> = pipe
        .query(conn)
        .map_err(|e| format!("relay_job_claim: {e}"))?;
    let mut leases = std::collections::HashMap::new();
    for c in claims {
        match c.as_slice() {
            [kind, _prio, _entry, _job, _attempt, lease, _at, id, ..] if kind == "job" => {
                leases.insert(id.clone(), lease.clone());
            }
            other => return Err(format!("relay_job_claim answered {other:?}")),
        }
    }
    (0..users.len())
        .map(|i| {
            let id = format!("{tag}-{i}");
            let lease = leases
                .remove(&id)
                .ok_or_else(|| format!("job {id} was not claimed"))?;
            Ok(Job { id, lease })
        })
        .collect()
}

/// Completes every job (`relay_job_complete`); the hub then sends each user an `ai-result`
/// with `chunks` = the last seq.
pub fn complete_all(conn: &mut redis::Connection, jobs: &[Job]) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for job in jobs {
        pipe.cmd("FCALL")
            .arg("relay_job_complete")
            .arg(1)
            .arg(PREFIX)
            .arg(&job.id)
            .arg(&job.lease)
            .arg(r#"{"done":true}"#)
            .arg(0)
            .arg(LONG_MS);
    }
    let done: Vec<i64> = pipe
        .query(conn)
        .map_err(|e| format!("relay_job_complete: {e}"))?;
    match done.iter().filter(|&&d| d != 1).count() {
        0 => Ok(()),
        n => Err(format!("relay_job_complete: {n} leases lost")),
    }
}

/// What one emitter thread does: its streams (index into the run's streams, job), all
/// starting at `start`, stream `k` of the run offset by `k / streams` of a period.
pub struct Plan {
    /// (stream index, job) of this thread.
    pub streams: Vec<(usize, Job)>,
    /// All streams of the run (for the offsets).
    pub total_streams: usize,
    /// Chunks per stream per second.
    pub rate: f64,
    /// Chunks per stream.
    pub chunks: u64,
    /// When the first chunks are due.
    pub start: Instant,
    /// At most one pipeline write per slot.
    pub slot: Duration,
}

/// What one emitter thread did.
pub struct Emitted {
    /// Chunks written and acknowledged with the expected seq, per stream of the plan.
    pub per_stream: Vec<(usize, u64)>,
    /// How late each chunk was written against its schedule (us).
    pub lateness: Histogram<u64>,
    /// Pipelines written.
    pub writes: u64,
}

/// Runs a plan on `conn`: every slot, one pipeline of the chunks due; checks that each
/// `relay_job_chunk` answered the next seq of its job.
pub fn emit(conn: &mut redis::Connection, plan: &Plan) -> Result<Emitted, String> {
    sys::fine_timer_slack();
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let due = |stream: usize, k: u64| {
        plan.start
            + period.mul_f64(stream as f64 / plan.total_streams as f64)
            + period.mul_f64(k as f64)
    };
    let mut next = vec![0u64; plan.streams.len()];
    let mut lateness = report::histogram();
    let mut writes = 0;
    let mut batch: Vec<(usize, u64)> = Vec::new();
    let mut delta = String::new();
    loop {
        let now = Instant::now();
        batch.clear();
        let mut earliest: Option<Instant> = None;
        for (slot, (stream, _)) in plan.streams.iter().enumerate() {
            while next[slot] < plan.chunks && due(*stream, next[slot]) <= now {
                report::record(
                    &mut lateness,
                    now.duration_since(due(*stream, next[slot])).as_micros() as u64,
                );
                next[slot] += 1;
                batch.push((slot, next[slot]));
            }
            if next[slot] < plan.chunks {
                let at = due(*stream, next[slot]);
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        if !batch.is_empty() {
            let bt = sys::now_us();
            let mut pipe = redis::pipe();
            for &(slot, seq) in &batch {
                let job = &plan.streams[slot].1;
                delta.clear();
                delta.push_str(&format!("@bt={bt}@bs={seq}@ token"));
                pipe.cmd("FCALL")
                    .arg("relay_job_chunk")
                    .arg(1)
                    .arg(PREFIX)
                    .arg(&job.id)
                    .arg(&job.lease)
                    .arg(&delta);
            }
            let seqs: Vec<i64> = pipe
                .query(conn)
                .map_err(|e| format!("relay_job_chunk: {e}"))?;
            writes += 1;
            for (&(slot, seq), got) in batch.iter().zip(&seqs) {
                if *got != seq as i64 {
                    return Err(format!(
                        "relay_job_chunk for {} answered {got}, not seq {seq}",
                        plan.streams[slot].1.id
                    ));
                }
            }
        }
        let Some(at) = earliest else { break };
        let wake = at.max(now + plan.slot);
        let left = wake.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    }
    Ok(Emitted {
        per_stream: plan
            .streams
            .iter()
            .zip(&next)
            .map(|((stream, _), &n)| (*stream, n))
            .collect(),
        lateness,
        writes,
    })
}
