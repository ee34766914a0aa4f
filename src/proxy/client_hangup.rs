//! Noticing a client that hangs up while the gateway waits on the provider.
//!
//! Pingora's own proxy loop watches the client connection while the provider is
//! silent, and closes the upstream connection as soon as the client goes. The paths
//! where the gateway drives the upstream exchange itself (a body read whole and
//! re-issued as a subrequest, a whole answer translated before it is sent) are not inside that loop,
//! so they ask the kernel directly: `poll(2)` on the client socket for `POLLRDHUP`
//! (the peer closed its side) or `POLLHUP`/`POLLERR` (reset). Pipelined bytes alone
//! (`POLLIN`) are not a hang-up. An HTTP/2 client cancels its own stream
//! (`RST_STREAM`) on a connection that carries others: where the session is free to
//! watch ([`hung_up`]), the stream's reset is awaited instead.

use std::os::fd::RawFd;
use std::time::Duration;

use pingora_core::protocols::http::ServerSession;
use pingora_proxy::Session;

use super::{GatewayError, RequestContext};

/// How often a waiting request looks at its client socket: a provider still working
/// for a client that left is told within this much (plus the time to close).
pub const HANGUP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The client connection of one request, watched for a hang-up.
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket {
    fd: Option<RawFd>,
}

impl ClientSocket {
    /// The socket of `session`'s client: HTTP/1 only (an HTTP/2 connection carries
    /// other streams, whose end is not this request's).
    pub fn of(session: &Session) -> Self {
        let fd = if session.downstream_session.is_http2() {
            None
        } else {
            session.downstream_session.stream().map(|s| s.id())
        };
        Self { fd }
    }

    /// Resolves once the client has hung up; never, when that cannot be watched.
    pub async fn hung_up(self) {
        let Some(fd) = self.fd else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(HANGUP_POLL_INTERVAL).await;
            if peer_closed(fd) {
                return;
            }
        }
    }
}

/// Resolves once the client of `session` has hung up: an HTTP/2 client that reset its
/// stream or lost its connection, an HTTP/1 client whose socket says so.
pub async fn hung_up(session: &mut Session, socket: ClientSocket) {
    if session.downstream_session.is_http2() {
        return stream_reset(session).await;
    }
    socket.hung_up().await
}

/// Resolves once an HTTP/2 client reset its stream or lost its connection; never for
/// an HTTP/1 one (watch its [`ClientSocket`] instead).
pub async fn stream_reset(session: &mut Session) {
    match &mut *session.downstream_session {
        // Pending until the stream is reset or the connection fails.
        ServerSession::H2(h2) => {
            let _ = h2.idle().await;
        }
        _ => std::future::pending().await,
    }
}

/// Waits out a retry's `wait` unless the client hangs up first: then the request ends
/// there (no keep-alive, the client noted as gone) and `false` comes back.
pub(super) async fn wait_for_retry(
    session: &mut Session,
    ctx: &mut RequestContext,
    client: ClientSocket,
    wait: Duration,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = hung_up(session, client) => {
            session.set_keepalive(None);
            ctx.error = Some(GatewayError::client_gone());
            false
        }
    }
}

/// Whether the peer of `fd` closed or reset the connection (a non-blocking look).
fn peer_closed(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, a zero timeout; `fd` is the request's client socket,
    // owned by its session for as long as the request runs.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    ready > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn pipelined_bytes_are_not_a_hangup_but_a_close_is() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!peer_closed(server.as_raw_fd()));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!peer_closed(server.as_raw_fd()), "data is not a hang-up");
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        assert!(peer_closed(server.as_raw_fd()));
    }

    #[tokio::test]
    async fn unwatchable_socket_never_reports_a_hangup() {
        let waited = tokio::time::timeout(
            HANGUP_POLL_INTERVAL * 3,
            ClientSocket { fd: None }.hung_up(),
        )
        .await;
        assert!(waited.is_err());
    }
}
