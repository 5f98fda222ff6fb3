//! The "AI jobs" section: enqueue -> result-on-WebSocket latency and jobs/s with 1 and 4
//! workers.

use std::fmt::Write as _;

use serde_json::Value;

use crate::suite::{Context, Run};

use super::{find, get, ms, num, show};

/// The worker configurations, as the suite names their runs (`jobs {n}w paced|max`).
const WORKERS: [usize; 2] = [1, 4];

/// Renders the section (nothing when the suite did not run the block).
pub(super) fn render(w: &mut String, ctx: &Context, runs: &[Run]) {
    let name = |workers: usize, kind: &str| format!("jobs {workers}w {kind}");
    let present: Vec<usize> = WORKERS
        .into_iter()
        .filter(|n| {
            find(runs, &name(*n, "paced")).is_some() || find(runs, &name(*n, "max")).is_some()
        })
        .collect();
    if present.is_empty() {
        return;
    }
    let first = |path: &str| {
        present
            .iter()
            .flat_map(|n| [name(*n, "paced"), name(*n, "max")])
            .find_map(|r| get(runs, &r, path).cloned())
            .unwrap_or(Value::Null)
    };
    let _ = writeln!(
        w,
        "## AI jobs: enqueue -> result on the WebSocket\n\n\
         A fresh hub on CPU {s}, and `relay-hub worker` processes pinned to the same CPU \
         (`HUB_WORKER_CONCURRENCY=4`, `HUB_DEMO_LATENCY_MS=0`: the built-in `llama_inference` \
         handler only counts the words of a short text, so a job costs what the queue costs); \
         the load generator and Redis on CPU {c}. {users} users hold a session each; {conns} \
         keep-alive HTTP connections `POST /api/jobs` round-robin over them. Latency runs from \
         just before the `POST` to the matching `ai-result` frame on the user's session (hub \
         -> Redis stream -> worker claim -> handler -> result script -> `PUBLISH ai:results` -> \
         hub -> WebSocket). *Paced*: {rate} jobs/s for {secs} s. *Closed loop*: at most {window} \
         jobs enqueued without a result, for {secs} s: jobs/s. The job keys (`jobs:*`) are \
         deleted before each configuration; 50 warm-up jobs are not counted. *Server CPU per \
         job* is the hub's and the workers' CPU time together (all on CPU {s}) over the jobs \
         delivered.\n",
        s = ctx.server_cpu,
        c = ctx.client_cpu,
        users = show(first("users").as_f64()),
        conns = show(first("http_connections").as_f64()),
        rate = show(get(runs, &name(present[0], "paced"), "rate").and_then(Value::as_f64)),
        window = show(get(runs, &name(present[0], "max"), "window").and_then(Value::as_f64)),
        secs = show(first("seconds").as_f64()),
    );
    let _ = write!(w, "| |");
    for n in &present {
        let _ = write!(w, " {n} worker{} |", if *n == 1 { "" } else { "s" });
    }
    let _ = write!(w, "\n|---|");
    for _ in &present {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    let row = |w: &mut String, title: &str, cell: &dyn Fn(usize) -> String| {
        let _ = write!(w, "| {title} |");
        for n in &present {
            let _ = write!(w, " {} |", cell(*n));
        }
        let _ = writeln!(w);
    };
    let error =
        |n: usize, kind: &str| get(runs, &name(n, kind), "error").map(|e| format!("error: {e}"));
    let v = |n: usize, kind: &str, path: &str| num(runs, &name(n, kind), path);
    row(w, "**jobs/s** (closed loop)", &|n| {
        error(n, "max").unwrap_or_else(|| format!("**{}**", show(v(n, "max", "jobs_per_sec"))))
    });
    // Two latency percentiles of a run, in ms: "a / b".
    let pair = |n: usize, kind: &str, a: &str, b: &str| {
        format!("{} / {}", ms(v(n, kind, a)), ms(v(n, kind, b)))
    };
    row(w, "**latency p50 / p99** at the paced rate", &|n| {
        error(n, "paced").unwrap_or_else(|| {
            format!(
                "**{}**",
                pair(n, "paced", "latency_us.p50", "latency_us.p99")
            )
        })
    });
    row(w, "latency p90 / max at the paced rate", &|n| {
        pair(n, "paced", "latency_us.p90", "latency_us.max")
    });
    row(w, "latency p50 / p99 in the closed loop", &|n| {
        pair(n, "max", "latency_us.p50", "latency_us.p99")
    });
    row(w, "`POST` round trip p50 / p99 (paced)", &|n| {
        pair(n, "paced", "enqueue_us.p50", "enqueue_us.p99")
    });
    for (kind, label) in [("paced", "paced"), ("max", "closed loop")] {
        row(w, &format!("enqueued / delivered / lost ({label})"), &|n| {
            format!(
                "{} / {} / {}",
                show(v(n, kind, "enqueued")),
                show(v(n, kind, "delivered")),
                show(v(n, kind, "lost"))
            )
        });
    }
    row(
        w,
        "refused, error, misrouted or unexpected results (both runs)",
        &|n| {
            let total: f64 = ["paced", "max"]
                .iter()
                .flat_map(|k| {
                    [
                        "refused",
                        "error_results",
                        "misrouted_results",
                        "unexpected_results",
                    ]
                    .map(|p| v(n, k, p).unwrap_or(0.0))
                })
                .sum();
            show(Some(total))
        },
    );
    row(
        w,
        "server CPU per job, hub + workers (us, closed loop)",
        &|n| show(v(n, "max", "server_cpu.us_per_delivery")),
    );
    row(
        w,
        "hub CPU per job / workers CPU per job (us, closed loop)",
        &|n| {
            format!(
                "{} / {}",
                show(v(n, "max", "hub_cpu.us_per_delivery")),
                show(v(n, "max", "workers_cpu.us_per_delivery"))
            )
        },
    );
    row(
        w,
        &format!("CPU {} busy, all processes (closed loop)", ctx.server_cpu),
        &|n| {
            find(runs, &name(n, "max"))
                .and_then(|r| r.cpu_busy_pct.get(ctx.server_cpu))
                .map_or("–".into(), |b| format!("{b:.0}%"))
        },
    );
    row(w, "redis-server CPU (closed loop)", &|n| {
        find(runs, &name(n, "max"))
            .and_then(|r| r.redis_cpu_pct)
            .map_or("–".into(), |c| format!("{c:.0}%"))
    });
    row(
        w,
        "hub `/metrics`: jobs done, mean enqueue -> done (paced)",
        &|n| {
            format!(
                "{}, {} ms",
                show(v(n, "paced", "hub_metrics.done")),
                show(v(n, "paced", "hub_metrics.mean_latency_ms"))
            )
        },
    );
    row(
        w,
        "hub `/metrics`: jobs done, mean enqueue -> done (closed loop)",
        &|n| {
            format!(
                "{}, {} ms",
                show(v(n, "max", "hub_metrics.done")),
                show(v(n, "max", "hub_metrics.mean_latency_ms"))
            )
        },
    );
    let _ = writeln!(w);
}
