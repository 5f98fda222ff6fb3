//! Starting one more hub pinned like the suite's main one (its own process, so that memory
//! figures start from a fresh heap), for the suite's Socket.IO and job blocks.

use std::{net::SocketAddr, path::Path, time::Duration};

use super::{free_port, healthy, s, wait_until, Proc};

/// How the suite starts a hub.
pub(super) struct HubSpec<'a> {
    /// The release binary.
    pub bin: &'a Path,
    /// The CPU every server process is pinned to.
    pub cpu: usize,
    /// The hub's environment for a port.
    pub env: &'a dyn Fn(u16) -> Vec<(&'static str, String)>,
}

impl HubSpec<'_> {
    /// Starts a hub pinned to the server CPU on a free port and waits for `/health`.
    pub fn start(&self) -> Result<(Proc, SocketAddr), String> {
        let port = free_port()?;
        let hub = Proc::start(
            "relay-hub",
            "taskset",
            &[s("-c"), s(self.cpu), self.bin.display().to_string()],
            &(self.env)(port),
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("relay-hub", Duration::from_secs(20), || healthy(addr))?;
        Ok((hub, addr))
    }

    /// Starts `relay-hub worker` pinned to the server CPU with `env`.
    pub fn worker(&self, env: &[(&str, String)]) -> Result<Proc, String> {
        Proc::start(
            "relay-hub worker",
            "taskset",
            &[
                s("-c"),
                s(self.cpu),
                self.bin.display().to_string(),
                s("worker"),
            ],
            env,
        )
    }
}
