//! Server administration: TIME, LASTSAVE, SAVE, BGSAVE, WAIT, SLOWLOG, LATENCY, DEBUG.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step};
use crate::pipeline::msg::SeqMsg;

pub(super) fn time(_: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    reply::array(out, 2);
    reply::bulk(out, now.as_secs().to_string().as_bytes());
    reply::bulk(out, now.subsec_micros().to_string().as_bytes());
    Step::Done
}

/// LASTSAVE: when the newest checkpoint of any shard was written (Unix seconds), or the
/// server's start if none was.
pub(super) fn lastsave(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let newest_ms = s
        .shared
        .shards
        .iter()
        .filter_map(|shard| shard.current())
        .map(|g| g.segment.head().checkpoint.unix_ms.load(Ordering::Acquire))
        .max()
        .unwrap_or(0);
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(s.shared.started.elapsed());
    reply::int(out, (newest_ms / 1000).max(started.as_secs()) as i64);
    Step::Done
}

/// BGSAVE [SCHEDULE]: every shard with new writes writes a checkpoint now (the event log
/// already holds every acknowledged write; a checkpoint shortens the next replay).
pub(super) fn bgsave(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if args.len() == 2 && !eq(args[1], "schedule") {
        reply::error(out, "ERR syntax error");
        return Step::Done;
    }
    if s.shared.sequencer.send(SeqMsg::CheckpointAll).is_ok() {
        reply::simple(out, "Background saving started");
    } else {
        reply::error(out, "ERR server is shutting down");
    }
    Step::Done
}

/// SAVE: like BGSAVE, but replies once every shard with new writes has written its
/// checkpoint (its event loop serves other connections meanwhile).
pub(super) fn save(s: &mut Session, _: &[&[u8]], _: &mut Vec<u8>, _: usize) -> Step {
    s.queue_save();
    Step::Done
}

/// WAIT numreplicas timeout: Corral has no replicas, so none acknowledged.
pub(super) fn wait(_: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let parse = corral_worker::machine::parse_i64;
    match (parse(args[1]), parse(args[2])) {
        (Some(_), Some(t)) if t >= 0 => reply::int(out, 0),
        (Some(_), Some(_)) => reply::error(out, "ERR timeout is negative"),
        _ => reply::error(out, "ERR value is not an integer or out of range"),
    }
    Step::Done
}

/// SLOWLOG LEN.
pub(super) fn slowlog_len(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let log = s
        .shared
        .slowlog
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    reply::int(out, log.entries.len() as i64);
    Step::Done
}

/// SLOWLOG RESET.
pub(super) fn slowlog_reset(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.shared
        .slowlog
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entries
        .clear();
    reply::simple(out, "OK");
    Step::Done
}

/// SLOWLOG GET [count]: the newest entries (10 by default, -1 for all).
pub(super) fn slowlog_get(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if args.len() > 3 {
        reply::error(
            out,
            "ERR wrong number of arguments for 'slowlog|get' command",
        );
        return Step::Done;
    }
    let log = s
        .shared
        .slowlog
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let count = match args.get(2).map(|a| corral_worker::machine::parse_i64(a)) {
        None => 10,
        Some(Some(-1)) => log.entries.len(),
        Some(Some(n)) if n >= 0 => n as usize,
        Some(_) => {
            reply::error(out, "ERR count should be greater than or equal to -1");
            return Step::Done;
        }
    };
    let shown: Vec<_> = log.entries.iter().take(count).collect();
    reply::array(out, shown.len());
    for e in shown {
        reply::array(out, 6);
        reply::int(out, e.id as i64);
        reply::int(out, e.unix_s as i64);
        reply::int(out, e.micros as i64);
        reply::array(out, e.args.len());
        for a in &e.args {
            reply::bulk(out, a);
        }
        reply::bulk(out, e.client.as_bytes());
        reply::bulk(out, &e.name);
    }
    Step::Done
}

/// LATENCY LATEST and LATENCY HISTORY event: Corral's latency monitor is off (as Redis' is
/// by default, `latency-monitor-threshold 0`), so no events are kept; the per-command
/// latencies are in INFO latencystats and /metrics.
pub(super) fn latency_events(_: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::array(out, 0);
    Step::Done
}

/// LATENCY RESET [event ...]: nothing to reset.
pub(super) fn latency_reset(_: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::int(out, 0);
    Step::Done
}

/// LATENCY DOCTOR: says where the latencies are.
pub(super) fn latency_doctor(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::verbatim(
        out,
        s.proto,
        b"Latency monitoring is disabled in this Corral instance (no events are recorded). \
          Per-command latency percentiles are in INFO latencystats and in /metrics \
          (corral_command_duration_seconds).\n",
    );
    Step::Done
}

/// DEBUG is refused, as Redis refuses it by default (`enable-debug-command no`).
pub(super) fn debug(_: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::error(
        out,
        "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.",
    );
    Step::Done
}
