//! The per-worker metrics block: counters and a fixed-bucket latency histogram, written only
//! by the worker (plain load-then-store, no read-modify-write, since there is one writer) and
//! read by the supervisor at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive, nanoseconds) of the apply-latency buckets; one more bucket counts
/// everything above the last bound. Identical for every worker.
pub const APPLY_BUCKETS_NS: [u64; 15] = [
    250,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    25_000_000,
    100_000_000,
];

/// Buckets including the overflow bucket.
pub const APPLY_BUCKET_COUNT: usize = APPLY_BUCKETS_NS.len() + 1;

/// Counters of one worker generation.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct MetricsBlock {
    /// Requests applied.
    pub applied: AtomicU64,
    /// Requests that returned an error (not an integer, out of memory, ...).
    pub errors: AtomicU64,
    /// Batches of requests applied between sleeps.
    pub batches: AtomicU64,
    /// Times the worker slept on its doorbell.
    pub sleeps: AtomicU64,
    /// Apply latency, non-cumulative bucket counts.
    pub apply_buckets: [AtomicU64; APPLY_BUCKET_COUNT],
    /// Sum of apply latencies, nanoseconds.
    pub apply_sum_ns: AtomicU64,
    /// Number of apply latency observations.
    pub apply_count: AtomicU64,
    /// Keys removed because their deadline had come (by a write that met them, or the
    /// active expiry sweep), replays included.
    pub expired_keys: AtomicU64,
    /// Keys with a deadline now (a gauge).
    pub expiring_keys: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<MetricsBlock>() == 192);

/// Adds `n` to a counter that only the calling process writes.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Index of the bucket that counts `ns`.
#[inline]
#[must_use]
pub fn bucket_index(ns: u64) -> usize {
    APPLY_BUCKETS_NS.partition_point(|&bound| bound < ns)
}

impl MetricsBlock {
    /// Records one apply latency.
    #[inline]
    pub fn observe_apply(&self, ns: u64) {
        bump(&self.apply_buckets[bucket_index(ns)], 1);
        bump(&self.apply_sum_ns, ns);
        bump(&self.apply_count, 1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(250), 0);
        assert_eq!(bucket_index(251), 1);
        assert_eq!(bucket_index(100_000_000), 14);
        assert_eq!(bucket_index(100_000_001), 15);
        assert_eq!(bucket_index(u64::MAX), APPLY_BUCKET_COUNT - 1);
    }
}
