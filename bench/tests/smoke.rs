//! Smoke test: `hub-bench` runs tiny bounded scenarios against a real hub (started in this
//! process through `relay_hub::run`, on real sockets) and a private redis-server, and its JSON
//! line accounts for every message. Speed is not asserted here; the benchmark reports it.

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

/// A hub on its own thread; stops when the returned sender is dropped.
fn hub(redis: &Redis) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("redis://{}", redis.addr);
    let vars = move |name: &str| match name {
        "HUB_AUTH" => Some("dev".to_string()),
        "HUB_WORKERS" => Some("1".to_string()),
        "REDIS_URL" => Some(url.clone()),
        _ => None,
    };
    let config = relay_hub::config::Config::from_vars(&vars).expect("valid test configuration");
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

#[test]
fn notify_room_and_chat_account_for_every_message() {
    let redis = redis();
    let (hub, _stop) = hub(&redis);
    let (hub, redis_addr) = (hub.to_string(), redis.addr.to_string());
    let common = ["--target", hub.as_str(), "--redis", redis_addr.as_str()];

    let notify = bench(
        &[
            &["notify"][..],
            &common,
            &[
                "--users",
                "20",
                "--rate",
                "500",
                "--seconds",
                "1",
                "--warmup",
                "0",
            ],
        ]
        .concat(),
    );
    assert_eq!(notify["connected"], 20, "{notify}");
    assert!(notify["published"].as_u64().unwrap() >= 400, "{notify}");
    assert_eq!(notify["delivered"], notify["published"], "{notify}");
    assert_eq!(notify["lost"], 0, "{notify}");
    assert_eq!(
        notify["latency_us"]["count"], notify["delivered"],
        "{notify}"
    );

    let room = bench(
        &[
            &["room"][..],
            &common,
            &[
                "--members",
                "10",
                "--messages",
                "20",
                "--rate",
                "100",
                "--warmup",
                "0",
            ],
        ]
        .concat(),
    );
    assert_eq!(room["joined"], 10, "{room}");
    assert_eq!(room["published"], 20, "{room}");
    assert_eq!(room["delivered"], 200, "{room}");
    assert_eq!(room["messages_incomplete"], 0, "{room}");

    let chat = bench(&[
        "chat",
        "--target",
        hub.as_str(),
        "--clients",
        "10",
        "--rooms",
        "2",
        "--rate-per-client",
        "2",
        "--seconds",
        "1",
    ]);
    let sent = chat["sent"].as_u64().unwrap();
    assert!(sent >= 10, "{chat}");
    // every message reaches the five members of its room, the sender included
    assert_eq!(chat["expected"].as_u64().unwrap(), sent * 5, "{chat}");
    assert_eq!(chat["delivered"], chat["expected"], "{chat}");
    assert_eq!(
        chat["round_trip_us"]["count"].as_u64().unwrap(),
        sent,
        "{chat}"
    );
}
