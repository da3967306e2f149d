//! What the sessions of every event loop share: the settings, the shards, the sequencer's
//! channel, the durability watermark and the connection count. The server owns it; a
//! session reads it and never the server itself.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use slog::Logger;

use crate::base::shard::Shard;
use crate::pipeline::msg::SeqMsg;
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
}

impl Shared {
    /// Open client connections.
    #[must_use]
    pub fn connections(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }
}
