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
