//! The gateway's request id: the client's `X-Request-Id` when it sent a usable one,
//! else a fresh UUID. It goes upstream as `X-Request-Id` and back as
//! `X-Aurora-Request-Id`, so it is held as a header value, made once, whose bytes
//! every copy shares.

use std::fmt;

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::RequestHeader;

use super::headers::REQUEST_ID_NAME;

/// The longest client request id the gateway keeps; a longer one is replaced.
const MAX_CLIENT_ID: usize = 128;

/// A request's id, valid as a header value and as UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's `X-Request-Id` (trimmed), when it is 1 to 128 visible ASCII
    /// characters; else a fresh one.
    pub fn of(req: &RequestHeader) -> Self {
        let Some(sent) = req.headers.get(REQUEST_ID_NAME) else {
            return Self::fresh();
        };
        let Some(text) = sent.to_str().ok().map(str::trim) else {
            return Self::fresh();
        };
        let usable = !text.is_empty()
            && text.len() <= MAX_CLIENT_ID
            && text.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            return Self::fresh();
        }
        if text.len() == sent.len() {
            // The client's own bytes, shared.
            return Self(sent.clone());
        }
        HeaderValue::from_str(text).map_or_else(|_| Self::fresh(), Self)
    }

    /// A fresh id: a random (v4) UUID, hyphenated, lower case.
    pub fn fresh() -> Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        // One allocation, shared by every copy of the value (a `Bytes` made from a
        // `Vec` allocates again on its first clone).
        HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .map_or_else(|_| Self::default(), Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever held.
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value; the copy shares its bytes.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    /// `-`: the id of a request not yet read.
    fn default() -> Self {
        Self(HeaderValue::from_static("-"))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request carrying `X-Request-Id: sent`, or none.
    fn request(sent: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(id) = sent {
            r.insert_header(crate::proxy::headers::REQUEST_ID, id)
                .unwrap();
        }
        r
    }

    fn is_fresh(id: &RequestId) -> bool {
        uuid::Uuid::parse_str(id.as_str()).is_ok_and(|u| u.get_version_num() == 4)
            && id.as_str() == id.as_str().to_lowercase()
    }

    #[test]
    fn a_usable_client_id_is_kept() {
        for (sent, kept) in [
            ("abc-123", "abc-123"),
            (" padded\t", "padded"),
            (&"x".repeat(128), &"x".repeat(128)),
        ] {
            let id = RequestId::of(&request(Some(sent)));
            assert_eq!(id.as_str(), kept);
            assert_eq!(id.header_value(), kept);
        }
    }

    #[test]
    fn an_unusable_or_missing_client_id_is_replaced_by_a_fresh_uuid() {
        let too_long = "x".repeat(129);
        for sent in ["bad value with spaces", "", "   ", "é", too_long.as_str()] {
            let id = RequestId::of(&request(Some(sent)));
            assert!(is_fresh(&id), "{sent:?} gave {id}");
        }
        let id = RequestId::of(&request(None));
        assert!(is_fresh(&id));
        assert_ne!(RequestId::fresh(), RequestId::fresh());
    }

    #[test]
    fn copies_of_the_header_value_share_its_bytes() {
        for id in [RequestId::fresh(), RequestId::of(&request(Some("abc-123")))] {
            let (a, b) = (id.header_value(), id.header_value());
            assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
            assert_eq!(a.as_bytes().as_ptr(), id.as_str().as_ptr());
        }
    }
}
