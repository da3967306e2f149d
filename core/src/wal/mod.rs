//! The event log (write-ahead log): its segment and record format, reader and writer
//! ([`segment`], re-exported here), the payload codec, the appender that commits
//! groups and syncs them, the data dir and its manifest, and the offline verifier.

pub mod appender;
pub mod codec;
pub mod datadir;
mod segment;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verify;

pub use segment::*;
