//! Every provider answer is read plain, by the usage meter and the translators: one
//! that came compressed anyway (gzip or Brotli; the provider was asked for
//! `identity`) is decoded. Pingora's decoder that fails part way (a broken gzip, or
//! one of several members) gives up and passes the rest as it came, under a header
//! that no longer says it is compressed: the client would get compressed bytes
//! labelled plain, and the meter would read nothing. Such an answer is refused
//! instead.

use bytes::Bytes;
use pingora_core::protocols::http::compression::ResponseCompressionCtx;
use pingora_core::{Error, ErrorType};
use pingora_http::ResponseHeader;

/// Has Pingora's decoder of a proxied answer (`ctx`, idle until now) decode the body
/// of the answer with this `header` (to a `HEAD` request: `to_head`) when it came
/// compressed; the header then loses its `Content-Encoding` (and gains
/// `Vary: Accept-Encoding`). Decided here, once the gateway has seen the header,
/// rather than before the request: Pingora's decoder then costs an answer that is not
/// compressed (nearly all) nothing. An answer without a body (to `HEAD`, or
/// `204`/`304`) is left alone. The watch to hold over its body.
pub fn decode_if_compressed(
    ctx: &mut ResponseCompressionCtx,
    header: &mut ResponseHeader,
    to_head: bool,
) -> DecodeWatch {
    let bodiless = to_head || matches!(header.status.as_u16(), 204 | 304);
    if bodiless || !header.headers.contains_key(http::header::CONTENT_ENCODING) {
        return DecodeWatch::default();
    }
    // This header went through `ctx` idle (`reset` before each attempt); the body
    // chunks that follow it go through it enabled.
    *ctx = ResponseCompressionCtx::new(0, true, false);
    ctx.response_header_filter(header, false);
    DecodeWatch::of(ctx)
}

/// An idle decoder in place of one that served an answer, for another attempt.
pub fn reset(ctx: &mut ResponseCompressionCtx) {
    *ctx = ResponseCompressionCtx::new(0, false, false);
}

/// Whether the decoder in `ctx` is decoding a body: in its body phase it reports its
/// figures; one that gave up, or never started, has none.
fn decodes(ctx: &ResponseCompressionCtx) -> bool {
    ctx.get_info().is_some()
}

/// Watches the decoder of one answer for the moment it gives up.
#[derive(Debug, Default, Clone, Copy)]
pub struct DecodeWatch {
    /// The body is being decoded.
    decoding: bool,
    /// The decoder has been given some bytes of it.
    took_bytes: bool,
}

impl DecodeWatch {
    /// The watch over the decoder `ctx`, whose answer's header has gone through it.
    fn of(ctx: &ResponseCompressionCtx) -> Self {
        Self {
            decoding: decodes(ctx),
            took_bytes: false,
        }
    }

    /// After `piece` of the body (the last one: `end`) went through `ctx`: an error
    /// when the decoder gave up on it, leaving an answer the client cannot read. Not
    /// when the body was empty from start to end (`Content-Encoding: gzip` on nothing,
    /// which some servers send and the decoder refuses to finish).
    pub fn after(
        &mut self,
        ctx: &ResponseCompressionCtx,
        piece: Option<&[u8]>,
        end: bool,
    ) -> Result<(), Undecodable> {
        if !self.decoding {
            return Ok(());
        }
        if let Some((_, taken, _, _)) = ctx.get_info() {
            self.took_bytes = taken > 0;
            return Ok(());
        }
        self.decoding = false;
        if self.took_bytes || !end || piece.is_some_and(|p| !p.is_empty()) {
            return Err(Undecodable);
        }
        Ok(())
    }
}

/// The decoder of one answer read by the gateway's own exchange.
pub struct AnswerDecoder {
    ctx: ResponseCompressionCtx,
    watch: DecodeWatch,
}

/// The answer could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Undecodable;

impl Undecodable {
    /// What the client is told: the provider's answer was invalid (502).
    pub const MESSAGE: &'static str = "the provider's compressed answer could not be decoded";
}

impl From<Undecodable> for Box<Error> {
    /// An upstream error, which the gateway answers with 502.
    fn from(_: Undecodable) -> Self {
        Error::explain(
            ErrorType::Custom("undecodable answer"),
            Undecodable::MESSAGE,
        )
        .into_up()
    }
}

impl AnswerDecoder {
    /// The decoder of the answer with this `header`, which loses its
    /// `Content-Encoding` when its body is to be decoded.
    pub fn of(header: &mut ResponseHeader) -> Self {
        let mut ctx = ResponseCompressionCtx::new(0, true, false);
        ctx.response_header_filter(header, false);
        Self {
            watch: DecodeWatch::of(&ctx),
            ctx,
        }
    }

    /// `piece` of the body (`None` at its end) decoded, or as it came when the answer
    /// is not compressed.
    pub fn decode(
        &mut self,
        piece: Option<Bytes>,
        end: bool,
    ) -> Result<Option<Bytes>, Undecodable> {
        if !self.watch.decoding {
            return Ok(piece);
        }
        let decoded = self.ctx.response_body_filter(piece.as_ref(), end);
        self.watch.after(&self.ctx, piece.as_deref(), end)?;
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn header(encoding: Option<&str>) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-type", "application/json").unwrap();
        if let Some(e) = encoding {
            h.insert_header("content-encoding", e).unwrap();
        }
        h
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap().into()
    }

    /// Every piece of `pieces` through `decoder`, then its end.
    fn decoded(decoder: &mut AnswerDecoder, pieces: &[Bytes]) -> Result<Vec<u8>, Undecodable> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&decoder.decode(Some(p.clone()), false)?.unwrap_or_default());
        }
        out.extend_from_slice(&decoder.decode(None, true)?.unwrap_or_default());
        Ok(out)
    }

    #[test]
    fn a_gzipped_answer_is_decoded_and_loses_its_encoding() {
        let mut h = header(Some("gzip"));
        let mut decoder = AnswerDecoder::of(&mut h);
        assert!(h.headers.get("content-encoding").is_none());
        let body = gzip(br#"{"usage":{}}"#);
        let (a, b) = body.split_at(7);
        let out = decoded(
            &mut decoder,
            &[Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)],
        );
        assert_eq!(out.unwrap(), br#"{"usage":{}}"#);
    }

    #[test]
    fn a_plain_answer_or_one_in_an_encoding_not_decoded_passes_as_it_came() {
        for encoding in [None, Some("zstd")] {
            let mut h = header(encoding);
            let mut decoder = AnswerDecoder::of(&mut h);
            assert_eq!(
                h.headers
                    .get("content-encoding")
                    .map(|v| v.to_str().unwrap()),
                encoding
            );
            let out = decoded(&mut decoder, &[Bytes::from_static(b"{\"a\":1}")]);
            assert_eq!(out.unwrap(), b"{\"a\":1}");
        }
    }

    #[test]
    fn an_empty_body_labelled_gzip_is_an_empty_answer() {
        let mut h = header(Some("gzip"));
        let mut decoder = AnswerDecoder::of(&mut h);
        assert_eq!(decoded(&mut decoder, &[]), Ok(Vec::new()));
        let mut decoder = AnswerDecoder::of(&mut header(Some("gzip")));
        assert_eq!(decoded(&mut decoder, &[Bytes::new()]), Ok(Vec::new()));
    }

    #[test]
    fn a_gzip_that_breaks_part_way_is_undecodable() {
        let mut broken = gzip(b"hello there").to_vec();
        let cut = broken.len() / 2;
        broken[cut] ^= 0xff;
        broken[cut + 1] ^= 0xff;
        let mut two_members = gzip(b"one").to_vec();
        two_members.extend_from_slice(&gzip(b"two"));
        for body in [vec![0x1f, 0x8b, 0, 0], broken, two_members] {
            let mut h = header(Some("gzip"));
            let mut decoder = AnswerDecoder::of(&mut h);
            let out = decoded(&mut decoder, &[Bytes::from(body.clone())]);
            assert_eq!(out, Err(Undecodable), "{body:?}");
        }
    }
}
