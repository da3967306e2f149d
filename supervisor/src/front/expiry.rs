//! Expiry: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME,
//! PERSIST, SETEX, PSETEX, GETEX, and the expiry options SET and GETEX share.
//!
//! Every deadline a write carries is absolute (Unix ms), computed here from the batch's
//! time for relative ones, so the log holds the deadline itself and replay is exact.
//! Reads judge expiry at the batch's time; writes at the time they were sequenced.

use corral_worker::command::{ExpireCondition, Expiry, Op, SetCondition};

use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step, WriteKind};

/// How an expiry argument counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// EX: seconds from now.
    Seconds,
    /// PX: milliseconds from now.
    Millis,
    /// EXAT: a Unix time in seconds.
    UnixSeconds,
    /// PXAT: a Unix time in milliseconds.
    UnixMillis,
}

impl Unit {
    fn relative(self) -> bool {
        matches!(self, Unit::Seconds | Unit::Millis)
    }

    fn seconds(self) -> bool {
        matches!(self, Unit::Seconds | Unit::UnixSeconds)
    }
}

/// The options of SET (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL) or GETEX (EX, PX, EXAT,
/// PXAT, PERSIST), as Redis parses them: an option may repeat (the last value counts), two
/// that conflict are a syntax error.
#[derive(Debug, Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expire: Option<(Unit, &'a [u8])>,
}

/// Which command's options are parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Set,
    GetEx,
}

impl<'a> StringOptions<'a> {
    fn parse(options: &[&'a [u8]], family: Family) -> Result<Self, ()> {
        let mut o = StringOptions::default();
        let set = family == Family::Set;
        let mut i = 0;
        while i < options.len() {
            let opt = options[i];
            let next = options.get(i + 1).copied();
            // A unit conflicts with KEEPTTL, PERSIST and the other units, not itself.
            let unit_free = |o: &StringOptions, unit: Unit| {
                !o.keep_ttl && !o.persist && o.expire.is_none_or(|(u, _)| u == unit)
            };
            let unit = [
                ("ex", Unit::Seconds),
                ("px", Unit::Millis),
                ("exat", Unit::UnixSeconds),
                ("pxat", Unit::UnixMillis),
            ]
            .into_iter()
            .find(|(name, _)| eq(opt, name))
            .map(|(_, unit)| unit);
            if set && eq(opt, "nx") && !o.xx {
                o.nx = true;
            } else if set && eq(opt, "xx") && !o.nx {
                o.xx = true;
            } else if set && eq(opt, "get") {
                o.get = true;
            } else if set && eq(opt, "keepttl") && !o.persist && o.expire.is_none() {
                o.keep_ttl = true;
            } else if !set && eq(opt, "persist") && !o.keep_ttl && o.expire.is_none() {
                o.persist = true;
            } else if let (Some(unit), Some(value)) = (unit, next) {
                if !unit_free(&o, unit) {
                    return Err(());
                }
                o.expire = Some((unit, value));
                i += 1;
            } else {
                return Err(());
            }
            i += 1;
        }
        Ok(o)
    }
}

/// Why an expiry argument was refused.
enum BadExpiry {
    /// Not an integer: Redis' integer error.
    NotInteger,
    /// Not positive, or past the clock's range: "invalid expire time".
    Invalid,
}

/// The deadline (Unix ms, at least 1) an EX/PX/EXAT/PXAT argument names at `now_ms`, as
/// SET, SETEX and GETEX take it: a positive integer whose deadline fits the clock.
fn string_deadline(unit: Unit, arg: &[u8], now_ms: u64) -> Result<u64, BadExpiry> {
    let n = corral_worker::machine::parse_i64(arg).ok_or(BadExpiry::NotInteger)?;
    if n <= 0 {
        return Err(BadExpiry::Invalid);
    }
    let ms = if unit.seconds() {
        n.checked_mul(1000).ok_or(BadExpiry::Invalid)?
    } else {
        n
    };
    let base = if unit.relative() { now_ms as i64 } else { 0 };
    let at = ms.checked_add(base).ok_or(BadExpiry::Invalid)?;
    Ok(at as u64)
}

/// Replies with the error for a refused expiry argument of the running command.
fn expiry_error(s: &mut Session, bad: BadExpiry, out: &mut Vec<u8>) -> Step {
    let message = match bad {
        BadExpiry::NotInteger => "ERR value is not an integer or out of range".to_string(),
        BadExpiry::Invalid => format!("ERR invalid expire time in '{}' command", s.command_name()),
    };
    s.error(out, &message);
    Step::Done
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL].
pub(super) fn set(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Ok(o) = StringOptions::parse(&args[3..], Family::Set) else {
        s.error(out, "ERR syntax error");
        return Step::Done;
    };
    let expiry = match o.expire {
        Some((unit, arg)) => match string_deadline(unit, arg, s.now_ms()) {
            Ok(at) => Expiry::At(at),
            Err(bad) => return expiry_error(s, bad, out),
        },
        None if o.keep_ttl => Expiry::Keep,
        None => Expiry::Never,
    };
    let condition = match (o.nx, o.xx) {
        (true, _) => SetCondition::IfAbsent,
        (_, true) => SetCondition::IfPresent,
        _ => SetCondition::Always,
    };
    s.write_one(
        WriteKind::One,
        Op::Set {
            key: args[1],
            value: args[2],
            condition,
            expiry,
            get: o.get,
        },
        out,
    )
}

/// SETEX key seconds value, PSETEX key milliseconds value.
fn set_for(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, unit: Unit) -> Step {
    let at = match string_deadline(unit, args[2], s.now_ms()) {
        Ok(at) => at,
        Err(bad) => return expiry_error(s, bad, out),
    };
    s.write_one(
        WriteKind::One,
        Op::Set {
            key: args[1],
            value: args[3],
            condition: SetCondition::Always,
            expiry: Expiry::At(at),
            get: false,
        },
        out,
    )
}

pub(super) fn setex(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    set_for(s, args, out, Unit::Seconds)
}

pub(super) fn psetex(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    set_for(s, args, out, Unit::Millis)
}

/// GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]: without an option, a read; with
/// one, a write that answers the value. A missing key answers nil even when the option's
/// value is bad (Redis looks the key up first).
pub(super) fn getex(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Ok(o) = StringOptions::parse(&args[2..], Family::GetEx) else {
        s.error(out, "ERR syntax error");
        return Step::Done;
    };
    let expiry = match o.expire {
        Some((unit, arg)) => string_deadline(unit, arg, s.now_ms()).map(Expiry::At),
        None if o.persist => Ok(Expiry::Never),
        None => {
            // No option: GET, after this connection's earlier writes (or, inside EXEC, at
            // its place in the transaction).
            if s.transaction_read(args) {
                return Step::Done;
            }
            if s.writes_pending() {
                return Step::Flush;
            }
            match s.read(args[1], out) {
                Some(true) => reply::bulk(out, &s.value),
                Some(false) => reply::null(out, s.proto),
                None => {}
            }
            return Step::Done;
        }
    };
    match expiry {
        Ok(expiry) => s.write_one(
            WriteKind::One,
            Op::GetEx {
                key: args[1],
                expiry,
            },
            out,
        ),
        Err(_) if s.transaction_read(args) => Step::Done,
        Err(_) if s.writes_pending() => Step::Flush,
        Err(bad) => match s.read(args[1], out) {
            Some(true) => expiry_error(s, bad, out),
            Some(false) => {
                reply::null(out, s.proto);
                Step::Done
            }
            None => Step::Done,
        },
    }
}

/// EXPIRE key seconds [NX | XX | GT | LT] and its PEXPIRE, EXPIREAT, PEXPIREAT forms.
fn expire_for(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, unit: Unit) -> Step {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for &opt in &args[3..] {
        let flag = match () {
            _ if eq(opt, "nx") => &mut nx,
            _ if eq(opt, "xx") => &mut xx,
            _ if eq(opt, "gt") => &mut gt,
            _ if eq(opt, "lt") => &mut lt,
            _ => {
                let message = format!("ERR Unsupported option {}", String::from_utf8_lossy(opt));
                s.error(out, &message);
                return Step::Done;
            }
        };
        *flag = true;
    }
    if nx && (xx || gt || lt) {
        s.error(
            out,
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        );
        return Step::Done;
    }
    if gt && lt {
        s.error(
            out,
            "ERR GT and LT options at the same time are not compatible",
        );
        return Step::Done;
    }
    let Some(n) = corral_worker::machine::parse_i64(args[2]) else {
        return expiry_error(s, BadExpiry::NotInteger, out);
    };
    // Negative and past times are allowed (they delete the key); only a time past the
    // clock's range is refused.
    let ms = if unit.seconds() {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    let base = if unit.relative() {
        s.now_ms() as i64
    } else {
        0
    };
    let Some(at) = ms.and_then(|ms| ms.checked_add(base)) else {
        return expiry_error(s, BadExpiry::Invalid, out);
    };
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::IfNone,
        // XX with GT is GT: a key without a deadline is never later.
        (_, _, true, _) => ExpireCondition::IfLater,
        (_, true, _, true) => ExpireCondition::IfSomeEarlier,
        (_, true, ..) => ExpireCondition::IfSome,
        (.., true) => ExpireCondition::IfEarlier,
        _ => ExpireCondition::Always,
    };
    s.write_one(
        WriteKind::One,
        Op::Expire {
            key: args[1],
            // 0 means "none" in a deadline word; every time up to 1 has come.
            deadline: at.max(1) as u64,
            condition,
        },
        out,
    )
}

pub(super) fn expire(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    expire_for(s, args, out, Unit::Seconds)
}

pub(super) fn pexpire(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    expire_for(s, args, out, Unit::Millis)
}

pub(super) fn expireat(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    expire_for(s, args, out, Unit::UnixSeconds)
}

pub(super) fn pexpireat(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    expire_for(s, args, out, Unit::UnixMillis)
}

pub(super) fn persist(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.write_one(WriteKind::One, Op::Persist { key: args[1] }, out)
}

/// What TTL, PTTL, EXPIRETIME and PEXPIRETIME answer.
#[derive(Clone, Copy)]
enum Remaining {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

/// -2 for a missing key, -1 for one without a deadline, else the time left (never below
/// 0) or the deadline, seconds rounded to the nearest as Redis does.
fn remaining(s: &mut Session, key: &[u8], out: &mut Vec<u8>, what: Remaining) -> Step {
    match s.read(key, out) {
        Some(false) => reply::int(out, -2),
        Some(true) if s.deadline_ms == 0 => reply::int(out, -1),
        Some(true) => {
            let left = s.deadline_ms.saturating_sub(s.now_ms());
            let n = match what {
                Remaining::Seconds => (left + 500) / 1000,
                Remaining::Millis => left,
                Remaining::UnixSeconds => (s.deadline_ms + 500) / 1000,
                Remaining::UnixMillis => s.deadline_ms,
            };
            reply::int(out, i64::try_from(n).unwrap_or(i64::MAX));
        }
        None => {}
    }
    Step::Done
}

pub(super) fn ttl(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    remaining(s, args[1], out, Remaining::Seconds)
}

pub(super) fn pttl(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    remaining(s, args[1], out, Remaining::Millis)
}

pub(super) fn expiretime(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    remaining(s, args[1], out, Remaining::UnixSeconds)
}

pub(super) fn pexpiretime(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    remaining(s, args[1], out, Remaining::UnixMillis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&'static str], family: Family) -> Result<StringOptions<'static>, ()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        StringOptions::parse(&args, family)
    }

    #[test]
    fn string_options_follow_redis() {
        let o = parse(&["nx", "GET", "ex", "10", "EX", "20"], Family::Set).unwrap();
        assert!(o.nx && o.get && !o.xx);
        assert_eq!(o.expire, Some((Unit::Seconds, &b"20"[..])));
        assert!(
            parse(&["keepttl", "keepttl"], Family::Set)
                .unwrap()
                .keep_ttl
        );
        for bad in [
            &["nx", "xx"][..],
            &["ex", "1", "px", "1"],
            &["keepttl", "ex", "1"],
            &["ex"],
            &["persist"],
            &["nope"],
        ] {
            assert!(parse(bad, Family::Set).is_err(), "{bad:?}");
        }
        assert!(parse(&["persist"], Family::GetEx).unwrap().persist);
        for bad in [&["nx"][..], &["get"], &["keepttl"], &["persist", "ex", "1"]] {
            assert!(parse(bad, Family::GetEx).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn string_deadlines_are_positive_and_in_range() {
        let now = 1_000_000;
        assert_eq!(
            string_deadline(Unit::Seconds, b"5", now).ok(),
            Some(now + 5000)
        );
        assert_eq!(string_deadline(Unit::UnixMillis, b"7", now).ok(), Some(7));
        for (unit, arg) in [
            (Unit::Seconds, &b"0"[..]),
            (Unit::Millis, b"-1"),
            (Unit::Seconds, b"9223372036854775"),
            (Unit::Millis, b"9223372036854775807"),
        ] {
            assert!(matches!(
                string_deadline(unit, arg, now),
                Err(BadExpiry::Invalid)
            ));
        }
        assert!(matches!(
            string_deadline(Unit::Seconds, b"x", now),
            Err(BadExpiry::NotInteger)
        ));
    }
}
