//! The demo pages end to end in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `playwright-core`, against a real hub and redis-server.
//! - `tests/browser/chat.mjs`: two users join a room, chat, see each other as members; one
//!   goes offline, the other sends three messages, the first comes back and shows them exactly
//!   once; then the first one's connection (through a test balancer) is reset at the socket
//!   while the other sends, and the page resumes and shows it once; a third user on a
//!   phone-width screen gets the history, and a notification as a toast on screen and in the
//!   Events panel.
//! - `tests/browser/inbox.mjs`: the notification centre in two tabs of one user, each on its
//!   own instance: both bells count the same, a notification read in one is read in the
//!   other, "Mark all read" clears both, a reloaded tab starts from the count.
//! - `tests/browser/dashboard.mjs`: the dashboard at desktop and phone width: header styled
//!   like the chat page, no horizontal overflow, the latency picker before data, a chart drawn
//!   once analytics events arrive, time-axis labels apart, `/favicon.ico` served.
//!
//! - `tests/browser/stream.mjs`: a job's answer streams in on the demo page (a real
//!   `relay-hub worker` streams it), a reload mid-stream shows the whole answer with each word
//!   once, and the Stop button cancels a job (nothing more streams).
//!
//! Screenshots are saved under `target/test-output/browser/`.
//!
//! Needs `chromium` and the script's node modules; `.ci/run` installs both. Without them
//! the test fails and says how to install them. The browser client itself is tested in
//! `tests/client_browser.rs`.

mod common;

use std::path::Path;

use common::{
    browser::{run_scenario, Hubs},
    free_port, Redis,
};

/// Runs `tests/browser/{script}` against a fresh hub and redis-server (the chat scenario also
/// through a balancer on a port allowed as an origin); checks that it passed, checked at least
/// `min_checks` things, and saved `screens` (under `target/test-output/browser/{out}/`).
async fn run_page_scenario(script: &str, out: &str, min_checks: usize, screens: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/test-output/browser").join(out);
    let _ = std::fs::remove_dir_all(&out_dir);

    let redis = Redis::start().await;
    let balancer = free_port();
    let origin = format!("http://127.0.0.1:{balancer}");
    let mut hubs = Hubs::start(
        redis.url(),
        &[free_port()],
        &[("HUB_ALLOWED_ORIGINS", origin.as_str())],
    )
    .await;
    let args = [
        hubs.urls()[0].clone(),
        out_dir.display().to_string(),
        balancer.to_string(),
    ];
    run_scenario(script, &args, &mut hubs, min_checks).await;
    for name in screens {
        let shot = out_dir.join(name);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} was saved", shot.display());
    }
}

#[tokio::test]
async fn demo_page_chat_presence_recovery_and_toasts_in_chromium() {
    run_page_scenario(
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
    run_page_scenario(
        "dashboard.mjs",
        "dashboard",
        20,
        &["dashboard-desktop.png", "dashboard-phone.png"],
    )
    .await;
}

#[tokio::test]
async fn demo_page_streams_an_answer_survives_a_reload_and_stops_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/test-output/browser/stream");
    let redis = Redis::start().await;
    // 16 words over 4 s: a reload and a click land mid-stream.
    let _worker = common::jobs::worker(&redis, "demo", &[("HUB_DEMO_LATENCY_MS", "4000")])
        .ready()
        .await;
    let mut hubs = Hubs::start(redis.url(), &[free_port()], &[]).await;
    let args = [hubs.urls()[0].clone(), out_dir.display().to_string()];
    run_scenario("stream.mjs", &args, &mut hubs, 6).await;
}

#[tokio::test]
async fn demo_page_bell_and_inbox_agree_across_two_tabs_on_two_instances_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/test-output/browser/inbox");
    let _ = std::fs::remove_dir_all(&out_dir);
    let redis = Redis::start().await;
    let mut hubs = Hubs::start(redis.url(), &[free_port(), free_port()], &[]).await;
    let mut args = hubs.urls();
    args.push(out_dir.display().to_string());
    run_scenario("inbox.mjs", &args, &mut hubs, 7).await;
    for name in ["inbox-tab1.png", "inbox-tab2.png"] {
        let size = std::fs::metadata(out_dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "screenshot {name} was saved");
    }
}
