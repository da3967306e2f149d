//! The lifecycle thread: spawns workers (it is long-lived, so `PR_SET_PDEATHSIG` stays
//! armed), learns of each death from a blocking `waitid`, restarts with backoff, parks
//! crash-looping shards, and kills workers whose heartbeat stalls.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use shm_protocol::layout::{Geometry, CONTROL_STOP};
use shm_protocol::os::{keep_on_exec, monotonic_ns, Segment, SegmentError};
use shm_protocol::wake;
use slog::{error, info, warn, Logger};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};

use crate::base::ops::InFlight;
use crate::base::shard::{Generation, RestartReason, Shard, ShardState};
use crate::base::ticket::Failure;
use crate::pipeline::completions::read_completions;
use crate::pipeline::msg::LifecycleEvent;
use crate::pipeline::msg::SeqMsg;
use crate::supervision::policy::{Crash, Decision, History, Policy, RestartState};
use crate::telemetry::heartbeat::Heartbeat;
use crate::telemetry::metrics::Metrics;
use crate::wal::codec::{unix_ms, LifecycleRecord};

/// Everything the lifecycle thread needs.
pub struct Lifecycle {
    /// The shards.
    pub shards: Arc<Vec<Shard>>,
    /// Segment geometry of every shard.
    pub geometry: Geometry,
    /// Each shard's segment, created (its memory reserved) at start-up; kept across worker
    /// generations.
    pub segments: Vec<Arc<Segment>>,
    /// The supervisor's own executable, which workers are started from.
    pub exe: Executable,
    /// The segments' names (filled in by [`Lifecycle::run`]).
    pub segment_names: Vec<String>,
    /// Restart policy.
    pub policy: Policy,
    /// Log level handed to workers.
    pub worker_log_level: String,
    /// Log format handed to workers.
    pub worker_log_format: crate::telemetry::log::Format,
    /// `<data-dir>/checkpoints`: worker `k` keeps its checkpoints in `<this>/<k>`.
    pub checkpoint_root: PathBuf,
    /// Events in.
    pub events_rx: Receiver<LifecycleEvent>,
    /// Events out (cloned into waiter and completion threads).
    pub events_tx: Sender<LifecycleEvent>,
    /// The sequencer.
    pub sequencer: Sender<SeqMsg>,
    /// Set by a second signal: kill now.
    pub force: Arc<AtomicBool>,
    /// The workers' past, from the event log.
    pub history: History,
    /// This loop's sign of life (for `/health/live`).
    pub heartbeat: Arc<Heartbeat>,
    /// Metrics (recovery durations).
    pub metrics: Arc<Metrics>,
    /// Logger.
    pub log: Logger,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("exe", &self.exe.path)
            .finish_non_exhaustive()
    }
}

/// The supervisor's own executable, opened at start-up: workers are started from that open
/// file (`/proc/self/fd/<n>`), so they run the same version, and a binary replaced or removed
/// in place (an upgrade by `mv`) does not stop restarts.
#[derive(Debug)]
pub struct Executable {
    file: std::fs::File,
    /// Where it was found at start-up (for logs, and the workers' `argv[0]`).
    pub path: PathBuf,
}

impl Executable {
    /// The running executable.
    pub fn open() -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open("/proc/self/exe")?,
            path: std::env::current_exe()?,
        })
    }

    fn command(&self) -> Command {
        use std::os::fd::AsRawFd;
        let mut command = Command::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        command.arg0(&self.path);
        command
    }
}

/// How long a restart waits for the last readers of a dead generation to let go of its
/// segment before it uses a new one (readers hold it for microseconds).
const RESET_WAIT: Duration = Duration::from_millis(200);

/// One shard as the lifecycle thread keeps it: its worker process, its segment between
/// generations, and its restart record.
struct Supervised {
    child: Option<Child>,
    /// The shard's segment while no generation holds it (between a death and a spawn).
    segment: Option<Arc<Segment>>,
    /// The completion reader of the current generation; it returns the orphans.
    completions: Option<JoinHandle<Vec<InFlight>>>,
    generation: Option<Arc<Generation>>,
    next_generation: u64,
    spawned_at: Instant,
    restarts: RestartState,
    restart_at: Option<Instant>,
    watchdog_fired: bool,
}

/// How the workers ended at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every worker exited on request.
    Clean,
    /// Some had to be killed.
    Forced,
}

fn describe(status: &ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

fn jitter() -> f64 {
    // Good enough spread for restart jitter; not for anything secret.
    let ns = monotonic_ns() ^ u64::from(std::process::id()).rotate_left(32);
    let x = ns.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Lifecycle {
    /// Runs until a [`LifecycleEvent::Stop`] has been carried out.
    pub fn run(mut self) -> Ending {
        // Each shard's entry holds its segment alone (a reset needs it unshared).
        let segments = std::mem::take(&mut self.segments);
        self.segment_names = segments.iter().map(|s| s.name().to_owned()).collect();
        let mut supervised: Vec<Supervised> = segments
            .into_iter()
            .map(|segment| Supervised {
                child: None,
                segment: Some(segment),
                completions: None,
                generation: None,
                next_generation: 1,
                spawned_at: Instant::now(),
                restarts: RestartState::default(),
                restart_at: None,
                watchdog_fired: false,
            })
            .collect();
        for (id, sv) in supervised.iter_mut().enumerate() {
            self.resume_history(id as u32, sv);
            self.spawn(id as u32, sv);
        }
        let tick = (self.policy.watchdog_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            self.heartbeat.beat();
            let now = Instant::now();
            let next_restart = supervised.iter().filter_map(|s| s.restart_at).min();
            let wait = next_restart
                .map_or(tick, |t| t.saturating_duration_since(now))
                .min(tick);
            match self.events_rx.recv_timeout(wait) {
                Ok(LifecycleEvent::Exited { shard, generation }) => {
                    self.on_exit(shard, generation, &mut supervised[shard as usize], false);
                }
                Ok(LifecycleEvent::Ready { shard, generation }) => {
                    self.on_ready(shard, generation, &mut supervised[shard as usize]);
                }
                Ok(LifecycleEvent::Recovered {
                    shard,
                    generation,
                    records,
                    duration,
                }) => {
                    let sv = &mut supervised[shard as usize];
                    self.on_recovered(shard, generation, records, duration, sv);
                }
                Ok(LifecycleEvent::Stop { deadline }) => {
                    return self.stop(&mut supervised, deadline)
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return self.stop(&mut supervised, Instant::now());
                }
            }
            let now = Instant::now();
            for (id, sv) in supervised.iter_mut().enumerate() {
                if sv.restart_at.is_some_and(|t| t <= now) {
                    sv.restart_at = None;
                    self.spawn(id as u32, sv);
                }
                self.watchdog(sv);
            }
        }
    }

    /// Carries restart counts, recent crashes and a parked state over from the event log:
    /// a shard parked when the last supervisor stopped starts as a probe.
    fn resume_history(&self, id: u32, sv: &mut Supervised) {
        let past = self.history.worker(id);
        self.shards[id as usize].resume_restarts(past.restarts);
        sv.restarts = RestartState::resumed(&past, &self.policy, Instant::now(), unix_ms());
        if past.restarts > 0 || past.parked {
            info!(self.log, "worker history resumed from the event log"; "component" => "lifecycle",
                  "worker" => id, "restarts" => past.restarts,
                  "recent_crashes" => sv.restarts.recent_crashes(), "parked" => past.parked);
        }
    }

    /// The shard's segment made new for generation `number`: reset once no one holds the
    /// dead generation's any more, or (if someone still does after [`RESET_WAIT`]) a new
    /// one.
    fn segment_for(
        &self,
        id: u32,
        number: u64,
        sv: &mut Supervised,
    ) -> Result<Arc<Segment>, SegmentError> {
        // Let go of the dead generation here; the sequencer, its completion reader and any
        // replay let go of theirs when they learn of its death.
        sv.generation = None;
        self.shards[id as usize].set_current(None);
        if let Some(mut segment) = sv.segment.take() {
            let deadline = Instant::now() + RESET_WAIT;
            loop {
                if let Some(s) = Arc::get_mut(&mut segment) {
                    s.reset(id, number);
                    return Ok(segment);
                }
                if Instant::now() >= deadline {
                    warn!(self.log, "the dead generation's segment is still in use; creating a new one";
                          "component" => "lifecycle", "worker" => id, "generation" => number,
                          "holders" => Arc::strong_count(&segment) - 1);
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let name = self.segment_names[id as usize].clone();
        Segment::create(&name, id, number, self.geometry).map(Arc::new)
    }

    /// Starts generation `next_generation` of shard `id`: its segment made new, the worker
    /// process, a thread that waits for its exit and one that reads its completions. A
    /// failure at any step counts as a crash.
    fn spawn(&self, id: u32, sv: &mut Supervised) {
        let shard = &self.shards[id as usize];
        let number = sv.next_generation;
        sv.next_generation += 1;
        let segment = match self.segment_for(id, number, sv) {
            Ok(s) => s,
            Err(e) => {
                error!(self.log, "cannot create the worker's shared memory"; "component" => "lifecycle",
                       "worker" => id, "generation" => number, "error" => %e);
                self.spawn_failed(id, number, sv, &format!("shared memory: {e}"));
                return;
            }
        };
        let segment_name = segment.name().to_owned();
        let child = match self.worker_command(id, number, &segment).spawn() {
            Ok(c) => c,
            Err(e) => {
                error!(self.log, "cannot spawn worker"; "component" => "lifecycle",
                       "worker" => id, "generation" => number, "error" => %e,
                       "exe" => %self.exe.path.display(), "version" => env!("CARGO_PKG_VERSION"));
                sv.segment = Some(segment);
                self.spawn_failed(id, number, sv, &format!("spawn: {e}"));
                return;
            }
        };
        let pid = child.id();
        let (inflight_tx, inflight_rx) = crossbeam_channel::unbounded();
        let generation = Arc::new(Generation::new(id, number, segment, pid, inflight_tx));
        self.watch_exit(id, number, pid);
        sv.completions = self.read_completions(&generation, inflight_rx);
        sv.child = Some(child);
        sv.generation = Some(Arc::clone(&generation));
        sv.spawned_at = Instant::now();
        sv.watchdog_fired = false;
        shard.set_current(Some(generation));
        shard.set_stable_at(
            monotonic_ns().saturating_add(crate::base::nanos(self.policy.stable_period)),
        );
        self.record(LifecycleRecord::WorkerSpawned {
            worker: id,
            generation: number,
            pid,
            unix_ms: unix_ms(),
        });
        info!(self.log, "worker spawned"; "component" => "lifecycle", "worker" => id,
              "generation" => number, "pid" => pid, "segment" => &segment_name);
    }

    /// `corral worker` for generation `number` of shard `id`, in its own process group (a
    /// signal to the supervisor's group spares the workers, which the supervisor stops in
    /// order), with the segment as its only inherited descriptor beyond stdio.
    fn worker_command(&self, id: u32, number: u64, segment: &Segment) -> Command {
        let mut command = self.exe.command();
        command
            .arg("worker")
            .arg("--segment-fd")
            .arg(segment.fd().as_raw_fd().to_string())
            .arg("--worker-id")
            .arg(id.to_string())
            .arg("--generation")
            .arg(number.to_string())
            .arg("--supervisor-pid")
            .arg(std::process::id().to_string())
            .arg("--log-level")
            .arg(&self.worker_log_level)
            .arg("--log-format")
            .arg(self.worker_log_format.as_str())
            .arg("--checkpoint-dir")
            .arg(self.checkpoint_root.join(id.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        keep_on_exec(&mut command, segment.fd());
        command
    }

    /// A thread that reports the exit of `pid` (generation `number` of shard `id`).
    fn watch_exit(&self, id: u32, number: u64, pid: u32) {
        let events = self.events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("wait-w{id}"))
            .spawn(move || {
                // WNOWAIT: leave the zombie for the lifecycle thread to reap, so the pid
                // cannot be reused while a kill() may still target it.
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                while let Err(nix::errno::Errno::EINTR) =
                    waitid(Id::Pid(Pid::from_raw(pid as i32)), flags)
                {}
                let _ = events.send(LifecycleEvent::Exited {
                    shard: id,
                    generation: number,
                });
            });
        if let Err(e) = spawned {
            error!(self.log, "cannot start waiter thread"; "component" => "lifecycle", "error" => %e);
        }
    }

    /// The generation's completion reader, on its own thread.
    fn read_completions(
        &self,
        generation: &Arc<Generation>,
        inflight: Receiver<InFlight>,
    ) -> Option<JoinHandle<Vec<InFlight>>> {
        let generation = Arc::clone(generation);
        let events = self.events_tx.clone();
        let log = self.log.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("completions-w{}", generation.shard))
            .spawn(move || read_completions(&generation, &inflight, &events, &log));
        spawned
            .map_err(|e| {
                error!(self.log, "cannot start completion thread"; "component" => "lifecycle", "error" => %e);
            })
            .ok()
    }

    /// Puts a lifecycle event into the event log (through the sequencer, its writer).
    fn record(&self, record: LifecycleRecord) {
        let _ = self.sequencer.send(SeqMsg::Lifecycle(record));
    }

    /// The worker is up (its checkpoint loaded): the sequencer replays the log into it.
    fn on_ready(&self, id: u32, number: u64, sv: &mut Supervised) {
        let Some(generation) = sv.generation.as_ref().filter(|g| g.number == number) else {
            return;
        };
        if generation.is_dead() {
            return;
        }
        let shard = &self.shards[id as usize];
        if matches!(shard.state(), ShardState::Stopping | ShardState::Stopped) {
            return;
        }
        shard.set_state(ShardState::Recovering);
        let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
        let applied = generation
            .segment
            .head()
            .status
            .applied_seq
            .load(Ordering::Acquire);
        info!(self.log, "worker up; replaying the event log"; "component" => "lifecycle",
              "worker" => id, "generation" => number, "pid" => generation.pid,
              "checkpoint_seq" => applied,
              "startup_ms" => sv.spawned_at.elapsed().as_secs_f64() * 1000.0);
    }

    /// The replay is applied: the shard serves reads and writes again.
    fn on_recovered(
        &self,
        id: u32,
        number: u64,
        records: u64,
        took: Duration,
        sv: &mut Supervised,
    ) {
        let Some(generation) = sv.generation.as_ref().filter(|g| g.number == number) else {
            return;
        };
        let shard = &self.shards[id as usize];
        if generation.is_dead() || shard.state() != ShardState::Recovering {
            return;
        }
        shard.set_state(ShardState::Ready);
        let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
        let mode = if number == 1 { "startup" } else { "restart" };
        self.metrics
            .recovery_seconds
            .with_label_values(&[mode])
            .observe(sv.spawned_at.elapsed().as_secs_f64());
        // A probe that recovers ends the parked state; the crash window still counts.
        let probe = sv.restarts.recovered();
        self.record(LifecycleRecord::ShardRecovered {
            worker: id,
            generation: number,
            replayed: records,
            unix_ms: unix_ms(),
        });
        info!(self.log, "worker ready"; "component" => "lifecycle", "worker" => id,
              "generation" => number, "pid" => generation.pid,
              "startup_ms" => sv.spawned_at.elapsed().as_secs_f64() * 1000.0,
              "replayed" => records, "replay_ms" => took.as_secs_f64() * 1000.0,
              "probe" => probe);
        if self.shards.iter().all(|s| s.state() == ShardState::Ready) {
            info!(self.log, "all shards ready"; "component" => "lifecycle", "workers" => self.shards.len());
        }
    }

    /// Waits for a dead generation's completion reader and passes on the writes its worker
    /// never completed: to the sequencer, which replays them into the next generation, or
    /// failed when stopping.
    fn hand_back_orphans(&self, id: u32, sv: &mut Supervised, stopping: bool) {
        // The sequencer lets go of the dead generation on this message; then the reader
        // ends.
        let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
        let orphans = sv
            .completions
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if orphans.is_empty() {
            return;
        }
        if stopping {
            // Logged: the next start applies them.
            for o in orphans {
                o.pending.complete(Err(Failure::Interrupted));
            }
        } else {
            let _ = self.sequencer.send(SeqMsg::Orphans { shard: id, orphans });
        }
    }

    /// Handles a worker's exit. Returns the exit status.
    fn on_exit(&self, id: u32, number: u64, sv: &mut Supervised, stopping: bool) {
        let Some(generation) = sv.generation.as_ref().filter(|g| g.number == number) else {
            return;
        };
        let generation = Arc::clone(generation);
        generation.mark_dead();
        let shard = &self.shards[id as usize];
        shard.retire(&generation);
        let stopping =
            stopping || matches!(shard.state(), ShardState::Stopping | ShardState::Stopped);
        self.hand_back_orphans(id, sv, stopping);
        let status = sv.child.take().and_then(|mut c| c.wait().ok());
        let (code, signal) = status.as_ref().map_or((None, None), describe);
        shard.set_last_exit(code, signal);
        let uptime = sv.spawned_at.elapsed();
        sv.segment = Some(Arc::clone(&generation.segment));
        self.record(LifecycleRecord::WorkerExited {
            worker: id,
            generation: number,
            pid: generation.pid,
            code,
            signal,
            unix_ms: unix_ms(),
        });
        if stopping {
            shard.set_state(ShardState::Stopped);
            let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
            info!(self.log, "worker exited"; "component" => "lifecycle", "worker" => id,
                  "generation" => number, "pid" => generation.pid, "code" => code, "signal" => signal,
                  "expected" => true);
            return;
        }
        warn!(self.log, "worker exited"; "component" => "lifecycle", "worker" => id,
              "generation" => number, "pid" => generation.pid, "code" => code, "signal" => signal,
              "uptime_ms" => uptime.as_millis() as u64, "expected" => false);
        shard.count_restart(if sv.watchdog_fired {
            RestartReason::Watchdog
        } else if signal.is_some() {
            RestartReason::Signal
        } else {
            RestartReason::Exit
        });
        self.crashed(id, sv, Crash::Exited { uptime }, "worker exited");
    }

    /// A worker that could not be started counts as a crash.
    fn spawn_failed(&self, id: u32, number: u64, sv: &mut Supervised, reason: &str) {
        let shard = &self.shards[id as usize];
        shard.count_restart(RestartReason::SpawnFailed);
        shard.set_failure(reason);
        self.record(LifecycleRecord::SpawnFailed {
            worker: id,
            generation: number,
            reason: reason.to_owned(),
            unix_ms: unix_ms(),
        });
        self.crashed(id, sv, Crash::SpawnFailed, reason);
    }

    /// Carries out the policy's decision on a crash of worker `id`: parking (its writes
    /// refused, a probe restart later) or a restart after the backoff.
    fn crashed(&self, id: u32, sv: &mut Supervised, crash: Crash, reason: &str) {
        let shard = &self.shards[id as usize];
        let now = Instant::now();
        match sv.restarts.crashed(&self.policy, crash, now, jitter()) {
            Decision::Park { probe_in, crashes } => {
                shard.park();
                let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
                sv.restart_at = Some(now + probe_in);
                shard.set_backoff(probe_in);
                self.record(LifecycleRecord::ShardParked {
                    worker: id,
                    unix_ms: unix_ms(),
                });
                error!(self.log, "shard parked"; "component" => "lifecycle", "worker" => id,
                       "crashes" => crashes, "window_s" => self.policy.window.as_secs_f64(),
                       "probe_in_s" => probe_in.as_secs_f64(), "reason" => reason);
            }
            Decision::Restart { delay, consecutive } => {
                shard.set_state(ShardState::Restarting);
                let _ = self.sequencer.send(SeqMsg::ShardChanged(id));
                sv.restart_at = Some(now + delay);
                shard.set_backoff(delay);
                self.record(LifecycleRecord::RestartScheduled {
                    worker: id,
                    backoff_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    unix_ms: unix_ms(),
                });
                info!(self.log, "restart scheduled"; "component" => "lifecycle", "worker" => id,
                      "reason" => reason, "backoff_ms" => delay.as_secs_f64() * 1000.0,
                      "consecutive" => consecutive);
            }
        }
    }

    fn watchdog(&self, sv: &mut Supervised) {
        let Some(generation) = sv.generation.as_ref() else {
            return;
        };
        if generation.is_dead() || sv.watchdog_fired {
            return;
        }
        let beat = generation
            .segment
            .head()
            .status
            .heartbeat_ns
            .load(Ordering::Acquire);
        let age = if beat == 0 {
            sv.spawned_at.elapsed()
        } else {
            Duration::from_nanos(monotonic_ns().saturating_sub(beat))
        };
        if age > self.policy.watchdog_timeout {
            sv.watchdog_fired = true;
            error!(self.log, "watchdog: heartbeat stalled, killing worker"; "component" => "lifecycle",
                   "worker" => generation.shard, "generation" => generation.number,
                   "pid" => generation.pid, "heartbeat_age_ms" => age.as_millis() as u64);
            let _ = kill(Pid::from_raw(generation.pid as i32), Signal::SIGKILL);
        }
    }

    fn stop(&self, supervised: &mut [Supervised], deadline: Instant) -> Ending {
        info!(self.log, "stopping workers"; "component" => "lifecycle");
        for (id, sv) in supervised.iter_mut().enumerate() {
            sv.restart_at = None;
            self.shards[id].set_state(ShardState::Stopping);
            if let Some(g) = sv.generation.as_ref().filter(|g| !g.is_dead()) {
                let head = g.segment.head();
                head.supervisor
                    .control
                    .store(CONTROL_STOP, Ordering::Release);
                wake::ring(&head.supervisor.request_doorbell);
            }
        }
        let mut ending = Ending::Clean;
        let mut killed = false;
        loop {
            let alive = supervised.iter().filter(|s| s.child.is_some()).count();
            if alive == 0 {
                return ending;
            }
            let now = Instant::now();
            if !killed && (now >= deadline || self.force.load(Ordering::Acquire)) {
                killed = true;
                ending = Ending::Forced;
                warn!(self.log, "shutdown timeout: killing remaining workers"; "component" => "lifecycle",
                      "remaining" => alive);
                for sv in supervised.iter() {
                    if let Some(child) = sv.child.as_ref() {
                        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    }
                }
            }
            let wait = if killed {
                Duration::from_secs(5)
            } else {
                deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100))
            };
            match self.events_rx.recv_timeout(wait) {
                Ok(LifecycleEvent::Exited { shard, generation }) => {
                    self.on_exit(shard, generation, &mut supervised[shard as usize], true);
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {
                    if killed && wait == Duration::from_secs(5) {
                        // Children that never report after SIGKILL: reap directly.
                        for sv in supervised.iter_mut() {
                            if let Some(mut c) = sv.child.take() {
                                let _ = c.wait();
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ending::Forced,
            }
        }
    }
}
