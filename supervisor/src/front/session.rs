//! One client's session: the command set, authentication, and the order of replies.
//!
//! A session runs a batch of pipelined commands at a time. Reads are answered at once from
//! the shards' shared-memory tables; writes are queued and submitted to the sequencer as one
//! batch, and their replies are owed until the outcomes arrive. A read that follows queued
//! writes of the same pipeline waits for them ([`Batch::Flush`]), so a connection always
//! reads its own writes, and replies always go out in command order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use corral_worker::command::{Op, Outcome, WriteError};
use shm_protocol::table::Lookup;
use slog::{debug, error, info, warn};

use crate::base::gate::Gates;
use crate::base::ops::OwnedOp;
use crate::base::shard::ShardState;
use crate::base::slot::shard_of;
use crate::base::ticket::{Failure, Ticket, WriteResult};
use crate::front::clients::Client;
use crate::front::command::{Kind, Spec, Table};
use crate::front::resp::{
    self, reply, Frame, ParseLimits, Parsed, Proto, ProtocolError, Rejection,
};
use crate::front::shared::Shared;
use crate::pipeline::msg::{SeqMsg, Unchanged, WriteOp};
use crate::telemetry::metrics::CommandStats;
use crate::wal::appender::Acknowledge;

/// How a write command's op replies combine into its reply.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WriteKind {
    /// One op; its outcome is the reply (`+OK`, nil, an integer, a value, or an error).
    One,
    /// Integer sum of the ops' integers (DEL).
    Sum,
    /// All ops must be OK (MSET).
    AllOk,
    /// One conditional SET; `:1` if it set its key, `:0` if not (SETNX).
    Applied,
}

/// How a batch of commands ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// `max_pipeline` commands ran; more may be buffered.
    Full,
    /// The buffer holds no further complete command.
    NeedMore,
    /// The next command reads, and writes before it are pending: they must be acknowledged
    /// first (the command is left in the buffer).
    Flush,
    /// The connection must close (QUIT or a protocol error) once its replies are out.
    Close,
}

/// What a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ran (or queued its writes).
    Done,
    /// Wrote part of its reply: it runs on (from where it stopped) once that is sent.
    Partial,
    /// Ran; the connection closes after replying.
    Close,
    /// Not run: pending writes must be acknowledged first.
    Flush,
}

/// Which replies a connection gets (CLIENT REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    /// Every reply.
    On,
    /// None, until CLIENT REPLY ON.
    Off,
    /// None for the next command.
    SkipNext,
}

/// What the current batch asks of the sequencer, in command order; each gets an outcome.
enum Request {
    /// A write to a shard.
    Write(u32, OwnedOp),
    /// A checkpoint of every shard with new writes (SAVE).
    Save,
}

/// A reply owed, in command order, while writes are pending.
enum Owed {
    /// The combined outcome of a write command's `ops` writes (command index and when it
    /// was read, for the metrics).
    Write {
        kind: WriteKind,
        ops: u32,
        command: usize,
        read_at: Instant,
        /// CLIENT REPLY OFF or SKIP: counted, never sent.
        silent: bool,
        /// The writes of a [`Rerun`]: refused as [`Failure::Changed`], it starts over.
        conditional: bool,
    },
    /// A reply already encoded (an error found without running the command).
    Encoded(Vec<u8>),
    /// EXEC's reply: the array of the next `entries` owed replies, whose writes are the
    /// transaction's `ops` (refused whole, it is one error instead; aborted by a WATCHed
    /// key, a null array). A transaction of no ops but with WATCHed keys carries one read
    /// (`carrier`) so the sequencer can check them; it has no reply.
    Exec {
        entries: usize,
        ops: u32,
        carrier: bool,
        silent: bool,
        /// EXEC's index in the table and when it was read, for the metrics.
        command: usize,
        read_at: Instant,
        /// It runs reading-first commands ([`Rerun`]): refused as [`Failure::Changed`], it
        /// starts over.
        conditional: bool,
    },
    /// A read inside a transaction: its handler runs on the values its `ops` reads
    /// ([`Op::Read`], one per key) found at the transaction's place in the log.
    Read {
        args: Vec<Vec<u8>>,
        ops: u32,
        command: usize,
        read_at: Instant,
        silent: bool,
    },
    /// The reads of a [`Rerun`] (one [`Op::Read`] per key, at one place in the log): no reply, what
    /// they found goes to its next step.
    Prefetch { keys: Vec<Vec<u8>> },
    /// WATCH: its keys were read (one [`Op::Read`] each) at a place in the log, from which
    /// on EXEC depends on them.
    Watch {
        keys: Vec<Vec<u8>>,
        command: usize,
        read_at: Instant,
        silent: bool,
    },
}

/// The keys the commands of an EXEC wrote so far ([`Session::may_run_in_exec`]).
#[derive(Default)]
struct Written {
    keys: std::collections::HashSet<Vec<u8>>,
    /// FLUSHALL: every key.
    all: bool,
}

impl Written {
    /// Notes the keys of the ops a command queued (its reads write nothing).
    fn note(&mut self, requests: &[Request]) {
        for request in requests {
            if let Request::Write(_, op) = request {
                match op.as_op() {
                    Op::Read { .. } => {}
                    Op::Flush => self.all = true,
                    _ => drop(self.keys.insert(op.key().to_vec())),
                }
            }
        }
    }
}

/// A run of queued requests submitted as one transaction, and what it depends on.
struct Txn {
    ops: std::ops::Range<usize>,
    unchanged: Vec<Unchanged>,
}

/// A command that reads its keys before it decides what to write (MSETNX, RENAME, RENAMENX,
/// COPY; its keys may live on different shards). It runs in steps across batches, from its
/// own copy of its arguments, and nothing after it runs until it has replied: its reads are
/// at one place in the log (every key read after the same records), its writes one
/// transaction that the sequencer applies only if none of those keys was written since; if
/// one was, it starts over.
struct Rerun {
    args: Vec<Vec<u8>>,
    /// Its index in the table.
    command: usize,
    /// What its reads found, until its next step decides on it.
    read: Option<Vec<Prefetched>>,
    /// The record its reads were read after (what its writes' conditions name).
    since: u64,
    /// Its reply is dropped (CLIENT REPLY).
    silent: bool,
    /// Its writes were aborted this many times.
    aborts: u32,
    /// An EXEC: the transaction and the WATCHed keys it runs with, again at each step.
    exec: Option<(Multi, Vec<Unchanged>)>,
}

/// A [`Rerun`] aborted this often gives up with an error (its keys keep changing).
const MAX_ABORTS: u32 = 100;

/// The commands that read before they write ([`Rerun`]).
const READ_FIRST: [&str; 4] = ["msetnx", "rename", "renamenx", "copy"];

/// The commands that run at once after MULTI (as in Redis); every other one is queued.
const RUN_IN_MULTI: [&str; 6] = ["exec", "discard", "multi", "watch", "quit", "reset"];

/// The most keys one connection may WATCH at a time (what it holds is bounded: their
/// bytes too, by `--max-request-bytes`).
const MAX_WATCHED: usize = 10_000;

/// What a held vector costs besides its bytes (its pointer, length and capacity), counted
/// against `--max-request-bytes` for the commands MULTI queues and the keys WATCH holds.
const HELD_VEC_BYTES: usize = std::mem::size_of::<Vec<u8>>();

/// A key a transaction's read looked up, and its value and deadline if it was there.
type Prefetched = (Vec<u8>, Option<(Vec<u8>, u64)>);

/// A transaction being queued (MULTI until EXEC or DISCARD).
#[derive(Clone, Debug, Default)]
pub(super) struct Multi {
    /// The queued commands' arguments.
    commands: Vec<Vec<Vec<u8>>>,
    /// Their bytes (bounded by `--max-request-bytes`).
    bytes: usize,
    /// A command was refused while queueing: EXEC fails with EXECABORT.
    aborted: bool,
    /// One of them reads before it writes ([`READ_FIRST`]): EXEC reads first.
    reads_first: bool,
}

/// One client's session: authentication, name, and the writes of its current batch.
pub struct Session {
    pub(super) shared: Arc<Shared>,
    /// The command table it runs (`front::table::TABLE`).
    pub(super) table: &'static Table<Handler>,
    /// The connection as CLIENT LIST shows it (name, library, last command).
    pub(super) client: Arc<Client>,
    pub(super) authed: bool,
    /// The protocol its replies are encoded in (HELLO switches it).
    pub(super) proto: Proto,
    /// Queued requests of the current batch.
    ops: Vec<Request>,
    /// Replies owed since the first queued write, in order.
    owed: Vec<Owed>,
    ticket: Arc<Ticket>,
    results: Vec<Option<WriteResult>>,
    /// The value of the last [`Session::lookup`].
    pub(super) value: Vec<u8>,
    /// The deadline of the last key [`Session::lookup`] found (Unix ms; 0: none).
    pub(super) deadline_ms: u64,
    /// When the current batch's commands were read, Unix ms: the time its reads see keys
    /// at (expired or not) and its relative expiry times count from.
    now_ms: u64,
    /// Index (in the table, the metric index) of the command being run.
    pub(super) command: usize,
    /// State of [`Session::random`] (xorshift): write-log sampling, RANDOMKEY.
    sample: u64,
    /// When the current batch's commands were read.
    read_at: Instant,
    /// The coarse clock when the batch's previous command ended (or the batch began): the
    /// slow log's start of the next command.
    clock_ns: u64,
    /// Commands of the current batch answered at once: command index and success, counted
    /// when the batch ends.
    immediate: Vec<(usize, bool)>,
    /// Its event loop's command statistics (this session runs on that loop's thread).
    stats: Arc<CommandStats>,
    /// A write's outcome is unknown: nothing more is sent, the connection closes.
    closing: bool,
    /// Where the MGET being answered in parts goes on (index of its next key).
    pub(super) resume: Option<usize>,
    /// CLIENT REPLY: which replies are sent.
    pub(super) replies: Replies,
    /// Whether the reply of the command being run is dropped.
    pub(super) silent: bool,
    /// The transaction being queued (after MULTI).
    multi: Option<Multi>,
    /// The command just run was queued (`+QUEUED`): it counts when EXEC runs it, as in
    /// Redis, not now.
    queued: bool,
    /// EXEC is turning its queued commands into one transaction: every reply is owed.
    exec: bool,
    /// The values a transaction's reads found (key, value and deadline or missing), which
    /// [`Session::lookup`] answers from while a read's reply is built.
    prefetched: Option<Vec<Prefetched>>,
    /// Runs of `ops` that are transactions (each submitted as one).
    transactions: Vec<Txn>,
    /// The command reading before it writes, between its steps.
    rerun: Option<Rerun>,
    /// The conditions of the reading-first commands of the EXEC being built.
    exec_read: Vec<Unchanged>,
    /// The keys WATCHed (where they were read, their deadline then) until EXEC, DISCARD
    /// or UNWATCH.
    watched: Vec<Unchanged>,
    /// The gate words (slot, word) the running read loaded before its lookups.
    gate_words: Vec<(u32, u64)>,
    /// The word of all gates the running handler loaded before its first lookup: open, its
    /// lookups load no slot's gate.
    gate_all: u64,
    /// The running handler looked a key up in shared memory (WATCH, for one, does not).
    looked_up: bool,
    /// A lookup of the running read met a closed gate.
    gated: bool,
}

/// Arguments of a command that are passed without an allocation.
const FEW_ARGS: usize = 8;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.client.id)
            .field("ops", &self.ops.len())
            .finish_non_exhaustive()
    }
}

/// The kernel's coarse monotonic clock (nanoseconds; it advances by the scheduler tick, a
/// few milliseconds): cheap enough to read around every command, and fine enough for the
/// slow log's 10 ms threshold.
fn coarse_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// Whether argument `a` is the keyword `b`, in any case.
pub(super) fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

impl Session {
    /// A session of connection `id` running the commands of `table`; `ticket` gathers the
    /// outcomes of its writes.
    #[must_use]
    pub fn new(
        shared: Arc<Shared>,
        table: &'static Table<Handler>,
        client: Arc<Client>,
        ticket: Arc<Ticket>,
        stats: Arc<CommandStats>,
    ) -> Self {
        // The log-sampling generator starts from the connection id (never zero).
        let seed = client.id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Self {
            authed: shared.config.requirepass.is_none(),
            proto: Proto::Resp2,
            shared,
            table,
            client,
            ops: Vec::new(),
            owed: Vec::new(),
            ticket,
            results: Vec::new(),
            value: Vec::new(),
            deadline_ms: 0,
            now_ms: 0,
            command: table.other(),
            sample: seed,
            read_at: Instant::now(),
            clock_ns: 0,
            immediate: Vec::new(),
            stats,
            closing: false,
            resume: None,
            replies: Replies::On,
            silent: false,
            multi: None,
            exec: false,
            prefetched: None,
            transactions: Vec::new(),
            watched: Vec::new(),
            rerun: None,
            queued: false,
            exec_read: Vec::new(),
            gate_words: Vec::new(),
            gate_all: 0,
            looked_up: false,
            gated: false,
        }
    }

    /// The parser limits of this session (tighter before AUTH).
    #[must_use]
    pub fn limits(&self) -> ParseLimits {
        let c = &self.shared.config;
        ParseLimits {
            max_args: 1 << 20,
            max_bulk_bytes: c.max_value_bytes.max(c.max_key_bytes),
            max_inline_bytes: 64 << 10,
            authenticated: self.authed,
        }
    }

    /// Parses and runs up to `max_pipeline` commands from `buf[*start..]`, appending the
    /// replies that are ready to `out`, until `out` holds `out_limit` bytes; the replies of
    /// queued writes are owed until [`Session::collect`]. A reply too long for the room left
    /// is written in parts, one per call ([`Batch::Full`] until the last).
    pub fn batch(
        &mut self,
        buf: &[u8],
        start: &mut usize,
        frame: &mut Frame,
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Batch {
        // Every command of a batch was read before the batch runs, and the replies ready
        // now are sent after it: two clock reads for all of them.
        self.read_at = Instant::now();
        self.clock_ns = coarse_ns();
        self.now_ms = crate::wal::codec::unix_ms();
        let mut commands = 0;
        if self.rerun.is_some() {
            self.step_rerun(out);
            if self.rerun.is_some() {
                // Its next outcomes first: nothing after it runs before it replied.
                return Batch::Flush;
            }
        }
        let batch = loop {
            let limits = self.limits();
            match resp::parse(buf, *start, &limits, frame) {
                Ok(Parsed::Command(next)) => {
                    if !frame.args.is_empty() {
                        match self.run_parsed(frame.source(buf), &frame.args, out, out_limit) {
                            Step::Flush => break Batch::Flush,
                            // The rest of its reply when the client has taken this part.
                            Step::Partial => break Batch::Full,
                            Step::Close => {
                                *start = next;
                                break Batch::Close;
                            }
                            Step::Done if self.rerun.is_some() => {
                                *start = next;
                                break Batch::Flush;
                            }
                            Step::Done => {}
                        }
                        commands += 1;
                    }
                    *start = next;
                    if commands >= self.shared.config.max_pipeline || out.len() >= out_limit {
                        break Batch::Full;
                    }
                }
                Ok(Parsed::Rejected(next, Rejection::TooLarge { bytes })) => {
                    *start = next;
                    self.refuse_too_large(bytes, out);
                    commands += 1;
                }
                Ok(Parsed::Incomplete(keep)) => {
                    // Bytes read past (a refused bulk) need not be kept.
                    *start = keep;
                    break Batch::NeedMore;
                }
                Err(ProtocolError(e)) => {
                    self.error(out, &format!("ERR Protocol error: {e}"));
                    debug!(self.shared.log, "protocol error"; "component" => "server",
                           "conn" => self.client.id, "error" => e);
                    break Batch::Close;
                }
            }
        };
        // CLIENT LIST shows the batch's last command and when the batch was read.
        self.client.ran(self.command, self.read_at);
        if !self.immediate.is_empty() {
            let took = crate::base::nanos(self.read_at.elapsed());
            for (command, ok) in self.immediate.drain(..) {
                self.stats.record(command, ok, took);
            }
        }
        batch
    }

    /// Runs one parsed command (its arguments at `ranges` of `buf`) and counts it if it
    /// answered at once.
    fn run_parsed(
        &mut self,
        buf: &[u8],
        ranges: &[(usize, usize)],
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Step {
        // Most commands have a few arguments: those go on the stack.
        let mut few: [&[u8]; FEW_ARGS] = [&[]; FEW_ARGS];
        let many: Vec<&[u8]>;
        let args: &[&[u8]] = if ranges.len() <= FEW_ARGS {
            for (arg, &(s, e)) in few.iter_mut().zip(ranges) {
                *arg = &buf[s..e];
            }
            &few[..ranges.len()]
        } else {
            many = ranges.iter().map(|&(s, e)| &buf[s..e]).collect();
            &many
        };
        let (before, owed) = (out.len(), self.owed.len());
        // CLIENT REPLY: whether this command's reply is sent (the command may change it).
        self.silent = self.next_reply_silent();
        self.queued = false;
        let step = self.command(args, out, out_limit);
        let counted = matches!(step, Step::Done | Step::Close) && !self.queued;
        if counted && self.shared.config.command_metrics {
            self.count_immediate(before, owed, out);
        }
        if self.silent {
            self.silence(before, owed, out);
        }
        step
    }

    /// Whether the reply of the command about to run is dropped (CLIENT REPLY OFF, or the
    /// one command after SKIP).
    fn next_reply_silent(&mut self) -> bool {
        match self.replies {
            Replies::On => false,
            Replies::Off => true,
            Replies::SkipNext => {
                self.replies = Replies::On;
                true
            }
        }
    }

    /// Takes back the reply of the command that just ran (CLIENT REPLY OFF or SKIP): what it
    /// wrote from `before` in `out`, and what it owes from index `owed` on.
    fn silence(&mut self, before: usize, owed: usize, out: &mut Vec<u8>) {
        out.truncate(before);
        let mut i = owed;
        while i < self.owed.len() {
            match &mut self.owed[i] {
                // Their outcomes are still taken in order: only the reply is dropped.
                Owed::Write { silent, .. }
                | Owed::Exec { silent, .. }
                | Owed::Read { silent, .. }
                | Owed::Watch { silent, .. } => {
                    *silent = true;
                    i += 1;
                }
                Owed::Prefetch { .. } => i += 1,
                Owed::Encoded(_) => {
                    self.owed.remove(i);
                }
            }
        }
    }

    /// Answers a command with an argument over the limits (read past, never run).
    fn refuse_too_large(&mut self, bytes: u64, out: &mut Vec<u8>) {
        self.command = self.table.other();
        let (before, owed) = (out.len(), self.owed.len());
        let max = self
            .shared
            .config
            .max_value_bytes
            .max(self.shared.config.max_key_bytes);
        self.error(
            out,
            &format!(
                "ERR argument of {bytes} bytes exceeds the maximum of {max} bytes \
                 (max-value-bytes, max-key-bytes); the command was not run"
            ),
        );
        if self.shared.config.command_metrics {
            self.count_immediate(before, owed, out);
        }
        if self.next_reply_silent() {
            self.silence(before, owed, out);
        }
    }

    /// Counts a command that just ran (at the end of its batch), unless its reply is owed
    /// (a queued write counts when its outcome arrives): an error if it replied with one.
    fn count_immediate(&mut self, before: usize, owed: usize, out: &[u8]) {
        let reply = match self.owed.get(owed..) {
            Some(
                [Owed::Write { .. }
                | Owed::Exec { .. }
                | Owed::Read { .. }
                | Owed::Watch { .. }
                | Owed::Prefetch { .. }, ..],
            ) => return,
            Some([Owed::Encoded(bytes), ..]) => bytes.as_slice(),
            _ => out.get(before..).unwrap_or_default(),
        };
        let error = reply.first() == Some(&b'-');
        if error {
            self.stats.error_reply(reply);
        }
        self.immediate.push((self.command, !error));
    }

    /// Appends an encoded reply to `out`, or, while writes are pending, owes it after
    /// theirs.
    pub fn reply_in_order(&mut self, encoded: &[u8], out: &mut Vec<u8>) {
        if self.owed.is_empty() && !self.exec {
            out.extend_from_slice(encoded);
        } else {
            self.owed.push(Owed::Encoded(encoded.to_vec()));
        }
    }

    /// Replies with an error, after the replies owed if writes are pending.
    pub(super) fn error(&mut self, out: &mut Vec<u8>, message: &str) {
        let mut encoded = Vec::new();
        reply::error(&mut encoded, message);
        self.reply_in_order(&encoded, out);
    }

    /// Runs one command: looked up in the table, checked for authentication and arity, a
    /// read after the connection's pending writes, then its handler.
    fn command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
        let found = self.table.find(args[0]);
        if !self.authed && !found.is_some_and(|(_, spec)| spec.before_auth) {
            self.error(out, "NOAUTH Authentication required.");
            return Step::Done;
        }
        let Some((index, spec)) = found else {
            self.command = self.table.other();
            self.abort_multi();
            self.unknown(args, out);
            return Step::Done;
        };
        self.command = index;
        if !spec.arity.allows(args.len()) {
            self.abort_multi();
            return self.arity_error(out);
        }
        let spec = match self.table.subcommand(index, args) {
            Some((index, sub)) => {
                self.command = index;
                if !sub.arity.allows(args.len()) {
                    self.abort_multi();
                    return self.arity_error(out);
                }
                sub
            }
            None => spec,
        };
        if self.multi.is_some() && !RUN_IN_MULTI.contains(&spec.name) {
            return self.queue_in_multi(args, spec, out);
        }
        // Reads (and everything else that answers at once) see this connection's earlier
        // writes.
        if spec.kind == Kind::Read && self.writes_pending() {
            return Step::Flush;
        }
        let threshold_us = self
            .shared
            .live
            .slowlog_slower_than_us
            .load(Ordering::Relaxed);
        if threshold_us < 0 {
            return self.run_handler(spec, args, out, out_limit);
        }
        // One clock read per command: it started when the previous one of its batch ended
        // (the parsing between them is far below the slow log's resolution).
        let step = self.run_handler(spec, args, out, out_limit);
        let ended = coarse_ns();
        let took_us = ended.saturating_sub(self.clock_ns) / 1000;
        self.clock_ns = ended;
        if took_us >= threshold_us as u64 {
            let name = self.client.names().name;
            let max_len = self.shared.live.slowlog_max_len.load(Ordering::Relaxed);
            self.shared
                .slowlog
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .add(args, took_us, &self.client.addr, &name, max_len);
        }
        step
    }

    /// Runs a command's handler. A handler whose lookups met a transaction in flight (a
    /// closed or moved gate: `base::gate`) may have seen part of it: its reply is dropped
    /// and its read asked again through the sequencer, after every transaction in flight.
    fn run_handler(
        &mut self,
        spec: &'static Spec<Handler>,
        args: &[&[u8]],
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Step {
        self.looked_up = false;
        let (before, owed, ops) = (out.len(), self.owed.len(), self.ops.len());
        let resuming = self.resume.is_some();
        let step = (spec.run)(self, args, out, out_limit);
        // Only what a handler read from shared memory can be part of a transaction; what it
        // queued (writes, reads through the log, inside EXEC) is in the log's order.
        if !self.looked_up || self.exec || self.ops.len() != ops {
            return step;
        }
        let gates = &self.shared.gates;
        let moved = if Gates::is_open(self.gate_all) {
            self.looked_up && gates.all() != self.gate_all
        } else {
            self.gated
                || self
                    .gate_words
                    .iter()
                    .any(|&(slot, w)| gates.word(slot) != w)
        };
        // An MGET answered in parts has sent parts already: it is not one snapshot.
        let partial = resuming || self.resume.is_some() || matches!(step, Step::Partial);
        let keys = spec.keys.positions(args.len()).count();
        if !moved || partial || keys == 0 || matches!(step, Step::Flush) {
            return step;
        }
        out.truncate(before);
        self.owed.truncate(owed);
        self.queue_read(args, spec.keys.positions(args.len()));
        Step::Done
    }

    /// Queues a read of `args`' keys at `positions` as a transaction of [`Op::Read`]s, and
    /// owes the reply its handler builds from what they find.
    fn queue_read(&mut self, args: &[&[u8]], positions: impl Iterator<Item = usize>) {
        let ops = self.queue_reads(positions.map(|i| args[i]));
        self.owed.push(Owed::Read {
            args: args.iter().map(|a| a.to_vec()).collect(),
            ops: ops as u32,
            command: self.command,
            read_at: self.read_at,
            silent: false,
        });
    }

    /// Queues an [`Op::Read`] of each of `keys`, at one place in the log (a transaction of
    /// its own, or part of the EXEC being built); returns how many.
    fn queue_reads<'k>(&mut self, keys: impl Iterator<Item = &'k [u8]>) -> usize {
        let shards = self.shared.shards.len() as u32;
        let first = self.ops.len();
        for key in keys {
            let op = OwnedOp::from(Op::Read { key });
            self.ops.push(Request::Write(shard_of(key, shards), op));
        }
        if !self.exec {
            self.transactions.push(Txn {
                ops: first..self.ops.len(),
                unchanged: Vec::new(),
            });
        }
        self.ops.len() - first
    }

    /// Inside EXEC, a write command that only reads this time (GETEX without an option)
    /// reads its keys at its place in the transaction, as read commands do: whether it
    /// was queued so (the reply is built from what the read finds).
    pub(super) fn transaction_read(&mut self, args: &[&[u8]]) -> bool {
        if !self.exec {
            return false;
        }
        let Some((_, spec)) = self.queued_spec(args) else {
            return false;
        };
        self.queue_read(args, spec.keys.positions(args.len()));
        true
    }

    /// Redis' reply to a command run with the wrong number of arguments.
    pub(super) fn arity_error(&mut self, out: &mut Vec<u8>) -> Step {
        let name = self.command_name();
        self.error(
            out,
            &format!("ERR wrong number of arguments for '{name}' command"),
        );
        Step::Done
    }

    fn unknown(&mut self, args: &[&[u8]], out: &mut Vec<u8>) {
        let name = args[0];
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            String::from_utf8_lossy(&name[..name.len().min(128)])
        );
        for a in args[1..].iter().take(16) {
            msg.push_str(&format!(
                "'{}' ",
                String::from_utf8_lossy(&a[..a.len().min(128)])
            ));
        }
        self.error(out, &msg);
    }

    /// Queues one write replied to as `kind`, after checking its key's and value's sizes.
    pub(super) fn write_one(&mut self, kind: WriteKind, op: Op<'_>, out: &mut Vec<u8>) -> Step {
        let parts = op.parts();
        if let Some(e) = self.size_error(parts.key, Some(parts.value)) {
            self.error(out, &e);
            return Step::Done;
        }
        self.queue(kind, std::iter::once(OwnedOp::from(op)));
        Step::Done
    }

    /// The error for a key or value longer than the configured limits.
    pub(super) fn size_error(&self, key: &[u8], value: Option<&[u8]>) -> Option<String> {
        let c = &self.shared.config;
        if key.len() > c.max_key_bytes {
            return Some(format!(
                "ERR key exceeds the maximum of {} bytes (max-key-bytes)",
                c.max_key_bytes
            ));
        }
        if value.is_some_and(|v| v.len() > c.max_value_bytes) {
            return Some(format!(
                "ERR value exceeds the maximum of {} bytes (max-value-bytes)",
                c.max_value_bytes
            ));
        }
        None
    }

    pub(super) fn queue(&mut self, kind: WriteKind, ops: impl ExactSizeIterator<Item = OwnedOp>) {
        let shards = self.shared.shards.len() as u32;
        self.owe(kind, ops.len() as u32);
        for op in ops {
            self.ops
                .push(Request::Write(shard_of(op.key(), shards), op));
        }
    }

    /// Queues `op` for every shard (FLUSHALL), replied to as `kind`.
    pub(super) fn queue_every_shard(&mut self, kind: WriteKind, op: &OwnedOp) {
        let shards = self.shared.shards.len() as u32;
        self.owe(kind, shards);
        let first = self.ops.len();
        for shard in 0..shards {
            self.ops.push(Request::Write(shard, op.clone()));
        }
        // One record: no reader sees one shard emptied and another not yet.
        if !self.exec {
            self.transactions.push(Txn {
                ops: first..self.ops.len(),
                unchanged: Vec::new(),
            });
        }
    }

    /// Queues a SAVE: its `+OK` is owed until every shard with new writes has written a
    /// checkpoint.
    pub(super) fn queue_save(&mut self) {
        self.owe(WriteKind::AllOk, 1);
        self.ops.push(Request::Save);
    }

    /// Owes the running command's reply: `kind` of the outcomes of its next `ops` requests.
    fn owe(&mut self, kind: WriteKind, ops: u32) {
        self.owed.push(Owed::Write {
            kind,
            ops,
            command: self.command,
            read_at: self.read_at,
            silent: false,
            conditional: false,
        });
    }

    /// Submits the queued writes to the sequencer as one batch; returns whether there
    /// were any (then the ticket notifies when their outcomes are in, and
    /// [`Session::collect`] appends the owed replies).
    pub fn submit(&mut self) -> bool {
        if self.ops.is_empty() {
            return false;
        }
        let claims = self.ticket.arm(self.ops.len());
        let mut batch = Vec::with_capacity(self.ops.len());
        let mut saves = Vec::new();
        let mut transactions = std::mem::take(&mut self.transactions)
            .into_iter()
            .peekable();
        let mut transaction = Vec::new();
        let mut unchanged = Vec::new();
        // A send fails only when the sequencer is gone; the returned message's claims drop
        // and fail, so the ticket still completes.
        let send = |msg| drop(self.shared.sequencer.send(msg));
        for (i, (request, pending)) in self.ops.drain(..).zip(claims).enumerate() {
            let inside = transactions.peek().is_some_and(|t| t.ops.contains(&i));
            match request {
                Request::Write(shard, op) if inside => {
                    if transaction.is_empty() && !batch.is_empty() {
                        // The writes before it go first, in order.
                        send(SeqMsg::Submit(std::mem::take(&mut batch)));
                    }
                    transaction.push(WriteOp { shard, op, pending });
                    if transactions.peek().is_some_and(|t| t.ops.end == i + 1) {
                        if let Some(t) = transactions.next() {
                            unchanged = t.unchanged;
                        }
                        send(SeqMsg::Transaction {
                            writes: std::mem::take(&mut transaction),
                            unchanged: std::mem::take(&mut unchanged),
                        });
                    }
                }
                Request::Write(shard, op) => batch.push(WriteOp { shard, op, pending }),
                Request::Save => saves.push(SeqMsg::Save(pending)),
            }
        }
        debug_assert!(transaction.is_empty(), "a transaction ended past the ops");
        if !batch.is_empty() {
            send(SeqMsg::Submit(batch));
        }
        for save in saves {
            drop(self.shared.sequencer.send(save));
        }
        true
    }

    /// Whether the submitted writes all have their outcomes.
    #[must_use]
    pub fn outcomes_in(&self) -> bool {
        self.ticket.is_complete()
    }

    /// Whether the outcomes may be acknowledged: once they are in, their writes must also
    /// be durable under the fsync policy.
    #[must_use]
    pub fn acknowledge(&self) -> Acknowledge {
        self.shared.durability.acknowledge(self.ticket.last_seq())
    }

    /// Appends the owed replies, in command order, once [`Session::outcomes_in`] and
    /// [`Session::acknowledge`] is not [`Acknowledge::NotYet`]. At a write whose outcome is
    /// unknown it stops: no reply is owed past it, and [`Session::must_close`] says so.
    pub fn collect(&mut self, out: &mut Vec<u8>) {
        self.ticket.take(&mut self.results);
        if let Acknowledge::Failed(errno) = self.acknowledge() {
            for r in &mut self.results {
                if matches!(r, Some(Ok(_))) {
                    *r = Some(Err(Failure::NotDurable(errno)));
                }
            }
        }
        let mut at = 0usize;
        let now = Instant::now();
        let mut owed_replies = std::mem::take(&mut self.owed);
        // Owed replies of a refused transaction, skipped (their writes with them).
        let mut skip = 0usize;
        for owed in owed_replies.drain(..) {
            if self.closing {
                break;
            }
            if skip > 0 {
                skip -= 1;
                if let Owed::Write { ops, .. } | Owed::Read { ops, .. } = owed {
                    at += ops as usize;
                }
                continue;
            }
            let before = out.len();
            match owed {
                Owed::Exec {
                    entries,
                    ops,
                    carrier,
                    silent,
                    command,
                    read_at,
                    conditional,
                } => {
                    let results = self.results.get(at..at + ops as usize).unwrap_or_default();
                    // Refused before the log: nothing of it was applied, one reply says so.
                    let refused = results.iter().find_map(|r| match r {
                        Some(Err(f)) if !f.outcome_unknown() => Some(*f),
                        _ => None,
                    });
                    if conditional {
                        if refused == Some(Failure::Changed) && self.rerun_changed() {
                            // Nothing applied: its reads again, then it runs again.
                            skip = entries;
                            at += usize::from(carrier);
                            continue;
                        }
                        self.rerun = None;
                    }
                    match refused {
                        Some(Failure::Aborted) => reply::null_array(out, self.proto),
                        Some(Failure::Changed) => reply::error(
                            out,
                            &format!(
                                "EXECABORT Transaction discarded: the keys its commands read \
                                 were written {MAX_ABORTS} times while it ran"
                            ),
                        ),
                        Some(failure) => {
                            let durability = &self.shared.durability;
                            let text = failure_text(failure, || durability.failure());
                            reply::error(out, &format!("EXECABORT Transaction discarded: {text}"));
                        }
                        None => reply::array(out, entries),
                    }
                    if refused.is_some() {
                        skip = entries;
                    }
                    at += usize::from(carrier);
                    self.owed_replied(command, read_at, now, out, before, silent);
                }
                Owed::Read {
                    args,
                    ops,
                    command,
                    read_at,
                    silent,
                } => {
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    self.reply_read(command, &args, at, out);
                    at += ops as usize;
                    self.owed_replied(command, read_at, now, out, before, silent);
                }
                Owed::Prefetch { keys } => {
                    // One place in the log: every key was read after the same records.
                    let (n, since) = (keys.len(), self.ticket.seq_of(at));
                    let found = self.found_at(at, keys.into_iter());
                    at += n;
                    self.prefetched_read(found, since, out);
                }
                Owed::Watch {
                    keys,
                    command,
                    read_at,
                    silent,
                } => {
                    let (n, since) = (keys.len(), self.ticket.seq_of(at));
                    let found = self.found_at(at, keys.into_iter());
                    at += n;
                    self.watched_read(found, since, out);
                    self.owed_replied(command, read_at, now, out, before, silent);
                }
                Owed::Write {
                    kind,
                    ops,
                    command,
                    read_at,
                    silent,
                    conditional,
                } => {
                    let Some(results) = self.results.get(at..at + ops as usize) else {
                        // Each submitted write has a result entry: a missing one is a bug,
                        // and its outcome is unknown.
                        debug_assert!(
                            false,
                            "{} outcomes for {} owed",
                            self.results.len(),
                            at + ops as usize
                        );
                        error!(self.shared.log, "bug: write outcomes missing; closing the connection without a reply";
                               "component" => "server", "conn" => self.client.id,
                               "command" => self.table.label(command),
                               "outcomes" => self.results.len(), "owed" => at + ops as usize);
                        self.closing = true;
                        continue;
                    };
                    at += ops as usize;
                    if conditional {
                        if results
                            .iter()
                            .any(|r| matches!(r, Some(Err(Failure::Changed))))
                        {
                            if self.rerun_changed() {
                                // Nothing applied: read again and decide again.
                                continue;
                            }
                            reply::error(
                                out,
                                &format!(
                                    "ERR its keys were written {MAX_ABORTS} times while it ran; \
                                     not applied"
                                ),
                            );
                            if silent {
                                out.truncate(before);
                            }
                            continue;
                        }
                        self.rerun = None;
                    }
                    let unknown = results.iter().find_map(|r| match r {
                        Some(Err(f)) if f.outcome_unknown() => Some(*f),
                        None => Some(Failure::Lost),
                        _ => None,
                    });
                    if let Some(failure) = unknown {
                        // An error would say "not applied"; nobody can say that here.
                        warn!(self.shared.log, "write outcome unknown: closing the connection without a reply";
                              "component" => "server", "conn" => self.client.id,
                              "command" => self.table.label(command),
                              "reason" => ?failure);
                        if self.shared.config.command_metrics {
                            self.stats.record(
                                command,
                                false,
                                crate::base::nanos(now.saturating_duration_since(read_at)),
                            );
                        }
                        self.closing = true;
                        continue;
                    }
                    let durability = &self.shared.durability;
                    write_reply(kind, self.proto, results, || durability.failure(), out);
                    let ok = out.get(before) != Some(&b'-');
                    let took = now.saturating_duration_since(read_at);
                    self.maybe_log_write(command, at - ops as usize, ok, took);
                    self.owed_replied(command, read_at, now, out, before, silent);
                }
                Owed::Encoded(bytes) => out.extend_from_slice(&bytes),
            }
        }
        owed_replies.clear();
        self.owed = owed_replies;
    }

    /// An owed reply is written, in `out` from `before`: it is counted (`command` read at
    /// `read_at`; an error reply fails it), and dropped if `silent` (CLIENT REPLY).
    fn owed_replied(
        &self,
        command: usize,
        read_at: Instant,
        now: Instant,
        out: &mut Vec<u8>,
        before: usize,
        silent: bool,
    ) {
        if self.shared.config.command_metrics {
            let reply = &out[before..];
            let ok = reply.first() != Some(&b'-');
            let took = crate::base::nanos(now.saturating_duration_since(read_at));
            self.stats.record(command, ok, took);
            if !ok {
                self.stats.error_reply(reply);
            }
        }
        if silent {
            out.truncate(before);
        }
    }

    /// Whether the connection must close now, sending nothing more (a write's outcome is
    /// unknown).
    #[must_use]
    pub fn must_close(&self) -> bool {
        self.closing
    }

    /// Logs a sampled fraction (`--log-sample-rate`) of write commands, with the
    /// connection id and the sequence number that follows the write through the event log
    /// into its worker.
    fn maybe_log_write(
        &mut self,
        command: usize,
        first_op: usize,
        ok: bool,
        took: std::time::Duration,
    ) {
        let rate = self.shared.config.log_sample_rate;
        if rate <= 0.0 {
            return;
        }
        if (self.random() >> 11) as f64 / (1u64 << 53) as f64 >= rate {
            return;
        }
        info!(self.shared.log, "write"; "component" => "server", "conn" => self.client.id,
              "command" => self.table.label(command),
              "seq" => self.ticket.seq_of(first_op), "ok" => ok,
              "latency_us" => took.as_micros() as u64);
    }

    pub(super) fn generation_for(
        &self,
        key: &[u8],
    ) -> Result<(u32, Arc<crate::base::shard::Generation>), String> {
        let id = shard_of(key, self.shared.shards.len() as u32);
        Ok((id, self.generation_of(id)?))
    }

    /// The serving generation of shard `id`, or the error a read of it answers.
    pub(super) fn generation_of(
        &self,
        id: u32,
    ) -> Result<Arc<crate::base::shard::Generation>, String> {
        let shard = &self.shared.shards[id as usize];
        match shard.state() {
            ShardState::Ready => {}
            ShardState::Parked => return Err(parked(id)),
            ShardState::Stopping | ShardState::Stopped => {
                return Err("ERR server is shutting down".into())
            }
            ShardState::Starting | ShardState::Restarting | ShardState::Recovering => {
                return Err(restarting(id))
            }
        }
        match shard.current() {
            Some(g) if !g.is_dead() => Ok(g),
            _ => Err(restarting(id)),
        }
    }

    /// Counts a key read for INFO's keyspace hits and misses.
    pub(super) fn count_read(&self, found: bool) {
        if self.shared.config.command_metrics {
            self.stats.keyspace(found);
        }
    }

    /// Reads `key` for a command's reply: looks it up (the value in `self.value`) and
    /// counts the hit or miss; on the shard's error, replies with it and answers `None`.
    pub(super) fn read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Option<bool> {
        match self.lookup(key) {
            Ok(found) => {
                self.count_read(found);
                Some(found)
            }
            Err(e) => {
                reply::error(out, &e);
                None
            }
        }
    }

    /// Whether writes of this connection are still unacknowledged (a handler that reads
    /// must return [`Step::Flush`] then, to run again once they are).
    pub(super) fn writes_pending(&self) -> bool {
        !self.owed.is_empty() && !self.exec
    }

    /// Marks the transaction being queued as failed (a command refused while queueing):
    /// its EXEC answers EXECABORT.
    fn abort_multi(&mut self) {
        if let Some(m) = self.multi.as_mut() {
            m.aborted = true;
        }
    }

    /// Queues a command of the transaction being built (after MULTI): `+QUEUED`, or the
    /// refusal that aborts it.
    fn queue_in_multi(&mut self, args: &[&[u8]], spec: &Spec<Handler>, out: &mut Vec<u8>) -> Step {
        let limit = self.shared.config.max_request_bytes;
        // What it holds: the bytes and a vector per argument and per command.
        let bytes: usize =
            args.iter().map(|a| a.len() + HELD_VEC_BYTES).sum::<usize>() + HELD_VEC_BYTES;
        let Some(m) = self.multi.as_mut() else {
            unreachable!("queue_in_multi runs inside MULTI");
        };
        let refusal = if spec.flags.contains(&"no_multi") {
            Some("ERR Command not allowed inside a transaction".to_string())
        } else if m.bytes + bytes > limit {
            Some(format!(
                "ERR the transaction's queued commands exceed {limit} bytes (max-request-bytes)"
            ))
        } else {
            None
        };
        match refusal {
            Some(e) => {
                m.aborted = true;
                self.error(out, &e);
            }
            None => {
                m.bytes += bytes;
                m.reads_first |= READ_FIRST.contains(&spec.name);
                m.commands.push(args.iter().map(|a| a.to_vec()).collect());
                self.queued = true;
                let mut queued = Vec::new();
                reply::simple(&mut queued, "QUEUED");
                self.reply_in_order(&queued, out);
            }
        }
        Step::Done
    }

    /// MULTI: starts queueing a transaction.
    pub(super) fn multi(&mut self, out: &mut Vec<u8>) {
        if self.multi.is_some() {
            self.error(out, "ERR MULTI calls can not be nested");
            return;
        }
        self.multi = Some(Multi::default());
        let mut ok = Vec::new();
        reply::simple(&mut ok, "OK");
        self.reply_in_order(&ok, out);
    }

    /// DISCARD: drops the transaction being queued (and the WATCHed keys).
    pub(super) fn discard(&mut self, out: &mut Vec<u8>) {
        if self.multi.take().is_none() {
            self.error(out, "ERR DISCARD without MULTI");
            return;
        }
        self.watched.clear();
        let mut ok = Vec::new();
        reply::simple(&mut ok, "OK");
        self.reply_in_order(&ok, out);
    }

    /// EXEC: the queued commands become one transaction, logged as one record and applied
    /// whole on every shard it writes, its reply the array of theirs. A write command queues
    /// its ops as it would outside; a read command queues an [`Op::Read`] of each of its
    /// keys, so it sees the transaction's earlier writes, and its reply is built from what
    /// they found. Commands without keys answer when EXEC runs.
    pub(super) fn exec(&mut self, out: &mut Vec<u8>, out_limit: usize) {
        let Some(m) = self.multi.take() else {
            self.error(out, "ERR EXEC without MULTI");
            return;
        };
        // EXEC unwatches, whatever its outcome.
        let unchanged = std::mem::take(&mut self.watched);
        if m.aborted {
            self.error(
                out,
                "EXECABORT Transaction discarded because of previous errors.",
            );
            return;
        }
        // Its reading-first commands' keys are read first (at one place); it runs on what
        // they found, applied only if none of them changed since.
        let conditional = m.reads_first;
        if conditional {
            let reads = self.read_first_keys(&m);
            let refs: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
            if !self.read_first(&[b"exec"], &refs) {
                if let Some(rerun) = self.rerun.as_mut() {
                    rerun.exec = Some((m, unchanged));
                }
                return;
            }
        }
        let exec_command = self.command;
        let (owed_before, ops_before) = (self.owed.len(), self.ops.len());
        self.owed.push(Owed::Exec {
            entries: m.commands.len(),
            ops: 0,
            carrier: false,
            silent: false,
            command: exec_command,
            read_at: self.read_at,
            conditional,
        });
        self.exec = true;
        let mut written = Written::default();
        for command in &m.commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            if conditional && !self.may_run_in_exec(&args, &written) {
                continue;
            }
            let first = self.ops.len();
            self.exec_one(&args, out_limit);
            if conditional {
                written.note(&self.ops[first..]);
            }
        }
        self.exec = false;
        self.command = exec_command;
        let mut unchanged = unchanged;
        unchanged.append(&mut self.exec_read);
        let carrier = self.ops.len() == ops_before && !unchanged.is_empty();
        if carrier {
            // Nothing to log, but the WATCHed keys are the sequencer's to check.
            let key = unchanged[0].key.as_slice();
            let shard = shard_of(key, self.shared.shards.len() as u32);
            let op = OwnedOp::from(Op::Read { key });
            self.ops.push(Request::Write(shard, op));
        }
        let ops = self.ops.len() - ops_before;
        if let Some(Owed::Exec {
            ops: n, carrier: c, ..
        }) = self.owed.get_mut(owed_before)
        {
            *n = ops as u32;
            *c = carrier;
        }
        if ops > 0 {
            self.transactions.push(Txn {
                ops: ops_before..self.ops.len(),
                unchanged,
            });
        } else if owed_before == 0 {
            // Nothing to wait for: every reply is here already.
            for owed in self.owed.drain(..) {
                match owed {
                    Owed::Exec { entries, .. } => reply::array(out, entries),
                    Owed::Encoded(bytes) => out.extend_from_slice(&bytes),
                    Owed::Write { .. }
                    | Owed::Read { .. }
                    | Owed::Watch { .. }
                    | Owed::Prefetch { .. } => {
                        unreachable!("a transaction without ops owes no outcome")
                    }
                }
            }
        }
    }

    /// WATCH: reads `keys` through the rings (one [`Op::Read`] each, at one place, so each
    /// is read after every write logged before it and this connection's later reads see at
    /// least that); the next EXEC is aborted if one is written or expires after that place.
    pub(super) fn watch(&mut self, keys: &[&[u8]], out: &mut Vec<u8>) {
        if self.multi.is_some() {
            self.error(out, "ERR WATCH inside MULTI is not allowed");
            return;
        }
        let held = |k: &[u8]| k.len() + HELD_VEC_BYTES;
        let bytes: usize = self.watched.iter().map(|w| held(&w.key)).sum::<usize>()
            + keys.iter().map(|k| held(k)).sum::<usize>();
        let limit = self.shared.config.max_request_bytes;
        if self.watched.len() + keys.len() > MAX_WATCHED || bytes > limit {
            self.error(
                out,
                &format!(
                    "ERR a connection watches at most {MAX_WATCHED} keys of {limit} bytes \
                     (max-request-bytes); UNWATCH first"
                ),
            );
            return;
        }
        self.queue_reads(keys.iter().copied());
        self.owed.push(Owed::Watch {
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            command: self.command,
            read_at: self.read_at,
            silent: false,
        });
    }

    /// UNWATCH: forgets the WATCHed keys.
    pub(super) fn unwatch(&mut self, out: &mut Vec<u8>) {
        self.watched.clear();
        let mut ok = Vec::new();
        reply::simple(&mut ok, "OK");
        self.reply_in_order(&ok, out);
    }

    /// For a command that reads `keys` before it decides what to write ([`Rerun`]): whether
    /// its reads are in ([`Session::lookup`] answers from them, and
    /// [`Session::queue_conditional`] queues its writes). If not, they are queued and the
    /// command runs again once they are in. (Inside EXEC they are in: EXEC reads the keys
    /// of all its reading-first commands before it runs.)
    pub(super) fn read_first(&mut self, args: &[&[u8]], keys: &[&[u8]]) -> bool {
        if self.prefetched.is_some() && self.rerun.is_some() {
            return true;
        }
        if self.exec {
            // EXEC reads the keys of its reading-first commands before it runs them.
            unreachable!("{} ran inside EXEC without its reads", self.command_name());
        }
        if self.rerun.is_none() {
            self.rerun = Some(Rerun {
                args: args.iter().map(|a| a.to_vec()).collect(),
                command: self.command,
                read: None,
                since: 0,
                silent: self.silent,
                aborts: 0,
                exec: None,
            });
        }
        self.queue_reads(keys.iter().copied());
        self.owed.push(Owed::Prefetch {
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        });
        false
    }

    /// Queues the writes of a command whose reads are in ([`Session::read_first`]) as one
    /// transaction, applied only if none of the keys it read was written since, replied to
    /// as `kind`.
    pub(super) fn queue_conditional(
        &mut self,
        kind: WriteKind,
        ops: impl ExactSizeIterator<Item = OwnedOp>,
    ) {
        let since = self.rerun.as_ref().map_or(0, |r| r.since);
        let unchanged = self
            .prefetched
            .iter()
            .flatten()
            .map(|(key, entry)| Unchanged {
                key: key.clone(),
                since,
                deadline_ms: entry.as_ref().map_or(0, |(_, deadline)| *deadline),
                existed: entry.is_some(),
                watched: false,
            })
            .collect();
        if self.exec {
            // Part of the EXEC's transaction, which carries the conditions.
            self.queue(kind, ops);
            self.exec_read.extend(unchanged);
            return;
        }
        let first = self.ops.len();
        self.queue(kind, ops);
        if let Some(Owed::Write { conditional, .. }) = self.owed.last_mut() {
            *conditional = true;
        }
        self.transactions.push(Txn {
            ops: first..self.ops.len(),
            unchanged,
        });
    }

    /// Runs the next step of the command reading before it writes: its decision on what
    /// its reads found, or its reads again after its writes were aborted.
    fn step_rerun(&mut self, out: &mut Vec<u8>) {
        let Some(rerun) = self.rerun.as_mut() else {
            return;
        };
        let (args, command, silent) =
            (std::mem::take(&mut rerun.args), rerun.command, rerun.silent);
        let read = rerun.read.take();
        if let Some((multi, watched)) = &rerun.exec {
            // EXEC runs again as it first ran.
            self.multi = Some(multi.clone());
            self.watched = watched.clone();
        }
        let (before, owed) = (out.len(), self.owed.len());
        self.command = command;
        self.silent = silent;
        self.prefetched = read;
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if let Some((_, spec)) = self.queued_spec(&refs) {
            let _ = (spec.run)(self, &refs, out, usize::MAX);
        }
        self.prefetched = None;
        let waiting = self.owed[owed..].iter().any(|o| {
            matches!(
                o,
                Owed::Prefetch { .. }
                    | Owed::Write {
                        conditional: true,
                        ..
                    }
                    | Owed::Exec {
                        conditional: true,
                        ..
                    }
            )
        });
        match self.rerun.as_mut() {
            Some(rerun) if waiting => rerun.args = args,
            _ => self.rerun = None,
        }
        if self.shared.config.command_metrics {
            self.count_immediate(before, owed, out);
        }
        if silent {
            self.silence(before, owed, out);
        }
    }

    /// The writes of the command reading before it writes were refused because a key it
    /// read changed: whether it starts over (reads again), or has given up after
    /// [`MAX_ABORTS`] (it is done then, and its reply says so).
    fn rerun_changed(&mut self) -> bool {
        match self.rerun.as_mut() {
            Some(rerun) if rerun.aborts + 1 < MAX_ABORTS => {
                rerun.aborts += 1;
                true
            }
            _ => {
                self.rerun = None;
                false
            }
        }
    }

    /// The reads of a command reading before it writes are in: its next step decides on
    /// them (a failed read is its reply).
    fn prefetched_read(
        &mut self,
        found: Result<Vec<Prefetched>, String>,
        since: u64,
        out: &mut Vec<u8>,
    ) {
        match found {
            Ok(found) => {
                if let Some(rerun) = self.rerun.as_mut() {
                    rerun.read = Some(found);
                    rerun.since = since;
                }
            }
            Err(e) => {
                if !self.rerun.take().is_some_and(|r| r.silent) {
                    reply::error(out, &e);
                }
            }
        }
    }

    /// What the [`Op::Read`]s of `keys`, whose outcomes start at `at` in the batch's, found
    /// (value and deadline, or missing), or the error that is the reply when one failed.
    fn found_at(
        &self,
        at: usize,
        keys: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Vec<Prefetched>, String> {
        keys.zip(self.results.get(at..).unwrap_or_default())
            .map(|(key, result)| match result {
                Some(Ok(Outcome::Entry { value, deadline })) => {
                    Ok((key, Some((value.clone(), *deadline))))
                }
                Some(Ok(_)) => Ok((key, None)),
                Some(Err(f)) => {
                    let durability = &self.shared.durability;
                    Err(failure_text(*f, || durability.failure()))
                }
                None => Err("ERR server is shutting down".to_owned()),
            })
            .collect()
    }

    /// WATCH's reply once its reads are in: the keys are watched from `since` on.
    fn watched_read(
        &mut self,
        found: Result<Vec<Prefetched>, String>,
        since: u64,
        out: &mut Vec<u8>,
    ) {
        match found {
            Ok(found) => {
                // Watched twice, a key depends on both reads, which is its first.
                self.watched
                    .extend(found.into_iter().map(|(key, entry)| Unchanged {
                        key,
                        since,
                        existed: entry.is_some(),
                        deadline_ms: entry.map_or(0, |(_, deadline)| deadline),
                        watched: true,
                    }));
                reply::simple(out, "OK");
            }
            Err(e) => reply::error(out, &e),
        }
    }

    /// The keys the reading-first commands of `m` read ([`READ_FIRST`]), once each.
    fn read_first_keys(&self, m: &Multi) -> Vec<Vec<u8>> {
        let mut seen = std::collections::HashSet::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for command in &m.commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            let Some((_, spec)) = self.queued_spec(&args) else {
                continue;
            };
            if READ_FIRST.contains(&spec.name) {
                for i in spec.keys.positions(args.len()) {
                    if seen.insert(args[i]) {
                        keys.push(args[i].to_vec());
                    }
                }
            }
        }
        keys
    }

    /// Whether a queued command of an EXEC with reading-first commands may run: one of
    /// them may not when an earlier command of the transaction wrote one of its keys (it
    /// decides on what its keys held before the transaction), and replies an error.
    fn may_run_in_exec(&mut self, args: &[&[u8]], written: &Written) -> bool {
        let Some((index, spec)) = self.queued_spec(args) else {
            return true;
        };
        let mut keys = spec.keys.positions(args.len()).map(|i| args[i]);
        if READ_FIRST.contains(&spec.name)
            && (written.all || keys.any(|k| written.keys.contains(k)))
        {
            self.command = index;
            let name = spec.name.to_uppercase();
            self.error(
                &mut Vec::new(),
                &format!(
                    "ERR {name} reads a key an earlier command of the transaction writes; \
                     run it in a transaction of its own"
                ),
            );
            return false;
        }
        true
    }

    /// The spec (and metric index) a queued command runs: its subcommand's, if any.
    fn queued_spec(&self, args: &[&[u8]]) -> Option<(usize, &'static Spec<Handler>)> {
        let (index, spec) = self.table.find(args[0])?;
        Some(self.table.subcommand(index, args).unwrap_or((index, spec)))
    }

    /// One queued command of an EXEC: its ops and owed reply.
    fn exec_one(&mut self, args: &[&[u8]], out_limit: usize) {
        let Some((index, spec)) = self.queued_spec(args) else {
            unreachable!("only known commands are queued");
        };
        self.command = index;
        if spec.kind == Kind::Read && spec.keys.positions(args.len()).next().is_some() {
            self.queue_read(args, spec.keys.positions(args.len()));
            return;
        }
        let mut immediate = Vec::new();
        let owed = self.owed.len();
        // Writes queue their ops and owe their replies; errors are owed too (every reply
        // is owed while `exec` is set); what answers at once lands in `immediate`.
        let _ = (spec.run)(self, args, &mut immediate, out_limit);
        if !immediate.is_empty() {
            self.owed.insert(owed, Owed::Encoded(immediate));
        }
    }

    /// The reply of a transaction's read command: its handler run on what its reads found
    /// (the outcomes of its `Op::Read`s, one per key, in key order).
    fn reply_read(&mut self, command: usize, args: &[&[u8]], at: usize, out: &mut Vec<u8>) {
        let Some((_, spec)) = self.queued_spec(args) else {
            unreachable!("only known commands are queued");
        };
        let keys = spec.keys.positions(args.len()).map(|i| args[i].to_vec());
        match self.found_at(at, keys) {
            Ok(found) => self.prefetched = Some(found),
            Err(e) => return reply::error(out, &e),
        }
        self.command = command;
        let _ = (spec.run)(self, args, out, usize::MAX);
        self.prefetched = None;
    }

    /// The running command's name, as Redis' errors give it.
    pub(super) fn command_name(&self) -> &'static str {
        self.table.label(self.command)
    }

    /// A pseudo-random number (xorshift; RANDOMKEY's choices, not for secrets).
    pub(super) fn random(&mut self) -> u64 {
        self.sample ^= self.sample << 13;
        self.sample ^= self.sample >> 7;
        self.sample ^= self.sample << 17;
        self.sample
    }

    /// The time the current batch reads at (Unix ms).
    pub(super) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Looks up `key` as of the batch's time; `Ok(true)` with the value in `self.value`
    /// and its deadline in `self.deadline_ms` when present (and not expired).
    pub(super) fn lookup(&mut self, key: &[u8]) -> Result<bool, String> {
        if let Some(found) = &self.prefetched {
            // A transaction's read: what its place in the log saw.
            let entry = found.iter().find(|(k, _)| k.as_slice() == key);
            self.value.clear();
            return Ok(match entry.and_then(|(_, e)| e.as_ref()) {
                Some((value, deadline)) => {
                    self.value.extend_from_slice(value);
                    self.deadline_ms = *deadline;
                    true
                }
                None => false,
            });
        }
        let (id, generation) = self.generation_for(key)?;
        if !self.looked_up {
            // Before the running handler's first read: every transaction in flight at once.
            self.looked_up = true;
            self.gate_words.clear();
            self.gated = false;
            self.gate_all = self.shared.gates.all();
        }
        if !Gates::is_open(self.gate_all) {
            // Transactions in flight: this key's slot's may be one.
            let slot = crate::base::slot::hash_slot(key);
            let word = self.shared.gates.word(slot);
            if !Gates::is_open(word) {
                // A transaction writing the key is in flight: asked again in order.
                self.gated = true;
                return Err(format!(
                    "TRYAGAIN shard {id}: the key is in a transaction being applied"
                ));
            }
            self.gate_words.push((slot, word));
        }
        self.value.clear();
        match generation
            .segment
            .table()
            .get(key, self.now_ms, &mut self.value)
        {
            Lookup::Found { deadline_ms } => {
                self.deadline_ms = deadline_ms;
                Ok(true)
            }
            Lookup::Missing => Ok(false),
            Lookup::Busy => Err(format!(
                "TRYAGAIN shard {id} is busy (its table stayed mid-update); retry"
            )),
        }
    }
}

/// The Redis version Corral reports to clients that check it.
pub(super) const REDIS_COMPAT_VERSION: &str = "7.0.0";

/// A command's handler: runs it with its arguments (the name first), appending its reply
/// to `out` or queueing its writes; `out_limit` bounds a reply written in parts.
pub type Handler = fn(&mut Session, &[&[u8]], &mut Vec<u8>, usize) -> Step;

fn parked(id: u32) -> String {
    format!("ERR shard {id} is parked after repeated crashes; it is probed periodically")
}

fn restarting(id: u32) -> String {
    format!("TRYAGAIN shard {id} is restarting")
}

/// The error reply of a refused write (one whose outcome is unknown gets none).
fn failure_text(f: Failure, log_failure: impl FnOnce() -> Option<String>) -> String {
    match f {
        Failure::Parked(id) => parked(id),
        Failure::Unavailable(id) => restarting(id),
        Failure::ShuttingDown => "ERR server is shutting down; the write was not applied".into(),
        Failure::LogFailed(errno) => {
            let reason = if errno > 0 {
                std::io::Error::from_raw_os_error(errno).to_string()
            } else {
                "see the supervisor log".to_owned()
            };
            format!("ERR event log write failed ({reason}); the write was not applied")
        }
        Failure::Aborted | Failure::Changed => {
            "ERR a key it read was written since; not applied".into()
        }
        Failure::CheckpointFailed(id) => format!(
            "ERR checkpoint of shard {id} failed (its worker logged why); \
             the event log still holds every write"
        ),
        Failure::LogStopped => format!(
            "ERR the event log stopped taking writes ({}); the write was not applied",
            log_failure().unwrap_or_else(|| "restart required".into())
        ),
        // Never sent: the connection closes instead (see `Session::collect`).
        Failure::WorkerDied(_)
        | Failure::Lost
        | Failure::NotDurable(_)
        | Failure::ParkedLogged(_)
        | Failure::Interrupted
        | Failure::LogBroken(_) => "ERR internal error: outcome unknown".into(),
    }
}

fn error_text(e: WriteError) -> &'static str {
    match e {
        WriteError::NotInteger => "ERR value is not an integer or out of range",
        WriteError::Overflow => "ERR increment or decrement would overflow",
        WriteError::KeyTooLarge => "ERR key exceeds the shard's max-key-bytes",
        WriteError::ValueTooLarge => "ERR value exceeds the shard's max-value-bytes",
        WriteError::TooManyKeys => {
            "OOM command not allowed: the shard holds max-keys-per-shard keys"
        }
        WriteError::OutOfMemory => "OOM command not allowed: the shard's data exceeds shard-memory",
        WriteError::Malformed => "ERR internal error: malformed request",
        WriteError::NotFloat => "ERR value is not a valid float",
        WriteError::NanOrInfinity => "ERR increment would produce NaN or Infinity",
    }
}

/// The reply of a write command from its ops' results (none of them of unknown outcome).
fn write_reply(
    kind: WriteKind,
    proto: Proto,
    results: &[Option<WriteResult>],
    log_failure: impl FnOnce() -> Option<String>,
    out: &mut Vec<u8>,
) {
    let mut sum = 0i64;
    for result in results {
        match result {
            None => {
                reply::error(out, "ERR server is shutting down");
                return;
            }
            Some(Err(f)) => {
                reply::error(out, &failure_text(*f, log_failure));
                return;
            }
            Some(Ok(Outcome::Err(e))) => {
                reply::error(out, error_text(*e));
                return;
            }
            Some(Ok(Outcome::Int(n))) => sum = sum.saturating_add(*n),
            Some(Ok(_)) => {}
        }
    }
    let first = results.first().and_then(|r| r.as_ref()?.as_ref().ok());
    match (kind, first) {
        (WriteKind::One, Some(Outcome::Nil)) => reply::null(out, proto),
        (WriteKind::One, Some(Outcome::Int(n))) => reply::int(out, *n),
        (WriteKind::One, Some(Outcome::Bulk(v))) => reply::bulk(out, v),
        (WriteKind::One | WriteKind::AllOk, _) => reply::simple(out, "OK"),
        (WriteKind::Sum, _) => reply::int(out, sum),
        (WriteKind::Applied, Some(Outcome::Nil)) => reply::int(out, 0),
        (WriteKind::Applied, _) => reply::int(out, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replies_combine() {
        let none = || None;
        for (proto, nil) in [(Proto::Resp2, "$-1"), (Proto::Resp3, "_")] {
            let mut out = Vec::new();
            write_reply(
                WriteKind::Sum,
                proto,
                &[
                    Some(Ok(Outcome::Int(1))),
                    Some(Ok(Outcome::Int(0))),
                    Some(Ok(Outcome::Int(1))),
                ],
                none,
                &mut out,
            );
            write_reply(
                WriteKind::One,
                proto,
                &[Some(Ok(Outcome::Nil))],
                none,
                &mut out,
            );
            for (kind, outcome) in [
                (WriteKind::One, Outcome::Bulk(b"old".to_vec())),
                (WriteKind::Applied, Outcome::Nil),
                (WriteKind::Applied, Outcome::Ok),
                (WriteKind::One, Outcome::Err(WriteError::NotFloat)),
            ] {
                write_reply(kind, proto, &[Some(Ok(outcome))], none, &mut out);
            }
            write_reply(
                WriteKind::AllOk,
                proto,
                &[Some(Ok(Outcome::Ok)), Some(Err(Failure::Parked(2)))],
                none,
                &mut out,
            );
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!(
                    ":2\r\n{nil}\r\n$3\r\nold\r\n:0\r\n:1\r\n-ERR value is not a valid float\r\n\
                     -ERR shard 2 is parked after repeated crashes; it is probed periodically\r\n"
                )
            );
        }
    }
}
