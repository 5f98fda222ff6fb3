//! `jobs`: the AI job queue end to end. U users hold a session each; C keep-alive HTTP
//! connections `POST /api/jobs` (type `llama_inference`, round-robin over the users) at R
//! jobs/s, or with `--rate 0` as a closed loop with at most `--window` jobs enqueued whose
//! result has not arrived. Workers (started by whoever runs the scenario, e.g. the suite, with
//! `HUB_DEMO_LATENCY_MS=0`) run them; each result comes back as an `ai-result` frame on the
//! user's session. Reports jobs/s, the latency from just before the `POST` to the matching
//! `ai-result` frame, the `POST`'s own round trip, the CPU per job of the hub and of the
//! workers, and the hub's `/metrics` counters over the run as a cross-check.
//!
//! Each job's id is `bj{run tag}-{sequence}`; the scenario keeps the send time of every job in
//! flight and matches results by id, so a lost, duplicated or misrouted result is counted, not
//! guessed.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{
    args::Args,
    client,
    http::HttpConn,
    proto::{Incoming, Proto},
    report, sys,
};

use super::{drain, http_get, notify::server_cpu_fields, open_many, Target};

/// The job type the workers' built-in handler serves.
const JOB_TYPE: &str = "llama_inference";

/// How results are matched and counted.
struct Tally {
    /// `bj{tag}-`: the prefix of this run's job ids.
    prefix: String,
    /// Send time (us) of every accepted job whose result has not arrived, by sequence.
    in_flight: HashMap<u64, u64>,
    /// Jobs below this sequence belong to the warm-up (counted, not recorded).
    measured_from: u64,
    /// Enqueue -> `ai-result` latency of measured jobs.
    latency: hdrhistogram::Histogram<u64>,
    /// Round trip of the `POST` itself (202 received), measured jobs.
    enqueue: hdrhistogram::Histogram<u64>,
    /// Results of measured jobs that matched a job in flight.
    delivered: u64,
    /// Results with `status` other than `success` (measured jobs).
    error_results: u64,
    /// Results for this run's ids that were not in flight (a second copy, or never accepted).
    unexpected: u64,
    /// Results delivered to a session of another user than the job's.
    misrouted: u64,
    /// When the last measured result arrived (us).
    last_us: u64,
    /// Released by every result in a closed loop.
    window: Option<Rc<Semaphore>>,
}

impl Tally {
    /// An empty tally for job ids starting with `prefix`; nothing is measured until
    /// `measured_from` is lowered.
    fn new(prefix: String) -> Tally {
        Tally {
            prefix,
            in_flight: HashMap::new(),
            measured_from: u64::MAX,
            latency: report::histogram(),
            enqueue: report::histogram(),
            delivered: 0,
            error_results: 0,
            unexpected: 0,
            misrouted: 0,
            last_us: 0,
            window: None,
        }
    }

    fn on_result(&mut self, session_user: &str, data: &Value) {
        let Some(seq) = data["jobId"]
            .as_str()
            .and_then(|id| id.strip_prefix(self.prefix.as_str()))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return; // someone else's job
        };
        let now = sys::now_us();
        let Some(sent) = self.in_flight.remove(&seq) else {
            self.unexpected += 1;
            return;
        };
        if let Some(w) = &self.window {
            w.add_permits(1);
        }
        if data["userId"].as_str() != Some(session_user) {
            self.misrouted += 1;
        }
        if seq < self.measured_from {
            return;
        }
        if data["status"] != "success" {
            self.error_results += 1;
        }
        report::record(&mut self.latency, now.saturating_sub(sent));
        self.delivered += 1;
        self.last_us = now;
    }
}

/// The `data` of an `ai-result` frame in either protocol, if the frame is one.
fn ai_result(proto: Proto, payload: &[u8]) -> Option<Value> {
    memchr::memmem::find(payload, b"\"ai-result\"")?;
    match proto {
        Proto::Native => {
            let mut v: Value = serde_json::from_slice(payload).ok()?;
            (v["type"] == "ai-result").then(|| v["data"].take())
        }
        Proto::SocketIo => {
            let mut v: Value = serde_json::from_slice(payload.strip_prefix(b"42")?).ok()?;
            (v[0] == "ai-result").then(|| v[1].take())
        }
    }
}

/// How one phase sends its jobs.
#[derive(Clone, Copy)]
enum Pace {
    /// Job `i` of the phase is sent at `i / rate` seconds.
    Rate(f64),
    /// At most this many jobs enqueued without a result.
    Window(u64),
}

/// What one phase sent.
#[derive(Default)]
struct Sent {
    accepted: u64,
    refused: u64,
    duplicates: u64,
    first_error: Option<String>,
    secs: f64,
}

/// Everything the senders of a phase share.
struct Phase {
    path: String,
    bearer: Option<String>,
    users: Vec<String>,
    pace: Pace,
    max_jobs: u64,
    deadline: Instant,
    start: Instant,
    /// Sequence of the phase's first job.
    first_seq: u64,
    /// Jobs of the phase claimed by a sender so far.
    next: Cell<u64>,
    tally: Rc<RefCell<Tally>>,
    window: Option<Rc<Semaphore>>,
    sent: RefCell<Sent>,
}

/// Runs one phase on `conns` (one sender task per connection) and returns what it sent.
async fn run_phase(phase: Rc<Phase>, conns: &mut Vec<HttpConn>) -> Sent {
    let mut tasks = Vec::new();
    for conn in conns.drain(..) {
        tasks.push(tokio::task::spawn_local(sender(phase.clone(), conn)));
    }
    for t in tasks {
        if let Ok(conn) = t.await {
            conns.push(conn);
        }
    }
    let mut sent = std::mem::take(&mut *phase.sent.borrow_mut());
    sent.secs = phase.start.elapsed().as_secs_f64();
    sent
}

/// One connection's loop: take the next job, wait for its turn, `POST` it.
async fn sender(phase: Rc<Phase>, mut conn: HttpConn) -> HttpConn {
    let mut body = String::with_capacity(200);
    loop {
        let i = phase.next.get();
        if i >= phase.max_jobs || Instant::now() >= phase.deadline {
            return conn;
        }
        phase.next.set(i + 1);
        match phase.pace {
            Pace::Rate(rate) => {
                let at = phase.start + Duration::from_secs_f64(i as f64 / rate);
                if at >= phase.deadline {
                    return conn;
                }
                tokio::time::sleep_until(at.into()).await;
            }
            Pace::Window(_) => {
                let w = phase.window.as_ref().expect("a closed loop has a window");
                match tokio::time::timeout_at(phase.deadline.into(), w.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => return conn,
                }
            }
        }
        let seq = phase.first_seq + i;
        let user = &phase.users[(seq % phase.users.len() as u64) as usize];
        let id = format!("{}{seq}", phase.tally.borrow().prefix);
        body.clear();
        body.push_str(
            &json!({
                "id": id,
                "type": JOB_TYPE,
                "userId": user,
                "payload": {"text": "A no-op benchmark job. It counts these words."},
                // The suite may post before its workers advertised their job types.
                "waitForWorker": true,
            })
            .to_string(),
        );
        let sent_at = sys::now_us();
        // In flight before the POST: a fast worker's result may arrive before the 202.
        phase.tally.borrow_mut().in_flight.insert(seq, sent_at);
        let reply = conn
            .post_json(&phase.path, &body, phase.bearer.as_deref())
            .await;
        let acked = sys::now_us();
        let mut sent = phase.sent.borrow_mut();
        let failure = match reply {
            Ok(r) if r.status == 202 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                if v["status"] != "queued" || v["id"] != id.as_str() {
                    Some(format!("202 with an unexpected body: {v}"))
                } else if v["duplicate"] == true {
                    sent.duplicates += 1;
                    Some(format!("job {id} already existed (duplicate)"))
                } else {
                    None
                }
            }
            Ok(r) => Some(format!(
                "HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => Some(format!("POST {}: {e}", phase.path)),
        };
        let mut tally = phase.tally.borrow_mut();
        match failure {
            None => {
                sent.accepted += 1;
                if seq >= tally.measured_from {
                    report::record(&mut tally.enqueue, acked.saturating_sub(sent_at));
                }
            }
            Some(e) => {
                sent.refused += 1;
                sent.first_error.get_or_insert(e);
                // No result will come: forget the job and give its window slot back (unless
                // its result somehow already arrived and released it).
                if tally.in_flight.remove(&seq).is_some() {
                    if let Some(w) = &phase.window {
                        w.add_permits(1);
                    }
                }
            }
        }
    }
}

/// The hub's job counters from one `/metrics` scrape (cluster-wide, kept in Redis).
fn job_metrics(addr: SocketAddr) -> Option<HashMap<&'static str, f64>> {
    let (_, text) = http_get(addr, "/metrics").ok()?;
    let wanted = [
        "hub_jobs_enqueued_total",
        "hub_jobs_done_total",
        "hub_jobs_failed_total",
        "hub_jobs_retried_total",
        "hub_jobs_latency_ms_sum",
        "hub_jobs_latency_ms_count",
    ];
    let mut found = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            if let Some(key) = wanted.iter().find(|w| **w == name) {
                if let Ok(v) = value.parse() {
                    found.insert(*key, v);
                }
            }
        }
    }
    (!found.is_empty()).then_some(found)
}

/// CPU seconds and wall seconds of several processes (summed).
fn cpu_of(marks: &[(u32, sys::CpuMark)]) -> Option<(f64, f64)> {
    let mut total = None;
    for (pid, mark) in marks {
        let (cpu, wall) = mark.since(Some(*pid))?;
        let (c, w) = total.unwrap_or((0.0, 0.0));
        total = Some((c + cpu, f64::max(w, wall)));
    }
    total
}

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let target = Target::from_args(&mut args)?;
    let worker_pids: Vec<u32> = args.list("worker-pids")?;
    let workers: u64 = args.get("workers", worker_pids.len() as u64)?;
    let users: u64 = args.get("users", 100)?;
    let rate: f64 = args.get("rate", 200.0)?;
    let window: u64 = args.get("window", 64)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let max_jobs: u64 = args.get("jobs", u64::MAX)?;
    let warmup_jobs: u64 = args.get("warmup-jobs", 50)?;
    let http_conns: usize = args.get("http-conns", 8)?;
    let path: String = args.get("path", "/api/jobs".to_string())?;
    let bearer: Option<String> = args.opt("api-key")?;
    let first_user: u64 = args.get("first-user", 1)?;
    args.finish()?;
    if users == 0 || http_conns == 0 || (rate <= 0.0 && window == 0) {
        return Err("--users, --http-conns and (with --rate 0) --window must be positive".into());
    }

    let names: Vec<String> = (0..users).map(|i| (first_user + i).to_string()).collect();
    let opened = open_many(&target, names.clone(), 100, 0, None).await;
    if opened.failed > 0 {
        return Err(format!(
            "{} of {users} sessions failed to connect: {}",
            opened.failed,
            opened.first_error.unwrap_or_default()
        ));
    }
    let tally = Rc::new(RefCell::new(Tally::new(format!("bj{}-", sys::now_us()))));
    let mut ends = Vec::new();
    for (i, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        let (tally, user) = (tally.clone(), names[i].clone());
        ends.push(tokio::task::spawn_local(client::pump_frames(
            stream,
            decoder,
            proto,
            move |kind, payload| {
                if kind == Incoming::Other {
                    if let Some(data) = ai_result(proto, payload) {
                        tally.borrow_mut().on_result(&user, &data);
                    }
                }
            },
        )));
    }

    let mut conns: Vec<HttpConn> = (0..http_conns)
        .map(|_| HttpConn::new(target.addr))
        .collect();
    let pace = if rate > 0.0 {
        Pace::Rate(rate)
    } else {
        Pace::Window(window)
    };
    let phase = |first_seq: u64, jobs: u64, secs: f64, pace: Pace| {
        let window = match pace {
            Pace::Window(w) => Some(Rc::new(Semaphore::new(w as usize))),
            Pace::Rate(_) => None,
        };
        tally.borrow_mut().window = window.clone();
        let start = Instant::now();
        let p = Phase {
            path: path.clone(),
            bearer: bearer.clone(),
            users: names.clone(),
            pace,
            max_jobs: jobs,
            deadline: start + Duration::from_secs_f64(secs),
            start,
            first_seq,
            next: Cell::new(0),
            tally: tally.clone(),
            window,
            sent: RefCell::default(),
        };
        Rc::new(p)
    };
    let in_flight = || tally.borrow().in_flight.len() as u64;

    // Warm-up: every connection and worker does a few jobs first; drained, not recorded.
    let mut next_seq = 0u64;
    if warmup_jobs > 0 {
        let warm = phase(0, warmup_jobs, 10.0, Pace::Window(8.min(window.max(1))));
        let sent = run_phase(warm.clone(), &mut conns).await;
        next_seq = warm.next.get();
        if sent.accepted == 0 {
            return Err(format!(
                "the hub accepted none of the warm-up jobs: {}",
                sent.first_error.unwrap_or_default()
            ));
        }
        drain(
            || in_flight() == 0,
            in_flight,
            Duration::from_secs(3),
            Duration::from_secs(10),
        )
        .await;
        let stuck = in_flight();
        if stuck > 0 {
            return Err(format!(
                "{stuck} warm-up jobs got no result within 10 s: are workers running (HUB_DEMO_LATENCY_MS=0)?"
            ));
        }
    }
    tally.borrow_mut().measured_from = next_seq;

    let metrics_before = job_metrics(target.addr);
    let hub_cpu = sys::CpuMark::take(target.pid);
    let worker_cpu: Vec<(u32, sys::CpuMark)> = worker_pids
        .iter()
        .map(|p| (*p, sys::CpuMark::take(Some(*p))))
        .collect();
    let own_cpu = sys::self_cpu();
    let start_us = sys::now_us();
    let measured = phase(next_seq, max_jobs, seconds, pace);
    let sent = run_phase(measured.clone(), &mut conns).await;
    let expected = sent.accepted;
    drain(
        || tally.borrow().delivered >= expected,
        || tally.borrow().delivered,
        Duration::from_secs(3),
        Duration::from_secs(20),
    )
    .await;
    let hub_cpu = hub_cpu.since(target.pid);
    let worker_cpu = cpu_of(&worker_cpu);
    let own_cpu = (sys::self_cpu() - own_cpu).as_secs_f64();
    let metrics_after = job_metrics(target.addr);
    let closed = ends.iter().filter(|h| h.is_finished()).count();

    let t = tally.borrow();
    let span = (t.last_us.max(start_us) - start_us) as f64 / 1e6;
    let server_cpu = match (hub_cpu, worker_cpu) {
        (Some((h, wall)), Some((w, _))) => Some((h + w, wall)),
        (h, None) => h,
        (None, w) => w,
    };
    let delta = |k: &str| -> Option<f64> {
        let (a, b) = (metrics_after.as_ref()?, metrics_before.as_ref()?);
        Some(a.get(k)? - b.get(k).copied().unwrap_or(0.0))
    };
    let hub_metrics = json!({
        "enqueued": delta("hub_jobs_enqueued_total"),
        "done": delta("hub_jobs_done_total"),
        "failed": delta("hub_jobs_failed_total"),
        "retried": delta("hub_jobs_retried_total"),
        "mean_latency_ms": match (delta("hub_jobs_latency_ms_sum"), delta("hub_jobs_latency_ms_count")) {
            (Some(s), Some(c)) if c > 0.0 => json!(report::round(s / c, 2)),
            _ => Value::Null,
        },
    });
    let mut out = target.describe("jobs");
    out.extend(
        json!({
            "users": users,
            "workers": workers,
            "http_connections": http_conns,
            "rate": if rate > 0.0 { json!(rate) } else { json!("max") },
            "window": if rate > 0.0 { Value::Null } else { json!(window) },
            "seconds": seconds,
            "warmup_jobs": warmup_jobs,
            "enqueued": sent.accepted,
            "enqueue_rate": report::round(sent.accepted as f64 / sent.secs.max(1e-9), 0),
            "refused": sent.refused,
            "duplicate_ids": sent.duplicates,
            "delivered": t.delivered,
            "lost": expected.saturating_sub(t.delivered),
            "error_results": t.error_results,
            "unexpected_results": t.unexpected,
            "misrouted_results": t.misrouted,
            "jobs_per_sec": report::round(t.delivered as f64 / span.max(1e-9), 0),
            "latency_us": report::latency(&t.latency),
            "enqueue_us": report::latency(&t.enqueue),
            "server_cpu": server_cpu_fields(server_cpu, t.delivered),
            "hub_cpu": server_cpu_fields(hub_cpu, t.delivered),
            "workers_cpu": server_cpu_fields(worker_cpu, t.delivered),
            "loadgen_cpu_pct": report::round(own_cpu * 100.0 / span.max(1e-9), 1),
            "hub_metrics": hub_metrics,
            "sessions_closed_during_run": closed,
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    if let Some(e) = &sent.first_error {
        out.insert("first_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ai_results_in_either_protocol() {
        let native =
            br#"{"type":"ai-result","data":{"jobId":"bj1-7","userId":"3","status":"success"}}"#;
        assert_eq!(ai_result(Proto::Native, native).unwrap()["jobId"], "bj1-7");
        let sio = br#"42["ai-result",{"jobId":"bj1-8","userId":"3"}]"#;
        assert_eq!(ai_result(Proto::SocketIo, sio).unwrap()["jobId"], "bj1-8");
        let other = br#"{"type":"notification","data":{"message":"ai-result"}}"#;
        assert!(ai_result(Proto::Native, other).is_none());
    }

    #[test]
    fn matches_results_by_id_and_counts_the_odd_ones() {
        let mut t = Tally {
            in_flight: HashMap::from([(0, 1), (1, 1)]),
            measured_from: 1,
            ..Tally::new("bj5-".into())
        };
        t.on_result(
            "u",
            &json!({"jobId": "bj5-0", "userId": "u", "status": "success"}),
        );
        assert_eq!(t.delivered, 0, "warm-up jobs are not recorded");
        t.on_result(
            "u",
            &json!({"jobId": "bj5-1", "userId": "v", "status": "error"}),
        );
        t.on_result(
            "u",
            &json!({"jobId": "bj5-1", "userId": "u", "status": "success"}),
        );
        t.on_result("u", &json!({"jobId": "other-1", "userId": "u"}));
        assert_eq!(
            (t.delivered, t.error_results, t.misrouted, t.unexpected),
            (1, 1, 1, 1)
        );
        assert!(t.in_flight.is_empty());
    }
}
