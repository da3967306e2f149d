//! Prometheus metrics, served as text format 0.0.4 on `/metrics`.
//!
//! Per-worker figures are read at scrape time from the workers' shared-memory metrics
//! blocks and status lines (no message to any worker); the supervisor's own counters are
//! plain prometheus metrics updated where things happen. Counters never go backwards when
//! a worker restarts: a dead generation's counts are folded into its shard's retired totals
//! under the same lock the scrape takes ([`Shard::retire`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry,
};
use shm_protocol::metrics::{bump, APPLY_BUCKETS_NS};
use shm_protocol::os::monotonic_ns;

use crate::base::shard::{process_usage, Shard, ShardState, WorkerCounts};

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
    /// 1 while /health/ready would answer 200 (set at scrape time).
    pub ready: IntGauge,
    /// 1 while the event log refuses writes (set at scrape time).
    pub wal_failing: IntGauge,
    /// 1 once the event log has stopped taking writes until a restart (set at scrape time).
    pub wal_restart_required: IntGauge,
    /// Event log figures.
    pub wal: WalMetrics,
    /// Time to write a checkpoint (as the worker reports it).
    pub checkpoint_seconds: Histogram,
    /// Time from a worker's start to its shard serving, by mode (`startup`, `restart`).
    pub recovery_seconds: HistogramVec,
    /// Every event loop's command statistics (summed at scrape time).
    command_stats: Arc<Mutex<Vec<Arc<CommandStats>>>>,
    /// How many command labels there are.
    commands: usize,
}

/// Upper bounds (inclusive, nanoseconds) of the command latency buckets (5 µs times powers
/// of four); one more bucket counts everything above.
pub const COMMAND_BUCKETS_NS: [u64; 10] = [
    5_000,
    20_000,
    80_000,
    320_000,
    1_280_000,
    5_120_000,
    20_480_000,
    81_920_000,
    327_680_000,
    1_310_720_000,
];

/// Commands by name and outcome, their latency, and the bytes moved, of one event loop.
///
/// **Invariant:** written only by its event loop's thread (the loop and the sessions it
/// drives), so counting is a plain load and store, no read-modify-write: a few nanoseconds
/// per command even at a million a second. The scrape sums every loop's block.
#[derive(Debug)]
pub struct CommandStats {
    /// `[ok, error]` per command (by metric index: the command table's order, the last
    /// one `other`).
    counts: Box<[[AtomicU64; 2]]>,
    /// Non-cumulative latency bucket counts per command.
    buckets: Box<[[AtomicU64; COMMAND_BUCKETS_NS.len() + 1]]>,
    sum_ns: Box<[AtomicU64]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Reads of keys that were found, and of keys that were not.
    hits: AtomicU64,
    misses: AtomicU64,
    /// Error replies by their code (the first word: `ERR`, `WRONGPASS`, ...); locked only
    /// when an error is answered.
    error_codes: Mutex<BTreeMap<String, u64>>,
}

/// Distinct error codes counted (Redis keeps 128; past that, `other`).
const ERROR_CODES_MAX: usize = 128;

/// Every event loop's [`CommandStats`], summed (by command metric index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandTotals {
    /// `[ok, error]` per command.
    pub counts: Vec<[u64; 2]>,
    /// Non-cumulative latency bucket counts per command (bounds [`COMMAND_BUCKETS_NS`]).
    pub buckets: Vec<[u64; COMMAND_BUCKETS_NS.len() + 1]>,
    /// Latency sum per command, nanoseconds.
    pub sum_ns: Vec<u64>,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes sent to clients.
    pub bytes_out: u64,
    /// Key reads that found their key.
    pub hits: u64,
    /// Key reads that did not.
    pub misses: u64,
    /// Error replies by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Keys removed because their deadline had come (the shards' counts: the event loops
    /// leave it 0; whoever reads the shards fills it in).
    pub expired_keys: u64,
}

impl CommandTotals {
    fn sum(loops: &[Arc<CommandStats>], commands: usize) -> Self {
        let mut t = Self {
            counts: vec![[0; 2]; commands],
            buckets: vec![[0; COMMAND_BUCKETS_NS.len() + 1]; commands],
            sum_ns: vec![0; commands],
            ..Self::default()
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for stats in loops {
            for i in 0..commands {
                for (total, c) in t.counts[i].iter_mut().zip(&stats.counts[i]) {
                    *total += load(c);
                }
                for (total, b) in t.buckets[i].iter_mut().zip(&stats.buckets[i]) {
                    *total += load(b);
                }
                t.sum_ns[i] += load(&stats.sum_ns[i]);
            }
            t.bytes_in += load(&stats.bytes_in);
            t.bytes_out += load(&stats.bytes_out);
            t.hits += load(&stats.hits);
            t.misses += load(&stats.misses);
            for (code, n) in stats
                .error_codes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                *t.error_codes.entry(code.clone()).or_default() += n;
            }
        }
        t
    }

    /// What was counted since `earlier` (a snapshot of the same counters).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let minus = |a: u64, b: u64| a.saturating_sub(b);
        let zip = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter().zip(b).map(|(x, y)| minus(*x, *y)).collect()
        };
        Self {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| [minus(a[0], b[0]), minus(a[1], b[1])])
                .collect(),
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(a, b)| std::array::from_fn(|i| minus(a[i], b[i])))
                .collect(),
            sum_ns: zip(&self.sum_ns, &earlier.sum_ns),
            bytes_in: minus(self.bytes_in, earlier.bytes_in),
            bytes_out: minus(self.bytes_out, earlier.bytes_out),
            hits: minus(self.hits, earlier.hits),
            misses: minus(self.misses, earlier.misses),
            expired_keys: minus(self.expired_keys, earlier.expired_keys),
            error_codes: self
                .error_codes
                .iter()
                .map(|(code, n)| {
                    let before = earlier.error_codes.get(code).copied().unwrap_or(0);
                    (code.clone(), minus(*n, before))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    /// Commands run, errors included.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.counts.iter().map(|c| c[0] + c[1]).sum()
    }

    /// Commands answered with an error.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.counts.iter().map(|c| c[1]).sum()
    }
}

impl CommandStats {
    fn new(commands: usize) -> Self {
        Self {
            counts: (0..commands).map(|_| Default::default()).collect(),
            buckets: (0..commands).map(|_| Default::default()).collect(),
            sum_ns: (0..commands).map(|_| AtomicU64::new(0)).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            error_codes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts an error reply (`reply` is the encoded `-CODE text\r\n`).
    pub fn error_reply(&self, reply: &[u8]) {
        let code = reply
            .get(1..)
            .unwrap_or_default()
            .split(|&b| b == b' ' || b == b'\r')
            .next()
            .unwrap_or_default();
        let code = String::from_utf8_lossy(code);
        let mut codes = self
            .error_codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = codes.get_mut(code.as_ref()) {
            *n += 1;
        } else if codes.len() < ERROR_CODES_MAX {
            codes.insert(code.into_owned(), 1);
        } else {
            *codes.entry("other".to_owned()).or_default() += 1;
        }
    }

    /// Counts a key read that found its key (`hit`) or did not.
    #[inline]
    pub fn keyspace(&self, hit: bool) {
        bump(if hit { &self.hits } else { &self.misses }, 1);
    }

    /// Counts one command (by its metric index) and its latency.
    #[inline]
    pub fn record(&self, command: usize, ok: bool, latency_ns: u64) {
        let i = command.min(self.sum_ns.len() - 1);
        bump(&self.counts[i][usize::from(!ok)], 1);
        let bucket = COMMAND_BUCKETS_NS.partition_point(|&bound| bound < latency_ns);
        bump(&self.buckets[i][bucket], 1);
        bump(&self.sum_ns[i], latency_ns);
    }

    /// Counts bytes read from clients.
    #[inline]
    pub fn received(&self, bytes: u64) {
        bump(&self.bytes_in, bytes);
    }

    /// Counts bytes sent to clients.
    #[inline]
    pub fn sent(&self, bytes: u64) {
        bump(&self.bytes_out, bytes);
    }
}

/// Renders every loop's [`CommandStats`], summed, at scrape time.
#[derive(Debug)]
struct CommandCollector {
    loops: Arc<Mutex<Vec<Arc<CommandStats>>>>,
    /// The `command` label values, by metric index.
    labels: Vec<&'static str>,
    descs: Vec<Desc>,
}

const COMMAND_FAMILIES: [(&str, &str, MetricType); 6] = [
    (
        "corral_commands_total",
        "Commands run, by command and status.",
        MetricType::COUNTER,
    ),
    (
        "corral_command_duration_seconds",
        "Time from reading a command to its reply being ready (writes: applied and durable).",
        MetricType::HISTOGRAM,
    ),
    (
        "corral_client_bytes_received_total",
        "Bytes read from clients.",
        MetricType::COUNTER,
    ),
    (
        "corral_client_bytes_sent_total",
        "Bytes sent to clients.",
        MetricType::COUNTER,
    ),
    (
        "corral_keyspace_hits_total",
        "Key reads (GET, MGET) that found their key.",
        MetricType::COUNTER,
    ),
    (
        "corral_keyspace_misses_total",
        "Key reads (GET, MGET) whose key was missing.",
        MetricType::COUNTER,
    ),
];

impl CommandCollector {
    fn new(loops: Arc<Mutex<Vec<Arc<CommandStats>>>>, command_labels: Vec<&'static str>) -> Self {
        let labels: [&[&str]; 6] = [&["command", "status"], &["command"], &[], &[], &[], &[]];
        let descs = COMMAND_FAMILIES
            .iter()
            .zip(labels)
            .filter_map(|((name, help, _), labels)| desc(name, help, labels))
            .collect();
        Self {
            loops,
            labels: command_labels,
            descs,
        }
    }
}

impl Collector for CommandCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let t = CommandTotals::sum(
            &self.loops.lock().unwrap_or_else(PoisonError::into_inner),
            self.labels.len(),
        );
        let mut families: Vec<MetricFamily> = COMMAND_FAMILIES
            .iter()
            .map(|(name, help, kind)| family(name, help, *kind))
            .collect();
        for (i, name) in self.labels.iter().enumerate() {
            for (status, n) in ["ok", "error"].iter().zip(t.counts[i]) {
                let labels = [("command", *name), ("status", *status)];
                families[0]
                    .mut_metric()
                    .push(sample(&labels, MetricType::COUNTER, n as f64));
            }
            families[1].mut_metric().push(histogram_sample(
                &[("command", name)],
                &COMMAND_BUCKETS_NS,
                &t.buckets[i],
                t.sum_ns[i],
            ));
        }
        for (family, value) in
            families[2..]
                .iter_mut()
                .zip([t.bytes_in, t.bytes_out, t.hits, t.misses])
        {
            family
                .mut_metric()
                .push(sample(&[], MetricType::COUNTER, value as f64));
        }
        families
    }
}

/// An empty family.
fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f
}

/// The description of a family with `labels`.
fn desc(name: &str, help: &str, labels: &[&str]) -> Option<Desc> {
    let labels = labels.iter().map(|l| (*l).to_owned()).collect();
    Desc::new(name.to_owned(), help.to_owned(), labels, Default::default()).ok()
}

fn label_pairs(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

/// A counter or gauge sample.
fn sample(labels: &[(&str, &str)], kind: MetricType, value: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(label_pairs(labels));
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

/// A histogram sample from non-cumulative bucket counts over `bounds_ns` (plus the overflow
/// bucket) and their sum in nanoseconds.
fn histogram_sample(
    labels: &[(&str, &str)],
    bounds_ns: &[u64],
    counts: &[u64],
    sum_ns: u64,
) -> proto::Metric {
    let mut h = proto::Histogram::default();
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(bounds_ns.len());
    for (bound, n) in bounds_ns.iter().zip(counts) {
        cumulative += n;
        let mut b = proto::Bucket::default();
        b.set_cumulative_count(cumulative);
        b.set_upper_bound(*bound as f64 / 1e9);
        buckets.push(b);
    }
    h.set_bucket(buckets);
    h.set_sample_count(counts.iter().sum());
    h.set_sample_sum(sum_ns as f64 / 1e9);
    let mut m = proto::Metric::default();
    m.set_label(label_pairs(labels));
    m.set_histogram(h);
    m
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

/// Registers families in one registry; every name is fixed and registered once, so a
/// failure is a bug in this module.
struct Registrar(Registry);

impl Registrar {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("each family is registered once");
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid counter"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid gauge"))
    }

    /// A histogram with `count` buckets from `start`, each `factor` times the previous.
    fn histogram(
        &self,
        name: &str,
        help: &str,
        start: f64,
        factor: f64,
        count: usize,
    ) -> Histogram {
        let buckets = prometheus::exponential_buckets(start, factor, count).expect("valid buckets");
        self.add(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid histogram"),
        )
    }
}

impl WalMetrics {
    fn new(r: &Registrar) -> Self {
        Self {
            records: r.counter("corral_wal_records_total", "Event log records written."),
            bytes: r.counter("corral_wal_bytes_total", "Event log bytes written."),
            errors: r.counter(
                "corral_wal_errors_total",
                "Event log writes or syncs that failed.",
            ),
            group_records: r.histogram(
                "corral_wal_group_records",
                "Records written per group commit.",
                1.0,
                2.0,
                13,
            ),
            sync_seconds: r.histogram(
                "corral_wal_sync_duration_seconds",
                "fdatasync duration of the event log.",
                25e-6,
                2.0,
                14,
            ),
            segments: r.gauge("corral_wal_segments", "Segments in the event log."),
            disk_bytes: r.gauge("corral_wal_disk_bytes", "Bytes of the event log on disk."),
            oldest_seq: r.gauge(
                "corral_wal_oldest_seq",
                "Sequence number of the oldest record the event log keeps.",
            ),
        }
    }
}

impl Metrics {
    /// The metrics of a supervisor over `shards`, counting commands under
    /// `command_labels` (by metric index: the command table's names, then `other`).
    ///
    /// # Panics
    /// Never in practice: every family is registered once with a fixed, valid name.
    #[must_use]
    pub fn new(
        shards: Arc<Vec<Shard>>,
        log_dropped: Arc<AtomicU64>,
        command_labels: Vec<&'static str>,
    ) -> Arc<Self> {
        assert!(
            !command_labels.is_empty(),
            "commands are counted under at least `other`"
        );
        let r = Registrar(Registry::new());
        let command_stats = Arc::new(Mutex::new(Vec::new()));
        let commands = command_labels.len();
        Self::register_collectors(&r, shards, log_dropped, &command_stats, command_labels);
        Arc::new(Self {
            checkpoint_seconds: r.histogram(
                "corral_checkpoint_duration_seconds",
                "Time to write a checkpoint.",
                0.001,
                4.0,
                10,
            ),
            recovery_seconds: r.add(
                HistogramVec::new(
                    HistogramOpts::new(
                        "corral_recovery_duration_seconds",
                        "Time from a worker's start to its shard serving (checkpoint load and replay).",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 4.0, 10).expect("valid buckets")),
                    &["mode"],
                )
                .expect("valid histogram"),
            ),
            command_stats,
            commands,
            connections: r.gauge("corral_connections", "Client connections open."),
            data_dir_free_bytes: r.gauge(
                "corral_data_dir_free_bytes",
                "Bytes free (for unprivileged use) on the data dir's file system.",
            ),
            data_dir_size_bytes: r.gauge(
                "corral_data_dir_size_bytes",
                "Size of the data dir's file system.",
            ),
            ready: r.gauge(
                "corral_ready",
                "1 while the supervisor is ready (every shard serving, the event log taking writes, not draining).",
            ),
            wal_failing: r.gauge(
                "corral_wal_failing",
                "1 while the event log refuses writes.",
            ),
            wal_restart_required: r.gauge(
                "corral_wal_restart_required",
                "1 once the event log has stopped taking writes until the supervisor restarts.",
            ),
            connections_rejected: r.counter(
                "corral_connections_rejected_total",
                "Connections refused at --max-clients.",
            ),
            wal: WalMetrics::new(&r),
            registry: r.0,
        })
    }

    /// The families computed at scrape time: the build, the process, the workers' blocks,
    /// the event loops' command statistics and the log's drop counter.
    fn register_collectors(
        r: &Registrar,
        shards: Arc<Vec<Shard>>,
        log_dropped: Arc<AtomicU64>,
        command_stats: &Arc<Mutex<Vec<Arc<CommandStats>>>>,
        command_labels: Vec<&'static str>,
    ) {
        let build = IntGauge::with_opts(
            Opts::new(
                "corral_build_info",
                "Corral's version (the value is always 1).",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid gauge");
        build.set(1);
        let register = |c: Box<dyn prometheus::core::Collector>| {
            r.0.register(c).expect("each family is registered once");
        };
        register(Box::new(build));
        register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        register(Box::new(WorkerCollector::new(shards)));
        register(Box::new(CommandCollector::new(
            Arc::clone(command_stats),
            command_labels,
        )));
        register(Box::new(CounterFn {
            desc: Desc::new(
                "corral_log_lines_dropped_total".into(),
                "Log lines dropped because the log channel was full.".into(),
                Vec::new(),
                Default::default(),
            )
            .expect("valid desc"),
            value: log_dropped,
        }));
    }

    /// A new event loop's command statistics, included in every scrape from now on.
    pub fn command_stats(&self) -> Arc<CommandStats> {
        let stats = Arc::new(CommandStats::new(self.commands));
        self.command_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&stats));
        stats
    }

    /// Every event loop's command statistics, summed now.
    #[must_use]
    pub fn command_totals(&self) -> CommandTotals {
        CommandTotals::sum(
            &self
                .command_stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            self.commands,
        )
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
        let value = self.value.load(Ordering::Relaxed) as f64;
        let mut f = family(&self.desc.fq_name, &self.desc.help, MetricType::COUNTER);
        f.set_metric(vec![sample(&[], MetricType::COUNTER, value)]);
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
        "corral_worker_expired_keys_total",
        "Keys removed because their deadline had come (by a write that met them or the expiry sweep; replays included).",
        MetricType::COUNTER,
        None,
    ),
    (
        "corral_worker_expiring_keys",
        "Keys of the shard with a deadline.",
        MetricType::GAUGE,
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
        "corral_worker_data_bytes",
        "Bytes of key and value data the shard holds.",
        MetricType::GAUGE,
        None,
    ),
    (
        "corral_worker_data_capacity_bytes",
        "Most bytes of key and value data the shard holds (--shard-memory); beyond it writes get -OOM.",
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
                let mut labels = vec!["worker"];
                labels.extend(*extra);
                desc(name, help, &labels)
            })
            .collect();
        Self { shards, descs }
    }
}

fn scalar(worker: u32, extra: Option<(&str, &str)>, kind: MetricType, value: f64) -> proto::Metric {
    let worker = worker.to_string();
    let mut labels = vec![("worker", worker.as_str())];
    labels.extend(extra);
    sample(&labels, kind, value)
}

fn histogram(worker: u32, counts: &WorkerCounts) -> proto::Metric {
    histogram_sample(
        &[("worker", &worker.to_string())],
        &APPLY_BUCKETS_NS,
        &counts.buckets,
        counts.sum_ns,
    )
}

/// One value of a worker family: its name, an extra label, the value.
type Sample = (&'static str, Option<(&'static str, &'static str)>, f64);

/// What the supervisor knows of a shard's process: up, ready, parked, its generation,
/// restarts, exits, counts, CPU, memory, backoff.
fn lifecycle_samples(shard: &Shard, counts: &WorkerCounts, out: &mut Vec<Sample>) {
    let live = shard.current().filter(|g| !g.is_dead());
    let flag = |b: bool| f64::from(u8::from(b));
    let state = shard.state();
    out.push(("corral_worker_up", None, flag(live.is_some())));
    out.push((
        "corral_worker_ready",
        None,
        flag(state == ShardState::Ready),
    ));
    out.push((
        "corral_worker_parked",
        None,
        flag(state == ShardState::Parked),
    ));
    out.push((
        "corral_worker_generation",
        None,
        live.as_ref().map_or(0.0, |g| g.number as f64),
    ));
    for (reason, n) in shard.restarts_by_reason() {
        out.push((
            "corral_worker_restarts_total",
            Some(("reason", reason.name())),
            n as f64,
        ));
    }
    let (code, signal) = shard.last_exit_numbers();
    out.push(("corral_worker_last_exit_code", None, code as f64));
    out.push(("corral_worker_last_exit_signal", None, signal as f64));
    out.push(("corral_worker_applied_total", None, counts.applied as f64));
    out.push(("corral_worker_errors_total", None, counts.errors as f64));
    out.push((
        "corral_worker_expired_keys_total",
        None,
        counts.expired as f64,
    ));
    out.push((
        "corral_worker_cpu_seconds_total",
        None,
        counts.cpu_ns as f64 / 1e9,
    ));
    let rss = live
        .as_ref()
        .and_then(|g| process_usage(g.pid))
        .map_or(0.0, |u| u.1);
    out.push(("corral_worker_resident_memory_bytes", None, rss));
    out.push((
        "corral_worker_restart_backoff_seconds",
        None,
        shard.backoff_ns(monotonic_ns()) as f64 / 1e9,
    ));
}

/// What the live generation's segment shows: queue, heartbeat, keys and bytes, applied
/// and checkpointed sequence numbers (zeros while no generation is live).
fn segment_samples(shard: &Shard, out: &mut Vec<Sample>) {
    let live = shard.current().filter(|g| !g.is_dead());
    let head = live.as_ref().map(|g| g.segment.head());
    let load = |f: &dyn Fn(&shm_protocol::layout::SegmentHead) -> u64| head.map_or(0, f);
    let tail = load(&|h| h.supervisor.request_tail.load(Ordering::Acquire));
    let consumed = load(&|h| h.worker_request.request_head.load(Ordering::Acquire));
    let beat = load(&|h| h.status.heartbeat_ns.load(Ordering::Acquire));
    let applied_seq = load(&|h| h.status.applied_seq.load(Ordering::Acquire));
    let heartbeat_age_s = if head.is_some() {
        monotonic_ns().saturating_sub(beat) as f64 / 1e9
    } else {
        0.0
    };
    let values: [(&'static str, f64); 13] = [
        (
            "corral_worker_queue_depth_words",
            tail.saturating_sub(consumed) as f64,
        ),
        (
            "corral_worker_queue_capacity_words",
            load(&|h| h.header.request_ring_words.load(Ordering::Relaxed)) as f64,
        ),
        ("corral_worker_heartbeat_age_seconds", heartbeat_age_s),
        (
            "corral_worker_keys",
            load(&|h| h.status.keys.load(Ordering::Acquire)) as f64,
        ),
        (
            "corral_worker_keys_capacity",
            load(&|h| h.header.max_keys.load(Ordering::Relaxed)) as f64,
        ),
        (
            "corral_worker_data_bytes",
            load(&|h| h.status.live_bytes.load(Ordering::Acquire)) as f64,
        ),
        (
            "corral_worker_data_capacity_bytes",
            load(&|h| h.header.heap_half_words.load(Ordering::Relaxed) * 8) as f64,
        ),
        (
            "corral_worker_expiring_keys",
            load(&|h| h.metrics.expiring_keys.load(Ordering::Acquire)) as f64,
        ),
        ("corral_worker_applied_seq", applied_seq as f64),
        (
            "corral_worker_replay_lag",
            shard.pushed_seq().saturating_sub(applied_seq) as f64,
        ),
        (
            "corral_worker_checkpoint_seq",
            load(&|h| h.checkpoint.seq.load(Ordering::Acquire)) as f64,
        ),
        (
            "corral_worker_checkpoint_bytes",
            load(&|h| h.checkpoint.bytes.load(Ordering::Acquire)) as f64,
        ),
        (
            "corral_worker_checkpoint_last_success_timestamp_seconds",
            load(&|h| h.checkpoint.unix_ms.load(Ordering::Acquire)) as f64 / 1000.0,
        ),
    ];
    out.extend(values.into_iter().map(|(name, v)| (name, None, v)));
}

impl Collector for WorkerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = WORKER_FAMILIES
            .iter()
            .map(|(name, help, kind, _)| family(name, help, *kind))
            .collect();
        let index = |name: &str| WORKER_FAMILIES.iter().position(|f| f.0 == name);
        let mut histograms = Vec::new();
        let mut samples = Vec::new();
        for shard in self.shards.iter() {
            let counts = shard.counts();
            samples.clear();
            lifecycle_samples(shard, &counts, &mut samples);
            segment_samples(shard, &mut samples);
            for (name, extra, value) in samples.drain(..) {
                let Some(i) = index(name) else {
                    debug_assert!(false, "{name} is not in WORKER_FAMILIES");
                    continue;
                };
                let kind = WORKER_FAMILIES[i].2;
                families[i]
                    .mut_metric()
                    .push(scalar(shard.id, extra, kind, value));
            }
            histograms.push(histogram(shard.id, &counts));
        }
        if let Some(i) = index("corral_worker_apply_duration_seconds") {
            families[i].set_metric(histograms);
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(shards: u32) -> Arc<Metrics> {
        Metrics::new(
            Arc::new((0..shards).map(Shard::new).collect()),
            Arc::new(AtomicU64::new(7)),
            vec!["get", "set", "other"],
        )
    }

    /// The value of the sample of `family` whose labels include all of `labels`.
    fn value(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(family))
            .find(|l| labels.iter().all(|want| l.contains(want)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_worker_family_has_a_sample_per_shard_and_nothing_unlisted() {
        let shards: Vec<Shard> = (0..2).map(Shard::new).collect();
        for shard in &shards {
            let mut samples = Vec::new();
            lifecycle_samples(shard, &shard.counts(), &mut samples);
            segment_samples(shard, &mut samples);
            for (name, _, _) in &samples {
                assert!(
                    WORKER_FAMILIES.iter().any(|f| f.0 == *name),
                    "{name} is sampled but not declared"
                );
            }
            for (name, _, kind, _) in WORKER_FAMILIES {
                if *kind != MetricType::HISTOGRAM {
                    assert!(
                        samples.iter().any(|s| s.0 == *name),
                        "{name} is declared but never sampled"
                    );
                }
            }
        }
        let text = metrics(2).render();
        for w in ["worker=\"0\"", "worker=\"1\""] {
            assert_eq!(value(&text, "corral_worker_up", &[w]), Some(0.0), "{text}");
            assert_eq!(value(&text, "corral_worker_ready", &[w]), Some(0.0));
        }
        assert_eq!(
            value(&text, "corral_log_lines_dropped_total", &[]),
            Some(7.0)
        );
        assert!(text.contains("corral_build_info{version=\""));
    }

    #[test]
    fn command_stats_of_every_loop_are_summed_under_their_labels() {
        let m = metrics(1);
        let (a, b) = (m.command_stats(), m.command_stats());
        a.record(0, true, 50_000); // GET ok, 50 µs
        b.record(0, false, 5_000_000); // GET error, 5 ms
        b.record(1, true, 1_000);
        b.record(99, true, 1_000); // past the table: counted as `other`
        a.received(100);
        b.received(20);
        b.sent(3);
        let text = m.render();
        let count = |labels: &[&str]| value(&text, "corral_commands_total", labels);
        assert_eq!(count(&["command=\"get\"", "status=\"ok\""]), Some(1.0));
        assert_eq!(count(&["command=\"get\"", "status=\"error\""]), Some(1.0));
        assert_eq!(count(&["command=\"set\"", "status=\"ok\""]), Some(1.0));
        assert_eq!(count(&["command=\"other\"", "status=\"ok\""]), Some(1.0));
        let hist = |suffix: &str, labels: &[&str]| {
            value(
                &text,
                &format!("corral_command_duration_seconds_{suffix}"),
                labels,
            )
        };
        assert_eq!(hist("count", &["command=\"get\""]), Some(2.0));
        assert!((hist("sum", &["command=\"get\""]).unwrap() - 0.00505).abs() < 1e-9);
        // Cumulative buckets: 50 µs is within 80 µs, 5 ms only within 5.12 ms.
        let bucket = |le: &str| hist("bucket", &["command=\"get\"", &format!("le=\"{le}\"")]);
        assert_eq!(bucket("0.00002"), Some(0.0));
        assert_eq!(bucket("0.00008"), Some(1.0));
        assert_eq!(bucket("0.00128"), Some(1.0));
        assert_eq!(bucket("0.00512"), Some(2.0));
        assert_eq!(
            hist("bucket", &["command=\"get\"", "le=\"+Inf\""]),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "corral_client_bytes_received_total", &[]),
            Some(120.0)
        );
        assert_eq!(
            value(&text, "corral_client_bytes_sent_total", &[]),
            Some(3.0)
        );
    }
}
