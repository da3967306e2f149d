//! SAVE requests waiting for their checkpoints.
//!
//! A SAVE is done once every shard that had writes applied past its last checkpoint when
//! the SAVE arrived has written a checkpoint holding them. The sequencer forces those
//! checkpoints and reports each shard's progress here after every look at them; a shard
//! whose checkpoint fails, or that stops serving, fails the SAVEs waiting on it.

use corral_worker::command::Outcome;

use crate::base::ticket::{Failure, Pending};

/// One SAVE: its claim and the shards it still waits for, each with the sequence number
/// its checkpoint must reach.
#[derive(Debug)]
struct Wait {
    pending: Pending,
    shards: Vec<(u32, u64)>,
}

/// What the sequencer saw of a shard's checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Its newest checkpoint holds the writes through this sequence number.
    Through(u64),
    /// It cannot checkpoint for now (the failure its waiting SAVEs get).
    Failed(Failure),
}

/// The SAVEs in progress.
#[derive(Debug, Default)]
pub(crate) struct Saves {
    waits: Vec<Wait>,
}

impl Saves {
    /// Starts a SAVE that needs checkpoints of `shards` (shard, sequence number); with none
    /// it is done at once.
    pub(crate) fn add(&mut self, pending: Pending, shards: Vec<(u32, u64)>) {
        if shards.is_empty() {
            pending.complete(Ok(Outcome::Ok));
        } else {
            self.waits.push(Wait { pending, shards });
        }
    }

    /// Whether no SAVE is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Whether a SAVE waits for a checkpoint of `shard`.
    pub(crate) fn wants(&self, shard: u32) -> bool {
        self.waits
            .iter()
            .any(|w| w.shards.iter().any(|&(s, _)| s == shard))
    }

    /// Applies what was seen of `shard`: the SAVEs it satisfies lose it from their list
    /// (and complete when the list is empty); on a failure, the SAVEs waiting on it fail.
    pub(crate) fn report(&mut self, shard: u32, progress: Progress) {
        let mut i = 0;
        while i < self.waits.len() {
            let wait = &mut self.waits[i];
            let failed = match progress {
                Progress::Through(seq) => {
                    wait.shards
                        .retain(|&(s, target)| s != shard || target > seq);
                    None
                }
                Progress::Failed(f) => wait.shards.iter().any(|&(s, _)| s == shard).then_some(f),
            };
            if failed.is_some() || wait.shards.is_empty() {
                let wait = self.waits.swap_remove(i);
                wait.pending.complete(failed.map_or(Ok(Outcome::Ok), Err));
            } else {
                i += 1;
            }
        }
    }

    /// Fails every waiting SAVE with `failure`.
    pub(crate) fn fail_all(&mut self, failure: Failure) {
        for wait in self.waits.drain(..) {
            wait.pending.complete(Err(failure));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::base::ticket::{Ticket, WriteResult};

    fn claims(n: usize) -> (Arc<Ticket>, Vec<Pending>) {
        let ticket = Ticket::new(|| {});
        let claims = ticket.arm(n).collect();
        (ticket, claims)
    }

    fn outcomes(ticket: &Ticket) -> Vec<Option<WriteResult>> {
        let mut out = Vec::new();
        ticket.take(&mut out);
        out
    }

    #[test]
    fn a_save_completes_once_every_shard_it_waits_for_reaches_its_target() {
        let (ticket, mut c) = claims(2);
        let mut saves = Saves::default();
        saves.add(c.remove(0), vec![(0, 10), (2, 5)]);
        saves.add(c.remove(0), vec![]);
        assert!(saves.wants(0) && saves.wants(2) && !saves.wants(1));
        saves.report(0, Progress::Through(9));
        saves.report(2, Progress::Through(7));
        saves.report(1, Progress::Failed(Failure::Unavailable(1)));
        assert!(!ticket.is_complete(), "shard 0 is still short of 10");
        saves.report(0, Progress::Through(10));
        assert!(ticket.is_complete() && saves.is_empty());
        assert_eq!(
            outcomes(&ticket),
            vec![Some(Ok(Outcome::Ok)), Some(Ok(Outcome::Ok))]
        );
    }

    #[test]
    fn a_failed_shard_fails_only_the_saves_that_wait_for_it() {
        let (ticket, mut c) = claims(3);
        let mut saves = Saves::default();
        saves.add(c.remove(0), vec![(0, 3), (1, 3)]);
        saves.add(c.remove(0), vec![(1, 4)]);
        saves.add(c.remove(0), vec![(0, 8)]);
        saves.report(0, Progress::Failed(Failure::CheckpointFailed(0)));
        assert!(!ticket.is_complete() && saves.wants(1) && !saves.wants(0));
        saves.fail_all(Failure::ShuttingDown);
        assert!(saves.is_empty());
        assert_eq!(
            outcomes(&ticket),
            vec![
                Some(Err(Failure::CheckpointFailed(0))),
                Some(Err(Failure::ShuttingDown)),
                Some(Err(Failure::CheckpointFailed(0)))
            ]
        );
    }
}
