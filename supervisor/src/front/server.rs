//! The RESP front door: an accept thread hands each connection to one of a few event loops
//! (`--io-threads`), which drive non-blocking sockets with epoll. A loop reads what a ready
//! connection sent, runs its pipelined commands through its [`Session`], and writes the
//! replies. A connection whose writes are in flight waits without holding up the others:
//! the outcomes arrive through its [`Ticket`], whose notification queues the connection and
//! wakes the loop through an eventfd, once per batch. Under `--fsync always` the replies
//! also wait for the event log's sync to cover the writes ([`Durability`]), which wakes the
//! loops as it advances.
//!
//! Backpressure: a connection is not read while its writes are in flight or while too many
//! of its replies are unsent, so memory stays bounded by connections x (query buffer +
//! pipeline).

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use slog::{debug, error, info, warn, Logger};

use crate::base::shard::Shard;
use crate::base::ticket::Ticket;
use crate::front::clients::{Client, Clients};
use crate::front::resp::{reply, Frame};
use crate::front::session::{Batch, Session};
use crate::front::shared::{LiveSettings, ServerConfig, Shared, SlowLog};
use crate::front::table::TABLE;
use crate::pipeline::msg::SeqMsg;
use crate::telemetry::heartbeat::Heartbeat;
use crate::telemetry::metrics::{CommandStats, Metrics};
use crate::wal::appender::{Acknowledge, Durability};

/// The server: its shared state, the accept thread's and the event loops' handles.
pub struct Server {
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Arc<Metrics>,
    stopping: AtomicBool,
    draining: AtomicBool,
    loops: Mutex<Vec<LoopHandle>>,
    heartbeats: Vec<Arc<Heartbeat>>,
}

struct LoopHandle {
    inbox: Sender<(u64, TcpStream)>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Wakes an event loop from other threads; coalesces wakeups until the loop runs.
struct Waker {
    fd: EventFd,
    pending: AtomicBool,
}

impl Waker {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.fd.write(1);
        }
    }

    /// Called by the loop before it looks at what it was woken for. The counter is read
    /// first: a wake between the read and the store writes nothing, but what it announces
    /// is already queued and the loop looks at the queues next.
    fn reset(&self) {
        let _ = self.fd.read();
        self.pending.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("active", &self.shared.connections())
            .finish_non_exhaustive()
    }
}

/// The event token of a loop's waker; connections use their ids (from 1).
const WAKE_TOKEN: u64 = 0;
/// Unsent reply bytes past which a connection is not read until its client catches up.
const OUTPUT_HIGH_WATER_BYTES: usize = 1 << 20;
/// Unrun input past which a connection with writes in flight is not read further.
const PAUSE_BYTES: usize = 64 << 10;
/// Batches one connection may run before the loop turns to the others.
const BATCHES_PER_TURN: usize = 2;

impl Server {
    /// A server over `shards` feeding `sequencer`, with its event loops running.
    pub fn start(
        shards: Arc<Vec<Shard>>,
        sequencer: Sender<SeqMsg>,
        gates: Arc<crate::base::gate::Gates>,
        durability: Arc<Durability>,
        metrics: Arc<Metrics>,
        config: ServerConfig,
        log: Logger,
    ) -> std::io::Result<Arc<Self>> {
        let io_threads = config.io_threads.max(1);
        let max_clients = config.max_clients;
        let heartbeats: Vec<Arc<Heartbeat>> =
            (0..io_threads).map(|_| Heartbeat::new("io")).collect();
        let server = Arc::new(Self {
            shared: Arc::new(Shared {
                shards,
                sequencer,
                gates,
                config,
                log,
                started: Instant::now(),
                durability: Arc::clone(&durability),
                active: AtomicU32::new(0),
                next_id: AtomicU64::new(1),
                stats_base: Mutex::new(metrics.command_totals()),
                ops_sample: Mutex::new((Instant::now(), 0, 0.0)),
                slowlog: Mutex::new(SlowLog::default()),
                clients: Clients::default(),
                live: LiveSettings::new(max_clients),
                run_id: run_id(),
                metrics: Arc::clone(&metrics),
            }),
            metrics,
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            loops: Mutex::new(Vec::new()),
            heartbeats: heartbeats.clone(),
        });
        let mut loops = Vec::new();
        for (i, heartbeat) in heartbeats.iter().enumerate() {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let fd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
            epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))?;
            let waker = Arc::new(Waker {
                fd,
                pending: AtomicBool::new(false),
            });
            {
                // Writes waiting to be durable are acknowledged when the sync advances.
                let waker = Arc::clone(&waker);
                durability.listen(move || waker.wake());
            }
            let (inbox, incoming) = crossbeam_channel::unbounded();
            let (done_tx, done_rx) = crossbeam_channel::unbounded();
            let event_loop = EventLoop {
                server: Arc::clone(&server),
                epoll,
                waker: Arc::clone(&waker),
                incoming,
                done_tx,
                done_rx,
                conns: HashMap::new(),
                runnable: VecDeque::new(),
                unsynced: Vec::new(),
                chunk: vec![0u8; 64 << 10],
                heartbeat: Arc::clone(heartbeat),
                stats: server.metrics.command_stats(),
                kills: Arc::new(AtomicBool::new(false)),
            };
            let thread = std::thread::Builder::new()
                .name(format!("io-{i}"))
                .spawn(move || event_loop.run())?;
            loops.push(LoopHandle {
                inbox,
                waker,
                thread: Some(thread),
            });
        }
        if let Ok(mut l) = server.loops.lock() {
            *l = loops;
        }
        Ok(server)
    }

    /// Accepts connections until [`Server::stop_accepting`], handing them to the loops in
    /// turn.
    pub fn accept_loop(self: &Arc<Self>, listener: &TcpListener) {
        let mut turn = 0usize;
        for stream in listener.incoming() {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    warn!(self.shared.log, "accept failed"; "component" => "server", "error" => %e);
                    // EMFILE and friends: back off instead of spinning.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // The connection limit is applied by the loop that takes the connection.
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let Ok(loops) = self.loops.lock() else {
                return;
            };
            let target = &loops[turn % loops.len()];
            turn = turn.wrapping_add(1);
            if target.inbox.send((id, stream)).is_err() {
                continue;
            }
            target.waker.wake();
        }
    }

    /// Stops accepting: wakes the accept loop with a connection to itself.
    pub fn stop_accepting(&self, listen_addr: std::net::SocketAddr) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&listen_addr, Duration::from_secs(1));
    }

    /// Stops reading from every connection; each finishes the writes it has in flight,
    /// sends its replies and is closed. Waits for that until `deadline`; returns how many
    /// connections were still open then.
    pub fn close_connections(&self, deadline: Instant) -> usize {
        self.draining.store(true, Ordering::Release);
        let mut threads = Vec::new();
        if let Ok(mut loops) = self.loops.lock() {
            for l in loops.iter_mut() {
                l.waker.wake();
                threads.extend(l.thread.take());
            }
        }
        for thread in threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        self.shared.connections() as usize
    }

    /// The event loops' signs of life.
    pub fn heartbeats(&self) -> &[Arc<Heartbeat>] {
        &self.heartbeats
    }

    /// Whether the server is draining for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub fn connections(&self) -> u32 {
        self.shared.connections()
    }
}

/// One connection as its loop holds it.
struct Conn {
    stream: TcpStream,
    session: Session,
    input: Vec<u8>,
    /// Bytes of `input` already run.
    start: usize,
    frame: Frame,
    output: Vec<u8>,
    /// Bytes of `output` already sent.
    sent: usize,
    /// Writes submitted, outcomes not yet in.
    awaiting: bool,
    /// Whether the client is read.
    state: ConnState,
}

/// A connection's reading side. `Open` ⇄ `Paused`; either → `Closing`, which is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// Read as data arrives.
    Open,
    /// Not read while its writes are in flight (or its replies pile up unsent) and enough
    /// input is buffered; read again once it catches up (the socket buffer holds the rest,
    /// and no edge will announce it, so the catching up schedules the read).
    Paused,
    /// Never read again; closed once its owed replies are out (QUIT, a protocol error, the
    /// peer closed, a write of unknown outcome, draining).
    Closing,
}

/// Why a turn of [`Conn::run`] stopped running commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Nothing more to run now: waiting for input, or for outcomes (a ticket's wake drives
    /// the connection again).
    Idle,
    /// Outcomes are in but not durable yet (the loop retries at its next wake).
    Unsynced,
    /// Too many replies wait unsent.
    OutputBound,
    /// Its share of the turn is used up and commands remain.
    TurnOver,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.output.len() - self.sent
    }

    fn close_input(&mut self) {
        self.state = ConnState::Closing;
    }

    /// Collects outcomes that are in and runs buffered commands, batch by batch, until
    /// something stops it.
    fn run(&mut self) -> Stop {
        let mut batches = 0;
        loop {
            if self.awaiting {
                if !self.session.outcomes_in() {
                    return Stop::Idle;
                }
                if self.session.acknowledge() == Acknowledge::NotYet {
                    return Stop::Unsynced;
                }
                self.session.collect(&mut self.output);
                self.awaiting = false;
                if self.session.must_close() {
                    // A write's outcome is unknown: send what came before it, nothing more.
                    self.close_input();
                    self.start = self.input.len();
                    return Stop::Idle;
                }
            }
            if self.unsent() > OUTPUT_HIGH_WATER_BYTES {
                return Stop::OutputBound;
            }
            if batches == BATCHES_PER_TURN {
                return if self.start < self.input.len() {
                    Stop::TurnOver
                } else {
                    Stop::Idle
                };
            }
            batches += 1;
            // Replies stop piling up past the high-water mark, even within a batch.
            let out_limit =
                self.output.len() + OUTPUT_HIGH_WATER_BYTES.saturating_sub(self.unsent());
            let batch = self.session.batch(
                &self.input,
                &mut self.start,
                &mut self.frame,
                &mut self.output,
                out_limit,
            );
            self.awaiting = self.session.submit();
            match batch {
                Batch::Full | Batch::Flush => {}
                Batch::NeedMore if !self.awaiting => return Stop::Idle,
                Batch::NeedMore => {}
                Batch::Close => {
                    self.close_input();
                    // Nothing after QUIT or a protocol error runs.
                    self.start = self.input.len();
                    if !self.awaiting {
                        return Stop::Idle;
                    }
                }
            }
        }
    }

    /// Drops the input already run (all of it, or a large prefix).
    fn compact_input(&mut self) {
        if self.start > 0 && (self.start == self.input.len() || self.start > 64 << 10) {
            self.input.drain(..self.start);
            self.start = 0;
        }
    }

    /// Sends what is ready until the socket would block; returns the bytes sent.
    fn send(&mut self) -> u64 {
        let mut total = 0u64;
        while self.unsent() > 0 {
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => {
                    self.lost_peer();
                    break;
                }
                Ok(n) => {
                    self.sent += n;
                    total += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost_peer();
                    break;
                }
            }
        }
        if self.unsent() == 0 {
            self.output.clear();
            self.sent = 0;
        }
        total
    }

    /// The peer is gone: nothing more can reach it.
    fn lost_peer(&mut self) {
        self.close_input();
        self.output.clear();
        self.sent = 0;
    }
}

struct EventLoop {
    server: Arc<Server>,
    epoll: Epoll,
    waker: Arc<Waker>,
    incoming: Receiver<(u64, TcpStream)>,
    /// Connections whose writes have all their outcomes (sent by their tickets).
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
    conns: HashMap<u64, Conn>,
    /// Connections with buffered commands still to run.
    runnable: VecDeque<u64>,
    heartbeat: Arc<Heartbeat>,
    /// Connections whose outcomes are in but whose writes are not durable yet.
    unsynced: Vec<u64>,
    chunk: Vec<u8>,
    /// This loop's command counts, latencies and bytes (written by this thread only).
    stats: Arc<CommandStats>,
    /// Set (then the loop woken) when CLIENT KILL marked one of its connections.
    kills: Arc<AtomicBool>,
}

impl EventLoop {
    fn run(mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            if self.server.draining.load(Ordering::Acquire) {
                let idle: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.awaiting && c.unsent() == 0)
                    .map(|(id, _)| *id)
                    .collect();
                for id in idle {
                    self.close(id);
                }
                for c in self.conns.values_mut() {
                    c.close_input();
                }
                if self.conns.is_empty() {
                    // Connections handed over after the drain began are closed unread.
                    while let Ok((_, stream)) = self.incoming.try_recv() {
                        drop(stream);
                    }
                    return;
                }
            }
            self.heartbeat.beat();
            let timeout = if self.runnable.is_empty() {
                EpollTimeout::from(100u16)
            } else {
                EpollTimeout::ZERO
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    error!(self.server.shared.log, "epoll_wait failed"; "component" => "server", "error" => %e);
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            // Before the events: a client killed before its next command arrived never
            // has it run.
            if self.kills.swap(false, Ordering::AcqRel) {
                self.close_killed();
            }
            let woken = self.on_events(&events[..n]);
            if woken {
                self.waker.reset();
                // After the events: closes they reported are counted before admitting.
                self.admit(&mut events);
                while let Ok(id) = self.done_rx.try_recv() {
                    self.drive(id);
                }
                for id in std::mem::take(&mut self.unsynced) {
                    self.drive(id);
                }
            }
            for _ in 0..self.runnable.len() {
                if let Some(id) = self.runnable.pop_front() {
                    self.read(id);
                    self.drive(id);
                }
            }
        }
    }

    /// Handles the connections' events; returns whether the waker's was among them.
    fn on_events(&mut self, events: &[EpollEvent]) -> bool {
        let mut woken = false;
        for event in events {
            let token = event.data();
            if token == WAKE_TOKEN {
                woken = true;
                continue;
            }
            let flags = event.events();
            if flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                // Both directions are gone: nothing can be read or sent.
                self.close(token);
                continue;
            }
            if flags.contains(EpollFlags::EPOLLIN) {
                self.read(token);
            }
            // Writable or readable: either may let the connection go on.
            self.drive(token);
        }
        woken
    }

    /// Reserves one of the `--max-clients` connections for a new one, if any is free;
    /// at the limit, first handles what epoll reports (closes among it) and looks again, so
    /// connections already closed by their clients are not counted against a new one.
    fn reserve_connection(&mut self, events: &mut [EpollEvent]) -> bool {
        let max = self.server.shared.live.max_clients.load(Ordering::Relaxed);
        let try_take = |active: &AtomicU32| {
            active
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        };
        if try_take(&self.server.shared.active) {
            return true;
        }
        for _ in 0..2 {
            if let Ok(n) = self.epoll.wait(events, EpollTimeout::ZERO) {
                // A wake among them comes again: the eventfd is level-triggered.
                self.on_events(&events[..n]);
            }
            if try_take(&self.server.shared.active) {
                return true;
            }
        }
        false
    }

    /// Registers the connections the accept thread handed over, as `--max-clients` allows.
    fn admit(&mut self, events: &mut [EpollEvent]) {
        while let Ok((id, mut stream)) = self.incoming.try_recv() {
            if !self.reserve_connection(events) {
                self.server.metrics.connections_rejected.inc();
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
                continue;
            }
            // Edge-triggered, registered once: no epoll_ctl per request. Every notification
            // is followed by reading and writing until the socket would block.
            let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
            if let Err(e) = self
                .epoll
                .add(stream.as_fd(), EpollEvent::new(interest, id))
            {
                warn!(self.server.shared.log, "cannot watch connection"; "component" => "server",
                      "conn" => id, "error" => %e);
                self.server.shared.active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            debug!(self.server.shared.log, "client connected"; "component" => "server", "conn" => id,
                   "peer" => &peer);
            let client = {
                let (kills, waker) = (Arc::clone(&self.kills), Arc::clone(&self.waker));
                let laddr = stream
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                Arc::new(Client::new(
                    id,
                    peer,
                    laddr,
                    stream.as_raw_fd(),
                    Box::new(move || {
                        kills.store(true, Ordering::Release);
                        waker.wake();
                    }),
                ))
            };
            self.server.shared.clients.add(Arc::clone(&client));
            let ticket = {
                let (done, waker) = (self.done_tx.clone(), Arc::clone(&self.waker));
                Ticket::new(move || {
                    let _ = done.send(id);
                    waker.wake();
                })
            };
            self.conns.insert(
                id,
                Conn {
                    stream,
                    session: Session::new(
                        Arc::clone(&self.server.shared),
                        &TABLE,
                        client,
                        ticket,
                        Arc::clone(&self.stats),
                    ),
                    input: Vec::with_capacity(16 << 10),
                    start: 0,
                    frame: Frame::default(),
                    output: Vec::with_capacity(16 << 10),
                    sent: 0,
                    awaiting: false,
                    state: ConnState::Open,
                },
            );
        }
    }

    /// Reads what the socket holds (unless the connection is not to be read now).
    fn read(&mut self, id: u64) {
        let max = self.server.shared.config.max_request_bytes;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.state == ConnState::Closing {
            return;
        }
        loop {
            let stalled = c.awaiting || c.unsent() > OUTPUT_HIGH_WATER_BYTES;
            if stalled && c.input.len() - c.start >= PAUSE_BYTES {
                c.state = ConnState::Paused;
                return;
            }
            match c.stream.read(&mut self.chunk) {
                Ok(0) => {
                    c.close_input();
                    break;
                }
                Ok(n) => {
                    if self.server.shared.config.command_metrics {
                        self.stats.received(n as u64);
                    }
                    c.input.extend_from_slice(&self.chunk[..n]);
                    if c.input.len() - c.start > max {
                        // The owed replies go first, then this error, then the close.
                        c.input.clear();
                        c.start = 0;
                        let mut e = Vec::new();
                        reply::error(
                            &mut e,
                            "ERR Protocol error: request exceeds max-request-bytes",
                        );
                        c.session.reply_in_order(&e, &mut c.output);
                        c.close_input();
                        break;
                    }
                    if n < self.chunk.len() {
                        // A short read took all there was; new data raises a new edge.
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    c.close_input();
                    break;
                }
            }
        }
    }

    /// Runs what connection `id` can run now, sends its replies, and closes it or
    /// schedules its next turn.
    fn drive(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let stop = c.run();
        if stop == Stop::Unsynced {
            self.unsynced.push(id);
        }
        c.compact_input();
        let sent = c.send();
        if sent > 0 && self.server.shared.config.command_metrics {
            self.stats.sent(sent);
        }
        let caught_up = c.unsent() <= OUTPUT_HIGH_WATER_BYTES;
        if c.awaiting {
            // The ticket's wake (or the unsynced retry) drives it again.
            return;
        }
        if c.state == ConnState::Closing && c.unsent() == 0 {
            self.close(id);
            return;
        }
        let more = match stop {
            Stop::TurnOver => true,
            // The replies went out at once, so no writable edge will come to go on with
            // the commands still buffered.
            Stop::OutputBound => caught_up,
            Stop::Idle | Stop::Unsynced => false,
        };
        let resume = c.state == ConnState::Paused && caught_up;
        if resume {
            // Caught up: read what waited in the socket (no edge will announce it).
            c.state = ConnState::Open;
        }
        if more || resume {
            self.runnable.push_back(id);
        }
    }

    /// Closes the connections CLIENT KILL marked (their replies owed are dropped, as
    /// Redis drops a killed client's).
    fn close_killed(&mut self) {
        let killed: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.client.killed())
            .map(|(id, _)| *id)
            .collect();
        for id in killed {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            self.server.shared.clients.remove(id);
            let _ = self.epoll.delete(c.stream.as_fd());
            self.server.shared.active.fetch_sub(1, Ordering::AcqRel);
            debug!(self.server.shared.log, "client disconnected"; "component" => "server", "conn" => id);
        }
    }
}

/// 40 random hex digits, as Redis' run ids.
fn run_id() -> String {
    let mut bytes = [0u8; 20];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        // No randomness to be had: unique enough for an id nobody relies on.
        let seed = shm_protocol::os::monotonic_ns() ^ u64::from(std::process::id()) << 40;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32 * 7) ^ (i as u64 * 0x9e37)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Logs a summary line when the server stops.
pub fn log_stopped(server: &Server) {
    info!(server.shared.log, "front door closed"; "component" => "server",
          "connections_served" => server.shared.connections_received());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads queue items and wake one consumer, which resets the waker and drains
    /// the queue whenever epoll reports it; no item may be left waiting once the wakes stop
    /// (a lost wakeup would leave the consumer asleep with items queued).
    #[test]
    fn waker_loses_no_wakeup() {
        // Each round takes milliseconds; a lost wakeup shows up within a few rounds.
        for _ in 0..20 {
            waker_round();
        }
    }

    fn waker_round() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).unwrap();
        epoll
            .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))
            .unwrap();
        let waker = Arc::new(Waker {
            fd,
            pending: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<u32>();
        const THREADS: u32 = 4;
        const ITEMS: u32 = 20_000;
        let producers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (tx, waker) = (tx.clone(), Arc::clone(&waker));
                std::thread::spawn(move || {
                    for i in 0..ITEMS {
                        tx.send(i).unwrap();
                        waker.wake();
                    }
                })
            })
            .collect();
        let mut received = 0;
        let mut events = [EpollEvent::empty(); 4];
        while received < THREADS * ITEMS {
            // Long enough that a lost wakeup shows as a failure, not a slow pass.
            let n = epoll
                .wait(&mut events, EpollTimeout::from(2000u16))
                .unwrap();
            assert!(n > 0, "asleep with {} items queued", rx.len());
            waker.reset();
            while rx.try_recv().is_ok() {
                received += 1;
            }
        }
        for p in producers {
            p.join().unwrap();
        }
    }
}
