//! The real client libraries and tools, at their current versions and default settings,
//! each running a typical session against Corral: redis-py (sync and asyncio, RESP2 and
//! RESP3, with and without hiredis), node-redis and ioredis (`tests/clients/`), and
//! redis-cli's `--pipe`, `--latency` and `--stat`. `.ci/run` installs them; where one is
//! missing the test fails under `CORRAL_TEST_STRICT` (CI) and says why it skipped otherwise.
//! (`--scan` and `--bigkeys` need SCAN and TYPE, which the next issue adds.)

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::Corral;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args... <port>` in the clients directory; fails with its output.
fn run_session(program: &str, script: &str, port: u16) {
    let out = Command::new(program)
        .arg(script)
        .arg(port.to_string())
        .current_dir(clients_dir())
        .output()
        .expect("start the client session");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {script}:\n{text}");
    eprint!("{text}");
}

#[test]
fn redis_py_sync_and_asyncio_in_both_protocols() {
    if !available("python3", &["-c", "import redis, hiredis"]) {
        corral_tests::cannot_run(
            "redis-py and hiredis are not installed (pip install redis hiredis)",
        );
        return;
    }
    let corral = Corral::start(2, &[]);
    run_session("python3", "python_session.py", corral.port);
}

#[test]
fn node_redis_and_ioredis() {
    if !clients_dir().join("node_modules/redis").is_dir()
        || !clients_dir().join("node_modules/ioredis").is_dir()
        || !available("node", &["--version"])
    {
        corral_tests::cannot_run(
            "node-redis and ioredis are not installed (npm install --prefix tests/clients)",
        );
        return;
    }
    let corral = Corral::start(2, &[]);
    run_session("node", "node_session.mjs", corral.port);
}

#[test]
fn redis_cli_pipe_latency_and_stat() {
    if !available("redis-cli", &["--version"]) {
        corral_tests::cannot_run("redis-cli is not installed (apt-get install redis-tools)");
        return;
    }
    let corral = Corral::start(2, &[]);
    let port = corral.port.to_string();

    // --pipe: mass insertion of raw RESP, every reply counted.
    let mut input = Vec::new();
    for i in 0..2000 {
        input.extend_from_slice(&corral_tests::multibulk(&[
            b"SET",
            format!("pipe:{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
    }
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pipe.stdin.take().unwrap().write_all(&input).unwrap();
    let out = pipe.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("errors: 0, replies: 2000"),
        "{text}"
    );
    let mut c = corral.client();
    let v: String = redis::cmd("GET").arg("pipe:1999").query(&mut c).unwrap();
    assert_eq!(v, "1999");

    // --latency and --stat print a line per interval until stopped: read a few.
    let lines = |args: &[&str], want: usize| -> Vec<String> {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        while got.len() < want && Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            got.push(line.trim_end().to_owned());
        }
        let _ = child.kill();
        let _ = child.wait();
        got
    };
    // --latency --raw: one line of min, max, avg (ms) and samples after the interval.
    let latency = lines(&["--latency", "--raw", "-i", "0.2"], 1);
    let fields: Vec<f64> = latency
        .first()
        .map(|l| l.split(' ').filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    assert!(fields.len() == 4 && fields[3] > 0.0, "{latency:?}");
    // --stat: a header, then keys, mem, clients, blocked, requests, connections.
    let stat = lines(&["--stat", "-i", "0.2"], 4);
    assert!(stat.len() == 4, "{stat:?}");
    assert!(
        stat[1].contains("keys") && stat[1].contains("requests"),
        "{stat:?}"
    );
    for row in &stat[2..] {
        assert!(
            !row.contains('-'),
            "a field INFO lacks shows as a negative number: {stat:?}"
        );
        let keys: u64 = row
            .split_whitespace()
            .next()
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("no key count in {row:?}"));
        assert!(keys >= 2000, "{stat:?}");
    }
}

/// redis-benchmark with its default test list: the string tests run; it stops at the
/// first list test (LPUSH), which needs the data types of a later issue. MSET, the last
/// default test, runs on its own.
#[test]
fn redis_benchmark_default_tests_up_to_the_data_types() {
    if !available("redis-benchmark", &["--version"]) {
        corral_tests::cannot_run("redis-benchmark is not installed (apt-get install redis-tools)");
        return;
    }
    let corral = Corral::start(2, &[]);
    let run = |extra: &[&str]| -> String {
        let out = Command::new("redis-benchmark")
            .args(["-p", &corral.port.to_string(), "-n", "2000", "-q"])
            .args(extra)
            .output()
            .expect("run redis-benchmark");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.replace('\r', "\n")
    };
    let ran = |text: &str, test: &str| {
        text.lines().any(|l| {
            l.strip_prefix(test)
                .and_then(|rest| rest.strip_prefix(": "))
                .and_then(|rest| rest.split(' ').next())
                .and_then(|rps| rps.parse::<f64>().ok())
                .is_some_and(|rps| rps > 0.0)
        })
    };
    let default = run(&[]);
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
        assert!(ran(&default, test), "{test} did not run:\n{default}");
    }
    assert!(
        default.contains("ERR unknown command 'LPUSH'"),
        "the first list test should be the first to fail:\n{default}"
    );
    let mset = run(&["-t", "mset"]);
    assert!(ran(&mset, "MSET (10 keys)"), "{mset}");
}

/// The `redis` crate (the one these tests use) in RESP3, as an application would switch
/// it on: `?protocol=resp3` in the URL.
#[test]
fn the_redis_crate_in_resp3() {
    let corral = Corral::start(2, &[]);
    let client = redis::Client::open(format!("{}?protocol=resp3", corral.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let got: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(got.as_deref(), Some("v"));
    let missing: redis::Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(missing, redis::Value::Nil);
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg("k")
        .arg("missing")
        .query(&mut c)
        .unwrap();
    assert_eq!(values, [Some("v".to_owned()), None]);
    let hello: redis::Value = redis::cmd("HELLO").arg(3).query(&mut c).unwrap();
    assert!(
        matches!(hello, redis::Value::Map(ref m) if m.len() == 7),
        "{hello:?}"
    );
    let config: redis::Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut c)
        .unwrap();
    assert!(
        matches!(config, redis::Value::Map(ref m) if m.len() == 1),
        "{config:?}"
    );
    let info: redis::Value = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(
        matches!(info, redis::Value::VerbatimString { ref text, .. } if text.contains("redis_version:")),
        "{info:?}"
    );
    let mut pipe = redis::pipe();
    pipe.cmd("INCR")
        .arg("n")
        .cmd("INCR")
        .arg("n")
        .cmd("GET")
        .arg("n");
    let (a, b, n): (i64, i64, String) = pipe.query(&mut c).unwrap();
    assert_eq!((a, b, n.as_str()), (1, 2, "2"));
}
