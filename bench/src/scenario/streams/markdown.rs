//! The `BENCHMARKS.md` section of one `hub-bench streams` run (`--markdown`).

use serde_json::Value;

/// Milliseconds with two decimals from a microsecond figure (`-` when absent).
fn ms(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// `p50 / p99 / max` of a latency summary, in ms.
fn spread(v: &Value) -> String {
    format!(
        "{} / {} / {} ms",
        ms(&v["p50"]),
        ms(&v["p99"]),
        ms(&v["max"])
    )
}

/// `12,345` for whole numbers (the suite's format), `-` when absent.
fn num(v: &Value) -> String {
    v.as_f64().map_or("-".into(), crate::markdown::fmt)
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |kib| format!("{:.1} MiB", kib / 1024.0))
}

/// `all passed`, or the failed checks with their figures.
fn checks(r: &Value) -> String {
    let failed: Vec<String> = r["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["pass"] == false)
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap_or_default(),
                c["detail"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if failed.is_empty() {
        "all passed".into()
    } else {
        format!("**FAILED**: {}", failed.join("; "))
    }
}

/// The section: what ran, one table, the commands.
pub fn section(r: &Value) -> String {
    let c = &r["chunks"];
    let h = &r["hub"];
    let rc = &r["reconnect"];
    let lat = &r["latency_us"];
    let p99 = lat["all"]["p99"].as_u64().unwrap_or(u64::MAX);
    let goal = if p99 < 5000 && c["lost"] == 0 {
        "**met**"
    } else {
        "**missed**"
    };
    let busy: Vec<String> = r["cpu_busy_pct"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, b)| format!("CPU {i} {b}%"))
                .collect()
        })
        .unwrap_or_default();
    let rows = [
        (
            "chunk latency, emit -> frame, p50 / p99 / max (all sessions)".to_string(),
            spread(&lat["all"]),
        ),
        ("native sessions".into(), spread(&lat["native"])),
        ("Socket.IO sessions".into(), spread(&lat["socketio"])),
        ("goal: p99 below 5 ms, no loss".into(), goal.into()),
        ("checks (loss, order, results, reconnects, errors)".into(), checks(r)),
        (
            "chunks sent / received live / lost".into(),
            format!("{} / {} / {}", num(&c["sent"]), num(&c["received_live"]), num(&c["lost"])),
        ),
        (
            "duplicates / out of order (per job)".into(),
            format!("{} / {}", num(&c["duplicates"]), num(&c["out_of_order"])),
        ),
        (
            "`ai-result` with the last seq".into(),
            format!("{} of {}", num(&c["results"]), num(&r["streams"])),
        ),
        (
            "hub RSS: sessions connected, no stream / during the streams (median, peak) / after".into(),
            format!(
                "{} / {}, {} / {}",
                mib(&h["rss_idle_kib"]),
                mib(&h["rss_during_median_kib"]),
                mib(&h["rss_during_peak_kib"]),
                mib(&h["rss_after_kib"])
            ),
        ),
        (
            "**memory per active stream** (median during - idle, over streams; peak)".into(),
            format!(
                "**{} B** ({} B)",
                num(&h["bytes_per_active_stream"]),
                num(&h["bytes_per_active_stream_peak"])
            ),
        ),
        (
            "hub CPU (its one core) / per chunk".into(),
            format!("{}% / {} us", num(&h["cpu_pct"]), num(&h["cpu_us_per_chunk"])),
        ),
        (
            "Redis CPU / load generator CPU".into(),
            format!("{}% / {}%", num(&r["redis_cpu_pct"]), num(&r["loadgen_cpu_pct"])),
        ),
        ("CPUs busy (all processes)".into(), busy.join(", ")),
        (
            "runnable but waiting for a CPU (schedstat, all threads, % of the run): hub / Redis / load generator".into(),
            format!(
                "{}% / {}% / {}%",
                num(&r["runqueue_wait_pct"]["hub"]),
                num(&r["runqueue_wait_pct"]["redis"]),
                num(&r["runqueue_wait_pct"]["loadgen"])
            ),
        ),
        (
            "Redis dropped the hub's subscriber (output buffer) / hub reconnects / slow-consumer kicks".into(),
            format!(
                "{} / {} / {}",
                num(&r["redis_output_buffer_drops"]),
                num(&r["hub_counters"]["hub_redis_reconnects_total"]),
                num(&r["hub_counters"]["hub_slow_consumer_kicks_total"])
            ),
        ),
        (
            "emitter: chunks written late against the schedule, p99 / max".into(),
            format!(
                "{} / {} ms ({} pipelines)",
                ms(&r["emit_lateness_us"]["p99"]),
                ms(&r["emit_lateness_us"]["max"]),
                num(&r["pipelines"])
            ),
        ),
        (
            format!(
                "reconnect ({} sessions, {} native, away {} ms): to `connected` p50 / p99 / max",
                num(&rc["sessions"]),
                num(&rc["native"]),
                num(&rc["away_ms"])
            ),
            spread(&rc["to_connected_us"]),
        ),
        (
            "**reconnect to the first replayed chunk** p50 / p99 / max".into(),
            format!("**{}**", spread(&rc["to_first_missed_chunk_us"])),
        ),
        (
            "reconnect to the `job-watched` answer (every missed chunk) p50 / p99 / max".into(),
            spread(&rc["to_job_watched_us"]),
        ),
        ("chunks per replay (mean)".into(), num(&rc["chunks_per_replay"])),
        (
            "load average before / after".into(),
            format!(
                "{} / {}",
                r["loadavg"]["before"].as_str().unwrap_or("-"),
                r["loadavg"]["after"].as_str().unwrap_or("-")
            ),
        ),
    ];
    let mut md = format!(
        "\n## Streamed AI answers (`hub-bench streams`)\n\n{} users with one session each \
         ({} through Socket.IO, the rest native `/ws`) on one hub (`HUB_WORKERS=1`, pinned to \
         one CPU); the load generator acts as the workers through the worker protocol \
         (docs/jobs.md): one job per user enqueued and claimed once, then `relay_job_chunk` at \
         {} chunks/s per job for {} s ({} connections, one pipeline per connection and ms), \
         then `relay_job_complete`. Latency runs from the write of the `FCALL` (its time is in \
         the delta) to the `ai-chunk` frame read by the session. Mid-stream {} sessions drop \
         their connection, stay away, connect again and send `watch-job` with the last seq \
         they had.\n\n| | |\n|---|---|\n",
        num(&r["streams"]),
        num(&r["socketio_sessions"]),
        num(&r["rate_per_stream"]),
        num(&r["seconds"]),
        num(&r["redis_conns"]),
        num(&rc["sessions"]),
    );
    for (what, value) in rows {
        md.push_str(&format!("| {what} | {value} |\n"));
    }
    md.push_str("\nCommands:\n\n```sh\n");
    for cmd in r["commands"].as_array().into_iter().flatten() {
        md.push_str(cmd.as_str().unwrap_or_default());
        md.push('\n');
    }
    md.push_str("```\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_missing_figures_shown_as_dashes() {
        assert_eq!(num(&serde_json::json!(1_000_000)), "1,000,000");
        assert_eq!(num(&Value::Null), "-");
        assert_eq!(ms(&serde_json::json!(1234)), "1.23");
        let r = serde_json::json!({"checks": [
            {"check": "no chunk lost", "pass": false, "detail": "3 of 10 missing"},
            {"check": "no error frame", "pass": true, "detail": ""},
        ]});
        assert_eq!(checks(&r), "**FAILED**: no chunk lost: 3 of 10 missing");
        assert_eq!(checks(&serde_json::json!({"checks": []})), "all passed");
    }
}
