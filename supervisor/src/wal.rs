//! The write-ahead event log: segment files of checksummed records with strictly
//! consecutive sequence numbers.
//!
//! ```text
//! segment file  <dir>/<first seq, 20 digits>.wal
//!   0   magic "CORRALWL"        8 bytes
//!   8   format version          u32 LE
//!  12   crc32c of bytes 0..12   u32 LE
//!  16   first sequence number   u64 LE
//!  24   reserved (zero)         u64
//!  32   records...
//! record (8-byte aligned)
//!   0   payload length          u32 LE
//!   4   crc32c                  u32 LE   over bytes 0..4 and 8..(24 + length)
//!   8   sequence number         u64 LE
//!  16   kind                    u8
//!  17   record format version   u8
//!  18   reserved (zero)         6 bytes
//!  24   payload                 length bytes (bincode)
//!       padding (zero)          to the next multiple of 8
//! ```
//!
//! One [`Writer`] appends; records are staged in memory and [`Writer::commit`] writes them
//! with one `write` per segment (group commit); the journal's sync thread makes them durable
//! with one `fdatasync` per group under `--fsync always`. [`scan`] reads a directory back, cutting off a torn tail of the
//! newest segment and refusing damage anywhere else with the file, offset and sequence
//! number.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALWL";
/// Segment file format version.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER: usize = 32;
/// Bytes of a record before its payload.
pub const RECORD_HEADER: usize = 24;
/// Current record format version.
pub const RECORD_VERSION: u8 = 1;
/// Largest payload accepted, far above any legal write (keys and values are bounded).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A client write routed to one shard.
    Write = 1,
    /// A lifecycle event of the supervisor or a worker.
    Lifecycle = 2,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Write),
            2 => Some(Self::Lifecycle),
            _ => None,
        }
    }
}

/// When appended records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before acknowledging each batch.
    Always,
    /// Acknowledge after `write`; a background thread syncs once a second.
    EverySec,
    /// Leave syncing to the operating system.
    No,
}

/// A record read back from the log, borrowing its payload from the segment being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Kind.
    pub kind: Kind,
    /// Record format version.
    pub version: u8,
    /// Payload bytes.
    pub payload: &'a [u8],
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

fn record_crc(header: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[0..4]);
    let crc = crc32c::crc32c_append(crc, &header[8..RECORD_HEADER]);
    crc32c::crc32c_append(crc, payload)
}

/// Appends one framed record to `buf`, its payload written in place by `payload`.
pub fn encode_record(buf: &mut Vec<u8>, seq: u64, kind: Kind, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.resize(start + RECORD_HEADER, 0);
    payload(buf);
    let len = buf.len() - start - RECORD_HEADER;
    let (header, body) = buf[start..].split_at_mut(RECORD_HEADER);
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16] = kind as u8;
    header[17] = RECORD_VERSION;
    let crc = record_crc(header, body);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + RECORD_HEADER + padded(len), 0);
}

fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// The file name of the segment whose first record is `first_seq`.
#[must_use]
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Damage that recovery must not skip over.
#[derive(Debug)]
pub enum WalError {
    /// An I/O error on a file or the directory.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: io::Error,
    },
    /// A record or header that fails its checks, not at the torn tail.
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the bad record or header.
        offset: u64,
        /// The sequence number expected there.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record that passes its checks but whose payload this build cannot decode.
    Undecodable {
        /// Its sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// Sequence numbers that are not consecutive across files.
    Gap {
        /// The file where the gap shows.
        file: PathBuf,
        /// The sequence number expected.
        expected: u64,
        /// The one found.
        found: u64,
    },
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { what, error } => write!(f, "{what}: {error}"),
            Self::Corrupt {
                file,
                offset,
                seq,
                reason,
            } => write!(
                f,
                "event log damaged in {} at offset {offset} (sequence {seq}): {reason}",
                file.display()
            ),
            Self::Undecodable { seq, reason } => {
                write!(f, "event log record {seq} cannot be decoded: {reason}")
            }
            Self::Gap {
                file,
                expected,
                found,
            } => write!(
                f,
                "event log gap in {}: expected sequence {expected}, found {found}",
                file.display()
            ),
        }
    }
}

impl std::error::Error for WalError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    let what = what.into();
    move |error| WalError::Io { what, error }
}

/// A segment file found in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its path.
    pub path: PathBuf,
    /// The first sequence number it holds (from its name).
    pub first_seq: u64,
}

/// The segments of `dir`, oldest first. Files not named like segments are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("cannot list {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(first_seq) = stem.parse() {
                out.push(SegmentFile {
                    path: entry.path(),
                    first_seq,
                });
            }
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// What reading one segment found at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The file ends exactly after its last record.
    Clean,
    /// The file ends in a partial or unchecked record at `offset`: a torn write.
    Torn {
        /// Where the valid records end.
        offset: u64,
    },
}

/// Reads the records of one segment, calling `each` for every valid one, in order.
///
/// `newest` allows a torn tail: a last record that is incomplete, fails its checksum while
/// reaching the end of the file, or is followed only by zeros. Anywhere else such a record
/// is an error. Returns how the file ended and the next sequence number.
pub fn read_segment<E: From<WalError>>(
    segment: &SegmentFile,
    newest: bool,
    until: u64,
    bytes: &mut Vec<u8>,
    mut each: impl FnMut(Record<'_>) -> Result<(), E>,
) -> Result<(SegmentEnd, u64), E> {
    let path = &segment.path;
    bytes.clear();
    File::open(path)
        .and_then(|mut f| f.read_to_end(bytes))
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    let corrupt = |offset: usize, seq: u64, reason: String| {
        E::from(WalError::Corrupt {
            file: path.clone(),
            offset: offset as u64,
            seq,
            reason,
        })
    };
    let mut seq = segment.first_seq;
    if bytes.len() < SEGMENT_HEADER {
        if newest {
            // Created but its header never fully reached the disk.
            return Ok((SegmentEnd::Torn { offset: 0 }, seq));
        }
        return Err(corrupt(0, seq, "segment header is incomplete".into()));
    }
    let expected = segment_header(segment.first_seq);
    if bytes[0..SEGMENT_HEADER] != expected {
        let reason = if bytes[0..8] != SEGMENT_MAGIC {
            "not an event log segment (bad magic)".to_owned()
        } else if bytes[8..12] != expected[8..12] {
            format!(
                "unsupported segment format version {}",
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
            )
        } else {
            "segment header does not match its file name or checksum".to_owned()
        };
        return Err(corrupt(0, seq, reason));
    }
    let mut at = SEGMENT_HEADER;
    while at < bytes.len() && seq <= until {
        let rest = &bytes[at..];
        let torn_here = || newest && rest.iter().all(|&b| b == 0);
        if rest.len() < RECORD_HEADER {
            if newest {
                return Ok((SegmentEnd::Torn { offset: at as u64 }, seq));
            }
            return Err(corrupt(at, seq, "incomplete record header".into()));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let total = RECORD_HEADER + padded(len);
        if len > MAX_PAYLOAD || total > rest.len() {
            if newest && (len > MAX_PAYLOAD || torn_here() || total > rest.len()) {
                return Ok((SegmentEnd::Torn { offset: at as u64 }, seq));
            }
            return Err(corrupt(
                at,
                seq,
                format!("record length {len} runs past the end"),
            ));
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if record_crc(rest, payload) != stored {
            if newest && (total == rest.len() || torn_here()) {
                return Ok((SegmentEnd::Torn { offset: at as u64 }, seq));
            }
            return Err(corrupt(at, seq, "checksum mismatch".into()));
        }
        let found = u64::from_le_bytes(rest[8..16].try_into().unwrap_or_default());
        if found != seq {
            return Err(corrupt(
                at,
                seq,
                format!("sequence {found} where {seq} was expected"),
            ));
        }
        let Some(kind) = Kind::from_u8(rest[16]) else {
            return Err(corrupt(
                at,
                seq,
                format!("unknown record kind {}", rest[16]),
            ));
        };
        each(Record {
            seq,
            kind,
            version: rest[17],
            payload,
        })?;
        seq += 1;
        at += total;
    }
    Ok((SegmentEnd::Clean, seq))
}

/// What [`scan`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSummary {
    /// The segments, oldest first.
    pub segments: Vec<SegmentFile>,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// A torn tail that was found in the newest segment (its path and valid length).
    pub torn: Option<(PathBuf, u64)>,
}

/// Reads the segments of `dir` in order, calling `each` for every record whose sequence
/// number is in `seqs`. Segments wholly before the range are skipped unread, and reading
/// stops after its end (nothing later is looked at, so a log still being appended to can be
/// read up to a sequence number known to be committed); the summary then describes what was
/// read.
///
/// `each` may stop the scan with an error of its own; damage in the log stops it with a
/// [`WalError`], converted.
pub fn scan<E: From<WalError>>(
    dir: &Path,
    seqs: impl RangeBounds<u64>,
    mut each: impl FnMut(Record<'_>) -> Result<(), E>,
) -> Result<ScanSummary, E> {
    let from = match seqs.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let until = match seqs.end_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_sub(1),
        Bound::Unbounded => u64::MAX,
    };
    let segments = list_segments(dir)?;
    let mut next_seq = segments.first().map_or(1, |s| s.first_seq);
    let mut torn = None;
    // One buffer for every segment: its pages are faulted in once.
    let mut buffer = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if next_seq > until {
            break;
        }
        if segment.first_seq != next_seq {
            return Err(WalError::Gap {
                file: segment.path.clone(),
                expected: next_seq,
                found: segment.first_seq,
            }
            .into());
        }
        let newest = i + 1 == segments.len();
        let ends_before = segments.get(i + 1).map(|n| n.first_seq);
        if ends_before.is_some_and(|end| end <= from) {
            next_seq = ends_before.unwrap_or(next_seq);
            continue;
        }
        let (end, next) = read_segment(segment, newest, until, &mut buffer, |r| {
            if r.seq >= from {
                each(r)
            } else {
                Ok(())
            }
        })?;
        if let SegmentEnd::Torn { offset } = end {
            torn = Some((segment.path.clone(), offset));
        }
        next_seq = next;
    }
    Ok(ScanSummary {
        segments,
        next_seq,
        torn,
    })
}

/// Settings of a [`Writer`].
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Roll to a new segment past this many bytes.
    pub segment_bytes: u64,
    /// Whether a commit syncs what it wrote before returning.
    pub sync_on_commit: bool,
}

/// The single appender of the log.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    options: WriterOptions,
    file: File,
    /// Bytes of the current segment that are written (and, under `Always`, synced).
    file_len: u64,
    /// Records staged since the last commit.
    staged: Vec<u8>,
    /// Offsets into `staged` where each staged record starts; the i-th has sequence number
    /// `committed_seq + i`.
    staged_starts: Vec<usize>,
    next_seq: u64,
    /// The sequence number of the first record not yet committed.
    committed_seq: u64,
    /// Segments created by the commit in progress.
    rolled: Vec<PathBuf>,
    /// Why the writer is unusable, after a failure it could not undo.
    broken: Option<String>,
    /// Segments this writer created.
    segments_created: usize,
}

/// An append that did not reach the log; the staged records were discarded and their
/// sequence numbers will be reused.
#[derive(Debug)]
pub struct CommitError(pub WalError);

impl Writer {
    /// Opens the log in `dir` for appending after `summary` (from [`scan`]): cuts off a torn
    /// tail, and creates the first segment of an empty log.
    pub fn open(
        dir: &Path,
        summary: &ScanSummary,
        options: WriterOptions,
    ) -> Result<Self, WalError> {
        let (file, file_len) = match summary.segments.last() {
            Some(last) => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(io_err(format!("cannot open {}", last.path.display())))?;
                let len = match &summary.torn {
                    Some((path, offset)) if *path == last.path => {
                        // Cut the torn tail off; rewrite a header that never fully reached
                        // the disk (identical bytes otherwise).
                        let len = (*offset).max(SEGMENT_HEADER as u64);
                        let what = format!("cannot repair the torn tail of {}", path.display());
                        file.set_len(len)
                            .and_then(|()| file.seek(SeekFrom::Start(0)))
                            .and_then(|_| file.write_all(&segment_header(last.first_seq)))
                            .and_then(|()| file.sync_data())
                            .map_err(io_err(what))?;
                        len
                    }
                    _ => file
                        .metadata()
                        .map_err(io_err(format!("cannot stat {}", last.path.display())))?
                        .len(),
                };
                (file, len)
            }
            None => (
                create_segment(dir, summary.next_seq)?,
                SEGMENT_HEADER as u64,
            ),
        };
        Ok(Self {
            dir: dir.to_owned(),
            options,
            file,
            file_len,
            staged: Vec::new(),
            staged_starts: Vec::new(),
            next_seq: summary.next_seq,
            committed_seq: summary.next_seq,
            rolled: Vec::new(),
            broken: None,
            segments_created: 0,
        })
    }

    /// The sequence number the next appended record gets.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stages a record whose payload `payload` appends in place; returns its sequence
    /// number. Nothing is written until
    /// [`Writer::commit`].
    pub fn append(&mut self, kind: Kind, payload: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let seq = self.next_seq;
        self.staged_starts.push(self.staged.len());
        encode_record(&mut self.staged, seq, kind, payload);
        self.next_seq += 1;
        seq
    }

    /// Staged bytes not yet committed.
    #[must_use]
    pub fn staged_bytes(&self) -> usize {
        self.staged.len()
    }

    /// Staged records not yet committed.
    #[must_use]
    pub fn staged_records(&self) -> usize {
        self.staged_starts.len()
    }

    /// Writes every staged record (rolling segments as needed) and, with
    /// [`WriterOptions::sync_on_commit`], syncs them. On error the staged records are discarded, the
    /// segment is cut back to its last committed length, and their sequence numbers are
    /// given out again, so the log never keeps a record whose write was reported failed.
    pub fn commit(&mut self) -> Result<(), CommitError> {
        if let Some(reason) = self.broken.clone() {
            self.discard();
            return Err(CommitError(WalError::Io {
                what: format!("the event log is unusable since an earlier failure ({reason})"),
                error: io::Error::other("event log broken"),
            }));
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        let start = (self.file.try_clone(), self.file_len);
        let result = self.write_staged();
        match &result {
            Ok(()) => {
                self.committed_seq = self.next_seq;
                self.rolled.clear();
            }
            Err(_) => {
                if let Err(e) = self.roll_back(start) {
                    self.broken = Some(e.to_string());
                }
            }
        }
        self.discard();
        result.map_err(CommitError)
    }

    /// Segments created since opening (a changed count means the current file changed).
    #[must_use]
    pub fn segments_created(&self) -> usize {
        self.segments_created
    }

    /// Syncs the current segment.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Drops what is staged; its sequence numbers are given out again.
    pub fn discard(&mut self) {
        self.staged.clear();
        self.staged_starts.clear();
        self.next_seq = self.committed_seq;
    }

    /// Undoes a failed commit: removes segments it created and cuts the segment it started
    /// in back to its committed length.
    fn roll_back(&mut self, start: (io::Result<File>, u64)) -> Result<(), WalError> {
        let (file, len) = start;
        let file = file.map_err(io_err("cannot reopen the event log segment"))?;
        for path in self.rolled.drain(..) {
            fs::remove_file(&path).map_err(io_err(format!("cannot remove {}", path.display())))?;
        }
        sync_dir(&self.dir)?;
        file.set_len(len)
            .map_err(io_err("cannot cut back the event log segment"))?;
        self.file = file;
        self.file_len = len;
        Ok(())
    }

    fn write_staged(&mut self) -> Result<(), WalError> {
        // Consecutive records go out in one write per segment; a segment rolls before a
        // record that would take it past the limit (a record larger than the limit gets a
        // segment of its own).
        let mut from = 0usize;
        for i in 0..self.staged_starts.len() {
            let start = self.staged_starts[i];
            let seq = self.committed_seq + i as u64;
            let end = self
                .staged_starts
                .get(i + 1)
                .map_or(self.staged.len(), |&s| s);
            let in_file = self.file_len + (start - from) as u64;
            if in_file > SEGMENT_HEADER as u64
                && in_file + (end - start) as u64 > self.options.segment_bytes
            {
                self.write_range(from, start)?;
                from = start;
                self.roll(seq)?;
            }
        }
        self.write_range(from, self.staged.len())?;
        if self.options.sync_on_commit {
            self.file.sync_data().map_err(io_err(format!(
                "cannot sync the event log in {}",
                self.dir.display()
            )))?;
        }
        Ok(())
    }

    fn write_range(&mut self, from: usize, to: usize) -> Result<(), WalError> {
        if from == to {
            return Ok(());
        }
        self.file
            .seek(SeekFrom::Start(self.file_len))
            .and_then(|_| self.file.write_all(&self.staged[from..to]))
            .map_err(io_err(format!(
                "cannot append to the event log in {}",
                self.dir.display()
            )))?;
        self.file_len += (to - from) as u64;
        Ok(())
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), WalError> {
        // The finished segment is synced whatever the policy (once per segment, so cheap
        // even under `No`): a later segment must never survive a crash that an earlier one
        // did not, and syncing the current segment then makes the whole log durable.
        self.file.sync_data().map_err(io_err(format!(
            "cannot sync the event log in {}",
            self.dir.display()
        )))?;
        self.file = create_segment(&self.dir, first_seq)?;
        self.rolled.push(self.dir.join(segment_name(first_seq)));
        self.segments_created += 1;
        self.file_len = SEGMENT_HEADER as u64;
        Ok(())
    }

    /// Removes the segments whose records all have sequence numbers of at most `floor`
    /// (never the current one); returns how many went. Called between commits.
    pub fn remove_through(&mut self, floor: u64) -> Result<usize, WalError> {
        let segments = list_segments(&self.dir)?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            if pair[1].first_seq - 1 > floor {
                break;
            }
            fs::remove_file(&pair[0].path)
                .map_err(io_err(format!("cannot remove {}", pair[0].path.display())))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Segments in the log and their total size in bytes.
    pub fn disk_usage(&self) -> Result<DiskUsage, WalError> {
        let segments = list_segments(&self.dir)?;
        let mut bytes = 0;
        for s in &segments {
            bytes += fs::metadata(&s.path)
                .map_err(io_err(format!("cannot stat {}", s.path.display())))?
                .len();
        }
        Ok(DiskUsage {
            segments: segments.len(),
            bytes,
            oldest_seq: segments.first().map_or(self.next_seq, |s| s.first_seq),
        })
    }

    /// A handle on the current segment for a background sync (`--fsync everysec`).
    pub fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

/// What the log holds on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Segments.
    pub segments: usize,
    /// Their total size.
    pub bytes: u64,
    /// The sequence number of the oldest record kept (the first of the oldest segment).
    pub oldest_seq: u64,
}

/// Creates a segment with its header, synced, and syncs the directory.
fn create_segment(dir: &Path, first_seq: u64) -> Result<File, WalError> {
    let path = dir.join(segment_name(first_seq));
    let what = format!("cannot create event log segment {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&what))?;
    let written = file
        .write_all(&segment_header(first_seq))
        .and_then(|()| file.sync_data())
        .map_err(io_err(&what))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

/// Makes a directory's entries (new files, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("cannot sync directory {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("corral-wal-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn payload(seq: u64) -> Vec<u8> {
        (0..(seq * 13 % 50)).map(|i| (seq + i) as u8).collect()
    }

    fn options(segment_bytes: u64) -> WriterOptions {
        WriterOptions {
            segment_bytes,
            sync_on_commit: true,
        }
    }

    /// Writes records 1..=n in commits of `per_commit`.
    fn write_log(dir: &Path, n: u64, per_commit: u64, segment_bytes: u64) {
        let summary = scan(dir, .., |_| Ok::<(), WalError>(())).unwrap();
        let mut w = Writer::open(dir, &summary, options(segment_bytes)).unwrap();
        let mut staged = 0;
        while w.next_seq() <= n {
            let seq = w.next_seq();
            let kind = if seq % 7 == 0 {
                Kind::Lifecycle
            } else {
                Kind::Write
            };
            assert_eq!(w.append(kind, |b| b.extend(payload(seq))), seq);
            staged += 1;
            if staged == per_commit {
                w.commit().unwrap();
                staged = 0;
            }
        }
        w.commit().unwrap();
    }

    /// Records as (seq, kind, payload).
    type Owned = (u64, Kind, Vec<u8>);

    fn read_all(dir: &Path) -> Result<(Vec<Owned>, ScanSummary), WalError> {
        let mut records = Vec::new();
        let summary = scan(dir, .., |r| {
            records.push((r.seq, r.kind, r.payload.to_vec()));
            Ok(())
        })?;
        Ok((records, summary))
    }

    fn check_records(records: &[Owned], n: u64) {
        assert_eq!(records.len() as u64, n);
        for (i, (seq, kind, bytes)) in records.iter().enumerate() {
            let expected = i as u64 + 1;
            assert_eq!(*seq, expected);
            assert_eq!(*bytes, payload(expected));
            let expected_kind = if expected % 7 == 0 {
                Kind::Lifecycle
            } else {
                Kind::Write
            };
            assert_eq!(*kind, expected_kind);
        }
    }

    #[test]
    fn records_round_trip_across_commits_and_segments() {
        let dir = Dir::new("roundtrip");
        write_log(&dir.0, 500, 9, 1024);
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 500);
        assert!(summary.segments.len() > 10, "{}", summary.segments.len());
        assert_eq!(summary.next_seq, 501);
        assert_eq!(summary.torn, None);
        for s in &summary.segments {
            assert!(fs::metadata(&s.path).unwrap().len() <= 1024);
        }
        // Reopening appends after the last record.
        write_log(&dir.0, 520, 4, 1024);
        let (records, _) = read_all(&dir.0).unwrap();
        check_records(&records, 520);
        // A scan from a later sequence number skips what comes before.
        let mut first = None;
        scan(&dir.0, 300.., |r| {
            first.get_or_insert(r.seq);
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(first, Some(300));
        // A bounded scan reads its range and nothing after it.
        let mut seen = Vec::new();
        scan(&dir.0, 299..=310, |r| {
            seen.push(r.seq);
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(seen, (299..=310).collect::<Vec<_>>());
    }

    #[test]
    fn retention_removes_only_segments_wholly_at_or_below_the_floor() {
        let dir = Dir::new("retain");
        write_log(&dir.0, 300, 5, 1024);
        let summary = scan(&dir.0, .., |_| Ok::<(), WalError>(())).unwrap();
        let firsts: Vec<u64> = summary.segments.iter().map(|s| s.first_seq).collect();
        let mut w = Writer::open(&dir.0, &summary, options(1024)).unwrap();
        let usage = w.disk_usage().unwrap();
        assert_eq!(usage.segments, firsts.len());
        assert!(usage.bytes > 300 * RECORD_HEADER as u64);
        assert_eq!(usage.oldest_seq, firsts[0]);
        // A floor inside the third segment keeps it and everything after it.
        let floor = firsts[3] - 2;
        assert_eq!(w.remove_through(floor).unwrap(), 2);
        let mut seen = Vec::new();
        let after = scan(&dir.0, .., |r| {
            seen.push(r.seq);
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(seen.first(), Some(&firsts[2]));
        assert_eq!(w.disk_usage().unwrap().oldest_seq, firsts[2]);
        assert!(firsts[2] <= floor + 1);
        assert_eq!(after.next_seq, 301);
        // The current segment stays whatever the floor; appending goes on after it.
        w.remove_through(u64::MAX).unwrap();
        let usage = w.disk_usage().unwrap();
        assert_eq!(usage.segments, 1);
        assert_eq!(usage.oldest_seq, *firsts.last().unwrap());
        assert_eq!(w.append(Kind::Write, |b| b.extend(payload(301))), 301);
        w.commit().unwrap();
        let mut last = 0;
        scan(&dir.0, .., |r| {
            last = r.seq;
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(last, 301);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_every_byte_offset() {
        let dir = Dir::new("torn");
        write_log(&dir.0, 20, 20, 1 << 20);
        let (_, summary) = read_all(&dir.0).unwrap();
        let path = summary.segments[0].path.clone();
        let full = fs::read(&path).unwrap();
        let last_len = RECORD_HEADER + padded(payload(20).len());
        let last_start = full.len() - last_len;
        for cut in last_start + 1..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (records, summary) = read_all(&dir.0).unwrap();
            check_records(&records, 19);
            assert_eq!(
                summary.torn,
                Some((path.clone(), last_start as u64)),
                "cut {cut}"
            );
            // Appending after the cut continues the sequence cleanly.
            let mut w = Writer::open(&dir.0, &summary, options(1 << 20)).unwrap();
            assert_eq!(w.append(Kind::Write, |b| b.extend(payload(20))), 20);
            w.commit().unwrap();
            let (records, summary) = read_all(&dir.0).unwrap();
            check_records(&records, 20);
            assert_eq!(summary.torn, None);
        }
        // Zeros past the end (a file extended but never written) are a torn tail too.
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0; 100]);
        fs::write(&path, &zeros).unwrap();
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 20);
        assert_eq!(summary.torn, Some((path.clone(), full.len() as u64)));
    }

    #[test]
    fn damage_before_the_tail_is_refused_with_file_offset_and_sequence() {
        let dir = Dir::new("flip");
        write_log(&dir.0, 200, 10, 2048);
        let (_, summary) = read_all(&dir.0).unwrap();
        assert!(summary.segments.len() >= 3);
        // A flipped payload byte in the middle of an older segment.
        let victim = &summary.segments[1];
        let mut bytes = fs::read(&victim.path).unwrap();
        let mut at = SEGMENT_HEADER;
        let mut seq = victim.first_seq;
        // Third record of the file.
        for _ in 0..2 {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += RECORD_HEADER + padded(len);
            seq += 1;
        }
        bytes[at + RECORD_HEADER] ^= 0x40;
        fs::write(&victim.path, &bytes).unwrap();
        match read_all(&dir.0) {
            Err(WalError::Corrupt {
                file,
                offset,
                seq: bad,
                ..
            }) => {
                assert_eq!(file, victim.path);
                assert_eq!(offset, at as u64);
                assert_eq!(bad, seq);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        bytes[at + RECORD_HEADER] ^= 0x40;
        fs::write(&victim.path, &bytes).unwrap();

        // The same flip in the newest segment, with records after it, is not a torn tail.
        let newest = summary.segments.last().unwrap();
        let mut bytes = fs::read(&newest.path).unwrap();
        bytes[SEGMENT_HEADER + RECORD_HEADER] ^= 1;
        fs::write(&newest.path, &bytes).unwrap();
        let err = read_all(&dir.0).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(err.contains(&newest.path.display().to_string()), "{err}");
        bytes[SEGMENT_HEADER + RECORD_HEADER] ^= 1;
        fs::write(&newest.path, &bytes).unwrap();

        // A missing middle segment is a gap.
        fs::remove_file(&summary.segments[1].path).unwrap();
        match read_all(&dir.0) {
            Err(WalError::Gap {
                expected, found, ..
            }) => {
                assert_eq!(expected, summary.segments[1].first_seq);
                assert_eq!(found, summary.segments[2].first_seq);
            }
            other => panic!("expected a gap, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_commit_leaves_no_record_and_reuses_its_sequence_numbers() {
        let dir = Dir::new("fail");
        write_log(&dir.0, 5, 5, 1 << 20);
        let summary = scan(&dir.0, .., |_| Ok::<(), WalError>(())).unwrap();
        let mut w = Writer::open(&dir.0, &summary, options(1 << 20)).unwrap();
        // Swap the open segment for a read-only handle: the write fails.
        let path = summary.segments[0].path.clone();
        w.file = File::open(&path).unwrap();
        assert_eq!(w.append(Kind::Write, |b| b.extend(b"lost")), 6);
        assert!(w.commit().is_err());
        assert_eq!(w.next_seq(), 6);
        let (records, _) = read_all(&dir.0).unwrap();
        check_records(&records, 5);
    }
}
