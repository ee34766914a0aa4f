//! The listening service's application: Pingora's HTTP app (the proxy) behind a
//! [`GuardedStream`] on every HTTP/1 connection.
//!
//! Pingora turns an accepted connection into HTTP sessions itself (its `ServerApp` for
//! every `HttpServerApp`), one after another on a kept-alive connection. This app does
//! the same for HTTP/1, so that between two requests it can tell the stream a new
//! request begins, with the limits of the config live at that moment. HTTP/2
//! connections (ALPN h2 on the TLS listener) go to Pingora with only the wait for their
//! preface bounded: the h2 codec bounds its own headers. The first request header of a connection is read here
//! before Pingora sees it, so that a shutdown beginning meanwhile does not drop it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;

use super::guarded_stream::{reclaim, GuardedStream};
use super::request_guard::HeaderLimits;
use crate::config::LiveConfig;

/// `app` with the request header of every HTTP/1 connection held to the live config's
/// `header_timeout` and `max_header_bytes`.
pub struct GuardedHttpApp<A> {
    app: Arc<A>,
    config: Arc<LiveConfig>,
}

impl<A> GuardedHttpApp<A> {
    /// Guards `app`, reading the limits from `config` at each request.
    pub fn new(app: A, config: Arc<LiveConfig>) -> Self {
        Self {
            app: Arc::new(app),
            config,
        }
    }

    fn limits(&self) -> HeaderLimits {
        HeaderLimits::from_settings(&self.config.snapshot().server)
    }

    /// How long a kept-alive connection may wait for its next request
    /// (`server.keepalive_timeout`).
    fn keepalive(&self) -> Duration {
        self.config.snapshot().server.keepalive_timeout
    }

    /// [`Self::keepalive`] in whole seconds, at least one.
    fn keepalive_seconds(&self) -> u64 {
        self.keepalive().as_secs().max(1)
    }
}

impl<A: HttpServerApp> GuardedHttpApp<A> {
    /// Whether Pingora must see the connection as it is: HTTP/2 (negotiated, or
    /// cleartext h2c when enabled) and custom protocols.
    fn passes_through(&self, stream: &Stream) -> bool {
        let options = self.app.server_options();
        let h2c = stream.get_ssl_digest().is_none() && options.is_some_and(|o| o.h2c);
        h2c || options.is_some_and(|o| o.force_custom)
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2) | Some(ALPN::Custom(_))
            )
    }

    /// Whether the connection negotiated HTTP/2 (ALPN h2 on the TLS listener).
    fn is_h2(stream: &Stream) -> bool {
        matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
    }
}

#[async_trait]
impl<A> ServerApp for GuardedHttpApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.passes_through(&stream) {
            if Self::is_h2(&stream) {
                // The preface's wait is bounded here as an HTTP/1 connection's first
                // request is; once connected, the proxy's `h2_idle_timeout` bounds it.
                let guarded =
                    GuardedStream::awaiting_h2_preface(stream, self.limits(), self.keepalive());
                return self.app.process_new(Box::new(guarded), shutdown).await;
            }
            return self.app.process_new(stream, shutdown).await;
        }
        let mut guarded = GuardedStream::new(stream, self.limits());
        // Pingora drops a connection whose request header is still on its way when a
        // graceful shutdown or upgrade begins, as it does an idle kept-alive one. On a
        // new connection the client has already sent (or is sending) its request, so
        // the first header is read here, out of the shutdown's reach, and handed over
        // whole: Pingora parses it without waiting and answers it with `close`.
        let first_header = guarded.read_first_header(self.keepalive()).await?;
        let mut session = ServerSession::new_http1(Box::new(guarded));
        session.set_pipelined_prefix(first_header);
        // As Pingora's own HTTP/1 loop: no keep-alive once shutting down.
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.keepalive_seconds()));
        }
        session.set_keepalive_reuses_remaining(
            self.app
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut reused = self.app.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            let Some(mut guarded) = reclaim(stream) else {
                log::warn!("a kept-alive client connection lost its header guard; closing it");
                return None;
            };
            // Pingora keeps an HTTP/1.1 connection alive with no bound on the wait for
            // its next request (it reads the request's keep-alive as "infinite"): the
            // stream bounds it, by the live config's.
            guarded.next_request(self.limits(), self.keepalive());
            let mut session = ServerSession::new_http1(guarded);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            reused = self.app.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        // Tells the proxy to stop waiting on kept-alive connections (graceful shutdown).
        self.app.http_cleanup().await;
    }
}
