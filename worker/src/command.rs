//! The request and completion records carried by the rings: the API boundary between the
//! supervisor (which encodes requests and decodes completions) and the worker.
//!
//! ```text
//! request  (tag = op):  seq | key_len:32 value_len:32 | arg (i64) | key words | value words
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

/// One write, borrowed from its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// `SET key value [NX|XX]`.
    Set {
        /// Key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
        /// Condition.
        condition: SetCondition,
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
}

const TAG_SET: u32 = 1;
const TAG_DEL: u32 = 2;
const TAG_INCRBY: u32 = 3;
/// Tag of completion records.
pub const TAG_COMPLETION: u32 = 1;
/// Flag on a request's tag: apply it without a completion (a replayed write nobody waits
/// for).
pub const TAG_SILENT: u32 = 1 << 15;

impl<'a> Op<'a> {
    /// The key written.
    #[must_use]
    pub fn key(&self) -> &'a [u8] {
        match self {
            Self::Set { key, .. } | Self::Del { key } | Self::IncrBy { key, .. } => key,
        }
    }

    fn parts(&self) -> (u32, &'a [u8], &'a [u8], i64) {
        match *self {
            Self::Set {
                key,
                value,
                condition,
            } => (TAG_SET, key, value, condition as i64),
            Self::Del { key } => (TAG_DEL, key, &[], 0),
            Self::IncrBy { key, delta } => (TAG_INCRBY, key, &[], delta),
        }
    }

    /// Ring tag and payload size in words of this op's request record.
    #[must_use]
    pub fn record_shape(&self) -> (u32, u64) {
        let (tag, key, value, _) = self.parts();
        (
            tag,
            REQUEST_FIXED_WORDS + words_for(key.len() as u64) + words_for(value.len() as u64),
        )
    }

    /// Writes the request record for sequence number `seq`.
    pub fn encode(&self, seq: u64, out: &mut RecordWriter<'_>) -> bool {
        let (_, key, value, arg) = self.parts();
        let key_words = words_for(key.len() as u64) as usize;
        out.put(0, seq)
            && out.put(1, key.len() as u64 | (value.len() as u64) << 32)
            && out.put(2, arg as u64)
            && out.put_bytes(REQUEST_FIXED_WORDS as usize, key)
            && out.put_bytes(REQUEST_FIXED_WORDS as usize + key_words, value)
    }
}

/// An owned request decoded from the ring; the buffers are reused across requests.
#[derive(Debug, Default)]
pub struct DecodedRequest {
    /// Sequence number.
    pub seq: u64,
    /// Whether the request wants no completion ([`TAG_SILENT`]).
    pub silent: bool,
    tag: u32,
    arg: i64,
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
        self.silent = record.tag & TAG_SILENT != 0;
        self.tag = record.tag & !TAG_SILENT;
        let key_len = (lens & u64::from(u32::MAX)) as usize;
        let value_len = (lens >> 32) as usize;
        let fixed = REQUEST_FIXED_WORDS as usize;
        let needed = fixed + key_len.div_ceil(8) + value_len.div_ceil(8);
        if record.payload.len() < needed || !matches!(self.tag, TAG_SET | TAG_DEL | TAG_INCRBY) {
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
        Ok(match self.tag {
            TAG_SET => Op::Set {
                key: &self.key,
                value: &self.value,
                condition: match self.arg {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    2 => SetCondition::IfPresent,
                    _ => return Err(Malformed { tag: self.tag }),
                },
            },
            TAG_DEL => Op::Del { key: &self.key },
            TAG_INCRBY => Op::IncrBy {
                key: &self.key,
                delta: self.arg,
            },
            tag => return Err(Malformed { tag }),
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
            _ => Self::Malformed,
        }
    }
}

/// What applying one op produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `+OK`.
    Ok,
    /// Null (a conditional SET that did not happen).
    Nil,
    /// An integer (DEL count, INCR result).
    Int(i64),
    /// An error.
    Err(WriteError),
}

const STATUS_OK: u64 = 0;
const STATUS_NIL: u64 = 1;
const STATUS_INT: u64 = 2;
const STATUS_ERR: u64 = 3;

/// Payload words of a completion record.
pub const COMPLETION_PAYLOAD_WORDS: u32 = shm_protocol::layout::COMPLETION_WORDS as u32;

impl Outcome {
    /// Writes the completion record of request `seq`.
    pub fn encode(&self, seq: u64, out: &mut RecordWriter<'_>) -> bool {
        let (status, value) = match *self {
            Self::Ok => (STATUS_OK, 0),
            Self::Nil => (STATUS_NIL, 0),
            Self::Int(v) => (STATUS_INT, v as u64),
            Self::Err(e) => (STATUS_ERR, e as u64),
        };
        out.put(0, seq) && out.put(1, status) && out.put(2, value)
    }

    /// Decodes a completion record into its sequence number and outcome.
    #[must_use]
    pub fn decode(record: &Record<'_>) -> (u64, Self) {
        let value = record.word(2);
        let outcome = match record.word(1) {
            STATUS_OK => Self::Ok,
            STATUS_NIL => Self::Nil,
            STATUS_INT => Self::Int(value as i64),
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
            let (tag, words) = op.record_shape();
            let tag = if silent { tag | TAG_SILENT } else { tag };
            p.try_push(tag, words as u32, |w| assert!(op.encode(77, w)))
                .unwrap();
            let mut c = Consumer::new(&ring);
            let mut req = DecodedRequest::default();
            c.pop(|r| req.decode_from(&r)).unwrap().unwrap().unwrap();
            assert_eq!((req.seq, req.silent), (77, silent));
            assert_eq!(req.op().unwrap(), op);
        }
    }

    #[test]
    fn ops_round_trip() {
        round_trip(Op::Set {
            key: b"user:1",
            value: b"hello world, longer than a word",
            condition: SetCondition::IfAbsent,
        });
        round_trip(Op::Set {
            key: b"",
            value: b"",
            condition: SetCondition::IfPresent,
        });
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
        ] {
            let ring = HeapRing::new(16);
            let mut p = Producer::new(&ring);
            p.try_push(TAG_COMPLETION, COMPLETION_PAYLOAD_WORDS, |w| {
                assert!(outcome.encode(9, w));
            })
            .unwrap();
            let mut c = Consumer::new(&ring);
            assert_eq!(c.pop(|r| Outcome::decode(&r)).unwrap(), Some((9, outcome)));
        }
    }

    #[test]
    fn a_short_record_is_malformed_not_a_panic() {
        let ring = HeapRing::new(16);
        let mut p = Producer::new(&ring);
        p.try_push(TAG_SET, 3, |w| {
            w.put(1, 100 | 5 << 32);
        })
        .unwrap();
        let mut c = Consumer::new(&ring);
        let mut req = DecodedRequest::default();
        let got = c.pop(|r| req.decode_from(&r)).unwrap().unwrap();
        assert_eq!(got, Err(Malformed { tag: TAG_SET }));
    }
}
