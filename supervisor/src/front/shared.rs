//! What the sessions of every event loop share: the settings, the shards, the sequencer's
//! channel, the durability watermark and the connection count. The server owns it; a
//! session reads it and never the server itself.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use slog::Logger;

use crate::base::shard::Shard;
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
