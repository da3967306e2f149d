//! The worker process: attach to the segment, publish readiness, apply requests in ring
//! order, write completions, heartbeat, and exit when asked.

use std::sync::Arc;
use std::time::Duration;

use shm_protocol::layout::{WorkerState, CONTROL_STOP};
use shm_protocol::metrics::bump;
use shm_protocol::os::{monotonic_ns, prefetch, RingSide, Segment, SegmentError, SegmentRing};
use shm_protocol::ring::{Consumer, Producer, RingError};
use shm_protocol::table::{TableLimits, TableWriter};
use shm_protocol::wake;
use slog::{error, info, warn, Logger};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

use crate::checkpoint::{self, CheckpointError, Snapshot};
use crate::command::{DecodedRequest, Malformed, Outcome, WriteError, TAG_COMPLETION};
use crate::machine::{KvMachine, StateMachine};

/// How often an idle worker wakes to refresh its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Most requests applied before the worker publishes its status and checks control.
pub const BATCH_MAX: usize = 256;
/// Requests popped ahead of their application.
const LOOKAHEAD: usize = 16;

/// Why a worker stopped abnormally.
#[derive(Debug)]
pub enum WorkerError {
    /// The segment could not be attached.
    Segment(SegmentError),
    /// The segment belongs to another worker or generation.
    WrongSegment(String),
    /// The request ring broke its format.
    Ring(RingError),
    /// No checkpoint could be loaded.
    Checkpoint(CheckpointError),
    /// A checkpoint does not fit this shard's limits.
    CheckpointTooLarge(String),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Segment(e) => e.fmt(f),
            Self::WrongSegment(s) => f.write_str(s),
            Self::Ring(e) => write!(f, "request ring: {e}"),
            Self::Checkpoint(e) => e.fmt(f),
            Self::CheckpointTooLarge(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Identifies the segment a worker must attach to.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    /// The inherited descriptor of the segment.
    pub segment_fd: i32,
    /// Shard index.
    pub worker_id: u32,
    /// Generation.
    pub generation: u64,
    /// This worker's checkpoint directory (`<data-dir>/checkpoints/<worker>`).
    pub checkpoint_dir: PathBuf,
}

/// Runs a worker until the supervisor asks it to stop (returns `Ok`) or something breaks.
pub fn run(args: &WorkerArgs, log: &Logger) -> Result<(), WorkerError> {
    let segment = Arc::new(Segment::inherited(args.segment_fd).map_err(WorkerError::Segment)?);
    let header = &segment.head().header;
    let (id, generation) = (
        header.worker_id.load(Ordering::Relaxed),
        header.generation.load(Ordering::Relaxed),
    );
    if id != args.worker_id || generation != args.generation {
        return Err(WorkerError::WrongSegment(format!(
            "segment {} is worker {id} generation {generation}, expected worker {} generation {}",
            segment.name(),
            args.worker_id,
            args.generation
        )));
    }
    let status = &segment.head().status;
    let now = monotonic_ns();
    status.pid.store(std::process::id(), Ordering::Relaxed);
    status.started_ns.store(now, Ordering::Relaxed);
    status.heartbeat_ns.store(now, Ordering::Relaxed);
    status
        .state
        .store(WorkerState::Recovering as u32, Ordering::Release);

    let geometry = *segment.geometry();
    let table = TableWriter::new(
        Arc::clone(&segment),
        TableLimits {
            max_key_bytes: geometry.max_key_bytes,
            max_value_bytes: geometry.max_value_bytes,
            max_keys: geometry.max_keys,
        },
    );
    let mut machine = KvMachine::new(table);
    let covered = recover(args, &segment, &mut machine, log)?;
    let mut loop_state = ApplyLoop {
        requests: Consumer::new(SegmentRing {
            segment: Arc::clone(&segment),
            side: RingSide::Request,
        }),
        completions: Producer::new(SegmentRing {
            segment: Arc::clone(&segment),
            side: RingSide::Completion,
        }),
        window: (0..LOOKAHEAD)
            .map(|_| (DecodedRequest::default(), Ok(())))
            .collect(),
        segment: Arc::clone(&segment),
        worker: id,
        applied_seq: covered,
        checkpoints: Checkpointer::start(args.checkpoint_dir.clone(), Arc::clone(&segment), log)?,
        checkpoint_taken: 0,
        mid_record: false,
    };
    publish(&segment, &machine, covered, monotonic_ns());
    status
        .state
        .store(WorkerState::Ready as u32, Ordering::Release);
    // The supervisor's completion reader learns of readiness through its doorbell.
    wake::ring(&segment.head().worker_completion.completion_doorbell);
    info!(log, "worker ready"; "component" => "worker", "worker" => id, "generation" => generation,
          "pid" => std::process::id());

    let result = loop_state.run(&mut machine);
    // Whatever checkpoint is being written is finished before the worker exits.
    loop_state.checkpoints.finish();
    result?;

    status
        .state
        .store(WorkerState::Stopped as u32, Ordering::Release);
    info!(log, "worker stopped"; "component" => "worker", "worker" => id, "generation" => generation,
          "applied_seq" => status.applied_seq.load(Ordering::Relaxed));
    Ok(())
}

/// Loads the newest good checkpoint into `machine` and publishes what is on disk; returns
/// the sequence number it covers (0 without one).
fn recover(
    args: &WorkerArgs,
    segment: &Segment,
    machine: &mut KvMachine<Arc<Segment>>,
    log: &Logger,
) -> Result<u64, WorkerError> {
    let started = monotonic_ns();
    let loaded = checkpoint::load_latest(&args.checkpoint_dir, args.worker_id)
        .map_err(WorkerError::Checkpoint)?;
    for e in &loaded.damaged {
        warn!(log, "damaged checkpoint set aside; using an older one"; "component" => "checkpoint",
              "worker" => args.worker_id, "error" => %e);
    }
    let line = &segment.head().checkpoint;
    line.oldest_seq.store(loaded.oldest_seq, Ordering::Relaxed);
    let Some(snapshot) = loaded.snapshot else {
        return Ok(0);
    };
    let mut refused = None;
    snapshot.for_each(|key, value, deadline| {
        if refused.is_none() {
            if let Err(e) = machine.table_mut().set(key, value, deadline) {
                refused = Some(e);
            }
        }
    });
    if let Some(e) = refused {
        return Err(WorkerError::CheckpointTooLarge(format!(
            "checkpoint {} does not fit this shard's limits: {e}",
            snapshot.seq
        )));
    }
    line.seq.store(snapshot.seq, Ordering::Relaxed);
    info!(log, "checkpoint loaded"; "component" => "checkpoint", "worker" => args.worker_id,
          "generation" => args.generation, "seq" => snapshot.seq, "keys" => snapshot.count,
          "bytes" => checkpoint::HEADER_BYTES + snapshot.body.len(),
          "duration_ms" => monotonic_ns().saturating_sub(started) as f64 / 1e6);
    Ok(snapshot.seq)
}

/// The worker's checkpoint writer: a thread that writes snapshots taken by the apply loop,
/// so that the loop stops only for the copy, not for the disk.
struct Checkpointer {
    queue: Option<SyncSender<(u64, Snapshot)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(dir: PathBuf, segment: Arc<Segment>, log: &Logger) -> Result<Self, WorkerError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Snapshot)>(1);
        let log = log.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let line = &segment.head().checkpoint;
                for (request, snapshot) in rx {
                    let started = monotonic_ns();
                    match checkpoint::write(&dir, &snapshot) {
                        Ok(written) => {
                            let took = monotonic_ns().saturating_sub(started);
                            line.seq.store(snapshot.seq, Ordering::Relaxed);
                            line.oldest_seq.store(written.oldest_seq, Ordering::Relaxed);
                            line.bytes.store(written.bytes, Ordering::Relaxed);
                            line.duration_ns.store(took, Ordering::Relaxed);
                            line.unix_ms.store(unix_ms(), Ordering::Relaxed);
                            bump(&line.written, 1);
                            info!(log, "checkpoint written"; "component" => "checkpoint",
                                  "worker" => snapshot.worker, "seq" => snapshot.seq,
                                  "keys" => snapshot.count, "bytes" => written.bytes,
                                  "duration_ms" => took as f64 / 1e6);
                        }
                        Err(e) => {
                            bump(&line.failures, 1);
                            error!(log, "checkpoint failed"; "component" => "checkpoint",
                                   "worker" => snapshot.worker, "seq" => snapshot.seq, "error" => %e);
                        }
                    }
                    // After the results: the supervisor reads them once it sees `done`.
                    line.done.store(request, Ordering::Release);
                }
            })
            .map_err(|e| {
                WorkerError::Checkpoint(CheckpointError::Io {
                    what: "cannot start the checkpoint thread".into(),
                    error: e,
                })
            })?;
        Ok(Self {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    fn submit(&self, request: u64, snapshot: Snapshot) {
        if let Some(q) = &self.queue {
            let _ = q.send((request, snapshot));
        }
    }

    /// Waits until every submitted checkpoint is written.
    fn finish(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Publishes the state's digest, key count and data bytes, the last applied sequence number (when not
/// 0), and a heartbeat taken at `now_ns`.
fn publish<M: StateMachine>(segment: &Segment, machine: &M, applied_seq: u64, now_ns: u64) {
    let status = &segment.head().status;
    status.digest.store(machine.digest(), Ordering::Relaxed);
    status.keys.store(machine.keys(), Ordering::Relaxed);
    status
        .live_bytes
        .store(machine.live_bytes(), Ordering::Relaxed);
    let metrics = &segment.head().metrics;
    metrics
        .expiring_keys
        .store(machine.expiring(), Ordering::Relaxed);
    metrics
        .expired_keys
        .store(machine.expired(), Ordering::Relaxed);
    if applied_seq != 0 {
        status.applied_seq.store(applied_seq, Ordering::Release);
    }
    status.heartbeat_ns.store(now_ns, Ordering::Release);
}

struct ApplyLoop {
    requests: Consumer<SegmentRing<Arc<Segment>>>,
    completions: Producer<SegmentRing<Arc<Segment>>>,
    /// Requests popped ahead of their application, so that their table slots load while
    /// earlier ones apply.
    window: Vec<(DecodedRequest, Result<(), Malformed>)>,
    segment: Arc<Segment>,
    worker: u32,
    /// Sequence number of the last write in the state.
    applied_seq: u64,
    checkpoints: Checkpointer,
    /// The last checkpoint request a snapshot was taken for.
    checkpoint_taken: u64,
    /// The last op applied had [`crate::command::TAG_MORE`]: its record is not done.
    mid_record: bool,
}

impl ApplyLoop {
    fn run(&mut self, machine: &mut KvMachine<Arc<Segment>>) -> Result<(), WorkerError> {
        let segment = Arc::clone(&self.segment);
        let head = segment.head();
        let mut stopping = false;
        loop {
            let applied = self.apply_batch(machine)?;
            if applied > 0 {
                let status = &head.status;
                status
                    .compactions
                    .store(machine.table().compactions(), Ordering::Relaxed);
                bump(&head.metrics.batches, 1);
                wake::notify(
                    &head.supervisor_completion.supervisor_sleeping,
                    &head.worker_completion.completion_doorbell,
                );
                continue;
            }
            self.checkpoint_if_requested(machine, None);
            if head.supervisor.control.load(Ordering::Acquire) == CONTROL_STOP {
                if !stopping {
                    stopping = true;
                    head.status
                        .state
                        .store(WorkerState::Stopping as u32, Ordering::Release);
                    // One more pass: anything pushed before the stop request is applied.
                    continue;
                }
                return Ok(());
            }
            publish(&segment, machine, 0, monotonic_ns());
            bump(&head.metrics.sleeps, 1);
            let requests = &mut self.requests;
            wake::wait_until(
                wake::YIELDS_BEFORE_SLEEP,
                &head.worker_request.worker_sleeping,
                &head.supervisor.request_doorbell,
                HEARTBEAT_INTERVAL,
                || {
                    requests.has_pending()
                        || head.supervisor.control.load(Ordering::Acquire) == CONTROL_STOP
                },
            );
        }
    }

    /// Applies up to [`BATCH_MAX`] requests; returns how many.
    fn apply_batch(&mut self, machine: &mut KvMachine<Arc<Segment>>) -> Result<usize, WorkerError> {
        let segment = Arc::clone(&self.segment);
        let head = segment.head();
        let mut applied = 0;
        // One clock read per request: each request's end is the next one's start.
        let mut started = monotonic_ns();
        while applied < BATCH_MAX {
            // Pop a window of requests and start loading their keys' slots: the table is
            // large and a lookup is a cache miss; overlapping the misses of a window is what
            // makes a replay of millions of writes fast.
            let mut popped = 0;
            while popped < LOOKAHEAD && applied + popped < BATCH_MAX {
                let (request, decoded) = &mut self.window[popped];
                match self.requests.pop(|record| request.decode_from(&record)) {
                    Ok(Some(d)) => *decoded = d,
                    Ok(None) => break,
                    Err(e) => return Err(WorkerError::Ring(e)),
                }
                prefetch(machine.table().home_slot(request.key()));
                popped += 1;
            }
            if popped == 0 {
                break;
            }
            // The slots are on their way; now the entries they point at.
            for (request, _) in &self.window[..popped] {
                if let Some(entry) = machine.table().home_entry(request.key()) {
                    prefetch(entry);
                }
            }
            for i in 0..popped {
                let seq = self.window[i].0.seq;
                // A requested checkpoint covers at most its limit: taken before the first
                // write past it.
                self.checkpoint_if_requested(machine, Some(seq));
                let (request, decoded) = &self.window[i];
                let outcome = match decoded.and_then(|()| request.op()) {
                    Ok(op) => machine.apply(&op, request.now_ms),
                    Err(_) => Outcome::Err(WriteError::Malformed),
                };
                let silent = request.silent;
                // At a record's end only: a transaction's ops are all applied or the
                // sequence number is not reported (nor checkpointed).
                self.mid_record = request.more;
                if !request.more {
                    self.applied_seq = seq;
                }
                let finished = monotonic_ns();
                if matches!(outcome, Outcome::Err(_)) {
                    bump(&head.metrics.errors, 1);
                }
                if !silent {
                    self.push_completion(seq, &outcome);
                }
                bump(&head.metrics.applied, 1);
                head.metrics.observe_apply(finished.saturating_sub(started));
                started = finished;
            }
            applied += popped;
        }
        if applied > 0 {
            // Once per batch: the state's summary and how far it got (completions already
            // carry each write's outcome).
            publish(&self.segment, machine, self.applied_seq, started);
        }
        Ok(applied)
    }

    /// Takes the snapshot of a pending checkpoint request, unless writes within the
    /// request's limit are still to be applied: the next one (`next_seq`), or, when the ring
    /// looked empty (`None`), any that arrived before the request.
    fn checkpoint_if_requested(&mut self, machine: &KvMachine<Arc<Segment>>, next: Option<u64>) {
        let control = &self.segment.head().supervisor;
        let request = control.checkpoint_request.load(Ordering::Acquire);
        if request <= self.checkpoint_taken || self.mid_record {
            return;
        }
        let within_limit = match next {
            Some(seq) => seq <= control.checkpoint_limit.load(Ordering::Relaxed),
            // Writes pushed before the request are visible after its acquire load.
            None => self.requests.has_pending(),
        };
        if within_limit {
            return;
        }
        self.checkpoint_taken = request;
        let snapshot = Snapshot::take(self.worker, self.applied_seq, machine.table());
        self.checkpoints.submit(request, snapshot);
    }

    fn push_completion(&mut self, seq: u64, outcome: &Outcome) {
        let head = self.segment.head();
        let mut spins = 0u32;
        while self
            .completions
            .try_push(TAG_COMPLETION, outcome.record_words(), |w| {
                assert!(outcome.encode(seq, w), "a completion is its record_words");
            })
            .is_err()
        {
            // The supervisor drains completions continuously; a full completion ring only
            // means it is momentarily behind. Wake it and back off.
            wake::notify(
                &head.supervisor_completion.supervisor_sleeping,
                &head.worker_completion.completion_doorbell,
            );
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
                head.status
                    .heartbeat_ns
                    .store(monotonic_ns(), Ordering::Release);
            }
        }
    }
}
