//! The "room hook" section: join latency in a storm with a public room, a hooked room whose
//! answers are not cached, and one whose answers are.

use std::fmt::Write as _;

use crate::suite::Run;

use super::{find, ms, num, show};

/// Renders the section (nothing when the suite did not run it).
pub(super) fn render(w: &mut String, runs: &[Run]) {
    let name = "hub room hook";
    let Some(r) = find(runs, name) else {
        return;
    };
    let _ = writeln!(w, "### room hook (hub, not pinned)\n");
    if let Some(e) = r.result.get("error") {
        let _ = writeln!(w, "error: {e}\n");
        return;
    }
    let _ = writeln!(
        w,
        "{} users, each in a room of its own, join at once (`join-room` sent to `joined` read), \
         on a hub in token mode whose hook (`HUB_ROOM_AUTH_URL`, served by hub-bench on \
         loopback) answers at once.\n\n\
         | storm | join p50 | join p99 | max | hook requests |\n|---|---|---|---|---|",
        show(r.result["clients"].as_f64()),
    );
    for (label, key) in [
        ("public room (no hook)", "public"),
        ("hook, not cached (`ttlSecs: 0`)", "hook_uncached"),
        ("hook, answer cached", "hook_cached"),
    ] {
        let at = |p: &str| num(runs, name, &format!("storms.{key}.join_latency_us.{p}"));
        let requests = num(runs, name, &format!("storms.{key}.hook_requests"));
        let _ = writeln!(
            w,
            "| {label} | {} | {} | {} | {} |",
            ms(at("p50")),
            ms(at("p99")),
            ms(at("max")),
            if key == "public" {
                "–".into()
            } else {
                show(requests)
            },
        );
    }
    let _ = writeln!(w);
}
