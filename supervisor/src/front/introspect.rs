//! The introspection commands: INFO (Redis' sections and field names, plus a `corral`
//! section), COMMAND, CONFIG GET/SET/RESETSTAT, DBSIZE.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::base::shard::process_usage;
use crate::front::command::{Keys, Spec};
use crate::front::resp::{reply, Proto};
use crate::front::session::{eq, Handler, Session, Step, REDIS_COMPAT_VERSION};
use crate::telemetry::metrics::{CommandTotals, COMMAND_BUCKETS_NS};
use crate::wal::FsyncPolicy;

pub(super) fn info_command(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let text = info(s, &args[1..]);
    reply::verbatim(out, s.proto, text.as_bytes());
    Step::Done
}

/// INFO's sections in Redis' order, and whether `INFO` (default) shows each.
const SECTIONS: [(&str, bool); 13] = [
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
    ("corral", true),
];

/// The INFO text for the sections asked for (`default` when none, `all` or `everything`
/// for every one; names in any case; unknown names add nothing).
fn info(s: &Session, asked: &[&[u8]]) -> String {
    let wanted = |name: &str, default: bool| {
        if asked.is_empty() {
            return default;
        }
        asked.iter().any(|a| {
            eq(a, name) || eq(a, "all") || eq(a, "everything") || (default && eq(a, "default"))
        })
    };
    let totals = totals(s);
    let mut text = String::new();
    for (name, default) in SECTIONS {
        if !wanted(name, default) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        let title = match name {
            "commandstats" => "Commandstats".to_owned(),
            "errorstats" => "Errorstats".to_owned(),
            "cpu" => "CPU".to_owned(),
            "latencystats" => "Latencystats".to_owned(),
            other => {
                let mut t = other.to_owned();
                t[..1].make_ascii_uppercase();
                t
            }
        };
        let _ = write!(text, "# {title}\r\n");
        section(s, name, &totals, &mut text);
    }
    text
}

/// INFO's counters now: the event loops' command statistics and the shards' expired keys.
fn totals_now(s: &Session) -> CommandTotals {
    let mut now = s.shared.metrics.command_totals();
    now.expired_keys = s.shared.shards.iter().map(|sh| sh.counts().expired).sum();
    now
}

/// The command statistics since start (or the last CONFIG RESETSTAT).
fn totals(s: &Session) -> CommandTotals {
    let now = totals_now(s);
    let base = s
        .shared
        .stats_base
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    now.since(&base)
}

/// Commands per second over the last second or more (sampled when INFO is asked).
fn ops_per_sec(s: &Session, calls: u64) -> f64 {
    let mut sample = s
        .shared
        .ops_sample
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (at, count, rate) = *sample;
    let elapsed = at.elapsed();
    if elapsed >= Duration::from_secs(1) || calls < count {
        let new_rate = calls.saturating_sub(count) as f64 / elapsed.as_secs_f64();
        *sample = (Instant::now(), calls, new_rate);
        return new_rate;
    }
    rate
}

fn line(text: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(text, "{key}:{value}\r\n");
}

/// Bytes as Redis writes them for people (`1.50M`).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes}B"),
        1024..=1_048_575 => format!("{:.2}K", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.2}M", b / 1_048_576.0),
        _ => format!("{:.2}G", b / 1_073_741_824.0),
    }
}

/// Resident bytes and CPU seconds of the supervisor and of its live workers.
fn usage(s: &Session) -> ((f64, f64), (f64, f64)) {
    let own = process_usage(std::process::id()).unwrap_or_default();
    let workers = s
        .shared
        .shards
        .iter()
        .filter_map(|shard| shard.current())
        .filter(|g| !g.is_dead())
        .filter_map(|g| process_usage(g.pid))
        .fold((0.0, 0.0), |(cpu, rss), (c, r)| (cpu + c, rss + r));
    (own, workers)
}

fn section(s: &Session, name: &str, totals: &CommandTotals, text: &mut String) {
    let shared = &s.shared;
    let config = &shared.config;
    match name {
        "server" => {
            let uptime = shared.started.elapsed().as_secs();
            line(text, "redis_version", REDIS_COMPAT_VERSION);
            line(text, "redis_git_sha1", "00000000");
            line(text, "redis_git_dirty", 0);
            line(text, "redis_mode", "standalone");
            line(text, "os", os());
            line(text, "arch_bits", usize::BITS);
            line(text, "multiplexing_api", "epoll");
            line(text, "process_id", std::process::id());
            line(text, "run_id", &shared.run_id);
            line(text, "tcp_port", config.listen.port());
            line(text, "server_time_usec", unix_micros());
            line(text, "uptime_in_seconds", uptime);
            line(text, "uptime_in_days", uptime / 86_400);
            line(text, "hz", 10);
            line(text, "io_threads_active", u8::from(config.io_threads > 1));
            line(text, "corral_version", env!("CARGO_PKG_VERSION"));
        }
        "clients" => {
            line(text, "connected_clients", shared.connections());
            line(text, "cluster_connections", 0);
            line(
                text,
                "maxclients",
                shared.live.max_clients.load(Ordering::Relaxed),
            );
            line(text, "blocked_clients", 0);
            line(text, "tracking_clients", 0);
            line(text, "clients_in_timeout_table", 0);
        }
        "memory" => {
            let ((_, own_rss), (_, workers_rss)) = usage(s);
            let used = (own_rss + workers_rss) as u64;
            let data: u64 = live_heads(s, |h| h.status.live_bytes.load(Ordering::Acquire));
            let max = config.shard_data_bytes * shared.shards.len() as u64;
            line(text, "used_memory", used);
            line(text, "used_memory_human", human(used));
            line(text, "used_memory_rss", used);
            line(text, "used_memory_rss_human", human(used));
            line(text, "used_memory_dataset", data);
            line(text, "maxmemory", max);
            line(text, "maxmemory_human", human(max));
            line(text, "maxmemory_policy", "noeviction");
        }
        "persistence" => {
            let failing = shared.durability.failure().is_some();
            let last_save = live_heads(s, |h| h.checkpoint.unix_ms.load(Ordering::Acquire)) / 1000;
            line(text, "loading", 0);
            line(text, "async_loading", 0);
            line(text, "rdb_bgsave_in_progress", 0);
            line(text, "rdb_last_save_time", last_save);
            line(text, "aof_enabled", 1);
            line(text, "aof_rewrite_in_progress", 0);
            line(
                text,
                "aof_last_write_status",
                if failing { "err" } else { "ok" },
            );
        }
        "stats" => {
            line(
                text,
                "total_connections_received",
                shared.connections_received(),
            );
            line(text, "total_commands_processed", totals.calls());
            line(
                text,
                "instantaneous_ops_per_sec",
                ops_per_sec(s, totals.calls()).round() as u64,
            );
            line(text, "total_net_input_bytes", totals.bytes_in);
            line(text, "total_net_output_bytes", totals.bytes_out);
            line(
                text,
                "rejected_connections",
                shared.metrics.connections_rejected.get(),
            );
            line(text, "expired_keys", totals.expired_keys);
            line(text, "evicted_keys", 0);
            line(text, "keyspace_hits", totals.hits);
            line(text, "keyspace_misses", totals.misses);
            line(text, "total_error_replies", totals.errors());
        }
        "replication" => {
            line(text, "role", "master");
            line(text, "connected_slaves", 0);
            line(text, "master_failover_state", "no-failover");
            line(text, "master_replid", &shared.run_id);
            line(text, "master_repl_offset", 0);
        }
        "cpu" => {
            let ((own_cpu, _), (workers_cpu, _)) = usage(s);
            // /proc gives user and system time together: reported as user time.
            line(text, "used_cpu_sys", "0.000000");
            line(text, "used_cpu_user", format!("{own_cpu:.6}"));
            line(text, "used_cpu_sys_children", "0.000000");
            line(text, "used_cpu_user_children", format!("{workers_cpu:.6}"));
        }
        "commandstats" => {
            for (i, c) in totals.counts.iter().enumerate() {
                let calls = c[0] + c[1];
                if calls == 0 || i == s.table.other() {
                    continue;
                }
                let usec = totals.sum_ns[i] / 1000;
                let _ = write!(
                    text,
                    "cmdstat_{}:calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls={}\r\n",
                    s.table.label(i),
                    usec as f64 / calls as f64,
                    c[1]
                );
            }
        }
        "errorstats" => {
            for (code, n) in &totals.error_codes {
                let _ = write!(text, "errorstat_{code}:count={n}\r\n");
            }
        }
        "latencystats" => {
            for (i, buckets) in totals.buckets.iter().enumerate() {
                let calls: u64 = buckets.iter().sum();
                if calls == 0 || i == s.table.other() {
                    continue;
                }
                let p = |q: f64| percentile_usec(buckets, q);
                let _ = write!(
                    text,
                    "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                    s.table.label(i),
                    p(0.5),
                    p(0.99),
                    p(0.999)
                );
            }
        }
        "cluster" => line(text, "cluster_enabled", 0),
        "keyspace" => {
            let keys = dbsize(s);
            let expires = live_heads(s, |h| h.metrics.expiring_keys.load(Ordering::Acquire));
            if keys > 0 {
                // avg_ttl is Redis' sampled estimate; Corral does not sample it.
                let _ = write!(text, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
        "corral" => {
            line(text, "corral_shards", shared.shards.len());
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
                let _ = write!(
                    text,
                    "shard{}:state={},pid={pid},generation={generation},restarts={},keys={keys},\
                     digest={digest:016x},applied_seq={applied}\r\n",
                    shard.id,
                    shard.state().name(),
                    shard.restarts.load(Ordering::Relaxed)
                );
            }
        }
        _ => unreachable!("SECTIONS names every section"),
    }
}

/// The upper bound (µs) of the latency bucket that holds quantile `q` (the buckets are
/// 4x apart, so this is an upper estimate).
fn percentile_usec(buckets: &[u64], q: f64) -> f64 {
    let calls: u64 = buckets.iter().sum();
    let rank = (q * calls as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound_ns = COMMAND_BUCKETS_NS
                .get(i)
                .copied()
                .unwrap_or(COMMAND_BUCKETS_NS[COMMAND_BUCKETS_NS.len() - 1] * 4);
            return bound_ns as f64 / 1000.0;
        }
    }
    0.0
}

/// The sum of `f` over the live generations' segment heads.
fn live_heads(s: &Session, f: impl Fn(&shm_protocol::layout::SegmentHead) -> u64) -> u64 {
    s.shared
        .shards
        .iter()
        .filter_map(|shard| shard.current())
        .filter(|g| !g.is_dead())
        .map(|g| f(g.segment.head()))
        .sum()
}

fn os() -> String {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{} {} {}",
        read("ostype"),
        read("osrelease"),
        std::env::consts::ARCH
    )
}

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

pub(super) fn dbsize_command(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::int(out, dbsize(s) as i64);
    Step::Done
}

pub(super) fn dbsize(s: &Session) -> u64 {
    live_heads(s, |h| h.status.keys.load(Ordering::Acquire))
}

/// COMMAND: every command as COMMAND INFO describes it; with an argument, HELP or Redis'
/// unknown-subcommand error (the subcommands have handlers of their own).
pub(super) fn command_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    limit: usize,
) -> Step {
    if args.len() > 1 {
        return container(s, args, out, limit);
    }
    reply::array(out, s.table.specs().len());
    for spec in s.table.specs() {
        command_info(s, spec, out);
    }
    Step::Done
}

pub(super) fn command_count(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::int(out, s.table.specs().len() as i64);
    Step::Done
}

/// The specs `names` ask for (every one when there are none; `None` for a name Corral
/// does not have).
fn specs_named(s: &Session, names: &[&[u8]]) -> Vec<Option<&'static Spec<Handler>>> {
    if names.is_empty() {
        s.table.specs().iter().map(Some).collect()
    } else {
        names.iter().map(|n| find_command(s, n)).collect()
    }
}

/// A command by name, or a subcommand by its full name (`client|list`), in any case.
fn find_command(s: &Session, name: &[u8]) -> Option<&'static Spec<Handler>> {
    match name.iter().position(|&b| b == b'|') {
        None => s.table.find(name).map(|f| f.1),
        Some(bar) => {
            let (index, _) = s.table.find(&name[..bar])?;
            let (_, sub) = s
                .table
                .subcommand(index, &[&name[..bar], &name[bar + 1..]])?;
            Some(sub)
        }
    }
}

/// COMMAND INFO [name ...].
pub(super) fn command_info_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    let specs = specs_named(s, &args[2..]);
    reply::array(out, specs.len());
    for spec in specs {
        match spec {
            Some(spec) => command_info(s, spec, out),
            None => reply::null(out, s.proto),
        }
    }
    Step::Done
}

/// COMMAND DOCS [name ...]: each command's summary and group.
pub(super) fn command_docs(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let found: Vec<&Spec<Handler>> = specs_named(s, &args[2..]).into_iter().flatten().collect();
    reply::map(out, s.proto, found.len());
    for spec in found {
        reply::bulk(out, spec.name.as_bytes());
        reply::map(out, s.proto, 2);
        reply::bulk(out, b"summary");
        reply::bulk(out, spec.summary.as_bytes());
        reply::bulk(out, b"group");
        reply::bulk(out, spec.group.name().as_bytes());
    }
    Step::Done
}

/// COMMAND LIST [FILTERBY PATTERN pattern].
pub(super) fn command_list(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let pattern = match args.len() {
        2 => None,
        5 if eq(args[2], "filterby") && eq(args[3], "pattern") => Some(args[4]),
        5 if eq(args[2], "filterby") => {
            reply::error(
                out,
                "ERR COMMAND LIST FILTERBY supports PATTERN only (Corral has no modules and no ACL categories)",
            );
            return Step::Done;
        }
        _ => {
            reply::error(out, "ERR syntax error");
            return Step::Done;
        }
    };
    let names: Vec<&str> = s
        .table
        .specs()
        .iter()
        .map(|spec| spec.name)
        .filter(|n| pattern.is_none_or(|p| glob(p, n.as_bytes())))
        .collect();
    reply::array(out, names.len());
    for n in names {
        reply::bulk(out, n.as_bytes());
    }
    Step::Done
}

/// COMMAND GETKEYS and GETKEYSANDFLAGS command [arg ...].
pub(super) fn command_getkeys_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    command_getkeys(s, &args[2..], eq(args[1], "getkeysandflags"), out);
    Step::Done
}

/// One command as COMMAND INFO describes it: name, arity, flags, first key, last key, key
/// step, ACL categories, tips, key specifications, subcommands.
fn command_info(s: &Session, spec: &Spec<Handler>, out: &mut Vec<u8>) {
    let proto = s.proto;
    reply::array(out, 10);
    reply::bulk(out, spec.name.as_bytes());
    reply::int(out, i64::from(spec.arity.0));
    reply::set(out, proto, spec.flags.len());
    for f in spec.flags {
        reply::simple(out, f);
    }
    let k = spec.keys;
    reply::int(out, k.first as i64);
    reply::int(out, k.last as i64);
    reply::int(out, k.step as i64);
    reply::set(out, proto, spec.acl.len());
    for c in spec.acl {
        reply::simple(out, c);
    }
    reply::set(out, proto, spec.tips.len());
    for t in spec.tips {
        reply::bulk(out, t.as_bytes());
    }
    if k == Keys::NONE {
        reply::set(out, proto, 0);
    } else if !spec.destination_flags.is_empty() {
        // A source and a destination: a key specification each.
        reply::set(out, proto, 2);
        key_spec(out, proto, spec.key_flags, k.first, 0, 1);
        key_spec(out, proto, spec.destination_flags, k.first + 1, 0, 1);
    } else {
        // One key specification: keys from index `first`, a range to `last` (relative
        // to the first key, as Redis writes it) every `step`.
        reply::set(out, proto, 1);
        let lastkey = if k.last < 0 {
            k.last
        } else {
            k.last - k.first as isize
        };
        key_spec(out, proto, spec.key_flags, k.first, lastkey, k.step);
    }
    reply::set(out, proto, spec.subcommands.len());
    for sub in spec.subcommands {
        command_info(s, sub, out);
    }
}

/// A key specification: keys with `flags` from index `first`, a range to `lastkey`
/// (relative to the first key, as Redis writes it; negative from the end) every `step`.
fn key_spec(
    out: &mut Vec<u8>,
    proto: Proto,
    flags: &[&str],
    first: usize,
    lastkey: isize,
    step: usize,
) {
    reply::map(out, proto, 3);
    reply::bulk(out, b"flags");
    reply::set(out, proto, flags.len());
    for a in flags {
        reply::simple(out, a);
    }
    key_search(
        out,
        proto,
        "begin_search",
        "index",
        &[("index", first as i64)],
    );
    key_search(
        out,
        proto,
        "find_keys",
        "range",
        &[
            ("lastkey", lastkey as i64),
            ("keystep", step as i64),
            ("limit", 0),
        ],
    );
}

/// One part of a key specification: `name` → {type: `kind`, spec: {field: value, ...}}.
fn key_search(out: &mut Vec<u8>, proto: Proto, name: &str, kind: &str, fields: &[(&str, i64)]) {
    reply::bulk(out, name.as_bytes());
    reply::map(out, proto, 2);
    reply::bulk(out, b"type");
    reply::bulk(out, kind.as_bytes());
    reply::bulk(out, b"spec");
    reply::map(out, proto, fields.len());
    for (field, value) in fields {
        reply::bulk(out, field.as_bytes());
        reply::int(out, *value);
    }
}

/// COMMAND GETKEYS (and, `with_flags`, GETKEYSANDFLAGS): the keys of `target` (a command
/// and its arguments), checked in Redis' order (a command, with keys, of a valid arity).
fn command_getkeys(s: &Session, target: &[&[u8]], with_flags: bool, out: &mut Vec<u8>) {
    let Some(spec) = s.table.find(target[0]).map(|(index, spec)| {
        s.table
            .subcommand(index, target)
            .map_or(spec, |(_, sub)| sub)
    }) else {
        return reply::error(out, "ERR Invalid command specified");
    };
    if spec.keys == Keys::NONE {
        return reply::error(out, "ERR The command has no key arguments");
    }
    if !spec.arity.allows(target.len()) {
        return reply::error(out, "ERR Invalid number of arguments specified for command");
    }
    let keys: Vec<usize> = spec.keys.positions(target.len()).collect();
    let flags = spec.key_flags_of(target);
    reply::array(out, keys.len());
    for (i, k) in keys.into_iter().enumerate() {
        let flags = if i == 1 && !spec.destination_flags.is_empty() {
            spec.destination_flags
        } else {
            flags
        };
        if with_flags {
            reply::array(out, 2);
            reply::bulk(out, target[k]);
            reply::set(out, s.proto, flags.len());
            for f in flags {
                reply::simple(out, f);
            }
        } else {
            reply::bulk(out, target[k]);
        }
    }
}

/// The standard parameters CONFIG GET answers, with Corral's values.
fn parameters(s: &Session) -> Vec<(&'static str, String)> {
    let c = &s.shared.config;
    let fsync = match c.fsync {
        FsyncPolicy::Always => "always",
        FsyncPolicy::EverySec => "everysec",
        FsyncPolicy::No => "no",
    };
    let maxmemory = c.shard_data_bytes * s.shared.shards.len() as u64;
    let live = &s.shared.live;
    vec![
        ("appendfsync", fsync.to_owned()),
        ("appendonly", "yes".to_owned()),
        ("bind", c.listen.ip().to_string()),
        ("databases", "1".to_owned()),
        ("dir", c.data_dir.display().to_string()),
        ("io-threads", c.io_threads.to_string()),
        (
            "maxclients",
            s.shared
                .live
                .max_clients
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("maxmemory", maxmemory.to_string()),
        ("maxmemory-policy", "noeviction".to_owned()),
        ("port", c.listen.port().to_string()),
        ("proto-max-bulk-len", c.max_value_bytes.to_string()),
        ("save", String::new()),
        (
            "slowlog-log-slower-than",
            live.slowlog_slower_than_us
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "slowlog-max-len",
            live.slowlog_max_len.load(Ordering::Relaxed).to_string(),
        ),
        ("timeout", "0".to_owned()),
    ]
}

/// A setting CONFIG SET may change.
enum Settable {
    MaxClients,
    SlowlogSlowerThan,
    SlowlogMaxLen,
}

/// CONFIG SET name value [name value ...]: every pair is checked before any is applied, as
/// Redis does; the settings that cannot change at runtime answer Redis' error for
/// immutable ones.
fn config_set(s: &Session, pairs: &[&[u8]]) -> Result<(), String> {
    let mut changes = Vec::new();
    for pair in pairs.chunks_exact(2) {
        let name = String::from_utf8_lossy(pair[0]).to_ascii_lowercase();
        let failed = |why: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
        };
        let (setting, min, max) = match name.as_str() {
            "maxclients" => (Settable::MaxClients, 1, i64::from(u32::MAX)),
            "slowlog-log-slower-than" => (Settable::SlowlogSlowerThan, -1, i64::MAX),
            "slowlog-max-len" => (Settable::SlowlogMaxLen, 0, i64::MAX),
            _ if parameters(s).iter().any(|(p, _)| *p == name) => {
                return Err(failed("can't set immutable config"));
            }
            _ => {
                return Err(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ))
            }
        };
        let value = corral_worker::machine::parse_i64(pair[1])
            .ok_or_else(|| failed("argument couldn't be parsed into an integer"))?;
        if !(min..=max).contains(&value) {
            return Err(failed(&format!(
                "argument must be between {min} and {max} inclusive"
            )));
        }
        changes.push((setting, value));
    }
    let live = &s.shared.live;
    for (setting, value) in changes {
        match setting {
            Settable::MaxClients => live.max_clients.store(value as u32, Ordering::Relaxed),
            Settable::SlowlogSlowerThan => {
                live.slowlog_slower_than_us.store(value, Ordering::Relaxed);
            }
            Settable::SlowlogMaxLen => {
                live.slowlog_max_len
                    .store(value as usize, Ordering::Relaxed);
                let mut log = s
                    .shared
                    .slowlog
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                log.entries.truncate(value as usize);
            }
        }
    }
    Ok(())
}

/// Redis' glob match (`*`, `?`, `[...]` with ranges and `^`, `\\` escapes), in any case
/// as CONFIG GET does. Iterative, backtracking only to the last `*`: at most
/// `pattern.len() * text.len()` steps, whatever a client sends.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: its pattern index and the text index it covers to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match one(pattern, p, text[t]) {
            Some(GlobStep::Star) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(GlobStep::Matched(next)) => {
                p = next;
                t += 1;
                continue;
            }
            None => {}
        }
        match star {
            Some((after, covered)) => {
                // Let the last `*` take one more character and try again from there.
                p = after;
                t = covered + 1;
                star = Some((after, covered + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What the pattern element at `p` does with character `c`.
enum GlobStep {
    /// A `*`.
    Star,
    /// `c` matches; the next element starts at the index given.
    Matched(usize),
}

fn one(pattern: &[u8], p: usize, c: u8) -> Option<GlobStep> {
    let same = |a: u8, b: u8| a.eq_ignore_ascii_case(&b);
    match *pattern.get(p)? {
        b'*' => Some(GlobStep::Star),
        b'?' => Some(GlobStep::Matched(p + 1)),
        b'[' => {
            let end = p + 1 + pattern[p + 1..].iter().position(|&b| b == b']')?;
            let class = &pattern[p + 1..end];
            let (negate, class) = match class.split_first() {
                Some((b'^', rest)) => (true, rest),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    let (lo, hi) = (class[i].min(class[i + 2]), class[i].max(class[i + 2]));
                    hit |= (lo..=hi).contains(&c.to_ascii_lowercase())
                        || (lo..=hi).contains(&c.to_ascii_uppercase());
                    i += 3;
                } else {
                    hit |= same(class[i], c);
                    i += 1;
                }
            }
            (hit != negate).then_some(GlobStep::Matched(end + 1))
        }
        b'\\' if p + 1 < pattern.len() => {
            same(pattern[p + 1], c).then_some(GlobStep::Matched(p + 2))
        }
        other => same(other, c).then_some(GlobStep::Matched(p + 1)),
    }
}

/// CONFIG GET pattern [pattern ...].
pub(super) fn config_get(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let found: Vec<(&str, String)> = parameters(s)
        .into_iter()
        .filter(|(name, _)| args[2..].iter().any(|p| glob(p, name.as_bytes())))
        .collect();
    reply::map(out, s.proto, found.len());
    for (name, value) in found {
        reply::bulk(out, name.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    Step::Done
}

/// CONFIG SET name value [name value ...].
pub(super) fn config_set_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    if args.len() % 2 != 0 {
        reply::error(
            out,
            "ERR wrong number of arguments for 'config|set' command",
        );
        return Step::Done;
    }
    match config_set(s, &args[2..]) {
        Ok(()) => reply::simple(out, "OK"),
        Err(e) => reply::error(out, &e),
    }
    Step::Done
}

/// CONFIG RESETSTAT: INFO's counters start over (the metrics stay monotonic).
pub(super) fn config_resetstat(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    *s.shared
        .stats_base
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = totals_now(s);
    reply::simple(out, "OK");
    Step::Done
}

/// A container command run without one of its subcommands: HELP lists them (from the
/// table), anything else is Redis' unknown-subcommand error.
pub(super) fn container(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let Some((_, spec)) = s.table.find(args[0]) else {
        unreachable!("the session ran this container from the table");
    };
    let name = spec.name.to_ascii_uppercase();
    if args.get(1).is_some_and(|a| eq(a, "help")) {
        reply::array(out, 3 + 2 * spec.subcommands.len());
        reply::simple(
            out,
            &format!("{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
        );
        for sub in spec.subcommands {
            let (_, sub_name) = sub.name.split_once('|').unwrap_or(("", sub.name));
            reply::simple(out, &sub_name.to_ascii_uppercase());
            reply::simple(out, &format!("    {}", sub.summary));
        }
        reply::simple(out, "HELP");
        reply::simple(out, "    Print this help.");
    } else {
        let sub = args
            .get(1)
            .map_or_else(String::new, |a| String::from_utf8_lossy(a).into_owned());
        reply::error(
            out,
            &format!("ERR unknown subcommand '{sub}'. Try {name} HELP."),
        );
    }
    Step::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patterns_match_as_redis_globs() {
        for (pattern, name, hit) in [
            ("*", "maxclients", true),
            ("max*", "maxclients", true),
            ("MAX*", "maxclients", true),
            ("*fsync", "appendfsync", true),
            ("port", "port", true),
            ("por", "port", false),
            ("p?rt", "port", true),
            ("[a-m]axclients", "maxclients", true),
            ("[^m]axclients", "maxclients", false),
            ("app*only", "appendonly", true),
            ("app*only", "appendfsync", false),
            ("**max**", "maxclients", true),
            ("*s", "maxclients", true),
            ("*x", "maxclients", false),
            ("", "", true),
            ("*", "", true),
            ("?", "", false),
            ("\\*axclients", "maxclients", false),
            ("m\\axclients", "maxclients", true),
        ] {
            assert_eq!(
                glob(pattern.as_bytes(), name.as_bytes()),
                hit,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn a_hostile_pattern_costs_linear_time() {
        let pattern: Vec<u8> = b"*a".repeat(5000).into_iter().chain(*b"b").collect();
        let text = vec![b'a'; 10_000];
        let started = std::time::Instant::now();
        assert!(!glob(&pattern, &text));
        // Exponential backtracking would take longer than the age of the universe.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn percentiles_come_from_the_bucket_bounds() {
        let mut buckets = [0u64; COMMAND_BUCKETS_NS.len() + 1];
        buckets[0] = 98; // ≤ 5 µs
        buckets[2] = 2; // ≤ 80 µs
        assert_eq!(percentile_usec(&buckets, 0.5), 5.0);
        assert_eq!(percentile_usec(&buckets, 0.99), 80.0);
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(512), "512B");
    }
}
