//! # corral-worker
//!
//! The worker runtime: a worker process attaches to its shard's shared-memory segment,
//! applies the requests of its ring in order to a [`machine::StateMachine`] (by default the
//! Redis-semantics [`machine::KvMachine`]), and answers through the completion ring.
//!
//! **Architecture Invariant:** a worker is the only writer of its table, its status line and
//! its metrics block; it never blocks on the supervisor except to wait for work.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod command;
pub mod machine;
pub mod runtime;
