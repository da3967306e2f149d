//! The HTTP side (tiny_http on `--http`): liveness, readiness and detailed health. A small
//! fixed pool of threads serves it; nothing it does touches the data path: every answer is
//! read from atomics and the workers' shared memory.
//!
//! - `/health/live`: 200 while the supervisor's own loops (sequencer, lifecycle, event
//!   loops) keep beating; never depends on the workers, so a liveness probe cannot cause
//!   restart cascades.
//! - `/health/ready`: 200 when accepting and every shard is ready; 503 with the reasons
//!   otherwise (starting, recovering, draining, a parked shard, the event log failing).
//! - `/health`: `application/health+json` with a check per worker and for the event log.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use shm_protocol::os::monotonic_ns;
use slog::{warn, Logger};

use crate::journal::Durability;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::shard::{Shard, ShardState, WorkerCounts};

/// A loop's sign of life: it beats once per turn (every loop turns at least every 250 ms).
#[derive(Debug)]
pub struct Heartbeat {
    name: &'static str,
    ns: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat of the loop `name`, beating now.
    #[must_use]
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            ns: AtomicU64::new(monotonic_ns()),
        })
    }

    /// Records a turn of the loop.
    pub fn beat(&self) {
        self.ns.store(monotonic_ns(), Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        Duration::from_nanos(monotonic_ns().saturating_sub(self.ns.load(Ordering::Relaxed)))
    }
}

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
/// Threads serving HTTP.
const HTTP_THREADS: usize = 2;
/// Largest request body accepted (the endpoints take none).
const MAX_BODY: usize = 64 << 10;

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
            None => self.newer = Some((now, counts.to_vec())),
            Some((at, _)) if now.duration_since(*at) >= RATE_WINDOW => {
                self.older = self.newer.take();
                self.newer = Some((now, counts.to_vec()));
            }
            Some(_) => {}
        }
        self.older
            .clone()
            .or_else(|| self.newer.clone())
            .unwrap_or_else(|| (now, counts.to_vec()))
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

/// The running HTTP server.
pub struct Http {
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("addr", &self.addr).finish()
    }
}

impl Http {
    /// Starts serving `probes` on `listener` (bound early, so that a busy port is a
    /// start-up error).
    pub fn start(
        listener: std::net::TcpListener,
        probes: Arc<Probes>,
        log: &Logger,
    ) -> Result<Self, String> {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("HTTP listener: {e}"))?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| format!("cannot serve HTTP on {addr}: {e}"))?;
        let server = Arc::new(server);
        let mut threads = Vec::new();
        for i in 0..HTTP_THREADS {
            let (server, probes, log) = (Arc::clone(&server), Arc::clone(&probes), log.clone());
            let thread = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while let Ok(request) = server.recv() {
                        serve(request, &probes, &log);
                    }
                })
                .map_err(|e| format!("cannot start the HTTP threads: {e}"))?;
            threads.push(thread);
        }
        Ok(Self {
            server,
            threads,
            addr,
        })
    }

    /// Stops serving and waits for the threads.
    pub fn stop(self) {
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn respond(
    request: tiny_http::Request,
    status: u16,
    content_type: &str,
    body: String,
    log: &Logger,
) {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    // Both parts are plain ASCII: the header always parses.
    if let Ok(header) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
    {
        response = response.with_header(header);
    }
    if let Err(e) = request.respond(response) {
        warn!(log, "cannot send HTTP response"; "component" => "http", "error" => %e);
    }
}

fn serve(mut request: tiny_http::Request, probes: &Probes, log: &Logger) {
    let text = "text/plain; charset=utf-8";
    if request.body_length().unwrap_or(0) > MAX_BODY {
        respond(request, 413, text, "request body too large\n".into(), log);
        return;
    }
    // Drain a small body so the connection can be reused.
    let mut sink = Vec::new();
    let _ = request
        .as_reader()
        .take(MAX_BODY as u64)
        .read_to_end(&mut sink);
    if !matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        respond(request, 405, text, "only GET and HEAD\n".into(), log);
        return;
    }
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    match path.as_str() {
        "/health/live" => {
            let (ok, body) = live(probes);
            respond(request, if ok { 200 } else { 503 }, text, body, log);
        }
        "/health/ready" => {
            let reasons = not_ready(probes);
            if reasons.is_empty() {
                respond(request, 200, text, "ready\n".into(), log);
            } else {
                let body = format!("not ready: {}\n", reasons.join("; "));
                respond(request, 503, text, body, log);
            }
        }
        "/health" => {
            let (status, body) = health(probes);
            let code = if status == "fail" { 503 } else { 200 };
            respond(
                request,
                code,
                "application/health+json",
                body.to_string(),
                log,
            );
        }
        "/metrics" => {
            let m = &probes.metrics;
            m.connections.set(i64::from(probes.server.connections()));
            if let Ok(fs) = nix::sys::statvfs::statvfs(&probes.data_dir) {
                let block = fs.fragment_size() as i64;
                m.data_dir_free_bytes
                    .set(block.saturating_mul(fs.blocks_available() as i64));
                m.data_dir_size_bytes
                    .set(block.saturating_mul(fs.blocks() as i64));
            }
            let body = probes.metrics.render();
            respond(
                request,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
                log,
            );
        }
        _ => respond(request, 404, text, "not found\n".into(), log),
    }
}

/// Whether every loop of the supervisor turned recently.
fn live(probes: &Probes) -> (bool, String) {
    let stalled: Vec<String> = probes
        .heartbeats
        .iter()
        .filter(|h| h.age() > LOOP_STALL)
        .map(|h| format!("{} loop stalled for {:.1} s", h.name, h.age().as_secs_f64()))
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

/// The detailed health document and its overall status.
fn health(probes: &Probes) -> (&'static str, serde_json::Value) {
    let mut checks = serde_json::Map::new();
    let mut worst = 0u8; // 0 pass, 1 warn, 2 fail
    let level = |s: u8| ["pass", "warn", "fail"][usize::from(s.min(2))];
    let now = Instant::now();
    let counts: Vec<WorkerCounts> = probes.shards.iter().map(Shard::counts).collect();
    let (since, before) = probes
        .window
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .advance(now, &counts);
    for (i, shard) in probes.shards.iter().enumerate() {
        let state = shard.state();
        let mut status = u8::from(state != ShardState::Ready) * 2;
        let rates = Rates::between(
            now.duration_since(since),
            before.get(i).unwrap_or(&counts[i]),
            &counts[i],
        );
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
            if let Some(obj) = check.as_object_mut() {
                obj.insert("pid".into(), json!(g.pid));
                obj.insert("generation".into(), json!(g.number));
                obj.insert(
                    "applied_seq".into(),
                    json!(head.status.applied_seq.load(Ordering::Acquire)),
                );
                obj.insert("queue_depth_words".into(), json!(depth));
                obj.insert("queue_capacity_words".into(), json!(capacity));
                obj.insert("heartbeat_age_ms".into(), json!(age.as_millis() as u64));
                obj.insert(
                    "keys".into(),
                    json!(head.status.keys.load(Ordering::Acquire)),
                );
            }
        }
        if state == ShardState::Ready && !output.is_empty() {
            status = status.max(1);
        }
        if let Some(obj) = check.as_object_mut() {
            obj.insert("status".into(), json!(level(status)));
            obj.insert("output".into(), json!(output.join("; ")));
        }
        worst = worst.max(status);
        checks.insert(format!("worker:{}", shard.id), json!([check]));
    }
    let last_sync = probes.durability.last_sync();
    let free_ratio = nix::sys::statvfs::statvfs(&probes.data_dir)
        .ok()
        .filter(|fs| fs.blocks() > 0)
        .map(|fs| fs.blocks_available() as f64 / fs.blocks() as f64);
    let mut log_status = u8::from(last_sync > SLOW_SYNC || free_ratio.is_some_and(|r| r < 0.1));
    let mut output = Vec::new();
    if let Some(failure) = probes.durability.failure() {
        log_status = 2;
        output.push(failure);
    }
    if last_sync > SLOW_SYNC {
        output.push(format!("last sync took {} ms", last_sync.as_millis()));
    }
    if let Some(r) = free_ratio.filter(|r| *r < 0.1) {
        output.push(format!("data dir {:.1}% free", r * 100.0));
    }
    worst = worst.max(log_status);
    checks.insert(
        "event_log".into(),
        json!([{
            "componentType": "datastore",
            "status": level(log_status),
            "synced_seq": probes.durability.synced(),
            "last_sync_ms": last_sync.as_secs_f64() * 1000.0,
            "disk_free_ratio": free_ratio,
            "output": output.join("; "),
        }]),
    );
    let (is_live, live_text) = live(probes);
    let loops = u8::from(!is_live) * 2;
    worst = worst.max(loops);
    checks.insert(
        "supervisor:loops".into(),
        json!([{
            "componentType": "system",
            "status": level(loops),
            "output": live_text.trim(),
        }]),
    );
    if probes.server.is_draining() {
        worst = 2;
    }
    let status = level(worst);
    (
        status,
        json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
