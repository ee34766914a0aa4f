//! Translation throughput: request and response translation, every stream direction
//! (Chat and Responses clients of Anthropic, Messages clients of Chat), raw SSE
//! parsing, and the filter that keeps an unasked-for usage chunk from a Chat client.
//! Streams are measured twice, with the same work: in bytes (group `stream`, MB/s)
//! and in SSE events (group `stream_events`, events/s).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use aurora::translate::openai_to_anthropic_request::{openai_to_anthropic_request, RequestOptions};
use aurora::translate::responses::{
    responses_to_anthropic_request, AnthropicToResponsesStream, ResponsesOptions,
    ResponsesRequestOptions,
};
use aurora::translate::unasked_usage::UnaskedUsageFilter;
use aurora::translate::{
    anthropic_to_openai_request, anthropic_to_openai_response, AnthropicToOpenAiStream,
    CheckedBody, MessageOptions, OpenAiRequestOptions, OpenAiToAnthropicStream, ResponseOptions,
    SseParser, StreamOptions, TokenLimitField,
};

const STREAM_BYTES: usize = 4 << 20;
const PUSH: usize = 16 * 1024;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// An Anthropic text stream of about `STREAM_BYTES`, made of small realistic deltas.
fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the quick brown\"}}\n\n";
    while s.len() < STREAM_BYTES {
        s.push_str(delta);
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// An OpenAI chunk stream of about `STREAM_BYTES`, from the recorded transcript.
fn openai_stream() -> Vec<u8> {
    let recorded = fixture("openai/chat_completion_stream.txt");
    let events: Vec<&str> = recorded.split_inclusive("\n\n").collect();
    let mut s = String::from(events[0]);
    while s.len() < STREAM_BYTES {
        s.push_str(events[1]);
    }
    for e in &events[2..] {
        s.push_str(e);
    }
    s.into_bytes()
}

/// SSE events in `input`.
fn count_events(input: &[u8]) -> u64 {
    let mut p = SseParser::new();
    p.feed(input);
    let mut n = 0;
    while p.next_event_ref().is_some() {
        n += 1;
    }
    n
}

fn anthropic_to_openai(input: &[u8], out: &mut Vec<u8>) {
    let mut t = AnthropicToOpenAiStream::new(StreamOptions {
        model: "claude-sonnet-4-5".into(),
        created: 0,
        include_usage: true,
    });
    for piece in input.chunks(PUSH) {
        t.push(piece, out);
        out.clear();
    }
    t.finish(out);
    out.clear();
}

fn openai_to_anthropic(input: &[u8], out: &mut Vec<u8>) {
    let mut t = OpenAiToAnthropicStream::new(MessageOptions {
        model: "gpt-4o-mini".into(),
    });
    for piece in input.chunks(PUSH) {
        t.push(piece, out);
        out.clear();
    }
    t.finish(out);
    out.clear();
}

/// An OpenAI stream the client did not ask the usage of, as the gateway passes it on:
/// every event looked at, the usage-only chunk (none here) kept back.
fn unasked_usage(input: &[u8], out: &mut Vec<u8>) {
    let mut f = UnaskedUsageFilter::default();
    for piece in input.chunks(PUSH) {
        out.clear();
        f.push(piece, out);
    }
    out.clear();
    f.finish(out);
}

/// The same stream as providers flush it, one event per chunk: each chunk handed over
/// as the translation module hands it (and passed on uncopied).
fn unasked_usage_per_event(events: &[bytes::Bytes]) -> usize {
    let mut f = UnaskedUsageFilter::default();
    let mut passed = 0;
    for event in events {
        passed += f.pass(event.clone()).len();
    }
    let mut rest = Vec::new();
    f.finish(&mut rest);
    passed + rest.len()
}

fn anthropic_to_responses(input: &[u8], out: &mut Vec<u8>) {
    let mut t = AnthropicToResponsesStream::new(ResponsesOptions {
        id: "resp_bench".into(),
        model: "claude-sonnet-4-5".into(),
        created_at: 0,
        tool_names: Default::default(),
        include_encrypted_reasoning: true,
        echo: String::new(),
    });
    for piece in input.chunks(PUSH) {
        t.push(piece, out);
        out.clear();
    }
    t.finish(out);
    out.clear();
}

fn sse_parse(input: &[u8]) -> usize {
    let mut p = SseParser::new();
    let mut n = 0usize;
    for piece in input.chunks(PUSH) {
        p.feed(piece);
        while let Some(e) = p.next_event_ref() {
            n += e.data.len();
        }
    }
    n
}

fn streams(c: &mut Criterion) {
    let anthropic = anthropic_stream();
    let openai = openai_stream();
    let openai_events: Vec<bytes::Bytes> = String::from_utf8_lossy(&openai)
        .split_inclusive("\n\n")
        .map(|event| bytes::Bytes::from(event.to_owned()))
        .collect();
    for (group, events) in [("stream", false), ("stream_events", true)] {
        let mut g = c.benchmark_group(group);
        // One iteration is a whole multi-megabyte stream: few samples suffice.
        g.sample_size(10);
        let throughput = |input: &[u8]| {
            if events {
                Throughput::Elements(count_events(input))
            } else {
                Throughput::Bytes(input.len() as u64)
            }
        };
        let mut out = Vec::with_capacity(PUSH * 4);
        g.throughput(throughput(&anthropic));
        g.bench_function("anthropic_to_openai", |b| {
            b.iter(|| anthropic_to_openai(&anthropic, &mut out))
        });
        g.bench_function("anthropic_to_responses", |b| {
            b.iter(|| anthropic_to_responses(&anthropic, &mut out))
        });
        g.bench_function("sse_parse_anthropic", |b| b.iter(|| sse_parse(&anthropic)));
        g.throughput(throughput(&openai));
        g.bench_function("openai_to_anthropic", |b| {
            b.iter(|| openai_to_anthropic(&openai, &mut out))
        });
        g.bench_function("sse_parse", |b| b.iter(|| sse_parse(&openai)));
        g.bench_function("openai_unasked_usage", |b| {
            b.iter(|| unasked_usage(&openai, &mut out))
        });
        g.bench_function("openai_unasked_usage_per_event", |b| {
            b.iter(|| unasked_usage_per_event(&openai_events))
        });
        g.finish();
    }
}

fn one_shot(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_shot");
    let chat_request = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, clear"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "max_tokens": 256,
    })
    .to_string();
    g.throughput(Throughput::Bytes(chat_request.len() as u64));
    g.bench_function("openai_to_anthropic_request", |b| {
        let opts = RequestOptions {
            model: "claude-sonnet-4-5".into(),
            default_max_tokens: 4096,
        };
        // The check the gateway makes as it finds the model is counted too.
        b.iter(|| {
            CheckedBody::check(chat_request.as_bytes())
                .and_then(|body| openai_to_anthropic_request(body, &opts))
        })
    });
    let codex_request = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Work in /repo."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "Cargo.toml\nsrc"},
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]},
            {"type": "web_search"},
        ],
        "stream": true, "store": false, "include": ["reasoning.encrypted_content"],
    })
    .to_string();
    g.throughput(Throughput::Bytes(codex_request.len() as u64));
    g.bench_function("responses_to_anthropic_request", |b| {
        let opts = ResponsesRequestOptions {
            model: "claude-sonnet-4-5".into(),
            default_max_tokens: Some(64_000),
            summaries_as_thinking: false,
            anthropic_target: true,
        };
        b.iter(|| {
            CheckedBody::check(codex_request.as_bytes())
                .and_then(|body| responses_to_anthropic_request(body, None, &opts))
        })
    });
    let response = fixture("anthropic/messages_with_tools.json");
    g.throughput(Throughput::Bytes(response.len() as u64));
    g.bench_function("anthropic_to_openai_response", |b| {
        let opts = ResponseOptions {
            model: "claude-sonnet-4-5".into(),
            created: 0,
        };
        b.iter(|| anthropic_to_openai_response(response.as_bytes(), &opts))
    });
    g.finish();
}

/// Turns of a coding agent's conversation, each a tool call and its output.
const AGENT_TURNS: usize = 60;

/// A file a tool read: about 4 KiB of source, with the quotes, backslashes and
/// newlines that JSON escapes.
fn tool_output(turn: usize) -> String {
    let line = format!("    let path = \"src/module_{turn}.rs\"; // a \\\"quoted\\\" note\n");
    line.repeat(4096 / line.len())
}

/// Claude Code's request on its sixtieth turn: cached system blocks, tools with
/// schemas, and every turn's text, tool call and tool result (about 300 KiB).
fn claude_code_request() -> String {
    let tools: Vec<_> = (0..20)
        .map(|i| serde_json::json!({
            "name": format!("tool_{i}"),
            "description": "Runs a command in the workspace and returns its output.",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}}, "required": ["command"]},
        }))
        .collect();
    let mut messages = Vec::new();
    for turn in 0..AGENT_TURNS {
        messages.push(serde_json::json!({"role": "user", "content": [{"type": "text", "text": format!("Step {turn}: read the next module.")}]}));
        messages.push(serde_json::json!({"role": "assistant", "content": [
            {"type": "text", "text": "Reading it."},
            {"type": "tool_use", "id": format!("toolu_{turn}"), "name": "tool_1", "input": {"command": format!("cat src/module_{turn}.rs")}},
        ]}));
        messages.push(serde_json::json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{turn}"), "content": [{"type": "text", "text": tool_output(turn)}]},
        ]}));
    }
    serde_json::json!({
        "model": "gpt-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Work in the repository.".repeat(40)},
        ],
        "tools": tools,
        "messages": messages,
    })
    .to_string()
}

/// The same conversation from a Chat Completions client.
fn chat_agent_request() -> String {
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a coding agent."})];
    for turn in 0..AGENT_TURNS {
        messages.push(serde_json::json!({"role": "user", "content": format!("Step {turn}: read the next module.")}));
        messages.push(serde_json::json!({"role": "assistant", "content": "Reading it.", "tool_calls": [
            {"id": format!("call_{turn}"), "type": "function", "function": {"name": "tool_1", "arguments": format!("{{\"command\":\"cat src/module_{turn}.rs\"}}")}},
        ]}));
        messages.push(serde_json::json!({"role": "tool", "tool_call_id": format!("call_{turn}"), "content": tool_output(turn)}));
    }
    serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": messages})
        .to_string()
}

/// The same conversation from Codex (the Responses API).
fn codex_agent_request() -> String {
    let mut input = Vec::new();
    for turn in 0..AGENT_TURNS {
        input.push(serde_json::json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": format!("Step {turn}: read the next module.")}]}));
        input.push(serde_json::json!({"type": "function_call", "call_id": format!("call_{turn}"), "name": "exec_command", "arguments": format!("{{\"cmd\":\"cat src/module_{turn}.rs\"}}")}));
        input.push(serde_json::json!({"type": "function_call_output", "call_id": format!("call_{turn}"), "output": tool_output(turn)}));
    }
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "instructions": "You are a coding agent.",
        "input": input,
        "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}],
        "stream": true, "store": false,
    })
    .to_string()
}

/// A coding agent's whole conversation, sent again on every turn: each request
/// translator on about 300 KiB, the body's check included as the gateway makes it.
fn agent_conversations(c: &mut Criterion) {
    let mut g = c.benchmark_group("agent_request");
    let claude_code = claude_code_request();
    g.throughput(Throughput::Bytes(claude_code.len() as u64));
    g.bench_function("messages_to_chat", |b| {
        let opts = OpenAiRequestOptions {
            model: "gpt-5".into(),
            reasoning: true,
            token_limit: TokenLimitField::MaxCompletionTokens,
            max_output_tokens: None,
            stream_usage: aurora::translate::StreamUsage::OnRequest,
            reasoning_content_back: false,
            user_field: true,
            default_sampling_only: false,
            strict_message_order: false,
            short_tool_call_ids: false,
            text_only: false,
            file_parts: true,
            parallel_tool_calls_field: true,
            thought_signature_stand_in: false,
        };
        let check = |body: &str| {
            CheckedBody::check(body.as_bytes()).and_then(|b| anthropic_to_openai_request(b, &opts))
        };
        assert!(check(&claude_code).is_ok(), "the conversation translates");
        b.iter(|| check(&claude_code))
    });
    let chat = chat_agent_request();
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("chat_to_messages", |b| {
        let opts = RequestOptions {
            model: "claude-sonnet-4-5".into(),
            default_max_tokens: 4096,
        };
        let check = |body: &str| {
            CheckedBody::check(body.as_bytes()).and_then(|b| openai_to_anthropic_request(b, &opts))
        };
        assert!(check(&chat).is_ok(), "the conversation translates");
        b.iter(|| check(&chat))
    });
    let codex = codex_agent_request();
    g.throughput(Throughput::Bytes(codex.len() as u64));
    g.bench_function("responses_to_messages", |b| {
        let opts = ResponsesRequestOptions {
            model: "claude-sonnet-4-5".into(),
            default_max_tokens: Some(64_000),
            summaries_as_thinking: false,
            anthropic_target: true,
        };
        let check = |body: &str| {
            CheckedBody::check(body.as_bytes())
                .and_then(|b| responses_to_anthropic_request(b, None, &opts))
        };
        assert!(check(&codex).is_ok(), "the conversation translates");
        b.iter(|| check(&codex))
    });
    // The check alone, which every translated request pays before its translation.
    g.bench_function("check", |b| {
        b.iter(|| CheckedBody::check(codex.as_bytes()).is_ok())
    });
    g.finish();
}

criterion_group!(benches, streams, one_shot, agent_conversations);
criterion_main!(benches);
