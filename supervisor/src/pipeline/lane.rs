//! What the sequencer keeps per shard (a `Lane`), and its bookkeeping rules as pure
//! functions with table-driven tests: which writes are logged, held or refused; what a
//! parked shard does with its logged but unapplied writes; when a checkpoint is due.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::base::ops::{InFlight, OwnedOp};
use crate::base::shard::Generation;
use crate::base::ticket::{Failure, Pending};
use crate::pipeline::msg::{RequestProducer, WriteOp};

/// A logged write waiting in its shard's outbox for room in the ring.
pub(crate) struct Queued {
    pub(crate) seq: u64,
    /// Its place among its record's ops for this shard, and whether more follow
    /// (a transaction's; pushed with `TAG_MORE`).
    pub(crate) part: u32,
    pub(crate) more: bool,
    /// A transaction's closed gates (see `base::gate`).
    pub(crate) guard: Option<Arc<crate::base::gate::Guard>>,
    /// When it was sequenced (Unix ms): the time the worker applies it at.
    pub(crate) now_ms: u64,
    pub(crate) op: OwnedOp,
    pub(crate) pending: Pending,
    /// A read in no record (see [`crate::base::ops::InFlight::unlogged`]).
    pub(crate) unlogged: bool,
}

impl Queued {
    /// Fails it with what a logged write gets here (a read in no record is refused).
    pub(crate) fn fail(self, failure: Failure) {
        let failure = if self.unlogged {
            failure.for_unlogged()
        } else {
            failure
        };
        self.pending.complete(Err(failure));
    }
}

/// The generation a lane pushes to, once its replay is done.
pub(crate) struct Active {
    pub(crate) generation: Arc<Generation>,
    pub(crate) producer: RequestProducer,
    pub(crate) inflight: Sender<InFlight>,
}

/// The sequencer's state of one shard.
pub(crate) struct Lane {
    pub(crate) active: Option<Active>,
    /// Checkpoint bookkeeping of the active generation.
    pub(crate) checkpoint: LaneCheckpoint,
    /// Sequence number of the shard's oldest kept checkpoint, as its latest worker
    /// reported it (`None` until one has).
    pub(crate) kept_floor: Option<u64>,
    pub(crate) outbox: VecDeque<Queued>,
    /// Writes for the shard while it does not serve (starting, restarting, recovering), not
    /// logged yet: they are logged once it serves again, or refused (never applied) if it
    /// parks. Logging them only then is what lets a refusal mean "not applied".
    pub(crate) held: VecDeque<WriteOp>,
    /// The shard's park count ([`crate::base::shard::Shard::parks`]) when it parked with
    /// logged writes still unapplied (in the outbox or orphans): those wait for the probe
    /// that follows; if the shard parks again, their outcome is unknown.
    pub(crate) holding_since_park: Option<u64>,
    /// Every committed write of this shard up to this sequence number has left the outbox
    /// (pushed to some generation's ring, or failed when the shard parked): a new
    /// generation gets them from the log by replay, and the outbox holds the rest.
    pub(crate) replay_through: u64,
    /// Writes a dead generation never completed; replay re-attaches them to their records.
    pub(crate) orphans: Vec<InFlight>,
}

impl Lane {
    /// A lane whose shard has every write through `logged_through` in the log, to be
    /// replayed into its first generation.
    pub(crate) fn new(logged_through: u64) -> Self {
        Self {
            active: None,
            checkpoint: LaneCheckpoint::new(),
            kept_floor: None,
            outbox: VecDeque::new(),
            held: VecDeque::new(),
            holding_since_park: None,
            replay_through: logged_through,
            orphans: Vec::new(),
        }
    }
}

/// What happens to a client write submitted to a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Logged now (with the current group).
    Log,
    /// Held unlogged until the shard serves again.
    Hold,
    /// Refused: never logged, never applied.
    Refuse(Refusal),
}

/// Why a write is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The shard is parked.
    Parked,
    /// The event log stopped taking writes.
    LogStopped,
    /// The shard does not serve and its queue is full.
    QueueFull,
}

impl Refusal {
    /// The failure a client gets for a write to `shard`.
    pub(crate) fn failure(self, shard: u32) -> Failure {
        match self {
            Self::Parked => Failure::Parked(shard),
            Self::LogStopped => Failure::LogStopped,
            Self::QueueFull => Failure::Unavailable(shard),
        }
    }
}

/// Admission of a write to a shard that is `parked` or not, with the log `log_stopped` or
/// not, the lane `serving` (a generation active and nothing held before it), `waiting`
/// writes held or queued, and at most `queue_max` of those.
pub(crate) fn admit(
    parked: bool,
    log_stopped: bool,
    serving: bool,
    waiting: usize,
    queue_max: usize,
) -> Admission {
    if parked {
        Admission::Refuse(Refusal::Parked)
    } else if log_stopped {
        Admission::Refuse(Refusal::LogStopped)
    } else if serving {
        Admission::Log
    } else if waiting >= queue_max {
        Admission::Refuse(Refusal::QueueFull)
    } else {
        Admission::Hold
    }
}

/// What a parked shard's lane does with its logged, unapplied writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParkStep {
    /// Nothing to do (nothing unapplied, or already waiting for this park's probe).
    Keep,
    /// Start waiting for the probe of the park numbered `.0`.
    HoldSince(u64),
    /// The shard parked again since they started waiting: fail them, outcome unknown.
    GiveUp,
}

/// The step for a lane that has held its logged writes since park number
/// `holding_since_park` (if any), now that the shard has parked `parks` times, with
/// `unapplied` logged writes waiting or not.
pub(crate) fn on_park(holding_since_park: Option<u64>, parks: u64, unapplied: bool) -> ParkStep {
    match holding_since_park {
        Some(first) if parks > first => ParkStep::GiveUp,
        Some(_) => ParkStep::Keep,
        None if unapplied => ParkStep::HoldSince(parks),
        None => ParkStep::Keep,
    }
}

/// When shards are checkpointed.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// At least this often, when a shard has new writes.
    pub interval: Duration,
    /// After this many writes to a shard.
    pub writes: u64,
    /// After this many log bytes of a shard's writes.
    pub log_bytes: u64,
    /// Checkpoint every shard while the log is larger than half of this (the log keeps
    /// what follows the older kept checkpoint).
    pub wal_max_bytes: u64,
}

/// What a lane knows of its generation's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaneCheckpoint {
    /// Requests written to the generation's segment.
    pub(crate) requested: u64,
    /// The last answer seen.
    pub(crate) done_seen: u64,
    /// Checkpoints the generation had written at that answer.
    pub(crate) written_seen: u64,
    /// Writes pushed since the last request.
    writes: u64,
    /// Log bytes of those writes.
    bytes: u64,
    /// When the last request was made (or the generation came up).
    since: Instant,
}

impl LaneCheckpoint {
    pub(crate) fn new() -> Self {
        Self::at(Instant::now())
    }

    fn at(since: Instant) -> Self {
        Self {
            requested: 0,
            done_seen: 0,
            written_seen: 0,
            writes: 0,
            bytes: 0,
            since,
        }
    }

    /// Counts a write of `bytes` log bytes pushed to the generation.
    pub(crate) fn pushed(&mut self, bytes: u64) {
        self.writes += 1;
        self.bytes += bytes;
    }

    /// Whether a checkpoint of a shard with new writes is due at `now`: none is in
    /// progress, and it is forced (shutdown, an oversized log) or a threshold is reached.
    pub(crate) fn due(&self, policy: &CheckpointPolicy, now: Instant, forced: bool) -> bool {
        let wanted = forced
            || self.writes >= policy.writes
            || self.bytes >= policy.log_bytes
            || now.duration_since(self.since) >= policy.interval;
        self.requested == self.done_seen && wanted
    }

    /// Records a new request at `now`; returns its number.
    pub(crate) fn request(&mut self, now: Instant) -> u64 {
        self.requested += 1;
        self.writes = 0;
        self.bytes = 0;
        self.since = now;
        self.requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission() {
        use Admission::{Hold, Log, Refuse};
        use Refusal::{LogStopped, Parked, QueueFull};
        // (parked, log stopped, serving, waiting, expected) with a queue of at most 3.
        let table = [
            (false, false, true, 0, Log),
            (false, false, true, 10, Log),
            (false, false, false, 0, Hold),
            (false, false, false, 2, Hold),
            (false, false, false, 3, Refuse(QueueFull)),
            (false, true, true, 0, Refuse(LogStopped)),
            (false, true, false, 0, Refuse(LogStopped)),
            (true, false, true, 0, Refuse(Parked)),
            (true, true, false, 5, Refuse(Parked)),
        ];
        for (i, (parked, stopped, serving, waiting, want)) in table.into_iter().enumerate() {
            assert_eq!(admit(parked, stopped, serving, waiting, 3), want, "row {i}");
        }
        assert_eq!(Refusal::Parked.failure(2), Failure::Parked(2));
        assert_eq!(Refusal::QueueFull.failure(1), Failure::Unavailable(1));
    }

    #[test]
    fn logged_writes_wait_for_one_probe_then_give_up() {
        // (holding since park, parks so far, unapplied writes, expected)
        let table = [
            (None, 1, false, ParkStep::Keep),
            (None, 1, true, ParkStep::HoldSince(1)),
            (None, 4, true, ParkStep::HoldSince(4)),
            (Some(1), 1, true, ParkStep::Keep),
            (Some(1), 1, false, ParkStep::Keep),
            (Some(1), 2, true, ParkStep::GiveUp),
            (Some(1), 3, false, ParkStep::GiveUp),
        ];
        for (i, (since, parks, unapplied, want)) in table.into_iter().enumerate() {
            assert_eq!(on_park(since, parks, unapplied), want, "row {i}");
        }
    }

    #[test]
    fn checkpoints_are_due_at_a_threshold_and_one_at_a_time() {
        let policy = CheckpointPolicy {
            interval: Duration::from_secs(60),
            writes: 3,
            log_bytes: 1_000,
            wal_max_bytes: 1 << 30,
        };
        let t0 = Instant::now();
        let mut c = LaneCheckpoint::at(t0);
        assert!(!c.due(&policy, t0, false), "nothing reached yet");
        assert!(c.due(&policy, t0, true), "forced");
        assert!(
            c.due(&policy, t0 + Duration::from_secs(60), false),
            "interval"
        );
        c.pushed(10);
        c.pushed(10);
        assert!(!c.due(&policy, t0, false));
        c.pushed(10);
        assert!(c.due(&policy, t0, false), "write count");

        assert_eq!(c.request(t0), 1);
        assert!(
            !c.due(&policy, t0, true),
            "one in progress, even when forced"
        );
        c.pushed(2_000);
        assert!(!c.due(&policy, t0 + Duration::from_secs(120), false));
        c.done_seen = 1;
        assert!(
            c.due(&policy, t0, false),
            "log bytes, once the last one is done"
        );
        assert_eq!(c.request(t0 + Duration::from_secs(1)), 2);
        c.done_seen = 2;
        assert!(
            !c.due(&policy, t0 + Duration::from_secs(60), false),
            "interval from the request"
        );
        assert!(c.due(&policy, t0 + Duration::from_secs(61), false));
    }
}
