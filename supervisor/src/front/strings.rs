//! The string commands: GET, MGET, EXISTS, STRLEN, GETRANGE, GETBIT read the shards'
//! shared-memory tables; SET, MSET, DEL, INCR and the rest of the family queue writes for
//! the sequencer.

use corral_worker::command::{Expiry, Op, SetCondition};
use slog::warn;

use crate::base::ops::OwnedOp;
use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step, WriteKind};

pub(super) fn get(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match s.read(args[1], out) {
        Some(true) => reply::bulk(out, &s.value),
        Some(false) => reply::null(out, s.proto),
        None => {}
    }
    Step::Done
}

/// An integer argument, or Redis' error for one that is not (written to `out`).
fn integer(arg: &[u8], out: &mut Vec<u8>) -> Option<i64> {
    let n = corral_worker::machine::parse_i64(arg);
    if n.is_none() {
        reply::error(out, "ERR value is not an integer or out of range");
    }
    n
}

pub(super) fn mget_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    out_limit: usize,
) -> Step {
    mget(s, &args[1..], out, out_limit)
}

/// MGET: the values are looked up and written in order; once `out` holds `out_limit`
/// bytes the reply stops, and goes on from there at the next call (the client takes a
/// long reply in parts, and the supervisor holds one part at a time).
pub(super) fn mget(s: &mut Session, keys: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
    let from = match s.resume.take() {
        Some(i) => i,
        None => {
            // Every shard involved answers, or the error replaces the whole reply.
            for key in keys {
                if let Err(e) = s.generation_for(key) {
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
            s.resume = Some(i);
            return Step::Partial;
        }
        match s.lookup(key) {
            Ok(true) => {
                s.count_read(true);
                reply::bulk(out, &s.value);
            }
            Ok(false) => {
                s.count_read(false);
                reply::null(out, s.proto);
            }
            Err(e) => {
                // Part of the reply may be out: it cannot turn into an error now.
                warn!(s.shared.log, "MGET cannot finish its reply; closing the connection";
                      "component" => "server", "conn" => s.client.id, "error" => e);
                return Step::Close;
            }
        }
    }
    Step::Done
}

pub(super) fn exists(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let mut n = 0;
    for key in &args[1..] {
        match s.lookup(key) {
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

/// How a SET call uses its key: it reads it only with GET (arity checked: a key and a
/// value come first).
pub(super) fn set_key_flags(args: &[&[u8]]) -> &'static [&'static str] {
    if args[3..].iter().any(|a| eq(a, "get")) {
        &["RW", "access", "update"]
    } else {
        &["OW", "update"]
    }
}

pub(super) fn getset(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.write_one(
        WriteKind::One,
        Op::Set {
            key: args[1],
            value: args[2],
            condition: SetCondition::Always,
            expiry: Expiry::Never,
            get: true,
        },
        out,
    )
}

pub(super) fn setnx(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.write_one(
        WriteKind::Applied,
        Op::Set {
            key: args[1],
            value: args[2],
            condition: SetCondition::IfAbsent,
            expiry: Expiry::Never,
            get: false,
        },
        out,
    )
}

pub(super) fn getdel(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.write_one(WriteKind::One, Op::GetDel { key: args[1] }, out)
}

pub(super) fn append(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.write_one(
        WriteKind::One,
        Op::Append {
            key: args[1],
            value: args[2],
        },
        out,
    )
}

/// Redis' largest string (proto-max-bulk-len's default): SETRANGE and SETBIT refuse
/// offsets past it before anything else.
const STRING_MAX_BYTES: u64 = 512 << 20;

pub(super) fn setrange(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let offset = match corral_worker::machine::parse_i64(args[2]) {
        Some(o) if o >= 0 => o as u64,
        Some(_) => {
            s.error(out, "ERR offset is out of range");
            return Step::Done;
        }
        None => {
            s.error(out, "ERR value is not an integer or out of range");
            return Step::Done;
        }
    };
    if !args[3].is_empty() && offset + args[3].len() as u64 > STRING_MAX_BYTES {
        s.error(
            out,
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        );
        return Step::Done;
    }
    s.write_one(
        WriteKind::One,
        Op::SetRange {
            key: args[1],
            offset,
            value: args[3],
        },
        out,
    )
}

pub(super) fn setbit(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some(offset) = bit_offset(args[2]) else {
        s.error(out, "ERR bit offset is not an integer or out of range");
        return Step::Done;
    };
    let bit = match args[3] {
        b"0" => false,
        b"1" => true,
        _ => {
            s.error(out, "ERR bit is not an integer or out of range");
            return Step::Done;
        }
    };
    s.write_one(
        WriteKind::One,
        Op::SetBit {
            key: args[1],
            offset,
            bit,
        },
        out,
    )
}

/// A bit offset as Redis takes one: an integer from 0 to 2^32 - 1 (512 MiB of bits).
fn bit_offset(arg: &[u8]) -> Option<u64> {
    corral_worker::machine::parse_i64(arg)
        .and_then(|o| u64::try_from(o).ok())
        .filter(|&o| o < STRING_MAX_BYTES * 8)
}

pub(super) fn incrbyfloat(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match corral_worker::machine::parse_f64(args[2]) {
        Some(delta) if delta.is_finite() => s.write_one(
            WriteKind::One,
            Op::IncrByFloat {
                key: args[1],
                delta,
            },
            out,
        ),
        Some(_) => {
            s.error(out, "ERR increment would produce NaN or Infinity");
            Step::Done
        }
        None => {
            s.error(out, "ERR value is not a valid float");
            Step::Done
        }
    }
}

pub(super) fn strlen(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if s.read(args[1], out).is_some() {
        // A missing key reads as empty.
        reply::int(out, s.value.len() as i64);
    }
    Step::Done
}

pub(super) fn getrange(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some(start) = integer(args[2], out) else {
        return Step::Done;
    };
    let Some(end) = integer(args[3], out) else {
        return Step::Done;
    };
    if s.read(args[1], out).is_some() {
        let range = byte_range(s.value.len(), start, end);
        reply::bulk(out, range.map_or(&[][..], |(a, b)| &s.value[a..=b]));
    }
    Step::Done
}

/// The bytes `start..=end` of a string of `len` bytes as GETRANGE reads them (negative
/// indexes count from the end, both ends clamped), or `None` for an empty range.
fn byte_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    clamped_range(len, start, end)
}

/// `start..=end` of `len` units with negative indexes counted from the end and both ends
/// clamped into the string (BITPOS's conversion), or `None` when empty.
fn clamped_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if len == 0 {
        return None;
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    (start <= end).then_some((start as usize, end as usize))
}

pub(super) fn getbit(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some(offset) = bit_offset(args[2]) else {
        reply::error(out, "ERR bit offset is not an integer or out of range");
        return Step::Done;
    };
    if s.read(args[1], out).is_some() {
        let byte = s.value.get((offset >> 3) as usize).copied().unwrap_or(0);
        reply::int(out, i64::from(byte & (0x80 >> (offset & 7)) != 0));
    }
    Step::Done
}

/// The key/value pairs of MSET or MSETNX, checked for arity and sizes (`None` once the
/// error is replied).
fn checked_pairs<'a>(
    s: &mut Session,
    args: &'a [&'a [u8]],
    out: &mut Vec<u8>,
) -> Option<std::slice::ChunksExact<'a, &'a [u8]>> {
    if args.len() % 2 == 0 {
        s.arity_error(out);
        return None;
    }
    let pairs = args[1..].chunks_exact(2);
    if let Some(e) = pairs
        .clone()
        .find_map(|pair| s.size_error(pair[0], Some(pair[1])))
    {
        s.error(out, &e);
        return None;
    }
    Some(pairs)
}

/// The plain SET of one pair.
fn set_pair(pair: &[&[u8]]) -> OwnedOp {
    OwnedOp::from(Op::Set {
        key: pair[0],
        value: pair[1],
        condition: SetCondition::Always,
        expiry: Expiry::Never,
        get: false,
    })
}

pub(super) fn mset(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if let Some(pairs) = checked_pairs(s, args, out) {
        s.queue(WriteKind::AllOk, pairs.map(set_pair));
    }
    Step::Done
}

/// MSETNX key value [key value ...]: every key read, then, if none exists, one
/// transaction of the SETs (on any shards) applied only if none was written since.
pub(super) fn msetnx(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some(pairs) = checked_pairs(s, args, out) else {
        return Step::Done;
    };
    let keys: Vec<&[u8]> = pairs.clone().map(|pair| pair[0]).collect();
    if !s.read_first(args, &keys) {
        return Step::Done;
    }
    for key in keys {
        match s.lookup(key) {
            Ok(false) => {}
            Ok(true) => {
                let mut zero = Vec::new();
                reply::int(&mut zero, 0);
                s.reply_in_order(&zero, out);
                return Step::Done;
            }
            Err(e) => {
                s.error(out, &e);
                return Step::Done;
            }
        }
    }
    s.queue_conditional(WriteKind::Applied, pairs.map(set_pair));
    Step::Done
}

pub(super) fn del(s: &mut Session, args: &[&[u8]], _: &mut Vec<u8>, _: usize) -> Step {
    let ops = args[1..].iter().map(|&key| OwnedOp::from(Op::Del { key }));
    s.queue(WriteKind::Sum, ops);
    Step::Done
}

pub(super) fn incr(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    incr_by(s, args[1], 1, out)
}

pub(super) fn decr(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    incr_by(s, args[1], -1, out)
}

pub(super) fn incrby(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match corral_worker::machine::parse_i64(args[2]) {
        Some(d) => incr_by(s, args[1], d, out),
        None => {
            s.error(out, "ERR value is not an integer or out of range");
            Step::Done
        }
    }
}

pub(super) fn decrby(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match corral_worker::machine::parse_i64(args[2]) {
        Some(d) if d != i64::MIN => incr_by(s, args[1], -d, out),
        Some(_) => {
            s.error(out, "ERR decrement would overflow");
            Step::Done
        }
        None => {
            s.error(out, "ERR value is not an integer or out of range");
            Step::Done
        }
    }
}

pub(super) fn incr_by(s: &mut Session, key: &[u8], delta: i64, out: &mut Vec<u8>) -> Step {
    s.write_one(WriteKind::One, Op::IncrBy { key, delta }, out)
}

pub(super) fn bitcount(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let range = match args.len() {
        2 => None,
        4 | 5 => {
            let Some(start) = integer(args[2], out) else {
                return Step::Done;
            };
            let Some(end) = integer(args[3], out) else {
                return Step::Done;
            };
            let Some(bits) = unit_is_bits(args.get(4), out) else {
                return Step::Done;
            };
            Some((start, end, bits))
        }
        _ => {
            reply::error(out, "ERR syntax error");
            return Step::Done;
        }
    };
    if s.read(args[1], out).is_some() {
        reply::int(out, count_bits(&s.value, range) as i64);
    }
    Step::Done
}

/// Whether a range's unit (BITCOUNT's and BITPOS's last argument) is BIT rather than BYTE,
/// the default; `None` after a syntax error (written to `out`).
fn unit_is_bits(unit: Option<&&[u8]>, out: &mut Vec<u8>) -> Option<bool> {
    match unit {
        None => Some(false),
        Some(u) if u.eq_ignore_ascii_case(b"bit") => Some(true),
        Some(u) if u.eq_ignore_ascii_case(b"byte") => Some(false),
        Some(_) => {
            reply::error(out, "ERR syntax error");
            None
        }
    }
}

/// The set bits of `value`, or of its range `(start, end, in bits)` as BITCOUNT reads one
/// (indexes as GETRANGE's, in bytes or in bits).
fn count_bits(value: &[u8], range: Option<(i64, i64, bool)>) -> u64 {
    let ones = |bytes: &[u8]| bytes.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
    let Some((start, end, bits)) = range else {
        return ones(value);
    };
    let unit = if bits { 8 } else { 1 };
    let Some((start, end)) = byte_range(value.len() * unit, start, end) else {
        return 0;
    };
    if !bits {
        return ones(&value[start..=end]);
    }
    // Whole bytes, less the bits before `start` in the first and after `end` in the last.
    let (first, last) = (start / 8, end / 8);
    let before = match start % 8 {
        0 => 0,
        n => u64::from((value[first] >> (8 - n)).count_ones()),
    };
    let after = u64::from((value[last] & ((1u8 << (7 - end % 8)) - 1)).count_ones());
    ones(&value[first..=last]) - before - after
}

pub(super) fn type_command(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match s.lookup(args[1]) {
        Ok(found) => reply::simple(out, if found { "string" } else { "none" }),
        Err(e) => reply::error(out, &e),
    }
    Step::Done
}

pub(super) fn bitpos(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some(bit) = integer(args[2], out) else {
        return Step::Done;
    };
    let bit = match bit {
        0 => false,
        1 => true,
        _ => {
            reply::error(out, "ERR The bit argument must be 1 or 0.");
            return Step::Done;
        }
    };
    if args.len() > 6 {
        reply::error(out, "ERR syntax error");
        return Step::Done;
    }
    // In Redis' order: the start, the unit, then the end.
    let mut range = (0, -1);
    if let Some(arg) = args.get(3) {
        let Some(v) = integer(arg, out) else {
            return Step::Done;
        };
        range.0 = v;
    }
    let Some(in_bits) = unit_is_bits(args.get(5), out) else {
        return Step::Done;
    };
    if let Some(arg) = args.get(4) {
        let Some(v) = integer(arg, out) else {
            return Step::Done;
        };
        range.1 = v;
    }
    let end_given = args.len() >= 5;
    match s.read(args[1], out) {
        // A missing key is all clear bits.
        Some(false) => reply::int(out, if bit { -1 } else { 0 }),
        Some(true) => {
            let unit = if in_bits { 1 } else { 8 };
            let found = clamped_range(s.value.len() * 8 / unit, range.0, range.1).map(|(a, b)| {
                let (from, to) = (a * unit, b * unit + unit - 1);
                // Looking for a clear bit with no end given: the string goes on in zeros.
                first_bit(&s.value, bit, from, to).or((!bit && !end_given).then_some(to + 1))
            });
            reply::int(out, found.flatten().map_or(-1, |p| p as i64));
        }
        None => {}
    }
    Step::Done
}

/// The first bit equal to `bit` among bits `from..=to` of `value` (bit 0 is the highest of
/// byte 0), skipping whole bytes that cannot hold one.
fn first_bit(value: &[u8], bit: bool, from: usize, to: usize) -> Option<usize> {
    let skip = if bit { 0x00 } else { 0xFF };
    let mut i = from;
    while i <= to {
        let byte = value[i / 8];
        if i % 8 == 0 && i + 7 <= to && byte == skip {
            i += 8;
            continue;
        }
        if (byte & (0x80 >> (i % 8)) != 0) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The most memory LCS's table may take (a command runs on an event loop: this bounds
/// both its memory and how long it holds the loop; two 4 KiB strings fit).
const LCS_TABLE_MAX_BYTES: u64 = 64 << 20;

pub(super) fn lcs(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0u64);
    let mut i = 3;
    while i < args.len() {
        let opt = args[i];
        if opt.eq_ignore_ascii_case(b"idx") {
            idx = true;
        } else if opt.eq_ignore_ascii_case(b"len") {
            len_only = true;
        } else if opt.eq_ignore_ascii_case(b"withmatchlen") {
            with_len = true;
        } else if opt.eq_ignore_ascii_case(b"minmatchlen") && i + 1 < args.len() {
            let Some(n) = integer(args[i + 1], out) else {
                return Step::Done;
            };
            min_len = n.max(0) as u64;
            i += 1;
        } else {
            reply::error(out, "ERR syntax error");
            return Step::Done;
        }
        i += 1;
    }
    if len_only && idx {
        reply::error(
            out,
            "ERR If you want both the length and indexes, please just use IDX.",
        );
        return Step::Done;
    }
    let mut values = [Vec::new(), Vec::new()];
    for (value, key) in values.iter_mut().zip(&args[1..3]) {
        if s.read(key, out).is_none() {
            return Step::Done;
        }
        std::mem::swap(value, &mut s.value);
    }
    let [a, b] = &values;
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells * 4 > LCS_TABLE_MAX_BYTES {
        reply::error(
            out,
            "ERR Insufficient memory, transient memory for LCS exceeds 64 MiB (Corral's bound for one command)",
        );
        return Step::Done;
    }
    let table = lcs_table(a, b);
    let width = b.len() + 1;
    let at = |i: usize, j: usize| table[i * width + j];
    let total = at(a.len(), b.len());
    if len_only {
        reply::int(out, i64::from(total));
        return Step::Done;
    }
    // Walk back from the ends: the common string, and its runs as index ranges (last first).
    let mut common = vec![0u8; total as usize];
    let mut runs: Vec<[usize; 4]> = Vec::new();
    let mut run: Option<[usize; 4]> = None;
    let (mut i, mut j, mut k) = (a.len(), b.len(), total as usize);
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            common[k - 1] = a[i - 1];
            run = Some(match run {
                Some([_, a_end, _, b_end]) => [i - 1, a_end, j - 1, b_end],
                None => [i - 1, i - 1, j - 1, j - 1],
            });
            (i, j, k) = (i - 1, j - 1, k - 1);
            if i == 0 || j == 0 {
                runs.extend(run.take());
            }
        } else {
            if at(i - 1, j) > at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            runs.extend(run.take());
        }
    }
    if !idx {
        reply::bulk(out, &common);
        return Step::Done;
    }
    runs.retain(|r| min_len == 0 || (r[1] - r[0] + 1) as u64 >= min_len);
    reply::map(out, s.proto, 2);
    reply::bulk(out, b"matches");
    reply::array(out, runs.len());
    for [a0, a1, b0, b1] in runs {
        reply::array(out, if with_len { 3 } else { 2 });
        for (from, to) in [(a0, a1), (b0, b1)] {
            reply::array(out, 2);
            reply::int(out, from as i64);
            reply::int(out, to as i64);
        }
        if with_len {
            reply::int(out, (a1 - a0 + 1) as i64);
        }
    }
    reply::bulk(out, b"len");
    reply::int(out, i64::from(total));
    Step::Done
}

/// The lengths of the longest common subsequences of every pair of prefixes of `a` and
/// `b`: entry `i * (b.len() + 1) + j` for `a[..i]` and `b[..j]`.
fn lcs_table(a: &[u8], b: &[u8]) -> Vec<u32> {
    let width = b.len() + 1;
    let mut table = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    table
}
