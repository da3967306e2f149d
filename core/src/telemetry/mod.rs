//! What every layer writes its signs of life into: metric handles and their exposition,
//! loop heartbeats, and the log set-up. Read by the health endpoints at the top.

pub mod heartbeat;
pub mod log;
pub mod metrics;
