//! Transaction gates: what keeps readers from seeing part of a transaction.
//!
//! A transaction's ops reach its shards' workers at different moments, and each worker
//! makes each op visible as it applies it; the reads of the front come straight from
//! shared memory. So the front must know when a read could see part of one: a gate per
//! hash slot, one word each: the number of transactions in flight that write the slot
//! (high half) and a version that moves whenever one starts or ends (low half).
//!
//! The sequencer closes the gates of a transaction's slots before any of its ops is pushed
//! to a ring, and the last of its ops to be applied (or dropped unapplied) opens them
//! again ([`Guard`]). A reader loads the gate of each key's slot before its read and again
//! after all its reads ([`Gates::word`]); if any was closed or moved, the read may have seen
//! a transaction in part, and the front asks again through the sequencer instead, ordered
//! after every transaction in flight (a read that sees an op of a transaction happens after
//! that op was pushed, hence after its gate closed, so the check after the read sees it).
//!
//! One more word counts every transaction in flight the same way ([`Gates::all`]): a
//! reader that finds it open loads no slot's gate, and if it is the same after its reads,
//! no transaction began or ended meanwhile (one did if any of its ops was seen), so the
//! read is whole; only while transactions are in flight do readers check their slots'
//! gates. A GET then costs no gate cache line of its own (a slot's gate word is one of
//! 16,384, a cache miss at random keys).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::base::slot::SLOTS;

/// One transaction in flight, in a gate word's high half.
const IN_FLIGHT: u64 = 1 << 32;

/// The gates of every hash slot.
#[derive(Debug)]
pub struct Gates {
    words: Box<[AtomicU64]>,
    /// Every slot's transactions at once.
    all: AtomicU64,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            words: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }
}

impl Gates {
    /// The gate word of `slot`: compare two loads with [`Gates::is_open`] and equality.
    #[must_use]
    pub fn word(&self, slot: u32) -> u64 {
        // SYNC POINT: pairs with the SeqCst updates in `close` and `Guard::drop`.
        self.words[slot as usize].load(Ordering::SeqCst)
    }

    /// The word of every slot at once: open while no transaction is in flight, moving
    /// whenever one begins or ends.
    #[must_use]
    pub fn all(&self) -> u64 {
        // SYNC POINT: pairs with the SeqCst updates in `close` and `Guard::drop`.
        self.all.load(Ordering::SeqCst)
    }

    /// Whether no transaction writing the slot was in flight when `word` was loaded.
    #[must_use]
    pub fn is_open(word: u64) -> bool {
        word < IN_FLIGHT
    }

    /// Closes the gates of `slots` (each once: callers deduplicate) until the returned
    /// guard's last clone is dropped.
    #[must_use]
    pub fn close(self: &Arc<Self>, slots: Vec<u32>) -> Arc<Guard> {
        // SYNC POINT: as each slot's, below.
        self.all.fetch_add(IN_FLIGHT + 1, Ordering::SeqCst);
        for &slot in &slots {
            // SYNC POINT: before the transaction's first push into a ring (the caller's
            // program order), so a reader that sees any of its ops sees this.
            self.words[slot as usize].fetch_add(IN_FLIGHT + 1, Ordering::SeqCst);
        }
        Arc::new(Guard {
            gates: Arc::clone(self),
            slots,
        })
    }
}

/// A transaction's closed gates; dropping the last clone opens them.
#[derive(Debug)]
pub struct Guard {
    gates: Arc<Gates>,
    slots: Vec<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for &slot in &self.slots {
            let word = &self.gates.words[slot as usize];
            // One fewer in flight, and the version moves: wrapping add of 1 - IN_FLIGHT.
            let before = word.fetch_add(1u64.wrapping_sub(IN_FLIGHT), Ordering::SeqCst);
            assert!(
                before >= IN_FLIGHT,
                "a gate opened more often than it closed"
            );
        }
        // After the slots: a reader that finds every transaction done finds its slots open.
        let before = self
            .gates
            .all
            .fetch_add(1u64.wrapping_sub(IN_FLIGHT), Ordering::SeqCst);
        assert!(before >= IN_FLIGHT, "a transaction ended twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_is_closed_while_any_guard_lives_and_moves_each_time() {
        let gates = Arc::new(Gates::default());
        let before = gates.word(7);
        let all_before = gates.all();
        assert!(Gates::is_open(before) && Gates::is_open(all_before));
        let a = gates.close(vec![7, 9]);
        let b = gates.close(vec![7]);
        let during = gates.word(7);
        assert!(!Gates::is_open(during) && !Gates::is_open(gates.all()));
        drop(a);
        assert!(!Gates::is_open(gates.word(7)), "b still holds slot 7");
        assert!(Gates::is_open(gates.word(9)));
        let clone = Arc::clone(&b);
        drop(b);
        assert!(!Gates::is_open(gates.word(7)), "a clone holds it");
        drop(clone);
        let after = gates.word(7);
        assert!(Gates::is_open(after) && Gates::is_open(gates.all()));
        assert_ne!(gates.all(), all_before, "transactions came and went");
        // Open again, but not the word a reader loaded before: its read is not trusted.
        assert_ne!(after, before);
        assert!(Gates::is_open(gates.word(8)) && gates.word(8) == 0);
    }
}
