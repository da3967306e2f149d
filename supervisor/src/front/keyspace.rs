//! Commands about keys of any type: MEMORY USAGE, OBJECT.

use shm_protocol::table::SLOT_WORDS;

use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step};

/// MEMORY USAGE key [SAMPLES n]: the bytes the key takes in its shard's table (its slot,
/// and its key and value rounded up to words in the heap), or null if it is missing.
pub(super) fn memory(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let sub = args[1];
    if !eq(sub, "usage") {
        reply::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try MEMORY HELP.",
                String::from_utf8_lossy(sub)
            ),
        );
        return Step::Done;
    }
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

/// OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME key: a string's encoding as Redis would choose
/// it (`int`, `embstr` up to 44 bytes, `raw`); Corral keeps no access times or frequencies.
pub(super) fn object(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
    if !matches!(sub.as_str(), "encoding" | "refcount" | "freq" | "idletime") {
        reply::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(args[1])
            ),
        );
        return Step::Done;
    }
    if args.len() != 3 {
        reply::error(
            out,
            &format!("ERR wrong number of arguments for 'object|{sub}' command"),
        );
        return Step::Done;
    }
    let found = match s.lookup(args[2]) {
        Ok(found) => found,
        Err(e) => {
            reply::error(out, &e);
            return Step::Done;
        }
    };
    if !found {
        reply::null(out, s.proto);
        return Step::Done;
    }
    match sub.as_str() {
        "encoding" => {
            let value = &s.value;
            let encoding = if value.len() <= 20 && corral_worker::machine::parse_i64(value).is_some()
            {
                "int"
            } else if value.len() <= 44 {
                "embstr"
            } else {
                "raw"
            };
            reply::bulk(out, encoding.as_bytes());
        }
        "refcount" => reply::int(out, 1),
        "freq" => reply::error(
            out,
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ => reply::error(
            out,
            "ERR OBJECT IDLETIME is not available: Corral keeps no access times (it evicts nothing)",
        ),
    }
    Step::Done
}
