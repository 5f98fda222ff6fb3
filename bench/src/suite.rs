//! `hub-bench suite` (what `make bench` runs): starts a private redis-server, a release hub and
//! the socket.io baseline, each server pinned to one CPU and the load generator and Redis to
//! the other, runs the standard scenarios against both (one server at a time), measures the
//! raw write floor, and writes `BENCHMARKS.md`.
//!
//! Every scenario is run as its own `hub-bench` process so that the exact command of every
//! figure is known; their JSON lines are collected and rendered by [`crate::markdown`].
//!
//! Blocks with their own hub process: [`socketio`] (the hub through Socket.IO next to its
//! native protocol) and [`jobs`] (the AI job queue with 1 and 4 workers).

pub mod inbox;
pub mod ingest;
mod jobs;
mod pinned;
mod socketio;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{args::Args, markdown, scenario::http_get};

/// What the suite measures; `--quick` shrinks everything for a smoke run.
struct Sizes {
    idle: u64,
    multi_idle: u64,
    users: u64,
    notify_secs: f64,
    members: u64,
    room_secs: f64,
    chat_clients: u64,
    chat_rooms: u64,
    chat_secs: f64,
    flood_secs: f64,
}

impl Sizes {
    fn standard() -> Sizes {
        Sizes {
            idle: 19_000,
            multi_idle: 57_000,
            users: 1000,
            notify_secs: 6.0,
            members: 5000,
            room_secs: 4.0,
            chat_clients: 1000,
            chat_rooms: 100,
            chat_secs: 6.0,
            flood_secs: 5.0,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            idle: 2000,
            multi_idle: 3000,
            users: 200,
            notify_secs: 2.0,
            members: 500,
            room_secs: 2.0,
            chat_clients: 200,
            chat_rooms: 20,
            chat_secs: 2.0,
            flood_secs: 2.0,
        }
    }
}

/// A server or Redis started by the suite; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    /// The command line, for the report.
    command: String,
}

impl Proc {
    fn start(
        name: &str,
        program: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Proc, String> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let command = format!("{} {} {}", env_text.join(" "), program, args.join(" "))
            .trim()
            .to_string();
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {name} ({program}): {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            command,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("suite: {} did not stop on SIGTERM; killing it", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private redis-server without persistence, pinned to `cpus` (a taskset list).
fn start_redis(cpus: &str, port: u16, log: &std::path::Path) -> Result<Proc, String> {
    start_redis_with(cpus, port, log, &[])
}

/// [`start_redis`] with more `redis-server` options.
fn start_redis_with(
    cpus: &str,
    port: u16,
    log: &std::path::Path,
    options: &[String],
) -> Result<Proc, String> {
    let mut args = vec![
        s("-c"),
        s(cpus),
        s("redis-server"),
        s("--port"),
        s(port),
        s("--bind"),
        s("127.0.0.1"),
        s("--save"),
        s(""),
        s("--appendonly"),
        s("no"),
        s("--logfile"),
        log.display().to_string(),
    ];
    args.extend_from_slice(options);
    Proc::start("redis-server", "taskset", &args, &[])
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} not ready after {limit:?}"))
}

fn healthy(addr: SocketAddr) -> bool {
    matches!(http_get(addr, "/health"), Ok((200, _)))
}

/// Busy and total jiffies per CPU, from `/proc/stat`.
pub(crate) fn cpu_times() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// One scenario run: its command and its JSON result.
pub struct Run {
    /// Short name (`hub notify 10k/s`, ...).
    pub name: String,
    /// The command as run.
    pub command: String,
    /// The scenario's JSON line (or `{"error": ...}`).
    pub result: Value,
    /// Busy % of each CPU over the run (every process on the machine).
    pub cpu_busy_pct: Vec<f64>,
    /// CPU % of redis-server over the run (it shares the load generator's CPU).
    pub redis_cpu_pct: Option<f64>,
}

struct Runner {
    exe: PathBuf,
    client_cpu: usize,
    redis_pid: Option<u32>,
    runs: Vec<Run>,
}

impl Runner {
    /// Runs `hub-bench <args>` pinned to the client CPU and records it.
    fn run(&mut self, name: &str, args: &[String]) -> Value {
        let mut full = vec![
            "-c".to_string(),
            self.client_cpu.to_string(),
            self.exe.display().to_string(),
        ];
        full.extend(args.iter().cloned());
        let command = format!("taskset {}", full.join(" "));
        eprintln!("\n== {name}\n$ {command}");
        let before = cpu_times();
        let redis_cpu = crate::sys::CpuMark::take(self.redis_pid);
        let output = Command::new("taskset")
            .args(&full)
            .stderr(Stdio::inherit())
            .output();
        let after = cpu_times();
        let redis_cpu_pct = redis_cpu
            .since(self.redis_pid)
            .map(|(cpu, wall)| (cpu * 1000.0 / wall.max(1e-9)).round() / 10.0);
        let busy = before
            .iter()
            .zip(&after)
            .map(|((b0, t0), (b1, t1))| {
                let t = (t1 - t0).max(1) as f64;
                (((b1 - b0) as f64 * 1000.0 / t).round()) / 10.0
            })
            .collect();
        let result = match output {
            Err(e) => json!({"error": format!("could not run: {e}")}),
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                match text.lines().rev().find(|l| l.starts_with('{')) {
                    Some(line) if out.status.success() => serde_json::from_str(line)
                        .unwrap_or_else(|e| json!({"error": e.to_string()})),
                    _ => json!({"error": format!("exited with {}", out.status)}),
                }
            }
        };
        self.runs.push(Run {
            name: name.to_string(),
            command,
            result: result.clone(),
            cpu_busy_pct: busy,
            redis_cpu_pct,
        });
        result
    }
}

/// Saturation and the floor vary by 10-30% between runs on a shared machine (the hub's write
/// batching depends on where the in-flight messages sit, which depends on how promptly the
/// load generator's CPU serves Redis and the clients): they are run this many times and the
/// median run is the reported one.
const REPEATS: usize = 3;

/// Among runs named `{base} #n`, names the one with the median `key` `{base}` and records
/// every run's value in it as `repeats`.
fn pick_median(runs: &mut [Run], base: &str, key: &str) {
    let prefix = format!("{base} #");
    let mut group: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.name.starts_with(&prefix))
        .filter_map(|(i, r)| r.result[key].as_f64().map(|v| (i, v)))
        .collect();
    if group.is_empty() {
        return;
    }
    let values: Vec<f64> = group.iter().map(|(_, v)| *v).collect();
    group.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (median, _) = group[group.len() / 2];
    let run = &mut runs[median];
    run.name = base.to_string();
    run.result["repeats"] = json!({ "key": key, "values": values });
}

fn s<T: ToString>(v: T) -> String {
    v.to_string()
}

/// What the report needs besides the runs.
pub struct Context {
    /// `make bench` or the suite command line.
    pub invocation: String,
    /// Machine facts (label, value).
    pub machine: Vec<(String, String)>,
    /// How the servers and Redis were started.
    pub servers: Vec<(String, String)>,
    /// CPU numbers.
    pub server_cpu: usize,
    /// CPU numbers.
    pub client_cpu: usize,
    /// Load average before and after.
    pub load: (String, String),
    /// Wall time of the suite.
    pub secs: f64,
    /// Whether this was a `--quick` run.
    pub quick: bool,
}

/// Runs the suite.
pub fn run(mut args: Args) -> Result<(), String> {
    let out: PathBuf = args.get("out", PathBuf::from("BENCHMARKS.md"))?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let baseline_dir: PathBuf = args.get("baseline-dir", PathBuf::from("bench/baseline"))?;
    let server_cpu: usize = args.get("server-cpu", 0)?;
    let client_cpu: usize = args.get("client-cpu", 1)?;
    let quick: bool = args.get("quick", false)?;
    let skip_baseline: bool = args.get("skip-baseline", false)?;
    let invocation: String = args.get("invocation", "make bench".to_string())?;
    args.finish()?;
    let sizes = if quick {
        Sizes::quick()
    } else {
        Sizes::standard()
    };
    for tool in ["taskset", "redis-server", "node"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    if !hub_bin.exists() {
        return Err(format!(
            "{} not found (cargo build --release)",
            hub_bin.display()
        ));
    }
    let started = Instant::now();
    let load_before = loadavg();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut runner = Runner {
        exe,
        client_cpu,
        redis_pid: None,
        runs: Vec::new(),
    };
    let tmp = std::env::temp_dir().join(format!("hub-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut servers = Vec::new();

    // Redis, on the load generator's CPU.
    let redis_port = free_port()?;
    let redis_log = tmp.join("redis.log");
    let redis = start_redis(&s(client_cpu), redis_port, &redis_log)?;
    servers.push(("redis".to_string(), redis.command.clone()));
    runner.redis_pid = Some(redis.pid());
    let redis_addr: SocketAddr = ([127, 0, 0, 1], redis_port).into();
    wait_until("redis-server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(redis_addr).is_ok()
    })?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");

    // The floor: a raw writer on the server CPU, a reader on the other.
    for i in 1..=REPEATS {
        runner.run(
            &format!("floor #{i}"),
            &[
                s("floor"),
                s("--sockets"),
                s(1000),
                s("--seconds"),
                s(3),
                s("--frame-bytes"),
                s(120),
                s("--writer-cpu"),
                s(server_cpu),
                s("--reader-cpu"),
                s(client_cpu),
            ],
        );
    }
    pick_median(&mut runner.runs, "floor", "us_per_write");

    // The hub, pinned, one worker.
    let hub_port = free_port()?;
    let hub_env = |port: u16| {
        vec![
            ("HUB_AUTH", s("dev")),
            ("HUB_WORKERS", s(1)),
            ("HUB_HOST", s("127.0.0.1")),
            ("HUB_MAX_CONNECTIONS_PER_IP", s(0)),
            ("PORT", s(port)),
            ("REDIS_URL", redis_url.clone()),
            ("RUST_LOG", s("warn")),
        ]
    };
    let hub = Proc::start(
        "relay-hub",
        "taskset",
        &[s("-c"), s(server_cpu), hub_bin.display().to_string()],
        &hub_env(hub_port),
    )?;
    servers.push(("hub".to_string(), hub.command.clone()));
    let hub_addr: SocketAddr = ([127, 0, 0, 1], hub_port).into();
    wait_until("relay-hub", Duration::from_secs(20), || healthy(hub_addr))?;
    let common = |addr: SocketAddr, pid: u32, proto: &str| {
        vec![
            s("--target"),
            s(addr),
            s("--pid"),
            s(pid),
            s("--proto"),
            s(proto),
        ]
    };
    let redis_arg = [s("--redis"), s(redis_addr)];
    let scenarios = |runner: &mut Runner, label: &str, addr: SocketAddr, pid: u32, proto: &str| {
        let base = common(addr, pid, proto);
        let with = |extra: &[String]| -> Vec<String> {
            let mut v = Vec::new();
            v.extend(extra.iter().cloned());
            v.extend(base.iter().cloned());
            v
        };
        runner.run(
            &format!("{label} idle"),
            &[
                s("idle"),
                s("--targets"),
                s(addr),
                s("--pids"),
                s(pid),
                s("--proto"),
                s(proto),
                s("--connections"),
                s(sizes.idle),
                s("--procs"),
                s(sizes.idle.div_ceil(9_500)),
            ],
        );
        for (name, rate) in [("10k", 10_000), ("30k", 30_000), ("max", 0)] {
            let mut a = with(&[s("notify")]);
            a.extend(redis_arg.iter().cloned());
            a.extend([
                s("--users"),
                s(sizes.users),
                s("--rate"),
                s(rate),
                s("--seconds"),
                s(sizes.notify_secs),
            ]);
            if rate > 0 {
                runner.run(&format!("{label} notify {name}"), &a);
                continue;
            }
            let base = format!("{label} notify {name}");
            for i in 1..=REPEATS {
                runner.run(&format!("{base} #{i}"), &a);
            }
            pick_median(&mut runner.runs, &base, "deliveries_per_sec");
        }
        for (name, rate, window) in [("50/s", 50, 0), ("max", 0, 8)] {
            let mut a = with(&[s("room")]);
            a.extend(redis_arg.iter().cloned());
            let messages = if rate > 0 {
                (rate as f64 * sizes.room_secs) as u64
            } else {
                100_000
            };
            a.extend([
                s("--members"),
                s(sizes.members),
                s("--messages"),
                s(messages),
                s("--rate"),
                s(rate),
                s("--max-seconds"),
                s(sizes.room_secs),
            ]);
            if window > 0 {
                a.extend([s("--window"), s(window)]);
            }
            runner.run(&format!("{label} room {name}"), &a);
        }
        let mut a = with(&[s("chat")]);
        a.extend([
            s("--clients"),
            s(sizes.chat_clients),
            s("--rooms"),
            s(sizes.chat_rooms),
            s("--rate-per-client"),
            s(2),
            s("--seconds"),
            s(sizes.chat_secs),
        ]);
        runner.run(&format!("{label} chat"), &a);
        let mut a = with(&[s("flood")]);
        a.extend(redis_arg.iter().cloned());
        a.extend([
            s("--users"),
            s(100),
            s("--seconds"),
            s(sizes.flood_secs),
            s("--payload-bytes"),
            s(1024),
            s("--redis-log"),
            redis_log.display().to_string(),
        ]);
        runner.run(&format!("{label} flood"), &a);
    };
    scenarios(&mut runner, "hub", hub_addr, hub.pid(), "native");
    // Clients that never read beside clients that do (the ratio is judged in the report).
    runner.run(
        "hub slow consumer",
        &[
            s("slow-consumer"),
            s("--target"),
            s(hub_addr),
            s("--pid"),
            s(hub.pid()),
            s("--redis"),
            s(redis_addr),
            s("--normal"),
            s(sizes.users),
            s("--slow"),
            s(sizes.users / 10),
            s("--seconds"),
            s(sizes.notify_secs),
            s("--max-p99-ratio"),
            s(0),
        ],
    );
    hub.stop();
    // Every member of a big room joins at once on a hub with more workers than cores.
    runner.run(
        "hub join storm",
        &[
            s("join-storm"),
            s("--hub-bin"),
            hub_bin.display().to_string(),
            s("--members"),
            s(sizes.members),
        ],
    );
    // The room hook's cost: join storms of `users` (1,000) with and without cached answers.
    runner.run(
        "hub room hook",
        &[
            s("room-hook"),
            s("--hub-bin"),
            hub_bin.display().to_string(),
            s("--clients"),
            s(sizes.users),
        ],
    );
    let spec = pinned::HubSpec {
        bin: &hub_bin,
        cpu: server_cpu,
        env: &hub_env,
    };
    let sio_hub = socketio::run(&mut runner, &spec, &sizes, redis_addr)?;
    servers.push(("hub (Socket.IO block)".to_string(), sio_hub));
    servers.extend(jobs::run(
        &mut runner,
        &spec,
        quick,
        redis_addr,
        &redis_url,
    )?);

    // Three hub instances on the one Redis (not pinned: this is about connections).
    let mut multi = Vec::new();
    for _ in 0..3 {
        let port = free_port()?;
        let p = Proc::start(
            "relay-hub",
            hub_bin.to_str().unwrap_or("relay-hub"),
            &[],
            &hub_env(port),
        )?;
        multi.push((SocketAddr::from(([127, 0, 0, 1], port)), p));
    }
    if let Some((_, p)) = multi.first() {
        servers.push(("hub x3 (each)".to_string(), p.command.clone()));
    }
    for (addr, _) in &multi {
        wait_until("relay-hub instance", Duration::from_secs(20), || {
            healthy(*addr)
        })?;
    }
    let targets: Vec<String> = multi.iter().map(|(a, _)| a.to_string()).collect();
    let pids: Vec<String> = multi.iter().map(|(_, p)| p.pid().to_string()).collect();
    runner.run(
        "hub x3 idle",
        &[
            s("idle"),
            s("--targets"),
            targets.join(","),
            s("--pids"),
            pids.join(","),
            s("--connections"),
            s(sizes.multi_idle),
            s("--procs"),
            s(sizes.multi_idle.div_ceil(9_500).max(3)),
        ],
    );
    for (_, p) in multi {
        p.stop();
    }

    // The socket.io baseline, pinned the same way.
    if !skip_baseline {
        let node_port = free_port()?;
        let server_js = baseline_dir.join("server.js");
        let node = Proc::start(
            "socket.io baseline",
            "taskset",
            &[
                s("-c"),
                s(server_cpu),
                s("node"),
                server_js.display().to_string(),
            ],
            &[("PORT", s(node_port)), ("REDIS_URL", redis_url.clone())],
        )?;
        servers.push(("socket.io baseline".to_string(), node.command.clone()));
        let node_addr: SocketAddr = ([127, 0, 0, 1], node_port).into();
        wait_until("socket.io baseline", Duration::from_secs(20), || {
            healthy(node_addr)
        })?;
        scenarios(&mut runner, "socketio", node_addr, node.pid(), "socketio");
        node.stop();
    }
    redis.stop();
    let _ = std::fs::remove_dir_all(&tmp);

    let ctx = Context {
        invocation,
        machine: machine(&baseline_dir),
        servers,
        server_cpu,
        client_cpu,
        load: (load_before, loadavg()),
        secs: started.elapsed().as_secs_f64(),
        quick,
    };
    let mut text = portable(&markdown::render(&ctx, &runner.runs), &tmp);
    // The drop test's section comes from `make drop` (minutes of its own): kept as it was.
    let before = std::fs::read_to_string(&out).unwrap_or_default();
    text.push_str(&kept_section(&before, DROP_HEADING));
    std::fs::write(&out, text).map_err(|e| format!("write {}: {e}", out.display()))?;
    eprintln!("\nwrote {} ({:.0} s)", out.display(), ctx.secs);
    Ok(())
}

/// The heading of the drop test's section of `BENCHMARKS.md` (written by hand from `make drop`).
const DROP_HEADING: &str = "## The drop test";

/// The section of `text` that starts with the line `heading`, up to the next `## ` heading
/// (empty when there is none), with a blank line before it.
fn kept_section(text: &str, heading: &str) -> String {
    let Some(start) = text
        .match_indices(heading)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'))
    else {
        return String::new();
    };
    let rest = &text[start..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| heading.len() + i + 1);
    format!(
        "\n{}",
        rest[..end].trim_end_matches('\n').to_string() + "\n"
    )
}

/// The report with paths of this checkout made relative and the run's temporary directory
/// named `$TMPDIR/hub-bench`, so that it reads the same on every machine.
fn portable(text: &str, tmp: &std::path::Path) -> String {
    let mut text = text.replace(&tmp.display().to_string(), "$TMPDIR/hub-bench");
    if let Ok(cwd) = std::env::current_dir() {
        text = text.replace(&format!("{}/", cwd.display()), "");
    }
    text
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn package_version(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn machine(baseline_dir: &Path) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    // The report being rewritten does not make the tree dirty.
    let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
        .lines()
        .any(|l| !l.ends_with("BENCHMARKS.md"));
    vec![
        (
            "date (UTC)".into(),
            command_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        ),
        (
            "commit".into(),
            format!(
                "{commit}{}",
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            ),
        ),
        ("CPU".into(), format!("{model}, {cpus} CPUs")),
        ("memory".into(), mem),
        ("kernel".into(), command_line("uname", &["-sr"])),
        (
            "descriptor limit".into(),
            command_line("sh", &["-c", "ulimit -n"]),
        ),
        ("rustc".into(), command_line("rustc", &["--version"])),
        ("node".into(), command_line("node", &["--version"])),
        (
            "redis-server".into(),
            command_line("redis-server", &["--version"]),
        ),
        (
            "baseline packages".into(),
            format!(
                "socket.io {}, ioredis {}",
                package_version(baseline_dir, "socket.io"),
                package_version(baseline_dir, "ioredis")
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_drop_section_only() {
        let text = "# B\n\n## Scenarios\nx\n\n## The drop test\n\n| a |\n\n## Ingest\ny\n";
        assert_eq!(
            kept_section(text, DROP_HEADING),
            "\n## The drop test\n\n| a |\n"
        );
        assert_eq!(kept_section("# B\n## Other\n", DROP_HEADING), "");
        assert_eq!(
            kept_section("## The drop test\nlast\n", DROP_HEADING),
            "\n## The drop test\nlast\n"
        );
    }
}
