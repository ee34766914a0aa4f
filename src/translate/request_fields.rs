//! Reading request fields the same way in both request translators.

use serde_json::{Map, Value};

use super::TranslateError;

/// A present, non-null field.
pub(super) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The `stream` flag: absent or null is false, anything but a boolean is refused.
pub(super) fn stream_flag(req: &Map<String, Value>) -> Result<bool, TranslateError> {
    match field(req, "stream") {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(TranslateError::invalid_field(
            "stream",
            "must be true or false",
        )),
        None => Ok(false),
    }
}
