//! # shm-protocol
//!
//! The shared-memory contract between Corral's supervisor and its workers: one segment per
//! worker generation, holding a request ring (supervisor → worker), a completion ring
//! (worker → supervisor), the worker's status and metrics, and the worker's key-value table,
//! which any process can read without asking the worker.
//!
//! **Architecture Invariant:** every cache line of the head has exactly one writing process,
//! and no lock lives in shared memory: a process killed at any instruction cannot block
//! another. A killed writer can at worst leave one slot's seqlock odd; readers give up after
//! a bounded number of retries.
//!
//! **Architecture Invariant:** the layout, ring and table modules do no I/O and allocate
//! nothing on their hot paths; [`os`] and [`wake`] are the only modules making system calls.
//!
//! ## Segment layout
//!
//! All integers are little-endian; every region starts on a 64-byte cache line; the base is
//! page-aligned. `S` = supervisor writes, `W` = worker writes, `R` = read-only after creation.
//!
//! ```text
//! offset  size  writer  contents
//! ------  ----  ------  -------------------------------------------------------------------
//!      0   128  R       Header: magic "CORRALSG" u64 | layout_hash u64 | generation u64 |
//!                       total_bytes u64 | layout_version u32 | worker_id u32 |
//!                       max_key_bytes u32 | max_value_bytes u32 | max_keys u64 |
//!                       request_ring_words u64 | completion_ring_words u64 |
//!                       table_slots u64 | heap_half_words u64 | reserved 5 x u64
//!    128    64  S       request_tail u64 | request_doorbell u32 (futex) | control u32 |
//!                       checkpoint_request u64 | checkpoint_limit u64
//!    192    64  S       completion_head u64 | supervisor_sleeping u32
//!    256    64  W       request_head u64 | worker_sleeping u32
//!    320    64  W       completion_tail u64 | completion_doorbell u32 (futex)
//!    384    64  W       state u32 | pid u32 | heartbeat_ns u64 | applied_seq u64 |
//!                       digest u64 | keys u64 | live_bytes u64 | compactions u64 |
//!                       started_ns u64
//!    448    64  W       table moves u64 (relocation seqcount)
//!    512    64  W       checkpoint: done | seq | oldest_seq | written | failures | bytes |
//!                       duration_ns | unix_ms (all u64)
//!    576   192  W       metrics: applied | errors | batches | sleeps | 16 apply-latency
//!                       buckets | apply_sum_ns | apply_count | reserved 2 (all u64)
//!    768     R  S/W     request ring: request_ring_words x u64   (S writes, W reads)
//!      .     C  W/S     completion ring: completion_ring_words x u64 (W writes, S reads)
//!      .   32N  W       table slots: N x [seq | hash | key_len:32 value_len:32 | heap off]
//!      .   16H  W       heap: 2 halves x H words of [key bytes | value bytes], word-padded
//! ```
//!
//! Ring records are `tag:32 | payload_words:32` followed by the payload (see [`ring`]).
//!
//! ## Assumptions about the medium
//!
//! * Aligned 8-byte atomic loads and stores are never torn (x86-64, aarch64).
//! * `MAP_SHARED` mappings of one shm object are coherent across processes, and C++20-model
//!   atomics on them synchronise across processes as they do across threads.
//! * `CLOCK_MONOTONIC` is one clock for all processes of the machine.
//! * Nothing but the supervisor resizes a segment (a shrink would make accesses fault).
//!
//! ## Crash cases
//!
//! * Supervisor killed: workers die with it (`PR_SET_PDEATHSIG`); the next supervisor sweeps
//!   the segments by name and creates fresh ones. Nothing in them is trusted.
//! * Worker killed mid-apply: its table may hold one odd slot or an odd `moves`; the segment
//!   belongs to a generation now dead and is discarded; the restarted worker gets a fresh
//!   segment. Readers of the dead generation see `Busy` at worst, never wrong bytes.
//! * Either side killed mid-push: a record is visible only after the release store of the
//!   tail, so a half-written record is never consumed.

#![cfg_attr(not(loom), deny(unsafe_code))]

pub mod hash;
pub mod layout;
pub mod metrics;
#[cfg(not(loom))]
#[allow(unsafe_code)]
pub mod os;
pub mod ring;
mod sync;
pub mod table;
#[cfg(not(loom))]
pub mod wake;
pub mod words;

pub use layout::{Geometry, ShardLimits, WorkerState};
