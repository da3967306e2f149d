//! The HTTP server: metrics, liveness, readiness and detailed health.

pub mod http;
