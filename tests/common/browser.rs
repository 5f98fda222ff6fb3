//! Running a browser scenario (`tests/browser/*.mjs`: headless Chromium driven by
//! `playwright-core`) against real hubs: the scenario prints asks as JSON lines (stop or start
//! a hub) that [`Hubs`] carries out and answers on its stdin, then its report.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{hub_on_port, Hub};

/// How long a whole browser scenario may take.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Chromium's path (`CHROMIUM_PATH`, default Debian's `/usr/bin/chromium`).
pub fn chromium_path() -> String {
    std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// `tests/browser/` in the source tree.
pub fn script_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with install instructions when something a scenario needs is missing.
pub fn require_tools() {
    let chromium = chromium_path();
    let mut missing = Vec::new();
    if !Path::new(&chromium).exists() {
        missing.push(format!(
            "Chromium at {chromium}: install it with `apt-get install -y chromium`"
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (v18+): install it with `apt-get install -y nodejs npm`".into());
    }
    if !script_dir().join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "playwright-core: run `npm ci --prefix {}`",
            script_dir().display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run; missing:\n  - {}\n(`.ci/run` installs all of these)",
        missing.join("\n  - ")
    );
}

/// A hub a scenario may stop and start again on the same port.
pub struct Slot {
    /// Its port (kept across restarts).
    pub port: u16,
    /// Its environment beyond the harness's defaults.
    pub env: Vec<(String, String)>,
    /// The running process, `None` while stopped.
    pub hub: Option<Hub>,
}

/// The hubs of a scenario, all on one Redis.
pub struct Hubs {
    /// Their Redis.
    pub redis_url: String,
    /// The hubs, in the order the scenario names them (`"hub": 0`).
    pub slots: Vec<Slot>,
}

impl Hubs {
    /// Starts one hub per port, each with `env`.
    pub async fn start(redis_url: String, ports: &[u16], env: &[(&str, &str)]) -> Hubs {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut slots = Vec::new();
        for &port in ports {
            let mut slot = Slot {
                port,
                env: env.clone(),
                hub: None,
            };
            slot.hub = Some(start_slot(&redis_url, &slot).await);
            slots.push(slot);
        }
        Hubs { redis_url, slots }
    }

    /// `http://127.0.0.1:{port}` of each hub.
    pub fn urls(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.port))
            .collect()
    }

    /// Carries out an ask: `{"ask":"stop","hub":i,"signal":"TERM"|"KILL"}` (and waits for the
    /// exit) or `{"ask":"start","hub":i}` (and waits until it answers HTTP).
    async fn carry_out(&mut self, ask: &Value) -> Value {
        let i = ask["hub"].as_u64().expect("an ask names its hub") as usize;
        match ask["ask"].as_str() {
            Some("stop") => {
                let mut hub = self.slots[i].hub.take().expect("the hub runs");
                let signal = if ask["signal"] == "KILL" {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                };
                hub.signal(signal);
                let code = hub.wait_exit().await;
                json!({"done": "stop", "exit": code})
            }
            Some("start") => {
                assert!(self.slots[i].hub.is_none(), "hub {i} is stopped");
                let hub = start_slot(&self.redis_url, &self.slots[i]).await;
                self.slots[i].hub = Some(hub);
                json!({"done": "start"})
            }
            other => panic!("unknown ask {other:?}: {ask}"),
        }
    }
}

async fn start_slot(redis_url: &str, slot: &Slot) -> Hub {
    let env: Vec<(&str, &str)> = slot
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hub_on_port(redis_url, slot.port, &env).await
}

/// Runs `node tests/browser/{script} {args...}`, carrying out its asks on `hubs`; returns its
/// report after checking that it passed and checked at least `min_checks` things.
pub async fn run_scenario(
    script: &str,
    args: &[String],
    hubs: &mut Hubs,
    min_checks: usize,
) -> Value {
    require_tools();
    let mut child = tokio::process::Command::new("node")
        .arg(script_dir().join(script))
        .args(args)
        .env("CHROMIUM_PATH", chromium_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut report = Value::Null;
    let scenario = async {
        while let Some(line) = lines.next_line().await.expect("read the scenario's output") {
            stdout.push_str(&line);
            stdout.push('\n');
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if value.get("ask").is_some() {
                let answer = hubs.carry_out(&value).await;
                stdin
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .expect("answer the scenario");
            } else if value.get("ok").is_some() {
                report = value;
            }
        }
    };
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the browser scenario {script} finished in time\n{stdout}"));
    let status = child.wait().await.expect("node ran");
    let stderr = errors.await.unwrap();
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(
        report["ok"], true,
        "browser scenario {script} {args:?} failed:\n{pretty}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(status.success(), "node exited with {status}");
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.len() >= min_checks,
        "every step was checked: {pretty}"
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{pretty}");
    report
}
