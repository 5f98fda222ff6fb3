//! Smoke test of `hub-bench streams`: a real hub (in this process, real sockets) and a private
//! redis-server; the scenario drives the worker protocol itself. Every chunk must be accounted
//! for, on native and Socket.IO sessions, and every reconnect must get the chunks it missed;
//! speed is not asserted here (the benchmark reports it).

mod common;

use common::{bench, hub, redis};

#[test]
fn every_chunk_arrives_once_in_order_and_reconnects_get_what_they_missed() {
    let redis = redis();
    let (hub, _stop) = hub(&redis);
    let (hub, redis_addr) = (hub.to_string(), redis.addr.to_string());
    let r = bench(&[
        "streams",
        "--target",
        hub.as_str(),
        "--redis",
        redis_addr.as_str(),
        "--streams",
        "8",
        "--socketio-every",
        "2",
        "--rate",
        "20",
        "--seconds",
        "2",
        "--reconnects",
        "4",
        "--reconnect-at",
        "0.5",
        "--away-ms",
        "300",
        "--redis-conns",
        "2",
    ]);
    let c = &r["chunks"];
    assert_eq!(r["pass"], true, "{r}");
    assert_eq!(c["sent"], 8 * 40, "{r}");
    assert_eq!(c["lost"], 0, "{r}");
    assert_eq!(c["duplicates"], 0, "{r}");
    assert_eq!(c["out_of_order"], 0, "{r}");
    assert_eq!(c["results"], 8, "{r}");
    assert_eq!(c["bad_results"], 0, "{r}");
    assert_eq!(r["socketio_sessions"], 4, "{r}");
    // Away 300 ms at 20 chunks/s: each reconnect missed some chunks, which only the
    // `watch-job` answer can have brought.
    assert!(c["received_by_replay_only"].as_u64().unwrap() >= 4, "{r}");
    let rc = &r["reconnect"];
    assert_eq!(rc["sessions"], 4, "{r}");
    assert_eq!(rc["native"], 2, "{r}");
    assert_eq!(rc["to_first_missed_chunk_us"]["count"], 4, "{r}");
    assert_eq!(rc["to_job_watched_us"]["count"], 4, "{r}");
    // Every live chunk was timed, on both protocols.
    let live = c["received_live"].as_u64().unwrap();
    assert_eq!(r["latency_us"]["all"]["count"], live, "{r}");
    assert!(
        r["latency_us"]["socketio"]["count"].as_u64().unwrap() > 0,
        "{r}"
    );
}

#[test]
fn it_starts_its_own_redis_and_hub_and_reports_their_memory_and_cpu() {
    let hub_bin =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_hub-bench")).with_file_name("relay-hub");
    assert!(
        hub_bin.exists(),
        "{} is missing: build it first (`cargo build -p relay-hub`)",
        hub_bin.display()
    );
    let hub_bin = hub_bin.display().to_string();
    let r = bench(&[
        "streams",
        "--hub-bin",
        hub_bin.as_str(),
        "--streams",
        "4",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--reconnects",
        "2",
        "--reconnect-at",
        "0.3",
        "--away-ms",
        "200",
    ]);
    assert_eq!(r["pass"], true, "{r}");
    assert_eq!(r["chunks"]["sent"], 4 * 20, "{r}");
    assert_eq!(r["chunks"]["lost"], 0, "{r}");
    // The processes it started were measured.
    assert!(r["hub"]["rss_idle_kib"].as_u64().unwrap() > 0, "{r}");
    assert!(r["hub"]["cpu_pct"].is_number(), "{r}");
    assert!(r["redis_cpu_pct"].is_number(), "{r}");
    for who in ["hub", "redis", "loadgen"] {
        assert!(r["runqueue_wait_pct"][who].is_number(), "{who}: {r}");
    }
    assert_eq!(r["hub_counters"]["hub_redis_reconnects_total"], 0.0, "{r}");
    assert_eq!(r["redis_output_buffer_drops"], 0, "{r}");
    let commands = r["commands"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.as_str().unwrap().contains("HUB_WORKERS=1")),
        "{r}"
    );
}
