//! `corral`: the supervisor binary (and, re-executed as `corral worker`, each worker).

#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_protocol::layout::Geometry;
use shm_protocol::os::Segment;
use slog::{error, info, warn};

/// mimalloc: writes allocate their keys and values on an event loop thread and the sequencer
/// frees them, a pattern glibc's allocator handles slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use corral::base::shard::Shard;
use corral::cli::{self, Commands, EventsArgs, RunArgs, StatusArgs, VerifyArgs, WorkerCli};
use corral::front::server::{self, Server};
use corral::front::shared::ServerConfig;
use corral::observe::http::{Http, Probes};
use corral::pipeline::lane::CheckpointPolicy;
use corral::pipeline::msg::{LifecycleEvent, SeqMsg};
use corral::pipeline::replay::ReplayContext;
use corral::pipeline::sequencer::{Sequencer, Watched};
use corral::pipeline::sweeper::Sweeper;
use corral::supervision::lifecycle::{Ending, Executable, Lifecycle};
use corral::supervision::policy::{History, Policy};
use corral::telemetry::heartbeat::Heartbeat;
use corral::telemetry::log;
use corral::telemetry::metrics::Metrics;
use corral::wal::appender::{Appender, Durability, OpenOptions};
use corral::wal::codec::{unix_ms, LifecycleRecord};
use corral::wal::datadir;

/// Exit code of a usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// Exit code of a runtime failure.
const EXIT_FAILURE: u8 = 1;

/// A reason to exit, with its exit code.
struct Fatal {
    code: u8,
    message: String,
}

impl Fatal {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    abort_on_panic();
    match try_main() {
        Ok(code) => code,
        Err(fatal) => {
            eprintln!("corral: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

/// A panic is a broken invariant (input never panics): the process aborts, loudly, rather
/// than run on with a thread missing. A supervisor's workers die with it (`PR_SET_PDEATHSIG`)
/// and the next start recovers every acknowledged write from the event log; a worker's
/// supervisor restarts it.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!(
            "corral: bug: a thread panicked ({}); aborting",
            std::thread::current().name().unwrap_or("unnamed")
        );
        std::process::abort();
    }));
}

fn try_main() -> Result<ExitCode, Fatal> {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    match cli.command {
        Commands::Run(args) => run(&args),
        Commands::Worker(args) => worker(&args),
        Commands::Events(args) => events(&args),
        Commands::Verify(args) => verify(&args),
        Commands::Status(args) => status(&args),
    }
}

/// Ties this worker's life to the supervisor's: `PR_SET_PDEATHSIG` = SIGKILL fires when the
/// spawning thread (the supervisor's long-lived lifecycle thread) exits. Set after exec, so
/// a supervisor that died before this point is caught by the parent check instead.
fn tie_to_supervisor(supervisor_pid: u32) -> Result<(), Fatal> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Fatal::runtime(format!("cannot set the parent-death signal: {e}")))?;
    if nix::unistd::getppid().as_raw() as u32 != supervisor_pid {
        return Err(Fatal::runtime(format!(
            "supervisor {supervisor_pid} is gone; not starting"
        )));
    }
    Ok(())
}

/// The process name (`comm`) workers take: exec through `/proc/self/fd/N` would otherwise
/// name them `N` in `ps`, `top` and `pgrep`.
const WORKER_COMM: &std::ffi::CStr = c"corral-worker";

fn worker(args: &WorkerCli) -> Result<ExitCode, Fatal> {
    tie_to_supervisor(args.supervisor_pid)?;
    nix::sys::prctl::set_name(WORKER_COMM)
        .map_err(|e| Fatal::runtime(format!("cannot set the process name: {e}")))?;
    // A worker stops when its supervisor tells it to (or dies with it): a service manager's
    // SIGTERM to the whole group, or a stray HUP or USR1, is the supervisor's to act on.
    // Catching them (into a flag nobody reads) keeps them from killing the worker.
    let ignored = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&ignored))
            .map_err(|e| Fatal::runtime(format!("cannot install signal handlers: {e}")))?;
    }
    let logging = log::init(args.log_level, "worker", args.log_format);
    let result = corral_worker::runtime::run(
        &corral_worker::runtime::WorkerArgs {
            segment_fd: args.segment_fd,
            worker_id: args.worker_id,
            generation: args.generation,
            checkpoint_dir: args.checkpoint_dir.clone(),
        },
        &logging.logger,
    );
    if let Err(e) = &result {
        error!(logging.logger, "worker failed"; "component" => "worker",
               "worker" => args.worker_id, "generation" => args.generation, "error" => %e);
    }
    logging.shutdown();
    result
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| Fatal::runtime(format!("worker {}: {e}", args.worker_id)))
}

/// `corral events`: the lifecycle history, one JSON object per line, oldest first.
fn events(args: &EventsArgs) -> Result<ExitCode, Fatal> {
    use std::io::Write;
    let dir = args.data_dir.join("wal");
    if !dir.is_dir() {
        return Err(Fatal::usage(format!(
            "no event log in {} (is it a corral data dir?)",
            args.data_dir.display()
        )));
    }
    let manifest = datadir::read(&args.data_dir).map_err(Fatal::usage)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut decode_error = None;
    let scanned = corral::wal::scan(&dir, .., |r| {
        if r.kind == corral::wal::Kind::Skip {
            if let Some((through, reason)) = corral::wal::decode_skip(r.payload) {
                let line = serde_json::json!({
                    "seq": r.seq, "event": "sequence_skipped", "through_seq": through, "reason": reason,
                });
                let _ = writeln!(out, "{line}");
            }
            return Ok(());
        }
        if r.kind != corral::wal::Kind::Lifecycle {
            return Ok(());
        }
        match corral::wal::codec::decode_lifecycle(r.version, r.payload) {
            Ok(record) => {
                let mut line = serde_json::json!({ "seq": r.seq });
                if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
                    (line.as_object_mut(), serde_json::to_value(&record))
                {
                    obj.extend(fields);
                }
                let _ = writeln!(out, "{line}");
            }
            Err(e) => {
                decode_error.get_or_insert(format!("record {}: {e}", r.seq));
            }
        }
        Ok(())
    })
    .and_then(|summary| corral::wal::check_head(&summary, manifest.newest()).map(|_| summary));
    out.flush()
        .map_err(|e| Fatal::runtime(format!("cannot write output: {e}")))?;
    let summary = scanned.map_err(|e| Fatal::runtime(e.to_string()))?;
    if let Some(e) = decode_error {
        return Err(Fatal::runtime(format!("undecodable lifecycle record: {e}")));
    }
    if let Some((file, torn)) = summary.torn() {
        eprintln!(
            "corral: note: the newest segment {} ends in a torn write at offset {} ({})",
            file.display(),
            torn.offset,
            torn.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral status`: the running supervisor's `/health`, as a table.
fn status(args: &StatusArgs) -> Result<ExitCode, Fatal> {
    use std::io::{Read, Write};
    let unreachable =
        |e: std::io::Error| Fatal::runtime(format!("cannot reach {} (--http): {e}", args.http));
    let mut stream = std::net::TcpStream::connect(&args.http).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(unreachable)?;
    // HTTP/1.0: one response, never chunked.
    write!(stream, "GET /health HTTP/1.0\r\nHost: corral\r\n\r\n").map_err(unreachable)?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(unreachable)?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let doc: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        Fatal::runtime(format!(
            "{} answered something else than health JSON: {e}",
            args.http
        ))
    })?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("status: {}", text(&doc["status"]));
    println!(
        "{:<7} {:<11} {:<5} {:>8} {:>4} {:>8} {:<10} {:>12} {:>10} {:>9} {:>9}",
        "worker",
        "state",
        "check",
        "pid",
        "gen",
        "restarts",
        "last exit",
        "applied seq",
        "keys",
        "queue",
        "heartbeat"
    );
    let mut workers: Vec<(u64, &serde_json::Value)> = doc["checks"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix("worker:")?.parse().ok()?, &v[0])))
        .collect();
    workers.sort_by_key(|(id, _)| *id);
    for (id, w) in workers {
        let queue = match (
            w["queue_depth_words"].as_u64(),
            w["queue_capacity_words"].as_u64(),
        ) {
            (Some(d), Some(c)) if c > 0 => format!("{:.1}%", d as f64 * 100.0 / c as f64),
            _ => "-".to_owned(),
        };
        let beat = w["heartbeat_age_ms"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        println!(
            "{:<7} {:<11} {:<5} {:>8} {:>4} {:>8} {:<10} {:>12} {:>10} {:>9} {:>9}",
            id,
            text(&w["state"]),
            text(&w["status"]),
            text(&w["pid"]),
            text(&w["generation"]),
            text(&w["restarts"]),
            text(&w["last_exit"]),
            text(&w["applied_seq"]),
            text(&w["keys"]),
            queue,
            beat
        );
    }
    let log = &doc["checks"]["event_log"][0];
    println!(
        "event log: {} (synced through sequence {}){}",
        text(&log["status"]),
        text(&log["synced_seq"]),
        log["output"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map_or_else(String::new, |s| format!(": {s}"))
    );
    Ok(ExitCode::SUCCESS)
}

/// `corral verify`: checks a data dir offline and prints what it holds.
fn verify(args: &VerifyArgs) -> Result<ExitCode, Fatal> {
    // No ring is built; the automatic size holds the largest request.
    let geometry = args.limits.geometry(None).map_err(Fatal::usage)?;
    let manifest = datadir::read(&args.data_dir).map_err(Fatal::usage)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let report = corral::wal::verify::verify(&args.data_dir, &manifest, &geometry, &mut out)
        .map_err(|e| Fatal::runtime(e.to_string()))?;
    drop(out);
    if report.damaged > 0 {
        return Err(Fatal::runtime(format!(
            "{} problem(s) found in {}",
            report.damaged,
            args.data_dir.display()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral run`: start-up (each step's failure is an exit 2 for bad settings, 1 otherwise),
/// the threads, then the shutdown phases on the first TERM or INT.
fn run(args: &RunArgs) -> Result<ExitCode, Fatal> {
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1).clamp(1, 256))
    });
    let geometry = args
        .limits
        .geometry(args.ring_bytes)
        .map_err(Fatal::usage)?;
    let data_dir = datadir::DataDir::open(&args.data_dir, workers).map_err(Fatal::usage)?;
    let listeners = Listeners::bind(args)?;

    let logging = log::init(args.log_level, "supervisor", args.log_format);
    let log = logging.logger.clone();
    // Before any worker or thread: a signal during start-up waits for the shutdown path.
    let force = Arc::new(AtomicBool::new(false));
    let stop_signals = handle_signals(Arc::clone(&force), log.clone())?;

    let exe = Executable::open()
        .map_err(|e| Fatal::runtime(format!("cannot open the supervisor's own executable: {e}")))?;
    info!(log, "supervisor starting"; "component" => "supervisor", "version" => env!("CARGO_PKG_VERSION"),
          "workers" => workers, "listen" => %listeners.resp_addr, "data_dir" => %args.data_dir.display(),
          "exe" => %exe.path.display());
    let segments = reserve_segments(workers, geometry, data_dir.instance(), &log)?;

    let (seq_tx, seq_rx) = crossbeam_channel::bounded::<SeqMsg>(4096);
    let (events_tx, events_rx) = crossbeam_channel::unbounded::<LifecycleEvent>();
    let shards: Arc<Vec<Shard>> = Arc::new((0..workers).map(Shard::new).collect());
    let gates = Arc::new(corral::base::gate::Gates::default());
    let metrics = Metrics::new(
        Arc::clone(&shards),
        Arc::clone(&logging.dropped),
        corral::front::table::TABLE.labels(),
    );
    let durability = Durability::new(args.fsync);
    let mut history = History::default();
    let wal = open_wal(args, &data_dir, &durability, &metrics, &mut history, &log)?;

    let sequencer_beat = Heartbeat::new("sequencer");
    let lifecycle_beat = Heartbeat::new("lifecycle");
    let sequencer = {
        let replay = ReplayContext {
            wal_dir: args.data_dir.join("wal"),
            sequencer: seq_tx.clone(),
            events: events_tx.clone(),
            shards: Arc::clone(&shards),
            log: log.clone(),
        };
        let seq = Sequencer::new(
            Arc::clone(&shards),
            wal,
            args.restart_queue_max as usize,
            replay,
            checkpoint_policy(args),
            Watched {
                heartbeat: Arc::clone(&sequencer_beat),
                metrics: Arc::clone(&metrics),
                gates: Arc::clone(&gates),
            },
        );
        spawn_thread("sequencer", move || seq.run(&seq_rx))?
    };
    let (sweeper_stop, sweeper_stopped) = crossbeam_channel::bounded::<()>(1);
    let sweeper = {
        let sweeper = Sweeper::new(Arc::clone(&shards), seq_tx.clone(), log.clone());
        spawn_thread("sweeper", move || sweeper.run(&sweeper_stopped))?
    };
    let _ = seq_tx.send(SeqMsg::Lifecycle(LifecycleRecord::SupervisorStarted {
        pid: std::process::id(),
        workers,
        unix_ms: unix_ms(),
    }));
    let lifecycle = {
        let lc = Lifecycle {
            shards: Arc::clone(&shards),
            geometry,
            segments,
            exe,
            segment_names: Vec::new(),
            policy: restart_policy(args),
            worker_log_level: args.log_level.as_str().to_ascii_lowercase(),
            worker_log_format: args.log_format,
            checkpoint_root: args.data_dir.join("checkpoints"),
            events_rx,
            events_tx: events_tx.clone(),
            sequencer: seq_tx.clone(),
            force: Arc::clone(&force),
            history,
            heartbeat: Arc::clone(&lifecycle_beat),
            metrics: Arc::clone(&metrics),
            log: log.clone(),
        };
        spawn_thread("lifecycle", move || lc.run())?
    };
    let server = Server::start(
        Arc::clone(&shards),
        seq_tx.clone(),
        gates,
        Arc::clone(&durability),
        Arc::clone(&metrics),
        server_config(args, &geometry, listeners.resp_addr),
        log.clone(),
    )
    .map_err(|e| Fatal::runtime(format!("cannot start the event loops: {e}")))?;
    let acceptor = {
        let server = Arc::clone(&server);
        let listener = listeners.resp;
        spawn_thread("accept", move || server.accept_loop(&listener))?
    };
    info!(log, "accepting connections"; "component" => "server", "listen" => %listeners.resp_addr);
    let mut heartbeats = vec![sequencer_beat, lifecycle_beat];
    heartbeats.extend(server.heartbeats().iter().cloned());
    let probes = Probes {
        shards: Arc::clone(&shards),
        durability: Arc::clone(&durability),
        server: Arc::clone(&server),
        heartbeats,
        metrics: Arc::clone(&metrics),
        data_dir: args.data_dir.clone(),
        window: Default::default(),
    };
    let http = Http::start(listeners.http, Arc::new(probes), &log).map_err(Fatal::runtime)?;
    info!(log, "serving health endpoints"; "component" => "http", "http" => %http.addr);

    let stop_signal = stop_signals.recv().unwrap_or(signal_hook::consts::SIGTERM);
    info!(log, "shutdown requested"; "component" => "supervisor",
          "signal" => signal_name(stop_signal));
    let running = Running {
        server,
        listen_addr: listeners.resp_addr,
        acceptor,
        sweeper: (sweeper_stop, sweeper),
        sequencer,
        seq_tx,
        lifecycle,
        events_tx,
        force,
        log: log.clone(),
    };
    let (forced, took) = running.shut_down(args.shutdown_timeout)?;
    http.stop();
    info!(log, "shutdown complete"; "component" => "supervisor", "forced" => forced,
          "duration_ms" => took.as_millis() as u64,
          "log_lines_dropped" => logging.dropped.load(Ordering::Relaxed));
    logging.shutdown();
    drop(data_dir);
    Ok(exit_code(forced, &durability))
}

/// A run is clean only if nothing had to be killed and the event log took writes to the end.
fn exit_code(forced: bool, durability: &Durability) -> ExitCode {
    if forced {
        eprintln!("corral: shutdown timed out; remaining workers were killed");
        ExitCode::from(EXIT_FAILURE)
    } else if let Some(reason) = durability.stop_reason() {
        // Stopped cleanly, but writes were refused since: not a clean run.
        eprintln!("corral: the event log stopped taking writes during the run: {reason}");
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The two listening sockets, bound before anything starts (a port in use is exit 2).
struct Listeners {
    resp: TcpListener,
    resp_addr: std::net::SocketAddr,
    http: TcpListener,
}

impl Listeners {
    fn bind(args: &RunArgs) -> Result<Self, Fatal> {
        let cannot =
            |e: std::io::Error| Fatal::usage(format!("cannot listen on {}: {e}", args.listen));
        let resp = TcpListener::bind(&args.listen).map_err(cannot)?;
        let resp_addr = resp.local_addr().map_err(cannot)?;
        let http = TcpListener::bind(&args.http)
            .map_err(|e| Fatal::usage(format!("cannot listen on {} (--http): {e}", args.http)))?;
        Ok(Self {
            resp,
            resp_addr,
            http,
        })
    }
}

/// Every shard's shared memory, reserved now: running out is a start-up error, never a
/// fault later. One thread per shard: the kernel's page work (about 150 ms per default
/// shard) runs on every core.
fn reserve_segments(
    workers: u32,
    geometry: Geometry,
    instance: &str,
    log: &slog::Logger,
) -> Result<Vec<Arc<Segment>>, Fatal> {
    let segment_bytes = geometry.offsets().map_or(0, |o| o.total as u64);
    let segments = std::thread::scope(|scope| {
        let creating: Vec<_> = (0..workers)
            .map(|w| {
                let name = format!("corral.{instance}.w{w}");
                scope.spawn(move || Segment::create(&name, w, 0, geometry))
            })
            .collect();
        creating
            .into_iter()
            .zip(0u32..)
            .map(|(creating, w)| {
                let created = creating
                    .join()
                    .map_err(|_| Fatal::runtime("segment creation panicked"))?;
                created.map(Arc::new).map_err(|e| {
                    Fatal::runtime(format!(
                        "cannot reserve {} MiB of shared memory for shard {w} ({e}); lower \
                     --shard-memory or --max-keys-per-shard, or give the supervisor more memory",
                        segment_bytes >> 20
                    ))
                })
            })
            .collect::<Result<Vec<_>, Fatal>>()
    })?;
    info!(log, "shared memory reserved"; "component" => "supervisor",
          "bytes_per_shard" => segment_bytes, "shards" => workers);
    Ok(segments)
}

/// Opens (and scans) the event log, folding its lifecycle records into `history`.
fn open_wal(
    args: &RunArgs,
    data_dir: &datadir::DataDir,
    durability: &Arc<Durability>,
    metrics: &Metrics,
    history: &mut History,
    log: &slog::Logger,
) -> Result<Appender, Fatal> {
    let checkpoints = (0..data_dir.workers())
        .map(|w| {
            let dir = args.data_dir.join("checkpoints").join(w.to_string());
            corral_worker::checkpoint::list(&dir)
                .map(|found| found.last().map_or(0, |(seq, _)| *seq))
                .map_err(|e| Fatal::runtime(format!("cannot list the checkpoints: {e}")))
        })
        .collect::<Result<Vec<u64>, Fatal>>()?;
    Appender::open(
        &OpenOptions {
            dir: args.data_dir.join("wal"),
            fsync: args.fsync,
            segment_bytes: args.wal_segment_bytes,
            recorded: data_dir.newest_segment(),
            checkpoints,
            accept_data_loss: args.accept_data_loss,
        },
        data_dir.head_recorder(),
        log.clone(),
        |record| history.observe(&record),
        Arc::clone(durability),
        metrics.wal.clone(),
    )
    .map_err(|e| {
        error!(log, "cannot open the event log"; "component" => "wal", "error" => %e);
        Fatal::runtime(format!("cannot open the event log: {e}"))
    })
}

fn restart_policy(args: &RunArgs) -> Policy {
    Policy {
        backoff_initial: args.restart_backoff_initial,
        backoff_max: args.restart_backoff_max,
        stable_period: args.restart_stable_period,
        intensity: args.restart_intensity,
        window: args.restart_window,
        park_retry: args.park_retry,
        watchdog_timeout: args.watchdog_timeout,
    }
}

fn checkpoint_policy(args: &RunArgs) -> CheckpointPolicy {
    CheckpointPolicy {
        interval: args.checkpoint_interval,
        writes: args.checkpoint_writes.max(1),
        log_bytes: args.checkpoint_log_bytes.max(1),
        wal_max_bytes: args.wal_max_bytes,
    }
}

fn server_config(
    args: &RunArgs,
    geometry: &Geometry,
    listen: std::net::SocketAddr,
) -> ServerConfig {
    ServerConfig {
        listen,
        data_dir: args.data_dir.clone(),
        fsync: args.fsync,
        shard_data_bytes: geometry.heap_half_words * 8,
        table_slots: geometry.table_slots,
        requirepass: args.requirepass.clone(),
        max_clients: args.max_clients,
        max_pipeline: args.max_pipeline.max(1) as usize,
        max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
        max_key_bytes: geometry.max_key_bytes as usize,
        max_value_bytes: geometry.max_value_bytes as usize,
        io_threads: args.io_threads as usize,
        log_sample_rate: args.log_sample_rate,
        command_metrics: args.command_metrics,
    }
}

/// The running threads, as the shutdown stops them.
struct Running {
    server: Arc<Server>,
    listen_addr: std::net::SocketAddr,
    acceptor: std::thread::JoinHandle<()>,
    /// The expiry sweep: told to stop, then joined, before the sequencer stops.
    sweeper: (crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>),
    sequencer: std::thread::JoinHandle<()>,
    seq_tx: crossbeam_channel::Sender<SeqMsg>,
    lifecycle: std::thread::JoinHandle<Ending>,
    events_tx: crossbeam_channel::Sender<LifecycleEvent>,
    force: Arc<AtomicBool>,
    log: slog::Logger,
}

impl Running {
    /// The shutdown phases, within `timeout` (a second signal skips the waiting): stop
    /// accepting, drain the connections, drain the rings (the sequencer's last group and
    /// checkpoints), stop the workers. Returns whether something had to be cut short, and
    /// how long it took.
    fn shut_down(self, timeout: Duration) -> Result<(bool, Duration), Fatal> {
        let log = &self.log;
        let started = Instant::now();
        let deadline = started + timeout;
        let until = || {
            if self.force.load(Ordering::Acquire) {
                Instant::now()
            } else {
                deadline
            }
        };
        info!(log, "shutdown: stop accepting"; "component" => "supervisor",
              "timeout_s" => timeout.as_secs_f64());
        self.server.stop_accepting(self.listen_addr);
        let _ = self.acceptor.join();
        info!(log, "shutdown: draining connections"; "component" => "supervisor",
              "connections" => self.server.connections());
        let stuck = self.server.close_connections(until());
        server::log_stopped(&self.server);
        let (stop_sweeping, sweeper) = self.sweeper;
        drop(stop_sweeping);
        let _ = sweeper.join();
        info!(log, "shutdown: draining rings"; "component" => "supervisor", "connections_left" => stuck);
        let _ = self
            .seq_tx
            .send(SeqMsg::Lifecycle(LifecycleRecord::SupervisorStopped {
                clean: stuck == 0,
                unix_ms: unix_ms(),
            }));
        let _ = self.seq_tx.send(SeqMsg::Stop);
        if stuck == 0 {
            let _ = self.sequencer.join();
        }
        info!(log, "shutdown: stopping workers"; "component" => "supervisor");
        let _ = self
            .events_tx
            .send(LifecycleEvent::Stop { deadline: until() });
        let ending = self
            .lifecycle
            .join()
            .map_err(|_| Fatal::runtime("lifecycle thread panicked"))?;
        Ok((ending == Ending::Forced || stuck > 0, started.elapsed()))
    }
}

/// The signals a shell, a service manager or log rotation may send: TERM and INT stop the
/// supervisor (the first drains, a second skips the waiting; their numbers come out of the
/// returned channel); HUP, USR1 and USR2 are logged and otherwise ignored (the logs go to
/// stderr, so there is nothing to reopen, and nothing is reloaded).
fn handle_signals(
    force: Arc<AtomicBool>,
    log: slog::Logger,
) -> Result<crossbeam_channel::Receiver<i32>, Fatal> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Fatal::runtime(format!("cannot install signal handlers: {e}")))?;
    let (tx, rx) = crossbeam_channel::bounded(4);
    spawn_thread("signals", move || {
        let mut stops = 0u32;
        for signal in signals.forever() {
            if signal == SIGTERM || signal == SIGINT {
                stops += 1;
                if stops > 1 {
                    warn!(log, "second stop signal: skipping the waiting"; "component" => "supervisor",
                          "signal" => signal_name(signal));
                    force.store(true, Ordering::Release);
                }
                let _ = tx.try_send(signal);
            } else {
                info!(log, "signal ignored"; "component" => "supervisor", "signal" => signal_name(signal),
                      "note" => "logs go to stderr (nothing to reopen); TERM or INT stops");
            }
        }
    })?;
    Ok(rx)
}

fn signal_name(signal: i32) -> &'static str {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        _ => "other",
    }
}

fn spawn_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, Fatal> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Fatal::runtime(format!("cannot start {name} thread: {e}")))
}
