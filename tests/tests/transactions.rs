//! Transactions on the real binary: MULTI/EXEC (on one shard or across shards) is one
//! record in the event log, so through kill -9 of a worker and of the supervisor every
//! transaction is applied whole or not at all, and every acknowledged one survives; no
//! reader sees part of one; WATCH loses no update; MSETNX and RENAME stay atomic across
//! shards under contention.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::Write;

use corral_tests::{key_on_shard, multibulk, read_reply, Corral};

/// Transactions that add 1 to each of `keys` (one per shard, plus a second on shard 0),
/// until `stop`: counts the acknowledged ones and the ones sent at all.
fn increment_all(
    url: String,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
) {
    let connect = || {
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .ok()
    };
    let mut con = connect();
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            std::thread::sleep(Duration::from_millis(20));
            con = connect();
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in &keys {
            pipe.cmd("INCR").arg(k);
        }
        sent.fetch_add(1, Ordering::SeqCst);
        match pipe.query::<Vec<i64>>(c) {
            Ok(counts) => {
                // Whole: every key moved to the same count.
                assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
                acked.fetch_add(1, Ordering::SeqCst);
            }
            // Refused (a shard restarting) or of unknown outcome (the connection closed).
            Err(_) => con = connect(),
        }
    }
}

/// SET `key` `value`.
fn set(c: &mut redis::Connection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(c)
        .unwrap();
}

/// WATCH `keys`.
fn watch<K: redis::ToRedisArgs>(c: &mut redis::Connection, keys: &[K]) {
    redis::cmd("WATCH").arg(keys).query::<()>(c).unwrap();
}

fn counts(c: &mut redis::Connection, keys: &[String]) -> Vec<u64> {
    redis::cmd("MGET")
        .arg(keys)
        .query::<Vec<Option<u64>>>(c)
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap_or(0))
        .collect()
}

/// A writer of transactions over `keys` until `stop`, with its counts.
struct Writer {
    keys: Vec<String>,
    acked: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(corral: &Corral, keys: Vec<String>, stop: &Arc<AtomicBool>) -> Self {
        let (acked, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (url, keys, stop) = (corral.url(), keys.clone(), Arc::clone(stop));
            let (acked, sent) = (Arc::clone(&acked), Arc::clone(&sent));
            std::thread::spawn(move || increment_all(url, keys, stop, acked, sent))
        };
        Self {
            keys,
            acked,
            sent,
            thread: Some(thread),
        }
    }

    /// Waits for it to end (after `stop`).
    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    fn wait_acked(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "transactions stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The counts are equal (every transaction whole) and, once stopped, between what was
    /// acknowledged and what was sent.
    fn check(&self, c: &mut redis::Connection, stopped: bool) {
        let now = counts(c, &self.keys);
        assert!(now.windows(2).all(|w| w[0] == w[1]), "{now:?}");
        if stopped {
            let (acked, sent) = (
                self.acked.load(Ordering::SeqCst),
                self.sent.load(Ordering::SeqCst),
            );
            assert!(
                (acked..=sent).contains(&now[0]),
                "{now:?}: acknowledged {acked}, sent {sent}"
            );
        }
    }
}

#[test]
fn transactions_on_one_shard_and_across_shards_survive_kill_9_whole_or_not_at_all() {
    let mut corral = Corral::start(3, &[]);
    let on = |shards: &[u32], tag: &str| -> Vec<String> {
        shards
            .iter()
            .enumerate()
            .map(|(i, &shard)| key_on_shard(shard, 3, &format!("{tag}{i}")))
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = [
        Writer::start(&corral, on(&[0, 1, 2, 0], "across"), &stop),
        // All on the shard whose worker is killed.
        Writer::start(&corral, on(&[1, 1, 1], "one"), &stop),
    ];
    for w in &writers {
        w.wait_acked(200);
    }
    // A worker killed mid-stream: its shard's parts are replayed with the rest.
    corral.kill_worker(1);
    for w in &writers {
        w.wait_acked(w.acked.load(Ordering::SeqCst) + 200);
        w.check(&mut corral.client(), false);
    }
    // The supervisor killed mid-stream too.
    let data_dir = corral.data_dir.clone();
    let root = corral.crash();
    stop.store(true, Ordering::Relaxed);
    for w in &mut writers {
        w.join();
    }
    let corral = Corral::start_in(root, &data_dir, 3, &[]);
    let mut c = corral.client();
    for w in &writers {
        w.check(&mut c, true);
    }
}

#[test]
fn no_reader_sees_part_of_a_transaction() {
    let corral = Corral::start(3, &[]);
    let keys: Vec<String> = (0..3).map(|s| key_on_shard(s, 3, "iso")).collect();
    let (stop, acked, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (url, keys) = (corral.url(), keys.clone());
            let (stop, acked, sent) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&sent));
            std::thread::spawn(move || increment_all(url, keys, stop, acked, sent))
        })
        .collect();
    let mut c = corral.client();
    let (mut snapshots, mut sequences) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline || snapshots < 500 {
        // One MGET is one snapshot: every key at the same count.
        let all = counts(&mut c, &keys);
        assert!(all.windows(2).all(|w| w[0] == w[1]), "MGET saw {all:?}");
        snapshots += 1;
        // Reads one after another, last key first: a transaction seen by a read is seen by
        // every later one, so the counts never go down along the way.
        let mut last = 0;
        for k in keys.iter().rev() {
            let n: Option<u64> = redis::cmd("GET").arg(k).query(&mut c).unwrap();
            let n = n.unwrap_or(0);
            assert!(n >= last, "{k} read {n} after a key read {last}");
            last = n;
        }
        sequences += 1;
        assert!(snapshots < 1_000_000);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        acked.load(Ordering::SeqCst) > 10,
        "the writers made progress"
    );
    assert!(sequences > 0);
    let end = counts(&mut c, &keys);
    assert_eq!(end, vec![acked.load(Ordering::SeqCst); 3]);
    let _ = sent;
}

/// One optimistic increment of every key of `keys` (WATCH, read, MULTI/EXEC), retried until
/// EXEC runs; returns how many tries it took.
fn watched_increment(c: &mut redis::Connection, keys: &[String]) -> u32 {
    for tries in 1.. {
        redis::cmd("WATCH").arg(keys).query::<()>(c).unwrap();
        let now = counts(c, keys);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, n) in keys.iter().zip(&now) {
            pipe.cmd("SET").arg(k).arg(n + 1).ignore();
        }
        // A null reply: a watched key changed, nothing was applied.
        if pipe.query::<Option<()>>(c).unwrap().is_some() {
            return tries;
        }
        assert!(tries < 10_000, "EXEC never ran");
    }
    unreachable!()
}

#[test]
fn watch_makes_read_modify_write_transactions_lose_no_update_across_shards() {
    let corral = Corral::start(3, &[]);
    // Read, then write the values read plus one: only WATCH keeps concurrent ones apart.
    let keys: Vec<String> = (0..3)
        .map(|shard| key_on_shard(shard, 3, &format!("watched{shard}")))
        .collect();
    let (clients, rounds) = (4, 150);
    let aborted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (mut c, keys, aborted) = (corral.client(), keys.clone(), Arc::clone(&aborted));
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let tries = watched_increment(&mut c, &keys);
                    aborted.fetch_add(u64::from(tries - 1), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut c = corral.client();
    assert_eq!(counts(&mut c, &keys), vec![clients * rounds; 3]);
    // Four clients on the same keys: some EXECs must have been aborted, or the test tested
    // nothing.
    assert!(aborted.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_watched_key_that_expires_aborts_exec_and_one_read_after_watch_sees_earlier_writes() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let key = key_on_shard(1, 2, "expiring");
    let other = key_on_shard(0, 2, "other");
    redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .arg("PX")
        .arg(300)
        .query::<()>(&mut c)
        .unwrap();
    watch(&mut c, &[&key]);
    let mut probe = corral.client();
    corral.wait_until("the key expired", Duration::from_secs(10), || {
        redis::cmd("EXISTS")
            .arg(&key)
            .query::<i64>(&mut probe)
            .unwrap()
            == 0
    });
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("SET").arg(&other).arg("x").ignore();
    assert_eq!(pipe.query::<Option<()>>(&mut c).unwrap(), None);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&other)
            .query::<i64>(&mut c)
            .unwrap(),
        0,
        "an aborted EXEC applied nothing"
    );
    // A key without deadline watched, nothing changes: EXEC runs.
    watch(&mut c, &[&other]);
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("SET").arg(&other).arg("y").ignore();
    assert_eq!(pipe.query::<Option<()>>(&mut c).unwrap(), Some(()));
}

#[test]
fn msetnx_across_shards_has_exactly_one_winner() {
    let corral = Corral::start(3, &[]);
    let clients = 4;
    for round in 0..30 {
        let keys: Vec<String> = (0..3)
            .map(|shard| key_on_shard(shard, 3, &format!("nx{round}-{shard}")))
            .collect();
        let racers: Vec<_> = (0..clients)
            .map(|id| {
                let (mut c, keys) = (corral.client(), keys.clone());
                std::thread::spawn(move || {
                    let mut cmd = redis::cmd("MSETNX");
                    for k in &keys {
                        cmd.arg(k).arg(id);
                    }
                    (id, cmd.query::<i64>(&mut c).unwrap())
                })
            })
            .collect();
        let results: Vec<(i32, i64)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<i32> = results.iter().filter(|r| r.1 == 1).map(|r| r.0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let mut c = corral.client();
        let values: Vec<Option<i32>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        assert_eq!(values, vec![Some(winners[0]); 3], "round {round}");
    }
}

#[test]
fn a_key_renamed_back_and_forth_across_shards_is_always_in_exactly_one_place() {
    let corral = Corral::start(2, &[]);
    let a = key_on_shard(0, 2, "bounce");
    let b = key_on_shard(1, 2, "bounce");
    let mut c = corral.client();
    set(&mut c, &a, "v");
    let stop = Arc::new(AtomicBool::new(false));
    let renamed = Arc::new(AtomicU64::new(0));
    // One mover renames on its own, the other inside MULTI/EXEC.
    let movers: Vec<_> = [(a.clone(), b.clone(), false), (b.clone(), a.clone(), true)]
        .into_iter()
        .map(|(from, to, atomic)| {
            let (mut c, stop, renamed) = (corral.client(), Arc::clone(&stop), Arc::clone(&renamed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    if atomic {
                        pipe.atomic();
                    }
                    pipe.cmd("RENAME").arg(&from).arg(&to).ignore();
                    match pipe.query::<()>(&mut c) {
                        Ok(()) => drop(renamed.fetch_add(1, Ordering::Relaxed)),
                        // The other mover has it.
                        Err(e) => assert!(e.to_string().contains("no such key"), "{e}"),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    while renamed.load(Ordering::Relaxed) < 300 {
        assert!(Instant::now() < deadline, "renames stalled");
        let both: Vec<Option<String>> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
        let present: Vec<&String> = both.iter().flatten().collect();
        assert_eq!(present, vec!["v"], "read {reads}: {both:?}");
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for m in movers {
        m.join().unwrap();
    }
    let both: Vec<Option<String>> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(both.iter().flatten().count(), 1, "{both:?}");
}

/// The value of `name` in INFO's `section` (a `cmdstat_` line's text).
fn info_field(c: &mut redis::Connection, section: &str, name: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_owned))
}

#[test]
fn exec_and_the_commands_it_ran_are_counted() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let mut other = corral.client();
    // EXEC behind a pipelined write (its reply owed), then one aborted by a WATCHed key.
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("a").arg("1").ignore();
    pipe.cmd("MULTI").ignore();
    pipe.cmd("INCR").arg("a").ignore();
    pipe.cmd("INCR").arg("b").ignore();
    pipe.cmd("EXEC");
    assert_eq!(pipe.query::<(Vec<i64>,)>(&mut c).unwrap().0, vec![2, 1]);
    watch(&mut c, &["a"]);
    set(&mut other, "a", "5");
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("INCR").arg("a");
    assert_eq!(pipe.query::<Option<(i64,)>>(&mut c).unwrap(), None);
    let exec = info_field(&mut c, "commandstats", "cmdstat_exec").expect("EXEC counted");
    assert!(exec.starts_with("calls=2,"), "{exec}");
    assert!(exec.ends_with("failed_calls=0"), "{exec}");
    let incr = info_field(&mut c, "commandstats", "cmdstat_incr").expect("INCR counted");
    assert!(incr.starts_with("calls=2,"), "{incr}");
    let watch = info_field(&mut c, "commandstats", "cmdstat_watch").expect("WATCH counted");
    assert!(watch.starts_with("calls=1,"), "{watch}");
}

#[test]
fn what_multi_queues_and_watch_holds_is_bounded_by_the_request_limit() {
    let corral = Corral::start(1, &["--max-request-bytes", "64KiB"]);
    let mut c = corral.client();
    // PINGs of 4 bytes each: the vectors that hold them count too, or a client could queue
    // a dozen times the limit.
    let mut raw = corral.raw();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut input = multibulk(&[b"MULTI"]);
    for _ in 0..2000 {
        input.extend_from_slice(&multibulk(&[b"PING"]));
    }
    input.extend_from_slice(&multibulk(&[b"EXEC"]));
    raw.write_all(&input).unwrap();
    let mut reader = std::io::BufReader::new(raw.try_clone().unwrap());
    let replies: Vec<Vec<u8>> = (0..2002)
        .map(|_| read_reply(&mut reader).unwrap())
        .collect();
    let queued = replies
        .iter()
        .filter(|r| r.as_slice() == b"+QUEUED\r\n")
        .count();
    assert!((500..2000).contains(&queued), "{queued} queued");
    assert!(
        replies[2001].starts_with(b"-EXECABORT"),
        "{}",
        String::from_utf8_lossy(&replies[2001])
    );
    // WATCH: the keys it holds within the limit too.
    let big = "k".repeat(40 << 10);
    watch(&mut c, &[&big]);
    let e = redis::cmd("WATCH")
        .arg(format!("{big}2"))
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("watches at most"), "{e}");
    redis::cmd("UNWATCH").query::<()>(&mut c).unwrap();
    watch(&mut c, &[format!("{big}2")]);
}

/// `corral_wal_records_total` from /metrics.
fn records_logged(corral: &Corral) -> f64 {
    let (status, _, body) = corral_tests::http_get(corral.http_port, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("corral_wal_records_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("corral_wal_records_total")
}

#[test]
fn reads_at_a_place_in_the_log_write_no_record() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let (a, b) = (key_on_shard(0, 2, "r"), key_on_shard(1, 2, "r"));
    set(&mut c, &a, "1");
    let before = records_logged(&corral);
    for _ in 0..20 {
        watch(&mut c, &[&a, &b]);
        // EXEC of reads only, with the WATCHed keys checked.
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("MGET").arg(&a).arg(&b);
        let (got,): (Vec<Option<String>>,) = pipe.query(&mut c).unwrap();
        assert_eq!(got, vec![Some("1".to_owned()), None]);
        // MSETNX that finds a key: reads, then no write.
        let n: i64 = redis::cmd("MSETNX")
            .arg(&b)
            .arg("x")
            .arg(&a)
            .arg("y")
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 0);
    }
    assert_eq!(records_logged(&corral), before);
}

#[test]
fn an_exec_that_reads_first_answers_null_when_a_watched_key_changed_and_applies_nothing() {
    let corral = Corral::start(2, &[]);
    let (mut c, mut other) = (corral.client(), corral.client());
    let (a, b, w) = (
        key_on_shard(0, 2, "ra"),
        key_on_shard(1, 2, "rb"),
        key_on_shard(1, 2, "rw"),
    );
    set(&mut c, &a, "v");
    watch(&mut c, &[&w]);
    set(&mut other, &w, "changed");
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("RENAME").arg(&a).arg(&b).ignore();
    assert_eq!(pipe.query::<Option<()>>(&mut c).unwrap(), None);
    let both: Vec<Option<String>> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(both, vec![Some("v".to_owned()), None]);
    // Unwatched by that EXEC: the same transaction runs now.
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("RENAME").arg(&a).arg(&b).ignore();
    assert_eq!(pipe.query::<Option<()>>(&mut c).unwrap(), Some(()));
    let both: Vec<Option<String>> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(both, vec![None, Some("v".to_owned())]);
}

#[test]
fn flushall_aborts_exec_only_for_a_watched_key_that_existed() {
    let corral = Corral::start(2, &[]);
    let (mut c, mut other) = (corral.client(), corral.client());
    let (present, missing) = (key_on_shard(0, 2, "fp"), key_on_shard(1, 2, "fm"));
    let exec = |c: &mut redis::Connection| {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("PING").ignore();
        pipe.query::<Option<()>>(c).unwrap()
    };
    set(&mut c, &present, "v");
    watch(&mut c, &[&missing]);
    redis::cmd("FLUSHALL").query::<()>(&mut other).unwrap();
    assert_eq!(exec(&mut c), Some(()), "a missing key stays missing");
    set(&mut c, &present, "v");
    watch(&mut c, &[&present, &missing]);
    redis::cmd("FLUSHALL").query::<()>(&mut other).unwrap();
    assert_eq!(exec(&mut c), None, "FLUSHALL removed a watched key");
}
