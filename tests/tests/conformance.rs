//! Conformance with Redis, data-driven: one table of commands and the replies Redis
//! documents for them, run in RESP2 and in RESP3 against Corral and, the same table,
//! against a real redis-server (so the table itself is checked against the real thing).
//!
//! A reply is written as tokens that stand for the same value in both protocols: `+OK`,
//! `-ERR ...`, `:5` as sent; `$text` a bulk string; `nil` a null (`$-1` / `_`); `*n` an
//! array of the next `n` replies; `%n` a map of the next `n` pairs (a flat array in RESP2);
//! `~n` a set of `n` (an array in RESP2).
//! `{k}` in a command or a reply is a key prefix unique to the run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::{multibulk, read_reply, Corral, TempDir};

/// A command and the reply Redis gives it.
struct Case {
    command: &'static [&'static str],
    reply: &'static [&'static str],
    /// Redis' reply differs on purpose (Corral has one database).
    corral_only: bool,
}

const fn case(command: &'static [&'static str], reply: &'static [&'static str]) -> Case {
    Case {
        command,
        reply,
        corral_only: false,
    }
}

const fn corral(command: &'static [&'static str], reply: &'static [&'static str]) -> Case {
    Case {
        command,
        reply,
        corral_only: true,
    }
}

const ARITY_PING: &str = "-ERR wrong number of arguments for 'ping' command";

/// In order, on one connection: later cases see the writes of earlier ones.
const CASES: &[Case] = &[
    // Connection.
    case(&["PING"], &["+PONG"]),
    case(&["PING", "hello"], &["$hello"]),
    case(&["PING", "a", "b"], &[ARITY_PING]),
    case(&["ECHO", "x y"], &["$x y"]),
    case(&["SELECT", "0"], &["+OK"]),
    corral(&["SELECT", "1"], &["-ERR DB index is out of range"]),
    case(&["AUTH", "x"], &["-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"]),
    case(&["AUTH", "default", "anything"], &["+OK"]),
    case(&["AUTH", "bob", "x"], &["-WRONGPASS invalid username-password pair or user is disabled."]),
    case(&["AUTH", "a", "b", "c"], &["-ERR syntax error"]),
    case(&["HELLO", "abc"], &["-ERR Protocol version is not an integer or out of range"]),
    case(&["HELLO", "4"], &["-NOPROTO unsupported protocol version"]),
    case(&["HELLO", "1"], &["-NOPROTO unsupported protocol version"]),
    case(&["HELLO", "2", "SETNAME"], &["-ERR Syntax error in HELLO option 'SETNAME'"]),
    case(&["HELLO", "3", "AUTH", "bob", "x"], &["-WRONGPASS invalid username-password pair or user is disabled."]),
    case(&["CLIENT", "GETNAME"], &["nil"]),
    case(&["CLIENT", "SETNAME", "app-1"], &["+OK"]),
    case(&["CLIENT", "GETNAME"], &["$app-1"]),
    case(&["CLIENT", "SETNAME", "a b"], &["-ERR Client names cannot contain spaces, newlines or special characters."]),
    case(&["CLIENT", "SETNAME"], &["-ERR wrong number of arguments for 'client|setname' command"]),
    case(&["CLIENT", "ID", "extra"], &["-ERR wrong number of arguments for 'client|id' command"]),
    case(&["CLIENT", "FOO"], &["-ERR unknown subcommand 'FOO'. Try CLIENT HELP."]),
    case(&["CLIENT", "NO-EVICT", "on"], &["+OK"]),
    case(&["CLIENT", "REPLY", "ON"], &["+OK"]),
    case(&["CLIENT", "REPLY", "FOO"], &["-ERR syntax error"]),
    case(&["CLIENT", "KILL", "1.2.3.4:5"], &["-ERR No such client"]),
    case(&["CLIENT", "KILL", "ID", "abc"], &["-ERR client-id should be greater than 0"]),
    case(&["CLIENT", "KILL", "ID", "999999"], &[":0"]),
    case(&["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "maybe"], &["-ERR syntax error"]),
    case(&["CLIENT", "KILL", "ID"], &["-ERR No such client"]),
    case(&["CLIENT", "LIST", "TYPE", "foo"], &["-ERR Unknown client type 'foo'"]),
    case(&["CLIENT", "LIST", "ID", "x"], &["-ERR Invalid client ID"]),
    // Strings.
    case(&["GET", "{k}missing"], &["nil"]),
    case(&["SET", "{k}a", "v"], &["+OK"]),
    case(&["GET", "{k}a"], &["$v"]),
    case(&["SET", "{k}a", "w", "NX"], &["nil"]),
    case(&["SET", "{k}b", "w", "XX"], &["nil"]),
    case(&["SET", "{k}a", "w", "XX"], &["+OK"]),
    case(&["SET", "{k}a", "w", "NX", "XX"], &["-ERR syntax error"]),
    case(&["SET", "{k}a"], &["-ERR wrong number of arguments for 'set' command"]),
    case(&["MGET", "{k}a", "{k}missing", "{k}a"], &["*3", "$w", "nil", "$w"]),
    case(&["EXISTS", "{k}a", "{k}missing", "{k}a"], &[":2"]),
    case(&["MSET", "{k}m1", "1", "{k}m2", "2"], &["+OK"]),
    case(&["MSET", "{k}m1", "1", "{k}m2"], &["-ERR wrong number of arguments for 'mset' command"]),
    case(&["DEL", "{k}m1", "{k}missing", "{k}m2"], &[":2"]),
    case(&["UNLINK", "{k}a"], &[":1"]),
    case(&["INCR", "{k}n"], &[":1"]),
    case(&["INCRBY", "{k}n", "10"], &[":11"]),
    case(&["DECR", "{k}n"], &[":10"]),
    case(&["DECRBY", "{k}n", "3"], &[":7"]),
    case(&["INCRBY", "{k}n", "abc"], &["-ERR value is not an integer or out of range"]),
    case(&["DECRBY", "{k}n", "-9223372036854775808"], &["-ERR decrement would overflow"]),
    case(&["SET", "{k}s", "text"], &["+OK"]),
    case(&["INCR", "{k}s"], &["-ERR value is not an integer or out of range"]),
    case(&["INCRBY", "{k}n", "9223372036854775807"], &["-ERR increment or decrement would overflow"]),
    case(&["SET", "{k}g", "one", "GET"], &["nil"]),
    case(&["SET", "{k}g", "two", "NX", "GET"], &["$one"]),
    case(&["SET", "{k}g", "three", "XX", "GET"], &["$one"]),
    case(&["GETSET", "{k}g", "four"], &["$three"]),
    case(&["GETSET", "{k}g"], &["-ERR wrong number of arguments for 'getset' command"]),
    // Expiry: absolute times far ahead (2100) or long past, so that replies do not depend
    // on the clock.
    case(&["SET", "{k}e", "v", "EXAT", "4102444800"], &["+OK"]),
    case(&["EXPIRETIME", "{k}e"], &[":4102444800"]),
    case(&["PEXPIRETIME", "{k}e"], &[":4102444800000"]),
    case(&["TTL", "{k}nope"], &[":-2"]),
    case(&["PTTL", "{k}nope"], &[":-2"]),
    case(&["EXPIRETIME", "{k}nope"], &[":-2"]),
    case(&["PEXPIRETIME", "{k}nope"], &[":-2"]),
    case(&["SET", "{k}e", "w", "KEEPTTL"], &["+OK"]),
    case(&["PEXPIRETIME", "{k}e"], &[":4102444800000"]),
    case(&["SET", "{k}e", "w"], &["+OK"]),
    case(&["TTL", "{k}e"], &[":-1"]),
    case(&["PTTL", "{k}e"], &[":-1"]),
    case(&["EXPIRETIME", "{k}e"], &[":-1"]),
    case(&["PEXPIREAT", "{k}e", "4102444800123"], &[":1"]),
    case(&["EXPIRETIME", "{k}e"], &[":4102444800"]),
    case(&["PEXPIRETIME", "{k}e"], &[":4102444800123"]),
    case(&["PEXPIREAT", "{k}e", "4102444800500", "GT"], &[":1"]),
    case(&["EXPIRETIME", "{k}e"], &[":4102444801"]),
    case(&["PEXPIREAT", "{k}e", "4102444800000", "GT"], &[":0"]),
    case(&["PEXPIREAT", "{k}e", "4102444800000", "LT"], &[":1"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "NX"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "XX"], &[":1"]),
    case(&["PERSIST", "{k}e"], &[":1"]),
    case(&["PERSIST", "{k}e"], &[":0"]),
    case(&["PERSIST", "{k}nope"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "XX"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "GT"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "XX", "LT"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "xx", "GT"], &[":0"]),
    case(&["EXPIREAT", "{k}e", "4102444900", "lt"], &[":1"]),
    case(&["EXPIREAT", "{k}e", "4102444800", "XX", "LT"], &[":1"]),
    case(&["EXPIREAT", "{k}e", "4102444850", "XX", "GT"], &[":1"]),
    case(&["EXPIRETIME", "{k}e"], &[":4102444850"]),
    case(&["EXPIREAT", "{k}e", "4102444800", "NX", "XX"], &["-ERR NX and XX, GT or LT options at the same time are not compatible"]),
    case(&["EXPIREAT", "{k}e", "4102444800", "NX", "LT"], &["-ERR NX and XX, GT or LT options at the same time are not compatible"]),
    case(&["EXPIREAT", "{k}e", "4102444800", "GT", "LT"], &["-ERR GT and LT options at the same time are not compatible"]),
    case(&["EXPIREAT", "{k}e", "4102444800", "FOO"], &["-ERR Unsupported option FOO"]),
    case(&["EXPIRE", "{k}e", "abc"], &["-ERR value is not an integer or out of range"]),
    case(&["EXPIRE", "{k}e", "abc", "FOO"], &["-ERR Unsupported option FOO"]),
    case(&["EXPIRE", "{k}e", "9223372036854775807"], &["-ERR invalid expire time in 'expire' command"]),
    case(&["PEXPIRE", "{k}e", "9223372036854775807"], &["-ERR invalid expire time in 'pexpire' command"]),
    case(&["EXPIREAT", "{k}e", "-9223372036854775807"], &["-ERR invalid expire time in 'expireat' command"]),
    case(&["EXPIRE", "{k}nope", "100"], &[":0"]),
    case(&["EXPIRE", "{k}e"], &["-ERR wrong number of arguments for 'expire' command"]),
    case(&["TTL", "{k}e", "x"], &["-ERR wrong number of arguments for 'ttl' command"]),
    // A time that has come deletes the key.
    case(&["EXPIREAT", "{k}e", "1"], &[":1"]),
    case(&["EXISTS", "{k}e"], &[":0"]),
    case(&["SET", "{k}e", "v"], &["+OK"]),
    case(&["EXPIRE", "{k}e", "-5"], &[":1"]),
    case(&["GET", "{k}e"], &["nil"]),
    case(&["SET", "{k}e", "v", "PXAT", "1"], &["+OK"]),
    case(&["GET", "{k}e"], &["nil"]),
    case(&["TTL", "{k}e"], &[":-2"]),
    // SET's expiry options.
    case(&["SET", "{k}e", "v", "EX", "0"], &["-ERR invalid expire time in 'set' command"]),
    case(&["SET", "{k}e", "v", "PX", "-1"], &["-ERR invalid expire time in 'set' command"]),
    case(&["SET", "{k}e", "v", "EX", "x"], &["-ERR value is not an integer or out of range"]),
    case(&["SET", "{k}e", "v", "EX", "9223372036854775807"], &["-ERR invalid expire time in 'set' command"]),
    case(&["SET", "{k}e", "v", "EX", "10", "PX", "100"], &["-ERR syntax error"]),
    case(&["SET", "{k}e", "v", "KEEPTTL", "EXAT", "4102444800"], &["-ERR syntax error"]),
    case(&["SET", "{k}e", "v", "EXAT", "4102444800", "KEEPTTL"], &["-ERR syntax error"]),
    case(&["SET", "{k}e", "v", "EX"], &["-ERR syntax error"]),
    case(&["SET", "{k}e", "v", "PERSIST"], &["-ERR syntax error"]),
    case(&["SET", "{k}e", "v", "exat", "1", "EXAT", "4102444800", "GET"], &["nil"]),
    case(&["EXPIRETIME", "{k}e"], &[":4102444800"]),
    case(&["SET", "{k}e", "w", "XX", "PXAT", "4102444800999", "GET"], &["$v"]),
    case(&["PEXPIRETIME", "{k}e"], &[":4102444800999"]),
    case(&["SET", "{k}e", "x", "EX", "0", "GET"], &["-ERR invalid expire time in 'set' command"]),
    case(&["SET", "{k}e", "x", "NX", "EXAT", "4102444800"], &["nil"]),
    case(&["GET", "{k}e"], &["$w"]),
    // SETEX, PSETEX.
    case(&["SETEX", "{k}x", "0", "v"], &["-ERR invalid expire time in 'setex' command"]),
    case(&["PSETEX", "{k}x", "-3", "v"], &["-ERR invalid expire time in 'psetex' command"]),
    case(&["SETEX", "{k}x", "v", "v"], &["-ERR value is not an integer or out of range"]),
    case(&["SETEX", "{k}x", "1"], &["-ERR wrong number of arguments for 'setex' command"]),
    case(&["SETEX", "{k}x", "100000", "v"], &["+OK"]),
    case(&["TTL", "{k}x"], &[":100000"]),
    case(&["PSETEX", "{k}x", "100000000", "w"], &["+OK"]),
    case(&["GET", "{k}x"], &["$w"]),
    // GETEX.
    case(&["GETEX", "{k}nope"], &["nil"]),
    case(&["GETEX", "{k}nope", "EX", "0"], &["nil"]),
    case(&["GETEX", "{k}x", "EX", "0"], &["-ERR invalid expire time in 'getex' command"]),
    case(&["GETEX", "{k}x", "PERSIST"], &["$w"]),
    case(&["TTL", "{k}x"], &[":-1"]),
    case(&["GETEX", "{k}x", "EXAT", "4102444800"], &["$w"]),
    case(&["EXPIRETIME", "{k}x"], &[":4102444800"]),
    case(&["GETEX", "{k}x"], &["$w"]),
    case(&["EXPIRETIME", "{k}x"], &[":4102444800"]),
    case(&["GETEX", "{k}x", "PERSIST", "EX", "1"], &["-ERR syntax error"]),
    case(&["GETEX", "{k}x", "KEEPTTL"], &["-ERR syntax error"]),
    case(&["GETEX", "{k}x", "NX"], &["-ERR syntax error"]),
    case(&["GETEX", "{k}x", "EX", "1", "PX", "1"], &["-ERR syntax error"]),
    case(&["GETEX", "{k}x", "PXAT", "1"], &["$w"]),
    case(&["EXISTS", "{k}x"], &[":0"]),
    // Writes that change a value keep its deadline; those that replace it drop it.
    case(&["SET", "{k}n", "1", "EXAT", "4102444800"], &["+OK"]),
    case(&["INCR", "{k}n"], &[":2"]),
    case(&["APPEND", "{k}n", "0"], &[":2"]),
    case(&["SETRANGE", "{k}n", "0", "3"], &[":2"]),
    case(&["INCRBYFLOAT", "{k}n", "1.5"], &["$31.5"]),
    case(&["SETBIT", "{k}n", "0", "0"], &[":0"]),
    case(&["EXPIRETIME", "{k}n"], &[":4102444800"]),
    case(&["GETSET", "{k}n", "x"], &["$31.5"]),
    case(&["TTL", "{k}n"], &[":-1"]),
    case(&["SETNX", "{k}g", "five"], &[":0"]),
    case(&["SETNX", "{k}h", "five"], &[":1"]),
    case(&["GETDEL", "{k}h"], &["$five"]),
    case(&["GETDEL", "{k}h"], &["nil"]),
    case(&["APPEND", "{k}ap", "Hello"], &[":5"]),
    case(&["APPEND", "{k}ap", " World"], &[":11"]),
    case(&["STRLEN", "{k}ap"], &[":11"]),
    case(&["STRLEN", "{k}missing"], &[":0"]),
    case(&["GETRANGE", "{k}ap", "0", "3"], &["$Hell"]),
    case(&["GETRANGE", "{k}ap", "-3", "-1"], &["$rld"]),
    case(&["GETRANGE", "{k}ap", "0", "-1"], &["$Hello World"]),
    case(&["GETRANGE", "{k}ap", "10", "100"], &["$d"]),
    case(&["GETRANGE", "{k}ap", "5", "2"], &["$"]),
    case(&["GETRANGE", "{k}missing", "0", "-1"], &["$"]),
    case(&["GETRANGE", "{k}ap", "x", "1"], &["-ERR value is not an integer or out of range"]),
    case(&["SETRANGE", "{k}ap", "6", "Redis"], &[":11"]),
    case(&["GET", "{k}ap"], &["$Hello Redis"]),
    case(&["SETRANGE", "{k}sr", "0", ""], &[":0"]),
    case(&["EXISTS", "{k}sr"], &[":0"]),
    case(&["SETRANGE", "{k}sr", "-1", "x"], &["-ERR offset is out of range"]),
    case(&["SETRANGE", "{k}sr", "536870911", "xx"], &["-ERR string exceeds maximum allowed size (proto-max-bulk-len)"]),
    case(&["SETBIT", "{k}b", "7", "1"], &[":0"]),
    case(&["SETBIT", "{k}b", "7", "0"], &[":1"]),
    case(&["SETBIT", "{k}b", "1", "1"], &[":0"]),
    case(&["GETBIT", "{k}b", "1"], &[":1"]),
    case(&["GETBIT", "{k}b", "100"], &[":0"]),
    case(&["GET", "{k}b"], &["$@"]),
    case(&["SETBIT", "{k}b", "1", "2"], &["-ERR bit is not an integer or out of range"]),
    case(&["SETBIT", "{k}b", "-1", "1"], &["-ERR bit offset is not an integer or out of range"]),
    case(&["SETBIT", "{k}b", "4294967296", "1"], &["-ERR bit offset is not an integer or out of range"]),
    case(&["SET", "{k}bc", "foobar"], &["+OK"]),
    case(&["BITCOUNT", "{k}bc"], &[":26"]),
    case(&["BITCOUNT", "{k}bc", "0", "0"], &[":4"]),
    case(&["BITCOUNT", "{k}bc", "1", "1"], &[":6"]),
    case(&["BITCOUNT", "{k}bc", "1", "1", "BYTE"], &[":6"]),
    case(&["BITCOUNT", "{k}bc", "5", "30", "BIT"], &[":17"]),
    case(&["BITCOUNT", "{k}bc", "-2", "-1"], &[":7"]),
    case(&["BITCOUNT", "{k}bc", "-1", "-2"], &[":0"]),
    case(&["BITCOUNT", "{k}bc", "1"], &["-ERR syntax error"]),
    case(&["BITCOUNT", "{k}bc", "0", "1", "WORD"], &["-ERR syntax error"]),
    case(&["BITCOUNT", "{k}bc", "a", "1"], &["-ERR value is not an integer or out of range"]),
    case(&["BITCOUNT", "{k}missing"], &[":0"]),
    case(&["SET", "{k}bq", "\0\u{1}\u{7f}"], &["+OK"]),
    case(&["BITPOS", "{k}bq", "0"], &[":0"]),
    case(&["BITPOS", "{k}bq", "1"], &[":15"]),
    case(&["BITPOS", "{k}bq", "1", "2"], &[":17"]),
    case(&["BITPOS", "{k}bq", "1", "2", "-1", "BYTE"], &[":17"]),
    case(&["BITPOS", "{k}bq", "1", "7", "15", "BIT"], &[":15"]),
    case(&["BITPOS", "{k}bq", "0", "15", "-1", "BIT"], &[":16"]),
    case(&["BITPOS", "{k}bq", "0", "17", "-1", "BIT"], &[":-1"]),
    case(&["BITPOS", "{k}bq", "0", "2"], &[":16"]),
    case(&["BITPOS", "{k}bq", "1", "-20", "-30"], &[":-1"]),
    case(&["BITPOS", "{k}missing", "0"], &[":0"]),
    case(&["BITPOS", "{k}missing", "1"], &[":-1"]),
    case(&["BITPOS", "{k}bq", "2"], &["-ERR The bit argument must be 1 or 0."]),
    case(&["BITPOS", "{k}bq", "1", "0", "1", "WORD"], &["-ERR syntax error"]),
    case(&["BITPOS", "{k}bq", "1", "0", "x", "WORD"], &["-ERR syntax error"]),
    case(&["BITPOS", "{k}bq", "1", "0", "x", "BIT"], &["-ERR value is not an integer or out of range"]),
    case(&["MSET", "{k}l1", "ohmytext", "{k}l2", "mynewtext"], &["+OK"]),
    case(&["LCS", "{k}l1", "{k}l2"], &["$mytext"]),
    case(&["LCS", "{k}l1", "{k}l2", "LEN"], &[":6"]),
    case(&["LCS", "{k}l1", "{k}l2", "IDX"], &["%2", "$matches", "*2", "*2", "*2", ":4", ":7", "*2", ":5", ":8", "*2", "*2", ":2", ":3", "*2", ":0", ":1", "$len", ":6"]),
    case(&["LCS", "{k}l1", "{k}l2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"], &["%2", "$matches", "*1", "*3", "*2", ":4", ":7", "*2", ":5", ":8", ":4", "$len", ":6"]),
    case(&["LCS", "{k}l1", "{k}l2", "LEN", "IDX"], &["-ERR If you want both the length and indexes, please just use IDX."]),
    case(&["LCS", "{k}l1", "{k}l2", "FOO"], &["-ERR syntax error"]),
    case(&["LCS", "{k}l1", "{k}missing"], &["$"]),
    case(&["TYPE", "{k}bc"], &["+string"]),
    case(&["TYPE", "{k}missing"], &["+none"]),
    case(&["TOUCH", "{k}bc", "{k}missing", "{k}bc"], &[":2"]),
    case(&["SET", "{k}f", "10.50"], &["+OK"]),
    case(&["INCRBYFLOAT", "{k}f", "0.1"], &["$10.6"]),
    case(&["INCRBYFLOAT", "{k}f", "-5"], &["$5.6"]),
    case(&["SET", "{k}f", "5.0e3"], &["+OK"]),
    case(&["INCRBYFLOAT", "{k}f", "2.0e2"], &["$5200"]),
    case(&["INCRBYFLOAT", "{k}f", "abc"], &["-ERR value is not a valid float"]),
    case(&["INCRBYFLOAT", "{k}ap", "1"], &["-ERR value is not a valid float"]),
    case(&["INCRBYFLOAT", "{k}nf", "1.5"], &["$1.5"]),
    // Introspection.
    case(&["COMMAND", "GETKEYS", "SET", "{k}x", "v"], &["*1", "${k}x"]),
    case(&["COMMAND", "GETKEYS", "MSET", "{k}x", "1", "{k}y", "2"], &["*2", "${k}x", "${k}y"]),
    case(&["COMMAND", "GETKEYS", "ECHO", "x"], &["-ERR The command has no key arguments"]),
    case(&["COMMAND", "GETKEYS", "NOSUCH", "x"], &["-ERR Invalid command specified"]),
    case(&["COMMAND", "GETKEYS", "SET", "k"], &["-ERR Invalid number of arguments specified for command"]),
    case(&["COMMAND", "GETKEYS", "GET"], &["-ERR wrong number of arguments for 'command|getkeys' command"]),
    case(&["COMMAND", "GETKEYS"], &["-ERR wrong number of arguments for 'command|getkeys' command"]),
    case(&["COMMAND", "GETKEYS", "TIME", "x"], &["-ERR The command has no key arguments"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "SET", "{k}x", "v", "NX"], &["*1", "*2", "${k}x", "~2", "+OW", "+update"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "SET", "{k}x", "v", "get"], &["*1", "*2", "${k}x", "~3", "+RW", "+access", "+update"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "MGET", "{k}x", "{k}y"], &["*2", "*2", "${k}x", "~2", "+RO", "+access", "*2", "${k}y", "~2", "+RO", "+access"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "DEL", "{k}x"], &["*1", "*2", "${k}x", "~2", "+RM", "+delete"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "ECHO", "x"], &["-ERR The command has no key arguments"]),
    case(&["COMMAND", "INFO", "get"], &[
        "*1", "*10", "$get", ":2", "~2", "+readonly", "+fast", ":1", ":1", ":1",
        "~3", "+@read", "+@string", "+@fast", "~0",
        "~1", "%3", "$flags", "~2", "+RO", "+access",
        "$begin_search", "%2", "$type", "$index", "$spec", "%1", "$index", ":1",
        "$find_keys", "%2", "$type", "$range", "$spec", "%3", "$lastkey", ":0", "$keystep", ":1", "$limit", ":0",
        "~0",
    ]),
    case(&["COMMAND", "INFO", "nosuch"], &["*1", "nil"]),
    case(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "ech*"], &["*1", "$echo"]),
    case(&["COMMAND", "COUNT", "x"], &["-ERR wrong number of arguments for 'command|count' command"]),
    case(&["COMMAND", "FOO"], &["-ERR unknown subcommand 'FOO'. Try COMMAND HELP."]),
    corral(&["CONFIG", "GET", "databases"], &["%1", "$databases", "$1"]),
    corral(&["CONFIG", "GET", "appendonly"], &["%1", "$appendonly", "$yes"]),
    case(&["CONFIG", "GET", "nosuchparam"], &["%0"]),
    case(&["CONFIG", "SET", "nosuchparam", "x"], &["-ERR Unknown option or number of arguments for CONFIG SET - 'nosuchparam'"]),
    case(&["CONFIG", "FOO"], &["-ERR unknown subcommand 'FOO'. Try CONFIG HELP."]),
    case(&["CONFIG", "SET", "maxclients", "abc"], &["-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"]),
    case(&["CONFIG", "SET", "maxclients", "0"], &["-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive"]),
    case(&["CONFIG", "SET", "slowlog-log-slower-than", "-5"], &["-ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument must be between -1 and 9223372036854775807 inclusive"]),
    case(&["CONFIG", "SET", "slowlog-max-len", "-1"], &["-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument must be between 0 and 9223372036854775807 inclusive"]),
    case(&["CONFIG", "SET", "maxclients"], &["-ERR wrong number of arguments for 'config|set' command"]),
    case(&["CONFIG", "SET", "slowlog-max-len", "100", "maxclients", "5000"], &["+OK"]),
    case(&["CONFIG", "GET", "slowlog-max-len"], &["%1", "$slowlog-max-len", "$100"]),
    case(&["CONFIG", "SET", "slowlog-max-len", "128", "slowlog-log-slower-than", "10000"], &["+OK"]),
    case(&["CONFIG", "GET"], &["-ERR wrong number of arguments for 'config|get' command"]),
    // Administration.
    case(&["WAIT", "0", "0"], &[":0"]),
    case(&["WAIT", "1"], &["-ERR wrong number of arguments for 'wait' command"]),
    case(&["WAIT", "a", "0"], &["-ERR value is not an integer or out of range"]),
    case(&["DEBUG", "SLEEP", "0"], &["-ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server."]),
    case(&["SLOWLOG", "FOO"], &["-ERR unknown subcommand 'FOO'. Try SLOWLOG HELP."]),
    case(&["LATENCY", "LATEST"], &["*0"]),
    case(&["LATENCY", "RESET"], &[":0"]),
    case(&["SET", "{k}hello", "hello"], &["+OK"]),
    case(&["SET", "{k}int", "12345"], &["+OK"]),
    case(&["SET", "{k}raw", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], &["+OK"]),
    case(&["OBJECT", "ENCODING", "{k}hello"], &["$embstr"]),
    case(&["OBJECT", "ENCODING", "{k}int"], &["$int"]),
    case(&["OBJECT", "ENCODING", "{k}raw"], &["$raw"]),
    case(&["OBJECT", "ENCODING", "{k}nosuch"], &["nil"]),
    case(&["OBJECT", "REFCOUNT", "{k}hello"], &[":1"]),
    case(&["OBJECT", "FOO"], &["-ERR unknown subcommand 'FOO'. Try OBJECT HELP."]),
    case(&["MEMORY", "USAGE", "{k}nosuch"], &["nil"]),
    case(&["MEMORY", "FOO"], &["-ERR unknown subcommand 'FOO'. Try MEMORY HELP."]),
    case(&["MEMORY", "USAGE"], &["-ERR wrong number of arguments for 'memory|usage' command"]),
    case(&["OBJECT", "ENCODING"], &["-ERR wrong number of arguments for 'object|encoding' command"]),
    case(&["SLOWLOG", "LEN", "x"], &["-ERR wrong number of arguments for 'slowlog|len' command"]),
    case(&["COMMAND", "GETKEYS", "MEMORY", "USAGE", "{k}hello"], &["*1", "${k}hello"]),
    case(&["COMMAND", "GETKEYS", "OBJECT", "ENCODING", "{k}hello"], &["*1", "${k}hello"]),
    // Unknown commands answer Redis' error and change nothing.
    case(&["NOSUCH", "a", "b"], &["-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "]),    // Transactions (keys on different shards: the prefix is no hash tag).
    case(&["EXEC"], &["-ERR EXEC without MULTI"]),
    case(&["DISCARD"], &["-ERR DISCARD without MULTI"]),
    case(&["MULTI"], &["+OK"]),
    case(&["SET", "{k}t1", "1"], &["+QUEUED"]),
    case(&["INCR", "{k}t1"], &["+QUEUED"]),
    case(&["GET", "{k}t1"], &["+QUEUED"]),
    case(&["SET", "{k}t2", "x"], &["+QUEUED"]),
    case(&["INCR", "{k}t2"], &["+QUEUED"]),
    case(&["MGET", "{k}t1", "{k}t2", "{k}nope"], &["+QUEUED"]),
    case(&["EXPIRETIME", "{k}t1"], &["+QUEUED"]),
    case(&["PING"], &["+QUEUED"]),
    case(&["SET", "{k}t3", "v", "EX", "0"], &["+QUEUED"]),
    case(&["STRLEN", "{k}t2"], &["+QUEUED"]),
    case(&["MULTI"], &["-ERR MULTI calls can not be nested"]),
    case(&["EXEC"], &["*10", "+OK", ":2", "$2", "+OK", "-ERR value is not an integer or out of range", "*3", "$2", "$x", "nil", ":-1", "+PONG", "-ERR invalid expire time in 'set' command", ":1"]),
    case(&["GET", "{k}t1"], &["$2"]),
    case(&["MULTI"], &["+OK"]),
    case(&["EXEC"], &["*0"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR", "{k}t1"], &["+QUEUED"]),
    case(&["DISCARD"], &["+OK"]),
    case(&["GET", "{k}t1"], &["$2"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR", "{k}t1"], &["+QUEUED"]),
    case(&["NOSUCH"], &["-ERR unknown command 'NOSUCH', with args beginning with: "]),
    case(&["INCR", "{k}t1"], &["+QUEUED"]),
    case(&["EXEC"], &["-EXECABORT Transaction discarded because of previous errors."]),
    case(&["GET", "{k}t1"], &["$2"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR"], &["-ERR wrong number of arguments for 'incr' command"]),
    case(&["EXEC"], &["-EXECABORT Transaction discarded because of previous errors."]),
    case(&["MULTI"], &["+OK"]),
    case(&["SAVE"], &["-ERR Command not allowed inside a transaction"]),
    case(&["DISCARD"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["DEL", "{k}t1", "{k}t2"], &["+QUEUED"]),
    case(&["EXISTS", "{k}t1", "{k}t2"], &["+QUEUED"]),
    case(&["SET", "{k}t1", "z"], &["+QUEUED"]),
    case(&["GETDEL", "{k}t1"], &["+QUEUED"]),
    case(&["EXEC"], &["*4", ":2", ":0", "+OK", "$z"]),
    // GETEX without an option reads at its place in the transaction.
    case(&["MULTI"], &["+OK"]),
    case(&["SET", "{k}gx", "v"], &["+QUEUED"]),
    case(&["GETEX", "{k}gx"], &["+QUEUED"]),
    case(&["GETEX", "{k}gx", "EX", "x"], &["+QUEUED"]),
    case(&["GETEX", "{k}gx", "PX", "100000"], &["+QUEUED"]),
    case(&["GETEX", "{k}gy", "EX", "x"], &["+QUEUED"]),
    case(&["EXEC"], &["*5", "+OK", "$v", "-ERR value is not an integer or out of range", "$v", "nil"]),
    // WATCH: a write to a watched key before EXEC (this connection's too) aborts it.
    case(&["WATCH"], &["-ERR wrong number of arguments for 'watch' command"]),
    case(&["WATCH", "{k}w1", "{k}w2"], &["+OK"]),
    case(&["SET", "{k}w1", "x"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR", "{k}w3"], &["+QUEUED"]),
    case(&["EXEC"], &["nil*"]),
    case(&["EXISTS", "{k}w3"], &[":0"]),
    // EXEC unwatched: the next one runs.
    case(&["SET", "{k}w1", "y"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR", "{k}w3"], &["+QUEUED"]),
    case(&["EXEC"], &["*1", ":1"]),
    case(&["WATCH", "{k}w1", "{k}w3"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["INCR", "{k}w3"], &["+QUEUED"]),
    case(&["GET", "{k}w1"], &["+QUEUED"]),
    case(&["EXEC"], &["*2", ":2", "$y"]),
    case(&["WATCH", "{k}w1"], &["+OK"]),
    case(&["UNWATCH"], &["+OK"]),
    case(&["SET", "{k}w1", "z"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["WATCH", "{k}w1"], &["-ERR WATCH inside MULTI is not allowed"]),
    case(&["UNWATCH"], &["+QUEUED"]),
    case(&["GET", "{k}w1"], &["+QUEUED"]),
    case(&["EXEC"], &["*2", "+OK", "$z"]),
    // Commands that read before they write, atomic across shards.
    case(&["MSETNX", "{k}n1", "a", "{k}n2", "b"], &[":1"]),
    case(&["MGET", "{k}n1", "{k}n2"], &["*2", "$a", "$b"]),
    case(&["MSETNX", "{k}n2", "x", "{k}n3", "y"], &[":0"]),
    case(&["EXISTS", "{k}n3"], &[":0"]),
    case(&["MSETNX", "{k}n4", "1", "{k}n5"], &["-ERR wrong number of arguments for 'msetnx' command"]),
    case(&["MSETNX", "{k}n4", "1", "{k}n4", "2"], &[":1"]),
    case(&["GET", "{k}n4"], &["$2"]),
    case(&["RENAME", "{k}r1", "{k}r2"], &["-ERR no such key"]),
    case(&["SET", "{k}r1", "v", "EXAT", "4102444800"], &["+OK"]),
    case(&["RENAME", "{k}r1", "{k}r2"], &["+OK"]),
    case(&["EXISTS", "{k}r1"], &[":0"]),
    case(&["GET", "{k}r2"], &["$v"]),
    case(&["EXPIRETIME", "{k}r2"], &[":4102444800"]),
    case(&["SET", "{k}r3", "w"], &["+OK"]),
    case(&["RENAME", "{k}r2", "{k}r3"], &["+OK"]),
    case(&["GET", "{k}r3"], &["$v"]),
    case(&["EXPIRETIME", "{k}r3"], &[":4102444800"]),
    case(&["RENAME", "{k}r3", "{k}r3"], &["+OK"]),
    case(&["RENAMENX", "{k}r3", "{k}r3"], &[":0"]),
    case(&["RENAMENX", "{k}nokey", "{k}r3"], &["-ERR no such key"]),
    case(&["SET", "{k}r4", "z"], &["+OK"]),
    case(&["RENAMENX", "{k}r3", "{k}r4"], &[":0"]),
    case(&["RENAMENX", "{k}r3", "{k}r5"], &[":1"]),
    case(&["MGET", "{k}r3", "{k}r4", "{k}r5"], &["*3", "nil", "$z", "$v"]),
    case(&["RENAME", "{k}r5"], &["-ERR wrong number of arguments for 'rename' command"]),
    case(&["COMMAND", "GETKEYSANDFLAGS", "RENAME", "a", "b"], &["*2", "*2", "$a", "~3", "+RW", "+access", "+delete", "*2", "$b", "~2", "+OW", "+update"]),
    case(&["COPY", "{k}r5", "{k}c1"], &[":1"]),
    case(&["COPY", "{k}r5", "{k}c1"], &[":0"]),
    case(&["COPY", "{k}r4", "{k}c1", "REPLACE"], &[":1"]),
    case(&["GET", "{k}c1"], &["$z"]),
    case(&["TTL", "{k}c1"], &[":-1"]),
    case(&["COPY", "{k}r5", "{k}c2", "DB", "0"], &[":1"]),
    case(&["EXPIRETIME", "{k}c2"], &[":4102444800"]),
    case(&["GET", "{k}r5"], &["$v"]),
    case(&["COPY", "{k}nokey", "{k}c3"], &[":0"]),
    case(&["COPY", "{k}c1", "{k}c1"], &["-ERR source and destination objects are the same"]),
    case(&["COPY", "{k}c1", "{k}c4", "FOO"], &["-ERR syntax error"]),
    case(&["COPY", "{k}c1", "{k}c4", "DB", "x"], &["-ERR value is not an integer or out of range"]),
    corral(&["COPY", "{k}c1", "{k}c4", "DB", "1"], &["-ERR DB index is out of range"]),
    // Inside MULTI too: EXEC reads their keys first, then runs on what it found.
    case(&["MULTI"], &["+OK"]),
    case(&["RENAME", "{k}c1", "{k}c5"], &["+QUEUED"]),
    case(&["GET", "{k}c5"], &["+QUEUED"]),
    case(&["MSETNX", "{k}c6", "1", "{k}c7", "2"], &["+QUEUED"]),
    case(&["MSETNX", "{k}c2", "1", "{k}c8", "2"], &["+QUEUED"]),
    case(&["COPY", "{k}c2", "{k}c9"], &["+QUEUED"]),
    case(&["RENAMENX", "{k}nokey", "{k}c11"], &["+QUEUED"]),
    case(&["INCR", "{k}c6"], &["+QUEUED"]),
    case(&["EXEC"], &["*7", "+OK", "$z", ":1", ":0", ":1", "-ERR no such key", ":2"]),
    case(&["MGET", "{k}c1", "{k}c5", "{k}c8", "{k}c9"], &["*4", "nil", "$z", "nil", "$v"]),
    corral(&["MULTI"], &["+OK"]),
    corral(&["SET", "{k}c1", "x"], &["+QUEUED"]),
    corral(&["RENAME", "{k}c1", "{k}c10"], &["+QUEUED"]),
    corral(&["EXEC"], &["*2", "+OK", "-ERR RENAME reads a key an earlier command of the transaction writes; run it in a transaction of its own"]),
    // DISCARD unwatches too; a watched key that is only read stays unchanged.
    case(&["WATCH", "{k}w1"], &["+OK"]),
    case(&["MULTI"], &["+OK"]),
    case(&["DISCARD"], &["+OK"]),
    case(&["SET", "{k}w1", "v"], &["+OK"]),
    case(&["WATCH", "{k}w1", "{k}w2"], &["+OK"]),
    case(&["GET", "{k}w1"], &["$v"]),
    case(&["MULTI"], &["+OK"]),
    case(&["EXEC"], &["*0"]),
    // The keyspace (last: FLUSHALL empties it).
    case(&["SET", "{k}pat:hello", "1"], &["+OK"]),
    case(&["SET", "{k}pat:hallo", "2"], &["+OK"]),
    case(&["SET", "{k}pat:h*llo", "3"], &["+OK"]),
    case(&["KEYS", "{k}pat:h[a]llo"], &["*1", "${k}pat:hallo"]),
    case(&["KEYS", "{k}pat:h[^ae]llo"], &["*1", "${k}pat:h*llo"]),
    case(&["KEYS", "{k}pat:h\\*llo"], &["*1", "${k}pat:h*llo"]),
    case(&["KEYS", "{k}pat:h[a-a]l?o"], &["*1", "${k}pat:hallo"]),
    case(&["KEYS", "{k}pat:x*"], &["*0"]),
    case(&["KEYS", "{k}pat:h?llo", "x"], &["-ERR wrong number of arguments for 'keys' command"]),
    case(&["SCAN", "abc"], &["-ERR invalid cursor"]),
    case(&["SCAN", "0", "COUNT", "0"], &["-ERR syntax error"]),
    case(&["SCAN", "0", "COUNT", "x"], &["-ERR value is not an integer or out of range"]),
    case(&["SCAN", "0", "MATCH"], &["-ERR syntax error"]),
    case(&["SCAN", "0", "FOO", "bar"], &["-ERR syntax error"]),
    case(&["RANDOMKEY", "x"], &["-ERR wrong number of arguments for 'randomkey' command"]),
    case(&["FLUSHDB", "extra"], &["-ERR syntax error"]),
    case(&["FLUSHALL", "ASYNC", "SYNC"], &["-ERR syntax error"]),
    case(&["FLUSHALL", "SYNC"], &["+OK"]),
    case(&["DBSIZE"], &[":0"]),
    case(&["RANDOMKEY"], &["nil"]),
    case(&["KEYS", "*"], &["*0"]),
    case(&["SCAN", "0"], &["*2", "$0", "*0"]),
    case(&["SET", "{k}only", "1"], &["+OK"]),
    case(&["RANDOMKEY"], &["${k}only"]),
    case(&["KEYS", "*"], &["*1", "${k}only"]),
    case(&["FLUSHDB", "async"], &["+OK"]),
    case(&["EXISTS", "{k}only"], &[":0"]),
];

/// The RESP bytes `tokens` stand for, in `proto`, with `{k}` replaced by `prefix`.
fn encode(tokens: &[&str], proto: u8, prefix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for token in tokens {
        let token = token.replace("{k}", prefix);
        let (marker, rest) = token.split_at(1);
        match marker {
            "$" => out.extend_from_slice(format!("${}\r\n{rest}\r\n", rest.len()).as_bytes()),
            "%" if proto == 2 => {
                let n: usize = rest.parse().expect("a map size");
                out.extend_from_slice(format!("*{}\r\n", 2 * n).as_bytes());
            }
            "~" if proto == 2 => out.extend_from_slice(format!("*{rest}\r\n").as_bytes()),
            _ if token == "nil*" => {
                out.extend_from_slice(if proto == 2 { b"*-1\r\n" } else { b"_\r\n" })
            }
            _ if token == "nil" => {
                out.extend_from_slice(if proto == 2 { b"$-1\r\n" } else { b"_\r\n" })
            }
            _ => out.extend_from_slice(format!("{token}\r\n").as_bytes()),
        }
    }
    out
}

/// Runs the table on `conn` (a fresh connection) in `proto`; returns the mismatches.
fn run<S: std::io::Read + Write>(
    conn: S,
    reader: S,
    proto: u8,
    only_redis_cases: bool,
) -> Vec<String> {
    let prefix = format!("conf{proto}:");
    let mut writer = conn;
    let mut reader = BufReader::new(reader);
    let mut failures = Vec::new();
    writer
        .write_all(&multibulk(&[b"HELLO", proto.to_string().as_bytes()]))
        .unwrap();
    read_reply(&mut reader).expect("HELLO answered");
    for case in CASES {
        if case.corral_only && only_redis_cases {
            continue;
        }
        let args: Vec<Vec<u8>> = case
            .command
            .iter()
            .map(|a| a.replace("{k}", &prefix).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        writer.write_all(&multibulk(&refs)).unwrap();
        let got = read_reply(&mut reader).unwrap_or_else(|e| format!("<{e}>").into_bytes());
        let want = encode(case.reply, proto, &prefix);
        if got != want {
            failures.push(format!(
                "RESP{proto} {:?}: got {:?}, want {:?}",
                case.command,
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            ));
        }
    }
    failures
}

fn check_corral(corral: &Corral) -> Vec<String> {
    let mut failures = Vec::new();
    for proto in [2, 3] {
        let stream = corral.raw();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = stream.try_clone().unwrap();
        failures.extend(run(stream, reader, proto, false));
    }
    failures
}

#[test]
fn corral_answers_as_redis_documents_in_resp2_and_resp3() {
    let corral = Corral::start(2, &[]);
    let failures = check_corral(&corral);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A redis-server on a unix socket in a temp dir (no TCP port), stopped on drop.
struct RedisServer {
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let dir = TempDir::new("redis");
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&server.socket).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(server)
    }

    fn path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_table_matches_a_real_redis_server() {
    let Some(redis) = RedisServer::start() else {
        corral_tests::cannot_run("redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let mut failures = Vec::new();
    for proto in [2, 3] {
        let stream = UnixStream::connect(redis.path()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = stream.try_clone().unwrap();
        failures.extend(run(stream, reader, proto, true));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The reply reader used above handles every RESP3 type.
#[test]
fn replies_are_read_whole() {
    let raw = b"%1\r\n$1\r\nk\r\n*2\r\n_\r\n=7\r\ntxt:ab\n\r\n+OK\r\n";
    let mut r = BufReader::new(&raw[..]);
    assert_eq!(read_reply(&mut r).unwrap(), &raw[..raw.len() - 5]);
    assert_eq!(read_reply(&mut r).unwrap(), b"+OK\r\n");
    assert!(r.fill_buf().unwrap().is_empty());
}

/// COMMAND INFO, byte for byte as redis-server answers it, for every command Corral has
/// and for subcommands by their full names,
/// except the containers whose subcommands Corral does not list yet (CLIENT, COMMAND,
/// CONFIG, LATENCY, MEMORY, OBJECT, SLOWLOG) and SET (Redis adds a note to its key spec).
#[test]
fn command_info_is_redis_own() {
    let Some(redis) = RedisServer::start() else {
        corral_tests::cannot_run("redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let corral = Corral::start(1, &[]);
    let ask = |stream: &mut dyn std::io::Write, reader: &mut dyn BufRead, args: &[&[u8]]| {
        stream.write_all(&multibulk(args)).unwrap();
        read_reply(reader).unwrap()
    };
    let mut c = corral.raw();
    let mut c_reader = BufReader::new(c.try_clone().unwrap());
    let mut r = UnixStream::connect(redis.path()).unwrap();
    let mut r_reader = BufReader::new(r.try_clone().unwrap());
    let skip = [
        // GETEX's key spec carries a note of Redis' own.
        "set", "getex", "client", "command", "config", "latency", "memory", "object", "slowlog",
    ];
    let list = String::from_utf8(ask(&mut c, &mut c_reader, &[b"COMMAND", b"LIST"])).unwrap();
    let commands = list
        .lines()
        .filter(|l| !l.starts_with(['*', '$']) && !skip.contains(l));
    // And subcommands by their full names (those whose Redis metadata Corral has exactly).
    let subcommands = [
        "memory|usage",
        "object|encoding",
        "config|get",
        "config|set",
        "slowlog|len",
        "client|list",
        "client|kill",
        "command|getkeys",
        "command|getkeysandflags",
        "latency|doctor",
    ];
    let mut compared = 0;
    let mut failures = Vec::new();
    for name in commands.chain(subcommands) {
        let args: [&[u8]; 3] = [b"COMMAND", b"INFO", name.as_bytes()];
        let ours = ask(&mut c, &mut c_reader, &args);
        let theirs = ask(&mut r, &mut r_reader, &args);
        if ours != theirs {
            failures.push(format!(
                "{name}:\n  corral {:?}\n  redis  {:?}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            ));
        }
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} commands compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
