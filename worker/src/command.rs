//! The request and completion records carried by the rings: the API boundary between the
//! supervisor (which encodes requests and decodes completions) and the worker.
//!
//! ```text
//! request  (tag = op):  seq | key_len:32 value_len:32 | arg (i64) | deadline | now
//!                       | key words | value words
//! completion (tag 1):   seq | status | value (i64)
//! ```

use shm_protocol::layout::REQUEST_FIXED_WORDS;
use shm_protocol::ring::{Record, RecordWriter};
use shm_protocol::words::words_for;

/// `SET` condition: only if absent (`NX`) or only if present (`XX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    Always = 0,
    /// Only if the key does not exist.
    IfAbsent = 1,
    /// Only if the key exists.
    IfPresent = 2,
}

/// The expiry a write gives its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// None: the key never expires (a plain SET; GETEX PERSIST).
    Never,
    /// The key keeps the deadline it has (SET KEEPTTL).
    Keep,
    /// The key expires at this Unix time in milliseconds (at least 1); a deadline that has
    /// already come when the write is applied deletes the key.
    At(u64),
}

/// When EXPIRE sets a deadline (its NX, XX, GT and LT options; a key without a deadline
/// counts as expiring never, later than any deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    /// Always.
    Always = 0,
    /// Only if the key has no deadline.
    IfNone = 1,
    /// Only if the key has a deadline.
    IfSome = 2,
    /// Only if the new deadline is later than the current one.
    IfLater = 3,
    /// Only if the new deadline is earlier than the current one.
    IfEarlier = 4,
    /// Only if the key has a deadline and the new one is earlier (XX with LT).
    IfSomeEarlier = 5,
}

/// One write, borrowed from its encoding.
///
/// A write is applied at the time it was sequenced (the `now` its record carries, Unix ms),
/// never at the worker's own clock, so whether a key has expired when a write meets it is
/// the same on replay.
///
/// Every op has one shape where it is carried (the request ring and the event log), its
/// [`Parts`] ([`Op::parts`], [`Op::from_parts`]); a new op is a variant here, its parts,
/// and its semantics in the machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op<'a> {
    /// `SET key value [NX|XX] [GET]` (also GETSET, SETNX).
    Set {
        /// Key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
        /// Condition.
        condition: SetCondition,
        /// Whether the outcome is the old value (GET).
        get: bool,
        /// The key's expiry (EX, PX, EXAT, PXAT, KEEPTTL; SETEX, PSETEX).
        expiry: Expiry,
    },
    /// `DEL key` (one key; the front door splits multi-key deletes).
    Del {
        /// Key.
        key: &'a [u8],
    },
    /// `INCRBY key delta` (also INCR, DECR, DECRBY).
    IncrBy {
        /// Key.
        key: &'a [u8],
        /// Signed increment.
        delta: i64,
    },
    /// `INCRBYFLOAT key delta`: binary64 arithmetic, deterministic on every platform, so a
    /// replay computes the same result.
    IncrByFloat {
        /// Key.
        key: &'a [u8],
        /// Increment (finite).
        delta: f64,
    },
    /// `APPEND key value`.
    Append {
        /// Key.
        key: &'a [u8],
        /// Bytes appended.
        value: &'a [u8],
    },
    /// `SETRANGE key offset value`.
    SetRange {
        /// Key.
        key: &'a [u8],
        /// Byte offset (checked by the front door).
        offset: u64,
        /// Bytes written there.
        value: &'a [u8],
    },
    /// `SETBIT key offset bit`.
    SetBit {
        /// Key.
        key: &'a [u8],
        /// Bit offset (checked by the front door).
        offset: u64,
        /// The bit's new value.
        bit: bool,
    },
    /// `GETDEL key`.
    GetDel {
        /// Key.
        key: &'a [u8],
    },
    /// `PEXPIREAT key deadline [NX|XX|GT|LT]` (EXPIRE, PEXPIRE and EXPIREAT as the absolute
    /// deadline they give, as Redis logs them).
    Expire {
        /// Key.
        key: &'a [u8],
        /// Unix ms (at least 1); one that has come deletes the key.
        deadline: u64,
        /// When to set it.
        condition: ExpireCondition,
    },
    /// `PERSIST key`.
    Persist {
        /// Key.
        key: &'a [u8],
    },
    /// `GETEX key EX|PX|EXAT|PXAT|PERSIST` (GETEX without options is a read).
    GetEx {
        /// Key.
        key: &'a [u8],
        /// The new expiry ([`Expiry::Never`] for PERSIST; never [`Expiry::Keep`]).
        expiry: Expiry,
    },
    /// Removes `key` if its deadline has come (the active expiry sweep's delete, decided
    /// by the worker at the record's time, so a key written again since the sweep saw it
    /// stays).
    Expired {
        /// Key.
        key: &'a [u8],
    },
    /// `FLUSHDB`, `FLUSHALL`: removes every key of the shard (one op per shard).
    Flush,
    /// Reads `key` (a read inside a transaction, answered in its place among the writes):
    /// [`Outcome::Entry`] or nil. Changes nothing, an expired key included.
    Read {
        /// Key.
        key: &'a [u8],
    },
}

/// An op as it is carried: a tag, a key, a value and one integer argument. Every op has
/// this shape, so the ring and the log encode parts and never look inside an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// Which op.
    pub tag: u32,
    /// The key written.
    pub key: &'a [u8],
    /// The op's bytes (empty for most).
    pub value: &'a [u8],
    /// The op's number (a delta, an offset, flags).
    pub arg: i64,
    /// The deadline the op gives its key (Unix ms; 0: none).
    pub deadline: u64,
}

impl Parts<'_> {
    /// Payload size in words of the request record.
    #[must_use]
    pub fn record_words(&self) -> u64 {
        REQUEST_FIXED_WORDS + words_for(self.key.len() as u64) + words_for(self.value.len() as u64)
    }

    /// Writes the request record for sequence number `seq`, applied at `now_ms` (Unix ms)
    /// ([`Parts::record_words`] words).
    pub fn encode(&self, seq: u64, now_ms: u64, out: &mut RecordWriter<'_>) -> bool {
        let key_words = words_for(self.key.len() as u64) as usize;
        out.put(0, seq)
            && out.put(1, self.key.len() as u64 | (self.value.len() as u64) << 32)
            && out.put(2, self.arg as u64)
            && out.put(3, self.deadline)
            && out.put(4, now_ms)
            && out.put_bytes(REQUEST_FIXED_WORDS as usize, self.key)
            && out.put_bytes(REQUEST_FIXED_WORDS as usize + key_words, self.value)
    }
}

const TAG_SET: u32 = 1;
const TAG_DEL: u32 = 2;
const TAG_INCRBY: u32 = 3;
const TAG_INCRBYFLOAT: u32 = 4;
const TAG_APPEND: u32 = 5;
const TAG_SETRANGE: u32 = 6;
const TAG_SETBIT: u32 = 7;
const TAG_GETDEL: u32 = 8;
const TAG_EXPIRE: u32 = 9;
const TAG_PERSIST: u32 = 10;
const TAG_GETEX: u32 = 11;
const TAG_EXPIRED: u32 = 12;
const TAG_FLUSH: u32 = 13;
const TAG_READ: u32 = 14;
/// SET's argument: the condition in the low bits, GET and KEEPTTL above them.
const SET_GET: i64 = 1 << 2;
const SET_KEEPTTL: i64 = 1 << 3;

impl Expiry {
    /// Its carried form: the deadline, and whether the deadline is kept.
    fn parts(self) -> (u64, bool) {
        match self {
            Self::Never => (0, false),
            Self::Keep => (0, true),
            Self::At(deadline) => (deadline, false),
        }
    }

    fn from_parts(deadline: u64, keep: bool) -> Option<Self> {
        match (deadline, keep) {
            (0, false) => Some(Self::Never),
            (0, true) => Some(Self::Keep),
            (deadline, false) => Some(Self::At(deadline)),
            (_, true) => None,
        }
    }
}
/// Tag of completion records.
pub const TAG_COMPLETION: u32 = 1;
/// Flag on a request's tag: apply it without a completion (a replayed write nobody waits
/// for).
pub const TAG_SILENT: u32 = 1 << 15;
/// Flag on a request's tag: more ops of the same record (a transaction's) follow for this
/// shard, with the same sequence number. The worker's state is at a record boundary only
/// after an op without it: it never checkpoints or reports the sequence number applied
/// in between.
pub const TAG_MORE: u32 = 1 << 14;

impl<'a> Op<'a> {
    /// The key written.
    #[must_use]
    pub fn key(&self) -> &'a [u8] {
        self.parts().key
    }

    /// The op as it is carried.
    #[must_use]
    pub fn parts(&self) -> Parts<'a> {
        let mut deadline = 0;
        let (tag, key, value, arg) = match *self {
            Self::Set {
                key,
                value,
                condition,
                get,
                expiry,
            } => {
                let keep;
                (deadline, keep) = expiry.parts();
                let flags = if get { SET_GET } else { 0 } | if keep { SET_KEEPTTL } else { 0 };
                (TAG_SET, key, value, condition as i64 | flags)
            }
            Self::Del { key } => (TAG_DEL, key, &[][..], 0),
            Self::IncrBy { key, delta } => (TAG_INCRBY, key, &[][..], delta),
            Self::IncrByFloat { key, delta } => {
                (TAG_INCRBYFLOAT, key, &[][..], delta.to_bits() as i64)
            }
            Self::Append { key, value } => (TAG_APPEND, key, value, 0),
            Self::SetRange { key, offset, value } => (TAG_SETRANGE, key, value, offset as i64),
            Self::SetBit { key, offset, bit } => (
                TAG_SETBIT,
                key,
                &[][..],
                (offset << 1 | u64::from(bit)) as i64,
            ),
            Self::GetDel { key } => (TAG_GETDEL, key, &[][..], 0),
            Self::Expire {
                key,
                deadline: at,
                condition,
            } => {
                deadline = at;
                (TAG_EXPIRE, key, &[][..], condition as i64)
            }
            Self::Persist { key } => (TAG_PERSIST, key, &[][..], 0),
            Self::GetEx { key, expiry } => {
                (deadline, _) = expiry.parts();
                (TAG_GETEX, key, &[][..], 0)
            }
            Self::Expired { key } => (TAG_EXPIRED, key, &[][..], 0),
            Self::Flush => (TAG_FLUSH, &[][..], &[][..], 0),
            Self::Read { key } => (TAG_READ, key, &[][..], 0),
        };
        Parts {
            tag,
            key,
            value,
            arg,
            deadline,
        }
    }

    /// The op of these parts, or [`Malformed`] when they are no op's.
    pub fn from_parts(parts: Parts<'a>) -> Result<Self, Malformed> {
        let Parts {
            tag,
            key,
            value,
            arg,
            deadline,
        } = parts;
        let bad = Malformed { tag };
        let no_value = |op: Self| if value.is_empty() { Ok(op) } else { Err(bad) };
        // Only the ops that give a deadline carry one.
        if deadline != 0 && !matches!(tag, TAG_SET | TAG_EXPIRE | TAG_GETEX) {
            return Err(bad);
        }
        match tag {
            TAG_SET => Ok(Self::Set {
                key,
                value,
                condition: match arg & !(SET_GET | SET_KEEPTTL) {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    2 => SetCondition::IfPresent,
                    _ => return Err(bad),
                },
                get: arg & SET_GET != 0,
                expiry: Expiry::from_parts(deadline, arg & SET_KEEPTTL != 0).ok_or(bad)?,
            }),
            TAG_DEL if arg == 0 => no_value(Self::Del { key }),
            TAG_INCRBY => no_value(Self::IncrBy { key, delta: arg }),
            TAG_INCRBYFLOAT => {
                let delta = f64::from_bits(arg as u64);
                if !delta.is_finite() {
                    return Err(bad);
                }
                no_value(Self::IncrByFloat { key, delta })
            }
            TAG_APPEND if arg == 0 => Ok(Self::Append { key, value }),
            TAG_SETRANGE if arg >= 0 => Ok(Self::SetRange {
                key,
                offset: arg as u64,
                value,
            }),
            TAG_SETBIT if arg >= 0 => no_value(Self::SetBit {
                key,
                offset: arg as u64 >> 1,
                bit: arg & 1 == 1,
            }),
            TAG_GETDEL if arg == 0 => no_value(Self::GetDel { key }),
            TAG_EXPIRE if deadline != 0 => no_value(Self::Expire {
                key,
                deadline,
                condition: match arg {
                    0 => ExpireCondition::Always,
                    1 => ExpireCondition::IfNone,
                    2 => ExpireCondition::IfSome,
                    3 => ExpireCondition::IfLater,
                    4 => ExpireCondition::IfEarlier,
                    5 => ExpireCondition::IfSomeEarlier,
                    _ => return Err(bad),
                },
            }),
            TAG_PERSIST if arg == 0 => no_value(Self::Persist { key }),
            TAG_GETEX if arg == 0 => no_value(Self::GetEx {
                key,
                expiry: Expiry::from_parts(deadline, false).ok_or(bad)?,
            }),
            TAG_EXPIRED if arg == 0 => no_value(Self::Expired { key }),
            TAG_FLUSH if arg == 0 && key.is_empty() => no_value(Self::Flush),
            TAG_READ if arg == 0 => no_value(Self::Read { key }),
            _ => Err(bad),
        }
    }
}

/// An owned request decoded from the ring; the buffers are reused across requests.
#[derive(Debug, Default)]
pub struct DecodedRequest {
    /// Sequence number.
    pub seq: u64,
    /// Whether the request wants no completion ([`TAG_SILENT`]).
    pub silent: bool,
    /// Whether more ops of its record follow ([`TAG_MORE`]).
    pub more: bool,
    /// When it is applied (Unix ms): the time it was sequenced at.
    pub now_ms: u64,
    tag: u32,
    arg: i64,
    deadline: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A request record that does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The record's tag.
    pub tag: u32,
}

impl DecodedRequest {
    /// Decodes `record` into `self`, reusing buffers.
    pub fn decode_from(&mut self, record: &Record<'_>) -> Result<(), Malformed> {
        let bad = Malformed { tag: record.tag };
        self.seq = record.word(0);
        let lens = record.word(1);
        self.arg = record.word(2) as i64;
        self.deadline = record.word(3);
        self.now_ms = record.word(4);
        self.silent = record.tag & TAG_SILENT != 0;
        self.more = record.tag & TAG_MORE != 0;
        self.tag = record.tag & !(TAG_SILENT | TAG_MORE);
        let key_len = (lens & u64::from(u32::MAX)) as usize;
        let value_len = (lens >> 32) as usize;
        let fixed = REQUEST_FIXED_WORDS as usize;
        let needed = fixed + key_len.div_ceil(8) + value_len.div_ceil(8);
        if record.payload.len() < needed {
            return Err(bad);
        }
        self.key.clear();
        self.value.clear();
        if !record.bytes(fixed, key_len, &mut self.key)
            || !record.bytes(fixed + key_len.div_ceil(8), value_len, &mut self.value)
        {
            return Err(bad);
        }
        Ok(())
    }

    /// The key (empty for a request that did not decode).
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The op, borrowing the buffers.
    pub fn op(&self) -> Result<Op<'_>, Malformed> {
        Op::from_parts(Parts {
            tag: self.tag,
            key: &self.key,
            value: &self.value,
            arg: self.arg,
            deadline: self.deadline,
        })
    }
}

/// Why a write failed; carried in completions as a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The stored value is not a decimal 64-bit integer.
    NotInteger = 1,
    /// The increment would overflow.
    Overflow = 2,
    /// Key longer than the shard's limit.
    KeyTooLarge = 3,
    /// Value longer than the shard's limit.
    ValueTooLarge = 4,
    /// The shard holds its maximum number of keys.
    TooManyKeys = 5,
    /// The shard's memory is full.
    OutOfMemory = 6,
    /// The request record did not decode (a bug, reported rather than trusted).
    Malformed = 7,
    /// The stored value is not a number INCRBYFLOAT can add to.
    NotFloat = 8,
    /// The increment would make the value NaN or infinite.
    NanOrInfinity = 9,
}

impl WriteError {
    fn from_code(code: u64) -> Self {
        match code {
            1 => Self::NotInteger,
            2 => Self::Overflow,
            3 => Self::KeyTooLarge,
            4 => Self::ValueTooLarge,
            5 => Self::TooManyKeys,
            6 => Self::OutOfMemory,
            8 => Self::NotFloat,
            9 => Self::NanOrInfinity,
            _ => Self::Malformed,
        }
    }
}

/// What applying one op produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK`.
    Ok,
    /// Null (a conditional SET that did not happen, GETDEL of a missing key).
    Nil,
    /// An integer (DEL count, INCR result, a length, a bit).
    Int(i64),
    /// A value (the old value of SET GET and GETDEL, INCRBYFLOAT's result).
    Bulk(Vec<u8>),
    /// An error.
    Err(WriteError),
    /// A key's value and deadline (Unix ms; 0: none): a transaction's read.
    Entry {
        /// The value.
        value: Vec<u8>,
        /// The deadline.
        deadline: u64,
    },
}

const STATUS_OK: u64 = 0;
const STATUS_NIL: u64 = 1;
const STATUS_INT: u64 = 2;
const STATUS_ERR: u64 = 3;
const STATUS_BULK: u64 = 4;
const STATUS_ENTRY: u64 = 5;

/// Payload words of a completion record without a value.
pub const COMPLETION_PAYLOAD_WORDS: u32 = shm_protocol::layout::COMPLETION_WORDS as u32;

impl Outcome {
    /// Payload words of this outcome's completion record: the fixed words, then a value's
    /// bytes (at most the shard's largest value, which the completion ring is sized for).
    #[must_use]
    pub fn record_words(&self) -> u32 {
        match self {
            Self::Bulk(v) => COMPLETION_PAYLOAD_WORDS + words_for(v.len() as u64) as u32,
            // The deadline, then the value.
            Self::Entry { value, .. } => {
                COMPLETION_PAYLOAD_WORDS + 1 + words_for(value.len() as u64) as u32
            }
            _ => COMPLETION_PAYLOAD_WORDS,
        }
    }

    /// Writes the completion record of request `seq` ([`Outcome::record_words`] words).
    pub fn encode(&self, seq: u64, out: &mut RecordWriter<'_>) -> bool {
        let (status, value) = match self {
            Self::Ok => (STATUS_OK, 0),
            Self::Nil => (STATUS_NIL, 0),
            Self::Int(v) => (STATUS_INT, *v as u64),
            Self::Bulk(v) => (STATUS_BULK, v.len() as u64),
            Self::Err(e) => (STATUS_ERR, *e as u64),
            Self::Entry { value, .. } => (STATUS_ENTRY, value.len() as u64),
        };
        let fixed = COMPLETION_PAYLOAD_WORDS as usize;
        let bytes = match self {
            Self::Bulk(v) => out.put_bytes(fixed, v),
            Self::Entry { value, deadline } => {
                out.put(fixed, *deadline) && out.put_bytes(fixed + 1, value)
            }
            _ => true,
        };
        out.put(0, seq) && out.put(1, status) && out.put(2, value) && bytes
    }

    /// Decodes a completion record into its sequence number and outcome (a value that does
    /// not fit its record is a malformed outcome, reported rather than trusted).
    #[must_use]
    pub fn decode(record: &Record<'_>) -> (u64, Self) {
        let value = record.word(2);
        let outcome = match record.word(1) {
            STATUS_OK => Self::Ok,
            STATUS_NIL => Self::Nil,
            STATUS_INT => Self::Int(value as i64),
            STATUS_BULK => {
                let mut bytes = Vec::new();
                if usize::try_from(value).is_ok_and(|len| {
                    record.bytes(COMPLETION_PAYLOAD_WORDS as usize, len, &mut bytes)
                }) {
                    Self::Bulk(bytes)
                } else {
                    Self::Err(WriteError::Malformed)
                }
            }
            STATUS_ENTRY => {
                let fixed = COMPLETION_PAYLOAD_WORDS as usize;
                let mut bytes = Vec::new();
                if usize::try_from(value).is_ok_and(|len| record.bytes(fixed + 1, len, &mut bytes))
                {
                    Self::Entry {
                        value: bytes,
                        deadline: record.word(fixed),
                    }
                } else {
                    Self::Err(WriteError::Malformed)
                }
            }
            _ => Self::Err(WriteError::from_code(value)),
        };
        (record.word(0), outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_protocol::ring::{Consumer, HeapRing, Producer};

    fn round_trip(op: Op<'_>) {
        for silent in [false, true] {
            let ring = HeapRing::new(64);
            let mut p = Producer::new(&ring);
            let parts = op.parts();
            let tag = if silent {
                parts.tag | TAG_SILENT
            } else {
                parts.tag
            };
            p.try_push(tag, parts.record_words() as u32, |w| {
                assert!(parts.encode(77, 1_700_000_000_123, w));
            })
            .unwrap();
            let mut c = Consumer::new(&ring);
            let mut req = DecodedRequest::default();
            c.pop(|r| req.decode_from(&r)).unwrap().unwrap().unwrap();
            assert_eq!(
                (req.seq, req.silent, req.now_ms),
                (77, silent, 1_700_000_000_123)
            );
            assert_eq!(req.op().unwrap(), op);
        }
    }

    #[test]
    fn ops_round_trip() {
        round_trip(Op::Set {
            key: b"user:1",
            value: b"hello world, longer than a word",
            condition: SetCondition::IfAbsent,
            get: false,
            expiry: Expiry::Never,
        });
        round_trip(Op::Set {
            key: b"",
            value: b"",
            condition: SetCondition::IfPresent,
            get: true,
            expiry: Expiry::Keep,
        });
        round_trip(Op::Set {
            key: b"s",
            value: b"v",
            condition: SetCondition::Always,
            get: true,
            expiry: Expiry::At(u64::MAX),
        });
        for condition in [
            ExpireCondition::Always,
            ExpireCondition::IfNone,
            ExpireCondition::IfSome,
            ExpireCondition::IfLater,
            ExpireCondition::IfEarlier,
            ExpireCondition::IfSomeEarlier,
        ] {
            round_trip(Op::Expire {
                key: b"e",
                deadline: 1,
                condition,
            });
        }
        round_trip(Op::Persist { key: b"p" });
        round_trip(Op::GetEx {
            key: b"x",
            expiry: Expiry::At(1_700_000_000_000),
        });
        round_trip(Op::GetEx {
            key: b"x",
            expiry: Expiry::Never,
        });
        round_trip(Op::Expired { key: b"gone" });
        round_trip(Op::Flush);
        round_trip(Op::Read { key: b"r" });
        round_trip(Op::IncrByFloat {
            key: b"f",
            delta: -1.5e-300,
        });
        round_trip(Op::Append {
            key: b"a",
            value: b"tail",
        });
        round_trip(Op::SetRange {
            key: b"r",
            offset: 536_870_911,
            value: b"x",
        });
        round_trip(Op::SetBit {
            key: b"b",
            offset: u64::from(u32::MAX),
            bit: true,
        });
        round_trip(Op::GetDel { key: b"g" });
        round_trip(Op::Del { key: b"k" });
        round_trip(Op::IncrBy {
            key: b"counter",
            delta: i64::MIN,
        });
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            Outcome::Ok,
            Outcome::Nil,
            Outcome::Int(-5),
            Outcome::Err(WriteError::Overflow),
            Outcome::Err(WriteError::OutOfMemory),
            Outcome::Err(WriteError::NanOrInfinity),
            Outcome::Bulk(Vec::new()),
            Outcome::Bulk(b"a value of several words".to_vec()),
            Outcome::Entry {
                value: b"an entry's value".to_vec(),
                deadline: 1_700_000_000_000,
            },
            Outcome::Entry {
                value: Vec::new(),
                deadline: 0,
            },
        ] {
            let ring = HeapRing::new(16);
            let mut p = Producer::new(&ring);
            p.try_push(TAG_COMPLETION, outcome.record_words(), |w| {
                assert!(outcome.encode(9, w));
            })
            .unwrap();
            let mut c = Consumer::new(&ring);
            assert_eq!(
                c.pop(|r| Outcome::decode(&r)).unwrap(),
                Some((9, outcome.clone()))
            );
        }
    }

    #[test]
    fn parts_that_are_no_op_are_malformed() {
        for (tag, value, arg, deadline) in [
            (TAG_SET, &b""[..], 3, 0),
            (TAG_SET, b"", SET_KEEPTTL, 5),
            (TAG_DEL, b"v", 0, 0),
            (TAG_DEL, b"", 0, 5),
            (TAG_INCRBY, b"v", 1, 0),
            (TAG_INCRBYFLOAT, b"", f64::NAN.to_bits() as i64, 0),
            (TAG_SETRANGE, b"v", -1, 0),
            (TAG_SETBIT, b"", -2, 0),
            (TAG_GETDEL, b"", 1, 0),
            (TAG_EXPIRE, b"", 0, 0),
            (TAG_EXPIRE, b"", 6, 7),
            (TAG_PERSIST, b"", 0, 9),
            (TAG_GETEX, b"", 1, 9),
            (TAG_EXPIRED, b"v", 0, 0),
            (TAG_FLUSH, b"", 1, 0),
            (99, b"", 0, 0),
        ] {
            let parts = Parts {
                tag,
                key: b"k",
                value,
                arg,
                deadline,
            };
            assert_eq!(Op::from_parts(parts), Err(Malformed { tag }));
        }
    }

    #[test]
    fn a_short_record_is_malformed_not_a_panic() {
        let ring = HeapRing::new(16);
        let mut p = Producer::new(&ring);
        p.try_push(TAG_SET, REQUEST_FIXED_WORDS as u32, |w| {
            w.put(1, 100 | 5 << 32);
        })
        .unwrap();
        let mut c = Consumer::new(&ring);
        let mut req = DecodedRequest::default();
        let got = c.pop(|r| req.decode_from(&r)).unwrap().unwrap();
        assert_eq!(got, Err(Malformed { tag: TAG_SET }));
    }
}
