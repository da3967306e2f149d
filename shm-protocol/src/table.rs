//! The shard's state table: an open-addressing hash table of seqlock-protected slots over a
//! two-half ("semi-space") value heap, readable by any process without asking the writer.
//!
//! ```text
//! slot (4 words) = seq | hash (0 = empty) | key_len (low 32) + value_len (high 32) | heap offset
//! heap entry     = deadline | key bytes, padded to a word | value bytes, padded to a word
//! ```
//!
//! The deadline is when the key expires, in Unix milliseconds (0: never). A reader is given
//! the time it reads at and reports an entry whose deadline has come as missing, so no reader
//! ever returns an expired key, whether or not the writer has removed it yet.
//!
//! Exactly one process writes (the worker). Readers follow the seqlock protocol of
//! crossbeam's `SeqLock` and Boehm's "Can Seqlocks Get Along With Programming Language Memory
//! Models?": load the slot's sequence with acquire, load the payload words with relaxed
//! atomic loads, issue an acquire fence, and re-load the sequence; an odd or changed sequence
//! means the read raced a write and is retried, a bounded number of times.
//!
//! * Values are never updated in place: a new value is written to fresh heap space first and
//!   the slot then switched to it inside its seqlock, so a reader that saw the old offset
//!   either finishes on the old bytes or sees the sequence change.
//! * Heap space is freed only by switching a slot away from it (inside that slot's seqlock),
//!   so a reader that reads reused space always fails validation.
//! * Deletion shifts later entries of the probe chain back (no tombstones, so the table never
//!   degrades). Moving entries could make a concurrent probe miss a present key, so shifts
//!   are bracketed by the table-wide `moves` sequence, which every lookup validates too.
//! * A deadline is the one word changed in place: inside its slot's seqlock, so a reader
//!   sees the old deadline or the new one with a validated sequence.
//! * When the active heap half is full, live entries are copied to the other half, each slot
//!   switched inside its own seqlock (compaction).

use crate::hash::{entry_digest, key_hash};
use crate::sync::{backoff, fence, load_own, AtomicU64, Ordering, BACKOFF_YIELDS_MAX};
use crate::words::{self, words_for};

/// Words per slot.
pub const SLOT_WORDS: usize = 4;

/// In a slot's lengths word: whether its entry has a deadline (bit 31), between the key's
/// length (the low 31 bits) and the value's (the high 32), so a walk for due keys (the
/// expiry sweep) reads the heap only for entries that have one.
const HAS_DEADLINE: u64 = 1 << 31;

/// The longest key a slot's lengths word can hold.
pub const KEY_BYTES_MAX: u32 = (1 << 31) - 1;

/// A slot's lengths word.
fn lens_word(key_len: usize, value_len: usize, deadline_ms: u64) -> u64 {
    let flag = if deadline_ms == 0 { 0 } else { HAS_DEADLINE };
    key_len as u64 | flag | (value_len as u64) << 32
}

/// The key's length in a slot's lengths word.
fn key_len_of(lens: u64) -> usize {
    (lens & (HAS_DEADLINE - 1)) as usize
}

/// The largest scratch buffer a writer keeps between writes (a larger value's is freed).
const SCRATCH_KEPT_BYTES: usize = 64 << 10;

/// Words of an entry before its key: the deadline.
pub const ENTRY_FIXED_WORDS: usize = 1;

/// Whether an entry with `deadline_ms` has expired at `now_ms` (its deadline has come).
#[inline]
#[must_use]
pub fn expired(deadline_ms: u64, now_ms: u64) -> bool {
    deadline_ms != 0 && deadline_ms <= now_ms
}

/// How many times a reader retries a lookup that raced the writer before giving up: spins,
/// then yields, then 1,000 sleeps of at least 50 µs, so a reader waits at least 50 ms (many
/// scheduler slices) for a writer preempted mid-update before it reports [`Lookup::Busy`].
pub const READ_RETRIES_MAX: u32 = BACKOFF_YIELDS_MAX + 1000;

/// The memory of one table.
#[derive(Clone, Copy, Debug)]
pub struct TableView<'a> {
    /// `SLOT_WORDS` words per slot; the slot count is a power of two.
    pub slots: &'a [AtomicU64],
    /// Two halves of equal length.
    pub heap: &'a [AtomicU64],
    /// Table-wide relocation sequence (odd while entries are being shifted).
    pub moves: &'a AtomicU64,
}

/// Something that holds a table: a mapped segment, or heap memory in tests.
pub trait TableMemory {
    /// The table's memory.
    fn table(&self) -> TableView<'_>;
}

/// The answer of a lock-free read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key is present and live; its value was appended to the output buffer.
    Found {
        /// When it expires (Unix ms; 0: never).
        deadline_ms: u64,
    },
    /// The key is absent (or expired).
    Missing,
    /// Every retry raced the writer (or a killed writer left a slot mid-update).
    Busy,
}

struct Torn;

/// A key seen by [`TableView::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// The key.
    pub key: Vec<u8>,
    /// When it expires (Unix ms; 0: never); the scan returns expired keys too.
    pub deadline_ms: u64,
    /// The length of its value.
    pub value_len: u64,
}

/// Every retry of [`TableView::scan`] raced the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

impl<'a> TableView<'a> {
    fn slot(&self, index: usize) -> &'a [AtomicU64] {
        &self.slots[index * SLOT_WORDS..(index + 1) * SLOT_WORDS]
    }

    /// The number of slots (a power of two): the home slots [`TableView::scan`] walks.
    #[must_use]
    pub fn slot_count(&self) -> usize {
        self.slots.len() / SLOT_WORDS
    }

    /// Reads the value of `key` as of `now_ms` (Unix ms) into `out` (appended), lock-free;
    /// a key whose deadline has come is missing.
    ///
    /// A hit needs only its slot's seqlock: the slot held the key and that value at one
    /// instant, and heap words are reused only after every slot pointing at them has been
    /// rewritten. A miss also needs `moves` unchanged across the probe, since a backward
    /// shift can carry the key past the probe; so a reader racing a stream of deletes
    /// retries only for absent keys.
    pub fn get(&self, key: &[u8], now_ms: u64, out: &mut Vec<u8>) -> Lookup {
        let hash = key_hash(key);
        let start_len = out.len();
        for attempt in 0..READ_RETRIES_MAX {
            // SYNC POINT: pairs with the writer's release store that ends a shift.
            let moves = self.moves.load(Ordering::Acquire);
            match self.probe(key, hash, out) {
                Ok(Some(deadline_ms)) if expired(deadline_ms, now_ms) => {
                    out.truncate(start_len);
                    return Lookup::Missing;
                }
                Ok(Some(deadline_ms)) => return Lookup::Found { deadline_ms },
                Ok(None) if moves & 1 == 0 => {
                    fence(Ordering::Acquire);
                    if self.moves.load(Ordering::Relaxed) == moves {
                        return Lookup::Missing;
                    }
                }
                Ok(None) | Err(Torn) => {}
            }
            out.truncate(start_len);
            backoff(attempt);
        }
        Lookup::Busy
    }

    /// Appends to `out` every key whose home slot is in `start..start + homes` (clamped to
    /// the slot count) and whose deadline `keep` accepts (expired ones included: `keep`
    /// decides), and answers where the next call starts ([`TableView::slot_count`] when the
    /// walk is done). A key `keep` refuses is not copied.
    ///
    /// A key lives in the run of taken slots that begins at or before its home slot and
    /// never moves out of it (a backward shift stops at the key's home), so the walk reads
    /// the range and then the rest of the run past it, and keeps what it read only if
    /// `moves` did not change meanwhile. A key is reported by the one call whose range holds
    /// its home slot, so a walk in several calls returns every key present for the whole
    /// walk at least once, however the writer inserts, deletes, shifts and compacts between
    /// calls.
    pub fn scan(
        &self,
        start: usize,
        homes: usize,
        keep: impl Fn(u64) -> bool,
        out: &mut Vec<Scanned>,
    ) -> Result<usize, Busy> {
        let count = self.slot_count();
        let end = start.saturating_add(homes).min(count);
        if start >= end {
            return Ok(count);
        }
        let mask = count - 1;
        let first = out.len();
        for attempt in 0..READ_RETRIES_MAX {
            // SYNC POINT: pairs with the writer's release store that ends a shift.
            let moves = self.moves.load(Ordering::Acquire);
            if moves & 1 == 0 && self.walk(start, end, mask, &keep, out).is_ok() {
                fence(Ordering::Acquire);
                if self.moves.load(Ordering::Relaxed) == moves {
                    return Ok(end);
                }
            }
            out.truncate(first);
            backoff(attempt);
        }
        Err(Busy)
    }

    fn walk(
        &self,
        start: usize,
        end: usize,
        mask: usize,
        keep: &impl Fn(u64) -> bool,
        out: &mut Vec<Scanned>,
    ) -> Result<(), Torn> {
        let mut index = start;
        for read in 1..=mask + 1 {
            let slot = self.slot(index);
            // SYNC POINT: pairs with the writer's release store that closes the slot's
            // critical section.
            let seq = slot[0].load(Ordering::Acquire);
            if seq & 1 == 1 {
                return Err(Torn);
            }
            let hash = slot[1].load(Ordering::Relaxed);
            let home = (hash as usize) & mask;
            let mut seen = None;
            if hash != 0 && (start..end).contains(&home) {
                let lens = slot[2].load(Ordering::Relaxed);
                let offset = slot[3].load(Ordering::Relaxed);
                let key_len = key_len_of(lens);
                // Without a deadline the entry is read only if such entries are wanted.
                let wanted = lens & HAS_DEADLINE != 0 || keep(0);
                let entry = usize::try_from(offset)
                    .ok()
                    .filter(|_| wanted)
                    .and_then(|o| self.heap.get(o..))
                    .unwrap_or(&[]);
                if let (Some(deadline), Some(bytes)) =
                    (entry.first(), entry.get(ENTRY_FIXED_WORDS..))
                {
                    // A torn read of the deadline is caught by the slot's re-check below
                    // (the entry is only rewritten under the slot's seqlock).
                    let deadline_ms = deadline.load(Ordering::Relaxed);
                    let mut key = Vec::new();
                    if keep(deadline_ms) && words::load_bytes(bytes, key_len, &mut key) {
                        seen = Some(Scanned {
                            key,
                            deadline_ms,
                            value_len: lens >> 32,
                        });
                    }
                }
            }
            fence(Ordering::Acquire);
            if slot[0].load(Ordering::Relaxed) != seq {
                return Err(Torn);
            }
            out.extend(seen);
            index = (index + 1) & mask;
            // Past the range, the walk goes on to the end of the run it is in (a slot seen
            // empty stayed empty unless an insert filled it: emptying one moves `moves`).
            if read >= end - start && self.slot(index)[1].load(Ordering::Relaxed) == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    fn probe(&self, key: &[u8], hash: u64, out: &mut Vec<u8>) -> Result<Option<u64>, Torn> {
        let count = self.slot_count();
        if count == 0 {
            return Ok(None);
        }
        let mask = count - 1;
        let mut index = (hash as usize) & mask;
        for _ in 0..count {
            let slot = self.slot(index);
            // SYNC POINT: pairs with the writer's release store that closes the slot's
            // critical section.
            let seq = slot[0].load(Ordering::Acquire);
            if seq & 1 == 1 {
                return Err(Torn);
            }
            let slot_hash = slot[1].load(Ordering::Relaxed);
            let mut matched = None;
            if slot_hash == hash {
                let lens = slot[2].load(Ordering::Relaxed);
                let offset = slot[3].load(Ordering::Relaxed);
                let key_len = key_len_of(lens);
                let value_len = (lens >> 32) as usize;
                let entry = usize::try_from(offset)
                    .ok()
                    .and_then(|o| self.heap.get(o..))
                    .unwrap_or(&[]);
                let (deadline, bytes) = match entry.split_first() {
                    Some((deadline, bytes)) => (deadline.load(Ordering::Relaxed), bytes),
                    None => (0, &[][..]),
                };
                if key_len == key.len() && words::bytes_equal(bytes, key) {
                    let value_at = words_for(key_len as u64) as usize;
                    let before = out.len();
                    if bytes
                        .get(value_at..)
                        .is_some_and(|v| words::load_bytes(v, value_len, out))
                    {
                        matched = Some(deadline);
                    } else {
                        out.truncate(before);
                    }
                }
            }
            fence(Ordering::Acquire);
            if slot[0].load(Ordering::Relaxed) != seq {
                return Err(Torn);
            }
            if matched.is_some() {
                return Ok(matched);
            }
            if slot_hash == 0 {
                return Ok(None);
            }
            index = (index + 1) & mask;
        }
        Ok(None)
    }
}

/// Why a write was refused. The table is unchanged after any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The key is longer than the configured limit.
    KeyTooLarge {
        /// The configured limit.
        max_bytes: u32,
    },
    /// The value is longer than the configured limit.
    ValueTooLarge {
        /// The configured limit.
        max_bytes: u32,
    },
    /// The shard holds its configured maximum number of keys.
    TooManyKeys {
        /// The configured limit.
        max_keys: u64,
    },
    /// Live data would not fit in one heap half even after compaction.
    OutOfMemory {
        /// Bytes of one heap half.
        heap_half_bytes: u64,
    },
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyTooLarge { max_bytes } => write!(f, "key exceeds {max_bytes} bytes"),
            Self::ValueTooLarge { max_bytes } => write!(f, "value exceeds {max_bytes} bytes"),
            Self::TooManyKeys { max_keys } => {
                write!(f, "shard holds its maximum of {max_keys} keys")
            }
            Self::OutOfMemory { heap_half_bytes } => {
                write!(
                    f,
                    "shard data exceeds its {heap_half_bytes} bytes of memory"
                )
            }
        }
    }
}

impl std::error::Error for TableError {}

/// Limits the writer enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// Longest key in bytes.
    pub max_key_bytes: u32,
    /// Longest value in bytes.
    pub max_value_bytes: u32,
    /// Most keys held at once (at most 3/4 of the slots).
    pub max_keys: u64,
}

/// What a successful [`TableWriter::set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetResult {
    /// A new key.
    Inserted,
    /// An existing key's value was replaced.
    Replaced,
}

/// The single writer of a table. Its bookkeeping (allocation state, counts, digest) is
/// private: a new worker generation starts from a fresh, zeroed segment.
#[derive(Debug)]
pub struct TableWriter<M: TableMemory> {
    mem: M,
    limits: TableLimits,
    active_half: usize,
    bump_words: usize,
    live_words: usize,
    keys: u64,
    expiring: u64,
    digest: u64,
    compactions: u64,
    /// The value of an entry being replaced or changed, for its digest (reused: a write
    /// allocates nothing for it).
    scratch: Vec<u8>,
}

/// Where an entry's parts are: its heap offset (the deadline word), key and value lengths.
#[derive(Clone, Copy)]
struct Entry {
    offset: usize,
    key_len: usize,
    value_len: usize,
}

impl Entry {
    fn key_at(self) -> usize {
        self.offset + ENTRY_FIXED_WORDS
    }

    fn value_at(self) -> usize {
        self.key_at() + self.key_len.div_ceil(8)
    }

    fn words(self) -> usize {
        entry_words(self.key_len, self.value_len)
    }
}

fn entry_words(key_len: usize, value_len: usize) -> usize {
    ENTRY_FIXED_WORDS + key_len.div_ceil(8) + value_len.div_ceil(8)
}

impl<M: TableMemory> TableWriter<M> {
    /// Takes the writing side of an empty table.
    ///
    /// # Panics
    /// When the memory does not have the documented shape (a caller bug): the slot count
    /// is not a power of two, the heap halves differ, or `max_keys` exceeds 3/4 of the slots.
    pub fn new(mem: M, limits: TableLimits) -> Self {
        {
            let view = mem.table();
            let slots = view.slots.len() / SLOT_WORDS;
            assert!(view.slots.len() % SLOT_WORDS == 0 && slots.is_power_of_two());
            assert!(view.heap.len() % 2 == 0);
            assert!(limits.max_keys <= (slots as u64) / 4 * 3);
        }
        Self {
            mem,
            limits,
            active_half: 0,
            bump_words: 0,
            live_words: 0,
            keys: 0,
            expiring: 0,
            digest: 0,
            compactions: 0,
            scratch: Vec::new(),
        }
    }

    /// Number of live keys.
    #[must_use]
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Number of keys with a deadline (expired ones not yet removed included).
    #[must_use]
    pub fn expiring(&self) -> u64 {
        self.expiring
    }

    /// Order-independent digest of all entries (wrapping sum of [`entry_digest`]).
    #[must_use]
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Bytes of heap held by live entries.
    #[must_use]
    pub fn live_bytes(&self) -> u64 {
        self.live_words as u64 * 8
    }

    /// Completed compactions.
    #[must_use]
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// The limits enforced.
    #[must_use]
    pub fn limits(&self) -> TableLimits {
        self.limits
    }

    fn half_words(&self) -> usize {
        self.mem.table().heap.len() / 2
    }

    /// The first word of `key`'s home slot, where its lookup starts (for a prefetch).
    pub fn home_slot(&self, key: &[u8]) -> &AtomicU64 {
        let view = self.mem.table();
        let index = (key_hash(key) as usize) & (view.slot_count() - 1);
        &view.slot(index)[0]
    }

    /// The first heap word of the entry in `key`'s home slot, if that slot is taken (most
    /// likely `key`'s own entry, whose bytes a lookup compares; for a prefetch).
    pub fn home_entry(&self, key: &[u8]) -> Option<&AtomicU64> {
        let view = self.mem.table();
        let index = (key_hash(key) as usize) & (view.slot_count() - 1);
        let slot = view.slot(index);
        if load_own(&slot[1]) == 0 {
            return None;
        }
        view.heap.get(load_own(&slot[3]) as usize)
    }

    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let view = self.mem.table();
        let count = view.slot_count();
        let mask = count - 1;
        let mut index = (hash as usize) & mask;
        for _ in 0..count {
            let slot = view.slot(index);
            let slot_hash = load_own(&slot[1]);
            if slot_hash == 0 {
                return Err(index);
            }
            if slot_hash == hash {
                let entry = self.entry_of(index);
                if entry.key_len == key.len()
                    && words::bytes_equal(&view.heap[entry.key_at()..], key)
                {
                    return Ok(index);
                }
            }
            index = (index + 1) & mask;
        }
        // Unreachable while keys <= 3/4 of the slots: some slot is always empty.
        Err(usize::MAX)
    }

    fn entry_of(&self, index: usize) -> Entry {
        let slot = self.mem.table().slot(index);
        let lens = load_own(&slot[2]);
        Entry {
            offset: load_own(&slot[3]) as usize,
            key_len: key_len_of(lens),
            value_len: (lens >> 32) as usize,
        }
    }

    fn deadline_of(&self, entry: Entry) -> u64 {
        load_own(&self.mem.table().heap[entry.offset])
    }

    fn value_of(&self, entry: Entry, out: &mut Vec<u8>) {
        let ok = words::load_bytes(
            &self.mem.table().heap[entry.value_at()..],
            entry.value_len,
            out,
        );
        debug_assert!(ok, "an entry's value lies inside the heap");
    }

    /// Appends the value of `key` to `out` and answers its deadline (Unix ms, 0: none), or
    /// `None` when it is absent; the writer reads its own table without retries, and
    /// judges expiry itself (at the time of the write it applies).
    pub fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Option<u64> {
        let index = self.find(key, key_hash(key)).ok()?;
        let entry = self.entry_of(index);
        self.value_of(entry, out);
        Some(self.deadline_of(entry))
    }

    /// The deadline of `key` (Unix ms, 0: none), or `None` when it is absent.
    #[must_use]
    pub fn deadline(&self, key: &[u8]) -> Option<u64> {
        let index = self.find(key, key_hash(key)).ok()?;
        Some(self.deadline_of(self.entry_of(index)))
    }

    /// Calls `f` with every key, value and deadline (order unspecified).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8], u64)) {
        let view = self.mem.table();
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for index in 0..view.slot_count() {
            if load_own(&view.slot(index)[1]) == 0 {
                continue;
            }
            let entry = self.entry_of(index);
            key.clear();
            value.clear();
            let ok = words::load_bytes(&view.heap[entry.key_at()..], entry.key_len, &mut key);
            debug_assert!(ok);
            self.value_of(entry, &mut value);
            f(&key, &value, self.deadline_of(entry));
        }
    }

    fn write_slot(&self, index: usize, hash: u64, lens: u64, offset: u64) {
        let slot = self.mem.table().slot(index);
        let seq = load_own(&slot[0]);
        debug_assert!(seq & 1 == 0);
        slot[0].store(seq.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT: orders the odd sequence before the payload stores below, so a reader
        // that observes any of them also observes a changed sequence at its re-check.
        fence(Ordering::Release);
        slot[1].store(hash, Ordering::Relaxed);
        slot[2].store(lens, Ordering::Relaxed);
        slot[3].store(offset, Ordering::Relaxed);
        // SYNC POINT: pairs with the reader's acquire load of the sequence.
        slot[0].store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Reserves `words` of heap, compacting into the other half when the active one is full.
    fn allocate(&mut self, words: usize, replacing_words: usize) -> Result<usize, TableError> {
        let half = self.half_words();
        if self.live_words - replacing_words + words > half {
            return Err(TableError::OutOfMemory {
                heap_half_bytes: half as u64 * 8,
            });
        }
        if self.bump_words + words > half {
            self.compact();
            if self.bump_words + words > half {
                return Err(TableError::OutOfMemory {
                    heap_half_bytes: half as u64 * 8,
                });
            }
        }
        let at = self.active_half * half + self.bump_words;
        self.bump_words += words;
        Ok(at)
    }

    /// Copies every live entry into the other heap half.
    fn compact(&mut self) {
        let view = self.mem.table();
        let half = self.half_words();
        let target = 1 - self.active_half;
        let mut bump = 0usize;
        for index in 0..view.slot_count() {
            let slot = view.slot(index);
            let hash = load_own(&slot[1]);
            if hash == 0 {
                continue;
            }
            let entry = self.entry_of(index);
            let to = target * half + bump;
            for i in 0..entry.words() {
                let word = load_own(&view.heap[entry.offset + i]);
                view.heap[to + i].store(word, Ordering::Relaxed);
            }
            bump += entry.words();
            self.write_slot(index, hash, load_own(&slot[2]), to as u64);
        }
        debug_assert_eq!(bump, self.live_words);
        self.active_half = target;
        self.bump_words = bump;
        self.compactions += 1;
    }

    /// Sets `key` to `value`, expiring at `deadline_ms` (Unix ms; 0: never).
    pub fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline_ms: u64,
    ) -> Result<SetResult, TableError> {
        if key.len() > self.limits.max_key_bytes as usize {
            return Err(TableError::KeyTooLarge {
                max_bytes: self.limits.max_key_bytes,
            });
        }
        if value.len() > self.limits.max_value_bytes as usize {
            return Err(TableError::ValueTooLarge {
                max_bytes: self.limits.max_value_bytes,
            });
        }
        let hash = key_hash(key);
        let found = self.find(key, hash);
        let words = entry_words(key.len(), value.len());
        let replacing = match found {
            Ok(index) => Some(self.entry_of(index)),
            Err(_) if self.keys >= self.limits.max_keys => {
                return Err(TableError::TooManyKeys {
                    max_keys: self.limits.max_keys,
                })
            }
            Err(_) => None,
        };
        let at = self.allocate(words, replacing.map_or(0, Entry::words))?;
        // After `allocate`: a compaction moves the entry being replaced.
        if let Ok(index) = found {
            self.forget(key, self.entry_of(index));
        }
        let heap = self.mem.table().heap;
        heap[at].store(deadline_ms, Ordering::Relaxed);
        let stored = words::store_bytes(&heap[at + ENTRY_FIXED_WORDS..], key)
            && words::store_bytes(
                &heap[at + ENTRY_FIXED_WORDS + key.len().div_ceil(8)..],
                value,
            );
        debug_assert!(stored);
        let lens = lens_word(key.len(), value.len(), deadline_ms);
        self.live_words += words;
        self.expiring += u64::from(deadline_ms != 0);
        self.digest = self
            .digest
            .wrapping_add(entry_digest(key, value, deadline_ms));
        match found {
            Ok(index) => {
                self.write_slot(index, hash, lens, at as u64);
                Ok(SetResult::Replaced)
            }
            Err(index) => {
                self.write_slot(index, hash, lens, at as u64);
                self.keys += 1;
                Ok(SetResult::Inserted)
            }
        }
    }

    /// Keeps `value`'s buffer for the next digest, unless a large value grew it.
    fn keep_scratch(&mut self, value: Vec<u8>) {
        if value.capacity() <= SCRATCH_KEPT_BYTES {
            self.scratch = value;
        }
    }

    /// Takes an entry's contribution out of the counts and the digest (before it is
    /// replaced or removed).
    fn forget(&mut self, key: &[u8], entry: Entry) {
        let mut value = std::mem::take(&mut self.scratch);
        value.clear();
        self.value_of(entry, &mut value);
        let deadline = self.deadline_of(entry);
        self.digest = self
            .digest
            .wrapping_sub(entry_digest(key, &value, deadline));
        self.keep_scratch(value);
        self.live_words -= entry.words();
        self.expiring -= u64::from(deadline != 0);
    }

    /// Changes the deadline of `key` (Unix ms; 0: never) in place; returns whether it was
    /// present.
    pub fn set_deadline(&mut self, key: &[u8], deadline_ms: u64) -> bool {
        let Ok(index) = self.find(key, key_hash(key)) else {
            return false;
        };
        let entry = self.entry_of(index);
        let old = self.deadline_of(entry);
        if old == deadline_ms {
            return true;
        }
        let mut value = std::mem::take(&mut self.scratch);
        value.clear();
        self.value_of(entry, &mut value);
        self.digest = self
            .digest
            .wrapping_sub(entry_digest(key, &value, old))
            .wrapping_add(entry_digest(key, &value, deadline_ms));
        self.keep_scratch(value);
        self.expiring = self.expiring - u64::from(old != 0) + u64::from(deadline_ms != 0);
        let view = self.mem.table();
        let slot = view.slot(index);
        let seq = load_own(&slot[0]);
        debug_assert!(seq & 1 == 0);
        slot[0].store(seq.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT: as in `write_slot`: the odd sequence is ordered before the store.
        fence(Ordering::Release);
        view.heap[entry.offset].store(deadline_ms, Ordering::Relaxed);
        slot[2].store(
            lens_word(entry.key_len, entry.value_len, deadline_ms),
            Ordering::Relaxed,
        );
        // SYNC POINT: pairs with the reader's acquire load of the sequence.
        slot[0].store(seq.wrapping_add(2), Ordering::Release);
        true
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let hash = key_hash(key);
        let Ok(index) = self.find(key, hash) else {
            return false;
        };
        self.forget(key, self.entry_of(index));
        self.keys -= 1;

        let view = self.mem.table();
        let mask = view.slot_count() - 1;
        let moves = load_own(view.moves);
        view.moves.store(moves.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT: orders the odd `moves` before the slot changes below; readers that
        // observe any of them fail their `moves` re-check.
        fence(Ordering::Release);
        let mut hole = index;
        let mut next = (index + 1) & mask;
        for _ in 0..view.slot_count() {
            let slot = view.slot(next);
            let slot_hash = load_own(&slot[1]);
            if slot_hash == 0 {
                break;
            }
            let ideal = (slot_hash as usize) & mask;
            if (next.wrapping_sub(ideal) & mask) >= (next.wrapping_sub(hole) & mask) {
                let lens = load_own(&slot[2]);
                let offset = load_own(&slot[3]);
                self.write_slot(hole, slot_hash, lens, offset);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.write_slot(hole, 0, 0, 0);
        // SYNC POINT: pairs with the reader's acquire load of `moves`.
        view.moves.store(moves.wrapping_add(2), Ordering::Release);
        true
    }
}

impl<M: TableMemory> TableWriter<M> {
    /// Removes every key (FLUSHDB). Bracketed by `moves` like a removal's shifts, so a
    /// miss that raced it retries; a hit needs only its slot, which is emptied under the
    /// slot's seqlock. The heap starts over: no slot refers to it any more.
    pub fn clear(&mut self) {
        let view = self.mem.table();
        let moves = load_own(view.moves);
        view.moves.store(moves.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT: orders the odd `moves` before the slot changes below, as in `remove`.
        fence(Ordering::Release);
        for index in 0..view.slot_count() {
            if load_own(&view.slot(index)[1]) != 0 {
                self.write_slot(index, 0, 0, 0);
            }
        }
        // SYNC POINT: pairs with the reader's acquire load of `moves`.
        view.moves.store(moves.wrapping_add(2), Ordering::Release);
        self.bump_words = 0;
        self.live_words = 0;
        self.keys = 0;
        self.expiring = 0;
        self.digest = 0;
    }
}

/// Heap memory for a table, for tests and model checking.
#[derive(Debug)]
pub struct HeapTable {
    slots: Vec<AtomicU64>,
    heap: Vec<AtomicU64>,
    moves: AtomicU64,
}

impl HeapTable {
    /// A table of `slots` slots (a power of two) and two heap halves of `half_words` each.
    #[must_use]
    pub fn new(slots: usize, half_words: usize) -> Self {
        Self {
            slots: (0..slots * SLOT_WORDS).map(|_| AtomicU64::new(0)).collect(),
            heap: (0..half_words * 2).map(|_| AtomicU64::new(0)).collect(),
            moves: AtomicU64::new(0),
        }
    }
}

impl TableMemory for HeapTable {
    fn table(&self) -> TableView<'_> {
        TableView {
            slots: &self.slots,
            heap: &self.heap,
            moves: &self.moves,
        }
    }
}

impl<T: TableMemory> TableMemory for std::sync::Arc<T> {
    fn table(&self) -> TableView<'_> {
        (**self).table()
    }
}

impl<T: TableMemory> TableMemory for &T {
    fn table(&self) -> TableView<'_> {
        (**self).table()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const LIMITS: TableLimits = TableLimits {
        max_key_bytes: 64,
        max_value_bytes: 200,
        max_keys: 48,
    };

    /// The time the tests read at; deadlines before it have expired.
    const NOW: u64 = 1_000;

    fn read(table: &HeapTable, key: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match table.table().get(key, NOW, &mut out) {
            Lookup::Found { .. } => Some(out),
            Lookup::Missing => None,
            Lookup::Busy => panic!("no concurrent writer, yet busy"),
        }
    }

    #[test]
    fn home_slot_and_entry_point_at_a_keys_lookup() {
        let table = HeapTable::new(64, 160);
        let mut writer = TableWriter::new(&table, LIMITS);
        let key = b"prefetched key";
        assert!(
            writer.home_entry(key).is_none(),
            "an empty home slot has no entry"
        );
        writer.set(key, b"v", 0).unwrap();
        // In an otherwise empty table the key sits in its home slot: the slot's hash word
        // and the entry's first word (its deadline, the key's first bytes next) are what
        // the hints point at.
        let view = table.table();
        let home = writer.home_slot(key) as *const AtomicU64;
        let index = (key_hash(key) as usize) & (view.slot_count() - 1);
        assert_eq!(home, &view.slot(index)[0] as *const AtomicU64);
        let entry = writer.home_entry(key).unwrap() as *const AtomicU64;
        let offset = view.slot(index)[3].load(Ordering::Relaxed) as usize;
        assert_eq!(entry, &view.heap[offset] as *const AtomicU64);
        let first = view.heap[offset + 1].load(Ordering::Relaxed);
        assert_eq!(first.to_le_bytes(), key[..8]);
    }

    /// Drives random sets, deadline changes and removes against a HashMap model, checking
    /// every key after every step through the lock-free reader (expired ones missing),
    /// the digest and the count of expiring keys.
    #[test]
    fn matches_a_model_through_sets_removes_and_compactions() {
        let table = HeapTable::new(64, 200);
        let mut writer = TableWriter::new(&table, LIMITS);
        let mut model: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
        let mut rng = 0x1234_5678_9abc_def0u64;
        // Miri interprets every access (about a second per step here): a short walk.
        let steps = if cfg!(miri) { 30 } else { 4000 };
        for step in 0..steps {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("k{}", rng % 60).into_bytes();
            // Deadlines before, at and after NOW, or none.
            let deadline = [0, NOW - 1, NOW, NOW + 1][(rng >> 40) as usize % 4];
            if rng % 3 == 0 {
                assert_eq!(
                    writer.remove(&key),
                    model.remove(&key).is_some(),
                    "step {step}"
                );
            } else if rng % 7 == 1 {
                let present = match model.get_mut(&key) {
                    Some(entry) => {
                        entry.1 = deadline;
                        true
                    }
                    None => false,
                };
                assert_eq!(writer.set_deadline(&key, deadline), present);
            } else {
                let value = vec![b'a' + (step % 26) as u8; (rng >> 20) as usize % 40];
                match writer.set(&key, &value, deadline) {
                    Ok(result) => {
                        let was = model.insert(key.clone(), (value, deadline));
                        assert_eq!(result == SetResult::Replaced, was.is_some());
                    }
                    Err(TableError::TooManyKeys { .. }) => assert_eq!(model.len(), 48),
                    Err(TableError::OutOfMemory { .. }) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            assert_eq!(writer.keys(), model.len() as u64);
            let expiring = model.values().filter(|(_, d)| *d != 0).count();
            assert_eq!(writer.expiring(), expiring as u64);
            let digest = model.iter().fold(0u64, |sum, (k, (v, d))| {
                sum.wrapping_add(entry_digest(k, v, *d))
            });
            assert_eq!(writer.digest(), digest, "step {step}");
            for i in 0..60 {
                let key = format!("k{i}").into_bytes();
                let live = model
                    .get(&key)
                    .filter(|(_, d)| !expired(*d, NOW))
                    .map(|(v, _)| v.clone());
                assert_eq!(read(&table, &key), live, "step {step} key {i}");
                assert_eq!(
                    writer.deadline(&key),
                    model.get(&key).map(|(_, d)| *d),
                    "step {step} key {i}"
                );
            }
        }
        assert!(
            cfg!(miri) || writer.compactions() > 0,
            "the test must exercise compaction"
        );
    }

    #[test]
    fn limits_are_errors_and_change_nothing() {
        let table = HeapTable::new(64, 16);
        let mut writer = TableWriter::new(&table, LIMITS);
        writer.set(b"a", b"1", 0).unwrap();
        let digest = writer.digest();
        assert_eq!(
            writer.set(&[b'k'; 65], b"v", 0),
            Err(TableError::KeyTooLarge { max_bytes: 64 })
        );
        assert_eq!(
            writer.set(b"b", &[0; 201], 0),
            Err(TableError::ValueTooLarge { max_bytes: 200 })
        );
        assert_eq!(
            writer.set(b"c", &[0; 150], 0),
            Err(TableError::OutOfMemory {
                heap_half_bytes: 128
            })
        );
        assert_eq!(writer.digest(), digest);
        assert_eq!(read(&table, b"a"), Some(b"1".to_vec()));
        assert_eq!(read(&table, b"c"), None);
    }

    fn stress_value(key: u8, round: u16) -> Vec<u8> {
        let len = 2 + (round as usize * 7 + key as usize) % 60;
        let mut v = vec![key; len];
        v[..2].copy_from_slice(&round.to_le_bytes());
        v
    }

    /// Real threads: a reader hammers keys while the writer overwrites, deletes (shifting
    /// probe chains) and compacts. Every value read must be one the writer wrote whole.
    #[test]
    fn concurrent_reader_never_sees_torn_or_foreign_values() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let table = Arc::new(HeapTable::new(64, 320));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let table = Arc::clone(&table);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut out = Vec::new();
                // At least one full pass, however the threads are scheduled.
                let mut last_pass = false;
                while !last_pass {
                    last_pass = stop.load(std::sync::atomic::Ordering::Relaxed);
                    for key in 0..40u8 {
                        out.clear();
                        match table.table().get(&[b'k', key], NOW, &mut out) {
                            Lookup::Found { .. } => {
                                let round = u16::from_le_bytes([out[0], out[1]]);
                                assert_eq!(out, stress_value(key, round), "torn read of {key}");
                                reads += 1;
                            }
                            Lookup::Missing => {}
                            Lookup::Busy => panic!("busy with a live writer"),
                        }
                    }
                }
                reads
            })
        };
        let mut writer = TableWriter::new(Arc::clone(&table), LIMITS);
        let rounds = if cfg!(miri) { 4 } else { 3000u16 };
        for round in 0..rounds {
            for key in 0..40u8 {
                if (u16::from(key) + round) % 5 == 0 {
                    writer.remove(&[b'k', key]);
                } else {
                    writer
                        .set(&[b'k', key], &stress_value(key, round), 0)
                        .unwrap();
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
        assert!(cfg!(miri) || writer.compactions() > 0);
    }

    #[test]
    fn empty_values_and_keys_are_values() {
        let table = HeapTable::new(64, 16);
        let mut writer = TableWriter::new(&table, LIMITS);
        writer.set(b"", b"", 0).unwrap();
        assert_eq!(read(&table, b""), Some(Vec::new()));
        assert!(writer.remove(b""));
        assert_eq!(read(&table, b""), None);
    }

    /// A walk for keys with a deadline finds exactly those, as their deadlines come and go
    /// (the slot's has-deadline bit follows every change, through moves and compaction).
    #[test]
    fn a_walk_for_deadlines_sees_the_keys_that_have_one() {
        let table = HeapTable::new(64, 400);
        let mut writer = TableWriter::new(&table, LIMITS);
        let with_deadline = |table: &HeapTable| {
            let mut seen = Vec::new();
            let count = table.table().slot_count();
            assert_eq!(
                table.table().scan(0, count, |d| d != 0, &mut seen),
                Ok(count)
            );
            let mut keys: Vec<Vec<u8>> = seen.into_iter().map(|s| s.key).collect();
            keys.sort();
            keys
        };
        for key in 0..30u8 {
            let deadline = if key % 3 == 0 {
                1000 + u64::from(key)
            } else {
                0
            };
            writer.set(&[b'k', key], &[key; 5], deadline).unwrap();
        }
        let expected: Vec<Vec<u8>> = (0..30u8)
            .filter(|k| k % 3 == 0)
            .map(|k| vec![b'k', k])
            .collect();
        assert_eq!(with_deadline(&table), expected);
        // PERSIST of one, EXPIRE of another, a SET without a deadline over a third.
        assert!(writer.set_deadline(&[b'k', 0], 0));
        assert!(writer.set_deadline(&[b'k', 1], 77));
        writer.set(&[b'k', 3], b"new", 0).unwrap();
        // Removals shift others back; churn makes the heap compact.
        for round in 0..120u8 {
            writer.remove(&[b'k', 2]);
            writer.set(&[b'k', 2], &[round; 20], 0).unwrap();
        }
        let mut expected: Vec<Vec<u8>> = (0..30u8)
            .filter(|k| (k % 3 == 0 && *k != 0 && *k != 3) || *k == 1)
            .map(|k| vec![b'k', k])
            .collect();
        expected.sort();
        assert_eq!(with_deadline(&table), expected);
        assert!(
            writer.compactions() > 0 || cfg!(miri),
            "the churn compacted the heap"
        );
    }

    /// A scan in small steps, racing a writer that deletes (shifting probe chains),
    /// inserts and compacts, returns every key present for the whole scan.
    #[test]
    fn scan_returns_every_key_present_throughout() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let table = Arc::new(HeapTable::new(64, 400));
        let mut writer = TableWriter::new(Arc::clone(&table), LIMITS);
        // Keys k0..k19 stay; k20..k47 come and go.
        for key in 0..48u8 {
            writer.set(&[b'k', key], &[key; 3], u64::from(key)).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut round = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for key in 20..48u8 {
                        if (usize::from(key) + round) % 2 == 0 {
                            writer.remove(&[b'k', key]);
                        } else {
                            writer.set(&[b'k', key], &vec![key; round % 30], 0).unwrap();
                        }
                    }
                    round += 1;
                }
                writer
            })
        };
        let scans = if cfg!(miri) { 2 } else { 300 };
        for _ in 0..scans {
            let mut seen = Vec::new();
            let mut start = 0;
            while start < table.table().slot_count() {
                start = table.table().scan(start, 3, |_| true, &mut seen).unwrap();
            }
            for key in 0..20u8 {
                let found = seen.iter().find(|s| s.key == [b'k', key]);
                let found = found.unwrap_or_else(|| panic!("k{key} missed"));
                assert_eq!((found.deadline_ms, found.value_len), (u64::from(key), 3));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writer = churn.join().unwrap();
        let mut all = Vec::new();
        assert_eq!(
            table.table().scan(0, usize::MAX, |_| true, &mut all),
            Ok(64)
        );
        assert_eq!(
            all.len() as u64,
            writer.keys(),
            "one pass reports each key once"
        );
        // A filter on the deadline: only the keys it accepts are copied out.
        let mut due = Vec::new();
        let filter = |d: u64| d != 0 && d < 10;
        assert_eq!(table.table().scan(0, 64, filter, &mut due), Ok(64));
        let mut keys: Vec<u8> = due.iter().map(|s| s.key[1]).collect();
        keys.sort_unstable();
        assert_eq!(keys, (1..10).collect::<Vec<u8>>());
    }

    #[test]
    fn clear_empties_the_table_and_it_fills_again() {
        let table = HeapTable::new(64, 64);
        let mut writer = TableWriter::new(&table, LIMITS);
        for key in 0..12u8 {
            writer.set(&[key], &[key; 9], u64::from(key % 2)).unwrap();
        }
        writer.clear();
        assert_eq!(
            (writer.keys(), writer.expiring(), writer.digest()),
            (0, 0, 0)
        );
        assert_eq!(writer.live_bytes(), 0);
        for key in 0..12u8 {
            assert_eq!(read(&table, &[key]), None);
        }
        let mut all = Vec::new();
        assert_eq!(table.table().scan(0, 64, |_| true, &mut all), Ok(64));
        assert!(all.is_empty());
        // The whole heap is free again: 12 more entries fit without a compaction (24 would
        // not fit in one half).
        for key in 12..24u8 {
            writer.set(&[key], &[key; 9], 0).unwrap();
            assert_eq!(read(&table, &[key]), Some(vec![key; 9]));
        }
        assert_eq!(writer.compactions(), 0);
    }

    #[test]
    fn a_deadline_hides_the_key_from_readers_once_it_comes() {
        let table = HeapTable::new(64, 64);
        let mut writer = TableWriter::new(&table, LIMITS);
        writer.set(b"k", b"v", NOW + 1).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            table.table().get(b"k", NOW, &mut out),
            Lookup::Found {
                deadline_ms: NOW + 1
            }
        );
        out.clear();
        assert_eq!(table.table().get(b"k", NOW + 1, &mut out), Lookup::Missing);
        assert!(out.is_empty(), "an expired value is not handed out");
        assert!(writer.set_deadline(b"k", 0));
        assert_eq!(
            table.table().get(b"k", u64::MAX, &mut out),
            Lookup::Found { deadline_ms: 0 }
        );
        assert_eq!(writer.expiring(), 0);
        assert!(!writer.set_deadline(b"absent", 5));
    }
}
