"""The official OpenAI SDK, pointed at the gateway's OpenAI-compatible /v1 API: Anthropic
models answer through translation (OpenAI request -> Anthropic Messages -> OpenAI
response), OpenAI models are forwarded with only the routing prefix taken off the model."""

import json
from collections import defaultdict

import httpx
import openai
import pydantic
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mock_provider import (
    CHAT_COMPLETIONS_PATH,
    MESSAGES_PATH,
    MIDSTREAM_ERROR,
    MIDSTREAM_ERROR_EVENT,
    MIDSTREAM_TEXT,
    RATE_LIMIT,
    RATE_LIMIT_MESSAGE,
    RETRY_AFTER,
    SLOW_ANSWER,
    SLOW_USAGE,
    STRUCTURED_ANSWER,
    TOOL,
    TOOL_INPUT,
    TOOL_NAME,
    TOOL_USE_ID,
    anthropic_text_stream,
    anthropic_tool_message,
    fixture_json,
    message_text,
    scenario,
    sse_data,
    sse_events,
)
import upstream_requests
from upstream_requests import openai_upstream_request

CLAUDE = "anthropic/claude-sonnet-4-5"
CLAUDE_UPSTREAM = "claude-sonnet-4-5"
GPT = "openai/gpt-4o-mini"
GPT_UPSTREAM = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hello"}]
ANTHROPIC_VERSION = "2023-06-01"

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}


def asking(name, text="What is the weather in Paris?"):
    """A prompt whose user message carries the mock's marker for scenario `name`."""
    return [{"role": "user", "content": f"{text} {scenario(name)}"}]


# What the mock answers, so the assertions follow the recorded responses.
ANTHROPIC_MESSAGE = fixture_json("anthropic/messages.json")
ANTHROPIC_TEXT = ANTHROPIC_MESSAGE["content"][0]["text"]
TOOL_MESSAGE = anthropic_tool_message()
TOOL_PREAMBLE = "".join(b["text"] for b in TOOL_MESSAGE["content"] if b["type"] == "text")
OPENAI_COMPLETION = fixture_json("openai/chat_completion.json")
OPENAI_TEXT = OPENAI_COMPLETION["choices"][0]["message"]["content"]


def _stream_data(events):
    return [d for d in map(sse_data, events) if d is not None]


# The text deltas of the default Anthropic stream, in order (the mock splits the
# recorded text into several), and the usage it reports.
ANTHROPIC_STREAM_DATA = _stream_data(anthropic_text_stream())
ANTHROPIC_STREAM_DELTAS = [
    d["delta"]["text"] for d in ANTHROPIC_STREAM_DATA if d["type"] == "content_block_delta"
]
ANTHROPIC_STREAM_INPUT_TOKENS = next(
    d["message"]["usage"]["input_tokens"] for d in ANTHROPIC_STREAM_DATA if d["type"] == "message_start"
)
ANTHROPIC_STREAM_OUTPUT_TOKENS = next(
    d["usage"]["output_tokens"] for d in ANTHROPIC_STREAM_DATA if d["type"] == "message_delta"
)
OPENAI_STREAM_TEXT = "".join(
    c["choices"][0]["delta"].get("content") or ""
    for c in _stream_data(sse_events("openai/chat_completion_stream.txt"))
    if c["choices"]
)


# max_retries=0: a 429 must surface at once, not be retried by the SDK.
def v1_client(gateway, api_key=None):
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=api_key or gateway.master_key, max_retries=0
    )


def anthropic_upstream_request(gateway):
    """The one request the gateway sent to Anthropic, with the `anthropic-version` a
    translated request carries."""
    upstream = upstream_requests.anthropic_upstream_request(gateway)
    assert upstream.headers["anthropic-version"] == ANTHROPIC_VERSION
    return upstream


def content_deltas(chunks):
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def finish_reasons(chunks):
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# --- Anthropic models, translated -------------------------------------------------------


def test_anthropic_model_completion_parses_into_sdk_types(gateway):
    completion = v1_client(gateway).chat.completions.create(
        model=CLAUDE, messages=[{"role": "system", "content": "Answer briefly."}, *PROMPT]
    )

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.model == CLAUDE  # the model as the client named it
    (choice,) = completion.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == ANTHROPIC_TEXT
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    usage = ANTHROPIC_MESSAGE["usage"]
    assert completion.usage.prompt_tokens == usage["input_tokens"]
    assert completion.usage.completion_tokens == usage["output_tokens"]
    assert completion.usage.total_tokens == usage["input_tokens"] + usage["output_tokens"]

    body = anthropic_upstream_request(gateway).json()
    assert body["model"] == CLAUDE_UPSTREAM
    assert body["system"] == "Answer briefly."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert message_text(body["messages"][0]["content"]) == "Say hello"
    # Anthropic requires max_tokens; the client gave none, so the gateway chose one.
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
    assert not body.get("stream")


class Weather(pydantic.BaseModel):
    city: str
    temperature_c: int


def test_anthropic_model_answers_the_sdks_parse_in_the_schema_it_asked(gateway):
    completion = v1_client(gateway).chat.completions.parse(
        model=CLAUDE, messages=PROMPT, response_format=Weather
    )

    assert completion.choices[0].message.parsed == Weather(**STRUCTURED_ANSWER)
    body = anthropic_upstream_request(gateway).json()
    assert "response_format" not in body
    schema_format = body["output_config"]["format"]
    assert schema_format["type"] == "json_schema"
    assert set(schema_format["schema"]["properties"]) == {"city", "temperature_c"}


@pytest.mark.parametrize("model", [CLAUDE, "anthropic:claude-sonnet-4-5", "claude-sonnet-4-5"])
def test_anthropic_model_spellings_reach_anthropic_without_prefix(gateway, model):
    completion = v1_client(gateway).chat.completions.create(model=model, messages=PROMPT)

    assert completion.choices[0].message.content == ANTHROPIC_TEXT
    assert anthropic_upstream_request(gateway).json()["model"] == CLAUDE_UPSTREAM


def test_anthropic_tool_use_becomes_tool_calls(gateway):
    completion = v1_client(gateway).chat.completions.create(
        model=CLAUDE, messages=asking(TOOL), tools=[WEATHER_TOOL], max_completion_tokens=64
    )

    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id == TOOL_USE_ID  # so the client can send the tool result back under it
    assert call.function.name == TOOL_NAME
    assert json.loads(call.function.arguments) == TOOL_INPUT

    body = anthropic_upstream_request(gateway).json()
    assert body["model"] == CLAUDE_UPSTREAM
    assert body["max_tokens"] == 64
    (tool,) = body["tools"]
    assert tool["name"] == TOOL_NAME
    assert tool["description"] == WEATHER_TOOL["function"]["description"]
    assert tool["input_schema"] == WEATHER_PARAMETERS
    assert "function" not in tool and "parameters" not in tool


def test_anthropic_stream_yields_text_deltas_in_order(gateway):
    stream = v1_client(gateway).chat.completions.create(model=CLAUDE, messages=PROMPT, stream=True)
    chunks = list(stream)

    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {CLAUDE}
    assert chunks[0].choices[0].delta.role == "assistant"
    # One chunk per upstream delta, as it arrives, not one chunk at the end.
    assert content_deltas(chunks) == ANTHROPIC_STREAM_DELTAS
    assert "".join(content_deltas(chunks)) == ANTHROPIC_TEXT
    assert finish_reasons(chunks) == ["stop"]
    assert all(c.usage is None for c in chunks)  # not asked for

    body = anthropic_upstream_request(gateway).json()
    assert body["stream"] is True
    assert body["model"] == CLAUDE_UPSTREAM


def test_anthropic_tool_use_stream_accumulates_tool_call_arguments(gateway):
    stream = v1_client(gateway).chat.completions.create(
        model=CLAUDE, messages=asking(TOOL), tools=[WEATHER_TOOL], stream=True
    )
    ids, names, arguments, text, finishes = {}, {}, defaultdict(str), [], []
    for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for call in choice.delta.tool_calls or []:
                if call.id:
                    ids[call.index] = call.id
                if call.function and call.function.name:
                    names[call.index] = call.function.name
                if call.function and call.function.arguments:
                    arguments[call.index] += call.function.arguments
            if choice.finish_reason:
                finishes.append(choice.finish_reason)

    assert ids == {0: TOOL_USE_ID}
    assert names == {0: TOOL_NAME}
    assert json.loads(arguments[0]) == TOOL_INPUT
    assert "".join(text) == TOOL_PREAMBLE
    assert finishes == ["tool_calls"]
    body = anthropic_upstream_request(gateway).json()
    assert body["stream"] is True
    assert body["tools"][0]["input_schema"] == WEATHER_PARAMETERS


def test_anthropic_stream_with_include_usage_ends_with_usage_chunk(gateway):
    chunks = list(
        v1_client(gateway).chat.completions.create(
            model=CLAUDE, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )

    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == ANTHROPIC_STREAM_INPUT_TOKENS
    assert last.usage.completion_tokens == ANTHROPIC_STREAM_OUTPUT_TOKENS
    assert last.usage.total_tokens == ANTHROPIC_STREAM_INPUT_TOKENS + ANTHROPIC_STREAM_OUTPUT_TOKENS
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(content_deltas(chunks)) == ANTHROPIC_TEXT
    # stream_options is OpenAI's; Anthropic would refuse it (the mock does too).
    assert "stream_options" not in anthropic_upstream_request(gateway).json()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_upstream_429_is_rate_limit_error_with_retry_after(gateway, stream):
    with pytest.raises(openai.RateLimitError) as caught:
        v1_client(gateway).chat.completions.create(model=CLAUDE, messages=asking(RATE_LIMIT), stream=stream)

    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == RETRY_AFTER
    error = response.json()["error"]  # OpenAI's envelope, not Anthropic's
    assert error["message"] == RATE_LIMIT_MESSAGE
    assert error["type"] == "rate_limit_error"
    anthropic_upstream_request(gateway)


def test_anthropic_midstream_error_raises_api_error_after_partial_text(gateway):
    stream = v1_client(gateway).chat.completions.create(
        model=CLAUDE, messages=asking(MIDSTREAM_ERROR), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received += content_deltas([chunk])

    assert "".join(received) == MIDSTREAM_TEXT
    assert caught.value.message == MIDSTREAM_ERROR_EVENT["error"]["message"]
    anthropic_upstream_request(gateway)


def raw_stream_data(gateway, body):
    """The `data:` payloads of a streamed /v1/chat/completions answer, read off the wire.
    Not an SDK call: the SDK hides how a stream ended."""
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {gateway.master_key}"},
        json={**body, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data:"):].strip() for line in response.iter_lines() if line.startswith("data:")]


def test_anthropic_stream_ends_with_usage_chunk_then_done_on_the_wire(gateway):
    data = raw_stream_data(
        gateway, {"model": CLAUDE, "messages": PROMPT, "stream_options": {"include_usage": True}}
    )

    assert data[-1] == "[DONE]"
    assert data.count("[DONE]") == 1
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("error" not in c for c in chunks)


def test_anthropic_midstream_error_ends_stream_with_error_chunk_and_no_done(gateway):
    # The status is 200: the error came after the stream had started.
    data = raw_stream_data(gateway, {"model": CLAUDE, "messages": asking(MIDSTREAM_ERROR)})

    assert "[DONE]" not in data
    chunks = [json.loads(d) for d in data]
    assert chunks[-1]["error"]["message"] == MIDSTREAM_ERROR_EVENT["error"]["message"]
    assert all("error" not in c for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text == MIDSTREAM_TEXT


# --- OpenAI models, forwarded ------------------------------------------------------------


def test_openai_model_forwarded_with_prefix_stripped_and_extra_fields_kept(gateway):
    completion = v1_client(gateway).chat.completions.create(
        model=GPT, messages=PROMPT, extra_body={"aurora_test_field": 1}
    )

    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == OPENAI_TEXT
    # The mock echoes the model it received; the response comes back as the provider sent it.
    assert completion.model == GPT_UPSTREAM
    assert completion.system_fingerprint == OPENAI_COMPLETION["system_fingerprint"]
    assert completion.usage.total_tokens == OPENAI_COMPLETION["usage"]["total_tokens"]
    # Only the model changes on the way up.
    assert openai_upstream_request(gateway).json() == {
        "model": GPT_UPSTREAM,
        "messages": PROMPT,
        "aurora_test_field": 1,
    }


def test_openai_model_stream_passes_through(gateway):
    chunks = list(v1_client(gateway).chat.completions.create(model=GPT, messages=PROMPT, stream=True))

    assert "".join(content_deltas(chunks)) == OPENAI_STREAM_TEXT
    assert finish_reasons(chunks) == ["stop"]
    # The gateway asked for the usage it counts; the usage-only chunk that ends the
    # provider's stream is not the client's: every chunk it gets has a choice.
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    body = openai_upstream_request(gateway).json()
    assert body["model"] == GPT_UPSTREAM
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_openai_model_stream_with_include_usage_ends_with_usage_chunk(gateway):
    chunks = list(
        v1_client(gateway).chat.completions.create(
            model=GPT, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )

    assert "".join(content_deltas(chunks)) == OPENAI_STREAM_TEXT
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == OPENAI_COMPLETION["usage"]["total_tokens"]
    assert openai_upstream_request(gateway).json()["stream_options"] == {"include_usage": True}


def test_openai_stream_left_before_its_usage_is_charged_an_estimate(gateway):
    # The user stops on the chunk that finishes and the SDK closes the stream: the
    # usage chunk the gateway asked for never comes, and the call is charged an
    # estimate ("Hello", ",", " World", "!": 4 tokens) rather than nothing.
    marker = "e2e-left-before-usage"
    stream = v1_client(gateway).chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": f"Say hello {scenario(SLOW_USAGE)}"}],
        stream=True,
        extra_headers={"x-request-id": marker},
    )
    text = ""
    for chunk in stream:
        text += "".join(content_deltas([chunk]))
        if finish_reasons([chunk]):
            break
    stream.close()

    assert text == OPENAI_STREAM_TEXT
    line = gateway.access_line(marker)
    assert "tokens_output=4 " in line, line
    assert "tokens_estimated=true" in line, line


def test_openai_call_left_before_its_answer_is_charged_its_input(gateway):
    # The SDK gives up (its timeout) while the model works: the provider bills the
    # input all the same, so the call is charged an estimate of it, not nothing.
    marker = "e2e-left-before-answer"
    client = v1_client(gateway).with_options(timeout=0.5, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model=GPT,
            messages=[{"role": "user", "content": f"Say hello {scenario(SLOW_ANSWER)}"}],
            extra_headers={"x-request-id": marker},
        )

    line = gateway.access_line(marker)
    assert " status=0 " in line, line
    assert "tokens_output=0 " in line, line
    assert "tokens_input=0 " not in line and "tokens_input=" in line, line
    assert "tokens_estimated=true" in line, line


@pytest.mark.parametrize("model", [GPT, GPT_UPSTREAM])
def test_openai_model_spellings_reach_openai_without_prefix(gateway, model):
    completion = v1_client(gateway).chat.completions.create(model=model, messages=PROMPT)

    assert completion.choices[0].message.content == OPENAI_TEXT
    assert openai_upstream_request(gateway).json()["model"] == GPT_UPSTREAM


# --- Gateway ------------------------------------------------------------------------------


def test_v1_wrong_gateway_key_is_authentication_error_and_never_forwarded(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        v1_client(gateway, "not-the-gateway-key").chat.completions.create(model=CLAUDE, messages=PROMPT)

    assert caught.value.status_code == 401
    assert caught.value.response.json()["error"]["type"] == "authentication_error"
    # The SDK names the failed call by the id the gateway's access log has.
    assert caught.value.request_id == caught.value.response.headers["x-aurora-request-id"]
    assert gateway.mock.requests == []


def test_unroutable_model_is_client_error_and_never_forwarded(gateway):
    with pytest.raises(openai.APIStatusError) as caught:
        v1_client(gateway).chat.completions.create(model="no-such-model", messages=PROMPT)

    assert 400 <= caught.value.status_code < 500
    assert caught.value.response.json()["error"]["message"]
    assert gateway.mock.requests == []


def test_models_list_names_models_by_provider(gateway):
    models = list(v1_client(gateway).models.list())

    assert models and all(isinstance(m, Model) for m in models)
    providers = set()
    for model in models:
        provider, _, name = model.id.partition("/")
        assert name, f"{model.id} is not provider/model"
        providers.add(provider)
    # The four providers configured; Gemini's, at the mock's root, is asked its
    # OpenAI-compatible list where Google serves it.
    assert providers == {"anthropic", "openai", "vllm", "gemini-native"}
    assert "gemini-native/models/gemini-2.5-flash" in {m.id for m in models}
    listed = [r for r in gateway.mock.requests if r.path == "/v1beta/openai/models"]
    assert listed and listed[0].headers["x-goog-api-key"] == gateway.provider_keys["gemini"]
    for request in gateway.mock.requests:
        assert not [k for k, v in request.headers.items() if gateway.master_key in v]
