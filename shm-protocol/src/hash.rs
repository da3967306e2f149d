//! The hash functions every process must agree on: key placement in the slot table, and the
//! order-independent state digest.

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xbf58_476d_1ce4_e5b9;

#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn absorb(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(K1)
            .rotate_left(29);
    }
    let rest = chunks.remainder();
    let mut buf = [0u8; 8];
    buf[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(buf) ^ (rest.len() as u64) << 56)
        .wrapping_mul(K1)
        .rotate_left(29);
    h
}

/// The 64-bit hash of a key, never 0 (0 marks an empty slot).
#[inline]
#[must_use]
pub fn key_hash(key: &[u8]) -> u64 {
    let h = fmix(absorb(K0 ^ key.len() as u64, key));
    h.max(1)
}

/// The digest contribution of one key/value pair. A shard's digest is the wrapping sum of
/// the contributions of all its pairs, so it is independent of insertion order and can be
/// updated in O(1) per write.
#[inline]
#[must_use]
pub fn pair_digest(key: &[u8], value: &[u8]) -> u64 {
    let h = absorb(K1 ^ key.len() as u64, key);
    fmix(absorb(h ^ K0.rotate_left(17) ^ value.len() as u64, value))
}

/// The digest contribution of one entry: its pair and its expiry deadline (Unix ms, 0 for
/// none). An entry without a deadline contributes exactly its [`pair_digest`], so digests
/// of states without deadlines are those of earlier builds.
#[inline]
#[must_use]
pub fn entry_digest(key: &[u8], value: &[u8], deadline_ms: u64) -> u64 {
    let pair = pair_digest(key, value);
    if deadline_ms == 0 {
        pair
    } else {
        pair.wrapping_add(fmix(pair ^ deadline_ms.wrapping_mul(K0) ^ K1))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn distinguishes_lengths_and_positions() {
        assert_ne!(key_hash(b""), key_hash(b"\0"));
        assert_ne!(key_hash(b"ab"), key_hash(b"ba"));
        assert_ne!(pair_digest(b"a", b"bc"), pair_digest(b"ab", b"c"));
        assert_ne!(key_hash(b"12345678"), key_hash(b"12345678\0"));
        assert_eq!(entry_digest(b"a", b"b", 0), pair_digest(b"a", b"b"));
        assert_ne!(entry_digest(b"a", b"b", 1), entry_digest(b"a", b"b", 2));
        assert_ne!(entry_digest(b"a", b"b", 1), pair_digest(b"a", b"b"));
    }

    #[test]
    #[cfg_attr(miri, ignore = "statistics, not memory safety; slow under miri")]
    fn spreads_sequential_keys() {
        let mask = 1023u64;
        let mut buckets = vec![0u32; 1024];
        for i in 0..100_000u32 {
            buckets[(key_hash(format!("key:{i}").as_bytes()) & mask) as usize] += 1;
        }
        let max = *buckets.iter().max().unwrap();
        assert!(max < 200, "worst bucket {max} of mean 98");
    }
}
