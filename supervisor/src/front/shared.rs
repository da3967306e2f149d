//! What the sessions of every event loop share: the settings, the shards, the sequencer's
//! channel, the durability watermark and the connection count. The server owns it; a
//! session reads it and never the server itself.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use slog::Logger;

use crate::base::shard::Shard;
use crate::front::clients::Clients;
use crate::pipeline::msg::SeqMsg;
use crate::telemetry::metrics::{CommandTotals, Metrics};
use crate::wal::appender::Durability;

/// Front-door settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Password clients must AUTH with.
    pub requirepass: Option<String>,
    /// Most concurrent connections.
    pub max_clients: u32,
    /// Most commands per batch.
    pub max_pipeline: usize,
    /// Largest query buffer.
    pub max_request_bytes: usize,
    /// Longest key.
    pub max_key_bytes: usize,
    /// Longest value.
    pub max_value_bytes: usize,
    /// Event loops.
    pub io_threads: usize,
    /// Fraction of write commands logged.
    pub log_sample_rate: f64,
    /// Whether commands are counted and timed.
    pub command_metrics: bool,
    /// The address clients connect to (INFO, CONFIG GET port/bind).
    pub listen: std::net::SocketAddr,
    /// The data dir (CONFIG GET dir).
    pub data_dir: std::path::PathBuf,
    /// The event log's fsync policy (CONFIG GET appendfsync).
    pub fsync: crate::wal::FsyncPolicy,
    /// Key and value bytes each shard holds at most (`--shard-memory`).
    pub shard_data_bytes: u64,
    /// Slots of every shard's table (SCAN's cursor counts them).
    pub table_slots: u64,
}

/// State the sessions share.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: ServerConfig,
    /// The shards.
    pub shards: Arc<Vec<Shard>>,
    /// The sequencer's channel.
    pub sequencer: Sender<SeqMsg>,
    /// The transaction gates (closed by the sequencer, checked by every read).
    pub gates: Arc<crate::base::gate::Gates>,
    /// When writes are durable.
    pub durability: Arc<Durability>,
    /// Logger.
    pub log: Logger,
    /// When the server started.
    pub started: Instant,
    /// Open client connections (taken at accept, given back at close).
    pub(crate) active: AtomicU32,
    /// The id of the next connection accepted (ids count connections from 1).
    pub(crate) next_id: AtomicU64,
    /// The metric handles (command statistics for INFO).
    pub metrics: Arc<Metrics>,
    /// A random id of this run of the server (INFO's `run_id`).
    pub run_id: String,
    /// INFO's counters start from here (CONFIG RESETSTAT moves it; the metrics stay
    /// monotonic).
    pub(crate) stats_base: Mutex<CommandTotals>,
    /// The latest command-rate sample: when, the command count then, the rate since the
    /// previous sample.
    pub(crate) ops_sample: Mutex<(Instant, u64, f64)>,
    /// Commands that ran for at least [`SLOWLOG_SLOWER_THAN`], newest first (SLOWLOG).
    pub(crate) slowlog: Mutex<SlowLog>,
    /// The open connections (CLIENT LIST, CLIENT KILL).
    pub clients: Clients,
    /// The settings CONFIG SET may change while the server runs.
    pub live: LiveSettings,
}

/// Settings CONFIG SET changes at runtime.
#[derive(Debug)]
pub struct LiveSettings {
    /// Most concurrent connections (starts at `--max-clients`).
    pub max_clients: AtomicU32,
    /// A command whose handler runs this long (µs) goes into the slow log; -1: none does.
    pub slowlog_slower_than_us: AtomicI64,
    /// Entries the slow log keeps.
    pub slowlog_max_len: AtomicUsize,
}

impl LiveSettings {
    /// The settings at start: `max_clients`, and Redis' slow log defaults.
    #[must_use]
    pub fn new(max_clients: u32) -> Self {
        Self {
            max_clients: AtomicU32::new(max_clients),
            slowlog_slower_than_us: AtomicI64::new(
                crate::base::nanos(SLOWLOG_SLOWER_THAN) as i64 / 1000,
            ),
            slowlog_max_len: AtomicUsize::new(SLOWLOG_MAX_LEN),
        }
    }
}

/// A command whose handler ran this long goes into the slow log, by default (Redis'
/// `slowlog-log-slower-than` default, 10 ms).
pub const SLOWLOG_SLOWER_THAN: std::time::Duration = std::time::Duration::from_millis(10);
/// Entries the slow log keeps, by default (Redis' `slowlog-max-len` default).
pub const SLOWLOG_MAX_LEN: usize = 128;

/// The slow log: its newest entries and the id the next one gets.
#[derive(Debug, Default)]
pub struct SlowLog {
    /// Newest first.
    pub entries: std::collections::VecDeque<SlowEntry>,
    /// Ids count every entry ever added, kept or not.
    pub next_id: u64,
}

/// One slow command, as SLOWLOG GET shows it.
#[derive(Clone, Debug)]
pub struct SlowEntry {
    /// Its id.
    pub id: u64,
    /// When it ran (Unix seconds).
    pub unix_s: u64,
    /// How long its handler ran, microseconds.
    pub micros: u64,
    /// Its arguments (at most 32, each at most 128 bytes, as Redis keeps them).
    pub args: Vec<Vec<u8>>,
    /// The client's address and name.
    pub client: String,
    /// The client's name (empty if none).
    pub name: Vec<u8>,
}

impl SlowLog {
    /// Adds an entry for a command run with `args` that took `micros`, keeping the newest
    /// `max_len`.
    pub fn add(&mut self, args: &[&[u8]], micros: u64, client: &str, name: &[u8], max_len: usize) {
        const ARGS_KEPT: usize = 32;
        const ARG_BYTES_KEPT: usize = 128;
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i == ARGS_KEPT - 1 && args.len() > ARGS_KEPT {
                kept.push(format!("... ({} more arguments)", args.len() - i).into_bytes());
                break;
            }
            if a.len() > ARG_BYTES_KEPT {
                let mut cut = a[..ARG_BYTES_KEPT].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - ARG_BYTES_KEPT).as_bytes(),
                );
                kept.push(cut);
            } else {
                kept.push(a.to_vec());
            }
        }
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.entries.push_front(SlowEntry {
            id: self.next_id,
            unix_s,
            micros,
            args: kept,
            client: client.to_owned(),
            name: name.to_vec(),
        });
        self.next_id += 1;
        self.entries.truncate(max_len);
    }
}

impl Shared {
    /// Connections accepted since start.
    #[must_use]
    pub fn connections_received(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Open client connections.
    #[must_use]
    pub fn connections(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_log_keeps_the_newest_entries_with_arguments_cut_as_redis_does() {
        let mut log = SlowLog::default();
        let long = vec![b'x'; 200];
        let many: Vec<&[u8]> = (0..40).map(|_| &b"a"[..]).collect();
        log.add(
            &[b"SET", b"k", &long],
            12_000,
            "127.0.0.1:5000",
            b"app",
            128,
        );
        log.add(&many, 15_000, "127.0.0.1:5001", b"", 128);
        let newest = &log.entries[0];
        assert_eq!((newest.id, newest.micros), (1, 15_000));
        assert_eq!(newest.args.len(), 32);
        assert_eq!(newest.args[31], b"... (9 more arguments)");
        let first = &log.entries[1];
        assert_eq!(first.args[2].len(), 128 + b"... (72 more bytes)".len());
        assert!(first.args[2].ends_with(b"... (72 more bytes)"));
        assert_eq!(
            (first.client.as_str(), first.name.as_slice()),
            ("127.0.0.1:5000", &b"app"[..])
        );
        for _ in 0..200 {
            log.add(&[b"GET", b"k"], 10_000, "c", b"", SLOWLOG_MAX_LEN);
        }
        assert_eq!(log.entries.len(), SLOWLOG_MAX_LEN);
        assert_eq!(log.entries[0].id, 201);
    }
}
