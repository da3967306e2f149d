//! Command line, `CORRAL_*` environment variables and the TOML `--config` file, merged with
//! the precedence: command line, then environment, then config file, then defaults.

use crate::wal::FsyncPolicy;
use shm_protocol::layout::{Geometry, ShardLimits};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Corral: a crash-safe multi-process state supervisor with a Redis-compatible front door.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Commands {
    /// Run the supervisor: spawn the workers and serve RESP on --listen.
    Run(RunArgs),
    /// Print the lifecycle history from the event log as JSON lines.
    Events(EventsArgs),
    /// Print the workers of a running supervisor as a table (from its `/health`).
    Status(StatusArgs),
    /// Check a data dir offline: every event log record and checkpoint, then replay and
    /// print each shard's digest and key count (exit 1 on damage).
    Verify(VerifyArgs),
    /// Internal: one worker process (the supervisor re-executes itself with this).
    #[command(hide = true)]
    Worker(WorkerCli),
}

/// Arguments of `corral events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The data dir whose event log to read.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    pub data_dir: PathBuf,
}

/// Arguments of `corral status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The supervisor's HTTP address (its `--http`).
    #[arg(long, env = "CORRAL_HTTP", default_value = "127.0.0.1:9390")]
    pub http: String,
}

/// Arguments of `corral verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data dir to check.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    pub data_dir: PathBuf,
    /// The shard capacity the data dir is run with (replayed writes that overflowed it
    /// failed then, and fail the same way here).
    #[command(flatten)]
    pub limits: ShardLimitArgs,
}

/// How much one shard holds (`corral run` and `corral verify`).
#[derive(Clone, Debug, Args)]
pub struct ShardLimitArgs {
    /// Longest key.
    #[arg(long, env = "CORRAL_MAX_KEY_BYTES", default_value = "16KiB", value_parser = parse_bytes)]
    pub max_key_bytes: u64,
    /// Longest value.
    #[arg(long, env = "CORRAL_MAX_VALUE_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    pub max_value_bytes: u64,
    /// Most keys one shard holds.
    #[arg(long, env = "CORRAL_MAX_KEYS_PER_SHARD", default_value_t = 1 << 20)]
    pub max_keys_per_shard: u64,
    /// Bytes of key and value data one shard holds (its heap has twice this, lazily).
    #[arg(long, env = "CORRAL_SHARD_MEMORY", default_value = "128MiB", value_parser = parse_bytes)]
    pub shard_memory: u64,
}

impl ShardLimitArgs {
    /// The segment geometry of these limits with a request ring of `ring_bytes` (`None`:
    /// sized for the largest request).
    pub fn geometry(&self, ring_bytes: Option<u64>) -> Result<Geometry, String> {
        let to_u32 =
            |v: u64, flag: &str| u32::try_from(v).map_err(|_| format!("--{flag} {v} is too large"));
        Geometry::from_limits(&ShardLimits {
            ring_bytes,
            max_keys: self.max_keys_per_shard,
            max_key_bytes: to_u32(self.max_key_bytes, "max-key-bytes")?,
            max_value_bytes: to_u32(self.max_value_bytes, "max-value-bytes")?,
            data_bytes: self.shard_memory,
        })
        .map_err(|e| format!("invalid shard limits: {e}"))
    }
}

/// Arguments of the hidden worker subcommand.
#[derive(Debug, Args)]
pub struct WorkerCli {
    /// The inherited descriptor of the shared-memory segment to attach.
    #[arg(long)]
    pub segment_fd: i32,
    /// Shard index.
    #[arg(long)]
    pub worker_id: u32,
    /// Generation.
    #[arg(long)]
    pub generation: u64,
    /// The supervisor that spawned this worker: the worker dies with it.
    #[arg(long)]
    pub supervisor_pid: u32,
    /// This worker's checkpoint directory.
    #[arg(long)]
    pub checkpoint_dir: PathBuf,
    /// Log level.
    #[arg(long, default_value = "info", value_parser = parse_level_arg)]
    pub log_level: slog::Level,
    /// Log format.
    #[arg(long, default_value = "json", value_parser = crate::telemetry::log::parse_format)]
    pub log_format: crate::telemetry::log::Format,
}

/// `corral run` settings. Every flag is also `CORRAL_<FLAG>` in the environment and
/// `<flag>` (dashes or underscores) in the `--config` TOML file.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// TOML file with any of these settings (command line and environment win).
    #[arg(long, env = "CORRAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Number of worker processes (shards); default: the number of CPUs.
    #[arg(long, env = "CORRAL_WORKERS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
    /// Data directory (created with mode 0700 if missing).
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    pub data_dir: PathBuf,
    /// RESP listen address.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:6390")]
    pub listen: String,
    /// HTTP address of the health (and metrics) endpoints.
    #[arg(long, env = "CORRAL_HTTP", default_value = "127.0.0.1:9390")]
    pub http: String,
    /// Require clients to AUTH with this password.
    #[arg(long, env = "CORRAL_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Time allowed for a graceful shutdown before remaining workers are killed.
    #[arg(long, env = "CORRAL_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Most concurrent client connections.
    #[arg(long, env = "CORRAL_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: u32,
    /// Event loop threads serving the connections.
    #[arg(long, env = "CORRAL_IO_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub io_threads: u32,
    /// Most commands read from one connection before its replies are written.
    #[arg(long, env = "CORRAL_MAX_PIPELINE", default_value_t = 1024)]
    pub max_pipeline: u32,
    /// Largest query buffer of one connection (one request, or a pipelined batch).
    #[arg(long, env = "CORRAL_MAX_REQUEST_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_request_bytes: u64,
    /// Shard capacity.
    #[command(flatten)]
    pub limits: ShardLimitArgs,
    /// Request ring size per shard (default: big enough for the largest request, at least
    /// 8 MiB).
    #[arg(long, env = "CORRAL_RING_BYTES", value_parser = parse_bytes)]
    pub ring_bytes: Option<u64>,
    /// Writes held for a restarting shard before further ones get -TRYAGAIN.
    #[arg(long, env = "CORRAL_RESTART_QUEUE_MAX", default_value_t = 65_536)]
    pub restart_queue_max: u32,
    /// Delay of the second restart in a row (the first is immediate); doubles each time.
    #[arg(long, env = "CORRAL_RESTART_BACKOFF_INITIAL", default_value = "50ms", value_parser = parse_duration)]
    pub restart_backoff_initial: Duration,
    /// Longest restart delay.
    #[arg(long, env = "CORRAL_RESTART_BACKOFF_MAX", default_value = "10s", value_parser = parse_duration)]
    pub restart_backoff_max: Duration,
    /// A worker that ran this long resets the backoff.
    #[arg(long, env = "CORRAL_RESTART_STABLE_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub restart_stable_period: Duration,
    /// Crashes within --restart-window that park a shard.
    #[arg(long, env = "CORRAL_RESTART_INTENSITY", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub restart_intensity: u32,
    /// Window for --restart-intensity.
    #[arg(long, env = "CORRAL_RESTART_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub restart_window: Duration,
    /// How often a parked shard is probed with one restart.
    #[arg(long, env = "CORRAL_PARK_RETRY", default_value = "30s", value_parser = parse_duration)]
    pub park_retry: Duration,
    /// A worker whose heartbeat is older than this is killed and restarted.
    #[arg(long, env = "CORRAL_WATCHDOG_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub watchdog_timeout: Duration,
    /// When event log writes reach the disk: always (fdatasync before acknowledging),
    /// everysec (acknowledge after write, sync once a second), no (leave it to the OS).
    #[arg(long, env = "CORRAL_FSYNC", default_value = "always", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,
    /// Event log segments roll past this size.
    #[arg(long, env = "CORRAL_WAL_SEGMENT_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub wal_segment_bytes: u64,
    /// Event log size to stay below: past half of it every shard is checkpointed, so old segments go.
    #[arg(long, env = "CORRAL_WAL_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub wal_max_bytes: u64,
    /// Checkpoint a shard at least this often (when it has new writes).
    #[arg(long, env = "CORRAL_CHECKPOINT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Checkpoint a shard after this many writes to it.
    #[arg(long, env = "CORRAL_CHECKPOINT_WRITES", default_value_t = 1_000_000)]
    pub checkpoint_writes: u64,
    /// Checkpoint a shard after this many bytes of its writes in the event log.
    #[arg(long, env = "CORRAL_CHECKPOINT_LOG_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub checkpoint_log_bytes: u64,
    /// Start even though the event log is damaged, incomplete or ends below a checkpoint:
    /// damaged parts are set aside (renamed `*.damaged`), the shards start from what is
    /// left, and the log goes on past every sequence number that may have been used. Only on
    /// the command line, for one start: the operator decides, never the supervisor alone.
    #[arg(long)]
    pub accept_data_loss: bool,
    /// Log level: trace, debug, info, warn, error, critical.
    #[arg(long, env = "CORRAL_LOG_LEVEL", default_value = "info", value_parser = parse_level_arg)]
    pub log_level: slog::Level,
    /// Log format: json (one object per line) or text.
    #[arg(long, env = "CORRAL_LOG_FORMAT", default_value = "json", value_parser = crate::telemetry::log::parse_format)]
    pub log_format: crate::telemetry::log::Format,
    /// Per-command metrics (counts, latency, bytes): on or off (to measure their cost).
    #[arg(long, env = "CORRAL_COMMAND_METRICS", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub command_metrics: bool,
    /// Fraction of write commands logged (with connection id and sequence number), 0 to 1.
    #[arg(long, env = "CORRAL_LOG_SAMPLE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub log_sample_rate: f64,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s.to_ascii_lowercase().as_str() {
        "always" => Ok(FsyncPolicy::Always),
        "everysec" => Ok(FsyncPolicy::EverySec),
        "no" => Ok(FsyncPolicy::No),
        _ => Err(format!("'{s}' is not one of always, everysec, no")),
    }
}

fn parse_switch(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}' is not on or off")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a fraction between 0 and 1")),
    }
}

fn parse_level_arg(s: &str) -> Result<slog::Level, String> {
    crate::telemetry::log::parse_level(s)
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{s}' (e.g. 500ms, 5s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit '{other}' in '{s}' (ms, s, m, h)"
            ))
        }
    };
    if !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration '{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `4096`, `16KiB`, `64MiB`, `1GiB` (also `k`, `kb`, `m`, `mb`, `g`, `gb`, as
/// binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid size '{s}' (e.g. 4096, 16KiB, 64MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("invalid size unit '{other}' in '{s}'")),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size '{s}' is out of range"))
}

/// Parses the process arguments, folding in the `--config` file for `run`.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some(("run", run)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let Some(config) = run.get_one::<PathBuf>("config") else {
        return Cli::from_arg_matches(&matches);
    };
    let injected = config_args(config, run)?;
    // Settings from the file go first; nothing given on the command line or in the
    // environment is injected, so those keep precedence.
    let position = argv
        .iter()
        .position(|a| a == "run")
        .map_or(argv.len(), |p| p + 1);
    let mut merged: Vec<OsString> = argv[..position].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&argv[position..]);
    let matches = Cli::command().try_get_matches_from(merged)?;
    Cli::from_arg_matches(&matches)
}

fn config_args(path: &PathBuf, run: &clap::ArgMatches) -> Result<Vec<OsString>, clap::Error> {
    let fail = |msg: String| Cli::command().error(clap::error::ErrorKind::InvalidValue, msg);
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read config file {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| fail(format!("config file {}: {}", path.display(), e.message())))?;
    let command = Cli::command();
    let run_cmd = command
        .find_subcommand("run")
        .ok_or_else(|| fail("no run subcommand".into()))?;
    let mut args = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        if id == "accept_data_loss" {
            return Err(fail(format!(
                "config file {}: accept-data-loss is accepted only on the command line, for one start",
                path.display()
            )));
        }
        let known = run_cmd
            .get_arguments()
            .any(|a| a.get_id() == id.as_str() && id != "config");
        if !known {
            return Err(fail(format!(
                "config file {}: unknown setting '{key}'",
                path.display()
            )));
        }
        let explicit = matches!(
            run.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if explicit {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(fail(format!(
                    "config file {}: setting '{key}' must be a string or number, not {}",
                    path.display(),
                    other.type_str()
                )))
            }
        };
        args.push(OsString::from(format!("--{}={text}", id.replace('_', "-"))));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> Result<RunArgs, String> {
        match parse(argv.iter().map(OsString::from).collect()) {
            Ok(Cli {
                command: Commands::Run(r),
            }) => Ok(r),
            Ok(_) => Err("not run".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_bytes("16KiB"), Ok(16 << 10));
        assert_eq!(parse_bytes("64mb"), Ok(64 << 20));
        assert!(parse_bytes("1ZB").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }

    #[test]
    fn config_file_fills_what_the_command_line_leaves() {
        let path = std::env::temp_dir().join(format!("corral-cli-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "workers = 3\nlisten = \"127.0.0.1:7000\"\nwatchdog-timeout = \"2s\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let args =
            run_args(&["corral", "run", "--config", p, "--listen", "127.0.0.1:8000"]).unwrap();
        assert_eq!(args.workers, Some(3));
        assert_eq!(args.listen, "127.0.0.1:8000");
        assert_eq!(args.watchdog_timeout, Duration::from_secs(2));
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let err = run_args(&["corral", "run", "--config", p]).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("unknown setting 'wrokers'"), "{err}");
    }

    #[test]
    fn invalid_values_are_usage_errors() {
        let err = run_args(&["corral", "run", "--workers", "0"]).unwrap_err();
        assert!(err.contains("--workers"), "{err}");
        assert!(run_args(&["corral", "run", "--shutdown-timeout", "soon"]).is_err());
    }
}
