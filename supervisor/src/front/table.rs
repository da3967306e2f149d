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
        run,
    }
}

/// Allowed before AUTH.
const fn unauthenticated(mut s: Spec<Handler>) -> Spec<Handler> {
    s.before_auth = true;
    s
}

use Group::{Connection, Generic, Server, String};

/// The key after a subcommand (MEMORY USAGE key, OBJECT ENCODING key).
const SECOND: Keys = Keys {
    first: 2,
    last: 2,
    step: 1,
};
use Kind::{Read, Write};

/// Every command Corral runs: one line each (name, arity as Redis gives it, kind, key
/// positions, group, summary, handler). The order is the metric label order.
#[rustfmt::skip]
static SPECS: [Spec<Handler>; 31] = [
    spec("ping", -1, Read, Keys::NONE, Connection, "Answers PONG, or echoes its argument.", connection::ping),
    spec("echo", 2, Read, Keys::NONE, Connection, "Answers its argument.", connection::echo),
    spec("set", -3, Write, Keys::ONE, String, "Sets a key's value, optionally only if it is absent (NX) or present (XX).", strings::set),
    spec("get", 2, Read, Keys::ONE, String, "Reads a key's value.", strings::get),
    spec("del", -2, Write, Keys::ALL, Generic, "Deletes keys; answers how many existed.", strings::del),
    spec("unlink", -2, Write, Keys::ALL, Generic, "Deletes keys, as DEL.", strings::del),
    spec("exists", -2, Read, Keys::ALL, Generic, "Counts the given keys that exist.", strings::exists),
    spec("incr", 2, Write, Keys::ONE, String, "Adds one to a key's integer value.", strings::incr),
    spec("incrby", 3, Write, Keys::ONE, String, "Adds an integer to a key's integer value.", strings::incrby),
    spec("decr", 2, Write, Keys::ONE, String, "Subtracts one from a key's integer value.", strings::decr),
    spec("decrby", 3, Write, Keys::ONE, String, "Subtracts an integer from a key's integer value.", strings::decrby),
    spec("mget", -2, Read, Keys::ALL, String, "Reads the values of several keys.", strings::mget_command),
    spec("mset", -3, Write, Keys::PAIRS, String, "Sets several keys' values.", strings::mset),
    spec("dbsize", 1, Read, Keys::NONE, Server, "Counts the keys of every shard.", introspect::dbsize_command),
    spec("info", -1, Read, Keys::NONE, Server, "Describes the server, by section.", introspect::info_command),
    unauthenticated(spec("auth", -2, Read, Keys::NONE, Connection, "Authenticates the connection.", connection::auth_command)),
    spec("select", 2, Read, Keys::NONE, Connection, "Selects database 0, the only one.", connection::select),
    unauthenticated(spec("quit", -1, Read, Keys::NONE, Connection, "Closes the connection after replying.", connection::quit)),
    spec("command", -1, Read, Keys::NONE, Server, "Describes the commands.", introspect::command_command),
    spec("config", -2, Read, Keys::NONE, Server, "Reads the server's settings.", introspect::config),
    unauthenticated(spec("hello", -1, Read, Keys::NONE, Connection, "Chooses the protocol (RESP2 or RESP3), authenticates, names the connection.", connection::hello_command)),
    spec("client", -2, Read, Keys::NONE, Connection, "Names, identifies and describes the connection.", connection::client),
    spec("time", 1, Read, Keys::NONE, Server, "Answers the server's clock: seconds and microseconds.", admin::time),
    spec("lastsave", 1, Read, Keys::NONE, Server, "Answers when the newest checkpoint was written.", admin::lastsave),
    spec("bgsave", -1, Read, Keys::NONE, Server, "Checkpoints every shard with new writes.", admin::bgsave),
    spec("wait", 3, Read, Keys::NONE, Generic, "Waits for replicas: Corral has none.", admin::wait),
    spec("slowlog", -2, Read, Keys::NONE, Server, "Reads or clears the log of slow commands.", admin::slowlog),
    spec("latency", -2, Read, Keys::NONE, Server, "The latency monitor (off; see INFO latencystats).", admin::latency),
    spec("debug", -2, Read, Keys::NONE, Server, "Refused, as Redis refuses it by default.", admin::debug),
    spec("memory", -2, Read, SECOND, Server, "MEMORY USAGE: the bytes a key takes in its shard.", keyspace::memory),
    spec("object", -2, Read, SECOND, Generic, "OBJECT ENCODING: a value's encoding as Redis would choose it.", keyspace::object),
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
            }
        }
    }
}
