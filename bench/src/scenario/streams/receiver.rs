//! The browsers' side: one session per stream's user; every `ai-chunk` frame is timed from
//! the marker in its delta and tallied per job (received, duplicated, out of order), the
//! `job-watched` answer of a reconnect fills the chunks missed while away, and the
//! `ai-result` at the end must name the last seq.

use std::{cell::RefCell, os::fd::AsRawFd, rc::Rc, time::Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::{
    client::{self, pump_frames, write_all},
    proto::{Incoming, Proto},
    report, sys, ws,
};

/// What arrived for one job.
#[derive(Default)]
pub struct JobTally {
    /// Per seq (index seq - 1): received live / in a `job-watched` answer.
    live: Vec<bool>,
    replayed: Vec<bool>,
    /// A live chunk that had already come live (the same frame twice).
    pub duplicates: u64,
    /// A live chunk below one already received live on the same connection.
    pub out_of_order: u64,
    /// A chunk that came both replayed and live (the client drops the second by its seq).
    pub overlap: u64,
    /// The `ai-result`'s `chunks`, when it came.
    pub result_chunks: Option<u64>,
    /// Results that were not `success`, or came twice.
    pub bad_results: u64,
}

impl JobTally {
    /// Seqs 1..=`n` that never arrived either way.
    pub fn missing(&self, n: u64) -> u64 {
        (1..=n).filter(|&s| !self.has(s)).count() as u64
    }

    fn has(&self, seq: u64) -> bool {
        let i = seq as usize - 1;
        self.live.get(i).copied().unwrap_or(false) || self.replayed.get(i).copied().unwrap_or(false)
    }

    /// The highest seq such that every seq up to it arrived.
    pub fn contiguous(&self) -> u64 {
        (1..).take_while(|&s| self.has(s)).last().unwrap_or(0)
    }

    /// Chunks that arrived live / only by replay.
    pub fn counts(&self) -> (u64, u64) {
        let live = self.live.iter().filter(|&&b| b).count() as u64;
        let replay_only = self
            .replayed
            .iter()
            .enumerate()
            .filter(|&(i, &r)| r && !self.live.get(i).copied().unwrap_or(false))
            .count() as u64;
        (live, replay_only)
    }
}

fn mark(bits: &mut Vec<bool>, seq: u64) -> bool {
    let i = seq as usize - 1;
    if bits.len() <= i {
        bits.resize(i + 1, false);
    }
    std::mem::replace(&mut bits[i], true)
}

/// A reconnect waiting for its first missed chunk.
struct Waiting {
    seq: u64,
    since: Instant,
}

/// Everything the sessions saw.
pub struct Tally {
    /// Per stream.
    pub jobs: Vec<JobTally>,
    /// Emit -> frame latency of live chunks (us), native and Socket.IO.
    pub latency: [Histogram<u64>; 2],
    /// Start of a reconnect -> its first missed chunk (us).
    pub first_replayed: Histogram<u64>,
    /// Start of a reconnect -> the `job-watched` answer (us).
    pub watched: Histogram<u64>,
    /// Start of a reconnect -> `connected` (us).
    pub connected: Histogram<u64>,
    /// Chunks each `job-watched` answer held.
    pub replay_sizes: Vec<u64>,
    /// Frames that were neither expected nor ignorable (errors).
    pub errors: Vec<String>,
    waiting: Vec<Option<Waiting>>,
    watch_started: Vec<Option<Instant>>,
}

impl Tally {
    /// An empty tally for `streams` jobs.
    pub fn new(streams: usize) -> Tally {
        Tally {
            jobs: (0..streams).map(|_| JobTally::default()).collect(),
            latency: [report::histogram(), report::histogram()],
            first_replayed: report::histogram(),
            watched: report::histogram(),
            connected: report::histogram(),
            replay_sizes: Vec::new(),
            errors: Vec::new(),
            waiting: (0..streams).map(|_| None).collect(),
            watch_started: vec![None; streams],
        }
    }

    fn arrived(&mut self, stream: usize, seq: u64) {
        if let Some(w) = &self.waiting[stream] {
            if seq == w.seq {
                let us = w.since.elapsed().as_micros() as u64;
                report::record(&mut self.first_replayed, us);
                self.waiting[stream] = None;
            }
        }
    }

    /// A live `ai-chunk` of stream `stream`; `last_on_conn` is the connection's last live seq.
    fn live(&mut self, stream: usize, proto: Proto, bt: u64, seq: u64, last_on_conn: &mut u64) {
        if seq == 0 {
            self.errors
                .push(format!("stream {stream}: a chunk with seq 0"));
            return;
        }
        report::record(
            &mut self.latency[(proto == Proto::SocketIo) as usize],
            sys::now_us().saturating_sub(bt),
        );
        let job = &mut self.jobs[stream];
        if mark(&mut job.live, seq) {
            job.duplicates += 1;
        } else if job.replayed.get(seq as usize - 1).copied().unwrap_or(false) {
            job.overlap += 1;
        }
        if seq < *last_on_conn {
            job.out_of_order += 1;
        }
        *last_on_conn = (*last_on_conn).max(seq);
        self.arrived(stream, seq);
    }

    /// A `job-watched` answer.
    fn watched(&mut self, stream: usize, answer: &Value) {
        if let Some(since) = self.watch_started[stream].take() {
            report::record(&mut self.watched, since.elapsed().as_micros() as u64);
        }
        let chunks = answer["chunks"].as_array().cloned().unwrap_or_default();
        self.replay_sizes.push(chunks.len() as u64);
        let mut seqs = Vec::new();
        for c in &chunks {
            match c["seq"].as_u64() {
                Some(seq) if seq > 0 => seqs.push(seq),
                _ => self
                    .errors
                    .push(format!("stream {stream}: bad replayed chunk {c}")),
            }
        }
        for seq in seqs {
            let job = &mut self.jobs[stream];
            if job.live.get(seq as usize - 1).copied().unwrap_or(false) {
                job.overlap += 1;
            }
            mark(&mut job.replayed, seq);
            self.arrived(stream, seq);
        }
    }

    fn result(&mut self, stream: usize, data: &Value) {
        let job = &mut self.jobs[stream];
        if data["status"] != "success" || job.result_chunks.is_some() {
            job.bad_results += 1;
        }
        job.result_chunks = data["chunks"].as_u64().or(Some(0));
    }
}

/// The JSON of a native frame, or of the first argument of a Socket.IO event or ack
/// (`42["ai-result",{..}]`, `431[{..}]`).
fn frame_json(proto: Proto, payload: &[u8]) -> Option<Value> {
    match proto {
        Proto::Native => serde_json::from_slice(payload).ok(),
        Proto::SocketIo => {
            let start = payload.iter().position(|&b| b == b'[')?;
            let v: Value = serde_json::from_slice(&payload[start..]).ok()?;
            let args = v.as_array()?;
            args.iter().find(|a| a.is_object()).cloned()
        }
    }
}

/// Handles one frame of stream `stream`'s session.
fn on_frame(
    tally: &RefCell<Tally>,
    stream: usize,
    proto: Proto,
    incoming: Incoming,
    payload: &[u8],
    last_on_conn: &mut u64,
) {
    let find = |s: &[u8]| memchr::memmem::find(payload, s).is_some();
    // A `job-watched` answer holds markers too: it is a reply, not a live chunk.
    if find(b"\"job-watched\"") {
        match frame_json(proto, payload) {
            Some(v) => tally.borrow_mut().watched(stream, &v),
            None => tally
                .borrow_mut()
                .errors
                .push(format!("stream {stream}: unreadable job-watched")),
        }
        return;
    }
    match incoming {
        Incoming::Bench { bt, bs } => tally.borrow_mut().live(stream, proto, bt, bs, last_on_conn),
        Incoming::Error => tally
            .borrow_mut()
            .errors
            .push(String::from_utf8_lossy(payload).into_owned()),
        _ if find(b"ai-result") => {
            let v = frame_json(proto, payload).unwrap_or_default();
            let data = if proto == Proto::Native {
                &v["data"]
            } else {
                &v
            };
            tally.borrow_mut().result(stream, data);
        }
        _ => {}
    }
}

/// A session whose frames go to the tally; its socket can be dropped from outside.
pub struct Session {
    stream: Rc<tokio::net::TcpStream>,
}

impl Session {
    /// Hands a confirmed client's frames to the tally for `stream` (in a local task).
    pub fn pump(tally: Rc<RefCell<Tally>>, stream: usize, c: client::Client) -> Session {
        let (socket, decoder, proto) = c.into_parts();
        let mut last_on_conn = 0u64;
        tokio::task::spawn_local(pump_frames(
            socket.clone(),
            decoder,
            proto,
            move |incoming, payload| {
                on_frame(&tally, stream, proto, incoming, payload, &mut last_on_conn)
            },
        ));
        Session { stream: socket }
    }

    /// Ends the connection at once (both directions shut: the pump ends, the hub sees a FIN).
    pub fn drop_connection(self) {
        // SAFETY: shutdown(2) on a socket this process owns.
        unsafe { libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// A reconnect of stream `stream`: connects again as `user`, asks for the job's chunks after
/// the last contiguous one it had (`watch-job`), and pumps the new session. Timed from the
/// start of the attempt.
pub async fn reconnect(
    tally: Rc<RefCell<Tally>>,
    target: std::net::SocketAddr,
    proto: Proto,
    (stream, user, job): (usize, &str, &str),
) -> Result<Session, String> {
    let start = Instant::now();
    let after = tally.borrow().jobs[stream].contiguous();
    tally.borrow_mut().waiting[stream] = Some(Waiting {
        seq: after + 1,
        since: start,
    });
    let c = client::open(target, None, proto, user)
        .await
        .map_err(|e| format!("reconnect {user}: {e}"))?;
    report::record(
        &mut tally.borrow_mut().connected,
        start.elapsed().as_micros() as u64,
    );
    tally.borrow_mut().watch_started[stream] = Some(start);
    let watch = match proto {
        Proto::Native => format!(r#"{{"type":"watch-job","jobId":"{job}","after":{after}}}"#),
        Proto::SocketIo => format!(r#"421["watch-job",{{"jobId":"{job}","after":{after}}}]"#),
    };
    write_all(&c.stream, &ws::text(watch.as_bytes()))
        .await
        .map_err(|e| format!("watch-job {user}: {e}"))?;
    Ok(Session::pump(tally, stream, c))
}

/// Reconnects still waiting for their first missed chunk.
pub fn still_waiting(tally: &Tally) -> usize {
    tally.waiting.iter().filter(|w| w.is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_fills_the_gap_and_overlaps_are_not_duplicates() {
        let tally = RefCell::new(Tally::new(1));
        let mut last = 0;
        for seq in [1, 2, 3] {
            let f = format!(r#"{{"type":"ai-chunk","data":{{"delta":"@bt=1@bs={seq}@ t"}}}}"#);
            let inc = Proto::Native.classify(f.as_bytes());
            on_frame(&tally, 0, Proto::Native, inc, f.as_bytes(), &mut last);
        }
        assert_eq!(tally.borrow().jobs[0].contiguous(), 3);
        // Reconnected: 4 and 5 were missed, 5 also comes live on the new connection.
        let mut last = 0;
        let live5 = br#"{"type":"ai-chunk","data":{"delta":"@bt=1@bs=5@ t"}}"#;
        on_frame(
            &tally,
            0,
            Proto::Native,
            Proto::Native.classify(live5),
            live5,
            &mut last,
        );
        let watched = br#"{"type":"job-watched","jobId":"j","state":"running","seq":5,"chunks":[{"seq":4,"delta":"@bt=1@bs=4@ t"},{"seq":5,"delta":"@bt=1@bs=5@ t"}]}"#;
        on_frame(
            &tally,
            0,
            Proto::Native,
            Proto::Native.classify(watched),
            watched,
            &mut last,
        );
        let t = tally.borrow();
        let job = &t.jobs[0];
        assert_eq!(
            (
                job.missing(5),
                job.duplicates,
                job.overlap,
                job.out_of_order
            ),
            (0, 0, 1, 0)
        );
        assert_eq!(job.counts(), (4, 1));
        assert_eq!(
            t.latency[0].len(),
            4,
            "replayed chunks are not timed as live ones"
        );
    }

    #[test]
    fn repeated_and_late_live_chunks_are_counted() {
        let tally = RefCell::new(Tally::new(1));
        let mut last = 0;
        for seq in [1, 3, 2, 3] {
            let f = format!(r#"42["ai-chunk",{{"delta":"@bt=1@bs={seq}@ t"}}]"#);
            let inc = Proto::SocketIo.classify(f.as_bytes());
            on_frame(&tally, 0, Proto::SocketIo, inc, f.as_bytes(), &mut last);
        }
        let result = br#"42["ai-result",{"jobId":"j","status":"success","chunks":3}]"#;
        on_frame(
            &tally,
            0,
            Proto::SocketIo,
            Proto::SocketIo.classify(result),
            result,
            &mut last,
        );
        let t = tally.borrow();
        let job = &t.jobs[0];
        assert_eq!(
            (job.duplicates, job.out_of_order, job.missing(3)),
            (1, 1, 0)
        );
        assert_eq!((job.result_chunks, job.bad_results), (Some(3), 0));
        assert_eq!(t.latency[1].len(), 4);
    }
}
