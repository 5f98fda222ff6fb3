//! The processes a soak or fault scenario runs itself: a private `redis-server` it can SIGKILL
//! and start again on the same port (with an append-only file when its data must survive), and
//! hub instances it can SIGKILL or SIGTERM. Each writes its log to the run's scratch directory,
//! so the report can say whether a hub logged a panic.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    proto::Proto,
    scenario::{health, http_get, Target},
};

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

/// Polls `ready` every 20 ms until it holds or `limit` passes.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not ready after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory for one run's logs and Redis files, removed when dropped unless
/// [`Scratch::keep`] was called (a failed run keeps its logs for inspection).
pub struct Scratch {
    /// The directory.
    pub dir: PathBuf,
    keep: bool,
}

impl Scratch {
    /// Creates `$TMPDIR/hub-bench-{name}-{pid}`.
    pub fn new(name: &str) -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("hub-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch { dir, keep: false })
    }

    /// Keeps the directory after the run.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A private redis-server on a free port.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    program: String,
}

impl RedisServer {
    /// Starts one in `dir`. With `persistent`, it keeps an append-only file there, written and
    /// fsynced before each reply (`appendfsync always`), so a SIGKILLed and restarted server
    /// still holds everything it acknowledged. (With `everysec`, Redis postpones the write
    /// while a slow fsync is under way but still replies: a loaded machine then loses
    /// acknowledged chat messages, and the scenario would measure the disk, not the hub.)
    pub fn start(program: &str, dir: &Path, persistent: bool) -> Result<RedisServer, String> {
        let port = free_port()?;
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            &dir.display().to_string(),
            "--logfile",
            &dir.join("redis.log").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(
            if persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            }
            .iter()
            .map(|s| s.to_string()),
        );
        let mut redis = RedisServer {
            child: None,
            port,
            args,
            program: program.to_string(),
        };
        redis.restart()?;
        Ok(redis)
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The command line, for the report.
    pub fn command(&self) -> String {
        let quoted: Vec<String> = self
            .args
            .iter()
            .map(|a| if a.is_empty() { "''".into() } else { a.clone() })
            .collect();
        format!("{} {}", self.program, quoted.join(" "))
    }

    /// Starts the server (again, after [`RedisServer::kill`]) and waits until it answers PING.
    pub fn restart(&mut self) -> Result<(), String> {
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.program))?;
        self.child = Some(child);
        let url = self.url();
        wait_until("redis-server", Duration::from_secs(20), || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        })
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command connection to the Redis at `addr`.
pub fn connect(addr: SocketAddr) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://{addr}")).map_err(|e| e.to_string())?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| format!("connect to redis {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|_| conn.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// A hub process in dev mode on a free loopback port.
pub struct HubProcess {
    child: Child,
    /// Its HTTP and WebSocket address.
    pub addr: SocketAddr,
    /// The command line with its environment, for the report.
    pub command: String,
    log: PathBuf,
}

impl HubProcess {
    /// Starts `bin` against `redis_url` with `env` on top of the defaults (`HUB_AUTH=dev`,
    /// loopback, `RUST_LOG=warn`), logging to `{dir}/{name}.log`, and waits for `/health` 200.
    pub fn start(
        bin: &Path,
        redis_url: &str,
        env: &[(&str, String)],
        dir: &Path,
        name: &str,
    ) -> Result<HubProcess, String> {
        HubProcess::start_on(None, bin, redis_url, env, dir, name)
    }

    /// [`HubProcess::start`] pinned to `cpus` (a `taskset -c` list) when given.
    pub fn start_on(
        cpus: Option<&str>,
        bin: &Path,
        redis_url: &str,
        env: &[(&str, String)],
        dir: &Path,
        name: &str,
    ) -> Result<HubProcess, String> {
        if !bin.exists() {
            return Err(format!(
                "{} not found (cargo build --release -p relay-hub)",
                bin.display()
            ));
        }
        let port = free_port()?;
        let mut vars: Vec<(&str, String)> = vec![
            ("HUB_AUTH", "dev".into()),
            ("HUB_HOST", "127.0.0.1".into()),
            ("HUB_MAX_CONNECTIONS_PER_IP", "0".into()),
            ("PORT", port.to_string()),
            ("REDIS_URL", redis_url.to_string()),
            ("RUST_LOG", "warn".into()),
        ];
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            if *k == "REDIS_CLUSTER_URLS" {
                // The hub takes one or the other.
                vars.retain(|(name, _)| *name != "REDIS_URL");
            }
            vars.push((k, v.clone()));
        }
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let text: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let hub = HubProcess {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            command: format!(
                "{} {}{}",
                text.join(" "),
                cpus.map_or(String::new(), |c| format!("taskset -c {c} ")),
                bin.display()
            ),
            log,
        };
        wait_until(
            &format!("{name} /health 200"),
            Duration::from_secs(30),
            || matches!(http_get(hub.addr, "/health"), Ok((200, _))),
        )?;
        Ok(hub)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// It as a native-protocol benchmark target labelled `label`.
    pub fn target(&self, label: &str) -> Target {
        Target {
            addr: self.addr,
            proto: Proto::Native,
            pid: Some(self.pid()),
            label: label.into(),
        }
    }

    /// The instance id its `/health` reports (empty when it does not answer).
    pub fn instance_id(&self) -> String {
        health(self.addr)["instanceId"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether it still runs (false once it exited or was killed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to 15 s; returns the exit code (None: killed or still running).
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Lines of its log that report a panic or an error.
    pub fn log_problems(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let panics = text.lines().filter(|l| l.contains("panicked")).count() as u64;
        let errors = text.lines().filter(|l| l.contains(" ERROR ")).count() as u64;
        (panics, errors)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if self.alive() {
            self.kill();
        }
    }
}
