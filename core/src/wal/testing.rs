//! Test support: a temporary directory and an event log written record by record, for the
//! unit tests of the layers that read the log (verify, replay).

use std::path::{Path, PathBuf};

use shm_protocol::layout::{Geometry, ShardLimits};

use crate::wal::{check_head, scan, HeadRecorder, Kind, WalError, Writer, WriterOptions};

/// Appends one record's payload.
pub type Encode = Box<dyn Fn(&mut Vec<u8>)>;
/// The records of one commit.
pub type Group = Vec<(Kind, Encode)>;

/// A directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("corral-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a new event log in `wal` (created here), one synced commit per group of
/// `groups`; each record is its kind and a payload encoder. The records carry the log's
/// durable sequence number as a real writer does.
pub fn write_log(wal: &Path, record_head: HeadRecorder, groups: &[Group]) {
    std::fs::create_dir_all(wal).expect("wal dir");
    let summary = scan(wal, .., |_| Ok::<(), WalError>(())).expect("empty log scans");
    check_head(&summary, None).expect("no head recorded yet");
    let options = WriterOptions {
        segment_bytes: 4096,
        sync_on_commit: true,
    };
    let mut w = Writer::open(wal, &summary, options, record_head).expect("writer opens");
    for group in groups {
        let durable = w.next_seq() - 1;
        for (kind, payload) in group {
            w.append(*kind, durable, |buf| payload(buf));
        }
        w.commit().expect("commit");
    }
}

/// A shard geometry small enough for a unit test's segment (64 keys, 4 KiB rings).
///
/// # Panics
/// Never: the limits are valid.
#[must_use]
pub fn small_geometry() -> Geometry {
    Geometry::from_limits(&ShardLimits {
        ring_bytes: Some(4096),
        max_keys: 64,
        max_key_bytes: 64,
        max_value_bytes: 256,
        data_bytes: 4096,
    })
    .expect("valid limits")
}
