//! How many request body bytes the gateway holds in memory at once.
//!
//! A `/v1` body is read whole before routing (its model names the provider), so each
//! such request holds its body, up to `body_size_limit`, until it ends. Many at once
//! could take all the machine's memory: past `server.max_buffered_bytes` (all requests
//! together) the gateway answers 503 with `Retry-After` instead of reading more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::GatewayError;

/// Seconds a client is asked to wait when the gateway holds all it may.
const RETRY_AFTER_SECONDS: u32 = 1;

/// The bytes held by every request's permit, gateway-wide.
#[derive(Debug, Default)]
pub struct BodyBudget {
    held: AtomicU64,
}

impl BodyBudget {
    /// An empty permit against this budget, for one request, under `limit` bytes in all.
    pub fn permit(self: &Arc<Self>, limit: u64) -> BodyPermit {
        BodyPermit {
            budget: Arc::clone(self),
            held: 0,
            limit,
        }
    }

    /// Bytes held right now.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// The bytes one request holds; given back when it is dropped (the request ended).
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    held: u64,
    limit: u64,
}

impl BodyPermit {
    /// Makes this permit cover `bytes` in all, or refuses with 503 when that would take
    /// the gateway past its limit.
    pub fn cover(&mut self, bytes: u64) -> Result<(), GatewayError> {
        let more = bytes.saturating_sub(self.held);
        if more == 0 {
            return Ok(());
        }
        let before = self.budget.held.fetch_add(more, Ordering::AcqRel);
        if before.saturating_add(more) > self.limit {
            self.budget.held.fetch_sub(more, Ordering::AcqRel);
            return Err(self.overloaded());
        }
        self.held += more;
        Ok(())
    }

    /// Whether `bytes` in all would fit the budget now, without holding them: a body
    /// declared but not yet sent holds nothing (a client could otherwise promise
    /// large bodies, send none, and keep every other caller's out).
    pub fn would_fit(&self, bytes: u64) -> Result<(), GatewayError> {
        let more = bytes.saturating_sub(self.held);
        let held = self.budget.held.load(Ordering::Acquire);
        if held.saturating_add(more) > self.limit {
            return Err(self.overloaded());
        }
        Ok(())
    }

    fn overloaded(&self) -> GatewayError {
        GatewayError::overloaded(
            format!(
                "the gateway is holding as many request bodies as it may ({} bytes); retry shortly",
                self.limit
            ),
            RETRY_AFTER_SECONDS,
        )
    }

    /// Gives back all this permit holds: the request no longer keeps its body.
    fn release(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::AcqRel);
        self.held = 0;
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_share_the_limit_and_give_back_on_drop() {
        let budget = Arc::new(BodyBudget::default());
        let mut a = budget.permit(100);
        a.cover(60).unwrap();
        a.cover(40).unwrap();
        assert_eq!(budget.held(), 60);
        let mut b = budget.permit(100);
        let err = b.cover(50).unwrap_err();
        assert_eq!(err.status, 503);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECONDS));
        assert_eq!(budget.held(), 60, "a refused permit holds nothing");
        b.cover(40).unwrap();
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        b.cover(90).unwrap();
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_released_permit_gives_back_what_it_held_and_may_hold_again() {
        let budget = Arc::new(BodyBudget::default());
        let mut a = budget.permit(100);
        a.cover(70).unwrap();
        a.release();
        assert_eq!(budget.held(), 0);
        a.cover(30).unwrap();
        assert_eq!(budget.held(), 30);
        drop(a);
        assert_eq!(budget.held(), 0);
    }
}
