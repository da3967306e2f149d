//! The HTTP side on `--http`: metrics, liveness, readiness and detailed health. A small
//! HTTP/1.1 server: one thread reads every connection's requests with epoll (each request's
//! head and body bounded, and due within [`REQUEST_DEADLINE`] as a whole, not per read), and
//! answers the probes itself, at once; `/metrics` and `/health` go to [`POOL_THREADS`]
//! threads. At most [`CONNECTIONS_MAX`] connections are held; a new one beyond takes the
//! place of the one that has been reading its request the longest, so slow or idle clients
//! can never keep a liveness or readiness probe out. Nothing it does touches the data path:
//! every answer is read from atomics and the workers' shared memory.
//!
//! - `/health/live`: 200 while the supervisor's own loops (sequencer, lifecycle, event
//!   loops) keep beating; never depends on the workers, so a liveness probe cannot cause
//!   restart cascades.
//! - `/health/ready`: 200 when accepting and every shard is ready; 503 with the reasons
//!   otherwise (starting, recovering, draining, a parked shard, the event log failing).
//! - `/health`: `application/health+json` with a check per worker and for the event log.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde_json::json;
use shm_protocol::os::monotonic_ns;
use slog::{debug, Logger};

use crate::base::shard::{Shard, ShardState, WorkerCounts};
use crate::front::server::Server;
use crate::telemetry::heartbeat::Heartbeat;
use crate::telemetry::metrics::Metrics;
use crate::wal::appender::Durability;

/// A loop that has not turned for this long makes the supervisor not live.
const LOOP_STALL: Duration = Duration::from_secs(5);
/// A worker heartbeat older than this is reported as a warning (the watchdog kills later).
const WORKER_SLOW: Duration = Duration::from_secs(1);
/// An event log sync slower than this is reported as a warning.
const SLOW_SYNC: Duration = Duration::from_millis(100);
/// A mean apply latency above this over the recent window is reported as a warning.
const SLOW_APPLY: Duration = Duration::from_millis(1);
/// A share of failed writes above this over the recent window is reported as a warning...
const ERROR_RATIO_HIGH: f64 = 0.05;
/// ... once at least this many failed.
const ERRORS_MIN: u64 = 20;
/// The recent window of the rates `/health` reports spans one to two of these.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Largest request line plus headers accepted.
const HEAD_MAX_BYTES: usize = 8 << 10;
/// Largest request body accepted (the endpoints take none).
const BODY_MAX_BYTES: usize = 64 << 10;
/// Requests served on one connection before it is closed.
const REQUESTS_PER_CONNECTION_MAX: usize = 1000;
/// How long, and how much, a refused request's remaining input is read and dropped.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES_MAX: usize = 1 << 20;
/// A client has this long to take a response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoints report on.
#[derive(Debug)]
pub struct Probes {
    /// The shards.
    pub shards: Arc<Vec<Shard>>,
    /// The event log's state.
    pub durability: Arc<Durability>,
    /// The front door (draining or not).
    pub server: Arc<Server>,
    /// The supervisor's loops.
    pub heartbeats: Vec<Arc<Heartbeat>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The data dir (its file system's free space is reported).
    pub data_dir: std::path::PathBuf,
    /// Earlier counts of every worker, for the rates over the recent window.
    pub window: Mutex<RateWindow>,
}

/// Two samples of every shard's counters: rates are measured against the older one, and
/// the newer one takes its place once it is [`RATE_WINDOW`] old, so the window spans one to
/// two of those (or the time since the first `/health` request).
#[derive(Debug, Default)]
pub struct RateWindow {
    older: Option<(Instant, Vec<WorkerCounts>)>,
    newer: Option<(Instant, Vec<WorkerCounts>)>,
}

impl RateWindow {
    /// Takes the current counts and returns the sample to measure them against.
    fn advance(&mut self, now: Instant, counts: &[WorkerCounts]) -> (Instant, Vec<WorkerCounts>) {
        match &self.newer {
            Some((at, _)) if now.duration_since(*at) < RATE_WINDOW => {}
            _ => self.older = self.newer.replace((now, counts.to_vec())),
        }
        // Before the first rotation, the first sample is the older one.
        let older = self.older.clone().or_else(|| self.newer.clone());
        older.unwrap_or((now, Vec::new()))
    }
}

/// A worker's write rates over the recent window.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rates {
    window: Duration,
    applied: u64,
    errors: u64,
    apply_mean: Option<Duration>,
}

impl Rates {
    fn between(window: Duration, before: &WorkerCounts, now: &WorkerCounts) -> Self {
        let observed = |c: &WorkerCounts| c.buckets.iter().sum::<u64>();
        let count = observed(now).saturating_sub(observed(before));
        let sum_ns = now.sum_ns.saturating_sub(before.sum_ns);
        Self {
            window,
            applied: now.applied.saturating_sub(before.applied),
            errors: now.errors.saturating_sub(before.errors),
            apply_mean: (count > 0).then(|| Duration::from_nanos(sum_ns / count)),
        }
    }

    /// What is wrong with these rates, if anything.
    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let secs = self.window.as_secs_f64();
        if let Some(mean) = self.apply_mean.filter(|m| *m > SLOW_APPLY) {
            out.push(format!(
                "mean apply time {:.2} ms over the last {secs:.0} s",
                mean.as_secs_f64() * 1e3
            ));
        }
        if self.errors >= ERRORS_MIN
            && self.errors as f64 > ERROR_RATIO_HIGH * self.applied.max(1) as f64
        {
            out.push(format!(
                "{} of {} writes failed over the last {secs:.0} s",
                self.errors, self.applied
            ));
        }
        out
    }
}

/// The running HTTP server: one thread reading every connection's requests (epoll), which
/// answers the probes itself, and [`POOL_THREADS`] threads for the heavier endpoints.
#[derive(Debug)]
pub struct Http {
    stopping: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Http {
    /// Starts serving `probes` on `listener` (bound early, so that a busy port is a
    /// start-up error).
    pub fn start(listener: TcpListener, probes: Arc<Probes>, log: &Logger) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("cannot start the HTTP server: {e}");
        let addr = listener.local_addr().map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| fail(e.into()))?;
        let wake = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(|e| fail(e.into()))?,
        );
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .and_then(|()| epoll.add(&*wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE)))
            .map_err(|e| fail(e.into()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(POOL_QUEUE);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let mut threads = Vec::new();
        for _ in 0..POOL_THREADS {
            let (jobs, done, probes, wake) = (
                jobs_rx.clone(),
                done_tx.clone(),
                Arc::clone(&probes),
                Arc::clone(&wake),
            );
            let spawned = std::thread::Builder::new()
                .name("http-pool".into())
                .spawn(move || {
                    for job in jobs {
                        let (status, content_type, body) = route(&job.path, &probes);
                        let _ = done.send(Done {
                            token: job.token,
                            status,
                            content_type,
                            body,
                        });
                        let _ = wake.write(1);
                    }
                })
                .map_err(fail)?;
            threads.push(spawned);
        }
        let event_loop = HttpLoop {
            listener,
            epoll,
            wake: Arc::clone(&wake),
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            jobs: jobs_tx,
            done: done_rx,
            probes,
            stopping: Arc::clone(&stopping),
            accept_pending: false,
            log: log.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || event_loop.run())
            .map_err(fail)?;
        // The loop first: when it ends it drops the job queue, which ends the pool.
        threads.insert(0, spawned);
        Ok(Self {
            stopping,
            wake,
            threads,
            addr,
        })
    }

    /// Stops serving: connections are closed, a request in the pool finishes first.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Epoll tokens: the listener, the wake-up eventfd, then connections.
const LISTENER: u64 = 0;
const WAKE: u64 = 1;
const FIRST_CONN: u64 = 2;
/// Connections held at once; a new one beyond takes the place of the one that has been
/// reading its request the longest (so slow clients cannot keep a probe out).
const CONNECTIONS_MAX: usize = 256;
/// Threads computing `/metrics` and `/health`, and requests waiting for them (more are
/// answered 503).
const POOL_THREADS: usize = 2;
const POOL_QUEUE: usize = 16;
/// A request (its head and body) must arrive within this, counted from when the
/// connection is ready for it; an idle keep-alive connection is closed after it too.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// A request for the pool.
struct Job {
    token: u64,
    path: String,
}

/// A response computed by the pool.
struct Done {
    token: u64,
    status: u16,
    content_type: &'static str,
    body: String,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request.
    Reading,
    /// Its request is with the pool.
    Waiting,
    /// Sending a response.
    Writing,
    /// Refused: reading and dropping what the client still sends, briefly, before closing
    /// (closing with unread input resets the connection, and the client could lose the
    /// answer).
    Lingering,
}

struct HttpConn {
    stream: TcpStream,
    input: Vec<u8>,
    /// How far `input` was searched for the end of the head.
    scanned: usize,
    output: Vec<u8>,
    sent: usize,
    phase: Phase,
    deadline: Instant,
    served: usize,
    /// Whether the connection stays open after the response being sent.
    keep_alive: bool,
    /// A HEAD request: its response has no body.
    head_only: bool,
    /// The client closed its side.
    peer_closed: bool,
    lingered: usize,
}

struct HttpLoop {
    listener: TcpListener,
    epoll: Epoll,
    wake: Arc<EventFd>,
    conns: HashMap<u64, HttpConn>,
    next_token: u64,
    jobs: crossbeam_channel::Sender<Job>,
    done: crossbeam_channel::Receiver<Done>,
    probes: Arc<Probes>,
    stopping: Arc<AtomicBool>,
    /// Connections may be waiting in the listener (an accept failed, out of descriptors).
    accept_pending: bool,
    log: Logger,
}

impl HttpLoop {
    fn run(mut self) {
        let mut events = vec![EpollEvent::empty(); 64];
        let mut chunk = vec![0u8; 16 << 10];
        while !self.stopping.load(Ordering::Acquire) {
            let now = Instant::now();
            let next = self
                .conns
                .values()
                .map(|c| c.deadline)
                .min()
                .map_or(Duration::from_millis(250), |d| {
                    d.saturating_duration_since(now)
                });
            let wait = next
                .min(Duration::from_millis(if self.accept_pending {
                    10
                } else {
                    250
                }))
                .as_millis() as u16;
            let n = self
                .epoll
                .wait(&mut events, EpollTimeout::from(wait.max(1)))
                .unwrap_or(0);
            for event in &events[..n] {
                match event.data() {
                    LISTENER => self.accept(),
                    WAKE => {
                        let _ = self.wake.read();
                        while let Ok(done) = self.done.try_recv() {
                            self.respond_with(done);
                        }
                    }
                    token => self.progress(token, &mut chunk),
                }
            }
            if self.accept_pending {
                self.accept();
            }
            self.expire(Instant::now());
        }
    }

    fn accept(&mut self) {
        self.accept_pending = false;
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: try again shortly instead of spinning.
                    debug!(self.log, "HTTP accept failed"; "component" => "http", "error" => %e);
                    self.accept_pending = true;
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= CONNECTIONS_MAX {
                self.evict_slowest();
            }
            let token = self.next_token;
            self.next_token += 1;
            let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
            if self
                .epoll
                .add(&stream, EpollEvent::new(interest, token))
                .is_err()
            {
                continue;
            }
            self.conns.insert(
                token,
                HttpConn {
                    stream,
                    input: Vec::new(),
                    scanned: 0,
                    output: Vec::new(),
                    sent: 0,
                    phase: Phase::Reading,
                    deadline: Instant::now() + REQUEST_DEADLINE,
                    served: 0,
                    keep_alive: false,
                    head_only: false,
                    peer_closed: false,
                    lingered: 0,
                },
            );
            // Its request may already be there (edge-triggered: no event will announce it).
            let mut chunk = [0u8; 1024];
            self.progress(token, &mut chunk);
        }
    }

    /// Closes the connection that has been reading its request the longest, to make room.
    fn evict_slowest(&mut self) {
        let slowest = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase != Phase::Waiting)
            .min_by_key(|(_, c)| c.deadline)
            .map(|(t, _)| *t);
        if let Some(token) = slowest {
            self.close(token);
        }
    }

    fn close(&mut self, token: u64) {
        if let Some(c) = self.conns.remove(&token) {
            let _ = self.epoll.delete(&c.stream);
        }
    }

    /// Deadlines: an incomplete request gets 408, an idle connection is closed quietly, a
    /// response not taken in time or a refusal's lingering ends.
    fn expire(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now && c.phase != Phase::Waiting)
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            if c.phase == Phase::Reading && !c.input.is_empty() {
                refuse(c, 408, "request not complete in time\n");
                let mut chunk = [0u8; 1024];
                self.progress(token, &mut chunk);
            } else {
                self.close(token);
            }
        }
    }

    fn respond_with(&mut self, done: Done) {
        let Some(c) = self.conns.get_mut(&done.token) else {
            return;
        };
        if c.phase != Phase::Waiting {
            return;
        }
        c.output = encode(&Reply {
            status: done.status,
            content_type: done.content_type,
            body: done.body.as_bytes(),
            head_only: c.head_only,
            keep_alive: c.keep_alive,
        });
        c.sent = 0;
        c.phase = Phase::Writing;
        c.deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 1024];
        self.progress(done.token, &mut chunk);
    }

    /// Moves connection `token` on as far as its socket allows.
    fn progress(&mut self, token: u64, chunk: &mut [u8]) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        loop {
            let turn = match c.phase {
                Phase::Waiting => Turn::Wait,
                Phase::Reading => reading(c, token, chunk, &self.jobs, &self.probes),
                Phase::Writing => writing(c),
                Phase::Lingering => lingering(c, chunk),
            };
            match turn {
                Turn::Wait => return,
                Turn::Again => {}
                Turn::Close => {
                    self.close(token);
                    return;
                }
            }
        }
    }
}

/// What a connection does after a step of its phase.
enum Turn {
    /// Wait for the socket (or the pool).
    Wait,
    /// Go on in its new phase.
    Again,
    /// Close it.
    Close,
}

/// Reads a request; answers a probe at once, hands `/metrics` and `/health` to the pool.
fn reading(
    c: &mut HttpConn,
    token: u64,
    chunk: &mut [u8],
    jobs: &crossbeam_channel::Sender<Job>,
    probes: &Probes,
) -> Turn {
    read_some(c, chunk, HEAD_MAX_BYTES + BODY_MAX_BYTES + 1);
    match next_request(c) {
        Ok(None) if c.peer_closed => Turn::Close,
        Ok(None) => Turn::Wait,
        Ok(Some((path, head_only))) => {
            c.head_only = head_only;
            if matches!(path.as_str(), "/metrics" | "/health") {
                // The heavier endpoints go to the pool, off this loop.
                if jobs.try_send(Job { token, path }).is_ok() {
                    c.phase = Phase::Waiting;
                    return Turn::Wait;
                }
                refuse(c, 503, "too many requests at once\n");
                return Turn::Again;
            }
            let (status, content_type, body) = route(&path, probes);
            c.output = encode(&Reply {
                status,
                content_type,
                body: body.as_bytes(),
                head_only,
                keep_alive: c.keep_alive,
            });
            c.sent = 0;
            c.phase = Phase::Writing;
            c.deadline = Instant::now() + IO_TIMEOUT;
            Turn::Again
        }
        Err((status, reason)) => {
            refuse(c, status, reason);
            Turn::Again
        }
    }
}

/// Sends the response; then reads the next request, or lingers before closing.
fn writing(c: &mut HttpConn) -> Turn {
    while c.sent < c.output.len() {
        match c.stream.write(&c.output[c.sent..]) {
            Ok(0) => return Turn::Close,
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Turn::Wait,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Turn::Close,
        }
    }
    c.output.clear();
    c.sent = 0;
    if c.keep_alive {
        c.phase = Phase::Reading;
        c.deadline = Instant::now() + REQUEST_DEADLINE;
    } else {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.phase = Phase::Lingering;
        c.deadline = Instant::now() + LINGER;
    }
    Turn::Again
}

/// Reads (and drops) what the client still sends after the response, until it closes,
/// sends too much, or the linger time ends.
fn lingering(c: &mut HttpConn, chunk: &mut [u8]) -> Turn {
    loop {
        match c.stream.read(chunk) {
            Ok(0) => return Turn::Close,
            Ok(n) => {
                c.lingered += n;
                if c.lingered > LINGER_BYTES_MAX {
                    return Turn::Close;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Turn::Wait,
            Err(_) => return Turn::Close,
        }
    }
}

/// Reads what the socket holds into the connection's input, up to `cap` bytes in all.
fn read_some(c: &mut HttpConn, chunk: &mut [u8], cap: usize) {
    while c.input.len() < cap && !c.peer_closed {
        match c.stream.read(chunk) {
            Ok(0) => c.peer_closed = true,
            Ok(n) => c.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => c.peer_closed = true,
        }
    }
}

/// Takes the next complete request out of the connection's input: its path and whether it
/// is a HEAD, `Ok(None)` while it is incomplete, or why it is refused. Sets whether the
/// connection stays open after the response.
fn next_request(c: &mut HttpConn) -> Result<Option<(String, bool)>, Refusal> {
    let from = c.scanned.saturating_sub(3);
    let Some(at) = c.input[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
        if c.input.len() > HEAD_MAX_BYTES {
            return Err((431, "request head too large\n"));
        }
        c.scanned = c.input.len();
        return Ok(None);
    };
    let head_end = from + at;
    if head_end > HEAD_MAX_BYTES {
        return Err((431, "request head too large\n"));
    }
    let head = parse_head(&c.input[..head_end])?;
    if head.content_length > BODY_MAX_BYTES {
        return Err((413, "request body too large\n"));
    }
    // The endpoints take no body: take in what was announced, and ignore it.
    let request_end = head_end + 4 + head.content_length;
    if c.input.len() < request_end {
        return Ok(None);
    }
    c.input.drain(..request_end);
    c.scanned = 0;
    let head_only = head.method == "HEAD";
    if head.method != "GET" && !head_only {
        return Err((405, "only GET and HEAD\n"));
    }
    c.served += 1;
    c.keep_alive = head.keep_alive && c.served < REQUESTS_PER_CONNECTION_MAX && !c.peer_closed;
    Ok(Some((head.path, head_only)))
}

/// Answers with `status` and closes after it (lingering).
fn refuse(c: &mut HttpConn, status: u16, reason: &'static str) {
    c.output = encode(&closing(status, reason));
    c.sent = 0;
    c.keep_alive = false;
    c.phase = Phase::Writing;
    c.deadline = Instant::now() + IO_TIMEOUT;
}

/// A request's head, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    content_length: usize,
    /// The client keeps the connection for another request.
    keep_alive: bool,
}

/// Why a request is refused before it is routed: the status and the reason.
type Refusal = (u16, &'static str);

/// Parses the request line and headers (`head` ends before the blank line).
fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| (400, "request head is not UTF-8\n"))?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) = (
        request.next(),
        request.next(),
        request.next(),
        request.next(),
    ) else {
        return Err((400, "malformed request line\n"));
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err((505, "only HTTP/1.0 and HTTP/1.1\n"));
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err((400, "malformed request line\n"));
    }
    let mut content_length = 0;
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked to.
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or((400, "malformed header line\n"))?;
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| (400, "malformed content-length\n"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err((411, "a body needs a content-length\n"));
        } else if name.eq_ignore_ascii_case("connection") {
            let has = |token: &str| {
                value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(token))
            };
            if has("close") {
                keep_alive = false;
            } else if has("keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Head {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        content_length,
        keep_alive,
    })
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The answer to a GET of `path`: status, content type, body.
fn route(path: &str, probes: &Probes) -> (u16, &'static str, String) {
    match path {
        "/health/live" => {
            let (ok, body) = live(probes);
            (if ok { 200 } else { 503 }, TEXT, body)
        }
        "/health/ready" => {
            let reasons = not_ready(probes);
            if reasons.is_empty() {
                (200, TEXT, "ready\n".into())
            } else {
                (503, TEXT, format!("not ready: {}\n", reasons.join("; ")))
            }
        }
        "/health" => {
            let (status, body) = health(probes);
            let code = if status == Status::Fail { 503 } else { 200 };
            (code, "application/health+json", body.to_string())
        }
        "/metrics" => {
            let m = &probes.metrics;
            m.connections.set(i64::from(probes.server.connections()));
            m.ready.set(i64::from(not_ready(probes).is_empty()));
            m.wal_failing
                .set(i64::from(probes.durability.failure().is_some()));
            m.wal_restart_required
                .set(i64::from(probes.durability.stop_reason().is_some()));
            if let Ok(fs) = nix::sys::statvfs::statvfs(&probes.data_dir) {
                let block = fs.fragment_size() as i64;
                m.data_dir_free_bytes
                    .set(block.saturating_mul(fs.blocks_available() as i64));
                m.data_dir_size_bytes
                    .set(block.saturating_mul(fs.blocks() as i64));
            }
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                probes.metrics.render(),
            )
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

/// A response.
struct Reply<'a> {
    status: u16,
    content_type: &'a str,
    body: &'a [u8],
    /// A HEAD request: the headers of the GET, without the body.
    head_only: bool,
    /// The connection stays open for the next request.
    keep_alive: bool,
}

/// A whole response, encoded.
fn encode(reply: &Reply<'_>) -> Vec<u8> {
    let status = reply.status;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let connection = if reply.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: {connection}\r\n\r\n",
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !reply.head_only {
        out.extend_from_slice(reply.body);
    }
    out
}

/// A response that closes the connection.
fn closing<'a>(status: u16, reason: &'a str) -> Reply<'a> {
    Reply {
        status,
        content_type: TEXT,
        body: reason.as_bytes(),
        head_only: false,
        keep_alive: false,
    }
}

/// Whether every loop of the supervisor turned recently.
fn live(probes: &Probes) -> (bool, String) {
    let stalled: Vec<String> = probes
        .heartbeats
        .iter()
        .filter(|h| h.age() > LOOP_STALL)
        .map(|h| {
            format!(
                "{} loop stalled for {:.1} s",
                h.name(),
                h.age().as_secs_f64()
            )
        })
        .collect();
    if stalled.is_empty() {
        (true, "live\n".into())
    } else {
        (false, format!("not live: {}\n", stalled.join("; ")))
    }
}

/// Why the supervisor is not ready (empty when it is).
fn not_ready(probes: &Probes) -> Vec<String> {
    let mut reasons = Vec::new();
    if probes.server.is_draining() {
        reasons.push("draining for shutdown".to_owned());
    }
    if let Some(failure) = probes.durability.failure() {
        reasons.push(format!("event log failing: {failure}"));
    }
    for shard in probes.shards.iter() {
        let state = shard.state();
        if state != ShardState::Ready {
            reasons.push(format!("shard {} is {}", shard.id, state.name()));
        }
    }
    reasons
}

/// A check's status in the health document (`pass` < `warn` < `fail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    /// `Fail` if `failed`, else `Pass`.
    fn fail_if(failed: bool) -> Self {
        if failed {
            Self::Fail
        } else {
            Self::Pass
        }
    }
}

/// The detailed health document and its overall status: one check per worker, the event
/// log and the supervisor's loops; the worst decides (and any is `fail` while draining).
fn health(probes: &Probes) -> (Status, serde_json::Value) {
    let mut checks = serde_json::Map::new();
    let mut worst = Status::fail_if(probes.server.is_draining());
    let now = Instant::now();
    let counts: Vec<WorkerCounts> = probes.shards.iter().map(Shard::counts).collect();
    let (since, before) = probes
        .window
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .advance(now, &counts);
    for (i, shard) in probes.shards.iter().enumerate() {
        let rates = Rates::between(
            now.duration_since(since),
            before.get(i).unwrap_or(&counts[i]),
            &counts[i],
        );
        let (status, check) = worker_check(shard, &rates);
        worst = worst.max(status);
        checks.insert(format!("worker:{}", shard.id), json!([check]));
    }
    let (status, check) = event_log_check(probes);
    worst = worst.max(status);
    checks.insert("event_log".into(), json!([check]));
    let (is_live, live_text) = live(probes);
    let loops = Status::fail_if(!is_live);
    worst = worst.max(loops);
    checks.insert(
        "supervisor:loops".into(),
        json!([{
            "componentType": "system",
            "status": loops.as_str(),
            "output": live_text.trim(),
        }]),
    );
    (
        worst,
        json!({
            "status": worst.as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
        }),
    )
}

/// One worker's check: `fail` unless its shard is ready, `warn` if ready with warnings
/// (errors or slow applies in the window, a stale heartbeat, a nearly full queue).
fn worker_check(shard: &Shard, rates: &Rates) -> (Status, serde_json::Value) {
    let state = shard.state();
    let mut output = rates.warnings();
    let mut check = json!({
        "componentType": "worker",
        "state": state.name(),
        "restarts": shard.restarts.load(Ordering::Relaxed),
        "last_exit": shard.last_exit(),
        "window_s": rates.window.as_secs_f64(),
        "applied_in_window": rates.applied,
        "errors_in_window": rates.errors,
        "apply_mean_us": rates.apply_mean.map(|m| m.as_secs_f64() * 1e6),
    });
    let fields = check.as_object_mut().expect("built as an object above");
    if let Some(g) = shard.current().filter(|g| !g.is_dead()) {
        let head = g.segment.head();
        let beat = head.status.heartbeat_ns.load(Ordering::Acquire);
        let age = Duration::from_nanos(monotonic_ns().saturating_sub(beat));
        let tail = head.supervisor.request_tail.load(Ordering::Acquire);
        let consumed = head.worker_request.request_head.load(Ordering::Acquire);
        let capacity = head
            .header
            .request_ring_words
            .load(Ordering::Relaxed)
            .max(1);
        let depth = tail.saturating_sub(consumed);
        if age > WORKER_SLOW {
            output.push(format!("heartbeat {:.1} s old", age.as_secs_f64()));
        }
        if depth * 10 > capacity * 9 {
            output.push(format!("queue {}% full", depth * 100 / capacity));
        }
        fields.insert("pid".into(), json!(g.pid));
        fields.insert("generation".into(), json!(g.number));
        fields.insert(
            "applied_seq".into(),
            json!(head.status.applied_seq.load(Ordering::Acquire)),
        );
        fields.insert("queue_depth_words".into(), json!(depth));
        fields.insert("queue_capacity_words".into(), json!(capacity));
        fields.insert("heartbeat_age_ms".into(), json!(age.as_millis() as u64));
        fields.insert(
            "keys".into(),
            json!(head.status.keys.load(Ordering::Acquire)),
        );
    }
    let status = match (state == ShardState::Ready, output.is_empty()) {
        (false, _) => Status::Fail,
        (true, false) => Status::Warn,
        (true, true) => Status::Pass,
    };
    fields.insert("status".into(), json!(status.as_str()));
    fields.insert("output".into(), json!(output.join("; ")));
    (status, check)
}

/// The event log's check: `fail` while it refuses writes, `warn` on a slow last sync or a
/// data dir with less than 10% free.
fn event_log_check(probes: &Probes) -> (Status, serde_json::Value) {
    let last_sync = probes.durability.last_sync();
    let free_ratio = nix::sys::statvfs::statvfs(&probes.data_dir)
        .ok()
        .filter(|fs| fs.blocks() > 0)
        .map(|fs| fs.blocks_available() as f64 / fs.blocks() as f64);
    let mut status = Status::Pass;
    let mut output = Vec::new();
    if let Some(failure) = probes.durability.failure() {
        status = Status::Fail;
        output.push(failure);
    }
    if last_sync > SLOW_SYNC {
        status = status.max(Status::Warn);
        output.push(format!("last sync took {} ms", last_sync.as_millis()));
    }
    if let Some(r) = free_ratio.filter(|r| *r < 0.1) {
        status = status.max(Status::Warn);
        output.push(format!("data dir {:.1}% free", r * 100.0));
    }
    let check = json!({
        "componentType": "datastore",
        "status": status.as_str(),
        "synced_seq": probes.durability.synced(),
        "last_sync_ms": last_sync.as_secs_f64() * 1000.0,
        "disk_free_ratio": free_ratio,
        "output": output.join("; "),
    });
    (status, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse_or_are_refused_with_a_status() {
        let check = |head: &str, expected: Result<(&str, &str, usize, bool), u16>| {
            let got = parse_head(head.as_bytes())
                .map(|h| (h.method, h.path, h.content_length, h.keep_alive))
                .map_err(|(status, _)| status);
            let expected = expected.map(|(m, p, n, k)| (m.to_owned(), p.to_owned(), n, k));
            assert_eq!(got, expected, "{head:?}");
        };
        check("GET /metrics HTTP/1.1", Ok(("GET", "/metrics", 0, true)));
        check(
            "GET /health?x=1 HTTP/1.0\r\nHost: a\r\nAccept: */*",
            Ok(("GET", "/health", 0, false)),
        );
        check(
            "GET / HTTP/1.0\r\nConnection: Keep-Alive",
            Ok(("GET", "/", 0, true)),
        );
        check(
            "GET / HTTP/1.1\r\nConnection: TE, close",
            Ok(("GET", "/", 0, false)),
        );
        check(
            "POST /x HTTP/1.1\r\ncontent-length: 12",
            Ok(("POST", "/x", 12, true)),
        );
        check("GET /metrics", Err(400));
        check("GET  /metrics HTTP/1.1", Err(400));
        check("GET metrics HTTP/1.1", Err(400));
        check("GET / HTTP/1.1 extra", Err(400));
        check("GET / HTTP/2.0", Err(505));
        check("GET / HTTP/1.1\r\nno colon here", Err(400));
        check("GET / HTTP/1.1\r\nContent-Length: many", Err(400));
        check("GET / HTTP/1.1\r\nTransfer-Encoding: chunked", Err(411));
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1").map_err(|e| e.0), Err(400));
        check("", Err(400));
    }

    fn counts(applied: u64, errors: u64, observed: u64, sum_ns: u64) -> WorkerCounts {
        let mut c = WorkerCounts {
            applied,
            errors,
            sum_ns,
            ..WorkerCounts::default()
        };
        c.buckets[3] = observed;
        c
    }

    #[test]
    fn rates_warn_on_slow_applies_and_many_failures_only() {
        let window = Duration::from_secs(5);
        let check = |before: WorkerCounts, now: WorkerCounts| {
            Rates::between(window, &before, &now).warnings()
        };
        // 1,000 writes at 2 µs: fine.
        assert!(check(counts(0, 0, 0, 0), counts(1000, 0, 1000, 2_000_000)).is_empty());
        // 10 writes at 2 ms each: slow.
        let w = check(counts(5, 0, 5, 10), counts(15, 0, 15, 20_000_010));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("mean apply time 2.00 ms"), "{w:?}");
        // Failures: many and a high share warn; few, or a small share, do not.
        let w = check(counts(0, 0, 0, 0), counts(100, 30, 100, 1000));
        assert_eq!(
            w,
            vec!["30 of 100 writes failed over the last 5 s".to_owned()]
        );
        assert!(check(counts(0, 0, 0, 0), counts(100, 19, 100, 1000)).is_empty());
        assert!(check(counts(0, 0, 0, 0), counts(10_000, 400, 10_000, 1000)).is_empty());
        // Counters only grow; a smaller one (never expected) is no rate, not an underflow.
        assert!(check(counts(50, 50, 50, 50), counts(0, 0, 0, 0)).is_empty());
    }

    #[test]
    fn the_window_measures_against_a_sample_one_to_two_windows_old() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let sample = |n| vec![counts(n, 0, n, 0)];
        // The first request has nothing earlier: it measures against itself.
        assert_eq!(w.advance(t0, &sample(1)).1, sample(1));
        // Within the first window: against the first sample.
        assert_eq!(w.advance(t0 + RATE_WINDOW / 2, &sample(2)).1, sample(1));
        // A window later the first sample becomes the older one, and stays it...
        assert_eq!(w.advance(t0 + RATE_WINDOW, &sample(3)).1, sample(1));
        assert_eq!(w.advance(t0 + RATE_WINDOW * 3 / 2, &sample(4)).1, sample(1));
        // ... until the next window passes.
        let (at, before) = w.advance(t0 + RATE_WINDOW * 2, &sample(5));
        assert_eq!((at, before), (t0 + RATE_WINDOW, sample(3)));
    }
}
