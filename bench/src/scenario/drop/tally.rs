//! The drop test's figures, from what the senders sent and what every client read: per way in
//! (native, Socket.IO) and together, delivered / sent, duplicates, order per stream, how each
//! reconnect found its session (resumed, recovered by the `since` cursors, or lost: a cursor's
//! gap longer than its stream keeps), and the replay time after each reconnect: apart for the
//! reconnects that overlapped a cluster failover (from the master's kill to its replica
//! serving the slots), whose replay cannot end before Redis serves their streams again.

use std::collections::{BTreeMap, HashSet};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{
    conn::{ClientLog, Ending, Recovery},
    publish::Sent,
    CHAT_MARK,
};
use crate::proto::Proto;

/// One client as tallied: its index, protocol and log.
pub struct Seen<'a> {
    /// Client index (user `d{i}`, room `i % rooms`).
    pub i: usize,
    /// Its protocol.
    pub proto: Proto,
    /// What it read.
    pub log: &'a ClientLog,
}

/// Figures of a group of clients.
pub struct Group {
    label: &'static str,
    clients: u64,
    expected: u64,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    unconfirmed: u64,
    resets: u64,
    silences: u64,
    closed_by_hub: u64,
    closed_why: BTreeMap<String, u64>,
    failed: u64,
    resumed: u64,
    by_since: u64,
    recovery_lost: u64,
    refused: u64,
    errors: u64,
    first_errors: Vec<String>,
    replay_us: Histogram<u64>,
    failover_replay_us: Histogram<u64>,
    connect_us: Histogram<u64>,
    replayed: u64,
    lost_sample: Vec<String>,
}

/// A cluster failover, in [`crate::sys::now_us`] time: the master's kill and the moment its
/// replica served the slots.
#[derive(Clone, Copy)]
pub struct Failover {
    pub killed: u64,
    pub served: u64,
}

impl Group {
    fn new(label: &'static str) -> Group {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
        Group {
            label,
            clients: 0,
            expected: 0,
            delivered: 0,
            duplicates: 0,
            out_of_order: 0,
            unconfirmed: 0,
            resets: 0,
            silences: 0,
            closed_by_hub: 0,
            closed_why: BTreeMap::new(),
            failed: 0,
            resumed: 0,
            by_since: 0,
            recovery_lost: 0,
            refused: 0,
            errors: 0,
            first_errors: Vec::new(),
            replay_us: h(),
            failover_replay_us: h(),
            connect_us: h(),
            replayed: 0,
            lost_sample: Vec::new(),
        }
    }

    /// The share delivered, in percent.
    pub fn delivered_pct(&self) -> f64 {
        if self.expected == 0 {
            100.0
        } else {
            self.delivered as f64 * 100.0 / self.expected as f64
        }
    }

    /// Replay p99 in ms (reconnects outside a failover).
    pub fn replay_p99_ms(&self) -> f64 {
        self.replay_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    /// Replay p99 in ms of the reconnects that overlapped the failover (0: none did).
    pub fn failover_replay_p99_ms(&self) -> f64 {
        self.failover_replay_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    /// The group as JSON.
    pub fn json(&self) -> Value {
        let ms = |h: &Histogram<u64>, q: f64| {
            (h.value_at_quantile(q) as f64 / 1000.0 * 10.0).round() / 10.0
        };
        json!({
            "group": self.label,
            "clients": self.clients,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.expected - self.delivered,
            "delivered_pct": format!("{:.3}", self.delivered_pct()),
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "unconfirmed_delivered": self.unconfirmed,
            "kills": {"reset": self.resets, "silent": self.silences},
            "closed_by_hub": self.closed_by_hub,
            "closed_by_hub_why": self.closed_why,
            "failed_connections": self.failed,
            "resumed": self.resumed,
            "recovered_by_since": self.by_since,
            "recovery_lost": self.recovery_lost,
            "resume_refused": self.refused,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "replays": self.replay_us.len(),
            "replayed_messages": self.replayed,
            "replay_ms": {"p50": ms(&self.replay_us, 0.5), "p99": ms(&self.replay_us, 0.99), "max": ms(&self.replay_us, 1.0)},
            "failover_replays": self.failover_replay_us.len(),
            "failover_replay_ms": {"p50": ms(&self.failover_replay_us, 0.5), "p99": ms(&self.failover_replay_us, 0.99), "max": ms(&self.failover_replay_us, 1.0)},
            "connected_ms": {"p50": ms(&self.connect_us, 0.5), "p99": ms(&self.connect_us, 0.99), "max": ms(&self.connect_us, 1.0)},
            "lost_sample": self.lost_sample,
        })
    }

    fn add(&mut self, o: &Group) {
        self.clients += o.clients;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.unconfirmed += o.unconfirmed;
        self.resets += o.resets;
        self.silences += o.silences;
        self.closed_by_hub += o.closed_by_hub;
        for (why, n) in &o.closed_why {
            *self.closed_why.entry(why.clone()).or_default() += n;
        }
        self.failed += o.failed;
        self.resumed += o.resumed;
        self.by_since += o.by_since;
        self.recovery_lost += o.recovery_lost;
        self.refused += o.refused;
        self.errors += o.errors;
        self.replayed += o.replayed;
        for e in &o.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e.clone());
            }
        }
        for l in &o.lost_sample {
            if self.lost_sample.len() < 10 {
                self.lost_sample.push(l.clone());
            }
        }
        self.replay_us.add(&o.replay_us).expect("same bounds");
        self.failover_replay_us
            .add(&o.failover_replay_us)
            .expect("same bounds");
        self.connect_us.add(&o.connect_us).expect("same bounds");
    }
}

/// What [`tally`] takes besides the clients and what was sent.
pub struct Run {
    pub users: usize,
    pub rooms: usize,
    /// When the run started ([`crate::sys::now_us`]); earlier reconnects have no replay.
    pub t0: u64,
    pub failover: Option<Failover>,
}

/// Tallies the clients; returns (native, Socket.IO, all).
pub fn tally(clients: &[Seen], sent: &[Sent], run: &Run) -> [Group; 3] {
    let (users, rooms) = (run.users, run.rooms);
    let mut notes: Vec<Vec<u64>> = vec![Vec::new(); users];
    let mut chats: Vec<Vec<u64>> = vec![Vec::new(); rooms];
    let mut accepted = HashSet::new();
    for s in sent.iter().filter(|s| s.status == 202) {
        accepted.insert(s.seq);
        if s.seq & CHAT_MARK == 0 {
            notes[s.to as usize].push(s.seq);
        } else {
            chats[s.to as usize].push(s.seq);
        }
    }
    let mut native = Group::new("native");
    let mut sio = Group::new("socketio");
    for c in clients {
        let g = match c.proto {
            Proto::Native => &mut native,
            Proto::SocketIo => &mut sio,
        };
        client(g, c, &notes[c.i], &chats[c.i % rooms], &accepted, run);
    }
    let mut all = Group::new("all");
    all.add(&native);
    all.add(&sio);
    [native, sio, all]
}

fn client(
    g: &mut Group,
    c: &Seen,
    notes: &[u64],
    chat: &[u64],
    accepted: &HashSet<u64>,
    run: &Run,
) {
    let log = c.log;
    g.clients += 1;
    let mut seen = HashSet::with_capacity(log.receipts.len());
    let (mut note_max, mut chat_max) = (None::<u64>, None::<u64>);
    for r in &log.receipts {
        if !seen.insert(r.seq) {
            g.duplicates += 1;
            continue;
        }
        let max = if r.seq & CHAT_MARK == 0 {
            &mut note_max
        } else {
            &mut chat_max
        };
        if max.is_some_and(|m| r.seq < m) {
            g.out_of_order += 1;
        }
        *max = Some(max.map_or(r.seq, |m| m.max(r.seq)));
        if !accepted.contains(&r.seq) {
            g.unconfirmed += 1;
        }
    }
    for &seq in notes.iter().chain(chat) {
        g.expected += 1;
        if seen.contains(&seq) {
            g.delivered += 1;
        } else if g.lost_sample.len() < 10 {
            g.lost_sample.push(format!(
                "d{}: {}{}",
                c.i,
                if seq & CHAT_MARK == 0 {
                    "notification "
                } else {
                    "chat "
                },
                seq & !CHAT_MARK
            ));
        }
    }
    g.refused += log.refused;
    g.errors += log.errors;
    for e in &log.first_errors {
        if g.first_errors.len() < 5 {
            g.first_errors.push(format!("d{}: {e}", c.i));
        }
    }
    for (k, conn) in log.conns.iter().enumerate() {
        match &conn.ending {
            Ending::Reset => g.resets += 1,
            Ending::Silent => g.silences += 1,
            Ending::ClosedByHub(why) => {
                g.closed_by_hub += 1;
                *g.closed_why.entry(why.clone()).or_default() += 1;
            }
            Ending::Failed => g.failed += 1,
            Ending::Open => {}
        }
        match conn.recovery {
            Some(Recovery::Resumed) => g.resumed += 1,
            Some(Recovery::Since) => g.by_since += 1,
            Some(Recovery::Lost) => g.recovery_lost += 1,
            None => {}
        }
        let after_kill = k > 0
            && matches!(log.conns[k - 1].ending, Ending::Reset | Ending::Silent)
            && conn.start >= run.t0;
        let Some(connected) = conn.connected.filter(|_| after_kill) else {
            continue;
        };
        // Caught up: the last message sent before this attempt began has arrived.
        let mut caught = connected;
        for r in log
            .receipts
            .iter()
            .filter(|r| r.conn == k as u32 && r.bt <= conn.start)
        {
            caught = caught.max(r.at);
            g.replayed += 1;
        }
        let in_failover = run
            .failover
            .is_some_and(|f| conn.start <= f.served && caught >= f.killed);
        let replays = if in_failover {
            &mut g.failover_replay_us
        } else {
            &mut g.replay_us
        };
        let _ = replays.record((caught - conn.start).max(1));
        let _ = g.connect_us.record((connected - conn.start).max(1));
    }
}
