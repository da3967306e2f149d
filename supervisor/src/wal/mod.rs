//! The event log (write-ahead log): its segment and record format, reader and writer
//! ([`segment`], re-exported here), the payload codec, the journal thread that commits
//! groups and syncs them, the data dir and its manifest, and the offline verifier.

pub mod codec;
pub mod datadir;
pub mod journal;
mod segment;
#[cfg(test)]
pub(crate) mod testing;
pub mod verify;

pub use segment::*;
