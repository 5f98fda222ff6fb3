//! The demo page end to end in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `playwright-core` from `tests/browser/chat.mjs`, against a real hub and
//! redis-server. Two users join a room, chat, see each other as members; one goes offline,
//! the other sends three messages, the first comes back and shows them exactly once; a third
//! user on a phone-width screen gets the history. Screenshots are saved under
//! `target/test-output/browser/`.
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

#[tokio::test]
async fn demo_page_chat_presence_and_recovery_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_dir = root.join("tests/browser");
    require_tools(&script_dir);
    let out_dir = root.join("target/test-output/browser");
    let _ = std::fs::remove_dir_all(&out_dir);

    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let url = format!("http://127.0.0.1:{}", hub.port);

    let child = tokio::process::Command::new("node")
        .arg(script_dir.join("chat.mjs"))
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
        "browser scenario failed:\n{pretty}\nstderr: {stderr}"
    );
    assert!(
        output.status.success(),
        "node exited with {}",
        output.status
    );

    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= 10, "every step was checked: {pretty}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{pretty}");
    for name in ["chat-alice.png", "chat-bob.png", "chat-phone.png"] {
        let shot = out_dir.join(name);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} was saved", shot.display());
    }
}
