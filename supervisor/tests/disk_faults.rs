//! The disk under a running supervisor: the data dir deleted or replaced (writes stop being
//! acknowledged with a clear error, readiness fails, the exit says so), and a write error
//! that goes away again (an immutable segment: writes are refused, not applied, and resume
//! once the file is writable).

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_tests::{http_get, Corral, TempDir};

/// The unlabelled gauges of a scrape that say whether the log takes writes and whether the
/// supervisor is ready: (`corral_wal_failing`, `corral_wal_restart_required`, `corral_ready`).
fn log_gauges(corral: &Corral) -> (String, String, String) {
    let (status, _, body) = http_get(corral.http_port, "/metrics");
    assert_eq!(status, 200);
    let gauge = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in the scrape"))
    };
    (
        gauge("corral_wal_failing"),
        gauge("corral_wal_restart_required"),
        gauge("corral_ready"),
    )
}

fn gauges(failing: &str, restart: &str, ready: &str) -> (String, String, String) {
    (failing.into(), restart.into(), ready.into())
}

/// SETs `key` until an error reply arrives (closed connections, outcome unknown, are
/// reconnected); returns the error, failing after `timeout`.
fn set_until_refused(corral: &Corral, timeout: Duration) -> String {
    let start = Instant::now();
    let mut con = corral.client();
    let mut i = 0;
    loop {
        assert!(start.elapsed() < timeout, "writes were never refused");
        i += 1;
        match redis::cmd("SET")
            .arg(format!("after{i}"))
            .arg("v")
            .query::<()>(&mut con)
        {
            Ok(()) => {}
            Err(e) if e.is_io_error() || e.is_connection_dropped() => con = corral.client(),
            Err(e) => return e.to_string(),
        }
    }
}

fn moved_away(flags: &[&str], damage: impl FnOnce(&std::path::Path)) {
    let mut corral = Corral::start(1, flags);
    let mut con = corral.client();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    damage(&corral.data_dir);
    let err = set_until_refused(&corral, Duration::from_secs(10));
    assert!(
        err.contains("stopped taking writes") && err.contains("restart required"),
        "{err}"
    );
    // Reads go on from memory; readiness and health say why writes do not.
    let v: i64 = redis::cmd("GET").arg("k7").query(&mut con).unwrap();
    assert_eq!(v, 7);
    let (status, _, body) = http_get(corral.http_port, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("event log failing") && body.contains("restart required"),
        "{body}"
    );
    let (status, _, health) = http_get(corral.http_port, "/health");
    assert_eq!(status, 503, "{health}");
    // The alerts' state gauges: failing, until a restart, not ready (with no traffic).
    assert_eq!(log_gauges(&corral), gauges("1", "1", "0"));
    // A clean stop still says the run was not clean.
    let status = corral.stop(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(
        corral.log().contains("event log moved away"),
        "{}",
        corral.log_tail(20)
    );
}

#[test]
fn a_data_dir_deleted_under_the_supervisor_stops_writes() {
    moved_away(&[], |dir| fs::remove_dir_all(dir).unwrap());
}

#[test]
fn a_data_dir_replaced_under_the_supervisor_stops_writes() {
    // everysec: no sync per write, so the periodic check must catch it.
    moved_away(&["--fsync", "everysec"], |dir| {
        fs::rename(dir, dir.with_extension("old")).unwrap();
        fs::create_dir(dir).unwrap();
    });
}

#[test]
fn an_immutable_segment_refuses_writes_until_it_is_writable_again() {
    let root = TempDir::new("immutable");
    let data_dir = root.path().join("data");
    let mut corral = Corral::start_in(root, &data_dir, 1, &[]);
    let mut con = corral.client();
    let _: () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query(&mut con)
        .unwrap();
    let segment = corral::wal::list_segments(&data_dir.join("wal"))
        .unwrap()
        .pop()
        .unwrap()
        .path;
    /// Makes a file immutable while it lives (even if the test fails, so the temp dir can
    /// be removed).
    struct Immutable(std::path::PathBuf);
    fn chattr(flag: &str, path: &std::path::Path) -> bool {
        Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    }
    impl Drop for Immutable {
        fn drop(&mut self) {
            chattr("-i", &self.0);
        }
    }
    if !chattr("+i", &segment) {
        eprintln!("skipped: chattr +i needs root and a file system that supports it");
        return;
    }
    let immutable = Immutable(segment.clone());
    let refused = (0..5)
        .map(|i| {
            redis::cmd("SET")
                .arg(format!("refused{i}"))
                .arg("x")
                .query::<()>(&mut con)
                .unwrap_err()
                .to_string()
        })
        .collect::<Vec<_>>();
    for e in &refused {
        assert!(
            e.contains("event log write failed (Operation not permitted")
                && e.contains("the write was not applied"),
            "{e}"
        );
    }
    let (status, _, body) = http_get(corral.http_port, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("writes fail") && body.contains("retried with every write"),
        "{body}"
    );
    let v: String = redis::cmd("GET").arg("before").query(&mut con).unwrap();
    assert_eq!(v, "1");
    assert_eq!(log_gauges(&corral), gauges("1", "0", "0"));

    drop(immutable);
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("2")
        .query(&mut con)
        .unwrap();
    let (status, _, body) = http_get(corral.http_port, "/health/ready");
    assert_eq!(status, 200, "{body}");
    assert!(corral.log().contains("event log writable again"));
    assert_eq!(log_gauges(&corral), gauges("0", "0", "1"));

    // After a restart: the acknowledged writes are there, the refused ones never were.
    let data_dir = corral.data_dir.clone();
    let mut corral = {
        assert!(corral.stop(Duration::from_secs(20)).success());
        Corral::start_in(corral.crash(), &data_dir, 1, &[])
    };
    let mut con = corral.client();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["before", "after", "refused0", "refused4"])
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None, None]);
    assert!(corral.stop(Duration::from_secs(20)).success());
}
