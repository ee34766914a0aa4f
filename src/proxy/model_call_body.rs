//! Body-before-routing. A `/v1` request names its provider inside its body, so the
//! gateway reads the whole body (up to `body_size_limit`) in `request_filter` and
//! prepares it for the routed provider (see [`super::prepared_call`]); a `/p/` Chat
//! body is read the same way to ask for a stream's usage (see
//! [`super::held_chat_body`]). How that
//! prepared body then reaches the provider is held here, per request, in
//! [`ModelCallBody`]:
//!
//! - Pingora replays a consumed body from its retry buffer, but only up to 64 KiB. A
//!   body that fits is proxied by the client's own session, the prepared body swapped
//!   into the replay on each attempt ([`ModelCallBody::Replayed`]).
//! - A larger body would hang there, so the request is re-issued as a Pingora
//!   subrequest through this same proxy with the prepared body preset (see
//!   [`super::subrequest`]); the subrequest's session is
//!   [`ModelCallBody::Subrequest`], linked back to its main request by a
//!   [`SubrequestReturn`].
//! - Every other request's body streams from the client as it comes
//!   ([`ModelCallBody::Streamed`]).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pingora_http::RequestHeader;

use super::body_budget::BodyPermit;
use super::subrequest::Handback;
use super::{GatewayError, RequestContext};

/// How a request's body reaches the provider.
#[derive(Debug, Default)]
pub enum ModelCallBody {
    /// The client's body, streamed as it comes (passthrough, and any request whose
    /// body the gateway did not read first).
    #[default]
    Streamed,
    /// A `/v1` body read whole and small enough for Pingora's retry buffer: `body`,
    /// prepared for the provider, takes the replayed body's place on each attempt.
    Replayed {
        /// The body the provider receives.
        body: Bytes,
        /// It already went out on the current attempt.
        sent: bool,
    },
    /// This session is the subrequest carrying a large `/v1` body, preset by its main
    /// request.
    Subrequest(SubrequestLink),
}

/// A subrequest's end of the link to its main request.
#[derive(Debug)]
pub struct SubrequestLink {
    /// Where the subrequest leaves what the main request reads back.
    returns: SubrequestReturn,
    /// This subrequest's failure is retried by the main request: it answers nothing.
    handed_back: bool,
}

/// Whose bytes a request body chunk carries once [`ModelCallBody::carry`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSource {
    /// The client's, as it sent them: counted against the body limit and deadline.
    Client,
    /// The gateway's prepared body (or nothing): already checked when it was read.
    Prepared,
}

impl ModelCallBody {
    /// A body that fits Pingora's retry buffer, prepared for the provider.
    pub fn replayed(body: Bytes) -> Self {
        Self::Replayed { body, sent: false }
    }

    /// The subrequest of a main request that reads back through `returns`.
    pub fn subrequest(returns: SubrequestReturn) -> Self {
        Self::Subrequest(SubrequestLink {
            returns,
            handed_back: false,
        })
    }

    /// What a `/v1` call's header says of its body, before any of it is read.
    pub fn admit(req: &RequestHeader) -> BodyAdmission {
        BodyAdmission {
            send_continue: expects_continue(req),
            declared: super::declared_length(req),
        }
    }

    /// This session is a subrequest carrying a main request's body.
    pub fn is_subrequest(&self) -> bool {
        matches!(self, Self::Subrequest(_))
    }

    /// This subrequest handed its attempts back: the main request answers the client.
    pub fn handed_back(&self) -> bool {
        matches!(self, Self::Subrequest(link) if link.handed_back)
    }

    /// The plan moved to another model: `body` is what its provider receives. A
    /// subrequest never prepares a body itself (its next attempt is the main
    /// request's), so its preset body stays.
    pub fn prepare_again(&mut self, body: Bytes) {
        if !self.is_subrequest() {
            *self = Self::replayed(body);
        }
    }

    /// A new attempt at an upstream begins: the prepared body goes out from its start.
    /// Its length, when the gateway replaces the client's body.
    pub fn attempt_begins(&mut self) -> Option<usize> {
        match self {
            Self::Replayed { body, sent } => {
                *sent = false;
                Some(body.len())
            }
            Self::Streamed | Self::Subrequest(_) => None,
        }
    }

    /// Puts the prepared body in place of the request body `chunk` Pingora is about
    /// to send upstream. Pingora replays the client's body (as one chunk today) on
    /// each attempt: the prepared body takes the place of its first chunk, and any
    /// later chunk of the same attempt sends nothing (empty, never `None`, which would
    /// end the body).
    pub fn carry(&mut self, chunk: &mut Option<Bytes>) -> ChunkSource {
        match self {
            Self::Streamed => ChunkSource::Client,
            Self::Subrequest(_) => ChunkSource::Prepared,
            Self::Replayed { body, sent } => {
                if chunk.is_some() {
                    *chunk = Some(if *sent { Bytes::new() } else { body.clone() });
                    *sent = true;
                }
                ChunkSource::Prepared
            }
        }
    }

    /// The provider answered with `status`: a subrequest leaves it for its main
    /// request's log.
    pub fn answered(&self, status: u16) {
        if let Self::Subrequest(link) = self {
            link.returns.status.store(status, Ordering::Relaxed);
        }
    }
}

/// What a `/v1` call's header says of its body (see [`ModelCallBody::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyAdmission {
    /// The client (curl, for one) holds the body back until told `100 Continue`.
    pub send_continue: bool,
    /// The length the client declared, if any.
    pub declared: Option<u64>,
}

impl BodyAdmission {
    /// Checks the declared length against what the gateway holds now, before any of
    /// the body is read, so an upload that cannot fit is refused up front (before a
    /// `100 Continue`). It is not held: the body's bytes are, as they arrive, so a
    /// client that declares a body and sends none keeps no one else's out.
    pub fn check_declared(&self, permit: &BodyPermit) -> Result<(), GatewayError> {
        match self.declared {
            Some(declared) => permit.would_fit(declared),
            None => Ok(()),
        }
    }
}

/// What a subrequest leaves for its main request: the provider's status, and the
/// attempts when another one is due. Cloned into both ends.
#[derive(Debug, Clone, Default)]
pub struct SubrequestReturn {
    status: Arc<AtomicU16>,
    handback: Arc<Mutex<Option<Handback>>>,
}

impl SubrequestReturn {
    /// The status the provider answered the subrequest with, if it answered.
    pub fn status(&self) -> Option<u16> {
        Some(self.status.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }

    /// The attempts the subrequest handed back, if it did.
    pub fn take_handback(&self) -> Option<Handback> {
        self.handback.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Leaves `handback` for the main request; `false` when the slot is unusable.
    fn give(&self, handback: Handback) -> bool {
        match self.handback.lock() {
            Ok(mut slot) => {
                *slot = Some(handback);
                true
            }
            Err(_) => false,
        }
    }
}

/// In a subrequest, hands the plan back to the main request, which starts the next
/// attempt after `wait`: `true` when it did (this subrequest then answers nothing);
/// `false` for a client's own request, which Pingora retries itself after `wait`.
pub fn hand_back(ctx: &mut RequestContext, wait: Duration) -> bool {
    if !ctx.body.is_subrequest() {
        ctx.retry_wait = Some(wait);
        return false;
    }
    let handed_back = return_plan(ctx, Some(wait));
    if let ModelCallBody::Subrequest(link) = &mut ctx.body {
        link.handed_back = handed_back;
    }
    handed_back
}

/// In a subrequest, gives the plan back to the main request (for its next attempt
/// after `wait`, or for its log when there is none); `true` when it did.
pub fn return_plan(ctx: &mut RequestContext, wait: Option<Duration>) -> bool {
    if !ctx.body.is_subrequest() {
        return false;
    }
    let Some(plan) = ctx.plan.take() else {
        return false;
    };
    let call = ctx.held_call.take();
    match &ctx.body {
        ModelCallBody::Subrequest(link) => link.returns.give(Handback { plan, call, wait }),
        ModelCallBody::Streamed | ModelCallBody::Replayed { .. } => false,
    }
}

/// `Expect: 100-continue` (RFC 9110 §10.1.1): the client waits before sending its body.
fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::body_budget::BodyBudget;

    fn request(headers: &[(&str, &str)], version: http::Version) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.set_version(version);
        for (name, value) in headers {
            req.insert_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn admit_answers_continue_only_to_an_http_1_1_client_waiting_for_it() {
        let waiting = request(&[("expect", "100-Continue")], http::Version::HTTP_11);
        assert!(ModelCallBody::admit(&waiting).send_continue);
        let old = request(&[("expect", "100-continue")], http::Version::HTTP_10);
        assert!(!ModelCallBody::admit(&old).send_continue);
        let plain = request(&[], http::Version::HTTP_11);
        assert!(!ModelCallBody::admit(&plain).send_continue);
    }

    #[test]
    fn a_declared_length_is_checked_against_the_budget_but_not_held() {
        let budget = Arc::new(BodyBudget::default());
        let declared = request(&[("content-length", " 60 ")], http::Version::HTTP_11);
        let admission = ModelCallBody::admit(&declared);
        assert_eq!(admission.declared, Some(60));
        let first = budget.permit(100);
        admission.check_declared(&first).unwrap();
        // Declared and not sent: it holds nothing, and keeps no one out.
        let mut second = budget.permit(100);
        admission.check_declared(&second).unwrap();
        // Its bytes are held as they come; what no longer fits is refused up front.
        second.cover(60).unwrap();
        let err = admission.check_declared(&first).unwrap_err();
        assert_eq!(err.status, 503, "the budget holds 60 of 100 already");
        admission.check_declared(&second).unwrap();

        // A chunked body declares nothing: it is held as it is read.
        let chunked = request(&[("transfer-encoding", "chunked")], http::Version::HTTP_11);
        let admission = ModelCallBody::admit(&chunked);
        assert_eq!(admission.declared, None);
        admission.check_declared(&first).unwrap();
    }

    #[test]
    fn a_replayed_body_takes_the_first_chunk_of_each_attempt() {
        let mut body = ModelCallBody::replayed(Bytes::from_static(b"prepared"));
        assert_eq!(body.attempt_begins(), Some(8));
        let mut chunk = Some(Bytes::from_static(b"client's"));
        assert_eq!(body.carry(&mut chunk), ChunkSource::Prepared);
        assert_eq!(chunk.as_deref(), Some(&b"prepared"[..]));
        let mut later = Some(Bytes::from_static(b"more"));
        body.carry(&mut later);
        assert_eq!(later.as_deref(), Some(&b""[..]), "empty, never None");
        let mut end = None;
        body.carry(&mut end);
        assert_eq!(end, None, "the end of the body stays the end");

        // The next attempt replays the body from its start.
        assert_eq!(body.attempt_begins(), Some(8));
        let mut again = Some(Bytes::from_static(b"client's"));
        body.carry(&mut again);
        assert_eq!(again.as_deref(), Some(&b"prepared"[..]));

        // A fallback on another model sends its own body.
        body.prepare_again(Bytes::from_static(b"other"));
        assert_eq!(body.attempt_begins(), Some(5));
    }

    #[test]
    fn a_streamed_body_is_the_clients_and_left_alone() {
        let mut body = ModelCallBody::default();
        assert_eq!(body.attempt_begins(), None);
        let mut chunk = Some(Bytes::from_static(b"client's"));
        assert_eq!(body.carry(&mut chunk), ChunkSource::Client);
        assert_eq!(chunk.as_deref(), Some(&b"client's"[..]));
        assert!(!body.is_subrequest());
        assert!(!body.handed_back());
    }

    #[test]
    fn a_subrequest_sends_its_preset_body_and_reports_back() {
        let returns = SubrequestReturn::default();
        let mut body = ModelCallBody::subrequest(returns.clone());
        assert!(body.is_subrequest());
        assert_eq!(body.attempt_begins(), None, "framed by the main request");
        let mut chunk = Some(Bytes::from_static(b"preset"));
        assert_eq!(body.carry(&mut chunk), ChunkSource::Prepared);
        assert_eq!(chunk.as_deref(), Some(&b"preset"[..]));
        body.prepare_again(Bytes::from_static(b"other"));
        assert!(
            body.is_subrequest(),
            "a subrequest's body is the main request's"
        );

        assert_eq!(returns.status(), None);
        body.answered(429);
        assert_eq!(returns.status(), Some(429));
        ModelCallBody::Streamed.answered(500);
    }

    #[test]
    fn only_a_subrequest_hands_its_attempts_back() {
        let mut ctx = RequestContext::new();
        assert!(!hand_back(&mut ctx, Duration::from_millis(5)));
        assert_eq!(
            ctx.retry_wait,
            Some(Duration::from_millis(5)),
            "Pingora waits, then retries the client's own request"
        );

        // Nothing to hand back: the subrequest's failure stands.
        let returns = SubrequestReturn::default();
        let mut sub = RequestContext::new();
        sub.body = ModelCallBody::subrequest(returns.clone());
        assert!(!hand_back(&mut sub, Duration::from_millis(5)));
        assert!(!sub.body.handed_back());
        assert!(returns.take_handback().is_none());
        assert_eq!(sub.retry_wait, None);
    }
}
