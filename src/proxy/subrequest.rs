//! The large-body path of a `/v1` call, or of a `/p/` Chat body read whole (see
//! [`super::model_call_body`]): a body past
//! Pingora's 64 KiB retry buffer would hang if the client's own session proxied it,
//! so the request is re-issued as a Pingora subrequest through this same proxy with
//! the prepared body preset, and the subrequest's response is piped back to the
//! client. The subrequest runs the ordinary hooks (peer, header rewrite, translation
//! module), configured by [`SubrequestPlan`]. Reading the body whole, which both
//! paths start with, is here too ([`read_body_within`]).

use std::io::Cursor;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::v1::client::http_req_header_to_wire;
use pingora_core::protocols::http::{HttpTask, ServerSession};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora_proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora_proxy::Session;

use super::attempts::HeldCall;
use super::body_budget::BodyPermit;
use super::body_deadline::BodyDeadline;
use super::client_hangup::ClientSocket;
use super::model_call_body::SubrequestReturn;
use super::resilience::AttemptPlan;
use super::{GatewayError, UpstreamTarget};
use crate::auth::Caller;
use crate::config::Config;
use crate::providers::WireFormat;
use crate::translate::ResponseCodecs;

/// Everything the main request decided, handed to its subrequest.
#[derive(Debug)]
pub struct SubrequestPlan {
    /// The config snapshot the main request started with.
    pub config: Arc<Config>,
    /// The main request's id, sent upstream and back.
    pub request_id: super::request_id::RequestId,
    /// Who called (already authenticated by the main request).
    pub caller: Option<Caller>,
    /// Whose a Responses answer it stores is (a fallback prepared in the subrequest
    /// stores one).
    pub responses_owner: Option<Arc<str>>,
    /// Route label for logs.
    pub route_kind: &'static str,
    /// Provider and upstream path.
    pub target: UpstreamTarget,
    /// How the response is translated, if at all.
    pub translation: Option<ResponseCodecs>,
    /// The envelope of errors the gateway raises.
    pub error_format: WireFormat,
    /// When the main request arrived: the subrequest's timings count from it.
    pub started: std::time::Instant,
    /// Where the subrequest leaves its timings for the main request's log.
    pub timings: Arc<super::observe::SharedTimings>,
    /// The main request's span, which the subrequest's attempts belong to.
    pub trace: crate::telemetry::TraceHandoff,
    /// The request's attempts and its call (none for a `/p/` call, which is tried
    /// again only when no connection was made), when it may try again.
    pub attempts: Option<(AttemptPlan, Option<HeldCall>)>,
    /// The caller's rate windows as admitted, for the answer's `x-ratelimit-*`
    /// headers, which the subrequest writes.
    pub rate: Option<crate::limits::RateState>,
    /// Where the subrequest leaves the provider's status and, when another attempt is
    /// due, hands the attempts back.
    pub returns: SubrequestReturn,
}

/// A subrequest's body is not replayed: when its attempt failed in a way the plan
/// retries, the subrequest writes nothing to the client and hands the plan back for
/// the main request to start the next attempt as a new subrequest.
#[derive(Debug)]
pub struct Handback {
    /// The plan, moved on to the next attempt.
    pub plan: AttemptPlan,
    /// The call, to prepare again (none for a `/p/` call, whose body is the same
    /// for every attempt).
    pub call: Option<HeldCall>,
    /// How long to wait before the next attempt; `None` when there is none (the plan
    /// comes back only for the main request's log).
    pub wait: Option<std::time::Duration>,
}

/// The plan a subrequest was started with; `None` on every request a client sent.
/// Taking it leaves nothing behind, so it is applied once.
pub fn take_plan(session: &mut Session) -> Option<SubrequestPlan> {
    session
        .subrequest_ctx
        .as_mut()?
        .user_ctx_mut()?
        .downcast_mut::<Option<SubrequestPlan>>()?
        .take()
}

/// The most a body's buffer starts with for its declared length, before its bytes come.
const DECLARED_START_CAPACITY: u64 = 1 << 20;

/// Reads the whole request body, refusing more than `limit` bytes, more than `permit`
/// can cover of the gateway's body budget, and a body that misses `deadline` (408). A
/// client that closes or breaks its connection before the body's end is gone
/// (`client_closed`), not wrong. On any refusal the connection closes after the
/// answer: the rest of the body is unread, or (a malformed chunk, which Pingora takes
/// for the body's end) would be read as another request.
pub async fn read_body_within(
    session: &mut Session,
    limit: u64,
    permit: &mut BodyPermit,
    deadline: BodyDeadline,
) -> Result<Bytes, GatewayError> {
    let read = read_whole_body(session, limit, permit, deadline).await;
    if read.is_err() {
        session.set_keepalive(None);
    }
    read
}

/// [`read_body_within`], the connection left as it is.
async fn read_whole_body(
    session: &mut Session,
    limit: u64,
    permit: &mut BodyPermit,
    deadline: BodyDeadline,
) -> Result<Bytes, GatewayError> {
    // Sized from a declared length (already checked against `limit`), so a large body
    // is not copied again each time the buffer doubles; no more than a modest start
    // until the bytes come, so a body declared and not sent takes no memory.
    let declared = super::declared_length(session.req_header()).filter(|len| *len <= limit);
    let start = declared.map_or(0, |len| len.min(DECLARED_START_CAPACITY) as usize);
    let mut body = BytesMut::with_capacity(start);
    loop {
        let read = tokio::time::timeout_at(deadline.at().into(), session.read_request_body()).await;
        let chunk = match read {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e))
                if matches!(
                    e.etype(),
                    ErrorType::ConnectionClosed | ErrorType::ReadError
                ) =>
            {
                return Err(GatewayError::client_gone());
            }
            Ok(Err(e)) if *e.etype() != ErrorType::ReadTimedout => {
                return Err(GatewayError::invalid_request(format!(
                    "could not read the request body: {e}"
                )))
            }
            Ok(Err(_)) | Err(_) => return Err(deadline.error()),
        };
        let Some(chunk) = chunk else {
            return Ok(body.freeze());
        };
        let total = (body.len() + chunk.len()) as u64;
        if total > limit {
            return Err(GatewayError::payload_too_large(limit));
        }
        permit.cover(total)?;
        body.extend_from_slice(&chunk);
    }
}

/// Sends `body` upstream through a subrequest planned by `plan` and pipes the
/// answer to the client. `Ok` once the client has a complete response (the
/// provider's, or the error the subrequest wrote itself).
pub async fn run(session: &mut Session, plan: SubrequestPlan, body: Bytes) -> Result<()> {
    let template = template_session(session.req_header(), body.len()).await?;
    let spawner = session
        .subrequest_spawner
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "subrequests are not enabled"))?;
    let ctx = SubrequestCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(Some(plan)))
        .build();
    let (subrequest, handle) = spawner.create_subrequest(&template, ctx);
    let input = if body.is_empty() {
        InputBody::NoBody
    } else {
        InputBody::Bytes(vec![body])
    };
    let mut ended = false;
    let client = ClientSocket::of(session);
    // Piping writes to the client only once the provider answers: a client that hangs
    // up before then is noticed here, and dropping the pipe ends the subrequest, which
    // closes its upstream connection (a provider would otherwise go on generating).
    let outcome = tokio::select! {
        outcome = pipe_subrequest(
            session,
            subrequest,
            handle,
            |task| {
                ended |= ends_response(&task);
                Ok(Some(task))
            },
            InputBodyType::Preset(input),
        ) => outcome,
        () = client.hung_up() => {
            return Err(Error::explain(
                ErrorType::ConnectionClosed,
                "client hung up while waiting for the provider",
            )
            .into_down());
        }
    };
    let failure = match outcome {
        Ok(_) => return Ok(()),
        Err(failure) => failure,
    };
    if !failure.from_subreq {
        // Writing to the client failed: nobody is left to answer.
        return Err(failure.error);
    }
    // A failing subrequest writes its own answer (a gateway error, or the end of a
    // translated stream) before it reports the failure: forward what is left.
    if let Some(mut rest) = failure.state.pipe_rx {
        while let Some(task) = rest.recv().await {
            ended |= ends_response(&task);
            session.write_response_tasks(vec![task]).await?;
        }
    }
    if ended {
        Ok(())
    } else {
        Err(failure.error)
    }
}

fn ends_response(task: &HttpTask) -> bool {
    match task {
        HttpTask::Header(_, end) | HttpTask::Body(_, end) | HttpTask::UpgradedBody(_, end) => *end,
        HttpTask::Trailer(_) | HttpTask::Done => true,
        HttpTask::Failed(_) => false,
    }
}

/// The request line and headers the subrequest reads: the client's, framed for
/// the prepared body (whatever the client's framing or HTTP version was).
async fn template_session(req: &RequestHeader, body_len: usize) -> Result<ServerSession> {
    let mut header = req.clone();
    header.set_version(http::Version::HTTP_11);
    header.remove_header(&http::header::TRANSFER_ENCODING);
    header.remove_header(&http::header::EXPECT);
    header.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
    let wire = http_req_header_to_wire(&header).ok_or_else(|| {
        Error::explain(
            ErrorType::InternalError,
            "request header cannot be re-issued",
        )
    })?;
    let mut session = ServerSession::new_http1(Box::new(Cursor::new(wire.to_vec())));
    session.read_request().await?;
    Ok(session)
}
