//! The translation as a Pingora HTTP module. Every request gets one, idle until
//! a proxy hook configures it through `session.downstream_modules_ctx`, the
//! way `pingora-core`'s gRPC-web bridge is switched on per request.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_core::Result;
use pingora_http::ResponseHeader;

use super::response_translator::{ResponseTranslation, ResponseTranslator};

/// Per-request module state: `None` leaves the response untouched.
#[derive(Default)]
pub struct TranslationModule {
    translator: Option<ResponseTranslator>,
    /// Time spent translating this response (the gateway's own overhead).
    busy: Duration,
}

impl TranslationModule {
    /// Translates this request's response.
    pub fn translate(&mut self, translation: ResponseTranslation) {
        self.translator = Some(ResponseTranslator::new(translation));
    }

    /// Leaves the response untouched: the gateway writes an answer already in
    /// the client's format (its own error envelope).
    pub fn disable(&mut self) {
        self.translator = None;
    }

    /// The time spent translating this response so far.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    /// Whether the answer with this provider header will be translated whole, once
    /// the provider's body has ended (not as a stream).
    pub fn answers_whole(&self, resp: &ResponseHeader) -> bool {
        self.translator.as_ref().is_some_and(|t| !t.streams(resp))
    }

    /// Whether a translated response has started but not yet ended: after an
    /// upstream failure, ending its body lets a stream close with an error event.
    pub fn is_mid_response(&self) -> bool {
        self.translator
            .as_ref()
            .is_some_and(|t| t.has_started() && !t.is_finished())
    }
}

#[async_trait]
impl HttpModule for TranslationModule {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn response_header_filter(
        &mut self,
        resp: &mut ResponseHeader,
        _end_of_stream: bool,
    ) -> Result<()> {
        let Some(t) = self.translator.as_mut() else {
            return Ok(());
        };
        let began = Instant::now();
        let translated = t.on_header(resp);
        self.busy += began.elapsed();
        translated
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        if let Some(t) = self.translator.as_mut() {
            let began = Instant::now();
            *body = Some(t.on_body(body.as_deref(), end_of_stream));
            self.busy += began.elapsed();
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        let Some(t) = self.translator.as_mut() else {
            return Ok(None);
        };
        let began = Instant::now();
        let last = t.on_done();
        self.busy += began.elapsed();
        Ok(last)
    }
}

/// Registers [`TranslationModule`] in `init_downstream_modules`.
pub struct Translation;

impl HttpModuleBuilder for Translation {
    fn init(&self) -> Module {
        Box::new(TranslationModule::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spent_translating_is_counted_and_an_idle_module_counts_none() {
        let mut idle = TranslationModule::default();
        let mut body = Some(Bytes::from_static(b"untouched"));
        idle.response_body_filter(&mut body, true).unwrap();
        assert_eq!(idle.busy(), Duration::ZERO);

        let mut module = TranslationModule::default();
        module.translate(ResponseTranslation::anthropic_to_openai(
            "claude".into(),
            1,
            true,
            false,
        ));
        let mut header = ResponseHeader::build(200, None).unwrap();
        header
            .insert_header("content-type", "text/event-stream")
            .unwrap();
        let stream = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/anthropic/messages_stream.txt"
        ));
        block_on(module.response_header_filter(&mut header, false)).unwrap();
        let mut body = Some(Bytes::from_static(stream.as_bytes()));
        module.response_body_filter(&mut body, true).unwrap();
        assert!(module.busy() > Duration::ZERO);
    }

    /// Runs a future to its end (the header filter does no I/O).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
