//! An error reply means "not applied": through a kill storm that parks a shard, every
//! INCR a client sent is either acknowledged (and counted exactly once), refused with an
//! error (and never applied, not even after the shard recovers), or, where nobody can know
//! its outcome, answered by closing the connection instead of with an error.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_tests::{alive, Corral};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What one sequential INCR client saw.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: i64,
    refused: i64,
    unknown: i64,
    errors: Vec<String>,
}

fn incr_until(corral: &Corral, stop: &AtomicBool, acked: &AtomicI64) -> Tally {
    let mut tally = Tally::default();
    let mut con = corral.client();
    let mut last = 0;
    while !stop.load(Ordering::Acquire) {
        match redis::cmd("INCR").arg("counter").query::<i64>(&mut con) {
            Ok(n) => {
                assert!(n > last, "INCR went from {last} to {n}");
                last = n;
                tally.acknowledged += 1;
                acked.store(tally.acknowledged, Ordering::Release);
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                // Closed without a reply: the outcome is unknown.
                tally.unknown += 1;
                con = corral.client();
            }
            Err(e) => {
                tally.refused += 1;
                if tally.errors.len() < 5 {
                    tally.errors.push(e.to_string());
                }
            }
        }
    }
    tally
}

#[test]
fn incr_accounting_is_exact_through_a_kill_storm_that_parks_the_shard() {
    let corral = Arc::new(Corral::start(
        1,
        &[
            "--restart-intensity",
            "3",
            "--restart-window",
            "30s",
            "--restart-backoff-initial",
            "20ms",
            "--park-retry",
            "1s",
        ],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let client = {
        let (corral, stop, acked) = (Arc::clone(&corral), Arc::clone(&stop), Arc::clone(&acked));
        std::thread::spawn(move || incr_until(&corral, &stop, &acked))
    };
    // Kill every new worker the moment it shows, until the shard parks.
    let mut killed = Vec::new();
    corral.wait_until("the shard parked", Duration::from_secs(30), || {
        let Some(s) = corral.try_shards().and_then(|s| s.into_iter().next()) else {
            return false;
        };
        if s.state == "parked" {
            return true;
        }
        if s.pid != 0 && !killed.contains(&s.pid) && alive(s.pid) {
            let _ = kill(Pid::from_raw(s.pid as i32), Signal::SIGKILL);
            killed.push(s.pid);
        }
        false
    });
    // A client that starts while the shard is parked: its writes are refused at once.
    let late = {
        let (corral, stop, acked) = (
            Arc::clone(&corral),
            Arc::clone(&stop),
            Arc::new(AtomicI64::new(0)),
        );
        std::thread::spawn(move || incr_until(&corral, &stop, &acked))
    };
    // The probe finds a healthy worker: the shard serves again.
    corral.wait_until(
        "the probe recovered the shard",
        Duration::from_secs(20),
        || {
            corral
                .try_shards()
                .is_some_and(|s| s[0].state == "ready" && !killed.contains(&s[0].pid))
        },
    );
    // More acknowledged writes after the recovery.
    let before = acked.load(Ordering::Acquire);
    corral.wait_until("writes acknowledged again", Duration::from_secs(10), || {
        acked.load(Ordering::Acquire) > before + 50
    });
    stop.store(true, Ordering::Release);
    let (first, late) = (client.join().unwrap(), late.join().unwrap());
    // The first client's INCR in flight at each kill was logged: it waited for the probe
    // and was acknowledged; the late client's writes while parked were refused.
    let tally = Tally {
        acknowledged: first.acknowledged + late.acknowledged,
        refused: first.refused + late.refused,
        unknown: first.unknown + late.unknown,
        errors: [first.errors, late.errors].concat(),
    };

    let mut con = corral.client();
    let stored: i64 = redis::cmd("GET").arg("counter").query(&mut con).unwrap();
    assert!(
        tally.refused > 0,
        "the storm never refused a write: {tally:?}"
    );
    assert!(
        tally
            .errors
            .iter()
            .all(|e| e.contains("parked") || e.contains("TRYAGAIN")),
        "{tally:?}"
    );
    // Every acknowledged INCR is counted once; no refused one is; only writes whose
    // outcome was unknown (connection closed) may have been applied or not.
    assert!(
        stored >= tally.acknowledged && stored <= tally.acknowledged + tally.unknown,
        "stored {stored}, {tally:?}"
    );
    eprintln!(
        "kill storm: {} kills, stored {stored}, {tally:?}",
        killed.len()
    );
}
