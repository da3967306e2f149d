//! The worker process: attach to the segment, publish readiness, apply requests in ring
//! order, write completions, heartbeat, and exit when asked.

use std::sync::Arc;
use std::time::Duration;

use shm_protocol::layout::{WorkerState, CONTROL_STOP};
use shm_protocol::metrics::bump;
use shm_protocol::os::{monotonic_ns, RingSide, Segment, SegmentError, SegmentRing};
use shm_protocol::ring::{Consumer, Producer, RingError};
use shm_protocol::table::{TableLimits, TableWriter};
use shm_protocol::wake;
use slog::{info, Logger};
use std::sync::atomic::Ordering;

use crate::command::{
    DecodedRequest, Outcome, WriteError, COMPLETION_PAYLOAD_WORDS, TAG_COMPLETION,
};
use crate::machine::{KvMachine, StateMachine};

/// How often an idle worker wakes to refresh its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Most requests applied before the worker publishes its status and checks control.
pub const BATCH_MAX: usize = 256;

/// Why a worker stopped abnormally.
#[derive(Debug)]
pub enum WorkerError {
    /// The segment could not be attached.
    Segment(SegmentError),
    /// The segment belongs to another worker or generation.
    WrongSegment(String),
    /// The request ring broke its format.
    Ring(RingError),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Segment(e) => e.fmt(f),
            Self::WrongSegment(s) => f.write_str(s),
            Self::Ring(e) => write!(f, "request ring: {e}"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Identifies the segment a worker must attach to.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    /// Segment name.
    pub segment: String,
    /// Shard index.
    pub worker_id: u32,
    /// Generation.
    pub generation: u64,
}

/// Runs a worker until the supervisor asks it to stop (returns `Ok`) or something breaks.
pub fn run(args: &WorkerArgs, log: &Logger) -> Result<(), WorkerError> {
    let segment = Arc::new(Segment::open(&args.segment).map_err(WorkerError::Segment)?);
    let header = &segment.head().header;
    let (id, generation) = (
        header.worker_id.load(Ordering::Relaxed),
        header.generation.load(Ordering::Relaxed),
    );
    if id != args.worker_id || generation != args.generation {
        return Err(WorkerError::WrongSegment(format!(
            "segment {} is worker {id} generation {generation}, expected worker {} generation {}",
            args.segment, args.worker_id, args.generation
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
    let mut loop_state = ApplyLoop {
        requests: Consumer::new(SegmentRing {
            segment: Arc::clone(&segment),
            side: RingSide::Request,
        }),
        completions: Producer::new(SegmentRing {
            segment: Arc::clone(&segment),
            side: RingSide::Completion,
        }),
        request: DecodedRequest::default(),
        segment: Arc::clone(&segment),
    };
    publish(&segment, &machine, 0, monotonic_ns());
    status
        .state
        .store(WorkerState::Ready as u32, Ordering::Release);
    // The supervisor's completion reader learns of readiness through its doorbell.
    wake::ring(&segment.head().worker_completion.completion_doorbell);
    info!(log, "worker ready"; "component" => "worker", "worker" => id, "generation" => generation,
          "pid" => std::process::id(), "segment" => &args.segment);

    loop_state.run(&mut machine)?;

    status
        .state
        .store(WorkerState::Stopped as u32, Ordering::Release);
    info!(log, "worker stopped"; "component" => "worker", "worker" => id, "generation" => generation,
          "applied_seq" => status.applied_seq.load(Ordering::Relaxed));
    Ok(())
}

/// Publishes the state's digest and key count, the last applied sequence number (when not
/// 0), and a heartbeat taken at `now_ns`.
fn publish<M: StateMachine>(segment: &Segment, machine: &M, applied_seq: u64, now_ns: u64) {
    let status = &segment.head().status;
    status.digest.store(machine.digest(), Ordering::Relaxed);
    status.keys.store(machine.keys(), Ordering::Relaxed);
    if applied_seq != 0 {
        status.applied_seq.store(applied_seq, Ordering::Release);
    }
    status.heartbeat_ns.store(now_ns, Ordering::Release);
}

struct ApplyLoop {
    requests: Consumer<SegmentRing<Arc<Segment>>>,
    completions: Producer<SegmentRing<Arc<Segment>>>,
    request: DecodedRequest,
    segment: Arc<Segment>,
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
                    .live_bytes
                    .store(machine.table().live_bytes(), Ordering::Relaxed);
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
            let request = &mut self.request;
            let decoded = match self.requests.pop(|record| request.decode_from(&record)) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(e) => return Err(WorkerError::Ring(e)),
            };
            let outcome = match decoded.and_then(|()| self.request.op()) {
                Ok(op) => machine.apply(&op),
                Err(_) => Outcome::Err(WriteError::Malformed),
            };
            let seq = self.request.seq;
            let finished = monotonic_ns();
            publish(&self.segment, machine, seq, finished);
            self.push_completion(seq, outcome);
            if matches!(outcome, Outcome::Err(_)) {
                bump(&head.metrics.errors, 1);
            }
            bump(&head.metrics.applied, 1);
            head.metrics.observe_apply(finished.saturating_sub(started));
            started = finished;
            applied += 1;
        }
        Ok(applied)
    }

    fn push_completion(&mut self, seq: u64, outcome: Outcome) {
        let segment = Arc::clone(&self.segment);
        let head = segment.head();
        let mut spins = 0u32;
        while self
            .completions
            .try_push(TAG_COMPLETION, COMPLETION_PAYLOAD_WORDS, |w| {
                outcome.encode(seq, w);
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
