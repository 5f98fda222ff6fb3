//! A session's requests about its user's AI jobs (`docs/jobs.md#streams-to-the-browser`):
//! `cancel-job` and `watch-job`, each one call of the job queue's Redis functions
//! (`relay_job_cancel`, `relay_job_chunks`) with the session's user, so a session reaches only
//! its user's jobs. Unknown jobs and other users' jobs get the same `forbidden` answer.
//!
//! A resumed session gets the chunks its client missed of the jobs that streamed to it
//! without asking ([`kept_chunks`], [`replay_frames`]); live copies of those are dropped
//! ([`ClientCore::chunk_replayed`]).

use super::*;
use serde::Deserialize;

/// Most bytes of text a replayed `ai-chunk` carries (the most a single chunk can carry):
/// longer runs of a job's chunks go as several frames.
const REPLAY_FRAME_MAX: usize = 64 * 1024;

/// A job's kept chunks (seq, text), ascending.
pub(super) type Chunks = Vec<(u64, String)>;

/// What a resume read of a job's chunks found.
pub(super) type ChunkRead = (String, Result<Chunks, HubError>);

/// The queue prefix the hub's job API uses (hash-tagged on a cluster).
fn prefix(env: &SessionEnv) -> &'static str {
    if env.publisher.is_cluster() {
        "{jobs}"
    } else {
        "jobs"
    }
}

/// What a job request found.
pub(super) enum JobAnswer {
    /// `cancel-job`: `cancelled`, or `finished` (it had ended).
    Cancel(&'static str),
    /// `watch-job`: state, last seq, chunks after the asked seq.
    Watched(String, u64, Vec<(u64, String)>),
}

fn not_yours(job: &str, id: Option<Value>) -> ClientError {
    error_with_id(
        ErrorCode::Forbidden,
        format!("no job `{job}` of yours (unknown, expired, or another user's)"),
        id,
    )
}

impl ClientCore {
    /// `cancel-job` / `watch-job`.
    pub(super) fn job_request(
        &mut self,
        request: Request,
        identity: &Arc<Identity>,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        let (env, user, session) = (self.env.clone(), identity.user_id.clone(), self.id);
        let (job, watch) = match request {
            Request::CancelJob { job } => (job, None),
            Request::WatchJob { job, after } => (job, Some(after)),
            _ => return,
        };
        io.spawn(Step::new(async move {
            let function = if watch.is_some() {
                "relay_job_chunks"
            } else {
                "relay_job_cancel"
            };
            let reply = call(&env, function, &job, watch, &user).await;
            let result = match reply {
                Err(e) => {
                    env.publisher.count_error();
                    debug!("session {session}: FCALL {function} {job}: {e}");
                    let message = "the job could not be reached; try again";
                    Err(error_with_id(ErrorCode::Unavailable, message, id.clone()))
                }
                Ok(r) => answer(watch.is_some(), &r).ok_or_else(|| not_yours(&job, id.clone())),
            };
            Resumed(Outcome::Job { job, id, result })
        }));
    }

    /// True when a live `ai-chunk` repeats one a resume replayed (its seq is not after the
    /// last one replayed of its job); a job is forgotten once a later chunk of it arrives
    /// live (every copy of the replayed ones came before it). Counts what it drops.
    pub(super) fn chunk_replayed(&mut self, event: &Outbound) -> bool {
        let Some(replayed) = self.replayed.as_mut().map(|r| &mut r.chunks) else {
            return false;
        };
        if replayed.is_empty() || event.kind() != OutKind::AiChunk {
            return false;
        }
        let Some((job, seq)) = chunk_head(event.data()) else {
            return false;
        };
        let Some(i) = replayed.iter().position(|(j, _)| *j == job) else {
            return false;
        };
        if seq <= replayed[i].1 {
            self.env.metrics.chunk_duplicates.inc();
            return true;
        }
        replayed.swap_remove(i);
        self.forget_replayed_when_done();
        false
    }

    /// Writes the chunks of `job` a resumed session's client missed (ascending), and
    /// remembers the last one so that its live copies are dropped.
    pub(super) fn replay_chunks(
        &mut self,
        job: String,
        chunks: &[(u64, String)],
        io: &mut impl ClientIo,
    ) {
        let Some((last, _)) = chunks.last() else {
            return;
        };
        let metrics = self.env.metrics.clone();
        metrics.chunks_replayed.inc_by(chunks.len() as u64);
        let frames = replay_frames(&job, chunks);
        for event in frames {
            metrics.frames_out(OutKind::AiChunk, 1, event.native().len());
            self.write_replay(Arc::new(event), Scope::User, None, io);
        }
        self.replayed
            .get_or_insert_default()
            .chunks
            .push((job, *last));
    }

    /// The answer to a job request came back.
    pub(super) fn job_answered(
        &mut self,
        job: String,
        id: Option<Value>,
        result: Result<JobAnswer, ClientError>,
        io: &mut impl ClientIo,
    ) {
        match result {
            Ok(JobAnswer::Cancel(status)) => io.reply(Reply::JobCancel { job, status }, id),
            Ok(JobAnswer::Watched(state, last, chunks)) => io.reply(
                Reply::JobWatched {
                    job,
                    state,
                    last,
                    chunks,
                },
                id,
            ),
            Err(err) => self.reject(err, io),
        }
    }
}

/// One call of `function` (`relay_job_chunks` with `after`, or `relay_job_cancel`) for `job`
/// of `user`.
async fn call(
    env: &SessionEnv,
    function: &str,
    job: &str,
    after: Option<u64>,
    user: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function).arg(1).arg(prefix(env)).arg(job);
    if let Some(after) = after {
        cmd.arg(after);
    }
    cmd.arg(user);
    cmd.query_async(&mut env.publisher.connection()).await
}

/// The kept chunks of `job` of `user` after seq `after` (`relay_job_chunks`); none for a job
/// that is unknown (expired) or another user's.
pub(super) async fn kept_chunks(
    env: &SessionEnv,
    user: &str,
    job: &str,
    after: u64,
) -> Result<Chunks, HubError> {
    match call(env, "relay_job_chunks", job, Some(after), user).await {
        Ok(reply) => match answer(true, &reply) {
            Some(JobAnswer::Watched(_, _, chunks)) => Ok(chunks),
            _ => Ok(Vec::new()),
        },
        Err(e) => {
            env.publisher.count_error();
            Err(HubError::Redis(format!("relay_job_chunks {job}: {e}")))
        }
    }
}

/// The `ai-chunk` events replaying `chunks` (ascending) of `job`: each run of consecutive
/// seqs as one frame, `{"jobId","seq","delta","from"}` (`seq` its last chunk's, `from` its
/// first's when it holds more than one, `delta` their text), up to [`REPLAY_FRAME_MAX`]
/// bytes of text each.
pub(super) fn replay_frames(job: &str, chunks: &[(u64, String)]) -> Vec<Outbound> {
    let mut frames = Vec::new();
    let mut run: Option<(u64, u64, String)> = None;
    let flush = |run: Option<(u64, u64, String)>, frames: &mut Vec<Outbound>| {
        let Some((from, seq, delta)) = run else {
            return;
        };
        let data = if from == seq {
            serde_json::json!({"jobId": job, "seq": seq, "delta": delta})
        } else {
            serde_json::json!({"jobId": job, "seq": seq, "delta": delta, "from": from})
        };
        let data = serde_json::to_vec(&data).expect("JSON serializes");
        frames.push(Outbound::envelope(OutKind::AiChunk, &data));
    };
    for (seq, delta) in chunks {
        match run.as_mut() {
            Some((_, last, text))
                if *seq == *last + 1 && text.len() + delta.len() <= REPLAY_FRAME_MAX =>
            {
                *last = *seq;
                text.push_str(delta);
            }
            _ => {
                flush(run.take(), &mut frames);
                run = Some((*seq, *seq, delta.clone()));
            }
        }
    }
    flush(run, &mut frames);
    frames
}

/// The job and seq of an `ai-chunk` payload (the last seq of a merged one); a numeric
/// `jobId` as its digits.
pub(super) fn chunk_head(data: &[u8]) -> Option<(String, u64)> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "jobId")]
        job: Value,
        seq: u64,
    }
    let head: Head = serde_json::from_slice(data).ok()?;
    let job = match head.job {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((job, head.seq))
}

/// Reads a function's reply; `None` for an unknown job or another user's.
fn answer(watch: bool, r: &[String]) -> Option<JobAnswer> {
    if watch {
        if r.len() < 2 || !r.len().is_multiple_of(2) {
            return None;
        }
        let chunks = r[2..]
            .chunks(2)
            .filter_map(|c| Some((c[0].parse().ok()?, c[1].clone())))
            .collect();
        return Some(JobAnswer::Watched(
            r[0].clone(),
            r[1].parse().unwrap_or(0),
            chunks,
        ));
    }
    match r.first().map(String::as_str) {
        Some("cancelled") => Some(JobAnswer::Cancel("cancelled")),
        Some("finished") => Some(JobAnswer::Cancel("finished")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(event: &Outbound) -> Value {
        serde_json::from_slice(event.data()).unwrap()
    }

    #[test]
    fn consecutive_chunks_replay_as_one_frame_and_a_gap_starts_another() {
        let chunks: Vec<(u64, String)> = vec![(3, "a".into()), (4, "b".into()), (7, "c".into())];
        let frames = replay_frames("j", &chunks);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            data(&frames[0]),
            serde_json::json!({"jobId": "j", "seq": 4, "delta": "ab", "from": 3})
        );
        assert_eq!(
            data(&frames[1]),
            serde_json::json!({"jobId": "j", "seq": 7, "delta": "c"})
        );
        assert_eq!(chunk_head(frames[0].data()), Some(("j".into(), 4)));
        assert_eq!(
            chunk_head(br#"{"jobId":12,"seq":2,"delta":"x"}"#),
            Some(("12".into(), 2))
        );
        assert_eq!(chunk_head(br#"{"jobId":null,"seq":2}"#), None);
    }

    #[test]
    fn a_long_run_is_split_at_the_frame_limit() {
        let big = "x".repeat(REPLAY_FRAME_MAX / 2 + 1);
        let chunks: Vec<(u64, String)> = (1..=3).map(|s| (s, big.clone())).collect();
        let frames = replay_frames("j", &chunks);
        assert_eq!(frames.len(), 3);
        assert_eq!(data(&frames[2])["seq"], 3);
        assert!(data(&frames[2]).get("from").is_none());
    }
}
