//! Anthropic (hub) SSE streams shared by the tests of the translators that read them.

/// A thinking block with its signature, then text; CRLF line ends and spaced JSON.
pub(crate) const THINKING_STREAM: &str = "event: message_start\r\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_01T\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 30, \"output_tokens\": 1}}}\r\n\r\n\
event: content_block_start\r\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"thinking\", \"thinking\": \"\", \"signature\": \"\"}}\r\n\r\n\
event: content_block_delta\r\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"Let me solve this step by step:\\n\\n1. First break down 27 * 453\"}}\r\n\r\n\
event: content_block_delta\r\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"thinking_delta\", \"thinking\": \"\\n2. 453 = 400 + 50 + 3\"}}\r\n\r\n\
event: content_block_delta\r\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"signature_delta\", \"signature\": \"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds\"}}\r\n\r\n\
event: content_block_stop\r\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\r\n\r\n\
event: content_block_start\r\n\
data: {\"type\": \"content_block_start\", \"index\": 1, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\r\n\r\n\
event: content_block_delta\r\n\
data: {\"type\": \"content_block_delta\", \"index\": 1, \"delta\": {\"type\": \"text_delta\", \"text\": \"27 * 453 = 12,231\"}}\r\n\r\n\
event: content_block_stop\r\n\
data: {\"type\": \"content_block_stop\", \"index\": 1}\r\n\r\n\
event: message_delta\r\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\": null}, \"usage\": {\"output_tokens\": 120}}\r\n\r\n\
event: message_stop\r\n\
data: {\"type\": \"message_stop\"}\r\n\r\n";

/// Text, then an `error` event, then events that must be ignored.
pub(crate) const ERROR_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_err","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}

event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// [`ERROR_STREAM`] cut off after the first text delta.
pub(crate) fn truncated_stream() -> &'static str {
    let end = ERROR_STREAM.find("event: error").unwrap_or(0);
    &ERROR_STREAM[..end]
}
