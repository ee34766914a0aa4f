//! `GET /v1/responses/{id}/input_items` and `POST /v1/responses/{id}/cancel`: answered
//! from the store for a response the gateway translated and stored, else forwarded to
//! the provider that serves the Responses API itself, for the response's owner alone
//! ([`AuroraProxy::native_target`]), as `GET /v1/responses/{id}` is.

use std::sync::Arc;

use pingora_core::Result;
use pingora_proxy::Session;

use super::input_items::{self, ListQuery};
use super::route::ResponsePart;
use super::{
    limit_check, reject, respond, response_not_found, response_store, responses_owner, AuroraProxy,
    GatewayError, RequestContext,
};
use crate::config::Config;

impl AuroraProxy {
    /// `part` of response `id`.
    pub(super) async fn response_part(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        config: &Arc<Config>,
        id: &str,
        part: ResponsePart,
    ) -> Result<bool> {
        let owner = responses_owner(ctx, session.req_header(), config);
        // Another caller's is not found, as a response of another project is not at
        // the provider.
        let stored = match response_store::owned(&*self.responses, id, &owner).await {
            Ok(stored) => stored,
            Err(e) => return reject(session, ctx, super::store_unavailable(e)).await,
        };
        if let Some(stored) = stored {
            let answer = match part {
                ResponsePart::InputItems => ListQuery::parse(session.req_header().uri.query())
                    .and_then(|query| input_items::list_body(id, &stored.input_items, &query)),
                // A translated response was answered before it was stored: never a
                // background one, which is all the API cancels.
                ResponsePart::Cancel => Err(GatewayError::invalid_request(
                    "Cannot cancel a synchronous response.",
                )),
            };
            return match answer {
                Ok(body) => {
                    let rate = ctx.rate.as_ref();
                    respond::send_json_within(session, 200, body, &ctx.request_id, rate).await?;
                    Ok(true)
                }
                Err(err) => reject(session, ctx, err).await,
            };
        }
        let not_found = response_not_found(id);
        // An id made here is never the provider's: one not found (another caller's, or
        // gone) is not sent on with whatever key this caller brought.
        if crate::translate::generated_id::is_generated(id, "resp_") {
            return reject(session, ctx, not_found).await;
        }
        // A provider's own response, for its owner alone.
        let req = session.req_header();
        match Box::pin(self.native_target(ctx, req, config, id, part.upstream_suffix())).await {
            Ok(Some((target, _))) => {
                ctx.upstream = Some(target);
                // The provider's quota holds for a call forwarded to it too.
                if let Err(err) = limit_check::admit_provider(&self.limits, ctx).await {
                    return reject(session, ctx, err).await;
                }
                Ok(false)
            }
            Ok(None) => reject(session, ctx, not_found).await,
            Err(err) => reject(session, ctx, err).await,
        }
    }
}
