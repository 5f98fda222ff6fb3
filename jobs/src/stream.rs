//! [`JobStream`]: what a handler uses to stream its result (`relay_job_chunk`) and to learn
//! that its job was cancelled; and the worker's watch over its running jobs' leases
//! (`relay_job_check`, every [`CHECK_EVERY`]), which is how a handler sees a cancellation
//! within 100 ms wherever it runs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use log::{debug, warn};
use tokio::sync::watch;

use super::{
    queue::{Claimed, Emitted, LeaseState},
    JobError, JobQueue,
};

/// How often a worker asks Redis whether its running jobs were cancelled (one call for all).
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// What the worker learnt about a running job's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Nothing: it runs on.
    Running,
    /// Cancelled by its user or the API.
    Cancelled,
    /// Another claim took it.
    Lost,
}

/// A handler's line to its job's stream (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct JobStream {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: JobQueue,
    claimed: Claimed,
    signal: watch::Receiver<Signal>,
}

impl std::fmt::Debug for JobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "JobStream"
        } else {
            "JobStream(detached)"
        })
    }
}

impl JobStream {
    /// A stream bound to no lease (emitting fails); a job is given a live one when it runs.
    pub(crate) fn detached() -> Self {
        JobStream { inner: None }
    }

    pub(crate) fn new(queue: JobQueue, claimed: Claimed, signal: watch::Receiver<Signal>) -> Self {
        JobStream {
            inner: Some(Arc::new(Inner {
                queue,
                claimed,
                signal,
            })),
        }
    }

    /// Emits the next chunk of the result: stored in the job's chunk stream and pushed to the
    /// user's sessions as an `ai-chunk` with the returned seq. Fails (permanently) when the
    /// job was cancelled or taken over; return the error, nothing more is recorded.
    pub async fn emit(&self, delta: &str) -> Result<u64, JobError> {
        let Some(inner) = &self.inner else {
            return Err(JobError::permanent("this job is not running on a worker"));
        };
        match inner.queue.chunk(&inner.claimed, delta).await {
            Ok(Emitted::Seq(seq)) => Ok(seq),
            Ok(Emitted::Cancelled) => Err(JobError::permanent("the job was cancelled")),
            Ok(Emitted::Lost) => Err(JobError::permanent("the job's lease was lost")),
            Err(e) => Err(JobError::retry(format!("emitting a chunk: {e}"))),
        }
    }

    /// Whether the job was cancelled (as the worker last learnt, at most [`CHECK_EVERY`] ago).
    pub fn is_cancelled(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| *i.signal.borrow() == Signal::Cancelled)
    }

    /// Resolves once the job is cancelled (never, for a job that is not).
    pub async fn cancelled(&self) {
        let Some(inner) = &self.inner else {
            return std::future::pending().await;
        };
        let mut signal = inner.signal.clone();
        if signal.wait_for(|s| *s == Signal::Cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The running jobs of one worker: id -> (lease, signal).
#[derive(Default)]
pub(crate) struct Running {
    jobs: Mutex<HashMap<String, (String, watch::Sender<Signal>)>>,
}

impl Running {
    /// Watches a job's lease until [`Running::end`]; the receiver hears what becomes of it.
    pub(crate) fn start(&self, c: &Claimed) -> watch::Receiver<Signal> {
        let (tx, rx) = watch::channel(Signal::Running);
        self.jobs
            .lock()
            .expect("not poisoned")
            .insert(c.job.id.clone(), (c.lease.clone(), tx));
        rx
    }

    pub(crate) fn end(&self, id: &str) {
        self.jobs.lock().expect("not poisoned").remove(id);
    }

    /// Asks Redis about every running job's lease, every [`CHECK_EVERY`], forever.
    pub(crate) async fn watch(&self, queue: JobQueue, consumer: String) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let leases: Vec<(String, String)> = {
                let jobs = self.jobs.lock().expect("not poisoned");
                jobs.iter()
                    .filter(|(_, (_, tx))| *tx.borrow() == Signal::Running)
                    .map(|(id, (lease, _))| (id.clone(), lease.clone()))
                    .collect()
            };
            if leases.is_empty() {
                continue;
            }
            match queue.check(&leases).await {
                Ok(states) => {
                    failing = false;
                    let jobs = self.jobs.lock().expect("not poisoned");
                    for ((id, lease), state) in leases.iter().zip(states) {
                        let signal = match state {
                            LeaseState::Held => continue,
                            LeaseState::Cancelled => Signal::Cancelled,
                            LeaseState::Lost => Signal::Lost,
                        };
                        if let Some((l, tx)) = jobs.get(id) {
                            if l == lease {
                                let _ = tx.send(signal);
                            }
                        }
                    }
                }
                Err(e) if !std::mem::replace(&mut failing, true) => {
                    warn!("worker {consumer}: {e}")
                }
                Err(e) => debug!("worker {consumer}: {e}"),
            }
        }
    }
}
