//! One TCP send for an answer the gateway holds whole.
//!
//! A translated JSON answer changes length, so it goes out chunked, and Pingora flushes
//! a header without `Content-Length`, each chunk and the last chunk separately: three
//! sends (three deliveries, three wake-ups of the client) for a document the gateway
//! already has in full. So the client's socket is corked (`TCP_CORK`, the option behind
//! nginx's `tcp_nopush`) when the provider's header shows a whole answer, and uncorked
//! once the response is done (the `logging` hook): the kernel sends header, body and
//! last chunk together. Streams are never corked. Should the release be missed, the
//! kernel sends corked data after 200 ms anyway: a delay, never a loss.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use socket2::SockRef;

/// Whether the translation module answers this provider response whole (a JSON body,
/// or any error) rather than as a stream. Unknown content types count as streams.
pub fn is_whole_answer(resp: &ResponseHeader) -> bool {
    if !resp.status.is_success() {
        return true;
    }
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start();
            ct.len() >= 16 && ct[..16].eq_ignore_ascii_case("application/json")
        })
}

/// A client connection corked until [`CorkedSocket::release`].
#[derive(Debug)]
pub struct CorkedSocket {
    fd: RawFd,
}

impl CorkedSocket {
    /// Corks the client connection of `session`: HTTP/1 only (an HTTP/2 connection
    /// carries other streams; a subrequest has no socket of its own).
    pub fn cork(session: &Session) -> Option<Self> {
        let fd = session.downstream_session.stream()?.id();
        match set_cork(fd, true) {
            Ok(()) => Some(Self { fd }),
            Err(e) => {
                log::debug!("could not cork the client connection: {e}");
                None
            }
        }
    }

    /// Sends what the socket holds. Call it while the session still owns the socket.
    pub fn release(self) {
        if let Err(e) = set_cork(self.fd, false) {
            log::debug!("could not uncork the client connection: {e}");
        }
    }
}

fn set_cork(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: `fd` is the socket of the client connection, owned by the session for
    // the whole request: corked from a response hook, released from `logging`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    SockRef::from(&fd).set_tcp_cork(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16, content_type: Option<&str>) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        if let Some(ct) = content_type {
            h.insert_header("content-type", ct).unwrap();
        }
        h
    }

    #[test]
    fn json_answers_and_errors_are_whole() {
        assert!(is_whole_answer(&header(200, Some("application/json"))));
        assert!(is_whole_answer(&header(
            200,
            Some("Application/JSON; charset=utf-8")
        )));
        assert!(is_whole_answer(&header(429, Some("text/event-stream"))));
        assert!(is_whole_answer(&header(500, None)));
    }

    #[test]
    fn streams_and_unknown_types_are_not_corked() {
        assert!(!is_whole_answer(&header(200, Some("text/event-stream"))));
        assert!(!is_whole_answer(&header(200, Some("application/x-ndjson"))));
        assert!(!is_whole_answer(&header(200, None)));
        assert!(!is_whole_answer(&header(200, Some("json"))));
    }
}
