//! Which keys the log wrote since a point in it: the check of a transaction that depends on
//! what it read earlier (WATCH, and the commands that read before they write).
//!
//! The sequencer gives every write its place in the log, so it alone can say whether a key
//! was written between two places. It keeps, per stripe of the key space (a key's stripe is
//! bits of its hash), the sequence number of the last record that wrote a key of the stripe,
//! and the last FLUSHALL's. A condition "`key` unchanged since `since`" holds while neither
//! moved past `since` (a FLUSHALL counts only for a key that existed when it was read: one
//! missing then is missing after it, or was written since). Two keys may share a stripe: a
//! write to one then fails a condition on the other too, a spurious abort (the client
//! retries, as after any WATCH abort), never a missed one. The table has a fixed size,
//! whatever the number of keys or watchers.
//!
//! A condition names a record that read its key, so writes before the first record with a
//! read need not be noted: the table exists from that record on ([`Versions::track`]), and
//! a server whose clients never WATCH (nor run MSETNX, RENAME, COPY) pays nothing for it
//! (its 512 KiB, touched at random by every write, cost about 6% of SET's CPU).

use corral_worker::command::Op;
use shm_protocol::hash::key_hash;

use crate::base::ops::OwnedOp;
use crate::pipeline::msg::Unchanged;

/// Stripes of the key space (a power of two): 512 KiB of sequence numbers; the chance that
/// one write fails an unrelated condition is one in this.
const STRIPES: usize = 1 << 16;

/// The last record that wrote each stripe of the key space.
#[derive(Default)]
pub struct Versions {
    /// From the first record with a read on.
    last: Option<Box<[u64]>>,
    /// The last record that emptied every shard (FLUSHALL, FLUSHDB).
    flushed: u64,
}

impl std::fmt::Debug for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions")
            .field("flushed", &self.flushed)
            .finish_non_exhaustive()
    }
}

fn stripe(key: &[u8]) -> usize {
    // The high bits: the shared-memory tables index by the low ones.
    (key_hash(key) >> 48) as usize & (STRIPES - 1)
}

impl Versions {
    /// Notes writes from now on: the next record holds a read, which a condition may name.
    pub fn track(&mut self) {
        if self.last.is_none() {
            self.last = Some(vec![0; STRIPES].into_boxed_slice());
        }
    }

    /// Notes that record `seq` holds `op` (reads change nothing).
    pub fn wrote(&mut self, op: &OwnedOp, seq: u64) {
        let Some(last) = self.last.as_mut() else {
            return;
        };
        match op.as_op() {
            Op::Read { .. } => {}
            Op::Flush => self.flushed = seq,
            _ => last[stripe(op.key())] = seq,
        }
    }

    /// Whether `c` holds: its key unwritten since its place, and not expired by `now_ms`
    /// (a key that expires after it was read has changed, as Redis' WATCH sees it).
    #[must_use]
    pub fn holds(&self, c: &Unchanged, now_ms: u64) -> bool {
        let Some(last) = &self.last else {
            // A condition names a record with a read, which started the tracking.
            debug_assert!(false, "a condition before any read record");
            return false;
        };
        let expired = c.deadline_ms != 0 && c.deadline_ms <= now_ms;
        let flushed = c.existed && self.flushed > c.since;
        last[stripe(&c.key)] <= c.since && !flushed && !expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchanged(key: &[u8], since: u64, deadline_ms: u64) -> Unchanged {
        Unchanged {
            key: key.to_vec(),
            since,
            deadline_ms,
            existed: true,
            watched: true,
        }
    }

    #[test]
    fn a_write_after_the_read_fails_the_condition_and_one_before_does_not() {
        let mut v = Versions::default();
        v.track();
        v.wrote(&OwnedOp::from(Op::Del { key: b"a" }), 5);
        assert!(v.holds(&unchanged(b"a", 5, 0), 0));
        assert!(v.holds(&unchanged(b"a", 7, 0), 0));
        assert!(!v.holds(&unchanged(b"a", 4, 0), 0));
        // Reads are not writes.
        v.wrote(&OwnedOp::from(Op::Read { key: b"a" }), 9);
        assert!(v.holds(&unchanged(b"a", 5, 0), 0));
        // A key in another stripe is not touched.
        let other = (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| stripe(k) != stripe(b"a"))
            .expect("another stripe");
        assert!(v.holds(&unchanged(&other, 1, 0), 0));
    }

    #[test]
    fn a_flush_fails_every_condition_and_an_expired_key_has_changed() {
        let mut v = Versions::default();
        v.track();
        v.wrote(&OwnedOp::from(Op::Flush), 10);
        assert!(!v.holds(&unchanged(b"x", 9, 0), 0));
        // A key missing when read is missing after the flush too (or was written since).
        let missing = Unchanged {
            existed: false,
            ..unchanged(b"x", 9, 0)
        };
        assert!(v.holds(&missing, 0));
        assert!(v.holds(&unchanged(b"x", 10, 0), 0));
        assert!(v.holds(&unchanged(b"x", 10, 1_000), 999));
        assert!(!v.holds(&unchanged(b"x", 10, 1_000), 1_000));
    }
}
