//! Renders the suite's runs as `BENCHMARKS.md`: machine, method, the targets table with the
//! baseline ratios, per-scenario tables, the Socket.IO transport and AI job sections
//! ([`socketio`], [`jobs`]), every command, and the raw JSON lines.

mod jobs;
mod room_hook;
mod socketio;

use std::fmt::Write as _;

use serde_json::Value;

use crate::suite::{Context, Run};

/// socketioxide 0.18 figures measured on this kind of machine
/// (`docs/benchmarks.md#reference-figures`); not re-measured
/// by the suite, quoted for the targets that are defined against them.
const SOCKETIOXIDE_SATURATION: f64 = 94_000.0;
const SOCKETIOXIDE_ROOM: f64 = 250_000.0;

fn find<'a>(runs: &'a [Run], name: &str) -> Option<&'a Run> {
    runs.iter().find(|r| r.name == name)
}

fn get<'a>(runs: &'a [Run], name: &str, path: &str) -> Option<&'a Value> {
    let mut v = &find(runs, name)?.result;
    for key in path.split('.') {
        v = v.get(key)?;
    }
    (!v.is_null()).then_some(v)
}

fn num(runs: &[Run], name: &str, path: &str) -> Option<f64> {
    get(runs, name, path).and_then(Value::as_f64)
}

/// `12,345` for integers, `1.23` otherwise.
pub(crate) fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = (v.abs() as u64).to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or("–".into(), fmt)
}

fn ms(us: Option<f64>) -> String {
    us.map_or("–".into(), |u| format!("{:.2} ms", u / 1000.0))
}

fn kib(bytes: Option<f64>) -> String {
    bytes.map_or("–".into(), |b| {
        format!("{:.2} KiB ({} B)", b / 1024.0, fmt(b))
    })
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
        _ => "–".into(),
    }
}

/// `median of a, b, c` for a run picked from repeats (empty otherwise).
fn repeats(runs: &[Run], name: &str) -> String {
    let Some(values) = get(runs, name, "repeats.values").and_then(Value::as_array) else {
        return String::new();
    };
    let list: Vec<String> = values
        .iter()
        .filter_map(Value::as_f64)
        .map(|v| fmt(v.round()))
        .collect();
    format!(" (median of {} runs: {})", list.len(), list.join(", "))
}

/// Deliveries per CPU-second of the server: what it would sustain with its core to itself.
fn capacity(runs: &[Run], name: &str) -> Option<f64> {
    num(runs, name, "server_cpu.us_per_delivery").map(|us| (1e6 / us).round())
}

/// Renders the report.
pub fn render(ctx: &Context, runs: &[Run]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `{}` (`hub-bench suite`, {:.0} s){}. Every figure below is from that one run; \
         the exact command of each is listed under [Commands](#commands). Rerun with `make bench`.\n",
        ctx.invocation,
        ctx.secs,
        if ctx.quick {
            " with `--quick` (small sizes: a smoke run, not the standard figures)"
        } else {
            ""
        }
    );
    let _ = writeln!(w, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &ctx.machine {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "| load average (1/5/15 min) | {} before, {} after |\n",
        ctx.load.0, ctx.load.1
    );

    method(w, ctx, runs);
    targets(w, runs);
    details(w, ctx, runs);
    socketio::render(w, runs);
    jobs::render(w, ctx, runs);

    let _ = writeln!(w, "## Commands\n\nServers (started by the suite):\n\n```sh");
    for (name, cmd) in &ctx.servers {
        let _ = writeln!(w, "# {name}\n{cmd}");
    }
    let _ = writeln!(w, "```\n\nScenarios, in order:\n\n```sh");
    for r in runs {
        let _ = writeln!(w, "# {}\n{}", r.name, r.command);
    }
    let _ = writeln!(w, "```\n\n## Raw results\n\nOne JSON line per scenario run, as printed by `hub-bench`:\n\n```json");
    for r in runs {
        let _ = writeln!(w, "{}", r.result);
    }
    let _ = writeln!(w, "```");
    md
}

fn method(w: &mut String, ctx: &Context, runs: &[Run]) {
    let _ = writeln!(
        w,
        "## Method\n\n\
         - One server at a time is pinned to CPU {s} (`taskset -c {s}`; the hub with `HUB_WORKERS=1`); \
           the load generator (`hub-bench`) and `redis-server` are pinned to CPU {c}. Loopback only.\n\
         - The baseline is `bench/baseline/server.js`: the original Node design (socket.io 4 + ioredis, \
           pattern subscriptions, the same channels and event names), driven by the same `hub-bench` \
           client code through Socket.IO framing over WebSocket (`/socket.io/?EIO=4&transport=websocket`).\n\
         - Latency is publish-to-receipt: the publisher stamps `CLOCK_MONOTONIC` into each message when \
           it writes the `PUBLISH`; the receiving client subtracts it on arrival (Redis, the server and \
           the client's read are all inside it).\n\
         - CPU per delivery = the server process's CPU time (utime + stime of all threads, \
           `/proc/PID/stat`) over the run / deliveries. *Capacity* = 1 s / CPU per delivery: the \
           deliveries per second the server sustains with its core to itself.\n\
         - Saturation (`notify` at rate `max`) is a closed loop: at most 2,000 notifications in \
           flight (published, not yet received), so Redis never buffers unboundedly. Room fan-out \
           `max` is the same with 8 messages in flight. Saturation and the floor vary by 10-30% \
           between runs on this shared machine, so each is run three times and the median run \
           is reported (the three values are shown).\n\
         - The floor: `hub-bench floor` writes 120-byte frames round-robin to 1,000 loopback TCP \
           sockets from a thread pinned to CPU {s} while a thread on CPU {c} drains them; its CPU \
           time per write is the least one delivery can cost.\n\
         - Idle memory: `VmRSS` of the server before the clients connect and after all of them got \
           `connected`, divided by the connections.\n\
         - socketioxide 0.18 figures are quoted from \
           [docs/benchmarks.md](docs/benchmarks.md#reference-figures) (measured earlier on this \
           kind of machine, the same way), not re-measured here.\n\
         - Where the hub's time and memory go (profiles), and what each scenario does: \
           [`bench/README.md`](bench/README.md).\n",
        s = ctx.server_cpu,
        c = ctx.client_cpu
    );
    // Other processes on either CPU distort the figures; say so when it happened.
    let mut noisy = Vec::new();
    for r in runs {
        let busy = r.cpu_busy_pct.get(ctx.server_cpu).copied().unwrap_or(0.0);
        if let Some(own) = r.result["server_cpu"]["utilisation_pct"].as_f64() {
            if busy - own > 10.0 {
                noisy.push(format!(
                    "{}: CPU {} {busy:.0}% busy, the server {own:.0}%",
                    r.name, ctx.server_cpu
                ));
            }
        }
        let client_busy = r.cpu_busy_pct.get(ctx.client_cpu).copied().unwrap_or(0.0);
        if let Some(loadgen) = r.result["loadgen_cpu_pct"].as_f64() {
            let own = loadgen + r.redis_cpu_pct.unwrap_or(0.0);
            if client_busy - own > 15.0 {
                noisy.push(format!(
                    "{}: CPU {} {client_busy:.0}% busy, load generator and Redis {own:.0}%",
                    r.name, ctx.client_cpu
                ));
            }
        }
    }
    if !noisy.is_empty() {
        let _ = writeln!(
            w,
            "> **Other processes on this machine used the benchmark's CPUs during some runs** \
             (busy minus the server's own use above 10 points, or minus the load generator's \
             and Redis's above 15): {}. Latency and achieved rates of those runs understate \
             the servers; CPU per delivery and capacity are less affected.\n",
            noisy.join("; ")
        );
    }
}

fn targets(w: &mut String, runs: &[Run]) {
    let _ = writeln!(
        w,
        "## Against the targets\n\n\
         | target | goal | hub (this run) | socket.io baseline (this run) | hub vs baseline | result |\n\
         |---|---|---|---|---|---|"
    );
    // connections
    let hub_conn = num(runs, "hub idle", "connected");
    let hub_fail = num(runs, "hub idle", "failed");
    let node_conn = num(runs, "socketio idle", "connected");
    let goal = num(runs, "hub idle", "connections");
    let _ = writeln!(
        w,
        "| connections on one process | {} | {} connected, {} failed | {} connected | | {} |",
        show(goal),
        show(hub_conn),
        show(hub_fail),
        show(node_conn),
        verdict(hub_conn.zip(goal).map(|(c, g)| c >= g))
    );
    let multi = num(runs, "hub x3 idle", "connected");
    let multi_goal = num(runs, "hub x3 idle", "connections");
    let _ = writeln!(
        w,
        "| connections across three instances, one Redis | {} | {} connected, {} failed | | | {} |",
        show(multi_goal),
        show(multi),
        show(num(runs, "hub x3 idle", "failed")),
        verdict(multi.zip(multi_goal).map(|(c, g)| c >= g))
    );
    // memory
    let hub_rss = num(runs, "hub idle", "rss_per_connection_bytes");
    let node_rss = num(runs, "socketio idle", "rss_per_connection_bytes");
    let _ = writeln!(
        w,
        "| idle RSS per connection | ≤ 4 KiB (socketioxide ~30 KB) | {} | {} | {} less | {} |",
        kib(hub_rss),
        kib(node_rss),
        ratio(node_rss, hub_rss),
        verdict(hub_rss.map(|b| b <= 4096.0))
    );
    // latency
    for (rate, goal_us, old) in [
        ("10k", 1000.0, "Node 1.7 ms, socketioxide 1.3 ms"),
        ("30k", 2000.0, "Node 2-59 ms, socketioxide 8.7 ms"),
    ] {
        let hub = num(runs, &format!("hub notify {rate}"), "latency_us.p99");
        let node = num(runs, &format!("socketio notify {rate}"), "latency_us.p99");
        let lost = num(runs, &format!("hub notify {rate}"), "lost");
        let _ = writeln!(
            w,
            "| notification p99 at {rate} msg/s | ≤ {} ms (earlier: {old}) | {} (lost {}) | {} | {} lower | {} |",
            goal_us / 1000.0,
            ms(hub),
            show(lost),
            ms(node),
            ratio(node, hub),
            verdict(hub.map(|p| p <= goal_us && lost == Some(0.0)))
        );
    }
    // saturation
    let hub_sat = num(runs, "hub notify max", "deliveries_per_sec");
    let node_sat = num(runs, "socketio notify max", "deliveries_per_sec");
    let hub_cap = capacity(runs, "hub notify max");
    let node_cap = capacity(runs, "socketio notify max");
    let hub_util = num(runs, "hub notify max", "server_cpu.utilisation_pct");
    let node_util = num(runs, "socketio notify max", "server_cpu.utilisation_pct");
    let sat_goal = node_sat.map_or(2.0 * SOCKETIOXIDE_SATURATION, |n| {
        (4.0 * n).max(2.0 * SOCKETIOXIDE_SATURATION)
    });
    let _ = writeln!(
        w,
        "| saturation, notifications/s on one core | ≥ 4x Node and ≥ 2x socketioxide (~94k/s): ≥ {} | {}{} at {}% CPU; capacity {} | {}{} at {}% CPU; capacity {} | {} (capacity {}) | {} |",
        fmt(sat_goal.round()),
        show(hub_sat),
        repeats(runs, "hub notify max"),
        show(hub_util),
        show(hub_cap),
        show(node_sat),
        repeats(runs, "socketio notify max"),
        show(node_util),
        show(node_cap),
        ratio(hub_sat, node_sat),
        ratio(hub_cap, node_cap),
        verdict(hub_sat.map(|s| s >= sat_goal))
    );
    // room
    let hub_room = num(runs, "hub room max", "deliveries_per_sec");
    let node_room = num(runs, "socketio room max", "deliveries_per_sec");
    let members = num(runs, "hub room max", "joined");
    let _ = writeln!(
        w,
        "| room fan-out, deliveries/s ({} members) | ≥ 2x socketioxide (~250k/s): ≥ {} | {} (capacity {}) | {} (capacity {}) | {} | {} |",
        show(members),
        fmt(2.0 * SOCKETIOXIDE_ROOM),
        show(hub_room),
        show(capacity(runs, "hub room max")),
        show(node_room),
        show(capacity(runs, "socketio room max")),
        ratio(hub_room, node_room),
        verdict(hub_room.map(|r| r >= 2.0 * SOCKETIOXIDE_ROOM))
    );
    // floor
    let floor = num(runs, "floor", "us_per_write");
    let hub_us = num(runs, "hub notify max", "server_cpu.us_per_delivery");
    let node_us = num(runs, "socketio notify max", "server_cpu.us_per_delivery");
    let _ = writeln!(
        w,
        "| CPU per delivery at saturation vs the raw write floor | ≤ 1.5x the floor ({} us/write) | {} us = {} | {} us = {} | {} less | {} |",
        show(floor),
        show(hub_us),
        ratio(hub_us, floor),
        show(node_us),
        ratio(node_us, floor),
        ratio(node_us, hub_us),
        verdict(hub_us.zip(floor).map(|(h, f)| h <= 1.5 * f))
    );
    // flood
    let lost = num(runs, "hub flood", "lost");
    let drops = num(runs, "hub flood", "redis_output_buffer_drops");
    let reported = num(runs, "hub flood", "server_reported_reconnects");
    let silent = get(runs, "hub flood", "silent_loss").and_then(Value::as_bool);
    let node_lost = num(runs, "socketio flood", "lost_pct");
    let unnoticed = match (drops, reported) {
        (Some(d), Some(r)) => Some(r >= d),
        _ => None,
    };
    let _ = writeln!(
        w,
        "| publish flood | no silent loss: every Redis disconnect noticed, counted, reported | lost {} ({}%); Redis dropped the subscriber {} times, the hub counted {} | lost {}% | | {} |\n",
        show(lost),
        show(num(runs, "hub flood", "lost_pct")),
        show(drops),
        show(reported),
        show(node_lost),
        verdict(silent.map(|s| !s && unnoticed != Some(false)))
    );
}

fn details(w: &mut String, ctx: &Context, runs: &[Run]) {
    let _ = writeln!(w, "## Scenarios\n");
    let pair = |name: &str| {
        (
            find(runs, &format!("hub {name}")),
            find(runs, &format!("socketio {name}")),
        )
    };
    let table = |w: &mut String, title: &str, name: &str, rows: &[(&str, &str)]| {
        let (hub, node) = pair(name);
        if hub.is_none() && node.is_none() {
            return;
        }
        let _ = writeln!(
            w,
            "### {title}\n\n| | hub | socket.io baseline |\n|---|---|---|"
        );
        for (label, path) in rows {
            let cell = |r: Option<&Run>| -> String {
                let Some(r) = r else { return "–".into() };
                if *path == "@server_core_busy" {
                    return r
                        .cpu_busy_pct
                        .get(ctx.server_cpu)
                        .map_or("–".into(), |b| format!("{b:.0}%"));
                }
                if *path == "@client_core_busy" {
                    return r
                        .cpu_busy_pct
                        .get(ctx.client_cpu)
                        .map_or("–".into(), |b| format!("{b:.0}%"));
                }
                if *path == "@redis_cpu" {
                    return r.redis_cpu_pct.map_or("–".into(), |c| format!("{c:.0}%"));
                }
                if let Some(e) = r.result.get("error") {
                    return format!("error: {e}");
                }
                let mut v = &r.result;
                for k in path.split('.') {
                    v = match (v, k.parse::<usize>()) {
                        (Value::Array(a), Ok(i)) => a.get(i).unwrap_or(&Value::Null),
                        _ => &v[k],
                    };
                }
                match v {
                    Value::Null => "–".into(),
                    Value::Number(n) => fmt(n.as_f64().unwrap_or(0.0)),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            };
            let _ = writeln!(w, "| {label} | {} | {} |", cell(hub), cell(node));
        }
        let _ = writeln!(w);
    };
    table(
        w,
        "idle: connections and memory",
        "idle",
        &[
            ("connections requested", "connections"),
            ("client processes", "client_processes"),
            ("connected", "connected"),
            ("failed", "failed"),
            ("ramp (s)", "ramp_secs"),
            ("connect rate (/s)", "connect_rate_per_sec"),
            ("server RSS before (KiB)", "servers.0.rss_before_kib"),
            ("server RSS after (KiB)", "servers.0.rss_after_kib"),
            ("RSS per connection (bytes)", "rss_per_connection_bytes"),
            (
                "connections the server reports",
                "servers.0.server_reported_connections",
            ),
            ("first error", "first_error"),
        ],
    );
    let notify_rows: &[(&str, &str)] = &[
        ("users", "connected"),
        ("rate (msg/s)", "rate"),
        ("published", "published"),
        ("delivered", "delivered"),
        ("lost", "lost"),
        ("deliveries/s", "deliveries_per_sec"),
        ("latency p50 (us)", "latency_us.p50"),
        ("latency p90 (us)", "latency_us.p90"),
        ("latency p99 (us)", "latency_us.p99"),
        ("latency p99.9 (us)", "latency_us.p999"),
        ("latency max (us)", "latency_us.max"),
        ("server CPU (% of a core)", "server_cpu.utilisation_pct"),
        ("server CPU per delivery (us)", "server_cpu.us_per_delivery"),
        ("server CPU busy, all processes", "@server_core_busy"),
        ("load generator CPU (%)", "loadgen_cpu_pct"),
        ("redis-server CPU", "@redis_cpu"),
        ("client CPU busy, all processes", "@client_core_busy"),
    ];
    table(w, "notify at 10,000 msg/s", "notify 10k", notify_rows);
    table(w, "notify at 30,000 msg/s", "notify 30k", notify_rows);
    table(
        w,
        "notify saturation (closed loop, 2,000 in flight)",
        "notify max",
        notify_rows,
    );
    let room_rows: &[(&str, &str)] = &[
        ("members joined", "joined"),
        ("join failures", "join_failures"),
        ("setup: joining (s)", "join_secs"),
        ("rate (msg/s)", "rate"),
        ("messages published", "published"),
        ("deliveries expected", "expected"),
        ("delivered", "delivered"),
        ("lost", "lost"),
        ("fan-out deliveries/s", "deliveries_per_sec"),
        ("messages/s", "messages_per_sec"),
        ("last member latency p50 (us)", "last_member_latency_us.p50"),
        ("last member latency p99 (us)", "last_member_latency_us.p99"),
        ("last member latency max (us)", "last_member_latency_us.max"),
        ("server CPU (% of a core)", "server_cpu.utilisation_pct"),
        ("server CPU per delivery (us)", "server_cpu.us_per_delivery"),
        ("server CPU busy, all processes", "@server_core_busy"),
        ("client CPU busy, all processes", "@client_core_busy"),
        (
            "sessions closed during the run",
            "sessions_closed_during_run",
        ),
    ];
    table(w, "room at 50 msg/s", "room 50/s", room_rows);
    table(
        w,
        "room fan-out saturation (closed loop, 8 messages in flight)",
        "room max",
        room_rows,
    );
    table(
        w,
        "chat: clients sending chat-message frames (round trip through Redis)",
        "chat",
        &[
            ("clients", "joined"),
            ("rooms", "rooms"),
            ("messages/s sent", "messages_per_sec"),
            ("deliveries expected", "expected"),
            ("delivered", "delivered"),
            ("lost", "lost"),
            ("deliveries/s", "deliveries_per_sec"),
            ("latency p50 (us)", "latency_us.p50"),
            ("latency p99 (us)", "latency_us.p99"),
            ("latency max (us)", "latency_us.max"),
            ("sender round trip p50 (us)", "round_trip_us.p50"),
            ("sender round trip p99 (us)", "round_trip_us.p99"),
            ("server CPU (% of a core)", "server_cpu.utilisation_pct"),
            ("server CPU per delivery (us)", "server_cpu.us_per_delivery"),
            ("server CPU busy, all processes", "@server_core_busy"),
            ("client CPU busy, all processes", "@client_core_busy"),
        ],
    );
    table(
        w,
        "publish flood (open loop, 1 KiB notifications as fast as Redis takes them)",
        "flood",
        &[
            ("published", "published"),
            ("publish rate (/s)", "publish_rate"),
            ("expected", "expected"),
            ("delivered", "delivered"),
            ("lost", "lost"),
            ("lost (%)", "lost_pct"),
            (
                "Redis dropped the subscriber (redis log)",
                "redis_output_buffer_drops",
            ),
            (
                "reconnects the server reports",
                "server_reported_reconnects",
            ),
            ("/health polls (every 100 ms)", "health_polls"),
            ("/health polls not ok", "health_polls_degraded"),
            ("silent loss", "silent_loss"),
            ("server RSS before (KiB)", "rss_before_kib"),
            (
                "server RSS at end of publishing (KiB)",
                "rss_at_end_of_publish_kib",
            ),
            ("server CPU per delivery (us)", "server_cpu.us_per_delivery"),
        ],
    );
    slow_consumers(w, runs);
    join_storm(w, runs);
    room_hook::render(w, runs);
    if let Some(r) = find(runs, "hub x3 idle") {
        let _ = writeln!(w, "### three hub instances on one Redis\n\n| instance | connected | failed | RSS per connection (bytes) | connections it reports |\n|---|---|---|---|---|");
        if let Some(servers) = r.result["servers"].as_array() {
            for s in servers {
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} |",
                    s["target"].as_str().unwrap_or(""),
                    show(s["connected"].as_f64()),
                    show(s["failed"].as_f64()),
                    show(s["rss_per_connection_bytes"].as_f64()),
                    show(s["server_reported_connections"].as_f64())
                );
            }
        }
        let _ = writeln!(w);
    }
    if let Some(r) = find(runs, "floor") {
        let v = &r.result;
        let _ = writeln!(
            w,
            "### floor: raw loopback writes\n\n{} writes of {}-byte frames to {} sockets in {} s: \
             {} us of writer CPU per write ({} writes/s, writer {}% busy). The median of {} runs; \
             us per write in each: {}.\n",
            show(v["writes"].as_f64()),
            show(v["frame_bytes"].as_f64()),
            show(v["sockets"].as_f64()),
            show(v["seconds"].as_f64()),
            show(v["us_per_write"].as_f64()),
            show(v["writes_per_sec"].as_f64()),
            show(v["writer_utilisation_pct"].as_f64()),
            v["repeats"]["values"].as_array().map_or(1, Vec::len),
            v["repeats"]["values"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_f64)
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
}

/// The slow-consumer run: the normal clients' latency with the heavy users reading, then with
/// them stuck (goal: p99 within 2x).
fn slow_consumers(w: &mut String, runs: &[Run]) {
    let Some(r) = find(runs, "hub slow consumer") else {
        return;
    };
    let _ = writeln!(w, "### slow consumers (hub)\n");
    if let Some(e) = r.result.get("error") {
        let _ = writeln!(w, "error: {e}\n");
        return;
    }
    let v = &r.result;
    let _ = writeln!(
        w,
        "{} normal clients receive {} notifications/s; {} heavy users receive {} notifications/s \
         of {} B each, first as clients that read (the baseline), then as raw sockets that stop \
         reading after the handshake (one the hub drops comes back and stops again), {} s each. \
         Same traffic in both runs.\n\n| | heavy users read | heavy users never read |\n|---|---|---|",
        show(v["normal_clients"].as_f64()),
        show(v["rate"].as_f64()),
        show(v["stuck_clients"].as_f64()),
        show(v["slow_rate"].as_f64()),
        show(v["slow_payload_bytes"].as_f64()),
        show(v["seconds"].as_f64()),
    );
    for (label, path) in [
        ("normal latency p50", "latency_us.p50"),
        ("normal latency p99", "latency_us.p99"),
        ("normal latency p99.9", "latency_us.p999"),
        ("normal latency max", "latency_us.max"),
    ] {
        let cell = |run: &str| ms(num(runs, "hub slow consumer", &format!("{run}.{path}")));
        let _ = writeln!(w, "| {label} | {} | {} |", cell("without"), cell("with"));
    }
    for (label, path) in [
        ("normal notifications expected", "normal_expected"),
        ("normal notifications lost", "normal_lost"),
        ("hub RSS before (KiB)", "rss_before_kib"),
        ("hub RSS peak (KiB)", "rss_max_kib"),
        ("hub RSS after (KiB)", "rss_after_kib"),
        (
            "slow consumers dropped (`hub_slow_consumer_kicks_total`)",
            "kicks",
        ),
        ("stuck connections opened", "stuck_connections_opened"),
    ] {
        let cell = |run: &str| show(num(runs, "hub slow consumer", &format!("{run}.{path}")));
        let _ = writeln!(w, "| {label} | {} | {} |", cell("without"), cell("with"));
    }
    let ratio = v["p99_ratio"].as_f64();
    let _ = writeln!(
        w,
        "\np99 with the stuck clients / without: {} (goal ≤ 2x: {}). RSS growth while clients \
         were stuck: {} KiB (bound {} KiB: the per-session queue limit times the stuck clients, \
         plus 16 MiB).\n",
        ratio.map_or("–".into(), |r| format!("{r:.2}x")),
        verdict(ratio.map(|r| r <= 2.0)),
        show(v["rss_growth_with_kib"].as_f64()),
        show(v["rss_bound_kib"].as_f64()),
    );
}

/// The join storm: members kicked (goal 0) while a whole room joins at once.
fn join_storm(w: &mut String, runs: &[Run]) {
    let name = "hub join storm";
    let Some(r) = find(runs, name) else {
        return;
    };
    let _ = writeln!(w, "### join storm (hub, not pinned)\n");
    if let Some(e) = r.result.get("error") {
        let _ = writeln!(w, "error: {e}\n");
        return;
    }
    let v = &r.result;
    let kicks = v["kicks"].as_f64();
    let _ = writeln!(
        w,
        "{} members join one room at once (all handshakes and joins in flight together) on a \
         hub with {} worker threads, then {} chat messages are published to the room at {}/s.\n\n\
         | | |\n|---|---|\n| members kicked as slow consumers (goal 0) | {} {} |\n\
         | members joined | {} |\n| join phase (s) | {} |\n| connections ended | {} |\n\
         | deliveries expected / lost | {} / {} |\n| last member's latency p50 / p99 | {} / {} |\n",
        show(v["members"].as_f64()),
        show(v["workers"].as_f64()),
        show(v["messages"].as_f64()),
        show(v["rate"].as_f64()),
        show(kicks),
        verdict(kicks.map(|k| k == 0.0)),
        show(v["joined"].as_f64()),
        show(v["join_secs"].as_f64()),
        show(v["sessions_closed_during_run"].as_f64()),
        show(v["expected"].as_f64()),
        show(v["lost"].as_f64()),
        ms(num(runs, name, "last_member_latency_us.p50")),
        ms(num(runs, name, "last_member_latency_us.p99")),
    );
}
