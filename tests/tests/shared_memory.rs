//! Shared memory and worker starts that nothing outside can break: segments are memfds, so
//! a container's small `/dev/shm` does not bound them (a 16 MiB one here, in a private mount
//! namespace: needs root and `unshare`, as `.ci/run` has); workers are started from the
//! supervisor's own executable held open since start-up, so replacing or removing the binary
//! in place (an upgrade by `mv`) does not stop restarts; and a worker that cannot be started
//! counts as a crash: backoff, then the shard parks with the reason, and comes back once it
//! can be started again.

use std::process::Command;
use std::time::Duration;

use corral_tests::{corral_bin, http_get, Corral, TempDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

#[test]
fn a_small_dev_shm_does_not_bound_the_shards() {
    let private_mount = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !private_mount {
        corral_tests::cannot_run("needs root and unshare for a private mount namespace");
        return;
    }
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=16m tmpfs /dev/shm && exec \"$0\" \"$@\"")
        .arg(corral_bin());
    let root = TempDir::new("devshm");
    let data_dir = root.path().join("data");
    let corral = Corral::start_with(command, root, &data_dir, 2, &[]);
    // 48 MiB of values, three times what that /dev/shm holds.
    let mut c = corral.client();
    let value = vec![b'v'; 1 << 20];
    for i in 0..48 {
        let _: () = redis::cmd("SET")
            .arg(format!("big{i}"))
            .arg(&value)
            .query(&mut c)
            .unwrap();
    }
    corral.kill_worker(0);
    corral.kill_worker(1);
    let mut c = corral.client();
    for i in [0, 17, 47] {
        let got: Vec<u8> = redis::cmd("GET")
            .arg(format!("big{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(got.len(), value.len());
    }
}

#[test]
fn a_binary_replaced_or_removed_in_place_still_restarts_workers() {
    let root = TempDir::new("upgrade");
    let bin_dir = root.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let binary = bin_dir.join("corral");
    std::fs::copy(corral_bin(), &binary).unwrap();
    let data_dir = root.path().join("data");
    let corral = Corral::start_with(Command::new(&binary), root, &data_dir, 2, &[]);
    let mut c = corral.client();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();

    // An upgrade by mv: another program renamed over the binary.
    let other = bin_dir.join("corral.new");
    std::fs::write(&other, "#!/bin/sh\nexit 3\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::rename(&other, &binary).unwrap();
    corral.kill_worker(0);
    // The binary gone altogether.
    std::fs::remove_file(&binary).unwrap();
    corral.kill_worker(1);

    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut corral.client())
        .unwrap();
    assert_eq!(v, "v");
    let log = corral.log();
    assert!(!log.contains("cannot spawn"), "{log}");
    // The new workers are the running version (the replacement would have exited 3).
    assert!(!log.contains("\"code\":3"), "{log}");
}

/// The lowest descriptor number process `pid` does not use: with `RLIMIT_NOFILE` there,
/// it can open no new descriptor.
fn lowest_free_fd(pid: u32) -> u64 {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// Sets the soft descriptor limit of `pid` (the hard one stays).
fn prlimit_nofile(pid: u32, soft: u64) -> bool {
    Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={soft}:"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The soft descriptor limit of `pid`.
fn nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap()
}

#[test]
fn a_worker_that_cannot_be_started_counts_as_a_crash_and_parks_the_shard() {
    let corral = Corral::start(
        1,
        &[
            "--restart-intensity",
            "3",
            "--restart-backoff-initial",
            "10ms",
            "--park-retry",
            "3s",
        ],
    );
    let supervisor = corral.pid();
    let worker = corral.shards()[0].pid;
    let limit = nofile(supervisor);
    // No descriptor left for the supervisor: starting a worker fails (it needs some).
    if !prlimit_nofile(supervisor, lowest_free_fd(supervisor)) {
        corral_tests::cannot_run("prlimit cannot set the supervisor's descriptor limit");
        return;
    }
    sigkill(worker);
    corral.wait_until("the shard parked", Duration::from_secs(20), || {
        corral
            .log()
            .lines()
            .any(|l| l.contains("\"msg\":\"shard parked\"") && l.contains("spawn: "))
    });
    let log = corral.log();
    let failures = log.matches("\"msg\":\"cannot spawn worker\"").count();
    assert!(
        failures >= 2,
        "{failures} failed spawns before parking:\n{log}"
    );
    assert!(
        log.contains("\"version\":\"") && log.contains("\"exe\":\""),
        "{log}"
    );
    // Descriptors again: the parked shard says why, and the probe brings it back.
    assert!(prlimit_nofile(supervisor, limit));
    let (status, _, body) = http_get(corral.http_port, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not started: spawn"), "{body}");
    corral.wait_until(
        "the probe recovered the shard",
        Duration::from_secs(20),
        || corral.try_shards().is_some_and(|s| s[0].state == "ready"),
    );
    let (_, _, metrics) = http_get(corral.http_port, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("corral_worker_restarts_total{")
                && l.contains("reason=\"spawn_failed\"")),
        "{metrics}"
    );
}
