//! The supervisor's core types: a write, its ticket, a shard's shared state, the hash slot,
//! the transaction gates.
//! No threads and no I/O here; every other layer builds on these.

pub mod gate;
pub mod ops;
pub mod shard;
pub mod slot;
pub mod ticket;

/// A duration in nanoseconds, saturating (584 years fit).
pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
