//! The completion reader of a worker generation, on its own thread: completions back to the
//! writes waiting for them.
//!
//! **Architecture Invariant:** only a generation's completion reader pops its completion ring.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use corral_worker::command::Outcome;
use crossbeam_channel::{Receiver, Sender};
use shm_protocol::layout::WorkerState;
use shm_protocol::os::{RingSide, SegmentRing};
use shm_protocol::ring::Consumer;
use shm_protocol::wake;
use slog::{error, Logger};

use crate::base::ops::InFlight;
use crate::base::shard::Generation;
use crate::base::ticket::Failure;
use crate::pipeline::msg::LifecycleEvent;

/// Yields of a completion reader before it sleeps: none. Its spins catch a worker mid-batch;
/// past them, yielding on a machine with few cores mostly takes CPU from the event loops and
/// workers (side by side: -P 16 +5-17%, -P 1 +3-8% without them).
const COMPLETION_WAIT_YIELDS: u32 = 0;

/// The completion reader of one generation: matches completions to in-flight writes in
/// order, reports the worker's readiness, and when the worker dies returns the writes it
/// never completed (the orphans), in order, once nothing can send it more.
pub fn read_completions(
    generation: &Arc<Generation>,
    inflight: &Receiver<InFlight>,
    events: &Sender<LifecycleEvent>,
    log: &Logger,
) -> Vec<InFlight> {
    let segment = Arc::clone(&generation.segment);
    let head = segment.head();
    let mut consumer = Consumer::new(SegmentRing {
        segment: Arc::clone(&segment),
        side: RingSide::Completion,
    });
    let mut waiting: Option<InFlight> = None;
    let mut ready_reported = false;
    loop {
        // Seen before draining: whatever the worker completed before it died is drained.
        let dead = generation.is_dead();
        loop {
            let popped = consumer.pop(|r| Outcome::decode(&r));
            let (seq, outcome) = match popped {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    error!(log, "completion ring damaged; killing worker"; "component" => "sequencer",
                           "worker" => generation.shard, "generation" => generation.number, "error" => %e);
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(generation.pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    break;
                }
            };
            deliver(generation, &mut waiting, inflight, seq, outcome, log);
        }
        if !ready_reported && head.status.state.load(Ordering::Acquire) == WorkerState::Ready as u32
        {
            ready_reported = true;
            let _ = events.send(LifecycleEvent::Ready {
                shard: generation.shard,
                generation: generation.number,
            });
        }
        if dead {
            let mut orphans: Vec<InFlight> = waiting.into_iter().collect();
            // Ends when the sequencer (or a replay) has let go of this generation.
            orphans.extend(inflight.iter());
            return orphans;
        }
        wake::wait_until(
            COMPLETION_WAIT_YIELDS,
            &head.supervisor_completion.supervisor_sleeping,
            &head.worker_completion.completion_doorbell,
            Duration::from_millis(100),
            || {
                consumer.has_pending()
                    || generation.is_dead()
                    || (!ready_reported
                        && head.status.state.load(Ordering::Acquire) == WorkerState::Ready as u32)
            },
        );
    }
}

/// Hands the completion of `seq` to the write waiting for it, if any: entries precede
/// their records, so an entry with a larger sequence number (or none) means a replayed
/// record that nobody waits for.
fn deliver(
    generation: &Generation,
    waiting: &mut Option<InFlight>,
    inflight: &Receiver<InFlight>,
    seq: u64,
    outcome: Outcome,
    log: &Logger,
) {
    loop {
        let Some(front) = waiting.take().or_else(|| inflight.try_recv().ok()) else {
            return;
        };
        if front.seq == seq {
            front.pending.complete(Ok(outcome));
            return;
        }
        if front.seq > seq {
            *waiting = Some(front);
            return;
        }
        // Completions come in the order of their records, and every entry's record was
        // pushed: a completion past an entry means the worker skipped a write.
        debug_assert!(false, "completion {seq} skipped the write {}", front.seq);
        error!(log, "bug: a completion skipped a write; its outcome is unknown"; "component" => "sequencer",
               "worker" => generation.shard, "seq" => seq, "expected_seq" => front.seq);
        front.fail(Failure::WorkerDied(generation.shard));
    }
}
