//! The command table: every command Corral runs, one line each, next to nothing else. A
//! new command is one line here plus its handler in the module of its group.

use std::sync::LazyLock;

use crate::front::command::{Arity, Group, Keys, Kind, Spec, Table};
use crate::front::session::Handler;
use crate::front::{admin, connection, introspect, keyspace, strings};

const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    keys: Keys,
    group: Group,
    summary: &'static str,
    run: Handler,
) -> Spec<Handler> {
    Spec {
        name,
        arity: Arity(arity),
        kind,
        before_auth: false,
        keys,
        group,
        summary,
        flags: &[],
        acl: &[],
        key_flags: &[],
        tips: &[],
        run,
    }
}

/// Allowed before AUTH.
const fn unauthenticated(mut s: Spec<Handler>) -> Spec<Handler> {
    s.before_auth = true;
    s
}

use Group::{Connection, Generic, Server, String};

use Kind::{Read, Write};

/// Every command Corral runs: one line each (name, arity as Redis gives it, kind, key
/// positions, group, summary, handler; then Redis' command flags, ACL categories, key-spec
/// flags and tips, as COMMAND INFO reports them). The order is the metric label order.
#[rustfmt::skip]
static SPECS: [Spec<Handler>; 31] = [
    spec("ping", -1, Read, Keys::NONE, Connection, "Answers PONG, or echoes its argument.", connection::ping).meta(&["fast"], &["@fast", "@connection"], &[], &["request_policy:all_shards", "response_policy:all_succeeded"]),
    spec("echo", 2, Read, Keys::NONE, Connection, "Answers its argument.", connection::echo).meta(&["loading", "stale", "fast"], &["@fast", "@connection"], &[], &[]),
    spec("set", -3, Write, Keys::ONE, String, "Sets a key's value, optionally only if it is absent (NX) or present (XX).", strings::set).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["RW", "access", "update", "variable_flags"], &[]),
    spec("get", 2, Read, Keys::ONE, String, "Reads a key's value.", strings::get).meta(&["readonly", "fast"], &["@read", "@string", "@fast"], &["RO", "access"], &[]),
    spec("del", -2, Write, Keys::ALL, Generic, "Deletes keys; answers how many existed.", strings::del).meta(&["write"], &["@keyspace", "@write", "@slow"], &["RM", "delete"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("unlink", -2, Write, Keys::ALL, Generic, "Deletes keys, as DEL.", strings::del).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RM", "delete"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("exists", -2, Read, Keys::ALL, Generic, "Counts the given keys that exist.", strings::exists).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("incr", 2, Write, Keys::ONE, String, "Adds one to a key's integer value.", strings::incr).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("incrby", 3, Write, Keys::ONE, String, "Adds an integer to a key's integer value.", strings::incrby).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("decr", 2, Write, Keys::ONE, String, "Subtracts one from a key's integer value.", strings::decr).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("decrby", 3, Write, Keys::ONE, String, "Subtracts an integer from a key's integer value.", strings::decrby).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("mget", -2, Read, Keys::ALL, String, "Reads the values of several keys.", strings::mget_command).meta(&["readonly", "fast"], &["@read", "@string", "@fast"], &["RO", "access"], &["request_policy:multi_shard"]),
    spec("mset", -3, Write, Keys::PAIRS, String, "Sets several keys' values.", strings::mset).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["OW", "update"], &["request_policy:multi_shard", "response_policy:all_succeeded"]),
    spec("dbsize", 1, Read, Keys::NONE, Server, "Counts the keys of every shard.", introspect::dbsize_command).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &[], &["request_policy:all_shards", "response_policy:agg_sum"]),
    spec("info", -1, Read, Keys::NONE, Server, "Describes the server, by section.", introspect::info_command).meta(&["loading", "stale"], &["@slow", "@dangerous"], &[], &["nondeterministic_output", "request_policy:all_shards", "response_policy:special"]),
    unauthenticated(spec("auth", -2, Read, Keys::NONE, Connection, "Authenticates the connection.", connection::auth_command).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("select", 2, Read, Keys::NONE, Connection, "Selects database 0, the only one.", connection::select).meta(&["loading", "stale", "fast"], &["@fast", "@connection"], &[], &[]),
    unauthenticated(spec("quit", -1, Read, Keys::NONE, Connection, "Closes the connection after replying.", connection::quit).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("command", -1, Read, Keys::NONE, Server, "Describes the commands.", introspect::command_command).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output_order"]),
    spec("config", -2, Read, Keys::NONE, Server, "Reads the server's settings.", introspect::config).meta(&[], &["@slow"], &[], &[]),
    unauthenticated(spec("hello", -1, Read, Keys::NONE, Connection, "Chooses the protocol (RESP2 or RESP3), authenticates, names the connection.", connection::hello_command).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("client", -2, Read, Keys::NONE, Connection, "Names, identifies and describes the connection.", connection::client).meta(&[], &["@slow"], &[], &[]),
    spec("time", 1, Read, Keys::NONE, Server, "Answers the server's clock: seconds and microseconds.", admin::time).meta(&["loading", "stale", "fast"], &["@fast"], &[], &["nondeterministic_output"]),
    spec("lastsave", 1, Read, Keys::NONE, Server, "Answers when the newest checkpoint was written.", admin::lastsave).meta(&["loading", "stale", "fast"], &["@admin", "@fast", "@dangerous"], &[], &["nondeterministic_output"]),
    spec("bgsave", -1, Read, Keys::NONE, Server, "Checkpoints every shard with new writes.", admin::bgsave).meta(&["admin", "noscript", "no_async_loading"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("wait", 3, Read, Keys::NONE, Generic, "Waits for replicas: Corral has none.", admin::wait).meta(&["noscript"], &["@slow", "@connection"], &[], &["request_policy:all_shards", "response_policy:agg_min"]),
    spec("slowlog", -2, Read, Keys::NONE, Server, "Reads or clears the log of slow commands.", admin::slowlog).meta(&[], &["@slow"], &[], &[]),
    spec("latency", -2, Read, Keys::NONE, Server, "The latency monitor (off; see INFO latencystats).", admin::latency).meta(&[], &["@slow"], &[], &[]),
    spec("debug", -2, Read, Keys::NONE, Server, "Refused, as Redis refuses it by default.", admin::debug).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("memory", -2, Read, Keys::NONE, Server, "MEMORY USAGE: the bytes a key takes in its shard.", keyspace::memory).meta(&[], &["@slow"], &[], &[]),
    spec("object", -2, Read, Keys::NONE, Generic, "OBJECT ENCODING: a value's encoding as Redis would choose it.", keyspace::object).meta(&[], &["@slow"], &[], &[]),
];

/// The command table (checked once, when first used).
pub static TABLE: LazyLock<Table<Handler>> = LazyLock::new(|| Table::new(&SPECS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let table = &*TABLE;
        assert_eq!(table.label(table.other()), "other");
        assert_eq!(
            table.find(b"INCRBY").map(|(i, _)| table.label(i)),
            Some("incrby")
        );
        assert!(table.find(b"flushall").is_none());
        for spec in table.specs() {
            // A write routes its keys; one without keys would go nowhere.
            if spec.kind == Kind::Write {
                assert_ne!(spec.keys, Keys::NONE, "{}", spec.name);
                assert!(
                    spec.flags.contains(&"write"),
                    "{}: a write flagged {:?}",
                    spec.name,
                    spec.flags
                );
            }
            assert_eq!(
                spec.keys != Keys::NONE,
                !spec.key_flags.is_empty(),
                "{}: key positions and key-spec flags go together",
                spec.name
            );
            assert_eq!(
                spec.before_auth,
                spec.flags.contains(&"no_auth"),
                "{}",
                spec.name
            );
        }
    }
}
