//! Property tests of both request translators: any JSON value, any bytes and
//! mostly plausible requests give a translated request or a client error,
//! never a panic, and what they give is a well-formed request.

#[path = "common/proptest_config.rs"]
mod proptest_config;
#[path = "common/request_json.rs"]
mod request_json;

use aurora::translate::{
    anthropic_to_openai_request, openai_to_anthropic_request, CheckedBody, OpenAiRequestOptions,
    RequestOptions, TokenLimitField, TranslateError,
};
use proptest::prelude::*;
use proptest_config::config;
use request_json::{anthropic_request, any_json, mangled, openai_request};
use serde_json::Value;

fn to_anthropic(body: &[u8]) -> Result<(), TestCaseError> {
    let opts = RequestOptions {
        model: "claude-sonnet-4-5".into(),
        default_max_tokens: 4096,
    };
    // A body said to be checked that is not reads as missing members: no panic.
    if let Ok(unchecked) = CheckedBody::already_checked(body) {
        let _ = openai_to_anthropic_request(unchecked, &opts);
    }
    match CheckedBody::check(body).and_then(|body| openai_to_anthropic_request(body, &opts)) {
        Ok(r) => {
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|e| TestCaseError::fail(format!("output is not JSON: {e}")))?;
            prop_assert_eq!(v["model"].as_str(), Some("claude-sonnet-4-5"));
            prop_assert!(v["max_tokens"].as_u64().is_some_and(|n| n > 0));
            let messages = v["messages"].as_array().cloned().unwrap_or_default();
            prop_assert!(!messages.is_empty());
            // Roles alternate and every message has blocks.
            for pair in messages.windows(2) {
                prop_assert_ne!(&pair[0]["role"], &pair[1]["role"]);
            }
            for m in &messages {
                prop_assert!(matches!(m["role"].as_str(), Some("user" | "assistant")));
                prop_assert!(m["content"].as_array().is_some_and(|c| !c.is_empty()));
            }
            prop_assert_eq!(v.get("stream").is_some(), r.stream);
            Ok(())
        }
        Err(e) => client_error(e),
    }
}

fn to_openai(body: &[u8]) -> Result<(), TestCaseError> {
    let opts = OpenAiRequestOptions {
        model: "gpt-4o-mini".into(),
        reasoning: true,
        token_limit: TokenLimitField::MaxCompletionTokens,
        max_output_tokens: Some(16384),
        stream_usage: aurora::translate::StreamUsage::OnRequest,
        reasoning_content_back: true,
        user_field: true,
        default_sampling_only: false,
        strict_message_order: true,
        short_tool_call_ids: true,
        text_only: false,
        file_parts: true,
        parallel_tool_calls_field: true,
        thought_signature_stand_in: false,
    };
    if let Ok(unchecked) = CheckedBody::already_checked(body) {
        let _ = anthropic_to_openai_request(unchecked, &opts);
    }
    match CheckedBody::check(body).and_then(|body| anthropic_to_openai_request(body, &opts)) {
        Ok(r) => {
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|e| TestCaseError::fail(format!("output is not JSON: {e}")))?;
            prop_assert_eq!(v["model"].as_str(), Some("gpt-4o-mini"));
            for m in v["messages"].as_array().cloned().unwrap_or_default() {
                prop_assert!(matches!(
                    m["role"].as_str(),
                    Some("system" | "user" | "assistant" | "tool")
                ));
                for call in m["tool_calls"].as_array().cloned().unwrap_or_default() {
                    // Arguments are the JSON text of an object.
                    let args = call["function"]["arguments"].as_str().unwrap_or("");
                    let args: Value = serde_json::from_str(args)
                        .map_err(|e| TestCaseError::fail(format!("arguments: {e}")))?;
                    prop_assert!(args.is_object());
                }
                // Ids as Mistral takes them: nine letters and digits.
                let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
                let ids = calls.iter().map(|c| &c["id"]).chain([&m["tool_call_id"]]);
                for id in ids.filter_map(Value::as_str) {
                    prop_assert!(
                        id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                        "{id}"
                    );
                }
            }
            // In an order Mistral takes: after `tool` only `assistant` or `tool`, after
            // `assistant` no `system`.
            let roles: Vec<Value> = v["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["role"].clone())
                .collect();
            for pair in roles.windows(2) {
                let allowed = match pair[0].as_str() {
                    Some("tool") => matches!(pair[1].as_str(), Some("assistant" | "tool")),
                    Some("assistant") => pair[1] != "system",
                    _ => true,
                };
                prop_assert!(allowed, "{:?} then {:?}", pair[0], pair[1]);
            }
            prop_assert_eq!(v.get("stream").is_some(), r.stream);
            Ok(())
        }
        Err(e) => client_error(e),
    }
}

/// A refused request is the client's fault and names what to change.
fn client_error(e: TranslateError) -> Result<(), TestCaseError> {
    prop_assert!(e.is_client_error(), "{e}");
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn plausible_chat_requests_translate_or_are_refused(req in openai_request()) {
        to_anthropic(req.to_string().as_bytes())?;
        to_openai(req.to_string().as_bytes())?;
    }

    #[test]
    fn plausible_messages_requests_translate_or_are_refused(req in anthropic_request()) {
        to_openai(req.to_string().as_bytes())?;
        to_anthropic(req.to_string().as_bytes())?;
    }

    #[test]
    fn any_json_value_translates_or_is_refused(v in any_json()) {
        to_anthropic(v.to_string().as_bytes())?;
        to_openai(v.to_string().as_bytes())?;
    }

    #[test]
    fn any_bytes_translate_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        to_anthropic(&bytes)?;
        to_openai(&bytes)?;
    }

    #[test]
    fn damaged_requests_translate_or_are_refused(
        bytes in prop_oneof![
            openai_request().prop_flat_map(|r| mangled(r.to_string().into_bytes())),
            anthropic_request().prop_flat_map(|r| mangled(r.to_string().into_bytes())),
        ],
    ) {
        to_anthropic(&bytes)?;
        to_openai(&bytes)?;
    }

    #[test]
    fn pretty_printed_requests_translate_like_compact_ones(
        req in prop_oneof![openai_request(), anthropic_request()],
    ) {
        let o = RequestOptions { model: "m".into(), default_max_tokens: 8 };
        let a = OpenAiRequestOptions {
            model: "m".into(),
            reasoning: false,
            token_limit: TokenLimitField::MaxTokens,
            max_output_tokens: None,
            stream_usage: aurora::translate::StreamUsage::OnRequest,
            reasoning_content_back: true,
            user_field: true,
            default_sampling_only: false,
            strict_message_order: false,
            short_tool_call_ids: false,
            text_only: false,
            file_parts: true,
            parallel_tool_calls_field: true,
            thought_signature_stand_in: false,
        };
        let compact = req.to_string();
        let pretty = serde_json::to_string_pretty(&req).unwrap();
        let (pretty, compact) = (
            CheckedBody::check(pretty.as_bytes()).unwrap(),
            CheckedBody::check(compact.as_bytes()).unwrap(),
        );
        prop_assert_eq!(
            openai_to_anthropic_request(pretty, &o),
            openai_to_anthropic_request(compact, &o)
        );
        prop_assert_eq!(
            anthropic_to_openai_request(pretty, &a),
            anthropic_to_openai_request(compact, &a)
        );
    }
}
