//! What the bench's integration tests share: a private redis-server, a dev-mode hub started
//! in this process through `relay_hub::run` (real sockets), and running `hub-bench`.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

/// A private redis-server on a free port; killed on drop.
pub struct Redis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, never the same one twice in this test binary (its tests run in
/// parallel; a released port could otherwise go to two servers at once).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Polls `ready` every 20 ms until it holds; fails the test after 20 s.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a private redis-server and waits until it accepts connections.
pub fn redis() -> Redis {
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

/// An environment lookup over `pairs`, for `Config::from_vars`.
pub fn vars(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A dev-mode hub on its own thread; stops when the returned sender is dropped.
pub fn hub(redis: &Redis) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let env = vars(vec![
        ("HUB_AUTH", "dev".into()),
        ("HUB_WORKERS", "1".into()),
        ("HUB_MAX_CONNECTIONS_PER_IP", "0".into()),
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

/// Runs `hub-bench` and returns its JSON line.
pub fn bench(args: &[&str]) -> Value {
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
