//! Key placement: the Redis Cluster hash slot (CRC16/XMODEM of the key, or of its first
//! non-empty `{hash tag}`, mod 16384), then a contiguous range of slots per shard.

/// Number of hash slots.
pub const SLOTS: u32 = 16_384;

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

const CRC16: [u16; 256] = crc16_table();

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

/// The hash slot of `key`, honouring `{hash tags}` as Redis Cluster does.
#[must_use]
pub fn hash_slot(key: &[u8]) -> u32 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    u32::from(crc16(hashed)) % SLOTS
}

/// The shard owning `key` among `shards`.
#[must_use]
pub fn shard_of(key: &[u8], shards: u32) -> u32 {
    (u64::from(hash_slot(key)) * u64::from(shards) / u64::from(SLOTS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_cluster_slots() {
        // Reference values from `CLUSTER KEYSLOT` on Redis.
        for (key, slot) in [
            (&b"foo"[..], 12182),
            (b"bar", 5061),
            (b"", 0),
            (b"123456789", 12739),
        ] {
            assert_eq!(hash_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn hash_tags_select_the_hashed_part() {
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    }

    #[test]
    fn shards_split_slots_into_ranges() {
        assert_eq!(shard_of(b"", 4), 0);
        let mut seen = [0u32; 3];
        for i in 0..3000 {
            seen[shard_of(format!("k{i}").as_bytes(), 3) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
