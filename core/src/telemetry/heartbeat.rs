//! A loop's sign of life, beaten by the loops and read by the health endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shm_protocol::os::monotonic_ns;

/// A loop's sign of life: it beats once per turn (every loop turns at least every 250 ms).
#[derive(Debug)]
pub struct Heartbeat {
    name: &'static str,
    ns: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat of the loop `name`, beating now.
    #[must_use]
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            ns: AtomicU64::new(monotonic_ns()),
        })
    }

    /// Records a turn of the loop.
    pub fn beat(&self) {
        self.ns.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// The loop's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Time since the loop's latest turn.
    #[must_use]
    pub fn age(&self) -> Duration {
        Duration::from_nanos(monotonic_ns().saturating_sub(self.ns.load(Ordering::Relaxed)))
    }
}
