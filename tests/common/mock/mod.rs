//! The mock provider: one hyper server on an ephemeral loopback port that both the
//! integration tests and the load bench put behind the gateway.
//!
//! - [`server`]: the listener (plain HTTP or TLS), what it records, how it answers.
//! - [`reply`]: what an answer can be (whole, streamed with pauses, pushed through a
//!   channel, held open, the request body echoed back).
//! - [`canned`]: a fixed provider API (small JSON, uploads, completions and messages,
//!   plain or paced SSE, model list, errors on demand), what the load bench serves.
//! - [`provider_rules`]: the real APIs' refusals, for handlers that validate requests.
//! - [`openai_responses`]: OpenAI's Responses API keeping its responses, by id.
//!
//! The tests include it as `common::mock`; the load bench with `#[path]`, so the library
//! itself carries none of it.

// Each includer uses a part: the tests their own handlers, the bench the canned API.
#![allow(dead_code, unused_imports)]

pub mod canned;
pub mod openai_responses;
pub mod provider_rules;
pub mod reply;
pub mod server;

pub use canned::CannedProvider;
pub use reply::Reply;
pub use server::{BodyRead, Handler, MockUpstream, Recorded};
