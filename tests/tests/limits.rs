//! Limits and backpressure: a tiny ring slows writers without losing or reordering
//! anything, the connection limit turns extra clients away with an error, and settings come
//! from a TOML `--config` file.

use std::io::{Read, Write};
use std::time::Duration;

use corral_tests::{http_get, Corral, TempDir};

/// With rings that hold only a handful of requests, many connections pipelining writes at
/// once are all acknowledged, in order, with Redis' results.
#[test]
fn full_rings_slow_writers_and_lose_nothing() {
    let corral = Corral::start(
        2,
        &[
            "--ring-bytes",
            "1KiB",
            "--max-key-bytes",
            "64",
            "--max-value-bytes",
            "128",
        ],
    );
    let clients = 8;
    let rounds = 25;
    let pipeline = 40;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let mut con = corral.client();
            std::thread::spawn(move || {
                for round in 0..rounds {
                    let mut pipe = redis::pipe();
                    for i in 0..pipeline {
                        // Shared counters (contention across connections) and private keys.
                        pipe.cmd("INCR").arg(format!("counter:{}", i % 4));
                        pipe.cmd("SET")
                            .arg(format!("c{c}:k{i}"))
                            .arg(format!("r{round}"));
                    }
                    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
                    assert_eq!(replies.len(), pipeline * 2);
                    for (i, reply) in replies.iter().enumerate() {
                        match (i % 2, reply) {
                            (0, redis::Value::Int(n)) => assert!(*n >= 1),
                            (1, redis::Value::Okay) => {}
                            other => panic!("unexpected reply {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut con = corral.client();
    let total = clients * rounds * pipeline;
    let mut sum = 0i64;
    for i in 0..4 {
        let n: i64 = redis::cmd("GET")
            .arg(format!("counter:{i}"))
            .query(&mut con)
            .unwrap();
        sum += n;
    }
    assert_eq!(sum, total as i64, "every INCR applied exactly once");
    let last: Vec<String> = redis::cmd("MGET")
        .arg(
            (0..pipeline)
                .map(|i| format!("c3:k{i}"))
                .collect::<Vec<_>>(),
        )
        .query(&mut con)
        .unwrap();
    assert!(last.iter().all(|v| *v == format!("r{}", rounds - 1)));
    let keys: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(keys, (clients * pipeline + 4) as i64);
}

/// Settings from a `--config` TOML file apply: past `max-clients` a connection gets an
/// error and is closed, and a slot frees up when a client leaves; `max-value-bytes` bounds
/// values.
#[test]
fn config_file_limits_clients_and_values() {
    let dir = TempDir::new("config");
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        "# limits for this test\nmax-clients = 2\nmax_value_bytes = \"100\"\n",
    )
    .unwrap();
    let corral = Corral::start(1, &["--config", config.to_str().unwrap()]);

    // The start-up probe's connection may still be counted for a moment: retry.
    let admitted = || {
        for _ in 0..100 {
            let mut con = corral.client();
            if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                return con;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no connection admitted");
    };
    let mut first = admitted();
    let mut second = admitted();
    let mut third = corral.raw();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    third.read_to_end(&mut reply).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR max number of clients reached\r\n"
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut first)
        .unwrap();

    let err = redis::cmd("SET")
        .arg("k")
        .arg("x".repeat(101))
        .query::<()>(&mut second)
        .unwrap_err();
    assert!(err.to_string().contains("max-value-bytes"), "{err}");

    drop(first);
    // The freed slot is taken by the next client (the server notices the close promptly).
    let mut ok = false;
    for _ in 0..100 {
        let mut s = corral.raw();
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        if &buf[..n] == b"+PONG\r\n" {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "a client was admitted after another left");
    let v: String = redis::cmd("GET").arg("k").query(&mut second).unwrap();
    assert_eq!(v, "v");
}

/// A client that pipelines far more than it reads back: the server stops reading it while
/// replies pile up (megabytes here) and resumes as the client catches up; every reply
/// arrives, in order.
#[test]
fn a_slow_reader_with_a_long_pipeline_gets_every_reply() {
    let corral = Corral::start(2, &[]);
    let value = "v".repeat(1024);
    let mut c = corral.client();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    const N: usize = 20_000;
    let mut stream = corral.raw();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Writes interleaved with reads of the same connection, all pipelined.
        let mut batch = Vec::new();
        for i in 0..N {
            if i % 10 == 0 {
                batch.extend_from_slice(
                    format!("*2\r\n$4\r\nINCR\r\n$4\r\nctr{}\r\n", i % 3).as_bytes(),
                );
            } else {
                batch.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
            }
            if batch.len() > 64 << 10 {
                writer.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        writer.write_all(&batch).unwrap();
    });
    // Let the replies pile up before reading anything: the socket buffers fill (the
    // server has sent a good part of a megabyte) and the rest waits in the server.
    corral.wait_until("replies pile up", Duration::from_secs(20), || {
        let (_, _, body) = http_get(corral.http_port, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("corral_client_bytes_sent_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|sent| sent >= f64::from(256 << 10))
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let bulk = format!("$1024\r\n{value}\r\n");
    let mut expected_len = 0;
    let mut counters = [0u64; 3];
    let mut expected = Vec::new();
    for i in 0..N {
        if i % 10 == 0 {
            counters[i % 3] += 1;
            expected.extend_from_slice(format!(":{}\r\n", counters[i % 3]).as_bytes());
        } else {
            expected.extend_from_slice(bulk.as_bytes());
        }
        expected_len = expected.len();
    }
    let mut got = vec![0u8; expected_len];
    stream.read_exact(&mut got).unwrap();
    sender.join().unwrap();
    assert!(got == expected, "replies differ from the expected sequence");
}
