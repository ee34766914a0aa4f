//! Proptest strategies for JSON text made hard to follow, shared by the `fuzz_*`
//! tests that read JSON structure. Included with `#[path]`.

use proptest::prelude::*;
use serde_json::Value;

/// Text heavy in what JSON's structure is made of: quotes, backslashes, brackets,
/// commas, colons, white space and control characters, and the member names readers
/// look for.
pub fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "\"", "\\", "\\\"", "{", "}", "[", "]", ",", ":", " \n\t", "\u{1}", "é😊", "usage",
            "model",
        ])
        .prop_map(String::from),
        "[a-z_]{0,6}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// Any JSON value, three levels deep at most, its strings tricky.
pub fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Floats that read back exactly (serde_json's default parse may round).
        prop::sample::select(vec![1.5, -0.25, 2e-3, 1e300]).prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
