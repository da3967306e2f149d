//! The supervisor behind the `corral` binary: command line, data dir, RESP front door,
//! sequencer, event log and worker lifecycle. `main.rs` wires them together.

#![forbid(unsafe_code)]

pub mod cli;
pub mod codec;
pub mod datadir;
pub mod http;
pub mod journal;
pub mod lifecycle;
pub mod log;
pub mod metrics;
pub mod replay;
pub mod resp;
pub mod sequencer;
pub mod server;
pub mod session;
pub mod shard;
pub mod slot;
pub mod ticket;
pub mod verify;
pub mod wal;

/// A duration in nanoseconds, saturating (584 years fit).
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
