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

/// Back-off for attempt `n` of a bounded retry loop: spin for the first few attempts (the
/// writer is usually mid-update for nanoseconds), then yield the CPU so a writer that was
/// descheduled mid-update can finish.
#[inline]
pub(crate) fn backoff(attempt: u32) {
    if attempt < 64 {
        spin_hint();
    } else {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        std::thread::yield_now();
    }
}
