//! `/metrics` on the real binary, read with a Prometheus text parser: every family has its
//! help and type, per-worker figures come from shared memory and move with the load, and
//! counters never go backwards across a `kill -9` of a worker.

use std::collections::HashMap;
use std::time::Duration;

use corral_tests::{http_get, key_on_shard, Corral};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prometheus_parse::{Scrape, Value};

fn scrape(corral: &Corral) -> Scrape {
    let (status, content_type, body) = http_get(corral.http_port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The value of `name` for `worker` (or without labels when `worker` is `None`).
fn value(s: &Scrape, name: &str, worker: Option<u32>) -> f64 {
    let w = worker.map(|w| w.to_string());
    let labels: Vec<(&str, &str)> = w.iter().map(|w| ("worker", w.as_str())).collect();
    value_with(s, name, &labels)
}

/// The value of the sample of `name` carrying every label of `labels`.
fn value_with(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("no summaries"),
    }
}

#[test]
fn metrics_families_move_with_load_and_survive_a_worker_kill() {
    let corral = Corral::start(2, &[]);
    let before = scrape(&corral);
    for family in [
        "corral_build_info",
        "corral_connections",
        "corral_wal_records_total",
        "corral_wal_sync_duration_seconds",
        "corral_wal_group_records",
        "corral_worker_up",
        "corral_worker_ready",
        "corral_worker_applied_total",
        "corral_worker_apply_duration_seconds",
        "corral_worker_restarts_total",
        "corral_worker_queue_depth_words",
        "corral_worker_heartbeat_age_seconds",
        "process_resident_memory_bytes",
        "corral_worker_cpu_seconds_total",
        "corral_worker_resident_memory_bytes",
        "corral_recovery_duration_seconds",
        "corral_log_lines_dropped_total",
        "corral_checkpoint_duration_seconds",
        "corral_wal_oldest_seq",
        "corral_worker_restart_backoff_seconds",
        "corral_worker_data_bytes",
        "corral_worker_data_capacity_bytes",
        "corral_ready",
        "corral_wal_failing",
        "corral_wal_restart_required",
    ] {
        assert!(before.docs.contains_key(family), "no HELP for {family}");
    }
    let mut c = corral.client();
    let key = key_on_shard(1, 2, "m");
    for i in 0..50 {
        let _: i64 = redis::cmd("INCRBY").arg(&key).arg(i).query(&mut c).unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("text")
        .arg("abc")
        .query(&mut c)
        .unwrap();
    assert!(redis::cmd("INCR").arg("text").query::<i64>(&mut c).is_err());
    let _: Option<String> = redis::cmd("GET").arg("text").query(&mut c).unwrap();
    let loaded = scrape(&corral);
    let commands = |command: &str, status: &str| {
        value_with(
            &loaded,
            "corral_commands_total",
            &[("command", command), ("status", status)],
        )
    };
    assert_eq!(commands("incrby", "ok"), 50.0);
    assert_eq!(
        (commands("incr", "ok"), commands("incr", "error")),
        (0.0, 1.0)
    );
    assert_eq!((commands("get", "ok"), commands("set", "ok")), (1.0, 1.0));
    assert_eq!(
        value_with(
            &loaded,
            "corral_command_duration_seconds",
            &[("command", "incrby")]
        ),
        50.0
    );
    assert!(value(&loaded, "corral_client_bytes_received_total", None) > 1000.0);
    assert!(value(&loaded, "corral_client_bytes_sent_total", None) > 200.0);
    let applied = value(&loaded, "corral_worker_applied_total", Some(1));
    assert!(applied >= 50.0, "{applied}");
    assert!(value(&loaded, "corral_worker_apply_duration_seconds", Some(1)) >= 50.0);
    assert!(
        value(&loaded, "corral_wal_records_total", None)
            >= value(&before, "corral_wal_records_total", None) + 50.0
    );
    assert_eq!(value(&loaded, "corral_worker_up", Some(1)), 1.0);
    assert_eq!(value(&loaded, "corral_worker_keys", Some(1)), 1.0);
    // One key of a few bytes on each shard (in whole heap words).
    for shard in [0, 1] {
        let data = value(&loaded, "corral_worker_data_bytes", Some(shard));
        assert!((8.0..256.0).contains(&data), "shard {shard}: {data}");
    }
    assert_eq!(
        value(&loaded, "corral_worker_data_capacity_bytes", Some(1)),
        f64::from(128u32 << 20)
    );
    assert_eq!(value(&loaded, "corral_ready", None), 1.0);
    assert_eq!(value(&loaded, "corral_wal_failing", None), 0.0);
    assert_eq!(value(&loaded, "corral_wal_restart_required", None), 0.0);

    // kill -9: the new generation starts from zero in shared memory, yet the shard's
    // counters carry on from where they were.
    let victim = corral.shards()[1].pid;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    corral.wait_until("shard 1 back", Duration::from_secs(10), || {
        corral.shards()[1].generation == 2 && corral.shards()[1].state == "ready"
    });
    let mut seen: HashMap<&str, f64> = HashMap::new();
    let cpu = value(&loaded, "corral_worker_cpu_seconds_total", Some(1));
    for round in 0..20 {
        let s = scrape(&corral);
        for name in [
            "corral_worker_applied_total",
            "corral_worker_apply_duration_seconds",
            "corral_worker_cpu_seconds_total",
        ] {
            let v = value(&s, name, Some(1));
            let start = if name.contains("cpu") { cpu } else { applied };
            let last = seen.entry(name).or_insert(start);
            assert!(
                v >= *last,
                "{name} went back from {last} to {v} (round {round})"
            );
            *last = v;
        }
        let _: i64 = redis::cmd("INCR").arg(&key).query(&mut c).unwrap();
    }
    let after = scrape(&corral);
    let restarts = |reason: &str| {
        value_with(
            &after,
            "corral_worker_restarts_total",
            &[("worker", "1"), ("reason", reason)],
        )
    };
    assert_eq!(
        (restarts("signal"), restarts("exit"), restarts("watchdog")),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(
        value(&after, "corral_worker_last_exit_signal", Some(1)),
        9.0
    );
    assert!(
        value_with(
            &after,
            "corral_recovery_duration_seconds",
            &[("mode", "restart")]
        ) >= 1.0
    );
    assert!(
        value_with(
            &after,
            "corral_recovery_duration_seconds",
            &[("mode", "startup")]
        ) >= 2.0
    );
    assert_eq!(value(&after, "corral_worker_generation", Some(1)), 2.0);
    assert!(value(&after, "corral_worker_applied_total", Some(1)) >= applied + 20.0);
    // The first restart is immediate; the log still holds its first record.
    assert_eq!(
        value(&after, "corral_worker_restart_backoff_seconds", Some(1)),
        0.0
    );
    assert_eq!(value(&after, "corral_wal_oldest_seq", None), 1.0);

    // A second crash within the stable period waits the initial backoff (50 ms ±25%).
    let victim = corral.shards()[1].pid;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    corral.wait_until("shard 1 back again", Duration::from_secs(10), || {
        corral.shards()[1].generation == 3 && corral.shards()[1].state == "ready"
    });
    let backoff = value(
        &scrape(&corral),
        "corral_worker_restart_backoff_seconds",
        Some(1),
    );
    assert!((0.0375..=0.0625).contains(&backoff), "{backoff}");
    assert_eq!(
        value(
            &scrape(&corral),
            "corral_worker_restart_backoff_seconds",
            Some(0)
        ),
        0.0
    );
}

#[test]
fn everysec_syncs_once_a_second_however_many_writes() {
    let corral = Corral::start(1, &["--fsync", "everysec"]);
    let mut c = corral.client();
    let start = std::time::Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < Duration::from_millis(2500) {
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(writes)
            .query(&mut c)
            .unwrap();
        writes += 1;
    }
    let s = scrape(&corral);
    let syncs = value(&s, "corral_wal_sync_duration_seconds", None);
    let elapsed = start.elapsed().as_secs_f64();
    assert!(writes > 100, "{writes}");
    // One sync a second (the first a second after start-up): two or three in the window.
    assert!(
        syncs >= 1.0 && syncs <= elapsed.ceil() + 1.0,
        "{syncs} syncs for {writes} writes in {elapsed:.1} s"
    );
}
