"""The official Anthropic and OpenAI SDKs, pointed at /p/{provider}, work unchanged
through the gateway, and the gateway swaps the gateway key for the provider key."""

import json

import anthropic
import httpx
import openai
import pytest

from mock_provider import RATE_LIMIT_MESSAGE, RATE_LIMITED_MODEL, fixture_bytes, sse_events
from upstream_requests import single_upstream_request

CLAUDE = "claude-sonnet-4-20250514"  # the model the fixtures were recorded with
GPT = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hello"}]

# Newer SDKs warn that the recorded model is deprecated; that is not what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

# What the fixtures say, so the assertions follow the recorded responses.
ANTHROPIC_TEXT = json.loads(fixture_bytes("anthropic/messages.json"))["content"][0]["text"]
OPENAI_TEXT = json.loads(fixture_bytes("openai/chat_completion.json"))["choices"][0]["message"]["content"]


def _sse_data(name):
    for event in sse_events(name):
        for line in event.decode().splitlines():
            if line.startswith("data:") and line != "data: [DONE]":
                yield json.loads(line[len("data:"):])


ANTHROPIC_STREAM_TEXT = "".join(
    d["delta"]["text"] for d in _sse_data("anthropic/messages_stream.txt") if d["type"] == "content_block_delta"
)
OPENAI_STREAM_TEXT = "".join(
    c["choices"][0]["delta"].get("content") or ""
    for c in _sse_data("openai/chat_completion_stream.txt")
    if c["choices"]
)


# max_retries=0: a 429 must surface at once, not be retried by the SDK.
def claude_client(gateway, **credential):
    return anthropic.Anthropic(base_url=f"{gateway.base_url}/p/anthropic", max_retries=0, **credential)


def openai_client(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway.base_url}/p/openai", api_key=api_key, max_retries=0)


# --- Anthropic ---------------------------------------------------------------------


def test_anthropic_create_with_bearer_gateway_key_sends_provider_x_api_key(gateway):
    client = claude_client(gateway, auth_token=gateway.master_key)
    message = client.messages.create(model=CLAUDE, max_tokens=32, messages=PROMPT)

    assert message.content[0].text == ANTHROPIC_TEXT
    assert message.stop_reason == "end_turn"
    upstream = single_upstream_request(gateway, "/v1/messages")
    assert upstream.headers["x-api-key"] == gateway.provider_keys["anthropic"]
    # The SDK names its own API version; the gateway keeps it.
    assert upstream.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert "authorization" not in upstream.headers
    assert upstream.json()["model"] == CLAUDE


def test_anthropic_version_defaults_when_client_sends_none(gateway):
    # Not an SDK call: the official SDKs always send a version, plain HTTP clients may not.
    response = httpx.post(
        f"{gateway.base_url}/p/anthropic/v1/messages",
        headers={"x-api-key": gateway.master_key},
        json={"model": CLAUDE, "max_tokens": 32, "messages": PROMPT},
    )

    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == ANTHROPIC_TEXT
    upstream = single_upstream_request(gateway, "/v1/messages")
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["x-api-key"] == gateway.provider_keys["anthropic"]


def test_anthropic_create_with_x_api_key_gateway_key(gateway):
    message = claude_client(gateway, api_key=gateway.master_key).messages.create(
        model=CLAUDE, max_tokens=32, messages=PROMPT
    )

    assert message.content[0].text == ANTHROPIC_TEXT
    upstream = single_upstream_request(gateway, "/v1/messages")
    assert upstream.headers["x-api-key"] == gateway.provider_keys["anthropic"]
    assert "authorization" not in upstream.headers


def test_anthropic_stream_yields_fixture_text_and_final_message(gateway):
    client = claude_client(gateway, auth_token=gateway.master_key)
    with client.messages.stream(model=CLAUDE, max_tokens=32, messages=PROMPT) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == ANTHROPIC_STREAM_TEXT
    assert final.content[0].text == ANTHROPIC_STREAM_TEXT
    assert final.stop_reason == "end_turn"
    upstream = single_upstream_request(gateway, "/v1/messages")
    assert upstream.json()["stream"] is True
    assert upstream.headers["x-api-key"] == gateway.provider_keys["anthropic"]


def test_anthropic_wrong_gateway_key_is_authentication_error_and_never_forwarded(gateway):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude_client(gateway, auth_token="not-the-gateway-key").messages.create(
            model=CLAUDE, max_tokens=32, messages=PROMPT
        )

    assert caught.value.status_code == 401
    # Anthropic's own envelope: the SDK sends `anthropic-version`, so the gateway answers
    # as Anthropic would.
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert gateway.mock.requests == []


def test_anthropic_upstream_429_is_rate_limit_error_with_provider_message_and_headers(gateway):
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude_client(gateway, auth_token=gateway.master_key).messages.create(
            model=RATE_LIMITED_MODEL, max_tokens=32, messages=PROMPT
        )

    response = caught.value.response
    assert response.status_code == 429
    assert response.json()["error"] == {"type": "rate_limit_error", "message": RATE_LIMIT_MESSAGE}
    assert response.headers["retry-after"] == "7"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    single_upstream_request(gateway, "/v1/messages")


# --- OpenAI ------------------------------------------------------------------------


def test_openai_create_sends_provider_bearer_key(gateway):
    completion = openai_client(gateway, gateway.master_key).chat.completions.create(
        model=GPT, messages=PROMPT
    )

    assert completion.choices[0].message.content == OPENAI_TEXT
    upstream = single_upstream_request(gateway, "/v1/chat/completions")
    assert upstream.headers["authorization"] == f"Bearer {gateway.provider_keys['openai']}"
    assert "x-api-key" not in upstream.headers
    assert upstream.json()["model"] == GPT


def _stream_not_asking_for_usage(gateway, messages):
    """Streams `messages` without asking for the usage and checks what the client got:
    the fixture's text, and never the usage-only chunk of the usage the gateway asked
    for (every chunk has a choice). Returns the provider's request."""
    chunks = list(
        openai_client(gateway, gateway.master_key).chat.completions.create(
            model=GPT, messages=messages, stream=True
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    assert text == OPENAI_STREAM_TEXT
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    upstream = single_upstream_request(gateway, "/v1/chat/completions")
    assert upstream.json()["stream"] is True
    assert upstream.json()["stream_options"] == {"include_usage": True}
    return upstream


def test_openai_stream_yields_fixture_content(gateway):
    _stream_not_asking_for_usage(gateway, PROMPT)


def test_openai_stream_of_a_long_conversation_is_asked_for_its_usage_with_an_exact_length(gateway):
    # Past the 64 KiB the gateway replays itself, the body goes through a subrequest.
    long_prompt = [{"role": "user", "content": "Say hello. " + "x" * (100 * 1024)}]
    upstream = _stream_not_asking_for_usage(gateway, long_prompt)

    assert upstream.headers["content-length"] == str(len(upstream.body))
    assert "transfer-encoding" not in upstream.headers


def test_openai_stream_that_asks_for_its_usage_ends_with_the_usage_chunk(gateway):
    chunks = list(
        openai_client(gateway, gateway.master_key).chat.completions.create(
            model=GPT, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens > 0
    upstream = single_upstream_request(gateway, "/v1/chat/completions").json()
    assert upstream["stream_options"] == {"include_usage": True}


def test_openai_wrong_gateway_key_is_authentication_error_and_never_forwarded(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(gateway, "not-the-gateway-key").chat.completions.create(model=GPT, messages=PROMPT)

    assert caught.value.status_code == 401
    assert caught.value.response.json()["error"]["type"] == "authentication_error"
    assert gateway.mock.requests == []


def test_openai_upstream_429_is_rate_limit_error_with_provider_message_and_headers(gateway):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(gateway, gateway.master_key).chat.completions.create(
            model=RATE_LIMITED_MODEL, messages=PROMPT
        )

    response = caught.value.response
    assert response.status_code == 429
    assert response.json()["error"]["message"] == RATE_LIMIT_MESSAGE
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    single_upstream_request(gateway, "/v1/chat/completions")


def test_anthropic_answer_is_metered_though_the_sdk_accepts_gzip(gateway):
    # The SDK accepts gzip, which the provider would use: the gateway asks for a plain
    # answer, whose usage it reads.
    marker = "e2e-metered-gzip"
    client = claude_client(gateway, api_key=gateway.master_key)
    message = client.messages.create(
        model=CLAUDE, max_tokens=32, messages=PROMPT, extra_headers={"x-request-id": marker}
    )

    assert message.content[0].text == ANTHROPIC_TEXT
    upstream = single_upstream_request(gateway, "/v1/messages")
    assert upstream.headers["accept-encoding"] == "identity"
    line = gateway.access_line(marker)
    usage = json.loads(fixture_bytes("anthropic/messages.json"))["usage"]
    assert f"tokens_output={usage['output_tokens']}" in line


def test_openai_background_response_is_charged_once_however_often_it_is_read(gateway):
    # The call is answered "queued", without usage; the first read that finds the
    # response complete is charged its usage, and reading it again is not.
    client = openai_client(gateway, gateway.master_key)
    queued = client.responses.create(
        model=GPT, input="Say hello", background=True, extra_headers={"x-request-id": "e2e-bg-call"}
    )
    assert queued.status == "queued" and queued.usage is None
    reads = []
    for n in range(3):
        reads.append(client.responses.retrieve(queued.id, extra_headers={"x-request-id": f"e2e-bg-read-{n}"}))

    assert [r.status for r in reads] == ["completed"] * 3
    assert reads[0].output_text == "Hello, World!"
    usage = reads[0].usage
    assert "tokens_input=" not in gateway.access_line("e2e-bg-call")
    first = gateway.access_line("e2e-bg-read-0")
    assert f"tokens_input={usage.input_tokens} tokens_output={usage.output_tokens}" in first, first
    for n in (1, 2):
        again = gateway.access_line(f"e2e-bg-read-{n}")
        assert "tokens_input=" not in again, again


def test_anthropic_batch_results_are_read_through_the_gateway(gateway):
    # The SDK reads a batch's results at its `results_url`: the gateway names itself
    # there, so the results come through it with the provider's key (at the
    # provider's address the SDK would send the gateway key, and be refused), and the
    # batch is charged the sum of their usage once, at half price.
    client = claude_client(gateway, api_key=gateway.master_key)
    params = {"model": CLAUDE, "max_tokens": 32, "messages": PROMPT}
    batch = client.messages.batches.create(
        requests=[{"custom_id": "first", "params": params}, {"custom_id": "second", "params": params}]
    )
    assert batch.results_url.startswith(f"{gateway.base_url}/p/anthropic/"), batch.results_url
    assert client.messages.batches.retrieve(batch.id).results_url == batch.results_url

    results = list(client.messages.batches.results(batch.id, extra_headers={"x-request-id": "e2e-batch-results"}))
    again = list(client.messages.batches.results(batch.id, extra_headers={"x-request-id": "e2e-batch-again"}))

    assert sorted(r.custom_id for r in results) == ["first", "second"]
    assert [r.result.message.content[0].text for r in results] == [ANTHROPIC_TEXT] * 2
    assert len(again) == 2
    usage = json.loads(fixture_bytes("anthropic/messages.json"))["usage"]
    first = gateway.access_line("e2e-batch-results")
    assert f"tokens_output={2 * usage['output_tokens']} " in first, first
    assert "tokens_output=" not in gateway.access_line("e2e-batch-again")


def test_openai_batch_is_charged_once_by_its_object_or_its_output_file(gateway):
    # An ended batch reports its usage in its object; its output file holds the same
    # answers. Whichever the SDK reads first is charged, at half price, and no read
    # after it.
    client = openai_client(gateway, gateway.master_key)
    batch = client.batches.retrieve("batch_e2e", extra_headers={"x-request-id": "e2e-batch-object"})
    assert batch.status == "completed" and batch.output_file_id
    output = client.files.content(batch.output_file_id, extra_headers={"x-request-id": "e2e-batch-output"})
    lines = [json.loads(line) for line in output.text.splitlines()]
    again = client.batches.retrieve("batch_e2e", extra_headers={"x-request-id": "e2e-batch-again"})

    assert [line["response"]["status_code"] for line in lines] == [200, 200]
    assert again.usage.total_tokens == batch.usage.total_tokens
    first = gateway.access_line("e2e-batch-object")
    assert f"tokens_output={batch.usage.output_tokens} " in first, first
    for later in ("e2e-batch-output", "e2e-batch-again"):
        line = gateway.access_line(later)
        assert "tokens_output=" not in line, line


# --- Logs --------------------------------------------------------------------------


def test_gateway_log_never_contains_provider_or_gateway_keys(gateway):
    # Make traffic of our own (success, stream, auth failure) so the test stands alone;
    # the log also holds every earlier test's requests.
    marker = "e2e-log-check"
    claude_client(gateway, api_key=gateway.master_key).messages.create(
        model=CLAUDE, max_tokens=32, messages=PROMPT
    )
    with pytest.raises(openai.AuthenticationError):
        openai_client(gateway, "not-the-gateway-key").chat.completions.create(model=GPT, messages=PROMPT)
    list(
        openai_client(gateway, gateway.master_key).chat.completions.create(
            model=GPT, messages=PROMPT, stream=True, extra_headers={"x-request-id": marker}
        )
    )
    # The access line is written after the response; wait for the last one.
    gateway.access_line(marker)
    log = gateway.log()
    for secret in (gateway.master_key, *gateway.provider_keys.values()):
        assert secret not in log
