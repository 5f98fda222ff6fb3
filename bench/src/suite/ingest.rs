//! `hub-bench ingest`: notification saturation (closed loop) of one hub with 1, 2, 4, ...
//! Redis pub/sub connections (`HUB_INGEST_CONNECTIONS`), on one Redis server and on a Redis
//! Cluster of `--cluster-masters` masters (3; 0 skips it; the publisher sends `SPUBLISH` to
//! each user's master), each figure the median of `--repeats` runs, as a Markdown section
//! with the ratio against one connection on one server (printed on stdout; `make bench`
//! appends it to `BENCHMARKS.md`).
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

use super::{free_port, healthy, s, start_redis, start_redis_with, wait_until, Proc};
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
    let masters: usize = args.get("cluster-masters", 3)?;
    args.finish()?;
    let counts: Vec<usize> = counts
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|e| format!("--connections {c}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let run = Run {
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        hub_bin,
        server_cpus: server_cpus.clone(),
        client_cpus: client_cpus.clone(),
        workers,
        users,
        seconds,
        repeats,
    };

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
        let redis_env = ("REDIS_URL", format!("redis://{redis_addr}"));
        let figures = run.measure(n, redis_env, redis_addr, false)?;
        rows.push(Row {
            redis: s("one server"),
            connections: n,
            figures,
        });
    }
    redis.stop();

    if masters > 0 {
        let (nodes, first) = start_cluster(&client_cpus, masters)?;
        let urls = nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        for &n in &counts {
            let redis_env = ("REDIS_CLUSTER_URLS", urls.clone());
            let figures = run.measure(n, redis_env, first, true)?;
            rows.push(Row {
                redis: format!("cluster, {masters} masters"),
                connections: n,
                figures,
            });
        }
        for (_, node) in nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(cluster_dir());
    }
    print!(
        "{}",
        section(&rows, &server_cpus, &client_cpus, workers, users, seconds)
    );
    Ok(())
}

/// What one hub set-up measured.
struct Figures {
    /// Median deliveries per second.
    median: f64,
    /// Every run's deliveries per second.
    runs: Vec<f64>,
    /// Median hub CPU time per delivery (microseconds).
    cost: f64,
    /// Median share of its CPUs the hub used (percent).
    busy: f64,
}

/// One line of the table.
struct Row {
    redis: String,
    connections: usize,
    figures: Figures,
}

/// What every measurement shares.
struct Run {
    exe: PathBuf,
    hub_bin: PathBuf,
    server_cpus: String,
    client_cpus: String,
    workers: usize,
    users: u64,
    seconds: f64,
    repeats: usize,
}

impl Run {
    /// Starts a hub with `n` ingest connections on `redis_env`, runs `notify` `repeats` times
    /// (publishing through `redis`, a cluster node when `cluster`), stops the hub.
    fn measure(
        &self,
        n: usize,
        redis_env: (&str, String),
        redis: SocketAddr,
        cluster: bool,
    ) -> Result<Figures, String> {
        let port = free_port()?;
        let env = [
            ("HUB_AUTH", s("dev")),
            ("HUB_WORKERS", s(self.workers)),
            ("HUB_INGEST_CONNECTIONS", s(n)),
            ("HUB_HOST", s("127.0.0.1")),
            ("HUB_MAX_CONNECTIONS_PER_IP", s(0)),
            ("PORT", s(port)),
            redis_env,
            ("RUST_LOG", s("warn")),
        ];
        let hub = Proc::start(
            "relay-hub",
            "taskset",
            &[
                s("-c"),
                self.server_cpus.clone(),
                self.hub_bin.display().to_string(),
            ],
            &env,
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("relay-hub", Duration::from_secs(20), || healthy(addr))?;
        let (mut rates, mut costs, mut busy) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..self.repeats {
            // Each run its own users: no run sees another's leftovers.
            let first_user = 1 + (i as u64) * self.users;
            let mut notify = vec![
                self.exe.display().to_string(),
                s("notify"),
                s("--target"),
                s(addr),
                s("--pid"),
                s(hub.pid()),
                s("--redis"),
                s(redis),
                s("--users"),
                s(self.users),
                s("--first-user"),
                s(first_user),
                s("--rate"),
                s(0),
                s("--seconds"),
                s(self.seconds),
            ];
            if cluster {
                notify.extend([s("--cluster"), s(1)]);
            }
            eprintln!(
                "\n== ingest {n}{} #{}\n$ taskset -c {} {}",
                if cluster { " (cluster)" } else { "" },
                i + 1,
                self.client_cpus,
                notify.join(" ")
            );
            let result = run_pinned(&self.client_cpus, &notify)?;
            let rate = result["deliveries_per_sec"]
                .as_f64()
                .ok_or_else(|| format!("no deliveries_per_sec in {result}"))?;
            if result["lost"].as_u64().unwrap_or(0) > 0 {
                return Err(format!("ingest {n}: notifications lost: {result}"));
            }
            rates.push(rate);
            let cpu = &result["server_cpu"];
            costs.push(cpu["us_per_delivery"].as_f64().unwrap_or(f64::NAN));
            busy.push(cpu["utilisation_pct"].as_f64().unwrap_or(f64::NAN));
        }
        hub.stop();
        Ok(Figures {
            median: median(&rates),
            cost: median(&costs),
            busy: median(&busy),
            runs: rates,
        })
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// Where the cluster's nodes keep their files.
fn cluster_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hub-bench-cluster-{}", std::process::id()))
}

/// Starts a Redis Cluster of `masters` masters (no replicas) pinned to `cpus`; returns the
/// nodes (port, process) and the first node's address.
fn start_cluster(cpus: &str, masters: usize) -> Result<(Vec<(u16, Proc)>, SocketAddr), String> {
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut nodes = Vec::new();
    while nodes.len() < masters {
        let port = free_port()?;
        // The cluster bus listens on port + 10000.
        if port > u16::MAX - 10000
            || std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_err()
        {
            continue;
        }
        let options = [
            s("--cluster-enabled"),
            s("yes"),
            s("--dir"),
            dir.display().to_string(),
            s("--cluster-config-file"),
            format!("nodes-{port}.conf"),
        ];
        let log = dir.join(format!("{port}.log"));
        let node = start_redis_with(cpus, port, &log, &options)?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("cluster node", Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        })?;
        nodes.push((port, node));
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|(p, _)| format!("127.0.0.1:{p}"))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let first = nodes[0].0;
    wait_until("the cluster", Duration::from_secs(20), || {
        Command::new("redis-cli")
            .args(["-p", &first.to_string(), "cluster", "info"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
    })?;
    Ok((nodes, ([127, 0, 0, 1], first).into()))
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
    rows: &[Row],
    server_cpus: &str,
    client_cpus: &str,
    workers: usize,
    users: u64,
    seconds: f64,
) -> String {
    let base = rows.first().map_or(1.0, |r| r.figures.median).max(1.0);
    let mut md = String::from("\n## Ingest connections (`hub-bench ingest`)\n\n");
    md.push_str(&format!(
        "Notifications to {users} users, closed loop, {seconds} s per run, median of {} runs; \
         the hub on CPUs {server_cpus} with {workers} workers, Redis and the load generator on \
         CPUs {client_cpus} (the cluster's masters too). Ratio against one connection on one \
         server; the hub's CPU time per delivery and how busy its CPUs were (below 100% the \
         load side is the limit, and the hub, less busy, batches less per wakeup). The ceiling on a machine is its \
         cores: with the hub on one or two cores, more connections add threads, not CPU.\n\n",
        rows.first().map_or(0, |r| r.figures.runs.len())
    ));
    md.push_str(
        "| Redis | `HUB_INGEST_CONNECTIONS` | deliveries/s | runs | ratio | hub CPU us/delivery \
         | hub CPU busy |\n|---|---|---|---|---|---|---|\n",
    );
    for Row {
        redis,
        connections,
        figures: f,
    } in rows
    {
        let runs: Vec<String> = f.runs.iter().map(|r| format!("{r:.0}")).collect();
        md.push_str(&format!(
            "| {redis} | {connections} | {:.0} | {} | {:.2} | {:.2} | {:.0}% |\n",
            f.median,
            runs.join(", "),
            f.median / base,
            f.cost,
            f.busy
        ));
    }
    md
}
