//! Getting an answer when a provider fails: retries with backoff and `Retry-After`,
//! another key or instance, fallbacks to other models, and passive health that skips
//! what keeps failing. The plan is pure; the proxy hooks carry it out.

mod failure;
mod health;
mod plan;

pub use failure::{backoff, is_context_overflow, retry_after, AttemptFailure};
pub use health::{HealthBook, HealthKey, Transition};
pub use plan::{AttemptPlan, AttemptRecord, Candidate, NextAttempt};
