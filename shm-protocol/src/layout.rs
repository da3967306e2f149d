//! The segment's fixed head (header and single-writer cache lines) and the geometry of the
//! variable regions behind it. See the crate documentation for the byte-by-byte diagram.

use core::mem::{offset_of, size_of};

use crate::metrics::MetricsBlock;
use crate::ring::max_payload_words;
// The layout is the real memory format: always std atomics, also under loom.
use crate::table::SLOT_WORDS;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// First word of every segment: `b"CORRALSG"` little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CORRALSG");
/// Bumped on any change of meaning that the layout hash cannot see.
pub const LAYOUT_VERSION: u32 = 1;
/// Cache line size assumed for the single-writer lines.
pub const CACHE_LINE_BYTES: usize = 64;

/// Read-only after creation: written by the supervisor before the worker is spawned.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_HASH`] of the writer's build.
    pub layout_hash: AtomicU64,
    /// Worker generation this segment belongs to (a restart is a new generation).
    pub generation: AtomicU64,
    /// Size of the mapping in bytes.
    pub total_bytes: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// Shard index.
    pub worker_id: AtomicU32,
    /// Longest key accepted.
    pub max_key_bytes: AtomicU32,
    /// Longest value accepted.
    pub max_value_bytes: AtomicU32,
    /// Most keys the shard holds.
    pub max_keys: AtomicU64,
    /// Request ring size in words (a power of two).
    pub request_ring_words: AtomicU64,
    /// Completion ring size in words (a power of two).
    pub completion_ring_words: AtomicU64,
    /// Number of table slots (a power of two).
    pub table_slots: AtomicU64,
    /// Words in each of the two heap halves.
    pub heap_half_words: AtomicU64,
    _reserved: [AtomicU64; 5],
}

/// Written only by the supervisor: the request ring's producer side and control.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct SupervisorLine {
    /// Request ring tail (free-running words).
    pub request_tail: AtomicU64,
    /// Futex word the worker sleeps on; bumped to wake it.
    pub request_doorbell: AtomicU32,
    /// [`CONTROL_RUN`] or [`CONTROL_STOP`].
    pub control: AtomicU32,
    /// Checkpoint requests so far; the worker answers each in [`CheckpointLine::done`].
    pub checkpoint_request: AtomicU64,
    /// The newest sequence number a requested checkpoint may cover: every request with a
    /// higher one is in the ring after it, and everything up to it is durable in the log.
    /// Stored before `checkpoint_request` (release), read after it (acquire).
    pub checkpoint_limit: AtomicU64,
}

/// Written only by the supervisor: the completion ring's consumer side.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct SupervisorCompletionLine {
    /// Completion ring head (free-running words).
    pub completion_head: AtomicU64,
    /// 1 while the supervisor's completion reader sleeps on the completion doorbell.
    pub supervisor_sleeping: AtomicU32,
}

/// Written only by the worker: the request ring's consumer side.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WorkerRequestLine {
    /// Request ring head (free-running words).
    pub request_head: AtomicU64,
    /// 1 while the worker sleeps on the request doorbell.
    pub worker_sleeping: AtomicU32,
}

/// Written only by the worker: the completion ring's producer side.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WorkerCompletionLine {
    /// Completion ring tail (free-running words).
    pub completion_tail: AtomicU64,
    /// Futex word the supervisor sleeps on; bumped to wake it.
    pub completion_doorbell: AtomicU32,
}

/// Written only by the worker: its state, liveness and a summary of its table.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WorkerStatusLine {
    /// A [`WorkerState`] value.
    pub state: AtomicU32,
    /// The worker's process id.
    pub pid: AtomicU32,
    /// `CLOCK_MONOTONIC` nanoseconds of the last heartbeat (system-wide clock).
    pub heartbeat_ns: AtomicU64,
    /// Sequence number of the last applied request.
    pub applied_seq: AtomicU64,
    /// Order-independent digest of the table's pairs.
    pub digest: AtomicU64,
    /// Live keys.
    pub keys: AtomicU64,
    /// Heap bytes held by live entries.
    pub live_bytes: AtomicU64,
    /// Heap compactions so far.
    pub compactions: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds when the worker attached.
    pub started_ns: AtomicU64,
}

/// Written only by the worker (its checkpoint writer): what is on disk.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct CheckpointLine {
    /// The last [`SupervisorLine::checkpoint_request`] answered (written or failed).
    pub done: AtomicU64,
    /// Sequence number covered by the newest checkpoint on disk (0: none).
    pub seq: AtomicU64,
    /// Sequence number covered by the oldest checkpoint kept (the fallback; 0: none).
    pub oldest_seq: AtomicU64,
    /// Checkpoints written by this generation.
    pub written: AtomicU64,
    /// Checkpoints that failed in this generation.
    pub failures: AtomicU64,
    /// Size in bytes of the newest checkpoint.
    pub bytes: AtomicU64,
    /// How long writing the newest checkpoint took, in nanoseconds.
    pub duration_ns: AtomicU64,
    /// Milliseconds since the Unix epoch when the newest checkpoint was written.
    pub unix_ms: AtomicU64,
}

/// Written only by the worker: the table-wide relocation sequence, alone on its line
/// because every reader loads it.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct TableLine {
    /// Odd while entries are being shifted.
    pub moves: AtomicU64,
}

/// Everything before the variable regions.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHead {
    /// Read-only header.
    pub header: Header,
    /// Supervisor: request producer, control.
    pub supervisor: SupervisorLine,
    /// Supervisor: completion consumer.
    pub supervisor_completion: SupervisorCompletionLine,
    /// Worker: request consumer.
    pub worker_request: WorkerRequestLine,
    /// Worker: completion producer.
    pub worker_completion: WorkerCompletionLine,
    /// Worker: status.
    pub status: WorkerStatusLine,
    /// Worker: table relocation sequence.
    pub table: TableLine,
    /// Worker: checkpoints on disk.
    pub checkpoint: CheckpointLine,
    /// Worker: counters and histograms.
    pub metrics: MetricsBlock,
}

/// Ask the worker to keep running.
pub const CONTROL_RUN: u32 = 0;
/// Ask the worker to finish what is in its ring and exit.
pub const CONTROL_STOP: u32 = 1;

/// A worker's life as published in [`WorkerStatusLine::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    /// The supervisor created the segment; no worker attached yet.
    Created = 0,
    /// The worker attached and is rebuilding its state.
    Recovering = 1,
    /// Applying requests.
    Ready = 2,
    /// Draining its ring before exiting.
    Stopping = 3,
    /// Exited cleanly.
    Stopped = 4,
}

impl WorkerState {
    /// Decodes a published state; unknown values are `None`.
    #[must_use]
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Created,
            1 => Self::Recovering,
            2 => Self::Ready,
            3 => Self::Stopping,
            4 => Self::Stopped,
            _ => return None,
        })
    }

    /// Lower-case name for logs and metrics.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Recovering => "recovering",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

const _: () = assert!(size_of::<Header>() == 128);
const _: () = assert!(size_of::<SupervisorLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<SupervisorCompletionLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<WorkerRequestLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<WorkerCompletionLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<WorkerStatusLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<TableLine>() == CACHE_LINE_BYTES);
const _: () = assert!(size_of::<CheckpointLine>() == CACHE_LINE_BYTES);
const _: () = assert!(offset_of!(SegmentHead, supervisor) == 128);
const _: () = assert!(offset_of!(SegmentHead, supervisor_completion) == 192);
const _: () = assert!(offset_of!(SegmentHead, worker_request) == 256);
const _: () = assert!(offset_of!(SegmentHead, worker_completion) == 320);
const _: () = assert!(offset_of!(SegmentHead, status) == 384);
const _: () = assert!(offset_of!(SegmentHead, table) == 448);
const _: () = assert!(offset_of!(SegmentHead, checkpoint) == 512);
const _: () = assert!(offset_of!(SegmentHead, metrics) == 576);
const _: () = assert!(size_of::<SegmentHead>() % CACHE_LINE_BYTES == 0);
const _: () = assert!(size_of::<AtomicU64>() == 8 && size_of::<AtomicU32>() == 4);

const fn mix(h: u64, v: usize) -> u64 {
    (h ^ v as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// A fingerprint of the layout as compiled: sizes and offsets of every field that another
/// build must agree on. A reader refuses a segment whose hash differs from its own.
pub const LAYOUT_HASH: u64 = {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    h = mix(h, LAYOUT_VERSION as usize);
    h = mix(h, size_of::<Header>());
    h = mix(h, offset_of!(Header, layout_hash));
    h = mix(h, offset_of!(Header, generation));
    h = mix(h, offset_of!(Header, layout_version));
    h = mix(h, offset_of!(Header, max_keys));
    h = mix(h, offset_of!(Header, heap_half_words));
    h = mix(h, offset_of!(SupervisorLine, control));
    h = mix(h, offset_of!(SupervisorLine, checkpoint_limit));
    h = mix(h, offset_of!(CheckpointLine, unix_ms));
    h = mix(h, offset_of!(SegmentHead, checkpoint));
    h = mix(h, offset_of!(WorkerStatusLine, applied_seq));
    h = mix(h, offset_of!(WorkerStatusLine, started_ns));
    h = mix(h, size_of::<SegmentHead>());
    h = mix(h, size_of::<MetricsBlock>());
    h = mix(h, crate::metrics::APPLY_BUCKETS_NS.len());
    h = mix(h, SLOT_WORDS);
    h
};

/// User-facing limits of one shard; [`Geometry::from_limits`] turns them into a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLimits {
    /// Bytes of the request ring (rounded up to a power of two); `None` sizes it for the largest
    /// request (at least [`AUTO_RING_MIN_BYTES`]).
    pub ring_bytes: Option<u64>,
    /// Most keys per shard.
    pub max_keys: u64,
    /// Longest key.
    pub max_key_bytes: u32,
    /// Longest value.
    pub max_value_bytes: u32,
    /// Bytes of live key and value data per shard (the heap has twice this).
    pub data_bytes: u64,
}

impl Default for ShardLimits {
    fn default() -> Self {
        Self {
            ring_bytes: None,
            max_keys: 1 << 20,
            max_key_bytes: 16 << 10,
            max_value_bytes: 8 << 20,
            data_bytes: 128 << 20,
        }
    }
}

/// The smallest request ring sized automatically ([`ShardLimits::ring_bytes`] `None`).
pub const AUTO_RING_MIN_BYTES: u64 = 8 << 20;
/// The largest completion ring sized for the count of completions in flight (2 MiB: room
/// for 65,536); larger only when the largest value needs it.
pub const COMPLETION_RING_MAX_WORDS: u64 = 1 << 18;

/// Words of a request's fixed part: seq, lengths, argument, deadline, time applied.
pub const REQUEST_FIXED_WORDS: u64 = 5;
/// Words of a completion record's payload: seq, status, value.
pub const COMPLETION_WORDS: u64 = 3;

/// The resolved sizes and byte offsets of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Request ring words.
    pub request_ring_words: u64,
    /// Completion ring words.
    pub completion_ring_words: u64,
    /// Table slots.
    pub table_slots: u64,
    /// Words of each heap half.
    pub heap_half_words: u64,
    /// Most keys.
    pub max_keys: u64,
    /// Longest key.
    pub max_key_bytes: u32,
    /// Longest value.
    pub max_value_bytes: u32,
}

/// Byte offsets of the regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// Request ring.
    pub request_ring: usize,
    /// Completion ring.
    pub completion_ring: usize,
    /// Slots.
    pub slots: usize,
    /// Heap.
    pub heap: usize,
    /// Total size of the segment.
    pub total: usize,
}

/// Limits that cannot form a working segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeometryError(pub String);

impl std::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GeometryError {}

const WORD: u64 = 8;

impl Geometry {
    /// Checks `limits` and derives the segment geometry.
    pub fn from_limits(limits: &ShardLimits) -> Result<Self, GeometryError> {
        let err = |s: String| Err(GeometryError(s));
        if limits.max_keys == 0 || limits.max_keys > 1 << 32 {
            return err(format!(
                "max keys per shard must be 1..=2^32, not {}",
                limits.max_keys
            ));
        }
        if limits.max_key_bytes == 0 || limits.max_key_bytes > crate::table::KEY_BYTES_MAX {
            return err(format!(
                "max key bytes must be 1..={}, not {}",
                crate::table::KEY_BYTES_MAX,
                limits.max_key_bytes
            ));
        }
        let entry_words = u64::from(limits.max_key_bytes).div_ceil(WORD)
            + u64::from(limits.max_value_bytes).div_ceil(WORD);
        // 0: the smallest ring of at least `AUTO_RING_MIN_BYTES` that holds the largest
        // request (with the padding a wrap may need: twice it).
        let ring_bytes = limits.ring_bytes.unwrap_or_else(|| {
            ((REQUEST_FIXED_WORDS + entry_words + 1) * 2 * WORD).max(AUTO_RING_MIN_BYTES)
        });
        let request_ring_words = ring_bytes
            .div_ceil(WORD)
            .max(64)
            .checked_next_power_of_two()
            .ok_or_else(|| GeometryError("ring size too large".into()))?;
        if REQUEST_FIXED_WORDS + entry_words > max_payload_words(request_ring_words) {
            return err(format!(
                "ring of {} bytes cannot hold one request with a {}-byte key and a {}-byte \
                 value; it must be at least {} bytes",
                request_ring_words * WORD,
                limits.max_key_bytes,
                limits.max_value_bytes,
                ((REQUEST_FIXED_WORDS + entry_words + 1) * 2).next_power_of_two() * WORD
            ));
        }
        let heap_half_words = limits.data_bytes.div_ceil(WORD);
        let largest_entry_words = entry_words + crate::table::ENTRY_FIXED_WORDS as u64;
        if heap_half_words < largest_entry_words {
            return err(format!(
                "shard data bytes ({}) must hold at least one largest key and value ({} bytes)",
                limits.data_bytes,
                largest_entry_words * WORD
            ));
        }
        // Slots at most 3/4 full keeps linear probe chains short.
        let table_slots = (limits.max_keys * 4)
            .div_ceil(3)
            .next_power_of_two()
            .max(16);
        // Most completions are 4 words; a full ring only makes the worker wait for the
        // supervisor's completion reader, which drains it continuously. The ring must also
        // hold the largest one, which carries a value (SET GET, GETDEL): the smallest
        // power of two whose largest record (half of it) takes the largest value.
        let value_words = u64::from(limits.max_value_bytes).div_ceil(WORD);
        let largest_completion = ((COMPLETION_WORDS + value_words + 1) * 2).next_power_of_two();
        let completion_ring_words = (request_ring_words / 2)
            .clamp(64, COMPLETION_RING_MAX_WORDS)
            .max(largest_completion);
        Ok(Self {
            request_ring_words,
            completion_ring_words,
            table_slots,
            heap_half_words,
            max_keys: limits.max_keys,
            max_key_bytes: limits.max_key_bytes,
            max_value_bytes: limits.max_value_bytes,
        })
    }

    /// Byte offsets of each region; regions start on cache lines.
    ///
    /// Returns `None` if the total overflows `usize`.
    #[must_use]
    pub fn offsets(&self) -> Option<Offsets> {
        let line = CACHE_LINE_BYTES;
        let bytes = |words: u64| usize::try_from(words.checked_mul(WORD)?).ok();
        let request_ring = size_of::<SegmentHead>();
        let completion_ring = request_ring.checked_add(bytes(self.request_ring_words)?)?;
        let slots = completion_ring.checked_add(bytes(self.completion_ring_words)?)?;
        let heap = slots.checked_add(bytes(self.table_slots.checked_mul(SLOT_WORDS as u64)?)?)?;
        let total = heap.checked_add(bytes(self.heap_half_words.checked_mul(2)?)?)?;
        let total = total.checked_next_multiple_of(line)?;
        Some(Offsets {
            request_ring,
            completion_ring,
            slots,
            heap,
            total,
        })
    }

    /// Checks the invariants a reader relies on (powers of two, sane limits).
    pub fn validate(&self) -> Result<(), GeometryError> {
        let ok = self.request_ring_words.is_power_of_two()
            && self.completion_ring_words.is_power_of_two()
            && self.completion_ring_words >= 8
            && self.table_slots.is_power_of_two()
            && self.table_slots >= 4
            && self.max_keys <= self.table_slots / 4 * 3
            && self.heap_half_words > 0;
        if ok {
            Ok(())
        } else {
            Err(GeometryError(format!(
                "inconsistent segment geometry {self:?}"
            )))
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn defaults_form_a_segment() {
        let g = Geometry::from_limits(&ShardLimits::default()).unwrap();
        g.validate().unwrap();
        let o = g.offsets().unwrap();
        assert_eq!(o.request_ring, 576 + size_of::<MetricsBlock>());
        assert_eq!(o.request_ring % CACHE_LINE_BYTES, 0);
        assert!(o.heap < o.total);
        // 8 MiB values: a 32 MiB request ring, a 32 MiB completion ring (its largest
        // record holds the largest value).
        assert_eq!(g.request_ring_words, 1 << 22);
        assert_eq!(g.completion_ring_words, 1 << 22);
        assert!(
            crate::ring::max_payload_words(g.completion_ring_words)
                >= COMPLETION_WORDS + (8 << 20) / 8
        );
        // Small values: the completion ring is sized for completions in flight.
        let small = Geometry::from_limits(&ShardLimits {
            max_value_bytes: 1024,
            ..ShardLimits::default()
        })
        .unwrap();
        assert_eq!(small.completion_ring_words, 1 << 18);
        assert_eq!(g.table_slots, 1 << 21);
    }

    #[test]
    fn a_ring_too_small_for_the_largest_value_is_refused() {
        let limits = ShardLimits {
            ring_bytes: Some(1 << 20),
            max_value_bytes: 1 << 20,
            ..ShardLimits::default()
        };
        let err = Geometry::from_limits(&limits).unwrap_err();
        assert!(err.0.contains("at least 4194304 bytes"), "{err}");
        // Sized automatically, it holds the largest request, and never less than 8 MiB.
        let auto = |max_value_bytes| {
            Geometry::from_limits(&ShardLimits {
                ring_bytes: None,
                max_value_bytes,
                ..ShardLimits::default()
            })
            .unwrap()
            .request_ring_words
                * 8
        };
        assert_eq!(auto(1 << 10), 8 << 20);
        assert_eq!(auto(64 << 20), 256 << 20);
    }

    #[test]
    fn zero_keys_is_refused() {
        let limits = ShardLimits {
            max_keys: 0,
            ..ShardLimits::default()
        };
        assert!(Geometry::from_limits(&limits).is_err());
    }
}
