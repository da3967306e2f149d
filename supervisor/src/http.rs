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
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use shm_protocol::os::monotonic_ns;
use slog::{warn, Logger};

use crate::journal::Durability;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::shard::{Shard, ShardState};

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
    for shard in probes.shards.iter() {
        let state = shard.state();
        let mut status = u8::from(state != ShardState::Ready) * 2;
        let mut check = json!({
            "componentType": "worker",
            "state": state.name(),
            "restarts": shard.restarts.load(Ordering::Relaxed),
            "last_exit": shard.last_exit(),
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
            if state == ShardState::Ready && (age > WORKER_SLOW || depth * 10 > capacity * 9) {
                status = status.max(1);
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
        if let Some(obj) = check.as_object_mut() {
            obj.insert("status".into(), json!(level(status)));
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
