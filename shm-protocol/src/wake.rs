//! Wakeups across processes: spin briefly, then sleep on a process-shared futex, with a
//! "sleeping" flag so the producer only pays for a `FUTEX_WAKE` when the consumer sleeps.
//!
//! The flag lives on the consumer's cache line, the doorbell (the futex word) on the
//! producer's, so each line keeps a single writer. The handshake is Dekker's:
//!
//! ```text
//! consumer                               producer
//! bell = doorbell.load                   publish (release store of tail)
//! sleeping = 1                           fence(SeqCst)
//! fence(SeqCst)                          if sleeping == 1:
//! if ready(): sleeping = 0; return           doorbell += 1; FUTEX_WAKE
//! FUTEX_WAIT(doorbell, bell)
//! ```
//!
//! Either the consumer's re-check sees the publication, or the producer sees the flag; and a
//! doorbell bump between the consumer's load of `bell` and its `FUTEX_WAIT` makes the wait
//! return at once. No wakeup is lost.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Duration;

use crate::os::{futex_wait, futex_wake};

/// Busy checks before yielding: enough to catch a producer that is mid-burst.
pub const SPINS_BEFORE_YIELD: u32 = 100;
/// Yields before sleeping, for a consumer that shares few cores with its producers: a yield
/// hands the CPU to the very threads that produce the next item, for much less than a
/// futex sleep and wakeup cost. (A consumer whose yields mostly take CPU from others passes
/// fewer.)
pub const YIELDS_BEFORE_SLEEP: u32 = 20;

/// Polls `ready()` while spinning briefly, then yielding `yields` times; returns whether it
/// held. Callers that get `false` go to sleep by their own means.
pub fn spin_then_yield(yields: u32, mut ready: impl FnMut() -> bool) -> bool {
    for attempt in 0..SPINS_BEFORE_YIELD + yields {
        if ready() {
            return true;
        }
        if attempt < SPINS_BEFORE_YIELD {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    false
}

/// Waits until `ready()` holds or `timeout` passes, spinning, then yielding `yields` times,
/// then sleeping; returns `ready()`.
///
/// `sleeping` is the consumer's flag, `doorbell` the producer's futex word.
pub fn wait_until(
    yields: u32,
    sleeping: &AtomicU32,
    doorbell: &AtomicU32,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if spin_then_yield(yields, &mut ready) {
        return true;
    }
    let bell = doorbell.load(Ordering::Acquire);
    sleeping.store(1, Ordering::Relaxed);
    // SYNC POINT: pairs with the fence in `notify`: the flag store and the producer's
    // publication cannot both be missed.
    fence(Ordering::SeqCst);
    if ready() {
        sleeping.store(0, Ordering::Relaxed);
        return true;
    }
    futex_wait(doorbell, bell, Some(timeout));
    sleeping.store(0, Ordering::Relaxed);
    ready()
}

/// Called by the producer after publishing: wakes the consumer if it sleeps.
pub fn notify(sleeping: &AtomicU32, doorbell: &AtomicU32) {
    // SYNC POINT: pairs with the fence in `wait_until`.
    fence(Ordering::SeqCst);
    if sleeping.load(Ordering::Relaxed) != 0 {
        ring(doorbell);
    }
}

/// Wakes the consumer unconditionally (used for control changes such as a stop request).
pub fn ring(doorbell: &AtomicU32) {
    doorbell.fetch_add(1, Ordering::Release);
    futex_wake(doorbell, i32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A sleeping consumer is woken by the producer long before its timeout, many times.
    #[test]
    #[cfg_attr(miri, ignore = "process-shared futex system calls")]
    fn no_lost_wakeups() {
        struct Shared {
            sleeping: AtomicU32,
            doorbell: AtomicU32,
            published: std::sync::atomic::AtomicU64,
            done: AtomicBool,
        }
        let shared = Arc::new(Shared {
            sleeping: AtomicU32::new(0),
            doorbell: AtomicU32::new(0),
            published: std::sync::atomic::AtomicU64::new(0),
            done: AtomicBool::new(false),
        });
        let rounds = 2_000u64;
        let consumer = {
            let s = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut slow = 0;
                while seen < rounds {
                    let start = std::time::Instant::now();
                    let ok = wait_until(
                        YIELDS_BEFORE_SLEEP,
                        &s.sleeping,
                        &s.doorbell,
                        Duration::from_secs(10),
                        || s.published.load(Ordering::Acquire) > seen,
                    );
                    assert!(ok, "woken without publication after {seen}");
                    if start.elapsed() > Duration::from_secs(5) {
                        slow += 1;
                    }
                    seen = s.published.load(Ordering::Acquire);
                }
                s.done.store(true, Ordering::Release);
                slow
            })
        };
        for i in 1..=rounds {
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            shared.published.store(i, Ordering::Release);
            notify(&shared.sleeping, &shared.doorbell);
        }
        let slow = consumer.join().unwrap();
        assert!(shared.done.load(Ordering::Acquire));
        assert_eq!(
            slow, 0,
            "a wakeup was lost and only the timeout ended the wait"
        );
    }
}
