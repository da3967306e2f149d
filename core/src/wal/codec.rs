//! The payloads of event log records, and the one place that knows they are bincode
//! (pinned at 2.0.1: bincode 3 is a deliberate compile error). The record header carries
//! the format version ([`crate::wal::RECORD_VERSION`]); a change to these types is a new
//! version, and decoding refuses versions it does not know.

use bincode::de::BorrowDecoder;
use bincode::enc::Encoder;
use bincode::error::EncodeError;
use bincode::{BorrowDecode, Decode, Encode};
use corral_worker::command::{Expiry, Op, Parts, SetCondition};
use smallvec::{smallvec, SmallVec};

use crate::base::ops::OwnedOp;
use crate::wal::RECORD_VERSION;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ crate::wal::MAX_PAYLOAD_BYTES }>()
}

/// A logged client write is `(now, [(shard, op)...])` since record format 4: the time it was
/// sequenced at (Unix ms, the time the workers apply it at, on replay too) and its ops, each
/// with its shard: one for a plain write, several for a transaction (all of it is in the
/// log, or none). Each op is its parts: tag, key, value, argument and deadline (one shape
/// for every op, as in the request ring). Formats 1 to 3 logged one `(shard, ...)` op.
struct EncodedOp<'a>(&'a OwnedOp);

impl Encode for EncodedOp<'_> {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        let parts = self.0.parts();
        parts.tag.encode(e)?;
        parts.key.encode(e)?;
        parts.value.encode(e)?;
        parts.arg.encode(e)?;
        parts.deadline.encode(e)
    }
}

/// A logged write read back in place: its keys and values borrow the record's payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Write<'a> {
    /// When it was sequenced (Unix ms; 0 in records of formats 1 and 2, which had no
    /// deadlines to judge).
    pub now_ms: u64,
    /// Its ops, in order, each with its shard (one but for a transaction: held inline,
    /// so decoding a single write allocates nothing).
    pub ops: SmallVec<[(u32, Op<'a>); 1]>,
}

impl<'a> Write<'a> {
    /// The ops for `shard`, in order.
    pub fn ops_of(&self, shard: u32) -> impl Iterator<Item = Op<'a>> + '_ {
        self.ops
            .iter()
            .filter(move |(s, _)| *s == shard)
            .map(|(_, op)| *op)
    }
}

/// Most ops one record holds (a transaction's), so that a damaged count cannot make the
/// decoder reserve without bound.
pub const MAX_RECORD_OPS: usize = 1 << 20;

/// The op of record format 2 or 3 (`deadline`: whether it has the deadline field).
fn decode_parts<'de, D: BorrowDecoder<'de>>(
    d: &mut D,
    deadline: bool,
) -> Result<Op<'de>, bincode::error::DecodeError> {
    let parts = Parts {
        tag: u32::borrow_decode(d)?,
        key: <&[u8]>::borrow_decode(d)?,
        value: <&[u8]>::borrow_decode(d)?,
        arg: i64::borrow_decode(d)?,
        deadline: if deadline { u64::borrow_decode(d)? } else { 0 },
    };
    Op::from_parts(parts).map_err(|_| bincode::error::DecodeError::Other("unknown write op"))
}

/// A write of record format 4.
struct LoggedWrite<'a>(Write<'a>);

impl<'de, C> BorrowDecode<'de, C> for LoggedWrite<'de> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let now_ms = u64::borrow_decode(d)?;
        let count = usize::borrow_decode(d)?;
        if count == 0 || count > MAX_RECORD_OPS {
            return Err(bincode::error::DecodeError::Other("bad op count"));
        }
        let mut ops = SmallVec::with_capacity(count.min(64));
        for _ in 0..count {
            ops.push((u32::borrow_decode(d)?, decode_parts(d, true)?));
        }
        Ok(Self(Write { now_ms, ops }))
    }
}

/// A write of one op, of record format 3 (`TIMED`: its shard, time and op with its
/// deadline) or 2 (its shard and op: no time, no deadline).
struct OneOpWrite<'a, const TIMED: bool>(Write<'a>);

impl<'de, C, const TIMED: bool> BorrowDecode<'de, C> for OneOpWrite<'de, TIMED> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let shard = u32::borrow_decode(d)?;
        let now_ms = if TIMED { u64::borrow_decode(d)? } else { 0 };
        Ok(Self(Write {
            now_ms,
            ops: smallvec![(shard, decode_parts(d, TIMED)?)],
        }))
    }
}

/// An op of record format 1 (SET, DEL and INCRBY, each with fields of its own), read so
/// that a log written before format 2 still replays.
struct LegacyOp<'a>(Op<'a>);

impl<'de, C> BorrowDecode<'de, C> for LegacyOp<'de> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let other = |what: &'static str| bincode::error::DecodeError::Other(what);
        Ok(Self(match u8::borrow_decode(d)? {
            0 => Op::Set {
                key: <&[u8]>::borrow_decode(d)?,
                value: <&[u8]>::borrow_decode(d)?,
                condition: match u8::borrow_decode(d)? {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    2 => SetCondition::IfPresent,
                    _ => return Err(other("unknown SET condition")),
                },
                get: false,
                expiry: Expiry::Never,
            },
            1 => Op::Del {
                key: <&[u8]>::borrow_decode(d)?,
            },
            2 => Op::IncrBy {
                key: <&[u8]>::borrow_decode(d)?,
                delta: i64::borrow_decode(d)?,
            },
            _ => return Err(other("unknown write op")),
        }))
    }
}

/// The oldest record format this build reads.
const OLDEST_RECORD_VERSION: u8 = 1;

/// A record payload that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn check_version(version: u8) -> Result<(), DecodeError> {
    if (OLDEST_RECORD_VERSION..=RECORD_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(DecodeError(format!(
            "record format version {version} is not supported (this build reads \
             {OLDEST_RECORD_VERSION} to {RECORD_VERSION})"
        )))
    }
}

/// Appends the payload of a write of `ops` (each with its shard; at least one), sequenced
/// at `now_ms`, to `buf`.
pub fn encode_write(now_ms: u64, ops: &[(u32, &OwnedOp)], buf: &mut Vec<u8>) {
    assert!(
        (1..=MAX_RECORD_OPS).contains(&ops.len()),
        "a write record holds 1 to {MAX_RECORD_OPS} ops, not {}",
        ops.len()
    );
    // Writing into a Vec cannot fail, and keys and values are far below the size limit.
    let _ = bincode::encode_into_std_write((now_ms, ops.len()), &mut *buf, config());
    for (shard, op) in ops {
        let _ = bincode::encode_into_std_write((*shard, EncodedOp(op)), &mut *buf, config());
    }
}

/// Decodes a write payload of record format `version`, borrowing the payload (replay
/// decodes millions of these; none allocates).
pub fn decode_write(version: u8, payload: &[u8]) -> Result<Write<'_>, DecodeError> {
    check_version(version)?;
    let decoded = match version {
        1 => bincode::borrow_decode_from_slice(payload, config()).map(
            |((shard, LegacyOp(op)), used): ((u32, LegacyOp<'_>), usize)| {
                (
                    Write {
                        now_ms: 0,
                        ops: smallvec![(shard, op)],
                    },
                    used,
                )
            },
        ),
        2 => bincode::borrow_decode_from_slice(payload, config())
            .map(|(OneOpWrite::<false>(w), used)| (w, used)),
        3 => bincode::borrow_decode_from_slice(payload, config())
            .map(|(OneOpWrite::<true>(w), used)| (w, used)),
        _ => bincode::borrow_decode_from_slice(payload, config())
            .map(|(LoggedWrite(w), used)| (w, used)),
    };
    let (write, used) = decoded.map_err(|e| DecodeError(format!("write record: {e}")))?;
    if used != payload.len() {
        return Err(DecodeError(format!(
            "write record: {} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(write)
}

/// A lifecycle event, as logged. Times are milliseconds since the Unix epoch. New variants go
/// at the end (bincode numbers them in order), so older logs still decode.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LifecycleRecord {
    /// The supervisor started (after recovery).
    SupervisorStarted {
        /// Its pid.
        pid: u32,
        /// Worker count.
        workers: u32,
        /// When.
        unix_ms: u64,
    },
    /// The supervisor stopped.
    SupervisorStopped {
        /// Whether every worker stopped in time.
        clean: bool,
        /// When.
        unix_ms: u64,
    },
    /// A worker process was spawned.
    WorkerSpawned {
        /// Shard.
        worker: u32,
        /// Generation.
        generation: u64,
        /// Its pid.
        pid: u32,
        /// When.
        unix_ms: u64,
    },
    /// A worker process exited.
    WorkerExited {
        /// Shard.
        worker: u32,
        /// Generation.
        generation: u64,
        /// Its pid.
        pid: u32,
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
        /// When.
        unix_ms: u64,
    },
    /// A restart was scheduled.
    RestartScheduled {
        /// Shard.
        worker: u32,
        /// Delay before the restart.
        backoff_ms: u64,
        /// When.
        unix_ms: u64,
    },
    /// A shard was parked after repeated crashes.
    ShardParked {
        /// Shard.
        worker: u32,
        /// When.
        unix_ms: u64,
    },
    /// A worker wrote a checkpoint.
    CheckpointTaken {
        /// Shard.
        worker: u32,
        /// Generation.
        generation: u64,
        /// Last sequence number it covers.
        seq: u64,
        /// File size.
        bytes: u64,
        /// When it was written.
        unix_ms: u64,
    },
    /// A restarted worker finished its replay: the shard serves again.
    ShardRecovered {
        /// Shard.
        worker: u32,
        /// Generation.
        generation: u64,
        /// Writes replayed from the log.
        replayed: u64,
        /// When.
        unix_ms: u64,
    },
    /// A worker could not be started (counted as a crash).
    SpawnFailed {
        /// Shard.
        worker: u32,
        /// The generation it would have been.
        generation: u64,
        /// Why.
        reason: String,
        /// When.
        unix_ms: u64,
    },
}

/// Appends the payload of a lifecycle record to `buf`.
pub fn encode_lifecycle(record: &LifecycleRecord, buf: &mut Vec<u8>) {
    let _ = bincode::encode_into_std_write(record, buf, config());
}

/// Decodes a lifecycle payload of record format `version`.
pub fn decode_lifecycle(version: u8, payload: &[u8]) -> Result<LifecycleRecord, DecodeError> {
    check_version(version)?;
    bincode::decode_from_slice(payload, config())
        .map(|(r, _)| r)
        .map_err(|e| DecodeError(format!("lifecycle record: {e}")))
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_and_garbage_is_an_error() {
        let ops = [
            OwnedOp::from(Op::Set {
                key: b"k",
                value: &[0, 255, 7],
                condition: SetCondition::IfPresent,
                get: true,
                expiry: Expiry::At(1_700_000_000_000),
            }),
            OwnedOp::from(Op::Expire {
                key: b"e",
                deadline: u64::MAX,
                condition: corral_worker::command::ExpireCondition::IfLater,
            }),
            OwnedOp::from(Op::Del { key: b"" }),
            OwnedOp::from(Op::IncrBy {
                key: b"n",
                delta: i64::MIN,
            }),
            OwnedOp::from(Op::IncrByFloat {
                key: b"f",
                delta: 0.1,
            }),
            OwnedOp::from(Op::SetBit {
                key: b"b",
                offset: 7,
                bit: true,
            }),
        ];
        for (shard, op) in ops.iter().enumerate() {
            let mut buf = Vec::new();
            let now_ms = 1_700_000_000_000 + shard as u64;
            encode_write(now_ms, &[(shard as u32, op)], &mut buf);
            assert_eq!(
                decode_write(RECORD_VERSION, &buf),
                Ok(Write {
                    now_ms,
                    ops: smallvec![(shard as u32, op.as_op())],
                })
            );
            assert!(decode_write(RECORD_VERSION + 1, &buf).is_err());
            assert!(decode_write(RECORD_VERSION, &buf[..buf.len() - 1]).is_err());
        }
        // A transaction: every op in one record, in order, each with its shard.
        let mut buf = Vec::new();
        let all: Vec<(u32, &OwnedOp)> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| (i as u32 % 2, op))
            .collect();
        encode_write(7, &all, &mut buf);
        let write = decode_write(RECORD_VERSION, &buf).unwrap();
        assert_eq!(write.now_ms, 7);
        let want: Vec<(u32, Op<'_>)> = all.iter().map(|(s, op)| (*s, op.as_op())).collect();
        assert_eq!(write.ops.as_slice(), want);
        let odd: Vec<Op<'_>> = write.ops_of(1).collect();
        assert_eq!(odd, [ops[1].as_op(), ops[3].as_op(), ops[5].as_op()]);
        assert!(decode_write(RECORD_VERSION, &buf[..buf.len() - 1]).is_err());
        // No ops, or an absurd count: damage, not an allocation.
        assert!(decode_write(RECORD_VERSION, &[0, 0]).is_err());
        assert!(decode_write(
            RECORD_VERSION,
            &[0, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        )
        .is_err());
        assert!(decode_write(RECORD_VERSION, &[0, 9]).is_err());
    }

    #[test]
    fn format_1_writes_still_decode() {
        // (shard 1, SET "k" "v" NX), (shard 0, DEL "d"), (shard 2, INCRBY "n" -1), as
        // format 1 wrote them.
        let cases: [(&[u8], (u32, Op<'_>)); 3] = [
            (
                &[1, 0, 1, b'k', 1, b'v', 1],
                (
                    1,
                    Op::Set {
                        key: b"k",
                        value: b"v",
                        condition: SetCondition::IfAbsent,
                        get: false,
                        expiry: Expiry::Never,
                    },
                ),
            ),
            (&[0, 1, 1, b'd'], (0, Op::Del { key: b"d" })),
            (
                &[2, 2, 1, b'n', 1],
                (
                    2,
                    Op::IncrBy {
                        key: b"n",
                        delta: -1,
                    },
                ),
            ),
        ];
        for (payload, (shard, op)) in cases {
            let want = Write {
                now_ms: 0,
                ops: smallvec![(shard, op)],
            };
            assert_eq!(decode_write(1, payload), Ok(want));
        }
        assert!(decode_write(1, &[0, 3, 1, b'k']).is_err());
    }

    #[test]
    fn formats_2_and_3_writes_still_decode() {
        // (shard 1, SET "k" "v" NX) as format 2 wrote it: tag, key, value, argument; and
        // as format 3 did, with the time (5) before and the deadline (none) after.
        let set = Op::Set {
            key: b"k",
            value: b"v",
            condition: SetCondition::IfAbsent,
            get: false,
            expiry: Expiry::Never,
        };
        let want = |now_ms| Write {
            now_ms,
            ops: smallvec![(1, set)],
        };
        assert_eq!(decode_write(2, &[1, 1, 1, b'k', 1, b'v', 2]), Ok(want(0)));
        assert!(decode_write(2, &[1, 1, 1, b'k', 1, b'v', 2, 0]).is_err());
        assert_eq!(
            decode_write(3, &[1, 5, 1, 1, b'k', 1, b'v', 2, 0]),
            Ok(want(5))
        );
        assert!(decode_write(3, &[1, 5, 1, 1, b'k', 1, b'v', 2]).is_err());
    }

    #[test]
    fn lifecycle_records_round_trip() {
        let r = LifecycleRecord::WorkerExited {
            worker: 3,
            generation: 9,
            pid: 1234,
            code: None,
            signal: Some(9),
            unix_ms: unix_ms(),
        };
        let mut buf = Vec::new();
        encode_lifecycle(&r, &mut buf);
        assert_eq!(decode_lifecycle(RECORD_VERSION, &buf), Ok(r));
    }
}
