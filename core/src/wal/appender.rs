//! The sequencer's side of the event log: encodes writes and lifecycle events into
//! records, writes them in groups, runs the sync thread (`--fsync always`: a sync per
//! group, pipelined with the writing of the next; `everysec`: once a second), and turns I/O
//! errors into a failed state that refuses writes (never retried-and-ignored): until a
//! later write succeeds after a failed write, until restart after a failed sync.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slog::{error, info, warn, Logger};

use crate::base::ops::OwnedOp;
use crate::base::ticket::Failure;
use crate::telemetry::metrics::WalMetrics;
use crate::wal::codec::{self, LifecycleRecord};
use crate::wal::{self, FsyncPolicy, Kind, WalError, Writer, WriterOptions};

/// How far the event log is durable, for acknowledging writes: under `--fsync always` a
/// write is acknowledged only once `synced` covers its sequence number. Shared by the sync
/// thread (which advances it and calls the listeners) and whoever acknowledges.
pub struct Durability {
    /// Whether acknowledgements wait for the sync (`--fsync always`).
    required: bool,
    synced: AtomicU64,
    /// The OS error of a failed sync (0: none); nothing after `synced` is then acknowledged.
    failed_errno: AtomicI32,
    /// The OS error of the last write when it failed (0: writing works).
    write_errno: AtomicI32,
    /// How long the last sync took, in nanoseconds.
    last_sync_ns: AtomicU64,
    /// Why the log stopped taking writes for good (a failed sync, the data dir gone).
    stopped: Mutex<Option<String>>,
    listeners: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Whether a write with a given sequence number may be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledge {
    /// It is durable (or need not be).
    Yes,
    /// Not yet: its sync is still to come.
    NotYet,
    /// Never: the sync failed (OS error number); the write may not survive a crash.
    Failed(i32),
}

impl Durability {
    /// Durability under `policy`; nothing is synced yet beyond `synced`.
    #[must_use]
    pub fn new(policy: FsyncPolicy) -> Arc<Self> {
        Arc::new(Self {
            required: policy == FsyncPolicy::Always,
            synced: AtomicU64::new(0),
            failed_errno: AtomicI32::new(0),
            write_errno: AtomicI32::new(0),
            last_sync_ns: AtomicU64::new(0),
            stopped: Mutex::new(None),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// Calls `listener` whenever the durable point advances or a sync fails.
    pub fn listen(&self, listener: impl Fn() + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(listener));
    }

    /// Whether the write with sequence number `seq` may be acknowledged.
    #[must_use]
    pub fn acknowledge(&self, seq: u64) -> Acknowledge {
        // SYNC POINT: pairs with the release stores in `advance` and `fail`.
        if !self.required || seq <= self.synced.load(Ordering::Acquire) {
            return Acknowledge::Yes;
        }
        match self.failed_errno.load(Ordering::Acquire) {
            0 => Acknowledge::NotYet,
            errno => Acknowledge::Failed(errno),
        }
    }

    /// How long the last sync of the event log took.
    #[must_use]
    pub fn last_sync(&self) -> Duration {
        Duration::from_nanos(self.last_sync_ns.load(Ordering::Relaxed))
    }

    /// The last sequence number known durable.
    #[must_use]
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Why the event log cannot take writes now, if it cannot.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        let describe = |errno: i32| {
            if errno > 0 {
                std::io::Error::from_raw_os_error(errno).to_string()
            } else {
                "see the supervisor log".to_owned()
            }
        };
        if let Some(reason) = self.stop_reason() {
            return Some(format!("{reason}; restart required"));
        }
        match self.write_errno.load(Ordering::Acquire) {
            0 => None,
            w => Some(format!(
                "writes fail ({}); retried with every write",
                describe(w)
            )),
        }
    }

    /// Why the log stopped taking writes until a restart, if it did.
    #[must_use]
    pub fn stop_reason(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn advance(&self, seq: u64) {
        self.synced.fetch_max(seq, Ordering::AcqRel);
        self.notify();
    }

    /// Stops the log for good: nothing after `synced` is acknowledged (`errno` says why to
    /// the acknowledging side), and no write is taken until a restart.
    fn stop(&self, errno: i32, reason: String) {
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
            stopped.get_or_insert(reason);
        }
        self.failed_errno
            .store(if errno == 0 { -1 } else { errno }, Ordering::Release);
        self.notify();
    }

    fn notify(&self) {
        for l in self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            l();
        }
    }
}

/// The sync thread: under `--fsync always` it syncs whenever records are written and
/// reports each durable point, so the sequencer keeps writing the next group while the
/// previous one syncs; under `--fsync everysec` it syncs once a second.
struct Syncer {
    shared: Arc<SyncShared>,
    policy: FsyncPolicy,
    thread: Option<JoinHandle<()>>,
}

/// How often `--fsync everysec` syncs.
const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

struct SyncShared {
    state: Mutex<SyncState>,
    wake: Condvar,
}

/// Where the log lives, as found at start-up: the data dir and the log directory by device
/// and inode, so that either deleted or replaced under the running supervisor, or the open
/// segment removed from its path, is noticed instead of acknowledging writes into files
/// nobody will read again.
#[derive(Clone, Debug)]
pub struct Place {
    data_dir: PathBuf,
    data_id: (u64, u64),
    wal_dir: PathBuf,
    wal_id: (u64, u64),
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Place {
    /// The place of the log in `wal_dir` (inside the data dir).
    pub fn new(wal_dir: &Path) -> std::io::Result<Self> {
        let data_dir = wal_dir.parent().unwrap_or(wal_dir).to_owned();
        Ok(Self {
            data_id: file_id(&std::fs::metadata(&data_dir)?),
            wal_id: file_id(&std::fs::metadata(wal_dir)?),
            data_dir,
            wal_dir: wal_dir.to_owned(),
        })
    }

    /// Whether the directories are still the ones found at start-up and `file` is still
    /// the segment at `segment`; otherwise what changed.
    pub fn check(&self, segment: &Path, file: &File) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let same = |path: &Path, id: (u64, u64), what: &str| match std::fs::metadata(path) {
            Ok(m) if file_id(&m) == id => Ok(()),
            Ok(_) => Err(format!("the {what} {} was replaced", path.display())),
            Err(e) => Err(format!("the {what} {} is gone ({e})", path.display())),
        };
        same(&self.data_dir, self.data_id, "data dir")?;
        same(&self.wal_dir, self.wal_id, "event log directory")?;
        let open = file
            .metadata()
            .map_err(|e| format!("cannot stat the open segment: {e}"))?;
        if open.nlink() == 0 {
            return Err(format!(
                "the open event log segment {} was deleted",
                segment.display()
            ));
        }
        same(segment, file_id(&open), "open event log segment")
    }
}

#[derive(Default)]
struct SyncState {
    /// The current segment and its path. Earlier segments were synced when they were
    /// finished, so a sync of this one makes everything written durable.
    file: Option<(File, PathBuf)>,
    /// The last sequence number written.
    written: u64,
    /// The last sequence number known durable.
    synced: u64,
    /// Set when a sync failed: nothing after `synced` may be trusted to reach the disk.
    failed_errno: i32,
    stop: bool,
    /// Syncs done, the records they made durable, and their time in nanoseconds.
    syncs: u64,
    synced_records: u64,
    sync_ns: u64,
}

impl Syncer {
    #[allow(clippy::too_many_arguments)] // one call, at start-up
    fn start(
        file: (File, PathBuf),
        written: u64,
        policy: FsyncPolicy,
        place: Place,
        durability: Arc<Durability>,
        metrics: WalMetrics,
        log: Logger,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(SyncShared {
            state: Mutex::new(SyncState {
                file: Some(file),
                written,
                synced: written,
                ..SyncState::default()
            }),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wal-sync".into())
                .spawn(move || Self::run(&shared, policy, &place, &durability, &metrics, &log))?
        };
        Ok(Self {
            shared,
            policy,
            thread: Some(thread),
        })
    }

    fn run(
        shared: &SyncShared,
        policy: FsyncPolicy,
        place: &Place,
        durability: &Durability,
        metrics: &WalMetrics,
        log: &Logger,
    ) {
        let mut state = shared.lock();
        let mut last_sync = Instant::now();
        loop {
            if policy == FsyncPolicy::Always {
                while !state.stop && (state.written <= state.synced || state.failed_errno != 0) {
                    state = shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            } else {
                // Once a second, whatever is written meanwhile (writers do not wake this
                // thread under everysec; only a stop does).
                let due = last_sync + EVERYSEC_INTERVAL;
                while !state.stop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    state = shared
                        .wake
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                last_sync = Instant::now();
            }
            if state.stop {
                return;
            }
            if state.written <= state.synced || state.failed_errno != 0 {
                continue;
            }
            let target = state.written;
            let file = state
                .file
                .as_ref()
                .and_then(|(f, p)| Some((f.try_clone().ok()?, p.clone())));
            drop(state);
            let started = Instant::now();
            let result = file.as_ref().map_or(Ok(()), |(f, _)| f.sync_data());
            // Synced into a file still in place, or acknowledged nowhere.
            let placed = file.as_ref().map_or(Ok(()), |(f, p)| place.check(p, f));
            let took = started.elapsed();
            metrics.sync_seconds.observe(took.as_secs_f64());
            durability
                .last_sync_ns
                .store(crate::base::nanos(took), Ordering::Relaxed);
            state = shared.lock();
            match (result, placed) {
                (Ok(()), Ok(())) => {
                    state.syncs += 1;
                    state.synced_records += target.saturating_sub(state.synced);
                    state.sync_ns += crate::base::nanos(took);
                    state.synced = state.synced.max(target);
                    durability.advance(target);
                }
                (Ok(()), Err(reason)) => {
                    error!(log, "event log moved away under the supervisor; refusing writes until restart";
                           "component" => "wal", "reason" => &reason);
                    metrics.errors.inc();
                    state.failed_errno = nix::libc::ENOENT;
                    durability.stop(nix::libc::ENOENT, reason);
                }
                (Err(e), _) => {
                    error!(log, "event log sync failed; refusing writes until restart"; "component" => "wal",
                           "error" => %e);
                    let errno = e.raw_os_error().unwrap_or(-1);
                    metrics.errors.inc();
                    state.failed_errno = errno;
                    durability.stop(errno, format!("a sync failed ({e})"));
                }
            }
        }
    }
}

impl SyncShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Group commit figures: how many records each commit carried and how long it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Successful commits.
    pub commits: u64,
    /// Records they carried.
    pub records: u64,
    /// The largest group.
    pub max_records: u64,
    /// Commits by group size: `buckets[i]` counts groups of at most `2^i` records (the last
    /// bucket takes the rest).
    pub buckets: [u64; GROUP_BUCKETS],
    /// Time spent writing and syncing, in nanoseconds.
    pub commit_ns: u64,
}

/// Buckets of [`GroupStats::buckets`]: 1, 2, 4, ... 4096, more.
pub const GROUP_BUCKETS: usize = 14;

impl GroupStats {
    fn observe(&mut self, records: u64, took: Duration) {
        self.commits += 1;
        self.records += records;
        self.max_records = self.max_records.max(records);
        let bucket = (records.max(1) - 1)
            .checked_ilog2()
            .map_or(0, |b| b as usize + 1);
        self.buckets[bucket.min(GROUP_BUCKETS - 1)] += 1;
        self.commit_ns += crate::base::nanos(took);
    }

    /// The group size below which `q` of the groups fall (bucket upper bound).
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        let target = (self.commits as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return 1 << i;
            }
        }
        self.max_records
    }
}

fn create_dir(dir: &Path) -> Result<(), WalError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| WalError::Io {
            what: format!("cannot create {}", dir.display()),
            error,
        })
}

/// Reads the whole log (collecting its lifecycle records) and checks its end against the
/// manifest. Under `--accept-data-loss`, damage is cut away and the scan starts over (at
/// most [`CUTS_MAX`] times), and a missing end is accepted; each loss goes into `losses`.
fn scan_log(
    options: &OpenOptions,
    log: &Logger,
    losses: &mut Vec<String>,
) -> Result<(wal::ScanSummary, Vec<LifecycleRecord>), WalError> {
    let dir = options.dir.as_path();
    loop {
        let mut history = Vec::new();
        let scanned = wal::scan(dir, .., |r| {
            if r.kind == Kind::Lifecycle {
                let record = codec::decode_lifecycle(r.version, r.payload).map_err(|e| {
                    WalError::Undecodable {
                        seq: r.seq,
                        reason: e.to_string(),
                    }
                })?;
                history.push(record);
            }
            Ok(())
        });
        let checked = scanned.and_then(|summary| {
            match wal::check_head(&summary, options.recorded) {
                Ok(_) => Ok(summary),
                Err(WalError::Incomplete { reason }) if options.accept_data_loss => {
                    // The log goes on from what is there; the writer records its newest
                    // segment anew.
                    if !losses.contains(&reason) {
                        error!(log, "event log incomplete; going on without the missing part (--accept-data-loss)";
                               "component" => "wal", "missing" => &reason);
                        losses.push(reason);
                    }
                    Ok(summary)
                }
                Err(e) => Err(e),
            }
        });
        match checked {
            Ok(summary) => return Ok((summary, history)),
            Err(e @ (WalError::Corrupt { .. } | WalError::Gap { .. }))
                if options.accept_data_loss && losses.len() < CUTS_MAX =>
            {
                let aside = wal::cut_damage(dir, &e)?;
                error!(log, "event log damage cut away (--accept-data-loss)"; "component" => "wal",
                       "damage" => %e, "set_aside" => ?aside);
                losses.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The log must reach every checkpoint (a checkpoint covers only what was durable): a log
/// that ends below one is refused, or under `--accept-data-loss` a loss. Returns the
/// highest sequence number a checkpoint covers.
fn reach_checkpoints(
    options: &OpenOptions,
    summary: &wal::ScanSummary,
    log: &Logger,
    losses: &mut Vec<String>,
) -> Result<u64, WalError> {
    let covered = options.checkpoints.iter().copied().max().unwrap_or(0);
    if covered <= summary.last_seq() {
        return Ok(covered);
    }
    let (shard, _) = options
        .checkpoints
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| **s)
        .unwrap_or((0, &0));
    let reason = format!(
        "the event log ends at sequence {} but shard {shard}'s checkpoint covers \
         sequence {covered}: records {}..={covered} are missing (newest segments lost?)",
        summary.last_seq(),
        summary.next_seq
    );
    if !options.accept_data_loss {
        return Err(WalError::Incomplete { reason });
    }
    error!(log, "event log ends below a checkpoint; going on from the checkpoints (--accept-data-loss)";
           "component" => "wal", "missing" => &reason);
    losses.push(reason);
    Ok(covered)
}

/// After an accepted loss, gives up (with a durable skip record) every sequence number a
/// lost record or a checkpoint may hold, so none is given out again.
fn skip_lost(
    writer: &mut Writer,
    options: &OpenOptions,
    summary: &wal::ScanSummary,
    covered: u64,
    losses: &[String],
    log: &Logger,
) -> Result<(), WalError> {
    let bound = options
        .recorded
        .map_or(0, |r| r.seq_bound())
        .max(covered + 1)
        .max(summary.next_seq);
    if bound <= summary.next_seq {
        return Ok(());
    }
    let reason = format!("data loss accepted: {}", losses.join("; "));
    writer.append_skip(bound - 1, &reason, summary.last_seq());
    writer.commit().map_err(|e| e.error)?;
    writer.sync().map_err(|error| WalError::Io {
        what: "cannot sync the event log".into(),
        error,
    })?;
    error!(log, "sequence numbers given up after the accepted loss"; "component" => "wal",
           "from_seq" => summary.next_seq, "through_seq" => bound - 1);
    Ok(())
}

/// The sync thread, on the writer's current segment.
fn start_syncer(
    writer: &Writer,
    fsync: FsyncPolicy,
    place: &Place,
    durability: &Arc<Durability>,
    metrics: &WalMetrics,
    log: &Logger,
) -> Result<Syncer, WalError> {
    let file = writer.sync_handle().map_err(|error| WalError::Io {
        what: "cannot share the event log segment with the sync thread".into(),
        error,
    })?;
    Syncer::start(
        (file, writer.current_file().0.to_owned()),
        writer.next_seq() - 1,
        fsync,
        place.clone(),
        Arc::clone(durability),
        metrics.clone(),
        log.clone(),
    )
    .map_err(|error| WalError::Io {
        what: "cannot start the event log sync thread".into(),
        error,
    })
}

/// The event log's append side, as the sequencer uses it.
#[derive(Debug)]
pub struct Appender {
    writer: Writer,
    place: Place,
    durability: Arc<Durability>,
    metrics: WalMetrics,
    syncer: Option<Syncer>,
    segments_seen: usize,
    /// Whether the last commit failed (logged once per failing stretch).
    failing: bool,
    stats: GroupStats,
    log: Logger,
}

fn errno_of(e: &WalError) -> i32 {
    match e {
        WalError::Io { error, .. } => error.raw_os_error().unwrap_or(-1),
        _ => -1,
    }
}

/// How the event log is opened at start-up.
#[derive(Debug)]
pub struct OpenOptions {
    /// `<data-dir>/wal`.
    pub dir: std::path::PathBuf,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Capacity of new segments.
    pub segment_bytes: u64,
    /// The newest segment the data dir's manifest recorded.
    pub recorded: Option<wal::Newest>,
    /// The newest sequence number each shard's newest kept checkpoint covers (0: none).
    pub checkpoints: Vec<u64>,
    /// The operator accepts losing damaged or missing parts of the log
    /// (`--accept-data-loss`): damage is set aside instead of refused, and the log goes on
    /// past every sequence number that may have been given out.
    pub accept_data_loss: bool,
}

/// Most pieces of damage set aside in one start-up before giving up.
const CUTS_MAX: usize = 64;

impl Appender {
    /// Scans the log (creating the directory), checks it against the manifest's newest
    /// segment and the checkpoints, cuts a torn tail, and opens it for appending. Damage and
    /// missing parts stop here (the error names file, offset and sequence, or what is
    /// missing), unless [`OpenOptions::accept_data_loss`].
    ///
    /// `lifecycle` sees every lifecycle record of the log, oldest first (the supervisor
    /// rebuilds its history from them); `record_head` records new newest segments in the
    /// manifest.
    ///
    /// The sync thread advances `durability` (see [`Durability::acknowledge`]).
    pub fn open(
        options: &OpenOptions,
        record_head: wal::HeadRecorder,
        log: Logger,
        mut lifecycle: impl FnMut(LifecycleRecord),
        durability: Arc<Durability>,
        metrics: WalMetrics,
    ) -> Result<Self, WalError> {
        let dir = options.dir.as_path();
        create_dir(dir)?;
        // What the operator's --accept-data-loss let go of.
        let mut losses: Vec<String> = Vec::new();
        let (summary, history) = scan_log(options, &log, &mut losses)?;
        if let Some((file, torn)) = summary.torn() {
            warn!(log, "event log ended in a torn write; cut it off"; "component" => "wal",
                  "file" => %file.display(), "offset" => torn.offset, "bytes" => torn.dirty_end - torn.offset,
                  "reason" => &torn.reason, "next_seq" => summary.next_seq);
        }
        let covered = reach_checkpoints(options, &summary, &log, &mut losses)?;
        let mut writer = Writer::open(
            dir,
            &summary,
            WriterOptions {
                segment_bytes: options.segment_bytes,
                sync_on_commit: false,
            },
            record_head,
        )?;
        if !losses.is_empty() {
            skip_lost(&mut writer, options, &summary, covered, &losses, &log)?;
        }
        for record in history {
            lifecycle(record);
        }
        info!(log, "event log open"; "component" => "wal", "segments" => summary.segments.len().max(1),
              "next_seq" => writer.next_seq(), "fsync" => ?options.fsync);
        let place = Place::new(dir).map_err(|error| WalError::Io {
            what: format!("cannot stat {}", dir.display()),
            error,
        })?;
        let syncer = if options.fsync == FsyncPolicy::No {
            None
        } else {
            Some(start_syncer(
                &writer,
                options.fsync,
                &place,
                &durability,
                &metrics,
                &log,
            )?)
        };
        durability.advance(writer.next_seq() - 1);
        Ok(Self {
            segments_seen: writer.segments_created(),
            place,
            writer,
            durability,
            metrics,
            syncer,
            failing: false,
            stats: GroupStats::default(),
            log,
        })
    }

    /// The sequence number the next record gets.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// Stages a client write of `ops` (each with its shard: one, or a transaction's),
    /// sequenced at `now_ms` (Unix ms), as one record; returns its sequence number.
    pub fn append_write(&mut self, now_ms: u64, ops: &[(u32, &OwnedOp)]) -> u64 {
        let durable = self.durability.synced();
        self.writer.append(Kind::Write, durable, |buf| {
            codec::encode_write(now_ms, ops, buf)
        })
    }

    /// Stages a lifecycle event.
    pub fn append_lifecycle(&mut self, record: &LifecycleRecord) -> u64 {
        let durable = self.durability.synced();
        self.writer.append(Kind::Lifecycle, durable, |buf| {
            codec::encode_lifecycle(record, buf)
        })
    }

    /// Writes what is staged, as one group. On failure nothing staged is in the log (the
    /// writes are refused), unless its bytes could not be removed again
    /// ([`Failure::LogBroken`]). Under `--fsync always` the records are durable once the
    /// sync thread advances [`Durability`].
    pub fn commit(&mut self) -> Result<(), Failure> {
        if self.writer.staged_bytes() == 0 {
            return Ok(());
        }
        let (records, started) = (self.writer.staged_records() as u64, Instant::now());
        let bytes = self.writer.staged_bytes() as u64;
        if self.stopped() {
            // A failed sync may have lost written records, or the files are gone: nothing
            // more is accepted.
            self.writer.discard();
            return Err(Failure::LogStopped);
        }
        match self.writer.commit() {
            Ok(()) => {
                self.stats.observe(records, started.elapsed());
                self.metrics.records.inc_by(records);
                self.metrics.bytes.inc_by(bytes);
                self.metrics.group_records.observe(records as f64);
                self.durability.write_errno.store(0, Ordering::Release);
                if std::mem::replace(&mut self.failing, false) {
                    info!(self.log, "event log writable again"; "component" => "wal");
                }
                if let Some(syncer) = &self.syncer {
                    let mut state = syncer.shared.lock();
                    if self.writer.segments_created() != self.segments_seen {
                        self.segments_seen = self.writer.segments_created();
                        if let Ok(file) = self.writer.sync_handle() {
                            state.file = Some((file, self.writer.current_file().0.to_owned()));
                        }
                    }
                    state.written = self.writer.next_seq() - 1;
                    drop(state);
                    if syncer.policy == FsyncPolicy::Always {
                        syncer.shared.wake.notify_one();
                    }
                }
                Ok(())
            }
            Err(e) => {
                if !self.failing || e.unknown {
                    error!(self.log, "event log write failed; refusing writes until one succeeds";
                           "component" => "wal", "error" => %e.error,
                           "removed_again" => !e.unknown);
                }
                let errno = errno_of(&e.error);
                self.failing = true;
                self.metrics.errors.inc();
                self.durability
                    .write_errno
                    .store(if errno == 0 { -1 } else { errno }, Ordering::Release);
                Err(if e.unknown {
                    Failure::LogBroken(errno)
                } else {
                    Failure::LogFailed(errno)
                })
            }
        }
    }

    /// Whether the log stopped taking writes until a restart.
    #[must_use]
    pub fn stopped(&self) -> bool {
        self.durability.failed_errno.load(Ordering::Acquire) != 0
    }

    /// Checks that the data dir, the log directory and the open segment are still where
    /// they were; if not, the log stops taking writes (and readiness fails) until a restart.
    pub fn check_place(&mut self) {
        if self.stopped() {
            return;
        }
        let (path, file) = self.writer.current_file();
        if let Err(reason) = self.place.check(path, file) {
            error!(self.log, "event log moved away under the supervisor; refusing writes until restart";
                   "component" => "wal", "reason" => &reason);
            self.metrics.errors.inc();
            if let Some(syncer) = &self.syncer {
                syncer.shared.lock().failed_errno = nix::libc::ENOENT;
            }
            self.durability.stop(nix::libc::ENOENT, reason);
        }
    }

    /// Makes everything written durable now, whatever the policy (before a checkpoint may
    /// cover it).
    pub fn make_durable(&mut self) -> Result<(), WalError> {
        if self.sync() {
            Ok(())
        } else {
            Err(WalError::Io {
                what: "cannot sync the event log".into(),
                error: std::io::Error::other("sync failed"),
            })
        }
    }

    /// Removes the segments whose records are all covered by `floor` (every shard's oldest
    /// kept checkpoint), logging what went.
    pub fn remove_through(&mut self, floor: u64) {
        match self.writer.remove_through(floor) {
            Ok(0) => {}
            Ok(n) => {
                info!(self.log, "event log segments removed"; "component" => "wal",
                      "segments" => n, "covered_through_seq" => floor);
            }
            Err(e) => {
                warn!(self.log, "cannot remove event log segments"; "component" => "wal", "error" => %e);
            }
        }
    }

    /// What the log holds on disk (also published as metrics).
    pub fn disk_usage(&self) -> Result<wal::DiskUsage, WalError> {
        let usage = self.writer.disk_usage()?;
        let gauge = |g: &prometheus::IntGauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.metrics.segments, usage.segments as u64);
        gauge(&self.metrics.disk_bytes, usage.bytes);
        gauge(&self.metrics.oldest_seq, usage.oldest_seq);
        Ok(usage)
    }

    /// Group commit figures so far.
    #[must_use]
    pub fn stats(&self) -> &GroupStats {
        &self.stats
    }

    /// Syncs everything written, now, whatever the policy (at shutdown); returns whether
    /// it is durable.
    pub fn sync(&mut self) -> bool {
        self.check_place();
        if self.stopped() {
            return false;
        }
        if let Err(e) = self.writer.sync() {
            error!(self.log, "cannot sync the event log"; "component" => "wal", "error" => %e);
            return false;
        }
        if let Some(syncer) = &self.syncer {
            let mut state = syncer.shared.lock();
            if state.failed_errno != 0 {
                return false;
            }
            state.synced = state.synced.max(self.writer.next_seq() - 1);
        }
        self.durability.advance(self.writer.next_seq() - 1);
        true
    }

    /// Logs the group commit figures of the run.
    pub fn log_stats(&self) {
        if let Some(syncer) = &self.syncer {
            let state = syncer.shared.lock();
            if state.syncs > 0 {
                info!(self.log, "event log syncs"; "component" => "wal", "syncs" => state.syncs,
                      "records" => state.synced_records,
                      "mean_records" => (state.synced_records as f64 / state.syncs as f64 * 10.0).round() / 10.0,
                      "mean_sync_us" => (state.sync_ns as f64 / state.syncs as f64 / 1000.0).round());
            }
        }
        let s = &self.stats;
        if s.commits > 0 {
            info!(self.log, "event log group commits"; "component" => "wal", "commits" => s.commits,
                  "records" => s.records, "mean_records" => (s.records as f64 / s.commits as f64 * 10.0).round() / 10.0,
                  "p50_records_at_most" => s.quantile(0.5), "p99_records_at_most" => s.quantile(0.99),
                  "max_records" => s.max_records,
                  "mean_commit_us" => (s.commit_ns as f64 / s.commits as f64 / 1000.0).round());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_stats_bucket_by_powers_of_two() {
        let mut s = GroupStats::default();
        for n in [1, 1, 2, 3, 50, 50, 50, 5000] {
            s.observe(n, Duration::from_micros(100));
        }
        assert_eq!((s.commits, s.records, s.max_records), (8, 5157, 5000));
        assert_eq!(s.buckets[0], 2); // 1
        assert_eq!(s.buckets[1], 1); // 2
        assert_eq!(s.buckets[2], 1); // 3..=4
        assert_eq!(s.buckets[6], 3); // 33..=64
        assert_eq!(s.buckets[GROUP_BUCKETS - 1], 1); // past 4096
        assert_eq!(s.quantile(0.5), 4);
        assert_eq!(s.quantile(0.8), 64);
        assert_eq!(s.commit_ns, 800_000);
    }
}
