"""A stand-in for Anthropic and OpenAI: replays recorded responses from tests/fixtures
and records every request, so tests can see exactly what the gateway sent upstream.

Routes (paths are under the mock's base URL, which ends in `/v1`):

- `POST /v1/messages` answers like Anthropic's Messages API, `POST /v1/chat/completions`
  like OpenAI's Chat Completions; `"stream": true` gets an SSE answer (an OpenAI stream
  ends with a usage-only chunk when `stream_options.include_usage` is set).
- `POST /v1/messages/count_tokens` answers like Anthropic's token counting:
  `{"input_tokens": anthropic_input_tokens(body)}`.
- `GET /v1/models` lists models in Anthropic's format when the request carries Anthropic
  credentials (`x-api-key` / `anthropic-version`), in OpenAI's otherwise.

What a chat request gets is chosen by a marker such as `[scenario:tool]` in the text of
its last user message (see SCENARIOS; both routes understand them); without one it gets
the recorded plain-text answer. A request for the model RATE_LIMITED_MODEL gets a 429
whatever its messages say.

Requests a provider would refuse get that provider's 400, so a request that reached the
wrong format is caught (see anthropic_request_problem and openai_request_problem).
"""

import copy
import gzip
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from agent_script import anthropic_turn, openai_turn, responses_turn
from batches_mock import (
    BATCHES_PATH,
    FILES_PATH,
    OPENAI_BATCHES_PATH,
    OPENAI_OUTPUT_FILE,
    BatchesApi,
    openai_batch,
    openai_output_lines,
    refusal,
)
from gemini_mock import GeminiApi
from responses_mock import ResponsesApi, call_output, stream_events, text_output

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
RESPONSES_PATH = "/v1/responses"

# A request for this model gets a 429 in the provider's own error format.
RATE_LIMITED_MODEL = "rate-limited"
# Models that are always overloaded: OpenAI answers 503, Anthropic 529, as they do
# under load. The gateway's config gives them fallbacks.
OVERLOADED_GPT = "gpt-4o-overloaded"
OVERLOADED_CLAUDE = "claude-overloaded"
# A model whose chat answer is a 200 with a body that is not JSON: the work done (and
# billed), the answer unusable.
GARBLED_GPT = "gpt-4o-garbled"
RATE_LIMIT_MESSAGE = "mock provider: rate limit exceeded"
_ANTHROPIC_RATE_LIMIT = (
    {"type": "error", "error": {"type": "rate_limit_error", "message": RATE_LIMIT_MESSAGE}},
    {"anthropic-ratelimit-requests-remaining": "0"},
)
RATE_LIMITS = {
    MESSAGES_PATH: _ANTHROPIC_RATE_LIMIT,
    COUNT_TOKENS_PATH: _ANTHROPIC_RATE_LIMIT,
    CHAT_COMPLETIONS_PATH: (
        {
            "error": {
                "message": RATE_LIMIT_MESSAGE,
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        {"x-ratelimit-remaining-requests": "0"},
    ),
}
RETRY_AFTER = "7"

# --- Scenarios -----------------------------------------------------------------------

TOOL = "tool"  # the model calls TOOL_NAME with TOOL_INPUT (streamed too)
RATE_LIMIT = "rate_limit"  # 429 with retry-after, as RATE_LIMITED_MODEL gets
MIDSTREAM_ERROR = "midstream_error"  # streams only: some text, then an in-stream error
# Streams only: as MIDSTREAM_ERROR, the error saying the prompt is too long for the model.
CONTEXT_OVERFLOW = "context_overflow"
THINKING = "thinking"  # Anthropic: a signed thinking block (THINKING_TEXT), then the text
# OpenAI streams only: the usage-only chunk (when asked for) comes USAGE_DELAY seconds
# after the chunk that finishes, as a client may leave in between.
SLOW_USAGE = "slow_usage"
USAGE_DELAY = 1.0
# OpenAI whole answers only: the answer comes ANSWER_DELAY seconds after the call, as
# from a model that works long before it answers; a client may leave meanwhile.
SLOW_ANSWER = "slow_answer"
ANSWER_DELAY = 3.0
SCENARIOS = (TOOL, RATE_LIMIT, MIDSTREAM_ERROR, CONTEXT_OVERFLOW, THINKING, SLOW_USAGE, SLOW_ANSWER)
THINKING_TEXT = "The user wants a greeting."
THINKING_SIGNATURE = "EqQBCgIYAhIM-mock-signature"

_MARKER = re.compile(r"\[scenario:([A-Za-z0-9_]+)\]")


def scenario(name: str) -> str:
    """The marker to put in a user message to get scenario `name`."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}")
    return f"[scenario:{name}]"


TOOL_NAME = "get_weather"
TOOL_INPUT = {"city": "Paris"}
TOOL_USE_ID = "toolu_01Dq95J3WcnLmvSvBpAuaXwi"  # the recorded tool_use block's id
TOOL_CALL_ID = "call_X8zi23yeE70r4qiZ2lhIuRNK"  # the recorded OpenAI tool call's id

# The midstream_error scenario: this text, in several deltas, then this error: an
# `error` event from Anthropic, a `data: {"error": ...}` chunk from OpenAI. Neither
# stream finishes (no block stop or message_stop; no finish_reason or [DONE]).
MIDSTREAM_TEXT = "The answer starts here and then"
MIDSTREAM_ERROR_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
OPENAI_MIDSTREAM_ERROR = {
    "error": {
        "message": "mock provider: the server had an error while processing your request",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}
# The context_overflow scenario's errors, in each provider's words.
CONTEXT_OVERFLOW_MESSAGE = "prompt is too long: 215000 tokens > 200000 maximum"
CONTEXT_OVERFLOW_EVENT = {"type": "error", "error": {"type": "invalid_request_error", "message": CONTEXT_OVERFLOW_MESSAGE}}
OPENAI_CONTEXT_OVERFLOW_MESSAGE = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
OPENAI_CONTEXT_OVERFLOW = {
    "error": {
        "message": OPENAI_CONTEXT_OVERFLOW_MESSAGE,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}

# Anthropic's model list (GET /v1/models); there is no recorded one.
ANTHROPIC_MODELS = [
    {
        "type": "model",
        "id": "claude-sonnet-4-5-20250929",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-sonnet-4-20250514",
        "display_name": "Claude Sonnet 4",
        "created_at": "2025-05-22T00:00:00Z",
    },
]


# --- Fixtures and SSE ------------------------------------------------------------------


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str):
    return json.loads(fixture_bytes(name))


def sse_events(name: str) -> list[bytes]:
    """An SSE transcript split into events, each ending with its blank line."""
    return [event + b"\n\n" for event in fixture_bytes(name).strip(b"\n").split(b"\n\n")]


def sse_event(event_type: str | None, data) -> bytes:
    head = f"event: {event_type}\n" if event_type else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_data(event: bytes):
    """The JSON `data:` of one event (None when it has none or it is not JSON)."""
    lines = [line[5:] for line in event.decode().splitlines() if line.startswith("data:")]
    try:
        return json.loads("\n".join(lines)) if lines else None
    except ValueError:
        return None


def split_text(text: str) -> list[str]:
    """Word-sized pieces that join back to `text`; at least two when it has two chars."""
    pieces = re.findall(r"\s*\S+|\s+", text)
    if len(pieces) == 1 and len(text) > 1:
        pieces = [text[: len(text) // 2], text[len(text) // 2 :]]
    return pieces


def split_json(value, size: int = 6) -> list[str]:
    """`value` as JSON in `size`-character fragments, after the empty fragment Anthropic
    sends first."""
    text = json.dumps(value)
    return [""] + [text[i : i + size] for i in range(0, len(text), size)]


# --- Anthropic answers -------------------------------------------------------------------


def anthropic_text_message() -> dict:
    return fixture_json("anthropic/messages.json")


def anthropic_tool_message() -> dict:
    """The recorded tool_use answer, asking for TOOL_INPUT."""
    message = fixture_json("anthropic/messages_with_tools.json")
    for block in message["content"]:
        if block["type"] == "tool_use":
            block.update(id=TOOL_USE_ID, name=TOOL_NAME, input=copy.deepcopy(TOOL_INPUT))
    return message


def anthropic_text_stream() -> list[bytes]:
    """The recorded text stream with its text delta split into several events; every
    other event is replayed byte for byte, odd whitespace and `ping` included."""
    out = []
    for event in sse_events("anthropic/messages_stream.txt"):
        data = sse_data(event)
        if data and data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
            for piece in split_text(data["delta"]["text"]):
                delta = {**data, "delta": {"type": "text_delta", "text": piece}}
                out.append(sse_event("content_block_delta", delta))
        else:
            out.append(event)
    return out


def anthropic_stream_of(message: dict) -> list[bytes]:
    """The SSE events Anthropic sends for `message`, following its streaming docs:
    message_start (empty content, input usage), per block a start, deltas and a stop
    (a ping after the first start), message_delta (stop reason, output tokens),
    message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    events = [sse_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events += _anthropic_block_events(index, block)
        if index == 0:
            events.insert(2, sse_event("ping", {"type": "ping"}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message.get("stop_sequence")}
    end_usage = {"output_tokens": usage["output_tokens"]}
    events.append(sse_event("message_delta", {"type": "message_delta", "delta": stop, "usage": end_usage}))
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return events


def _anthropic_block_events(index: int, block: dict) -> list[bytes]:
    if block["type"] == "thinking":
        opening = {"type": "thinking", "thinking": ""}
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in split_text(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif block["type"] == "text":
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split_text(block["text"])]
    elif block["type"] == "tool_use":
        opening = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in split_json(block["input"])]
    else:
        raise ValueError(f"mock: cannot stream a {block['type']} block")
    start = {"type": "content_block_start", "index": index, "content_block": opening}
    return [
        sse_event("content_block_start", start),
        *(
            sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            for delta in deltas
        ),
        sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def anthropic_midstream_error_stream(model: str, error: dict = MIDSTREAM_ERROR_EVENT) -> list[bytes]:
    """MIDSTREAM_TEXT in several deltas, then `error` as an `error` event; no block
    stop, no message_stop."""
    message = {**anthropic_text_message(), "model": model}
    message["content"] = [{"type": "text", "text": MIDSTREAM_TEXT}]
    events = anthropic_stream_of(message)
    cut = next(i for i, e in enumerate(events) if sse_data(e)["type"] == "content_block_stop")
    return events[:cut] + [sse_event("error", error)]


# Chat Completions fields Anthropic's Messages API refuses ("Extra inputs are not
# permitted"), so a request that was not translated is caught here.
OPENAI_ONLY_FIELDS = (
    "stream_options",
    "max_completion_tokens",
    "n",
    "response_format",
    "parallel_tool_calls",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "user",
    "functions",
    "function_call",
    "store",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
)


MID_CONVERSATION_SYSTEM_BETA = "mid-conversation-system"


def anthropic_request_problem(payload, count_tokens: bool = False, betas: str = "") -> str | None:
    """What Anthropic would reject in a Messages request (the checks a translated
    request can plausibly get wrong), or None. A token counting request
    (`count_tokens`) takes the same fields less `max_tokens` and `stream`. A `system`
    role inside `messages` needs its beta in `betas` (the `anthropic-beta` header), and
    every `tool_result` needs its `tool_use` in the message before."""
    if not isinstance(payload, dict):
        return "body: Input should be an object"
    refused = OPENAI_ONLY_FIELDS + (("max_tokens", "stream") if count_tokens else ())
    for field in refused:
        if field in payload:
            return f"{field}: Extra inputs are not permitted"
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "model: Field required"
    max_tokens = payload.get("max_tokens")
    if not count_tokens and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return "max_tokens: Field required"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    system_allowed = MID_CONVERSATION_SYSTEM_BETA in betas
    calls_before: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant") and not (role == "system" and system_allowed):
            return f'messages.{i}.role: Input should be "user" or "assistant"'
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        for j, block in enumerate(blocks):
            if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("tool_use_id") not in calls_before:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        calls_before = [b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
    problem = output_config_problem(payload.get("output_config"))
    if problem:
        return problem
    for i, tool in enumerate(payload.get("tools") or []):
        if not isinstance(tool, dict) or "name" not in tool:
            return f"tools.{i}.name: Field required"
        if tool.get("type") in (None, "custom") and "input_schema" not in tool:
            return f"tools.{i}.custom.input_schema: Field required"
    return None


def output_config_problem(config) -> str | None:
    """What Anthropic refuses in `output_config`: members other than `effort` and
    `format`, and a `format` other than `{type: "json_schema", schema: {...}}`."""
    if config is None:
        return None
    if not isinstance(config, dict):
        return "output_config: Input should be an object"
    for key in config:
        if key not in ("effort", "format"):
            return f"output_config.{key}: Extra inputs are not permitted"
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    for key in fmt:
        if key not in ("type", "schema"):
            return f"output_config.format.{key}: Extra inputs are not permitted"
    if not isinstance(fmt.get("schema"), dict):
        return "output_config.format.schema: Field required"
    return None


# What the mock answers, as JSON text, when a request asks for a JSON schema's shape.
STRUCTURED_ANSWER = {"city": "Paris", "temperature_c": 21}


def anthropic_input_tokens(payload: dict) -> int:
    """The mock's token count for a Messages request: one per word of the system prompt
    and the messages' text, plus three per message."""
    system = payload.get("system")
    texts = [message_text(system)] + [
        message_text(m.get("content")) for m in payload.get("messages") or [] if isinstance(m, dict)
    ]
    return sum(len(text.split()) for text in texts) + 3 * len(payload.get("messages") or [])


def requested_scenario(messages) -> str | None:
    """The scenario named in the last user message, if any."""
    users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    match = _MARKER.search(message_text(users[-1].get("content")))
    return match.group(1) if match else None


def responses_messages(items) -> list:
    """A Responses API `input` as messages: a string is one user message; items that
    are messages are kept."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if isinstance(items, list):
        return [i for i in items if isinstance(i, dict) and "role" in i and i.get("type", "message") == "message"]
    return []


def message_text(content) -> str:
    """The text of a message's content: a string, or text parts/blocks (both formats
    use `{"type": "text", "text": ...}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in ("text", "input_text")
            and isinstance(part.get("text"), str)
        )
    return ""


# --- OpenAI answers ----------------------------------------------------------------------

# Messages API fields Chat Completions has no use for, so a request that was not
# translated is caught here (OpenAI answers 400 "Unrecognized request argument").
ANTHROPIC_ONLY_FIELDS = (
    "system",
    "stop_sequences",
    "top_k",
    "thinking",
    "anthropic_version",
    "container",
    "mcp_servers",
    "inference_geo",
    "context_management",
    "output_config",
)
# OpenAI's output ceilings for the models the tests use.
OPENAI_OUTPUT_CEILINGS = {"gpt-4o-mini": 16384, "gpt-4o": 16384}


def openai_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning families (o-series, GPT-5), which refuse `max_tokens`."""
    return openai_o_series(model) or model.startswith("gpt-5")


def openai_o_series(model: str) -> bool:
    """OpenAI's o-series, which also refuse `parallel_tool_calls` (GPT-5 takes it)."""
    return bool(re.match(r"o\d", model))


# The most stop sequences Chat Completions takes.
OPENAI_MAX_STOPS = 4
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
OPENAI_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


def openai_request_problem(payload) -> str | None:
    """What OpenAI would reject in a Chat Completions request (the checks a translated
    request can plausibly get wrong), or None. Fields it does not know are let through,
    since the gateway forwards those from OpenAI clients as they are."""
    if not isinstance(payload, dict):
        return "body: expected an object"
    for field in ANTHROPIC_ONLY_FIELDS:
        if field in payload:
            return f"Unrecognized request argument supplied: {field}"
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "you must provide a model parameter"
    model = payload["model"]
    if openai_reasoning_model(model) and "max_tokens" in payload:
        return "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    for field in ("max_tokens", "max_completion_tokens"):
        asked, ceiling = payload.get(field), OPENAI_OUTPUT_CEILINGS.get(model)
        if isinstance(asked, int) and ceiling and asked > ceiling:
            return (
                f"max_tokens is too large: {asked}. This model supports at most {ceiling} "
                f"completion tokens, whereas you provided {asked}."
            )
    if openai_o_series(model) and "parallel_tool_calls" in payload:
        return "Unsupported parameter: 'parallel_tool_calls' is not supported with this model."
    stop = payload.get("stop")
    if isinstance(stop, list) and len(stop) > OPENAI_MAX_STOPS:
        return (
            f"Invalid 'stop': array too long. Expected an array with maximum length {OPENAI_MAX_STOPS}, "
            f"but got an array with length {len(stop)} instead."
        )
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in OPENAI_ROLES:
            return f"Invalid value for 'messages[{i}].role': {role!r}"
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in OPENAI_PART_TYPES:
                    return f"Invalid value for 'messages[{i}].content[{j}].type': {kind!r}"
                if kind == "image_url" and role != "user":
                    return (
                        f"Invalid 'messages[{i}]'. Image URLs are only allowed for messages with role "
                        f"'user', but this message with role '{role}' contains an image URL."
                    )
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            return f"Missing required parameter: 'messages[{i}].tool_call_id'"
    problem = tool_message_problem(messages)
    if problem:
        return problem
    for i, tool in enumerate(payload.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return f"Missing required parameter: 'tools[{i}].function'"
        if tool.get("type") != "function":
            return f"Invalid value for 'tools[{i}].type': {tool.get('type')!r}"
    return None


def tool_message_problem(messages: list) -> str | None:
    """OpenAI's refusal of tool calls and tool messages out of step: each call of an
    assistant message answered by the tool messages right after it, and every tool
    message answering a call of the assistant message before its run."""
    calls: list[str] = []
    answered: list[str] = []
    for i, message in enumerate([*messages, {"role": "end"}]):
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in calls:
                return (
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceeding message with 'tool_calls' (messages.[{i}])."
                )
            answered.append(message["tool_call_id"])
            continue
        unanswered = [c for c in calls if c not in answered]
        if unanswered:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(unanswered)
            )
        tool_calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        calls = [c.get("id") for c in tool_calls or [] if isinstance(c, dict)]
        answered = []
    return None


_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def openai_completion(model: str, tool: bool = False) -> bytes:
    """A recorded completion (the tool call one asking for TOOL_INPUT), with `model` set
    to the one requested."""
    completion = fixture_json("openai/chat_with_tools.json" if tool else "openai/chat_completion.json")
    completion["model"] = model
    for call in completion["choices"][0]["message"].get("tool_calls") or []:
        call["function"].update(name=TOOL_NAME, arguments=json.dumps(TOOL_INPUT, separators=(",", ":")))
    return json.dumps(completion).encode()


def openai_stream(model: str, include_usage: bool = False) -> list[bytes]:
    """The recorded stream, byte for byte except `model` set to the one requested; with
    `include_usage`, a usage-only chunk (the recorded completion's usage) before [DONE]."""
    echoed = b'"model":' + json.dumps(model).encode()
    events = [_MODEL_FIELD.sub(lambda _: echoed, e) for e in sse_events("openai/chat_completion_stream.txt")]
    if include_usage:
        first = sse_data(events[0])
        base = {k: first[k] for k in ("id", "object", "created", "model", "service_tier", "system_fingerprint")}
        usage = fixture_json("openai/chat_completion.json")["usage"]
        events.insert(-1, sse_event(None, {**base, "choices": [], "usage": usage}))
    return events


def _openai_chunks(model: str, include_usage: bool):
    """A chunk maker for a stream shaped like the recorded tool call completion."""
    recorded = fixture_json("openai/chat_with_tools.json")
    base = {
        "id": recorded["id"],
        "object": "chat.completion.chunk",
        "created": recorded["created"],
        "model": model,
        "service_tier": recorded["service_tier"],
        "system_fingerprint": recorded["system_fingerprint"],
    }

    def chunk(delta=None, finish_reason=None, usage=None) -> bytes:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        data = {**base, "choices": choices}
        if include_usage:
            data["usage"] = usage
        return sse_event(None, data)

    return chunk, recorded["usage"]


def openai_tool_stream(
    model: str,
    include_usage: bool = False,
    name: str = TOOL_NAME,
    tool_input: dict | None = None,
    call_id: str = TOOL_CALL_ID,
) -> list[bytes]:
    """OpenAI's stream for one tool call (the recorded one by default): the call's id
    and name with empty arguments, the arguments (TOOL_INPUT) in several fragments,
    finish_reason `tool_calls`, the usage chunk when asked for, then [DONE]."""
    chunk, usage = _openai_chunks(model, include_usage)
    arguments = json.dumps(TOOL_INPUT if tool_input is None else tool_input, separators=(",", ":"))
    opening = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    events = [chunk({"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None})]
    for i in range(0, len(arguments), 5):
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]}))
    events.append(chunk({}, "tool_calls"))
    if include_usage:
        events.append(chunk(usage=usage))
    return events + [b"data: [DONE]\n\n"]


def openai_text_stream(model: str, text: str, include_usage: bool = False) -> list[bytes]:
    """OpenAI's stream for an answer of `text`, in word-sized chunks."""
    chunk, usage = _openai_chunks(model, include_usage)
    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in split_text(text)]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(chunk(usage=usage))
    return events + [b"data: [DONE]\n\n"]


# --- The scripted agent model (agent_script) ---------------------------------------------

AGENT_TOOL_USE_ID = "toolu_agent_read_1"
AGENT_CALL_ID = "call_agent_read_1"


def agent_anthropic_message(model: str, turn) -> dict:
    kind, value = turn
    message = {**anthropic_text_message(), "model": model}
    if kind == "tool":
        name, arguments = value
        message["content"] = [{"type": "tool_use", "id": AGENT_TOOL_USE_ID, "name": name, "input": arguments}]
        message["stop_reason"] = "tool_use"
    else:
        message["content"] = [{"type": "text", "text": value}]
        message["stop_reason"] = "end_turn"
    return message


def agent_openai_answer(model: str, turn, stream: bool, include_usage: bool):
    """The SSE events (stream) or the completion JSON for an agent turn."""
    kind, value = turn
    if stream:
        if kind == "tool":
            return openai_tool_stream(model, include_usage, value[0], value[1], AGENT_CALL_ID)
        return openai_text_stream(model, value, include_usage)
    completion = fixture_json("openai/chat_completion.json")
    completion["model"] = model
    choice = completion["choices"][0]
    if kind == "tool":
        name, arguments = value
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": AGENT_CALL_ID, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ]}
        choice["finish_reason"] = "tool_calls"
    else:
        choice["message"] = {"role": "assistant", "content": value}
        choice["finish_reason"] = "stop"
    return completion


def openai_midstream_error_stream(
    model: str, include_usage: bool = False, error: dict = OPENAI_MIDSTREAM_ERROR
) -> list[bytes]:
    """MIDSTREAM_TEXT in several content chunks, then `error` as a `data:` chunk, and
    the stream ends: no finish_reason, no usage, no [DONE]."""
    chunk, _ = _openai_chunks(model, include_usage)
    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in split_text(MIDSTREAM_TEXT)]
    return events + [sse_event(None, error)]


# --- Server ------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str  # as sent, query string included
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self):
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as real providers do, so the gateway's connection reuse is exercised.
    protocol_version = "HTTP/1.1"
    mock: "MockProvider"  # set on the subclass MockProvider creates

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def _handle(self):
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.mock._record(RecordedRequest(self.command, self.path, headers, body))
        path = urlsplit(self.path).path
        if GeminiApi.serves(path, headers):
            return self.mock.gemini.handle(self, path, urlsplit(self.path).query, headers, body)
        if (self.command, path) == ("GET", MODELS_PATH):
            return self._models(headers)
        if path.startswith(RESPONSES_PATH + "/") and self.command in ("GET", "DELETE"):
            return self._stored_response(path[len(RESPONSES_PATH) + 1 :])
        if path == BATCHES_PATH or path.startswith(BATCHES_PATH + "/"):
            return self._anthropic_batches(path, headers, body)
        if self.command == "GET" and path.startswith(OPENAI_BATCHES_PATH + "/"):
            batch = openai_batch(path[len(OPENAI_BATCHES_PATH) + 1 :], json.loads(fixture_bytes("openai/chat_completion.json")))
            if batch is None:
                return self._send_json(404, {"error": {"message": "No such batch", "type": "invalid_request_error"}})
            return self._send_json(200, batch)
        if (self.command, path) == ("GET", f"{FILES_PATH}/{OPENAI_OUTPUT_FILE}/content"):
            lines = openai_output_lines(json.loads(fixture_bytes("openai/chat_completion.json")))
            return self._send(200, "application/octet-stream", lines)
        handlers = {
            MESSAGES_PATH: self._anthropic_messages,
            COUNT_TOKENS_PATH: self._anthropic_count_tokens,
            CHAT_COMPLETIONS_PATH: self._openai_chat,
            RESPONSES_PATH: self._openai_responses,
        }
        handler = handlers.get(path)
        if self.command != "POST" or handler is None:
            return self._send_json(404, {"error": {"message": f"mock: no route {self.command} {path}"}})
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return self._send_json(400, {"error": {"message": "mock: body is not JSON"}})
        if not isinstance(payload, dict):
            return self._send_json(400, {"error": {"message": "mock: body is not a JSON object"}})
        wanted = requested_scenario(payload.get("messages") or responses_messages(payload.get("input")))
        if wanted is not None and wanted not in SCENARIOS:
            return self._send_json(400, {"error": {"message": f"mock: unknown scenario {wanted!r}"}})
        if payload.get("model") == OVERLOADED_GPT and path == CHAT_COMPLETIONS_PATH:
            error = {"message": "mock: the engine is currently overloaded", "type": "server_error", "param": None, "code": None}
            return self._send_json(503, {"error": error})
        if payload.get("model") == GARBLED_GPT and path == CHAT_COMPLETIONS_PATH:
            return self._send(200, "application/json", b"<html>upstream page, not JSON</html>")
        if payload.get("model") == OVERLOADED_CLAUDE and path == MESSAGES_PATH:
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return self._send_json(529, error)
        if payload.get("model") == RATE_LIMITED_MODEL or wanted == RATE_LIMIT:
            error, extra = RATE_LIMITS[path]
            return self._send_json(429, error, {"retry-after": RETRY_AFTER, **extra})
        handler(payload, wanted)

    def _anthropic_messages(self, payload, wanted):
        problem = anthropic_request_problem(payload, betas=self.headers.get("anthropic-beta", ""))
        if problem:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": problem}}
            return self._send_json(400, error)
        stream = payload.get("stream") is True
        turn = anthropic_turn(payload)
        if turn is not None:
            message = agent_anthropic_message(payload["model"], turn)
            return self._send_sse(anthropic_stream_of(message)) if stream else self._send_json(200, message)
        if wanted == TOOL:
            message = {**anthropic_tool_message(), "model": payload["model"]}
            return self._send_sse(anthropic_stream_of(message)) if stream else self._send_json(200, message)
        if wanted == THINKING:
            message = {**anthropic_text_message(), "model": payload["model"]}
            thinking = {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}
            message["content"] = [thinking, *message["content"]]
            return self._send_sse(anthropic_stream_of(message)) if stream else self._send_json(200, message)
        if wanted in (MIDSTREAM_ERROR, CONTEXT_OVERFLOW):
            if not stream:
                return self._send_json(400, {"error": {"message": f"mock: {wanted} needs stream"}})
            error = CONTEXT_OVERFLOW_EVENT if wanted == CONTEXT_OVERFLOW else MIDSTREAM_ERROR_EVENT
            return self._send_sse(anthropic_midstream_error_stream(payload["model"], error))
        if (payload.get("output_config") or {}).get("format"):
            # Structured outputs: the answer is the JSON text the schema asks for.
            message = {**anthropic_text_message(), "model": payload["model"]}
            message["content"] = [{"type": "text", "text": json.dumps(STRUCTURED_ANSWER)}]
            return self._send_sse(anthropic_stream_of(message)) if stream else self._send_json(200, message)
        if stream:
            return self._send_sse(anthropic_text_stream())
        self._send(200, "application/json", fixture_bytes("anthropic/messages.json"))

    def _anthropic_count_tokens(self, payload, wanted):
        problem = anthropic_request_problem(payload, count_tokens=True, betas=self.headers.get("anthropic-beta", ""))
        if problem:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": problem}}
            return self._send_json(400, error)
        self._send_json(200, {"input_tokens": anthropic_input_tokens(payload)})

    def _openai_chat(self, payload, wanted):
        problem = openai_request_problem(payload)
        if problem:
            error = {"message": problem, "type": "invalid_request_error", "param": None, "code": None}
            return self._send_json(400, {"error": error})
        model = payload["model"]
        stream = payload.get("stream") is True
        options = payload.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        turn = openai_turn(payload)
        if turn is not None:
            answer = agent_openai_answer(model, turn, stream, include_usage)
            return self._send_sse(answer) if stream else self._send_json(200, answer)
        if wanted in (MIDSTREAM_ERROR, CONTEXT_OVERFLOW):
            if not stream:
                return self._send_json(400, {"error": {"message": f"mock: {wanted} needs stream"}})
            error = OPENAI_CONTEXT_OVERFLOW if wanted == CONTEXT_OVERFLOW else OPENAI_MIDSTREAM_ERROR
            return self._send_sse(openai_midstream_error_stream(model, include_usage, error))
        if stream:
            if wanted == TOOL:
                return self._send_sse(openai_tool_stream(model, include_usage))
            events = openai_stream(model, include_usage)
            if wanted == SLOW_USAGE and include_usage:
                return self._send_sse(events, pause_before=len(events) - 2, pause=USAGE_DELAY)
            return self._send_sse(events)
        if wanted == SLOW_ANSWER:
            time.sleep(ANSWER_DELAY)
        try:
            self._send(200, "application/json", openai_completion(model, tool=wanted == TOOL))
        except (BrokenPipeError, ConnectionResetError):
            # The client left while the model worked.
            self.close_connection = True

    def _openai_responses(self, payload, wanted):
        problem = self.mock.responses.problem(payload)
        if problem:
            status, message = problem
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            return self._send_json(status, {"error": error})
        turn = responses_turn(payload)
        if turn is not None:
            kind, value = turn
            output = call_output(value[0], value[1], AGENT_CALL_ID) if kind == "tool" else text_output(value)
        elif wanted == TOOL:
            output = call_output(TOOL_NAME, TOOL_INPUT, TOOL_CALL_ID)
        else:
            output = text_output("Hello, World!")
        response = self.mock.responses.answer(payload, output)
        if payload.get("stream") is True:
            return self._send_sse(stream_events(response))
        if response["background"]:
            return self._send_json(200, self.mock.responses.queued(response))
        self._send_json(200, response)

    def _anthropic_batches(self, path, headers, body):
        refused = refusal(headers)
        if refused:
            return self._send_json(*refused)
        origin = f"http://{headers.get('host', '')}"
        rest = path[len(BATCHES_PATH):].strip("/").split("/")
        if self.command == "POST" and rest == [""]:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return self._send_json(400, {"error": {"message": "mock: body is not JSON"}})
            status, made = self.mock.batches.create(payload)
            if status != 200:
                return self._send_json(status, made)
            return self._send_json(200, self.mock.batches.batch(made, origin))
        if self.command == "GET" and len(rest) == 1:
            batch = self.mock.batches.batch(rest[0], origin)
        elif self.command == "GET" and len(rest) == 2 and rest[1] == "results":
            results = self.mock.batches.results(rest[0], json.loads(fixture_bytes("anthropic/messages.json")))
            if results is not None:
                return self._send(200, "application/binary", results)
            batch = None
        else:
            return self._send_json(404, {"error": {"message": f"mock: no route {self.command} {path}"}})
        if batch is None:
            return self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}})
        self._send_json(200, batch)

    def _stored_response(self, response_id):
        if self.command == "DELETE":
            if not self.mock.responses.delete(response_id):
                return self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return self._send_json(200, {"id": response_id, "object": "response", "deleted": True})
        response = self.mock.responses.get(response_id)
        if response is None:
            return self._send_json(404, {"error": {"message": f"Response with id '{response_id}' not found.",
                                                   "type": "invalid_request_error"}})
        self._send_json(200, response)

    def _models(self, headers):
        if "x-api-key" in headers or "anthropic-version" in headers:
            listing = {
                "data": ANTHROPIC_MODELS,
                "has_more": False,
                "first_id": ANTHROPIC_MODELS[0]["id"],
                "last_id": ANTHROPIC_MODELS[-1]["id"],
            }
            return self._send_json(200, listing)
        self._send(200, "application/json", fixture_bytes("openai/models.json"))

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after the chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def _send_json(self, status, obj, headers=None):
        self._send(status, "application/json", json.dumps(obj).encode(), headers)

    def _send(self, status, content_type, body, headers=None):
        # Compressed when the request accepts it, as OpenAI and Anthropic answer the
        # SDKs (which all accept gzip).
        accepted = self.headers.get("accept-encoding", "")
        gzipped = "gzip" in accepted.lower()
        if gzipped:
            body = gzip.compress(body)
        self.send_response(status)
        self.send_header("content-type", content_type)
        if gzipped:
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_sse(self, events, pause_before=None, pause=0.0):
        # Chunked, one chunk per event with a flush each, so the stream really arrives
        # in pieces and the gateway must forward it incrementally; `pause` seconds
        # before the event at `pause_before`. A client gone by then ends the stream.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for at, event in enumerate(events):
                if at == pause_before:
                    time.sleep(pause)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class MockProvider:
    """The mock server; `base_url` is what a provider's `*_BASE_URL` should be set to,
    `root_url` what a Gemini provider's is (its paths start with `/v1beta`), and
    `gemini_key` the key Gemini's methods take."""

    def __init__(self, gemini_key: str):
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self.responses = ResponsesApi()
        self.batches = BatchesApi()
        self.gemini = GeminiApi(gemini_key)
        handler = type("Handler", (_Handler,), {"mock": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.root_url = f"http://127.0.0.1:{self._server.server_port}"
        self.base_url = f"{self.root_url}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: RecordedRequest):
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()
