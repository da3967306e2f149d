//! Shared per-shard state: what every thread of the supervisor may ask about a shard.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Sender;
use shm_protocol::metrics::APPLY_BUCKET_COUNT;
use shm_protocol::os::Segment;
use shm_protocol::wake;

use crate::base::ops::InFlight;

/// A shard's state as the supervisor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShardState {
    /// First worker spawned, not ready yet.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// Its worker died; a new one is (being) started.
    Restarting = 2,
    /// Crash-looping: writes fail fast until a probe restart succeeds.
    Parked = 3,
    /// Shutting down.
    Stopping = 4,
    /// Worker gone after shutdown.
    Stopped = 5,
    /// Its worker is up and the event log is being replayed into it.
    Recovering = 6,
}

impl ShardState {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Ready,
            2 => Self::Restarting,
            3 => Self::Parked,
            4 => Self::Stopping,
            5 => Self::Stopped,
            6 => Self::Recovering,
            other => unreachable!("only set_state stores a shard state, never {other}"),
        }
    }

    /// Lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Restarting => "restarting",
            Self::Parked => "parked",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Recovering => "recovering",
        }
    }
}

/// One worker generation: its segment, process and liveness.
#[derive(Debug)]
pub struct Generation {
    /// Shard index.
    pub shard: u32,
    /// Generation number (1 for the first worker of this supervisor run).
    pub number: u64,
    /// The generation's segment.
    pub segment: Arc<Segment>,
    /// Worker process id.
    pub pid: u32,
    dead: AtomicBool,
    /// Its counters were folded into the shard's retired totals.
    folded: AtomicBool,
    inflight: Mutex<Option<Sender<InFlight>>>,
}

impl Generation {
    /// A generation whose completion reader receives in-flight records through `inflight`.
    pub fn new(
        shard: u32,
        number: u64,
        segment: Arc<Segment>,
        pid: u32,
        inflight: Sender<InFlight>,
    ) -> Self {
        Self {
            shard,
            number,
            segment,
            pid,
            dead: AtomicBool::new(false),
            folded: AtomicBool::new(false),
            inflight: Mutex::new(Some(inflight)),
        }
    }

    /// Whether the worker has exited.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Records the worker's exit and wakes the completion reader so it can wind down.
    pub fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
        drop(self.take_inflight());
        wake::ring(&self.segment.head().worker_completion.completion_doorbell);
    }

    /// Hands the in-flight sender to the sequencer (once).
    pub fn take_inflight(&self) -> Option<Sender<InFlight>> {
        self.inflight.lock().map(|mut g| g.take()).unwrap_or(None)
    }
}

/// What the supervisor knows of one shard.
#[derive(Debug)]
pub struct Shard {
    /// Shard index.
    pub id: u32,
    state: AtomicU32,
    current: RwLock<Option<Arc<Generation>>>,
    /// Restarts so far (carried over from earlier runs through the event log).
    pub restarts: AtomicU64,
    last_exit: Mutex<Option<String>>,
    /// Counters of the shard's dead generations.
    retired: Mutex<WorkerCounts>,
    /// Restarts by [`RestartReason`].
    restart_reasons: [AtomicU64; RestartReason::ALL.len()],
    /// Exit code and signal of the last worker (-1: none).
    last_code: AtomicI64,
    last_signal: AtomicI64,
    /// The sequence number of the last write handed to a worker of this shard.
    pushed_seq: AtomicU64,
    /// Delay of the latest scheduled restart (or park probe), nanoseconds.
    backoff_ns: AtomicU64,
    /// When (monotonic ns) the current worker has run for the stable period, which resets
    /// the backoff.
    stable_at_ns: AtomicU64,
    /// Times the shard was parked in this run.
    parks: AtomicU64,
}

/// Why a worker was restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartReason {
    /// Killed by a signal.
    Signal = 0,
    /// Exited with a non-zero code.
    Exit = 1,
    /// Killed by the watchdog (heartbeat stalled).
    Watchdog = 2,
    /// Counted by an earlier supervisor run (from the event log).
    EarlierRun = 3,
    /// The worker could not be started (its shared memory, or the spawn, failed).
    SpawnFailed = 4,
}

impl RestartReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 5] = [
        Self::Signal,
        Self::Exit,
        Self::Watchdog,
        Self::EarlierRun,
        Self::SpawnFailed,
    ];

    /// The metric label value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Exit => "exit",
            Self::Watchdog => "watchdog",
            Self::EarlierRun => "earlier_run",
            Self::SpawnFailed => "spawn_failed",
        }
    }
}

/// A worker's counters, as the metrics report them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Writes applied.
    pub applied: u64,
    /// Writes that returned an error.
    pub errors: u64,
    /// Apply latency, non-cumulative buckets (see `shm_protocol::metrics`).
    pub buckets: [u64; APPLY_BUCKET_COUNT],
    /// Sum of apply latencies, nanoseconds.
    pub sum_ns: u64,
    /// CPU time of the worker processes, nanoseconds.
    pub cpu_ns: u64,
    /// Keys removed because their deadline had come (replays included).
    pub expired: u64,
}

impl WorkerCounts {
    fn add(&mut self, generation: &Generation) {
        let m = &generation.segment.head().metrics;
        self.applied += m.applied.load(Ordering::Acquire);
        self.errors += m.errors.load(Ordering::Acquire);
        for (total, b) in self.buckets.iter_mut().zip(&m.apply_buckets) {
            *total += b.load(Ordering::Acquire);
        }
        self.sum_ns += m.apply_sum_ns.load(Ordering::Acquire);
        self.expired += m.expired_keys.load(Ordering::Acquire);
        // A dead worker is still a zombie here (reaped after its counts are folded).
        if let Some((cpu, _)) = process_usage(generation.pid) {
            self.cpu_ns += (cpu * 1e9) as u64;
        }
    }
}

/// CPU seconds and resident bytes of process `pid`, from `/proc`.
pub fn process_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15, rss field 24 (1-based, counting pid and comm).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as f64;
    Some(((ticks(14)? + ticks(15)?) / hz, ticks(24)? * page))
}

impl Shard {
    /// A shard not yet started.
    #[must_use]
    pub fn new(id: u32) -> Self {
        Self {
            id,
            state: AtomicU32::new(ShardState::Starting as u32),
            current: RwLock::new(None),
            restarts: AtomicU64::new(0),
            last_exit: Mutex::new(None),
            retired: Mutex::new(WorkerCounts::default()),
            restart_reasons: Default::default(),
            last_code: AtomicI64::new(-1),
            last_signal: AtomicI64::new(-1),
            pushed_seq: AtomicU64::new(0),
            backoff_ns: AtomicU64::new(0),
            stable_at_ns: AtomicU64::new(0),
            parks: AtomicU64::new(0),
        }
    }

    /// Current state.
    pub fn state(&self) -> ShardState {
        ShardState::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Changes state.
    pub fn set_state(&self, state: ShardState) {
        self.state.store(state as u32, Ordering::Release);
    }

    /// The newest generation (alive or not).
    pub fn current(&self) -> Option<Arc<Generation>> {
        self.current.read().map(|g| g.clone()).unwrap_or(None)
    }

    /// The shard's counters: every dead generation's plus the current one's. Monotonic:
    /// a generation is counted live until [`Shard::retire`] moves it, under the same lock.
    pub fn counts(&self) -> WorkerCounts {
        let retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = retired.clone();
        if let Some(g) = self.current() {
            if !g.folded.load(Ordering::Acquire) {
                counts.add(&g);
            }
        }
        counts
    }

    /// Folds a dead generation's counters into the retired totals (once).
    pub fn retire(&self, generation: &Generation) {
        let mut retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !generation.folded.swap(true, Ordering::AcqRel) {
            retired.add(generation);
        }
    }

    /// The sequence number of the last write handed to a worker of this shard.
    pub fn pushed_seq(&self) -> u64 {
        self.pushed_seq.load(Ordering::Relaxed)
    }

    /// Notes the last write handed to a worker.
    pub fn set_pushed_seq(&self, seq: u64) {
        self.pushed_seq.store(seq, Ordering::Relaxed);
    }

    /// How the last worker ended (`code 1`, `signal 9`), if one did.
    pub fn last_exit(&self) -> Option<String> {
        self.last_exit.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// Exit code and signal of the last worker (-1 where there is none).
    pub fn last_exit_numbers(&self) -> (i64, i64) {
        (
            self.last_code.load(Ordering::Relaxed),
            self.last_signal.load(Ordering::Relaxed),
        )
    }

    /// Counts a restart for `reason` (also in the total).
    pub fn count_restart(&self, reason: RestartReason) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.restart_reasons[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Restarts carried over from earlier runs (from the event log).
    pub fn resume_restarts(&self, n: u64) {
        self.restarts.fetch_add(n, Ordering::Relaxed);
        self.restart_reasons[RestartReason::EarlierRun as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Restarts by reason.
    pub fn restarts_by_reason(&self) -> impl Iterator<Item = (RestartReason, u64)> + '_ {
        RestartReason::ALL.iter().map(|r| {
            (
                *r,
                self.restart_reasons[*r as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Records how a worker ended.
    pub fn set_last_exit(&self, code: Option<i32>, signal: Option<i32>) {
        self.last_code
            .store(code.map_or(-1, i64::from), Ordering::Relaxed);
        self.last_signal
            .store(signal.map_or(-1, i64::from), Ordering::Relaxed);
        let text = match (code, signal) {
            (_, Some(s)) => format!("signal {s}"),
            (Some(c), None) => format!("code {c}"),
            (None, None) => "unknown".to_owned(),
        };
        if let Ok(mut g) = self.last_exit.lock() {
            *g = Some(text);
        }
    }

    /// Records why the last worker could not be started (shown as its last exit).
    pub fn set_failure(&self, reason: &str) {
        if let Ok(mut g) = self.last_exit.lock() {
            *g = Some(format!("not started: {reason}"));
        }
    }

    /// Notes the delay a restart (or the probe of a parked shard) was scheduled with.
    pub fn set_backoff(&self, delay: std::time::Duration) {
        self.backoff_ns
            .store(crate::base::nanos(delay), Ordering::Relaxed);
    }

    /// Notes when a worker just spawned will have run for the stable period.
    pub fn set_stable_at(&self, monotonic_ns: u64) {
        self.stable_at_ns.store(monotonic_ns, Ordering::Relaxed);
    }

    /// The restart backoff in effect at `now_ns` (monotonic): the latest restart's delay,
    /// until a worker has been ready for the stable period.
    pub fn backoff_ns(&self, now_ns: u64) -> u64 {
        let stable = self.state() == ShardState::Ready
            && now_ns >= self.stable_at_ns.load(Ordering::Relaxed);
        if stable {
            0
        } else {
            self.backoff_ns.load(Ordering::Relaxed)
        }
    }

    /// Parks the shard (counted before the state changes, so whoever sees it parked sees
    /// the count).
    pub fn park(&self) {
        self.parks.fetch_add(1, Ordering::AcqRel);
        self.set_state(ShardState::Parked);
    }

    /// Times the shard was parked in this run.
    pub fn parks(&self) -> u64 {
        self.parks.load(Ordering::Acquire)
    }

    /// Installs a new generation.
    pub fn set_current(&self, generation: Option<Arc<Generation>>) {
        if let Ok(mut g) = self.current.write() {
            *g = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const STATES: [ShardState; 7] = [
        ShardState::Starting,
        ShardState::Ready,
        ShardState::Restarting,
        ShardState::Parked,
        ShardState::Stopping,
        ShardState::Stopped,
        ShardState::Recovering,
    ];

    fn generation(shard: u32, number: u64, applied: u64) -> Arc<Generation> {
        let geometry = crate::wal::testing::small_geometry();
        let segment = Segment::create("corral-unit-shard", shard, number, geometry).unwrap();
        let m = &segment.head().metrics;
        m.applied.store(applied, Ordering::Relaxed);
        m.errors.store(1, Ordering::Relaxed);
        // No such process (above any pid_max): no CPU time to add.
        let (tx, _) = crossbeam_channel::unbounded();
        Arc::new(Generation::new(
            shard,
            number,
            Arc::new(segment),
            i32::MAX as u32,
            tx,
        ))
    }

    #[test]
    fn every_state_round_trips_through_its_stored_number() {
        let shard = Shard::new(0);
        assert_eq!(shard.state(), ShardState::Starting);
        for state in STATES {
            shard.set_state(state);
            assert_eq!(shard.state(), state);
        }
        let names: std::collections::HashSet<_> = STATES.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), STATES.len(), "names are distinct");
    }

    #[test]
    fn counts_stay_monotonic_when_a_generation_is_retired_and_replaced() {
        let shard = Shard::new(0);
        let first = generation(0, 1, 10);
        shard.set_current(Some(Arc::clone(&first)));
        assert_eq!((shard.counts().applied, shard.counts().errors), (10, 1));
        first.mark_dead();
        shard.retire(&first);
        // Retired but still current: counted once, not twice.
        assert_eq!(shard.counts().applied, 10);
        shard.retire(&first);
        assert_eq!(shard.counts().applied, 10, "retiring twice folds once");
        let second = generation(0, 2, 3);
        shard.set_current(Some(second));
        assert_eq!((shard.counts().applied, shard.counts().errors), (13, 2));
    }

    #[test]
    fn restarts_exits_and_backoff_as_operators_see_them() {
        let shard = Shard::new(1);
        shard.resume_restarts(4);
        shard.count_restart(RestartReason::Signal);
        shard.count_restart(RestartReason::Signal);
        shard.count_restart(RestartReason::Watchdog);
        assert_eq!(shard.restarts.load(Ordering::Relaxed), 7);
        let by: std::collections::HashMap<&str, u64> = shard
            .restarts_by_reason()
            .map(|(r, n)| (r.name(), n))
            .collect();
        assert_eq!(
            by.len(),
            RestartReason::ALL.len(),
            "every reason is reported"
        );
        assert_eq!(by[RestartReason::Signal.name()], 2);
        assert_eq!(by[RestartReason::Watchdog.name()], 1);
        assert_eq!(by[RestartReason::EarlierRun.name()], 4);
        assert_eq!(by.values().sum::<u64>(), 7);

        assert_eq!(shard.last_exit(), None);
        assert_eq!(shard.last_exit_numbers(), (-1, -1));
        shard.set_last_exit(None, Some(9));
        assert_eq!(shard.last_exit().as_deref(), Some("signal 9"));
        assert_eq!(shard.last_exit_numbers(), (-1, 9));
        shard.set_last_exit(Some(3), None);
        assert_eq!(shard.last_exit().as_deref(), Some("code 3"));
        shard.set_failure("spawn: no such file");
        assert_eq!(
            shard.last_exit().as_deref(),
            Some("not started: spawn: no such file")
        );

        // The backoff shows until the shard has been ready for the stable period.
        shard.set_backoff(Duration::from_millis(400));
        shard.set_stable_at(1_000);
        shard.set_state(ShardState::Restarting);
        assert_eq!(shard.backoff_ns(2_000), 400_000_000);
        shard.set_state(ShardState::Ready);
        assert_eq!(shard.backoff_ns(999), 400_000_000);
        assert_eq!(shard.backoff_ns(1_000), 0);

        assert_eq!(shard.parks(), 0);
        shard.park();
        assert_eq!((shard.parks(), shard.state()), (1, ShardState::Parked));
    }
}
