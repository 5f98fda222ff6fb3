//! Short versions of `make soak` and `make chaos`: `hub-bench` starts its own redis-server and
//! the hub binary (`target/debug/relay-hub`, built by `cargo test --workspace`), runs a bounded
//! scenario against them, and its JSON line is checked here. Only what does not depend on
//! timing is asserted (leftovers, losses, recovery, kicks, memory bounds); the latency ratio
//! of the slow-consumer run is reported by `make chaos`, not checked here.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

/// The hub binary next to `hub-bench` (same profile).
fn hub_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hub-bench")).with_file_name("relay-hub");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p relay-hub`; `make test` does)",
        bin.display()
    );
    bin
}

/// Runs `hub-bench <args> --hub-bin <hub>` and returns its JSON line (whatever its verdict).
fn bench(args: &[&str]) -> Value {
    let hub = hub_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_hub-bench"))
        .args(args)
        .arg("--hub-bin")
        .arg(&hub)
        .output()
        .expect("run hub-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from hub-bench {args:?}: {stderr}"));
    let report: Value = serde_json::from_str(line).expect("the JSON line parses");
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["pass"] != true).collect())
        .unwrap_or_default();
    assert!(
        failed.is_empty() && report["pass"] == true && out.status.success(),
        "hub-bench {args:?} failed: {failed:?}\n{stderr}"
    );
    report
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn soak_leaves_nothing_behind() {
    let r = bench(&[
        "soak",
        "--seconds",
        "20",
        "--warmup",
        "6",
        "--sample-secs",
        "2",
        "--steady",
        "200",
        "--rooms",
        "10",
        "--churners",
        "20",
        "--notify-rate",
        "300",
        // a debug build's allocator settles more slowly than a release build's
        "--rss-tolerance-pct",
        "25",
    ]);
    let steady = &r["steady"];
    assert_eq!(steady["connected"], 200, "{r}");
    assert!(n(&steady["notifications_expected"]) > 1000, "{r}");
    assert_eq!(
        steady["notifications_delivered"], steady["notifications_expected"],
        "{r}"
    );
    assert!(n(&steady["chat_deliveries_expected"]) > 0, "{r}");
    assert_eq!(
        steady["chat_delivered"], steady["chat_deliveries_expected"],
        "{r}"
    );
    let churn = &r["churn"];
    assert!(n(&churn["cycles"]) >= 50, "churners barely ran: {r}");
    for way in ["dropped_before_joined", "clean_closes", "abrupt_drops"] {
        assert!(n(&churn[way]) > 0, "no churner left by `{way}`: {r}");
    }
    let left = &r["leftovers"];
    assert_eq!(left["clean"], true, "{r}");
    assert!(n(&left["channels_checked"]) > 200 + 80 + 10, "{r}");
    assert_eq!(left["channels_still_subscribed"], 0, "{r}");
    assert_eq!(left["health_connections"], 0, "{r}");
    let rss = &r["rss"];
    assert!(
        n(&rss["end_of_load_kib"]) as f64 <= n(&rss["after_warmup_kib"]) as f64 * 1.25,
        "{r}"
    );
    assert_eq!(r["hub_exit_code"], 0, "{r}");
}

#[test]
fn redis_restarts_are_survived_and_chat_is_recovered() {
    let r = bench(&[
        "redis-restart",
        "--clients",
        "200",
        "--rooms",
        "10",
        "--notify-rate",
        "400",
        "--chat-rate",
        "20",
        "--before",
        "3",
        // 3.3 s: the hub's reconnect backoff is then at its longest after Redis returns
        "--outages",
        "1.5,3.3",
        "--between",
        "3",
        // the 5 s goal belongs to `make chaos` (release build, no other tests running)
        "--resume-limit-ms",
        "15000",
    ]);
    let outages = r["outages"].as_array().expect("outages");
    assert_eq!(outages.len(), 2, "{r}");
    for o in outages {
        assert!(n(&o["health_503_degraded_while_down"]) > 0, "{o}");
        assert_eq!(o["subscriptions_missing"], 0, "{o}");
        assert!(o["resume_ms"].is_number(), "delivery never resumed: {o}");
        assert!(n(&o["notifications_refused_redis_down"]) > 0, "{o}");
    }
    let notes = &r["notifications"];
    assert_eq!(notes["lost_outside_outages"], 0, "{r}");
    assert_eq!(notes["duplicates"], 0, "{r}");
    let chat = &r["chat"];
    assert_eq!(chat["rejoins_answered"], chat["rejoins_sent"], "{r}");
    assert!(n(&chat["rejoins_sent"]) > 150, "{r}");
    assert_eq!(chat["still_missing"], 0, "{r}");
    assert_eq!(chat["recovered_with_since"], chat["missed_live"], "{r}");
    assert_eq!(r["sessions_closed"], 0, "{r}");
    assert_eq!(r["leftovers"]["clean"], true, "{r}");
    assert_eq!(r["hub_exit_code"], 0, "{r}");
}

#[test]
fn stuck_clients_are_dropped_without_hurting_the_others() {
    let r = bench(&[
        "slow-consumer",
        "--normal",
        "200",
        "--slow",
        "20",
        "--rate",
        "400",
        "--slow-rate",
        "200",
        "--seconds",
        "6",
        // A quarter of the default queue bound, so that a stuck client passes it in 6 s.
        "--queue-bytes",
        "262144",
        // latency ratios are for `make chaos`; here: losses, kicks and memory
        "--max-p99-ratio",
        "0",
    ]);
    for run in ["without", "with"] {
        assert!(n(&r[run]["normal_expected"]) > 1000, "{r}");
        assert_eq!(r[run]["normal_lost"], 0, "{r}");
    }
    assert_eq!(r["without"]["kicks"], 0.0, "{r}");
    assert!(
        n(&r["with"]["kicks"]) >= 20,
        "every stuck client dropped: {r}"
    );
    assert!(
        n(&r["rss_growth_with_kib"]) <= n(&r["rss_bound_kib"]),
        "{r}"
    );
    assert_eq!(r["normal_sessions_closed"], 0, "{r}");
}

#[test]
fn the_drop_test_loses_and_repeats_nothing() {
    // 40 clients (20 native with resume, 20 Socket.IO with recovery), every connection killed
    // (reset or silence) about every 2 s for 8 s while notifications and chat flow. The replay
    // time is for `make drop`; here: nothing lost, nothing twice, order kept, resumes resumed.
    let r = bench(&[
        "drop",
        "--clients",
        "40",
        "--rooms",
        "4",
        "--seconds",
        "8",
        "--kill-every",
        "2",
        "--reconnect-delay-ms",
        "200",
        "--notify-rate",
        "40",
        "--chat-rate",
        "10",
        "--ramp-rate",
        "100",
        "--replay-goal-ms",
        "0",
    ]);
    let all = &r["groups"][2];
    assert!(n(&all["expected"]) > 100, "{r}");
    assert_eq!(all["lost"], 0, "{r}");
    assert_eq!(all["duplicates"], 0, "{r}");
    assert_eq!(all["out_of_order"], 0, "{r}");
    assert!(
        n(&all["replays"]) >= 40,
        "every client came back at least once: {r}"
    );
    for group in &r["groups"].as_array().unwrap()[..2] {
        assert_eq!(group["resume_refused"], 0, "{r}");
        assert!(n(&group["resumed"]) > 0, "{r}");
    }
}
