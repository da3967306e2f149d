//! The connection commands: PING, ECHO, SELECT, QUIT, AUTH, HELLO, CLIENT.

use crate::front::resp::{reply, Proto};
use crate::front::session::{eq, Session, Step, REDIS_COMPAT_VERSION};

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
            reply::int(out, s.id as i64);
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
    s.name = (!name.is_empty()).then(|| name.to_vec());
    Ok(())
}

pub(super) fn client(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
    let arity_ok = match sub.as_str() {
        "id" | "getname" | "info" => args.len() == 2,
        "setname" => args.len() == 3,
        "setinfo" => args.len() == 4,
        "no-evict" | "no-touch" | "reply" => args.len() == 3,
        _ => {
            reply::error(
                out,
                &format!(
                    "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                    String::from_utf8_lossy(args[1])
                ),
            );
            return Step::Done;
        }
    };
    if !arity_ok {
        reply::error(
            out,
            &format!("ERR wrong number of arguments for 'client|{sub}' command"),
        );
        return Step::Done;
    }
    match sub.as_str() {
        "id" => reply::int(out, s.id as i64),
        "getname" => match &s.name {
            Some(n) => reply::bulk(out, n),
            None => reply::null(out, s.proto),
        },
        "setname" => match set_name(s, args[2]) {
            Ok(()) => reply::simple(out, "OK"),
            Err(e) => reply::error(out, e),
        },
        "setinfo" => client_setinfo(s, args[2], args[3], out),
        "info" => {
            let line = format!(
                "id={} name={} db=0 multi=-1 user=default resp={} lib-name={} lib-ver={}\n",
                s.id,
                String::from_utf8_lossy(s.name.as_deref().unwrap_or_default()),
                s.proto.number(),
                String::from_utf8_lossy(&s.lib_name),
                String::from_utf8_lossy(&s.lib_ver),
            );
            reply::verbatim(out, s.proto, line.as_bytes());
        }
        "reply" if eq(args[2], "on") => reply::simple(out, "OK"),
        // Corral evicts nothing and keeps no access times: both are accepted as no-ops.
        "no-evict" | "no-touch" if eq(args[2], "on") || eq(args[2], "off") => {
            reply::simple(out, "OK");
        }
        "reply" => reply::error(
            out,
            "ERR CLIENT REPLY OFF and SKIP are not supported: every command is answered",
        ),
        _ => reply::error(out, "ERR syntax error"),
    }
    Step::Done
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
        s.lib_name = value.to_vec();
    } else {
        s.lib_ver = value.to_vec();
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
