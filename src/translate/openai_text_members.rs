//! The text members of an OpenAI-format message or delta, read as chat servers write
//! them: [`LenientStr`] for a text member some fill with another JSON type, and
//! [`Content`] for `content`, a string or a list of typed chunks. Mistral's reasoning
//! models write their thinking as a chunk
//! `{"type":"thinking","thinking":[{"type":"text","text":"…"}]}` and their answer as
//! strings or `{"type":"text","text":"…"}` chunks (docs.mistral.ai/capabilities/reasoning;
//! `ThinkChunk` in mistralai/client-python). A member of any other type reads as absent
//! rather than failing the whole chunk or answer.

use super::borrowed_text::BorrowedStr;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A text member that some providers fill with another JSON type (e.g.
/// `reasoning` as an object); anything but a string reads as absent.
pub(super) struct LenientStr<'a>(pub(super) Option<Cow<'a, str>>);

impl<'a> LenientStr<'a> {
    /// The member's text, when it is a string and not empty.
    pub(super) fn non_empty(field: &'a Option<LenientStr<'_>>) -> Option<&'a str> {
        field
            .as_ref()
            .and_then(|s| s.0.as_deref())
            .filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LenientStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `content`: a string, or a list of chunks whose texts are read in order.
#[derive(Debug, Default)]
pub(super) enum Content<'a> {
    /// `null`, or a type that holds no text.
    #[default]
    None,
    /// A string.
    Text(Cow<'a, str>),
    /// A list of chunks.
    Chunks(Vec<Chunk<'a>>),
}

/// One chunk of a `content` list, as far as its texts go.
#[derive(Debug, Default)]
pub(super) struct Chunk<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    /// A thinking chunk's own content: its text, or a list of (text) chunks.
    thinking: Option<Content<'a>>,
}

impl Content<'_> {
    /// The text of a string `content`.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Content::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Calls `f` with each text of a chunk list, in order, and whether it is thinking:
    /// the texts a `thinking` chunk holds are, any other chunk's `text` is not (a
    /// `reference` chunk has none).
    pub(super) fn each_chunk_text(&self, f: &mut impl FnMut(bool, &str)) {
        let Content::Chunks(chunks) = self else {
            return;
        };
        for chunk in chunks {
            let thinking = match chunk.kind.as_deref() {
                Some(kind) => kind == "thinking",
                None => chunk.thinking.is_some(),
            };
            if !thinking {
                if let Some(text) = &chunk.text {
                    f(false, text);
                }
                continue;
            }
            match &chunk.thinking {
                Some(Content::Text(text)) => f(true, text),
                Some(Content::Chunks(inner)) => {
                    for text in inner.iter().filter_map(|c| c.text.as_deref()) {
                        f(true, text);
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut chunks = Vec::new();
                while let Some(chunk) = seq.next_element::<Chunk<'a>>()? {
                    chunks.push(chunk);
                }
                Ok(Content::Chunks(chunks))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Chunk<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Chunk<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut chunk = Chunk::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "type" => chunk.kind = map.next_value::<LenientStr<'a>>()?.0,
                        "text" => chunk.text = map.next_value::<LenientStr<'a>>()?.0,
                        "thinking" => chunk.thinking = Some(map.next_value::<Content<'a>>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(chunk)
            }
            // A chunk that is not an object holds no text.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Chunk::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Chunk::default())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts of a `content` value, `(thinking, text)` in order.
    fn texts(json: &str) -> Vec<(bool, String)> {
        let content: Content = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        content.each_chunk_text(&mut |thinking, text| out.push((thinking, text.to_owned())));
        out
    }

    #[test]
    fn a_string_is_text_and_not_a_chunk_list() {
        let content: Content = serde_json::from_str(r#""Hi""#).unwrap();
        assert_eq!(content.text(), Some("Hi"));
        assert!(texts(r#""Hi""#).is_empty());
    }

    #[test]
    fn thinking_chunks_give_their_texts_as_thinking_in_order() {
        let got = texts(
            r#"[{"type":"thinking","thinking":[{"type":"text","text":"a"},{"type":"reference","reference_ids":[1]},{"type":"text","text":"b"}]},
                {"type":"text","text":"c"},{"thinking":"d"},{"type":"thinking","thinking":"e","closed":true}]"#,
        );
        let expected = [
            (true, "a"),
            (true, "b"),
            (false, "c"),
            (true, "d"),
            (true, "e"),
        ];
        assert_eq!(got, expected.map(|(k, t)| (k, t.to_owned())));
    }

    #[test]
    fn other_types_hold_no_text_and_fail_nothing() {
        for json in ["null", "1", "true", "{}", r#"{"text":"x"}"#] {
            let content: Content = serde_json::from_str(json).unwrap();
            assert!(content.text().is_none(), "{json}");
        }
        let got = texts(
            r#"[1, "x", null, [], {"type":"image_url","image_url":{"url":"u"}}, {"type":"text","text":7}]"#,
        );
        assert!(got.is_empty());
    }
}
