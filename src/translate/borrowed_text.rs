//! Text fields borrowed from the JSON they are read from.
//!
//! serde's `#[serde(borrow)]` borrows a `Cow<'a, str>` field from the input, but not
//! one inside an `Option`: an `Option<Cow<'a, str>>` is always read into an owned
//! copy. [`optional`] reads such a field borrowed whenever its text has no escapes.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct BorrowedStr<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// For `#[serde(borrow, default, deserialize_with = "borrowed_text::optional")]` on an
/// `Option<Cow<'a, str>>` field: `null` reads as `None`, a string borrowed when it can be.
pub(crate) fn optional<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<BorrowedStr<'a>>::deserialize(d)?.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default, deserialize_with = "optional")]
        text: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        plain: Option<Cow<'a, str>>,
    }

    #[test]
    fn an_optional_text_without_escapes_is_borrowed() {
        let f: Fields = serde_json::from_str(r#"{"text":"Hello","plain":"Hello"}"#).unwrap();
        assert!(matches!(f.text, Some(Cow::Borrowed("Hello"))));
        // What serde does on its own, and why this module exists.
        assert!(matches!(f.plain, Some(Cow::Owned(_))));
    }

    #[test]
    fn escapes_null_and_absence_read_as_serde_reads_them() {
        let f: Fields = serde_json::from_str(r#"{"text":"a\n\u00e9\"b"}"#).unwrap();
        assert_eq!(f.text.as_deref(), Some("a\né\"b"));
        let f: Fields = serde_json::from_str(r#"{"text":null}"#).unwrap();
        assert!(f.text.is_none());
        let f: Fields = serde_json::from_str("{}").unwrap();
        assert!(f.text.is_none());
        assert!(serde_json::from_str::<Fields>(r#"{"text":3}"#).is_err());
    }

    #[test]
    fn a_key_is_borrowed_too() {
        let key: BorrowedStr = serde_json::from_str(r#""model""#).unwrap();
        assert!(matches!(key.0, Cow::Borrowed("model")));
    }
}
