//! Durability on the real binary: the seed experiment (10,000 writes, deadlines among them,
//! stop, rebuild from checkpoints and from the event log alone, identical state), a damaged
//! newest checkpoint falling back to the older one, and retention that never removes a
//! segment a kept checkpoint still needs.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use corral_tests::{http_get, shard_of, Corral, ShardInfo};
use shm_protocol::hash::entry_digest;

/// Deterministic op stream (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Each key's value and deadline (Unix ms; 0: none).
type Model = HashMap<String, (String, u64)>;

/// A deadline far ahead (2100), so the keys given one never expire during a test: their
/// deadlines must come back exactly all the same.
const FAR_MS: u64 = 4_102_444_800_000;

/// Sends `n` random writes (SET, SET PXAT, PEXPIREAT ahead and in the past, PERSIST, DEL,
/// INCRBY over 2,000 keys) in pipelines of 100, checking every reply against the model.
fn write_random(corral: &Corral, model: &mut Model, rng: &mut Rng, n: usize) {
    let mut c = corral.client();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(100);
        let mut pipe = redis::pipe();
        let mut expect = Vec::with_capacity(batch);
        for i in 0..batch {
            let k = rng.below(2000);
            if k < 1000 {
                let key = format!("s{k}");
                let value = format!("v{}-{i}", sent);
                let exists = i64::from(model.contains_key(&key));
                match rng.below(8) {
                    0 | 1 => {
                        pipe.cmd("DEL").arg(&key);
                        expect.push(redis::Value::Int(exists));
                        model.remove(&key);
                    }
                    2 => {
                        let at = FAR_MS + rng.below(1_000_000);
                        pipe.cmd("SET").arg(&key).arg(&value).arg("PXAT").arg(at);
                        model.insert(key, (value, at));
                        expect.push(redis::Value::Okay);
                    }
                    3 => {
                        let at = FAR_MS + rng.below(1_000_000);
                        pipe.cmd("PEXPIREAT").arg(&key).arg(at);
                        if let Some(entry) = model.get_mut(&key) {
                            entry.1 = at;
                        }
                        expect.push(redis::Value::Int(exists));
                    }
                    4 => {
                        pipe.cmd("PERSIST").arg(&key);
                        let had = model.get_mut(&key).map_or(0, |e| {
                            let had = i64::from(e.1 != 0);
                            e.1 = 0;
                            had
                        });
                        expect.push(redis::Value::Int(had));
                    }
                    5 => {
                        // A time that has come: the key is deleted.
                        pipe.cmd("PEXPIREAT").arg(&key).arg(1);
                        model.remove(&key);
                        expect.push(redis::Value::Int(exists));
                    }
                    _ => {
                        pipe.cmd("SET").arg(&key).arg(&value);
                        model.insert(key, (value, 0));
                        expect.push(redis::Value::Okay);
                    }
                }
            } else {
                let key = format!("n{k}");
                let delta = rng.below(100) as i64 - 30;
                let now: i64 = model.get(&key).map_or(0, |v| v.0.parse().unwrap());
                pipe.cmd("INCRBY").arg(&key).arg(delta);
                model.insert(key, ((now + delta).to_string(), 0));
                expect.push(redis::Value::Int(now + delta));
            }
        }
        let replies: Vec<redis::Value> = pipe.query(&mut c).unwrap();
        assert_eq!(replies, expect);
        sent += batch;
    }
}

/// Every key of the model (value and deadline), the key count and the per-shard digests
/// (which cover deadlines), as served.
fn check(corral: &Corral, model: &Model) -> Vec<ShardInfo> {
    let mut c = corral.client();
    let keys: Vec<&String> = model.keys().collect();
    for chunk in keys.chunks(500) {
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        for (k, v) in chunk.iter().zip(got) {
            assert_eq!(v.as_ref(), model.get(*k).map(|e| &e.0), "key {k}");
        }
    }
    for k in keys.iter().take(200) {
        let at: i64 = redis::cmd("PEXPIRETIME").arg(k).query(&mut c).unwrap();
        let want = model[*k].1;
        assert_eq!(at, if want == 0 { -1 } else { want as i64 }, "key {k}");
    }
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, model.len());
    let mut digests = vec![0u64; corral.workers as usize];
    for (k, (v, at)) in model {
        let s = shard_of(k.as_bytes(), corral.workers) as usize;
        digests[s] = digests[s].wrapping_add(entry_digest(k.as_bytes(), v.as_bytes(), *at));
    }
    let shards = corral.shards();
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s.digest, digests[i], "digest of shard {i}: {s:?}");
    }
    shards
}

fn checkpoints(data_dir: &Path, worker: u32) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(data_dir.join("checkpoints").join(worker.to_string()))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".ckpt")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    seqs.sort_unstable();
    seqs
}

fn first_logged_seq(data_dir: &Path) -> u64 {
    fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
        .min()
        .unwrap()
}

/// Runs `corral verify` on `data_dir`: exit success and stdout.
fn verify(data_dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(corral_tests::corral_bin())
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Checkpoints the supervisor has seen finish (from `/metrics`).
fn checkpoints_finished(corral: &Corral) -> u64 {
    let (_, _, body) = http_get(corral.http_port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("corral_checkpoint_duration_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn restart(corral: &mut Corral, extra: &[&str]) -> Corral {
    assert!(corral.stop(Duration::from_secs(30)).success());
    let data_dir = corral.data_dir.clone();
    Corral::start_in(corral.crash(), &data_dir, corral.workers, extra)
}

#[test]
fn seed_experiment_ten_thousand_writes_come_back_identical() {
    let mut model = Model::new();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut first = Corral::start(3, &[]);
    write_random(&first, &mut model, &mut rng, 10_000);
    let before = check(&first, &model);

    // From the checkpoints written at shutdown.
    assert!(first.stop(Duration::from_secs(30)).success());
    // Offline, `corral verify` rebuilds the same shards.
    let (ok, text) = verify(&first.data_dir);
    assert!(ok, "{text}");
    for (i, b) in before.iter().enumerate() {
        let line = format!("{} keys, digest {:016x}", b.keys, b.digest);
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("shard {i}:")) && l.ends_with(&line)),
            "shard {i} ({line}) not in:\n{text}"
        );
    }
    let data_dir = first.data_dir.clone();
    let mut second = Corral::start_in(first.crash(), &data_dir, 3, &[]);
    let after = check(&second, &model);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((a.digest, a.keys), (b.digest, b.keys));
    }
    assert!(second.log().contains("\"msg\":\"checkpoint loaded\""));

    // From the event log alone: every checkpoint gone, all 10,000 writes replayed.
    assert!(second.stop(Duration::from_secs(30)).success());
    fs::remove_dir_all(data_dir.join("checkpoints")).unwrap();
    let third = Corral::start_in(second.crash(), &data_dir, 3, &[]);
    let replayed = check(&third, &model);
    for (b, a) in before.iter().zip(&replayed) {
        assert_eq!((a.digest, a.keys), (b.digest, b.keys));
    }
    let log = third.log();
    assert!(!log.contains("\"msg\":\"checkpoint loaded\""));
    let total: u64 = log
        .lines()
        .filter(|l| l.contains("\"msg\":\"replay done\""))
        .filter_map(|l| {
            l.split("\"records\":")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(total, 10_000, "every write replayed once");
}

#[test]
fn damaged_newest_checkpoint_falls_back_and_retention_keeps_what_it_needs() {
    let flags = [
        "--checkpoint-writes",
        "1500",
        "--wal-segment-bytes",
        "32KiB",
    ];
    let mut model = Model::new();
    let mut rng = Rng(0xdead_beef_0042);
    let mut corral = Corral::start(2, &flags);
    let data_dir = corral.data_dir.clone();
    let mut landed = checkpoints_finished(&corral);
    for round in 1..=8 {
        write_random(&corral, &mut model, &mut rng, 1500);
        if round % 2 == 0 {
            // 3000 writes: some shard reached 1500 since its last request, or was asked
            // for a checkpoint meanwhile. Let it land before more writes arrive.
            corral.wait_until("a checkpoint lands", Duration::from_secs(20), || {
                checkpoints_finished(&corral) > landed
            });
            landed = checkpoints_finished(&corral);
        }
    }
    check(&corral, &model);
    assert!(
        corral
            .log()
            .contains("\"msg\":\"event log segments removed\""),
        "retention never ran"
    );
    let mut corral = restart(&mut corral, &flags);
    assert!(corral.stop(Duration::from_secs(30)).success());

    // Retention kept everything after each shard's oldest kept checkpoint.
    let first = first_logged_seq(&data_dir);
    for w in 0..2 {
        let kept = checkpoints(&data_dir, w);
        assert_eq!(kept.len(), 2, "worker {w} keeps two: {kept:?}");
        assert!(
            first <= kept[0] + 1,
            "log starts at {first}, worker {w} kept {kept:?}"
        );
    }
    assert!(first > 1, "old segments were removed");

    // Damage the newest checkpoint of worker 0: it starts from the older one and replays
    // the rest, to the same state.
    let newest = checkpoints(&data_dir, 0)[1];
    let path = data_dir
        .join("checkpoints/0")
        .join(format!("{newest:020}.ckpt"));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    fs::write(&path, bytes).unwrap();
    let (ok, text) = verify(&data_dir);
    assert!(
        !ok && text.contains("DAMAGED") && text.contains(&path.display().to_string()),
        "{text}"
    );
    let recovered = Corral::start_in(corral.crash(), &data_dir, 2, &flags);
    check(&recovered, &model);
    let log = recovered.log();
    assert!(
        log.contains("damaged checkpoint set aside") && log.contains("checksum mismatch"),
        "{log}"
    );
    assert!(path.with_extension("ckpt.damaged").exists());
}

#[test]
fn a_log_past_its_size_limit_forces_checkpoints_and_shrinks() {
    // Checkpoint thresholds far away: only the size limit can trigger them.
    let flags = [
        "--wal-max-bytes",
        "256KiB",
        "--wal-segment-bytes",
        "32KiB",
        "--checkpoint-writes",
        "100000000",
        "--checkpoint-interval",
        "1h",
    ];
    let mut model = Model::new();
    let mut rng = Rng(0x51ce_1234);
    let mut corral = Corral::start(2, &flags);
    let data_dir = corral.data_dir.clone();
    let wal_bytes = || -> u64 {
        fs::read_dir(data_dir.join("wal"))
            .unwrap()
            .filter_map(Result::ok)
            // Retention may remove a segment between the listing and its stat.
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    for _ in 0..10 {
        write_random(&corral, &mut model, &mut rng, 1000);
    }
    corral.wait_until(
        "the log back under its limit",
        Duration::from_secs(20),
        || wal_bytes() <= 256 << 10,
    );
    assert!(!checkpoints(&data_dir, 0).is_empty() && !checkpoints(&data_dir, 1).is_empty());
    check(&corral, &model);
    // What is left is exactly what recovery needs.
    let mut corral = restart(&mut corral, &flags);
    check(&corral, &model);
    assert!(corral.stop(Duration::from_secs(30)).success());
    let (ok, text) = verify(&data_dir);
    assert!(ok, "{text}");
}
