//! The keyspace on the real binary: SCAN across shards returns every key present for the
//! whole scan while others come and go, MATCH and TYPE filter, KEYS and RANDOMKEY agree
//! with it, FLUSHALL empties every shard (and stays empty after a crash), and redis-cli's
//! --scan and --bigkeys work unchanged.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use corral_tests::{cannot_run, Corral};

/// A whole SCAN: every key it returned (with repeats removed) and the calls it took.
fn scan_all(c: &mut redis::Connection, extra: &[&str]) -> (BTreeSet<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = BTreeSet::new();
    let mut calls = 0;
    loop {
        let (next, batch): (String, Vec<String>) =
            redis::cmd("SCAN").arg(&cursor).arg(extra).query(c).unwrap();
        calls += 1;
        keys.extend(batch);
        if next == "0" {
            return (keys, calls);
        }
        assert!(calls < 100_000, "the scan never ended");
        cursor = next;
    }
}

#[test]
fn scan_returns_every_lasting_key_while_others_churn() {
    let corral = Corral::start(3, &["--max-keys-per-shard", "4096"]);
    let mut c = corral.client();
    let lasting: BTreeSet<String> = (0..1500).map(|i| format!("stay:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &lasting {
        pipe.cmd("SET").arg(k).arg("v").ignore();
    }
    let () = pipe.query(&mut c).unwrap();

    // Another client sets and deletes keys meanwhile, so the tables shift and compact.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = Arc::clone(&stop);
        let mut c = corral.client();
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for i in 0..200 {
                    let key = format!("churn:{}", (round * 7 + i) % 1000);
                    if (round + i) % 3 == 0 {
                        pipe.cmd("DEL").arg(key).ignore();
                    } else {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg("x".repeat(round as usize % 50))
                            .ignore();
                    }
                }
                let () = pipe.query(&mut c).unwrap();
                round += 1;
            }
            round
        })
    };
    for count in ["1", "10", "1000"] {
        let (keys, _) = scan_all(&mut c, &["COUNT", count]);
        let missing: Vec<_> = lasting.difference(&keys).take(5).collect();
        assert!(missing.is_empty(), "COUNT {count}: missed {missing:?}");
        let (matched, _) = scan_all(&mut c, &["MATCH", "stay:1?", "COUNT", count]);
        let want: BTreeSet<String> = (10..20).map(|i| format!("stay:{i}")).collect();
        assert_eq!(matched, want, "COUNT {count}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0);

    let (typed, _) = scan_all(&mut c, &["TYPE", "string", "MATCH", "stay:*"]);
    assert_eq!(typed, lasting);
    let (none, _) = scan_all(&mut c, &["TYPE", "list"]);
    assert!(none.is_empty());
    let keys: BTreeSet<String> = redis::cmd("KEYS").arg("stay:*").query(&mut c).unwrap();
    assert_eq!(keys, lasting);
    for _ in 0..20 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
        assert!(
            key.starts_with("stay:") || key.starts_with("churn:"),
            "{key}"
        );
    }
}

#[test]
fn flushall_empties_every_shard_for_good() {
    let mut corral = Corral::start(3, &[]);
    let mut c = corral.client();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    let () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, 0);
    assert!(corral.shards().iter().all(|s| s.keys == 0 && s.digest == 0));
    let () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut c)
        .unwrap();
    // Logged: a crash and a replay end with the same single key.
    let data_dir = corral.data_dir.clone();
    let corral = Corral::start_in(corral.crash(), &data_dir, 3, &[]);
    let mut c = corral.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys, ["after"]);
}

#[test]
fn redis_cli_scan_and_bigkeys_work_unchanged() {
    if Command::new("redis-cli").arg("--version").output().is_err() {
        cannot_run("redis-cli is not installed");
        return;
    }
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let mut pipe = redis::pipe();
    for i in 0..250 {
        pipe.cmd("SET")
            .arg(format!("cli:{i}"))
            .arg("y".repeat(i))
            .ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &corral.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let scanned: BTreeSet<String> = cli(&["--scan"]).lines().map(str::to_string).collect();
    let want: BTreeSet<String> = (0..250).map(|i| format!("cli:{i}")).collect();
    assert_eq!(scanned, want);
    let matched = cli(&["--scan", "--pattern", "cli:24?"]);
    assert_eq!(matched.lines().count(), 10, "{matched}");
    let big = cli(&["--bigkeys"]);
    assert!(
        big.contains("Biggest string found")
            && big.contains("cli:249")
            && big.contains("249 bytes"),
        "{big}"
    );
    assert!(big.contains("250 strings"), "{big}");
}
