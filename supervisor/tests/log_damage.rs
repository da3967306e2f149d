//! Damage in the newest part of the event log, through the real binary: a damaged length
//! field in the middle of the newest segment, newest segments deleted, and a log that ends
//! below a checkpoint. Each is refused at start-up (exit 1, saying what is wrong) and by
//! `corral verify`; `--accept-data-loss` goes on from what is left, and sequence numbers
//! are never reused, so writes acknowledged after that survive the next `kill -9`.

use std::fs;
use std::path::Path;
use std::process::Command;

use corral::wal;
use corral_tests::{Corral, TempDir};

/// Runs `corral run` once on `data_dir` with `extra` flags, expecting it to exit by itself
/// (a refused start); returns its exit code and stderr.
fn refused_start(data_dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--workers", "1", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--shutdown-timeout", "5s"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(data_dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// SETs `{prefix}{i}` = `i` for `i` in `range`, each acknowledged.
fn set_keys(corral: &Corral, prefix: &str, range: std::ops::Range<u32>) {
    let mut c = corral.client();
    for i in range {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
}

/// How many of `{prefix}{i}` for `i` in `range` are served with their value.
fn served(corral: &Corral, prefix: &str, range: std::ops::Range<u32>) -> usize {
    let mut c = corral.client();
    let keys: Vec<String> = range.clone().map(|i| format!("{prefix}{i}")).collect();
    let got: Vec<Option<u32>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    got.iter()
        .zip(range)
        .filter(|(v, i)| **v == Some(*i))
        .count()
}

/// Records of one segment: (offset, payload length).
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
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

/// Writes after an accepted loss are numbered past everything used before: they survive a
/// `kill -9` and a restart without the flag.
fn new_writes_survive(mut corral: Corral, data_dir: &Path, prefix: &str) -> Corral {
    set_keys(&corral, prefix, 0..200);
    let root = corral.crash();
    let again = Corral::start_in(root, data_dir, 1, &[]);
    assert_eq!(
        served(&again, prefix, 0..200),
        200,
        "{}",
        again.log_tail(20)
    );
    again
}

#[test]
fn a_damaged_length_in_the_newest_segment_is_refused_not_cut() {
    let root = TempDir::new("length");
    let data_dir = root.path().join("data");
    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    set_keys(&corral, "k", 0..300);
    let root = corral.crash();
    let newest = wal::list_segments(&data_dir.join("wal"))
        .unwrap()
        .pop()
        .unwrap();
    let mut bytes = fs::read(&newest.path).unwrap();
    let (at, _) = records(&bytes)[39];
    bytes[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    fs::write(&newest.path, &bytes).unwrap();

    let (code, stderr) = refused_start(&data_dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&newest.path.display().to_string())
            && stderr.contains(&format!("offset {at}"))
            && stderr.contains("not a torn write"),
        "{stderr}"
    );
    let (code, text) = verify(&data_dir);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("DAMAGED") && text.contains(&format!("offset {at}")),
        "{text}"
    );

    // The operator accepts the loss: the records before the damage are served, the damaged
    // segment is kept aside, and the log goes on.
    let corral = Corral::start_in(root, &data_dir, 1, &["--accept-data-loss"]);
    let kept = served(&corral, "k", 0..300);
    assert!(kept > 0 && kept < 300, "{kept}");
    assert_eq!(
        served(&corral, "k", 0..kept as u32),
        kept,
        "a prefix survives"
    );
    assert!(corral.log().contains("--accept-data-loss"));
    assert!(newest.path.with_extension("wal.damaged").exists());
    let _ = new_writes_survive(corral, &data_dir, "after");
}

#[test]
fn deleted_newest_segments_are_refused() {
    let flags = ["--wal-segment-bytes", "4096"];
    let root = TempDir::new("deleted");
    let data_dir = root.path().join("data");
    let mut corral = Corral::start_in(root, &data_dir, 1, &flags);
    set_keys(&corral, "k", 0..600);
    let root = corral.crash();
    let segments = wal::list_segments(&data_dir.join("wal")).unwrap();
    assert!(segments.len() > 4, "{}", segments.len());
    // The newest two go.
    for s in &segments[segments.len() - 2..] {
        fs::remove_file(&s.path).unwrap();
    }
    let (code, stderr) = refused_start(&data_dir);
    assert_eq!(code, Some(1), "{stderr}");
    let missing = wal::segment_name(segments.last().unwrap().first_seq);
    assert!(
        stderr.contains("incomplete") && stderr.contains(&missing),
        "{stderr}"
    );
    let (code, text) = verify(&data_dir);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&missing), "{text}");

    let corral = Corral::start_in(root, &data_dir, 1, &["--accept-data-loss"]);
    let kept = served(&corral, "k", 0..600);
    assert!(kept > 0 && kept < 600, "{kept}");
    let mut corral = new_writes_survive(corral, &data_dir, "after");
    assert!(corral.stop(std::time::Duration::from_secs(20)).success());
    // Every number the deleted segments can have held was given up.
    let (code, text) = verify(&data_dir);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("were given up (data loss accepted"), "{text}");
}

#[test]
fn a_log_that_ends_below_a_checkpoint_is_refused_and_never_reuses_numbers() {
    let root = TempDir::new("below");
    let data_dir = root.path().join("data");
    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    set_keys(&corral, "a", 0..200);
    let root = corral.crash();
    // An older copy of the log (and of the manifest that records its newest segment).
    let backup = root.path().join("backup");
    fs::create_dir_all(backup.join("wal")).unwrap();
    for s in wal::list_segments(&data_dir.join("wal")).unwrap() {
        fs::copy(
            &s.path,
            backup.join("wal").join(s.path.file_name().unwrap()),
        )
        .unwrap();
    }
    fs::copy(data_dir.join("MANIFEST"), backup.join("MANIFEST")).unwrap();

    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    set_keys(&corral, "b", 0..100);
    // A clean stop checkpoints the shard past the end of the older log.
    assert!(corral.stop(std::time::Duration::from_secs(20)).success());
    let root = corral.crash();
    fs::remove_dir_all(data_dir.join("wal")).unwrap();
    fs::rename(backup.join("wal"), data_dir.join("wal")).unwrap();
    fs::copy(backup.join("MANIFEST"), data_dir.join("MANIFEST")).unwrap();

    let (code, stderr) = refused_start(&data_dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("checkpoint covers sequence") && stderr.contains("are missing"),
        "{stderr}"
    );
    let (code, text) = verify(&data_dir);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("its checkpoint covers sequence"), "{text}");

    // Going on from the checkpoint: everything it holds is served, and new writes get
    // numbers past it (before, replay skipped them as "covered" after the next crash).
    let corral = Corral::start_in(root, &data_dir, 1, &["--accept-data-loss"]);
    assert_eq!(served(&corral, "a", 0..200), 200);
    assert_eq!(served(&corral, "b", 0..100), 100);
    let mut corral = new_writes_survive(corral, &data_dir, "c");
    assert!(corral.stop(std::time::Duration::from_secs(20)).success());
    let (code, text) = verify(&data_dir);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("were given up (data loss accepted"), "{text}");
}
