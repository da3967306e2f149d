//! `corral verify`: an offline check of a data dir. Every event log record is read and
//! decoded, every checkpoint verified, and each shard rebuilt exactly as a restarted
//! worker would be (newest good checkpoint, then its writes from the log, applied by the
//! same state machine over an in-memory table of the same geometry), printing its key
//! count and digest, which match what `INFO` reports for a live shard with that state.

use std::io::{self, Write};
use std::path::Path;

use corral_worker::checkpoint::{self, CheckpointError, Snapshot};
use corral_worker::machine::{KvMachine, StateMachine};
use shm_protocol::layout::Geometry;
use shm_protocol::table::{HeapTable, TableLimits, TableWriter};

use crate::wal::codec;
use crate::wal::datadir::Manifest;
use crate::wal::{self, Kind, WalError};

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems found (damaged records or checkpoints, missing log ranges).
    pub damaged: usize,
    /// Per shard: (keys, digest) after the rebuild; empty when the log could not be read.
    pub shards: Vec<(u64, u64)>,
}

/// Most decode problems printed one by one.
const SHOWN: usize = 10;

/// Checks the data dir at `data_dir` (holding `workers` shards of `geometry`), writing a
/// readable report to `out`. Only a failure to write the report is an error; what is wrong
/// with the data dir is counted in [`Report::damaged`].
pub fn verify(
    data_dir: &Path,
    manifest: &Manifest,
    geometry: &Geometry,
    out: &mut impl Write,
) -> io::Result<Report> {
    let workers = manifest.workers;
    let mut report = Report::default();
    let wal_dir = data_dir.join("wal");
    let log_end = check_log(&wal_dir, manifest, out, &mut report)?;

    let mut bases = Vec::new();
    for worker in 0..workers {
        bases.push(check_checkpoints(data_dir, worker, out, &mut report)?);
    }
    let Some(log_end) = log_end else {
        writeln!(out, "shards not rebuilt: the event log cannot be read")?;
        return Ok(report);
    };
    for (worker, base) in bases.iter().enumerate() {
        if let Some(s) = base.as_ref().filter(|s| s.seq > log_end) {
            report.damaged += 1;
            writeln!(
                out,
                "shard {worker}: DAMAGED: its checkpoint covers sequence {}, but the event log \
                 ends at {log_end}: records {}..={} are missing",
                s.seq,
                log_end + 1,
                s.seq
            )?;
        }
    }
    let oldest = wal::list_segments(&wal_dir)
        .ok()
        .and_then(|s| s.first().map(|s| s.first_seq))
        .unwrap_or(1);
    for (worker, base) in (0..workers).zip(bases) {
        let from = base.as_ref().map_or(0, |s| s.seq) + 1;
        if oldest > from {
            report.damaged += 1;
            writeln!(
                out,
                "shard {worker}: DAMAGED: needs the event log from sequence {from}, it starts at {oldest}"
            )?;
            continue;
        }
        match rebuild(&wal_dir, worker, geometry, base.as_ref()) {
            Ok((machine, replayed, last)) => {
                let (keys, digest) = (machine.keys(), machine.digest());
                report.shards.push((keys, digest));
                let start = base.as_ref().map_or_else(
                    || "no checkpoint".to_owned(),
                    |s| format!("checkpoint {}", s.seq),
                );
                writeln!(
                    out,
                    "shard {worker}: {start}, replayed {replayed} writes (through sequence {last}), \
                     {keys} keys, digest {digest:016x}"
                )?;
            }
            Err(e) => {
                report.damaged += 1;
                writeln!(out, "shard {worker}: DAMAGED: {e}")?;
            }
        }
    }
    Ok(report)
}

/// Reads every record and checks the log's end against the manifest; returns the last
/// sequence number when the log is readable to its end.
fn check_log(
    dir: &Path,
    manifest: &Manifest,
    out: &mut impl Write,
    report: &mut Report,
) -> io::Result<Option<u64>> {
    let workers = manifest.workers;
    let (mut writes, mut lifecycle, mut first, mut last) = (0u64, 0u64, None, 0u64);
    let mut problems = Vec::new();
    let mut skips = Vec::new();
    let scanned = wal::scan(dir, .., |r| {
        first.get_or_insert(r.seq);
        last = r.seq;
        let problem = match r.kind {
            Kind::Write => {
                writes += 1;
                match codec::decode_write(r.version, r.payload) {
                    Ok(w) => w
                        .ops
                        .iter()
                        .find(|(shard, _)| *shard >= workers)
                        .map(|(shard, _)| format!("write for shard {shard} of {workers}")),
                    Err(e) => Some(e.to_string()),
                }
            }
            Kind::Lifecycle => {
                lifecycle += 1;
                codec::decode_lifecycle(r.version, r.payload)
                    .err()
                    .map(|e| e.to_string())
            }
            Kind::Skip => {
                if let Some((through, reason)) = wal::decode_skip(r.payload) {
                    skips.push((r.seq, through, reason));
                }
                None
            }
        };
        if let Some(p) = problem {
            problems.push(format!("record {}: {p}", r.seq));
        }
        Ok::<(), WalError>(())
    })
    .and_then(|summary| wal::check_head(&summary, manifest.newest()).map(|_| summary));
    match scanned {
        Ok(summary) => {
            writeln!(
                out,
                "event log: {} segment(s), records {}..={}: {writes} writes, {lifecycle} lifecycle events",
                summary.segments.len(),
                first.unwrap_or(summary.next_seq),
                summary.last_seq(),
            )?;
            for (seq, through, reason) in &skips {
                writeln!(
                    out,
                    "event log: note: sequence numbers {seq}..={through} were given up ({reason})"
                )?;
            }
            if let Some((file, torn)) = summary.torn() {
                writeln!(
                    out,
                    "event log: note: {} ends in a torn write at offset {} ({}; cut off at the next start)",
                    file.display(),
                    torn.offset,
                    torn.reason
                )?;
            }
            report.damaged += problems.len();
            for p in problems.iter().take(SHOWN) {
                writeln!(out, "event log: DAMAGED: {p}")?;
            }
            if problems.len() > SHOWN {
                writeln!(out, "event log: ... and {} more", problems.len() - SHOWN)?;
            }
            Ok(problems.is_empty().then(|| summary.last_seq()))
        }
        Err(e) => {
            report.damaged += 1;
            writeln!(out, "event log: DAMAGED: {e}")?;
            Ok(None)
        }
    }
}

/// Verifies every checkpoint of `worker`; returns the newest good one.
fn check_checkpoints(
    data_dir: &Path,
    worker: u32,
    out: &mut impl Write,
    report: &mut Report,
) -> io::Result<Option<Snapshot>> {
    let dir = data_dir.join("checkpoints").join(worker.to_string());
    let found = match checkpoint::list(&dir) {
        Ok(found) => found,
        Err(e) => {
            report.damaged += 1;
            writeln!(out, "checkpoints of shard {worker}: DAMAGED: {e}")?;
            return Ok(None);
        }
    };
    let mut newest = None;
    for (seq, path) in found {
        match checkpoint::read(&path, worker) {
            Ok(snapshot) => {
                writeln!(
                    out,
                    "checkpoint {}: ok, sequence {seq}, {} keys, digest {:016x}",
                    path.display(),
                    snapshot.count,
                    snapshot.digest
                )?;
                newest = Some(snapshot);
            }
            Err(e @ (CheckpointError::Damaged { .. } | CheckpointError::Io { .. })) => {
                report.damaged += 1;
                writeln!(out, "checkpoint {}: DAMAGED: {e}", path.display())?;
            }
        }
    }
    Ok(newest)
}

type Rebuilt = (KvMachine<HeapTable>, u64, u64);

/// Rebuilds `worker`'s shard: `base`, then its writes after it.
fn rebuild(
    dir: &Path,
    worker: u32,
    geometry: &Geometry,
    base: Option<&Snapshot>,
) -> Result<Rebuilt, String> {
    let table = TableWriter::new(
        HeapTable::new(
            usize::try_from(geometry.table_slots).map_err(|e| e.to_string())?,
            usize::try_from(geometry.heap_half_words).map_err(|e| e.to_string())?,
        ),
        TableLimits {
            max_key_bytes: geometry.max_key_bytes,
            max_value_bytes: geometry.max_value_bytes,
            max_keys: geometry.max_keys,
        },
    );
    let mut machine = KvMachine::new(table);
    let mut refused = None;
    if let Some(snapshot) = base {
        snapshot.for_each(|k, v, deadline| {
            if let Err(e) = machine.table_mut().set(k, v, deadline) {
                refused.get_or_insert(e);
            }
        });
    }
    if let Some(e) = refused {
        return Err(format!(
            "checkpoint does not fit the shard limits given: {e}"
        ));
    }
    let (mut replayed, mut last) = (0u64, base.map_or(0, |s| s.seq));
    wal::scan(dir, last + 1.., |r| {
        if r.kind == Kind::Write {
            if let Ok(w) = codec::decode_write(r.version, r.payload) {
                let mut ours = w.ops_of(worker).peekable();
                if ours.peek().is_some() {
                    for op in ours {
                        machine.apply(&op, w.now_ms);
                    }
                    replayed += 1;
                    last = r.seq;
                }
            }
        }
        Ok::<(), WalError>(())
    })
    .map_err(|e| e.to_string())?;
    Ok((machine, replayed, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::ops::OwnedOp;
    use crate::wal::datadir::DataDir;
    use crate::wal::testing::{write_log, Encode, Group, TestDir};
    use corral_worker::command::{Expiry, Op, SetCondition};
    use shm_protocol::layout::ShardLimits;

    fn geometry() -> Geometry {
        Geometry::from_limits(&ShardLimits {
            ring_bytes: Some(4096),
            max_keys: 256,
            max_key_bytes: 64,
            max_value_bytes: 256,
            data_bytes: 64 << 10,
        })
        .unwrap()
    }

    /// Shard `i`'s writes: sets (some of them expiring a few writes later: the log's
    /// writes are at 10 ms apart), increments and deletes over a few keys.
    fn ops(i: u32) -> Vec<OwnedOp> {
        let key = |k: u32| format!("s{i}k{k}").into_bytes();
        let mut ops = Vec::new();
        for n in 0..40u32 {
            let (a, b) = (key(n % 7), key(n % 5));
            let (c, d) = (key(100), key(n % 3));
            let value = format!("v{n}").into_bytes();
            ops.push(OwnedOp::from(match n % 4 {
                0 => Op::Set {
                    key: &a,
                    value: &value,
                    condition: SetCondition::Always,
                    expiry: Expiry::At(u64::from(n) * 10 + 25),
                    get: false,
                },
                1 => Op::IncrBy {
                    key: &c,
                    delta: i64::from(n),
                },
                2 => Op::Set {
                    key: &b,
                    value: b"nx",
                    condition: SetCondition::IfAbsent,
                    expiry: Expiry::Never,
                    get: false,
                },
                _ => Op::Del { key: &d },
            }));
        }
        ops
    }

    /// A data dir of two shards whose log holds `ops(0)` and `ops(1)`, interleaved, one
    /// commit per pair.
    fn data_dir(tag: &str) -> TestDir {
        let dir = TestDir::new(tag);
        let data = DataDir::open(&dir.0.join("data"), 2).unwrap();
        let groups: Vec<Group> = ops(0)
            .into_iter()
            .zip(ops(1))
            .zip((0u64..).map(|n| n * 10))
            .map(|((a, b), now_ms)| {
                [(0, a), (1, b)]
                    .into_iter()
                    .map(|(shard, op)| {
                        let encode: Encode =
                            Box::new(move |buf| codec::encode_write(now_ms, &[(shard, &op)], buf));
                        (Kind::Write, encode)
                    })
                    .collect()
            })
            .collect();
        write_log(&dir.0.join("data/wal"), data.head_recorder(), &groups);
        dir
    }

    /// The (keys, digest) of `ops` applied to an empty shard.
    fn expected(ops: &[OwnedOp]) -> (u64, u64) {
        let g = geometry();
        let mut m = KvMachine::new(TableWriter::new(
            HeapTable::new(g.table_slots as usize, g.heap_half_words as usize),
            TableLimits {
                max_key_bytes: g.max_key_bytes,
                max_value_bytes: g.max_value_bytes,
                max_keys: g.max_keys,
            },
        ));
        // At the times `data_dir` logs them.
        for (n, op) in (0u64..).zip(ops) {
            m.apply(&op.as_op(), n * 10);
        }
        (m.keys(), m.digest())
    }

    #[test]
    fn rebuilds_each_shard_from_its_own_writes() {
        let dir = data_dir("clean");
        let data = dir.0.join("data");
        let manifest = crate::wal::datadir::read(&data).unwrap();
        let mut out = Vec::new();
        let report = verify(&data, &manifest, &geometry(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(report.damaged, 0, "{text}");
        assert_eq!(
            report.shards,
            vec![expected(&ops(0)), expected(&ops(1))],
            "{text}"
        );
        assert_ne!(report.shards[0], report.shards[1]);
        assert!(
            text.contains("shard 1: no checkpoint, replayed 40 writes"),
            "{text}"
        );
    }

    #[test]
    fn a_damaged_record_is_counted_and_named() {
        let dir = data_dir("damaged");
        let segments = wal::list_segments(&dir.0.join("data/wal")).unwrap();
        // A byte in the first record's payload: later records show it was durable, so
        // this is damage, not a torn tail.
        let path = &segments[0].path;
        let mut bytes = std::fs::read(path).unwrap();
        bytes[wal::SEGMENT_HEADER_BYTES + wal::RECORD_HEADER_BYTES + 1] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
        let data = dir.0.join("data");
        let manifest = crate::wal::datadir::read(&data).unwrap();
        let mut out = Vec::new();
        let report = verify(&data, &manifest, &geometry(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(report.damaged >= 1, "{text}");
        assert!(text.contains("DAMAGED"), "{text}");
        assert!(
            text.contains(&path.file_name().unwrap().to_string_lossy().into_owned()),
            "{text}"
        );
    }
}
