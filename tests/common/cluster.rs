//! A private Redis Cluster for a test: `redis-server --cluster-enabled yes` nodes on free
//! ports, joined by `redis-cli --cluster create`, plus what the cluster tests do to it (move a
//! slot, kill, stop or fail over a master).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use redis::{aio::MultiplexedConnection, Value};

use super::{eventually, free_port};

/// A running cluster; stopped (and its files removed) on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each and waits until every node
    /// reports the cluster as `ok`.
    pub async fn start(masters: usize, replicas: usize) -> Cluster {
        let count = masters * (1 + replicas);
        let dir = std::env::temp_dir().join(format!(
            "relay-hub-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
        };
        while cluster.nodes.len() < count {
            let port = node_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .arg("--dir")
                .arg(&cluster.dir)
                .arg("--dbfilename")
                .arg(format!("dump-{port}.rdb"))
                .arg("--cluster-config-file")
                .arg(format!("nodes-{port}.conf"))
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            // Another process may have taken the port (or its bus port) meanwhile: then this
            // server exits, and another port is tried. The one answering must be this one.
            let pid = format!("process_id:{}\r\n", child.id());
            let up = eventually("a cluster node to answer or exit", || {
                let exited = child.try_wait().ok().flatten().is_some();
                let pid = pid.clone();
                async move {
                    if exited {
                        return Some(false);
                    }
                    let mut conn = node_conn(port).await?;
                    let info: String = redis::cmd("INFO")
                        .arg("server")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    info.contains(&pid).then_some(true)
                }
            })
            .await;
            if up {
                cluster.nodes.push(Node {
                    port,
                    child: Some(child),
                });
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.await_ok().await;
        cluster
    }

    /// The node URLs, comma-separated (`REDIS_CLUSTER_URLS`).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }

    /// A cluster client connection (follows redirections).
    pub async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self
            .live()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        redis::cluster::ClusterClient::new(urls)
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// Waits until every live node says `cluster_state:ok` and agrees on who serves each
    /// slot.
    pub async fn await_ok(&self) {
        eventually("every cluster node to report ok and agree", || async {
            let mut maps = Vec::new();
            for port in self.live() {
                let mut conn = node_conn(port).await?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                maps.push(slot_owners(&mut conn).await?);
            }
            maps.windows(2).all(|w| w[0] == w[1]).then_some(())
        })
        .await;
    }

    /// The port of the master serving `key` (or a sharded channel) now.
    pub async fn master_of(&self, key: &str) -> u16 {
        let slot = hub_store::slot(key.as_bytes());
        let port = self.live().next().unwrap();
        let mut conn = node_conn(port).await.unwrap();
        let owners = slot_owners(&mut conn).await.unwrap();
        owners
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| *port)
            .expect("every slot is served")
    }

    /// The master ports.
    pub async fn masters(&self) -> Vec<u16> {
        let mut conn = node_conn(self.live().next().unwrap()).await.unwrap();
        let mut ports: Vec<u16> = slot_owners(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }

    /// Moves the slot of `key` to the master on `to`, keys and all (`SETSLOT IMPORTING` /
    /// `MIGRATING`, `MIGRATE`, `SETSLOT NODE`), as `redis-cli --cluster reshard` does.
    pub async fn move_slot_of(&self, key: &str, to: u16) {
        let slot = hub_store::slot(key.as_bytes());
        let from = self.master_of(key).await;
        assert_ne!(from, to, "the slot is already there");
        let mut src = node_conn(from).await.unwrap();
        let mut dst = node_conn(to).await.unwrap();
        let src_id = my_id(&mut src).await;
        let dst_id = my_id(&mut dst).await;
        setslot(&mut dst, slot, &["IMPORTING", &src_id]).await;
        setslot(&mut src, slot, &["MIGRATING", &dst_id]).await;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut src)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut src)
                .await
                .unwrap();
        }
        for port in self.masters().await {
            let mut conn = node_conn(port).await.unwrap();
            setslot(&mut conn, slot, &["NODE", &dst_id]).await;
        }
        self.await_ok().await;
        assert_eq!(self.master_of(key).await, to);
    }

    /// `ACL SETUSER default <rule>` on every live node (e.g. `-ssubscribe`).
    pub async fn set_acl(&self, rule: &str) {
        for port in self.live() {
            let mut conn = node_conn(port).await.unwrap();
            let _: Value = redis::cmd("ACL")
                .arg("SETUSER")
                .arg("default")
                .arg(rule)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    /// `CONFIG SET name value` on every live node.
    pub async fn config_set(&self, name: &str, value: &str) {
        for port in self.live() {
            let mut conn = node_conn(port).await.unwrap();
            let _: Value = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node on `port`: a stopped node keeps its
    /// sockets open and answers nothing, as a hung server does.
    pub fn signal(&self, port: u16, signal: &str) {
        let node = self.nodes.iter().find(|n| n.port == port).unwrap();
        let pid = node.child.as_ref().expect("a live node").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill must be installed");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The port of a replica of the master on `port`.
    pub async fn replica_of(&self, port: u16) -> u16 {
        let mut conn = node_conn(port).await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("slave0:"))
            .expect("a replica");
        let port = line.split(',').find_map(|f| f.strip_prefix("port="));
        port.expect("the replica's port").parse().unwrap()
    }

    /// Waits until a replica of the master on `port` acknowledged every write made so far
    /// (`WAIT`), so that the replica that takes over has them.
    pub async fn replicated(&self, port: u16) {
        let conn = node_conn(port).await.unwrap();
        eventually("the replica to acknowledge the writes", || async {
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(100)
                .query_async(&mut conn.clone())
                .await
                .ok()?;
            (acked == 1).then_some(())
        })
        .await;
    }

    /// SIGKILLs the node on `port` (nothing else: see [`Cluster::kill_master`]).
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `CLUSTER FAILOVER TAKEOVER` on the replica on `port`; waits until it serves its
    /// master's slots and every live node agrees.
    pub async fn take_over(&self, port: u16) {
        let mut conn = node_conn(port).await.unwrap();
        let _: Value = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .arg("TAKEOVER")
            .query_async(&mut conn)
            .await
            .unwrap();
        eventually("the replica to take over", || async {
            self.masters().await.contains(&port).then_some(())
        })
        .await;
        self.await_ok().await;
    }

    /// SIGKILLs the master on `port` and waits until one of its replicas serves its slots.
    pub async fn kill_master(&mut self, port: u16) {
        self.kill(port);
        eventually("a replica to take over", || async {
            let masters = self.masters().await;
            (!masters.contains(&port)).then_some(())
        })
        .await;
        self.await_ok().await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port for a node: below the ephemeral range (32768 and up), as is its cluster bus port
/// (port + 10000), so no outgoing connection of another process takes either.
fn node_port() -> u16 {
    use std::{
        collections::BTreeSet,
        hash::{BuildHasher, RandomState},
        sync::Mutex,
    };
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = 20000 + (RandomState::new().hash_one(free_port()) % 2700) as u16;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) && HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A plain connection to one node.
pub async fn node_conn(port: u16) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

async fn my_id(conn: &mut MultiplexedConnection) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(conn)
        .await
        .unwrap()
}

async fn setslot(conn: &mut MultiplexedConnection, slot: u16, args: &[&str]) {
    let _: Value = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(args)
        .query_async(conn)
        .await
        .unwrap();
}

/// `(first slot, last slot, master port)` per range, sorted.
async fn slot_owners(conn: &mut MultiplexedConnection) -> Option<Vec<(u16, u16, u16)>> {
    let reply: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .ok()?;
    let mut owners = Vec::new();
    for range in reply {
        let Value::Array(f) = range else { return None };
        let (Some(Value::Int(s)), Some(Value::Int(e)), Some(Value::Array(node))) =
            (f.first(), f.get(1), f.get(2))
        else {
            return None;
        };
        let Some(Value::Int(port)) = node.get(1) else {
            return None;
        };
        owners.push((*s as u16, *e as u16, *port as u16));
    }
    owners.sort();
    Some(owners)
}
