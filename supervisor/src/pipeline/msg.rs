//! The messages between the supervisor's threads: to the sequencer ([`SeqMsg`]) and to the
//! lifecycle thread ([`LifecycleEvent`]). They live below both, so the threads that send them
//! need not import the threads that receive them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use shm_protocol::os::{Segment, SegmentRing};
use shm_protocol::ring::Producer;

use crate::base::ops::{InFlight, OwnedOp};
use crate::base::shard::Generation;
use crate::base::ticket::Pending;
use crate::wal::codec::LifecycleRecord;

/// A write routed to a shard.
#[derive(Debug)]
pub struct WriteOp {
    /// Target shard.
    pub shard: u32,
    /// The write.
    pub op: OwnedOp,
    /// Where its outcome goes.
    pub pending: Pending,
}

/// A condition of a transaction: `key` unwritten since the record `since` (where it was
/// read) and, if it had a deadline then, not expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unchanged {
    /// The key.
    pub key: Vec<u8>,
    /// The record it was read at.
    pub since: u64,
    /// Its deadline then (Unix ms; 0: none or missing).
    pub deadline_ms: u64,
    /// Whether it existed then: a FLUSHALL since changes only a key that did (a key
    /// created since was written since), as Redis' FLUSHALL touches only the watched keys
    /// it removes.
    pub existed: bool,
    /// WATCHed by the client (a failure aborts the transaction for good:
    /// [`crate::base::ticket::Failure::Aborted`]), or read by a command that decided its
    /// writes on it (it reads again: [`crate::base::ticket::Failure::Changed`]).
    pub watched: bool,
}

/// Messages to the sequencer.
#[derive(Debug)]
pub enum SeqMsg {
    /// Writes of one connection's batch, in order.
    Submit(Vec<WriteOp>),
    /// A transaction: its writes in order, logged as one record (all or none), on any
    /// shards; refused whole if one of its shards does not serve, or
    /// ([`crate::base::ticket::Failure::Aborted`], [`crate::base::ticket::Failure::Changed`])
    /// if one of its conditions fails.
    Transaction {
        /// The writes.
        writes: Vec<WriteOp>,
        /// What must not have changed since it was read (WATCH).
        unchanged: Vec<Unchanged>,
    },
    /// A lifecycle event for the event log.
    Lifecycle(LifecycleRecord),
    /// A shard changed state or generation.
    ShardChanged(u32),
    /// Writes a dead generation took but never completed (from its completion reader).
    Orphans {
        /// Shard.
        shard: u32,
        /// The writes, in sequence order.
        orphans: Vec<InFlight>,
    },
    /// A replay finished: the ring's producer comes back for new writes.
    Replayed(Replayed),
    /// Checkpoint every shard with new writes now (BGSAVE).
    CheckpointAll,
    /// Checkpoint every shard with new writes and complete the claim once every one of
    /// them has written a checkpoint holding its writes applied so far (SAVE).
    Save(Pending),
    /// Flush what can be flushed, fail the rest, and exit.
    Stop,
}

/// The producer side of a request ring.
pub type RequestProducer = Producer<SegmentRing<Arc<Segment>>>;

/// What a finished replay hands back to the sequencer.
#[derive(Debug)]
pub struct Replayed {
    /// The generation replayed into.
    pub generation: Arc<Generation>,
    /// Its ring's producer.
    pub producer: RequestProducer,
    /// Its completion reader's entries.
    pub inflight: Sender<InFlight>,
}

/// Events the lifecycle thread reacts to (from the completion readers, replays and the
/// binary).
#[derive(Debug)]
pub enum LifecycleEvent {
    /// A worker process exited (not yet reaped).
    Exited {
        /// Shard.
        shard: u32,
        /// Generation.
        generation: u64,
    },
    /// A worker published `Ready`.
    Ready {
        /// Shard.
        shard: u32,
        /// Generation.
        generation: u64,
    },
    /// A worker's replay finished: the shard serves again.
    Recovered {
        /// Shard.
        shard: u32,
        /// Generation.
        generation: u64,
        /// Writes replayed from the event log.
        records: u64,
        /// How long the replay took.
        duration: Duration,
    },
    /// Begin stopping the workers; finish by `deadline`.
    Stop {
        /// When remaining workers are killed.
        deadline: Instant,
    },
}
