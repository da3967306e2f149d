//! A client write as the supervisor owns it, and a write handed to a worker awaiting its
//! completion.

use corral_worker::command::{Op, SetCondition};

use crate::base::ticket::Pending;

/// An owned write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedOp {
    /// SET.
    Set {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// NX / XX.
        condition: SetCondition,
    },
    /// DEL of one key.
    Del {
        /// Key.
        key: Vec<u8>,
    },
    /// INCRBY.
    IncrBy {
        /// Key.
        key: Vec<u8>,
        /// Increment.
        delta: i64,
    },
}

impl OwnedOp {
    /// Borrowed form for encoding.
    #[must_use]
    pub fn as_op(&self) -> Op<'_> {
        match self {
            Self::Set {
                key,
                value,
                condition,
            } => Op::Set {
                key,
                value,
                condition: *condition,
            },
            Self::Del { key } => Op::Del { key },
            Self::IncrBy { key, delta } => Op::IncrBy { key, delta: *delta },
        }
    }
}

impl From<Op<'_>> for OwnedOp {
    fn from(op: Op<'_>) -> Self {
        match op {
            Op::Set {
                key,
                value,
                condition,
            } => Self::Set {
                key: key.to_vec(),
                value: value.to_vec(),
                condition,
            },
            Op::Del { key } => Self::Del { key: key.to_vec() },
            Op::IncrBy { key, delta } => Self::IncrBy {
                key: key.to_vec(),
                delta,
            },
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
    /// Where the outcome goes.
    pub pending: Pending,
}
