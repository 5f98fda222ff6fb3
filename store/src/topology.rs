//! Which master serves which slot, read with `CLUSTER SLOTS` from the first node that answers.

use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, Value};

use crate::slot::SLOTS;

/// The cluster's masters and the slots each serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// `(host, port)` of each master.
    pub masters: Vec<(String, u16)>,
    /// For each slot, the index in `masters` of its owner (`None`: not served).
    owners: Vec<Option<u16>>,
}

impl Topology {
    /// The index in [`Topology::masters`] of the master serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        self.owners
            .get(slot as usize)
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// Parses a `CLUSTER SLOTS` reply; `seed_host` stands in for a node that announces no
    /// host.
    pub fn parse(reply: &Value, seed_host: &str) -> Result<Topology, String> {
        let Value::Array(ranges) = reply else {
            return Err(format!("CLUSTER SLOTS: unexpected reply {reply:?}"));
        };
        let mut masters: Vec<(String, u16)> = Vec::new();
        let mut owners = vec![None; SLOTS as usize];
        for range in ranges {
            let bad = || format!("CLUSTER SLOTS: unexpected range {range:?}");
            let Value::Array(fields) = range else {
                return Err(bad());
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad());
            };
            let host = match node.first() {
                Some(Value::BulkString(h)) if !h.is_empty() && h != b"?" => {
                    String::from_utf8_lossy(h).into_owned()
                }
                _ => seed_host.to_string(),
            };
            let Some(Value::Int(port)) = node.get(1) else {
                return Err(bad());
            };
            let addr = (host, u16::try_from(*port).map_err(|_| bad())?);
            let index = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    masters.len() - 1
                }
            };
            let (start, end) = (*start as usize, (*end as usize).min(SLOTS as usize - 1));
            for owner in owners.iter_mut().take(end + 1).skip(start) {
                *owner = Some(index as u16);
            }
        }
        Ok(Topology { masters, owners })
    }
}

/// Reads the topology from the first of `nodes` that answers within `timeout`.
pub async fn discover(nodes: &[ConnectionInfo], timeout: Duration) -> Result<Topology, String> {
    let mut errors = Vec::new();
    for info in nodes {
        let host = match info.addr() {
            redis::ConnectionAddr::Tcp(host, _) => host.clone(),
            other => other.to_string(),
        };
        let ask = async {
            let client = redis::Client::open(info.clone().into_connection_info()?)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn)
                .await
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(reply)) => return Topology::parse(&reply, &host),
            Ok(Err(e)) => errors.push(format!("{}: {e}", info.addr())),
            Err(_) => errors.push(format!("{}: timed out", info.addr())),
        }
    }
    Err(format!("no cluster node answered ({})", errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn parses_ranges_into_owners() {
        let range = |s, e, n| Value::Array(vec![Value::Int(s), Value::Int(e), n]);
        let reply = Value::Array(vec![
            range(0, 5460, node("10.0.0.1", 7000)),
            range(5461, 10922, node("", 7001)),
            range(10923, 16383, node("10.0.0.1", 7000)),
        ]);
        let t = Topology::parse(&reply, "seed").unwrap();
        assert_eq!(
            t.masters,
            [("10.0.0.1".into(), 7000), ("seed".into(), 7001)]
        );
        assert_eq!(t.owner(0), Some(0));
        assert_eq!(t.owner(5461), Some(1));
        assert_eq!(t.owner(16383), Some(0));
        assert!(Topology::parse(&Value::Int(1), "x").is_err());
    }
}
