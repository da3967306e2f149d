//! Commands about keys of any type: MEMORY USAGE, OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME.

use shm_protocol::table::SLOT_WORDS;

use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step};

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
            let bytes = SLOT_WORDS * 8 + key.len().div_ceil(8) * 8 + s.value.len().div_ceil(8) * 8;
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
