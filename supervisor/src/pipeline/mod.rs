//! The write pipeline: the sequencer (the single producer of every request ring), the
//! completion readers, the replay of the event log into a new worker, the expiry sweep
//! (which submits its removals as writes), and the versions conditional transactions check.

pub mod completions;
pub mod lane;
pub mod msg;
pub mod replay;
pub mod save;
pub mod sequencer;
pub mod sweeper;
pub mod versions;
