//! The sequencer's side of the event log: encodes writes and lifecycle events into
//! records, commits them in groups under the fsync policy, runs the once-a-second sync of
//! `--fsync everysec`, and turns I/O errors into a failed state that refuses writes (never
//! retried-and-ignored) until a later commit succeeds.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slog::{error, info, warn, Logger};

use crate::codec::{self, LifecycleRecord};
use crate::sequencer::OwnedOp;
use crate::wal::{self, FsyncPolicy, Kind, WalError, Writer, WriterOptions};

/// The once-a-second sync of `--fsync everysec`.
#[derive(Debug)]
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct SyncShared {
    file: Mutex<Option<File>>,
    dirty: AtomicBool,
    stop: AtomicBool,
    /// Set when a background sync failed: acknowledged writes may be lost.
    failed_errno: AtomicI32,
}

impl Syncer {
    fn start(file: File, log: Logger) -> std::io::Result<Self> {
        let shared = Arc::new(SyncShared {
            file: Mutex::new(Some(file)),
            ..SyncShared::default()
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wal-sync".into())
                .spawn(move || {
                    while !shared.stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(Duration::from_secs(1));
                        if shared.dirty.swap(false, Ordering::AcqRel) {
                            Self::sync(&shared, &log);
                        }
                    }
                })?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn sync(shared: &SyncShared, log: &Logger) {
        let guard = shared.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = guard.as_ref() {
            if let Err(e) = file.sync_data() {
                error!(log, "event log background sync failed; refusing writes"; "component" => "wal",
                       "error" => %e);
                shared
                    .failed_errno
                    .store(e.raw_os_error().unwrap_or(-1), Ordering::Release);
            }
        }
    }

    fn replace_file(&self, file: File) {
        *self
            .shared
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
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
        self.commit_ns += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
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

/// The event log as the sequencer uses it.
#[derive(Debug)]
pub struct Journal {
    writer: Writer,
    fsync: FsyncPolicy,
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

impl Journal {
    /// Scans the log in `dir` (creating the directory), cuts a torn tail, and opens it for
    /// appending. Damage stops here with the error naming file, offset and sequence.
    ///
    /// `lifecycle` sees every lifecycle record of the log, oldest first (the supervisor
    /// rebuilds its history from them).
    pub fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        segment_bytes: u64,
        log: Logger,
        mut lifecycle: impl FnMut(LifecycleRecord),
    ) -> Result<Self, WalError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| WalError::Io {
                what: format!("cannot create {}", dir.display()),
                error,
            })?;
        let mut records = 0u64;
        let summary = wal::scan(dir, .., |r| {
            records += 1;
            if r.kind == Kind::Lifecycle {
                let record = codec::decode_lifecycle(r.version, r.payload).map_err(|e| {
                    WalError::Undecodable {
                        seq: r.seq,
                        reason: e.to_string(),
                    }
                })?;
                lifecycle(record);
            }
            Ok(())
        })?;
        if let Some((file, offset)) = &summary.torn {
            warn!(log, "event log ended in a torn record; cut it off"; "component" => "wal",
                  "file" => %file.display(), "offset" => offset, "next_seq" => summary.next_seq);
        }
        let writer = Writer::open(
            dir,
            &summary,
            WriterOptions {
                segment_bytes,
                fsync,
            },
        )?;
        info!(log, "event log open"; "component" => "wal", "segments" => summary.segments.len().max(1),
              "records" => records, "next_seq" => writer.next_seq(), "fsync" => ?fsync);
        let syncer = if fsync == FsyncPolicy::EverySec {
            let file = writer.sync_handle().map_err(|error| WalError::Io {
                what: "cannot share the event log segment with the sync thread".into(),
                error,
            })?;
            Some(
                Syncer::start(file, log.clone()).map_err(|error| WalError::Io {
                    what: "cannot start the event log sync thread".into(),
                    error,
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            segments_seen: writer.segments_created(),
            writer,
            fsync,
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

    /// Stages a client write; returns its sequence number.
    pub fn append_write(&mut self, shard: u32, op: &OwnedOp) -> u64 {
        self.writer
            .append(Kind::Write, |buf| codec::encode_write(shard, op, buf))
    }

    /// Stages a lifecycle event.
    pub fn append_lifecycle(&mut self, record: &LifecycleRecord) -> u64 {
        self.writer
            .append(Kind::Lifecycle, |buf| codec::encode_lifecycle(record, buf))
    }

    /// Commits what is staged. On failure nothing staged is in the log, and the error is
    /// the OS error number (-1 when there is none).
    pub fn commit(&mut self) -> Result<(), i32> {
        if self.writer.staged_bytes() == 0 {
            return Ok(());
        }
        let (records, started) = (self.writer.staged_records() as u64, Instant::now());
        let background = self
            .syncer
            .as_ref()
            .map_or(0, |s| s.shared.failed_errno.load(Ordering::Acquire));
        let result = if background != 0 {
            // A lost background sync may have lost acknowledged writes: stop here.
            self.writer.discard();
            Err(background)
        } else {
            self.writer.commit().map_err(|e| {
                if !self.failing {
                    error!(self.log, "event log write failed; refusing writes until it succeeds";
                           "component" => "wal", "error" => %e.0);
                }
                errno_of(&e.0)
            })
        };
        match result {
            Ok(()) => {
                self.stats.observe(records, started.elapsed());
                if std::mem::replace(&mut self.failing, false) {
                    info!(self.log, "event log writable again"; "component" => "wal");
                }
                if let Some(syncer) = &self.syncer {
                    if self.writer.segments_created() != self.segments_seen {
                        self.segments_seen = self.writer.segments_created();
                        if let Ok(file) = self.writer.sync_handle() {
                            syncer.replace_file(file);
                        }
                    }
                    syncer.shared.dirty.store(true, Ordering::Release);
                }
            }
            Err(_) => self.failing = true,
        }
        result
    }

    /// Makes everything committed durable, whatever the policy (before a checkpoint may
    /// cover it). Under `--fsync always` it already is.
    pub fn make_durable(&mut self) -> Result<(), WalError> {
        if self.fsync == FsyncPolicy::Always {
            return Ok(());
        }
        self.writer.sync().map_err(|error| WalError::Io {
            what: "cannot sync the event log".into(),
            error,
        })
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

    /// Segments in the log and their total size in bytes.
    pub fn disk_usage(&self) -> Result<(usize, u64), WalError> {
        self.writer.disk_usage()
    }

    /// Group commit figures so far.
    #[must_use]
    pub fn stats(&self) -> &GroupStats {
        &self.stats
    }

    /// Syncs everything written (at shutdown, whatever the policy) and logs the group
    /// commit figures of the run.
    pub fn sync(&mut self) {
        if let Err(e) = self.writer.sync() {
            error!(self.log, "cannot sync the event log at shutdown"; "component" => "wal", "error" => %e);
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
