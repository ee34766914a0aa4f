//! The top-level `model` of a JSON request body: read it, and replace its value
//! without touching a single other byte, so unknown and future fields reach the
//! provider exactly as the client wrote them. The same pass, the only one over the
//! whole body, holds it to JSON's rules and notes the other top-level members the
//! gateway acts on (`stream`, `stream_options`, and a Responses request's
//! conversation).

use std::ops::Range;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
    /// What `stream_options` says of the stream's usage.
    pub stream_usage: StreamUsageAsk,
    /// The `previous_response_id` a Responses request continues, when it names one.
    pub previous_response_id: Option<String>,
    /// The request continues a stored conversation: `previous_response_id` or
    /// `conversation` is set (not `null`).
    pub continues_conversation: bool,
}

impl ModelField {
    /// Finds `model` in `body`, which must be a JSON object with a string `model`.
    pub fn find(body: &[u8]) -> Result<Self, GatewayError> {
        let members = TopLevelModel::read(body)?;
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
        let continues_conversation =
            !matches!(members.previous_response_id, Member::Null) || members.conversation;
        let previous_response_id = match members.previous_response_id {
            Member::Text(id) => Some(id),
            Member::Null | Member::Other => None,
        };
        let stream_usage = StreamUsageAsk::of_member(members.stream_options, body);
        Ok(Self {
            name,
            span: start..start + raw.get().len(),
            stream: members.stream,
            stream_usage,
            previous_response_id,
            continues_conversation,
        })
    }

    /// `body` with this field's value replaced by `model`; every other byte unchanged.
    pub fn replace(&self, body: &[u8], model: &str) -> Vec<u8> {
        self.upstream_body(body, model, false).0
    }

    /// `body` for the provider: this field's value replaced by `model` and, when
    /// `ask_usage` and the client did not ask for the stream's usage itself,
    /// `stream_options.include_usage` set (the provider reports a Chat stream's usage
    /// only when asked, and the gateway counts tokens from it). Every other byte is
    /// unchanged. Whether the usage was asked for on the client's behalf.
    pub fn upstream_body(&self, body: &[u8], model: &str, ask_usage: bool) -> (Vec<u8>, bool) {
        let encoded = serde_json::Value::String(model.to_string()).to_string();
        let mut edits = vec![(self.span.clone(), encoded.into_bytes())];
        let asked = ask_usage && self.stream;
        let usage_edit = if asked {
            self.stream_usage.edit(body)
        } else {
            None
        };
        let asked = usage_edit.is_some();
        edits.extend(usage_edit);
        (edited(body, edits), asked)
    }
}

/// A `/p/` body asking for its stream's usage, every other byte unchanged (`model`
/// included): `None` when it is not a stream, or the client asked itself, or it cannot
/// be asked. The body is read as [`ModelField::find`] reads one, but needs no `model`:
/// refused (400) when it is not a JSON object `serde_json` reads, gives `model`,
/// `stream`, `stream_options` or its `include_usage` twice, `stream` other than a
/// boolean, or one of those members in another case.
pub fn usage_asking_body(body: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
    let members = TopLevelModel::read(body)?;
    if !members.stream {
        return Ok(None);
    }
    let ask = StreamUsageAsk::of_member(members.stream_options, body);
    Ok(ask.edit(body).map(|edit| edited(body, vec![edit])))
}

/// Refuses (400) a `/p/` body that is not a JSON object the gateway reads by the rules
/// [`usage_asking_body`] holds a Chat body to: one held to count its input is read as
/// the provider will read it, or not sent.
pub fn readable_body(body: &[u8]) -> Result<(), GatewayError> {
    TopLevelModel::read(body).map(|_| ())
}

/// `body` naming `model` when it names none (a top-level `model` member inserted
/// first, every other byte unchanged), else `body` itself. Refused (400) as
/// [`ModelField::find`] refuses a body it cannot read.
pub fn with_model_if_absent(body: bytes::Bytes, model: &str) -> Result<bytes::Bytes, GatewayError> {
    if TopLevelModel::read(&body)?.model.is_some() {
        return Ok(body);
    }
    // Read as a JSON object: its first byte past white space is `{`.
    let Some(open) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(body);
    };
    let empty = body[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
    let mut member = format!("\"model\":{}", serde_json::Value::from(model)).into_bytes();
    if !empty {
        member.push(b',');
    }
    let at = open + 1;
    Ok(edited(&body, vec![(at..at, member)]).into())
}

/// `body` with each byte range replaced by its text (an empty range: an insertion).
fn edited(body: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Vec<u8> {
    edits.sort_by_key(|(span, _)| span.start);
    let added: usize = edits.iter().map(|(_, text)| text.len()).sum();
    let mut out = Vec::with_capacity(body.len() + added);
    let mut at = 0;
    for (span, text) in edits {
        out.extend_from_slice(&body[at..span.start]);
        out.extend_from_slice(&text);
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// What a request's `stream_options` says of its stream's usage, and how to ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamUsageAsk {
    /// No `stream_options`: one asking for the usage can be added.
    Absent,
    /// The client asked for the usage itself (`include_usage: true`).
    AskedByClient,
    /// `null`, or an object without `include_usage: true` (at this byte range): it can
    /// be rewritten to ask.
    Rewritable(Range<usize>),
    /// Anything else (not an object): left for the provider to judge (and refuse).
    Unaskable,
}

/// What asks for a stream's usage when the body has no `stream_options`.
const ASK_USAGE: &[u8] = br#","stream_options":{"include_usage":true}"#;

impl StreamUsageAsk {
    /// What the body's `stream_options`, if it gives one, says.
    fn of_member(member: Option<&RawValue>, body: &[u8]) -> Self {
        member.map_or(Self::Absent, |raw| Self::of(raw, body))
    }

    /// What `raw`, the body's one `stream_options` value, says.
    fn of(raw: &RawValue, body: &[u8]) -> Self {
        // RawValue borrows from `body`, so its address gives the exact span.
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        let span = start..start + raw.get().len();
        match serde_json::from_str(raw.get()) {
            Ok(serde_json::Value::Null) => Self::Rewritable(span),
            Ok(serde_json::Value::Object(o)) if o.get("include_usage") == Some(&true.into()) => {
                Self::AskedByClient
            }
            Ok(serde_json::Value::Object(_)) => Self::Rewritable(span),
            _ => Self::Unaskable,
        }
    }

    /// The edit of `body` that asks for the usage: the bytes to put in place of a byte
    /// range (empty: an insertion). `None` when there is nothing to ask or no way to.
    fn edit(&self, body: &[u8]) -> Option<(Range<usize>, Vec<u8>)> {
        match self {
            Self::Absent => {
                // The body is a JSON object asking for a stream: its last `}` closes it,
                // and a member goes before it after a comma.
                let end = body.iter().rposition(|&b| b == b'}')?;
                Some((end..end, ASK_USAGE.to_vec()))
            }
            Self::Rewritable(span) => {
                let mut options =
                    serde_json::from_slice::<serde_json::Value>(body.get(span.clone())?)
                        .ok()
                        .and_then(|v| match v {
                            serde_json::Value::Object(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or_default();
                options.insert("include_usage".into(), true.into());
                let text = serde_json::to_vec(&options).ok()?;
                Some((span.clone(), text))
            }
            Self::AskedByClient | Self::Unaskable => None,
        }
    }
}

/// The start of the error a body with two top-level `model` members fails with.
const DUPLICATE_MODEL: &str = "duplicate `model`";
/// The start of the error a body with two top-level `stream_options` fails with.
const DUPLICATE_STREAM_OPTIONS: &str = "duplicate `stream_options`";
/// The start of the error a body with two top-level `stream` fails with.
const DUPLICATE_STREAM: &str = "duplicate `stream`";
/// The start of the error a `stream_options` giving `include_usage` twice fails with.
const DUPLICATE_INCLUDE_USAGE: &str = "duplicate `stream_options.include_usage`";
/// The start of the error a `stream` other than `true`, `false` or `null` fails with.
const STREAM_NOT_BOOLEAN: &str = "`stream` not a boolean";

/// The start of the error a member the gateway acts on, written in another case,
/// fails with.
const OTHER_CASE: &str = "member in another case: ";

/// The top-level members the gateway acts on.
const ACTED_ON: [&str; 3] = ["model", "stream", "stream_options"];

/// Which member the gateway acts on `key` names in another case, if any. Go's
/// `encoding/json` (Ollama, other self-hosted servers) takes a member whatever its
/// case, folding `ſ` to `s` and the Kelvin sign to `k` too: `"Stream": true` would
/// stream there what the gateway took for a whole answer.
fn member_in_another_case(key: &str) -> Option<&'static str> {
    let fold = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    ACTED_ON
        .into_iter()
        .find(|name| key.chars().map(fold).eq(name.chars()))
}

/// Whether `raw` is an object giving `include_usage` more than once: the provider may
/// keep another one than the gateway reads. (Held to JSON's rules already, such an
/// object fails to read as [`UsageOption`] only by giving it twice.)
fn repeats_include_usage(raw: &RawValue) -> bool {
    raw.get().starts_with('{') && serde_json::from_str::<UsageOption>(raw.get()).is_err()
}

/// `stream_options` as far as `include_usage` goes: `serde` refuses it given twice.
#[derive(serde::Deserialize)]
struct UsageOption {
    #[serde(rename = "include_usage")]
    _include_usage: Option<de::IgnoredAny>,
}

/// A JSON object's top-level `model` value, every other member held to
/// `serde_json::Value`'s rules (number range, escapes, nesting) but never kept: the
/// request translators then read the body without checking it again. A second
/// `model` is an error: the gateway routes on one value and the provider, whose
/// parser may keep the first or the last, must not see another.
struct TopLevelModel<'a> {
    model: Option<&'a RawValue>,
    /// `stream` is `true` (any other value, or none, is not a stream).
    stream: bool,
    /// The last `previous_response_id`.
    previous_response_id: Member,
    /// `conversation` is set.
    conversation: bool,
    /// `stream_options`, as given.
    stream_options: Option<&'a RawValue>,
}

impl<'a> TopLevelModel<'a> {
    /// The members of `body`, which must be a JSON object giving `model` and
    /// `stream_options` at most once.
    fn read(body: &'a [u8]) -> Result<Self, GatewayError> {
        serde_json::from_slice(body).map_err(|e| {
            // A member the gateway acts on, given twice: the provider's parser may keep
            // the first or the last, and must not see another value than the gateway.
            let text = e.to_string();
            let repeated = [
                ("model", DUPLICATE_MODEL),
                ("stream", DUPLICATE_STREAM),
                ("stream_options", DUPLICATE_STREAM_OPTIONS),
                ("stream_options.include_usage", DUPLICATE_INCLUDE_USAGE),
            ]
            .into_iter()
            .find_map(|(member, error)| text.starts_with(error).then_some(member));
            if let Some(member) = repeated {
                return GatewayError::invalid_request(format!(
                    "`{member}` appears more than once; send it once"
                ))
                .with_param(member);
            }
            let other_case = text.strip_prefix(OTHER_CASE).and_then(|rest| {
                ACTED_ON
                    .into_iter()
                    .find(|m| rest.starts_with(&format!("`{m}`")))
            });
            if let Some(member) = other_case {
                return GatewayError::invalid_request(format!(
                    "a member named `{member}` in another case; write it `{member}`"
                ))
                .with_param(member);
            }
            if text.starts_with(STREAM_NOT_BOOLEAN) {
                return GatewayError::invalid_request("`stream` must be `true` or `false`")
                    .with_param("stream");
            }
            GatewayError::invalid_request(format!(
                "request body is not a JSON object ({e}); send a single JSON object"
            ))
        })
    }
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
        let mut members = TopLevelModel {
            model: None,
            stream: false,
            previous_response_id: Member::Null,
            conversation: false,
            stream_options: None,
        };
        let mut stream_seen = false;
        // Borrowed: a key is only compared, never kept.
        while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'de>>()? {
            match key.as_ref() {
                "model" => {
                    if members.model.is_some() {
                        return Err(de::Error::custom(DUPLICATE_MODEL));
                    }
                    members.model = Some(map.next_value::<&'de RawValue>()?);
                }
                "stream" => {
                    if stream_seen {
                        return Err(de::Error::custom(DUPLICATE_STREAM));
                    }
                    stream_seen = true;
                    // A server that reads `1` or `"true"` as true would stream what the
                    // gateway took for a whole answer, its usage unasked.
                    members.stream = match map.next_value::<&'de RawValue>()?.get() {
                        "true" => true,
                        "false" | "null" => false,
                        _ => return Err(de::Error::custom(STREAM_NOT_BOOLEAN)),
                    };
                }
                "previous_response_id" => {
                    members.previous_response_id = map.next_value_seed(MemberSeed)?
                }
                "conversation" => {
                    members.conversation = !matches!(map.next_value_seed(MemberSeed)?, Member::Null)
                }
                "stream_options" => {
                    let raw = map.next_value::<&'de RawValue>()?;
                    // Held to the same rules as every other member.
                    StrictValue
                        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                        .map_err(de::Error::custom)?;
                    if repeats_include_usage(raw) {
                        return Err(de::Error::custom(DUPLICATE_INCLUDE_USAGE));
                    }
                    // Whether the usage is asked for hangs on it, as routing on `model`.
                    if members.stream_options.replace(raw).is_some() {
                        return Err(de::Error::custom(DUPLICATE_STREAM_OPTIONS));
                    }
                }
                other => {
                    if let Some(member) = member_in_another_case(other) {
                        return Err(de::Error::custom(format_args!("{OTHER_CASE}`{member}`")));
                    }
                    map.next_value_seed(StrictValue)?;
                }
            }
        }
        Ok(members)
    }
}

/// What a member the gateway acts on holds: `null`, a string (kept), or anything
/// else, held to the same rules as every other member.
enum Member {
    Null,
    Text(String),
    Other,
}

struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Member, E> {
        Ok(Member::Null)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Member, E> {
        Ok(Member::Text(text.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member, E> {
        Ok(Member::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Member, E> {
        Ok(Member::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Member, E> {
        Ok(Member::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Member, E> {
        Ok(Member::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member, A::Error> {
        StrictValue.visit_seq(seq).map(|_| Member::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member, A::Error> {
        StrictValue.visit_map(map).map(|_| Member::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_naming_no_model_is_given_the_default_one_first() {
        let with = |body: &'static str| {
            let out = with_model_if_absent(bytes::Bytes::from_static(body.as_bytes()), "m-1");
            String::from_utf8(out.unwrap().to_vec()).unwrap()
        };
        assert_eq!(with(r#"{"input":"x"}"#), r#"{"model":"m-1","input":"x"}"#);
        assert_eq!(with(" { } "), r#" {"model":"m-1" } "#);
        assert_eq!(
            with(r#"{"model":"mine","input":"x"}"#),
            r#"{"model":"mine","input":"x"}"#
        );
        assert!(with_model_if_absent(bytes::Bytes::from_static(b"[1]"), "m").is_err());
    }

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

    /// The upstream body of `body` when the gateway may ask for the usage, parsed, and
    /// whether it asked.
    fn asking(body: &str) -> (serde_json::Value, bool) {
        let field = ModelField::find(body.as_bytes()).unwrap();
        let (out, asked) = field.upstream_body(body.as_bytes(), "gpt-4o", true);
        (serde_json::from_slice(&out).unwrap(), asked)
    }

    #[test]
    fn a_stream_without_stream_options_is_asked_for_its_usage() {
        let body = r#"{"model":"openai/gpt-4o","stream":true,"messages":[{"role":"user","content":"}"}]} "#;
        let field = ModelField::find(body.as_bytes()).unwrap();
        let (out, asked) = field.upstream_body(body.as_bytes(), "gpt-4o", true);
        assert!(asked);
        // Added as the last member; every other byte as the client wrote it.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"}"}],"stream_options":{"include_usage":true}} "#
        );
    }

    #[test]
    fn a_passthrough_body_is_asked_for_its_usage_with_its_model_as_sent() {
        let ask = |body: &str| {
            usage_asking_body(body.as_bytes())
                .unwrap()
                .map(|b| String::from_utf8(b).unwrap())
        };
        assert_eq!(
            ask(r#"{"model":"gpt\u002d4o","stream":true}"#).as_deref(),
            Some(
                r#"{"model":"gpt\u002d4o","stream":true,"stream_options":{"include_usage":true}}"#
            )
        );
        assert_eq!(
            ask(r#"{"stream":true,"stream_options":null,"model":"m"}"#).as_deref(),
            Some(r#"{"stream":true,"stream_options":{"include_usage":true},"model":"m"}"#)
        );
        assert_eq!(
            ask(r#"{"stream":true}"#).as_deref(),
            Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            "no `model` needed"
        );
        for untouched in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","stream":false}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","stream":true,"stream_options":7}"#,
        ] {
            assert_eq!(ask(untouched), None, "{untouched}");
        }
        for unread in ["[]", r#"{"stream":true"#, r#"{"model":"a","model":"b"}"#] {
            assert_eq!(
                usage_asking_body(unread.as_bytes()).unwrap_err().status,
                400
            );
        }
    }

    #[test]
    fn stream_options_without_include_usage_are_rewritten_to_ask_keeping_the_rest() {
        let (v, asked) = asking(
            r#"{"stream_options":{"include_obfuscation":false,"include_usage":false},"model":"m","stream":true}"#,
        );
        assert!(asked);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_obfuscation": false, "include_usage": true})
        );
        assert_eq!(v["model"], "gpt-4o");
        let (v, asked) = asking(r#"{"model":"m","stream":true,"stream_options":null}"#);
        assert!(asked);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
    }

    #[test]
    fn the_usage_is_not_asked_for_when_the_client_asked_or_cannot_be() {
        // Asked by the client: its body goes as it is (but for the model).
        let own = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let (v, asked) = asking(own);
        assert!(!asked);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        // Not a stream, or `stream_options` not an object: left alone.
        for body in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","stream":false}"#,
            r#"{"model":"m","stream":true,"stream_options":"yes"}"#,
        ] {
            let field = ModelField::find(body.as_bytes()).unwrap();
            let (out, asked) = field.upstream_body(body.as_bytes(), "m", true);
            assert!(!asked, "{body}");
            assert_eq!(out, body.as_bytes(), "{body}");
        }
        // A stream the gateway need not ask for (`ask_usage` false): only the model.
        let body = r#"{"model":"m","stream":true}"#;
        let field = ModelField::find(body.as_bytes()).unwrap();
        assert_eq!(
            field.upstream_body(body.as_bytes(), "x", false),
            (br#"{"model":"x","stream":true}"#.to_vec(), false)
        );
    }

    #[test]
    fn stream_options_are_held_to_the_same_rules_as_every_member() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":1e999}}"#;
        assert!(ModelField::find(body).is_err());
    }

    #[test]
    fn notes_whether_the_body_asks_for_a_stream() {
        let field = |b: &[u8]| ModelField::find(b).unwrap().stream;
        assert!(field(br#"{"model":"m","stream": true}"#));
        assert!(!field(br#"{"model":"m","stream":false}"#));
        assert!(ModelField::find(br#"{"model":"m","stream":"true"}"#).is_err());
        assert!(!field(br#"{"model":"m","x":{"stream":true}}"#));
        assert!(!field(br#"{"model":"m"}"#));
    }

    #[test]
    fn a_responses_conversation_is_read_in_the_same_pass() {
        let read = |members: &str| {
            let body = format!(r#"{{"model":"m",{members}}}"#);
            let f = ModelField::find(body.as_bytes()).unwrap();
            (f.previous_response_id, f.continues_conversation)
        };
        let id = |s: &str| Some(s.to_string());
        assert_eq!(
            read(r#""previous_response_id":"resp_1""#),
            (id("resp_1"), true)
        );
        assert_eq!(
            read(r#""previous_response_id":"resp_\u0031""#),
            (id("resp_1"), true)
        );
        assert_eq!(read(r#""previous_response_id":null"#), (None, false));
        // Not a string: no stored conversation to read, but the provider's own.
        assert_eq!(read(r#""previous_response_id":7"#), (None, true));
        assert_eq!(read(r#""conversation":{"id":"conv_1"}"#), (None, true));
        assert_eq!(read(r#""conversation":"conv_1""#), (None, true));
        assert_eq!(read(r#""conversation":null"#), (None, false));
        assert_eq!(
            read(r#""x":{"previous_response_id":"resp_1"}"#),
            (None, false)
        );
        assert_eq!(
            read(r#""previous_response_id":"resp_1","previous_response_id":"resp_2""#),
            (id("resp_2"), true)
        );
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
    fn stream_given_twice_or_not_as_a_boolean_is_400_naming_it() {
        // A server that keeps the other value, or reads `1` as true, would stream
        // what the gateway did not ask the usage of.
        for (body, param) in [
            (r#"{"model":"m","stream":false,"stream":true}"#, "stream"),
            (r#"{"model":"m","stream":1}"#, "stream"),
            (r#"{"model":"m","stream":"true"}"#, "stream"),
            (
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
                "stream_options.include_usage",
            ),
            (
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include\u005fusage":true}}"#,
                "stream_options.include_usage",
            ),
        ] {
            let err = ModelField::find(body.as_bytes()).unwrap_err();
            assert_eq!(
                (err.status, err.param.as_deref()),
                (400, Some(param)),
                "{body}"
            );
        }
        for fine in [
            r#"{"model":"m","stream":null}"#,
            r#"{"model":"m","stream" : false }"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":{"include_usage":1}}}"#,
        ] {
            assert!(ModelField::find(fine.as_bytes()).is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_member_the_gateway_acts_on_in_another_case_is_400_naming_it() {
        for (body, param) in [
            (r#"{"model":"m","Stream":true}"#, "stream"),
            (r#"{"model":"m","STREAM_OPTIONS":{}}"#, "stream_options"),
            (r#"{"model":"m","Model":"n"}"#, "model"),
            ("{\"model\":\"m\",\"\u{17F}tream\":true}", "stream"),
        ] {
            let err = ModelField::find(body.as_bytes()).unwrap_err();
            assert_eq!(
                (err.status, err.param.as_deref()),
                (400, Some(param)),
                "{body}"
            );
        }
        let fine = br#"{"model":"m","models":1,"streams":true,"stream_option":{}}"#;
        assert!(ModelField::find(fine).is_ok());
    }

    #[test]
    fn duplicate_stream_options_is_400_naming_it() {
        // The provider would keep one of them, perhaps the one that does not ask for
        // the usage the gateway counts.
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"str\u0065am_options":null}"#;
        let err = ModelField::find(body).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("stream_options"));
        assert!(err.message.contains("more than once"), "{}", err.message);
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
            let body = format!(r#"{{"model":"m","x":{member}}}"#);
            assert_held_as_value_holds_it(body.as_bytes());
            // `stream` is a boolean or nothing.
            let stream = format!(r#"{{"model":"m","stream":{member}}}"#);
            assert_eq!(ModelField::find(stream.as_bytes()).unwrap_err().status, 400);
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
