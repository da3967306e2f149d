//! The connection commands: PING, ECHO, SELECT, QUIT, AUTH, HELLO, CLIENT.

use crate::front::resp::reply;
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

pub(super) fn auth(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) {
    let Some(pass) = s.shared.config.requirepass.as_deref() else {
        reply::error(
            out,
            "ERR AUTH <password> called without any password configured for the default \
             user. Are you sure your configuration is correct?",
        );
        return;
    };
    let (user, given) = if args.len() == 3 {
        (args[1], args[2])
    } else {
        (&b"default"[..], args[1])
    };
    if user == b"default" && constant_time_eq(given, pass.as_bytes()) {
        s.authed = true;
        reply::simple(out, "OK");
    } else {
        reply::error(
            out,
            "WRONGPASS invalid username-password pair or user is disabled.",
        );
    }
}

pub(super) fn hello_command(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    hello(s, args, out);
    Step::Done
}

pub(super) fn hello(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) {
    let mut i = 1;
    if let Some(version) = args.get(1) {
        if **version != *b"2" {
            reply::error(
                out,
                "NOPROTO sorry, this protocol version is not supported.",
            );
            return;
        }
        i = 2;
    }
    while i < args.len() {
        if eq(args[i], "auth") && i + 2 < args.len() {
            let auth_args = [&b"auth"[..], args[i + 1], args[i + 2]];
            let mut scratch = Vec::new();
            auth(s, &auth_args, &mut scratch);
            if !s.authed {
                out.extend_from_slice(&scratch);
                return;
            }
            i += 3;
        } else if eq(args[i], "setname") && i + 1 < args.len() {
            s.name = Some(args[i + 1].to_vec());
            i += 2;
        } else {
            reply::error(out, "ERR syntax error in HELLO option");
            return;
        }
    }
    if !s.authed {
        reply::error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    reply::array(out, 14);
    for (k, v) in [
        ("server", "redis"),
        ("version", REDIS_COMPAT_VERSION),
        ("proto", ""),
        ("id", ""),
        ("mode", "standalone"),
        ("role", "master"),
        ("modules", ""),
    ] {
        reply::bulk(out, k.as_bytes());
        match k {
            "proto" => reply::int(out, 2),
            "id" => reply::int(out, s.id as i64),
            "modules" => reply::array(out, 0),
            _ => reply::bulk(out, v.as_bytes()),
        }
    }
}

pub(super) fn client(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("setname", 3) => {
            s.name = Some(args[2].to_vec());
            reply::simple(out, "OK");
        }
        ("getname", 2) => match &s.name {
            Some(n) => reply::bulk(out, n),
            None => reply::nil(out),
        },
        ("id", 2) => reply::int(out, s.id as i64),
        ("setinfo", 4) => reply::simple(out, "OK"),
        _ => reply::error(
            out,
            &format!("ERR unknown subcommand or wrong number of arguments for '{sub}'"),
        ),
    }
    Step::Done
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
