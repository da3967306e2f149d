//! The command table: every command Corral runs, one line each, next to nothing else. A
//! new command is one line here plus its handler in the module of its group.

use std::sync::LazyLock;

use crate::front::command::{Arity, Keys, Kind, Spec, Table};
use crate::front::session::Handler;
use crate::front::{connection, introspect, strings};

const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    keys: Keys,
    run: Handler,
) -> Spec<Handler> {
    Spec {
        name,
        arity: Arity(arity),
        kind,
        before_auth: false,
        keys,
        run,
    }
}

/// Allowed before AUTH.
const fn unauthenticated(mut s: Spec<Handler>) -> Spec<Handler> {
    s.before_auth = true;
    s
}

use Kind::{Read, Write};

/// Every command Corral runs: one line each (name, arity as Redis gives it, kind, key
/// positions, handler). The order is the metric label order.
static SPECS: [Spec<Handler>; 22] = [
    spec("ping", -1, Read, Keys::NONE, connection::ping),
    spec("echo", 2, Read, Keys::NONE, connection::echo),
    spec("set", -3, Write, Keys::ONE, strings::set),
    spec("get", 2, Read, Keys::ONE, strings::get),
    spec("del", -2, Write, Keys::ALL, strings::del),
    spec("unlink", -2, Write, Keys::ALL, strings::del),
    spec("exists", -2, Read, Keys::ALL, strings::exists),
    spec("incr", 2, Write, Keys::ONE, strings::incr),
    spec("incrby", 3, Write, Keys::ONE, strings::incrby),
    spec("decr", 2, Write, Keys::ONE, strings::decr),
    spec("decrby", 3, Write, Keys::ONE, strings::decrby),
    spec("mget", -2, Read, Keys::ALL, strings::mget_command),
    spec("mset", -3, Write, Keys::PAIRS, strings::mset),
    spec("dbsize", 1, Read, Keys::NONE, introspect::dbsize_command),
    spec("info", -1, Read, Keys::NONE, introspect::info_command),
    unauthenticated(spec("auth", -2, Read, Keys::NONE, connection::auth_command)),
    spec("select", 2, Read, Keys::NONE, connection::select),
    unauthenticated(spec("quit", -1, Read, Keys::NONE, connection::quit)),
    spec("command", -1, Read, Keys::NONE, introspect::command_command),
    spec("config", -2, Read, Keys::NONE, introspect::config),
    unauthenticated(spec(
        "hello",
        -1,
        Read,
        Keys::NONE,
        connection::hello_command,
    )),
    spec("client", -2, Read, Keys::NONE, connection::client),
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
