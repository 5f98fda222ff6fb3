//! A session's requests about its user's AI jobs (`docs/jobs.md#streams-to-the-browser`):
//! `cancel-job` and `watch-job`, each one call of the job queue's Redis functions
//! (`relay_job_cancel`, `relay_job_chunks`) with the session's user, so a session reaches only
//! its user's jobs. Unknown jobs and other users' jobs get the same `forbidden` answer.

use super::*;

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
            let mut cmd = redis::cmd("FCALL");
            let function = if watch.is_some() {
                "relay_job_chunks"
            } else {
                "relay_job_cancel"
            };
            cmd.arg(function).arg(1).arg(prefix(&env)).arg(&job);
            if let Some(after) = watch {
                cmd.arg(after);
            }
            cmd.arg(&*user);
            let reply: Result<Vec<String>, _> =
                cmd.query_async(&mut env.publisher.connection()).await;
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
