//! Request translation of a large body needs little more heap than the body:
//! a counting global allocator records the live bytes the translating thread
//! allocated and their peak. The figures are bytes, so the test is exact and
//! does not depend on the machine's speed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aurora::translate::{
    anthropic_to_openai_request, openai_to_anthropic_request, CheckedBody, OpenAiRequestOptions,
    RequestOptions, TokenLimitField,
};
use serde_json::Value;

/// Counts the bytes allocated by the thread that switched counting on, so
/// tests running in parallel threads do not disturb each other.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    // `try_with`: the thread's counters may already be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            LIVE.with(|live| {
                let now = live.get() + delta;
                live.set(now);
                PEAK.with(|peak| peak.set(peak.get().max(now)));
            });
        }
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            record(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        record(-(layout.size() as isize));
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            record(layout.size() as isize);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the peak of the heap it added
/// (bytes allocated by this thread and still live, at their highest).
fn peak_extra_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

const BODY_BYTES: usize = 9 << 20;

/// Heap allowed per byte of request body.
const MAX_HEAP_PER_BODY_BYTE: usize = 4;

/// Chat Completions messages of a long conversation: short turns, tool calls
/// and their results, and content-part arrays.
fn openai_message(i: usize) -> String {
    match i % 6 {
        0 => format!(r#"{{"role":"user","content":"Question {i}: what is the weather?"}}"#),
        1 => format!(
            r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_{i}","type":"function","function":{{"name":"weather","arguments":"{{\"city\":\"Paris\"}}"}}}}]}}"#
        ),
        2 => format!(r#"{{"role":"tool","tool_call_id":"call_{}","content":"18C, clear"}}"#, i - 1),
        3 => format!(r#"{{"role":"assistant","content":"Answer {i}: mild."}}"#),
        4 => r#"{"role":"user","content":[{"type":"text","text":"And this one?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}"#.to_owned(),
        _ => r#"{"role":"assistant","content":[{"type":"text","text":"Sunny."}]}"#.to_owned(),
    }
}

/// Messages API messages of a long conversation: short turns, tool uses and
/// their results, and content-block arrays.
fn anthropic_message(i: usize) -> String {
    match i % 4 {
        0 => format!(r#"{{"role":"user","content":"Question {i}: what is the weather?"}}"#),
        1 => format!(
            r#"{{"role":"assistant","content":[{{"type":"text","text":"Checking."}},{{"type":"tool_use","id":"toolu_{i}","name":"weather","input":{{"city":"Paris"}}}}]}}"#
        ),
        2 => format!(
            r#"{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{}","content":"18C"}},{{"type":"text","text":"And tomorrow?"}}]}}"#,
            i - 1
        ),
        _ => format!(r#"{{"role":"assistant","content":"Answer {i}: mild."}}"#),
    }
}

/// A request body of about `BODY_BYTES`: the members in `head` (JSON text
/// without the braces) and messages from `message` until the size is
/// reached. Returns the body and its message count.
fn large_body(head: &str, message: fn(usize) -> String) -> (Vec<u8>, usize) {
    let mut body = format!("{{{head},\"messages\":[");
    let mut count = 0;
    while body.len() < BODY_BYTES {
        if count > 0 {
            body.push(',');
        }
        body.push_str(&message(count));
        count += 1;
    }
    body.push_str("]}");
    (body.into_bytes(), count)
}

/// Messages in a translated body.
fn message_count(body: &[u8]) -> usize {
    let out: Value = serde_json::from_slice(body).unwrap();
    out["messages"].as_array().unwrap().len()
}

fn assert_within_budget(direction: &str, body: &[u8], peak: usize) {
    eprintln!(
        "{direction}: body {} bytes, peak extra heap {peak} bytes ({:.2}x)",
        body.len(),
        peak as f64 / body.len() as f64
    );
    assert!(
        peak <= MAX_HEAP_PER_BODY_BYTE * body.len(),
        "{direction}: translating {} bytes took {peak} bytes of heap at peak, over {MAX_HEAP_PER_BODY_BYTE}x",
        body.len()
    );
}

#[test]
fn openai_to_anthropic_translation_peak_heap_is_at_most_four_times_the_body() {
    let (body, count) = large_body(
        r#""model":"anthropic/claude","max_tokens":256,"stream":true,"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]"#,
        openai_message,
    );
    assert!(count > 50_000, "{count} messages");
    let opts = RequestOptions {
        model: "claude-sonnet-4-5".into(),
        default_max_tokens: 4096,
    };
    let (translated, peak) = peak_extra_heap(|| {
        CheckedBody::check(&body).and_then(|body| openai_to_anthropic_request(body, &opts))
    });
    let translated = translated.unwrap();
    assert!(translated.stream);
    // Tool results become user messages and merge with the next user turn.
    assert!(message_count(&translated.body) > count / 3);
    assert_within_budget("OpenAI to Anthropic", &body, peak);
}

#[test]
fn anthropic_to_openai_translation_peak_heap_is_at_most_four_times_the_body() {
    let (body, count) = large_body(
        r#""model":"openai/gpt","max_tokens":256,"system":"Be brief.","tools":[{"name":"weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]"#,
        anthropic_message,
    );
    assert!(count > 50_000, "{count} messages");
    let opts = OpenAiRequestOptions {
        model: "gpt-4o-mini".into(),
        reasoning: false,
        token_limit: TokenLimitField::MaxTokens,
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
    let (translated, peak) = peak_extra_heap(|| {
        CheckedBody::check(&body).and_then(|body| anthropic_to_openai_request(body, &opts))
    });
    let translated = translated.unwrap();
    // The system prompt and one tool message per result are added.
    assert!(message_count(&translated.body) > count);
    assert_within_budget("Anthropic to OpenAI", &body, peak);
}
