//! Where the outcomes of one connection's batch of writes gather.
//!
//! A connection arms its [`Ticket`] for `n` writes and submits them; each write travels as a
//! [`Pending`] through the sequencer and a completion reader, which fills in its outcome.
//! The ticket notifies its owner (the connection's event loop) exactly once per batch, when
//! the last outcome arrives, however many writes the batch held. A `Pending` dropped without an outcome (its
//! holder gave up) still counts, with [`Failure::Lost`], so a connection never waits
//! forever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use corral_worker::command::Outcome;

/// Why a write has no outcome to report. Two kinds, never mixed up: a *refused* write was
/// not applied and never will be (its error reply says so, and a retry is safe); for a
/// write whose *outcome is unknown* (it is, or may be, in the event log, and applied now or
/// at a later recovery) no error is sent: the connection is closed, as a network failure
/// would, so that no client takes it for "not applied".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused: the shard is parked after repeated crashes.
    Parked(u32),
    /// Refused: the shard is restarting and its queue is full.
    Unavailable(u32),
    /// Refused: the supervisor is shutting down.
    ShuttingDown,
    /// Refused: the event log could not take the write (OS error number, or -1), and its
    /// bytes were removed again.
    LogFailed(i32),
    /// Refused: the event log stopped taking writes (a failed sync, or the data dir deleted
    /// or replaced under the supervisor); a restart is required.
    LogStopped,
    /// Refused: a key the client WATCHed was written or expired since; nothing of the
    /// transaction was applied (EXEC answers a null array).
    Aborted,
    /// Refused: a key a command read to decide its writes (MSETNX, RENAME, COPY) was
    /// written or expired since; nothing was applied, and the command reads again.
    Changed,
    /// Refused (SAVE): the checkpoint of this shard could not be written (its worker says
    /// why in the log); the event log still holds every write.
    CheckpointFailed(u32),
    /// Unknown: the shard's worker exited and the write could not be replayed with an
    /// outcome.
    WorkerDied(u32),
    /// Unknown: the write's holder dropped it without an outcome (an internal fault).
    Lost,
    /// Unknown: applied, but the event log could not be synced (OS error number): it may or
    /// may not survive a crash.
    NotDurable(i32),
    /// Unknown: logged, but the shard stayed parked through the probe that would have
    /// applied it; it is applied when the shard recovers.
    ParkedLogged(u32),
    /// Unknown: logged, but the supervisor stopped before applying it; the next start does.
    Interrupted,
    /// Unknown: the event log write failed and its bytes could not be removed again.
    LogBroken(i32),
}

impl Failure {
    /// Whether the write's outcome is unknown (the connection closes instead of an error).
    #[must_use]
    pub fn outcome_unknown(self) -> bool {
        matches!(
            self,
            Self::WorkerDied(_)
                | Self::Lost
                | Self::NotDurable(_)
                | Self::ParkedLogged(_)
                | Self::Interrupted
                | Self::LogBroken(_)
        )
    }
}

impl Failure {
    /// What a read in no record (`InFlight::unlogged`) gets where a logged write would get
    /// `self`: a read changes nothing, so what leaves a write's outcome unknown refuses it.
    #[must_use]
    pub fn for_unlogged(self) -> Self {
        match self {
            Self::Interrupted => Self::ShuttingDown,
            Self::ParkedLogged(id) => Self::Parked(id),
            Self::WorkerDied(id) => Self::Unavailable(id),
            other => other,
        }
    }
}

/// One write's outcome, or why it has none.
pub type WriteResult = Result<Outcome, Failure>;

/// The outcomes of one batch; owned by a connection, reused across its batches.
pub struct Ticket {
    results: Mutex<Vec<Option<WriteResult>>>,
    /// Each write's sequence number (0 until it is logged), for sampled logs.
    seqs: Mutex<Vec<u64>>,
    remaining: AtomicUsize,
    /// The highest sequence number given to a write of the batch.
    last_seq: AtomicU64,
    notify: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// A ticket that calls `notify` once per batch, when its last outcome arrives.
    #[must_use]
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            results: Mutex::new(Vec::new()),
            seqs: Mutex::new(Vec::new()),
            remaining: AtomicUsize::new(0),
            last_seq: AtomicU64::new(0),
            notify: Box::new(notify),
        })
    }

    /// Prepares for `count` outcomes; returns the claims to hand out, one per write.
    ///
    /// Must not be called while claims of the previous batch are outstanding (see
    /// [`Ticket::is_complete`]).
    pub fn arm(self: &Arc<Self>, count: usize) -> impl Iterator<Item = Pending> + '_ {
        {
            let mut results = self.lock();
            results.clear();
            results.resize(count, None);
        }
        {
            let mut seqs = self.seqs.lock().unwrap_or_else(PoisonError::into_inner);
            seqs.clear();
            seqs.resize(count, 0);
        }
        self.last_seq.store(0, Ordering::Relaxed);
        self.remaining.store(count, Ordering::Release);
        (0..count).map(|index| Pending {
            ticket: Some(Arc::clone(self)),
            index,
        })
    }

    /// Whether every claim of the batch has its outcome.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        // SYNC POINT: pairs with the AcqRel decrement in `fill`.
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// The highest sequence number given to a write of the batch (0 if none was logged);
    /// read once the batch [`Ticket::is_complete`].
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Moves the outcomes of a complete batch into `out`, in submission order.
    pub fn take(&self, out: &mut Vec<Option<WriteResult>>) {
        std::mem::swap(&mut *self.lock(), out);
    }

    /// The sequence number write `index` of the batch was logged with (0: not logged).
    #[must_use]
    pub fn seq_of(&self, index: usize) -> u64 {
        self.seqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .copied()
            .unwrap_or(0)
    }

    fn fill(&self, index: usize, result: WriteResult) {
        if let Some(entry) = self.lock().get_mut(index) {
            *entry = Some(result);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.notify)();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<WriteResult>>> {
        // The data is plain values; a panic elsewhere leaves it usable.
        self.results.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One write's claim on its ticket. Completing it records the outcome; dropping it
/// records [`Failure::Lost`].
#[derive(Debug)]
pub struct Pending {
    ticket: Option<Arc<Ticket>>,
    index: usize,
}

impl Pending {
    /// Notes the sequence number the write was logged with (its acknowledgement waits for
    /// that to be durable). Happens before the outcome, which the acquire in
    /// [`Ticket::is_complete`] publishes.
    pub fn set_seq(&self, seq: u64) {
        if let Some(ticket) = &self.ticket {
            ticket.last_seq.fetch_max(seq, Ordering::Relaxed);
            if let Some(entry) = ticket
                .seqs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(self.index)
            {
                *entry = seq;
            }
        }
    }

    /// Records the write's outcome.
    pub fn complete(mut self, result: WriteResult) {
        if let Some(ticket) = self.ticket.take() {
            ticket.fill(self.index, result);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.fill(self.index, Err(Failure::Lost));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_leaves_a_write_unknown_refuses_a_read_in_no_record() {
        for f in [
            Failure::Interrupted,
            Failure::ParkedLogged(2),
            Failure::WorkerDied(2),
        ] {
            assert!(f.outcome_unknown());
            assert!(!f.for_unlogged().outcome_unknown(), "{f:?}");
        }
        assert_eq!(Failure::LogStopped.for_unlogged(), Failure::LogStopped);
    }

    #[test]
    fn notified_once_all_outcomes_are_in_and_drops_count_as_lost() {
        let notified = Arc::new(AtomicUsize::new(0));
        let waiter = std::thread::current();
        let ticket = {
            let notified = Arc::clone(&notified);
            Ticket::new(move || {
                notified.fetch_add(1, Ordering::AcqRel);
                waiter.unpark();
            })
        };
        for round in 1..=50 {
            let claims: Vec<Pending> = ticket.arm(3).collect();
            assert!(!ticket.is_complete());
            let filler = std::thread::spawn(move || {
                let mut claims = claims.into_iter();
                let first = claims.next().unwrap();
                let second = claims.next().unwrap();
                let third = claims.next().unwrap();
                third.complete(Ok(Outcome::Int(3)));
                drop(second);
                first.complete(Ok(Outcome::Ok));
            });
            while !ticket.is_complete() {
                std::thread::park();
            }
            let mut out = Vec::new();
            ticket.take(&mut out);
            assert_eq!(
                out,
                vec![
                    Some(Ok(Outcome::Ok)),
                    Some(Err(Failure::Lost)),
                    Some(Ok(Outcome::Int(3)))
                ]
            );
            filler.join().unwrap();
            assert_eq!(notified.load(Ordering::Acquire), round);
        }
    }
}
