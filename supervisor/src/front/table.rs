//! The command table: every command Corral runs, one line each, next to nothing else. A
//! new command is one line here plus its handler in the module of its group.

use std::sync::LazyLock;

use crate::front::command::{Group, Keys, Kind, Spec, Table};
use crate::front::session::Handler;
use crate::front::{admin, connection, expiry, introspect, keyspace, strings, transaction};

/// [`Spec::new`] with the handler as a [`Handler`] (a function item is its own type).
const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    keys: Keys,
    group: Group,
    summary: &'static str,
    run: Handler,
) -> Spec<Handler> {
    Spec::new(name, arity, kind, keys, group, summary, run)
}

/// Allowed before AUTH.
const fn unauthenticated(mut s: Spec<Handler>) -> Spec<Handler> {
    s.before_auth = true;
    s
}

use Group::{Bitmap, Connection, Generic, Server, String, Transaction};

use Kind::{Read, Write};

/// Every command Corral runs: one line each (name, arity as Redis gives it, kind, key
/// positions, group, summary, handler; then Redis' command flags, ACL categories, key-spec
/// flags and tips, as COMMAND INFO reports them). The order is the metric label order.
#[rustfmt::skip]
static SPECS: [Spec<Handler>; 73] = [
    spec("ping", -1, Read, Keys::NONE, Connection, "Answers PONG, or echoes its argument.", connection::ping).meta(&["fast"], &["@fast", "@connection"], &[], &["request_policy:all_shards", "response_policy:all_succeeded"]),
    spec("echo", 2, Read, Keys::NONE, Connection, "Answers its argument.", connection::echo).meta(&["loading", "stale", "fast"], &["@fast", "@connection"], &[], &[]),
    spec("set", -3, Write, Keys::ONE, String, "Sets a key's value, optionally only if it is absent (NX) or present (XX), with an expiry (EX, PX, EXAT, PXAT) or keeping its own (KEEPTTL).", expiry::set).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["RW", "access", "update", "variable_flags"], &[]).call_key_flags(strings::set_key_flags),
    spec("get", 2, Read, Keys::ONE, String, "Reads a key's value.", strings::get).meta(&["readonly", "fast"], &["@read", "@string", "@fast"], &["RO", "access"], &[]),
    spec("del", -2, Write, Keys::ALL, Generic, "Deletes keys; answers how many existed.", strings::del).meta(&["write"], &["@keyspace", "@write", "@slow"], &["RM", "delete"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("unlink", -2, Write, Keys::ALL, Generic, "Deletes keys, as DEL.", strings::del).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RM", "delete"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("rename", 3, Write, Keys::TWO, Generic, "Renames a key, its deadline with it (atomic across shards).", keyspace::rename).meta(&["write"], &["@keyspace", "@write", "@slow"], &["RW", "access", "delete"], &[]).destination(&["OW", "update"]),
    spec("renamenx", 3, Write, Keys::TWO, Generic, "Renames a key only if the new name is free (atomic across shards).", keyspace::rename).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "access", "delete"], &[]).destination(&["OW", "insert"]),
    spec("copy", -3, Write, Keys::TWO, Generic, "Copies a key's value and deadline to another key (DB 0 only; REPLACE overwrites).", keyspace::copy).meta(&["write", "denyoom"], &["@keyspace", "@write", "@slow"], &["RO", "access"], &[]).destination(&["OW", "update"]),
    spec("exists", -2, Read, Keys::ALL, Generic, "Counts the given keys that exist.", strings::exists).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("incr", 2, Write, Keys::ONE, String, "Adds one to a key's integer value.", strings::incr).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("incrby", 3, Write, Keys::ONE, String, "Adds an integer to a key's integer value.", strings::incrby).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("decr", 2, Write, Keys::ONE, String, "Subtracts one from a key's integer value.", strings::decr).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("decrby", 3, Write, Keys::ONE, String, "Subtracts an integer from a key's integer value.", strings::decrby).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("mget", -2, Read, Keys::ALL, String, "Reads the values of several keys.", strings::mget_command).meta(&["readonly", "fast"], &["@read", "@string", "@fast"], &["RO", "access"], &["request_policy:multi_shard"]),
    spec("mset", -3, Write, Keys::PAIRS, String, "Sets several keys' values.", strings::mset).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["OW", "update"], &["request_policy:multi_shard", "response_policy:all_succeeded"]),
    spec("msetnx", -3, Write, Keys::PAIRS, String, "Sets several keys' values only if none of them exists (atomic across shards).", strings::msetnx).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["OW", "insert"], &["request_policy:multi_shard", "response_policy:agg_min"]),
    spec("getset", 3, Write, Keys::ONE, String, "Sets a key's value and answers the old one.", strings::getset).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("setnx", 3, Write, Keys::ONE, String, "Sets a key's value if it is absent; answers whether it did.", strings::setnx).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["OW", "insert"], &[]),
    spec("getdel", 2, Write, Keys::ONE, String, "Deletes a key and answers its value.", strings::getdel).meta(&["write", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "delete"], &[]),
    spec("getex", -2, Write, Keys::ONE, String, "Reads a key's value and sets or removes its expiry.", expiry::getex).meta(&["write", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("setex", 4, Write, Keys::ONE, String, "Sets a key's value with an expiry in seconds.", expiry::setex).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["OW", "update"], &[]),
    spec("psetex", 4, Write, Keys::ONE, String, "Sets a key's value with an expiry in milliseconds.", expiry::psetex).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["OW", "update"], &[]),
    spec("expire", -3, Write, Keys::ONE, Generic, "Sets a key's expiry in seconds from now (NX, XX, GT, LT: only if it has none, has one, is later, is earlier).", expiry::expire).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "update"], &[]),
    spec("pexpire", -3, Write, Keys::ONE, Generic, "Sets a key's expiry in milliseconds from now.", expiry::pexpire).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "update"], &[]),
    spec("expireat", -3, Write, Keys::ONE, Generic, "Sets a key's expiry to a Unix time in seconds.", expiry::expireat).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "update"], &[]),
    spec("pexpireat", -3, Write, Keys::ONE, Generic, "Sets a key's expiry to a Unix time in milliseconds.", expiry::pexpireat).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "update"], &[]),
    spec("persist", 2, Write, Keys::ONE, Generic, "Removes a key's expiry.", expiry::persist).meta(&["write", "fast"], &["@keyspace", "@write", "@fast"], &["RW", "update"], &[]),
    spec("ttl", 2, Read, Keys::ONE, Generic, "Answers a key's time to live in seconds (-1: none, -2: no key).", expiry::ttl).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO", "access"], &["nondeterministic_output"]),
    spec("pttl", 2, Read, Keys::ONE, Generic, "Answers a key's time to live in milliseconds.", expiry::pttl).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO", "access"], &["nondeterministic_output"]),
    spec("expiretime", 2, Read, Keys::ONE, Generic, "Answers a key's expiry as a Unix time in seconds.", expiry::expiretime).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO", "access"], &[]),
    spec("pexpiretime", 2, Read, Keys::ONE, Generic, "Answers a key's expiry as a Unix time in milliseconds.", expiry::pexpiretime).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO", "access"], &[]),
    spec("append", 3, Write, Keys::ONE, String, "Appends to a key's value; answers the new length.", strings::append).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "insert"], &[]),
    spec("setrange", 4, Write, Keys::ONE, String, "Overwrites part of a key's value from an offset.", strings::setrange).meta(&["write", "denyoom"], &["@write", "@string", "@slow"], &["RW", "update"], &[]),
    spec("incrbyfloat", 3, Write, Keys::ONE, String, "Adds a floating-point number to a key's value.", strings::incrbyfloat).meta(&["write", "denyoom", "fast"], &["@write", "@string", "@fast"], &["RW", "access", "update"], &[]),
    spec("strlen", 2, Read, Keys::ONE, String, "Answers the length of a key's value.", strings::strlen).meta(&["readonly", "fast"], &["@read", "@string", "@fast"], &["RO"], &[]),
    spec("getrange", 4, Read, Keys::ONE, String, "Reads part of a key's value.", strings::getrange).meta(&["readonly"], &["@read", "@string", "@slow"], &["RO", "access"], &[]),
    spec("setbit", 4, Write, Keys::ONE, Bitmap, "Sets or clears one bit of a key's value; answers the old bit.", strings::setbit).meta(&["write", "denyoom"], &["@write", "@bitmap", "@slow"], &["RW", "access", "update"], &[]),
    spec("getbit", 3, Read, Keys::ONE, Bitmap, "Reads one bit of a key's value.", strings::getbit).meta(&["readonly", "fast"], &["@read", "@bitmap", "@fast"], &["RO", "access"], &[]),
    spec("bitcount", -2, Read, Keys::ONE, Bitmap, "Counts the set bits of a key's value, or of a range of it.", strings::bitcount).meta(&["readonly"], &["@read", "@bitmap", "@slow"], &["RO", "access"], &[]),
    spec("bitpos", -3, Read, Keys::ONE, Bitmap, "Finds the first set or clear bit of a key's value, or of a range of it.", strings::bitpos).meta(&["readonly"], &["@read", "@bitmap", "@slow"], &["RO", "access"], &[]),
    spec("lcs", -3, Read, Keys { first: 1, last: 2, step: 1 }, String, "Finds the longest common subsequence of two keys' values.", strings::lcs).meta(&["readonly"], &["@read", "@string", "@slow"], &["RO", "access"], &[]),
    spec("type", 2, Read, Keys::ONE, Generic, "Answers the type of a key's value.", strings::type_command).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO"], &[]),
    spec("touch", -2, Read, Keys::ALL, Generic, "Counts the given keys that exist (Corral keeps no access times).", strings::exists).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &["RO"], &["request_policy:multi_shard", "response_policy:agg_sum"]),
    spec("dbsize", 1, Read, Keys::NONE, Server, "Counts the keys of every shard.", introspect::dbsize_command).meta(&["readonly", "fast"], &["@keyspace", "@read", "@fast"], &[], &["request_policy:all_shards", "response_policy:agg_sum"]),
    spec("keys", 2, Read, Keys::NONE, Generic, "Answers every key that matches a glob pattern.", keyspace::keys).meta(&["readonly"], &["@keyspace", "@read", "@slow", "@dangerous"], &[], &["request_policy:all_shards", "nondeterministic_output_order"]),
    spec("scan", -2, Read, Keys::NONE, Generic, "Walks the keys a part at a time from a cursor (MATCH, COUNT, TYPE).", keyspace::scan).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &[], &["nondeterministic_output", "request_policy:special"]),
    spec("randomkey", 1, Read, Keys::NONE, Generic, "Answers a random key.", keyspace::randomkey).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &[], &["request_policy:all_shards", "nondeterministic_output"]),
    spec("flushdb", -1, Write, Keys::NONE, Server, "Removes every key (ASYNC and SYNC are the same).", keyspace::flush).meta(&["write"], &["@keyspace", "@write", "@slow", "@dangerous"], &[], &["request_policy:all_shards", "response_policy:all_succeeded"]),
    spec("flushall", -1, Write, Keys::NONE, Server, "Removes every key of every database (there is one).", keyspace::flush).meta(&["write"], &["@keyspace", "@write", "@slow", "@dangerous"], &[], &["request_policy:all_shards", "response_policy:all_succeeded"]),
    spec("info", -1, Read, Keys::NONE, Server, "Describes the server, by section.", introspect::info_command).meta(&["loading", "stale"], &["@slow", "@dangerous"], &[], &["nondeterministic_output", "request_policy:all_shards", "response_policy:special"]),
    unauthenticated(spec("auth", -2, Read, Keys::NONE, Connection, "Authenticates the connection.", connection::auth_command).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("select", 2, Read, Keys::NONE, Connection, "Selects database 0, the only one.", connection::select).meta(&["loading", "stale", "fast"], &["@fast", "@connection"], &[], &[]),
    spec("multi", 1, Read, Keys::NONE, Transaction, "Starts a transaction: the commands until EXEC are queued.", transaction::multi).meta(&["noscript", "loading", "stale", "fast", "allow_busy"], &["@fast", "@transaction"], &[], &[]),
    spec("exec", 1, Read, Keys::NONE, Transaction, "Runs the queued commands as one transaction (one record in the event log, on any shards).", transaction::exec).meta(&["noscript", "loading", "stale", "skip_slowlog"], &["@slow", "@transaction"], &[], &[]),
    spec("discard", 1, Read, Keys::NONE, Transaction, "Drops the queued commands.", transaction::discard).meta(&["noscript", "loading", "stale", "fast", "allow_busy"], &["@fast", "@transaction"], &[], &[]),
    spec("watch", -2, Read, Keys::ALL, Transaction, "Watches keys: the next EXEC is aborted (a null reply) if one is written or expires first.", transaction::watch).meta(&["noscript", "loading", "stale", "fast", "allow_busy"], &["@fast", "@transaction"], &["RO"], &[]),
    spec("unwatch", 1, Read, Keys::NONE, Transaction, "Forgets the watched keys.", transaction::unwatch).meta(&["noscript", "loading", "stale", "fast", "allow_busy"], &["@fast", "@transaction"], &[], &[]),
    unauthenticated(spec("quit", -1, Read, Keys::NONE, Connection, "Closes the connection after replying.", connection::quit).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("command", -1, Read, Keys::NONE, Server, "Describes the commands.", introspect::command_command).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output_order"]).with_subcommands(&COMMAND),
    spec("config", -2, Read, Keys::NONE, Server, "Reads the server's settings.", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&CONFIG),
    unauthenticated(spec("hello", -1, Read, Keys::NONE, Connection, "Chooses the protocol (RESP2 or RESP3), authenticates, names the connection.", connection::hello_command).meta(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], &["@fast", "@connection"], &[], &[])),
    spec("client", -2, Read, Keys::NONE, Connection, "Names, identifies and describes the connection.", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&CLIENT),
    spec("time", 1, Read, Keys::NONE, Server, "Answers the server's clock: seconds and microseconds.", admin::time).meta(&["loading", "stale", "fast"], &["@fast"], &[], &["nondeterministic_output"]),
    spec("lastsave", 1, Read, Keys::NONE, Server, "Answers when the newest checkpoint was written.", admin::lastsave).meta(&["loading", "stale", "fast"], &["@admin", "@fast", "@dangerous"], &[], &["nondeterministic_output"]),
    spec("bgsave", -1, Read, Keys::NONE, Server, "Checkpoints every shard with new writes.", admin::bgsave).meta(&["admin", "noscript", "no_async_loading"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("save", 1, Read, Keys::NONE, Server, "Checkpoints every shard with new writes and replies once they are written.", admin::save).meta(&["admin", "noscript", "no_async_loading", "no_multi"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("wait", 3, Read, Keys::NONE, Generic, "Waits for replicas: Corral has none.", admin::wait).meta(&["noscript"], &["@slow", "@connection"], &[], &["request_policy:all_shards", "response_policy:agg_min"]),
    spec("slowlog", -2, Read, Keys::NONE, Server, "Reads or clears the log of slow commands.", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&SLOWLOG),
    spec("latency", -2, Read, Keys::NONE, Server, "The latency monitor (off; see INFO latencystats).", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&LATENCY),
    spec("debug", -2, Read, Keys::NONE, Server, "Refused, as Redis refuses it by default.", admin::debug).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("memory", -2, Read, Keys::NONE, Server, "MEMORY USAGE: the bytes a key takes in its shard.", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&MEMORY),
    spec("object", -2, Read, Keys::NONE, Generic, "OBJECT ENCODING: a value's encoding as Redis would choose it.", introspect::container).meta(&[], &["@slow"], &[], &[]).with_subcommands(&OBJECT),
];

/// The subcommands of the containers, each a command of its own (`container|name`).
#[rustfmt::skip]
static CLIENT: [Spec<Handler>; 10] = [
    spec("client|id", 2, Read, Keys::NONE, Connection, "Answers the connection's id.", connection::client_id).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("client|getname", 2, Read, Keys::NONE, Connection, "Answers the connection's name.", connection::client_getname).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("client|setname", 3, Read, Keys::NONE, Connection, "Names the connection.", connection::client_setname).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("client|setinfo", 4, Read, Keys::NONE, Connection, "Notes the client library's name or version.", connection::client_setinfo_command).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("client|info", 2, Read, Keys::NONE, Connection, "Describes the connection.", connection::client_info).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output"]),
    spec("client|list", -2, Read, Keys::NONE, Connection, "Describes every connection.", connection::client_list_command).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous", "@connection"], &[], &["nondeterministic_output"]),
    spec("client|kill", -3, Read, Keys::NONE, Connection, "Closes connections by id, address or type.", connection::client_kill_command).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous", "@connection"], &[], &[]),
    spec("client|no-evict", 3, Read, Keys::NONE, Connection, "Accepted: Corral evicts nothing.", connection::client_flag).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous", "@connection"], &[], &[]),
    spec("client|no-touch", 3, Read, Keys::NONE, Connection, "Accepted: Corral keeps no access times.", connection::client_flag).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("client|reply", 3, Read, Keys::NONE, Connection, "Turns the replies on, off, or off for the next command.", connection::client_reply).meta(&["noscript", "loading", "stale"], &["@slow", "@connection"], &[], &[]),
];

#[rustfmt::skip]
static CONFIG: [Spec<Handler>; 3] = [
    spec("config|get", -3, Read, Keys::NONE, Server, "Reads settings by name or pattern.", introspect::config_get).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &[]),
    spec("config|set", -4, Read, Keys::NONE, Server, "Changes settings that may change at runtime.", introspect::config_set_command).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["request_policy:all_nodes", "response_policy:all_succeeded"]),
    spec("config|resetstat", 2, Read, Keys::NONE, Server, "Starts INFO's counters over.", introspect::config_resetstat).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &[]),
];

#[rustfmt::skip]
static COMMAND: [Spec<Handler>; 6] = [
    spec("command|count", 2, Read, Keys::NONE, Server, "Counts the commands.", introspect::command_count).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("command|info", -2, Read, Keys::NONE, Server, "Describes commands.", introspect::command_info_command).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output_order"]),
    spec("command|list", -2, Read, Keys::NONE, Server, "Lists the command names.", introspect::command_list).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output_order"]),
    spec("command|docs", -2, Read, Keys::NONE, Server, "Documents commands.", introspect::command_docs).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &["nondeterministic_output_order"]),
    spec("command|getkeys", -4, Read, Keys::NONE, Server, "Finds the keys of a command.", introspect::command_getkeys_command).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &[]),
    spec("command|getkeysandflags", -4, Read, Keys::NONE, Server, "Finds the keys of a command and how it uses each.", introspect::command_getkeys_command).meta(&["loading", "stale"], &["@slow", "@connection"], &[], &[]),
];

#[rustfmt::skip]
static SLOWLOG: [Spec<Handler>; 3] = [
    spec("slowlog|get", -2, Read, Keys::NONE, Server, "Answers the newest slow commands.", admin::slowlog_get).meta(&["admin", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["request_policy:all_nodes", "nondeterministic_output"]),
    spec("slowlog|len", 2, Read, Keys::NONE, Server, "Counts the slow log's entries.", admin::slowlog_len).meta(&["admin", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["request_policy:all_nodes", "response_policy:agg_sum", "nondeterministic_output"]),
    spec("slowlog|reset", 2, Read, Keys::NONE, Server, "Empties the slow log.", admin::slowlog_reset).meta(&["admin", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["request_policy:all_nodes", "response_policy:all_succeeded"]),
];

#[rustfmt::skip]
static LATENCY: [Spec<Handler>; 4] = [
    spec("latency|latest", 2, Read, Keys::NONE, Server, "The latest latency events (none: the monitor is off).", admin::latency_events).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["nondeterministic_output", "request_policy:all_nodes", "response_policy:special"]),
    spec("latency|history", 3, Read, Keys::NONE, Server, "An event's history (none: the monitor is off).", admin::latency_events).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["nondeterministic_output", "request_policy:all_nodes", "response_policy:special"]),
    spec("latency|reset", -2, Read, Keys::NONE, Server, "Resets events (none are kept).", admin::latency_reset).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["request_policy:all_nodes", "response_policy:all_succeeded"]),
    spec("latency|doctor", 2, Read, Keys::NONE, Server, "Says where Corral's latencies are reported.", admin::latency_doctor).meta(&["admin", "noscript", "loading", "stale"], &["@admin", "@slow", "@dangerous"], &[], &["nondeterministic_output", "request_policy:all_nodes", "response_policy:special"]),
];

/// The key after the subcommand (MEMORY USAGE key, OBJECT ENCODING key).
const SECOND: Keys = Keys {
    first: 2,
    last: 2,
    step: 1,
};

#[rustfmt::skip]
static MEMORY: [Spec<Handler>; 1] = [
    spec("memory|usage", -3, Read, SECOND, Server, "The bytes a key takes in its shard.", keyspace::memory_usage).meta(&["readonly"], &["@read", "@slow"], &["RO"], &[]),
];

#[rustfmt::skip]
static OBJECT: [Spec<Handler>; 4] = [
    spec("object|encoding", 3, Read, SECOND, Generic, "A value's encoding, as Redis would choose it.", keyspace::object_encoding).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &["RO"], &["nondeterministic_output"]),
    spec("object|refcount", 3, Read, SECOND, Generic, "A value's reference count (1).", keyspace::object_refcount).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &["RO"], &["nondeterministic_output"]),
    spec("object|freq", 3, Read, SECOND, Generic, "Access frequency: not tracked.", keyspace::object_freq).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &["RO"], &["nondeterministic_output"]),
    spec("object|idletime", 3, Read, SECOND, Generic, "Idle time: not kept.", keyspace::object_idletime).meta(&["readonly"], &["@keyspace", "@read", "@slow"], &["RO"], &["nondeterministic_output"]),
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
        assert!(table.find(b"nosuch").is_none());
        for spec in table.specs() {
            // A write routes its keys; one without keys goes to every shard, and says so
            // as Redis' tip does (FLUSHALL).
            if spec.kind == Kind::Write {
                assert!(
                    spec.keys != Keys::NONE || spec.tips.contains(&"request_policy:all_shards"),
                    "{}: a write without keys or an all-shards tip",
                    spec.name
                );
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
                spec.key_flags.contains(&"variable_flags"),
                spec.call_key_flags.is_some(),
                "{}: variable key flags and the function that decides them go together",
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
