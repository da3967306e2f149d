//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH. Queueing, EXEC and the WATCHed keys
//! live in the session (they change how it runs every command); these are their entries in
//! the table.

use crate::front::session::{Session, Step};

pub(super) fn multi(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.multi(out);
    Step::Done
}

pub(super) fn exec(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, out_limit: usize) -> Step {
    s.exec(out, out_limit);
    Step::Done
}

pub(super) fn discard(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.discard(out);
    Step::Done
}

pub(super) fn watch(s: &mut Session, args: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.watch(&args[1..], out);
    Step::Done
}

pub(super) fn unwatch(s: &mut Session, _: &[&[u8]], out: &mut Vec<u8>, _: usize) -> Step {
    s.unwatch(out);
    Step::Done
}
