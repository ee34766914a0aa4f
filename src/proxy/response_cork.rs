//! One TCP send for an answer the gateway holds whole.
//!
//! A translated JSON answer changes length, so it goes out chunked, and Pingora flushes
//! a header without `Content-Length`, each chunk and the last chunk separately: three
//! sends (three deliveries, three wake-ups of the client) for a document the gateway
//! already has in full. So the client's socket is corked (`TCP_CORK`, the option behind
//! nginx's `tcp_nopush`) when the translation module takes the provider's answer
//! whole, and uncorked once the response is done (the `logging` hook): the kernel
//! sends header, body and last chunk together. Streams are never corked. Should the
//! release be missed, the kernel sends corked data after 200 ms anyway: a delay, never
//! a loss.
//!
//! An answer the gateway sends whole with its length goes out in one send by itself
//! when header and body fit Pingora's write buffer in front of the client's socket
//! (nothing is flushed before the body's end): corking it would only add two system
//! calls. [`needs_cork`] tells the two apart.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use pingora_core::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use socket2::SockRef;

/// What Pingora adds to a response header as it writes it: the status line's reason,
/// `Date` and `Connection`, with room to spare.
const HEADER_WRITE_ALLOWANCE: usize = 128;

/// Whether `header` and a body of `body_len` bytes, sent whole with their length,
/// would leave in more than one send without a cork: more than the client
/// connection's write buffer holds (the listeners keep Pingora's default).
pub fn needs_cork(header: &ResponseHeader, body_len: usize) -> bool {
    let header_len: usize = header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    header_len + HEADER_WRITE_ALLOWANCE + body_len > DEFAULT_L4_WRITE_BUFFER_SIZE
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

    fn header_of(bytes: usize) -> ResponseHeader {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("x-filler", "a".repeat(bytes)).unwrap();
        header
    }

    #[test]
    fn a_small_whole_answer_is_not_corked() {
        assert!(!needs_cork(&header_of(300), 400));
    }

    #[test]
    fn an_answer_past_the_write_buffer_is_corked() {
        assert!(needs_cork(&header_of(300), DEFAULT_L4_WRITE_BUFFER_SIZE));
        // The header counts too.
        assert!(needs_cork(&header_of(DEFAULT_L4_WRITE_BUFFER_SIZE), 10));
    }
}
