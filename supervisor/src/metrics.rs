//! Prometheus metrics, served as text format 0.0.4 on `/metrics`.
//!
//! Per-worker figures are read at scrape time from the workers' shared-memory metrics
//! blocks and status lines (no message to any worker); the supervisor's own counters are
//! plain prometheus metrics updated where things happen. Counters never go backwards when
//! a worker restarts: a dead generation's counts are folded into its shard's retired totals
//! under the same lock the scrape takes ([`Shard::retire`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};
use shm_protocol::metrics::APPLY_BUCKETS_NS;
use shm_protocol::os::monotonic_ns;

use crate::shard::{process_usage, Shard, ShardState, WorkerCounts};

/// The supervisor's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client connections open.
    pub connections: IntGauge,
    /// Connections refused at `--max-clients`.
    pub connections_rejected: IntCounter,
    /// Free bytes of the data dir's file system (set at scrape time).
    pub data_dir_free_bytes: IntGauge,
    /// Size of the data dir's file system (set at scrape time).
    pub data_dir_size_bytes: IntGauge,
    /// Event log figures.
    pub wal: WalMetrics,
    /// Time to write a checkpoint (as the worker reports it).
    pub checkpoint_seconds: Histogram,
    /// Time from a worker's start to its shard serving, by mode (`startup`, `restart`).
    pub recovery_seconds: HistogramVec,
    /// Commands, latency and bytes of the front door.
    pub commands: CommandMetrics,
}

/// Commands by name and outcome, their latency, and the bytes the front door moved.
/// Children are resolved once, so counting costs a few atomic adds.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    /// `[ok, error]` per command (index into [`COMMAND_NAMES`]).
    counts: Vec<[IntCounter; 2]>,
    latency: Vec<Histogram>,
    /// Bytes read from clients.
    pub bytes_in: IntCounter,
    /// Bytes sent to clients.
    pub bytes_out: IntCounter,
}

/// The command label values: the commands Corral knows, then `other`.
pub const COMMAND_NAMES: &[&str] = &[
    "ping", "echo", "set", "get", "del", "unlink", "exists", "incr", "incrby", "decr", "decrby",
    "mget", "mset", "dbsize", "info", "auth", "select", "quit", "command", "config", "hello",
    "client", "other",
];

impl CommandMetrics {
    /// Counts one command (by its index in [`COMMAND_NAMES`]) and its latency.
    pub fn record(&self, command: usize, ok: bool, seconds: f64) {
        let i = command.min(COMMAND_NAMES.len() - 1);
        self.counts[i][usize::from(!ok)].inc();
        self.latency[i].observe(seconds);
    }
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
    /// Sequence number of the oldest record kept.
    pub oldest_seq: IntGauge,
}

impl Metrics {
    /// The metrics of a supervisor over `shards`.
    ///
    /// # Panics
    /// Never in practice: every family is registered once with a fixed, valid name.
    #[must_use]
    pub fn new(shards: Arc<Vec<Shard>>, log_dropped: Arc<AtomicU64>) -> Arc<Self> {
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
            oldest_seq: gauge(
                "corral_wal_oldest_seq",
                "Sequence number of the oldest record the event log keeps.",
            ),
        };
        let counts = IntCounterVec::new(
            Opts::new(
                "corral_commands_total",
                "Commands run, by command and status.",
            ),
            &["command", "status"],
        )
        .expect("valid counter");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "corral_command_duration_seconds",
                "Time from reading a command to its reply being ready (writes: applied and durable).",
            )
            .buckets(prometheus::exponential_buckets(5e-6, 4.0, 10).expect("valid buckets")),
            &["command"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(counts.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        let commands = CommandMetrics {
            counts: COMMAND_NAMES
                .iter()
                .map(|c| {
                    [
                        counts.with_label_values(&[c, "ok"]),
                        counts.with_label_values(&[c, "error"]),
                    ]
                })
                .collect(),
            latency: COMMAND_NAMES
                .iter()
                .map(|c| latency.with_label_values(&[c]))
                .collect(),
            bytes_in: counter(
                "corral_client_bytes_received_total",
                "Bytes read from clients.",
            ),
            bytes_out: counter("corral_client_bytes_sent_total", "Bytes sent to clients."),
        };
        let recovery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "corral_recovery_duration_seconds",
                "Time from a worker's start to its shard serving (checkpoint load and replay).",
            )
            .buckets(prometheus::exponential_buckets(0.001, 4.0, 10).expect("valid buckets")),
            &["mode"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(recovery_seconds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(CounterFn {
                desc: Desc::new(
                    "corral_log_lines_dropped_total".into(),
                    "Log lines dropped because the log channel was full.".into(),
                    Vec::new(),
                    Default::default(),
                )
                .expect("valid desc"),
                value: log_dropped,
            }))
            .expect("registered once");
        Arc::new(Self {
            checkpoint_seconds: histogram(
                "corral_checkpoint_duration_seconds",
                "Time to write a checkpoint.",
                prometheus::exponential_buckets(0.001, 4.0, 10).expect("valid buckets"),
            ),
            recovery_seconds,
            commands,
            connections: gauge("corral_connections", "Client connections open."),
            data_dir_free_bytes: gauge(
                "corral_data_dir_free_bytes",
                "Bytes free (for unprivileged use) on the data dir's file system.",
            ),
            data_dir_size_bytes: gauge(
                "corral_data_dir_size_bytes",
                "Size of the data dir's file system.",
            ),
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

/// A counter whose value lives in an atomic owned elsewhere.
struct CounterFn {
    desc: Desc,
    value: Arc<AtomicU64>,
}

impl Collector for CounterFn {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut c = proto::Counter::default();
        c.set_value(self.value.load(Ordering::Relaxed) as f64);
        let mut m = proto::Metric::default();
        m.set_counter(c);
        let mut f = MetricFamily::default();
        f.set_name(self.desc.fq_name.clone());
        f.set_help(self.desc.help.clone());
        f.set_field_type(MetricType::COUNTER);
        f.set_metric(vec![m]);
        vec![f]
    }
}

/// The per-worker families, read from shared memory at scrape time.
struct WorkerCollector {
    shards: Arc<Vec<Shard>>,
    descs: Vec<Desc>,
}

/// (name, help, type, extra label) of the families [`WorkerCollector`] produces; every one
/// has the `worker` label.
const WORKER_FAMILIES: &[(&str, &str, MetricType, Option<&str>)] = &[
    (
        "corral_worker_up",
        "1 while the worker process runs.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_ready",
        "1 while the shard serves (replay done).",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_parked",
        "1 while the shard is parked after repeated crashes.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_generation",
        "Generation of the current worker.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_restarts_total",
        "Worker restarts, by reason.",
        MetricType::COUNTER,
        Some("reason"),
    ),
    (
        "corral_worker_last_exit_code",
        "Exit code of the last worker (-1: none).",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_last_exit_signal",
        "Signal that ended the last worker (-1: none).",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_applied_total",
        "Writes applied by the shard's workers.",
        MetricType::COUNTER,
        None,
    ),
    (
        "corral_worker_errors_total",
        "Writes that returned an error.",
        MetricType::COUNTER,
        None,
    ),
    (
        "corral_worker_queue_depth_words",
        "Request ring words not yet applied.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_queue_capacity_words",
        "Request ring size in words.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_heartbeat_age_seconds",
        "Age of the worker's heartbeat.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_keys",
        "Keys held by the shard.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_keys_capacity",
        "Most keys the shard holds.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_applied_seq",
        "Sequence number of the last write applied.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_replay_lag",
        "Sequence numbers between the last write handed to the worker and the last it applied.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_checkpoint_seq",
        "Sequence number the newest checkpoint covers.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_checkpoint_bytes",
        "Size of the newest checkpoint.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_checkpoint_last_success_timestamp_seconds",
        "When the current worker last wrote a checkpoint (0: not yet).",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_cpu_seconds_total",
        "CPU time of the shard's worker processes.",
        MetricType::COUNTER,
        None,
    ),
    (
        "corral_worker_resident_memory_bytes",
        "Resident memory of the current worker process.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_restart_backoff_seconds",
        "Delay of the shard's latest restart (the probe interval while parked); 0 once a worker has been ready for the stable period.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_apply_duration_seconds",
        "Time to apply one write.",
        MetricType::HISTOGRAM,
        None,
    ),
];

impl WorkerCollector {
    fn new(shards: Arc<Vec<Shard>>) -> Self {
        let descs = WORKER_FAMILIES
            .iter()
            .filter_map(|(name, help, _, extra)| {
                let mut labels = vec!["worker".to_owned()];
                labels.extend(extra.map(str::to_owned));
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels,
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Self { shards, descs }
    }
}

fn labels(worker: u32, extra: Option<(&str, &str)>) -> Vec<LabelPair> {
    let pair = |name: &str, value: &str| {
        let mut l = LabelPair::default();
        l.set_name(name.to_owned());
        l.set_value(value.to_owned());
        l
    };
    let mut out = vec![pair("worker", &worker.to_string())];
    out.extend(extra.map(|(k, v)| pair(k, v)));
    out
}

fn scalar(worker: u32, extra: Option<(&str, &str)>, kind: MetricType, value: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(labels(worker, extra));
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
    m.set_label(labels(worker, None));
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
            .map(|(name, help, kind, _)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(*kind);
                f
            })
            .collect();
        let index = |name: &str| WORKER_FAMILIES.iter().position(|f| f.0 == name);
        let mut put = |name: &str, worker: u32, extra: Option<(&str, &str)>, value: f64| {
            if let Some(i) = index(name) {
                let kind = WORKER_FAMILIES[i].2;
                families[i]
                    .mut_metric()
                    .push(scalar(worker, extra, kind, value));
            }
        };
        let mut histograms = Vec::new();
        for shard in self.shards.iter() {
            let id = shard.id;
            let counts = shard.counts();
            let live = shard.current().filter(|g| !g.is_dead());
            put(
                "corral_worker_up",
                id,
                None,
                f64::from(u8::from(live.is_some())),
            );
            put(
                "corral_worker_ready",
                id,
                None,
                f64::from(u8::from(shard.state() == ShardState::Ready)),
            );
            put(
                "corral_worker_parked",
                id,
                None,
                f64::from(u8::from(shard.state() == ShardState::Parked)),
            );
            put(
                "corral_worker_generation",
                id,
                None,
                live.as_ref().map_or(0.0, |g| g.number as f64),
            );
            for (reason, n) in shard.restarts_by_reason() {
                put(
                    "corral_worker_restarts_total",
                    id,
                    Some(("reason", reason.name())),
                    n as f64,
                );
            }
            let (code, signal) = shard.last_exit_numbers();
            put("corral_worker_last_exit_code", id, None, code as f64);
            put("corral_worker_last_exit_signal", id, None, signal as f64);
            put(
                "corral_worker_applied_total",
                id,
                None,
                counts.applied as f64,
            );
            put("corral_worker_errors_total", id, None, counts.errors as f64);
            let g = live.as_ref();
            let head = g.map(|g| g.segment.head());
            let load = |f: &dyn Fn(&shm_protocol::layout::SegmentHead) -> u64| head.map_or(0, f);
            let tail = load(&|h| h.supervisor.request_tail.load(Ordering::Acquire));
            let consumed = load(&|h| h.worker_request.request_head.load(Ordering::Acquire));
            let beat = load(&|h| h.status.heartbeat_ns.load(Ordering::Acquire));
            let applied_seq = load(&|h| h.status.applied_seq.load(Ordering::Acquire));
            put(
                "corral_worker_queue_depth_words",
                id,
                None,
                tail.saturating_sub(consumed) as f64,
            );
            put(
                "corral_worker_queue_capacity_words",
                id,
                None,
                load(&|h| h.header.request_ring_words.load(Ordering::Relaxed)) as f64,
            );
            put(
                "corral_worker_heartbeat_age_seconds",
                id,
                None,
                if head.is_some() {
                    monotonic_ns().saturating_sub(beat) as f64 / 1e9
                } else {
                    0.0
                },
            );
            put(
                "corral_worker_keys",
                id,
                None,
                load(&|h| h.status.keys.load(Ordering::Acquire)) as f64,
            );
            put(
                "corral_worker_keys_capacity",
                id,
                None,
                load(&|h| h.header.max_keys.load(Ordering::Relaxed)) as f64,
            );
            put("corral_worker_applied_seq", id, None, applied_seq as f64);
            put(
                "corral_worker_replay_lag",
                id,
                None,
                shard.pushed_seq().saturating_sub(applied_seq) as f64,
            );
            put(
                "corral_worker_checkpoint_seq",
                id,
                None,
                load(&|h| h.checkpoint.seq.load(Ordering::Acquire)) as f64,
            );
            put(
                "corral_worker_checkpoint_bytes",
                id,
                None,
                load(&|h| h.checkpoint.bytes.load(Ordering::Acquire)) as f64,
            );
            put(
                "corral_worker_checkpoint_last_success_timestamp_seconds",
                id,
                None,
                load(&|h| h.checkpoint.unix_ms.load(Ordering::Acquire)) as f64 / 1000.0,
            );
            let rss = g.and_then(|g| process_usage(g.pid)).map_or(0.0, |u| u.1);
            put(
                "corral_worker_cpu_seconds_total",
                id,
                None,
                counts.cpu_ns as f64 / 1e9,
            );
            put("corral_worker_resident_memory_bytes", id, None, rss);
            put(
                "corral_worker_restart_backoff_seconds",
                id,
                None,
                shard.backoff_ns(monotonic_ns()) as f64 / 1e9,
            );
            histograms.push(histogram(id, &counts));
        }
        if let Some(i) = index("corral_worker_apply_duration_seconds") {
            families[i].set_metric(histograms);
        }
        families
    }
}
