"""The official Anthropic SDK, pointed at the gateway's own Messages API (/v1/messages,
/v1/messages/count_tokens). Anthropic models get the request as the client wrote it with
only the model renamed, and their answer back unchanged; OpenAI models answer through
translation (Anthropic request -> Chat Completions -> Anthropic message or events)."""

import json

import anthropic
import httpx
import pytest
from anthropic.types import Message, MessageTokensCount

from mock_provider import (
    CHAT_COMPLETIONS_PATH,
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    MIDSTREAM_ERROR,
    MIDSTREAM_ERROR_EVENT,
    MIDSTREAM_TEXT,
    OPENAI_MIDSTREAM_ERROR,
    RATE_LIMIT,
    RATE_LIMIT_MESSAGE,
    RATE_LIMITS,
    RETRY_AFTER,
    TOOL,
    TOOL_CALL_ID,
    TOOL_INPUT,
    TOOL_NAME,
    TOOL_USE_ID,
    anthropic_input_tokens,
    anthropic_text_stream,
    anthropic_tool_message,
    fixture_bytes,
    fixture_json,
    message_text,
    scenario,
    sse_data,
    sse_events,
)
from upstream_requests import anthropic_upstream_request, openai_upstream_request, single_upstream_request

CLAUDE = "anthropic:claude-sonnet-4-5"
CLAUDE_UPSTREAM = "claude-sonnet-4-5"
GPT = "openai:gpt-4o-mini"
GPT_UPSTREAM = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hello"}]
BETA = "test-beta-2025"

# The SDK warns that claude-sonnet-4-5 is deprecated; that is not what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
WEATHER_TOOL = {"name": TOOL_NAME, "description": "Current weather in a city", "input_schema": WEATHER_SCHEMA}


def asking(name, text="What is the weather in Paris?"):
    """A prompt whose user message carries the mock's marker for scenario `name`."""
    return [{"role": "user", "content": f"{text} {scenario(name)}"}]


def _stream_data(events):
    return [d for d in map(sse_data, events) if d is not None]


# What the mock answers, so the assertions follow the recorded responses.
ANTHROPIC_MESSAGE = fixture_json("anthropic/messages.json")
ANTHROPIC_TEXT = ANTHROPIC_MESSAGE["content"][0]["text"]
ANTHROPIC_STREAM_DELTAS = [
    d["delta"]["text"]
    for d in _stream_data(anthropic_text_stream())
    if d["type"] == "content_block_delta" and d["delta"]["type"] == "text_delta"
]
TOOL_MESSAGE = anthropic_tool_message()
TOOL_PREAMBLE = "".join(b["text"] for b in TOOL_MESSAGE["content"] if b["type"] == "text")
ANTHROPIC_RATE_LIMIT_BODY, ANTHROPIC_RATE_LIMIT_HEADERS = RATE_LIMITS[MESSAGES_PATH]

OPENAI_COMPLETION = fixture_json("openai/chat_completion.json")
OPENAI_TEXT = OPENAI_COMPLETION["choices"][0]["message"]["content"]
OPENAI_USAGE = OPENAI_COMPLETION["usage"]
OPENAI_STREAM_DELTAS = [
    c["choices"][0]["delta"]["content"]
    for c in _stream_data(sse_events("openai/chat_completion_stream.txt"))
    if c["choices"] and c["choices"][0]["delta"].get("content")
]


# --- Clients and what reached the mock ------------------------------------------------


def messages_client(gateway, key=None, via="x-api-key"):
    """An Anthropic client for the gateway sending `key` (the gateway key by default)
    as `x-api-key` or, with via="bearer", as `Authorization: Bearer`. This SDK sends
    `api_key` as a bearer token too, so x-api-key is set as a header of its own.
    max_retries=0: a 429 must surface at once, not be retried by the SDK."""
    key = key or gateway.master_key
    common = {"base_url": gateway.base_url, "max_retries": 0, "timeout": 30}
    if via == "bearer":
        return anthropic.Anthropic(auth_token=key, **common)
    assert via == "x-api-key"
    return anthropic.Anthropic(api_key=None, default_headers={"x-api-key": key}, **common)


def without_model(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "model"}


def anthropic_error_body(error: anthropic.APIStatusError, error_type=None) -> dict:
    """The body of a failed call, checked for Anthropic's error shape."""
    body = error.response.json()
    assert body["type"] == "error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if error_type is not None:
        assert body["error"]["type"] == error_type
    return body


def max_tokens_sent(body: dict):
    return body.get("max_completion_tokens", body.get("max_tokens"))


def run_stream(stream):
    """Everything a `messages.stream` yields: text deltas, tool input fragments and the
    raw event types, in order."""
    text, partial_json, types = [], [], []
    for event in stream:
        types.append(event.type)
        if event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                text.append(event.delta.text)
            elif event.delta.type == "input_json_delta":
                partial_json.append(event.delta.partial_json)
    return text, partial_json, types


def raw_events(response: httpx.Response):
    """(event name, JSON data) of each event of an SSE response, as on the wire."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].strip())
        elif not line and (name or data):
            events.append((name, json.loads("\n".join(data)) if data else None))
            name, data = None, []
    if name or data:
        events.append((name, json.loads("\n".join(data)) if data else None))
    return events


def assert_anthropic_event_order(names):
    """message_start, then content blocks (start, deltas, stop), message_delta,
    message_stop; pings anywhere."""
    names = [n for n in names if n != "ping"]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    open_block = False
    for name in names[1:-2]:
        if name == "content_block_start":
            assert not open_block
            open_block = True
        elif name == "content_block_delta":
            assert open_block
        elif name == "content_block_stop":
            assert open_block
            open_block = False
        else:
            pytest.fail(f"unexpected {name} event among the content blocks: {names}")
    assert not open_block


# --- Anthropic models: the request as sent, the answer as received --------------------


def test_anthropic_create_forwards_body_and_beta_header_with_only_model_renamed(gateway):
    client = messages_client(gateway)
    raw = client.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=32,
        system="Answer briefly.",
        messages=PROMPT,
        stop_sequences=["###"],
        metadata={"user_id": "e2e-user"},
        extra_body={"aurora_future_field": {"a": 1}},
        extra_headers={"anthropic-beta": BETA},
    )
    message = raw.parse()

    assert isinstance(message, Message)
    assert message.content[0].type == "text"
    assert message.content[0].text == ANTHROPIC_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == ANTHROPIC_MESSAGE["usage"]["input_tokens"]
    assert message.usage.output_tokens == ANTHROPIC_MESSAGE["usage"]["output_tokens"]

    upstream = anthropic_upstream_request(gateway)
    assert upstream.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert upstream.headers["anthropic-beta"] == BETA
    body = upstream.json()
    assert body["model"] == CLAUDE_UPSTREAM
    assert without_model(body) == without_model(json.loads(raw.http_request.content))
    assert body["aurora_future_field"] == {"a": 1}


def test_anthropic_request_bytes_unchanged_except_model(gateway):
    # Not an SDK call: the SDK writes compact JSON; this body has odd spacing, key order,
    # escapes and an unknown field, all of which must reach the provider byte for byte.
    template = (
        '{ "messages" : [ {"content": "Say \\u0068ello \\ud83d\\ude00", "role":"user"} ],\n'
        '  "aurora_future_field": {"b": [1, 2.50, null], "a": "x"},\n'
        '  "model": "%s",   "max_tokens":32 }'
    )
    response = httpx.post(
        f"{gateway.base_url}/v1/messages",
        headers={"x-api-key": gateway.master_key, "anthropic-version": "2023-06-01"},
        content=(template % CLAUDE).encode(),
    )

    assert response.status_code == 200
    assert anthropic_upstream_request(gateway).body == (template % CLAUDE_UPSTREAM).encode()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_response_bytes_passed_back_unchanged(gateway, stream):
    # Not an SDK call: the SDK parses what it gets; this compares the bytes.
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/messages",
        headers={"authorization": f"Bearer {gateway.master_key}", "anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "max_tokens": 32, "messages": PROMPT, "stream": stream},
    ) as response:
        assert response.status_code == 200
        body = response.read()

    if stream:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert body == b"".join(anthropic_text_stream())
    else:
        assert response.headers["content-type"].startswith("application/json")
        assert body == fixture_bytes("anthropic/messages.json")
    anthropic_upstream_request(gateway)


SPELLINGS = {
    CLAUDE: (MESSAGES_PATH, CLAUDE_UPSTREAM),
    "anthropic/claude-sonnet-4-5": (MESSAGES_PATH, CLAUDE_UPSTREAM),
    "claude-sonnet-4-5": (MESSAGES_PATH, CLAUDE_UPSTREAM),
    GPT: (CHAT_COMPLETIONS_PATH, GPT_UPSTREAM),
    "openai/gpt-4o-mini": (CHAT_COMPLETIONS_PATH, GPT_UPSTREAM),
    "gpt-4o-mini": (CHAT_COMPLETIONS_PATH, GPT_UPSTREAM),
}


@pytest.mark.parametrize(
    "model, path, upstream_model", [(m, *where) for m, where in SPELLINGS.items()], ids=list(SPELLINGS)
)
def test_model_spellings_reach_their_provider_without_prefix(gateway, model, path, upstream_model):
    message = messages_client(gateway).messages.create(model=model, max_tokens=32, messages=PROMPT)

    assert message.content[0].text == (ANTHROPIC_TEXT if path == MESSAGES_PATH else OPENAI_TEXT)
    assert single_upstream_request(gateway, path).json()["model"] == upstream_model


def test_anthropic_create_with_bearer_gateway_key_sends_provider_x_api_key(gateway):
    message = messages_client(gateway, via="bearer").messages.create(
        model=CLAUDE, max_tokens=32, messages=PROMPT
    )

    assert message.content[0].text == ANTHROPIC_TEXT
    anthropic_upstream_request(gateway)


def test_anthropic_tool_use_parses(gateway):
    message = messages_client(gateway).messages.create(
        model=CLAUDE, max_tokens=64, messages=asking(TOOL), tools=[WEATHER_TOOL]
    )

    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == TOOL_PREAMBLE
    tool_use = message.content[1]
    assert tool_use.id == TOOL_USE_ID
    assert tool_use.name == TOOL_NAME
    assert tool_use.input == TOOL_INPUT

    body = anthropic_upstream_request(gateway).json()
    assert body["tools"] == [WEATHER_TOOL]
    assert body["model"] == CLAUDE_UPSTREAM


def test_anthropic_stream_text_and_final_message(gateway):
    with messages_client(gateway).messages.stream(model=CLAUDE, max_tokens=32, messages=PROMPT) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()

    assert deltas == ANTHROPIC_STREAM_DELTAS  # one per upstream delta, in order
    assert "".join(deltas) == ANTHROPIC_TEXT
    assert isinstance(final, Message)
    assert final.content[0].text == ANTHROPIC_TEXT
    assert final.stop_reason == "end_turn"
    body = anthropic_upstream_request(gateway).json()
    assert body["stream"] is True
    assert body["model"] == CLAUDE_UPSTREAM


def test_anthropic_stream_tool_use_and_final_message(gateway):
    with messages_client(gateway).messages.stream(
        model=CLAUDE, max_tokens=64, messages=asking(TOOL), tools=[WEATHER_TOOL]
    ) as stream:
        text, partial_json, _ = run_stream(stream)
        final = stream.get_final_message()

    assert "".join(text) == TOOL_PREAMBLE
    assert json.loads("".join(partial_json)) == TOOL_INPUT
    assert final.stop_reason == "tool_use"
    tool_use = final.content[-1]
    assert (tool_use.type, tool_use.id, tool_use.name, tool_use.input) == (
        "tool_use",
        TOOL_USE_ID,
        TOOL_NAME,
        TOOL_INPUT,
    )
    assert anthropic_upstream_request(gateway).json()["stream"] is True


def test_anthropic_count_tokens_forwarded_with_only_model_renamed(gateway):
    client = messages_client(gateway)
    raw = client.messages.with_raw_response.count_tokens(
        model=CLAUDE,
        system="Answer briefly.",
        messages=PROMPT,
        tools=[WEATHER_TOOL],
        extra_headers={"anthropic-beta": BETA},
    )
    count = raw.parse()

    sent = json.loads(raw.http_request.content)
    assert isinstance(count, MessageTokensCount)
    assert count.input_tokens == anthropic_input_tokens(sent)
    upstream = anthropic_upstream_request(gateway, COUNT_TOKENS_PATH)
    assert upstream.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert upstream.headers["anthropic-beta"] == BETA
    body = upstream.json()
    assert body["model"] == CLAUDE_UPSTREAM
    assert without_model(body) == without_model(sent)


def rate_limit_error(gateway, model, stream):
    """The error the SDK raises for a request the provider answers with 429."""
    with pytest.raises(anthropic.RateLimitError) as caught:
        messages_client(gateway).messages.create(
            model=model, max_tokens=32, messages=asking(RATE_LIMIT), stream=stream
        )
    return caught.value


def text_until_stream_error(gateway, model):
    """Streams a reply the provider breaks off with an error: the text received before
    it, and the error the SDK raised."""
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with messages_client(gateway).messages.stream(
            model=model, max_tokens=32, messages=asking(MIDSTREAM_ERROR)
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
    return "".join(received), caught.value


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_upstream_429_is_rate_limit_error_with_provider_body(gateway, stream):
    error = rate_limit_error(gateway, CLAUDE, stream)
    response = error.response
    assert response.status_code == 429
    assert response.json() == ANTHROPIC_RATE_LIMIT_BODY  # passed through as the provider sent it
    assert response.headers["retry-after"] == RETRY_AFTER
    for name, value in ANTHROPIC_RATE_LIMIT_HEADERS.items():
        assert response.headers[name] == value
    anthropic_upstream_request(gateway)


def test_anthropic_midstream_error_event_raises_after_partial_text(gateway):
    received, error = text_until_stream_error(gateway, CLAUDE)

    assert error.status_code == 200  # an error event inside the stream, not a failed request
    assert received == MIDSTREAM_TEXT
    assert error.type == MIDSTREAM_ERROR_EVENT["error"]["type"]
    assert error.api_message == MIDSTREAM_ERROR_EVENT["error"]["message"]
    assert anthropic_upstream_request(gateway).json()["stream"] is True


# --- OpenAI models, translated --------------------------------------------------------


def test_openai_model_text_translated_to_message(gateway):
    message = messages_client(gateway).messages.create(
        model=GPT, max_tokens=32, system="Answer briefly.", messages=PROMPT
    )

    assert isinstance(message, Message)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id
    assert message.model in (GPT, GPT_UPSTREAM)
    assert [(b.type, b.text) for b in message.content] == [("text", OPENAI_TEXT)]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == OPENAI_USAGE["prompt_tokens"]
    assert message.usage.output_tokens == OPENAI_USAGE["completion_tokens"]

    body = openai_upstream_request(gateway).json()
    assert body["model"] == GPT_UPSTREAM
    assert [m["role"] for m in body["messages"]] in (["system", "user"], ["developer", "user"])
    assert message_text(body["messages"][0]["content"]) == "Answer briefly."
    assert message_text(body["messages"][1]["content"]) == "Say hello"
    assert max_tokens_sent(body) == 32
    assert not body.get("stream")


def assert_weather_tool_use(message):
    """`message` is the provider's weather tool call, as Anthropic's tool_use block."""
    assert message.stop_reason == "tool_use"
    (tool_use,) = [b for b in message.content if b.type == "tool_use"]
    assert tool_use.id == TOOL_CALL_ID or tool_use.id.startswith("toolu_")
    assert tool_use.name == TOOL_NAME
    assert tool_use.input == TOOL_INPUT
    # The provider sent no text; Anthropic never answers with an empty text block.
    assert all(b.text for b in message.content if b.type == "text")


def test_openai_model_tool_call_translated_to_tool_use(gateway):
    message = messages_client(gateway).messages.create(
        model=GPT, max_tokens=64, messages=asking(TOOL), tools=[WEATHER_TOOL]
    )

    assert_weather_tool_use(message)

    body = openai_upstream_request(gateway).json()
    (tool,) = body["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == TOOL_NAME
    assert tool["function"]["description"] == WEATHER_TOOL["description"]
    assert tool["function"]["parameters"] == WEATHER_SCHEMA
    assert message_text(body["messages"][-1]["content"]) == asking(TOOL)[0]["content"]


def test_openai_model_stream_translated_to_text_events_and_final_message(gateway):
    with messages_client(gateway).messages.stream(model=GPT, max_tokens=32, messages=PROMPT) as stream:
        text, partial_json, types = run_stream(stream)
        final = stream.get_final_message()

    assert [t for t in text if t] == OPENAI_STREAM_DELTAS  # one per upstream delta, in order
    assert partial_json == []
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert isinstance(final, Message)
    assert [(b.type, b.text) for b in final.content] == [("text", OPENAI_TEXT)]
    assert final.stop_reason == "end_turn"

    body = openai_upstream_request(gateway).json()
    assert body["model"] == GPT_UPSTREAM
    assert body["stream"] is True
    if (body.get("stream_options") or {}).get("include_usage"):
        # The provider was asked for usage and sent it, so the client gets it.
        assert final.usage.output_tokens == OPENAI_USAGE["completion_tokens"]


def test_openai_model_stream_tool_call_translated_to_tool_use(gateway):
    with messages_client(gateway).messages.stream(
        model=GPT, max_tokens=64, messages=asking(TOOL), tools=[WEATHER_TOOL]
    ) as stream:
        _, partial_json, _ = run_stream(stream)
        final = stream.get_final_message()

    assert json.loads("".join(partial_json)) == TOOL_INPUT
    assert_weather_tool_use(final)

    body = openai_upstream_request(gateway).json()
    assert body["stream"] is True
    assert body["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA


@pytest.mark.parametrize("scenario_name", ["text", TOOL])
def test_openai_model_stream_on_the_wire_is_anthropic_sse(gateway, scenario_name):
    # Not an SDK call: the SDK skips events it does not know; this reads every one.
    messages = PROMPT if scenario_name == "text" else asking(TOOL)
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/messages",
        headers={"x-api-key": gateway.master_key, "anthropic-version": "2023-06-01"},
        json={"model": GPT, "max_tokens": 32, "messages": messages, "tools": [WEATHER_TOOL], "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = raw_events(response)

    for name, data in events:
        assert data is not None and data["type"] == name, (name, data)
    assert_anthropic_event_order([name for name, _ in events])
    stop = next(data for name, data in events if name == "message_delta")
    assert stop["delta"]["stop_reason"] == ("end_turn" if scenario_name == "text" else "tool_use")
    assert "[DONE]" not in json.dumps([data for _, data in events])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_openai_upstream_429_is_anthropic_rate_limit_error(gateway, stream):
    error = rate_limit_error(gateway, GPT, stream)
    response = error.response
    assert response.status_code == 429
    body = anthropic_error_body(error, "rate_limit_error")  # Anthropic's shape, not OpenAI's
    assert RATE_LIMIT_MESSAGE in body["error"]["message"]
    assert response.headers["retry-after"] == RETRY_AFTER
    openai_upstream_request(gateway)


def test_openai_midstream_error_chunk_raises_after_partial_text(gateway):
    received, error = text_until_stream_error(gateway, GPT)

    # Raised from an `event: error` in the stream, which the status (200) cannot carry.
    assert error.status_code == 200
    assert received == MIDSTREAM_TEXT
    assert error.type in ("overloaded_error", "api_error")
    assert OPENAI_MIDSTREAM_ERROR["error"]["message"] in (error.api_message or "")
    assert openai_upstream_request(gateway).json()["stream"] is True


# --- Gateway errors, in Anthropic's shape ---------------------------------------------


@pytest.mark.parametrize("via", ["x-api-key", "bearer"])
def test_wrong_gateway_key_is_authentication_error_and_never_forwarded(gateway, via):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        messages_client(gateway, "not-the-gateway-key", via=via).messages.create(
            model=CLAUDE, max_tokens=32, messages=PROMPT
        )

    assert caught.value.status_code == 401
    anthropic_error_body(caught.value, "authentication_error")
    # The SDK names the failed call by the id the gateway's access log has.
    gateway_id = caught.value.response.headers["x-aurora-request-id"]
    assert caught.value.request_id == gateway_id
    assert caught.value.response.json()["request_id"] == gateway_id
    assert gateway.mock.requests == []


@pytest.mark.parametrize("model", ["::x", ":x", "x:"])
def test_malformed_model_is_bad_request_and_never_forwarded(gateway, model):
    with pytest.raises(anthropic.BadRequestError) as caught:
        messages_client(gateway).messages.create(model=model, max_tokens=32, messages=PROMPT)

    anthropic_error_body(caught.value, "invalid_request_error")
    assert gateway.mock.requests == []


def test_unknown_model_is_client_error_and_never_forwarded(gateway):
    with pytest.raises((anthropic.BadRequestError, anthropic.NotFoundError)) as caught:
        messages_client(gateway).messages.create(model="no-such-model", max_tokens=32, messages=PROMPT)

    expected = "invalid_request_error" if caught.value.status_code == 400 else "not_found_error"
    anthropic_error_body(caught.value, expected)
    assert gateway.mock.requests == []
