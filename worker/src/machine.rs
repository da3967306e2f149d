//! The state machine boundary and the default key-value machine.

use shm_protocol::table::{SetResult, TableError, TableMemory, TableWriter};

use crate::command::{Op, Outcome, SetCondition, WriteError};

/// What a worker applies its requests to. Implementations must be deterministic: the same
/// ops in the same order from the same state give the same outcomes and the same digest,
/// which is what makes replay-based recovery exact.
pub trait StateMachine {
    /// Applies one op.
    fn apply(&mut self, op: &Op<'_>) -> Outcome;
    /// Order-independent digest of the whole state.
    fn digest(&self) -> u64;
    /// Number of keys held.
    fn keys(&self) -> u64;
    /// Bytes of key and value data held (what `--shard-memory` bounds).
    fn live_bytes(&self) -> u64;
}

/// Redis string semantics over a shared-memory table.
#[derive(Debug)]
pub struct KvMachine<M: TableMemory> {
    table: TableWriter<M>,
    scratch: Vec<u8>,
    number: itoa_buf::Buf,
}

impl<M: TableMemory> KvMachine<M> {
    /// A machine over `table`.
    pub fn new(table: TableWriter<M>) -> Self {
        Self {
            table,
            scratch: Vec::new(),
            number: itoa_buf::Buf::default(),
        }
    }

    /// The underlying table writer.
    pub fn table(&self) -> &TableWriter<M> {
        &self.table
    }

    /// The underlying table writer, for loading a checkpoint.
    pub fn table_mut(&mut self) -> &mut TableWriter<M> {
        &mut self.table
    }

    fn store(&mut self, key: &[u8], value: &[u8]) -> Result<SetResult, WriteError> {
        self.table.set(key, value).map_err(|e| match e {
            TableError::KeyTooLarge { .. } => WriteError::KeyTooLarge,
            TableError::ValueTooLarge { .. } => WriteError::ValueTooLarge,
            TableError::TooManyKeys { .. } => WriteError::TooManyKeys,
            TableError::OutOfMemory { .. } => WriteError::OutOfMemory,
        })
    }
}

impl<M: TableMemory> StateMachine for KvMachine<M> {
    fn apply(&mut self, op: &Op<'_>) -> Outcome {
        match *op {
            Op::Set {
                key,
                value,
                condition,
            } => {
                if condition != SetCondition::Always {
                    self.scratch.clear();
                    let present = self.table.get(key, &mut self.scratch);
                    if present != (condition == SetCondition::IfPresent) {
                        return Outcome::Nil;
                    }
                }
                match self.store(key, value) {
                    Ok(_) => Outcome::Ok,
                    Err(e) => Outcome::Err(e),
                }
            }
            Op::Del { key } => Outcome::Int(i64::from(self.table.remove(key))),
            Op::IncrBy { key, delta } => {
                self.scratch.clear();
                let current = if self.table.get(key, &mut self.scratch) {
                    match parse_i64(&self.scratch) {
                        Some(v) => v,
                        None => return Outcome::Err(WriteError::NotInteger),
                    }
                } else {
                    0
                };
                let Some(next) = current.checked_add(delta) else {
                    return Outcome::Err(WriteError::Overflow);
                };
                let mut text = [0u8; 20];
                let formatted = self.number.format(next);
                let len = formatted.len();
                text[..len].copy_from_slice(formatted);
                match self.store(key, &text[..len]) {
                    Ok(_) => Outcome::Int(next),
                    Err(e) => Outcome::Err(e),
                }
            }
        }
    }

    fn digest(&self) -> u64 {
        self.table.digest()
    }

    fn keys(&self) -> u64 {
        self.table.keys()
    }

    fn live_bytes(&self) -> u64 {
        self.table.live_bytes()
    }
}

/// Parses a decimal integer the way Redis' `string2ll` does: optional `-`, no `+`, no
/// leading zeros or spaces, at most 20 characters, within `i64`.
#[must_use]
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// A tiny integer formatter that needs no allocation.
mod itoa_buf {
    /// Room for `i64::MIN`.
    #[derive(Debug, Default)]
    pub struct Buf {
        bytes: [u8; 20],
    }

    impl Buf {
        /// Formats `v` in decimal.
        pub fn format(&mut self, v: i64) -> &[u8] {
            let mut n = v.unsigned_abs();
            let mut i = self.bytes.len();
            loop {
                i -= 1;
                self.bytes[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            if v < 0 {
                i -= 1;
                self.bytes[i] = b'-';
            }
            &self.bytes[i..]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_protocol::table::{HeapTable, TableLimits};

    fn machine(table: &HeapTable) -> KvMachine<&HeapTable> {
        KvMachine::new(TableWriter::new(
            table,
            TableLimits {
                max_key_bytes: 32,
                max_value_bytes: 64,
                max_keys: 48,
            },
        ))
    }

    fn check(ops: &[Op<'_>], expected: &[Outcome]) {
        let table = HeapTable::new(64, 512);
        let mut m = machine(&table);
        let got: Vec<Outcome> = ops.iter().map(|op| m.apply(op)).collect();
        assert_eq!(got, expected);
    }

    fn set<'a>(key: &'a [u8], value: &'a [u8], condition: SetCondition) -> Op<'a> {
        Op::Set {
            key,
            value,
            condition,
        }
    }

    #[test]
    fn set_conditions() {
        use SetCondition::*;
        check(
            &[
                set(b"k", b"1", IfPresent),
                set(b"k", b"1", IfAbsent),
                set(b"k", b"2", IfAbsent),
                set(b"k", b"3", IfPresent),
                set(b"k", b"4", Always),
                Op::Del { key: b"k" },
                Op::Del { key: b"k" },
            ],
            &[
                Outcome::Nil,
                Outcome::Ok,
                Outcome::Nil,
                Outcome::Ok,
                Outcome::Ok,
                Outcome::Int(1),
                Outcome::Int(0),
            ],
        );
    }

    #[test]
    fn increments_follow_redis() {
        use SetCondition::Always;
        check(
            &[
                Op::IncrBy {
                    key: b"n",
                    delta: 1,
                },
                Op::IncrBy {
                    key: b"n",
                    delta: -11,
                },
                set(b"s", b"abc", Always),
                Op::IncrBy {
                    key: b"s",
                    delta: 1,
                },
                set(b"m", b"9223372036854775807", Always),
                Op::IncrBy {
                    key: b"m",
                    delta: 1,
                },
                Op::IncrBy {
                    key: b"m",
                    delta: -1,
                },
                set(b"z", b" 1", Always),
                Op::IncrBy {
                    key: b"z",
                    delta: 1,
                },
            ],
            &[
                Outcome::Int(1),
                Outcome::Int(-10),
                Outcome::Ok,
                Outcome::Err(WriteError::NotInteger),
                Outcome::Ok,
                Outcome::Err(WriteError::Overflow),
                Outcome::Int(9_223_372_036_854_775_806),
                Outcome::Ok,
                Outcome::Err(WriteError::NotInteger),
            ],
        );
    }

    #[test]
    fn limits_become_errors() {
        use SetCondition::Always;
        check(
            &[set(&[b'k'; 33], b"v", Always), set(b"k", &[0; 65], Always)],
            &[
                Outcome::Err(WriteError::KeyTooLarge),
                Outcome::Err(WriteError::ValueTooLarge),
            ],
        );
    }

    #[test]
    fn parses_like_string2ll() {
        for (text, want) in [
            (&b"0"[..], Some(0)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"01", None),
            (b"-0", None),
            (b"+1", None),
            (b"", None),
            (b"1 ", None),
            (b"1.5", None),
        ] {
            assert_eq!(parse_i64(text), want, "{}", String::from_utf8_lossy(text));
        }
        let mut buf = itoa_buf::Buf::default();
        assert_eq!(buf.format(i64::MIN), b"-9223372036854775808");
        assert_eq!(buf.format(0), b"0");
    }
}
