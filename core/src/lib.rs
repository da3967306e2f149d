//! Corral's lower layers, a crate of their own so that cargo refuses an import from the
//! layers above (the pipeline, supervision, the front door, observability, the CLI, all in
//! the `corral` crate). Bottom to top; each imports only the ones before it (the
//! `corral` crate's `tests/layers.rs` checks that too):
//!
//! - [`base`]: a write, its ticket, a shard's shared state (no threads, no I/O);
//! - [`telemetry`]: metric handles, heartbeats, logging;
//! - [`wal`]: the event log, its codec, the appender (group commit, sync thread), the data
//!   dir, `verify`.

#![forbid(unsafe_code)]

pub mod base;
pub mod telemetry;
pub mod wal;
