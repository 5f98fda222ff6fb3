//! Queue metrics for a hub's `/metrics`. Workers are separate processes, so the figures live
//! in Redis: the queue scripts keep cluster-wide counters and a latency histogram in the
//! `{prefix}:stats` hash, and stream lengths say how deep each priority is. The hub reads
//! them all in one round trip when `/metrics` is scraped ([`JobMetrics::refresh`]) and
//! exposes them as Prometheus counters, gauges and a histogram through a custom collector.
//!
//! Every hub instance reports the same cluster-wide values: aggregate with `max`, not `sum`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use log::warn;
use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
    IntCounter, Registry,
};

use super::{JobQueue, JobsError, Priority};

/// Upper bounds (ms) of the enqueue-to-done latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
];

/// How long a scrape waits for Redis before serving the previous figures.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// The queue's figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Unfinished jobs per priority (waiting, running, or between attempts), highest first.
    pub depth: [u64; 3],
    /// Jobs per priority delivered to a worker and not finished (running, waiting for a
    /// retry or for takeover).
    pub pending: [u64; 3],
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// Jobs enqueued (duplicates not counted).
    pub enqueued: u64,
    /// Jobs done.
    pub done: u64,
    /// Jobs dead-lettered.
    pub failed: u64,
    /// Jobs cancelled while queued or running (`relay_job_cancel`).
    pub cancelled: u64,
    /// Failed attempts that were retried.
    pub retried: u64,
    /// Jobs taken over from a worker that stopped renewing its lease.
    pub reclaimed: u64,
    /// Jobs set aside by a worker that does not handle their type, for one that does.
    pub parked: u64,
    /// Parked jobs whose state expired before a worker of their type came.
    pub parked_expired: u64,
    /// Done jobs per latency bucket (not cumulative), in [`LATENCY_BUCKETS_MS`] order.
    pub latency_buckets: [u64; LATENCY_BUCKETS_MS.len()],
    /// Done jobs slower than the last bucket.
    pub latency_over: u64,
    /// Done jobs counted in the histogram.
    pub latency_count: u64,
    /// Sum of their latencies in ms.
    pub latency_sum_ms: u64,
}

impl QueueStats {
    /// Parses the reply of the stats script.
    pub(crate) fn parse(reply: &[String]) -> Result<QueueStats, JobsError> {
        let corrupt = || JobsError::Corrupt(format!("stats reply {reply:?}"));
        let num = |s: &String| s.parse::<u64>().map_err(|_| corrupt());
        if reply.len() < 7 || !(reply.len() - 7).is_multiple_of(2) {
            return Err(corrupt());
        }
        let mut s = QueueStats::default();
        for i in 0..3 {
            s.depth[i] = num(&reply[2 * i])?;
            s.pending[i] = num(&reply[2 * i + 1])?;
        }
        s.dead_letters = num(&reply[6])?;
        let hash: HashMap<&str, u64> = reply[7..]
            .chunks(2)
            .filter_map(|kv| Some((kv[0].as_str(), kv[1].parse().ok()?)))
            .collect();
        let get = |k: &str| hash.get(k).copied().unwrap_or(0);
        s.enqueued = get("enqueued");
        s.done = get("done");
        s.failed = get("failed");
        s.cancelled = get("cancelled");
        s.retried = get("retried");
        s.reclaimed = get("reclaimed");
        s.parked = get("parked");
        s.parked_expired = get("parked_expired");
        for (i, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            s.latency_buckets[i] = get(&format!("latency_le_{bound}"));
        }
        s.latency_over = get("latency_le_inf");
        s.latency_count = get("latency_count");
        s.latency_sum_ms = get("latency_sum_ms");
        Ok(s)
    }
}

/// The queue metrics of a hub: the last figures read from Redis, plus local counters.
pub struct JobMetrics {
    snapshot: Mutex<QueueStats>,
    descs: Vec<Desc>,
    /// Enqueue requests refused as bad input (400) on this instance.
    pub rejected: IntCounter,
    /// Scrapes that could not read the queue's figures from Redis.
    pub refresh_errors: IntCounter,
}

/// (name, help, type) of each family the collector produces.
const FAMILIES: [(&str, &str, MetricType); 12] = [
    (
        "hub_jobs_queue_depth",
        "Unfinished jobs per priority (waiting, running or between attempts)",
        MetricType::GAUGE,
    ),
    (
        "hub_jobs_pending",
        "Jobs per priority held by a worker or awaiting a retry or takeover",
        MetricType::GAUGE,
    ),
    (
        "hub_jobs_dead_letters",
        "Entries in the dead-letter stream",
        MetricType::GAUGE,
    ),
    (
        "hub_jobs_enqueued_total",
        "Jobs enqueued, all instances",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_done_total",
        "Jobs completed, all workers",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_failed_total",
        "Jobs dead-lettered after their last attempt, all workers",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_cancelled_total",
        "Jobs cancelled while queued or running, all instances",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_retried_total",
        "Failed attempts retried, all workers",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_reclaimed_total",
        "Jobs taken over after the visibility timeout, all workers",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_parked_total",
        "Jobs set aside by a worker without a handler for their type, all workers",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_parked_expired_total",
        "Parked jobs whose state expired before a worker of their type came",
        MetricType::COUNTER,
    ),
    (
        "hub_jobs_latency_ms",
        "Time from enqueue to done, in ms, all workers",
        MetricType::HISTOGRAM,
    ),
];

/// Registers a collector sharing the state of `JobMetrics`.
struct Collect(Arc<JobMetrics>);

impl Collector for Collect {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.0.snapshot.lock().expect("stats lock poisoned").clone();
        self.0.families(&s)
    }
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(value: u64, priority: Option<Priority>) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_gauge(g);
    if let Some(p) = priority {
        let mut l = proto::LabelPair::default();
        l.set_name("priority".into());
        l.set_value(p.as_str().into());
        m.set_label(vec![l]);
    }
    m
}

fn counter(value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_counter(c);
    m
}

fn histogram(s: &QueueStats) -> proto::Metric {
    let mut cumulative = 0;
    let buckets = LATENCY_BUCKETS_MS
        .iter()
        .zip(s.latency_buckets)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound as f64);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(s.latency_count);
    h.set_sample_sum(s.latency_sum_ms as f64);
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    m
}

impl JobMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> Arc<JobMetrics> {
        let local = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                let labels = if matches!(*name, "hub_jobs_queue_depth" | "hub_jobs_pending") {
                    vec!["priority".to_string()]
                } else {
                    vec![]
                };
                Desc::new(name.to_string(), help.to_string(), labels, HashMap::new())
                    .expect("valid metric")
            })
            .collect();
        let metrics = Arc::new(JobMetrics {
            snapshot: Mutex::new(QueueStats::default()),
            descs,
            rejected: local(
                "hub_jobs_rejected_total",
                "Enqueue requests refused as bad input (400) on this instance",
            ),
            refresh_errors: local(
                "hub_jobs_stats_errors_total",
                "Scrapes that could not read the job queue figures from Redis",
            ),
        });
        registry
            .register(Box::new(Collect(metrics.clone())))
            .expect("unique metric");
        metrics
    }

    /// Reads the current figures from Redis (bounded wait); on failure the previous figures
    /// stay and the failure is counted and logged.
    pub async fn refresh(&self, queue: &JobQueue) {
        let result = match tokio::time::timeout(REFRESH_TIMEOUT, queue.stats()).await {
            Ok(r) => r,
            Err(_) => Err(JobsError::Redis("read queue stats: timed out".into())),
        };
        match result {
            Ok(s) => *self.snapshot.lock().expect("stats lock poisoned") = s,
            Err(e) => {
                self.refresh_errors.inc();
                warn!("job metrics: {e}");
            }
        }
    }

    /// The last figures read.
    pub fn snapshot(&self) -> QueueStats {
        self.snapshot.lock().expect("stats lock poisoned").clone()
    }

    fn families(&self, s: &QueueStats) -> Vec<MetricFamily> {
        let per_priority = |values: [u64; 3]| {
            Priority::ALL
                .iter()
                .zip(values)
                .map(|(p, v)| gauge(v, Some(*p)))
                .collect::<Vec<_>>()
        };
        let values = [
            per_priority(s.depth),
            per_priority(s.pending),
            vec![gauge(s.dead_letters, None)],
            vec![counter(s.enqueued)],
            vec![counter(s.done)],
            vec![counter(s.failed)],
            vec![counter(s.cancelled)],
            vec![counter(s.retried)],
            vec![counter(s.reclaimed)],
            vec![counter(s.parked)],
            vec![counter(s.parked_expired)],
            vec![histogram(s)],
        ];
        FAMILIES
            .iter()
            .zip(values)
            .map(|((name, help, kind), metrics)| family(name, help, *kind, metrics))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_stats_reply() {
        let s = QueueStats::parse(&strings(&[
            "3",
            "1",
            "5",
            "0",
            "0",
            "0",
            "2",
            "done",
            "7",
            "latency_le_10",
            "4",
            "latency_le_inf",
            "1",
            "latency_count",
            "7",
            "latency_sum_ms",
            "900",
            "retried",
            "2",
            "cancelled",
            "4",
        ]))
        .unwrap();
        assert_eq!(s.depth, [3, 5, 0]);
        assert_eq!(s.pending, [1, 0, 0]);
        assert_eq!((s.dead_letters, s.done, s.retried), (2, 7, 2));
        assert_eq!(s.cancelled, 4);
        assert_eq!(s.latency_buckets[1], 4);
        assert_eq!(
            (s.latency_over, s.latency_count, s.latency_sum_ms),
            (1, 7, 900)
        );
        assert!(QueueStats::parse(&strings(&["1"])).is_err());
    }

    #[test]
    fn exposes_prometheus_families() {
        let registry = Registry::new();
        let m = JobMetrics::register(&registry);
        *m.snapshot.lock().unwrap() = QueueStats {
            depth: [1, 2, 3],
            done: 5,
            cancelled: 2,
            latency_buckets: {
                let mut b = [0; LATENCY_BUCKETS_MS.len()];
                b[0] = 2;
                b[2] = 3;
                b
            },
            latency_count: 5,
            latency_sum_ms: 60,
            ..Default::default()
        };
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "hub_jobs_queue_depth{priority=\"low\"} 3",
            "hub_jobs_done_total 5",
            "hub_jobs_cancelled_total 2",
            "hub_jobs_latency_ms_bucket{le=\"5\"} 2",
            "hub_jobs_latency_ms_bucket{le=\"25\"} 5",
            "hub_jobs_latency_ms_bucket{le=\"+Inf\"} 5",
            "hub_jobs_latency_ms_sum 60",
            "hub_jobs_rejected_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
