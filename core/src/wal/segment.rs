//! The write-ahead event log: segment files of checksummed records with strictly
//! consecutive sequence numbers.
//!
//! ```text
//! segment file  <dir>/<first seq, 20 digits>.wal, preallocated to its capacity
//!   0   magic "CORRALWL"            8 bytes
//!   8   format version (2)          u32 LE
//!  12   crc32c of bytes 0..12, 16..64  u32 LE
//!  16   first sequence number       u64 LE   (also its name)
//!  24   capacity in bytes           u64 LE   (the file's length, fixed at creation)
//!  32   first sequence number of the segment before it (0: none)   u64 LE
//!  40   reserved (zero)             24 bytes
//!  64   records..., then zeros to the capacity
//! record (8-byte aligned)
//!   0   payload length              u32 LE   (at least 1)
//!   4   header crc32c               u32 LE   over bytes 0..4 and 8..32
//!   8   sequence number             u64 LE
//!  16   payload crc32c              u32 LE
//!  20   kind                        u8       (1 write, 2 lifecycle, 3 skip)
//!  21   record format version       u8
//!  22   reserved (zero)             2 bytes
//!  24   durable sequence number     u64 LE   (the log was durable through this one when
//!                                            this record was written)
//!  32   payload                     length bytes
//!       padding (zero)              to the next multiple of 8
//! ```
//!
//! One [`Writer`] appends. Records are staged in memory and [`Writer::commit`] writes them
//! with one `write` into one segment (group commit); the appender's sync thread makes them
//! durable with one `fdatasync` per group under `--fsync always`. A group that does not fit
//! in the current segment first rolls to a new one (sized for it if it is larger than
//! `--wal-segment-bytes`). The data dir's manifest records every roll (see
//! [`Writer::open`]), before any record goes into the new segment.
//!
//! ## Assumptions about the medium
//!
//! * `fdatasync` makes the preceding writes of a file durable; a directory `fsync` makes
//!   its entries (creations, renames, removals) durable.
//! * A crash (power loss) can leave any subset of the pages of writes that were not yet
//!   synced, in any order; synced pages stay as they were.
//! * A preallocated (`fallocate`) file keeps its length across a crash once synced, and
//!   reads zeros where nothing was written.
//!
//! ## Crash cases, and how damage is told from a torn tail
//!
//! * Killed mid-`write` (or power lost before the sync): the newest segment ends in a
//!   partial group: some of its records whole, some partly written, some still zeros,
//!   possibly out of order. Nothing of it was acknowledged under `--fsync always`. [`scan`]
//!   cuts the log at the first record that does not check (a *torn tail*).
//! * A record that does not check while a valid record after it carries a durable sequence
//!   number at or past the bad one's: the bad record had been synced before that later
//!   record was written, so no crash can have torn it: it is *damage*, refused with the
//!   file, offset and sequence number, never cut away. Records of sealed (older) segments,
//!   synced when the log rolled past them, are damage whenever they do not check.
//! * A segment shorter than the capacity in its header (truncated), a sequence gap between
//!   segments, a broken predecessor chain, or a newest segment other than the one the
//!   manifest recorded ([`check_head`]: newest segments deleted) is damage too.
//! * Killed mid-roll: the new segment may be missing, partly created, or created but not
//!   yet recorded; it holds no records then, and [`Writer::open`] removes or adopts it.
//!
//! A sequence number is never reused once it may have reached a checkpoint: the only
//! numbers given out again are those of a group whose write failed and was rolled back
//! (never synced, applied or acknowledged). When an operator accepts the loss of damaged
//! records, the log continues past every number that can have been used, with a *skip*
//! record ([`Kind::Skip`]) that declares the gap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALWL";
/// Segment file format version.
pub const SEGMENT_VERSION: u32 = 2;
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of a record before its payload.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Current record payload format version (4: a write carries the time it was sequenced
/// at and a list of ops, each with its shard, as parts with a deadline; 3, one such op,
/// 2, parts without time or deadline, and 1 are still read).
pub const RECORD_VERSION: u8 = 4;
/// Largest payload accepted, far above any legal write (keys and values are bounded).
pub const MAX_PAYLOAD_BYTES: usize = 256 << 20;
/// The smallest record on disk (every payload has at least one byte, padded to a word):
/// a segment of capacity `c` holds fewer than `c / MIN_RECORD_BYTES` records.
pub const MIN_RECORD_BYTES: u64 = RECORD_HEADER_BYTES as u64 + 8;

const _: () = assert!(SEGMENT_HEADER_BYTES % 8 == 0 && RECORD_HEADER_BYTES % 8 == 0);

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A client write routed to one shard.
    Write = 1,
    /// A lifecycle event of the supervisor or a worker.
    Lifecycle = 2,
    /// Sequence numbers given up after an accepted data loss: the next record's number is
    /// one past the `through` in the payload ([`decode_skip`]).
    Skip = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Write),
            2 => Some(Self::Lifecycle),
            3 => Some(Self::Skip),
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

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The checksum of a record header (its bytes but the checksum itself).
fn header_crc(h: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..4]), &h[8..RECORD_HEADER_BYTES])
}

/// Appends one framed record to `buf`, its payload written in place by `payload`, which
/// must write at least one byte. `durable_seq` is the sequence number through which the log
/// is known durable now.
pub fn encode_record(
    buf: &mut Vec<u8>,
    seq: u64,
    kind: Kind,
    durable_seq: u64,
    payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.resize(start + RECORD_HEADER_BYTES, 0);
    payload(buf);
    let len = buf.len() - start - RECORD_HEADER_BYTES;
    assert!(
        (1..=MAX_PAYLOAD_BYTES).contains(&len),
        "record payload of {len} bytes"
    );
    let crc = crc32c::crc32c(&buf[start + RECORD_HEADER_BYTES..]);
    let header = &mut buf[start..start + RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header[20] = kind as u8;
    header[21] = RECORD_VERSION;
    header[24..32].copy_from_slice(&durable_seq.to_le_bytes());
    let hcrc = header_crc(header);
    header[4..8].copy_from_slice(&hcrc.to_le_bytes());
    buf.resize(start + RECORD_HEADER_BYTES + padded(len), 0);
}

/// The payload of a skip record: the last sequence number given up, then the reason.
#[must_use]
pub fn skip_payload(through: u64, reason: &str) -> Vec<u8> {
    let mut p = through.to_le_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// The last sequence number a skip record gives up, and its reason.
#[must_use]
pub fn decode_skip(payload: &[u8]) -> Option<(u64, String)> {
    let through = u64_at(payload.get(..8)?, 0);
    Some((through, String::from_utf8_lossy(&payload[8..]).into_owned()))
}

/// A record header that passed its checksum.
#[derive(Clone, Copy, Debug)]
struct Header {
    len: usize,
    seq: u64,
    payload_crc: u32,
    kind: u8,
    version: u8,
    durable_seq: u64,
}

fn parse_header(h: &[u8]) -> Option<Header> {
    if h.len() < RECORD_HEADER_BYTES || header_crc(h) != u32_at(h, 4) || h[22] != 0 || h[23] != 0 {
        return None;
    }
    Some(Header {
        len: u32_at(h, 0) as usize,
        seq: u64_at(h, 8),
        payload_crc: u32_at(h, 16),
        kind: h[20],
        version: h[21],
        durable_seq: u64_at(h, 24),
    })
}

/// A whole, checked record at `at` of `bytes`: its header and total length on disk.
fn whole_record(bytes: &[u8], at: usize) -> Option<(Header, usize)> {
    let h = parse_header(bytes.get(at..at + RECORD_HEADER_BYTES)?)?;
    let total = RECORD_HEADER_BYTES + padded(h.len);
    let payload = bytes.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + h.len)?;
    (h.len >= 1 && at + total <= bytes.len() && crc32c::crc32c(payload) == h.payload_crc)
        .then_some((h, total))
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SegmentHeader {
    first_seq: u64,
    capacity: u64,
    prev_first_seq: u64,
}

impl SegmentHeader {
    fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        h[32..40].copy_from_slice(&self.prev_first_seq.to_le_bytes());
        let crc = segment_crc(&h);
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The header in `bytes`, or why it is not one.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(format!(
                "segment header is incomplete ({} bytes)",
                bytes.len()
            ));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("not an event log segment (bad magic)".into());
        }
        let version = u32_at(bytes, 8);
        if version != SEGMENT_VERSION {
            return Err(format!(
                "segment format version {version}; this corral reads version {SEGMENT_VERSION} \
                 (a log written by an older corral must be read by that version)"
            ));
        }
        if segment_crc(bytes) != u32_at(bytes, 12) || bytes[40..64].iter().any(|&b| b != 0) {
            return Err("segment header checksum mismatch".into());
        }
        Ok(Self {
            first_seq: u64_at(bytes, 16),
            capacity: u64_at(bytes, 24),
            prev_first_seq: u64_at(bytes, 32),
        })
    }
}

fn segment_crc(h: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..SEGMENT_HEADER_BYTES])
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
    /// The log ends before where the data dir knows it reached (its newest segments are
    /// missing, or it ends below a checkpoint).
    Incomplete {
        /// What is missing.
        reason: String,
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
            Self::Incomplete { reason } => write!(f, "event log incomplete: {reason}"),
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

/// Where the bytes of `bytes` end: one past the last non-zero byte (0 if all are zero).
fn nonzero_end(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    while end >= 16 {
        let chunk: [u8; 16] = bytes[end - 16..end].try_into().unwrap_or([1; 16]);
        if u128::from_ne_bytes(chunk) != 0 {
            break;
        }
        end -= 16;
    }
    while end > 0 && bytes[end - 1] == 0 {
        end -= 1;
    }
    end
}

/// A cut the newest segment needs: a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the valid records end.
    pub offset: u64,
    /// Where the bytes left by the torn write end (zeros follow).
    pub dirty_end: u64,
    /// What the first bad record looked like.
    pub reason: String,
}

/// The newest segment as a scan read it: where appending goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    /// The segment.
    pub path: PathBuf,
    /// Its first sequence number.
    pub first_seq: u64,
    /// Its capacity (and file length).
    pub capacity: u64,
    /// Where its valid records end.
    pub end: u64,
    /// A torn write after them, to be zeroed before appending.
    pub torn: Option<TornTail>,
}

/// What reading one segment found.
struct SegmentRead {
    next_seq: u64,
    end: u64,
    torn: Option<TornTail>,
    header: SegmentHeader,
    records: u64,
}

/// A segment file read into memory as far as it is looked at.
struct Chunks<'b> {
    file: File,
    bytes: &'b mut Vec<u8>,
    eof: bool,
}

impl Chunks<'_> {
    /// Reads on until at least `want` bytes are in (or the file ends); returns how many are.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        while self.bytes.len() < want && !self.eof {
            let step = (want - self.bytes.len()).max(1 << 20);
            let before = self.bytes.len();
            (&mut self.file).take(step as u64).read_to_end(self.bytes)?;
            self.eof = self.bytes.len() == before;
        }
        Ok(self.bytes.len())
    }
}

/// Reads the records of one segment, calling `each` for every valid one, in order, until
/// the sequence number `until` (the file is read only as far as that needs).
///
/// `torn_allowed` (the newest segment) allows a torn tail (see the module documentation);
/// anywhere else a record that does not check is damage.
fn read_segment<E: From<WalError>>(
    segment: &SegmentFile,
    torn_allowed: bool,
    until: u64,
    bytes: &mut Vec<u8>,
    mut each: impl FnMut(Record<'_>) -> Result<(), E>,
) -> Result<SegmentRead, E> {
    let mut reader = SegmentReader::open(segment, bytes)?;
    let header = reader.header()?;
    let mut seq = segment.first_seq;
    let mut at = SEGMENT_HEADER_BYTES;
    let mut records = 0;
    let torn = loop {
        if seq > until {
            break None;
        }
        let (h, kind, next) = match reader.next(at, seq, torn_allowed)? {
            Next::End => break None,
            Next::Torn(torn) => break Some(torn),
            Next::Record { header, kind, next } => (header, kind, next),
        };
        each(Record {
            seq,
            kind,
            version: h.version,
            payload: &reader.chunks.bytes
                [at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + h.len],
        })?;
        records += 1;
        seq = next;
        at += RECORD_HEADER_BYTES + padded(h.len);
    };
    Ok(SegmentRead {
        next_seq: seq,
        end: torn.as_ref().map_or(at as u64, |t| t.offset),
        torn,
        header,
        records,
    })
}

/// One segment file as [`read_segment`] walks it.
struct SegmentReader<'a, 'b> {
    segment: &'a SegmentFile,
    chunks: Chunks<'b>,
    file_len: u64,
}

/// What follows in a segment.
enum Next {
    /// Zeros: the records end.
    End,
    /// A torn tail (allowed here).
    Torn(TornTail),
    /// A valid record: its header and kind, and the sequence number after it.
    Record {
        header: Header,
        kind: Kind,
        next: u64,
    },
}

impl<'a, 'b> SegmentReader<'a, 'b> {
    fn open(segment: &'a SegmentFile, bytes: &'b mut Vec<u8>) -> Result<Self, WalError> {
        let what = || format!("cannot read {}", segment.path.display());
        bytes.clear();
        let file = File::open(&segment.path).map_err(io_err(what()))?;
        let file_len = file.metadata().map_err(io_err(what()))?.len();
        Ok(Self {
            segment,
            chunks: Chunks {
                file,
                bytes,
                eof: false,
            },
            file_len,
        })
    }

    fn io(&self) -> impl FnOnce(io::Error) -> WalError {
        io_err(format!("cannot read {}", self.segment.path.display()))
    }

    fn corrupt(&self, offset: u64, seq: u64, reason: String) -> WalError {
        WalError::Corrupt {
            file: self.segment.path.clone(),
            offset,
            seq,
            reason,
        }
    }

    /// The segment header, checked against the file's name and length.
    fn header(&mut self) -> Result<SegmentHeader, WalError> {
        let first_seq = self.segment.first_seq;
        self.chunks.fill(SEGMENT_HEADER_BYTES).map_err(self.io())?;
        let header =
            SegmentHeader::decode(self.chunks.bytes).map_err(|r| self.corrupt(0, first_seq, r))?;
        if header.first_seq != first_seq {
            return Err(self.corrupt(
                16,
                first_seq,
                format!(
                    "segment header says it starts at sequence {}, its name at {first_seq}",
                    header.first_seq
                ),
            ));
        }
        if self.file_len < header.capacity {
            return Err(self.corrupt(
                self.file_len,
                first_seq,
                format!(
                    "segment is {} bytes, it was created with {}: truncated",
                    self.file_len, header.capacity
                ),
            ));
        }
        Ok(header)
    }

    /// A record at `at` that fails its checks for `reason`: a torn tail, or damage.
    fn bad(
        &mut self,
        at: usize,
        seq: u64,
        torn_allowed: bool,
        reason: &str,
    ) -> Result<Next, WalError> {
        self.chunks.fill(usize::MAX).map_err(self.io())?;
        torn_or_damage(self.chunks.bytes, at, seq, torn_allowed, reason)
            .map(Next::Torn)
            .map_err(|(offset, reason)| self.corrupt(offset, seq, reason))
    }

    /// What follows at byte `at`, where the record with sequence number `seq` is due.
    fn next(&mut self, at: usize, seq: u64, torn_allowed: bool) -> Result<Next, WalError> {
        let have = self
            .chunks
            .fill(at + RECORD_HEADER_BYTES)
            .map_err(self.io())?;
        let head = &self.chunks.bytes[at..have.min(at + RECORD_HEADER_BYTES)];
        if head.len() < RECORD_HEADER_BYTES || head.iter().all(|&b| b == 0) {
            // The end of the records: zeros from here on.
            self.chunks.fill(usize::MAX).map_err(self.io())?;
            if nonzero_end(&self.chunks.bytes[at..]) == 0 {
                return Ok(Next::End);
            }
            return self.bad(
                at,
                seq,
                torn_allowed,
                "unexpected bytes after the last record",
            );
        }
        let Some(h) = parse_header(head) else {
            return self.bad(at, seq, torn_allowed, "record header checksum mismatch");
        };
        // The header checks: what it says is what was written.
        if h.seq != seq {
            return Err(self.corrupt(
                at as u64,
                seq,
                format!("sequence {} where {seq} was expected", h.seq),
            ));
        }
        let total = RECORD_HEADER_BYTES + padded(h.len);
        let have = self.chunks.fill(at + total).map_err(self.io())?;
        if h.len == 0 || h.len > MAX_PAYLOAD_BYTES || at + total > have {
            return Err(self.corrupt(
                at as u64,
                seq,
                format!("record length {} runs past the end of the segment", h.len),
            ));
        }
        let payload =
            &self.chunks.bytes[at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + h.len];
        if crc32c::crc32c(payload) != h.payload_crc {
            return self.bad(at, seq, torn_allowed, "payload checksum mismatch");
        }
        let Some(kind) = Kind::from_u8(h.kind) else {
            return Err(self.corrupt(at as u64, seq, format!("unknown record kind {}", h.kind)));
        };
        let next = match kind {
            Kind::Skip => match decode_skip(payload) {
                Some((through, _)) if through >= seq => through + 1,
                _ => return Err(self.corrupt(at as u64, seq, "malformed skip record".into())),
            },
            _ => seq + 1,
        };
        Ok(Next::Record {
            header: h,
            kind,
            next,
        })
    }
}

/// Decides what the record at `at` of a whole segment in `bytes`, expected to have sequence
/// number `seq`, failing its checks for `reason`, is: a torn tail (only where
/// `torn_allowed`, and only if no valid record after it was written once the log was
/// durable through `seq`), or damage (its offset and the full reason).
fn torn_or_damage(
    bytes: &[u8],
    at: usize,
    seq: u64,
    torn_allowed: bool,
    reason: &str,
) -> Result<TornTail, (u64, String)> {
    if !torn_allowed {
        return Err((at as u64, format!("{reason} in a sealed segment")));
    }
    let dirty_end = nonzero_end(bytes).max(at);
    let mut probe = at + 8;
    while probe + RECORD_HEADER_BYTES <= dirty_end {
        if let Some((h, _)) = whole_record(bytes, probe) {
            if h.durable_seq >= seq || h.seq < seq {
                return Err((
                    at as u64,
                    format!(
                        "{reason}, followed by valid record {} at offset {probe}, written when \
                         the log was durable through sequence {}: not a torn write",
                        h.seq, h.durable_seq
                    ),
                ));
            }
        }
        probe += 8;
    }
    Ok(TornTail {
        offset: at as u64,
        dirty_end: dirty_end as u64,
        reason: reason.to_owned(),
    })
}

/// What [`scan`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSummary {
    /// The segments, oldest first (without an unfinished newest one).
    pub segments: Vec<SegmentFile>,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// The newest segment and where its records end (when the scan read it to its end).
    pub tail: Option<Tail>,
    /// A newest segment whose header never fully reached the disk (a roll cut short).
    pub unfinished: Option<PathBuf>,
    /// Records read in the newest segment.
    pub newest_records: u64,
}

impl ScanSummary {
    /// The torn tail found in the newest segment (its path and where the valid records
    /// end), if any.
    #[must_use]
    pub fn torn(&self) -> Option<(&Path, &TornTail)> {
        let tail = self.tail.as_ref()?;
        Some((&tail.path, tail.torn.as_ref()?))
    }

    /// The last sequence number in the log (0 when empty).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
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
    let mut segments = list_segments(dir)?;
    let mut next_seq = segments.first().map_or(1, |s| s.first_seq);
    let mut summary = ScanSummary {
        segments: Vec::new(),
        next_seq,
        tail: None,
        unfinished: None,
        newest_records: 0,
    };
    // A newest segment whose header is not whole: a roll that a crash cut short, before
    // any record went in (whether that is so, [`check_head`] decides with the manifest).
    if let Some(newest) = segments.last() {
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        let whole = File::open(&newest.path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok();
        if !whole || SegmentHeader::decode(&head).is_err() {
            summary.unfinished = segments.pop().map(|s| s.path);
        }
    }
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
        let last = i + 1 == segments.len();
        // Only the newest segment can end in a torn write: the others were synced when the
        // log rolled past them (an unfinished segment after it means it rolled too).
        let torn_allowed = last && summary.unfinished.is_none();
        let ends_before = segments.get(i + 1).map(|n| n.first_seq);
        if ends_before.is_some_and(|end| end <= from) {
            next_seq = ends_before.unwrap_or(next_seq);
            continue;
        }
        let read = read_segment(segment, torn_allowed, until, &mut buffer, |r| {
            if r.seq >= from {
                each(r)
            } else {
                Ok(())
            }
        })?;
        if let Some(prev) = i.checked_sub(1).map(|p| segments[p].first_seq) {
            if read.header.prev_first_seq != prev {
                return Err(WalError::Corrupt {
                    file: segment.path.clone(),
                    offset: 32,
                    seq: segment.first_seq,
                    reason: format!(
                        "segment follows segment {} by its header, but {} precedes it",
                        read.header.prev_first_seq, prev
                    ),
                }
                .into());
            }
        }
        next_seq = read.next_seq;
        if last && next_seq <= until {
            summary.newest_records = read.records;
            summary.tail = Some(Tail {
                path: segment.path.clone(),
                first_seq: segment.first_seq,
                capacity: read.header.capacity,
                end: read.end,
                torn: read.torn,
            });
        }
    }
    summary.segments = segments;
    summary.next_seq = next_seq;
    Ok(summary)
}

/// The newest segment as the data dir's manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Newest {
    /// Its first sequence number.
    pub first_seq: u64,
    /// Its capacity in bytes.
    pub capacity: u64,
}

impl Newest {
    /// A bound on every sequence number the log can have given out: the newest segment
    /// holds fewer than `capacity / MIN_RECORD_BYTES` records.
    #[must_use]
    pub fn seq_bound(&self) -> u64 {
        self.first_seq
            .saturating_add(self.capacity / MIN_RECORD_BYTES)
    }
}

/// How the log's newest segment relates to the one the manifest recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadCheck {
    /// Neither the manifest nor the directory knows a segment: a new log.
    Fresh,
    /// The newest segment is the recorded one.
    Recorded,
    /// The newest segment is newer than the recorded one and holds no record: a roll that a
    /// crash cut short before recording it. The writer records it.
    Unrecorded,
}

/// Checks the scanned log against the newest segment the manifest recorded: deleted newest
/// segments, or a whole log gone, are damage ([`WalError::Incomplete`]).
pub fn check_head(summary: &ScanSummary, recorded: Option<Newest>) -> Result<HeadCheck, WalError> {
    if let (Some(path), Some(r)) = (&summary.unfinished, recorded) {
        if path.file_name().and_then(|n| n.to_str()) == Some(segment_name(r.first_seq).as_str()) {
            return Err(WalError::Corrupt {
                file: path.clone(),
                offset: 0,
                seq: r.first_seq,
                reason: "the header of the newest segment (recorded in the manifest) is damaged"
                    .into(),
            });
        }
    }
    match (recorded, summary.segments.last()) {
        (None, None) => Ok(HeadCheck::Fresh),
        (None, Some(s)) => Err(WalError::Incomplete {
            reason: format!(
                "the data dir's manifest does not record the newest segment, but {} exists \
                 (the manifest was replaced, or the log was written by an older corral)",
                s.path.display()
            ),
        }),
        (Some(r), None) => Err(WalError::Incomplete {
            reason: format!(
                "the manifest records segment {} as the newest, but the event log holds no \
                 segment (deleted?)",
                segment_name(r.first_seq)
            ),
        }),
        (Some(r), Some(s)) if s.first_seq == r.first_seq => Ok(HeadCheck::Recorded),
        (Some(r), Some(s)) if s.first_seq < r.first_seq => Err(WalError::Incomplete {
            reason: format!(
                "the newest segment {} (recorded in the manifest) is missing; the log on disk \
                 ends at sequence {} in {}",
                segment_name(r.first_seq),
                summary.last_seq(),
                s.path.display()
            ),
        }),
        // Newer than the recorded one: a roll cut short leaves it empty.
        (Some(_), Some(_)) if summary.tail.is_some() && summary.newest_records == 0 => {
            Ok(HeadCheck::Unrecorded)
        }
        (Some(r), Some(s)) => Err(WalError::Corrupt {
            file: s.path.clone(),
            offset: 0,
            seq: s.first_seq,
            reason: format!(
                "segment holds records but the manifest records {} as the newest",
                segment_name(r.first_seq)
            ),
        }),
    }
}

/// Sets damage aside on an operator's word (`--accept-data-loss`): the segment with
/// `error`'s damage keeps its records before the damage (a copy of the whole file is kept
/// as `<name>.damaged`, then the rest is zeroed and the file brought back to its capacity);
/// a segment whose header is damaged, and every later segment, is renamed to
/// `<name>.damaged`. Returns the files set aside. Only [`WalError::Corrupt`] and
/// [`WalError::Gap`] can be cut.
pub fn cut_damage(dir: &Path, error: &WalError) -> Result<Vec<PathBuf>, WalError> {
    let (file, cut_at) = match error {
        WalError::Corrupt { file, offset, .. } if *offset >= SEGMENT_HEADER_BYTES as u64 => {
            (file.clone(), Some(*offset))
        }
        WalError::Corrupt { file, .. } | WalError::Gap { file, .. } => (file.clone(), None),
        other => {
            return Err(WalError::Incomplete {
                reason: format!("cannot be cut away: {other}"),
            })
        }
    };
    let aside = |p: &Path| {
        let mut name = p.file_name().unwrap_or_default().to_owned();
        name.push(".damaged");
        p.with_file_name(name)
    };
    let segments = list_segments(dir)?;
    let from = segments
        .iter()
        .position(|s| s.path == file)
        .unwrap_or(segments.len());
    let mut set_aside = Vec::new();
    let mut whole = &segments[from..];
    if let (Some(offset), Some(s)) = (cut_at, segments.get(from)) {
        let what = format!("cannot cut {}", s.path.display());
        fs::copy(&s.path, aside(&s.path)).map_err(io_err(&what))?;
        set_aside.push(aside(&s.path));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&s.path)
            .map_err(io_err(&what))?;
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        f.read_exact_at(&mut h, 0).map_err(io_err(&what))?;
        let capacity = SegmentHeader::decode(&h).map_or(0, |h| h.capacity);
        let len = f.metadata().map_err(io_err(&what))?.len();
        zero_range(&f, offset, len.saturating_sub(offset))
            .and_then(|()| {
                if len < capacity {
                    reserve(&f, capacity)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| f.sync_data())
            .map_err(io_err(&what))?;
        whole = &segments[from + 1..];
    }
    for s in whole {
        fs::rename(&s.path, aside(&s.path))
            .map_err(io_err(format!("cannot rename {}", s.path.display())))?;
        set_aside.push(aside(&s.path));
    }
    sync_dir(dir)?;
    Ok(set_aside)
}

/// Writes zeros over `len` bytes of `file` from `offset`.
fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 16];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Settings of a [`Writer`].
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Capacity of a new segment (a group larger than this gets a segment of its size).
    pub segment_bytes: u64,
    /// Whether a commit syncs what it wrote before returning.
    pub sync_on_commit: bool,
}

/// Records a new newest segment in the data dir's manifest, durably.
pub type HeadRecorder = Box<dyn FnMut(Newest) -> io::Result<()> + Send>;

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    path: PathBuf,
    first_seq: u64,
    capacity: u64,
    /// Where the next record goes.
    end: u64,
    /// Whether the manifest records this segment as the newest (no record goes in before).
    recorded: bool,
}

/// A failed group's bytes, to be zeroed again until that succeeds.
#[derive(Debug)]
struct Undo {
    file: File,
    offset: u64,
    len: u64,
    reason: String,
}

/// The single appender of the log.
pub struct Writer {
    dir: PathBuf,
    options: WriterOptions,
    current: Current,
    record_head: HeadRecorder,
    /// Records staged since the last commit.
    staged: Vec<u8>,
    /// Records staged (the i-th has sequence number `committed_seq + i`, but after a skip).
    staged_records: usize,
    next_seq: u64,
    /// The sequence number of the first record not yet committed.
    committed_seq: u64,
    /// A failed group whose bytes could not be zeroed yet: nothing is written until they are.
    undo: Option<Undo>,
    /// Segments this writer created.
    segments_created: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("current", &self.current.path)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// An append that did not reach the log; the staged records were discarded and their
/// sequence numbers will be reused.
#[derive(Debug)]
pub struct CommitError {
    /// Why.
    pub error: WalError,
    /// Some of the group's bytes may still be in the log: they could not be removed again
    /// (the writer retries before the next commit).
    pub unknown: bool,
}

impl Writer {
    /// Opens the log in `dir` for appending after `summary` (from [`scan`], already checked
    /// with [`check_head`]): removes an unfinished segment, zeroes a torn tail, creates the
    /// first segment of an empty log, and records the newest segment with `record_head`
    /// where the manifest does not hold it yet.
    pub fn open(
        dir: &Path,
        summary: &ScanSummary,
        options: WriterOptions,
        mut record_head: HeadRecorder,
    ) -> Result<Self, WalError> {
        if let Some(path) = &summary.unfinished {
            fs::remove_file(path).map_err(io_err(format!("cannot remove {}", path.display())))?;
            sync_dir(dir)?;
        }
        let current = match &summary.tail {
            Some(tail) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&tail.path)
                    .map_err(io_err(format!("cannot open {}", tail.path.display())))?;
                if let Some(torn) = &tail.torn {
                    zero_range(&file, torn.offset, torn.dirty_end - torn.offset)
                        .and_then(|()| file.sync_data())
                        .map_err(io_err(format!(
                            "cannot cut the torn tail of {}",
                            tail.path.display()
                        )))?;
                }
                Current {
                    file,
                    path: tail.path.clone(),
                    first_seq: tail.first_seq,
                    capacity: tail.capacity,
                    end: tail.end,
                    recorded: false,
                }
            }
            None if summary.segments.is_empty() => {
                create_segment(dir, summary.next_seq, options.segment_bytes, 0)?
            }
            None => {
                return Err(WalError::Incomplete {
                    reason: "the log was not read to its end".into(),
                })
            }
        };
        let mut current = current;
        (record_head)(Newest {
            first_seq: current.first_seq,
            capacity: current.capacity,
        })
        .map_err(io_err(
            "cannot record the newest event log segment in the manifest",
        ))?;
        current.recorded = true;
        Ok(Self {
            dir: dir.to_owned(),
            options,
            current,
            record_head,
            staged: Vec::new(),
            staged_records: 0,
            next_seq: summary.next_seq,
            committed_seq: summary.next_seq,
            undo: None,
            segments_created: 0,
        })
    }

    /// The sequence number the next appended record gets.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stages a record whose payload `payload` appends in place (at least one byte);
    /// returns its sequence number. `durable_seq` is how far the log is durable now.
    /// Nothing is written until [`Writer::commit`].
    pub fn append(
        &mut self,
        kind: Kind,
        durable_seq: u64,
        payload: impl FnOnce(&mut Vec<u8>),
    ) -> u64 {
        let seq = self.next_seq;
        encode_record(&mut self.staged, seq, kind, durable_seq, payload);
        self.staged_records += 1;
        self.next_seq += 1;
        seq
    }

    /// Stages a skip record giving up every sequence number through `through` (at least
    /// the next one), for `reason`; the next record gets `through + 1`.
    pub fn append_skip(&mut self, through: u64, reason: &str, durable_seq: u64) -> u64 {
        assert!(
            through >= self.next_seq,
            "a skip gives up at least one number"
        );
        let payload = skip_payload(through, reason);
        let seq = self.append(Kind::Skip, durable_seq, |b| b.extend_from_slice(&payload));
        self.next_seq = through + 1;
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
        self.staged_records
    }

    /// Why nothing can be written now (a failed group's bytes are still to be removed),
    /// if that is so.
    #[must_use]
    pub fn broken(&self) -> Option<&str> {
        self.undo.as_ref().map(|u| u.reason.as_str())
    }

    /// Writes every staged record as one write into one segment (rolling first if they do
    /// not fit) and, with [`WriterOptions::sync_on_commit`], syncs them. On error the staged
    /// records are discarded, the bytes written are zeroed again, and their sequence numbers
    /// are given out again, so the log never keeps a record whose write was reported failed.
    /// If the zeroing fails too, every later commit first retries it and fails until it
    /// succeeds.
    pub fn commit(&mut self) -> Result<(), CommitError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.repair() {
            self.discard();
            return Err(CommitError {
                error,
                unknown: false,
            });
        }
        let mut written = 0u64;
        let result = self.write_staged(&mut written);
        let mut unknown = false;
        match &result {
            Ok(()) => self.committed_seq = self.next_seq,
            Err(e) if written > 0 => {
                if let Ok(file) = self.current.file.try_clone() {
                    self.undo = Some(Undo {
                        file,
                        offset: self.current.end,
                        len: written,
                        reason: e.to_string(),
                    });
                }
                // Best at once; if it fails, the next commit tries again first.
                unknown = self.undo.is_none() || self.repair().is_err();
            }
            Err(_) => {}
        }
        self.discard();
        result.map_err(|error| CommitError { error, unknown })
    }

    /// Zeroes (and syncs) the bytes of a failed group, if any are left; reopens the
    /// segment by its path first, and checks it is still the file being appended to.
    fn repair(&mut self) -> Result<(), WalError> {
        let Some(undo) = &self.undo else {
            return Ok(());
        };
        let result = zero_range(&undo.file, undo.offset, undo.len)
            .and_then(|()| undo.file.sync_data())
            .and_then(|()| {
                // Read it back: the cut must hold.
                let mut back = vec![0u8; undo.len.min(1 << 20) as usize];
                undo.file.read_exact_at(&mut back, undo.offset)?;
                if back.iter().all(|&b| b == 0) {
                    Ok(())
                } else {
                    Err(io::Error::other(
                        "the failed write's bytes did not read back as zeros",
                    ))
                }
            });
        match result {
            Ok(()) => {
                self.undo = None;
                Ok(())
            }
            Err(error) => Err(WalError::Io {
                what: format!(
                    "cannot remove a failed write from {} (after: {}); writes are refused until \
                     that succeeds",
                    self.current.path.display(),
                    undo.reason
                ),
                error,
            }),
        }
    }

    /// Segments created since opening (a changed count means the current file changed).
    #[must_use]
    pub fn segments_created(&self) -> usize {
        self.segments_created
    }

    /// Syncs the current segment.
    pub fn sync(&mut self) -> io::Result<()> {
        self.current.file.sync_data()
    }

    /// Drops what is staged; its sequence numbers are given out again.
    pub fn discard(&mut self) {
        self.staged.clear();
        self.staged_records = 0;
        self.next_seq = self.committed_seq;
    }

    /// Writes the staged records into the current segment (rolling or growing it first when
    /// they do not fit), counting in `written` the bytes that reached the file.
    fn write_staged(&mut self, written: &mut u64) -> Result<(), WalError> {
        let len = self.staged.len() as u64;
        if self.current.end + len > self.current.capacity {
            if self.current.end == SEGMENT_HEADER_BYTES as u64 {
                self.grow(SEGMENT_HEADER_BYTES as u64 + len)?;
            } else {
                self.roll(self.committed_seq, SEGMENT_HEADER_BYTES as u64 + len)?;
            }
        }
        if !self.current.recorded {
            (self.record_head)(Newest {
                first_seq: self.current.first_seq,
                capacity: self.current.capacity,
            })
            .map_err(io_err(
                "cannot record the newest event log segment in the manifest",
            ))?;
            self.current.recorded = true;
        }
        let what = || format!("cannot append to the event log in {}", self.dir.display());
        while *written < len {
            match self.current.file.write_at(
                &self.staged[*written as usize..],
                self.current.end + *written,
            ) {
                Ok(0) => return Err(io_err(what())(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(what())(e)),
            }
        }
        if self.options.sync_on_commit {
            self.current.file.sync_data().map_err(io_err(what()))?;
        }
        self.current.end += len;
        Ok(())
    }

    /// Gives the (empty) current segment room for `needed` bytes: its file grows, then its
    /// header says so. A crash in between leaves a file longer than its header, which reads
    /// as zeros past the capacity.
    fn grow(&mut self, needed: u64) -> Result<(), WalError> {
        let what = format!("cannot grow {}", self.current.path.display());
        reserve(&self.current.file, needed).map_err(io_err(&what))?;
        let header = SegmentHeader::decode(&{
            let mut h = [0u8; SEGMENT_HEADER_BYTES];
            self.current
                .file
                .read_exact_at(&mut h, 0)
                .map_err(io_err(&what))?;
            h
        })
        .map_err(|reason| WalError::Corrupt {
            file: self.current.path.clone(),
            offset: 0,
            seq: self.current.first_seq,
            reason,
        })?;
        let grown = SegmentHeader {
            capacity: needed,
            ..header
        };
        self.current
            .file
            .write_all_at(&grown.encode(), 0)
            .and_then(|()| self.current.file.sync_data())
            .map_err(io_err(&what))?;
        self.current.capacity = needed;
        self.current.recorded = false;
        Ok(())
    }

    fn roll(&mut self, first_seq: u64, needed: u64) -> Result<(), WalError> {
        // The finished segment is synced whatever the policy (once per segment, so cheap
        // even under `No`): a later segment must never survive a crash that an earlier one
        // did not, and syncing the current segment then makes the whole log durable.
        self.current.file.sync_data().map_err(io_err(format!(
            "cannot sync the event log in {}",
            self.dir.display()
        )))?;
        self.current = create_segment(
            &self.dir,
            first_seq,
            self.options.segment_bytes.max(needed),
            self.current.first_seq,
        )?;
        self.segments_created += 1;
        Ok(())
    }

    /// Removes the segments whose records all have sequence numbers of at most `floor`
    /// (never the current one); returns how many went. Called between commits.
    pub fn remove_through(&mut self, floor: u64) -> Result<usize, WalError> {
        let segments = list_segments(&self.dir)?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            if pair[1].first_seq - 1 > floor || pair[0].path == self.current.path {
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
        self.current.file.try_clone()
    }

    /// The current segment's path and open file (to check that it is still in place).
    #[must_use]
    pub fn current_file(&self) -> (&Path, &File) {
        (&self.current.path, &self.current.file)
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

/// Reserves `len` bytes of `file`'s blocks (so a full disk shows when a segment is created,
/// not in the middle of a group), or just sets its length where the file system cannot.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    let size = i64::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
    match nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

/// Creates a segment of `capacity` bytes with its header, synced, and syncs the directory.
fn create_segment(
    dir: &Path,
    first_seq: u64,
    capacity: u64,
    prev_first_seq: u64,
) -> Result<Current, WalError> {
    let capacity = capacity.max(SEGMENT_HEADER_BYTES as u64 + MIN_RECORD_BYTES);
    let path = dir.join(segment_name(first_seq));
    let what = format!("cannot create event log segment {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&what))?;
    let header = SegmentHeader {
        first_seq,
        capacity,
        prev_first_seq,
    };
    let written = reserve(&file, capacity)
        .and_then(|()| file.write_all(&header.encode()))
        .and_then(|()| file.sync_data())
        .map_err(io_err(&what))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(Current {
        file,
        path,
        first_seq,
        capacity,
        end: SEGMENT_HEADER_BYTES as u64,
        recorded: false,
    })
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
    use std::sync::{Arc, Mutex};

    use crate::wal::testing::TestDir as Dir;

    fn payload(seq: u64) -> Vec<u8> {
        (0..(seq * 13 % 50 + 1)).map(|i| (seq + i) as u8).collect()
    }

    /// The newest segment as the test's "manifest" holds it.
    type HeadCell = Arc<Mutex<Option<Newest>>>;

    fn recorder(cell: &HeadCell) -> HeadRecorder {
        let cell = Arc::clone(cell);
        Box::new(move |n| {
            *cell.lock().unwrap() = Some(n);
            Ok(())
        })
    }

    fn open(dir: &Path, head: &HeadCell, segment_bytes: u64) -> Writer {
        let summary = scan(dir, .., |_| Ok::<(), WalError>(())).unwrap();
        check_head(&summary, *head.lock().unwrap()).unwrap();
        let options = WriterOptions {
            segment_bytes,
            sync_on_commit: true,
        };
        Writer::open(dir, &summary, options, recorder(head)).unwrap()
    }

    /// Writes records up to `n` in commits of `per_commit`, each carrying `durable` (or,
    /// with `None`, the last committed sequence number as the durable one).
    fn write_log(
        dir: &Path,
        head: &HeadCell,
        n: u64,
        per_commit: u64,
        segment_bytes: u64,
        durable: Option<u64>,
    ) {
        let mut w = open(dir, head, segment_bytes);
        let mut staged = 0;
        while w.next_seq() <= n {
            let seq = w.next_seq();
            let kind = if seq % 7 == 0 {
                Kind::Lifecycle
            } else {
                Kind::Write
            };
            let d = durable.unwrap_or(w.committed_seq - 1);
            assert_eq!(w.append(kind, d, |b| b.extend(payload(seq))), seq);
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

    /// Offsets of the records of a segment file.
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES;
        while let Some((_, total)) = whole_record(bytes, at) {
            out.push(at);
            at += total;
        }
        out
    }

    #[test]
    fn records_round_trip_across_commits_and_preallocated_segments() {
        let dir = Dir::new("roundtrip");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 500, 9, 1024, None);
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 500);
        assert!(summary.segments.len() > 10, "{}", summary.segments.len());
        assert_eq!(summary.next_seq, 501);
        assert_eq!(summary.torn(), None);
        assert_eq!(
            check_head(&summary, *head.lock().unwrap()).unwrap(),
            HeadCheck::Recorded
        );
        for s in &summary.segments {
            // Every segment keeps the capacity it was created with, zeros after its records.
            assert_eq!(
                fs::metadata(&s.path).unwrap().len(),
                1024,
                "{}",
                s.path.display()
            );
        }
        // Reopening appends after the last record.
        write_log(&dir.0, &head, 520, 4, 1024, None);
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
    fn a_group_larger_than_a_segment_gets_a_segment_of_its_own() {
        let dir = Dir::new("large");
        let head = HeadCell::default();
        let mut w = open(&dir.0, &head, 512);
        for seq in 1..=40 {
            w.append(Kind::Write, 0, |b| b.extend(payload(seq)));
        }
        w.commit().unwrap();
        w.append(Kind::Write, 40, |b| b.extend(payload(41)));
        w.commit().unwrap();
        let (records, summary) = read_all(&dir.0).unwrap();
        assert_eq!(records.len(), 41);
        let sizes: Vec<u64> = summary
            .segments
            .iter()
            .map(|s| fs::metadata(&s.path).unwrap().len())
            .collect();
        assert!(sizes[0] > 512, "{sizes:?}");
        assert_eq!(*sizes.last().unwrap(), 512, "{sizes:?}");
    }

    #[test]
    fn retention_removes_only_segments_wholly_at_or_below_the_floor() {
        let dir = Dir::new("retain");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 300, 5, 1024, None);
        let summary = scan(&dir.0, .., |_| Ok::<(), WalError>(())).unwrap();
        let firsts: Vec<u64> = summary.segments.iter().map(|s| s.first_seq).collect();
        let mut w = open(&dir.0, &head, 1024);
        let usage = w.disk_usage().unwrap();
        assert_eq!(usage.segments, firsts.len());
        assert_eq!(usage.oldest_seq, firsts[0]);
        // A floor inside the fourth segment keeps the third and everything after it.
        let floor = firsts[3] - 2;
        assert_eq!(w.remove_through(floor).unwrap(), 2);
        let mut seen = Vec::new();
        let after = scan(&dir.0, .., |r| {
            seen.push(r.seq);
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(seen.first(), Some(&firsts[2]));
        assert_eq!(after.next_seq, 301);
        // The current segment stays whatever the floor; appending goes on after it.
        w.remove_through(u64::MAX).unwrap();
        let usage = w.disk_usage().unwrap();
        assert_eq!(usage.segments, 1);
        assert_eq!(usage.oldest_seq, *firsts.last().unwrap());
        assert_eq!(w.append(Kind::Write, 300, |b| b.extend(payload(301))), 301);
        w.commit().unwrap();
        let (_, summary) = read_all(&dir.0).unwrap();
        assert_eq!(summary.last_seq(), 301);
    }

    /// The newest segment's bytes, and where its last record starts and ends.
    fn newest(dir: &Path) -> (PathBuf, Vec<u8>, usize, usize) {
        let summary = scan(dir, .., |_| Ok::<(), WalError>(())).unwrap();
        let path = summary.segments.last().unwrap().path.clone();
        let bytes = fs::read(&path).unwrap();
        let offsets = record_offsets(&bytes);
        let last = *offsets.last().unwrap();
        let end = last + whole_record(&bytes, last).unwrap().1;
        (path, bytes, last, end)
    }

    #[test]
    fn a_torn_last_record_is_cut_off_whatever_the_write_left_of_it() {
        let dir = Dir::new("torn");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 20, 1, 1 << 20, None);
        let (path, full, last, _) = newest(&dir.0);
        // Padding after the payload is not part of the record.
        let end = last + RECORD_HEADER_BYTES + payload(20).len();
        // The last write reached the disk only up to some byte (zeros after), or with
        // garbage in place of its bytes from some point on.
        for cut in last..end {
            for garbage in [false, true] {
                let mut bytes = full.clone();
                for (i, b) in bytes[cut..end].iter_mut().enumerate() {
                    *b = if garbage {
                        (i as u8).wrapping_mul(37) | 1
                    } else {
                        0
                    };
                }
                fs::write(&path, &bytes).unwrap();
                let (records, summary) = read_all(&dir.0).unwrap();
                check_records(&records, 19);
                if cut == last && !garbage {
                    // Nothing of the write reached the disk: the log simply ends.
                    assert_eq!(summary.torn(), None);
                } else {
                    let (at, torn) = summary.torn().unwrap();
                    assert_eq!(
                        (at, torn.offset),
                        (path.as_path(), last as u64),
                        "cut {cut}"
                    );
                }
                // Appending after the cut continues the sequence cleanly.
                let mut w = open(&dir.0, &head, 1 << 20);
                assert_eq!(w.append(Kind::Write, 19, |b| b.extend(payload(20))), 20);
                w.commit().unwrap();
                let (records, summary) = read_all(&dir.0).unwrap();
                check_records(&records, 20);
                assert_eq!(summary.torn(), None);
                assert_eq!(fs::read(&path).unwrap(), full, "cut {cut}");
            }
        }
    }

    #[test]
    fn a_torn_group_whose_later_pages_survived_is_still_a_torn_tail() {
        let dir = Dir::new("reorder");
        let head = HeadCell::default();
        // Records 1..=10 synced; 11..=30 one unsynced group (durable through 10).
        write_log(&dir.0, &head, 10, 10, 1 << 20, Some(0));
        write_log(&dir.0, &head, 30, 100, 1 << 20, Some(10));
        let (path, mut bytes, _, _) = newest(&dir.0);
        let offsets = record_offsets(&bytes);
        // Power loss kept later records of the group but not record 15.
        let (a, b) = (offsets[14], offsets[15]);
        bytes[a..b].fill(0);
        fs::write(&path, &bytes).unwrap();
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 14);
        assert_eq!(summary.torn().unwrap().1.offset, a as u64);
    }

    #[test]
    fn damage_followed_by_records_written_after_it_was_durable_is_refused() {
        let dir = Dir::new("damage");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 300, 1, 1 << 20, None);
        let (path, good, _, _) = newest(&dir.0);
        let offsets = record_offsets(&good);
        let at = offsets[39];
        let expect_corrupt = |bytes: &[u8], what: &str| {
            fs::write(&path, bytes).unwrap();
            match read_all(&dir.0) {
                Err(WalError::Corrupt {
                    file,
                    offset,
                    seq,
                    reason,
                }) => {
                    assert_eq!(
                        (file, offset, seq),
                        (path.clone(), at as u64, 40),
                        "{what}: {reason}"
                    );
                    assert!(reason.contains("not a torn write"), "{what}: {reason}");
                }
                other => panic!("{what}: expected damage, got {other:?}"),
            }
        };
        // The length field of record 40 set to 0x7fffffff.
        let mut bytes = good.clone();
        bytes[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        expect_corrupt(&bytes, "length");
        // A flipped payload byte.
        let mut bytes = good.clone();
        bytes[at + RECORD_HEADER_BYTES] ^= 0x40;
        expect_corrupt(&bytes, "payload");
        // The record zeroed.
        let mut bytes = good.clone();
        bytes[at..offsets[40]].fill(0);
        expect_corrupt(&bytes, "zeroed");
        fs::write(&path, &good).unwrap();
        assert!(read_all(&dir.0).is_ok());
    }

    #[test]
    fn truncation_gaps_missing_segments_and_sealed_damage_are_refused() {
        let dir = Dir::new("refuse");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 200, 10, 2048, None);
        let (_, summary) = read_all(&dir.0).unwrap();
        assert!(summary.segments.len() >= 4);
        let restore: Vec<(PathBuf, Vec<u8>)> = summary
            .segments
            .iter()
            .map(|s| (s.path.clone(), fs::read(&s.path).unwrap()))
            .collect();
        let put_back = || {
            for (p, b) in &restore {
                fs::write(p, b).unwrap();
            }
        };
        // The newest segment truncated at a record boundary.
        let (path, bytes, last, _) = newest(&dir.0);
        fs::write(&path, &bytes[..last]).unwrap();
        let err = read_all(&dir.0).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        put_back();
        // A flipped byte in the last record of a sealed segment (nothing after it there).
        let sealed = &summary.segments[1].path;
        let mut bytes = fs::read(sealed).unwrap();
        let offsets = record_offsets(&bytes);
        bytes[*offsets.last().unwrap() + RECORD_HEADER_BYTES] ^= 1;
        fs::write(sealed, &bytes).unwrap();
        let err = read_all(&dir.0).unwrap_err().to_string();
        assert!(
            err.contains("sealed segment") && err.contains(&sealed.display().to_string()),
            "{err}"
        );
        put_back();
        // A missing middle segment is a gap.
        fs::remove_file(&summary.segments[1].path).unwrap();
        assert!(matches!(read_all(&dir.0), Err(WalError::Gap { .. })));
        put_back();
        // The newest segment deleted: the scan alone cannot tell, the recorded head can.
        let newest = summary.segments.last().unwrap();
        fs::remove_file(&newest.path).unwrap();
        let (_, shorter) = read_all(&dir.0).unwrap();
        let err = check_head(&shorter, *head.lock().unwrap()).unwrap_err();
        assert!(matches!(err, WalError::Incomplete { .. }), "{err}");
        assert!(
            err.to_string().contains(&segment_name(newest.first_seq)),
            "{err}"
        );
        // Every segment deleted.
        for s in &summary.segments {
            let _ = fs::remove_file(&s.path);
        }
        let (_, empty) = read_all(&dir.0).unwrap();
        assert!(check_head(&empty, *head.lock().unwrap()).is_err());
        assert_eq!(check_head(&empty, None).unwrap(), HeadCheck::Fresh);
    }

    #[test]
    fn an_interrupted_roll_is_finished_or_undone() {
        let dir = Dir::new("roll");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 50, 5, 1 << 20, None);
        // A segment created but not recorded: adopted, and appended to.
        let (_, summary) = read_all(&dir.0).unwrap();
        let created = create_segment(&dir.0, 51, 4096, summary.segments[0].first_seq).unwrap();
        drop(created);
        let (_, summary) = read_all(&dir.0).unwrap();
        assert_eq!(
            check_head(&summary, *head.lock().unwrap()).unwrap(),
            HeadCheck::Unrecorded
        );
        write_log(&dir.0, &head, 60, 5, 1 << 20, None);
        assert_eq!(head.lock().unwrap().unwrap().first_seq, 51);
        // A segment whose header never reached the disk: removed.
        fs::write(dir.0.join(segment_name(61)), [0u8; 10]).unwrap();
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 60);
        assert!(summary.unfinished.is_some());
        write_log(&dir.0, &head, 70, 5, 1 << 20, None);
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, 70);
        assert!(summary.unfinished.is_none());
    }

    #[test]
    fn a_failed_commit_leaves_no_record_and_reuses_its_sequence_numbers() {
        let dir = Dir::new("fail");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 5, 5, 1 << 20, None);
        let mut w = open(&dir.0, &head, 1 << 20);
        // Swap the open segment for a read-only handle: the write fails, and so does the
        // zeroing, until a writable handle is back.
        let path = w.current.path.clone();
        let writable = std::mem::replace(&mut w.current.file, File::open(&path).unwrap());
        assert_eq!(w.append(Kind::Write, 5, |b| b.extend(b"lost")), 6);
        let err = w.commit().unwrap_err();
        // Nothing reached the file: a clean refusal, nothing to undo.
        assert!(!err.unknown && w.broken().is_none(), "{err:?}");
        assert_eq!(w.next_seq(), 6);
        // Bytes that did reach the file, but cannot be zeroed (read-only): kept as an undo,
        // retried before the next commit, which fails until the undo succeeds.
        w.undo = Some(Undo {
            file: File::open(&path).unwrap(),
            offset: w.current.end,
            len: 16,
            reason: "test".into(),
        });
        assert_eq!(w.append(Kind::Write, 5, |b| b.extend(b"lost")), 6);
        let err = w.commit().unwrap_err();
        assert!(!err.unknown && w.broken().is_some(), "{err:?}");
        w.undo.as_mut().unwrap().file = writable.try_clone().unwrap();
        w.current.file = writable;
        assert_eq!(w.append(Kind::Write, 5, |b| b.extend(payload(6))), 6);
        w.commit().unwrap();
        assert!(w.broken().is_none());
        let (records, _) = read_all(&dir.0).unwrap();
        check_records(&records, 6);
    }

    #[test]
    fn a_skip_record_declares_a_gap_that_scans_step_over() {
        let dir = Dir::new("skip");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 10, 10, 1 << 20, None);
        let mut w = open(&dir.0, &head, 1 << 20);
        assert_eq!(w.append_skip(500, "accepted loss", 10), 11);
        assert_eq!(w.append(Kind::Write, 10, |b| b.extend(payload(501))), 501);
        w.commit().unwrap();
        let mut seen = Vec::new();
        let summary = scan(&dir.0, .., |r| {
            seen.push((r.seq, r.kind));
            if r.kind == Kind::Skip {
                assert_eq!(
                    decode_skip(r.payload),
                    Some((500, "accepted loss".to_owned()))
                );
            }
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(seen[10], (11, Kind::Skip));
        assert_eq!(seen[11], (501, Kind::Write));
        assert_eq!(summary.next_seq, 502);
        let mut ranged = Vec::new();
        scan(&dir.0, 200..=501, |r| {
            ranged.push(r.seq);
            Ok::<(), WalError>(())
        })
        .unwrap();
        assert_eq!(ranged, vec![501]);
    }

    #[test]
    fn cutting_damage_keeps_the_records_before_it() {
        let dir = Dir::new("cut");
        let head = HeadCell::default();
        write_log(&dir.0, &head, 200, 10, 2048, None);
        let (_, summary) = read_all(&dir.0).unwrap();
        let victim = summary.segments[1].clone();
        let mut bytes = fs::read(&victim.path).unwrap();
        let offsets = record_offsets(&bytes);
        bytes[offsets[2] + RECORD_HEADER_BYTES] ^= 4;
        fs::write(&victim.path, &bytes).unwrap();
        let err = read_all(&dir.0).unwrap_err();
        let aside = cut_damage(&dir.0, &err).unwrap();
        assert_eq!(aside.len(), summary.segments.len() - 1);
        let (records, summary) = read_all(&dir.0).unwrap();
        check_records(&records, victim.first_seq + 1);
        assert_eq!(summary.segments.last().unwrap().path, victim.path);
        assert_eq!(fs::metadata(&victim.path).unwrap().len(), 2048);
    }
}
