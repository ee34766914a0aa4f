//! Translation throughput: request and response translation, every stream direction
//! (Chat and Responses clients of Anthropic, Messages clients of Chat) and raw SSE
//! parsing. Streams are measured twice, with the same work: in bytes
//! (group `stream`, MB/s) and in SSE events (group `stream_events`, events/s).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use aurora::translate::openai_to_anthropic_request::{openai_to_anthropic_request, RequestOptions};
use aurora::translate::responses::{
    responses_to_anthropic_request, AnthropicToResponsesStream, ResponsesOptions,
    ResponsesRequestOptions,
};
use aurora::translate::{
    anthropic_to_openai_response, AnthropicToOpenAiStream, CheckedBody, MessageOptions,
    OpenAiToAnthropicStream, ResponseOptions, SseParser, StreamOptions,
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
            default_max_tokens: 4096,
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

criterion_group!(benches, streams, one_shot);
criterion_main!(benches);
