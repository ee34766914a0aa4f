//! One upstream exchange whose answer is read whole before the client hears anything.
//!
//! A translated answer the client did not ask to stream is a single JSON document,
//! and whether the provider's body can be translated is known only at its end. Inside
//! Pingora's proxy loop the status line would already be on its way by then, so a
//! body cut short or not what the format promises would reach the client as a `200`
//! carrying an error. Here the gateway drives the exchange itself with Pingora's
//! connector (the same pooled, verified connections the proxy uses), and the caller
//! decides the status once the whole answer is known. Driving it also lets each stage
//! have its own time: `first_byte` for the header, `idle` between pieces of the body,
//! `total` for all of it.
//!
//! A stream whose failure must be read before it is told (a prompt too long, which
//! only the error's body says, for a model that falls back on it) takes this path
//! too: an error answer is read whole, a successful one is left open
//! ([`OpenAnswer`]) for the caller to stream to the client.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::v1::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use super::answer_decoder::{decode_piece, AnswerDecoder, Undecodable};
use super::upstream::UpstreamWait;
use crate::providers::Timeouts;

/// The most room reserved up front for a whole answer's body; a longer one grows.
const WHOLE_BODY_START_CAPACITY: usize = 256 * 1024;

/// The provider's final answer (informational answers skipped), decoded if the
/// provider compressed it.
pub struct ProviderAnswer {
    /// Status and headers; `Content-Encoding` is gone once the body is decoded.
    pub header: ResponseHeader,
    /// The whole body; empty when the answer is [`ProviderAnswer::open`].
    pub body: Bytes,
    /// A successful answer left to stream, when the exchange asked for that. Boxed:
    /// the answer is moved through every future that awaits the exchange, and most
    /// answers are read whole.
    pub open: Option<Box<OpenAnswer>>,
    /// When the response header arrived (the provider's time to first byte ends here).
    pub header_at: std::time::Instant,
}

/// A successful answer whose body is still to be read, piece by piece.
pub struct OpenAnswer {
    session: HttpSession,
    /// The answer came compressed.
    decoder: Option<AnswerDecoder>,
    peer: HttpPeer,
    idle: Duration,
    done: bool,
}

impl OpenAnswer {
    /// The next piece of the body, decoded; `None` at its end. A silence longer than
    /// `timeouts.idle` fails.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let far = Instant::now() + self.idle + Duration::from_secs(1);
        let read = within(
            self.session.read_response_body(),
            UpstreamWait::Idle,
            self.idle,
            far,
        )
        .await
        .map_err(|e| e.into_up())?;
        match read {
            Some(chunk) => Ok(decode_piece(&mut self.decoder, Some(chunk), false)?),
            None => {
                self.done = true;
                Ok(decode_piece(&mut self.decoder, None, true)?)
            }
        }
    }

    /// Gives a connection whose answer was read to its end back to the pool.
    pub async fn finish(self, connector: &Connector) {
        if self.done {
            release(connector, Some(self.session), &self.peer).await;
        }
    }
}

/// Where one exchange goes and how long it may take.
pub struct Exchange<'a> {
    /// The provider's address and connection settings.
    pub peer: &'a HttpPeer,
    /// The request body sent.
    pub body: &'a Bytes,
    /// The largest answer taken, in bytes.
    pub max_body: usize,
    /// The provider's (or model's) timeouts.
    pub timeouts: &'a Timeouts,
    /// Leave a successful answer open (see [`OpenAnswer`]) rather than read it whole.
    pub open_success: bool,
    /// Set once the provider has the request whole (its header and body written), for
    /// a client that leaves meanwhile: a call the provider never got bills nothing.
    pub sent: &'a AtomicBool,
    /// The status of the provider's answer once its header came (0 before): a failure
    /// whose body then stalls or breaks off was the provider's failure, not work it was
    /// left to do.
    pub answered: &'a AtomicU16,
}

/// Sends `request` through `connector` and reads the answer, refusing one larger
/// than `max_body` bytes. A pooled connection the provider closed meanwhile fails
/// before any answer; that one is tried again on a new connection, with the header
/// `again` builds (the first went out with the first try: copying it up front, for a
/// retry that seldom comes, would cost every exchange).
pub async fn exchange(
    connector: &Connector,
    x: &Exchange<'_>,
    request: RequestHeader,
    again: impl FnOnce() -> Result<RequestHeader>,
) -> Result<ProviderAnswer> {
    let deadline = Instant::now() + x.timeouts.total;
    let first = attempt(connector, x, request, deadline).await;
    // Matched without a guard and dropped before the retry: a first outcome borrowed
    // or still held would keep its room in the future through everything below.
    let outcome = match first {
        Err(Failure {
            stale_connection: true,
            ..
        }) => {
            drop(first);
            attempt(connector, x, again()?, deadline).await
        }
        outcome => outcome,
    };
    let (answer, spent) = outcome.map_err(|f| f.error)?;
    // Released here rather than in `attempt`: Pingora's release is a future of
    // kilobytes, and here it does not add to the attempt's.
    release(connector, spent, x.peer).await;
    Ok(answer)
}

/// `read` within `wait`'s time (`limit`), and never past the exchange's `deadline`.
async fn within<T>(
    read: impl Future<Output = Result<T>>,
    wait: UpstreamWait,
    limit: Duration,
    deadline: Instant,
) -> Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    let (limit, wait) = if left < limit {
        (left, UpstreamWait::Total)
    } else {
        (limit, wait)
    };
    match tokio::time::timeout(limit, read).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::because(
            ErrorType::ReadTimedout,
            format!("no answer within timeouts.{} ({limit:?})", wait.field()),
            wait,
        )),
    }
}

struct Failure {
    error: Box<Error>,
    /// A reused connection failed before the provider said anything.
    stale_connection: bool,
}

/// One try at the exchange: the answer, and the session to give back to the pool when
/// the answer was read to its end.
async fn attempt(
    connector: &Connector,
    x: &Exchange<'_>,
    request: RequestHeader,
    deadline: Instant,
) -> std::result::Result<(ProviderAnswer, Option<HttpSession>), Failure> {
    let Exchange {
        peer,
        body,
        max_body,
        timeouts,
        open_success,
        sent,
        answered,
    } = *x;
    sent.store(false, Ordering::Relaxed);
    answered.store(0, Ordering::Relaxed);
    // A pooled connection first: Pingora's whole connect (TLS included) is a future of
    // kilobytes, boxed and copied only when a new connection is needed.
    let (session, reused) = match connector.reused_http_session(peer).await {
        Some(session) => (session, true),
        None => Box::pin(connector.get_http_session(peer))
            .await
            .map_err(|e| upstream_failure(e, false))?,
    };
    let mut session = HttpSession::H1(session);
    // Each read is timed here, by its stage.
    session.set_read_timeout(None);
    session.set_write_timeout(peer.options.write_timeout);
    // A pooled connection the provider closed fails at once, as the request is
    // written. Once it was, the provider may be at work on it: only a connection it
    // had closed meanwhile (the end of its stream, nothing answered) is asked again,
    // never one it reset or a slow provider, which would do and bill the call twice.
    let before_sent = |e: Box<Error>| {
        let stale = reused && e.etype() != &ErrorType::ReadTimedout;
        upstream_failure(e, stale)
    };
    let before_answer = |e: Box<Error>| {
        let stale = reused && e.etype() == &ErrorType::ConnectionClosed;
        upstream_failure(e, stale)
    };
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(before_sent)?;
    session
        .write_request_body(body.clone(), true)
        .await
        .map_err(before_sent)?;
    session.finish_request_body().await.map_err(before_sent)?;
    sent.store(true, Ordering::Relaxed);
    let mut header = loop {
        within(
            session.read_response_header(),
            UpstreamWait::FirstByte,
            timeouts.first_byte,
            deadline,
        )
        .await
        .map_err(before_answer)?;
        let Some(header) = session.response_header() else {
            return Err(upstream_failure(
                Error::explain(ErrorType::InvalidHTTPHeader, "no response header"),
                false,
            ));
        };
        // `100 Continue`, `103 Early Hints`: the answer is still to come.
        if !header.status.is_informational() {
            break header.clone();
        }
    };
    let header_at = std::time::Instant::now();
    answered.store(header.status.as_u16(), Ordering::Relaxed);
    // The gateway's own exchanges are never `HEAD`.
    let mut decoder = AnswerDecoder::of(&mut header, false);
    if open_success && header.status.is_success() {
        let answer = ProviderAnswer {
            header,
            body: Bytes::new(),
            open: Some(Box::new(OpenAnswer {
                session,
                decoder,
                peer: peer.clone(),
                idle: timeouts.idle,
                done: false,
            })),
            header_at,
        };
        return Ok((answer, None));
    }
    // Room for the length the provider declared, so the body is gathered without
    // growing; never more than a modest start, whatever it declared.
    let declared = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut whole = BytesMut::with_capacity(declared.min(WHOLE_BODY_START_CAPACITY));
    let keep = |piece: Option<Bytes>, whole: &mut BytesMut| {
        let piece = piece.unwrap_or_default();
        if whole.len() + piece.len() > max_body {
            return Err(upstream_failure(
                Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    format!("answer larger than {max_body} bytes"),
                ),
                false,
            ));
        }
        whole.extend_from_slice(&piece);
        Ok(())
    };
    while let Some(chunk) = within(
        session.read_response_body(),
        UpstreamWait::Idle,
        timeouts.idle,
        deadline,
    )
    .await
    .map_err(|e| upstream_failure(e, false))?
    {
        let piece = decode_piece(&mut decoder, Some(chunk), false);
        keep(piece.map_err(undecodable)?, &mut whole)?;
    }
    keep(
        decode_piece(&mut decoder, None, true).map_err(undecodable)?,
        &mut whole,
    )?;
    let answer = ProviderAnswer {
        header,
        body: whole.freeze(),
        open: None,
        header_at,
    };
    Ok((answer, Some(session)))
}

/// Gives `session`, its answer read to its end, back to `connector`'s pool (none: an
/// answer left open keeps its session).
async fn release(connector: &Connector, session: Option<HttpSession>, peer: &HttpPeer) {
    // Providers are spoken to in HTTP/1.1 (no ALPN offered): every session is one.
    if let Some(HttpSession::H1(session)) = session {
        connector
            .release_http_session(session, peer, peer.options.idle_timeout)
            .await;
    }
}

/// The provider's compressed answer broke off where it could not be decoded.
fn undecodable(e: Undecodable) -> Failure {
    upstream_failure(e.into(), false)
}

fn upstream_failure(error: Box<Error>, stale_connection: bool) -> Failure {
    Failure {
        error: error.into_up(),
        stale_connection,
    }
}
