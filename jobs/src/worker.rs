//! [`Worker`]: the embeddable job runtime. A service registers one handler per job `type`,
//! then runs the worker until its stop future resolves:
//!
//! ```no_run
//! # async fn demo() -> Result<(), hub_jobs::JobsError> {
//! use hub_jobs::{JobError, QueueSettings, Worker, WorkerConfig};
//! let redis = hub_store::Store::server("redis://127.0.0.1:6379").unwrap();
//! let mut worker = Worker::new(&redis, QueueSettings::default(), WorkerConfig::default())?;
//! worker.handle("echo", |job| async move {
//!     if job.payload.is_null() {
//!         return Err(JobError::permanent("empty payload"));
//!     }
//!     Ok(job.payload)
//! });
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! It advertises its job types in Redis (at start, then six times per live window), runs
//! up to `concurrency` jobs at once, each on its own tokio task (handlers must be
//! `Send`), renews each running job's lease every third of the visibility timeout, and
//! records the outcome (which publishes the AIResult). On stop it claims nothing more, lets
//! in-flight jobs finish for up to `drain_timeout`, then aborts the rest and releases them
//! so another worker takes them at once.

use std::{
    collections::HashMap,
    future::Future,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use hub_store::{Conn, Store};
use log::{debug, error, info, warn};
use serde_json::Value;
use tokio::{
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use super::{
    queue::{self, Claim, Claimed, FailOutcome, LeaseState},
    stream::{JobStream, Running, Signal},
    Job, JobQueue, JobsError, QueueSettings,
};

/// Why a handler failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    /// Shown to the user in the error AIResult (after the last attempt) and in the job state.
    pub message: String,
    /// `true`: retrying cannot help (bad payload); the job is dead-lettered at once.
    pub permanent: bool,
}

impl JobError {
    /// A failure worth retrying (until `max_attempts`).
    pub fn retry(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            permanent: true,
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The future a handler returns: the result JSON, or why it failed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send>>;

/// A job handler.
pub type Handler = Arc<dyn Fn(Job) -> HandlerFuture + Send + Sync>;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The consumer name in the group; unique per worker process.
    pub consumer: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// A job whose lease was not renewed for this long is taken over by another worker.
    pub visibility: Duration,
    /// Attempts before a job is dead-lettered (a worker lost mid-job counts as one).
    pub max_attempts: u32,
    /// Wait before the first retry; doubles per attempt, capped at `visibility`.
    pub retry_backoff: Duration,
    /// On stop, how long in-flight jobs may run on before they are released.
    pub drain_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            consumer: format!("worker-{}", std::process::id()),
            concurrency: 4,
            visibility: Duration::from_secs(30),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What a worker did during its run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Jobs completed.
    pub done: u64,
    /// Failed attempts queued for a retry.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Jobs given back at stop.
    pub released: u64,
    /// Jobs whose lease this worker lost (another worker took them over).
    pub lost: u64,
    /// Running jobs cancelled by their user or the API (the handler was stopped).
    pub cancelled: u64,
}

#[derive(Default)]
struct Counters {
    cancelled: AtomicU64,
    done: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
}

/// What every job task shares.
struct Shared {
    queue: JobQueue,
    config: WorkerConfig,
    handlers: HashMap<String, Handler>,
    counters: Counters,
    running: Running,
}

/// The job runtime (see the module docs).
pub struct Worker {
    queue: JobQueue,
    wait_conn: Conn,
    config: WorkerConfig,
    handlers: HashMap<String, Handler>,
}

/// Longest wait for new jobs before looking for expired ones again.
const MAX_POLL: Duration = Duration::from_secs(1);
/// Bounds of the backoff between failing Redis calls.
const REDIS_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// Tries for recording an outcome before leaving the job to the visibility timeout.
const SETTLE_TRIES: u32 = 6;
/// How long released jobs may take to be handed back at stop.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

impl Worker {
    /// A worker on `target` (connects on first use; a worker started before Redis waits for
    /// it). Register handlers with [`Worker::handle`], then call [`Worker::run`]. On a
    /// cluster, give the queue a hash-tagged prefix ([`QueueSettings::prefix`]).
    pub fn new(
        target: &Store,
        settings: QueueSettings,
        config: WorkerConfig,
    ) -> Result<Worker, JobsError> {
        let queue = JobQueue::connect(target, settings)?;
        let wait_conn = queue::connection(target, MAX_POLL + Duration::from_secs(3))?;
        let config = WorkerConfig {
            concurrency: config.concurrency.max(1),
            max_attempts: config.max_attempts.max(1),
            visibility: config.visibility.max(Duration::from_millis(30)),
            ..config
        };
        Ok(Worker {
            queue,
            wait_conn,
            config,
            handlers: HashMap::new(),
        })
    }

    /// Registers the handler of a job `type` (replacing any earlier one).
    pub fn handle<F, Fut>(&mut self, kind: &str, handler: F) -> &mut Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        self.handlers.insert(
            kind.to_string(),
            Arc::new(move |job| Box::pin(handler(job)) as HandlerFuture),
        );
        self
    }

    /// The registered job types, sorted.
    pub fn job_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.handlers.keys().cloned().collect();
        types.sort();
        types
    }

    /// The queue this worker takes jobs from.
    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// Runs jobs until `stop` resolves, then drains or releases the in-flight ones.
    pub async fn run(self, stop: impl Future<Output = ()>) -> WorkerSummary {
        let Worker {
            queue,
            mut wait_conn,
            config,
            handlers,
        } = self;
        let advertising = advertise_types(queue.clone(), &config.consumer, &handlers).await;
        info!(
            "worker {} taking jobs ({} at once, types: {})",
            config.consumer,
            config.concurrency,
            {
                let mut t: Vec<&str> = handlers.keys().map(String::as_str).collect();
                t.sort();
                t.join(", ")
            }
        );
        let poll = (config.visibility / 4).clamp(Duration::from_millis(10), MAX_POLL);
        let shared = Arc::new(Shared {
            queue,
            config,
            handlers,
            counters: Counters::default(),
            running: Running::default(),
        });
        let watching = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let consumer = shared.config.consumer.clone();
                shared.running.watch(shared.queue.clone(), consumer).await
            })
        };
        let slots = Arc::new(Semaphore::new(shared.config.concurrency));
        let (cancel, cancelled) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut stop = pin!(stop);
        let mut backoff = REDIS_BACKOFF.0;
        let mut failing = false;

        let types: Vec<String> = shared.handlers.keys().cloned().collect();
        'claiming: loop {
            while let Some(done) = tasks.try_join_next() {
                report_task_end(done);
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = &mut stop => break 'claiming,
            };
            loop {
                // A claim is never abandoned half-way: its reply holds the job.
                let claim = shared
                    .queue
                    .claim(
                        &shared.config.consumer,
                        &types,
                        shared.config.visibility,
                        shared.config.max_attempts,
                    )
                    .await;
                let marks = match claim {
                    Ok(Claim::Job(claimed)) => {
                        if std::mem::take(&mut failing) {
                            info!("worker {}: redis is back", shared.config.consumer);
                        }
                        backoff = REDIS_BACKOFF.0;
                        tasks.spawn(run_job(shared.clone(), *claimed, permit, cancelled.clone()));
                        break;
                    }
                    Ok(Claim::Empty(marks)) => marks,
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            warn!("worker {}: {e}; retrying", shared.config.consumer);
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = &mut stop => break 'claiming,
                        }
                        backoff = (backoff * 2).min(REDIS_BACKOFF.1);
                        continue;
                    }
                };
                if std::mem::take(&mut failing) {
                    info!("worker {}: redis is back", shared.config.consumer);
                }
                backoff = REDIS_BACKOFF.0;
                tokio::select! {
                    r = shared.queue.wait_for_work(&mut wait_conn, &marks, poll) => {
                        if let Err(e) = r {
                            debug!("worker {}: {e}", shared.config.consumer);
                            tokio::time::sleep(REDIS_BACKOFF.0).await;
                        }
                    }
                    _ = &mut stop => break 'claiming,
                }
            }
        }

        let consumer = &shared.config.consumer;
        while let Some(done) = tasks.try_join_next() {
            report_task_end(done);
        }
        if !tasks.is_empty() {
            info!(
                "worker {consumer} stopping: waiting up to {:?} for {} running job(s)",
                shared.config.drain_timeout,
                tasks.len()
            );
        }
        let drained = tokio::time::timeout(shared.config.drain_timeout, async {
            while let Some(done) = tasks.join_next().await {
                report_task_end(done);
            }
        })
        .await;
        if drained.is_err() {
            info!(
                "worker {consumer}: releasing {} unfinished job(s)",
                tasks.len()
            );
            let _ = cancel.send(true);
            let released = tokio::time::timeout(RELEASE_WAIT, async {
                while let Some(done) = tasks.join_next().await {
                    report_task_end(done);
                }
            })
            .await;
            if released.is_err() {
                warn!(
                    "worker {consumer}: {} job(s) not released in time; they are taken over after the visibility timeout",
                    tasks.len()
                );
                tasks.abort_all();
            }
        }
        advertising.abort();
        watching.abort();
        if let Err(e) = shared.queue.retire_consumer(consumer).await {
            debug!("{e}");
        }
        let c = &shared.counters;
        let summary = WorkerSummary {
            done: c.done.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead: c.dead.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        };
        info!("worker {consumer} stopped: {summary:?}");
        summary
    }
}

/// Advertises the worker's job types in Redis now, then six times per live window until
/// the returned task is aborted (so `POST /api/jobs` knows them and sees a live worker; see
/// [`JobQueue::enqueue_if_known`]).
async fn advertise_types(
    queue: JobQueue,
    consumer: &str,
    handlers: &HashMap<String, Handler>,
) -> tokio::task::JoinHandle<()> {
    let types: Vec<String> = handlers.keys().cloned().collect();
    let consumer = consumer.to_string();
    let every = (queue.settings().live_window / 6).max(Duration::from_millis(10));
    if let Err(e) = queue.advertise(&types).await {
        warn!("worker {consumer}: {e}; retrying with the next heartbeat");
    }
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await; // immediate: the types were just advertised
        let mut failing = false;
        loop {
            beat.tick().await;
            match queue.advertise(&types).await {
                Ok(()) => failing = false,
                Err(e) if !std::mem::replace(&mut failing, true) => {
                    warn!("worker {consumer}: {e}")
                }
                Err(e) => debug!("worker {consumer}: {e}"),
            }
        }
    })
}

fn report_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!("a job task panicked: {e}");
        }
    }
}

/// How an attempt ended.
enum Outcome {
    Done(Value, Duration),
    Failed(JobError),
    Released,
    Lost,
    Cancelled,
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the handler was cancelled".into();
    }
    let payload = e.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("the handler panicked: {text}")
}

/// Runs one claimed job to its recorded outcome.
async fn run_job(
    shared: Arc<Shared>,
    claimed: Claimed,
    _slot: OwnedSemaphorePermit,
    mut cancelled: watch::Receiver<bool>,
) {
    let consumer = shared.config.consumer.as_str();
    let mut signal = shared.running.start(&claimed);
    let mut claimed = claimed;
    claimed.job.stream = JobStream::new(shared.queue.clone(), claimed.clone(), signal.clone());
    let claimed = claimed;
    let job = &claimed.job;
    let outcome = match shared.handlers.get(&job.kind) {
        _ if claimed.invalid.is_some() => Outcome::Failed(JobError::permanent(
            claimed.invalid.clone().unwrap_or_default(),
        )),
        None => Outcome::Failed(JobError::retry(format!(
            "no handler for job type `{}` on worker {consumer}",
            job.kind
        ))),
        Some(handler) => {
            let started = Instant::now();
            let mut run = tokio::spawn(handler(job.clone()));
            let mut beat = tokio::time::interval(shared.config.visibility / 3);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            beat.tick().await; // the first tick is immediate; the claim just set the lease
            loop {
                tokio::select! {
                    r = &mut run => break match r {
                        Ok(Ok(v)) => Outcome::Done(v, started.elapsed()),
                        Ok(Err(e)) => Outcome::Failed(e),
                        Err(e) => Outcome::Failed(JobError::retry(panic_message(e))),
                    },
                    _ = beat.tick() => match shared.queue.heartbeat(&claimed).await {
                        Ok(LeaseState::Held) => {}
                        Ok(LeaseState::Cancelled) => { run.abort(); break Outcome::Cancelled; }
                        Ok(LeaseState::Lost) => { run.abort(); break Outcome::Lost; }
                        Err(e) => warn!("{e}"),
                    },
                    Ok(()) = signal.changed() => match *signal.borrow() {
                        Signal::Cancelled => { run.abort(); break Outcome::Cancelled; }
                        Signal::Lost => { run.abort(); break Outcome::Lost; }
                        Signal::Running => {}
                    },
                    Ok(()) = cancelled.changed() => { run.abort(); break Outcome::Released; }
                }
            }
        }
    };
    let c = &shared.counters;
    let cfg = &shared.config;
    match outcome {
        Outcome::Done(result, took) => {
            match settle("complete", job, || {
                shared.queue.complete(&claimed, &result, took)
            })
            .await
            {
                Some(true) => c.done.fetch_add(1, Ordering::Relaxed),
                Some(false) => lost(c, job),
                None => 0,
            };
        }
        Outcome::Failed(err) => {
            let backoff = cfg
                .retry_backoff
                .saturating_mul(1u32 << (job.attempt.saturating_sub(1)).min(16))
                .min(cfg.visibility);
            let recorded = settle("fail", job, || {
                shared.queue.fail(
                    &claimed,
                    &err.message,
                    err.permanent,
                    cfg.max_attempts,
                    cfg.visibility,
                    backoff,
                )
            })
            .await;
            match recorded {
                Some(FailOutcome::Retry) => {
                    debug!(
                        "job {} attempt {} failed, retrying: {err}",
                        job.id, job.attempt
                    );
                    c.retried.fetch_add(1, Ordering::Relaxed);
                }
                Some(FailOutcome::Dead) => {
                    warn!(
                        "job {} ({}) failed on attempt {}, dead-lettered: {err}",
                        job.id, job.kind, job.attempt
                    );
                    c.dead.fetch_add(1, Ordering::Relaxed);
                }
                Some(FailOutcome::Stale) => {
                    lost(c, job);
                }
                None => {}
            }
        }
        Outcome::Released => {
            if let Some(true) = settle("release", job, || {
                shared.queue.release(&claimed, cfg.visibility)
            })
            .await
            {
                c.released.fetch_add(1, Ordering::Relaxed);
            }
        }
        Outcome::Lost => {
            lost(c, job);
        }
        Outcome::Cancelled => {
            info!("job {}: cancelled; its handler was stopped", job.id);
            c.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
    shared.running.end(&job.id);
}

fn lost(c: &Counters, job: &Job) -> u64 {
    warn!(
        "job {}: lease lost (another worker took it over); this attempt's outcome is discarded",
        job.id
    );
    c.lost.fetch_add(1, Ordering::Relaxed)
}

/// Records an outcome, retrying while Redis fails; `None` when it never got through (the job
/// is then taken over after the visibility timeout and runs again).
async fn settle<T, F, Fut>(what: &str, job: &Job, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, JobsError>>,
{
    let mut backoff = REDIS_BACKOFF.0;
    for attempt in 1..=SETTLE_TRIES {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) if attempt == SETTLE_TRIES => {
                error!(
                    "job {}: could not {what} ({e}); it will be taken over after the visibility timeout",
                    job.id
                );
            }
            Err(e) => {
                warn!("job {}: {what}: {e}; retrying", job.id);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REDIS_BACKOFF.1);
            }
        }
    }
    None
}
