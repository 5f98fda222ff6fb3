//! What the subscriber recovers of AI jobs' streams after a pub/sub outage: chunks a worker
//! recorded (`relay_job_chunk`: kept in the job's chunk stream, published on `ai:jobs`) while
//! the hub was not subscribed to `ai:jobs` (Redis restarting, the connection dropped or
//! rebuilt, Redis closing it at its pub/sub output-buffer limit).
//!
//! The subscriber follows each job it dispatched a chunk or a `running` state of: its user
//! and the last chunk seq dispatched. A job is forgotten at its `ai-result`, when a gap read
//! finds it finished or gone, or once idle for [`JOB_IDLE`]; at most [`JOBS_TRACKED`] are
//! followed (beyond, the least recently active is forgotten first).
//!
//! From the moment the fixed channels are lost ([`JobGaps::suspend`]) until a job's gap has
//! been read, its live events (chunks, states, its result) are held. Once `ai:jobs` is
//! subscribed again, each job's chunks after its last seq are read (`relay_job_chunks`) and
//! dispatched as live chunks, merged with the held events by seq (a held `running` state goes
//! before the chunks after its `seq`, a held `ai-result` after every chunk), minus chunks
//! whose seq was already dispatched: each chunk once, in order per job. A job's seq never
//! goes back across attempts (a retry's chunks continue after the last seq; its `running`
//! frame tells clients to restart their text); a gap read that finds the job's last seq below
//! the one dispatched (its state expired and its id was used again) reads it from seq 0.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    common::{error::HubError, metrics::Metrics, metrics::OutKind},
    connections::publisher::Publisher,
};

use hub_wire::protocol::UserId;

/// Most jobs followed per instance.
pub const JOBS_TRACKED: usize = 4096;
/// A job with no event for this long is forgotten.
pub const JOB_IDLE: Duration = Duration::from_secs(10 * 60);

/// What a job event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEventKind {
    /// An `ai-chunk` with its seq.
    Chunk(u64),
    /// A `job-state`; a `running` one with its `seq` (the last seq before the attempt).
    State(Option<u64>),
    /// The job's `ai-result`.
    Result,
}

/// A job event on its way to the user's sessions.
pub struct JobEvent {
    /// Its job.
    pub job: String,
    /// The job's user.
    pub user: UserId,
    /// `{"type":...,"data":...}`.
    pub frame: Vec<u8>,
    /// What it is.
    pub kind: JobEventKind,
}

impl JobEvent {
    /// The kind of frame it is.
    pub fn out_kind(&self) -> OutKind {
        match self.kind {
            JobEventKind::Chunk(_) => OutKind::AiChunk,
            JobEventKind::State(_) => OutKind::JobState,
            JobEventKind::Result => OutKind::AiResult,
        }
    }
}

/// The job of an `ai-result` frame (`{"type":"ai-result","data":{"jobId",...}}`).
pub fn result_job(frame: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Frame {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "jobId")]
        job: Value,
    }
    match serde_json::from_slice::<Frame>(frame).ok()?.data.job {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a gap read found of a job.
#[derive(Debug)]
pub struct JobGap {
    /// The job's state (`running`, `done`...); `None` for a job Redis no longer has.
    pub state: Option<String>,
    /// The job's last seq was below the one read after (its state expired and its id was
    /// used again): `chunks` are all it keeps.
    pub restarted: bool,
    /// The chunks after the seq read after (seq, delta), ascending.
    pub chunks: Vec<(u64, String)>,
}

/// A job's gap read in flight.
pub type JobGapRead = LocalBoxFuture<'static, Result<JobGap, HubError>>;

struct Tracked {
    user: UserId,
    /// Last chunk seq dispatched.
    seq: u64,
    touched: Instant,
    /// Live events held while its gap is pending.
    held: Option<Vec<JobEvent>>,
    /// Its gap read is in flight...
    reading: bool,
    /// ...and the fixed channels were lost again meanwhile: read once more afterwards.
    again: bool,
    /// Live chunks up to this seq are copies of what a gap fill dispatched.
    filled: Option<u64>,
}

/// The jobs an ingest connection follows, and their gaps.
pub struct JobGaps {
    publisher: Publisher,
    jobs: HashMap<String, Tracked>,
    /// Some job waits for its gap read to start.
    waiting: bool,
}

impl JobGaps {
    /// Reads gaps through `publisher` (the job queue's functions, `{jobs}` on a cluster).
    pub fn new(publisher: Publisher) -> JobGaps {
        JobGaps {
            publisher,
            jobs: HashMap::new(),
            waiting: false,
        }
    }

    /// Takes a live event: held while its job's gap is pending, dropped when a gap fill
    /// already dispatched it (counted), otherwise given back to dispatch (and followed).
    pub fn live(&mut self, event: JobEvent, metrics: &Metrics) -> Option<JobEvent> {
        if let Some(held) = self.jobs.get_mut(&event.job).and_then(|t| t.held.as_mut()) {
            held.push(event);
            return None;
        }
        self.pass(event, metrics)
    }

    /// Follows a live event that is not held.
    fn pass(&mut self, event: JobEvent, metrics: &Metrics) -> Option<JobEvent> {
        let now = Instant::now();
        match event.kind {
            JobEventKind::Result => {
                self.jobs.remove(&event.job);
            }
            JobEventKind::Chunk(seq) => match self.jobs.get_mut(&event.job) {
                Some(t) => {
                    if let Some(filled) = t.filled {
                        if seq <= filled {
                            metrics.chunk_duplicates.inc();
                            return None;
                        }
                        t.filled = None;
                    }
                    t.seq = t.seq.max(seq);
                    t.touched = now;
                    t.user = event.user.clone();
                }
                None => self.follow(&event, seq, now),
            },
            JobEventKind::State(running) => match (self.jobs.get_mut(&event.job), running) {
                (Some(t), _) => t.touched = now,
                (None, Some(base)) => self.follow(&event, base, now),
                (None, None) => {}
            },
        }
        Some(event)
    }

    /// Starts following `event`'s job, forgetting idle ones (and, when full, the least
    /// recently active).
    fn follow(&mut self, event: &JobEvent, seq: u64, now: Instant) {
        if self.jobs.len() >= JOBS_TRACKED {
            self.forget_idle(now);
        }
        if self.jobs.len() >= JOBS_TRACKED {
            let oldest = (self.jobs.iter())
                .filter(|(_, t)| t.held.is_none())
                .min_by_key(|(_, t)| t.touched)
                .map(|(job, _)| job.clone());
            match oldest {
                Some(job) => {
                    self.jobs.remove(&job);
                }
                None => return,
            }
        }
        let tracked = Tracked {
            user: event.user.clone(),
            seq,
            touched: now,
            held: None,
            reading: false,
            again: false,
            filled: None,
        };
        self.jobs.insert(event.job.clone(), tracked);
    }

    /// Forgets the jobs idle for [`JOB_IDLE`] (not those waiting for their gap).
    pub fn forget_idle(&mut self, now: Instant) {
        self.jobs
            .retain(|_, t| t.held.is_some() || now.duration_since(t.touched) < JOB_IDLE);
    }

    /// The fixed channels are lost: every job's live events are held until its gap is read.
    pub fn suspend(&mut self) {
        self.forget_idle(Instant::now());
        self.waiting = !self.jobs.is_empty();
        for t in self.jobs.values_mut() {
            t.held.get_or_insert_with(Vec::new);
            t.again |= t.reading;
        }
    }

    /// The fixed channels are subscribed again: the jobs whose gap is to be read now.
    pub fn start(&mut self) -> Vec<String> {
        let mut jobs = Vec::new();
        if !std::mem::take(&mut self.waiting) {
            return jobs;
        }
        for (job, t) in self.jobs.iter_mut() {
            if t.held.is_some() && !t.reading {
                t.reading = true;
                jobs.push(job.clone());
            }
        }
        jobs
    }

    /// The read of `job`'s gap (again, after a failed one), or `None` when it no longer
    /// waits for one.
    pub fn read(&self, job: &str) -> Option<JobGapRead> {
        let t = self.jobs.get(job).filter(|t| t.held.is_some())?;
        let (publisher, job, user, after) = (
            self.publisher.clone(),
            job.to_owned(),
            t.user.clone(),
            t.seq,
        );
        Some(Box::pin(async move {
            let (state, last, chunks) = kept_chunks(&publisher, &job, &user, after).await?;
            if state.is_some() && last < after {
                let (state, _, chunks) = kept_chunks(&publisher, &job, &user, 0).await?;
                return Ok(JobGap {
                    state,
                    restarted: true,
                    chunks,
                });
            }
            Ok(JobGap {
                state,
                restarted: false,
                chunks,
            })
        }))
    }

    /// A gap read finished: what to dispatch, in order: the missed chunks merged with the
    /// held events (see the module's doc), minus copies. Counts the chunks it fills.
    pub fn finish(
        &mut self,
        job: &str,
        read: Result<JobGap, HubError>,
        metrics: &Metrics,
    ) -> Vec<JobEvent> {
        let Some(t) = self.jobs.get_mut(job) else {
            return Vec::new();
        };
        t.reading = false;
        let mut gap = VecDeque::new();
        let mut done = false;
        match read {
            Ok(read) => {
                if read.restarted {
                    t.seq = 0;
                }
                for (seq, delta) in read.chunks {
                    if seq > t.seq && gap.back().is_none_or(|e: &JobEvent| e.seq() < seq) {
                        let data = serde_json::json!({"jobId": job, "seq": seq, "delta": delta});
                        let frame = serde_json::json!({"type": "ai-chunk", "data": data});
                        gap.push_back(JobEvent {
                            job: job.to_owned(),
                            user: t.user.clone(),
                            frame: serde_json::to_vec(&frame).expect("JSON serializes"),
                            kind: JobEventKind::Chunk(seq),
                        });
                    }
                }
                done = !matches!(read.state.as_deref(), Some("running" | "queued"));
            }
            Err(e) => {
                log::warn!("job {job}: chunks missed during the pub/sub outage not read: {e}")
            }
        }
        let mut out = Vec::new();
        if std::mem::take(&mut t.again) {
            // Lost again while reading: what came since is read once resubscribed; the held
            // events wait for that read.
            self.waiting = true;
            t.seq = gap.back().map_or(t.seq, JobEvent::seq);
            t.filled = gap.back().map(JobEvent::seq).or(t.filled);
            metrics.job_chunks_gap_filled.inc_by(gap.len() as u64);
            out.extend(gap);
            return out;
        }
        let held = t.held.take().unwrap_or_default();
        let (out, last, filled) = merge(gap, held, t.seq, metrics);
        metrics.job_chunks_gap_filled.inc_by(filled);
        t.seq = last;
        // Live copies of what was filled can still come (the read may overtake them).
        t.filled = (filled > 0).then_some(last);
        t.touched = Instant::now();
        let ended = out.iter().any(|e| e.kind == JobEventKind::Result);
        if ended || (done && out.iter().all(|e| matches!(e.kind, JobEventKind::Chunk(_)))) {
            self.jobs.remove(job);
        }
        out
    }
}

impl JobEvent {
    /// A chunk's seq (0 for other events).
    fn seq(&self) -> u64 {
        match self.kind {
            JobEventKind::Chunk(seq) => seq,
            _ => 0,
        }
    }
}

/// The missed chunks `gap` (ascending) merged with the live events `held` (in their order)
/// after seq `last` was dispatched: each missed chunk goes before the first held event
/// published after it (a chunk with a higher seq, a `running` state whose `seq` it is above
/// of, the `ai-result`), a held chunk already dispatched is dropped (counted). Returns what to
/// dispatch, the last seq, and how many missed chunks it holds.
fn merge(
    mut gap: VecDeque<JobEvent>,
    held: Vec<JobEvent>,
    last: u64,
    metrics: &Metrics,
) -> (Vec<JobEvent>, u64, u64) {
    let mut out = Vec::new();
    let (mut last, mut filled) = (last, 0);
    // Dispatches the missed chunks up to `upto` not dispatched yet.
    let mut flush =
        |gap: &mut VecDeque<JobEvent>, upto: u64, last: &mut u64, out: &mut Vec<JobEvent>| {
            while gap.front().is_some_and(|e| e.seq() <= upto) {
                let chunk = gap.pop_front().expect("a front");
                if chunk.seq() > *last {
                    *last = chunk.seq();
                    filled += 1;
                    out.push(chunk);
                }
            }
        };
    for event in held {
        // The missed chunks published before this held event (or its own copy).
        let before = match event.kind {
            JobEventKind::Chunk(seq) => seq,
            JobEventKind::State(Some(base)) => base,
            JobEventKind::State(None) => 0,
            JobEventKind::Result => u64::MAX,
        };
        flush(&mut gap, before, &mut last, &mut out);
        if let JobEventKind::Chunk(seq) = event.kind {
            if seq <= last {
                metrics.chunk_duplicates.inc();
                continue;
            }
            last = seq;
        }
        out.push(event);
    }
    flush(&mut gap, u64::MAX, &mut last, &mut out);
    (out, last, filled)
}

/// `relay_job_chunks <prefix> job after user`: the job's state (`None`: unknown or another
/// user's), its last seq, and its kept chunks after `after`.
async fn kept_chunks(
    publisher: &Publisher,
    job: &str,
    user: &str,
    after: u64,
) -> Result<(Option<String>, u64, Vec<(u64, String)>), HubError> {
    let prefix = if publisher.is_cluster() {
        "{jobs}"
    } else {
        "jobs"
    };
    let reply: Vec<String> = redis::cmd("FCALL")
        .arg("relay_job_chunks")
        .arg(1)
        .arg(prefix)
        .arg(job)
        .arg(after)
        .arg(user)
        .query_async(&mut publisher.connection())
        .await
        .map_err(|e| {
            publisher.count_error();
            HubError::Redis(format!("relay_job_chunks {job}: {e}"))
        })?;
    if reply.len() < 2 || !reply.len().is_multiple_of(2) {
        return Ok((None, 0, Vec::new()));
    }
    let last = reply[1].parse().unwrap_or(0);
    let mut chunks = Vec::with_capacity(reply.len() / 2 - 1);
    for pair in reply[2..].chunks(2) {
        let seq = pair[0]
            .parse()
            .map_err(|_| HubError::Redis(format!("relay_job_chunks {job}: seq {:?}", pair[0])))?;
        chunks.push((seq, pair[1].clone()));
    }
    Ok((Some(reply[0].clone()), last, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64) -> JobEvent {
        event(JobEventKind::Chunk(seq))
    }

    fn event(kind: JobEventKind) -> JobEvent {
        JobEvent {
            job: "j".into(),
            user: "u".into(),
            frame: Vec::new(),
            kind,
        }
    }

    fn kinds(events: &[JobEvent]) -> Vec<JobEventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn missed_chunks_go_before_held_ones_and_copies_are_dropped() {
        let metrics = Metrics::new();
        let gap = (3..=5).map(chunk).collect();
        let held = vec![chunk(5), chunk(6)];
        let (out, last, filled) = merge(gap, held, 2, &metrics);
        use JobEventKind::Chunk;
        assert_eq!(kinds(&out), [Chunk(3), Chunk(4), Chunk(5), Chunk(6)]);
        assert_eq!((last, filled), (6, 3));
        assert_eq!(metrics.chunk_duplicates.get(), 1);
    }

    #[test]
    fn a_held_running_state_goes_before_the_chunks_of_its_attempt_and_the_result_last() {
        let metrics = Metrics::new();
        let gap = [3, 4, 5].into_iter().map(chunk).collect();
        let held = vec![
            event(JobEventKind::State(Some(3))),
            chunk(5),
            event(JobEventKind::Result),
        ];
        let (out, last, filled) = merge(gap, held, 2, &metrics);
        use JobEventKind::{Chunk, Result, State};
        assert_eq!(
            kinds(&out),
            [Chunk(3), State(Some(3)), Chunk(4), Chunk(5), Result]
        );
        assert_eq!(
            (last, filled),
            (5, 3),
            "chunk 5 from the stream, its live copy dropped"
        );
        assert_eq!(metrics.chunk_duplicates.get(), 1);
    }

    #[test]
    fn the_job_of_a_result_frame() {
        let frame = br#"{"type":"ai-result","data":{"jobId":"j-1","status":"success"}}"#;
        assert_eq!(result_job(frame).as_deref(), Some("j-1"));
        assert_eq!(result_job(br#"{"data":{"jobId":7}}"#).as_deref(), Some("7"));
        assert_eq!(result_job(br#"{"data":{}}"#), None);
    }
}
