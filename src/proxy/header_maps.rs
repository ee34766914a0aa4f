//! Pingora's request and answer headers, opened for the gateway's own edits.
//!
//! Pingora keeps a second map beside an HTTP/1 message's headers that records how the
//! sender spelled each name, and lets a header in or out only through calls that parse
//! its name, copy it into both maps and grow each as it fills. The gateway edits every
//! request (credentials out, the provider's in) and every answer (its request id, who
//! answered, the caller's rate windows), so it opens the map instead: the spelling
//! record goes, room is made in one step, and names go in as the constants they are.
//!
//! Without the record, names leave as Pingora writes its own messages and as HTTP/2
//! carries every message: the common standard names in title case (`Content-Type`),
//! the rest in lower case (`x-request-id`). Header names are case-insensitive (RFC 9110
//! §5.1); Envoy writes them this way too.

use http::header::{HeaderMap, HeaderName, HeaderValue, MaxSizeReached};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

/// Drops the record of how the client spelled its header names, when the request's
/// target is one its URI carries (origin-form, UTF-8: what clients send); another
/// target is left with its record, since only the URI would survive.
pub fn forget_request_spelling(req: &mut RequestHeader) {
    let origin_form = req.raw_path_is_utf8() && req.raw_path().first() == Some(&b'/');
    if req.has_case() && origin_form {
        open_request_at(req, None, |_| ());
    }
}

/// Runs `edit` on the parts of `req` with `uri` as its target, as `set_uri` would set
/// it; the spelling record of its header names goes.
pub fn open_request<T>(
    req: &mut RequestHeader,
    uri: http::Uri,
    edit: impl FnOnce(&mut http::request::Parts) -> T,
) -> T {
    open_request_at(req, Some(uri), edit)
}

fn open_request_at<T>(
    req: &mut RequestHeader,
    uri: Option<http::Uri>,
    edit: impl FnOnce(&mut http::request::Parts) -> T,
) -> T {
    // Only HTTP/2 requests say whether END_STREAM may ride on their HEADERS.
    let end_stream = req.send_end_stream();
    // A blank header in its place allocates nothing.
    let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, blank));
    if let Some(uri) = uri {
        parts.uri = uri;
    }
    let edited = edit(&mut parts);
    *req = RequestHeader::from(parts);
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    edited
}

/// Runs `edit` on the header map of `resp`, which loses the provider's spelling of its
/// header names; its status, version, reason phrase and headers stay as they were.
pub fn open_answer<T>(resp: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap) -> T) -> T {
    // Only an unusual reason phrase is copied; the status's own is the default.
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    // A blank header in its place allocates nothing.
    let blank = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, blank));
    let edited = edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if let Some(reason) = reason {
        // Setting a reason phrase cannot fail.
        let _ = resp.set_reason_phrase(Some(&reason));
    }
    edited
}

/// The parts of a new answer with `status` and room for `room` headers, to become a
/// [`ResponseHeader`] without a spelling record: the gateway's own answers name their
/// headers as [`open_answer`] leaves a provider's.
pub fn blank_answer(status: u16, room: usize) -> Result<http::response::Parts> {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = http::StatusCode::from_u16(status)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid status"))?;
    make_room(&mut parts.headers, room)?;
    Ok(parts)
}

/// Makes room for `count` more headers in one step.
pub fn make_room(headers: &mut HeaderMap, count: usize) -> Result<()> {
    headers.try_reserve(count).map_err(too_many_headers)
}

/// Sets `name` to `value`, replacing any value the provider gave it.
pub fn put(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<()> {
    headers
        .try_insert(name, value)
        .map(drop)
        .map_err(too_many_headers)
}

/// Pingora's error for a header map past its size (`http` holds 32,768 headers).
pub fn too_many_headers(_: MaxSizeReached) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, "too many headers")
}

/// `text` as a header value; text a header cannot carry is refused, as Pingora's own
/// `insert_header` refuses it.
pub fn text(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    /// An answer as Pingora reads one from an HTTP/1 provider: names spelled as sent.
    fn provider_answer() -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, Some(2)).unwrap();
        resp.append_header("Content-Type", "application/json")
            .unwrap();
        resp.append_header("CF-RAY", "abc").unwrap();
        resp.append_header("X-Multi", "1").unwrap();
        resp.append_header("X-Multi", "2").unwrap();
        resp
    }

    /// The header lines `write` puts on an HTTP/1 wire.
    fn wire(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        write(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn an_opened_answer_keeps_its_headers_in_order_and_loses_only_their_spelling() {
        let mut resp = provider_answer();
        assert!(resp.has_case());
        let added = open_answer(&mut resp, |headers| {
            make_room(headers, 1)?;
            put(
                headers,
                HeaderName::from_static("x-added"),
                HeaderValue::from(7),
            )
        });
        added.unwrap();
        assert!(!resp.has_case());
        assert_eq!(resp.status, 200);
        assert_eq!(
            wire(|buf| resp.header_to_h1_wire(buf)),
            "Content-Type: application/json\r\ncf-ray: abc\r\nx-multi: 1\r\nx-multi: 2\r\n\
             x-added: 7\r\n"
        );
    }

    #[test]
    fn an_opened_answer_keeps_an_unusual_reason_phrase() {
        let mut resp = provider_answer();
        resp.set_reason_phrase(Some("Fine Thanks")).unwrap();
        open_answer(&mut resp, |_| ());
        assert_eq!(resp.get_reason_phrase(), Some("Fine Thanks"));

        let mut plain = ResponseHeader::build(404, None).unwrap();
        open_answer(&mut plain, |_| ());
        assert_eq!(plain.status, 404);
        assert_eq!(plain.get_reason_phrase(), Some("Not Found"));
    }

    #[test]
    fn made_room_takes_the_headers_without_growing_again() {
        let mut resp = provider_answer();
        open_answer(&mut resp, |headers| {
            make_room(headers, 10).unwrap();
            let room = headers.capacity();
            for i in 0..10 {
                let name = HeaderName::from_bytes(format!("x-aurora-{i}").as_bytes()).unwrap();
                put(headers, name, HeaderValue::from(i)).unwrap();
            }
            assert_eq!(headers.capacity(), room, "the map grew after room was made");
        });
    }

    #[test]
    fn put_replaces_what_the_provider_sent() {
        let mut resp = provider_answer();
        open_answer(&mut resp, |headers| {
            put(
                headers,
                HeaderName::from_static("x-multi"),
                HeaderValue::from(3),
            )
            .unwrap();
            put(headers, CONTENT_TYPE, text("text/plain").unwrap()).unwrap();
        });
        let all: Vec<_> = resp.headers.get_all("x-multi").iter().collect();
        assert_eq!(all, ["3"]);
        assert_eq!(resp.headers[CONTENT_TYPE], "text/plain");
    }

    #[test]
    fn a_request_forgets_its_spelling_and_keeps_its_target_method_and_headers() {
        let mut req = RequestHeader::build("POST", b"/p/openai/chat?x=1", None).unwrap();
        req.append_header("Content-Type", "application/json")
            .unwrap();
        req.append_header("X-Stainless-Lang", "python").unwrap();
        forget_request_spelling(&mut req);
        assert!(!req.has_case());
        assert_eq!(req.method, "POST");
        assert_eq!(req.raw_path(), b"/p/openai/chat?x=1");
        assert_eq!(
            wire(|buf| req.header_to_h1_wire(buf)),
            "Content-Type: application/json\r\nx-stainless-lang: python\r\n"
        );
    }

    #[test]
    fn a_request_whose_target_its_uri_cannot_carry_keeps_its_spelling() {
        for target in [&b"http://example.com/v1/models"[..], b"/caf\xe9"] {
            let mut req = RequestHeader::build("GET", target, None).unwrap();
            req.append_header("X-Odd", "1").unwrap();
            forget_request_spelling(&mut req);
            assert!(req.has_case());
            assert_eq!(req.raw_path(), target);
        }
    }

    #[test]
    fn an_opened_request_takes_its_new_target_and_keeps_its_end_stream_choice() {
        let mut req = RequestHeader::build("POST", b"/p/openai/chat", None).unwrap();
        req.set_version(http::Version::HTTP_2);
        req.set_send_end_stream(false);
        req.append_header("X-Odd", "1").unwrap();
        let took = open_request(&mut req, "/v1/chat?y=2".parse().unwrap(), |parts| {
            make_room(&mut parts.headers, 1)?;
            put(
                &mut parts.headers,
                HeaderName::from_static("x-added"),
                HeaderValue::from(2),
            )
        });
        took.unwrap();
        assert!(!req.has_case());
        assert_eq!(req.raw_path(), b"/v1/chat?y=2");
        assert_eq!(req.send_end_stream(), Some(false));
        assert_eq!(req.version, http::Version::HTTP_2);
        assert_eq!(req.headers["x-odd"], "1");
        assert_eq!(req.headers["x-added"], "2");
    }

    #[test]
    fn a_blank_answer_has_its_status_and_no_spelling_record() {
        let resp = ResponseHeader::from(blank_answer(429, 3).unwrap());
        assert_eq!(resp.status, 429);
        assert!(!resp.has_case());
        assert!(resp.headers.capacity() >= 3);
        assert!(blank_answer(1000, 0).is_err());
    }

    #[test]
    fn text_a_header_cannot_carry_is_refused() {
        assert!(text("a\r\nb").is_err());
        assert_eq!(text("gpt-4o").unwrap(), "gpt-4o");
    }
}
