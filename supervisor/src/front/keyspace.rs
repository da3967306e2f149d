//! Commands about keys of any type: KEYS, SCAN, RANDOMKEY, FLUSHDB, FLUSHALL, MEMORY
//! USAGE, OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME.
//!
//! KEYS, SCAN and RANDOMKEY walk the shards' tables in shared memory by home slot
//! (`TableView::scan`), never seeing expired keys: a key present for a whole SCAN is
//! returned at least once, however the table changes between calls.

use corral_worker::command::{Expiry, Op, SetCondition};
use shm_protocol::table::{expired, Scanned, ENTRY_FIXED_WORDS, SLOT_WORDS};

use crate::base::ops::OwnedOp;
use crate::front::pattern::Pattern;
use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step, WriteKind};

/// Appends shard `id`'s live keys whose home slot is in `start..start + homes` to `out`;
/// answers where the walk goes on (the slot count when the shard is done), or the error a
/// read of the shard answers.
fn walk(
    s: &Session,
    id: u32,
    start: usize,
    homes: usize,
    out: &mut Vec<Scanned>,
) -> Result<usize, String> {
    let generation = s.generation_of(id)?;
    let now = s.now_ms();
    generation
        .segment
        .table()
        .scan(start, homes, |d| !expired(d, now), out)
        .map_err(|_| format!("TRYAGAIN shard {id} is busy (its table stayed mid-update); retry"))
}

/// Slots one step of a walk reads.
const WALK_STEP_SLOTS: usize = 4096;

/// KEYS pattern: every live key that matches, from every shard.
pub(super) fn keys(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let pattern = Pattern::new(args[1]);
    let slots = s.shared.config.table_slots as usize;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut step = Vec::new();
    for id in 0..s.shared.shards.len() as u32 {
        let mut at = if shard_keys(s, id) == 0 { slots } else { 0 };
        while at < slots {
            step.clear();
            match walk(s, id, at, WALK_STEP_SLOTS, &mut step) {
                Ok(next) => at = next,
                Err(e) => {
                    reply::error(out, &e);
                    return Step::Done;
                }
            }
            found.extend(
                step.drain(..)
                    .filter(|k| pattern.matches(&k.key))
                    .map(|k| k.key),
            );
        }
    }
    reply::array(out, found.len());
    for key in &found {
        reply::bulk(out, key);
    }
    Step::Done
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. The cursor is a position in the
/// walk of every shard's table, shard by shard: `shard * slots + home slot`. A call reads
/// until it has seen COUNT keys (before MATCH and TYPE filter them, as Redis counts) or
/// read a bounded number of slots, so an empty stretch of a large table costs a few calls.
pub(super) fn scan(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let cursor = std::str::from_utf8(args[1])
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok());
    let Some(cursor) = cursor else {
        reply::error(out, "ERR invalid cursor");
        return Step::Done;
    };
    let (mut count, mut pattern, mut strings_only) = (10usize, None, true);
    let mut i = 2;
    while i < args.len() {
        let Some(&value) = args.get(i + 1) else {
            reply::error(out, "ERR syntax error");
            return Step::Done;
        };
        if eq(args[i], "count") {
            match corral_worker::machine::parse_i64(value) {
                None => {
                    reply::error(out, "ERR value is not an integer or out of range");
                    return Step::Done;
                }
                Some(n) if n < 1 => {
                    reply::error(out, "ERR syntax error");
                    return Step::Done;
                }
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            }
        } else if eq(args[i], "match") {
            pattern = Some(Pattern::new(value));
        } else if eq(args[i], "type") {
            // Every value is a string: another type matches nothing.
            strings_only = eq(value, "string");
        } else {
            reply::error(out, "ERR syntax error");
            return Step::Done;
        }
        i += 2;
    }
    let slots = s.shared.config.table_slots;
    let shards = s.shared.shards.len() as u64;
    let (mut shard, mut at) = (cursor / slots, (cursor % slots) as usize);
    let budget = count.saturating_mul(64).max(65_536);
    let (mut seen, mut read) = (0usize, 0usize);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut step = Vec::new();
    // Small steps first, so that a dense table answers about COUNT keys; longer ones
    // across empty stretches.
    let mut step_slots = count.saturating_mul(2).clamp(16, WALK_STEP_SLOTS);
    while shard < shards && seen < count && read < budget {
        if shard_keys(s, shard as u32) == 0 {
            // Nothing to walk (the worker's published count).
            shard += 1;
            at = 0;
            continue;
        }
        step.clear();
        match walk(s, shard as u32, at, step_slots, &mut step) {
            Ok(next) => {
                read += next - at;
                at = next;
            }
            Err(e) => {
                reply::error(out, &e);
                return Step::Done;
            }
        }
        seen += step.len();
        if step.is_empty() {
            step_slots = (step_slots * 2).min(budget);
        }
        keys.extend(
            step.drain(..)
                .filter(|k| strings_only && pattern.as_ref().is_none_or(|p| p.matches(&k.key)))
                .map(|k| k.key),
        );
        if at as u64 >= slots {
            shard += 1;
            at = 0;
        }
    }
    let next = if shard >= shards {
        0
    } else {
        shard * slots + at as u64
    };
    reply::array(out, 2);
    reply::bulk(out, next.to_string().as_bytes());
    reply::array(out, keys.len());
    for key in &keys {
        reply::bulk(out, key);
    }
    Step::Done
}

/// The key count shard `id` published (0 when it does not serve).
fn shard_keys(s: &Session, id: u32) -> u64 {
    s.generation_of(id).map_or(0, |g| {
        g.segment
            .head()
            .status
            .keys
            .load(std::sync::atomic::Ordering::Acquire)
    })
}

/// RANDOMKEY: a live key of a shard chosen by its key count, from a random slot on (nil
/// when there is none).
pub(super) fn randomkey(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let shards = s.shared.shards.len() as u32;
    let counts: Vec<u64> = (0..shards).map(|id| shard_keys(s, id)).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        reply::null(out, s.proto);
        return Step::Done;
    }
    let slots = s.shared.config.table_slots as usize;
    let mut pick = s.random() % total;
    let first = counts
        .iter()
        .position(|&n| {
            let here = pick < n;
            pick = pick.saturating_sub(n);
            here
        })
        .unwrap_or(0) as u32;
    let start = (s.random() % slots as u64) as usize;
    let mut step = Vec::new();
    // From the chosen shard and slot on, every slot of every shard once at most.
    for id in (0..shards).map(|i| (first + i) % shards) {
        if counts[id as usize] == 0 {
            continue;
        }
        let begin = if id == first { start } else { 0 };
        let ranges = [(begin, slots), (0, begin)];
        for (mut at, end) in ranges {
            while at < end {
                step.clear();
                match walk(s, id, at, WALK_STEP_SLOTS.min(end - at), &mut step) {
                    Ok(next) => at = next,
                    Err(e) => {
                        reply::error(out, &e);
                        return Step::Done;
                    }
                }
                if let Some(k) = step.first() {
                    reply::bulk(out, &k.key);
                    return Step::Done;
                }
            }
        }
    }
    reply::null(out, s.proto);
    Step::Done
}

/// FLUSHDB [ASYNC | SYNC], FLUSHALL [ASYNC | SYNC] (one database: the same): a logged
/// removal of every key, one op per shard.
pub(super) fn flush(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match args.get(1) {
        None => {}
        Some(mode) if args.len() == 2 && (eq(mode, "async") || eq(mode, "sync")) => {}
        Some(_) => {
            s.error(out, "ERR syntax error");
            return Step::Done;
        }
    }
    s.queue_every_shard(WriteKind::AllOk, &OwnedOp::from(Op::Flush));
    Step::Done
}

/// MEMORY USAGE key [SAMPLES n]: the bytes the key takes in its shard's table (its slot,
/// and its key and value rounded up to words in the heap), or null if it is missing.
pub(super) fn memory_usage(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let samples_ok = match args.len() {
        3 => true,
        5 => eq(args[3], "samples") && corral_worker::machine::parse_i64(args[4]).is_some(),
        _ => false,
    };
    if !samples_ok {
        reply::error(out, "ERR syntax error");
        return Step::Done;
    }
    let key = args[2];
    match s.lookup(key) {
        Ok(true) => {
            let bytes = (SLOT_WORDS + ENTRY_FIXED_WORDS) * 8
                + key.len().div_ceil(8) * 8
                + s.value.len().div_ceil(8) * 8;
            reply::int(out, bytes as i64);
        }
        Ok(false) => reply::null(out, s.proto),
        Err(e) => reply::error(out, &e),
    }
    Step::Done
}

/// Looks up OBJECT's key (`args[2]`): `true` when found; otherwise the reply (null, or the
/// shard's error) is written.
fn object_key(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) -> bool {
    match s.lookup(args[2]) {
        Ok(true) => true,
        Ok(false) => {
            reply::null(out, s.proto);
            false
        }
        Err(e) => {
            reply::error(out, &e);
            false
        }
    }
}

/// OBJECT ENCODING key: a string's encoding as Redis would choose it (`int`, `embstr` up
/// to 44 bytes, `raw`).
pub(super) fn object_encoding(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    if object_key(s, args, out) {
        let value = &s.value;
        let encoding = if value.len() <= 20 && corral_worker::machine::parse_i64(value).is_some() {
            "int"
        } else if value.len() <= 44 {
            "embstr"
        } else {
            "raw"
        };
        reply::bulk(out, encoding.as_bytes());
    }
    Step::Done
}

pub(super) fn object_refcount(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    if object_key(s, args, out) {
        reply::int(out, 1);
    }
    Step::Done
}

/// OBJECT FREQ key: Redis' error without an LFU policy (Corral keeps no frequencies).
pub(super) fn object_freq(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if object_key(s, args, out) {
        reply::error(
            out,
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
    }
    Step::Done
}

/// OBJECT IDLETIME key: Corral keeps no access times.
pub(super) fn object_idletime(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    if object_key(s, args, out) {
        reply::error(
            out,
            "ERR OBJECT IDLETIME is not available: Corral keeps no access times (it evicts nothing)",
        );
    }
    Step::Done
}

/// The expiry a copied or renamed key takes: its source's deadline, or none.
fn deadline_of(deadline_ms: u64) -> Expiry {
    if deadline_ms == 0 {
        Expiry::Never
    } else {
        Expiry::At(deadline_ms)
    }
}

/// Replies with an integer, in order.
fn int_in_order(s: &mut Session, n: i64, out: &mut Vec<u8>) {
    let mut encoded = Vec::new();
    reply::int(&mut encoded, n);
    s.reply_in_order(&encoded, out);
}

/// Looks `key` up among a reading-first command's reads; `None` once the error is replied.
fn found(s: &mut Session, key: &[u8], out: &mut Vec<u8>) -> Option<bool> {
    match s.lookup(key) {
        Ok(found) => Some(found),
        Err(e) => {
            s.error(out, &e);
            None
        }
    }
}

/// Whether the destination of RENAMENX or COPY is free; if it is taken, `:0` is replied.
fn destination_free(s: &mut Session, to: &[u8], out: &mut Vec<u8>) -> bool {
    match found(s, to, out) {
        Some(false) => true,
        Some(true) => {
            int_in_order(s, 0, out);
            false
        }
        None => false,
    }
}

/// The SET that gives `to` the value and deadline the last lookup found.
fn set_found(s: &Session, to: &[u8]) -> OwnedOp {
    OwnedOp::from(Op::Set {
        key: to,
        value: &s.value,
        condition: SetCondition::Always,
        get: false,
        expiry: deadline_of(s.deadline_ms),
    })
}

/// RENAME key newkey, RENAMENX key newkey: one transaction (a SET of the new key with the
/// value and deadline the old one had, and a DEL of the old one), on any shards, applied
/// only if neither key changed since it was read.
pub(super) fn rename(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let nx = eq(args[0], "renamenx");
    let (from, to) = (args[1], args[2]);
    if let Some(e) = s.size_error(to, None) {
        s.error(out, &e);
        return Step::Done;
    }
    let keys: &[&[u8]] = if nx { &[from, to] } else { &[from] };
    if !s.read_first(args, keys) {
        return Step::Done;
    }
    match found(s, from, out) {
        None => return Step::Done,
        Some(false) => {
            s.error(out, "ERR no such key");
            return Step::Done;
        }
        Some(true) => {}
    }
    if from == to {
        if nx {
            int_in_order(s, 0, out);
        } else {
            let mut ok = Vec::new();
            reply::simple(&mut ok, "OK");
            s.reply_in_order(&ok, out);
        }
        return Step::Done;
    }
    let set = set_found(s, to);
    if nx && !destination_free(s, to, out) {
        return Step::Done;
    }
    let del = OwnedOp::from(Op::Del { key: from });
    let kind = if nx {
        WriteKind::Applied
    } else {
        WriteKind::AllOk
    };
    s.queue_conditional(kind, [set, del].into_iter());
    Step::Done
}

/// COPY source destination [DB 0] [REPLACE]: one SET of the destination with the source's
/// value and deadline, applied only if neither changed since they were read (one database:
/// DB 0 only, as SELECT).
pub(super) fn copy(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let (from, to) = (args[1], args[2]);
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if eq(args[i], "replace") {
            replace = true;
        } else if eq(args[i], "db") && i + 1 < args.len() {
            i += 1;
            match corral_worker::machine::parse_i64(args[i]) {
                Some(0) => {}
                Some(n) if i32::try_from(n).is_ok() => {
                    s.error(out, "ERR DB index is out of range");
                    return Step::Done;
                }
                _ => {
                    s.error(out, "ERR value is not an integer or out of range");
                    return Step::Done;
                }
            }
        } else {
            s.error(out, "ERR syntax error");
            return Step::Done;
        }
        i += 1;
    }
    if from == to {
        s.error(out, "ERR source and destination objects are the same");
        return Step::Done;
    }
    if let Some(e) = s.size_error(to, None) {
        s.error(out, &e);
        return Step::Done;
    }
    if !s.read_first(args, &[from, to]) {
        return Step::Done;
    }
    match found(s, from, out) {
        None => return Step::Done,
        Some(false) => {
            int_in_order(s, 0, out);
            return Step::Done;
        }
        Some(true) => {}
    }
    let set = set_found(s, to);
    if !replace && !destination_free(s, to, out) {
        return Step::Done;
    }
    s.queue_conditional(WriteKind::Applied, std::iter::once(set));
    Step::Done
}
