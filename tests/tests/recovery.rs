//! Crash recovery on the real binary: `kill -9` of workers, and of the supervisor itself,
//! at random moments under concurrent write load. Every write a client saw acknowledged
//! must be there afterwards with the right value, and each shard's digest must equal the
//! one computed from an independent model of the acknowledged writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_tests::{shard_of, Corral};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shm_protocol::hash::pair_digest;

/// Small, seedable PRNG (xorshift64*), so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let seed = std::env::var("CORRAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("seed {seed} (set CORRAL_TEST_SEED to replay)");
    seed
}

/// What the clients know: the value of every key after the writes acknowledged to them.
type Model = HashMap<String, Option<String>>;

/// A write whose reply never came (the connection died with the supervisor): the key holds
/// either value.
#[derive(Debug)]
struct Uncertain {
    key: String,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Debug)]
struct WriterEnd {
    acknowledged: u64,
    refused: u64,
    uncertain: Option<Uncertain>,
}

/// One client writing its own keys until `stop`: SET and DEL on string keys, INCRBY on
/// counters. Each acknowledged reply is checked against the model (an INCRBY must return
/// the model's value plus the increment, a DEL must find exactly what the model holds).
fn writer(url: &str, id: usize, seed: u64, model: &Mutex<Model>, stop: &AtomicBool) -> WriterEnd {
    let mut rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(10)))
        .expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut end = WriterEnd {
        acknowledged: 0,
        refused: 0,
        uncertain: None,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = rng.below(40);
        let (key, cmd, after) = {
            let m = model.lock().unwrap();
            if k < 20 {
                let key = format!("s:{id}:{k}");
                if rng.below(10) < 7 {
                    let value = format!("v{id}-{n}");
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&key).arg(&value);
                    (key, cmd, Some(value))
                } else {
                    let mut cmd = redis::cmd("DEL");
                    cmd.arg(&key);
                    (key, cmd, None)
                }
            } else {
                let key = format!("c:{id}:{k}");
                let delta = rng.below(26) as i64 - 5;
                let now: i64 = m
                    .get(&key)
                    .cloned()
                    .flatten()
                    .map_or(0, |v| v.parse().unwrap());
                let mut cmd = redis::cmd("INCRBY");
                cmd.arg(&key).arg(delta);
                (key, cmd, Some((now + delta).to_string()))
            }
        };
        let before = model.lock().unwrap().get(&key).cloned().flatten();
        match cmd.query::<redis::Value>(&mut con) {
            Ok(reply) => {
                match (&reply, key.starts_with("c:"), key.starts_with("s:")) {
                    (redis::Value::Int(v), true, _) => {
                        assert_eq!(Some(v.to_string()), after, "INCRBY {key} (seed {seed})");
                    }
                    (redis::Value::Int(v), _, true) => {
                        assert_eq!(*v, i64::from(before.is_some()), "DEL {key} (seed {seed})");
                    }
                    (redis::Value::Okay, _, true) => {}
                    other => panic!("unexpected reply {other:?} for {key}"),
                }
                model.lock().unwrap().insert(key, after);
                end.acknowledged += 1;
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                end.uncertain = Some(Uncertain { key, before, after });
                return end;
            }
            Err(e) => {
                // The one refusal allowed: the shard is restarting and its queue is full;
                // such a write is refused before it is logged.
                let text = e.to_string();
                assert!(
                    text.contains("TRYAGAIN") && text.contains("is restarting"),
                    "write {key} failed: {text} (seed {seed})"
                );
                end.refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    end
}

/// Runs `writers` clients against `corral` while `chaos` runs, then stops them.
fn under_load(
    url: &str,
    writers: usize,
    seed: u64,
    model: &Arc<Mutex<Model>>,
    chaos: impl FnOnce(),
) -> Vec<WriterEnd> {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..writers)
        .map(|id| {
            let (url, model, stop) = (url.to_owned(), Arc::clone(model), Arc::clone(&stop));
            std::thread::spawn(move || writer(&url, id, seed, &model, &stop))
        })
        .collect();
    chaos();
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Checks every key of the model, the key count and each shard's digest.
fn verify(corral: &Corral, model: &Model, seed: u64) {
    let mut c = corral.client();
    let mut digests = vec![0u64; corral.workers as usize];
    let mut keys = 0;
    for (key, want) in model {
        let got: Option<String> = redis::cmd("GET")
            .arg(key)
            .query(&mut c)
            .unwrap_or_else(|e| {
                panic!(
                    "GET {key}: {e} (seed {seed}); log:\n{}",
                    corral.log_tail(30)
                )
            });
        assert_eq!(&got, want, "key {key} (seed {seed})");
        if let Some(v) = want {
            keys += 1;
            let shard = shard_of(key.as_bytes(), corral.workers) as usize;
            digests[shard] = digests[shard].wrapping_add(pair_digest(key.as_bytes(), v.as_bytes()));
        }
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, keys, "DBSIZE (seed {seed})");
    for (i, shard) in corral.shards().iter().enumerate() {
        assert_eq!(
            shard.digest, digests[i],
            "digest of shard {i} (seed {seed}): {shard:?}"
        );
    }
}

const CHAOS_FLAGS: &[&str] = &[
    "--restart-intensity",
    "1000",
    "--restart-backoff-initial",
    "1ms",
    "--restart-backoff-max",
    "20ms",
];

#[test]
fn workers_killed_at_random_moments_lose_no_acknowledged_write() {
    let seed = seed();
    let corral = Corral::start(3, CHAOS_FLAGS);
    let model = Arc::new(Mutex::new(Model::new()));
    let mut rng = Rng::new(seed);
    let mut killed = std::collections::HashSet::new();
    let ends = under_load(&corral.url(), 6, seed, &model, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(10 + rng.below(120)));
            let shards = corral.shards();
            let i = rng.below(shards.len() as u64) as usize;
            let victim = &shards[i];
            // Any moment: serving, replaying, or just spawned (but each generation once).
            if victim.pid != 0
                && killed.insert((i, victim.generation))
                && kill(Pid::from_raw(victim.pid as i32), Signal::SIGKILL).is_err()
            {
                killed.remove(&(i, victim.generation));
            }
        }
    });
    let kills = killed.len() as u64;
    // Every killed generation replaced (a SIGKILL lands a moment after it is sent).
    corral.wait_until("every shard ready again", Duration::from_secs(30), || {
        corral.try_shards().is_some_and(|s| {
            s.iter()
                .enumerate()
                .all(|(i, info)| info.state == "ready" && !killed.contains(&(i, info.generation)))
        })
    });
    let acknowledged: u64 = ends.iter().map(|e| e.acknowledged).sum();
    eprintln!(
        "{kills} kills, {acknowledged} acknowledged writes, {} refused",
        ends.iter().map(|e| e.refused).sum::<u64>()
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(
        acknowledged >= 500,
        "only {acknowledged} writes acknowledged"
    );
    assert!(ends.iter().all(|e| e.uncertain.is_none()), "{ends:?}");
    let restarts: u64 = corral.shards().iter().map(|s| s.restarts).sum();
    assert!(restarts >= kills, "{restarts} restarts for {kills} kills");
    verify(&corral, &model.lock().unwrap(), seed);
}

#[test]
fn supervisor_killed_under_load_restarts_with_every_acknowledged_write() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut corral = Corral::start(2, &[]);
    let data_dir = corral.data_dir.clone();
    let model = Arc::new(Mutex::new(Model::new()));
    for round in 0..3 {
        let pause = Duration::from_millis(300 + rng.below(700));
        let mut root = None;
        let ends = under_load(&corral.url(), 4, seed ^ round, &model, || {
            std::thread::sleep(pause);
            root = Some(corral.crash());
        });
        // A write in flight when the supervisor died may or may not have been logged.
        {
            let restarted = Corral::start_in(root.unwrap(), &data_dir, 2, &[]);
            let mut c = restarted.client();
            let mut m = model.lock().unwrap();
            for u in ends.iter().filter_map(|e| e.uncertain.as_ref()) {
                let got: Option<String> = redis::cmd("GET").arg(&u.key).query(&mut c).unwrap();
                assert!(
                    got == u.before || got == u.after,
                    "{}: {got:?} is neither {:?} nor {:?} (seed {seed})",
                    u.key,
                    u.before,
                    u.after
                );
                m.insert(u.key.clone(), got);
            }
            let acknowledged: u64 = ends.iter().map(|e| e.acknowledged).sum();
            eprintln!("round {round}: {acknowledged} acknowledged before the crash");
            assert!(acknowledged > 0);
            verify(&restarted, &m, seed);
            corral = restarted;
        }
    }
}
