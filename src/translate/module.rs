//! The translation as a Pingora HTTP module. Every request gets one, idle until
//! a proxy hook configures it through `session.downstream_modules_ctx`, the
//! way `pingora-core`'s gRPC-web bridge is switched on per request.

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

    /// Whether a response is being translated.
    pub fn is_active(&self) -> bool {
        self.translator.is_some()
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
        match self.translator.as_mut() {
            Some(t) => t.on_header(resp),
            None => Ok(()),
        }
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        if let Some(t) = self.translator.as_mut() {
            *body = Some(t.on_body(body.as_deref(), end_of_stream));
        }
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        Ok(self
            .translator
            .as_mut()
            .and_then(ResponseTranslator::on_done))
    }
}

/// Registers [`TranslationModule`] in `init_downstream_modules`.
pub struct Translation;

impl HttpModuleBuilder for Translation {
    fn init(&self) -> Module {
        Box::new(TranslationModule::default())
    }
}
