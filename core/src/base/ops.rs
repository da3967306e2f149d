//! A client write as the supervisor owns it, and a write handed to a worker awaiting its
//! completion.

use corral_worker::command::{Op, Parts};

use crate::base::ticket::Pending;

/// An owned write: the parts of an [`Op`] (tag, key, value, argument, deadline), owned. Built only
/// from an op, so its parts always form one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedOp {
    tag: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    arg: i64,
    deadline: u64,
}

impl OwnedOp {
    /// The op as it is carried (the ring and the log encode these).
    #[must_use]
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            tag: self.tag,
            key: &self.key,
            value: &self.value,
            arg: self.arg,
            deadline: self.deadline,
        }
    }

    /// The op.
    ///
    /// # Panics
    /// Never: the parts came from an op.
    #[must_use]
    pub fn as_op(&self) -> Op<'_> {
        Op::from_parts(self.parts()).expect("an OwnedOp holds the parts of an op")
    }

    /// The key written.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl From<Op<'_>> for OwnedOp {
    fn from(op: Op<'_>) -> Self {
        let Parts {
            tag,
            key,
            value,
            arg,
            deadline,
        } = op.parts();
        Self {
            tag,
            key: key.to_vec(),
            value: value.to_vec(),
            arg,
            deadline,
        }
    }
}

/// A write pushed into a ring, awaiting its completion. Its entry is queued to the
/// generation's completion reader before its record becomes visible in the ring, so a
/// completion without a queued entry is a replayed record nobody waits for.
#[derive(Debug)]
pub struct InFlight {
    /// Sequence number.
    pub seq: u64,
    /// Its place among the ops its record holds for this shard (0 but in a transaction).
    pub part: u32,
    /// Where the outcome goes.
    pub pending: Pending,
    /// A transaction's closed gates, held until its every op is done with.
    pub guard: Option<std::sync::Arc<crate::base::gate::Guard>>,
    /// A read that is in no record (its sequence number is the last record's before it):
    /// if its worker dies, it fails instead of waiting for a replay.
    pub unlogged: bool,
}

impl InFlight {
    /// Fails it with what a logged write gets here (a read in no record is refused).
    pub fn fail(self, failure: crate::base::ticket::Failure) {
        let failure = if self.unlogged {
            failure.for_unlogged()
        } else {
            failure
        };
        self.pending.complete(Err(failure));
    }
}
