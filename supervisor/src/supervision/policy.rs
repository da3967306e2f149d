//! The restart and park rules as pure functions of a shard's crash record and the time
//! passed in: no threads, no clocks, no I/O, so each rule has a table-driven test. The
//! lifecycle thread carries the decisions out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wal::codec::LifecycleRecord;

/// Restart policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Delay of the second consecutive restart.
    pub backoff_initial: Duration,
    /// Longest delay.
    pub backoff_max: Duration,
    /// Uptime that resets the backoff.
    pub stable_period: Duration,
    /// Crashes within `window` that park the shard.
    pub intensity: u32,
    /// Window of `intensity`.
    pub window: Duration,
    /// Interval of probe restarts of a parked shard.
    pub park_retry: Duration,
    /// Heartbeat age that gets a worker killed.
    pub watchdog_timeout: Duration,
}

impl Policy {
    /// The delay before restart number `consecutive` (1-based) in a row: 0 for the first,
    /// then `initial * 2^(n-2)` capped at `max`, with ±25% jitter from `jitter` in [0, 1).
    #[must_use]
    pub fn backoff(&self, consecutive: u32, jitter: f64) -> Duration {
        if consecutive <= 1 {
            return Duration::ZERO;
        }
        let doublings = (consecutive - 2).min(30);
        let base = self
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
            .min(self.backoff_max)
    }
}

/// How a worker failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// It ran for `uptime` and exited other than on request.
    Exited {
        /// How long it ran.
        uptime: Duration,
    },
    /// It could not be started.
    SpawnFailed,
}

/// What follows a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a new worker after `delay`; `consecutive` counts the restarts in a row.
    Restart {
        /// Backoff before the spawn.
        delay: Duration,
        /// Restarts in a row, this one included.
        consecutive: u32,
    },
    /// Park the shard (refuse its writes) and probe it with one restart after `probe_in`.
    Park {
        /// Time to the probe restart.
        probe_in: Duration,
        /// Crashes within the window, this one included.
        crashes: usize,
    },
}

/// One shard's restart record: crashes within the window, restarts in a row, and whether
/// the next worker is a probe of a parked shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartState {
    crashes: VecDeque<Instant>,
    consecutive: u32,
    probing: bool,
}

impl RestartState {
    /// The state a shard resumes with at start-up, from its past in the event log: crashes
    /// still inside the window count, and a shard parked when the last supervisor stopped
    /// starts as a probe.
    #[must_use]
    pub fn resumed(past: &WorkerHistory, policy: &Policy, now: Instant, now_unix_ms: u64) -> Self {
        let crashes = past
            .crashes_unix_ms
            .iter()
            .map(|&at| Duration::from_millis(now_unix_ms.saturating_sub(at)))
            .filter(|ago| *ago <= policy.window)
            .map(|ago| now.checked_sub(ago).unwrap_or(now))
            .collect();
        Self {
            crashes,
            consecutive: 0,
            probing: past.parked,
        }
    }

    /// Counts a crash at `now` and decides what follows: parking if the shard crashed
    /// `intensity` times within the window (or the crash ended a probe), else a restart after
    /// the backoff. A worker that ran for the stable period starts the backoff over.
    pub fn crashed(
        &mut self,
        policy: &Policy,
        crash: Crash,
        now: Instant,
        jitter: f64,
    ) -> Decision {
        if matches!(crash, Crash::Exited { uptime } if uptime >= policy.stable_period) {
            self.consecutive = 0;
        }
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            self.crashes.pop_front();
        }
        if self.probing || self.crashes.len() >= policy.intensity as usize {
            self.probing = true;
            return Decision::Park {
                probe_in: policy.park_retry,
                crashes: self.crashes.len(),
            };
        }
        self.consecutive += 1;
        Decision::Restart {
            delay: policy.backoff(self.consecutive, jitter),
            consecutive: self.consecutive,
        }
    }

    /// The shard recovered: a probe that recovers ends the parked state (the crash window
    /// still counts). Returns whether it was a probe.
    pub fn recovered(&mut self) -> bool {
        std::mem::replace(&mut self.probing, false)
    }

    /// Whether the next (or current) worker is a probe of a parked shard.
    #[must_use]
    pub fn probing(&self) -> bool {
        self.probing
    }

    /// Crashes inside the window as of the last one.
    #[must_use]
    pub fn recent_crashes(&self) -> usize {
        self.crashes.len()
    }
}

/// What the event log says about each worker's past: rebuilt at start-up, so restart
/// counts, crash windows and parked shards survive a supervisor restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    workers: Vec<WorkerHistory>,
}

/// One worker's past, from the event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerHistory {
    /// Crashes (exits other than a clean stop) so far.
    pub restarts: u64,
    /// When the most recent crashes happened (ms since the Unix epoch), oldest first.
    pub crashes_unix_ms: VecDeque<u64>,
    /// Whether the shard was parked (and not recovered since) when the log ends.
    pub parked: bool,
}

/// Crash times kept per worker (more than any sensible restart intensity).
const CRASHES_KEPT: usize = 64;

impl WorkerHistory {
    fn crashed(&mut self, unix_ms: u64) {
        self.restarts += 1;
        self.crashes_unix_ms.push_back(unix_ms);
        if self.crashes_unix_ms.len() > CRASHES_KEPT {
            self.crashes_unix_ms.pop_front();
        }
    }
}

impl History {
    /// Folds one lifecycle record in, oldest first.
    pub fn observe(&mut self, record: &LifecycleRecord) {
        let worker = match record {
            LifecycleRecord::WorkerExited { worker, code, .. } if *code != Some(0) => *worker,
            LifecycleRecord::SpawnFailed { worker, .. }
            | LifecycleRecord::ShardParked { worker, .. }
            | LifecycleRecord::ShardRecovered { worker, .. } => *worker,
            _ => return,
        };
        let i = worker as usize;
        if i >= self.workers.len() {
            self.workers.resize(i + 1, WorkerHistory::default());
        }
        let past = &mut self.workers[i];
        match record {
            LifecycleRecord::WorkerExited { unix_ms, .. }
            | LifecycleRecord::SpawnFailed { unix_ms, .. } => past.crashed(*unix_ms),
            LifecycleRecord::ShardParked { .. } => past.parked = true,
            LifecycleRecord::ShardRecovered { .. } => past.parked = false,
            _ => unreachable!("filtered above"),
        }
    }

    /// Worker `id`'s past (empty if the log never mentions it).
    #[must_use]
    pub fn worker(&self, id: u32) -> WorkerHistory {
        self.workers.get(id as usize).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Policy {
        Policy {
            backoff_initial: 50 * MS,
            backoff_max: Duration::from_secs(10),
            stable_period: Duration::from_secs(30),
            intensity: 5,
            window: Duration::from_secs(30),
            park_retry: Duration::from_secs(60),
            watchdog_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_is_immediate_then_doubles_to_the_cap() {
        let p = policy();
        assert_eq!(p.backoff(1, 0.5), Duration::ZERO);
        assert_eq!(p.backoff(2, 0.5), 50 * MS);
        assert_eq!(p.backoff(3, 0.5), 100 * MS);
        assert_eq!(p.backoff(5, 0.5), 400 * MS);
        assert_eq!(p.backoff(40, 0.99), Duration::from_secs(10));
        assert!(p.backoff(2, 0.0) >= Duration::from_micros(37_500));
        assert!(p.backoff(2, 0.999) <= Duration::from_micros(62_500));
    }

    /// One step of a scenario: a crash `at_ms` after the start, or the shard's recovery.
    enum Step {
        Crash {
            at_ms: u64,
            crash: Crash,
            then: Decision,
        },
        Recovered {
            was_probe: bool,
        },
    }
    use Step::Recovered;

    fn at(at_ms: u64, crash: Crash, then: Decision) -> Step {
        Step::Crash { at_ms, crash, then }
    }

    fn exited(uptime_ms: u64) -> Crash {
        Crash::Exited {
            uptime: Duration::from_millis(uptime_ms),
        }
    }
    fn restart(delay_ms: u64, consecutive: u32) -> Decision {
        Decision::Restart {
            delay: Duration::from_millis(delay_ms),
            consecutive,
        }
    }
    fn park(crashes: usize) -> Decision {
        Decision::Park {
            probe_in: Duration::from_secs(60),
            crashes,
        }
    }

    fn run(mut state: RestartState, steps: &[Step]) {
        let t0 = Instant::now();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Crash { at_ms, crash, then } => {
                    let got =
                        state.crashed(&policy(), *crash, t0 + Duration::from_millis(*at_ms), 0.5);
                    assert_eq!(got, *then, "step {i} (crash at {at_ms} ms)");
                }
                Recovered { was_probe } => {
                    assert_eq!(state.recovered(), *was_probe, "step {i} (recovered)");
                }
            }
        }
    }

    #[test]
    fn a_crash_loop_backs_off_then_parks_and_a_failed_probe_parks_again() {
        run(
            RestartState::default(),
            &[
                at(0, exited(100), restart(0, 1)),
                at(100, exited(100), restart(50, 2)),
                at(300, Crash::SpawnFailed, restart(100, 3)),
                at(500, exited(100), restart(200, 4)),
                // The fifth crash within 30 s parks.
                at(800, exited(100), park(5)),
                // The probe, a minute later, crashes: parked again; the window has emptied.
                at(60_900, exited(100), park(1)),
                // The next probe recovers; the following crash is no probe's: a restart,
                // its backoff carrying on from before the park.
                Recovered { was_probe: true },
                at(125_000, exited(3_000), restart(400, 5)),
                Recovered { was_probe: false },
            ],
        );
    }

    #[test]
    fn a_stable_run_resets_the_backoff_but_not_the_window() {
        run(
            RestartState::default(),
            &[
                at(0, exited(10), restart(0, 1)),
                at(10, exited(10), restart(50, 2)),
                at(20, exited(10), restart(100, 3)),
                // Up for the whole stable period: immediate restart again.
                at(29_000, exited(30_000), restart(0, 1)),
                // Four crashes are still in the window; this fifth parks.
                at(29_500, exited(10), park(5)),
            ],
        );
        // A spawn failure has no uptime, so it never resets the backoff.
        run(
            RestartState::default(),
            &[
                at(0, Crash::SpawnFailed, restart(0, 1)),
                at(40_000, Crash::SpawnFailed, restart(50, 2)),
            ],
        );
    }

    #[test]
    fn crashes_older_than_the_window_do_not_count() {
        // A crash every 8 s: at most four inside a 30 s window, so never parked; the
        // backoff doubles to its cap.
        let delays_ms = [0, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000];
        let steps: Vec<Step> = (0..10u32)
            .map(|k| {
                at(
                    u64::from(k) * 8_000,
                    exited(8_000),
                    restart(delays_ms[k as usize], k + 1),
                )
            })
            .collect();
        run(RestartState::default(), &steps);
    }

    #[test]
    fn resumes_recent_crashes_and_a_parked_shard_from_the_log() {
        let p = policy();
        let now_ms = 1_000_000;
        let past = WorkerHistory {
            restarts: 7,
            // 40 s ago (outside the window), 20 s and 1 s ago (inside).
            crashes_unix_ms: [now_ms - 40_000, now_ms - 20_000, now_ms - 1_000].into(),
            parked: false,
        };
        let now = Instant::now() + Duration::from_secs(100);
        let mut state = RestartState::resumed(&past, &p, now, now_ms);
        assert_eq!(state.recent_crashes(), 2);
        assert!(!state.probing());
        assert_eq!(state.crashed(&p, exited(5), now, 0.5), restart(0, 1));
        assert_eq!(state.recent_crashes(), 3);

        let parked = WorkerHistory {
            parked: true,
            ..past
        };
        let mut state = RestartState::resumed(&parked, &p, now, now_ms);
        assert!(
            state.probing(),
            "a shard parked at the last stop starts as a probe"
        );
        assert_eq!(state.crashed(&p, exited(5), now, 0.5), park(3));
    }

    #[test]
    fn history_counts_crashes_and_tracks_parking() {
        let mut h = History::default();
        let exited = |worker, code, unix_ms| LifecycleRecord::WorkerExited {
            worker,
            generation: 1,
            pid: 1,
            code,
            signal: None,
            unix_ms,
        };
        h.observe(&exited(1, Some(0), 10));
        assert_eq!(
            h.worker(1),
            WorkerHistory::default(),
            "a clean exit is no crash"
        );
        h.observe(&exited(1, None, 20));
        h.observe(&LifecycleRecord::SpawnFailed {
            worker: 1,
            generation: 2,
            reason: "spawn".into(),
            unix_ms: 30,
        });
        h.observe(&LifecycleRecord::ShardParked {
            worker: 1,
            unix_ms: 30,
        });
        let w = h.worker(1);
        assert_eq!((w.restarts, w.parked), (2, true));
        assert_eq!(w.crashes_unix_ms, VecDeque::from([20, 30]));
        h.observe(&LifecycleRecord::ShardRecovered {
            worker: 1,
            generation: 3,
            replayed: 0,
            unix_ms: 40,
        });
        assert!(!h.worker(1).parked);
        assert_eq!(h.worker(0), WorkerHistory::default());
        for t in 0..100 {
            h.observe(&exited(0, Some(1), t));
        }
        assert_eq!(h.worker(0).restarts, 100);
        assert_eq!(h.worker(0).crashes_unix_ms.len(), CRASHES_KEPT);
        assert_eq!(h.worker(0).crashes_unix_ms.front(), Some(&36));
    }
}
