//! Test harness: starts the real `corral` binary on a free port with its own data dir,
//! talks to it with the `redis` crate, and cleans up (processes, segments, temp dirs)
//! whatever happens.

#![forbid(unsafe_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// For a test that cannot run here (it needs root, a mount namespace, a tool): fails when
/// `CORRAL_TEST_STRICT` is set (CI sets it when it runs as root), so such a test never
/// passes unseen; otherwise prints why it is skipped.
pub fn cannot_run(reason: &str) {
    assert!(
        std::env::var_os("CORRAL_TEST_STRICT").is_none(),
        "cannot run: {reason} (CORRAL_TEST_STRICT is set)"
    );
    eprintln!("skipped: {reason}");
}

/// Path of the `corral` binary built by `cargo test --workspace`.
#[must_use]
pub fn corral_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("corral");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A loopback port that refuses connections and that no server can be handed while the
/// returned socket lives: it is the local port of a connected client socket, so a bind to port
/// 0 never picks it (a port released after a bind could be given to the next one at once).
#[must_use]
pub fn refusing_port() -> (u16, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let client = TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect");
    let port = client.local_addr().expect("local addr").port();
    drop(listener);
    (port, client)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory.
    #[must_use]
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("corral-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One shard as `INFO` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// `ready`, `restarting`, `parked`, ...
    pub state: String,
    /// Worker pid.
    pub pid: u32,
    /// Worker generation.
    pub generation: u64,
    /// Restarts so far.
    pub restarts: u64,
    /// Keys held.
    pub keys: u64,
    /// The worker's state digest.
    pub digest: u64,
    /// Sequence number of the last write the worker applied.
    pub applied_seq: u64,
}

/// A running supervisor.
#[derive(Debug)]
pub struct Corral {
    child: Option<Child>,
    /// RESP port.
    pub port: u16,
    /// HTTP port (health endpoints).
    pub http_port: u16,
    /// Data dir.
    pub data_dir: PathBuf,
    /// stderr (JSON log lines) of the supervisor and its workers.
    pub log_path: PathBuf,
    /// Number of workers.
    pub workers: u32,
    password: Option<String>,
    root: TempDir,
    /// The pid of the supervisor [`Corral::crash`] killed.
    crashed: Option<u32>,
    /// The instance id (names the segments), read at start.
    instance: String,
}

impl Corral {
    /// Starts `corral run` with `workers` workers and extra flags; waits until every shard
    /// is ready.
    #[must_use]
    pub fn start(workers: u32, extra: &[&str]) -> Self {
        let root = TempDir::new("run");
        let data_dir = root.path().join("data");
        Self::start_in(root, &data_dir, workers, extra)
    }

    /// Starts on an existing data dir inside `root` (for restart tests).
    #[must_use]
    pub fn start_in(root: TempDir, data_dir: &Path, workers: u32, extra: &[&str]) -> Self {
        Self::start_with(Command::new(corral_bin()), root, data_dir, workers, extra)
    }

    /// Starts `command` (the `corral` binary, or a wrapper that ends by running it with the
    /// arguments it is given, keeping its pid) with `run` and the usual arguments.
    #[must_use]
    pub fn start_with(
        mut command: Command,
        root: TempDir,
        data_dir: &Path,
        workers: u32,
        extra: &[&str],
    ) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let log_path = root.path().join(format!("stderr-{n}.log"));
        let log = fs::File::create(&log_path).expect("log file");
        // Port 0: the supervisor binds what the kernel hands out and logs the addresses, so
        // no other process can take a port between our choosing it and its binding it.
        let child = command
            .arg("run")
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn corral");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| (*p).to_owned());
        let mut corral = Self {
            child: Some(child),
            port: 0,
            http_port: 0,
            data_dir: data_dir.to_owned(),
            log_path,
            workers,
            password,
            root,
            crashed: None,
            instance: String::new(),
        };
        let (mut port, mut http_port) = (0, 0);
        corral.wait_until(
            "the bound addresses in the log",
            Duration::from_secs(20),
            || {
                let text = corral.log();
                let logged = |field: &str| {
                    logged_field(&text, field)
                        .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok())
                        .unwrap_or(0)
                };
                (port, http_port) = (logged("listen"), logged("http"));
                port != 0 && http_port != 0
            },
        );
        (corral.port, corral.http_port) = (port, http_port);
        corral.wait_until("all shards ready", Duration::from_secs(20), || {
            corral.try_shards().is_some_and(|s| {
                s.len() == workers as usize && s.iter().all(|i| i.state == "ready")
            })
        });
        corral.instance = instance_of(&corral.data_dir);
        corral
    }

    /// The supervisor's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The `redis://` URL of the server, with the password if one is set.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// A new client connection.
    #[must_use]
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(10)))
            .expect("connect")
    }

    /// A raw TCP connection for protocol-level tests.
    #[must_use]
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect raw");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s
    }

    /// Shards from `INFO`, or `None` if the server does not answer.
    #[must_use]
    pub fn try_shards(&self) -> Option<Vec<ShardInfo>> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let info: String = redis::cmd("INFO").query(&mut con).ok()?;
        Some(parse_shards(&info))
    }

    /// Shards from `INFO`.
    #[must_use]
    pub fn shards(&self) -> Vec<ShardInfo> {
        self.try_shards().expect("INFO answers")
    }

    /// Kills worker `shard` with SIGKILL and waits until a new one serves; returns the
    /// killed worker's pid.
    pub fn kill_worker(&self, shard: usize) -> u32 {
        let old = self.shards()[shard].pid;
        kill(nix::unistd::Pid::from_raw(old as i32), Signal::SIGKILL).expect("the worker is alive");
        self.wait_until("the worker back", Duration::from_secs(20), || {
            self.try_shards().is_some_and(|s| {
                s[shard].state == "ready" && s[shard].pid != old && alive(s[shard].pid)
            })
        });
        old
    }

    /// Polls `cond` until it holds, failing the test after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                self.child.is_none() || alive(self.pid()),
                "corral exited while waiting for {what}; log:\n{}",
                self.log_tail(40)
            );
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; log:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` log lines.
    #[must_use]
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole log.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` to the supervisor.
    pub fn signal(&self, signal: Signal) {
        // Never pid 0 (that would signal the test's own process group).
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait(timeout)
    }

    /// Waits for the supervisor to exit (at most `timeout`, then kills it and fails).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "corral did not exit within {timeout:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the supervisor with SIGKILL and reaps it, leaving the data dir and (possibly)
    /// segments behind, as a crash would. The data dir's root is handed to the caller (for
    /// a restart, which sweeps the segments); this handle cleans up nothing more.
    pub fn crash(&mut self) -> TempDir {
        if let Some(mut child) = self.child.take() {
            self.crashed = Some(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        std::mem::replace(&mut self.root, TempDir::new("moved"))
    }

    /// The instance id from the data dir manifest (names the shared-memory segments).
    #[must_use]
    pub fn instance(&self) -> String {
        if self.instance.is_empty() {
            instance_of(&self.data_dir)
        } else {
            self.instance.clone()
        }
    }
}

/// The value of `field` in the first log line that has it, JSON (`"field":"value"`) or text
/// (`field=value`).
fn logged_field(log: &str, field: &str) -> Option<String> {
    let json = format!("\"{field}\":\"");
    let text = format!(" {field}=");
    log.lines().find_map(|line| {
        if let Some(i) = line.find(&json) {
            let rest = &line[i + json.len()..];
            return rest.split('"').next().map(str::to_owned);
        }
        let i = line.find(&text)?;
        let rest = &line[i + text.len()..];
        rest.split_whitespace()
            .next()
            .map(|v| v.trim_matches('"').to_owned())
    })
}

/// The instance id recorded in a data dir.
#[must_use]
pub fn instance_of(data_dir: &Path) -> String {
    let manifest = fs::read_to_string(data_dir.join("MANIFEST")).unwrap_or_default();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("instance = \""))
        .map(|s| s.trim_end_matches('"').to_owned())
        .unwrap_or_default()
}

/// The processes that hold a shared-memory segment of `instance` (memfds named
/// `corral.<instance>.w<k>`), from `/proc/*/fd`.
#[must_use]
pub fn segment_holders(instance: &str) -> Vec<u32> {
    // A memfd reads as `/memfd:<name> (deleted)`.
    let wanted = format!("/memfd:corral.{instance}.");
    let mut holders = Vec::new();
    for proc_entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let holds = fs::read_dir(proc_entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with(&wanted))
            });
        if holds {
            holders.push(pid);
        }
    }
    holders
}

/// Names in `/dev/shm` that mention `instance` (there should be none: segments are memfds).
#[must_use]
pub fn named_segments(instance: &str) -> Vec<String> {
    fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.contains(instance))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a process exists (a zombie counts as gone).
#[must_use]
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if self.crashed.is_some() {
            // The workers die with their supervisor; their shared memory with them.
            return;
        }
        let workers: Vec<u32> = self
            .try_shards()
            .map(|s| s.iter().map(|i| i.pid).collect())
            .unwrap_or_default();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in workers {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

fn parse_shards(info: &str) -> Vec<ShardInfo> {
    let mut shards = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("shard") else {
            continue;
        };
        let Some((index, fields)) = rest.split_once(':') else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut s = ShardInfo {
            state: String::new(),
            pid: 0,
            generation: 0,
            restarts: 0,
            keys: 0,
            digest: 0,
            applied_seq: 0,
        };
        for kv in fields.trim().split(',') {
            match kv.split_once('=') {
                Some(("state", v)) => s.state = v.to_owned(),
                Some(("pid", v)) => s.pid = v.parse().unwrap_or(0),
                Some(("generation", v)) => s.generation = v.parse().unwrap_or(0),
                Some(("restarts", v)) => s.restarts = v.parse().unwrap_or(0),
                Some(("keys", v)) => s.keys = v.parse().unwrap_or(0),
                Some(("digest", v)) => s.digest = u64::from_str_radix(v, 16).unwrap_or(0),
                Some(("applied_seq", v)) => s.applied_seq = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        shards.push(s);
    }
    shards
}

/// A plain HTTP/1.0 GET of `path` on 127.0.0.1:`port`: status, content type and body.
#[must_use]
pub fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send http request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read http response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Sends raw bytes and reads whatever arrives until the peer closes or `timeout` passes.
#[must_use]
pub fn raw_exchange(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    stream.write_all(bytes).expect("write");
    stream.set_read_timeout(Some(timeout)).ok();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// A key that the Redis Cluster hash slot places on `shard` of `shards`, with `tag` in it.
#[must_use]
pub fn key_on_shard(shard: u32, shards: u32, tag: &str) -> String {
    (0..100_000)
        .map(|i| format!("{tag}:{i}"))
        .find(|k| shard_of(k.as_bytes(), shards) == shard)
        .expect("some key lands on every shard")
}

/// The shard of `shards` that holds `key` (no hash tags in test keys).
#[must_use]
pub fn shard_of(key: &[u8], shards: u32) -> u32 {
    (u64::from(slot(key)) * u64::from(shards) / 16_384) as u32
}

fn slot(key: &[u8]) -> u32 {
    // CRC16/XMODEM, independent of the supervisor's implementation.
    let mut crc: u16 = 0;
    for &b in key {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    u32::from(crc) % 16_384
}

/// Resident memory of process `pid` in bytes (`VmRSS` from `/proc`), 0 if it is gone.
#[must_use]
pub fn rss_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user and system) process `pid` used so far, in seconds.
#[must_use]
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 (1-based, counting pid and comm).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (ticks(14) + ticks(15)) / hz
}

/// How long a PING takes on `con`, waiting at most `timeout` (then it fails the test).
#[must_use]
pub fn ping_latency(con: &mut redis::Connection) -> Duration {
    let t = Instant::now();
    let pong: String = redis::cmd("PING").query(con).expect("PING answered");
    assert_eq!(pong, "PONG");
    t.elapsed()
}

/// Reads one whole RESP2 or RESP3 reply from `r` and returns its bytes as sent (nested
/// aggregates included; attributes are returned with the reply they precede).
///
/// # Errors
/// The stream's errors, `UnexpectedEof` if it closes mid-reply, and `InvalidData` for
/// bytes that are not RESP.
pub fn read_reply(r: &mut (impl std::io::BufRead + ?Sized)) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    read_value(r, &mut out)?;
    Ok(out)
}

fn read_value(r: &mut (impl std::io::BufRead + ?Sized), out: &mut Vec<u8>) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let start = out.len();
    if r.read_until(b'\n', out)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = &out[start..];
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(bad("a reply line without CRLF"));
    }
    let marker = line[0];
    let number = || -> std::io::Result<i64> {
        std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("a bad length"))
    };
    match marker {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(()),
        b'$' | b'=' | b'!' => {
            let n = number()?;
            if n < 0 {
                return Ok(());
            }
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body)?;
            out.extend_from_slice(&body);
            Ok(())
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number()?;
            let items = if matches!(marker, b'%' | b'|') {
                2 * n
            } else {
                n
            };
            for _ in 0..items.max(0) {
                read_value(r, out)?;
            }
            if marker == b'|' {
                // An attribute precedes the reply it describes.
                read_value(r, out)?;
            }
            Ok(())
        }
        _ => Err(bad("an unknown reply type")),
    }
}

/// Encodes `args` as a RESP multibulk command.
#[must_use]
pub fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
