//! Streams a successful answer the gateway's own exchange left open (see
//! [`super::whole_answer::OpenAnswer`]) to the client, as the proxy loop would: the
//! header rewritten and described, each piece read for usage and passed through the
//! translation module, and a failure under way ended with the route's error event.

use std::sync::Arc;

use pingora_core::connectors::http::v1::Connector;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::client_hangup::{self, ClientSocket};
use super::native_responses;
use super::response_store::ResponseStore;
use super::whole_answer::OpenAnswer;
use super::{
    attempts, header_maps, headers, observe, upstream_failure, GatewayError, RequestContext,
    OMITTED_TOOLS_HEADER,
};
use crate::telemetry;
use crate::translate::ResponseCodecs;

/// Sends `header` and then `answer`'s body to the client; `Ok(true)`: the request is
/// answered (or the client is gone).
pub async fn stream_to_client(
    session: &mut Session,
    ctx: &mut RequestContext,
    mut header: ResponseHeader,
    mut answer: Box<OpenAnswer>,
    translation: Option<ResponseCodecs>,
    connector: &Connector,
    responses: &Arc<dyn ResponseStore>,
) -> Result<bool> {
    let omitted = translation
        .as_ref()
        .and_then(|t| t.client.omitted_tools())
        .map(str::to_string);
    let translated = translation.is_some();
    match translation {
        Some(translation) => super::translate_response(session, ctx, translation),
        None => super::answer_as_is(session, ctx),
    }
    ctx.upstream_status = Some(header.status.as_u16());
    observe::answer_header(ctx, &header);
    native_responses::answer_begins(ctx, header.status.is_success());
    let location = super::client_location(ctx, session.req_header(), &header);
    header_maps::open_answer(&mut header, |map| {
        headers::strip_upstream_response_headers(map);
        location.apply(map);
        if translated {
            // The translator's bytes (a compressed answer was decoded first).
            map.remove(http::header::CONTENT_ENCODING);
        }
        if let Some(tools) = &omitted {
            header_maps::make_room(map, 1)?;
            header_maps::put(map, OMITTED_TOOLS_HEADER, header_maps::text(tools)?)?;
        }
        attempts::describe_answer(map, ctx)
    })?;
    if let Err(e) = session.write_response_header(Box::new(header), false).await {
        return client_gone(session, ctx, e);
    }
    // One watch for the whole answer: made again for each piece, its first look
    // would never come while pieces come faster than it looks.
    let socket_closed = ClientSocket::of(session).hung_up();
    tokio::pin!(socket_closed);
    loop {
        let next = tokio::select! {
            next = answer.next() => next,
            () = &mut socket_closed => return client_gone(session, ctx, hung_up()),
            () = client_hangup::stream_reset(session) => {
                return client_gone(session, ctx, hung_up());
            }
        };
        match next {
            Ok(piece) => {
                let end = piece.is_none();
                if let Some(model) = observe::answer_bytes(ctx, piece.as_deref(), end) {
                    telemetry::response_model(ctx, &model);
                    observe::answering_model(ctx, model);
                }
                native_responses::record_named(responses, ctx);
                let written = match session.write_response_body(piece, end).await {
                    Ok(()) if end => session.downstream_session.finish_body().await,
                    other => other,
                };
                if let Err(e) = written {
                    return client_gone(session, ctx, e);
                }
                if end {
                    answer.finish(connector).await;
                    return Ok(true);
                }
            }
            Err(e) => {
                observe::upstream_failed(ctx, &e);
                telemetry::attempt_failed(ctx, &e);
                let who = ctx.provider_name().unwrap_or("upstream").to_string();
                let err =
                    upstream_failure::gateway_error_for(&e, Some(&who)).unwrap_or_else(|| {
                        GatewayError::bad_gateway(format!("provider `{who}` broke the exchange"))
                    });
                if !super::end_answer_under_way(session, ctx, &err).await {
                    session.set_keepalive(None);
                }
                ctx.error = Some(err);
                return Ok(true);
            }
        }
    }
}

/// The error of an answer cut because its client hung up. An error, not an answer
/// given: Pingora then ends the response without its last chunk, so a client that
/// still reads does not take the cut stream for a whole one. Dropping the answer
/// closes the provider's connection: it stops working for a client that is gone.
fn hung_up() -> Box<pingora_core::Error> {
    pingora_core::Error::explain(
        pingora_core::ErrorType::ConnectionClosed,
        "the client hung up during the answer",
    )
    .into_down()
}

fn client_gone(
    session: &mut Session,
    ctx: &mut RequestContext,
    e: Box<pingora_core::Error>,
) -> Result<bool> {
    log::debug!("client went away during the answer: {e}");
    // A write that timed out may have stopped within a chunk: the connection cannot
    // carry another answer, nor take the answer's end (a client that reads nothing
    // would hold it): the request fails, and nothing more is written.
    session.set_keepalive(None);
    ctx.error = Some(GatewayError::client_gone());
    Err(e)
}
