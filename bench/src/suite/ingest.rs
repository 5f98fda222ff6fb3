//! `hub-bench ingest`: notification saturation (closed loop) of one hub with 1, 2, 4, ...
//! Redis pub/sub connections (`HUB_INGEST_CONNECTIONS`), each figure the median of
//! `--repeats` runs, as a Markdown section with the ratio against one connection (printed on
//! stdout; `make bench` appends it to `BENCHMARKS.md`).
//!
//! CPUs are detected: by default the hub gets every CPU but the last, and Redis and the load
//! generator the last one; `--server-cpus` and `--client-cpus` (taskset lists) override it,
//! so the same command runs on a 2-core laptop and a 64-core server.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::{free_port, healthy, s, start_redis, wait_until, Proc};
use crate::args::Args;

/// Runs the comparison and prints its Markdown section.
pub fn run(mut args: Args) -> Result<(), String> {
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default_server = match cpus {
        1 | 2 => "0".to_string(),
        _ => format!("0-{}", cpus - 2),
    };
    let server_cpus: String = args.get("server-cpus", default_server)?;
    let client_cpus: String = args.get("client-cpus", (cpus - 1).to_string())?;
    let counts: String = args.get("connections", "1,2,4".to_string())?;
    let users: u64 = args.get("users", 1000)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let repeats: usize = args.get("repeats", 3)?;
    let workers: usize = args.get("workers", cpus.saturating_sub(1).max(1))?;
    args.finish()?;
    let counts: Vec<usize> = counts
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|e| format!("--connections {c}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;

    let redis_port = free_port()?;
    let redis_log =
        std::env::temp_dir().join(format!("hub-bench-ingest-{}.log", std::process::id()));
    let redis = start_redis(&client_cpus, redis_port, &redis_log)?;
    let redis_addr: SocketAddr = ([127, 0, 0, 1], redis_port).into();
    wait_until("redis-server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(redis_addr).is_ok()
    })?;

    let mut rows = Vec::new();
    for &n in &counts {
        let port = free_port()?;
        let env = [
            ("HUB_AUTH", s("dev")),
            ("HUB_WORKERS", s(workers)),
            ("HUB_INGEST_CONNECTIONS", s(n)),
            ("HUB_HOST", s("127.0.0.1")),
            ("HUB_MAX_CONNECTIONS_PER_IP", s(0)),
            ("PORT", s(port)),
            ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            ("RUST_LOG", s("warn")),
        ];
        let hub = Proc::start(
            "relay-hub",
            "taskset",
            &[s("-c"), server_cpus.clone(), hub_bin.display().to_string()],
            &env,
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("relay-hub", Duration::from_secs(20), || healthy(addr))?;
        let mut rates = Vec::new();
        for i in 0..repeats {
            // Each run its own users: no run sees another's leftovers.
            let first_user = 1 + (i as u64) * users;
            let notify = [
                exe.display().to_string(),
                s("notify"),
                s("--target"),
                s(addr),
                s("--pid"),
                s(hub.pid()),
                s("--redis"),
                s(redis_addr),
                s("--users"),
                s(users),
                s("--first-user"),
                s(first_user),
                s("--rate"),
                s(0),
                s("--seconds"),
                s(seconds),
            ];
            eprintln!(
                "\n== ingest {n} #{}\n$ taskset -c {client_cpus} {}",
                i + 1,
                notify.join(" ")
            );
            let result = run_pinned(&client_cpus, &notify)?;
            let rate = result["deliveries_per_sec"]
                .as_f64()
                .ok_or_else(|| format!("no deliveries_per_sec in {result}"))?;
            if result["lost"].as_u64().unwrap_or(0) > 0 {
                return Err(format!("ingest {n}: notifications lost: {result}"));
            }
            rates.push(rate);
        }
        hub.stop();
        rates.sort_by(|a, b| a.total_cmp(b));
        rows.push((n, rates[rates.len() / 2], rates));
    }
    redis.stop();
    print!(
        "{}",
        section(&rows, &server_cpus, &client_cpus, workers, users, seconds)
    );
    Ok(())
}

/// Runs a `hub-bench` scenario pinned to `cpus` and returns its JSON line.
fn run_pinned(cpus: &str, command: &[String]) -> Result<Value, String> {
    let out = Command::new("taskset")
        .arg("-c")
        .arg(cpus)
        .args(command)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run hub-bench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("hub-bench exited with {} and no result", out.status))?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}

fn section(
    rows: &[(usize, f64, Vec<f64>)],
    server_cpus: &str,
    client_cpus: &str,
    workers: usize,
    users: u64,
    seconds: f64,
) -> String {
    let base = rows.first().map_or(1.0, |r| r.1).max(1.0);
    let mut md = String::from("\n## Ingest connections (`hub-bench ingest`)\n\n");
    md.push_str(&format!(
        "Notifications to {users} users, closed loop, {seconds} s per run, median of {} runs; \
         the hub on CPUs {server_cpus} with {workers} workers, Redis and the load generator on \
         CPUs {client_cpus}. Ratio against one connection. The ceiling on a machine is its \
         cores: with the hub on one or two cores, more connections add threads, not CPU.\n\n",
        rows.first().map_or(0, |r| r.2.len())
    ));
    md.push_str("| `HUB_INGEST_CONNECTIONS` | deliveries/s | runs | ratio |\n|---|---|---|---|\n");
    for (n, median, runs) in rows {
        let runs: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        md.push_str(&format!(
            "| {n} | {median:.0} | {} | {:.2} |\n",
            runs.join(", "),
            median / base
        ));
    }
    md
}
