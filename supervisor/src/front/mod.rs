//! The front door: the RESP parser and encoder, the command table and its handlers (by
//! group: strings, expiry, keyspace, connection, introspection, administration), client sessions, and the event loops that
//! serve them.

pub mod admin;
pub mod clients;
pub mod command;
pub mod connection;
pub mod expiry;
pub mod introspect;
pub mod keyspace;
pub mod pattern;
pub mod resp;
pub mod server;
pub mod session;
pub mod shared;
pub mod strings;
pub mod table;
pub mod transaction;
