//! A request the gateway makes of a provider on its own, not for a client: the model
//! list, a poll of a background response or batch. One `GET`, its answer read whole.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;

use super::headers;
use super::upstream::{provider_peer, AnswerShape};
use crate::providers::{Provider, Secret};

/// `GET {path}` at `provider` with `key` (sent in the provider's auth style), its
/// required headers and the `extra` ones.
pub fn provider_get(
    provider: &Provider,
    path: &str,
    key: Option<&Secret>,
    extra: &[(HeaderName, HeaderValue)],
) -> pingora_core::Result<RequestHeader> {
    let mut request = http::Request::new(()).into_parts().0;
    for (name, value) in extra {
        request.headers.insert(name.clone(), value.clone());
    }
    request.uri = path.parse().map_err(|_| {
        pingora_core::Error::explain(pingora_core::ErrorType::InvalidHTTPHeader, "invalid uri")
    })?;
    let request_id = super::request_id::RequestId::fresh();
    headers::add_provider_headers(&mut request, provider, key, &request_id)?;
    Ok(RequestHeader::from(request))
}

/// Sends `request` to `provider` at `addr` through `connector` and reads a successful
/// answer whole: its status and body (`what`, at most `max_bytes` of it; none for
/// another status). Error texts name what failed but never carry a header value.
pub async fn fetch_whole(
    connector: &Connector,
    provider: &Provider,
    addr: SocketAddr,
    request: RequestHeader,
    (what, max_bytes): (&str, usize),
) -> Result<(u16, Vec<u8>), String> {
    let mut body = Vec::new();
    let status = fetch_each(connector, provider, addr, request, None, |chunk| {
        if body.len() + chunk.len() > max_bytes {
            return Err(format!("{what} is larger than {max_bytes} bytes"));
        }
        body.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    Ok((status, body))
}

/// Sends `request` to `provider` at `addr` through `connector` and hands each piece
/// of a successful answer's body to `on_piece` as it comes (an error from it ends the
/// read): the answer's status. Another status's body is not read (its connection is
/// not kept). With `idle`, each step (the connection, the answer's header, each
/// piece) must come within it, however long the whole takes. Error texts name what
/// failed but never carry a header value.
pub async fn fetch_each(
    connector: &Connector,
    provider: &Provider,
    addr: SocketAddr,
    request: RequestHeader,
    idle: Option<Duration>,
    mut on_piece: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<u16, String> {
    let base = &provider.base;
    let peer = provider_peer(provider, addr, &provider.timeouts, AnswerShape::Whole);
    let (mut session, _reused) = within(idle, connector.get_http_session(&*peer))
        .await?
        .map_err(|e| format!("cannot connect to {base}: {e}"))?;
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| format!("cannot send request: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("cannot send request: {e}"))?;
    let status = loop {
        within(idle, session.read_response_header())
            .await?
            .map_err(|e| format!("no response: {e}"))?;
        let status = session
            .response_header()
            .map(|h| h.status.as_u16())
            .ok_or_else(|| "no response header".to_string())?;
        // An HTTP/1 server may send informational answers before the real one.
        if status >= 200 {
            break status;
        }
    };
    if !(200..300).contains(&status) {
        return Ok(status);
    }
    while let Some(piece) = within(idle, session.read_response_body())
        .await?
        .map_err(|e| format!("broken response body: {e}"))?
    {
        on_piece(&piece)?;
    }
    connector
        .release_http_session(session, &*peer, Some(provider.timeouts.keepalive))
        .await;
    Ok(status)
}

/// `step`, within `idle` when there is one.
async fn within<T>(idle: Option<Duration>, step: impl Future<Output = T>) -> Result<T, String> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, step)
            .await
            .map_err(|_| format!("nothing within {idle:?}")),
        None => Ok(step.await),
    }
}
