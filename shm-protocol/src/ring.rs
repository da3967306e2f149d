//! A bounded single-producer single-consumer ring of variable-length records over words of
//! shared memory.
//!
//! ```text
//! record = header word | payload words
//! header = tag (high 32 bits) | payload length in words (low 32 bits)
//! ```
//!
//! `head` and `tail` are free-running word counters (never wrapped; a `u64` of words does not
//! overflow in the lifetime of a machine). A record never straddles the end of the buffer:
//! when it would, the producer first writes a padding record ([`TAG_PAD`]) up to the end.
//! The producer owns `tail`, the consumer owns `head`; each lives on a cache line written only
//! by its owner.
//!
//! Synchronisation: the producer stores the record's words (relaxed), then publishes with a
//! release store of `tail`; the consumer's acquire load of `tail` makes those words visible.
//! The consumer releases the space with a release store of `head`, which the producer's
//! acquire load pairs with before it overwrites that space.

use crate::sync::{AtomicU64, Ordering};
use crate::words;

/// The tag of a padding record, which the consumer skips.
pub const TAG_PAD: u32 = u32::MAX;

/// The words and the two counters a ring lives in.
#[derive(Clone, Copy, Debug)]
pub struct RingView<'a> {
    /// The buffer; its length is a power of two.
    pub words: &'a [AtomicU64],
    /// Consumer position (written only by the consumer).
    pub head: &'a AtomicU64,
    /// Producer position (written only by the producer).
    pub tail: &'a AtomicU64,
}

/// Something that holds a ring: a mapped segment, or heap memory in tests.
pub trait RingMemory {
    /// The ring's words and counters.
    fn ring(&self) -> RingView<'_>;
}

/// Errors seen by the consumer when the ring's contents break the format. Only a bug or a
/// foreign writer can cause them; they are reported, never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// A header claims more words than the producer published or than fit before the end.
    BadRecord {
        /// Consumer position of the bad header.
        head: u64,
        /// The header word as read.
        header: u64,
    },
    /// `tail - head` exceeds the capacity.
    BadCounters {
        /// Consumer position.
        head: u64,
        /// Producer position.
        tail: u64,
    },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRecord { head, header } => {
                write!(f, "malformed ring record header {header:#x} at word {head}")
            }
            Self::BadCounters { head, tail } => {
                write!(f, "ring counters out of range: head {head}, tail {tail}")
            }
        }
    }
}

impl std::error::Error for RingError {}

/// Largest payload (in words) a ring of `capacity_words` accepts: half the ring less the
/// header, so a record always fits after at most one padding record.
#[must_use]
pub const fn max_payload_words(capacity_words: u64) -> u64 {
    capacity_words / 2 - 1
}

#[inline]
fn header(tag: u32, len: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(len)
}

/// The producing half. Only one may exist per ring: it is handed out once by the owner of
/// the memory, and is neither `Clone` nor `Copy`.
#[derive(Debug)]
pub struct Producer<M: RingMemory> {
    mem: M,
    tail: u64,
    head_cache: u64,
}

/// Where a producer writes one record: the payload words, contiguous.
#[derive(Debug)]
pub struct RecordWriter<'a> {
    payload: &'a [AtomicU64],
}

impl RecordWriter<'_> {
    /// Number of payload words.
    #[must_use]
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Stores word `index` of the payload. Out of range indices are ignored and reported.
    pub fn put(&mut self, index: usize, value: u64) -> bool {
        match self.payload.get(index) {
            Some(word) => {
                word.store(value, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Stores `bytes` starting at payload word `index`.
    pub fn put_bytes(&mut self, index: usize, bytes: &[u8]) -> bool {
        match self.payload.get(index..) {
            Some(rest) => words::store_bytes(rest, bytes),
            None => false,
        }
    }
}

/// The ring had no room for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl<M: RingMemory> Producer<M> {
    /// Takes the producing side of the ring in `mem`, resuming at its current tail.
    ///
    /// The caller guarantees no other producer exists for this ring.
    pub fn new(mem: M) -> Self {
        let view = mem.ring();
        let tail = view.tail.load(Ordering::Relaxed);
        let head_cache = view.head.load(Ordering::Acquire);
        debug_assert!(view.words.len().is_power_of_two());
        Self {
            mem,
            tail,
            head_cache,
        }
    }

    /// The memory this producer writes into.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Words published so far (the free-running tail).
    #[must_use]
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Whether a record of `payload_words` words fits now. Only the consumer frees space,
    /// so a following [`Producer::try_push`] of that size cannot fail.
    pub fn has_room(&mut self, payload_words: u32) -> bool {
        let view = self.mem.ring();
        let capacity = view.words.len() as u64;
        let need = 1 + u64::from(payload_words);
        let to_end = capacity - (self.tail & (capacity - 1));
        let total = if need > to_end { to_end + need } else { need };
        if capacity - (self.tail - self.head_cache) < total {
            // SYNC POINT: as in `try_push`.
            self.head_cache = view.head.load(Ordering::Acquire);
        }
        capacity - (self.tail - self.head_cache) >= total
    }

    /// Appends one record of `payload_words` words with `tag`, filling it with `fill`, and
    /// publishes it. Returns [`Full`] without writing anything when there is no room now.
    ///
    /// # Panics
    /// Never for a tag other than [`TAG_PAD`] and a size within [`max_payload_words`]; those
    /// preconditions are checked with `assert!` because violating them is a caller bug.
    pub fn try_push(
        &mut self,
        tag: u32,
        payload_words: u32,
        fill: impl FnOnce(&mut RecordWriter<'_>),
    ) -> Result<(), Full> {
        let view = self.mem.ring();
        let capacity = view.words.len() as u64;
        assert!(tag != TAG_PAD, "TAG_PAD is reserved");
        assert!(
            u64::from(payload_words) <= max_payload_words(capacity),
            "record of {payload_words} words exceeds ring capacity {capacity}"
        );
        let need = 1 + u64::from(payload_words);
        let mask = capacity - 1;
        let pos = self.tail & mask;
        let to_end = capacity - pos;
        let total = if need > to_end { to_end + need } else { need };
        if capacity - (self.tail - self.head_cache) < total {
            // SYNC POINT: pairs with the consumer's release store of `head`; after it the
            // space up to `head` is no longer read by the consumer and may be overwritten.
            self.head_cache = view.head.load(Ordering::Acquire);
            if capacity - (self.tail - self.head_cache) < total {
                return Err(Full);
            }
        }
        let mut at = pos;
        if need > to_end {
            // Padding record to the end of the buffer.
            let pad_len = u32::try_from(to_end - 1).unwrap_or(u32::MAX);
            view.words[pos as usize].store(header(TAG_PAD, pad_len), Ordering::Relaxed);
            at = 0;
        }
        let start = at as usize;
        view.words[start].store(header(tag, payload_words), Ordering::Relaxed);
        let payload = &view.words[start + 1..start + need as usize];
        fill(&mut RecordWriter { payload });
        self.tail += total;
        // SYNC POINT: pairs with the consumer's acquire load of `tail`: the record's words
        // stored above happen-before the consumer reads them.
        view.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Whether the consumer has taken everything published so far.
    #[must_use]
    pub fn is_drained(&self) -> bool {
        self.mem.ring().head.load(Ordering::Acquire) == self.tail
    }
}

/// The consuming half. Only one may exist per ring.
#[derive(Debug)]
pub struct Consumer<M: RingMemory> {
    mem: M,
    head: u64,
    tail_cache: u64,
}

/// One record as seen by the consumer, valid until [`Consumer::advance`].
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The record's tag.
    pub tag: u32,
    /// The payload words.
    pub payload: &'a [AtomicU64],
    words: u64,
}

impl Record<'_> {
    /// Word `index` of the payload (0 when out of range).
    #[must_use]
    pub fn word(&self, index: usize) -> u64 {
        self.payload
            .get(index)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// Appends `len` bytes stored from payload word `index` on to `out`.
    pub fn bytes(&self, index: usize, len: usize, out: &mut Vec<u8>) -> bool {
        match self.payload.get(index..) {
            Some(rest) => words::load_bytes(rest, len, out),
            None => false,
        }
    }
}

impl<M: RingMemory> Consumer<M> {
    /// Takes the consuming side of the ring in `mem`, resuming at its current head.
    ///
    /// The caller guarantees no other consumer exists for this ring.
    pub fn new(mem: M) -> Self {
        let view = mem.ring();
        let head = view.head.load(Ordering::Relaxed);
        Self {
            mem,
            head,
            tail_cache: head,
        }
    }

    /// The memory this consumer reads from.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether a record is waiting (loads the producer's tail).
    pub fn has_pending(&mut self) -> bool {
        if self.head != self.tail_cache {
            return true;
        }
        // SYNC POINT: pairs with the producer's release store of `tail`.
        self.tail_cache = self.mem.ring().tail.load(Ordering::Acquire);
        self.head != self.tail_cache
    }

    /// The oldest unconsumed record, if any, skipping padding. The record stays in the ring
    /// until [`Consumer::advance`].
    pub fn peek(&mut self) -> Result<Option<Record<'_>>, RingError> {
        let view = self.mem.ring();
        let capacity = view.words.len() as u64;
        loop {
            if self.head == self.tail_cache {
                // SYNC POINT: pairs with the producer's release store of `tail`.
                self.tail_cache = view.tail.load(Ordering::Acquire);
                if self.head == self.tail_cache {
                    return Ok(None);
                }
            }
            let available = self.tail_cache.wrapping_sub(self.head);
            if available > capacity {
                return Err(RingError::BadCounters {
                    head: self.head,
                    tail: self.tail_cache,
                });
            }
            let pos = (self.head & (capacity - 1)) as usize;
            let header = view.words[pos].load(Ordering::Relaxed);
            let tag = (header >> 32) as u32;
            let len = header & u64::from(u32::MAX);
            let words = 1 + len;
            if words > available || pos as u64 + words > capacity {
                return Err(RingError::BadRecord {
                    head: self.head,
                    header,
                });
            }
            if tag == TAG_PAD {
                self.head += words;
                continue;
            }
            let payload = &view.words[pos + 1..pos + words as usize];
            return Ok(Some(Record {
                tag,
                payload,
                words,
            }));
        }
    }

    /// Releases the record last returned by [`Consumer::peek`] (and any padding before it)
    /// back to the producer.
    pub fn advance(&mut self, record_words: u64) {
        self.head += record_words;
        // SYNC POINT: pairs with the producer's acquire load of `head`: our reads of the
        // record happen-before the producer reuses its space.
        self.mem.ring().head.store(self.head, Ordering::Release);
    }

    /// Pops the oldest record, handing it to `f` before releasing its space.
    pub fn pop<R>(&mut self, f: impl FnOnce(Record<'_>) -> R) -> Result<Option<R>, RingError> {
        let (out, words) = match self.peek()? {
            Some(record) => {
                let words = record.words;
                (f(record), words)
            }
            None => return Ok(None),
        };
        self.advance(words);
        Ok(Some(out))
    }
}

/// Heap memory for a ring, for tests and model checking.
#[derive(Debug)]
pub struct HeapRing {
    words: Vec<AtomicU64>,
    head: AtomicU64,
    tail: AtomicU64,
}

impl HeapRing {
    /// A ring of `capacity_words` (a power of two, at least 4).
    ///
    /// # Panics
    /// When `capacity_words` is not a power of two of at least 4.
    #[must_use]
    pub fn new(capacity_words: usize) -> Self {
        assert!(capacity_words.is_power_of_two() && capacity_words >= 4);
        Self {
            words: (0..capacity_words).map(|_| AtomicU64::new(0)).collect(),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }
}

impl RingMemory for HeapRing {
    fn ring(&self) -> RingView<'_> {
        RingView {
            words: &self.words,
            head: &self.head,
            tail: &self.tail,
        }
    }
}

impl<T: RingMemory> RingMemory for std::sync::Arc<T> {
    fn ring(&self) -> RingView<'_> {
        (**self).ring()
    }
}

impl<T: RingMemory> RingMemory for &T {
    fn ring(&self) -> RingView<'_> {
        (**self).ring()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn push_bytes(p: &mut Producer<&HeapRing>, tag: u32, bytes: &[u8]) -> Result<(), Full> {
        let words = u32::try_from(words::words_for(bytes.len() as u64) + 1).unwrap();
        p.try_push(tag, words, |w| {
            assert!(w.put(0, bytes.len() as u64));
            assert!(w.put_bytes(1, bytes));
        })
    }

    fn pop_bytes(c: &mut Consumer<&HeapRing>) -> Option<(u32, Vec<u8>)> {
        c.pop(|r| {
            let mut out = Vec::new();
            assert!(r.bytes(1, r.word(0) as usize, &mut out));
            (r.tag, out)
        })
        .unwrap()
    }

    #[test]
    fn fifo_order_across_many_wraps() {
        let ring = HeapRing::new(16);
        let mut p = Producer::new(&ring);
        let mut c = Consumer::new(&ring);
        let mut expected = std::collections::VecDeque::new();
        for i in 0..500u32 {
            let len = (i * 7 % 23) as usize;
            let bytes: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            while push_bytes(&mut p, i, &bytes).is_err() {
                let (tag, got) = pop_bytes(&mut c).expect("full ring has a record");
                assert_eq!(Some((tag, got)), expected.pop_front());
            }
            expected.push_back((i, bytes));
        }
        while let Some(got) = pop_bytes(&mut c) {
            assert_eq!(Some(got), expected.pop_front());
        }
        assert!(expected.is_empty());
        assert!(p.is_drained());
    }

    #[test]
    fn has_room_predicts_try_push() {
        let ring = HeapRing::new(16);
        let mut p = Producer::new(&ring);
        let mut c = Consumer::new(&ring);
        for i in 0..300u32 {
            let words = i * 5 % 8;
            let room = p.has_room(words);
            assert_eq!(room, p.try_push(1, words, |_| {}).is_ok(), "record {i}");
            if !room || i % 3 == 0 {
                let _ = c.pop(|_| ());
            }
        }
    }

    #[test]
    fn full_ring_refuses_without_writing() {
        let ring = HeapRing::new(8);
        let mut p = Producer::new(&ring);
        assert_eq!(p.try_push(1, 3, |_| {}), Ok(()));
        assert_eq!(p.try_push(2, 3, |_| {}), Ok(()));
        assert_eq!(p.try_push(3, 0, |_| {}), Err(Full));
        assert_eq!(ring.tail.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn corrupt_header_is_reported_not_trusted() {
        let ring = HeapRing::new(8);
        let mut p = Producer::new(&ring);
        p.try_push(1, 1, |_| {}).unwrap();
        ring.words[0].store(header(1, 1000), Ordering::Relaxed);
        let mut c = Consumer::new(&ring);
        assert!(matches!(
            c.peek(),
            Err(RingError::BadRecord { head: 0, .. })
        ));
    }

    #[test]
    #[should_panic(expected = "exceeds ring capacity")]
    fn oversized_record_is_a_caller_bug() {
        let ring = HeapRing::new(8);
        let mut p = Producer::new(&ring);
        let _ = p.try_push(1, 4, |_| {});
    }
}
