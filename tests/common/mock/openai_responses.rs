//! OpenAI's Responses API as a provider that keeps its responses: `POST /v1/responses`
//! answers (whole, streamed or in the background) with a response whose id is
//! `resp_` and the request's `input` (letters, digits and `_` only), and the id-routes
//! answer for any `resp_…` id: `GET`, `DELETE`, `GET …/input_items`, `POST …/cancel`.
//! What reached it, with which key, the tests read from the mock's record.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Recorded, Reply};

/// The id of the response the mock makes for a request whose `input` is `input`.
pub fn response_id_for(input: &str) -> String {
    format!("resp_{input}")
}

fn response(id: &str, status: &str, background: bool) -> Value {
    json!({
        "id": id, "object": "response", "created_at": 1772295217, "status": status,
        "background": background, "error": null, "model": "gpt-4o-2024-08-06",
        "output": if status == "completed" {
            json!([{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}])
        } else {
            json!([])
        },
        "previous_response_id": null,
        "usage": if status == "completed" {
            json!({"input_tokens": 5, "output_tokens": 1, "total_tokens": 6,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}})
        } else {
            Value::Null
        },
    })
}

fn event(kind: &str, data: Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The mock's answer to `rec`.
pub fn openai_responses(rec: &Recorded) -> Reply {
    let path = rec.path();
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    if rec.method == "POST" && path == "/v1/responses" {
        let id = response_id_for(body["input"].as_str().unwrap_or("none"));
        if body["background"] == true {
            return Reply::json(200, response(&id, "queued", true).to_string());
        }
        if body["stream"] == true {
            let created = response(&id, "in_progress", false);
            let completed = response(&id, "completed", false);
            return Reply::sse([
                event(
                    "response.created",
                    json!({"type": "response.created", "sequence_number": 0, "response": created}),
                ),
                event(
                    "response.completed",
                    json!({"type": "response.completed", "sequence_number": 1, "response": completed}),
                ),
            ]);
        }
        return Reply::json(200, response(&id, "completed", false).to_string());
    }
    let Some(rest) = path.strip_prefix("/v1/responses/resp_") else {
        return Reply::json(404, r#"{"error":{"message":"no such route"}}"#);
    };
    let (id, part) = match rest.split_once('/') {
        Some((id, part)) => (format!("resp_{id}"), Some(part)),
        None => (format!("resp_{rest}"), None),
    };
    match (rec.method.as_str(), part) {
        ("GET", None) => Reply::json(200, response(&id, "completed", false).to_string()),
        ("DELETE", None) => Reply::json(
            200,
            json!({"id": id, "object": "response", "deleted": true}).to_string(),
        ),
        ("GET", Some("input_items")) => Reply::json(
            200,
            json!({"object": "list", "data": [{"id": "msg_0", "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "a tenant's secret question"}]}],
                "first_id": "msg_0", "last_id": "msg_0", "has_more": false})
            .to_string(),
        ),
        ("POST", Some("cancel")) => Reply::json(200, response(&id, "cancelled", true).to_string()),
        _ => Reply::json(404, r#"{"error":{"message":"no such route"}}"#),
    }
}
