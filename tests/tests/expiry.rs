//! Expiry on the real binary: expired keys are never read, are removed by the sweep and
//! counted in INFO and /metrics; deadlines come back exactly after kill -9 of a worker and
//! of the supervisor (from checkpoints and from the event log), and a key that expired
//! never comes back.

use std::time::Duration;

use corral_tests::{http_get, key_on_shard, Corral};

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let text: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// The sum over workers of a per-worker metric.
fn metric_sum(corral: &Corral, family: &str) -> f64 {
    let (_, _, body) = http_get(corral.http_port, "/metrics");
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn expired_keys_are_never_read_then_swept_and_counted() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let mut pipe = redis::pipe();
    for i in 0..400 {
        pipe.cmd("SET")
            .arg(format!("short:{i}"))
            .arg("v")
            .arg("PX")
            .arg(300)
            .ignore();
    }
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("plain:{i}")).arg("v").ignore();
    }
    let set_at = unix_ms();
    let () = pipe.query(&mut c).unwrap();
    let keyspace = info_field(&mut c, "keyspace", "db0").unwrap();
    if unix_ms() < set_at + 300 {
        assert_eq!(keyspace, "keys=410,expires=400,avg_ttl=0");
    }
    // Once the deadline has come, no read sees the keys, swept yet or not. (The server
    // gave them their deadlines at the time it read them, later than `set_at` under load.)
    let deadline: u64 = ["short:0", "short:399"]
        .iter()
        .map(|k| {
            redis::cmd("PEXPIRETIME")
                .arg(k)
                .query::<u64>(&mut c)
                .unwrap()
        })
        .max()
        .unwrap();
    corral.wait_until("the deadline", Duration::from_secs(5), || {
        unix_ms() > deadline
    });
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["short:0", "short:199", "short:399", "plain:0"])
        .query(&mut c)
        .unwrap();
    assert_eq!(got, [None, None, None, Some("v".to_string())]);
    let exists: i64 = redis::cmd("EXISTS").arg("short:7").query(&mut c).unwrap();
    assert_eq!(exists, 0);
    let ttl: i64 = redis::cmd("TTL").arg("short:8").query(&mut c).unwrap();
    assert_eq!(ttl, -2);
    // The sweep removes them without anyone touching them again.
    corral.wait_until(
        "the sweep removed every key",
        Duration::from_secs(15),
        || redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap() == 10,
    );
    assert_eq!(
        info_field(&mut c, "stats", "expired_keys").as_deref(),
        Some("400")
    );
    assert_eq!(
        info_field(&mut c, "keyspace", "db0").as_deref(),
        Some("keys=10,expires=0,avg_ttl=0")
    );
    assert_eq!(
        metric_sum(&corral, "corral_worker_expired_keys_total"),
        400.0
    );
    assert_eq!(metric_sum(&corral, "corral_worker_expiring_keys"), 0.0);
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    assert_eq!(
        info_field(&mut c, "stats", "expired_keys").as_deref(),
        Some("0")
    );
}

/// What a key should look like: its value and deadline (Unix ms; 0: none).
struct Expect {
    key: String,
    value: &'static str,
    deadline: u64,
}

/// Checks every key against what it should be at the time it is read: a key whose
/// deadline came before the read is absent, one whose deadline is after it is present
/// with that exact deadline (a read racing its own deadline may see either).
fn check(c: &mut redis::Connection, keys: &[Expect]) {
    for e in keys {
        let before = unix_ms();
        let (value, at): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&e.key)
            .cmd("PEXPIRETIME")
            .arg(&e.key)
            .query(c)
            .unwrap();
        let after = unix_ms();
        if e.deadline != 0 && e.deadline <= before {
            assert_eq!(
                (value, at),
                (None, -2),
                "{} expired at {}",
                e.key,
                e.deadline
            );
        } else if e.deadline == 0 || e.deadline > after {
            let want = if e.deadline == 0 {
                -1
            } else {
                e.deadline as i64
            };
            assert_eq!(
                (value.as_deref(), at),
                (Some(e.value), want),
                "{} (deadline {})",
                e.key,
                e.deadline
            );
        }
    }
}

#[test]
fn deadlines_survive_kill_9_exactly_and_an_expired_key_never_comes_back() {
    let mut corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let key = |shard, tag| key_on_shard(shard, 2, tag);
    let soon = unix_ms() + 300;
    let later = unix_ms() + 6_000;
    let far = 4_102_444_800_000;
    let mut keys = vec![
        Expect {
            key: key(0, "soon"),
            value: "a",
            deadline: soon,
        },
        Expect {
            key: key(0, "later"),
            value: "b",
            deadline: later,
        },
        Expect {
            key: key(1, "far"),
            value: "c",
            deadline: far,
        },
        Expect {
            key: key(1, "plain"),
            value: "d",
            deadline: 0,
        },
        Expect {
            key: key(0, "persisted"),
            value: "e",
            deadline: 0,
        },
        Expect {
            key: key(1, "moved"),
            value: "f",
            deadline: far + 5,
        },
    ];
    for e in &keys[..4] {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&e.key).arg(e.value);
        if e.deadline != 0 {
            cmd.arg("PXAT").arg(e.deadline);
        }
        let () = cmd.query(&mut c).unwrap();
    }
    let () = redis::cmd("SET")
        .arg(&keys[4].key)
        .arg("e")
        .arg("EX")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&keys[5].key)
        .arg("f")
        .arg("EXAT")
        .arg(far / 1000)
        .query(&mut c)
        .unwrap();
    // The checkpoints hold these deadlines; the changes after them are in the log only.
    let () = redis::cmd("SAVE").query(&mut c).unwrap();
    let persisted: i64 = redis::cmd("PERSIST")
        .arg(&keys[4].key)
        .query(&mut c)
        .unwrap();
    let moved: i64 = redis::cmd("PEXPIREAT")
        .arg(&keys[5].key)
        .arg(far + 5)
        .query(&mut c)
        .unwrap();
    assert_eq!((persisted, moved), (1, 1));
    check(&mut c, &keys);

    // "soon" expires; kill -9 shard 0's worker: its replay must not bring it back.
    corral.wait_until("soon's deadline", Duration::from_secs(5), || {
        unix_ms() > soon
    });
    check(&mut c, &keys);
    corral.kill_worker(0);
    let mut c = corral.client();
    check(&mut c, &keys);

    // The whole supervisor killed, restarted on its data dir: the same.
    let data_dir = corral.data_dir.clone();
    let mut corral = Corral::start_in(corral.crash(), &data_dir, 2, &[]);
    let mut c = corral.client();
    check(&mut c, &keys);

    // "later" expires while the supervisor runs; it stays gone through another crash.
    corral.wait_until("later's deadline", Duration::from_secs(15), || {
        unix_ms() > later
    });
    check(&mut c, &keys);
    corral.wait_until("the sweep removed both", Duration::from_secs(15), || {
        redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap() == 4
    });
    let corral = Corral::start_in(corral.crash(), &data_dir, 2, &[]);
    let mut c = corral.client();
    check(&mut c, &keys);
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, 4, "replay removed the swept keys again");
    keys.retain(|e| e.deadline == 0 || e.deadline > unix_ms());
    assert_eq!(keys.len(), 4);
}
