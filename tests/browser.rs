//! The demo pages end to end in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `playwright-core`, against a real hub and redis-server.
//! - `tests/browser/chat.mjs`: two users join a room, chat, see each other as members; one
//!   goes offline, the other sends three messages, the first comes back and shows them exactly
//!   once; a third user on a phone-width screen gets the history, and a notification as a
//!   toast on screen and in the Events panel.
//! - `tests/browser/dashboard.mjs`: the dashboard at desktop and phone width: header styled
//!   like the chat page, no horizontal overflow, the latency picker before data, a chart drawn
//!   once analytics events arrive, time-axis labels apart, `/favicon.ico` served.
//!
//! Screenshots are saved under `target/test-output/browser/`.
//!
//! Needs `chromium` and the script's node modules; `.ci/run` installs both. Without them
//! the test fails and says how to install them.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use common::{hub, Redis};
use serde_json::Value;

/// How long the whole browser scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

fn chromium_path() -> String {
    std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Fails with install instructions when something the scenario needs is missing.
fn require_tools(script_dir: &Path) {
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
    if !script_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "playwright-core: run `npm ci --prefix {}`",
            script_dir.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run; missing:\n  - {}\n(`.ci/run` installs all of these)",
        missing.join("\n  - ")
    );
}

/// Runs `tests/browser/{script}` against a fresh hub and redis-server; returns its report
/// after checking that it passed, checked at least `min_checks` things, and saved `screens`
/// (under `target/test-output/browser/{out}/`).
async fn run_scenario(script: &str, out: &str, min_checks: usize, screens: &[&str]) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_dir = root.join("tests/browser");
    require_tools(&script_dir);
    let out_dir = root.join("target/test-output/browser").join(out);
    let _ = std::fs::remove_dir_all(&out_dir);

    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let url = format!("http://127.0.0.1:{}", hub.port);

    let child = tokio::process::Command::new("node")
        .arg(script_dir.join(script))
        .arg(&url)
        .arg(&out_dir)
        .env("CHROMIUM_PATH", chromium_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .expect("the browser scenario finished in time")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("no JSON report from the scenario\nstdout: {stdout}\nstderr: {stderr}")
        });
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(
        report["ok"], true,
        "browser scenario {script} failed:\n{pretty}\nstderr: {stderr}"
    );
    assert!(
        output.status.success(),
        "node exited with {}",
        output.status
    );

    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.len() >= min_checks,
        "every step was checked: {pretty}"
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{pretty}");
    for name in screens {
        let shot = out_dir.join(name);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} was saved", shot.display());
    }
    report
}

#[tokio::test]
async fn demo_page_chat_presence_recovery_and_toasts_in_chromium() {
    run_scenario(
        "chat.mjs",
        "chat",
        13,
        &[
            "chat-alice.png",
            "chat-bob.png",
            "chat-phone.png",
            "chat-phone-toast.png",
        ],
    )
    .await;
}

#[tokio::test]
async fn dashboard_at_desktop_and_phone_width_in_chromium() {
    run_scenario(
        "dashboard.mjs",
        "dashboard",
        20,
        &["dashboard-desktop.png", "dashboard-phone.png"],
    )
    .await;
}
