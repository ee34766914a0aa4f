//! Responses a provider keeps itself (a `POST /v1/responses` served natively, by
//! OpenAI or xAI, with the gateway's own credential), held to their owner: the answer
//! that names one has its owner recorded ([`record_named`]); a read, delete or cancel
//! of it by id ([`AuroraProxy::native_target`]) and a `previous_response_id` naming it
//! ([`AuroraProxy::previous_refused`]) reach the provider only for that owner. With the
//! caller's own provider key (`!PASSTHRU`) the provider account is the caller's:
//! nothing is recorded or held back.

use std::sync::Arc;

use pingora_http::RequestHeader;

use super::model_request::{ModelEndpoint, ModelField};
use super::model_route::route_model;
use super::native_owner::{self, Asker, NativeOwner, Reach, LATE_RECORD_WAITS};
use super::response_store::{ResponseStore, StoreUnavailable};
use super::{
    native_responses_target, observe, responses_owner, store_unavailable, AuroraProxy,
    GatewayError, RequestContext, UpstreamTarget,
};
use crate::config::Config;
use crate::providers::{Provider, WireFormat};

/// Where a request stands with the record of a natively served response's owner.
#[derive(Debug, Default)]
pub enum NativeOwnerStep {
    /// Nothing to record or forget.
    #[default]
    Idle,
    /// A natively served create answering with success: its owner is recorded as soon
    /// as the answer names its id.
    RecordOnAnswer,
    /// Recorded (or given to the store to record).
    Recorded,
    /// A `DELETE` of the owned response `id` went to its provider: its record goes once
    /// the provider deleted it.
    ForgetOnDelete(String),
}

/// Whether `provider` answers `POST /v1/responses` itself.
fn serves_responses_natively(provider: &Provider) -> bool {
    provider.kind.facts().serves_responses_api && provider.format == WireFormat::OpenAi
}

/// The longest response id recorded: a provider's are a few dozen characters.
const MAX_ID_LEN: usize = 256;

/// Whether `id` may be a provider's response id, fit for a store key.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && is_id_text(id)
}

/// Whether `id` holds only what response ids are written with (`resp_` and hex),
/// nothing that could change an upstream path or a store key.
pub(super) fn is_id_text(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The provider's answer header arrived (after [`observe::answer_header`]): a
/// natively served Responses create answering with success, with the gateway's own
/// credential, is to have its owner recorded from the id its answer names. Every
/// other request passes with one check (it is no Responses create).
pub fn answer_begins(ctx: &mut RequestContext, success: bool) {
    if ctx.responses_owner.is_none() {
        return;
    }
    let native = ctx.upstream.as_ref().is_some_and(|target| {
        serves_responses_natively(&target.provider) && target.credential.caller_key_label.is_none()
    });
    if success && native {
        ctx.native_owner = NativeOwnerStep::RecordOnAnswer;
        observe::keep_response_id(ctx);
    } else if matches!(ctx.native_owner, NativeOwnerStep::RecordOnAnswer) {
        // An earlier attempt's answer never came through: this one names nothing.
        ctx.native_owner = NativeOwnerStep::Idle;
    }
}

/// Records the owner of the response a natively served create's answer named, once
/// the meter read its id: a stream's from its first event, before the bytes that carry
/// it go on to the client; a whole answer's at its end, which the proxy loop may tell
/// only as the request is logged (a read that finds no record for a managed key waits
/// a moment for it: [`LATE_RECORD_WAITS`]). A write that fails does not fail the
/// answer: it is counted and said in the log once a minute.
pub fn record_named(store: &Arc<dyn ResponseStore>, ctx: &mut RequestContext) {
    if !matches!(ctx.native_owner, NativeOwnerStep::RecordOnAnswer) {
        return;
    }
    let Some(id) = observe::named_response_id(ctx).map(str::to_owned) else {
        return;
    };
    ctx.native_owner = NativeOwnerStep::Recorded;
    if !plausible_id(&id) {
        return;
    }
    let (Some(owner), Some(target), Some(config)) = (
        ctx.responses_owner.as_ref(),
        ctx.upstream.as_ref(),
        ctx.config.as_ref(),
    ) else {
        return;
    };
    let record = NativeOwner {
        owner: owner.to_string(),
        provider: target.provider.name.clone(),
    };
    let write = store.record_native(&id, record, config.native_owners);
    tokio::spawn(async move {
        if let Err(e) = write.await {
            record_failed(&e);
        }
    });
}

/// A record the store could not write or forget: counted, and said once a minute
/// (the store's address is never in it, nor any key).
fn record_failed(e: &StoreUnavailable) {
    if let Some(m) = crate::metrics::metrics() {
        m.response_owner_unrecorded();
    }
    static SAID: crate::limits::OnceAMinute = crate::limits::OnceAMinute::new();
    if SAID.due() {
        log::warn!(
            "the owner of a natively served Responses API answer was not recorded, so only \
             the master key can reach it by its id: {e} (said once a minute)"
        );
    }
}

/// After the request: a `DELETE` of an owned response that its provider carried out
/// takes the response's record with it.
pub fn forget_if_deleted(store: &Arc<dyn ResponseStore>, ctx: &mut RequestContext) {
    if !matches!(ctx.native_owner, NativeOwnerStep::ForgetOnDelete(_)) {
        return;
    }
    let NativeOwnerStep::ForgetOnDelete(id) = std::mem::take(&mut ctx.native_owner) else {
        return;
    };
    if !ctx.upstream_status.is_some_and(|s| (200..300).contains(&s)) {
        return;
    }
    let forget = store.forget_native(&id);
    tokio::spawn(async move {
        if let Err(e) = forget.await {
            // Left, the record names a response that is gone: reading it finds
            // nothing at its provider either.
            log::debug!("a deleted response's owner was not forgotten: {e}");
        }
    });
}

/// The caller as the records of natively served responses know it.
fn asker<'a>(ctx: &RequestContext, owner: &'a str) -> Asker<'a> {
    Asker {
        owner,
        managed: matches!(ctx.caller, Some(crate::auth::Caller::Managed(_))),
    }
}

/// Who may reach the natively served response `id` ([`native_owner::reach`]), from its
/// record in `store`. A managed key finding none waits a moment for one being written
/// (the answer that named the id may have reached the client first).
async fn reach_by_record(
    store: &dyn ResponseStore,
    id: &str,
    asker: Asker<'_>,
    config: &Config,
) -> Result<Reach, StoreUnavailable> {
    let access = config.native_owners.access;
    let mut record = store.native_owner(id).await?;
    if record.is_none() && native_owner::reach(None, asker, access) == Reach::NotFound {
        for wait in LATE_RECORD_WAITS {
            tokio::time::sleep(wait).await;
            record = store.native_owner(id).await?;
            if record.is_some() {
                break;
            }
        }
    }
    Ok(native_owner::reach(record.as_ref(), asker, access))
}

/// `previous_response_id` on a natively served create: a response another caller
/// made, or one a managed key has no record of, is not found, in the words of
/// OpenAI's own answer for an id it does not hold.
pub fn previous_not_found(previous: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Previous response with id '{previous}' not found."))
        .with_param("previous_response_id")
        .with_code("previous_response_not_found")
}

impl AuroraProxy {
    /// The provider target of `GET`/`DELETE /v1/responses/{id}` (and `suffix` below it)
    /// for an `id` the gateway did not store: `Ok(None)` when there is none for this
    /// caller (no provider serves the API, or the response is another caller's, or
    /// unknown to a managed key), to be answered as an unknown id. With `true` when
    /// the target was chosen by the response's record (its owner asking).
    pub(super) async fn native_target(
        &self,
        ctx: &RequestContext,
        req: &RequestHeader,
        config: &Config,
        id: &str,
        suffix: &str,
    ) -> Result<Option<(UpstreamTarget, bool)>, GatewayError> {
        let target = match native_responses_target(config, id, suffix, req, None) {
            Some(target) => target?,
            None => return Ok(None),
        };
        // The caller's own provider account: its own responses only, by the provider's
        // own rule.
        if target.credential.caller_key_label.is_some() {
            return Ok(Some((target, false)));
        }
        let owner = responses_owner(ctx, req, config);
        let reach = reach_by_record(&*self.responses, id, asker(ctx, &owner), config)
            .await
            .map_err(store_unavailable)?;
        match reach {
            Reach::NotFound => Ok(None),
            Reach::Forward(None) => Ok(Some((target, false))),
            Reach::Forward(Some(provider)) if provider == target.provider.name => {
                Ok(Some((target, true)))
            }
            // Kept by another instance than the one asked by default.
            Reach::Forward(Some(provider)) => {
                match native_responses_target(config, id, suffix, req, Some(&provider)) {
                    Some(target) => Ok(Some((target?, true))),
                    None => Ok(None),
                }
            }
        }
    }

    /// Whether a Responses API call's `previous_response_id` may not be continued with
    /// the gateway's credential: an id the gateway did not make, of a response another
    /// caller made, or one a managed key has no record of. Asked of the store only when
    /// the model's provider serves the API with the gateway's credential; otherwise
    /// (the caller's own key first) any instance of the model that would use the
    /// gateway's credential is refused it, as nothing vouches for it.
    pub(super) async fn previous_refused(
        &self,
        ctx: &RequestContext,
        req: &RequestHeader,
        config: &Config,
        endpoint: ModelEndpoint,
        field: &ModelField,
    ) -> Result<bool, GatewayError> {
        let Some(previous) = field.previous_response_id.as_deref() else {
            return Ok(false);
        };
        if !endpoint.is_responses_api()
            || crate::translate::generated_id::is_generated(previous, "resp_")
        {
            return Ok(false);
        }
        let with_gateways_key = route_model(&field.name, config).is_ok_and(|route| {
            serves_responses_natively(&route.provider) && !route.provider.credential.is_caller_key()
        });
        if !with_gateways_key {
            return Ok(true);
        }
        if !plausible_id(previous) {
            return Ok(true);
        }
        let owner = responses_owner(ctx, req, config);
        let reach = reach_by_record(&*self.responses, previous, asker(ctx, &owner), config)
            .await
            .map_err(store_unavailable)?;
        Ok(reach == Reach::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_id_a_provider_could_have_made_is_recorded() {
        assert!(plausible_id(
            "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
        ));
        assert!(plausible_id("resp-1_A"));
        for id in ["", "resp 1", "resp_1\n", "resp:1", "resp_é"] {
            assert!(!plausible_id(id), "{id:?}");
        }
        assert!(!plausible_id(&"r".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn a_continued_id_not_the_callers_is_refused_in_openais_words() {
        let err = previous_not_found("resp_x");
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("previous_response_id"));
        assert_eq!(err.code, Some("previous_response_not_found"));
        assert!(
            err.message.contains("'resp_x' not found"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_request_that_is_no_responses_create_is_never_marked_for_a_record() {
        let mut ctx = RequestContext::new();
        answer_begins(&mut ctx, true);
        assert!(matches!(ctx.native_owner, NativeOwnerStep::Idle));
    }
}
