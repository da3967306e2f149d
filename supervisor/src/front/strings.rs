//! The string commands: GET, MGET, EXISTS read the shards' shared-memory tables; SET,
//! MSET, DEL, INCR and its family queue writes for the sequencer.

use corral_worker::command::SetCondition;
use slog::warn;

use crate::base::ops::OwnedOp;
use crate::front::resp::reply;
use crate::front::session::{Session, Step, WriteKind};

pub(super) fn get(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match s.lookup(args[1]) {
        Ok(found) => {
            s.count_read(found);
            if found {
                reply::bulk(out, &s.value);
            } else {
                reply::null(out, s.proto);
            }
        }
        Err(e) => reply::error(out, &e),
    }
    Step::Done
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

pub(super) fn set(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let mut condition = SetCondition::Always;
    for opt in &args[3..] {
        let o = String::from_utf8_lossy(opt).to_ascii_uppercase();
        let next = match o.as_str() {
            "NX" if condition != SetCondition::IfPresent => SetCondition::IfAbsent,
            "XX" if condition != SetCondition::IfAbsent => SetCondition::IfPresent,
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" | "GET" => {
                s.error(
                    out,
                    &format!("ERR SET option '{o}' is not supported: Corral keys do not expire"),
                );
                return Step::Done;
            }
            _ => {
                s.error(out, "ERR syntax error");
                return Step::Done;
            }
        };
        condition = next;
    }
    if let Some(e) = size_error(s, args[1], Some(args[2])) {
        s.error(out, &e);
        return Step::Done;
    }
    s.queue(
        WriteKind::Set,
        std::iter::once(OwnedOp::Set {
            key: args[1].to_vec(),
            value: args[2].to_vec(),
            condition,
        }),
    );
    Step::Done
}

pub(super) fn mset(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if args.len() % 2 == 0 {
        return s.arity_error(out);
    }
    let pairs = args[1..].chunks_exact(2);
    if let Some(e) = pairs
        .clone()
        .find_map(|pair| size_error(s, pair[0], Some(pair[1])))
    {
        s.error(out, &e);
        return Step::Done;
    }
    let ops = pairs.map(|pair| OwnedOp::Set {
        key: pair[0].to_vec(),
        value: pair[1].to_vec(),
        condition: SetCondition::Always,
    });
    s.queue(WriteKind::AllOk, ops);
    Step::Done
}

pub(super) fn del(s: &mut Session, args: &[&[u8]], _: &mut Vec<u8>, _: usize) -> Step {
    let ops = args[1..].iter().map(|k| OwnedOp::Del { key: k.to_vec() });
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
    if let Some(e) = size_error(s, key, None) {
        s.error(out, &e);
        return Step::Done;
    }
    s.queue(
        WriteKind::Int,
        std::iter::once(OwnedOp::IncrBy {
            key: key.to_vec(),
            delta,
        }),
    );
    Step::Done
}

pub(super) fn size_error(s: &Session, key: &[u8], value: Option<&[u8]>) -> Option<String> {
    let c = &s.shared.config;
    if key.len() > c.max_key_bytes {
        return Some(format!(
            "ERR key exceeds the maximum of {} bytes (max-key-bytes)",
            c.max_key_bytes
        ));
    }
    if value.is_some_and(|v| v.len() > c.max_value_bytes) {
        return Some(format!(
            "ERR value exceeds the maximum of {} bytes (max-value-bytes)",
            c.max_value_bytes
        ));
    }
    None
}
