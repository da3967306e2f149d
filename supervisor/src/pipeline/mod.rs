//! The write pipeline: the sequencer (the single producer of every request ring), the
//! completion readers, and the replay of the event log into a new worker.

pub mod completions;
pub mod lane;
pub mod msg;
pub mod replay;
pub mod save;
pub mod sequencer;
