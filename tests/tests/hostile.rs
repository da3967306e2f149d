//! One client must not hurt the others: huge replies and unread pipelines stay bounded in
//! the supervisor's memory (its RSS, read from /proc), dribbled huge commands cost their
//! bytes and not their square (the supervisor's CPU time), unauthenticated clients get
//! Redis' limits, an over-limit value is refused on a connection that stays usable, and
//! connection churn at the limit never turns a client away below it. Each prints what a
//! control client's PING took meanwhile.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_tests::{cpu_seconds, ping_latency, raw_exchange, rss_bytes, Corral};

const MIB: u64 = 1 << 20;

/// Stores a 1 MiB value under `big`.
fn big_value(corral: &Corral) -> Vec<u8> {
    let value = vec![b'v'; MIB as usize];
    let mut c = corral.client();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    value
}

/// Samples the supervisor's RSS and a control client's PING `rounds` times; returns the
/// peak RSS and the slowest PING.
fn watch(corral: &Corral, rounds: usize) -> (u64, Duration) {
    let mut control = corral.client();
    let (mut peak, mut slowest) = (0, Duration::ZERO);
    for _ in 0..rounds {
        peak = peak.max(rss_bytes(corral.pid()));
        slowest = slowest.max(ping_latency(&mut control));
        // Pacing between samples, while the load runs.
        std::thread::sleep(Duration::from_millis(20));
    }
    (peak, slowest)
}

#[test]
fn a_huge_mget_is_answered_in_parts_with_bounded_memory() {
    let corral = Corral::start(2, &[]);
    big_value(&corral);
    let base = rss_bytes(corral.pid());
    // One 7 KB command naming the 1 MiB value 1,500 times: a 1.5 GB reply.
    let keys = 1500u64;
    let mut command = format!("*{}\r\n$4\r\nMGET\r\n", keys + 1);
    for _ in 0..keys {
        command.push_str("$3\r\nbig\r\n");
    }
    let mut raw = corral.raw();
    raw.write_all(command.as_bytes()).unwrap();
    // The client reads nothing for a while: the supervisor holds one part of the reply.
    let (peak, slowest) = watch(&corral, 25);
    // Then it reads the whole reply, which is complete.
    let per_value = format!("${MIB}\r\n").len() as u64 + MIB + 2;
    let expected = format!("*{keys}\r\n").len() as u64 + keys * per_value;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        let mut head = Vec::new();
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        while got < expected {
            let n = raw.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {got} of {expected} bytes");
            if head.len() < 32 {
                head.extend_from_slice(&buf[..n.min(32)]);
            }
            got += n as u64;
        }
        (got, head)
    });
    let (reading_peak, reading_slowest) = watch(&corral, 25);
    let (got, head) = reader.join().unwrap();
    assert_eq!(got, expected);
    assert!(head.starts_with(format!("*{keys}\r\n${MIB}\r\nvvv").as_bytes()));
    let growth = peak.max(reading_peak).saturating_sub(base);
    eprintln!(
        "MGET of 1500 x 1 MiB: supervisor RSS {} MiB before, +{} MiB at most; control PING \
         at most {:?} while unread, {:?} while read",
        base / MIB,
        growth / MIB,
        slowest,
        reading_slowest
    );
    assert!(growth < 256 * MIB, "RSS grew by {} MiB", growth / MIB);
}

#[test]
fn unread_pipelines_of_big_replies_stay_bounded() {
    let corral = Corral::start(2, &[]);
    big_value(&corral);
    let base = rss_bytes(corral.pid());
    // Three connections pipeline 1,024 GETs of the 1 MiB value each and never read.
    let mut command = Vec::new();
    for _ in 0..1024 {
        command.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    }
    let mut hogs: Vec<std::net::TcpStream> = (0..3).map(|_| corral.raw()).collect();
    for h in &mut hogs {
        h.write_all(&command).unwrap();
    }
    let (peak, slowest) = watch(&corral, 25);
    let growth = peak.saturating_sub(base);
    eprintln!(
        "3 unread pipelines of 1024 GETs of 1 MiB: supervisor RSS +{} MiB at most; control \
         PING at most {slowest:?}",
        growth / MIB
    );
    assert!(growth < 256 * MIB, "RSS grew by {} MiB", growth / MIB);
    drop(hogs);
}

#[test]
fn dribbled_huge_commands_cost_their_bytes_not_their_square() {
    let corral = Corral::start(1, &[]);
    let cpu_before = cpu_seconds(corral.pid());
    // Ten connections each dribble a 900,000-argument MGET, 2 KB at a time, never
    // finishing it (2 MB each). After each round of pieces a control client's PING is
    // answered, so the supervisor has looked at every piece before the next arrives.
    let mut dribblers: Vec<std::net::TcpStream> = (0..10)
        .map(|_| {
            let mut s = corral.raw();
            s.set_nodelay(true).unwrap();
            s.write_all(b"*900001\r\n$4\r\nMGET\r\n").unwrap();
            s
        })
        .collect();
    let mut control = corral.client();
    control
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let piece = b"$1\r\nk\r\n".repeat(2048 / 7);
    let mut pings = Vec::with_capacity(1000);
    for round in 0..1000 {
        for d in &mut dribblers {
            d.write_all(&piece).unwrap();
        }
        pings.push(ping_latency(&mut control));
        // Parsing each command again from its start at every piece: 10 GB in all.
        if round % 100 == 99 {
            let cpu = cpu_seconds(corral.pid()) - cpu_before;
            assert!(
                cpu < 5.0,
                "the supervisor used {cpu:.2} s of CPU by round {round}"
            );
        }
    }
    let cpu = cpu_seconds(corral.pid()) - cpu_before;
    pings.sort();
    eprintln!(
        "10 dribbled 900k-argument MGETs (20 MB): supervisor CPU {cpu:.2} s; control PING \
         p50 {:?}, p99 {:?}, max {:?}",
        pings[pings.len() / 2],
        pings[pings.len() * 99 / 100],
        pings[pings.len() - 1]
    );
    drop(dribblers);
}

#[test]
fn unauthenticated_clients_get_redis_limits() {
    let corral = Corral::start(1, &["--requirepass", "s3cret"]);
    for (input, expected) in [
        (
            &b"*11\r\n"[..],
            "-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        (
            b"*2\r\n$4\r\nAUTH\r\n$20000\r\n",
            "-ERR Protocol error: unauthenticated bulk length\r\n",
        ),
    ] {
        let mut raw = corral.raw();
        // Answered and closed (the read ends at the close, not at the timeout).
        let reply = raw_exchange(&mut raw, input, Duration::from_secs(10));
        assert_eq!(String::from_utf8_lossy(&reply), expected);
    }
    // Once authenticated, the same sizes are fine.
    let mut c = corral.client();
    let value = "x".repeat(20_000);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    assert_eq!(got.len(), 20);
}

#[test]
fn an_over_limit_value_is_refused_and_the_connection_stays_usable() {
    let corral = Corral::start(
        1,
        &["--max-value-bytes", "64KiB", "--max-key-bytes", "1KiB"],
    );
    let mut c = corral.client();
    for size in [64 * 1024 + 1, 3 << 20] {
        let err = redis::cmd("SET")
            .arg("k")
            .arg(vec![b'x'; size])
            .query::<()>(&mut c)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceeds the maximum of"), "{err}");
        // The same connection goes on; nothing was stored.
        let _ = ping_latency(&mut c);
        let got: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(got, None);
    }
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(vec![b'y'; 64 * 1024])
        .query(&mut c)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(got.len(), 64 * 1024);
}

#[test]
fn connection_churn_at_the_limit_turns_nobody_away_below_it() {
    let corral = Arc::new(Corral::start(1, &["--max-clients", "200"]));
    // 100 connections held open the whole time.
    let held: Vec<redis::Connection> = (0..100).map(|_| corral.client()).collect();
    let rejected = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Churn: 32 threads connecting and closing at once, as fast as they can, 70 times
    // each (at most 32 of them open at any moment, so never more than 136 connections in
    // all)...
    let churners: Vec<_> = (0..32)
        .map(|_| {
            let corral = Arc::clone(&corral);
            std::thread::spawn(move || {
                for _ in 0..70 {
                    drop(std::net::TcpStream::connect(("127.0.0.1", corral.port)).unwrap());
                }
            })
        })
        .collect();
    // ... while 4 clients connect, PING and close, over and over: never turned away.
    let probers: Vec<_> = (0..4)
        .map(|_| {
            let (corral, rejected, stop) = (
                Arc::clone(&corral),
                Arc::clone(&rejected),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut probes = 0;
                while probes < 100 || !stop.load(Ordering::Acquire) {
                    let mut s = corral.raw();
                    s.write_all(b"PING\r\n").unwrap();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let reply = &buf[..n];
                    if reply.starts_with(b"-ERR max number of clients") {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert_eq!(reply, b"+PONG\r\n");
                    }
                    probes += 1;
                }
                probes
            })
        })
        .collect();
    for c in churners {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    let probes: usize = probers.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("churn: 2240 connections opened and closed, {probes} probes");
    assert_eq!(
        rejected.load(Ordering::Relaxed),
        0,
        "turned away below the limit"
    );
    drop(held);
}

#[test]
fn values_of_several_megabytes_work_with_the_defaults() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    // Redis' own suite stores a 4 MB value; 8 MiB is the default limit.
    let four_mb = vec![b'4'; 4_000_000];
    let eight_mib: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("four")
        .arg(&four_mb)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("eight")
        .arg(&eight_mib)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("MSET")
        .arg("m1")
        .arg(&four_mb)
        .arg("m2")
        .arg(&four_mb)
        .query(&mut c)
        .unwrap();
    let err = redis::cmd("SET")
        .arg("over")
        .arg(vec![b'x'; (8 << 20) + 1])
        .query::<()>(&mut c)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the maximum of"), "{err}");
    // Every worker killed: the values come back through the log replay. The pids are taken
    // before the kills: a restart can be done before a second INFO would be answered.
    let old: Vec<u32> = corral.shards().iter().map(|s| s.pid).collect();
    for pid in &old {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    corral.wait_until("both workers back", Duration::from_secs(30), || {
        corral.try_shards().is_some_and(|s| {
            s.iter()
                .zip(&old)
                .all(|(i, o)| i.state == "ready" && i.pid != *o)
        })
    });
    let mut c = corral.client();
    let got: Vec<u8> = redis::cmd("GET").arg("eight").query(&mut c).unwrap();
    assert!(got == eight_mib, "the 8 MiB value came back changed");
    let got: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(&["four", "m1", "m2"])
        .query(&mut c)
        .unwrap();
    assert!(got.iter().all(|v| *v == four_mb));
}
