//! Smoke tests of the `jobs` scenario and of the hub driven through `--proto socketio`: a real
//! hub and a real job worker (both started in this process through the library, on real
//! sockets) and a private redis-server. Every job and notification must be accounted for; speed
//! is not asserted here (the benchmark reports it).

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis() -> Redis {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for("redis-server", || TcpStream::connect(addr).is_ok());
    Redis { child, addr }
}

fn vars(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A dev-mode hub on its own thread; stops when the returned sender is dropped.
fn hub(redis: &Redis) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let env = vars(vec![
        ("HUB_AUTH", "dev".into()),
        ("HUB_WORKERS", "1".into()),
        ("REDIS_URL", format!("redis://{}", redis.addr)),
    ]);
    let config = relay_hub::config::Config::from_vars(&env).expect("valid test configuration");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new()
            .block_on(relay_hub::run(listener, config, async {
                let _ = stopped.await;
            }))
            .expect("the hub runs");
    });
    wait_for("the hub's Redis connection", || {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => return false,
        };
        use std::io::{Read, Write};
        let _ = write!(
            s,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    });
    (addr, stop)
}

/// A job worker with the no-op demo handler on its own thread; stops when the sender drops.
fn worker(redis: &Redis) -> tokio::sync::oneshot::Sender<()> {
    let env = vars(vec![
        ("REDIS_URL", format!("redis://{}", redis.addr)),
        ("HUB_WORKER_CONCURRENCY", "2".into()),
        ("HUB_DEMO_LATENCY_MS", "0".into()),
        ("HUB_WORKER_ID", "bench-smoke".into()),
    ]);
    let env = relay_hub::config::WorkerEnv::from_vars(&env).expect("valid worker configuration");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        actix_rt::System::new()
            .block_on(relay_hub::worker::run(env, async {
                let _ = stopped.await;
            }))
            .expect("the worker runs");
    });
    stop
}

/// Runs `hub-bench` and returns its JSON line.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hub-bench"))
        .args(args)
        .output()
        .expect("run hub-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hub-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout}"));
    serde_json::from_str(line).expect("the JSON line parses")
}

fn assert_every_job_delivered(r: &Value, jobs: u64) {
    assert_eq!(r["enqueued"], jobs, "{r}");
    assert_eq!(r["delivered"], r["enqueued"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["latency_us"]["count"], r["delivered"], "{r}");
    assert_eq!(r["enqueue_us"]["count"], r["enqueued"], "{r}");
    for odd in [
        "refused",
        "error_results",
        "misrouted_results",
        "unexpected_results",
    ] {
        assert_eq!(r[odd], 0, "{odd}: {r}");
    }
    // The hub's cluster-wide counters saw exactly the measured jobs complete.
    assert_eq!(r["hub_metrics"]["done"], jobs as f64, "{r}");
}

#[test]
fn jobs_paced_and_closed_loop_deliver_every_result() {
    let redis = redis();
    let (hub, _stop_hub) = hub(&redis);
    let _stop_worker = worker(&redis);
    let hub = hub.to_string();
    let common = [
        "jobs",
        "--target",
        hub.as_str(),
        "--users",
        "5",
        "--jobs",
        "12",
        "--seconds",
        "10",
        "--warmup-jobs",
        "4",
        "--http-conns",
        "2",
    ];

    let paced = bench(&[&common[..], &["--rate", "100"]].concat());
    assert_every_job_delivered(&paced, 12);
    assert_eq!(paced["rate"], 100.0, "{paced}");

    let closed = bench(&[&common[..], &["--rate", "0", "--window", "3"]].concat());
    assert_every_job_delivered(&closed, 12);
    assert_eq!(closed["rate"], "max", "{closed}");
}

#[test]
fn notify_through_the_hubs_socketio_endpoint_accounts_for_every_message() {
    let redis = redis();
    let (hub, _stop) = hub(&redis);
    let (hub, redis_addr) = (hub.to_string(), redis.addr.to_string());
    let r = bench(&[
        "notify",
        "--target",
        hub.as_str(),
        "--redis",
        redis_addr.as_str(),
        "--proto",
        "socketio",
        "--server",
        "hub-sio",
        "--users",
        "10",
        "--rate",
        "200",
        "--seconds",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(r["proto"], "socketio", "{r}");
    assert_eq!(r["connected"], 10, "{r}");
    assert_eq!(r["connect_failures"], 0, "{r}");
    assert!(r["published"].as_u64().unwrap() >= 150, "{r}");
    assert_eq!(r["delivered"], r["published"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
}
