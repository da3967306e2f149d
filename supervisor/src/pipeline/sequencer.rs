//! The sequencer: the single producer of every request ring. It gives each write its
//! sequence number, queues it per shard, and pushes it into the shard's ring when the shard
//! is ready and the ring has room. One completion reader per worker generation turns
//! completions back into replies.
//!
//! **Architecture Invariant:** only the sequencer thread pushes into request rings, so each
//! ring keeps exactly one producer; only a generation's completion reader pops its
//! completion ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use shm_protocol::os::{RingSide, SegmentRing};
use shm_protocol::ring::Producer;
use shm_protocol::wake;
use slog::error;
use std::sync::atomic::Ordering;

use corral_worker::command::{Op, TAG_MORE};

use crate::base::gate::{Gates, Guard};
use crate::base::ops::{InFlight, OwnedOp};
use crate::base::shard::{Shard, ShardState};
use crate::base::slot::{hash_slot, SLOTS};
use crate::base::ticket::{Failure, Pending};
use crate::pipeline::lane::{
    admit, on_park, Active, Admission, CheckpointPolicy, Lane, LaneCheckpoint, ParkStep, Queued,
};
use crate::pipeline::msg::{SeqMsg, Unchanged, WriteOp};
use crate::pipeline::replay::{self, ReplayContext, ReplayJob};
use crate::pipeline::save::{Progress, Saves};
use crate::pipeline::versions::Versions;
use crate::telemetry::heartbeat::Heartbeat;
use crate::telemetry::metrics::Metrics;
use crate::wal::appender::Appender;
use crate::wal::codec::{self, LifecycleRecord};

/// How long the sequencer waits before retrying a full ring.
const RING_FULL_RETRY: Duration = Duration::from_micros(100);
/// Messages handled before flushing.
const DRAIN_MAX: usize = 512;

/// How often the sequencer looks at checkpoints and the log size when idle.
const CHECKPOINT_TICK: Duration = Duration::from_millis(100);
/// How often it looks at checkpoints while a SAVE waits for them.
const SAVE_POLL: Duration = Duration::from_millis(1);

/// Why shard `id`, whose lane has no active generation, cannot take a checkpoint now.
fn not_serving(shard: &Shard, id: u32) -> Failure {
    if shard.state() == ShardState::Parked {
        Failure::Parked(id)
    } else {
        Failure::Unavailable(id)
    }
}

/// What the sequencer shares with the threads that watch it: its heartbeat, the metric
/// handles, and the transaction gates the front's readers check.
#[derive(Debug)]
pub struct Watched {
    /// Its sign of life.
    pub heartbeat: Arc<Heartbeat>,
    /// The metric handles.
    pub metrics: Arc<Metrics>,
    /// The transaction gates.
    pub gates: Arc<Gates>,
}

/// The sequencer thread's state.
pub struct Sequencer {
    shards: Arc<Vec<Shard>>,
    lanes: Vec<Lane>,
    wal: Appender,
    /// Writes appended to the log but not yet committed, with their shard.
    staged: Vec<(u32, Queued)>,
    restart_queue_max: usize,
    replay: ReplayContext,
    checkpoints: CheckpointPolicy,
    next_checkpoint_check: Instant,
    /// SAVEs waiting for checkpoints.
    saves: Saves,
    /// The current group's time (Unix ms), never going back.
    now_ms: u64,
    heartbeat: Arc<Heartbeat>,
    metrics: Arc<Metrics>,
    /// The transaction gates the front's readers check.
    gates: Arc<Gates>,
    /// Which keys the log wrote when: what conditional transactions are checked against.
    versions: Versions,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer for `shards` that logs to `wal`. Everything already in the log is
    /// replayed into each shard's first generation.
    #[must_use]
    pub fn new(
        shards: Arc<Vec<Shard>>,
        wal: Appender,
        restart_queue_max: usize,
        replay: ReplayContext,
        checkpoints: CheckpointPolicy,
        watched: Watched,
    ) -> Self {
        let Watched {
            heartbeat,
            metrics,
            gates,
        } = watched;
        let logged_through = wal.next_seq() - 1;
        let lanes = shards.iter().map(|_| Lane::new(logged_through)).collect();
        Self {
            shards,
            lanes,
            wal,
            staged: Vec::new(),
            restart_queue_max,
            replay,
            checkpoints,
            next_checkpoint_check: Instant::now(),
            saves: Saves::default(),
            now_ms: 0,
            heartbeat,
            metrics,
            gates,
            versions: Versions::default(),
        }
    }

    /// Commits the staged records as one group: on success the writes join their shards'
    /// outboxes (applied ⊆ logged; acknowledged only once durable, see
    /// [`crate::wal::appender::Durability`]); on failure they fail, unlogged and unapplied.
    fn commit(&mut self) {
        let result = self.wal.commit();
        for (shard, q) in self.staged.drain(..) {
            match result {
                Ok(()) => {
                    q.pending.set_seq(q.seq);
                    self.lanes[shard as usize].outbox.push_back(q);
                }
                Err(failure) => q.pending.complete(Err(failure)),
            }
        }
    }

    /// Stages a write for the log (committed with the current group), sequenced at the
    /// group's time.
    fn log_write(&mut self, w: WriteOp) {
        let seq = self.wal.append_write(self.now_ms, &[(w.shard, &w.op)]);
        self.versions.wrote(&w.op, seq);
        self.staged.push((
            w.shard,
            Queued {
                seq,
                part: 0,
                more: false,
                guard: None,
                now_ms: self.now_ms,
                op: w.op,
                pending: w.pending,
                unlogged: false,
            },
        ));
    }

    /// Stages a transaction as one record, or refuses all of it: logged only if every
    /// shard it writes serves now (a shard that does not would hold part of it, and a
    /// transaction is never half waiting).
    fn log_transaction(&mut self, writes: Vec<WriteOp>, unchanged: &[Unchanged]) {
        // A WATCHed key's failure wins: that transaction must not run again.
        let failed = unchanged
            .iter()
            .filter(|c| !self.versions.holds(c, self.now_ms))
            .map(|c| c.watched)
            .reduce(|a, b| a || b);
        if let Some(watched) = failed {
            let failure = if watched {
                Failure::Aborted
            } else {
                Failure::Changed
            };
            for w in writes {
                w.pending.complete(Err(failure));
            }
            return;
        }
        let refusal = writes.iter().find_map(|w| {
            let id = w.shard;
            let Some(lane) = self.lanes.get(id as usize) else {
                return Some(Failure::Unavailable(id));
            };
            let shard = &self.shards[id as usize];
            let parked = shard.state() == ShardState::Parked;
            let serving = lane.active.is_some() && lane.held.is_empty();
            match admit(
                parked,
                self.wal.stopped(),
                serving,
                0,
                self.restart_queue_max,
            ) {
                Admission::Log => None,
                Admission::Hold => Some(not_serving(shard, id)),
                Admission::Refuse(refusal) => Some(refusal.failure(id)),
            }
        });
        if let Some(failure) = refusal {
            for w in writes {
                w.pending.complete(Err(failure));
            }
            return;
        }
        let reads = writes
            .iter()
            .filter(|w| matches!(w.op.as_op(), Op::Read { .. }))
            .count();
        if reads > 0 {
            // A later transaction may depend on what this one reads.
            self.versions.track();
        }
        if reads == writes.len() {
            // Reads only: no record, and nothing for readers to wait for. They go into the
            // rings after every record logged so far and before any logged later, which
            // is the place their sequence number (the last record's) names.
            let seq = self.wal.next_seq() - 1;
            self.stage_parts(writes, seq, None, true);
            return;
        }
        let ops: Vec<(u32, &OwnedOp)> = writes.iter().map(|w| (w.shard, &w.op)).collect();
        let seq = self.wal.append_write(self.now_ms, &ops);
        for w in &writes {
            self.versions.wrote(&w.op, seq);
        }
        // Closed before any of its ops reaches a ring; open once all are done with.
        let mut slots: Vec<u32> = if writes.iter().any(|w| w.op.as_op() == Op::Flush) {
            (0..SLOTS).collect()
        } else {
            writes.iter().map(|w| hash_slot(w.op.key())).collect()
        };
        slots.sort_unstable();
        slots.dedup();
        let guard = self.gates.close(slots);
        self.stage_parts(writes, seq, Some(guard), false);
    }

    /// Stages the ops of record `seq` (or of no record: `unlogged` reads) for their shards,
    /// each with its place among the record's ops of its shard.
    fn stage_parts(
        &mut self,
        writes: Vec<WriteOp>,
        seq: u64,
        guard: Option<Arc<Guard>>,
        unlogged: bool,
    ) {
        // Each op's place among the record's ops of its shard, and the last of each.
        let mut parts = vec![0u32; self.lanes.len()];
        let mut last = vec![0usize; self.lanes.len()];
        for (i, w) in writes.iter().enumerate() {
            last[w.shard as usize] = i;
        }
        for (i, w) in writes.into_iter().enumerate() {
            let shard = w.shard as usize;
            let part = parts[shard];
            parts[shard] += 1;
            self.staged.push((
                w.shard,
                Queued {
                    seq,
                    part,
                    more: last[shard] != i,
                    guard: guard.clone(),
                    now_ms: self.now_ms,
                    op: w.op,
                    pending: w.pending,
                    unlogged,
                },
            ));
        }
    }

    /// Runs until [`SeqMsg::Stop`] and every ready shard's queue is pushed.
    pub fn run(mut self, rx: &Receiver<SeqMsg>) {
        let mut stopping = false;
        let mut waiting_for_space = false;
        loop {
            let first = if waiting_for_space {
                match rx.recv_timeout(RING_FULL_RETRY) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(SeqMsg::Stop),
                }
            } else if stopping {
                None
            } else {
                let tick = if self.saves.is_empty() {
                    CHECKPOINT_TICK
                } else {
                    SAVE_POLL
                };
                match rx.recv_timeout(tick) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(SeqMsg::Stop),
                }
            };
            if let Some(msg) = first {
                // The group's time: the wall clock, never going back in the log (a write is
                // applied at it, on replay too).
                self.now_ms = self.now_ms.max(codec::unix_ms());
                stopping |= self.handle(msg);
                for _ in 0..DRAIN_MAX {
                    match rx.try_recv() {
                        Ok(msg) => stopping |= self.handle(msg),
                        Err(_) => break,
                    }
                }
                // Group commit: everything drained shares one write and one sync.
                self.commit();
            }
            waiting_for_space = self.flush();
            self.heartbeat.beat();
            let now = Instant::now();
            if now >= self.next_checkpoint_check || !self.saves.is_empty() {
                self.next_checkpoint_check = now + CHECKPOINT_TICK;
                self.wal.check_place();
                self.checkpoints(now, false);
            }
            if stopping && !waiting_for_space {
                self.wal.sync();
                self.wal.log_stats();
                // Every shard with new writes checkpoints on its way out, so the next start
                // replays little.
                self.checkpoints(Instant::now(), true);
                self.saves.fail_all(Failure::ShuttingDown);
                for lane in &mut self.lanes {
                    for w in lane.held.drain(..) {
                        w.pending.complete(Err(Failure::ShuttingDown));
                    }
                    // Logged: the next start applies them.
                    for q in lane.outbox.drain(..) {
                        q.fail(Failure::Interrupted);
                    }
                    for o in lane.orphans.drain(..) {
                        o.pending.complete(Err(Failure::Interrupted));
                    }
                }
                return;
            }
        }
    }

    fn handle(&mut self, msg: SeqMsg) -> bool {
        match msg {
            SeqMsg::Submit(ops) => {
                for w in ops {
                    let Some(lane) = self.lanes.get_mut(w.shard as usize) else {
                        w.pending.complete(Err(Failure::Unavailable(w.shard)));
                        continue;
                    };
                    let parked = self.shards[w.shard as usize].state() == ShardState::Parked;
                    let waiting = lane.held.len() + lane.outbox.len();
                    let serving = lane.active.is_some() && lane.held.is_empty();
                    match admit(
                        parked,
                        self.wal.stopped(),
                        serving,
                        waiting,
                        self.restart_queue_max,
                    ) {
                        Admission::Log => self.log_write(w),
                        // Not serving: held unlogged, in order, until it does.
                        Admission::Hold => lane.held.push_back(w),
                        Admission::Refuse(refusal) => {
                            w.pending.complete(Err(refusal.failure(w.shard)))
                        }
                    }
                }
                false
            }
            SeqMsg::Transaction { writes, unchanged } => {
                self.log_transaction(writes, &unchanged);
                false
            }
            SeqMsg::Lifecycle(record) => {
                self.wal.append_lifecycle(&record);
                false
            }
            SeqMsg::ShardChanged(id) => {
                self.reload(id);
                false
            }
            SeqMsg::Orphans { shard, orphans } => {
                if let Some(lane) = self.lanes.get_mut(shard as usize) {
                    // From a dead generation's completion reader and from an abandoned
                    // replay, in any order: the next replay takes them in sequence order.
                    // A read in no record has nothing to replay: it fails, applying nothing.
                    let (unlogged, orphans): (Vec<InFlight>, Vec<InFlight>) =
                        orphans.into_iter().partition(|o| o.unlogged);
                    for o in unlogged {
                        o.fail(Failure::WorkerDied(shard));
                    }
                    lane.orphans.extend(orphans);
                    lane.orphans.sort_by_key(|o| (o.seq, o.part));
                    self.reload(shard);
                }
                false
            }
            SeqMsg::Replayed(replayed) => {
                let id = replayed.generation.shard;
                let current = self.shards[id as usize].current();
                let lane = &mut self.lanes[id as usize];
                let live =
                    current.is_some_and(|c| Arc::ptr_eq(&c, &replayed.generation) && !c.is_dead());
                if live && lane.active.is_none() {
                    let line = &replayed.generation.segment.head().checkpoint;
                    lane.kept_floor = Some(line.oldest_seq.load(Ordering::Relaxed));
                    lane.checkpoint = LaneCheckpoint::new();
                    lane.active = Some(Active {
                        generation: replayed.generation,
                        producer: replayed.producer,
                        inflight: replayed.inflight,
                    });
                    lane.holding_since_park = None;
                    // Serving again: what waited is logged now, after the outbox.
                    let held: Vec<WriteOp> = lane.held.drain(..).collect();
                    for w in held {
                        if self.wal.stopped() {
                            w.pending.complete(Err(Failure::LogStopped));
                        } else {
                            self.log_write(w);
                        }
                    }
                }
                false
            }
            SeqMsg::CheckpointAll => {
                self.checkpoints(Instant::now(), true);
                false
            }
            SeqMsg::Save(pending) => {
                self.save(pending);
                false
            }
            SeqMsg::Stop => true,
        }
    }

    /// Starts a SAVE: it waits for a checkpoint of every shard with writes applied past its
    /// newest one (forced at the next look), and fails at once if a shard does not serve.
    fn save(&mut self, pending: Pending) {
        let mut shards = Vec::new();
        for (id, lane) in self.lanes.iter().enumerate() {
            let id32 = id as u32;
            let Some(active) = &lane.active else {
                pending.complete(Err(not_serving(&self.shards[id], id32)));
                return;
            };
            let head = active.generation.segment.head();
            let applied = head.status.applied_seq.load(Ordering::Acquire);
            if applied > head.checkpoint.seq.load(Ordering::Relaxed) {
                shards.push((id32, applied));
            }
        }
        self.saves.add(pending, shards);
    }

    /// Brings lane `id` in line with its shard: drops a dead generation's ring, starts the
    /// replay of a new generation (which hands the ring back when done), and fails the
    /// queue of a parked shard.
    fn reload(&mut self, id: u32) {
        let shard = &self.shards[id as usize];
        let lane = &mut self.lanes[id as usize];
        let state = shard.state();
        let current = shard.current();
        let keep = matches!(
            (&lane.active, &current),
            (Some(a), Some(c)) if Arc::ptr_eq(&a.generation, c) && !c.is_dead()
        );
        if !keep {
            // Dropping the old generation's in-flight sender lets its completion reader
            // hand back whatever its dead worker never completed.
            lane.active = None;
        }
        if matches!(state, ShardState::Recovering | ShardState::Ready) && lane.active.is_none() {
            if let Some(generation) = current.filter(|g| !g.is_dead()) {
                // Once per generation: the first reload after its worker is up.
                if let Some(inflight) = generation.take_inflight() {
                    let job = ReplayJob {
                        producer: Producer::new(SegmentRing {
                            segment: Arc::clone(&generation.segment),
                            side: RingSide::Request,
                        }),
                        generation,
                        inflight,
                        through: lane.replay_through,
                        orphans: std::mem::take(&mut lane.orphans),
                        context: self.replay.clone(),
                    };
                    replay::start(job);
                }
            }
        }
        if state == ShardState::Parked {
            // Never logged: refused, so never applied.
            for w in lane.held.drain(..) {
                w.pending.complete(Err(Failure::Parked(id)));
            }
            // Logged: they wait for the probe, which replays them with their outcome. If the
            // shard parks again, nobody can say when they apply.
            let unapplied = !lane.outbox.is_empty() || !lane.orphans.is_empty();
            match on_park(lane.holding_since_park, shard.parks(), unapplied) {
                ParkStep::Keep => {}
                ParkStep::HoldSince(parks) => lane.holding_since_park = Some(parks),
                ParkStep::GiveUp => {
                    for q in lane.outbox.drain(..) {
                        lane.replay_through = q.seq;
                        q.fail(Failure::ParkedLogged(id));
                    }
                    for o in lane.orphans.drain(..) {
                        o.pending.complete(Err(Failure::ParkedLogged(id)));
                    }
                    lane.holding_since_park = None;
                }
            }
        }
    }

    /// Notes finished checkpoints (logging them and removing the log segments every shard's
    /// checkpoints now cover), and requests new ones where due, or everywhere when `all`
    /// (at shutdown) or when the log has outgrown its limit.
    fn checkpoints(&mut self, now: Instant, all: bool) {
        let mut finished = false;
        let mut due = Vec::new();
        let log_bytes = self.wal.disk_usage().map_or(0, |u| u.bytes);
        // The log keeps what follows the older of the two kept checkpoints, so forcing a
        // round at half the limit keeps it below the limit once the round lands.
        let oversized = log_bytes > self.checkpoints.wal_max_bytes / 2;
        for (id, lane) in self.lanes.iter_mut().enumerate() {
            let id32 = id as u32;
            let Some(active) = &lane.active else {
                let failure = not_serving(&self.shards[id], id32);
                self.saves.report(id32, Progress::Failed(failure));
                continue;
            };
            let head = active.generation.segment.head();
            let line = &head.checkpoint;
            let done = line.done.load(Ordering::Acquire);
            let c = &mut lane.checkpoint;
            if done > c.done_seen {
                c.done_seen = done;
                let written = line.written.load(Ordering::Relaxed);
                if written > c.written_seen {
                    c.written_seen = written;
                    finished = true;
                    lane.kept_floor = Some(line.oldest_seq.load(Ordering::Relaxed));
                    self.metrics
                        .checkpoint_seconds
                        .observe(line.duration_ns.load(Ordering::Relaxed) as f64 / 1e9);
                    self.wal
                        .append_lifecycle(&LifecycleRecord::CheckpointTaken {
                            worker: id32,
                            generation: active.generation.number,
                            seq: line.seq.load(Ordering::Relaxed),
                            bytes: line.bytes.load(Ordering::Relaxed),
                            unix_ms: line.unix_ms.load(Ordering::Relaxed),
                        });
                } else {
                    // Answered without a new checkpoint: it failed (the worker logged why).
                    self.saves
                        .report(id32, Progress::Failed(Failure::CheckpointFailed(id32)));
                }
            }
            let checkpointed = line.seq.load(Ordering::Relaxed);
            self.saves.report(id32, Progress::Through(checkpointed));
            let new_writes = head.status.applied_seq.load(Ordering::Acquire) > checkpointed;
            let forced = all || oversized || self.saves.wants(id32);
            if new_writes && c.due(&self.checkpoints, now, forced) {
                due.push(id);
            }
        }
        if finished {
            // The records only document the checkpoints (recovery reads the files); a
            // failed write is the appender's to report (it cuts the records back out).
            let _ = self.wal.commit();
            if let Some(floor) = self.lanes.iter().map(|l| l.kept_floor).min().flatten() {
                self.wal.remove_through(floor);
            }
        }
        if due.is_empty() {
            return;
        }
        // A checkpoint may only cover what the log holds durably.
        if let Err(e) = self.wal.make_durable() {
            error!(self.replay.log, "cannot sync the event log; checkpoints postponed";
                   "component" => "sequencer", "error" => %e);
            for id in due {
                let id = id as u32;
                self.saves
                    .report(id, Progress::Failed(Failure::CheckpointFailed(id)));
            }
            return;
        }
        for id in due {
            let lane = &mut self.lanes[id];
            let Some(active) = &lane.active else {
                continue;
            };
            let control = &active.generation.segment.head().supervisor;
            let request = lane.checkpoint.request(now);
            control
                .checkpoint_limit
                .store(lane.replay_through, Ordering::Relaxed);
            // SYNC POINT: publishes the limit with the request (the worker loads the
            // request with acquire before the limit).
            control.checkpoint_request.store(request, Ordering::Release);
            wake::notify(
                &active
                    .generation
                    .segment
                    .head()
                    .worker_request
                    .worker_sleeping,
                &control.request_doorbell,
            );
        }
    }

    /// Pushes queued writes into rings; returns whether some ring was full.
    fn flush(&mut self) -> bool {
        let mut full = false;
        for (lane, shard) in self.lanes.iter_mut().zip(self.shards.iter()) {
            let Some(active) = lane.active.as_mut() else {
                continue;
            };
            let mut pushed = false;
            while let Some(q) = lane.outbox.front() {
                let words = q.op.parts().record_words();
                if !active.producer.has_room(words as u32) {
                    full = true;
                    break;
                }
                let Some(Queued {
                    seq,
                    part,
                    more,
                    guard,
                    now_ms,
                    op,
                    pending,
                    unlogged,
                }) = lane.outbox.pop_front()
                else {
                    break;
                };
                // The entry goes first: the completion may come back at once. (If the
                // completion reader has ended, the worker is dead and the dropped claim
                // fails its write.)
                let _ = active.inflight.send(InFlight {
                    seq,
                    part,
                    pending,
                    guard,
                    unlogged,
                });
                let parts = op.parts();
                let tag = if more {
                    parts.tag | TAG_MORE
                } else {
                    parts.tag
                };
                active
                    .producer
                    .try_push(tag, words as u32, |w| {
                        assert!(
                            parts.encode(seq, now_ms, w),
                            "record_words sized the record"
                        );
                    })
                    .expect("the sequencer is the ring's only producer: has_room said it fits");
                lane.replay_through = seq;
                shard.set_pushed_seq(seq);
                lane.checkpoint.pushed(words * 8);
                pushed = true;
            }
            if pushed {
                let head = active.generation.segment.head();
                wake::notify(
                    &head.worker_request.worker_sleeping,
                    &head.supervisor.request_doorbell,
                );
            }
        }
        full
    }
}
