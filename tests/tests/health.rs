//! The health endpoints on the real binary: liveness never depends on the workers;
//! readiness follows the shards (a parked shard makes it 503 with the reason, the probe
//! that brings the shard back makes it 200 again); `/health` describes every worker.

use std::time::{Duration, Instant};

use corral_tests::{alive, http_get, Corral};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn health_documents_every_worker() {
    let corral = Corral::start(2, &[]);
    assert_eq!(http_get(corral.http_port, "/health/live").0, 200);
    let (status, _, body) = http_get(corral.http_port, "/health/ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, content_type, body) = http_get(corral.http_port, "/health");
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/health+json");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["status"], "pass", "{doc}");
    let shards = corral.shards();
    for (i, shard) in shards.iter().enumerate() {
        let check = &doc["checks"][format!("worker:{i}")][0];
        assert_eq!(check["status"], "pass", "{doc}");
        assert_eq!(check["state"], "ready");
        assert_eq!(check["pid"], u64::from(shard.pid));
        assert_eq!(check["generation"], shard.generation);
        assert!(check["heartbeat_age_ms"].as_u64().unwrap() < 1000, "{doc}");
        assert!(check["queue_capacity_words"].as_u64().unwrap() > 0);
    }
    assert_eq!(doc["checks"]["event_log"][0]["status"], "pass");
    assert_eq!(http_get(corral.http_port, "/nope").0, 404);
}

#[test]
fn readiness_follows_a_parked_shard_and_liveness_never_wavers() {
    let corral = Corral::start(2, &["--restart-intensity", "1", "--park-retry", "1s"]);
    let victim = corral.shards()[0].pid;
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let t = Instant::now();
    let mut saw_parked = None;
    // Not ready while parked (with the reason), ready again once the probe recovers it;
    // live throughout.
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{}",
            corral.log_tail(20)
        );
        assert_eq!(http_get(corral.http_port, "/health/live").0, 200);
        let (status, _, body) = http_get(corral.http_port, "/health/ready");
        if status == 503 {
            assert!(body.contains("shard 0 is"), "{body}");
            if body.contains("shard 0 is parked") {
                saw_parked.get_or_insert(t.elapsed());
            }
        } else if saw_parked.is_some() {
            assert_eq!(status, 200);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let detected = saw_parked.unwrap();
    eprintln!("parked shard seen by /health/ready after {detected:?}");
    assert!(!alive(victim));
    let (_, _, body) = http_get(corral.http_port, "/health");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["checks"]["worker:0"][0]["last_exit"], "signal 9",
        "{doc}"
    );
    assert_eq!(doc["checks"]["worker:0"][0]["restarts"], 1);
}

#[test]
fn a_stopped_worker_warns_then_the_watchdog_replaces_it() {
    let corral = Corral::start(2, &["--watchdog-timeout", "2s"]);
    let victim = corral.shards()[0].pid;
    kill(Pid::from_raw(victim as i32), Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    // The heartbeat ages: /health warns about worker 0 before the watchdog acts.
    let warned = loop {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            corral.log_tail(20)
        );
        let (status, _, body) = http_get(corral.http_port, "/health");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        if doc["checks"]["worker:0"][0]["status"] == "warn" {
            assert_eq!(
                (status, doc["status"].as_str()),
                (200, Some("warn")),
                "{doc}"
            );
            break t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    corral.wait_until("worker 0 replaced", Duration::from_secs(15), || {
        let (_, _, body) = http_get(corral.http_port, "/health");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let w = &doc["checks"]["worker:0"][0];
        w["generation"] == 2 && w["status"] == "pass"
    });
    let replaced = t.elapsed();
    eprintln!("stopped worker: warned after {warned:?}, replaced after {replaced:?}");
    assert!(warned >= Duration::from_millis(900) && warned < replaced);
    assert_eq!(http_get(corral.http_port, "/health/live").0, 200);
    let (_, _, body) = http_get(corral.http_port, "/health");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["checks"]["worker:0"][0]["last_exit"], "signal 9");
}

#[test]
fn draining_is_not_ready_but_still_live() {
    let mut corral = Corral::start(2, &["--watchdog-timeout", "60s"]);
    // A write held in flight (its worker stopped) keeps the drain going.
    let victim = corral.shards()[0].pid;
    let key = corral_tests::key_on_shard(0, 2, "drain");
    kill(Pid::from_raw(victim as i32), Signal::SIGSTOP).unwrap();
    let url = corral.url();
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("SET").arg(key).arg("v").query::<()>(&mut c)
    });
    corral.wait_until(
        "the write waits in the stopped worker's ring",
        Duration::from_secs(10),
        || {
            let (_, _, body) = http_get(corral.http_port, "/health");
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            doc["checks"]["worker:0"][0]["queue_depth_words"].as_u64() > Some(0)
        },
    );
    corral.signal(Signal::SIGTERM);
    corral.wait_until(
        "readiness reports the drain",
        Duration::from_secs(10),
        || {
            let (status, _, body) = http_get(corral.http_port, "/health/ready");
            status == 503 && body.contains("draining")
        },
    );
    assert_eq!(http_get(corral.http_port, "/health/live").0, 200);
    kill(Pid::from_raw(victim as i32), Signal::SIGCONT).unwrap();
    assert!(
        writer.join().unwrap().is_ok(),
        "the held write is acknowledged"
    );
    assert!(corral.wait(Duration::from_secs(30)).success());
}

#[test]
fn corral_status_prints_every_worker() {
    let corral = Corral::start(3, &[]);
    let out = std::process::Command::new(corral_tests::corral_bin())
        .args([
            "status",
            "--http",
            &format!("127.0.0.1:{}", corral.http_port),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("status: pass"), "{text}");
    for (i, s) in corral.shards().iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&i.to_string()))
            .unwrap_or_else(|| panic!("no line for worker {i}: {text}"));
        assert!(
            line.contains("ready") && line.contains(&s.pid.to_string()),
            "{line}"
        );
    }
    // Nobody there: a clear error, not a panic.
    let (nobody, _held) = corral_tests::refusing_port();
    let out = std::process::Command::new(corral_tests::corral_bin())
        .args(["status", "--http", &format!("127.0.0.1:{nobody}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn a_ring_kept_full_warns_and_drains() {
    let corral = Corral::start(
        2,
        &[
            "--ring-bytes",
            "8KiB",
            "--max-value-bytes",
            "1KiB",
            "--max-key-bytes",
            "64",
        ],
    );
    let victim = corral.shards()[0].pid;
    kill(Pid::from_raw(victim as i32), Signal::SIGSTOP).unwrap();
    // Pipelined writes to shard 0 pile up in its ring while the worker is stopped.
    let url = corral.url();
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.cmd("SET")
                .arg(corral_tests::key_on_shard(0, 2, &format!("full{i}")))
                .arg("x".repeat(200));
        }
        pipe.query::<Vec<String>>(&mut c)
    });
    let t = Instant::now();
    let warned = loop {
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{}",
            corral.log_tail(20)
        );
        let (_, _, body) = http_get(corral.http_port, "/health");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let w = &doc["checks"]["worker:0"][0];
        let (depth, capacity) = (
            w["queue_depth_words"].as_u64().unwrap_or(0),
            w["queue_capacity_words"].as_u64().unwrap_or(1),
        );
        if w["status"] == "warn" && depth * 10 > capacity * 9 {
            break t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("full ring reported after {warned:?}");
    kill(Pid::from_raw(victim as i32), Signal::SIGCONT).unwrap();
    let replies = writer.join().unwrap().unwrap();
    assert_eq!(replies.len(), 200);
    assert!(replies.iter().all(|r| r == "OK"));
    corral.wait_until("the ring drained", Duration::from_secs(10), || {
        let (_, _, body) = http_get(corral.http_port, "/health");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        doc["checks"]["worker:0"][0]["queue_depth_words"] == 0 && doc["status"] == "pass"
    });
}

/// Polls `/health/ready` until its status is `want`; returns how long that took and the
/// body. `/health/live` must answer 200 on every round.
fn ready_becomes(corral: &Corral, want: u16, timeout: Duration) -> (Duration, String) {
    let t = Instant::now();
    loop {
        assert!(
            t.elapsed() < timeout,
            "/health/ready not {want} after {timeout:?}; log:\n{}",
            corral.log_tail(20)
        );
        let (status, _, body) = http_get(corral.http_port, "/health/ready");
        if status == want {
            return (t.elapsed(), body);
        }
        assert_eq!(http_get(corral.http_port, "/health/live").0, 200);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_killed_worker_makes_readiness_fail_until_it_is_back() {
    // The second crash in a row waits the backoff: a window wide enough to see for sure.
    let corral = Corral::start(2, &["--restart-backoff-initial", "1500ms"]);
    for (round, generation) in [(1, 2), (2, 3)] {
        let victim = corral.shards()[1].pid;
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        if round == 2 {
            let (detected, body) = ready_becomes(&corral, 503, Duration::from_secs(5));
            eprintln!("kill -9: /health/ready 503 after {detected:?}: {body}");
            assert!(body.contains("shard 1 is restarting"), "{body}");
            assert!(detected < Duration::from_millis(500), "{detected:?}");
            let (_, _, health) = http_get(corral.http_port, "/health");
            let doc: serde_json::Value = serde_json::from_str(&health).unwrap();
            assert_eq!(doc["status"], "fail", "{doc}");
            assert_eq!(doc["checks"]["worker:1"][0]["status"], "fail", "{doc}");
            assert_eq!(doc["checks"]["worker:0"][0]["status"], "pass", "{doc}");
        }
        corral.wait_until("the new worker", Duration::from_secs(10), || {
            corral.shards()[1].generation == generation
        });
        let (back, _) = ready_becomes(&corral, 200, Duration::from_secs(10));
        eprintln!("kill -9 round {round}: /health/ready 200 again {back:?} after the new worker");
    }
}

#[test]
fn many_failing_writes_make_health_warn_with_the_reason() {
    let corral = Corral::start(2, &[]);
    let key = corral_tests::key_on_shard(0, 2, "errors");
    let mut c = corral.client();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("text")
        .query(&mut c)
        .unwrap();
    // The first request starts the rate window.
    let (_, _, body) = http_get(corral.http_port, "/health");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["checks"]["worker:0"][0]["status"], "pass", "{doc}");
    for _ in 0..30 {
        assert!(redis::cmd("INCR").arg(&key).query::<i64>(&mut c).is_err());
    }
    let (status, _, body) = http_get(corral.http_port, "/health");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let check = &doc["checks"]["worker:0"][0];
    assert_eq!(
        (status, check["status"].as_str()),
        (200, Some("warn")),
        "{doc}"
    );
    assert_eq!(doc["status"], "warn");
    assert_eq!(check["errors_in_window"], 30, "{doc}");
    assert!(
        check["output"]
            .as_str()
            .is_some_and(|o| o.contains("30 of 30 writes failed")),
        "{doc}"
    );
    assert_eq!(doc["checks"]["worker:1"][0]["status"], "pass", "{doc}");
}

/// Sends `request` raw to the HTTP port; returns the status line and the whole response.
fn http_raw(port: u16, request: &[u8]) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let out = corral_tests::raw_exchange(&mut s, request, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.lines().next().unwrap_or("").to_owned(), text)
}

#[test]
fn http_bad_input_gets_a_clear_status_and_slow_clients_hold_nobody_up() {
    use std::io::Write;
    let corral = Corral::start(1, &[]);
    let port = corral.http_port;
    for (request, status) in [
        (&b"GET /health/live HTTP/1.0\r\n\r\n"[..], "HTTP/1.1 200 OK"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 405",
        ),
        (b"BREW /pot HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
        (b"nonsense\r\n\r\n", "HTTP/1.1 400"),
        (b"GET / HTTP/3.0\r\n\r\n", "HTTP/1.1 505"),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 411",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 413",
        ),
        (
            b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 404",
        ),
    ] {
        let (line, all) = http_raw(port, request);
        assert!(line.starts_with(status), "{request:?}: {all}");
    }
    // Keep-alive: requests in turn on one connection (HEAD: the headers of the GET, no
    // body), until one asks to close.
    let (_, all) = http_raw(
        port,
        b"HEAD /health/ready HTTP/1.1\r\n\r\nGET /health/ready HTTP/1.1\r\n\r\n\
          GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let text = "Content-Type: text/plain; charset=utf-8";
    assert_eq!(
        all,
        format!(
            "HTTP/1.1 200 OK\r\n{text}\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\n\
             HTTP/1.1 200 OK\r\n{text}\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\n\
             ready\n\
             HTTP/1.1 200 OK\r\n{text}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlive\n"
        )
    );
    // An endless header line is cut off at 8 KiB, not buffered without end.
    let mut endless = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    endless.write_all(b"GET / HTTP/1.1\r\nX-Long: ").unwrap();
    let filler = vec![b'a'; 4096];
    let mut refused = String::new();
    for _ in 0..64 {
        if endless.write_all(&filler).is_err() {
            break;
        }
    }
    endless.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let _ = std::io::Read::read_to_string(&mut endless, &mut refused);
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused:?}");
    // Slow and idle clients past the connection limit: 40 sending a header a byte at a
    // time, 300 sending nothing. Liveness and readiness are answered all along (a new
    // connection takes the place of the one that has waited longest), quickly.
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let idle: Vec<std::net::TcpStream> = (0..300).map(|_| connect()).collect();
    let mut slow: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        for path in ["/health/live", "/health/ready"] {
            let t = Instant::now();
            let (status, _, body) = http_get(port, path);
            worst = worst.max(t.elapsed());
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    eprintln!("probes under 340 slow or idle HTTP clients: slowest {worst:?}");
    drop((idle, slow));
    // A request whose head never completes is answered 408 once its deadline passes (the
    // deadline is for the whole head, not for each read).
    let mut slowloris = connect();
    slowloris
        .write_all(b"GET /health/live HTTP/1.1\r\n")
        .unwrap();
    slowloris.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    corral.wait_until("408 for the slow request", Duration::from_secs(15), || {
        let _ = slowloris.write_all(b"X: 1\r\n");
        let mut buf = [0u8; 256];
        if let Ok(n) = std::io::Read::read(&mut slowloris, &mut buf) {
            answer.extend_from_slice(&buf[..n]);
        }
        std::thread::sleep(Duration::from_millis(100));
        answer.starts_with(b"HTTP/1.1 408")
    });
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
