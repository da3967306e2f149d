//! One client's session: the command set, authentication, and the order of replies.
//!
//! A session runs a batch of pipelined commands at a time. Reads are answered at once from
//! the shards' shared-memory tables; writes are queued and submitted to the sequencer as one
//! batch, and their replies are owed until the outcomes arrive. A read that follows queued
//! writes of the same pipeline waits for them ([`Batch::Flush`]), so a connection always
//! reads its own writes, and replies always go out in command order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use corral_worker::command::{Outcome, SetCondition, WriteError};
use shm_protocol::table::Lookup;
use slog::{debug, error, info, warn};

use crate::base::ops::OwnedOp;
use crate::base::shard::ShardState;
use crate::base::slot::shard_of;
use crate::base::ticket::{Failure, Ticket, WriteResult};
use crate::front::command::{Arity, Keys, Kind, Spec, Table};
use crate::front::resp::{self, reply, Frame, ParseLimits, Parsed, ProtocolError, Rejection};
use crate::front::shared::Shared;
use crate::pipeline::msg::{SeqMsg, WriteOp};
use crate::telemetry::metrics::CommandStats;
use crate::wal::appender::Acknowledge;

/// How a write command's op replies combine into its reply.
#[derive(Clone, Copy, Debug)]
enum WriteKind {
    /// One op; `+OK`, nil or error.
    Set,
    /// Integer sum of the ops' integers (DEL).
    Sum,
    /// One op's integer (INCR family).
    Int,
    /// All ops must be OK (MSET).
    AllOk,
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

/// A reply owed, in command order, while writes are pending.
enum Owed {
    /// The combined outcome of a write command's `ops` writes (command index and when it
    /// was read, for the metrics).
    Write {
        kind: WriteKind,
        ops: u32,
        command: usize,
        read_at: Instant,
    },
    /// A reply already encoded (an error found without running the command).
    Encoded(Vec<u8>),
}

/// One client's session: authentication, name, and the writes of its current batch.
pub struct Session {
    shared: Arc<Shared>,
    id: u64,
    authed: bool,
    name: Option<Vec<u8>>,
    /// Queued writes of the current batch: shard and op.
    ops: Vec<(u32, OwnedOp)>,
    /// Replies owed since the first queued write, in order.
    owed: Vec<Owed>,
    ticket: Arc<Ticket>,
    results: Vec<Option<WriteResult>>,
    value: Vec<u8>,
    /// Index (in [`TABLE`], the metric index) of the command being run.
    command: usize,
    /// State of the sampling of write logs (xorshift).
    sample: u64,
    /// When the current batch's commands were read.
    read_at: Instant,
    /// Commands of the current batch answered at once: command index and success, counted
    /// when the batch ends.
    immediate: Vec<(usize, bool)>,
    /// Its event loop's command statistics (this session runs on that loop's thread).
    stats: Arc<CommandStats>,
    /// A write's outcome is unknown: nothing more is sent, the connection closes.
    closing: bool,
    /// Where the MGET being answered in parts goes on (index of its next key).
    resume: Option<usize>,
}

/// Arguments of a command that are passed without an allocation.
const FEW_ARGS: usize = 8;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("ops", &self.ops.len())
            .finish_non_exhaustive()
    }
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths may leak; contents do not: every byte of the longer input is visited.
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

impl Session {
    /// A session of connection `id`; `ticket` gathers the outcomes of its writes.
    #[must_use]
    pub fn new(
        shared: Arc<Shared>,
        id: u64,
        ticket: Arc<Ticket>,
        stats: Arc<CommandStats>,
    ) -> Self {
        Self {
            authed: shared.config.requirepass.is_none(),
            shared,
            id,
            name: None,
            ops: Vec::new(),
            owed: Vec::new(),
            ticket,
            results: Vec::new(),
            value: Vec::new(),
            command: TABLE.other(),
            sample: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            read_at: Instant::now(),
            immediate: Vec::new(),
            stats,
            closing: false,
            resume: None,
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
        let mut commands = 0;
        let mut many: Vec<&[u8]> = Vec::new();
        let batch = loop {
            let limits = self.limits();
            match resp::parse(buf, *start, &limits, frame) {
                Ok(Parsed::Command(next)) => {
                    if !frame.args.is_empty() {
                        match self.run_parsed(buf, &frame.args, &mut many, out, out_limit) {
                            Step::Flush => break Batch::Flush,
                            // The rest of its reply when the client has taken this part.
                            Step::Partial => break Batch::Full,
                            Step::Close => {
                                *start = next;
                                break Batch::Close;
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
                           "conn" => self.id, "error" => e);
                    break Batch::Close;
                }
            }
        };
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
    fn run_parsed<'b>(
        &mut self,
        buf: &'b [u8],
        ranges: &[(usize, usize)],
        many: &mut Vec<&'b [u8]>,
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Step {
        // Most commands have a few arguments: those go on the stack.
        let mut few: [&[u8]; FEW_ARGS] = [&[]; FEW_ARGS];
        let args: &[&[u8]] = if ranges.len() <= FEW_ARGS {
            for (arg, &(s, e)) in few.iter_mut().zip(ranges) {
                *arg = &buf[s..e];
            }
            &few[..ranges.len()]
        } else {
            many.clear();
            many.extend(ranges.iter().map(|&(s, e)| &buf[s..e]));
            many
        };
        let (before, owed) = (out.len(), self.owed.len());
        let step = self.command(args, out, out_limit);
        if matches!(step, Step::Done | Step::Close) && self.shared.config.command_metrics {
            self.count_immediate(before, owed, out);
        }
        step
    }

    /// Answers a command with an argument over the limits (read past, never run).
    fn refuse_too_large(&mut self, bytes: u64, out: &mut Vec<u8>) {
        self.command = TABLE.other();
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
    }

    /// Counts a command that just ran (at the end of its batch), unless its reply is owed
    /// (a queued write counts when its outcome arrives): an error if it replied with one.
    fn count_immediate(&mut self, before: usize, owed: usize, out: &[u8]) {
        let error = match self.owed.get(owed..) {
            Some([Owed::Write { .. }, ..]) => return,
            Some([Owed::Encoded(bytes), ..]) => bytes.first() == Some(&b'-'),
            _ => out.get(before) == Some(&b'-'),
        };
        self.immediate.push((self.command, !error));
    }

    /// Appends an encoded reply to `out`, or, while writes are pending, owes it after
    /// theirs.
    pub fn reply_in_order(&mut self, encoded: &[u8], out: &mut Vec<u8>) {
        if self.owed.is_empty() {
            out.extend_from_slice(encoded);
        } else {
            self.owed.push(Owed::Encoded(encoded.to_vec()));
        }
    }

    /// Replies with an error, after the replies owed if writes are pending.
    fn error(&mut self, out: &mut Vec<u8>, message: &str) {
        let mut encoded = Vec::new();
        reply::error(&mut encoded, message);
        self.reply_in_order(&encoded, out);
    }

    /// Runs one command: looked up in [`TABLE`], checked for authentication and arity, a
    /// read after the connection's pending writes, then its handler.
    fn command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
        let found = TABLE.find(args[0]);
        if !self.authed && !found.is_some_and(|(_, spec)| spec.before_auth) {
            self.error(out, "NOAUTH Authentication required.");
            return Step::Done;
        }
        let Some((index, spec)) = found else {
            self.command = TABLE.other();
            self.unknown(args, out);
            return Step::Done;
        };
        self.command = index;
        if !spec.arity.allows(args.len()) {
            return self.arity_error(out);
        }
        // Reads (and everything else that answers at once) see this connection's earlier
        // writes.
        if spec.kind == Kind::Read && !self.owed.is_empty() {
            return Step::Flush;
        }
        (spec.run)(self, args, out, out_limit)
    }

    /// Redis' reply to a command run with the wrong number of arguments.
    fn arity_error(&mut self, out: &mut Vec<u8>) -> Step {
        let name = TABLE.label(self.command);
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

    fn del(&mut self, args: &[&[u8]], _: &mut Vec<u8>, _: usize) -> Step {
        let ops = args[1..].iter().map(|k| OwnedOp::Del { key: k.to_vec() });
        self.queue(WriteKind::Sum, ops);
        Step::Done
    }

    fn incr(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        self.incr_by(args[1], 1, out)
    }

    fn decr(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        self.incr_by(args[1], -1, out)
    }

    fn incrby(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        match corral_worker::machine::parse_i64(args[2]) {
            Some(d) => self.incr_by(args[1], d, out),
            None => {
                self.error(out, "ERR value is not an integer or out of range");
                Step::Done
            }
        }
    }

    fn decrby(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        match corral_worker::machine::parse_i64(args[2]) {
            Some(d) if d != i64::MIN => self.incr_by(args[1], -d, out),
            Some(_) => {
                self.error(out, "ERR decrement would overflow");
                Step::Done
            }
            None => {
                self.error(out, "ERR value is not an integer or out of range");
                Step::Done
            }
        }
    }

    fn mset(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        if args.len() % 2 == 0 {
            return self.arity_error(out);
        }
        let pairs = args[1..].chunks_exact(2);
        if let Some(e) = pairs
            .clone()
            .find_map(|pair| self.size_error(pair[0], Some(pair[1])))
        {
            self.error(out, &e);
            return Step::Done;
        }
        let ops = pairs.map(|pair| OwnedOp::Set {
            key: pair[0].to_vec(),
            value: pair[1].to_vec(),
            condition: SetCondition::Always,
        });
        self.queue(WriteKind::AllOk, ops);
        Step::Done
    }

    fn mget_command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
        self.mget(&args[1..], out, out_limit)
    }

    fn size_error(&self, key: &[u8], value: Option<&[u8]>) -> Option<String> {
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

    fn set(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        let mut condition = SetCondition::Always;
        for opt in &args[3..] {
            let o = String::from_utf8_lossy(opt).to_ascii_uppercase();
            let next = match o.as_str() {
                "NX" if condition != SetCondition::IfPresent => SetCondition::IfAbsent,
                "XX" if condition != SetCondition::IfAbsent => SetCondition::IfPresent,
                "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" | "GET" => {
                    self.error(
                        out,
                        &format!(
                            "ERR SET option '{o}' is not supported: Corral keys do not expire"
                        ),
                    );
                    return Step::Done;
                }
                _ => {
                    self.error(out, "ERR syntax error");
                    return Step::Done;
                }
            };
            condition = next;
        }
        if let Some(e) = self.size_error(args[1], Some(args[2])) {
            self.error(out, &e);
            return Step::Done;
        }
        self.queue(
            WriteKind::Set,
            std::iter::once(OwnedOp::Set {
                key: args[1].to_vec(),
                value: args[2].to_vec(),
                condition,
            }),
        );
        Step::Done
    }

    fn incr_by(&mut self, key: &[u8], delta: i64, out: &mut Vec<u8>) -> Step {
        if let Some(e) = self.size_error(key, None) {
            self.error(out, &e);
            return Step::Done;
        }
        self.queue(
            WriteKind::Int,
            std::iter::once(OwnedOp::IncrBy {
                key: key.to_vec(),
                delta,
            }),
        );
        Step::Done
    }

    fn queue(&mut self, kind: WriteKind, ops: impl ExactSizeIterator<Item = OwnedOp>) {
        let shards = self.shared.shards.len() as u32;
        self.owed.push(Owed::Write {
            kind,
            ops: ops.len() as u32,
            command: self.command,
            read_at: self.read_at,
        });
        for op in ops {
            let key = match &op {
                OwnedOp::Set { key, .. } | OwnedOp::Del { key } | OwnedOp::IncrBy { key, .. } => {
                    key
                }
            };
            self.ops.push((shard_of(key, shards), op));
        }
    }

    /// Submits the queued writes to the sequencer as one batch; returns whether there
    /// were any (then the ticket notifies when their outcomes are in, and
    /// [`Session::collect`] appends the owed replies).
    pub fn submit(&mut self) -> bool {
        if self.ops.is_empty() {
            return false;
        }
        let claims = self.ticket.arm(self.ops.len());
        let batch: Vec<WriteOp> = self
            .ops
            .drain(..)
            .zip(claims)
            .map(|((shard, op), pending)| WriteOp { shard, op, pending })
            .collect();
        // A send fails only when the sequencer is gone; the returned batch's claims drop
        // and fail their writes, so the ticket still completes.
        drop(self.shared.sequencer.send(SeqMsg::Submit(batch)));
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
        for owed in owed_replies.drain(..) {
            if self.closing {
                break;
            }
            match owed {
                Owed::Write {
                    kind,
                    ops,
                    command,
                    read_at,
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
                               "component" => "server", "conn" => self.id,
                               "command" => TABLE.label(command),
                               "outcomes" => self.results.len(), "owed" => at + ops as usize);
                        self.closing = true;
                        continue;
                    };
                    at += ops as usize;
                    let unknown = results.iter().find_map(|r| match r {
                        Some(Err(f)) if f.outcome_unknown() => Some(*f),
                        None => Some(Failure::Lost),
                        _ => None,
                    });
                    if let Some(failure) = unknown {
                        // An error would say "not applied"; nobody can say that here.
                        warn!(self.shared.log, "write outcome unknown: closing the connection without a reply";
                              "component" => "server", "conn" => self.id,
                              "command" => TABLE.label(command),
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
                    let before = out.len();
                    let durability = &self.shared.durability;
                    write_reply(kind, results, || durability.failure(), out);
                    let ok = out.get(before) != Some(&b'-');
                    let took = now.saturating_duration_since(read_at);
                    if self.shared.config.command_metrics {
                        self.stats.record(command, ok, crate::base::nanos(took));
                    }
                    self.maybe_log_write(command, at - ops as usize, ok, took);
                }
                Owed::Encoded(bytes) => out.extend_from_slice(&bytes),
            }
        }
        owed_replies.clear();
        self.owed = owed_replies;
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
        self.sample ^= self.sample << 13;
        self.sample ^= self.sample >> 7;
        self.sample ^= self.sample << 17;
        if (self.sample >> 11) as f64 / (1u64 << 53) as f64 >= rate {
            return;
        }
        info!(self.shared.log, "write"; "component" => "server", "conn" => self.id,
              "command" => TABLE.label(command),
              "seq" => self.ticket.seq_of(first_op), "ok" => ok,
              "latency_us" => took.as_micros() as u64);
    }

    fn generation_for(
        &self,
        key: &[u8],
    ) -> Result<(u32, Arc<crate::base::shard::Generation>), String> {
        let id = shard_of(key, self.shared.shards.len() as u32);
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
            Some(g) if !g.is_dead() => Ok((id, g)),
            _ => Err(restarting(id)),
        }
    }

    /// Looks up `key`; `Ok(true)` with the value in `self.value` when present.
    fn lookup(&mut self, key: &[u8]) -> Result<bool, String> {
        let (id, generation) = self.generation_for(key)?;
        self.value.clear();
        match generation.segment.table().get(key, &mut self.value) {
            Lookup::Found => Ok(true),
            Lookup::Missing => Ok(false),
            Lookup::Busy => Err(format!(
                "TRYAGAIN shard {id} is busy (its table stayed mid-update); retry"
            )),
        }
    }

    /// MGET: the values are looked up and written in order; once `out` holds `out_limit`
    /// bytes the reply stops, and goes on from there at the next call (the client takes a
    /// long reply in parts, and the supervisor holds one part at a time).
    fn mget(&mut self, keys: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
        let from = match self.resume.take() {
            Some(i) => i,
            None => {
                // Every shard involved answers, or the error replaces the whole reply.
                for key in keys {
                    if let Err(e) = self.generation_for(key) {
                        reply::error(out, &e);
                        return Step::Done;
                    }
                }
                reply::array(out, keys.len());
                0
            }
        };
        for (i, key) in keys.iter().enumerate().skip(from) {
            if i > from && out.len() >= out_limit {
                self.resume = Some(i);
                return Step::Partial;
            }
            match self.lookup(key) {
                Ok(true) => reply::bulk(out, &self.value),
                Ok(false) => reply::nil(out),
                Err(e) => {
                    // Part of the reply may be out: it cannot turn into an error now.
                    warn!(self.shared.log, "MGET cannot finish its reply; closing the connection";
                          "component" => "server", "conn" => self.id, "error" => e);
                    return Step::Close;
                }
            }
        }
        Step::Done
    }

    fn get(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        match self.lookup(args[1]) {
            Ok(true) => reply::bulk(out, &self.value),
            Ok(false) => reply::nil(out),
            Err(e) => reply::error(out, &e),
        }
        Step::Done
    }

    fn exists(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        let mut n = 0;
        for key in &args[1..] {
            match self.lookup(key) {
                Ok(found) => n += i64::from(found),
                Err(e) => {
                    reply::error(out, &e);
                    return Step::Done;
                }
            }
        }
        reply::int(out, n);
        Step::Done
    }

    fn dbsize_command(&mut self, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        reply::int(out, self.dbsize() as i64);
        Step::Done
    }

    fn ping(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        match args {
            [_] => reply::simple(out, "PONG"),
            [_, msg] => reply::bulk(out, msg),
            _ => return self.arity_error(out),
        }
        Step::Done
    }

    fn echo(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        reply::bulk(out, args[1]);
        Step::Done
    }

    fn select(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        if args[1] == b"0" {
            reply::simple(out, "OK");
        } else {
            reply::error(out, "ERR DB index is out of range");
        }
        Step::Done
    }

    fn quit(&mut self, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        reply::simple(out, "OK");
        Step::Close
    }

    fn auth_command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        if args.len() > 3 {
            self.error(out, "ERR syntax error");
            return Step::Done;
        }
        self.auth(args, out);
        Step::Done
    }

    fn hello_command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        self.hello(args, out);
        Step::Done
    }

    fn info_command(&mut self, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        let text = self.info();
        reply::bulk(out, text.as_bytes());
        Step::Done
    }

    /// `COMMAND COUNT` and `COMMAND GETKEYS` from the table; the command list itself
    /// (`COMMAND`, `COMMAND INFO`, `COMMAND DOCS`) is an empty array.
    fn command_command(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        match args.get(1) {
            Some(sub) if eq(sub, "count") => reply::int(out, TABLE.specs().len() as i64),
            Some(sub) if eq(sub, "getkeys") && args.len() < 4 => reply::error(
                out,
                "ERR wrong number of arguments for 'command|getkeys' command",
            ),
            Some(sub) if eq(sub, "getkeys") => {
                let target = &args[2..];
                match TABLE.find(target[0]) {
                    Some((_, spec)) if spec.arity.allows(target.len()) => {
                        let keys: Vec<usize> = spec.keys.positions(target.len()).collect();
                        if keys.is_empty() {
                            reply::error(out, "ERR The command has no key arguments");
                        } else {
                            reply::array(out, keys.len());
                            for k in keys {
                                reply::bulk(out, target[k]);
                            }
                        }
                    }
                    Some(_) => {
                        reply::error(out, "ERR Invalid number of arguments specified for command")
                    }
                    None => reply::error(out, "ERR Invalid command specified"),
                }
            }
            _ => reply::array(out, 0),
        }
        Step::Done
    }

    fn config(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        if !(eq(args[1], "get") && args.len() == 3) {
            reply::error(
                out,
                "ERR CONFIG subcommands other than GET are not supported",
            );
            return Step::Done;
        }
        let param = String::from_utf8_lossy(args[2]).to_ascii_lowercase();
        let value: &[u8] = match param.as_str() {
            "save" => b"",
            "appendonly" => b"no",
            "databases" => b"1",
            _ => {
                reply::array(out, 0);
                return Step::Done;
            }
        };
        reply::array(out, 2);
        reply::bulk(out, param.as_bytes());
        reply::bulk(out, value);
        Step::Done
    }

    fn client(&mut self, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
        let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("setname", 3) => {
                self.name = Some(args[2].to_vec());
                reply::simple(out, "OK");
            }
            ("getname", 2) => match &self.name {
                Some(n) => reply::bulk(out, n),
                None => reply::nil(out),
            },
            ("id", 2) => reply::int(out, self.id as i64),
            ("setinfo", 4) => reply::simple(out, "OK"),
            _ => reply::error(
                out,
                &format!("ERR unknown subcommand or wrong number of arguments for '{sub}'"),
            ),
        }
        Step::Done
    }

    fn auth(&mut self, args: &[&[u8]], out: &mut Vec<u8>) {
        let Some(pass) = self.shared.config.requirepass.as_deref() else {
            reply::error(
                out,
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            );
            return;
        };
        let (user, given) = if args.len() == 3 {
            (args[1], args[2])
        } else {
            (&b"default"[..], args[1])
        };
        if user == b"default" && constant_time_eq(given, pass.as_bytes()) {
            self.authed = true;
            reply::simple(out, "OK");
        } else {
            reply::error(
                out,
                "WRONGPASS invalid username-password pair or user is disabled.",
            );
        }
    }

    fn hello(&mut self, args: &[&[u8]], out: &mut Vec<u8>) {
        let mut i = 1;
        if let Some(version) = args.get(1) {
            if **version != *b"2" {
                reply::error(
                    out,
                    "NOPROTO sorry, this protocol version is not supported.",
                );
                return;
            }
            i = 2;
        }
        while i < args.len() {
            if eq(args[i], "auth") && i + 2 < args.len() {
                let auth_args = [&b"auth"[..], args[i + 1], args[i + 2]];
                let mut scratch = Vec::new();
                self.auth(&auth_args, &mut scratch);
                if !self.authed {
                    out.extend_from_slice(&scratch);
                    return;
                }
                i += 3;
            } else if eq(args[i], "setname") && i + 1 < args.len() {
                self.name = Some(args[i + 1].to_vec());
                i += 2;
            } else {
                reply::error(out, "ERR syntax error in HELLO option");
                return;
            }
        }
        if !self.authed {
            reply::error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
            return;
        }
        reply::array(out, 14);
        for (k, v) in [
            ("server", "redis"),
            ("version", REDIS_COMPAT_VERSION),
            ("proto", ""),
            ("id", ""),
            ("mode", "standalone"),
            ("role", "master"),
            ("modules", ""),
        ] {
            reply::bulk(out, k.as_bytes());
            match k {
                "proto" => reply::int(out, 2),
                "id" => reply::int(out, self.id as i64),
                "modules" => reply::array(out, 0),
                _ => reply::bulk(out, v.as_bytes()),
            }
        }
    }

    fn dbsize(&self) -> u64 {
        self.shared
            .shards
            .iter()
            .filter_map(|s| s.current())
            .filter(|g| !g.is_dead())
            .map(|g| g.segment.head().status.keys.load(Ordering::Acquire))
            .sum()
    }

    fn info(&self) -> String {
        let s = &self.shared;
        let mut text = format!(
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\ncorral_version:{}\r\n\
             redis_mode:standalone\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\r\n\
             # Clients\r\nconnected_clients:{}\r\n\r\n# Persistence\r\naof_enabled:0\r\n\r\n\
             # Shards\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            s.started.elapsed().as_secs(),
            s.connections(),
        );
        for shard in s.shards.iter() {
            let (pid, generation, keys, digest, applied) =
                shard.current().map_or((0, 0, 0, 0, 0), |g| {
                    let status = &g.segment.head().status;
                    (
                        g.pid,
                        g.number,
                        status.keys.load(Ordering::Acquire),
                        status.digest.load(Ordering::Acquire),
                        status.applied_seq.load(Ordering::Acquire),
                    )
                });
            text.push_str(&format!(
                "shard{}:state={},pid={pid},generation={generation},restarts={},keys={keys},\
                 digest={digest:016x},applied_seq={applied}\r\n",
                shard.id,
                shard.state().name(),
                shard.restarts.load(Ordering::Relaxed)
            ));
        }
        text.push_str(&format!(
            "\r\n# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
            self.dbsize()
        ));
        text
    }
}

/// The Redis version Corral reports to clients that check it.
const REDIS_COMPAT_VERSION: &str = "7.0.0";

/// A command's handler: runs it with its arguments (the name first), appending its reply
/// to `out` or queueing its writes; `out_limit` bounds a reply written in parts.
pub type Handler = fn(&mut Session, &[&[u8]], &mut Vec<u8>, usize) -> Step;

const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    keys: Keys,
    run: Handler,
) -> Spec<Handler> {
    Spec {
        name,
        arity: Arity(arity),
        kind,
        before_auth: false,
        keys,
        run,
    }
}

/// Allowed before AUTH.
const fn unauthenticated(mut s: Spec<Handler>) -> Spec<Handler> {
    s.before_auth = true;
    s
}

use Kind::{Read, Write};

/// Every command Corral runs: one line each (name, arity as Redis gives it, kind, key
/// positions, handler). The order is the metric label order.
static SPECS: [Spec<Handler>; 22] = [
    spec("ping", -1, Read, Keys::NONE, Session::ping),
    spec("echo", 2, Read, Keys::NONE, Session::echo),
    spec("set", -3, Write, Keys::ONE, Session::set),
    spec("get", 2, Read, Keys::ONE, Session::get),
    spec("del", -2, Write, Keys::ALL, Session::del),
    spec("unlink", -2, Write, Keys::ALL, Session::del),
    spec("exists", -2, Read, Keys::ALL, Session::exists),
    spec("incr", 2, Write, Keys::ONE, Session::incr),
    spec("incrby", 3, Write, Keys::ONE, Session::incrby),
    spec("decr", 2, Write, Keys::ONE, Session::decr),
    spec("decrby", 3, Write, Keys::ONE, Session::decrby),
    spec("mget", -2, Read, Keys::ALL, Session::mget_command),
    spec("mset", -3, Write, Keys::PAIRS, Session::mset),
    spec("dbsize", 1, Read, Keys::NONE, Session::dbsize_command),
    spec("info", -1, Read, Keys::NONE, Session::info_command),
    unauthenticated(spec("auth", -2, Read, Keys::NONE, Session::auth_command)),
    spec("select", 2, Read, Keys::NONE, Session::select),
    unauthenticated(spec("quit", -1, Read, Keys::NONE, Session::quit)),
    spec("command", -1, Read, Keys::NONE, Session::command_command),
    spec("config", -2, Read, Keys::NONE, Session::config),
    unauthenticated(spec("hello", -1, Read, Keys::NONE, Session::hello_command)),
    spec("client", -2, Read, Keys::NONE, Session::client),
];

/// The command table (checked once, when first used).
pub static TABLE: LazyLock<Table<Handler>> = LazyLock::new(|| Table::new(&SPECS));

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
    }
}

/// The reply of a write command from its ops' results (none of them of unknown outcome).
fn write_reply(
    kind: WriteKind,
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
    match (kind, results.first()) {
        (WriteKind::Set, Some(Some(Ok(Outcome::Nil)))) => reply::nil(out),
        (WriteKind::Set | WriteKind::AllOk, _) => reply::simple(out, "OK"),
        (WriteKind::Sum | WriteKind::Int, _) => reply::int(out, sum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let table = &*TABLE;
        assert_eq!(table.label(table.other()), "other");
        assert_eq!(
            table.find(b"INCRBY").map(|(i, _)| table.label(i)),
            Some("incrby")
        );
        assert!(table.find(b"flushall").is_none());
        for spec in table.specs() {
            // A write routes its keys; one without keys would go nowhere.
            if spec.kind == Kind::Write {
                assert_ne!(spec.keys, Keys::NONE, "{}", spec.name);
            }
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn write_replies_combine() {
        let mut out = Vec::new();
        let none = || None;
        write_reply(
            WriteKind::Sum,
            &[
                Some(Ok(Outcome::Int(1))),
                Some(Ok(Outcome::Int(0))),
                Some(Ok(Outcome::Int(1))),
            ],
            none,
            &mut out,
        );
        write_reply(WriteKind::Set, &[Some(Ok(Outcome::Nil))], none, &mut out);
        write_reply(
            WriteKind::AllOk,
            &[Some(Ok(Outcome::Ok)), Some(Err(Failure::Parked(2)))],
            none,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ":2\r\n$-1\r\n-ERR shard 2 is parked after repeated crashes; it is probed periodically\r\n"
        );
    }
}
