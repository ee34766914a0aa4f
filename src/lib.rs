//! Aurora: an AI gateway on Pingora. The crate is a library so the binary, the
//! integration tests and the benches share one implementation.

#[cfg(feature = "alloc-count")]
pub mod alloc_count;
pub mod auth;
pub mod config;
pub mod limits;
pub mod logging;
pub mod lookup;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod server;
pub mod telemetry;
pub mod translate;
