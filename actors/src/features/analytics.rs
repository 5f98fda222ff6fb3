//! The analytics aggregator: an actor fed by `analytics:events` (through the subscriber's
//! [`InboundSink`] hook) that keeps live figures and pushes them to sessions subscribed to
//! topic `analytics`.
//!
//! Per event name it counts events; an event whose `data.model` is a string is an AI query of
//! that model, and per model it keeps queries, tokens (`data.tokens`), cost (`data.cost`) and
//! a latency histogram (`data.latencyMs`, HDR, 2 significant digits: percentiles are within
//! 1% of the recorded values). Every figure exists as a total since the instance started and
//! over the last minute (per-second buckets; latency in 10-second buckets). Events count at
//! the time this instance receives them.
//!
//! Every instance receives every analytics event (it is a fixed channel), so each instance's
//! aggregate is the full picture, not a share of it.
//!
//! Names become map keys and metric labels, so their number is capped ([`MAX_EVENT_NAMES`],
//! [`MAX_MODELS`]); events beyond the cap are counted under [`OVERFLOW`].
//!
//! One cohesive thing (the aggregator's figures, its actor and its sink), a little past the
//! usual file size.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use hdrhistogram::Histogram;
use prometheus::{
    Counter, CounterVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
};
use serde_json::{json, Map, Value};

use crate::{
    common::metrics::{Metrics, OutKind},
    common::outbound::Outbound,
    messages::{Dispatch, GetSnapshot, InboundSink, Item, RecordEvent, Target},
};

use hub_wire::protocol::{analytics_fields, now_ms, AnalyticsEvent, Topic};

/// Length of the "last minute" window, in one-second buckets.
pub const WINDOW_SECS: u64 = 60;
/// Latency over the last minute is kept in buckets of this many seconds.
const LATENCY_SLOT_SECS: u64 = 10;
const LATENCY_SLOTS: usize = (WINDOW_SECS / LATENCY_SLOT_SECS) as usize;
/// Most distinct event names tracked; later names count under [`OVERFLOW`].
pub const MAX_EVENT_NAMES: usize = 256;
/// Most distinct models tracked; later models count under [`OVERFLOW`].
pub const MAX_MODELS: usize = 64;
/// The name events and models beyond the caps are counted under.
pub const OVERFLOW: &str = "(other)";
/// How many events may wait in the aggregator's mailbox.
pub const MAILBOX: usize = 4096;
/// How often subscribed sessions get a snapshot.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Latencies are recorded in microseconds, up to an hour (longer ones count as an hour).
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_SIGFIG: u8 = 2;
/// Buckets of `hub_ai_latency_ms`.
const PROM_LATENCY_BUCKETS: [f64; 14] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
    120000.0,
];

/// Per-second buckets of the last [`WINDOW_SECS`] seconds.
struct Window {
    slots: [f64; WINDOW_SECS as usize],
    /// The second (since start) of the newest bucket.
    head: u64,
}

impl Window {
    fn new() -> Self {
        Window {
            slots: [0.0; WINDOW_SECS as usize],
            head: 0,
        }
    }

    fn advance(&mut self, sec: u64) {
        if sec <= self.head {
            return;
        }
        if sec - self.head >= WINDOW_SECS {
            self.slots = [0.0; WINDOW_SECS as usize];
        } else {
            for s in self.head + 1..=sec {
                self.slots[(s % WINDOW_SECS) as usize] = 0.0;
            }
        }
        self.head = sec;
    }

    fn add(&mut self, sec: u64, v: f64) {
        self.advance(sec);
        self.slots[(sec % WINDOW_SECS) as usize] += v;
    }

    fn sum(&mut self, sec: u64) -> f64 {
        self.advance(sec);
        self.slots.iter().sum()
    }

    /// The buckets oldest first, the current (partial) second last.
    fn series(&mut self, sec: u64) -> Vec<f64> {
        self.advance(sec);
        (1..=WINDOW_SECS)
            .map(|i| self.slots[((sec + i) % WINDOW_SECS) as usize])
            .collect()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG).expect("valid histogram bounds")
}

/// Latency histograms: one since start, and one per 10-second slot of the last minute.
struct Latency {
    total: Histogram<u64>,
    recent: Vec<(Option<u64>, Histogram<u64>)>,
}

impl Latency {
    fn new() -> Self {
        Latency {
            total: new_histogram(),
            recent: (0..LATENCY_SLOTS)
                .map(|_| (None, new_histogram()))
                .collect(),
        }
    }

    fn record(&mut self, sec: u64, ms: f64) {
        let us = ((ms * 1000.0).round() as u64).min(LATENCY_MAX_US);
        self.total.saturating_record(us);
        let epoch = sec / LATENCY_SLOT_SECS;
        let (slot_epoch, hist) = &mut self.recent[(epoch as usize) % LATENCY_SLOTS];
        if *slot_epoch != Some(epoch) {
            hist.reset();
            *slot_epoch = Some(epoch);
        }
        hist.saturating_record(us);
    }

    /// The slots of the last minute merged.
    fn last_minute(&self, sec: u64) -> Histogram<u64> {
        let now = sec / LATENCY_SLOT_SECS;
        let mut merged = new_histogram();
        for (epoch, hist) in &self.recent {
            if epoch.is_some_and(|e| now.saturating_sub(e) < LATENCY_SLOTS as u64) {
                merged.add(hist).expect("histograms of equal bounds add");
            }
        }
        merged
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "min": ms(h.min()),
        "mean": h.mean().round() / 1000.0,
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
    })
}

/// Prometheus handles of one model, resolved once.
struct ModelMetrics {
    queries: IntCounter,
    tokens: IntCounter,
    cost: Counter,
    latency: prometheus::Histogram,
}

struct ModelStats {
    queries: u64,
    tokens: u64,
    cost: f64,
    latency: Latency,
    queries_window: Window,
    tokens_window: Window,
    cost_window: Window,
    prom: Option<ModelMetrics>,
}

struct EventStats {
    total: u64,
    window: Window,
    prom: Option<IntCounter>,
}

/// The analytics figures of `/metrics`, registered into the instance's registry.
pub struct AnalyticsMetrics {
    events: IntCounterVec,
    queries: IntCounterVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    latency: HistogramVec,
    /// Events dropped because the aggregator's mailbox was full.
    pub dropped: IntCounter,
    /// Snapshots pushed to `analytics` topic subscribers.
    pub pushes: IntCounter,
    /// Push ticks skipped because no session was subscribed.
    pub idle_ticks: IntCounter,
}

impl AnalyticsMetrics {
    /// Creates the metrics and registers them into `metrics.registry`.
    pub fn register(metrics: &Metrics) -> Self {
        let r = &metrics.registry;
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c).expect("unique metric");
        };
        let events = IntCounterVec::new(
            Opts::new(
                "hub_analytics_events_total",
                "Analytics events, by event name",
            ),
            &["event"],
        )
        .expect("valid metric");
        let queries = IntCounterVec::new(
            Opts::new(
                "hub_ai_queries_total",
                "AI queries (events with data.model), by model",
            ),
            &["model"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new(
                "hub_ai_tokens_total",
                "Tokens of AI queries (data.tokens), by model",
            ),
            &["model"],
        )
        .expect("valid metric");
        let cost = CounterVec::new(
            Opts::new(
                "hub_ai_cost_total",
                "Cost of AI queries (data.cost), by model",
            ),
            &["model"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "hub_ai_latency_ms",
                "Latency of AI queries (data.latencyMs) in ms, by model",
            )
            .buckets(PROM_LATENCY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let dropped = IntCounter::new(
            "hub_analytics_dropped_total",
            "Analytics events dropped because the aggregator was overloaded",
        )
        .expect("valid metric");
        let pushes = IntCounter::new(
            "hub_analytics_pushes_total",
            "Analytics snapshots pushed to sessions subscribed to topic analytics",
        )
        .expect("valid metric");
        let idle_ticks = IntCounter::new(
            "hub_analytics_idle_ticks_total",
            "Snapshot pushes skipped because no session was subscribed",
        )
        .expect("valid metric");
        reg(Box::new(events.clone()));
        reg(Box::new(queries.clone()));
        reg(Box::new(tokens.clone()));
        reg(Box::new(cost.clone()));
        reg(Box::new(latency.clone()));
        reg(Box::new(dropped.clone()));
        reg(Box::new(pushes.clone()));
        reg(Box::new(idle_ticks.clone()));
        AnalyticsMetrics {
            events,
            queries,
            tokens,
            cost,
            latency,
            dropped,
            pushes,
            idle_ticks,
        }
    }

    fn model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            queries: self.queries.with_label_values(&[model]),
            tokens: self.tokens.with_label_values(&[model]),
            cost: self.cost.with_label_values(&[model]),
            latency: self.latency.with_label_values(&[model]),
        }
    }
}

/// The aggregate itself: plain data, driven by explicit times (seconds since start) so that
/// it can be tested without waiting.
pub struct Aggregator {
    events: HashMap<String, EventStats>,
    models: HashMap<String, ModelStats>,
    total_events: u64,
    events_window: Window,
    prom: Option<Arc<AnalyticsMetrics>>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Aggregator {
    /// An empty aggregate; with `prom`, figures are mirrored into those metrics.
    pub fn new(prom: Option<Arc<AnalyticsMetrics>>) -> Self {
        Aggregator {
            events: HashMap::new(),
            models: HashMap::new(),
            total_events: 0,
            events_window: Window::new(),
            prom,
        }
    }

    /// Counts `event`, received `at` after the start.
    pub fn record(&mut self, event: &AnalyticsEvent, at: Duration) {
        let sec = at.as_secs();
        self.total_events += 1;
        self.events_window.add(sec, 1.0);
        let name = capped_key(&self.events, &event.event, MAX_EVENT_NAMES);
        let prom = self.prom.clone();
        let stats = self
            .events
            .entry(name)
            .or_insert_with_key(|name| EventStats {
                total: 0,
                window: Window::new(),
                prom: prom.as_ref().map(|p| p.events.with_label_values(&[name])),
            });
        stats.total += 1;
        stats.window.add(sec, 1.0);
        if let Some(c) = &stats.prom {
            c.inc();
        }
        if let Some(model) = event.model() {
            self.record_query(event, model, sec);
        }
    }

    fn record_query(&mut self, event: &AnalyticsEvent, model: &str, sec: u64) {
        let name = capped_key(&self.models, model, MAX_MODELS);
        let prom = self.prom.clone();
        let m = self
            .models
            .entry(name)
            .or_insert_with_key(|name| ModelStats {
                queries: 0,
                tokens: 0,
                cost: 0.0,
                latency: Latency::new(),
                queries_window: Window::new(),
                tokens_window: Window::new(),
                cost_window: Window::new(),
                prom: prom.as_ref().map(|p| p.model(name)),
            });
        m.queries += 1;
        m.queries_window.add(sec, 1.0);
        if let Some(p) = &m.prom {
            p.queries.inc();
        }
        if let Some(tokens) = event
            .data
            .get(analytics_fields::TOKENS)
            .and_then(Value::as_u64)
        {
            m.tokens = m.tokens.saturating_add(tokens);
            m.tokens_window.add(sec, tokens as f64);
            if let Some(p) = &m.prom {
                p.tokens.inc_by(tokens);
            }
        }
        if let Some(cost) = event.number(analytics_fields::COST) {
            m.cost += cost;
            m.cost_window.add(sec, cost);
            if let Some(p) = &m.prom {
                p.cost.inc_by(cost);
            }
        }
        if let Some(latency) = event.number(analytics_fields::LATENCY_MS) {
            m.latency.record(sec, latency);
            if let Some(p) = &m.prom {
                p.latency.observe(latency);
            }
        }
    }

    /// The figures as JSON (the `data` of `analytics` frames and `GET /api/analytics`);
    /// `uptime` is the time since start.
    pub fn snapshot(&mut self, uptime: Duration) -> Value {
        let sec = uptime.as_secs();
        // Rates divide by the part of the window the instance has been up for.
        let span = uptime.as_secs_f64().clamp(1.0, WINDOW_SECS as f64);
        let rate = |n: f64| round3(n / span);
        let mut events = Map::new();
        for (name, e) in &mut self.events {
            let last = e.window.sum(sec);
            events.insert(
                name.clone(),
                json!({"total": e.total, "lastMinute": last, "perSecond": rate(last)}),
            );
        }
        let (mut queries, mut tokens, mut cost) = (0u64, 0u64, 0.0f64);
        let (mut recent_queries, mut recent_tokens, mut recent_cost) = (0.0, 0.0, 0.0);
        let mut models = Map::new();
        for (name, m) in &mut self.models {
            let q = m.queries_window.sum(sec);
            let t = m.tokens_window.sum(sec);
            let c = m.cost_window.sum(sec);
            queries += m.queries;
            tokens = tokens.saturating_add(m.tokens);
            cost += m.cost;
            recent_queries += q;
            recent_tokens += t;
            recent_cost += c;
            models.insert(
                name.clone(),
                json!({
                    "queries": m.queries,
                    "tokens": m.tokens,
                    "cost": round9(m.cost),
                    "latencyMs": latency_json(&m.latency.total),
                    "lastMinute": {
                        "queries": q,
                        "tokens": t,
                        "cost": round9(c),
                        "queriesPerSecond": rate(q),
                        "latencyMs": latency_json(&m.latency.last_minute(sec)),
                    },
                    "queriesPerSecondSeries": m.queries_window.series(sec),
                }),
            );
        }
        let recent_events = self.events_window.sum(sec);
        json!({
            "generatedAt": now_ms(),
            "uptimeSeconds": round3(uptime.as_secs_f64()),
            "windowSeconds": WINDOW_SECS,
            "totals": {
                "events": self.total_events,
                "aiQueries": queries,
                "tokens": tokens,
                "cost": round9(cost),
            },
            "lastMinute": {
                "events": recent_events,
                "aiQueries": recent_queries,
                "tokens": recent_tokens,
                "cost": round9(recent_cost),
                "eventsPerSecond": rate(recent_events),
                "aiQueriesPerSecond": rate(recent_queries),
            },
            "events": events,
            "models": models,
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// Rounds away float noise in sums of decimal costs (0.1 + 0.2 -> 0.3).
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// `name`, or [`OVERFLOW`] when `map` is full and does not know `name` yet.
fn capped_key<V>(map: &HashMap<String, V>, name: &str, cap: usize) -> String {
    if map.contains_key(name) || map.len() < cap {
        name.to_string()
    } else {
        OVERFLOW.to_string()
    }
}

/// The registry shards, as the server collects them while its workers start.
pub type ShardList = Arc<Mutex<Vec<Recipient<Dispatch>>>>;

/// The aggregator actor.
pub struct Analytics {
    aggregator: Aggregator,
    started: Instant,
    instance_id: Arc<str>,
    metrics: Arc<Metrics>,
    prom: Arc<AnalyticsMetrics>,
    shards: ShardList,
}

impl Analytics {
    /// Starts the aggregator on the current arbiter; returns its address and the sink to give
    /// the subscriber ([`crate::hub::subscriber::Subscriber::with_sink`]).
    pub fn start(
        instance_id: Arc<str>,
        metrics: Arc<Metrics>,
        shards: ShardList,
    ) -> (Addr<Analytics>, Arc<AnalyticsSink>) {
        let prom = Arc::new(AnalyticsMetrics::register(&metrics));
        let dropped = prom.dropped.clone();
        let addr = Analytics {
            aggregator: Aggregator::new(Some(prom.clone())),
            started: Instant::now(),
            instance_id,
            metrics,
            prom,
            shards,
        }
        .start();
        (addr.clone(), Arc::new(AnalyticsSink { addr, dropped }))
    }

    fn snapshot(&mut self) -> Value {
        let mut snapshot = self.aggregator.snapshot(self.started.elapsed());
        snapshot["instanceId"] = Value::from(&*self.instance_id);
        snapshot
    }

    /// Pushes a snapshot to the `analytics` topic, if any session on this instance is
    /// subscribed to it.
    fn push(&mut self) {
        if self.metrics.topic_subscribers(Topic::Analytics) <= 0 {
            self.prom.idle_ticks.inc();
            return;
        }
        let snapshot = serde_json::to_vec(&self.snapshot()).expect("JSON values always serialize");
        let msg = Dispatch {
            target: Target::Topic(Topic::Analytics),
            item: Item::Event(Arc::new(Outbound::envelope(OutKind::Analytics, &snapshot))),
            order: None,
        };
        let shards = self
            .shards
            .lock()
            .expect("shard list lock poisoned")
            .clone();
        for shard in shards {
            shard.do_send(msg.clone());
        }
        self.prom.pushes.inc();
    }
}

impl Actor for Analytics {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(PUSH_INTERVAL, |act, _| act.push());
    }
}

impl Handler<RecordEvent> for Analytics {
    type Result = ();

    fn handle(&mut self, msg: RecordEvent, _: &mut Context<Self>) {
        self.aggregator.record(&msg.0, self.started.elapsed());
    }
}

impl Handler<GetSnapshot> for Analytics {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

/// The subscriber's hook into the aggregator: forwards each event to the actor (the
/// subscriber calls it on its own thread).
pub struct AnalyticsSink {
    addr: Addr<Analytics>,
    dropped: IntCounter,
}

impl InboundSink for AnalyticsSink {
    fn analytics(&self, event: AnalyticsEvent) {
        if self.addr.try_send(RecordEvent(event)).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> AnalyticsEvent {
        serde_json::from_value(json).unwrap()
    }

    fn query(model: &str, latency: f64, tokens: u64, cost: f64) -> AnalyticsEvent {
        event(json!({"event": "ai_query", "data": {
            "model": model, "latencyMs": latency, "tokens": tokens, "cost": cost}}))
    }

    #[test]
    fn totals_and_percentiles() {
        let mut agg = Aggregator::default();
        for i in 1..=200u64 {
            agg.record(&query("m1", i as f64, 10, 0.1), Duration::from_secs(1));
        }
        agg.record(&query("m2", 5.0, 3, 0.2), Duration::from_secs(2));
        agg.record(
            &event(json!({"event": "page_view", "data": {}})),
            Duration::from_secs(2),
        );
        let s = agg.snapshot(Duration::from_secs(10));
        assert_eq!(s["totals"]["events"], 202);
        assert_eq!(s["totals"]["aiQueries"], 201);
        assert_eq!(s["totals"]["tokens"], 2003);
        assert_eq!(s["totals"]["cost"], 20.2);
        assert_eq!(s["events"]["ai_query"]["total"], 201);
        assert_eq!(s["events"]["page_view"]["total"], 1);
        let m1 = &s["models"]["m1"];
        assert_eq!(
            (m1["queries"].clone(), m1["tokens"].clone()),
            (json!(200), json!(2000))
        );
        assert_eq!(m1["cost"], 20.0);
        for (q, exact) in [("p50", 100.0), ("p90", 180.0), ("p99", 198.0)] {
            let got = m1["latencyMs"][q].as_f64().unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.01 + 1.0,
                "{q}: {got} vs {exact}"
            );
        }
        assert_eq!(m1["lastMinute"]["queries"], 200.0);
        assert_eq!(m1["lastMinute"]["queriesPerSecond"], 20.0, "200 in 10 s");
    }

    #[test]
    fn the_window_forgets_after_a_minute() {
        let mut agg = Aggregator::default();
        agg.record(&query("m", 10.0, 1, 1.0), Duration::from_secs(5));
        agg.record(&query("m", 20.0, 1, 1.0), Duration::from_secs(50));
        let s = agg.snapshot(Duration::from_secs(66));
        let m = &s["models"]["m"];
        assert_eq!(m["queries"], 2);
        assert_eq!(
            m["lastMinute"]["queries"], 1.0,
            "the event at 5 s is over a minute old"
        );
        assert_eq!(m["lastMinute"]["latencyMs"]["count"], 1);
        let series = m["queriesPerSecondSeries"].as_array().unwrap();
        assert_eq!(series.len(), WINDOW_SECS as usize);
        assert_eq!(
            series[WINDOW_SECS as usize - 1 - 16],
            1.0,
            "the event at 50 s"
        );
        let s = agg.snapshot(Duration::from_secs(200));
        assert_eq!(s["lastMinute"]["events"], 0.0);
        assert_eq!(s["totals"]["events"], 2);
    }

    #[test]
    fn names_are_capped() {
        let mut agg = Aggregator::default();
        for i in 0..MAX_MODELS + 5 {
            agg.record(&query(&format!("m{i}"), 1.0, 1, 0.0), Duration::ZERO);
        }
        let s = agg.snapshot(Duration::from_secs(1));
        let models = s["models"].as_object().unwrap();
        assert_eq!(models.len(), MAX_MODELS + 1);
        assert_eq!(models[OVERFLOW]["queries"], 5);
    }
}
