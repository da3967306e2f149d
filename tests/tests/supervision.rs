//! Supervision on the real binary: kill -9 of a worker, crash loops, a stopped worker,
//! graceful shutdown, and sweeping what a killed supervisor left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_tests::{alive, key_on_shard, named_segments, segment_holders, Corral};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn set(c: &mut redis::Connection, k: &str, v: &str) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(k).arg(v).query(c)
}

fn get(c: &mut redis::Connection, k: &str) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(k).query(c)
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
}

#[test]
fn killed_worker_is_restarted_and_other_shards_keep_serving() {
    let corral = Corral::start(3, &[]);
    let mut c = corral.client();
    let keys: Vec<String> = (0..3).map(|s| key_on_shard(s, 3, "kill")).collect();
    for k in &keys {
        set(&mut c, k, "before").unwrap();
    }
    let before = corral.shards();
    // Workers are named for ps, top and pgrep (not after the descriptor they ran from).
    for shard in &before {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", shard.pid)).unwrap();
        assert_eq!(comm.trim_end(), "corral-worker");
    }
    sigkill(before[1].pid);
    // The other shards answer throughout.
    for _ in 0..50 {
        assert_eq!(get(&mut c, &keys[0]).unwrap().as_deref(), Some("before"));
        assert_eq!(get(&mut c, &keys[2]).unwrap().as_deref(), Some("before"));
    }
    // Until the lifecycle thread notices the death, INFO still shows the old worker ready.
    corral.wait_until("shard 1 serving again", Duration::from_secs(10), || {
        let now = &corral.shards()[1];
        now.generation > before[1].generation
            && now.state == "ready"
            && set(&mut corral.client(), &keys[1], "after").is_ok()
    });
    let after = corral.shards();
    assert_ne!(after[1].pid, before[1].pid, "a new worker process");
    assert!(!alive(before[1].pid));
    assert_eq!(after[1].generation, before[1].generation + 1);
    assert_eq!(after[1].restarts, 1);
    assert_eq!((after[0].pid, after[2].pid), (before[0].pid, before[2].pid));
    assert_eq!(get(&mut c, &keys[1]).unwrap().as_deref(), Some("after"));
    let log = corral.log();
    assert!(
        log.contains("\"msg\":\"worker exited\"") && log.contains("\"signal\":9"),
        "{log}"
    );
}

#[test]
fn crash_loop_parks_the_shard_and_the_probe_brings_it_back() {
    let corral = Corral::start(
        2,
        &[
            "--restart-intensity",
            "3",
            "--restart-window",
            "30s",
            "--park-retry",
            "2s",
        ],
    );
    let mut c = corral.client();
    let parked_key = key_on_shard(0, 2, "park");
    let healthy_key = key_on_shard(1, 2, "park");
    // Kill every new worker of shard 0 as soon as it appears: a real crash loop.
    let mut killed = 0;
    let start = Instant::now();
    while corral.shards()[0].state != "parked" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            corral.log_tail(30)
        );
        let s = &corral.shards()[0];
        if s.state == "ready" && alive(s.pid) {
            sigkill(s.pid);
            killed += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(killed >= 3);
    let t = Instant::now();
    let err = set(&mut c, &parked_key, "x").unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_millis(500), "fails fast");
    assert!(err.contains("shard 0 is parked"), "{err}");
    set(&mut c, &healthy_key, "fine").unwrap();
    assert!(corral.log().contains("\"msg\":\"shard parked\""));
    // The slow retry probes it; left alone, the probe succeeds.
    corral.wait_until("probe restart", Duration::from_secs(10), || {
        corral.shards()[0].state == "ready"
    });
    set(&mut c, &parked_key, "back").unwrap();
}

#[test]
fn stopped_worker_is_caught_by_the_watchdog() {
    let corral = Corral::start(2, &["--watchdog-timeout", "500ms"]);
    let before = corral.shards();
    let stopped = before[0].pid;
    kill(Pid::from_raw(stopped as i32), Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    corral.wait_until("watchdog restart", Duration::from_secs(10), || {
        let s = &corral.shards()[0];
        s.pid != stopped && s.state == "ready"
    });
    let detected = t.elapsed();
    assert!(!alive(stopped), "the stopped worker was killed");
    assert!(
        detected >= Duration::from_millis(400),
        "not before the timeout: {detected:?}"
    );
    assert!(corral.log().contains("watchdog: heartbeat stalled"));
    assert_eq!(corral.shards()[1].pid, before[1].pid);
}

#[test]
fn sigterm_drains_and_leaves_nothing_behind() {
    let mut corral = Corral::start(2, &[]);
    let instance = corral.instance();
    let pids: Vec<u32> = corral.shards().iter().map(|s| s.pid).collect();
    // The segments are held by the supervisor and its workers, and named nowhere.
    let mut holders = segment_holders(&instance);
    holders.sort_unstable();
    let mut expected = pids.clone();
    expected.push(corral.pid());
    expected.sort_unstable();
    assert_eq!(holders, expected);
    assert!(
        named_segments(&instance).is_empty(),
        "{:?}",
        named_segments(&instance)
    );
    // Writers in flight while the signal arrives: every acknowledged write is applied.
    let port = corral.port;
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            for i in 0..1_000_000u64 {
                if redis::cmd("SET")
                    .arg(format!("w{i}"))
                    .arg(i)
                    .query::<()>(&mut c)
                    .is_err()
                {
                    break;
                }
                acked.store(i + 1, Ordering::Release);
            }
        })
    };
    corral.wait_until("writes flowing", Duration::from_secs(20), || {
        acked.load(Ordering::Acquire) >= 500
    });
    let status = corral.stop(Duration::from_secs(20));
    writer.join().unwrap();
    let acked = acked.load(Ordering::Acquire);
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        corral.log_tail(20)
    );
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived");
    }
    assert!(
        segment_holders(&instance).is_empty(),
        "segments left behind"
    );
    let log = corral.log();
    for phase in [
        "shutdown: stop accepting",
        "shutdown: draining rings",
        "shutdown complete",
    ] {
        assert!(log.contains(phase), "missing {phase}");
    }
    for line in log.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON line: {line}"
        );
    }
    // Started again on the same data dir: each of the `acked` writes is there.
    let data_dir = corral.data_dir.clone();
    let mut again = Corral::start_in(corral.crash(), &data_dir, 2, &[]);
    let mut c = again.client();
    for chunk in (0..acked).collect::<Vec<_>>().chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("w{i}")).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for (i, v) in chunk.iter().zip(values) {
            assert_eq!(v, Some(*i), "acknowledged write w{i} (of {acked}) lost");
        }
    }
    assert!(again.stop(Duration::from_secs(20)).success());
}

#[test]
fn a_killed_supervisor_leaves_no_shared_memory_behind() {
    let mut first = Corral::start(2, &[]);
    let instance = first.instance();
    let data_dir = first.data_dir.clone();
    let workers: Vec<u32> = first.shards().iter().map(|s| s.pid).collect();
    let root = first.crash();
    // Workers die with their supervisor (PR_SET_PDEATHSIG), and with the last holder the
    // kernel frees the segments: nothing to sweep.
    first.wait_until("the workers gone", Duration::from_secs(5), || {
        workers.iter().all(|&p| !alive(p))
    });
    assert!(segment_holders(&instance).is_empty());
    assert!(
        named_segments(&instance).is_empty(),
        "{:?}",
        named_segments(&instance)
    );
    let second = Corral::start_in(root, &data_dir, 2, &[]);
    assert_eq!(second.instance(), instance);
    let mut c = second.client();
    set(&mut c, "k", "v").unwrap();
}

#[test]
fn restarted_supervisor_remembers_restarts_crash_windows_and_parked_shards() {
    let flags = [
        "--restart-intensity",
        "3",
        "--restart-window",
        "60s",
        "--park-retry",
        "60s",
    ];
    let mut first = Corral::start(2, &flags);
    let data_dir = first.data_dir.clone();
    // Crash shard 0 until it parks.
    let start = Instant::now();
    while first.shards()[0].state != "parked" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            first.log_tail(30)
        );
        let s = &first.shards()[0];
        if s.state == "ready" && alive(s.pid) {
            sigkill(s.pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let restarts = first.shards()[0].restarts;
    assert!(restarts >= 3);
    // kill -9 of the supervisor; the next one reads its history from the event log. The
    // parked shard is probed at once (the operator restarted it for a reason).
    let second = Corral::start_in(first.crash(), &data_dir, 2, &flags);
    let shards = second.shards();
    assert_eq!(shards[0].restarts, restarts);
    assert_eq!(shards[1].restarts, 0);
    let log = second.log();
    assert!(
        log.contains("\"msg\":\"worker history resumed from the event log\"")
            && log.contains("\"parked\":true"),
        "{log}"
    );
    // Its recent crashes still count: one more crash within the window parks it again.
    sigkill(shards[0].pid);
    second.wait_until("parked again", Duration::from_secs(10), || {
        second.shards()[0].state == "parked"
    });
    assert_eq!(second.shards()[0].restarts, restarts + 1);
}

/// HUP, USR1 and USR2 (log rotation, service managers) are logged and ignored: the
/// supervisor keeps serving and still stops cleanly on TERM.
#[test]
fn hup_usr1_and_usr2_are_logged_and_ignored() {
    let mut corral = Corral::start(2, &[]);
    let mut c = corral.client();
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGHUP] {
        corral.signal(signal);
        let name = format!("{signal:?}");
        corral.wait_until("the signal logged", Duration::from_secs(10), || {
            corral
                .log()
                .lines()
                .any(|l| l.contains("\"msg\":\"signal ignored\"") && l.contains(&name))
        });
        set(&mut c, "k", &name).unwrap();
        assert_eq!(get(&mut c, "k").unwrap().as_deref(), Some(name.as_str()));
    }
    assert!(alive(corral.pid()));
    assert!(corral.stop(Duration::from_secs(20)).success());
}

/// systemd's default stop sends SIGTERM to every process of the unit at once: the workers
/// leave it to their supervisor, which drains and stops them; nothing counts as a crash and
/// nothing is respawned.
#[test]
fn a_group_wide_sigterm_is_one_clean_stop() {
    let mut corral = Corral::start(3, &[]);
    let mut c = corral.client();
    set(&mut c, "k", "v").unwrap();
    let workers: Vec<u32> = corral.shards().iter().map(|s| s.pid).collect();
    for pid in workers.iter().copied().chain([corral.pid()]) {
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    }
    let status = corral.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", corral.log_tail(30));
    let log = corral.log();
    let spawned = log.matches("\"msg\":\"worker spawned\"").count();
    assert_eq!(spawned, 3, "no respawn during shutdown:\n{log}");
    assert!(
        !log.contains("\"expected\":false"),
        "no crash counted:\n{log}"
    );
    assert!(log.contains("\"msg\":\"worker stopped\""), "{log}");
    for pid in workers {
        assert!(!alive(pid));
    }
}
