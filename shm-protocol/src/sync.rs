//! The atomics facade: std atomics normally, loom's under `cfg(loom)` so the ring and the
//! seqlock can be model-checked over heap memory with the very same code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};

/// One step of a bounded spin: a CPU hint normally, a yield to the model checker under loom.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Attempts of a retry loop that spin before it starts yielding.
pub(crate) const BACKOFF_SPINS_MAX: u32 = 64;
/// Attempts that spin or yield before it starts sleeping.
pub(crate) const BACKOFF_YIELDS_MAX: u32 = 256;
/// Sleep between the later attempts.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const BACKOFF_SLEEP_US: u64 = 50;

/// Back-off for attempt `n` of a bounded retry loop: spin for the first few attempts (the
/// writer is usually mid-update for nanoseconds), then yield, then sleep: a writer that was
/// preempted mid-update waits for a CPU, and yielding alone burns through any attempt budget
/// within one scheduler slice when the writer's CPU is busy with something else.
#[inline]
pub(crate) fn backoff(attempt: u32) {
    if attempt < BACKOFF_SPINS_MAX {
        spin_hint();
    } else {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        if attempt < BACKOFF_YIELDS_MAX {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(BACKOFF_SLEEP_US));
        }
    }
}

/// Loads a word that only the calling thread ever stores: the single writer reading back its
/// own table. Never a race, so no ordering is needed.
///
/// Under loom this must not count as an access for the model checker: loom 0.7 remembers
/// only the last access to each atomic, so a writer's own load just before its store would
/// hide a concurrent reader's earlier load, and the interleavings where that reader runs
/// after the store would never be explored.
#[inline]
pub(crate) fn load_own(word: &AtomicU64) -> u64 {
    #[cfg(loom)]
    {
        // SAFETY: only the calling thread stores to `word` (the table's single writer), so
        // every store is visible to it; loom checks that no concurrent store exists.
        unsafe { word.unsync_load() }
    }
    #[cfg(not(loom))]
    {
        word.load(Ordering::Relaxed)
    }
}
