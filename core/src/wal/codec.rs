//! The payloads of event log records, and the one place that knows they are bincode
//! (pinned at 2.0.1: bincode 3 is a deliberate compile error). The record header carries
//! the format version ([`crate::wal::RECORD_VERSION`]); a change to these types is a new
//! version, and decoding refuses versions it does not know.

use bincode::de::BorrowDecoder;
use bincode::enc::Encoder;
use bincode::error::EncodeError;
use bincode::{BorrowDecode, Decode, Encode};
use corral_worker::command::{Op, Parts, SetCondition};

use crate::base::ops::OwnedOp;
use crate::wal::RECORD_VERSION;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ crate::wal::MAX_PAYLOAD_BYTES }>()
}

/// A logged client write is `(shard, op)`; since record format 2 the op is its parts:
/// tag, key, value, argument (one shape for every op, as in the request ring).
impl Encode for OwnedOp {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        let parts = self.parts();
        parts.tag.encode(e)?;
        parts.key.encode(e)?;
        parts.value.encode(e)?;
        parts.arg.encode(e)
    }
}

/// A logged op read back in place: its key and value borrow the record's payload.
struct LoggedOp<'a>(Op<'a>);

impl<'de, C> BorrowDecode<'de, C> for LoggedOp<'de> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let parts = Parts {
            tag: u32::borrow_decode(d)?,
            key: <&[u8]>::borrow_decode(d)?,
            value: <&[u8]>::borrow_decode(d)?,
            arg: i64::borrow_decode(d)?,
        };
        Op::from_parts(parts)
            .map(Self)
            .map_err(|_| bincode::error::DecodeError::Other("unknown write op"))
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

/// Appends the payload of a write of `op` to `shard` to `buf`.
pub fn encode_write(shard: u32, op: &OwnedOp, buf: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and keys and values are far below the size limit.
    let _ = bincode::encode_into_std_write((shard, op), buf, config());
}

/// Decodes a write payload of record format `version`: the shard and the op, borrowing
/// the payload (replay decodes millions of these; none allocates).
pub fn decode_write(version: u8, payload: &[u8]) -> Result<(u32, Op<'_>), DecodeError> {
    check_version(version)?;
    let decoded = if version == 1 {
        bincode::borrow_decode_from_slice(payload, config())
            .map(|((shard, LegacyOp(op)), used): ((u32, LegacyOp<'_>), usize)| ((shard, op), used))
    } else {
        bincode::borrow_decode_from_slice(payload, config())
            .map(|((shard, LoggedOp(op)), used): ((u32, LoggedOp<'_>), usize)| ((shard, op), used))
    };
    let ((shard, op), used) = decoded.map_err(|e| DecodeError(format!("write record: {e}")))?;
    if used != payload.len() {
        return Err(DecodeError(format!(
            "write record: {} trailing bytes",
            payload.len() - used
        )));
    }
    Ok((shard, op))
}

/// The shard of a write payload of record format `version`, without decoding the op.
pub fn write_shard(version: u8, payload: &[u8]) -> Result<u32, DecodeError> {
    check_version(version)?;
    bincode::decode_from_slice::<u32, _>(payload, config())
        .map(|(shard, _)| shard)
        .map_err(|e| DecodeError(format!("write record: {e}")))
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
            encode_write(shard as u32, op, &mut buf);
            assert_eq!(
                decode_write(RECORD_VERSION, &buf),
                Ok((shard as u32, op.as_op()))
            );
            assert_eq!(write_shard(RECORD_VERSION, &buf), Ok(shard as u32));
            assert!(decode_write(RECORD_VERSION + 1, &buf).is_err());
            assert!(decode_write(RECORD_VERSION, &buf[..buf.len() - 1]).is_err());
        }
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
        for (payload, want) in cases {
            assert_eq!(decode_write(1, payload), Ok(want));
            assert_eq!(write_shard(1, payload), Ok(want.0));
        }
        assert!(decode_write(1, &[0, 3, 1, b'k']).is_err());
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
