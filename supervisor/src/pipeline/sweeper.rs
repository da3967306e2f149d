//! The active expiry sweep: removes keys whose deadline has come, so their memory is
//! reclaimed even if nothing reads or writes them again.
//!
//! Readers never see an expired key (they check the deadline themselves), and a write that
//! meets one removes it; the sweep finds the rest. Ten times a second it walks the next
//! part of each shard's table in shared memory (only shards that hold keys with a deadline),
//! and submits an [`Op::Expired`] for every key it saw due, through the sequencer like any
//! write: logged, then applied, so replay removes the same keys. The worker removes a key
//! only if it is still due at the time the op was sequenced (a PERSIST or SET in between
//! wins). Each turn is bounded (slots read per shard, removals submitted), and the next
//! batch is submitted only once the previous one completed.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use shm_protocol::table::Scanned;
use slog::{debug, warn, Logger};

use crate::base::ops::OwnedOp;
use crate::base::shard::{Shard, ShardState};
use crate::base::ticket::Ticket;
use crate::pipeline::msg::{SeqMsg, WriteOp};
use corral_worker::command::Op;

/// How often a sweep turn runs (Redis' active expiry runs at its default `hz` of 10).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Most removals one turn submits, over all shards; a turn that finds this many runs the
/// next one without waiting, as Redis repeats its cycle while many sampled keys expired.
pub const SWEEP_REMOVALS_MAX: usize = 1000;

/// Fewest table slots one turn reads per shard; a large table is read in 10 turns (a whole
/// pass in about a second, as Redis finds most expired keys within one: the walk reads an
/// entry only for a slot marked as having a deadline, so a slot costs a few nanoseconds).
const SWEEP_SLOTS_MIN: usize = 4096;

/// Slots one table read covers (a turn's part of a table is read in such steps, so a
/// writer's concurrent moves make a step retry, not the whole part).
const SWEEP_STEP_SLOTS: usize = 16_384;

/// The sweep thread's state.
#[derive(Debug)]
pub struct Sweeper {
    shards: Arc<Vec<Shard>>,
    sequencer: Sender<SeqMsg>,
    /// Where the walk of each shard's table goes on.
    cursors: Vec<usize>,
    ticket: Arc<Ticket>,
    /// Signalled by the ticket when a batch completes.
    done: Receiver<()>,
    /// Whether a submitted batch has not completed yet.
    outstanding: bool,
    log: Logger,
}

impl Sweeper {
    /// A sweeper of `shards` that submits to `sequencer`.
    pub fn new(shards: Arc<Vec<Shard>>, sequencer: Sender<SeqMsg>, log: Logger) -> Self {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let ticket = Ticket::new(move || {
            let _ = done_tx.try_send(());
        });
        Self {
            cursors: vec![0; shards.len()],
            shards,
            sequencer,
            ticket,
            done,
            outstanding: false,
            log,
        }
    }

    /// Sweeps until `stop` is signalled or dropped.
    pub fn run(mut self, stop: &Receiver<()>) {
        loop {
            if self.outstanding {
                crossbeam_channel::select! {
                    recv(self.done) -> _ => self.outstanding = false,
                    recv(stop) -> _ => return,
                }
            }
            let removals = self.turn(crate::wal::codec::unix_ms());
            let pause = if removals >= SWEEP_REMOVALS_MAX {
                Duration::ZERO
            } else {
                SWEEP_INTERVAL
            };
            match stop.recv_timeout(pause) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One turn at `now_ms`: collects the due keys of the next part of every shard's table
    /// and submits their removals; answers how many it submitted. Must not be called while
    /// the previous turn's batch is outstanding.
    fn turn(&mut self, now_ms: u64) -> usize {
        assert!(
            !self.outstanding,
            "a sweep turn ran before the previous batch completed"
        );
        let mut due: Vec<(u32, Scanned)> = Vec::new();
        let mut seen = Vec::new();
        for (id, shard) in self.shards.iter().enumerate() {
            if due.len() >= SWEEP_REMOVALS_MAX {
                break;
            }
            if shard.state() != ShardState::Ready {
                continue;
            }
            let Some(generation) = shard.current().filter(|g| !g.is_dead()) else {
                continue;
            };
            let segment = &generation.segment;
            let expiring = segment
                .head()
                .metrics
                .expiring_keys
                .load(std::sync::atomic::Ordering::Relaxed);
            if expiring == 0 {
                continue;
            }
            let table = segment.table();
            let count = table.slot_count();
            let is_due = |d: u64| shm_protocol::table::expired(d, now_ms);
            let mut left = SWEEP_SLOTS_MIN.max(count / 10);
            while left > 0 && due.len() < SWEEP_REMOVALS_MAX {
                let start = self.cursors[id] % count;
                let step = left.min(SWEEP_STEP_SLOTS);
                seen.clear();
                match table.scan(start, step, is_due, &mut seen) {
                    Ok(next) => self.cursors[id] = if next >= count { 0 } else { next },
                    Err(_busy) => {
                        debug!(self.log, "expiry sweep: table busy, retried next turn";
                               "component" => "sweeper", "worker" => id);
                        break;
                    }
                }
                left = left.saturating_sub(step);
                let room = SWEEP_REMOVALS_MAX - due.len();
                due.extend(seen.drain(..).take(room).map(|s| (id as u32, s)));
            }
        }
        if due.is_empty() {
            return 0;
        }
        let n = due.len();
        let writes = due
            .into_iter()
            .zip(self.ticket.arm(n))
            .map(|((shard, s), pending)| WriteOp {
                shard,
                op: OwnedOp::from(Op::Expired { key: &s.key }),
                pending,
            })
            .collect();
        if self.sequencer.send(SeqMsg::Submit(writes)).is_err() {
            warn!(self.log, "expiry sweep: the sequencer is gone"; "component" => "sweeper");
            return 0;
        }
        self.outstanding = true;
        n
    }
}
