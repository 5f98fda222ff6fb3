//! The "Socket.IO transport: hub vs native vs baseline" section.

use std::fmt::Write as _;

use crate::suite::Run;

use super::{capacity, find, kib, ms, num, repeats, show};

/// Renders the section (nothing when the suite did not run the block).
pub(super) fn render(w: &mut String, runs: &[Run]) {
    let (sio, native, base) = ("hub-sio", "hub-sio native", "socketio");
    if find(runs, &format!("{sio} idle")).is_none()
        && find(runs, &format!("{sio} notify max")).is_none()
    {
        return;
    }
    let _ = writeln!(
        w,
        "## Socket.IO transport: hub vs native vs baseline\n\n\
         The hub serves Socket.IO 4 at `/socket.io/` with the same sessions as `/ws`. `hub-bench \
         --proto socketio` drives it like the baseline (WebSocket transport, `40{{\"userId\":..}}` \
         as the CONNECT auth). A fresh hub, pinned like the others, first holds the idle \
         connections (memory from a fresh heap, like `hub idle`), then runs notify saturation \
         ({users} users, 2,000 in flight) three times through Socket.IO alternating with three \
         times through the native protocol on the same process; each column shows its median \
         run. The baseline column is the socket.io baseline's runs above.\n\n\
         | | hub via Socket.IO | hub native | socket.io baseline |\n|---|---|---|---|",
        users = show(num(runs, &format!("{sio} notify max"), "connected")),
    );
    let idle = |label: &str| format!("{label} idle");
    let _ = writeln!(
        w,
        "| idle connections (connected / requested) | {} / {} | {} / {} | {} / {} |",
        show(num(runs, &idle(sio), "connected")),
        show(num(runs, &idle(sio), "connections")),
        show(num(runs, &idle("hub"), "connected")),
        show(num(runs, &idle("hub"), "connections")),
        show(num(runs, &idle(base), "connected")),
        show(num(runs, &idle(base), "connections")),
    );
    let rss = |label: &str| num(runs, &idle(label), "rss_per_connection_bytes");
    let _ = writeln!(
        w,
        "| idle RSS per connection | {} | {} | {} |",
        kib(rss(sio)),
        kib(rss("hub")),
        kib(rss(base)),
    );
    let max = |label: &str| format!("{label} notify max");
    let _ = writeln!(
        w,
        "| saturation, notifications/s | {}{} | {}{} | {}{} |",
        show(num(runs, &max(sio), "deliveries_per_sec")),
        repeats(runs, &max(sio)),
        show(num(runs, &max(native), "deliveries_per_sec")),
        repeats(runs, &max(native)),
        show(num(runs, &max(base), "deliveries_per_sec")),
        repeats(runs, &max(base)),
    );
    let row = |w: &mut String, title: &str, path: &str| {
        let _ = writeln!(
            w,
            "| {title} | {} | {} | {} |",
            show(num(runs, &max(sio), path)),
            show(num(runs, &max(native), path)),
            show(num(runs, &max(base), path)),
        );
    };
    row(
        w,
        "server CPU per notification (us)",
        "server_cpu.us_per_delivery",
    );
    row(w, "server CPU (% of a core)", "server_cpu.utilisation_pct");
    let _ = writeln!(
        w,
        "| capacity (notifications per CPU-second) | {} | {} | {} |",
        show(capacity(runs, &max(sio))),
        show(capacity(runs, &max(native))),
        show(capacity(runs, &max(base))),
    );
    let _ = writeln!(
        w,
        "| latency p50 / p99 at saturation | {} / {} | {} / {} | {} / {} |",
        ms(num(runs, &max(sio), "latency_us.p50")),
        ms(num(runs, &max(sio), "latency_us.p99")),
        ms(num(runs, &max(native), "latency_us.p50")),
        ms(num(runs, &max(native), "latency_us.p99")),
        ms(num(runs, &max(base), "latency_us.p50")),
        ms(num(runs, &max(base), "latency_us.p99")),
    );
    row(w, "lost", "lost");
    let per = |label: &str| num(runs, &max(label), "server_cpu.us_per_delivery");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    };
    let _ = writeln!(
        w,
        "\nThrough Socket.IO the hub uses {} the native protocol's memory per idle connection and \
         {} its CPU per notification; against the baseline, {} less memory per connection and \
         {} less CPU per notification. (The main block's `hub notify max`, on another hub \
         process earlier in the run: {}/s at {} us per delivery.)\n",
        ratio(rss(sio), rss("hub")),
        ratio(per(sio), per(native)),
        ratio(rss(base), rss(sio)),
        ratio(per(base), per(sio)),
        show(num(runs, "hub notify max", "deliveries_per_sec")),
        show(num(runs, "hub notify max", "server_cpu.us_per_delivery")),
    );
}
