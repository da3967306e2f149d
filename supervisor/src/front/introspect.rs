//! The introspection commands: INFO, COMMAND, CONFIG, DBSIZE.

use std::sync::atomic::Ordering;

use crate::front::resp::reply;
use crate::front::session::{eq, Session, Step, REDIS_COMPAT_VERSION};

pub(super) fn info_command(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let text = info(s);
    reply::bulk(out, text.as_bytes());
    Step::Done
}

pub(super) fn info(s: &Session) -> String {
    let shared = &s.shared;
    let mut text = format!(
        "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\ncorral_version:{}\r\n\
         redis_mode:standalone\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\r\n\
         # Clients\r\nconnected_clients:{}\r\n\r\n# Persistence\r\naof_enabled:0\r\n\r\n\
         # Shards\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        shared.started.elapsed().as_secs(),
        shared.connections(),
    );
    for shard in shared.shards.iter() {
        let (pid, generation, keys, digest, applied) =
            shard.current().map_or((0, 0, 0, 0, 0), |g| {
                let status = &g.segment.head().status;
                (
                    g.pid,
                    g.number,
                    status.keys.load(Ordering::Acquire),
                    status.digest.load(Ordering::Acquire),
                    status.applied_seq.load(Ordering::Acquire),
                )
            });
        text.push_str(&format!(
            "shard{}:state={},pid={pid},generation={generation},restarts={},keys={keys},\
             digest={digest:016x},applied_seq={applied}\r\n",
            shard.id,
            shard.state().name(),
            shard.restarts.load(Ordering::Relaxed)
        ));
    }
    text.push_str(&format!(
        "\r\n# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
        dbsize(s)
    ));
    text
}

pub(super) fn dbsize_command(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::int(out, dbsize(s) as i64);
    Step::Done
}

pub(super) fn dbsize(s: &Session) -> u64 {
    s.shared
        .shards
        .iter()
        .filter_map(|s| s.current())
        .filter(|g| !g.is_dead())
        .map(|g| g.segment.head().status.keys.load(Ordering::Acquire))
        .sum()
}

/// `COMMAND COUNT` and `COMMAND GETKEYS` from the table; the command list itself
/// (`COMMAND`, `COMMAND INFO`, `COMMAND DOCS`) is an empty array.
pub(super) fn command_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    match args.get(1) {
        Some(sub) if eq(sub, "count") => reply::int(out, s.table.specs().len() as i64),
        Some(sub) if eq(sub, "getkeys") && args.len() < 4 => reply::error(
            out,
            "ERR wrong number of arguments for 'command|getkeys' command",
        ),
        Some(sub) if eq(sub, "getkeys") => {
            let target = &args[2..];
            match s.table.find(target[0]) {
                Some((_, spec)) if spec.arity.allows(target.len()) => {
                    let keys: Vec<usize> = spec.keys.positions(target.len()).collect();
                    if keys.is_empty() {
                        reply::error(out, "ERR The command has no key arguments");
                    } else {
                        reply::array(out, keys.len());
                        for k in keys {
                            reply::bulk(out, target[k]);
                        }
                    }
                }
                Some(_) => {
                    reply::error(out, "ERR Invalid number of arguments specified for command")
                }
                None => reply::error(out, "ERR Invalid command specified"),
            }
        }
        _ => reply::array(out, 0),
    }
    Step::Done
}

pub(super) fn config(_: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if !(eq(args[1], "get") && args.len() == 3) {
        reply::error(
            out,
            "ERR CONFIG subcommands other than GET are not supported",
        );
        return Step::Done;
    }
    let param = String::from_utf8_lossy(args[2]).to_ascii_lowercase();
    let value: &[u8] = match param.as_str() {
        "save" => b"",
        "appendonly" => b"no",
        "databases" => b"1",
        _ => {
            reply::array(out, 0);
            return Step::Done;
        }
    };
    reply::array(out, 2);
    reply::bulk(out, param.as_bytes());
    reply::bulk(out, value);
    Step::Done
}
