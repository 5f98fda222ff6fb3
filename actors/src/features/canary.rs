//! The health canary: proof that the pub/sub subscription still delivers.
//!
//! A connection can look healthy (the socket is open, Redis lists the subscription) and still
//! deliver nothing, for example behind a proxy or a half-dead network path. So every instance
//! publishes a small message to its own channel `hub:canary:{instanceId}` every interval, on
//! its publish connection, and the subscriber hands it back here when it arrives through the
//! pub/sub connection. While the oldest canary not yet seen back is older than the timeout,
//! the subscription is not delivering and `/health` reports `degraded`.
//!
//! A canary that arrives also vouches for every earlier one: canaries published while the
//! subscription was being re-established are never delivered, and must not keep the instance
//! degraded once newer ones come back.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::{fut, prelude::*};
use log::debug;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use serde::Deserialize;
use serde_json::json;

use crate::{common::metrics::Metrics, connections::publisher::Publisher, messages::InboundSink};

use hub_wire::protocol::now_ms;

/// Prefix of the per-instance canary channels.
pub const CANARY_PREFIX: &str = "hub:canary:";
/// Canaries remembered while unanswered (enough for minutes of outage at 1/s; the oldest is
/// what matters).
const MAX_PENDING: usize = 1024;

/// The canary channel of an instance.
pub fn channel(instance_id: &str) -> String {
    format!("{CANARY_PREFIX}{instance_id}")
}

struct Inner {
    next_seq: u64,
    /// Published and not seen back yet, oldest first.
    pending: VecDeque<(u64, Instant)>,
    last_round_trip: Option<Duration>,
}

/// What `/health` reports about the canary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanaryStatus {
    /// False while a canary has been unanswered for longer than the timeout.
    pub delivering: bool,
    /// The last round trip, in ms.
    pub round_trip_ms: Option<f64>,
}

/// The canary's shared state: written by the canary actor (sent) and the subscriber's sink
/// (received), read by `/health`.
pub struct CanaryState {
    inner: Mutex<Inner>,
    timeout: Duration,
    delivering: IntGauge,
    sent: IntCounter,
    received: IntCounter,
    round_trip_ms: Histogram,
}

impl CanaryState {
    /// A state whose canaries count as lost after `timeout`; registers the canary metrics.
    pub fn new(timeout: Duration, metrics: &Metrics) -> Arc<Self> {
        let r = &metrics.registry;
        let delivering = IntGauge::new(
            "hub_canary_delivering",
            "1 while this instance's canary comes back through Redis pub/sub in time",
        )
        .expect("valid metric");
        let sent =
            IntCounter::new("hub_canary_sent_total", "Canaries published").expect("valid metric");
        let received = IntCounter::new(
            "hub_canary_received_total",
            "Canaries received back through the pub/sub connection",
        )
        .expect("valid metric");
        let round_trip_ms = Histogram::with_opts(
            HistogramOpts::new(
                "hub_canary_round_trip_ms",
                "Canary publish-to-receive time in ms",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 100.0, 500.0, 2000.0]),
        )
        .expect("valid metric");
        r.register(Box::new(delivering.clone()))
            .expect("unique metric");
        r.register(Box::new(sent.clone())).expect("unique metric");
        r.register(Box::new(received.clone()))
            .expect("unique metric");
        r.register(Box::new(round_trip_ms.clone()))
            .expect("unique metric");
        delivering.set(1);
        Arc::new(CanaryState {
            inner: Mutex::new(Inner {
                next_seq: 1,
                pending: VecDeque::new(),
                last_round_trip: None,
            }),
            timeout,
            delivering,
            sent,
            received,
            round_trip_ms,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("canary lock poisoned")
    }

    /// Numbers a new canary and remembers when it left.
    fn next(&self) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.pending.len() < MAX_PENDING {
            inner.pending.push_back((seq, Instant::now()));
        }
        self.sent.inc();
        seq
    }

    /// Canary `seq` came back: it and every older one are answered.
    pub fn received(&self, seq: u64) {
        let mut inner = self.lock();
        let mut sent_at = None;
        while let Some(&(s, at)) = inner.pending.front() {
            if s > seq {
                break;
            }
            if s == seq {
                sent_at = Some(at);
            }
            inner.pending.pop_front();
        }
        self.received.inc();
        if let Some(at) = sent_at {
            let rtt = at.elapsed();
            inner.last_round_trip = Some(rtt);
            self.round_trip_ms.observe(rtt.as_secs_f64() * 1000.0);
        }
        drop(inner);
        self.status();
    }

    /// Whether canaries come back in time, and the last round trip (also brings
    /// `hub_canary_delivering` up to date, so call it before encoding `/metrics`).
    pub fn status(&self) -> CanaryStatus {
        let inner = self.lock();
        let delivering = inner
            .pending
            .front()
            .is_none_or(|(_, at)| at.elapsed() < self.timeout);
        self.delivering.set(i64::from(delivering));
        CanaryStatus {
            delivering,
            round_trip_ms: inner
                .last_round_trip
                .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        }
    }
}

#[derive(Deserialize)]
struct CanaryPayload {
    seq: u64,
}

impl InboundSink for CanaryState {
    fn canary(&self, payload: &[u8]) {
        match serde_json::from_slice::<CanaryPayload>(payload) {
            Ok(p) => self.received(p.seq),
            Err(e) => debug!("ignored a malformed canary: {e}"),
        }
    }
}

/// The actor that publishes a canary every interval.
pub struct Canary {
    state: Arc<CanaryState>,
    publisher: Publisher,
    channel: String,
    instance_id: Arc<str>,
    interval: Duration,
    in_flight: bool,
}

impl Canary {
    /// A canary for the instance `instance_id`, publishing every `interval`.
    pub fn new(
        state: Arc<CanaryState>,
        publisher: Publisher,
        instance_id: Arc<str>,
        interval: Duration,
    ) -> Self {
        Canary {
            state,
            publisher,
            channel: channel(&instance_id),
            instance_id,
            interval,
            in_flight: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.state.status();
        if self.in_flight {
            return; // the last publish has not returned: it stays pending and ages
        }
        self.in_flight = true;
        let seq = self.state.next();
        let payload = json!({"instanceId": &*self.instance_id, "seq": seq, "timestamp": now_ms()})
            .to_string();
        let (publisher, channel) = (self.publisher.clone(), self.channel.clone());
        let publish = async move { publisher.publish(&channel, payload.as_bytes()).await };
        ctx.spawn(fut::wrap_future::<_, Self>(publish).map(|res, act, _| {
            act.in_flight = false;
            if let Err(e) = res {
                debug!("canary: {e}");
            }
        }));
    }
}

impl Actor for Canary {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_canary_answers_the_older_ones() {
        let state = CanaryState::new(Duration::from_millis(50), &Metrics::new());
        assert!(state.status().delivering, "nothing sent yet");
        let first = state.next();
        let second = state.next();
        assert!(state.status().delivering, "within the timeout");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!state.status().delivering, "unanswered past the timeout");
        state.received(second);
        assert!(state.status().delivering);
        assert!(state.status().round_trip_ms.is_some());
        state.received(first); // a duplicate or reordered one changes nothing
        assert!(state.status().delivering);
    }
}
