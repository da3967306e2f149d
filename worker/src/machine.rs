//! The state machine boundary and the default key-value machine.

use shm_protocol::table::{expired, TableError, TableMemory, TableWriter};

use crate::command::{ExpireCondition, Expiry, Op, Outcome, SetCondition, WriteError};

/// What a worker applies its requests to. Implementations must be deterministic: the same
/// ops at the same times in the same order from the same state give the same outcomes and
/// the same digest, which is what makes replay-based recovery exact.
pub trait StateMachine {
    /// Applies one op at `now_ms` (Unix ms, the time the op was sequenced at: whether a key
    /// has expired is judged at it, never at a clock of the machine's own).
    fn apply(&mut self, op: &Op<'_>, now_ms: u64) -> Outcome;
    /// Order-independent digest of the whole state (deadlines included).
    fn digest(&self) -> u64;
    /// Number of keys held (expired ones not yet removed included).
    fn keys(&self) -> u64;
    /// Number of keys with a deadline.
    fn expiring(&self) -> u64;
    /// Keys removed so far because their deadline had come.
    fn expired(&self) -> u64;
    /// Bytes of key and value data held (what `--shard-memory` bounds).
    fn live_bytes(&self) -> u64;
}

/// Redis string semantics over a shared-memory table.
#[derive(Debug)]
pub struct KvMachine<M: TableMemory> {
    table: TableWriter<M>,
    scratch: Vec<u8>,
    number: itoa_buf::Buf,
    /// The time of the op being applied.
    now_ms: u64,
    expired: u64,
}

impl<M: TableMemory> KvMachine<M> {
    /// A machine over `table`.
    pub fn new(table: TableWriter<M>) -> Self {
        Self {
            table,
            scratch: Vec::new(),
            number: itoa_buf::Buf::default(),
            now_ms: 0,
            expired: 0,
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

    /// Stores `value` as `key`'s, expiring at `deadline` (0: never); a deadline that has
    /// come deletes the key instead.
    fn store(&mut self, key: &[u8], value: &[u8], deadline: u64) -> Result<(), WriteError> {
        if expired(deadline, self.now_ms) {
            self.table.remove(key);
            return Ok(());
        }
        match self.table.set(key, value, deadline) {
            Ok(_) => Ok(()),
            Err(TableError::KeyTooLarge { .. }) => Err(WriteError::KeyTooLarge),
            Err(TableError::ValueTooLarge { .. }) => Err(WriteError::ValueTooLarge),
            Err(TableError::TooManyKeys { .. }) => Err(WriteError::TooManyKeys),
            Err(TableError::OutOfMemory { .. }) => Err(WriteError::OutOfMemory),
        }
    }

    /// Stores the scratch buffer as `key`'s value.
    fn store_scratch(&mut self, key: &[u8], deadline: u64) -> Result<(), WriteError> {
        let value = std::mem::take(&mut self.scratch);
        let stored = self.store(key, &value, deadline);
        self.scratch = value;
        stored
    }

    /// Removes `key` if its `deadline` has come (a write that meets an expired key removes
    /// it, as Redis does); whether it did.
    fn expire_if_due(&mut self, key: &[u8], deadline: u64) -> bool {
        let due = expired(deadline, self.now_ms);
        if due {
            self.table.remove(key);
            self.expired += 1;
        }
        due
    }

    /// The deadline of `key` (0: none) if it is present and live.
    fn live(&mut self, key: &[u8]) -> Option<u64> {
        let deadline = self.table.deadline(key)?;
        (!self.expire_if_due(key, deadline)).then_some(deadline)
    }

    /// Reads `key` into the scratch buffer; its deadline (0: none) if it is present and
    /// live.
    fn load(&mut self, key: &[u8]) -> Option<u64> {
        self.scratch.clear();
        let deadline = self.table.get(key, &mut self.scratch)?;
        if self.expire_if_due(key, deadline) {
            self.scratch.clear();
            return None;
        }
        Some(deadline)
    }

    /// The number stored at `key` as `parse` reads it (`None` when absent) with the key's
    /// deadline (0 when none or absent), or `bad` when the value is not one.
    fn load_number<T>(
        &mut self,
        key: &[u8],
        parse: fn(&[u8]) -> Option<T>,
        bad: WriteError,
    ) -> Result<(Option<T>, u64), WriteError> {
        let Some(deadline) = self.load(key) else {
            return Ok((None, 0));
        };
        let number = parse(&self.scratch).ok_or(bad)?;
        Ok((Some(number), deadline))
    }

    /// Zero-pads the loaded value to at least `len` bytes, unless that is longer than the
    /// largest value (refused before the padding is allocated).
    fn pad_to(&mut self, len: u64) -> Result<(), WriteError> {
        if len > u64::from(self.table.limits().max_value_bytes) {
            return Err(WriteError::ValueTooLarge);
        }
        let len = len as usize;
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        Ok(())
    }

    fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        condition: SetCondition,
        get: bool,
        expiry: Expiry,
    ) -> Result<Outcome, WriteError> {
        let old = if get {
            self.load(key)
        } else if condition != SetCondition::Always || expiry == Expiry::Keep {
            self.live(key)
        } else {
            None
        };
        let allowed = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => old.is_none(),
            SetCondition::IfPresent => old.is_some(),
        };
        if allowed {
            let deadline = match expiry {
                Expiry::Never => 0,
                Expiry::Keep => old.unwrap_or(0),
                Expiry::At(deadline) => deadline,
            };
            self.store(key, value, deadline)?;
        }
        // With GET the old value is the reply whether or not the SET happened; the scratch
        // buffer still holds it.
        Ok(match (get, old.is_some(), allowed) {
            (true, true, _) => Outcome::Bulk(std::mem::take(&mut self.scratch)),
            (true, false, _) | (false, _, false) => Outcome::Nil,
            (false, _, true) => Outcome::Ok,
        })
    }

    fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<Outcome, WriteError> {
        let (current, deadline) = self.load_number(key, parse_i64, WriteError::NotInteger)?;
        let next = current
            .unwrap_or(0)
            .checked_add(delta)
            .ok_or(WriteError::Overflow)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(self.number.format(next));
        self.store_scratch(key, deadline)?;
        Ok(Outcome::Int(next))
    }

    fn incr_by_float(&mut self, key: &[u8], delta: f64) -> Result<Outcome, WriteError> {
        let (current, deadline) = self.load_number(key, parse_f64, WriteError::NotFloat)?;
        let next = current.unwrap_or(0.0) + delta;
        if !next.is_finite() {
            return Err(WriteError::NanOrInfinity);
        }
        let text = format_f64(next).into_bytes();
        self.store(key, &text, deadline)?;
        Ok(Outcome::Bulk(text))
    }

    fn append(&mut self, key: &[u8], value: &[u8]) -> Result<Outcome, WriteError> {
        let deadline = self.load(key).unwrap_or(0);
        self.scratch.extend_from_slice(value);
        self.store_scratch(key, deadline)?;
        Ok(Outcome::Int(self.scratch.len() as i64))
    }

    fn set_range(&mut self, key: &[u8], offset: u64, value: &[u8]) -> Result<Outcome, WriteError> {
        let deadline = self.load(key).unwrap_or(0);
        // Nothing to write: a missing key stays missing.
        if !value.is_empty() {
            let end = offset.saturating_add(value.len() as u64);
            self.pad_to(end)?;
            let end = end as usize;
            self.scratch[end - value.len()..end].copy_from_slice(value);
            self.store_scratch(key, deadline)?;
        }
        Ok(Outcome::Int(self.scratch.len() as i64))
    }

    fn set_bit(&mut self, key: &[u8], offset: u64, bit: bool) -> Result<Outcome, WriteError> {
        let deadline = self.load(key).unwrap_or(0);
        let byte = offset >> 3;
        self.pad_to(byte + 1)?;
        let byte = &mut self.scratch[byte as usize];
        let mask = 0x80u8 >> (offset & 7);
        let old = *byte & mask != 0;
        if bit {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        self.store_scratch(key, deadline)?;
        Ok(Outcome::Int(i64::from(old)))
    }

    fn get_del(&mut self, key: &[u8]) -> Outcome {
        if self.load(key).is_some() {
            self.table.remove(key);
            Outcome::Bulk(std::mem::take(&mut self.scratch))
        } else {
            Outcome::Nil
        }
    }

    fn expire(&mut self, key: &[u8], deadline: u64, condition: ExpireCondition) -> Outcome {
        let Some(current) = self.live(key) else {
            return Outcome::Int(0);
        };
        // No deadline counts as never: later than any.
        let allowed = match condition {
            ExpireCondition::Always => true,
            ExpireCondition::IfNone => current == 0,
            ExpireCondition::IfSome => current != 0,
            ExpireCondition::IfLater => current != 0 && deadline > current,
            ExpireCondition::IfEarlier => current == 0 || deadline < current,
            ExpireCondition::IfSomeEarlier => current != 0 && deadline < current,
        };
        if !allowed {
            return Outcome::Int(0);
        }
        if expired(deadline, self.now_ms) {
            self.table.remove(key);
        } else {
            self.table.set_deadline(key, deadline);
        }
        Outcome::Int(1)
    }

    fn persist(&mut self, key: &[u8]) -> Outcome {
        match self.live(key) {
            Some(deadline) if deadline != 0 => {
                self.table.set_deadline(key, 0);
                Outcome::Int(1)
            }
            _ => Outcome::Int(0),
        }
    }

    fn get_ex(&mut self, key: &[u8], expiry: Expiry) -> Outcome {
        if self.load(key).is_none() {
            return Outcome::Nil;
        }
        match expiry {
            Expiry::At(deadline) if expired(deadline, self.now_ms) => {
                self.table.remove(key);
            }
            Expiry::At(deadline) => {
                self.table.set_deadline(key, deadline);
            }
            Expiry::Never => {
                self.table.set_deadline(key, 0);
            }
            Expiry::Keep => {}
        }
        Outcome::Bulk(std::mem::take(&mut self.scratch))
    }

    /// A read: changes nothing (an expired key reads as missing and stays for the sweep),
    /// so it is the same whether it is logged or not.
    fn read(&mut self, key: &[u8]) -> Outcome {
        let mut value = Vec::new();
        match self.table.get(key, &mut value) {
            Some(deadline) if !expired(deadline, self.now_ms) => Outcome::Entry { value, deadline },
            _ => Outcome::Nil,
        }
    }

    fn remove_expired(&mut self, key: &[u8]) -> Outcome {
        let due = self
            .table
            .deadline(key)
            .is_some_and(|deadline| self.expire_if_due(key, deadline));
        Outcome::Int(i64::from(due))
    }
}

impl<M: TableMemory> StateMachine for KvMachine<M> {
    fn apply(&mut self, op: &Op<'_>, now_ms: u64) -> Outcome {
        self.now_ms = now_ms;
        let applied = match *op {
            Op::Set {
                key,
                value,
                condition,
                get,
                expiry,
            } => self.set(key, value, condition, get, expiry),
            Op::Del { key } => {
                let live = self.live(key).is_some() && self.table.remove(key);
                Ok(Outcome::Int(i64::from(live)))
            }
            Op::IncrBy { key, delta } => self.incr_by(key, delta),
            Op::IncrByFloat { key, delta } => self.incr_by_float(key, delta),
            Op::Append { key, value } => self.append(key, value),
            Op::SetRange { key, offset, value } => self.set_range(key, offset, value),
            Op::SetBit { key, offset, bit } => self.set_bit(key, offset, bit),
            Op::GetDel { key } => Ok(self.get_del(key)),
            Op::Expire {
                key,
                deadline,
                condition,
            } => Ok(self.expire(key, deadline, condition)),
            Op::Persist { key } => Ok(self.persist(key)),
            Op::GetEx { key, expiry } => Ok(self.get_ex(key, expiry)),
            Op::Expired { key } => Ok(self.remove_expired(key)),
            Op::Flush => {
                self.table.clear();
                Ok(Outcome::Ok)
            }
            Op::Read { key } => Ok(self.read(key)),
        };
        applied.unwrap_or_else(Outcome::Err)
    }

    fn digest(&self) -> u64 {
        self.table.digest()
    }

    fn keys(&self) -> u64 {
        self.table.keys()
    }

    fn expiring(&self) -> u64 {
        self.table.expiring()
    }

    fn expired(&self) -> u64 {
        self.expired
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

/// The longest number text INCRBYFLOAT reads (Redis' limit for a long double's text).
const FLOAT_TEXT_MAX_BYTES: usize = 5 * 1024;

/// Parses a number as INCRBYFLOAT reads one: decimal or exponent notation, no spaces,
/// not NaN (infinities parse, and then fail the finite-result check).
#[must_use]
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.len() > FLOAT_TEXT_MAX_BYTES || text.trim() != text {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Formats INCRBYFLOAT's result as Redis' human form does: plain decimal notation, no
/// exponent and no trailing zeros (the shortest text that reads back as the same binary64).
#[must_use]
pub fn format_f64(v: f64) -> String {
    // `-0` adds to nothing; Redis prints it as 0 too.
    if v == 0.0 {
        return "0".into();
    }
    format!("{v}")
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
        let timed: Vec<(u64, Op<'_>)> = ops.iter().map(|op| (1, *op)).collect();
        check_at(&timed, expected);
    }

    /// Applies each op at its time and compares the outcomes.
    fn check_at(ops: &[(u64, Op<'_>)], expected: &[Outcome]) -> u64 {
        let table = HeapTable::new(64, 512);
        let mut m = machine(&table);
        let got: Vec<Outcome> = ops.iter().map(|(now, op)| m.apply(op, *now)).collect();
        assert_eq!(got, expected);
        m.expired()
    }

    fn set<'a>(key: &'a [u8], value: &'a [u8], condition: SetCondition) -> Op<'a> {
        Op::Set {
            key,
            value,
            condition,
            get: false,
            expiry: Expiry::Never,
        }
    }

    #[test]
    fn string_ops_follow_redis() {
        use SetCondition::*;
        let bulk = |v: &[u8]| Outcome::Bulk(v.to_vec());
        check(
            &[
                Op::Set {
                    key: b"k",
                    value: b"1",
                    condition: Always,
                    get: true,
                    expiry: Expiry::Never,
                },
                Op::Set {
                    key: b"k",
                    value: b"2",
                    condition: IfAbsent,
                    get: true,
                    expiry: Expiry::Never,
                },
                Op::Set {
                    key: b"k",
                    value: b"3",
                    condition: Always,
                    get: true,
                    expiry: Expiry::Never,
                },
                Op::Append {
                    key: b"k",
                    value: b"45",
                },
                Op::Append {
                    key: b"new",
                    value: b"x",
                },
                Op::SetRange {
                    key: b"k",
                    offset: 1,
                    value: b"ZZ",
                },
                Op::SetRange {
                    key: b"none",
                    offset: 3,
                    value: b"",
                },
                Op::SetRange {
                    key: b"pad",
                    offset: 2,
                    value: b"a",
                },
                Op::GetDel { key: b"pad" },
                Op::GetDel { key: b"pad" },
                Op::SetBit {
                    key: b"bits",
                    offset: 7,
                    bit: true,
                },
                Op::SetBit {
                    key: b"bits",
                    offset: 7,
                    bit: false,
                },
                Op::SetBit {
                    key: b"bits",
                    offset: 9,
                    bit: true,
                },
                Op::GetDel { key: b"bits" },
                set(b"f", b"10.50", Always),
                Op::IncrByFloat {
                    key: b"f",
                    delta: 0.1,
                },
                Op::IncrByFloat {
                    key: b"f",
                    delta: -5.0,
                },
                set(b"e", b"5.0e3", Always),
                Op::IncrByFloat {
                    key: b"e",
                    delta: 200.0,
                },
                Op::IncrByFloat {
                    key: b"k",
                    delta: 1.0,
                },
                set(b"big", b"1.7e308", Always),
                Op::IncrByFloat {
                    key: b"big",
                    delta: 1.7e308,
                },
                Op::SetRange {
                    key: b"far",
                    offset: 64,
                    value: b"x",
                },
            ],
            &[
                Outcome::Nil,
                bulk(b"1"),
                bulk(b"1"),
                Outcome::Int(3),
                Outcome::Int(1),
                Outcome::Int(3),
                Outcome::Int(0),
                Outcome::Int(3),
                bulk(b"\0\0a"),
                Outcome::Nil,
                Outcome::Int(0),
                Outcome::Int(1),
                Outcome::Int(0),
                bulk(&[0, 0x40]),
                Outcome::Ok,
                bulk(b"10.6"),
                bulk(b"5.6"),
                Outcome::Ok,
                bulk(b"5200"),
                Outcome::Err(WriteError::NotFloat),
                Outcome::Ok,
                Outcome::Err(WriteError::NanOrInfinity),
                Outcome::Err(WriteError::ValueTooLarge),
            ],
        );
    }

    #[test]
    fn flush_removes_every_key() {
        let table = HeapTable::new(64, 512);
        let mut m = machine(&table);
        for key in [&b"a"[..], b"b", b"c"] {
            m.apply(&set(key, b"v", SetCondition::Always), 1);
        }
        m.apply(
            &Op::Expire {
                key: b"a",
                deadline: 9,
                condition: ExpireCondition::Always,
            },
            1,
        );
        assert_eq!(m.apply(&Op::Flush, 2), Outcome::Ok);
        assert_eq!(
            (m.keys(), m.expiring(), m.digest(), m.live_bytes()),
            (0, 0, 0, 0)
        );
        assert_eq!(m.apply(&Op::GetDel { key: b"b" }, 3), Outcome::Nil);
        assert_eq!(
            m.apply(&set(b"b", b"w", SetCondition::IfAbsent), 3),
            Outcome::Ok
        );
        assert_eq!(m.keys(), 1);
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

    /// Deadlines are judged at each op's time: a write that meets an expired key finds
    /// it absent (and removes it), others keep the deadline they find.
    #[test]
    fn deadlines_follow_redis() {
        use ExpireCondition::{IfEarlier, IfLater, IfNone, IfSome};
        use SetCondition::{Always, IfAbsent};
        let bulk = |v: &[u8]| Outcome::Bulk(v.to_vec());
        let set_ex = |key, value, expiry| Op::Set {
            key,
            value,
            condition: Always,
            get: false,
            expiry,
        };
        let expire = |key, deadline, condition| Op::Expire {
            key,
            deadline,
            condition,
        };
        let expired = check_at(
            &[
                (10, set_ex(b"k", b"5", Expiry::At(100))),
                (
                    20,
                    Op::IncrBy {
                        key: b"k",
                        delta: 1,
                    },
                ),
                // INCR kept the deadline: at 100 the key is gone and INCR starts over.
                (
                    100,
                    Op::IncrBy {
                        key: b"k",
                        delta: 1,
                    },
                ),
                (110, expire(b"k", 200, IfSome)),
                (110, expire(b"k", 200, IfNone)),
                (110, expire(b"k", 300, IfLater)),
                (110, expire(b"k", 100, IfLater)),
                (110, expire(b"k", 250, IfEarlier)),
                (120, Op::Persist { key: b"k" }),
                (120, Op::Persist { key: b"k" }),
                (120, expire(b"k", 400, IfEarlier)),
                (130, set_ex(b"k", b"v", Expiry::Keep)),
                (
                    399,
                    Op::Append {
                        key: b"k",
                        value: b"w",
                    },
                ),
                (
                    400,
                    Op::Append {
                        key: b"k",
                        value: b"w",
                    },
                ),
                // A deadline that has come deletes: EXPIRE, SET PXAT and GETEX.
                (500, expire(b"k", 500, ExpireCondition::Always)),
                (500, Op::GetDel { key: b"k" }),
                (500, set_ex(b"p", b"v", Expiry::At(499))),
                (500, Op::GetDel { key: b"p" }),
                (500, set_ex(b"g", b"v", Expiry::Never)),
                (
                    500,
                    Op::GetEx {
                        key: b"g",
                        expiry: Expiry::At(600),
                    },
                ),
                (599, Op::Expired { key: b"g" }),
                (600, Op::Expired { key: b"g" }),
                (
                    600,
                    Op::GetEx {
                        key: b"g",
                        expiry: Expiry::Never,
                    },
                ),
                (600, set_ex(b"g", b"v", Expiry::At(700))),
                (
                    600,
                    Op::GetEx {
                        key: b"g",
                        expiry: Expiry::At(600),
                    },
                ),
                (600, Op::GetDel { key: b"g" }),
                (600, set_ex(b"d", b"v", Expiry::At(650))),
                (650, Op::Del { key: b"d" }),
                (650, set_ex(b"n", b"v", Expiry::At(700))),
                (
                    700,
                    Op::Set {
                        key: b"n",
                        value: b"w",
                        condition: IfAbsent,
                        get: true,
                        expiry: Expiry::Never,
                    },
                ),
            ],
            &[
                Outcome::Ok,
                Outcome::Int(6),
                Outcome::Int(1),
                Outcome::Int(0),
                Outcome::Int(1),
                Outcome::Int(1),
                Outcome::Int(0),
                Outcome::Int(1),
                Outcome::Int(1),
                Outcome::Int(0),
                Outcome::Int(1),
                Outcome::Ok,
                Outcome::Int(2),
                Outcome::Int(1),
                Outcome::Int(1),
                Outcome::Nil,
                Outcome::Ok,
                Outcome::Nil,
                Outcome::Ok,
                bulk(b"v"),
                Outcome::Int(0),
                Outcome::Int(1),
                Outcome::Nil,
                Outcome::Ok,
                bulk(b"v"),
                Outcome::Nil,
                Outcome::Ok,
                Outcome::Int(0),
                Outcome::Ok,
                Outcome::Nil,
            ],
        );
        // Met expired by a write: k at 100 and at 400, g by the sweep, d by DEL, n by SET.
        assert_eq!(expired, 5);
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
