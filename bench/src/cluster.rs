//! A private Redis Cluster for the drop test's failover run: `redis-server --cluster-enabled`
//! nodes on free ports (below the ephemeral range, as are their bus ports, so no outgoing
//! connection takes one), joined by `redis-cli --cluster create` with one replica per master,
//! and a master SIGKILLed mid-run while its replica takes over.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::stack::{free_port, wait_until};

/// A running cluster; its nodes are killed when dropped.
pub struct LocalCluster {
    nodes: Vec<(u16, Option<Child>)>,
}

/// A port below 32768 whose bus port (+10000) is free too.
fn node_port(taken: &[u16]) -> Result<u16, String> {
    for _ in 0..1000 {
        let port = 20000 + (free_port()? as u64 * 7919 % 2700) as u16;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !taken.contains(&port) && free(port) && free(port + 10000) {
            return Ok(port);
        }
    }
    Err("no free port pair for a cluster node".into())
}

/// `CLUSTER NODES` of the node on `port`, or `None` when it does not answer.
fn cluster_nodes(port: u16) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "nodes"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the node on `port` reports `cluster_state:ok`.
fn state_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
}

impl LocalCluster {
    /// Starts `masters` masters with one replica each (files in `dir`) and waits until every
    /// node reports the cluster `ok`.
    pub fn start(masters: usize, dir: &Path) -> Result<LocalCluster, String> {
        let mut cluster = LocalCluster { nodes: Vec::new() };
        let dir: PathBuf = dir.join("cluster");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        while cluster.nodes.len() < masters * 2 {
            let taken: Vec<u16> = cluster.nodes.iter().map(|(p, _)| *p).collect();
            let port = node_port(&taken)?;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .arg("--dir")
                .arg(&dir)
                .args(["--dbfilename", &format!("dump-{port}.rdb")])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start redis-server: {e}"))?;
            // Another process may have taken the port meanwhile: this server then exits.
            let up = wait_until("a cluster node", Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_))) || cluster_nodes(port).is_some()
            })
            .is_ok()
                && matches!(child.try_wait(), Ok(None));
            if up {
                cluster.nodes.push((port, Some(child)));
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        cluster.await_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// `REDIS_CLUSTER_URLS` for a hub.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
    }

    /// Waits until every live node reports `cluster_state:ok` and lists no master as failed.
    fn await_ok(&self, limit: Duration) -> Result<(), String> {
        wait_until("the cluster state ok", limit, || {
            self.live().all(state_ok) && self.masters().len() * 2 >= self.nodes.len()
        })
    }

    /// Ports of the masters that serve slots, as a live node sees them.
    pub fn masters(&self) -> Vec<u16> {
        let Some(text) = self.live().find_map(cluster_nodes) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let flags = f.get(2)?;
                let serves = f.len() > 8;
                (flags.contains("master") && !flags.contains("fail") && serves)
                    .then(|| f[1].split(['@', ':']).nth(1)?.parse().ok())?
            })
            .collect()
    }

    /// SIGKILLs the first master; returns its port and the seconds until its replica served
    /// its slots and the cluster was `ok` again.
    pub fn kill_a_master(&mut self) -> Result<(u16, f64), String> {
        let port = *self.masters().first().ok_or("no master found")?;
        let start = Instant::now();
        if let Some((_, child)) = self.nodes.iter_mut().find(|(p, _)| *p == port) {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        wait_until("a replica to take over", Duration::from_secs(30), || {
            let m = self.masters();
            !m.is_empty() && !m.contains(&port) && self.live().all(state_ok)
        })?;
        Ok((port, start.elapsed().as_secs_f64()))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
