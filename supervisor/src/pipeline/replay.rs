//! Replay: a new worker generation starts from its checkpoint (or empty) and receives every
//! logged write of its shard after that, from the event log and through its own request
//! ring, before any new write. The worker applies replayed records like any other, so its
//! state comes back exactly (the state machine is deterministic).
//!
//! The replay thread borrows the ring's producer from the sequencer and hands it back when
//! the worker has applied the last replayed record: the ring keeps one producer at a time.
//! Writes that the dead generation took but never completed (its orphans) are re-attached
//! to their replayed records and acknowledged with the outcome of the replay.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_worker::command::{Op, TAG_MORE, TAG_SILENT};
use crossbeam_channel::Sender;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shm_protocol::wake;
use slog::{error, info, Logger};

use crate::base::ops::InFlight;
use crate::base::shard::{Generation, Shard};
use crate::base::ticket::Failure;
use crate::pipeline::msg::{LifecycleEvent, Replayed, RequestProducer, SeqMsg};
use crate::wal::codec::{self, DecodeError};
use crate::wal::{self, Kind, WalError};

/// How often a long replay reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Records pushed between wake-ups of the worker.
const NOTIFY_EVERY: u64 = 64;

/// What the sequencer gives each replay it starts.
#[derive(Clone, Debug)]
pub struct ReplayContext {
    /// The event log directory.
    pub wal_dir: PathBuf,
    /// The sequencer's own channel (for [`SeqMsg::Replayed`]).
    pub sequencer: Sender<SeqMsg>,
    /// The lifecycle thread's events (for [`LifecycleEvent::Recovered`]).
    pub events: Sender<LifecycleEvent>,
    /// The shards (a replay notes how far it pushed).
    pub shards: Arc<Vec<Shard>>,
    /// Logger.
    pub log: Logger,
}

/// One replay, as the sequencer starts it.
#[derive(Debug)]
pub struct ReplayJob {
    /// The generation to replay into.
    pub generation: Arc<Generation>,
    /// Its request ring's producer, lent by the sequencer.
    pub producer: RequestProducer,
    /// Its completion reader's entries.
    pub inflight: Sender<InFlight>,
    /// Replay up to this sequence number (what the sequencer no longer holds).
    pub through: u64,
    /// Writes of the previous generation still awaiting their outcome, in order.
    pub orphans: Vec<InFlight>,
    /// Where the log is and whom to tell.
    pub context: ReplayContext,
}

/// Why a replay did not finish.
#[derive(Debug)]
enum ReplayError {
    /// The log could not be read.
    Wal(WalError),
    /// A record in range does not decode.
    Decode(u64, DecodeError),
    /// The worker died; its successor replays again.
    WorkerGone,
    /// The log no longer reaches back to the worker's checkpoint.
    Missing {
        /// First sequence number needed.
        from: u64,
        /// First one the log holds.
        oldest: u64,
    },
}

impl From<WalError> for ReplayError {
    fn from(e: WalError) -> Self {
        Self::Wal(e)
    }
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wal(e) => e.fmt(f),
            Self::Decode(seq, e) => write!(f, "record {seq}: {e}"),
            Self::WorkerGone => f.write_str("the worker exited"),
            Self::Missing { from, oldest } => write!(
                f,
                "the event log starts at sequence {oldest} but the worker's state needs it from \
                 {from} (its checkpoints are missing or damaged)"
            ),
        }
    }
}

/// Starts `job` on its own thread. If no thread can be started, the worker is killed, so
/// that its restart tries again.
pub fn start(job: ReplayJob) {
    let generation = Arc::clone(&job.generation);
    let log = job.context.log.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("replay-w{}", generation.shard))
        .spawn(move || run(job));
    if let Err(e) = spawned {
        error!(log, "cannot start replay thread; killing worker"; "component" => "replay",
               "worker" => generation.shard, "generation" => generation.number, "error" => %e);
        let _ = kill(Pid::from_raw(generation.pid as i32), Signal::SIGKILL);
    }
}

struct Run {
    generation: Arc<Generation>,
    producer: RequestProducer,
    inflight: Sender<InFlight>,
    orphans: std::iter::Peekable<std::vec::IntoIter<InFlight>>,
    from: u64,
    through: u64,
    records: u64,
    last_seq: u64,
    started: Instant,
    next_report: Instant,
    context: ReplayContext,
}

fn run(job: ReplayJob) {
    let status = &job.generation.segment.head().status;
    // What the worker's checkpoint covers (0 without one).
    let from = status.applied_seq.load(Ordering::Acquire) + 1;
    let started = Instant::now();
    let mut run = Run {
        generation: job.generation,
        producer: job.producer,
        inflight: job.inflight,
        orphans: job.orphans.into_iter().peekable(),
        from,
        through: job.through,
        records: 0,
        last_seq: 0,
        started,
        next_report: started + PROGRESS_EVERY,
        context: job.context,
    };
    let (shard, number) = (run.generation.shard, run.generation.number);
    let log = run.context.log.clone();
    let result = run.replay();
    if matches!(result, Err(ReplayError::WorkerGone)) {
        // Those not reached yet are still to be replayed, into the next generation.
        let rest: Vec<InFlight> = run.orphans.by_ref().collect();
        if !rest.is_empty() {
            let _ = run.context.sequencer.send(SeqMsg::Orphans {
                shard,
                orphans: rest,
            });
        }
    }
    // Orphans without a record in range cannot be re-applied here (a record before the
    // checkpoint was applied already, its outcome lost with the worker).
    for o in run.orphans.by_ref() {
        o.pending.complete(Err(Failure::WorkerDied(shard)));
    }
    let elapsed = started.elapsed();
    match result {
        Ok(()) => {
            info!(log, "replay done"; "component" => "replay", "worker" => shard,
                  "generation" => number, "from_seq" => from, "through_seq" => run.through,
                  "records" => run.records, "duration_ms" => elapsed.as_secs_f64() * 1000.0);
            let _ = run.context.sequencer.send(SeqMsg::Replayed(Replayed {
                generation: Arc::clone(&run.generation),
                producer: run.producer,
                inflight: run.inflight,
            }));
            let _ = run.context.events.send(LifecycleEvent::Recovered {
                shard,
                generation: number,
                records: run.records,
                duration: elapsed,
            });
        }
        Err(ReplayError::WorkerGone) => {
            info!(log, "replay abandoned: worker exited"; "component" => "replay",
                  "worker" => shard, "generation" => number, "records" => run.records);
        }
        Err(e) => {
            error!(log, "replay failed; killing worker"; "component" => "replay", "worker" => shard,
                   "generation" => number, "error" => %e);
            let _ = kill(Pid::from_raw(run.generation.pid as i32), Signal::SIGKILL);
        }
    }
}

impl Run {
    fn replay(&mut self) -> Result<(), ReplayError> {
        if self.from <= self.through {
            let dir = self.context.wal_dir.clone();
            let oldest = wal::list_segments(&dir)?
                .first()
                .map_or(self.from, |s| s.first_seq);
            if oldest > self.from {
                return Err(ReplayError::Missing {
                    from: self.from,
                    oldest,
                });
            }
            wal::scan(&dir, self.from..=self.through, |r| {
                if r.kind != Kind::Write {
                    return Ok(());
                }
                let write = codec::decode_write(r.version, r.payload)
                    .map_err(|e| ReplayError::Decode(r.seq, e))?;
                // A transaction's ops for this shard go in together, all but the last
                // marked: the worker's state is at a record boundary only after the last.
                let mut ours = write.ops_of(self.generation.shard).enumerate().peekable();
                while let Some((part, op)) = ours.next() {
                    let more = ours.peek().is_some();
                    self.push(r.seq, part as u32, more, write.now_ms, &op)?;
                }
                Ok::<(), ReplayError>(())
            })?;
        }
        self.notify();
        // Hand the ring back only once the worker's state includes every replayed write:
        // the shard serves reads from then on.
        let status = &self.generation.segment.head().status;
        while status.applied_seq.load(Ordering::Acquire) < self.last_seq {
            if self.generation.is_dead() {
                return Err(ReplayError::WorkerGone);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }

    fn push(
        &mut self,
        seq: u64,
        part: u32,
        more: bool,
        now_ms: u64,
        op: &Op<'_>,
    ) -> Result<(), ReplayError> {
        while self
            .orphans
            .peek()
            .is_some_and(|o| (o.seq, o.part) < (seq, part))
        {
            if let Some(o) = self.orphans.next() {
                o.pending
                    .complete(Err(Failure::WorkerDied(self.generation.shard)));
            }
        }
        let parts = op.parts();
        let words = parts.record_words();
        let mut spins = 0u32;
        while !self.producer.has_room(words as u32) {
            if self.generation.is_dead() {
                return Err(ReplayError::WorkerGone);
            }
            self.notify();
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        // Only a write someone waits for (an orphan) gets a completion.
        let mut tag = parts.tag | TAG_SILENT;
        if more {
            tag |= TAG_MORE;
        }
        if self
            .orphans
            .peek()
            .is_some_and(|o| (o.seq, o.part) == (seq, part))
        {
            if let Some(o) = self.orphans.next() {
                // Before the record: the completion may come back at once.
                let _ = self.inflight.send(o);
                tag &= !TAG_SILENT;
            }
        }
        self.producer
            .try_push(tag, words as u32, |w| {
                assert!(
                    parts.encode(seq, now_ms, w),
                    "record_words sized the record"
                );
            })
            .expect("the replay is the ring's only producer while it runs: has_room said it fits");
        self.records += 1;
        self.last_seq = seq;
        self.context.shards[self.generation.shard as usize].set_pushed_seq(seq);
        if self.records % NOTIFY_EVERY == 0 {
            self.notify();
            self.report(seq);
        }
        Ok(())
    }

    fn notify(&self) {
        let head = self.generation.segment.head();
        wake::notify(
            &head.worker_request.worker_sleeping,
            &head.supervisor.request_doorbell,
        );
    }

    /// Logs progress of a long replay: records, percent of the range, rate, time left.
    fn report(&mut self, seq: u64) {
        let now = Instant::now();
        if now < self.next_report {
            return;
        }
        self.next_report = now + PROGRESS_EVERY;
        let span = (self.through - self.from + 1) as f64;
        let done = (seq - self.from + 1) as f64 / span;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let left_s = if done > 0.0 {
            elapsed * (1.0 - done) / done
        } else {
            0.0
        };
        info!(self.context.log, "replaying"; "component" => "replay",
              "worker" => self.generation.shard, "generation" => self.generation.number,
              "records" => self.records, "seq" => seq, "through_seq" => self.through,
              "percent" => (done * 1000.0).round() / 10.0,
              "records_per_s" => (self.records as f64 / elapsed.max(1e-9)).round(),
              "eta_s" => (left_s * 10.0).round() / 10.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::ops::OwnedOp;
    use crate::base::ticket::{Ticket, WriteResult};
    use crate::wal::codec::LifecycleRecord;
    use crate::wal::testing::{write_log, Encode, Group, TestDir};
    use corral_worker::command::{DecodedRequest, Expiry, Op, SetCondition};
    use shm_protocol::os::{RingSide, Segment, SegmentRing};
    use shm_protocol::ring::{Consumer, Producer};

    /// No such process (above any pid_max): a kill on a failed replay reaches nobody.
    const NO_PID: u32 = i32::MAX as u32;

    fn set(key: &str) -> OwnedOp {
        OwnedOp::from(Op::Set {
            key: key.as_bytes(),
            value: b"v",
            condition: SetCondition::Always,
            expiry: Expiry::Never,
            get: false,
        })
    }

    /// The log: sequence numbers 1..=12, odd ones writes of shard 0, even ones of shard 1,
    /// except 8, a lifecycle record.
    fn log(wal: &std::path::Path) {
        let groups: Vec<Group> = (1..=12u64)
            .map(|seq| {
                let record: (Kind, Encode) = if seq == 8 {
                    let event = LifecycleRecord::ShardParked {
                        worker: 1,
                        unix_ms: 1,
                    };
                    (
                        Kind::Lifecycle,
                        Box::new(move |b| codec::encode_lifecycle(&event, b)),
                    )
                } else {
                    let (shard, op) = ((seq % 2 == 0) as u32, set(&format!("k{seq}")));
                    (
                        Kind::Write,
                        Box::new(move |b| codec::encode_write(seq * 10, &[(shard, &op)], b)),
                    )
                };
                vec![record]
            })
            .collect();
        write_log(wal, Box::new(|_| Ok(())), &groups);
    }

    /// What a replay into shard 1 (checkpointed through `applied`, replaying through
    /// `through`, with `orphans` as (seq, part)) pushed: (seq, silent, more, now_ms) per op,
    /// the orphans its completion reader got back, the ticket of the orphans, and the shards.
    struct Replayed1 {
        got: Vec<(u64, bool, bool, u64)>,
        attached: Vec<InFlight>,
        ticket: Arc<Ticket>,
        shards: Arc<Vec<Shard>>,
        records: u64,
        segment: Arc<Segment>,
        replayed: Replayed,
    }

    fn replay_shard_1(
        wal_dir: std::path::PathBuf,
        applied: u64,
        through: u64,
        orphans: &[(u64, u32)],
    ) -> Replayed1 {
        let geometry = crate::wal::testing::small_geometry();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("corral-unit-replay-{}-{n}", std::process::id());
        let segment = Arc::new(Segment::create(&name, 1, 2, geometry).unwrap());
        let status = &segment.head().status;
        status.applied_seq.store(applied, Ordering::Release);
        let (unused_tx, _) = crossbeam_channel::unbounded();
        let generation = Arc::new(Generation::new(
            1,
            2,
            Arc::clone(&segment),
            NO_PID,
            unused_tx,
        ));
        let ticket = Ticket::new(|| {});
        let orphans: Vec<InFlight> = orphans
            .iter()
            .zip(ticket.arm(orphans.len()))
            .map(|(&(seq, part), pending)| InFlight {
                seq,
                part,
                pending,
                guard: None,
                unlogged: false,
            })
            .collect();
        let (seq_tx, seq_rx) = crossbeam_channel::unbounded();
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let (inflight_tx, inflight_rx) = crossbeam_channel::unbounded();
        let shards = Arc::new(vec![Shard::new(0), Shard::new(1)]);
        start(ReplayJob {
            producer: Producer::new(SegmentRing {
                segment: Arc::clone(&segment),
                side: RingSide::Request,
            }),
            generation,
            inflight: inflight_tx,
            through,
            orphans,
            context: ReplayContext {
                wal_dir,
                sequencer: seq_tx,
                events: events_tx,
                shards: Arc::clone(&shards),
                log: Logger::root(slog::Discard, slog::o!()),
            },
        });
        // The worker's side: apply what arrives (its record done at the last op of it),
        // until the replay hands the ring back.
        let mut ring = Consumer::new(SegmentRing {
            segment: Arc::clone(&segment),
            side: RingSide::Request,
        });
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let replayed = loop {
            assert!(Instant::now() < deadline, "replay never finished: {got:?}");
            let mut request = DecodedRequest::default();
            if let Some(decoded) = ring.pop(|r| request.decode_from(&r)).unwrap() {
                decoded.unwrap();
                got.push((request.seq, request.silent, request.more, request.now_ms));
                if !request.more {
                    status.applied_seq.store(request.seq, Ordering::Release);
                }
            }
            match seq_rx.try_recv() {
                Ok(SeqMsg::Replayed(r)) => break r,
                Ok(_) => panic!("unexpected message to the sequencer"),
                Err(_) => std::thread::yield_now(),
            }
        };
        let records = match events_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(LifecycleEvent::Recovered {
                shard: 1,
                generation: 2,
                records,
                ..
            }) => records,
            other => panic!("{other:?}"),
        };
        Replayed1 {
            got,
            attached: inflight_rx.try_iter().collect(),
            ticket,
            shards,
            records,
            segment,
            replayed,
        }
    }

    #[test]
    fn replays_its_shards_writes_after_the_checkpoint_and_reattaches_orphans() {
        let dir = TestDir::new("replay");
        let wal_dir = dir.0.join("wal");
        log(&wal_dir);
        // Checkpointed through 4. Orphans: 3 (before the checkpoint), 6 (a record to
        // replay), 8 (no write of this shard), 12 (past `through`).
        let mut r = replay_shard_1(wal_dir, 4, 11, &[(3, 0), (6, 0), (8, 0), (12, 0)]);
        // Each at the time its record was sequenced (here ten times its sequence number).
        assert_eq!(
            r.got,
            [(6, false, false, 60), (10, true, false, 100)],
            "shard 1's writes in 5..=11"
        );
        assert!(Arc::ptr_eq(&r.replayed.generation.segment, &r.segment));
        assert_eq!(r.shards[1].pushed_seq(), 10);
        assert_eq!(r.shards[0].pushed_seq(), 0);
        assert_eq!(r.records, 2);
        // Orphan 6 waits for its completion; the others failed: their writes' worker died.
        assert_eq!(r.attached.iter().map(|o| o.seq).collect::<Vec<_>>(), [6]);
        assert!(!r.ticket.is_complete());
        r.attached.clear();
        assert!(r.ticket.is_complete());
        let mut results: Vec<Option<WriteResult>> = Vec::new();
        r.ticket.take(&mut results);
        let died = |r: &Option<WriteResult>| matches!(r, Some(Err(Failure::WorkerDied(1))));
        assert!(
            died(&results[0]) && died(&results[2]) && died(&results[3]),
            "{results:?}"
        );
        assert!(!died(&results[1]), "{results:?}");
    }

    #[test]
    fn a_transactions_parts_go_in_together_and_each_orphan_finds_its_part() {
        let dir = TestDir::new("replay-txn");
        let wal_dir = dir.0.join("wal");
        // 1: a write of shard 1; 2: a transaction of shard 1 (twice) and shard 0 (once);
        // 3: a transaction of shard 0 only.
        let (a, b, c, d) = (set("a"), set("b"), set("c"), set("d"));
        let groups: Vec<Group> = vec![
            vec![(
                Kind::Write,
                Box::new(move |buf: &mut Vec<u8>| codec::encode_write(10, &[(1, &a)], buf))
                    as Encode,
            )],
            vec![(
                Kind::Write,
                Box::new(move |buf: &mut Vec<u8>| {
                    codec::encode_write(20, &[(1, &b), (0, &c), (1, &d)], buf)
                }) as Encode,
            )],
            vec![(
                Kind::Write,
                Box::new(move |buf: &mut Vec<u8>| codec::encode_write(30, &[(0, &set("e"))], buf))
                    as Encode,
            )],
        ];
        write_log(&wal_dir, Box::new(|_| Ok(())), &groups);
        // Orphans: the second part of 2 only (its first was completed before the crash),
        // and a part that record never had.
        let mut r = replay_shard_1(wal_dir, 0, 3, &[(2, 1), (2, 5)]);
        assert_eq!(
            r.got,
            [
                (1, true, false, 10),
                (2, true, true, 20),
                (2, false, false, 20)
            ],
            "the transaction's two ops for shard 1, the first marked as more to come"
        );
        assert_eq!(r.shards[1].pushed_seq(), 2);
        assert_eq!(
            r.attached
                .iter()
                .map(|o| (o.seq, o.part))
                .collect::<Vec<_>>(),
            [(2, 1)]
        );
        r.attached.clear();
        let mut results: Vec<Option<WriteResult>> = Vec::new();
        r.ticket.take(&mut results);
        assert!(
            matches!(results[1], Some(Err(Failure::WorkerDied(1)))),
            "a part beyond the record's is never applied: {results:?}"
        );
    }
}
