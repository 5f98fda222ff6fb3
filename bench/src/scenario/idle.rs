//! `idle`: open C connections (in batches, from source addresses spread over 127.0.0.0/8,
//! over several client processes since one process may hold at most ~20,000 descriptors),
//! confirm that each got `connected`, hold them, and report the connect rate, failures and
//! each server's resident memory per connection (`VmRSS` before and after).
//!
//! The parent (`idle`) starts `idle-worker` processes (this same binary); each opens its share
//! against one server, prints one JSON line when its ramp is done, answers pings while it
//! holds its connections, and exits when its stdin closes.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{args::Args, client, proto::Proto, report, sys};

use super::{health, open_many, Target};

/// The parent: `--targets a,b --pids p,q --connections C --procs P`.
pub fn run(mut args: Args) -> Result<Value, String> {
    let mut targets: Vec<SocketAddr> = args.list("targets")?;
    if let Some(t) = args.opt("target")? {
        targets.push(t);
    }
    let pids: Vec<u32> = args.list("pids")?;
    let proto: Proto = args.get("proto", Proto::Native)?;
    let label: String = args.get(
        "server",
        if proto == Proto::Native {
            "hub".into()
        } else {
            "socketio".into()
        },
    )?;
    let connections: u64 = args.get("connections", 1000)?;
    let procs: u64 = args.get("procs", connections.div_ceil(9_500))?;
    let hold: f64 = args.get("hold", 2.0)?;
    let concurrency: usize = args.get("concurrency", 200)?;
    args.finish()?;
    if targets.is_empty() {
        return Err("--targets (or --target) is required".into());
    }
    if !pids.is_empty() && pids.len() != targets.len() {
        return Err("--pids must list one pid per target".into());
    }
    let procs = procs.max(targets.len() as u64);

    let rss_before: Vec<u64> = pids.iter().map(|p| sys::rss_kib(*p).unwrap_or(0)).collect();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut workers = Vec::new();
    let mut first = 0u64;
    for w in 0..procs {
        let count = connections / procs + u64::from(w < connections % procs);
        let target = targets[(w % targets.len() as u64) as usize];
        let child = Command::new(&exe)
            .args([
                "idle-worker",
                "--target",
                &target.to_string(),
                "--proto",
                proto.label(),
                "--count",
                &count.to_string(),
                "--first-index",
                &first.to_string(),
                "--concurrency",
                &concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start an idle worker: {e}"))?;
        first += count;
        workers.push((w as usize % targets.len(), child));
    }
    let mut per_target = vec![(0u64, 0u64); targets.len()];
    let mut first_error: Option<String> = None;
    let mut worker_secs: Vec<f64> = Vec::new();
    for (t, child) in &mut workers {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read an idle worker: {e}"))?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("idle worker said `{}`: {e}", line.trim()))?;
        per_target[*t].0 += v["ok"].as_u64().unwrap_or(0);
        per_target[*t].1 += v["failed"].as_u64().unwrap_or(0);
        worker_secs.push(v["secs"].as_f64().unwrap_or(0.0));
        if let Some(e) = v["first_error"].as_str() {
            first_error.get_or_insert_with(|| e.to_string());
        }
    }
    let ramp = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(hold));
    let mut servers = Vec::new();
    for (i, addr) in targets.iter().enumerate() {
        let (ok, failed) = per_target[i];
        let mut s = json!({"target": addr.to_string(), "connected": ok, "failed": failed});
        if let Some(pid) = pids.get(i) {
            let after = sys::rss_kib(*pid).unwrap_or(0);
            let before = rss_before[i];
            s["rss_before_kib"] = json!(before);
            s["rss_after_kib"] = json!(after);
            if ok > 0 {
                let per = (after.saturating_sub(before) * 1024) as f64 / ok as f64;
                s["rss_per_connection_bytes"] = json!(report::round(per, 0));
            }
        }
        let h = health(*addr);
        if let Some(n) = h["websocket"]["connections"].as_u64() {
            s["server_reported_connections"] = json!(n);
        }
        servers.push(s);
    }
    // Close every worker's stdin: each drops its connections and exits.
    for (_, child) in &mut workers {
        drop(child.stdin.take());
    }
    for (_, child) in &mut workers {
        let _ = child.wait();
    }
    let ok: u64 = per_target.iter().map(|p| p.0).sum();
    let failed: u64 = per_target.iter().map(|p| p.1).sum();
    let per_conn: Vec<f64> = servers
        .iter()
        .filter_map(|s| s["rss_per_connection_bytes"].as_f64())
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!("idle"));
    out.insert("server".into(), json!(label));
    out.insert("proto".into(), json!(proto.label()));
    out.extend(
        json!({
            "connections": connections,
            "instances": targets.len(),
            "client_processes": procs,
            "connected": ok,
            "failed": failed,
            "ramp_secs": report::round(ramp, 2),
            "connect_rate_per_sec": report::round(ok as f64 / ramp.max(1e-9), 0),
            "rss_per_connection_bytes": if per_conn.is_empty() {
                Value::Null
            } else {
                json!(report::round(per_conn.iter().sum::<f64>() / per_conn.len() as f64, 0))
            },
            "servers": servers,
        })
        .as_object()
        .expect("object")
        .clone(),
    );
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}

/// A worker: opens `--count` connections to `--target`, reports, holds until stdin closes.
pub async fn worker(mut args: Args) -> Result<(), String> {
    let target = Target {
        addr: args.req("target")?,
        proto: args.get("proto", Proto::Native)?,
        pid: None,
        label: String::new(),
    };
    let count: u64 = args.get("count", 1000)?;
    let first: u64 = args.get("first-index", 0)?;
    let concurrency: usize = args.get("concurrency", 200)?;
    args.finish()?;

    let names = (first..first + count).map(|i| format!("i{i}")).collect();
    let opened = open_many(&target, names, concurrency, first, None).await;
    let mut closed_early = Vec::new();
    for (_, c) in opened.clients {
        let (stream, decoder, proto) = c.into_parts();
        closed_early.push(tokio::task::spawn_local(client::pump(
            stream,
            decoder,
            proto,
            |_, _| {},
        )));
    }
    let line = json!({
        "ok": closed_early.len(),
        "failed": opened.failed,
        "first_error": opened.first_error,
        "secs": report::round(opened.secs, 3),
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    let _ = rx.await;
    Ok(())
}
