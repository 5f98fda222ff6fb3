//! The hub's Socket.IO transport (issue 8) next to its native protocol: a fresh hub, pinned
//! like the main one, holds `idle` connections through `/socket.io/` (memory per connection,
//! from a fresh heap like the native `hub idle`), then runs notify saturation alternately
//! through Socket.IO and the native protocol (three pairs, each side's median reported), so
//! both sides of the comparison see the same phases of the shared machine.

use std::net::SocketAddr;

use super::{pick_median, pinned::HubSpec, s, Runner, Sizes, REPEATS};

/// Run-name prefix of this block.
pub(super) const LABEL: &str = "hub-sio";

/// Runs the block; returns the hub's command line for the report.
pub(super) fn run(
    runner: &mut Runner,
    spec: &HubSpec<'_>,
    sizes: &Sizes,
    redis: SocketAddr,
) -> Result<String, String> {
    let (hub, addr) = spec.start()?;
    let command = hub.command.clone();
    let pid = hub.pid();
    runner.run(
        &format!("{LABEL} idle"),
        &[
            s("idle"),
            s("--targets"),
            s(addr),
            s("--pids"),
            s(pid),
            s("--proto"),
            s("socketio"),
            s("--server"),
            s(LABEL),
            s("--connections"),
            s(sizes.idle),
            s("--procs"),
            s(sizes.idle.div_ceil(9_500)),
        ],
    );
    let notify = |proto: &str, label: &str| {
        vec![
            s("notify"),
            s("--target"),
            s(addr),
            s("--pid"),
            s(pid),
            s("--proto"),
            s(proto),
            s("--server"),
            s(label),
            s("--redis"),
            s(redis),
            s("--users"),
            s(sizes.users),
            s("--rate"),
            s(0),
            s("--seconds"),
            s(sizes.notify_secs),
        ]
    };
    for i in 1..=REPEATS {
        runner.run(
            &format!("{LABEL} notify max #{i}"),
            &notify("socketio", LABEL),
        );
        runner.run(
            &format!("{LABEL} native notify max #{i}"),
            &notify("native", "hub"),
        );
    }
    pick_median(
        &mut runner.runs,
        &format!("{LABEL} notify max"),
        "deliveries_per_sec",
    );
    pick_median(
        &mut runner.runs,
        &format!("{LABEL} native notify max"),
        "deliveries_per_sec",
    );
    hub.stop();
    Ok(command)
}
