//! One upstream exchange whose answer is read whole before the client hears anything.
//!
//! A translated answer the client did not ask to stream is a single JSON document,
//! and whether the provider's body can be translated is known only at its end. Inside
//! Pingora's proxy loop the status line would already be on its way by then, so a
//! body cut short or not what the format promises would reach the client as a `200`
//! carrying an error. Here the gateway drives the exchange itself with Pingora's
//! connector (the same pooled, verified connections the proxy uses), and the caller
//! decides the status once the whole answer is known.

use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::compression::ResponseCompressionCtx;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

/// The provider's final answer (informational answers skipped), decoded if the
/// provider compressed it.
#[derive(Debug)]
pub struct ProviderAnswer {
    /// Status and headers; `Content-Encoding` is gone once the body is decoded.
    pub header: ResponseHeader,
    /// The whole body.
    pub body: Bytes,
    /// When the response header arrived (the provider's time to first byte ends here).
    pub header_at: std::time::Instant,
}

/// Sends `request` and `body` to `peer` through `connector` and reads the answer,
/// refusing one larger than `max_body` bytes. A pooled connection the provider closed
/// meanwhile fails before any answer; that one is tried again on a new connection.
pub async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    request: &RequestHeader,
    body: &Bytes,
    max_body: usize,
) -> Result<ProviderAnswer> {
    match attempt(connector, peer, request, body, max_body).await {
        Err(failure) if failure.stale_connection => {
            attempt(connector, peer, request, body, max_body)
                .await
                .map_err(|f| f.error)
        }
        outcome => outcome.map_err(|f| f.error),
    }
}

struct Failure {
    error: Box<Error>,
    /// A reused connection failed before the provider said anything.
    stale_connection: bool,
}

async fn attempt(
    connector: &Connector,
    peer: &HttpPeer,
    request: &RequestHeader,
    body: &Bytes,
    max_body: usize,
) -> std::result::Result<ProviderAnswer, Failure> {
    let (mut session, reused) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| upstream_failure(e, false))?;
    session.set_read_timeout(peer.options.read_timeout);
    session.set_write_timeout(peer.options.write_timeout);
    let before_answer = |e| upstream_failure(e, reused);
    session
        .write_request_header(Box::new(request.clone()))
        .await
        .map_err(before_answer)?;
    session
        .write_request_body(body.clone(), true)
        .await
        .map_err(before_answer)?;
    session.finish_request_body().await.map_err(before_answer)?;
    let mut header = loop {
        session
            .read_response_header()
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
    let mut decoder = ResponseCompressionCtx::new(0, true, false);
    decoder.response_header_filter(&mut header, false);
    let mut whole = BytesMut::new();
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
    while let Some(chunk) = session
        .read_response_body()
        .await
        .map_err(|e| upstream_failure(e, false))?
    {
        let decoded = decoder.response_body_filter(Some(&chunk), false);
        keep(decoded.or(Some(chunk)), &mut whole)?;
    }
    keep(decoder.response_body_filter(None, true), &mut whole)?;
    connector
        .release_http_session(session, peer, peer.options.idle_timeout)
        .await;
    Ok(ProviderAnswer {
        header,
        body: whole.freeze(),
        header_at,
    })
}

fn upstream_failure(error: Box<Error>, stale_connection: bool) -> Failure {
    Failure {
        error: error.into_up(),
        stale_connection,
    }
}
