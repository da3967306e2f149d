//! The connection commands: PING, ECHO, SELECT, QUIT, AUTH, HELLO, CLIENT.

use crate::front::clients::Client;
use crate::front::resp::{reply, Proto};
use crate::front::session::{eq, Replies, Session, Step, REDIS_COMPAT_VERSION};

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths may leak; contents do not: every byte of the longer input is visited.
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

pub(super) fn ping(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match args {
        [_] => reply::simple(out, "PONG"),
        [_, msg] => reply::bulk(out, msg),
        _ => return s.arity_error(out),
    }
    Step::Done
}

pub(super) fn echo(_: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::bulk(out, args[1]);
    Step::Done
}

pub(super) fn select(_: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if args[1] == b"0" {
        reply::simple(out, "OK");
    } else {
        reply::error(out, "ERR DB index is out of range");
    }
    Step::Done
}

pub(super) fn quit(_: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::simple(out, "OK");
    Step::Close
}

pub(super) fn auth_command(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if args.len() > 3 {
        s.error(out, "ERR syntax error");
        return Step::Done;
    }
    auth(s, args, out);
    Step::Done
}

fn auth(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) {
    let result = match args {
        [_, _] if s.shared.config.requirepass.is_none() => Err(
            "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
        ),
        [_, pass] => authenticate(s, b"default", pass),
        [_, user, pass] => authenticate(s, user, pass),
        _ => unreachable!("the arity and the caller allow 2 or 3 arguments"),
    };
    match result {
        Ok(()) => reply::simple(out, "OK"),
        Err(e) => reply::error(out, e),
    }
}

/// Checks `user` and `pass` as Redis' `default` user: with `--requirepass` the password
/// must match; without one the user has no password and any is accepted. There are no
/// other users.
fn authenticate(s: &mut Session, user: &[u8], pass: &[u8]) -> Result<(), &'static str> {
    let wrong = "WRONGPASS invalid username-password pair or user is disabled.";
    if user != b"default" {
        return Err(wrong);
    }
    match s.shared.config.requirepass.as_deref() {
        Some(expected) if !constant_time_eq(pass, expected.as_bytes()) => Err(wrong),
        _ => {
            s.authed = true;
            Ok(())
        }
    }
}

pub(super) fn hello_command(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    hello(s, args, out);
    Step::Done
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: checks everything first, then
/// authenticates, names the connection and switches its protocol (the reply is already in
/// the new one). No version keeps the current protocol.
fn hello(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) {
    let mut proto = s.proto;
    if let Some(version) = args.get(1) {
        proto = match corral_worker::machine::parse_i64(version) {
            None => {
                reply::error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                );
                return;
            }
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => {
                reply::error(out, "NOPROTO unsupported protocol version");
                return;
            }
        };
    }
    let (mut credentials, mut name) = (None, None);
    let mut i = 2;
    while i < args.len() {
        let left = args.len() - i - 1;
        if eq(args[i], "auth") && left >= 2 {
            credentials = Some((args[i + 1], args[i + 2]));
            i += 3;
        } else if eq(args[i], "setname") && left >= 1 {
            name = Some(args[i + 1]);
            i += 2;
        } else {
            reply::error(
                out,
                &format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(args[i])
                ),
            );
            return;
        }
    }
    if let Some((user, pass)) = credentials {
        if let Err(e) = authenticate(s, user, pass) {
            reply::error(out, e);
            return;
        }
    }
    if !s.authed {
        reply::error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if let Some(name) = name {
        if let Err(e) = set_name(s, name) {
            reply::error(out, e);
            return;
        }
    }
    s.proto = proto;
    s.client.set_proto(proto.number() as u8);
    reply::map(out, proto, 7);
    for (key, value) in [
        ("server", "redis"),
        ("version", REDIS_COMPAT_VERSION),
        ("mode", "standalone"),
        ("role", "master"),
    ] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
        if key == "version" {
            reply::bulk(out, b"proto");
            reply::int(out, proto.number());
            reply::bulk(out, b"id");
            reply::int(out, s.client.id as i64);
        }
    }
    reply::bulk(out, b"modules");
    reply::array(out, 0);
}

/// A client name as Redis accepts one: printable ASCII without spaces (empty clears it).
fn set_name(s: &mut Session, name: &[u8]) -> Result<(), &'static str> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    s.client.update_names(|n| n.name = name.to_vec());
    Ok(())
}

pub(super) fn client_id(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    reply::int(out, s.client.id as i64);
    Step::Done
}

pub(super) fn client_getname(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match s.client.names().name {
        n if n.is_empty() => reply::null(out, s.proto),
        n => reply::bulk(out, &n),
    }
    Step::Done
}

pub(super) fn client_setname(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    match set_name(s, args[2]) {
        Ok(()) => reply::simple(out, "OK"),
        Err(e) => reply::error(out, e),
    }
    Step::Done
}

pub(super) fn client_info(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let line = client_line(s, &s.client);
    reply::verbatim(out, s.proto, line.as_bytes());
    Step::Done
}

pub(super) fn client_list_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    client_list(s, &args[2..], out);
    Step::Done
}

pub(super) fn client_kill_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    client_kill(s, &args[2..], out);
    Step::Done
}

pub(super) fn client_setinfo_command(
    s: &mut Session,
    args: &[&[u8]],
    out: &mut Vec<u8>,
    _: usize,
) -> Step {
    client_setinfo(s, args[2], args[3], out);
    Step::Done
}

/// CLIENT REPLY ON|OFF|SKIP: OFF and SKIP drop this command's reply too.
pub(super) fn client_reply(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let mode = if eq(args[2], "on") {
        Replies::On
    } else if eq(args[2], "off") {
        Replies::Off
    } else if eq(args[2], "skip") {
        Replies::SkipNext
    } else {
        reply::error(out, "ERR syntax error");
        return Step::Done;
    };
    s.replies = mode;
    s.silent = mode != Replies::On;
    reply::simple(out, "OK");
    Step::Done
}

/// CLIENT NO-EVICT and NO-TOUCH ON|OFF: accepted as no-ops (Corral evicts nothing and
/// keeps no access times).
pub(super) fn client_flag(_: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    if eq(args[2], "on") || eq(args[2], "off") {
        reply::simple(out, "OK");
    } else {
        reply::error(out, "ERR syntax error");
    }
    Step::Done
}

/// A connection as CLIENT LIST and CLIENT INFO describe it, with the fields Corral
/// knows (no pub/sub and no MULTI yet: those counts are 0 and -1).
fn client_line(s: &Session, c: &Client) -> String {
    let names = c.names();
    let (age, idle) = c.age_and_idle();
    format!(
        "id={} addr={} laddr={} fd={} name={} age={age} idle={idle} flags=N db=0 sub=0 psub=0 \
         ssub=0 multi=-1 cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
        c.id,
        c.addr,
        c.laddr,
        c.fd,
        String::from_utf8_lossy(&names.name),
        // The asking connection's own last command is the one running now.
        s.table.label(if c.id == s.client.id {
            s.command
        } else {
            c.last_command()
        }),
        c.proto(),
        String::from_utf8_lossy(&names.lib_name),
        String::from_utf8_lossy(&names.lib_ver),
    )
}

/// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...].
fn client_list(s: &Session, args: &[&[u8]], out: &mut Vec<u8>) {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    let mut i = 0;
    while i < args.len() {
        if eq(args[i], "type") && i + 1 < args.len() {
            let t = String::from_utf8_lossy(args[i + 1]).to_ascii_lowercase();
            match t.as_str() {
                "normal" => only_normal = true,
                "master" | "replica" | "slave" | "pubsub" => only_normal = false,
                _ => {
                    reply::error(out, &format!("ERR Unknown client type '{t}'"));
                    return;
                }
            }
            i += 2;
        } else if eq(args[i], "id") && i + 1 < args.len() {
            let mut list = Vec::new();
            for a in &args[i + 1..] {
                match corral_worker::machine::parse_i64(a) {
                    Some(n) if n > 0 => list.push(n as u64),
                    _ => {
                        reply::error(out, "ERR Invalid client ID");
                        return;
                    }
                }
            }
            ids = Some(list);
            i = args.len();
        } else {
            reply::error(out, "ERR syntax error");
            return;
        }
    }
    let mut text = String::new();
    if only_normal {
        for c in s.shared.clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                text.push_str(&client_line(s, &c));
            }
        }
    }
    reply::verbatim(out, s.proto, text.as_bytes());
}

/// CLIENT KILL ip:port (the old form: `+OK` or an error) or CLIENT KILL filter value ...
/// with ID, ADDR, LADDR, TYPE, USER and SKIPME (the number killed).
fn client_kill(s: &Session, args: &[&[u8]], out: &mut Vec<u8>) {
    if let [addr] = args {
        let target = s
            .shared
            .clients
            .all()
            .into_iter()
            .find(|c| c.addr.as_bytes() == *addr);
        match target {
            Some(c) => {
                c.kill();
                reply::simple(out, "OK");
            }
            None => reply::error(out, "ERR No such client"),
        }
        return;
    }
    if args.len() % 2 != 0 {
        reply::error(out, "ERR syntax error");
        return;
    }
    let (mut id, mut addr, mut laddr, mut skipme, mut none) = (None, None, None, true, false);
    for pair in args.chunks_exact(2) {
        let (filter, value) = (pair[0], pair[1]);
        if eq(filter, "id") {
            match corral_worker::machine::parse_i64(value) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => {
                    reply::error(out, "ERR client-id should be greater than 0");
                    return;
                }
            }
        } else if eq(filter, "addr") {
            addr = Some(value);
        } else if eq(filter, "laddr") {
            laddr = Some(value);
        } else if eq(filter, "type") {
            let t = String::from_utf8_lossy(value).to_ascii_lowercase();
            match t.as_str() {
                "normal" => {}
                "master" | "replica" | "slave" | "pubsub" => none = true,
                _ => {
                    reply::error(out, &format!("ERR Unknown client type '{t}'"));
                    return;
                }
            }
        } else if eq(filter, "user") {
            none |= value != b"default";
        } else if eq(filter, "skipme") {
            if eq(value, "yes") {
                skipme = true;
            } else if eq(value, "no") {
                skipme = false;
            } else {
                reply::error(out, "ERR syntax error");
                return;
            }
        } else {
            reply::error(out, "ERR syntax error");
            return;
        }
    }
    let mut killed = 0;
    if !none {
        for c in s.shared.clients.all() {
            let matches = id.is_none_or(|id| c.id == id)
                && addr.is_none_or(|a| c.addr.as_bytes() == a)
                && laddr.is_none_or(|a| c.laddr.as_bytes() == a)
                && !(skipme && c.id == s.client.id);
            if matches && c.kill() {
                killed += 1;
            }
        }
    }
    reply::int(out, killed);
}

/// CLIENT SETINFO lib-name|lib-ver value, as Redis 7.2 has it.
fn client_setinfo(s: &mut Session, attr: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let is_name = eq(attr, "lib-name");
    if !is_name && !eq(attr, "lib-ver") {
        reply::error(
            out,
            &format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ),
        );
        return;
    }
    if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        let what = if is_name { "lib-name" } else { "lib-ver" };
        reply::error(
            out,
            &format!("ERR {what} cannot contain spaces, newlines or special characters."),
        );
        return;
    }
    if is_name {
        s.client.update_names(|n| n.lib_name = value.to_vec());
    } else {
        s.client.update_names(|n| n.lib_ver = value.to_vec());
    }
    reply::simple(out, "OK");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
