//! Copying bytes into and out of memory that another process may touch at the same time.
//!
//! Shared memory is only ever accessed through atomics: a plain or volatile read of a word
//! that another process may be writing is a data race, which is undefined behaviour even on
//! hardware where it "works". Relaxed atomic loads and stores of aligned words compile to
//! ordinary moves on x86-64 and aarch64, so this costs nothing; ordering comes from the
//! fences and acquire/release operations of the protocol that uses these helpers.

use crate::sync::{AtomicU64, Ordering};

/// How many 8-byte words hold `bytes` bytes.
#[inline]
#[must_use]
pub const fn words_for(bytes: u64) -> u64 {
    bytes.div_ceil(8)
}

/// Stores `bytes` into `dst`, little-endian, zero-padding the last word.
///
/// Returns `false` (and stores nothing) when `dst` is too short.
#[inline]
pub fn store_bytes(dst: &[AtomicU64], bytes: &[u8]) -> bool {
    let Ok(needed) = usize::try_from(words_for(bytes.len() as u64)) else {
        return false;
    };
    if dst.len() < needed {
        return false;
    }
    let mut chunks = bytes.chunks_exact(8);
    for (word, chunk) in dst.iter().zip(&mut chunks) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        word.store(u64::from_le_bytes(buf), Ordering::Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        dst[bytes.len() / 8].store(u64::from_le_bytes(buf), Ordering::Relaxed);
    }
    true
}

/// Appends `len` bytes read from `src` to `out`. Returns `false` (appending nothing) when
/// `src` is too short for `len` bytes.
#[inline]
pub fn load_bytes(src: &[AtomicU64], len: usize, out: &mut Vec<u8>) -> bool {
    let needed = len.div_ceil(8);
    if src.len() < needed {
        return false;
    }
    out.reserve(len);
    let full = len / 8;
    for word in &src[..full] {
        out.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    let rest = len % 8;
    if rest != 0 {
        let last = src[full].load(Ordering::Relaxed).to_le_bytes();
        out.extend_from_slice(&last[..rest]);
    }
    true
}

/// Compares `len` bytes stored in `src` with `expected` without copying them out.
#[inline]
#[must_use]
pub fn bytes_equal(src: &[AtomicU64], expected: &[u8]) -> bool {
    let needed = expected.len().div_ceil(8);
    if src.len() < needed {
        return false;
    }
    let mut chunks = expected.chunks_exact(8);
    for (word, chunk) in src.iter().zip(&mut chunks) {
        if word.load(Ordering::Relaxed).to_le_bytes() != chunk {
            return false;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return true;
    }
    let last = src[expected.len() / 8]
        .load(Ordering::Relaxed)
        .to_le_bytes();
    last[..rest.len()] == *rest
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn check(bytes: &[u8], words: usize) {
        let mem: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(u64::MAX)).collect();
        let fits = bytes.len().div_ceil(8) <= words;
        assert_eq!(
            store_bytes(&mem, bytes),
            fits,
            "store {bytes:?} into {words} words"
        );
        if !fits {
            assert!(mem.iter().all(|w| w.load(Ordering::Relaxed) == u64::MAX));
            return;
        }
        let mut out = Vec::new();
        assert!(load_bytes(&mem, bytes.len(), &mut out));
        assert_eq!(out, bytes);
        assert!(bytes_equal(&mem, bytes));
        let mut other = bytes.to_vec();
        if let Some(b) = other.last_mut() {
            *b ^= 1;
            assert!(!bytes_equal(&mem, &other));
        }
    }

    #[test]
    fn round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            check(&bytes, 5);
        }
    }

    #[test]
    fn load_refuses_short_source() {
        let mem: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
        let mut out = Vec::new();
        assert!(!load_bytes(&mem, 17, &mut out));
        assert!(out.is_empty());
    }
}
