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

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use pingora_proxy::Session;
use socket2::SockRef;

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
