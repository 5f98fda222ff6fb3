//! The AI job queue (issue 3): a fresh hub pinned like the main one, then for 1 and for 4
//! `relay-hub worker` processes (pinned to the hub's CPU, `HUB_DEMO_LATENCY_MS=0` so the
//! built-in handler is a no-op) a paced run (latency) and a closed loop (jobs/s). The job keys
//! (`jobs:*`) are deleted before each worker configuration, with no worker running, so that
//! each starts from an empty queue.

use std::{
    io::{self, BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use super::{pinned::HubSpec, s, Runner};

/// Worker processes per configuration.
pub(super) const WORKER_COUNTS: [usize; 2] = [1, 4];
/// Jobs each worker runs at once (`HUB_WORKER_CONCURRENCY`, its default).
const CONCURRENCY: usize = 4;
/// Jobs per second of the paced run.
pub(super) const PACED_RATE: u64 = 200;
/// Jobs enqueued without a result in the closed loop.
pub(super) const WINDOW: u64 = 64;
/// Sessions receiving the results.
const USERS: u64 = 100;

/// Run name of a configuration's run (`paced` or `max`).
pub(super) fn name(workers: usize, kind: &str) -> String {
    format!("jobs {workers}w {kind}")
}

/// Runs the block; returns (label, command) of the processes it started, for the report.
pub(super) fn run(
    runner: &mut Runner,
    spec: &HubSpec<'_>,
    quick: bool,
    redis: SocketAddr,
    redis_url: &str,
) -> Result<Vec<(String, String)>, String> {
    let seconds = if quick { 2 } else { 5 };
    let (hub, addr) = spec.start()?;
    let mut commands = vec![("hub (jobs)".to_string(), hub.command.clone())];
    for workers in WORKER_COUNTS {
        let deleted = delete_matching(redis, "jobs:*")
            .map_err(|e| format!("delete jobs:* in Redis {redis}: {e}"))?;
        eprintln!("\n== jobs with {workers} worker(s): deleted {deleted} job keys");
        let mut procs = Vec::new();
        for i in 1..=workers {
            procs.push(spec.worker(&[
                ("REDIS_URL", redis_url.to_string()),
                ("HUB_WORKER_CONCURRENCY", s(CONCURRENCY)),
                ("HUB_DEMO_LATENCY_MS", s(0)),
                ("HUB_WORKER_ID", format!("bench-{workers}w-{i}")),
                ("RUST_LOG", s("warn")),
            ])?);
        }
        if workers == 1 {
            commands.push(("job worker".to_string(), procs[0].command.clone()));
        }
        let pids: Vec<String> = procs.iter().map(|p| p.pid().to_string()).collect();
        let common = [
            s("jobs"),
            s("--target"),
            s(addr),
            s("--pid"),
            s(hub.pid()),
            s("--worker-pids"),
            pids.join(","),
            s("--users"),
            s(USERS),
            s("--seconds"),
            s(seconds),
        ];
        let mut paced = common.to_vec();
        paced.extend([s("--rate"), s(PACED_RATE)]);
        runner.run(&name(workers, "paced"), &paced);
        let mut max = common.to_vec();
        max.extend([s("--rate"), s(0), s("--window"), s(WINDOW)]);
        runner.run(&name(workers, "max"), &max);
        for p in procs {
            p.stop();
        }
    }
    hub.stop();
    Ok(commands)
}

/// Deletes every key matching `pattern` (`SCAN` + `UNLINK`); returns how many.
fn delete_matching(redis: SocketAddr, pattern: &str) -> io::Result<u64> {
    let stream = TcpStream::connect_timeout(&redis, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut cursor = "0".to_string();
    let mut deleted = 0;
    loop {
        send(
            &mut writer,
            &["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"],
        )?;
        let reply = read_reply(&mut reader)?;
        let Resp::Array(mut parts) = reply else {
            return Err(io::Error::other(format!("SCAN replied {reply:?}")));
        };
        let keys = match parts.pop() {
            Some(Resp::Array(keys)) => keys,
            other => return Err(io::Error::other(format!("SCAN keys {other:?}"))),
        };
        cursor = match parts.pop() {
            Some(Resp::Bulk(c)) => c,
            other => return Err(io::Error::other(format!("SCAN cursor {other:?}"))),
        };
        let keys: Vec<String> = keys
            .into_iter()
            .filter_map(|k| match k {
                Resp::Bulk(k) => Some(k),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            let mut cmd = vec!["UNLINK"];
            cmd.extend(keys.iter().map(String::as_str));
            send(&mut writer, &cmd)?;
            match read_reply(&mut reader)? {
                Resp::Int(n) => deleted += n as u64,
                other => return Err(io::Error::other(format!("UNLINK replied {other:?}"))),
            }
        }
        if cursor == "0" {
            return Ok(deleted);
        }
    }
}

/// The RESP2 replies `SCAN` and `UNLINK` give.
#[derive(Debug)]
enum Resp {
    Int(i64),
    Bulk(String),
    Array(Vec<Resp>),
}

fn send(w: &mut impl Write, args: &[&str]) -> io::Result<()> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    w.write_all(out.as_bytes())
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| io::Error::other(format!("bad RESP line `{line}`")))
    };
    match kind {
        ":" => Ok(Resp::Int(number(rest)?)),
        "$" => {
            let len = number(rest)?;
            if len < 0 {
                return Err(io::Error::other("unexpected nil reply"));
            }
            let mut buf = vec![0u8; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(Resp::Bulk(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let n = number(rest)?;
            (0..n.max(0))
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()
                .map(Resp::Array)
        }
        "-" => Err(io::Error::other(format!("Redis error: {rest}"))),
        _ => Err(io::Error::other(format!("unexpected RESP reply `{line}`"))),
    }
}
