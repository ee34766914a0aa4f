//! A request the server drops without ending it is charged all the same. When a
//! graceful stop's grace period ends with a request still under way (a long stream),
//! Pingora's runtimes drop it, and its `logging` hook, where a request is charged,
//! never runs. Its context then charges, as it is dropped, what it used as far as it
//! was seen: the estimate of a stream its client left.

use std::sync::Arc;

use super::observe::{self, RequestEnd};
use super::{limit_check, RequestContext};
use crate::config::LiveConfig;
use crate::limits::LimitStore;

/// Where a dropped request is charged: the store and the live config the proxy
/// charges through. Made once, for a store that outlives the process (counters in
/// memory go with it).
#[derive(Debug)]
pub struct Settler {
    store: Arc<dyn LimitStore>,
    live: Arc<LiveConfig>,
}

impl Settler {
    /// A settler charging to `store` as `live` limits it, when `store` outlives the
    /// process.
    pub fn for_store(store: &Arc<dyn LimitStore>, live: &Arc<LiveConfig>) -> Option<Arc<Self>> {
        store.outlives_process().then(|| {
            Arc::new(Self {
                store: Arc::clone(store),
                live: Arc::clone(live),
            })
        })
    }
}

/// A request's charge if it is dropped unended: armed as it starts, disarmed when its
/// `logging` hook settles it.
#[derive(Debug)]
pub struct SettleOnDrop {
    settler: Arc<Settler>,
    /// The request's body is JSON (its size counts as its input when it was not read).
    json_body: bool,
}

impl SettleOnDrop {
    /// Armed with `settler`, for a request whose body is JSON or not.
    pub fn new(settler: &Arc<Settler>, json_body: bool) -> Self {
        Self {
            settler: Arc::clone(settler),
            json_body,
        }
    }

    /// Charges `ctx`, dropped unended, as one its client left: what its answer
    /// reported, else the estimate of what passed. How much of an answer the gateway
    /// does not read had passed is not known here: its input is charged.
    pub fn settle(self, ctx: &mut RequestContext) {
        if let Some(model) = observe::answer_unfinished(ctx) {
            observe::answering_model(ctx, model);
        }
        if let Some(model) = observe::delegated_answering_model(ctx) {
            observe::answering_model(ctx, model);
        }
        let read = observe::is_read(ctx);
        let body = if ctx.request_body_ended {
            ctx.request_body_bytes
        } else {
            0
        };
        let json_bytes = if self.json_body { body } else { 0 };
        observe::settle_usage(ctx, read, |_| RequestEnd {
            client_left: true,
            gave_up: false,
            json_bytes,
            body_bytes: body,
            answer_bytes: 0,
            failed: true,
        });
        limit_check::settle(&self.settler.store, ctx, &self.settler.live);
    }
}
