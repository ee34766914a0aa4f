//! The client connection as Pingora sees it, with the request header held to
//! `header_timeout` and `max_header_bytes` (see [`super::request_guard`]).
//!
//! Reads pass straight through into Pingora's own buffer (nothing is copied or
//! allocated per read); the bytes of each read are only looked at while a header is
//! being read. A header that does not arrive in one read arms a timer, so a client that
//! goes silent is cut on time too. On a breach the stream writes the 408 or 431 answer
//! itself, then fails the read, which makes Pingora drop the request and shut the
//! connection down; the shutdown lingers briefly, reading and discarding what the client
//! still sends, so that the answer is not lost to a TCP reset.

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::request_guard::{HeaderBreach, HeaderLimits, HeaderProgress, HeaderWatch};

/// How long a connection cut for its header keeps reading (and discarding) what the
/// client still sends before it closes, and how much it reads at most.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// The first header's buffer to begin with (Pingora's own initial header buffer size).
const FIRST_HEADER_CAPACITY: usize = 4096;

/// A client connection whose request headers are watched.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    watch: HeaderWatch,
    /// The header deadline, then the linger deadline; made on first need, then reused
    /// for every later request of the connection.
    timer: Option<Pin<Box<Sleep>>>,
    /// The header deadline is running.
    armed: bool,
    /// The idle deadline of a kept-alive connection waiting for its next request is
    /// running: past it, the read ends as if the client had closed.
    idle: bool,
    /// The bytes read are HTTP/1 request headers to watch; not for HTTP/2, whose frames
    /// its codec bounds.
    watching: bool,
    cut: Option<Cut>,
}

/// A connection cut for its header: the answer being written, then the lingering close.
#[derive(Debug)]
struct Cut {
    breach: HeaderBreach,
    answer: Bytes,
    written: usize,
    flushed: bool,
    write_closed: bool,
    lingering: bool,
    discarded: usize,
    message: String,
}

impl GuardedStream {
    /// Wraps `inner`, which waits for its first request.
    pub fn new(inner: Stream, limits: HeaderLimits) -> Self {
        Self {
            inner,
            watch: HeaderWatch::new(limits),
            timer: None,
            armed: false,
            idle: false,
            watching: true,
            cut: None,
        }
    }

    /// Wraps an HTTP/2 connection: only the wait for its first bytes (the connection
    /// preface) is held, to `first_bytes`; past it, the read ends as if the client had
    /// closed. Pingora's h2 handshake waits for the preface for ever, and its idle
    /// bound only starts once the handshake is done.
    pub fn awaiting_h2_preface(inner: Stream, limits: HeaderLimits, first_bytes: Duration) -> Self {
        let mut stream = Self::new(inner, limits);
        stream.watching = false;
        stream.idle = true;
        stream.start_timer(first_bytes);
        stream
    }

    /// The connection waits for its next request, held to `limits`; the idle time until
    /// the request's first byte is not counted against them, but may last `keepalive`
    /// at most: then the connection ends, as if the client had closed it. (Pingora
    /// waits for ever on an HTTP/1.1 keep-alive.) The connection's one timer is moved
    /// on, not made again: no request pays for a timer of its own.
    pub fn next_request(&mut self, limits: HeaderLimits, keepalive: Duration) {
        self.watch.next_request(limits);
        self.armed = false;
        self.idle = true;
        self.start_timer(keepalive);
    }

    /// Reads the connection's first request header to its end, with whatever came after
    /// it in the same reads, for Pingora to parse as the start of the first request.
    /// Each read may wait `idle` (the header's own deadline still applies once it has
    /// begun). `None` when the client closed or stayed silent, or when the header was
    /// cut: then its answer has been written and the connection shut down.
    pub async fn read_first_header(&mut self, idle: Duration) -> Option<BytesMut> {
        let mut buf = BytesMut::with_capacity(FIRST_HEADER_CAPACITY);
        while !self.watch.header_read() {
            match tokio::time::timeout(idle, self.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if self.cut.is_some() {
                        Shutdown::shutdown(self).await;
                    } else {
                        log::debug!("reading a first request header: {e}");
                    }
                    return None;
                }
            }
        }
        Some(buf)
    }

    /// Why the connection was cut, if it was.
    pub fn breach(&self) -> Option<HeaderBreach> {
        self.cut.as_ref().map(|c| c.breach)
    }

    fn start_timer(&mut self, after: Duration) {
        let at = Instant::now() + after;
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    fn cut(&mut self, breach: HeaderBreach) {
        self.armed = false;
        let limits = self.watch.limits();
        let err = breach.error(limits);
        let message = format!("request header cut with {}: {}", err.status, err.message);
        // Pingora logs the failed read only when it had taken bytes of the header.
        let peer = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_else(|| "-".to_string());
        log::info!("client {peer}: {message}");
        // Pingora drops the request unlogged: it is counted here, where it ends.
        if let Some(metrics) = crate::metrics::metrics() {
            metrics.header_cut(err.status);
        }
        self.cut = Some(Cut {
            breach,
            answer: breach.answer(limits),
            written: 0,
            flushed: false,
            write_closed: false,
            lingering: false,
            discarded: 0,
            message,
        });
    }

    /// Writes the answer, then fails the read that was waiting for the header.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(cut) = self.cut.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while cut.written < cut.answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &cut.answer[cut.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            cut.written += n;
        }
        if !cut.flushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            cut.flushed = true;
        }
        let kind = match cut.breach {
            HeaderBreach::TooSlow => io::ErrorKind::TimedOut,
            HeaderBreach::TooLarge => io::ErrorKind::InvalidData,
        };
        Poll::Ready(Err(io::Error::new(kind, cut.message.clone())))
    }

    /// Closes the write side, then reads and discards until the client closes, the
    /// linger time is up, or enough was discarded.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(cut) = self.cut.as_mut() else {
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        };
        if !cut.write_closed {
            if let Err(e) = ready!(Pin::new(&mut self.inner).poll_shutdown(cx)) {
                log::debug!("shutting down a cut connection: {e}");
            }
            cut.write_closed = true;
        }
        if !cut.lingering {
            cut.lingering = true;
            self.start_timer(LINGER);
        }
        let mut scratch = [0u8; 4096];
        loop {
            if self.timer_fired(cx) {
                return Poll::Ready(Ok(()));
            }
            let Some(cut) = self.cut.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if cut.discarded >= LINGER_MAX_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => cut.discarded += buf.filled().len(),
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut.is_some() {
            return this.poll_answer(cx);
        }
        if this.armed && this.timer_fired(cx) {
            this.cut(HeaderBreach::TooSlow);
            return this.poll_answer(cx);
        }
        if this.idle && this.timer_fired(cx) {
            // Idle past the keep-alive timeout: read as the client's close.
            this.idle = false;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.idle = false;
        if !this.watching {
            return Poll::Ready(Ok(()));
        }
        match this.watch.observe(&buf.filled()[before..]) {
            HeaderProgress::NotInHeader | HeaderProgress::Continued => {}
            HeaderProgress::Started => {
                this.armed = true;
                this.start_timer(this.watch.limits().timeout);
            }
            HeaderProgress::Complete => this.armed = false,
            HeaderProgress::TooLarge => {
                // Pingora never sees the bytes past the limit.
                buf.set_filled(before);
                this.cut(HeaderBreach::TooLarge);
                return this.poll_answer(cx);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_linger(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            log::debug!("failed to shut down a client connection: {e}");
        }
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// Gives the guarded stream back from a connection Pingora hands back for its next
/// request; `None` (never expected) when the stream is not one.
pub fn reclaim(stream: Stream) -> Option<Box<GuardedStream>> {
    let any: Box<dyn Any> = stream.into_any();
    any.downcast::<GuardedStream>().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn guarded(max_bytes: usize) -> (GuardedStream, DuplexStream) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let limits = HeaderLimits {
            timeout: Duration::from_millis(200),
            max_bytes,
        };
        (GuardedStream::new(Box::new(server), limits), client)
    }

    /// Reads as Pingora reads a header: into one growing buffer until an error or EOF.
    async fn read_like_pingora(stream: &mut GuardedStream, buf: &mut BytesMut) -> io::Error {
        loop {
            match stream.read_buf(buf).await {
                Ok(0) => return io::ErrorKind::UnexpectedEof.into(),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    async fn answer_then_eof(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_silent_unfinished_header_is_answered_408_and_the_read_fails() {
        let (mut stream, mut client) = guarded(1024);
        client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        let mut buf = BytesMut::new();
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            read_like_pingora(&mut stream, &mut buf),
        )
        .await
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stream.breach(), Some(HeaderBreach::TooSlow));
        AsyncWriteExt::shutdown(&mut stream).await.unwrap();
        let answer = answer_then_eof(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[tokio::test]
    async fn bytes_past_the_cap_never_reach_the_reader() {
        let (mut stream, mut client) = guarded(1024);
        client.write_all(&[b'a'; 4096]).await.unwrap();
        let mut buf = BytesMut::with_capacity(4096);
        let err = read_like_pingora(&mut stream, &mut buf).await;
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(buf.len() < 1024, "{} bytes reached the reader", buf.len());
        assert_eq!(stream.breach(), Some(HeaderBreach::TooLarge));
        // The client's unread bytes are drained while the connection lingers.
        client.write_all(&[b'a'; 8192]).await.unwrap();
        AsyncWriteExt::shutdown(&mut stream).await.unwrap();
        let answer = answer_then_eof(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_idle_past_its_keepalive_reads_as_closed() {
        let (mut stream, mut client) = guarded(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 18);
        stream.next_request(stream.watch.limits(), Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert_eq!(read.unwrap().unwrap(), 0, "an end of stream");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(stream.breach(), None);
    }

    #[tokio::test]
    async fn a_slow_body_and_the_idle_wait_for_the_next_request_are_not_cut() {
        let (mut stream, mut client) = guarded(1024);
        let header = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n";
        client.write_all(header).await.unwrap();
        let mut buf = [0u8; 256];
        assert_eq!(stream.read(&mut buf).await.unwrap(), header.len());
        // Longer than the header deadline, while the body is read.
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.write_all(b"ok").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);
        stream.next_request(stream.watch.limits(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 18);
        assert_eq!(stream.breach(), None);
    }
}
