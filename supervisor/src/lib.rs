//! The supervisor behind the `corral` binary, in layers; each imports only the ones above it
//! in this list (ARCHITECTURE.md draws them, and `tests/layers.rs` checks it):
//!
//! - [`base`]: a write, its ticket, a shard's shared state (no threads, no I/O);
//! - [`telemetry`]: metric handles, heartbeats, logging;
//! - [`wal`]: the event log, its codec, the appender (group commit, sync thread), the data dir, `verify`;
//! - [`pipeline`]: the sequencer, the completion readers, replay;
//! - [`supervision`]: the worker lifecycle;
//! - [`front`]: RESP, sessions, the event loops;
//! - [`observe`]: the HTTP endpoints;
//! - [`cli`]: the command line (the binary in `main.rs` wires everything together).

#![forbid(unsafe_code)]

// The lower layers live in `corral-core` (so cargo refuses an import upward from them);
// re-exported here, the layers above name them as `crate::base` and so on.
pub use corral_core::{base, telemetry, wal};

pub mod cli;
pub mod front;
pub mod observe;
pub mod pipeline;
pub mod supervision;
