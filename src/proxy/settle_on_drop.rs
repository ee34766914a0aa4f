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
    /// The request reads (`GET`, `HEAD`): an answer's usage it reads back is not its
    /// own work.
    read: bool,
}

impl SettleOnDrop {
    /// Armed with `settler`, for a request whose body is JSON or not, that reads or
    /// not.
    pub fn new(settler: &Arc<Settler>, json_body: bool, read: bool) -> Self {
        Self {
            settler: Arc::clone(settler),
            json_body,
            read,
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
        let read = self.read;
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
        // An answer made apart from its call (a batch's results, a background
        // response) is charged once, by whichever read or poll asks the store first:
        // that check waits on the store, which a drop cannot, so a read cut here leaves
        // the charge to the poll (or a read) that makes it.
        if observe::deferred_charged(ctx).is_some() {
            return;
        }
        limit_check::settle(&self.settler.store, ctx, &self.settler.live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build_config, EnvSnapshot};
    use crate::providers::{Provider, ProviderKind};
    use crate::proxy::UpstreamTarget;

    fn settler() -> Arc<Settler> {
        let config = build_config(None, None, &EnvSnapshot::loopback()).unwrap();
        Arc::new(Settler {
            store: Arc::new(crate::limits::MemoryStore::default()),
            live: Arc::new(LiveConfig::new(config)),
        })
    }

    /// A `GET` at OpenAI of a finished response, its answer (carrying the usage of the
    /// call that made it) read whole by the gateway.
    fn read_of_a_finished_response() -> RequestContext {
        let mut ctx = RequestContext::new();
        let provider = Arc::new(Provider::unconfigured(ProviderKind::OpenAi));
        let target = UpstreamTarget::new(provider, String::new(), Default::default());
        observe::passthrough_endpoint(&mut ctx, &http::Method::GET, "responses/resp_1", &target);
        let mut resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-type", "application/json")
            .unwrap();
        observe::answer_header(&mut ctx, &resp);
        let body = br#"{"id":"resp_1","object":"response","model":"m","usage":{"input_tokens":3,"output_tokens":5}}"#;
        observe::answer_bytes(&mut ctx, Some(body), true);
        ctx
    }

    #[test]
    fn a_read_dropped_unended_is_not_charged_the_usage_it_read_back() {
        let mut ctx = read_of_a_finished_response();
        SettleOnDrop::new(&settler(), false, true).settle(&mut ctx);
        assert_eq!(ctx.obs.usage(), None, "a read's answer is not its own work");
        // The same answer to a call (not a read) is that call's.
        let mut ctx = read_of_a_finished_response();
        SettleOnDrop::new(&settler(), false, false).settle(&mut ctx);
        assert_eq!(ctx.obs.usage().map(|u| u.output), Some(5));
    }
}
