//! `hub-bench inbox`: what the notification centre costs (docs/delivery.md#read-state-unread-counts-priorities),
//! as a Markdown section on stdout (`make bench` appends it to `BENCHMARKS.md`):
//! - **read mark to the other device**: `--users` users each with one session on hub A and
//!   one on hub B (one Redis); A's session sends `mark-read` for one notification, timed until
//!   B's session has the `inbox-state` naming it; `--marks` marks at `--rate` per second;
//! - **unread count at connect**: `--connects` sequential connects (upgrade to `connected`) of
//!   users whose inbox is empty, then full (`HUB_INBOX_MAXLEN` unread), and the Redis side
//!   alone, `FCALL relay_inbox_unread` on both.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    args::Args,
    client::{self, pump_frames, write_all},
    proto::Proto,
    report,
    stack::{connect, HubProcess, RedisServer, Scratch},
    sys, ws,
};

/// Notifications kept per inbox (the hub's default `HUB_INBOX_MAXLEN`).
const MAXLEN: usize = 100;

/// Runs the measurements and prints the section.
pub fn run(mut args: Args) -> Result<(), String> {
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let users: usize = args.get("users", 100)?;
    let marks: usize = args.get("marks", 5000)?;
    let rate: f64 = args.get("rate", 1000.0)?;
    let connects: usize = args.get("connects", 500)?;
    args.finish()?;
    if users == 0 || marks.div_ceil(users) > MAXLEN {
        return Err(format!(
            "--marks {marks} over --users {users}: at most {MAXLEN} marks per user"
        ));
    }
    let scratch = Scratch::new("inbox")?;
    let redis = RedisServer::start("redis-server", &scratch.dir, false)?;
    let env = [("HUB_INBOX_MAXLEN", MAXLEN.to_string())];
    let a = HubProcess::start(&hub_bin, &redis.url(), &env, &scratch.dir, "hub-a")?;
    let b = HubProcess::start(&hub_bin, &redis.url(), &env, &scratch.dir, "hub-b")?;
    let mut conn = connect(redis.addr())?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let marked = local.block_on(
        &rt,
        mark_to_other_device(&mut conn, (&a, &b), users, marks, rate),
    )?;
    let (empty, full) = local.block_on(&rt, connect_times(&mut conn, &a, connects))?;
    let (redis_empty, redis_full) = unread_in_redis(&mut conn, connects * 4)?;
    print!(
        "{}",
        section(&[
            (
                format!("read mark, hub A session to the user's session on hub B ({marks} marks, {users} users, {rate}/s)"),
                marked
            ),
            (format!("connect to `connected`, empty inbox ({connects} connects)"), empty),
            (
                format!("connect to `connected`, {MAXLEN} unread ({connects} connects)"),
                full
            ),
            (s("`FCALL relay_inbox_unread`, empty inbox"), redis_empty),
            (format!("`FCALL relay_inbox_unread`, {MAXLEN} unread"), redis_full),
        ])
    );
    Ok(())
}

fn s(text: &str) -> String {
    text.to_string()
}

/// Appends a notification to `user`'s inbox; its id.
fn notify(conn: &mut redis::Connection, user: &str) -> Result<String, String> {
    let payload = format!(r#"{{"userId":"{user}","type":"bench","title":"t","message":"m"}}"#);
    let (id, _): (String, i64) = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg(format!("inbox:{{user:notifications:{user}}}"))
        .arg(payload)
        .query(conn)
        .map_err(|e| format!("relay_notify: {e}"))?;
    Ok(id)
}

/// The `read` ids of an `inbox-state` frame.
fn read_ids(payload: &[u8]) -> Vec<String> {
    let Ok(frame) = serde_json::from_slice::<Value>(payload) else {
        return Vec::new();
    };
    if frame["type"] != "inbox-state" {
        return Vec::new();
    }
    frame["data"]["read"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Times `marks` read marks from hub A's session to the same user's session on hub B.
async fn mark_to_other_device(
    conn: &mut redis::Connection,
    (a, b): (&HubProcess, &HubProcess),
    users: usize,
    marks: usize,
    rate: f64,
) -> Result<Value, String> {
    let per_user = marks.div_ceil(users);
    let mut ids: Vec<Vec<String>> = Vec::new();
    for u in 0..users {
        let user = format!("inbox-{u}");
        ids.push(
            (0..per_user)
                .map(|_| notify(conn, &user))
                .collect::<Result<_, _>>()?,
        );
    }
    let sent: Rc<RefCell<HashMap<String, u64>>> = Rc::default();
    let hist = Rc::new(RefCell::new(report::histogram()));
    let mut senders = Vec::new();
    for u in 0..users {
        let user = format!("inbox-{u}");
        let on_a = client::open(a.addr, None, Proto::Native, &user)
            .await
            .map_err(|e| format!("{user} on hub A: {e}"))?;
        let on_b = client::open(b.addr, None, Proto::Native, &user)
            .await
            .map_err(|e| format!("{user} on hub B: {e}"))?;
        let (stream, decoder, proto) = on_b.into_parts();
        let (sent, hist) = (sent.clone(), hist.clone());
        tokio::task::spawn_local(pump_frames(stream, decoder, proto, move |_, payload| {
            let now = sys::now_us();
            for id in read_ids(payload) {
                if let Some(t0) = sent.borrow_mut().remove(&id) {
                    report::record(&mut hist.borrow_mut(), now.saturating_sub(t0));
                }
            }
        }));
        let (stream, decoder, proto) = on_a.into_parts();
        senders.push(stream.clone());
        tokio::task::spawn_local(pump_frames(stream, decoder, proto, |_, _| {}));
    }
    let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    for i in 0..marks {
        let (u, k) = (i % users, i / users);
        let id = &ids[u][k];
        let frame = format!(r#"{{"type":"mark-read","ids":["{id}"]}}"#);
        sent.borrow_mut().insert(id.clone(), sys::now_us());
        write_all(&senders[u], &ws::text(frame.as_bytes()))
            .await
            .map_err(|e| format!("mark-read: {e}"))?;
        let due = start + gap * (i as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sent.borrow().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = sent.borrow().len();
    if lost > 0 {
        return Err(format!("{lost} read marks never reached hub B's session"));
    }
    let figures = report::latency(&hist.borrow());
    Ok(figures)
}

/// Sequential connects of users with an empty inbox, then of users with `MAXLEN` unread.
async fn connect_times(
    conn: &mut redis::Connection,
    hub: &HubProcess,
    connects: usize,
) -> Result<(Value, Value), String> {
    let full_users = connects.min(50);
    for u in 0..full_users {
        for _ in 0..MAXLEN {
            notify(conn, &format!("full-{u}"))?;
        }
    }
    let mut times = Vec::new();
    for (prefix, users) in [("empty", connects), ("full", full_users)] {
        let mut hist = report::histogram();
        for i in 0..connects {
            let user = format!("{prefix}-{}", i % users);
            let t0 = sys::now_us();
            let c = client::open(hub.addr, None, Proto::Native, &user)
                .await
                .map_err(|e| format!("{user}: {e}"))?;
            report::record(&mut hist, sys::now_us().saturating_sub(t0));
            drop(c);
        }
        times.push(report::latency(&hist));
    }
    let full = times.pop().unwrap_or_default();
    Ok((times.pop().unwrap_or_default(), full))
}

/// `FCALL relay_inbox_unread` alone, `calls` times on an empty and on a full inbox.
fn unread_in_redis(conn: &mut redis::Connection, calls: usize) -> Result<(Value, Value), String> {
    let mut out = Vec::new();
    for user in ["nobody", "full-0"] {
        let mut hist = report::histogram();
        for _ in 0..calls {
            let t0 = sys::now_us();
            let n: i64 = redis::cmd("FCALL")
                .arg("relay_inbox_unread")
                .arg(1)
                .arg(format!("inbox:{{user:notifications:{user}}}"))
                .query(conn)
                .map_err(|e| format!("relay_inbox_unread: {e}"))?;
            report::record(&mut hist, sys::now_us().saturating_sub(t0));
            if user == "full-0" && n != MAXLEN as i64 {
                return Err(format!("{user} has {n} unread, not {MAXLEN}"));
            }
        }
        out.push(report::latency(&hist));
    }
    let full = out.pop().unwrap_or_default();
    Ok((out.pop().unwrap_or_default(), full))
}

/// The Markdown section: one row per measurement, in milliseconds.
fn section(rows: &[(String, Value)]) -> String {
    let ms = |v: &Value, q: &str| {
        v[q].as_u64()
            .map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
    };
    let mut out = String::from(
        "\n## Notification centre (`hub-bench inbox`)\n\nTwo hubs on one Redis, both on this \
         machine. Milliseconds.\n\n| what | p50 | p99 | max |\n|---|---|---|---|\n",
    );
    for (what, v) in rows {
        out.push_str(&format!(
            "| {what} | {} | {} | {} |\n",
            ms(v, "p50"),
            ms(v, "p99"),
            ms(v, "max")
        ));
    }
    out
}
