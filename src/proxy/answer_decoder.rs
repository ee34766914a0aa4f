//! Every provider answer is read plain, by the usage meter and the translators: one
//! that came compressed anyway (gzip or Brotli; the provider was asked for
//! `identity`) is decoded here, piece by piece, each piece handed on as soon as it is
//! decoded (an SSE event is not held back for the next one).
//!
//! Two ways an answer can hurt, both refused as a bad provider answer (502, or a
//! stream cut where it happened):
//! - a decoding that fails part way (a broken gzip): passed on, the rest would reach
//!   the client still compressed under a header that no longer says so;
//! - a decompression bomb: a few KiB that decode to gigabytes. A piece may decode to
//!   [`PIECE_OUTPUT_ALLOWANCE`] (or 128 times its own size, when larger) and no more;
//!   the decoder writes into a buffer that refuses to grow past it, so the bytes
//!   beyond are never produced.

use std::io::Write;

use bytes::Bytes;
use pingora_core::{Error, ErrorType};
use pingora_http::ResponseHeader;

/// What one piece of a compressed body may decode to at least. A piece is one read
/// from the provider (64 KiB at most over HTTP/1.1), so this allows 128:1 on a whole
/// piece, far past what JSON or SSE compress to, and holds a bomb's output to this
/// per answer (beside Brotli's window, 16 MiB at most, which its header sets).
pub const PIECE_OUTPUT_ALLOWANCE: usize = 8 * 1024 * 1024;

/// How many times its own size a piece larger than 64 KiB may decode to.
const PIECE_RATIO: usize = 128;

/// Brotli's working buffer, as Pingora sizes it.
const BROTLI_BUFFER: usize = 4096;

/// Why an answer could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecodable {
    /// The bytes are not what their `Content-Encoding` says.
    Broken,
    /// A piece decoded to more than its allowance: a decompression bomb.
    TooLarge,
}

impl Undecodable {
    /// What the client is told: the provider's answer was invalid (502).
    pub fn message(self) -> &'static str {
        match self {
            Self::Broken => "the provider's compressed answer could not be decoded",
            Self::TooLarge => "the provider's compressed answer decodes to more than it may",
        }
    }
}

impl From<Undecodable> for Box<Error> {
    /// An upstream error, which the gateway answers with 502.
    fn from(e: Undecodable) -> Self {
        Error::explain(ErrorType::Custom("undecodable answer"), e.message()).into_up()
    }
}

/// The decoded bytes of one piece, refusing to grow past the piece's allowance. Once
/// refused, every later write is refused too: a decoder dropped part way (Brotli's
/// finishes what it holds) produces nothing more.
#[derive(Default)]
struct DecodedPiece {
    bytes: Vec<u8>,
    allowance: usize,
    over: bool,
}

impl Write for DecodedPiece {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.over || self.bytes.len() + buf.len() > self.allowance {
            self.over = true;
            return Err(std::io::Error::other("decoded piece over its allowance"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The codec of one answer's body; boxed, so that an answer without one (nearly all)
/// carries a pointer's room for it.
enum Codec {
    /// Every member, as a gzip file may hold several.
    Gzip(Box<flate2::write::MultiGzDecoder<DecodedPiece>>),
    Brotli(Box<brotli::DecompressorWriter<DecodedPiece>>),
}

impl Codec {
    fn output(&mut self) -> &mut DecodedPiece {
        match self {
            Self::Gzip(d) => d.get_mut(),
            Self::Brotli(d) => d.get_mut(),
        }
    }

    /// Whether a body starting with byte `first` is refused before it is decoded: a
    /// Brotli stream with a large window (up to 1 GiB, which the decoder would set
    /// aside for it), which `Content-Encoding: br` does not allow (RFC 7932: 16 MiB at
    /// most). Its window bits start `1`, `000`, `001`, which a standard stream never
    /// does.
    fn refuses_start(&self, first: u8) -> bool {
        matches!(self, Self::Brotli(_)) && first & 0x7f == 0x11
    }

    /// `piece` through the codec, its output flushed out.
    fn take(&mut self, piece: &[u8]) -> std::io::Result<()> {
        let codec: &mut dyn Write = match self {
            Self::Gzip(d) => d.as_mut(),
            Self::Brotli(d) => d.as_mut(),
        };
        codec.write_all(piece)?;
        codec.flush()
    }

    /// The end of the body: whatever the codec still holds, or an error when the body
    /// stopped short of its end.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Self::Gzip(d) => d.try_finish(),
            Self::Brotli(d) => d.close(),
        }
    }
}

/// The decoder of one compressed answer's body.
pub struct AnswerDecoder {
    codec: Codec,
    /// Some bytes of the body were taken: an empty body labelled gzip (which some
    /// servers send) is an empty answer, not a broken one.
    took_bytes: bool,
    /// It failed: the answer ends here.
    failed: Option<Undecodable>,
}

impl std::fmt::Debug for AnswerDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codec = match self.codec {
            Codec::Gzip(_) => "gzip",
            Codec::Brotli(_) => "br",
        };
        f.debug_struct("AnswerDecoder")
            .field("codec", &codec)
            .field("took_bytes", &self.took_bytes)
            .field("failed", &self.failed)
            .finish()
    }
}

impl AnswerDecoder {
    /// The decoder of the answer with this `header` (to a `HEAD` request: `to_head`),
    /// when its body is to be decoded: it came as gzip or Brotli. The header then says
    /// what the client gets: no `Content-Encoding`, no `Content-Length` (the decoded
    /// length is not known ahead) nor `Accept-Ranges`, a weakened `ETag`, and
    /// `Vary: Accept-Encoding`. `None` (the header untouched) for an answer without a
    /// body (`HEAD`, `204`, `304`), a plain one, or one in an encoding the gateway does
    /// not decode (zstd, or several encodings), which passes as it came.
    pub fn of(header: &mut ResponseHeader, to_head: bool) -> Option<Self> {
        if to_head || matches!(header.status.as_u16(), 204 | 304) {
            return None;
        }
        // One coding on one line: `gzip` twice (on two lines) decoded once would reach
        // the client still gzipped, labelled plain.
        let mut codings = header
            .headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter();
        let (Some(encoding), None) = (codings.next(), codings.next()) else {
            return None;
        };
        let encoding = encoding.to_str().ok()?.trim();
        let codec = if encoding.eq_ignore_ascii_case("gzip") {
            Codec::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                DecodedPiece::default(),
            )))
        } else if encoding.eq_ignore_ascii_case("br") {
            Codec::Brotli(Box::new(brotli::DecompressorWriter::new(
                DecodedPiece::default(),
                BROTLI_BUFFER,
            )))
        } else {
            return None;
        };
        decoded_header(header);
        Some(Self {
            codec,
            took_bytes: false,
            failed: None,
        })
    }

    /// `piece` of the body (the last one: `end`) decoded; `None` only when no piece
    /// was given and none was left to decode.
    pub fn decode(
        &mut self,
        piece: Option<Bytes>,
        end: bool,
    ) -> Result<Option<Bytes>, Undecodable> {
        if let Some(failed) = self.failed {
            return Err(failed);
        }
        let given = piece.is_some();
        let piece = piece.unwrap_or_default();
        if !self.took_bytes && piece.first().is_some_and(|b| self.codec.refuses_start(*b)) {
            self.failed = Some(Undecodable::Broken);
            return Err(Undecodable::Broken);
        }
        let output = self.codec.output();
        output.allowance = PIECE_OUTPUT_ALLOWANCE.max(piece.len().saturating_mul(PIECE_RATIO));
        let mut taken = Ok(());
        if !piece.is_empty() {
            self.took_bytes = true;
            taken = self.codec.take(&piece);
        }
        if taken.is_ok() && end && self.took_bytes {
            taken = self.codec.finish();
        }
        let output = self.codec.output();
        if taken.is_err() {
            let failed = if output.over {
                Undecodable::TooLarge
            } else {
                Undecodable::Broken
            };
            // The decoded bytes go with it: nothing after a failure reaches the client.
            *output = DecodedPiece {
                over: true,
                ..Default::default()
            };
            self.failed = Some(failed);
            return Err(failed);
        }
        // A piece given is a piece returned, maybe empty (its bytes held a header, or
        // no whole block): to a reader of pieces, `None` is the end of the body.
        let bytes = std::mem::take(&mut output.bytes);
        Ok((given || !bytes.is_empty()).then(|| Bytes::from(bytes)))
    }
}

/// `piece` of an answer's body (the last: `end`), through its `decoder` when it came
/// compressed (`None`: as it came). A decoder that reached the body's end is let go:
/// its state (a Brotli window, up to 16 MiB) is not kept as long as the request.
pub fn decode_piece(
    decoder: &mut Option<AnswerDecoder>,
    piece: Option<Bytes>,
    end: bool,
) -> Result<Option<Bytes>, Undecodable> {
    let Some(d) = decoder.as_mut() else {
        return Ok(piece);
    };
    let decoded = d.decode(piece, end)?;
    if end {
        *decoder = None;
    }
    Ok(decoded)
}

/// The header of an answer whose body the gateway decodes, as Pingora's own decoder
/// leaves it (and nginx's gunzip): the encoding gone, the body streamed, the strong
/// validator weakened (the bytes are no longer the provider's) or dropped when it is
/// not a valid one.
fn decoded_header(header: &mut ResponseHeader) {
    use http::header::{
        ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, ETAG, TRANSFER_ENCODING,
        VARY,
    };
    header.remove_header(&CONTENT_ENCODING);
    header.remove_header(&CONTENT_LENGTH);
    header.remove_header(&ACCEPT_RANGES);
    // Infallible: a static value under a standard name.
    let _ = header.insert_header(&TRANSFER_ENCODING, "chunked");
    if let Some(etag) = header.headers.get(&ETAG) {
        let etag = etag.as_bytes();
        if etag.starts_with(b"\"") {
            let weak = http::HeaderValue::from_bytes(&[b"W/", etag].concat());
            match weak {
                Ok(weak) => {
                    let _ = header.insert_header(&ETAG, weak);
                }
                Err(_) => {
                    header.remove_header(&ETAG);
                }
            }
        } else if !etag.starts_with(b"W/") {
            header.remove_header(&ETAG);
        }
    }
    let varies = header.headers.get_all(&VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .map(|v| v.trim_ascii())
            .any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"))
    });
    if !varies {
        let _ = header.append_header(&VARY, http::HeaderValue::from_name(ACCEPT_ENCODING));
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

    fn brotli(data: &[u8]) -> Bytes {
        let mut out = Vec::new();
        {
            let mut br = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
            br.write_all(data).unwrap();
        }
        out.into()
    }

    /// `compress`ed zeros: `mib` MiB of them, fed to it a MiB at a time.
    fn zeros<W: Write>(mut compress: W, mib: usize) -> W {
        let mib_of_zeros = vec![0u8; 1024 * 1024];
        for _ in 0..mib {
            compress.write_all(&mib_of_zeros).unwrap();
        }
        compress
    }

    fn decoder(encoding: &str) -> AnswerDecoder {
        AnswerDecoder::of(&mut header(Some(encoding)), false).unwrap()
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

    /// `body` cut into pieces of `size`.
    fn pieces(body: &[u8], size: usize) -> Vec<Bytes> {
        body.chunks(size).map(Bytes::copy_from_slice).collect()
    }

    #[test]
    fn a_gzipped_or_brotli_answer_is_decoded_and_loses_its_encoding() {
        let json = br#"{"usage":{"prompt_tokens":3}}"#;
        for (encoding, body) in [
            ("gzip", gzip(json)),
            ("br", brotli(json)),
            ("GZIP", gzip(json)),
        ] {
            let mut h = header(Some(encoding));
            h.insert_header("content-length", body.len()).unwrap();
            let mut decoder = AnswerDecoder::of(&mut h, false).unwrap();
            assert!(h.headers.get("content-encoding").is_none());
            assert!(h.headers.get("content-length").is_none());
            assert!(h.headers["vary"]
                .as_bytes()
                .eq_ignore_ascii_case(b"accept-encoding"));
            let out = decoded(&mut decoder, &pieces(&body, 7));
            assert_eq!(out.unwrap(), json, "{encoding}");
        }
    }

    #[test]
    fn each_piece_is_handed_on_as_soon_as_it_decodes() {
        // Two SSE events, each compressed and flushed as a provider streams them.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"data: {\"n\":1}\n\n").unwrap();
        gz.flush().unwrap();
        let first = gz.get_ref().len();
        gz.write_all(b"data: {\"n\":2}\n\n").unwrap();
        let body = gz.finish().unwrap();
        let mut decoder = decoder("gzip");
        let out = decoder.decode(Some(Bytes::copy_from_slice(&body[..first])), false);
        assert_eq!(out.unwrap().unwrap(), &b"data: {\"n\":1}\n\n"[..]);
        let rest = Bytes::copy_from_slice(&body[first..]);
        assert_eq!(
            decoder.decode(Some(rest), true).unwrap().unwrap(),
            &b"data: {\"n\":2}\n\n"[..]
        );
    }

    #[test]
    fn a_piece_that_decodes_to_nothing_yet_is_an_empty_piece_not_the_end() {
        // Its first bytes: the gzip header alone, no data yet.
        let body = gzip(b"hello");
        let mut decoder = decoder("gzip");
        let out = decoder.decode(Some(body.slice(..10)), false);
        assert_eq!(out, Ok(Some(Bytes::new())));
        let out = decoder.decode(Some(body.slice(10..)), false);
        assert_eq!(out, Ok(Some(Bytes::from_static(b"hello"))));
        assert_eq!(decoder.decode(None, true), Ok(None));
    }

    #[test]
    fn a_brotli_stream_with_a_large_window_is_refused_before_it_is_decoded() {
        let params = brotli::enc::BrotliEncoderParams {
            large_window: true,
            lgwin: 30,
            quality: 5,
            ..Default::default()
        };
        let mut large = Vec::new();
        {
            let mut br = brotli::CompressorWriter::with_params(&mut large, 4096, &params);
            br.write_all(b"hello there").unwrap();
        }
        assert_eq!(large[0] & 0x7f, 0x11, "a large window's stream");
        let out = decoded(&mut decoder("br"), &[Bytes::from(large)]);
        assert_eq!(out, Err(Undecodable::Broken));
        // A standard stream with the largest window RFC 7932 allows is decoded.
        let mut standard = Vec::new();
        {
            let mut br = brotli::CompressorWriter::new(&mut standard, 4096, 5, 24);
            br.write_all(b"hello there").unwrap();
        }
        let out = decoded(&mut decoder("br"), &[Bytes::from(standard)]);
        assert_eq!(out.unwrap(), b"hello there");
    }

    #[test]
    fn the_header_of_a_decoded_answer_is_the_plain_ones() {
        let mut h = header(Some("gzip"));
        h.insert_header("etag", "\"abc\"").unwrap();
        h.insert_header("accept-ranges", "bytes").unwrap();
        h.insert_header("vary", "Origin, accept-encoding").unwrap();
        AnswerDecoder::of(&mut h, false).unwrap();
        assert_eq!(h.headers["etag"], "W/\"abc\"");
        assert!(h.headers.get("accept-ranges").is_none());
        assert_eq!(h.headers["transfer-encoding"], "chunked");
        assert_eq!(h.headers.get_all("vary").iter().count(), 1);

        let mut h = header(Some("br"));
        h.insert_header("etag", "not-quoted").unwrap();
        AnswerDecoder::of(&mut h, false).unwrap();
        assert!(h.headers.get("etag").is_none());
    }

    #[test]
    fn a_plain_or_bodiless_answer_or_one_in_an_encoding_not_decoded_is_left_alone() {
        for encoding in [None, Some("zstd"), Some("gzip, br"), Some("deflate")] {
            let mut h = header(encoding);
            assert!(AnswerDecoder::of(&mut h, false).is_none());
            assert_eq!(
                h.headers
                    .get("content-encoding")
                    .map(|v| v.to_str().unwrap()),
                encoding
            );
        }
        // Gzipped twice, said on two lines: passed as it came, labelled as it came.
        let mut twice = header(Some("gzip"));
        twice.append_header("content-encoding", "gzip").unwrap();
        assert!(AnswerDecoder::of(&mut twice, false).is_none());
        assert_eq!(twice.headers.get_all("content-encoding").iter().count(), 2);
        let mut to_head = header(Some("gzip"));
        assert!(AnswerDecoder::of(&mut to_head, true).is_none());
        let mut not_modified = header(Some("gzip"));
        not_modified.set_status(304).unwrap();
        assert!(AnswerDecoder::of(&mut not_modified, false).is_none());
        assert_eq!(not_modified.headers["content-encoding"], "gzip");
    }

    #[test]
    fn an_empty_body_labelled_gzip_is_an_empty_answer() {
        assert_eq!(decoded(&mut decoder("gzip"), &[]), Ok(Vec::new()));
        assert_eq!(
            decoded(&mut decoder("gzip"), &[Bytes::new()]),
            Ok(Vec::new())
        );
        assert_eq!(decoded(&mut decoder("br"), &[]), Ok(Vec::new()));
    }

    #[test]
    fn a_gzip_of_several_members_is_decoded_whole() {
        // What `cat a.gz b.gz` makes, and what a server that gzips each flush as its
        // own member sends: one body, every member of it.
        let mut two_members = gzip(b"one ").to_vec();
        two_members.extend_from_slice(&gzip(b"two"));
        let out = decoded(&mut decoder("gzip"), &pieces(&two_members, 5));
        assert_eq!(out.unwrap(), b"one two");
    }

    #[test]
    fn a_body_that_breaks_part_way_or_stops_short_is_undecodable() {
        let mut broken = gzip(b"hello there").to_vec();
        let cut = broken.len() / 2;
        broken[cut] ^= 0xff;
        broken[cut + 1] ^= 0xff;
        let whole = gzip(b"hello there");
        let short = whole[..whole.len() - 4].to_vec();
        for body in [vec![0x1f, 0x8b, 0, 0], broken, short] {
            let out = decoded(&mut decoder("gzip"), &[Bytes::from(body.clone())]);
            assert_eq!(out, Err(Undecodable::Broken), "{body:?}");
        }
        let br = brotli(b"hello there");
        let out = decoded(&mut decoder("br"), &[br.slice(..br.len() - 2)]);
        assert_eq!(out, Err(Undecodable::Broken));
        let out = decoded(
            &mut decoder("br"),
            &[Bytes::from_static(b"not brotli at all")],
        );
        assert_eq!(out, Err(Undecodable::Broken));
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_decoded() {
        // 64 MiB of zeros: about 64 KiB as gzip, a few bytes as Brotli.
        let gz = zeros(
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()),
            64,
        )
        .finish()
        .unwrap();
        let mut br = Vec::new();
        drop(zeros(
            brotli::CompressorWriter::new(&mut br, 4096, 1, 22),
            64,
        ));
        for (encoding, bomb) in [("gzip", gz), ("br", br)] {
            let mut decoder = decoder(encoding);
            let mut refused = None;
            let mut decoded = 0;
            // Pieces as large as Pingora reads them.
            for piece in pieces(&bomb, 64 * 1024) {
                match decoder.decode(Some(piece), false) {
                    Ok(out) => decoded += out.map_or(0, |b| b.len()),
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(refused, Some(Undecodable::TooLarge), "{encoding}");
            assert!(
                decoded <= PIECE_OUTPUT_ALLOWANCE * 2,
                "{encoding}: {decoded}"
            );
            // Refused for good: its end is no answer either.
            assert_eq!(decoder.decode(None, true), Err(Undecodable::TooLarge));
        }
    }

    #[test]
    fn a_large_answer_is_decoded_whole() {
        // 24 MiB of numbered JSON lines, spread over many pieces: larger than a piece's
        // allowance, as a long answer may be, but no piece decodes past it.
        let mut plain = Vec::new();
        let mut n = 0u64;
        while plain.len() < 24 * 1024 * 1024 {
            let line = format!(r#"{{"object":"chat.completion.chunk","index":{n}}}"#);
            plain.extend_from_slice(line.as_bytes());
            plain.push(b'\n');
            n += 1;
        }
        let body = gzip(&plain);
        let out = decoded(&mut decoder("gzip"), &pieces(&body, 16 * 1024));
        assert_eq!(out.unwrap().len(), plain.len());
    }
}
