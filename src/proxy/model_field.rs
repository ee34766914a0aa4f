//! The top-level `model` of a JSON request body: read it, and replace its value
//! without touching a single other byte, so unknown and future fields reach the
//! provider exactly as the client wrote them.

use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::translate::borrowed_text::BorrowedStr;
use crate::translate::StrictValue;

use super::GatewayError;

/// The `model` member of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelField {
    /// The model the client asked for.
    pub name: String,
    /// Byte range of the JSON string value (quotes included) inside the body.
    span: Range<usize>,
    /// The body asks for a streamed answer (top-level `"stream": true`).
    pub stream: bool,
}

impl ModelField {
    /// Finds `model` in `body`, which must be a JSON object with a string `model`.
    pub fn find(body: &[u8]) -> Result<Self, GatewayError> {
        let members: TopLevelModel<'_> = serde_json::from_slice(body).map_err(|e| {
            if e.to_string().starts_with(DUPLICATE_MODEL) {
                return GatewayError::invalid_request(
                    "`model` appears more than once; send it once",
                )
                .with_param("model");
            }
            GatewayError::invalid_request(format!(
                "request body is not a JSON object ({e}); send a single JSON object"
            ))
        })?;
        let raw = members.model.ok_or_else(|| {
            GatewayError::invalid_request("missing `model`: name the model to use")
                .with_param("model")
        })?;
        let name: String = serde_json::from_str(raw.get()).map_err(|_| {
            GatewayError::invalid_request("`model` must be a string").with_param("model")
        })?;
        if name.trim().is_empty() {
            return Err(
                GatewayError::invalid_request("`model` must not be empty").with_param("model")
            );
        }
        // RawValue borrows from `body`, so its address gives the exact span.
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        Ok(Self {
            name,
            span: start..start + raw.get().len(),
            stream: members.stream,
        })
    }

    /// `body` with this field's value replaced by `model`; every other byte unchanged.
    pub fn replace(&self, body: &[u8], model: &str) -> Vec<u8> {
        let encoded = serde_json::Value::String(model.to_string()).to_string();
        let mut out = Vec::with_capacity(body.len() + encoded.len());
        out.extend_from_slice(&body[..self.span.start]);
        out.extend_from_slice(encoded.as_bytes());
        out.extend_from_slice(&body[self.span.end..]);
        out
    }
}

/// The start of the error a body with two top-level `model` members fails with.
const DUPLICATE_MODEL: &str = "duplicate `model`";

/// A JSON object's top-level `model` value, every other member held to
/// `serde_json::Value`'s rules (number range, escapes, nesting) but never kept: the
/// request translators then read the body without checking it again. A second
/// `model` is an error: the gateway routes on one value and the provider, whose
/// parser may keep the first or the last, must not see another.
struct TopLevelModel<'a> {
    model: Option<&'a RawValue>,
    /// `stream` is `true` (any other value, or none, is not a stream).
    stream: bool,
}

impl<'de> Deserialize<'de> for TopLevelModel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopLevelModelVisitor)
    }
}

struct TopLevelModelVisitor;

impl<'de> Visitor<'de> for TopLevelModelVisitor {
    type Value = TopLevelModel<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut model = None;
        let mut stream = false;
        // Borrowed: a key is only compared, never kept.
        while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
            if key == "model" {
                if model.is_some() {
                    return Err(de::Error::custom(DUPLICATE_MODEL));
                }
                model = Some(map.next_value::<&'de RawValue>()?);
            } else if key == "stream" {
                stream = map.next_value_seed(StrictValue)? == Some(true);
            } else {
                map.next_value_seed(StrictValue)?;
            }
        }
        Ok(TopLevelModel { model, stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_model_value() {
        let body = br#"{ "stream" :true,"model":  "openai/gpt-4o" , "x_future": {"model": "keep"}, "n":1 }"#;
        let field = ModelField::find(body).unwrap();
        assert_eq!(field.name, "openai/gpt-4o");
        let out = field.replace(body, "gpt-4o");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "stream" :true,"model":  "gpt-4o" , "x_future": {"model": "keep"}, "n":1 }"#
        );
    }

    #[test]
    fn notes_whether_the_body_asks_for_a_stream() {
        let field = |b: &[u8]| ModelField::find(b).unwrap().stream;
        assert!(field(br#"{"model":"m","stream": true}"#));
        assert!(!field(br#"{"model":"m","stream":false}"#));
        assert!(!field(br#"{"model":"m","stream":"true"}"#));
        assert!(!field(br#"{"model":"m","x":{"stream":true}}"#));
        assert!(!field(br#"{"model":"m"}"#));
    }

    #[test]
    fn escaped_model_names_are_decoded_and_reencoded() {
        let body = br#"{"model":"a\/b\u0020c"}"#;
        let field = ModelField::find(body).unwrap();
        assert_eq!(field.name, "a/b c");
        assert_eq!(field.replace(body, "q\"x"), br#"{"model":"q\"x"}"#);
    }

    #[test]
    fn missing_or_non_string_model_is_400_naming_model() {
        for body in [
            &br#"{"messages":[]}"#[..],
            br#"{"model":3}"#,
            br#"{"model":" "}"#,
        ] {
            let err = ModelField::find(body).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.param.as_deref(), Some("model"));
        }
    }

    #[test]
    fn duplicate_model_is_400_naming_model() {
        let body = br#"{"model":"openai/gpt-4o","messages":[],"model":"openai/gpt-4o-mini"}"#;
        let err = ModelField::find(body).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("model"));
        assert!(err.message.contains("more than once"), "{}", err.message);
        // A `model` inside another member is not the top-level one.
        let nested = br#"{"model":"a","metadata":{"model":"b"}}"#;
        assert_eq!(ModelField::find(nested).unwrap().name, "a");
        // An escaped key is the same key.
        let escaped = br#"{"model":"a","mod\u0065l":"b"}"#;
        assert_eq!(ModelField::find(escaped).unwrap_err().status, 400);
        let only_escaped = br#"{"mod\u0065l":"b","str\u0065am":true}"#;
        let found = ModelField::find(only_escaped).unwrap();
        assert_eq!((found.name.as_str(), found.stream), ("b", true));
    }

    #[test]
    fn every_member_is_held_to_the_rules_value_parses_by() {
        // The request translators read the body without checking it again, so it must
        // fail here whenever `serde_json::Value` would refuse it.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for member in [
            "1".to_string(),
            "1e400".to_string(),
            "-1e400".to_string(),
            r#""\ud800""#.to_string(),
            r#"{"a":1e400}"#.to_string(),
            r#"{"\ud800":1}"#.to_string(),
            deep(126),
            deep(127),
            deep(200),
        ] {
            for key in ["x", "stream"] {
                let body = format!(r#"{{"model":"m","{key}":{member}}}"#);
                assert_held_as_value_holds_it(body.as_bytes());
            }
        }
        // Bytes that are not UTF-8, inside a string.
        assert_held_as_value_holds_it(b"{\"model\":\"m\",\"x\":\"\xff\"}");
    }

    fn assert_held_as_value_holds_it(body: &[u8]) {
        let value = serde_json::from_slice::<serde_json::Value>(body);
        let found = ModelField::find(body);
        let shown = String::from_utf8_lossy(body);
        assert_eq!(found.is_ok(), value.is_ok(), "{shown}: {found:?}");
        if let Err(e) = found {
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn non_object_body_is_400() {
        for body in [&b"[1]"[..], b"nope", b""] {
            assert_eq!(ModelField::find(body).unwrap_err().status, 400);
        }
    }
}
