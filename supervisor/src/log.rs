//! JSON-lines logging: slog + slog-json behind a bounded slog-async channel whose overflow
//! is counted, never blocking the caller.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slog::{o, Drain, Level, Logger, OwnedKVList, Record};
use slog_async::{AsyncCore, AsyncError, AsyncGuard};

/// Capacity of the log channel (records). slog-async's default of 128 overflows under a
/// burst of lifecycle events.
pub const LOG_CHANNEL_RECORDS: usize = 16_384;

/// The process logger and its drop counter.
pub struct Logging {
    /// The root logger.
    pub logger: Logger,
    /// Records dropped because the channel was full.
    pub dropped: Arc<AtomicU64>,
    guard: Option<AsyncGuard>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Logging {
    /// Flushes and stops the logging thread.
    pub fn shutdown(mut self) {
        drop(self.guard.take());
    }
}

struct Counting {
    inner: AsyncCore,
    dropped: Arc<AtomicU64>,
}

impl Drain for Counting {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        match self.inner.log(record, values) {
            Ok(()) => {}
            Err(AsyncError::Full) | Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Collects one record and writes it to stderr with a single `write` on flush, so lines
/// of the supervisor and its workers (which share stderr) never interleave mid-line.
#[derive(Default)]
struct LineWriter {
    line: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = io::stderr().lock().write_all(&self.line);
        self.line.clear();
        result
    }
}

/// Parses a `--log-level` value.
pub fn parse_level(s: &str) -> Result<Level, String> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::Trace),
        "debug" => Ok(Level::Debug),
        "info" => Ok(Level::Info),
        "warn" | "warning" => Ok(Level::Warning),
        "error" => Ok(Level::Error),
        "critical" => Ok(Level::Critical),
        other => Err(format!(
            "unknown log level '{other}' (trace, debug, info, warn, error, critical)"
        )),
    }
}

/// Builds the logger: JSON lines on stderr with `ts`, `level`, `msg`, and `process`.
pub fn init(level: Level, process: &'static str) -> Logging {
    let json = slog_json::Json::new(LineWriter::default())
        .add_default_keys()
        .set_flush(true)
        .build()
        .fuse();
    let (core, guard) = AsyncCore::custom(json)
        .chan_size(LOG_CHANNEL_RECORDS)
        .blocking(false)
        .thread_name("log".into())
        .build_with_guard();
    let dropped = Arc::new(AtomicU64::new(0));
    let drain = Counting {
        inner: core,
        dropped: Arc::clone(&dropped),
    }
    .filter_level(level)
    .fuse();
    Logging {
        logger: Logger::root(
            drain,
            o!("process" => process, "process_pid" => std::process::id()),
        ),
        dropped,
        guard: Some(guard),
    }
}
