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

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the default).
    Json,
    /// `ts LEVEL msg key=value ...`, for people at a terminal.
    Text,
}

impl Format {
    /// The `--log-format` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

/// Parses a `--log-format` value.
pub fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "text" => Ok(Format::Text),
        other => Err(format!("unknown log format '{other}' (json, text)")),
    }
}

/// Text lines: RFC 3339 UTC time, level, message, then the record's and the logger's
/// key-value pairs.
struct TextDrain;

impl Drain for TextDrain {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> io::Result<()> {
        use slog::KV;
        let mut line = Kv(format!(
            "{} {:<5} {}",
            rfc3339_now(),
            record.level().as_short_str(),
            record.msg()
        ));
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        line.0.push('\n');
        io::Write::write_all(&mut io::stderr().lock(), line.0.as_bytes())
    }
}

struct Kv(String);

impl slog::Serializer for Kv {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

/// Now as `2026-01-31T12:34:56.789Z`.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Builds the logger: lines on stderr (JSON with `ts`, `level`, `msg`, or text), each with
/// `process` and `process_pid`.
pub fn init(level: Level, process: &'static str, format: Format) -> Logging {
    fn start<D>(drain: D) -> (AsyncCore, AsyncGuard)
    where
        D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
    {
        AsyncCore::custom(drain)
            .chan_size(LOG_CHANNEL_RECORDS)
            .blocking(false)
            .thread_name("log".into())
            .build_with_guard()
    }
    let (core, guard) = match format {
        Format::Json => start(
            slog_json::Json::new(LineWriter::default())
                .add_default_keys()
                .set_flush(true)
                .build()
                .fuse(),
        ),
        Format::Text => start(TextDrain.fuse()),
    };
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
