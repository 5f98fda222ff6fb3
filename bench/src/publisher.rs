//! The publisher: `PUBLISH` to Redis at a fixed rate, as fast as Redis takes it, or in a closed
//! loop (at most N messages published but not yet received), on a plain blocking connection
//! with pipelining. Each message is stamped with the time its batch is written.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::sys;

/// Most commands written in one batch.
const BATCH: u64 = 64;
/// Most commands written whose reply has not arrived (keeps Redis's input buffer small).
const REPLY_WINDOW: u64 = 4096;
/// A paced publisher writes at most once per slot: whatever is due goes out together (one
/// message per write at 10,000/s, three at 30,000/s). Waking Redis, which shares the load
/// generator's core, once per message would make that core the bottleneck of the benchmark.
const SLOT: Duration = Duration::from_micros(100);

/// Appends the RESP `PUBLISH` command for message `seq` stamped `bt` to the buffer.
pub type CommandFn = Box<dyn FnMut(u64, u64, &mut Vec<u8>) + Send>;

/// What to publish and how fast.
pub struct Plan {
    /// Redis.
    pub redis: SocketAddr,
    /// Messages per second; `None`: as fast as the windows allow.
    pub rate: Option<f64>,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many messages.
    pub max_messages: u64,
    /// Closed loop: publish only while few messages are in flight.
    pub window: Option<Window>,
    /// Builds each command.
    pub command: CommandFn,
}

/// A closed loop: message `n` of the run (0-based) is published only once
/// `progress - base + size > n`, i.e. at most `size` messages are in flight.
pub struct Window {
    /// Messages received so far (counted by the receivers).
    pub progress: Arc<AtomicU64>,
    /// `progress` when the run started.
    pub base: u64,
    /// Most messages in flight.
    pub size: u64,
}

/// What the publisher did.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// `PUBLISH` commands sent.
    pub sent: u64,
    /// Commands whose reply counted at least one receiving Redis client.
    pub with_receivers: u64,
    /// Error replies.
    pub errors: u64,
    /// The first error reply.
    pub first_error: Option<String>,
    /// Seconds from the first to the last write.
    pub secs: f64,
}

/// Appends `PUBLISH channel payload` in RESP.
pub fn publish_command(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    command(out, "PUBLISH", channel, payload)
}

/// Appends `verb channel payload` in RESP (`PUBLISH`, or `SPUBLISH` on a cluster).
pub fn command(out: &mut Vec<u8>, verb: &str, channel: &str, payload: &[u8]) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "*3\r\n${}\r\n{verb}\r\n${}\r\n{}\r\n${}\r\n",
        verb.len(),
        channel.len(),
        channel,
        payload.len()
    );
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Counts the integer replies of `PUBLISH` as they arrive.
#[derive(Default)]
struct Replies {
    count: AtomicU64,
    with_receivers: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

fn read_replies(mut stream: TcpStream, replies: Arc<Replies>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let (mut count, mut with_receivers) = (0, 0);
        for &b in &buf[..n] {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            match text.first() {
                Some(b':') => {
                    count += 1;
                    if text.get(1).is_some_and(|d| *d != b'0') {
                        with_receivers += 1;
                    }
                }
                Some(b'-') => {
                    count += 1;
                    replies.errors.fetch_add(1, Ordering::Relaxed);
                    let mut first = replies.first_error.lock().expect("reply lock");
                    first.get_or_insert_with(|| String::from_utf8_lossy(text).into_owned());
                }
                _ => {}
            }
            line.clear();
        }
        replies
            .with_receivers
            .fetch_add(with_receivers, Ordering::Relaxed);
        replies.count.fetch_add(count, Ordering::Release);
    }
}

/// Runs a plan to completion (blocking; run it on its own thread).
pub fn run(mut plan: Plan) -> io::Result<Published> {
    sys::fine_timer_slack();
    let mut stream = TcpStream::connect(plan.redis)
        .map_err(|e| io::Error::other(format!("connect to redis {}: {e}", plan.redis)))?;
    stream.set_nodelay(true)?;
    let replies = Arc::new(Replies::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stream, replies, stop) = (stream.try_clone()?, replies.clone(), stop.clone());
        thread::Builder::new()
            .name("redis-replies".into())
            .spawn(move || read_replies(stream, replies, stop))?
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut sent: u64 = 0;
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut last_write = start;
    loop {
        let now = Instant::now();
        if now >= deadline || sent >= plan.max_messages {
            break;
        }
        let mut allowed = BATCH.min(plan.max_messages - sent);
        if let Some(rate) = plan.rate {
            let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
            allowed = allowed.min(due.saturating_sub(sent));
            if sent > 0 && now < last_write + SLOT {
                allowed = 0;
            }
        }
        if let Some(w) = &plan.window {
            let done = w.progress.load(Ordering::Acquire).saturating_sub(w.base);
            allowed = allowed.min((done + w.size).saturating_sub(sent));
        }
        let acked = replies.count.load(Ordering::Acquire);
        allowed = allowed.min((acked + REPLY_WINDOW).saturating_sub(sent));
        if allowed == 0 {
            let pause = match plan.rate {
                Some(rate) => {
                    let next_due = start + Duration::from_secs_f64(sent as f64 / rate);
                    let next_slot = last_write + SLOT;
                    next_due
                        .max(next_slot)
                        .saturating_duration_since(now)
                        .clamp(Duration::from_micros(5), Duration::from_millis(1))
                }
                None => Duration::from_micros(50),
            };
            thread::sleep(pause);
            continue;
        }
        buf.clear();
        let bt = sys::now_us();
        for i in 0..allowed {
            (plan.command)(sent + i, bt, &mut buf);
        }
        stream.write_all(&buf)?;
        sent += allowed;
        last_write = Instant::now();
    }
    let wait_until = Instant::now() + Duration::from_secs(10);
    while replies.count.load(Ordering::Acquire) < sent && Instant::now() < wait_until {
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let first_error = replies.first_error.lock().expect("reply lock").clone();
    Ok(Published {
        sent,
        with_receivers: replies.with_receivers.load(Ordering::Relaxed),
        errors: replies.errors.load(Ordering::Relaxed),
        first_error,
        secs: last_write.duration_since(start).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_publish() {
        let mut out = Vec::new();
        publish_command(&mut out, "a:b", b"{}");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$3\r\na:b\r\n$2\r\n{}\r\n");
    }
}
