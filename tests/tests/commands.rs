//! The RESP command set against Redis semantics, pipelining, AUTH and bad input, on the
//! real binary.

use std::time::Duration;

use corral_tests::{raw_exchange, Corral};
use redis::Value;

fn check(con: &mut redis::Connection, args: &[&str], expected: Result<Value, &str>) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let got: redis::RedisResult<Value> = cmd.query(con);
    match (&got, &expected) {
        (Ok(v), Ok(e)) => assert_eq!(v, e, "{args:?}"),
        (Err(err), Err(e)) => {
            let text = err.to_string();
            assert!(text.contains(e), "{args:?}: error {text:?} lacks {e:?}");
        }
        _ => panic!("{args:?}: got {got:?}, expected {expected:?}"),
    }
}

fn ok() -> Result<Value, &'static str> {
    Ok(Value::Okay)
}

fn int(n: i64) -> Result<Value, &'static str> {
    Ok(Value::Int(n))
}

fn bulk(s: &str) -> Result<Value, &'static str> {
    Ok(Value::BulkString(s.as_bytes().to_vec()))
}

#[test]
fn command_set_follows_redis() {
    let corral = Corral::start(3, &[]);
    let mut c = corral.client();
    let cases: &[(&[&str], Result<Value, &str>)] = &[
        (&["PING"], Ok(Value::SimpleString("PONG".into()))),
        (&["PING", "hi"], bulk("hi")),
        (&["ECHO", "hello"], bulk("hello")),
        (&["SELECT", "0"], ok()),
        (&["SELECT", "1"], Err("DB index is out of range")),
        (&["GET", "missing"], Ok(Value::Nil)),
        (&["SET", "k", "v1"], ok()),
        (&["GET", "k"], bulk("v1")),
        (&["SET", "k", "v2", "NX"], Ok(Value::Nil)),
        (&["SET", "k", "v3", "XX"], ok()),
        (&["SET", "other", "x", "XX"], Ok(Value::Nil)),
        (&["SET", "k", "v", "NX", "XX"], Err("syntax error")),
        (&["SET", "k", "v", "EX", "0"], Err("invalid expire time")),
        (&["GET", "k"], bulk("v3")),
        (&["SET", "empty", ""], ok()),
        (&["GET", "empty"], bulk("")),
        (&["EXISTS", "k", "empty", "nope", "k"], int(3)),
        (&["DEL", "k", "nope"], int(1)),
        (&["DEL", "k"], int(0)),
        (&["INCR", "n"], int(1)),
        (&["INCRBY", "n", "41"], int(42)),
        (&["DECR", "n"], int(41)),
        (&["DECRBY", "n", "-9"], int(50)),
        (
            &["INCRBY", "n", "x"],
            Err("value is not an integer or out of range"),
        ),
        (&["SET", "s", "abc"], ok()),
        (
            &["INCR", "s"],
            Err("value is not an integer or out of range"),
        ),
        (&["SET", "big", "9223372036854775807"], ok()),
        (
            &["INCR", "big"],
            Err("increment or decrement would overflow"),
        ),
        (
            &["DECRBY", "n", "-9223372036854775808"],
            Err("decrement would overflow"),
        ),
        (&["MSET", "a", "1", "b", "2", "{a}c", "3"], ok()),
        (
            &["MGET", "a", "b", "{a}c", "zz"],
            Ok(Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"2".to_vec()),
                Value::BulkString(b"3".to_vec()),
                Value::Nil,
            ])),
        ),
        (
            &["MSET", "a"],
            Err("wrong number of arguments for 'mset' command"),
        ),
        (&["GET"], Err("wrong number of arguments for 'get' command")),
        (
            &["GET", "a", "b"],
            Err("wrong number of arguments for 'get' command"),
        ),
        (&["NOSUCH"], Err("unknown command 'NOSUCH'")),
        (
            &["CONFIG", "GET", "save"],
            Ok(Value::Array(vec![
                Value::BulkString(b"save".to_vec()),
                Value::BulkString(b"".to_vec()),
            ])),
        ),
        (&["CLIENT", "SETNAME", "tester"], ok()),
        (&["CLIENT", "GETNAME"], bulk("tester")),
        (&["AUTH", "pw"], Err("without any password configured")),
        (&["AUTH", "a", "b", "c"], Err("syntax error")),
        (
            &["PING", "a", "b"],
            Err("wrong number of arguments for 'ping' command"),
        ),
        (&["DEL"], Err("wrong number of arguments for 'del' command")),
        (
            &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
            Ok(Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"b".to_vec()),
            ])),
        ),
        (
            &["COMMAND", "GETKEYS", "PING", "x"],
            Err("The command has no key arguments"),
        ),
        (
            &["COMMAND", "GETKEYS", "GET", "a", "b"],
            Err("Invalid number of arguments specified for command"),
        ),
        (
            &["COMMAND", "GETKEYS", "NOSUCH", "x"],
            Err("Invalid command specified"),
        ),
    ];
    for (args, expected) in cases {
        check(&mut c, args, expected.clone());
    }
    // a, b, {a}c, empty, n, s, big
    check(&mut c, &["DBSIZE"], int(7));
}

#[test]
fn pipelines_keep_order_and_read_their_own_writes() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(i);
        pipe.cmd("INCR").arg(format!("p:{i}"));
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut c).expect("pipeline");
    assert_eq!(replies.len(), 6000);
    for (i, chunk) in replies.chunks(3).enumerate() {
        assert_eq!(chunk[0], Value::Okay);
        assert_eq!(chunk[1], Value::Int(i as i64 + 1));
        assert_eq!(
            chunk[2],
            Value::BulkString((i + 1).to_string().into_bytes())
        );
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 2000);
}

#[test]
fn auth_is_required_when_configured() {
    let corral = Corral::start(1, &["--requirepass", "s3cret"]);
    let mut raw = corral.raw();
    let reply = raw_exchange(
        &mut raw,
        b"GET k\r\nAUTH wrong\r\nAUTH default s3cret\r\nSET k v\r\nGET k\r\nQUIT\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n\
         +OK\r\n+OK\r\n$1\r\nv\r\n+OK\r\n"
    );
    let client =
        redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", corral.port)).unwrap();
    let mut c = client.get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v");

    // HELLO before AUTH: refused without credentials, a wrong password changes nothing
    // (the connection stays RESP2 and unauthenticated), the right one authenticates and
    // switches in one step.
    let mut raw = corral.raw();
    let reply = raw_exchange(
        &mut raw,
        b"HELLO 3\r\nHELLO 3 AUTH default nope\r\nGET k\r\nHELLO 3 AUTH default s3cret SETNAME app\r\n\
          GET missing\r\nCLIENT GETNAME\r\nQUIT\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&reply);
    let mut parts = text.split("\r\n");
    assert!(
        parts
            .next()
            .unwrap()
            .starts_with("-NOAUTH HELLO must be called"),
        "{text}"
    );
    assert_eq!(
        parts.next(),
        Some("-WRONGPASS invalid username-password pair or user is disabled."),
        "{text}"
    );
    assert_eq!(
        parts.next(),
        Some("-NOAUTH Authentication required."),
        "{text}"
    );
    assert_eq!(parts.next(), Some("%7"), "{text}");
    assert!(
        text.ends_with("_\r\n$3\r\napp\r\n+OK\r\n"),
        "RESP3 null, the name, QUIT: {text}"
    );
}

#[test]
fn bad_input_gets_an_error_and_hurts_nobody_else() {
    let corral = Corral::start(2, &["--max-value-bytes", "1KiB", "--ring-bytes", "64KiB"]);
    let mut bystander = corral.client();
    let _: () = redis::cmd("SET")
        .arg("safe")
        .arg("1")
        .query(&mut bystander)
        .unwrap();

    // A client that sends half a frame and stalls blocks nobody.
    let mut staller = corral.raw();
    std::io::Write::write_all(&mut staller, b"*3\r\n$3\r\nSET\r\n$1\r\nk").unwrap();

    for (input, expected) in [
        (
            &b"*x\r\n"[..],
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            // Past Redis' proto-max-bulk-len (512 MB).
            b"*2\r\n$3\r\nGET\r\n$999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            "-ERR Protocol error: bulk string is not terminated by CRLF\r\n",
        ),
    ] {
        let mut raw = corral.raw();
        let reply = raw_exchange(&mut raw, input, Duration::from_secs(5));
        assert_eq!(String::from_utf8_lossy(&reply), expected, "input {input:?}");
    }
    // A value over the limit that still parses (limit is the larger of key and value).
    let big = "x".repeat(1025);
    let err = redis::cmd("SET")
        .arg("k")
        .arg(&big)
        .query::<()>(&mut bystander)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exceeds") || err.contains("Protocol error"),
        "{err}"
    );

    let mut bystander = corral.client();
    let v: i64 = redis::cmd("INCR")
        .arg("safe")
        .query(&mut bystander)
        .unwrap();
    assert_eq!(v, 2);
    drop(staller);
}

#[test]
fn bgsave_checkpoints_every_shard_and_lastsave_and_time_follow_the_clock() {
    let corral = Corral::start(2, &["--checkpoint-interval", "1h"]);
    let mut c = corral.client();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (secs, micros): (String, String) = redis::cmd("TIME").query(&mut c).unwrap();
    let secs: i64 = secs.parse().unwrap();
    assert!((secs - now()).abs() <= 2, "TIME {secs} vs {}", now());
    assert!(micros.parse::<u32>().unwrap() < 1_000_000);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let dir = corral.data_dir.join("checkpoints");
    let checkpointed = |w: u32| {
        std::fs::read_dir(dir.join(w.to_string()))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    };
    assert!(
        !checkpointed(0) && !checkpointed(1),
        "no checkpoint before BGSAVE"
    );
    let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    let started: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(started, "Background saving started");
    // Each shard writes a checkpoint of its writes.
    corral.wait_until("both shards checkpointed", Duration::from_secs(20), || {
        checkpointed(0) && checkpointed(1)
    });
    let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(
        after >= before && (after - now()).abs() <= 2,
        "{before} -> {after}"
    );
}

#[test]
fn save_replies_once_every_shard_holds_its_writes_in_a_checkpoint() {
    let mut corral = Corral::start(2, &["--checkpoint-interval", "1h"]);
    let mut c = corral.client();
    // Nothing written yet: nothing to save, done at once.
    check(&mut c, &["SAVE"], ok());
    check(
        &mut c,
        &["SAVE", "now"],
        Err("wrong number of arguments for 'save'"),
    );
    let keys: Vec<String> = (0..2)
        .map(|s| corral_tests::key_on_shard(s, 2, "save"))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        check(&mut c, &["SET", key, &i.to_string()], ok());
    }
    let dir = corral.data_dir.join("checkpoints");
    let newest = |w: u32| -> u64 {
        std::fs::read_dir(dir.join(w.to_string()))
            .map(|d| {
                d.filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".ckpt")?
                        .parse()
                        .ok()
                })
                .max()
                .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    assert_eq!((newest(0), newest(1)), (0, 0), "no checkpoint before SAVE");
    // The reply waits for the checkpoints: they are on disk when it arrives.
    check(&mut c, &["SAVE"], ok());
    let (first0, first1) = (newest(0), newest(1));
    assert!(first0 > 0 && first1 > 0, "{first0} {first1}");
    // A write to shard 1 only: the next SAVE checkpoints shard 1 again, and shard 0 not.
    check(&mut c, &["SET", &keys[1], "later"], ok());
    check(&mut c, &["SAVE"], ok());
    assert_eq!(newest(0), first0);
    assert!(newest(1) > first1, "{} after {first1}", newest(1));

    // A checkpoint that cannot be written fails SAVE with the shard, and loses nothing.
    check(&mut c, &["SET", &keys[0], "unsaved"], ok());
    std::fs::remove_dir_all(dir.join("0")).unwrap();
    check(&mut c, &["SAVE"], Err("checkpoint of shard 0 failed"));
    std::fs::create_dir(dir.join("0")).unwrap();
    check(&mut c, &["SAVE"], ok());

    // After SAVE a crash replays nothing: the checkpoints hold every write.
    let data_dir = corral.data_dir.clone();
    let restarted = Corral::start_in(
        corral.crash(),
        &data_dir,
        2,
        &["--checkpoint-interval", "1h"],
    );
    let mut c = restarted.client();
    let values: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    assert_eq!(values, ["unsaved", "later"]);
    // The log holds both runs: the restart's lines follow its last start.
    let log = restarted.log();
    let run = &log[log.rfind("\"supervisor starting\"").unwrap()..];
    let ready: Vec<&str> = run
        .lines()
        .filter(|l| l.contains("\"worker ready\"") && l.contains("\"component\":\"lifecycle\""))
        .collect();
    assert_eq!(ready.len(), 2, "{run}");
    assert!(
        ready.iter().all(|l| l.contains("\"replayed\":0")),
        "{ready:?}"
    );
}

#[test]
fn client_list_shows_every_connection_and_client_kill_closes_one() {
    let corral = Corral::start(1, &[]);
    let mut a = corral.client();
    let mut b = corral.client();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("victim")
        .query(&mut b)
        .unwrap();
    let b_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut b).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut b).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut a).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let victim = lines
        .iter()
        .find(|l| l.contains("name=victim"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        victim.starts_with(&format!("id={b_id} addr=127.0.0.1:")),
        "{victim}"
    );
    assert!(victim.contains(" cmd=get "), "{victim}");
    assert!(victim.contains(" resp=2 "), "{victim}");
    let me = lines
        .iter()
        .find(|l| !l.contains("name=victim"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        me.contains(" cmd=client|list "),
        "the asking connection runs CLIENT LIST: {me}"
    );
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(b_id)
        .query(&mut a)
        .unwrap();
    assert_eq!(killed, 1);
    // The killed connection is closed by its own event loop.
    assert!(redis::cmd("PING").query::<String>(&mut b).is_err());
    corral.wait_until("the killed client is gone", Duration::from_secs(10), || {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut a).unwrap();
        list.lines().count() == 1
    });
    // SKIPME yes (the default): a connection does not kill itself by a filter.
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut a).unwrap();
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(me)
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn info_counts_commands_errors_and_key_reads_and_resetstat_starts_them_over() {
    let corral = Corral::start(2, &[]);
    let mut c = corral.client();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert!(redis::cmd("NOSUCH").query::<()>(&mut c).is_err());
    assert!(redis::cmd("AUTH")
        .arg("bob")
        .arg("x")
        .query::<()>(&mut c)
        .is_err());
    assert!(redis::cmd("INCR").arg("k").query::<()>(&mut c).is_err());
    let _: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    let info = |c: &mut redis::Connection, section: &str| -> String {
        redis::cmd("INFO").arg(section).query(c).unwrap()
    };
    let field = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::to_owned)
    };
    let stats = info(&mut c, "stats");
    assert_eq!(
        field(&stats, "keyspace_hits").as_deref(),
        Some("1"),
        "{stats}"
    );
    assert_eq!(
        field(&stats, "keyspace_misses").as_deref(),
        Some("1"),
        "{stats}"
    );
    assert_eq!(
        field(&stats, "total_error_replies").as_deref(),
        Some("3"),
        "{stats}"
    );
    let errors = info(&mut c, "errorstats");
    assert!(errors.starts_with("# Errorstats\r\n"), "{errors}");
    assert_eq!(
        field(&errors, "errorstat_ERR").as_deref(),
        Some("count=2"),
        "{errors}"
    );
    assert_eq!(
        field(&errors, "errorstat_WRONGPASS").as_deref(),
        Some("count=1"),
        "{errors}"
    );
    let commands = info(&mut c, "commandstats");
    let get = field(&commands, "cmdstat_get").unwrap_or_else(|| panic!("{commands}"));
    assert!(get.starts_with("calls=2,usec="), "{get}");
    assert!(get.ends_with(",rejected_calls=0,failed_calls=0"), "{get}");
    let incr = field(&commands, "cmdstat_incr").unwrap_or_else(|| panic!("{commands}"));
    assert!(incr.ends_with("failed_calls=1"), "{incr}");
    // Subcommands are counted apart, as Redis counts them.
    let client_id = field(&commands, "cmdstat_client|id").unwrap_or_else(|| panic!("{commands}"));
    assert!(client_id.starts_with("calls=1,"), "{client_id}");
    assert!(!commands.contains("cmdstat_client:"), "{commands}");
    // Sections: the default has no commandstats; `all` has every one; names in any case.
    let default = info(&mut c, "default");
    assert!(default.contains("# Keyspace\r\ndb0:keys=1,"), "{default}");
    assert!(!default.contains("# Commandstats"), "{default}");
    let all = info(&mut c, "ALL");
    for section in [
        "Server",
        "Clients",
        "Memory",
        "Persistence",
        "Stats",
        "Replication",
        "CPU",
        "Commandstats",
        "Errorstats",
        "Latencystats",
        "Cluster",
        "Keyspace",
        "Corral",
    ] {
        assert!(
            all.contains(&format!("# {section}\r\n")),
            "{section} missing from INFO all"
        );
    }
    let two: String = redis::cmd("INFO")
        .arg("server")
        .arg("clients")
        .query(&mut c)
        .unwrap();
    assert!(
        two.starts_with("# Server\r\n") && two.contains("\r\n\r\n# Clients\r\n"),
        "{two}"
    );
    assert!(!two.contains("# Memory"), "{two}");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let errors = info(&mut c, "errorstats");
    assert_eq!(errors, "# Errorstats\r\n");
    let stats = info(&mut c, "stats");
    assert_eq!(
        field(&stats, "keyspace_hits").as_deref(),
        Some("0"),
        "{stats}"
    );
}

#[test]
fn config_set_changes_maxclients_and_the_slow_log_at_runtime() {
    let corral = Corral::start(1, &[]);
    let mut c = corral.client();
    // Every command is slow enough for a threshold of 0.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert!(len >= 1, "{len}");
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let text = format!("{entries:?}");
    assert!(text.contains("SLOWLOG") || text.contains("GET"), "{text}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(-1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert_eq!(len, 0, "-1 turns the slow log off");

    // One client at most: the next is refused with Redis' error.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let mut second = corral.raw();
    let reply = raw_exchange(&mut second, b"PING\r\n", Duration::from_secs(5));
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    let max: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut c)
        .unwrap();
    assert_eq!(max, ["maxclients", "1"]);
}

#[test]
fn client_reply_off_and_skip_drop_replies_as_redis_does() {
    let corral = Corral::start(2, &[]);
    let mut s = corral.raw();
    let replies = raw_exchange(
        &mut s,
        b"CLIENT REPLY SKIP\r\nPING\r\nPING\r\nCLIENT REPLY OFF\r\nSET a 1\r\nINCR n\r\nGET a\r\n\
          CLIENT REPLY ON\r\nGET a\r\nGET n\r\nQUIT\r\n",
        Duration::from_secs(10),
    );
    // Checked against redis-server 7.0: SKIP drops its own reply and the next one; OFF
    // drops every reply (the writes still apply) until ON, whose +OK is sent.
    assert_eq!(
        String::from_utf8_lossy(&replies),
        "+PONG\r\n+OK\r\n$1\r\n1\r\n$1\r\n1\r\n+OK\r\n"
    );
}

#[test]
fn a_container_lists_its_subcommands_from_the_table() {
    let corral = Corral::start(1, &[]);
    let mut c = corral.client();
    let help: Vec<String> = redis::cmd("CLIENT").arg("HELP").query(&mut c).unwrap();
    assert_eq!(
        help[0],
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    for sub in ["ID", "GETNAME", "SETNAME", "LIST", "KILL", "REPLY"] {
        assert!(help.iter().any(|l| l == sub), "{sub} missing: {help:?}");
    }
    assert_eq!(
        help.last().map(String::as_str),
        Some("    Print this help.")
    );
    // COMMAND INFO lists a container's subcommands as commands of their own.
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("memory")
        .query(&mut c)
        .unwrap();
    let text = format!("{info:?}");
    assert!(text.contains("memory|usage"), "{text}");
}

#[test]
fn string_writes_answer_values_and_replay_exactly_after_a_crash() {
    let mut corral = Corral::start(2, &["--checkpoint-interval", "1h"]);
    let mut c = corral.client();
    // A value of several MiB comes back through the completion ring whole.
    let big = vec![b'x'; 3 << 20];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let old: Vec<u8> = redis::cmd("GETSET")
        .arg("big")
        .arg("small")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.len(), big.len());
    assert!(old == big);
    let got: Vec<u8> = redis::cmd("GETDEL").arg("big").query(&mut c).unwrap();
    assert_eq!(got, b"small");

    let mut expected = Vec::new();
    for (i, key) in ["s0", "s1", "s2", "s3"].iter().enumerate() {
        let _: i64 = redis::cmd("APPEND")
            .arg(key)
            .arg("abc")
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("SETRANGE")
            .arg(key)
            .arg(5)
            .arg("zz")
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("SETBIT")
            .arg(key)
            .arg(8)
            .arg(1)
            .query(&mut c)
            .unwrap();
        let f: String = redis::cmd("INCRBYFLOAT")
            .arg(format!("f{i}"))
            .arg("0.1")
            .query(&mut c)
            .unwrap();
        let f2: String = redis::cmd("INCRBYFLOAT")
            .arg(format!("f{i}"))
            .arg("0.2")
            .query(&mut c)
            .unwrap();
        assert_eq!(f, "0.1");
        expected.push((key.to_string(), f2));
    }
    let before: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&["s0", "s1", "s2", "s3", "f0", "f1", "f2", "f3"])
        .query(&mut c)
        .unwrap();
    let data_dir = corral.data_dir.clone();
    let restarted = Corral::start_in(corral.crash(), &data_dir, 2, &[]);
    let mut c = restarted.client();
    let after: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&["s0", "s1", "s2", "s3", "f0", "f1", "f2", "f3"])
        .query(&mut c)
        .unwrap();
    assert_eq!(after, before, "replayed from the event log");
    let s0 = after[0].clone().unwrap();
    assert_eq!(
        s0, b"a\xe2c\0\0zz",
        "APPEND, SETRANGE (zero padding), SETBIT 8"
    );
    for (i, (_, f)) in expected.iter().enumerate() {
        assert_eq!(after[4 + i].as_deref(), Some(f.as_bytes()));
    }
    let big: Option<Vec<u8>> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(big, None, "GETDEL's delete replays too");
}

#[test]
fn lcs_refuses_a_table_past_its_bound_and_the_connection_goes_on() {
    let corral = Corral::start(1, &[]);
    let mut c = corral.client();
    let long = "ab".repeat(2500);
    let _: () = redis::cmd("MSET")
        .arg("x")
        .arg(&long)
        .arg("y")
        .arg(&long)
        .query(&mut c)
        .unwrap();
    let err = redis::cmd("LCS")
        .arg("x")
        .arg("y")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("transient memory for LCS exceeds 64 MiB"),
        "{err}"
    );
    // 5001 x 101 cells fit: the same connection goes on.
    let _: () = redis::cmd("SET")
        .arg("y")
        .arg("b".repeat(100))
        .query(&mut c)
        .unwrap();
    let common: String = redis::cmd("LCS").arg("x").arg("y").query(&mut c).unwrap();
    assert_eq!(common, "b".repeat(100));
}
