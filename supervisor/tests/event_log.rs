//! The event log as the real binary writes it: every acknowledged write and lifecycle
//! event is in it, in order; a torn tail is cut off at start-up, and damage before the tail
//! stops start-up with the file and offset.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use corral::base::ops::OwnedOp;
use corral::wal::codec::{decode_lifecycle, decode_write, LifecycleRecord};
use corral::wal::{self, Kind};
use corral_tests::{key_on_shard, Corral, TempDir};
use corral_worker::command::{Expiry, Op, SetCondition};

/// The log's writes (shard, time sequenced, op) and lifecycle events.
fn read_log(data_dir: &Path) -> (Vec<(u32, u64, OwnedOp)>, Vec<LifecycleRecord>) {
    let (mut writes, mut events) = (Vec::new(), Vec::new());
    wal::scan(&data_dir.join("wal"), .., |r| {
        match r.kind {
            Kind::Write => {
                let w = decode_write(r.version, r.payload).unwrap();
                for (shard, op) in w.ops {
                    writes.push((shard, w.now_ms, OwnedOp::from(op)));
                }
            }
            Kind::Lifecycle => events.push(decode_lifecycle(r.version, r.payload).unwrap()),
            Kind::Skip => {}
        }
        Ok::<(), wal::WalError>(())
    })
    .unwrap();
    (writes, events)
}

#[test]
fn acknowledged_writes_and_lifecycle_events_are_logged_in_order() {
    let mut corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let k0 = key_on_shard(0, 2, "log");
    let k1 = key_on_shard(1, 2, "log");
    let _: () = redis::cmd("SET").arg(&k0).arg("a").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&k1)
        .arg("b")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("INCRBY").arg("n").arg(5).query(&mut c).unwrap();
    let _: i64 = redis::cmd("DEL").arg(&k0).query(&mut c).unwrap();
    let before_ex = corral::wal::codec::unix_ms();
    let _: () = redis::cmd("SET")
        .arg(&k0)
        .arg("e")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    // Refused before logging: a syntax error is no write.
    assert!(redis::cmd("SET")
        .arg("x")
        .arg("y")
        .arg("BOGUS")
        .query::<()>(&mut c)
        .is_err());

    let victim = corral.kill_worker(1);
    assert!(corral.stop(Duration::from_secs(20)).success());

    let (writes, events) = read_log(&corral.data_dir);
    let ops: Vec<OwnedOp> = writes.iter().map(|(_, _, op)| op.clone()).collect();
    // SET EX is logged with its absolute deadline: 100 s after the time it was read at,
    // which is no later than the time it was sequenced at.
    let (_, set_ex_at, set_ex) = writes.last().unwrap();
    let deadline = set_ex.parts().deadline;
    assert!(
        (before_ex + 100_000..=set_ex_at + 100_000).contains(&deadline),
        "deadline {deadline}, read after {before_ex}, sequenced at {set_ex_at}"
    );
    // Every write carries the time it was sequenced, in order.
    let times: Vec<u64> = writes.iter().map(|(_, t, _)| *t).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[0] >= before_ex - 60_000, "{times:?}");
    assert_eq!(
        ops,
        vec![
            OwnedOp::from(Op::Set {
                key: k0.as_bytes(),
                value: b"a",
                condition: SetCondition::Always,
                expiry: Expiry::Never,
                get: false,
            }),
            OwnedOp::from(Op::Set {
                key: k1.as_bytes(),
                value: b"b",
                condition: SetCondition::IfAbsent,
                expiry: Expiry::Never,
                get: false,
            }),
            OwnedOp::from(Op::IncrBy {
                key: b"n",
                delta: 5
            }),
            OwnedOp::from(Op::Del { key: k0.as_bytes() }),
            OwnedOp::from(Op::Set {
                key: k0.as_bytes(),
                value: b"e",
                condition: SetCondition::Always,
                expiry: Expiry::At(deadline),
                get: false,
            }),
        ]
    );
    assert_eq!(writes[0].0, 0);
    assert_eq!(writes[1].0, 1);

    assert!(matches!(
        events.first(),
        Some(LifecycleRecord::SupervisorStarted { workers: 2, .. })
    ));
    assert!(events.iter().any(|e| matches!(
        e,
        LifecycleRecord::WorkerExited { worker: 1, pid, signal: Some(9), .. } if *pid == victim
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, LifecycleRecord::RestartScheduled { worker: 1, .. })));
    let spawned = events
        .iter()
        .filter(|e| matches!(e, LifecycleRecord::WorkerSpawned { .. }))
        .count();
    assert_eq!(spawned, 3, "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, LifecycleRecord::SupervisorStopped { clean: true, .. })));

    // `corral events` prints the same history as JSON lines.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["events", "--data-dir"])
        .arg(&corral.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), events.len());
    assert!(lines.iter().any(|l| l["event"] == "worker_exited"
        && l["signal"] == 9
        && l["pid"] == u64::from(victim)));
    assert!(lines
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
}

fn run_once(data_dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--workers", "1", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--shutdown-timeout", "5s", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Offsets of the records of a segment file (each record's header gives its length).
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = wal::SEGMENT_HEADER_BYTES;
    while at + wal::RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((at, len));
        at += wal::RECORD_HEADER_BYTES + len.div_ceil(8) * 8;
    }
    out
}

fn verify(data_dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "verify",
            "--shard-memory",
            "1MiB",
            "--max-keys-per-shard",
            "1024",
        ])
        .args(["--max-value-bytes", "1KiB", "--max-key-bytes", "1KiB"])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn torn_tail_is_cut_and_damage_stops_start_up_naming_file_and_offset() {
    let root = TempDir::new("damage");
    let data_dir = root.path().join("data");
    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    let mut c = corral.client();
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let root = corral.crash();
    let segments = wal::list_segments(&data_dir.join("wal")).unwrap();
    let path = &segments.last().unwrap().path;
    let bytes = std::fs::read(path).unwrap();
    let (last_start, last_len) = *record_offsets(&bytes).last().unwrap();
    let last_end = last_start + wal::RECORD_HEADER_BYTES + last_len;

    // The last write reached the disk only up to some byte (zeros after, as in the
    // preallocated file), or garbled from some byte on: the log stays readable, the torn
    // write is reported, and exactly the 19 complete writes remain (checked offline with
    // `corral verify`, which replays the log like a start-up).
    for cut in (last_start..last_end).step_by(3) {
        for garbage in [false, true] {
            let mut torn = bytes.clone();
            for (i, b) in torn[cut..last_end].iter_mut().enumerate() {
                *b = if garbage {
                    (i as u8).wrapping_mul(41) | 1
                } else {
                    0
                };
            }
            if torn == bytes {
                // The record ends in zero bytes (a deadline of none): zeroing them tears
                // nothing.
                continue;
            }
            std::fs::write(path, &torn).unwrap();
            let (ok, text) = verify(&data_dir);
            assert!(ok, "cut at {cut}: {text}");
            assert!(text.contains("replayed 19 writes"), "cut at {cut}: {text}");
            assert_eq!(
                text.contains("torn write"),
                cut > last_start || garbage,
                "cut at {cut}: {text}"
            );
        }
    }

    // A torn tail: the last record half written.
    let mut torn = bytes.clone();
    torn[last_end - 5..last_end].fill(0);
    std::fs::write(path, &torn).unwrap();
    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    assert!(corral.log().contains("torn write"), "{}", corral.log());
    assert!(corral.stop(Duration::from_secs(20)).success());
    let (writes, _) = read_log(&data_dir);
    assert_eq!(
        writes.len(),
        19,
        "the torn 20th write is gone, the rest stay"
    );

    // A flipped byte in the first record, which later records were written after: start-up
    // refuses, naming file and offset.
    let mut bytes = std::fs::read(path).unwrap();
    bytes[wal::SEGMENT_HEADER_BYTES + wal::RECORD_HEADER_BYTES] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
    let (code, stderr) = run_once(&data_dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&path.display().to_string())
            && stderr.contains(&format!("offset {}", wal::SEGMENT_HEADER_BYTES)),
        "{stderr}"
    );
}

/// A tmpfs mounted for one test (needs root; `.ci/run` runs as root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_returns() {
    let mount_dir = TempDir::new("fulldisk");
    let Some(_tmpfs) = Tmpfs::mount(&mount_dir.path().join("fs"), "2m") else {
        // CI sets CORRAL_TEST_STRICT when it runs as root: there this test must run.
        assert!(
            std::env::var_os("CORRAL_TEST_STRICT").is_none(),
            "cannot mount a tmpfs (CORRAL_TEST_STRICT is set)"
        );
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let fs_root = mount_dir.path().join("fs");
    let filler = fs_root.join("filler");
    std::fs::write(&filler, vec![1u8; 1 << 20]).unwrap();
    let data_dir = fs_root.join("data");
    // Segments are preallocated: small ones, so that the log fills the disk as it rolls.
    let flags = ["--wal-segment-bytes", "256KiB"];
    let mut corral = Corral::start_in(TempDir::new("fulldisk-run"), &data_dir, 1, &flags);
    let mut c = corral.client();
    let value = vec![b'v'; 64 << 10];
    let mut stored = 0;
    let err = loop {
        match redis::cmd("SET")
            .arg(format!("big{stored}"))
            .arg(&value)
            .query::<()>(&mut c)
        {
            Ok(()) => stored += 1,
            Err(e) => break e.to_string(),
        }
        assert!(stored < 100, "the disk never filled");
    };
    assert!(
        err.contains("event log write failed") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(stored > 0);
    // Reads keep working; writes keep failing while the disk is full.
    let got: Vec<u8> = redis::cmd("GET").arg("big0").query(&mut c).unwrap();
    assert_eq!(got, value);
    assert!(redis::cmd("SET")
        .arg("small")
        .arg(&value)
        .query::<()>(&mut corral.client())
        .is_err());

    std::fs::remove_file(&filler).unwrap();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    assert!(corral.stop(Duration::from_secs(20)).success());
    let (writes, _) = read_log(&data_dir);
    assert_eq!(writes.len(), stored + 1, "exactly the acknowledged writes");
    assert!(corral.log().contains("event log writable again"));
}
