//! Supervision: spawning, watching and restarting the workers, and parking a shard that
//! crash-loops.

pub mod lifecycle;
pub mod policy;
