//! Reading request bodies the same way in both request translators, without
//! building a tree of the whole body: the body is checked once, as strictly
//! as `serde_json::Value` would parse it, then read one level at a time with
//! every value borrowed from the body as its JSON text. Memory then follows
//! the level being read (one message, one array of parts), not the body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::json_members::{ArrayElements, ObjectMembers};
use super::json_writer::write_str_fragment;
use super::TranslateError;

/// One JSON value of a checked request body, as its text (no surrounding
/// whitespace). Reading it never fails: the whole body was checked first, so
/// a value of the wrong kind simply reads as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Json<'a>(&'a str);

/// A request body held to `serde_json::Value`'s rules: one JSON value, not yet
/// read. The request translators take one, so that a body the gateway checked as
/// it found the model is not checked a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedBody<'a>(Json<'a>);

impl<'a> CheckedBody<'a> {
    /// Checks `body`: a single JSON value that `serde_json::Value` would accept
    /// (same errors, same messages).
    pub fn check(body: &'a [u8]) -> Result<Self, TranslateError> {
        parse_body(body).map(Self)
    }

    /// `body`, which its caller has already held to the same rules (the gateway's
    /// `ModelField::find` does, as it reads the model). Only its encoding is
    /// checked again: a body that is not JSON after all reads as missing members,
    /// never as a panic.
    pub fn already_checked(body: &'a [u8]) -> Result<Self, TranslateError> {
        let text =
            std::str::from_utf8(body).map_err(|e| TranslateError::InvalidJson(e.to_string()))?;
        Ok(Self(Json(trim_json_whitespace(text))))
    }

    /// The body's text, without surrounding whitespace.
    pub fn text(self) -> &'a str {
        self.0.text()
    }

    /// The body as the translators read it.
    pub(super) fn value(self) -> Json<'a> {
        self.0
    }
}

/// A test's request as a checked body; its text is leaked, as a test is short.
#[cfg(test)]
pub(super) fn checked(request: &serde_json::Value) -> CheckedBody<'static> {
    let text: &'static str = Box::leak(request.to_string().into_boxed_str());
    CheckedBody(Json(text))
}

/// `text` without the whitespace JSON allows around a value.
fn trim_json_whitespace(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// Checks that `body` is a single JSON value that `serde_json::Value` would
/// accept (same errors, same messages) and returns it, unparsed.
fn parse_body(body: &[u8]) -> Result<Json<'_>, TranslateError> {
    let invalid = |e: serde_json::Error| TranslateError::InvalidJson(e.to_string());
    let mut de = serde_json::Deserializer::from_slice(body);
    StrictValue.deserialize(&mut de).map_err(invalid)?;
    de.end().map_err(invalid)?;
    // serde_json only accepts UTF-8 text, so this cannot fail after the check.
    let text = std::str::from_utf8(body).map_err(|e| TranslateError::InvalidJson(e.to_string()))?;
    Ok(Json(trim_json_whitespace(text)))
}

/// Checks that `text` is one JSON value, as [`parse_body`] does, and returns
/// it; the error is serde_json's.
pub(super) fn parse_text(text: &str) -> Result<Json<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(Json(trim_json_whitespace(text)))
}

impl<'a> Json<'a> {
    /// The value's JSON text.
    pub(super) fn text(self) -> &'a str {
        self.0
    }

    fn first(self) -> u8 {
        self.0.as_bytes().first().copied().unwrap_or(b'n')
    }

    /// `null`.
    pub(super) fn is_null(self) -> bool {
        self.0 == "null"
    }

    /// An object.
    pub(super) fn is_object(self) -> bool {
        self.first() == b'{'
    }

    /// A string.
    pub(super) fn is_string(self) -> bool {
        self.first() == b'"'
    }

    /// A number.
    pub(super) fn is_number(self) -> bool {
        matches!(self.first(), b'-' | b'0'..=b'9')
    }

    /// The value itself, or `None` for `null`.
    pub(super) fn non_null(self) -> Option<Self> {
        (!self.is_null()).then_some(self)
    }

    /// "null", "a boolean", "an array"…, for error messages.
    pub(super) fn kind_name(self) -> &'static str {
        match self.first() {
            b'n' => "null",
            b't' | b'f' => "a boolean",
            b'"' => "a string",
            b'[' => "an array",
            b'{' => "an object",
            _ => "a number",
        }
    }

    /// The string's contents, borrowed from the body unless it has escapes.
    pub(super) fn as_str(self) -> Option<Cow<'a, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        serde_json::from_str::<String>(self.0).ok().map(Cow::Owned)
    }

    /// A string's contents as written, to be copied into another JSON string
    /// (see [`Text`]).
    pub(super) fn as_text(self) -> Option<Text<'a>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        Some(Text::Escaped(inner))
    }

    /// The boolean.
    pub(super) fn as_bool(self) -> Option<bool> {
        match self.0 {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The number, represented as `serde_json::Value` would hold it.
    pub(super) fn as_number(self) -> Option<Number> {
        if !self.is_number() {
            return None;
        }
        serde_json::from_str(self.0).ok()
    }

    /// A non-negative integer (not `1.0`), as `Value::as_u64`.
    pub(super) fn as_u64(self) -> Option<u64> {
        self.as_number()?.as_u64()
    }

    /// Any number as a float, as `Value::as_f64`.
    pub(super) fn as_f64(self) -> Option<f64> {
        self.as_number()?.as_f64()
    }

    /// The array's elements. The body was checked whole, so each level is only
    /// followed here, not parsed again (see [`super::json_members`]).
    pub(super) fn elements(self) -> Option<Vec<Json<'a>>> {
        let mut items = ArrayElements::of(self.0.as_bytes())?;
        let elements = items
            .by_ref()
            .map(|item| self.part(item))
            .collect::<Option<Vec<_>>>()?;
        (!items.broken()).then_some(elements)
    }

    /// The members called `names`, in that order; a member given twice reads
    /// as its last value (as `Value` keeps it). All are `None` when this is
    /// not an object.
    pub(super) fn members<const N: usize>(self, names: [&str; N]) -> [Option<Json<'a>>; N] {
        let mut found = [None; N];
        let Some(mut members) = ObjectMembers::of(self.0.as_bytes()) else {
            return found;
        };
        while let Some(member) = members.next_front() {
            let key = member.key();
            if let Some(slot) = names.iter().position(|n| n.as_bytes() == &*key) {
                match self.part(member.value) {
                    Some(value) => found[slot] = Some(value),
                    None => return [None; N],
                }
            }
        }
        if members.broken() {
            return [None; N];
        }
        found
    }

    /// `part`, a slice of this value's text, as a value of its own.
    fn part(self, part: &[u8]) -> Option<Json<'a>> {
        let start = (part.as_ptr() as usize).checked_sub(self.0.as_ptr() as usize)?;
        self.0.get(start..start + part.len()).map(Json)
    }

    /// One member (`Value::get`): present, possibly `null`.
    pub(super) fn get(self, name: &str) -> Option<Json<'a>> {
        let [v] = self.members([name]);
        v
    }
}

/// A text a translator copies into the request it writes: a string of the checked
/// body kept as written between its quotes (escapes and all), or a text the
/// translator made. The body's strings are valid JSON string contents already, so
/// copying one costs a copy, where reading it and writing it again would undo its
/// escapes and redo them (a coding agent's tool outputs: line breaks, quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Text<'a> {
    /// A string's contents as the body wrote them.
    Escaped(&'a str),
    /// A text to be escaped as it is written.
    Plain(Cow<'a, str>),
}

impl<'a> Text<'a> {
    /// Whether the text is empty (an empty string writes no contents).
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Text::Escaped(s) => s.is_empty(),
            Text::Plain(s) => s.is_empty(),
        }
    }

    /// Appends the text's escaped contents, without quotes.
    pub(super) fn write_fragment(&self, out: &mut Vec<u8>) {
        match self {
            Text::Escaped(s) => out.extend_from_slice(s.as_bytes()),
            Text::Plain(s) => write_str_fragment(out, s),
        }
    }

    /// Appends the text as a JSON string.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        self.write_fragment(out);
        out.push(b'"');
    }

    /// The text itself, escapes undone.
    fn unescaped(&self) -> Cow<'_, str> {
        match self {
            Text::Escaped(s) if s.contains('\\') => {
                serde_json::from_str::<String>(&format!("\"{s}\""))
                    .map_or(Cow::Borrowed(*s), Cow::Owned)
            }
            Text::Escaped(s) => Cow::Borrowed(*s),
            Text::Plain(s) => Cow::Borrowed(s.as_ref()),
        }
    }

    /// Whether the text holds nothing but whitespace (or nothing).
    pub(super) fn is_blank(&self) -> bool {
        if let Text::Escaped(s) = self {
            // Most text has a letter among its first bytes: told without unescaping.
            if s.bytes().any(|b| !matches!(b, b' ' | b'\\' | b't' | b'n' | b'r' | b'u' | b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) {
                return false;
            }
        }
        self.unescaped().trim().is_empty()
    }

    /// The text without the whitespace at its end.
    pub(super) fn trimmed_end(self) -> Text<'a> {
        let trimmed = self.unescaped().trim_end().to_string();
        Text::Plain(Cow::Owned(trimmed))
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Plain(Cow::Borrowed(s))
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text::Plain(Cow::Owned(s))
    }
}

/// A present, non-null member.
pub(super) fn field(v: Option<Json<'_>>) -> Option<Json<'_>> {
    v.and_then(Json::non_null)
}

/// The `stream` flag: absent or null is false, anything but a boolean is refused.
pub(super) fn stream_flag(stream: Option<Json<'_>>) -> Result<bool, TranslateError> {
    match field(stream) {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TranslateError::invalid_field("stream", "must be true or false")),
        None => Ok(false),
    }
}

/// Declares a struct holding the listed members of a JSON object, read in one
/// pass over it: `json_object!(struct Tool { name, kind = "type" })`.
macro_rules! json_object {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident $(= $key:literal)?),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        struct $name<'a> {
            $($field: Option<$crate::translate::request_fields::Json<'a>>,)*
        }

        impl<'a> $name<'a> {
            /// Reads the members; all are `None` when `obj` is not an object.
            fn read(obj: $crate::translate::request_fields::Json<'a>) -> Self {
                let [$($field),*] = obj.members([$(json_object!(@key $field $($key)?)),*]);
                Self { $($field),* }
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
}
pub(super) use json_object;

/// Walks any JSON value through serde_json's full parser, so the body is
/// held to `Value`'s rules (nesting limit, number range, valid escapes)
/// without keeping anything but the value itself when it is a boolean.
pub struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    /// The value when it is `true` or `false`.
    type Value = Option<bool>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<bool>, A::Error> {
        while seq.next_element_seed(StrictValue)?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<bool>, A::Error> {
        while map.next_key_seed(AnyKey)?.is_some() {
            map.next_value_seed(StrictValue)?;
        }
        Ok(None)
    }
}

/// A key, parsed as `Value` parses its keys.
struct AnyKey;

impl<'de> DeserializeSeed<'de> for AnyKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(StrictValue).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(text: &str) -> Json<'_> {
        parse_text(text).unwrap()
    }

    #[test]
    fn parse_body_accepts_and_rejects_what_value_does() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let deep_bad = format!("{}{}", "[".repeat(129), "]".repeat(129));
        for body in [
            " {\"a\": [1, 2.5, -3, true, null, \"x\\u00e9\"]} ",
            "{",
            "[1]",
            "{\"a\":1} x",
            "\"\\ud800\"",
            "1e400",
            "{\"a\":01}",
            "\"\u{1}\"",
            deep_ok.as_str(),
            deep_bad.as_str(),
            "",
        ] {
            let ours = parse_body(body.as_bytes()).map(|_| ());
            let value = serde_json::from_str::<Value>(body)
                .map(|_| ())
                .map_err(|e| TranslateError::InvalidJson(e.to_string()));
            assert_eq!(ours, value, "{body}");
        }
        assert_eq!(
            parse_body(b"\xff"),
            Err(TranslateError::InvalidJson(
                serde_json::from_slice::<Value>(b"\xff")
                    .unwrap_err()
                    .to_string()
            ))
        );
        assert_eq!(parse_body(b" \n{} ").unwrap().text(), "{}");
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        assert!(matches!(
            json("\"abc\"").as_str(),
            Some(Cow::Borrowed("abc"))
        ));
        assert_eq!(json(r#""a\nb\u00e9""#).as_str().unwrap(), "a\nbé");
        assert_eq!(json("1").as_str(), None);
        assert_eq!(json("null").as_str(), None);
    }

    #[test]
    fn numbers_read_as_value_reads_them() {
        for text in ["1", "0", "-1", "1.0", "1e2", "18446744073709551616", "2.5"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(json(text).as_u64(), v.as_u64(), "{text}");
            assert_eq!(json(text).as_f64(), v.as_f64(), "{text}");
        }
        assert_eq!(json("\"1\"").as_u64(), None);
        assert_eq!(json("true").as_bool(), Some(true));
        assert_eq!(json("1").as_bool(), None);
    }

    #[test]
    fn members_are_read_in_one_pass_and_the_last_duplicate_wins() {
        let obj = json(r#"{"b": [1, {"x": 2}], "a": null, "c": "s", "\u0061": 3, "b": 4}"#);
        let [a, b, z] = obj.members(["a", "b", "z"]);
        assert_eq!(a.map(Json::text), Some("3"));
        assert_eq!(b.map(Json::text), Some("4"));
        assert_eq!(z, None);
        assert_eq!(field(json(r#"{"a":null}"#).get("a")), None);
        assert_eq!(json("[1]").get("a"), None);
        assert_eq!(json("\"x\"").members(["a"]), [None]);
    }

    #[test]
    fn elements_borrow_each_value() {
        let items = json(r#"[ {"a": 1} , "x", null ]"#).elements().unwrap();
        let texts: Vec<&str> = items.iter().map(|j| j.text()).collect();
        assert_eq!(texts, [r#"{"a": 1}"#, "\"x\"", "null"]);
        assert_eq!(json("{}").elements(), None);
    }

    #[test]
    fn structure_inside_strings_is_not_followed() {
        let obj = json(r#"{"a": "}, \"b\": [", "b": ["]", {"c": "\\"}], "c": 1}"#);
        let [a, b, c] = obj.members(["a", "b", "c"]);
        assert_eq!(a.and_then(Json::as_str).as_deref(), Some(r#"}, "b": ["#));
        assert_eq!(b.map(Json::text), Some(r#"["]", {"c": "\\"}]"#));
        assert_eq!(c.map(Json::text), Some("1"));
        let items = b.and_then(Json::elements).unwrap();
        assert_eq!(
            items[1].get("c").and_then(Json::as_str).as_deref(),
            Some("\\")
        );
    }

    #[test]
    fn a_body_that_is_not_json_after_all_reads_as_missing_members() {
        for text in [r#"{"a": 1,}"#, r#"{"a" 1}"#, r#"{"a": [1,,2]}"#] {
            let body = CheckedBody::already_checked(text.as_bytes()).unwrap();
            let [a] = body.value().members(["a"]);
            assert!(a.and_then(Json::elements).is_none(), "{text}");
        }
        let body = CheckedBody::already_checked(br#"{"a": 1,}"#).unwrap();
        assert_eq!(body.value().members(["a"]), [None]);
    }

    #[test]
    fn kinds_are_named_for_errors() {
        for (text, name) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("1", "a number"),
            ("-1", "a number"),
            ("\"\"", "a string"),
            ("[]", "an array"),
            ("{}", "an object"),
        ] {
            assert_eq!(json(text).kind_name(), name);
        }
    }

    #[test]
    fn stream_flag_accepts_only_booleans() {
        assert_eq!(stream_flag(None), Ok(false));
        assert_eq!(stream_flag(Some(json("null"))), Ok(false));
        assert_eq!(stream_flag(Some(json("true"))), Ok(true));
        assert!(stream_flag(Some(json("1"))).is_err());
    }
}
