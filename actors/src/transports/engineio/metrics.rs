//! Engine.IO metrics, registered into the instance's Prometheus registry (so `/metrics` shows
//! them next to the native protocol's). Handles are resolved once; hot paths only increment.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::{
    close::CloseReason,
    request::{ErrorCode, TransportKind},
};

/// Engine.IO metrics of one instance.
pub struct EngineMetrics {
    /// Open Engine.IO sessions (`hub_engineio_sessions`).
    pub sessions: IntGauge,
    opened: [IntCounter; 2],
    /// Sessions upgraded from long-polling to WebSocket.
    pub upgrades: IntCounter,
    refused: Vec<IntCounter>,
    closed: Vec<IntCounter>,
    /// Sessions dropped because their queue was full (shared with the native protocol's
    /// `hub_slow_consumer_kicks_total` in the hub).
    pub slow_consumer: IntCounter,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> Vec<IntCounter> {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    r.register(Box::new(vec.clone())).expect("unique metric");
    values.iter().map(|v| vec.with_label_values(&[v])).collect()
}

impl EngineMetrics {
    /// Registers the metrics in `registry`. `slow_consumer` is the counter that slow-consumer
    /// drops add to (the hub passes its `hub_slow_consumer_kicks_total`); `None` registers
    /// `hub_engineio_slow_consumer_total`.
    pub fn register(registry: &Registry, slow_consumer: Option<IntCounter>) -> Self {
        let r = registry;
        let sessions = IntGauge::new("hub_engineio_sessions", "Open Engine.IO sessions")
            .expect("valid metric");
        r.register(Box::new(sessions.clone()))
            .expect("unique metric");
        let opened = counter_vec(
            r,
            "hub_engineio_sessions_opened_total",
            "Engine.IO sessions opened, by first transport",
            "transport",
            &["polling", "websocket"],
        );
        let upgrades = IntCounter::new(
            "hub_engineio_upgrades_total",
            "Engine.IO sessions upgraded from long-polling to WebSocket",
        )
        .expect("valid metric");
        r.register(Box::new(upgrades.clone()))
            .expect("unique metric");
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.label()).collect();
        let reasons: Vec<&str> = CloseReason::ALL.iter().map(|c| c.label()).collect();
        let slow_consumer = slow_consumer.unwrap_or_else(|| {
            let c = IntCounter::new(
                "hub_engineio_slow_consumer_total",
                "Engine.IO sessions dropped because their queue was full",
            )
            .expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        });
        EngineMetrics {
            sessions,
            opened: [opened[0].clone(), opened[1].clone()],
            upgrades,
            refused: counter_vec(
                r,
                "hub_engineio_requests_refused_total",
                "Engine.IO requests refused with an error response, by protocol error code",
                "code",
                &codes,
            ),
            closed: counter_vec(
                r,
                "hub_engineio_sessions_closed_total",
                "Engine.IO sessions closed, by reason",
                "reason",
                &reasons,
            ),
            slow_consumer,
        }
    }

    /// Counts a session opened on `transport`.
    pub fn opened(&self, transport: TransportKind) {
        self.opened[transport as usize].inc();
    }

    /// Counts a refused request.
    pub fn refused(&self, code: ErrorCode) {
        self.refused[code as usize].inc();
    }

    /// Counts a closed session.
    pub fn closed(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.closed[i].inc();
    }
}
