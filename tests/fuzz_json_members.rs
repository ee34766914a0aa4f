//! Property tests of reading an object's members from its two ends: for any JSON
//! object, written compactly or pretty, the members read from the front, from the
//! back, or from both until they meet are exactly the object's, each once; the
//! elements read from any array are exactly its own; neither reader calls valid
//! JSON broken; and no bytes at all make either reader panic.

#[path = "common/json_strategies.rs"]
mod json_strategies;
#[path = "common/proptest_config.rs"]
mod proptest_config;

use aurora::translate::json_members::{ArrayElements, Member, ObjectMembers};
use json_strategies::{any_value, tricky_string};
use proptest::prelude::*;
use proptest_config::config;
use serde_json::{Map, Value};

fn any_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((tricky_string(), any_value()), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

/// A member as the object holds it: its key read and its value parsed.
fn decoded(m: Member<'_>) -> Result<(String, Value), TestCaseError> {
    let mut quoted = b"\"".to_vec();
    quoted.extend_from_slice(m.raw_key);
    quoted.push(b'"');
    let key: String = serde_json::from_slice(&quoted)
        .map_err(|e| TestCaseError::fail(format!("key {:?}: {e}", m.raw_key)))?;
    let value: Value = serde_json::from_slice(m.value)
        .map_err(|e| TestCaseError::fail(format!("value {:?}: {e}", m.value)))?;
    prop_assert_eq!(&*m.key(), key.as_bytes());
    Ok((key, value))
}

fn texts(object: &Map<String, Value>) -> [Vec<u8>; 2] {
    let value = Value::Object(object.clone());
    [
        serde_json::to_vec(&value).unwrap(),
        serde_json::to_vec_pretty(&value).unwrap(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn members_from_either_end_are_the_objects_own(object in any_object(), from_front in 0usize..8) {
        let expected: Vec<(String, Value)> =
            object.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for text in texts(&object) {
            let mut members = ObjectMembers::of(&text).unwrap();
            let mut front = Vec::new();
            while front.len() < from_front {
                match members.next_front() {
                    Some(m) => front.push(decoded(m)?),
                    None => break,
                }
            }
            let mut back = Vec::new();
            while let Some(m) = members.next_back() {
                back.push(decoded(m)?);
            }
            prop_assert!(members.next_front().is_none());
            prop_assert!(!members.broken());
            back.reverse();
            front.extend(back);
            prop_assert_eq!(&front, &expected);
        }
    }

    #[test]
    fn elements_are_the_arrays_own(items in prop::collection::vec(any_value(), 0..6)) {
        let value = Value::Array(items.clone());
        for text in [serde_json::to_vec(&value).unwrap(), serde_json::to_vec_pretty(&value).unwrap()] {
            let mut elements = ArrayElements::of(&text).unwrap();
            let read: Vec<Value> = elements
                .by_ref()
                .map(serde_json::from_slice)
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!elements.broken());
            prop_assert_eq!(&read, &items);
        }
    }

    #[test]
    fn no_bytes_make_the_array_reader_panic(inner in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut text = b"[".to_vec();
        text.extend(inner);
        text.push(b']');
        if let Some(elements) = ArrayElements::of(&text) {
            prop_assert!(elements.take(64).count() <= 64);
        }
    }

    #[test]
    fn no_bytes_make_it_panic(inner in prop::collection::vec(any::<u8>(), 0..64), cuts in 0usize..4) {
        let mut text = b"{".to_vec();
        text.extend(inner);
        text.push(b'}');
        if let Some(mut members) = ObjectMembers::of(&text) {
            for i in 0..16 {
                let taken = if (i + cuts) % 2 == 0 { members.next_front() } else { members.next_back() };
                if let Some(m) = taken {
                    let _ = m.key();
                }
            }
        }
    }
}
