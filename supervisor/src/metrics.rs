//! Prometheus metrics, served as text format 0.0.4 on `/metrics`.
//!
//! Per-worker figures are read at scrape time from the workers' shared-memory metrics
//! blocks and status lines (no message to any worker); the supervisor's own counters are
//! plain prometheus metrics updated where things happen. Counters never go backwards when
//! a worker restarts: a dead generation's counts are folded into its shard's retired totals
//! under the same lock the scrape takes ([`Shard::retire`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};
use shm_protocol::metrics::APPLY_BUCKETS_NS;
use shm_protocol::os::monotonic_ns;

use crate::shard::{Shard, ShardState, WorkerCounts};

/// The supervisor's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client connections open.
    pub connections: IntGauge,
    /// Connections refused at `--max-clients`.
    pub connections_rejected: IntCounter,
    /// Event log figures.
    pub wal: WalMetrics,
}

/// Event log figures, updated by the sequencer and the sync thread.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// Records written.
    pub records: IntCounter,
    /// Bytes written.
    pub bytes: IntCounter,
    /// Failed writes or syncs.
    pub errors: IntCounter,
    /// Records per written group.
    pub group_records: Histogram,
    /// fdatasync duration.
    pub sync_seconds: Histogram,
    /// Segments in the log.
    pub segments: IntGauge,
    /// Bytes of the log on disk.
    pub disk_bytes: IntGauge,
}

impl Metrics {
    /// The metrics of a supervisor over `shards`.
    ///
    /// # Panics
    /// Never in practice: every family is registered once with a fixed, valid name.
    #[must_use]
    pub fn new(shards: Arc<Vec<Shard>>) -> Arc<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let build = IntGauge::with_opts(
            Opts::new(
                "corral_build_info",
                "Corral's version (the value is always 1).",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid gauge");
        build.set(1);
        registry.register(Box::new(build)).expect("registered once");
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry
            .register(Box::new(process))
            .expect("registered once");
        registry
            .register(Box::new(WorkerCollector::new(shards)))
            .expect("registered once");
        let wal = WalMetrics {
            records: counter("corral_wal_records_total", "Event log records written."),
            bytes: counter("corral_wal_bytes_total", "Event log bytes written."),
            errors: counter(
                "corral_wal_errors_total",
                "Event log writes or syncs that failed.",
            ),
            group_records: histogram(
                "corral_wal_group_records",
                "Records written per group commit.",
                prometheus::exponential_buckets(1.0, 2.0, 13).expect("valid buckets"),
            ),
            sync_seconds: histogram(
                "corral_wal_sync_duration_seconds",
                "fdatasync duration of the event log.",
                prometheus::exponential_buckets(25e-6, 2.0, 14).expect("valid buckets"),
            ),
            segments: gauge("corral_wal_segments", "Segments in the event log."),
            disk_bytes: gauge("corral_wal_disk_bytes", "Bytes of the event log on disk."),
        };
        Arc::new(Self {
            connections: gauge("corral_connections", "Client connections open."),
            connections_rejected: counter(
                "corral_connections_rejected_total",
                "Connections refused at --max-clients.",
            ),
            wal,
            registry,
        })
    }

    /// The text exposition of every family.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The per-worker families, read from shared memory at scrape time.
struct WorkerCollector {
    shards: Arc<Vec<Shard>>,
    descs: Vec<Desc>,
}

/// (name, help, type) of the families [`WorkerCollector`] produces.
const WORKER_FAMILIES: &[(&str, &str, MetricType)] = &[
    (
        "corral_worker_up",
        "1 while the worker process runs.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_ready",
        "1 while the shard serves (replay done).",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_generation",
        "Generation of the current worker.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_restarts_total",
        "Worker restarts after a crash.",
        MetricType::COUNTER,
    ),
    (
        "corral_worker_applied_total",
        "Writes applied by the shard's workers.",
        MetricType::COUNTER,
    ),
    (
        "corral_worker_errors_total",
        "Writes that returned an error.",
        MetricType::COUNTER,
    ),
    (
        "corral_worker_queue_depth_words",
        "Request ring words not yet applied.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_queue_capacity_words",
        "Request ring size in words.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_heartbeat_age_seconds",
        "Age of the worker's heartbeat.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_keys",
        "Keys held by the shard.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_keys_capacity",
        "Most keys the shard holds.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_applied_seq",
        "Sequence number of the last write applied.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_replay_lag",
        "Sequence numbers between the last write handed to the worker and the last it applied.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_checkpoint_seq",
        "Sequence number the newest checkpoint covers.",
        MetricType::GAUGE,
    ),
    (
        "corral_worker_apply_duration_seconds",
        "Time to apply one write.",
        MetricType::HISTOGRAM,
    ),
];

impl WorkerCollector {
    fn new(shards: Arc<Vec<Shard>>) -> Self {
        let descs = WORKER_FAMILIES
            .iter()
            .filter_map(|(name, help, _)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    vec!["worker".to_owned()],
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Self { shards, descs }
    }
}

fn labels(worker: u32) -> Vec<LabelPair> {
    let mut l = LabelPair::default();
    l.set_name("worker".to_owned());
    l.set_value(worker.to_string());
    vec![l]
}

fn scalar(worker: u32, kind: MetricType, value: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(labels(worker));
    if kind == MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

fn histogram(worker: u32, counts: &WorkerCounts) -> proto::Metric {
    let mut h = proto::Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(APPLY_BUCKETS_NS.len());
    for (i, bound) in APPLY_BUCKETS_NS.iter().enumerate() {
        cumulative += counts.buckets[i];
        let mut b = proto::Bucket::default();
        b.set_cumulative_count(cumulative);
        b.set_upper_bound(*bound as f64 / 1e9);
        buckets.push(b);
    }
    h.set_bucket(buckets);
    h.set_sample_count(counts.buckets.iter().sum());
    h.set_sample_sum(counts.sum_ns as f64 / 1e9);
    let mut m = proto::Metric::default();
    m.set_label(labels(worker));
    m.set_histogram(h);
    m
}

impl Collector for WorkerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = WORKER_FAMILIES
            .iter()
            .map(|(name, help, kind)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(*kind);
                f
            })
            .collect();
        for shard in self.shards.iter() {
            let id = shard.id;
            let counts = shard.counts();
            let live = shard.current().filter(|g| !g.is_dead());
            let state = shard.state();
            let mut values = vec![
                f64::from(u8::from(live.is_some())),
                f64::from(u8::from(state == ShardState::Ready)),
                live.as_ref().map_or(0.0, |g| g.number as f64),
                shard.restarts.load(Ordering::Relaxed) as f64,
                counts.applied as f64,
                counts.errors as f64,
            ];
            let (depth, capacity, age, keys, max_keys, applied_seq, checkpoint) =
                live.as_ref().map_or((0, 0, 0.0, 0, 0, 0, 0), |g| {
                    let head = g.segment.head();
                    let tail = head.supervisor.request_tail.load(Ordering::Acquire);
                    let consumed = head.worker_request.request_head.load(Ordering::Acquire);
                    let beat = head.status.heartbeat_ns.load(Ordering::Acquire);
                    (
                        tail.saturating_sub(consumed),
                        head.header.request_ring_words.load(Ordering::Relaxed),
                        monotonic_ns().saturating_sub(beat) as f64 / 1e9,
                        head.status.keys.load(Ordering::Acquire),
                        head.header.max_keys.load(Ordering::Relaxed),
                        head.status.applied_seq.load(Ordering::Acquire),
                        head.checkpoint.seq.load(Ordering::Acquire),
                    )
                });
            values.extend([
                depth as f64,
                capacity as f64,
                age,
                keys as f64,
                max_keys as f64,
                applied_seq as f64,
                shard.pushed_seq().saturating_sub(applied_seq) as f64,
                checkpoint as f64,
            ]);
            for (i, value) in values.into_iter().enumerate() {
                let kind = WORKER_FAMILIES[i].2;
                families[i].mut_metric().push(scalar(id, kind, value));
            }
            let last = families.len() - 1;
            families[last].mut_metric().push(histogram(id, &counts));
        }
        families
    }
}
