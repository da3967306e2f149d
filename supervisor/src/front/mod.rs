//! The front door: the RESP parser and reply encoder, a connection's session, and the
//! server's event loops.

pub mod command;
pub mod resp;
pub mod server;
pub mod session;
pub mod shared;
