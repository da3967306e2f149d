//! Checkpoints: a worker's shard on disk, so that recovery replays only the event-log
//! records after it.
//!
//! One file per checkpoint, `<dir>/<seq, 20 digits>.ckpt`, where `seq` is the last event
//! log sequence number the state includes:
//!
//! ```text
//! offset size  header (64 bytes, little-endian)
//!      0    8  magic "CORRALCK"
//!      8    4  format version (2; 1 is still read)
//!     12    4  worker (shard index)
//!     16    8  seq covered
//!     24    8  state digest (wrapping sum of entry digests, as the table keeps it)
//!     32    8  entry count
//!     40    8  body length in bytes
//!     48    4  crc32c of the body
//!     52    8  reserved (0)
//!     60    4  crc32c of bytes 0..60
//!     64       body: count x [key_len u32 | value_len u32 | deadline u64 | key | value]
//! ```
//!
//! The deadline is when the key expires, Unix ms (0: never); format 1 had none. An expired
//! key is kept as it is in the table (its removal is a write in the event log, replayed
//! after the checkpoint like any other).
//!
//! A checkpoint is written to a temporary file, fsynced, renamed into place, and the
//! directory fsynced: a crash leaves either the old set of checkpoints or the new one. The
//! newest two are kept; when the newest does not verify (checksums, count, digest) it is
//! renamed aside with a `.damaged` suffix and the older one is used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use shm_protocol::hash::entry_digest;
use shm_protocol::table::{TableMemory, TableWriter};

/// File magic.
pub const MAGIC: [u8; 8] = *b"CORRALCK";
/// Format version written.
pub const VERSION: u32 = 2;
/// The oldest format version read.
const OLDEST_VERSION: u32 = 1;
/// Header size.
pub const HEADER_BYTES: usize = 64;
/// How many checkpoints are kept.
pub const KEEP: usize = 2;

/// A copy of a shard's state at one sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Shard index.
    pub worker: u32,
    /// Last sequence number the state includes.
    pub seq: u64,
    /// State digest.
    pub digest: u64,
    /// Number of entries.
    pub count: u64,
    /// The body's format version.
    pub version: u32,
    /// The entries, encoded as in the file body.
    pub body: Vec<u8>,
}

/// Why a checkpoint file cannot be used.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing failed.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: io::Error,
    },
    /// The file does not verify.
    Damaged {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { what, error } => write!(f, "{what}: {error}"),
            Self::Damaged { file, reason } => {
                write!(f, "checkpoint {} is damaged: {reason}", file.display())
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CheckpointError {
    let what = what.into();
    move |error| CheckpointError::Io { what, error }
}

impl Snapshot {
    /// Copies every entry of `table`, which includes the writes up to `seq`.
    pub fn take<M: TableMemory>(worker: u32, seq: u64, table: &TableWriter<M>) -> Self {
        let mut body = Vec::with_capacity(usize::try_from(table.live_bytes()).unwrap_or(0));
        table.for_each(|key, value, deadline| {
            body.extend_from_slice(&(key.len() as u32).to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(&deadline.to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(value);
        });
        Self {
            worker,
            seq,
            digest: table.digest(),
            count: table.keys(),
            version: VERSION,
            body,
        }
    }

    /// Calls `f` with every key, value and deadline. The body must have been verified
    /// (see [`read`]).
    pub fn for_each(&self, f: impl FnMut(&[u8], &[u8], u64)) {
        let _ = walk(&self.body, self.version, f);
    }

    fn header(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&self.worker.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.digest.to_le_bytes());
        h[32..40].copy_from_slice(&self.count.to_le_bytes());
        h[40..48].copy_from_slice(&(self.body.len() as u64).to_le_bytes());
        h[48..52].copy_from_slice(&crc32c::crc32c(&self.body).to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// Walks a body of format `version`; returns the number of entries and their digest, or
/// where it breaks.
fn walk(
    body: &[u8],
    version: u32,
    mut f: impl FnMut(&[u8], &[u8], u64),
) -> Result<(u64, u64), String> {
    let entry_header = if version == 1 { 8 } else { 16 };
    let (mut at, mut count, mut digest) = (0usize, 0u64, 0u64);
    while at < body.len() {
        let Some(lens) = body.get(at..at + entry_header) else {
            return Err(format!("entry {count} header cut off at body offset {at}"));
        };
        let key_len = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let value_len = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        let deadline = lens
            .get(8..16)
            .map_or(0, |d| u64::from_le_bytes(d.try_into().unwrap_or([0; 8])));
        let key_at = at + entry_header;
        let Some(pair) = body.get(key_at..key_at + key_len + value_len) else {
            return Err(format!(
                "entry {count} runs past the end at body offset {at}"
            ));
        };
        let (key, value) = pair.split_at(key_len);
        digest = digest.wrapping_add(entry_digest(key, value, deadline));
        f(key, value, deadline);
        count += 1;
        at = key_at + key_len + value_len;
    }
    Ok((count, digest))
}

/// The file name of the checkpoint covering `seq`.
#[must_use]
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}.ckpt")
}

/// The checkpoints in `dir`, oldest first, as (seq, path). A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("cannot list {}", dir.display()))(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot list {}", dir.display())))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".ckpt"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        found.push((seq, entry.path()));
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads and verifies the checkpoint at `path`, which must belong to `worker`.
pub fn read(path: &Path, worker: u32) -> Result<Snapshot, CheckpointError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    let damaged = |reason: String| CheckpointError::Damaged {
        file: path.to_owned(),
        reason,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(damaged(format!(
            "{} bytes, shorter than its header",
            bytes.len()
        )));
    }
    let (h, body) = bytes.split_at(HEADER_BYTES);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if h[0..8] != MAGIC {
        return Err(damaged("not a checkpoint (bad magic)".into()));
    }
    if crc32c::crc32c(&h[0..60]) != u32_at(60) {
        return Err(damaged("header checksum mismatch".into()));
    }
    let version = u32_at(8);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(damaged(format!("unsupported format version {version}")));
    }
    if u32_at(12) != worker {
        return Err(damaged(format!(
            "belongs to worker {}, not {worker}",
            u32_at(12)
        )));
    }
    let snapshot = Snapshot {
        worker,
        seq: u64_at(16),
        digest: u64_at(24),
        count: u64_at(32),
        version,
        body: body.to_vec(),
    };
    if u64_at(40) != body.len() as u64 {
        return Err(damaged(format!(
            "body is {} bytes, header says {}",
            body.len(),
            u64_at(40)
        )));
    }
    if crc32c::crc32c(body) != u32_at(48) {
        return Err(damaged("body checksum mismatch".into()));
    }
    let (count, digest) = walk(body, version, |_, _, _| ()).map_err(damaged)?;
    if count != snapshot.count || digest != snapshot.digest {
        return Err(damaged(format!(
            "holds {count} entries with digest {digest:016x}, header says {} and {:016x}",
            snapshot.count, snapshot.digest
        )));
    }
    Ok(snapshot)
}

/// What [`write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes in the file.
    pub bytes: u64,
    /// Sequence number of the oldest checkpoint still kept.
    pub oldest_seq: u64,
}

/// Writes `snapshot` durably into `dir` and removes all but the newest [`KEEP`].
pub fn write(dir: &Path, snapshot: &Snapshot) -> Result<Written, CheckpointError> {
    let final_path = dir.join(file_name(snapshot.seq));
    let temp = dir.join(format!(".{}.tmp", file_name(snapshot.seq)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_err(format!("cannot create {}", temp.display())))?;
        file.write_all(&snapshot.header())
            .and_then(|()| file.write_all(&snapshot.body))
            .and_then(|()| file.sync_all())
            .map_err(io_err(format!("cannot write {}", temp.display())))?;
        fs::rename(&temp, &final_path)
            .map_err(io_err(format!("cannot rename {}", temp.display())))?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    let kept = list(dir)?;
    let excess = kept.len().saturating_sub(KEEP);
    for (_, path) in &kept[..excess] {
        fs::remove_file(path).map_err(io_err(format!("cannot remove {}", path.display())))?;
    }
    if excess > 0 {
        sync_dir(dir)?;
    }
    Ok(Written {
        bytes: (HEADER_BYTES + snapshot.body.len()) as u64,
        oldest_seq: kept.get(excess).map_or(snapshot.seq, |(seq, _)| *seq),
    })
}

/// What [`load_latest`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The newest checkpoint that verifies, if any.
    pub snapshot: Option<Snapshot>,
    /// Sequence number of the oldest checkpoint kept (0 without any).
    pub oldest_seq: u64,
    /// Checkpoints that did not verify (renamed aside), with the reason.
    pub damaged: Vec<CheckpointError>,
}

/// Finds the newest checkpoint of `worker` in `dir` that verifies, creating `dir` if it is
/// missing. Damaged newer ones are renamed aside (`.damaged`) and reported. When checkpoints
/// exist but none verifies, that is an error: the log before them may be gone.
pub fn load_latest(dir: &Path, worker: u32) -> Result<Loaded, CheckpointError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("cannot create {}", dir.display())))?;
    clean_temporaries(dir);
    let found = list(dir)?;
    let mut damaged = Vec::new();
    for (i, (_, path)) in found.iter().enumerate().rev() {
        match read(path, worker) {
            Ok(snapshot) => {
                // Only now, with a good one in hand, set the damaged newer ones aside.
                for (_, bad) in &found[i + 1..] {
                    let aside = bad.with_extension("ckpt.damaged");
                    fs::rename(bad, &aside)
                        .map_err(io_err(format!("cannot rename {}", bad.display())))?;
                }
                return Ok(Loaded {
                    snapshot: Some(snapshot),
                    oldest_seq: found[0].0,
                    damaged,
                });
            }
            Err(e @ CheckpointError::Damaged { .. }) => damaged.push(e),
            Err(e) => return Err(e),
        }
    }
    match damaged.pop() {
        Some(e) => Err(e),
        None => Ok(Loaded {
            snapshot: None,
            oldest_seq: 0,
            damaged,
        }),
    }
}

fn clean_temporaries(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("cannot sync directory {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_protocol::table::{HeapTable, TableLimits};

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("corral-ckpt-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn table(pairs: u32) -> TableWriter<HeapTable> {
        let mut t = TableWriter::new(
            HeapTable::new(1024, 16 * 1024),
            TableLimits {
                max_key_bytes: 64,
                max_value_bytes: 64,
                max_keys: 512,
            },
        );
        for i in 0..pairs {
            let deadline = if i % 3 == 0 {
                0
            } else {
                1_700_000_000_000 + u64::from(i)
            };
            t.set(
                format!("key{i}").as_bytes(),
                format!("value{i}").as_bytes(),
                deadline,
            )
            .unwrap();
        }
        t
    }

    #[test]
    fn round_trip_keeps_two_and_falls_back_past_damage() {
        let dir = Dir::new("roundtrip");
        assert!(load_latest(&dir.0, 3).unwrap().snapshot.is_none());
        for (seq, pairs) in [(10, 5), (20, 50), (30, 100)] {
            let t = table(pairs);
            let s = Snapshot::take(3, seq, &t);
            let written = write(&dir.0, &s).unwrap();
            assert_eq!(written.oldest_seq, if seq == 10 { 10 } else { seq - 10 });
        }
        let kept: Vec<u64> = list(&dir.0).unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(kept, vec![20, 30]);

        let loaded = load_latest(&dir.0, 3).unwrap();
        let newest = loaded.snapshot.unwrap();
        assert_eq!((newest.seq, newest.count, loaded.oldest_seq), (30, 100, 20));
        let mut rebuilt = table(0);
        newest.for_each(|k, v, deadline| {
            rebuilt.set(k, v, deadline).unwrap();
        });
        assert_eq!(rebuilt.digest(), table(100).digest());

        // Another worker's checkpoints are refused.
        assert!(matches!(
            read(&dir.0.join(file_name(30)), 4),
            Err(CheckpointError::Damaged { .. })
        ));

        // Flip one byte of the newest: it is set aside and the older one is used.
        let newest_path = dir.0.join(file_name(30));
        let mut bytes = fs::read(&newest_path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&newest_path, &bytes).unwrap();
        let loaded = load_latest(&dir.0, 3).unwrap();
        assert_eq!(loaded.snapshot.as_ref().map(|s| s.seq), Some(20));
        assert_eq!(loaded.damaged.len(), 1);
        assert!(
            loaded.damaged[0].to_string().contains("checksum"),
            "{}",
            loaded.damaged[0]
        );
        assert!(!newest_path.exists());
        assert!(dir.0.join(format!("{}.damaged", file_name(30))).exists());

        // With every checkpoint damaged, loading fails instead of starting empty.
        let older = dir.0.join(file_name(20));
        fs::write(&older, b"CORRALCK short").unwrap();
        for _ in 0..2 {
            let err = load_latest(&dir.0, 3).unwrap_err();
            assert!(err.to_string().contains("shorter than its header"), "{err}");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let dir = Dir::new("truncate");
        let s = Snapshot::take(0, 7, &table(20));
        write(&dir.0, &s).unwrap();
        let path = dir.0.join(file_name(7));
        let bytes = fs::read(&path).unwrap();
        for len in 0..bytes.len() {
            fs::write(&path, &bytes[..len]).unwrap();
            assert!(read(&path, 0).is_err(), "truncated to {len} bytes");
        }
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path, 0).unwrap(), s);
    }
}
