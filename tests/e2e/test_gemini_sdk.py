"""Google's Gen AI SDK (`google-genai`) on `/p/`, unchanged but for its base URL: it
sends the key it is given as `x-goog-api-key`, which the gateway takes as its own key
and replaces with the provider's. The provider sits at Google's root, so the SDK's
`v1/` (its default) or `v1beta/` reaches Google as written."""

import pytest
from google import genai
from google.genai import errors, types

from gemini_mock import GEMINI_TEXT
from upstream_requests import single_upstream_request

MODEL = "gemini-2.5-flash"
GENERATE = f"/v1/models/{MODEL}:generateContent"
STREAM = f"/v1/models/{MODEL}:streamGenerateContent?alt=sse"


def gemini_client(gateway, key=None, request_id=None, api_version=None) -> genai.Client:
    headers = {"x-request-id": request_id} if request_id else None
    options = types.HttpOptions(
        base_url=f"{gateway.base_url}/p/gemini-native", headers=headers, api_version=api_version
    )
    return genai.Client(api_key=key or gateway.master_key, http_options=options)


def gemini_upstream_request(gateway, path):
    """The one request the gateway sent to Gemini, with Google's credential alone."""
    upstream = single_upstream_request(gateway, path)
    assert upstream.headers["x-goog-api-key"] == gateway.provider_keys["gemini"]
    assert "authorization" not in upstream.headers
    return upstream


def test_generate_content_through_the_gateway(gateway):
    # Held while in use: a client the SDK finds unreferenced is closed.
    client = gemini_client(gateway, request_id="e2e-gemini-generate")
    answer = client.models.generate_content(
        model=MODEL,
        contents="Say hello in five words",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=64),
    )
    assert answer.text == GEMINI_TEXT
    assert answer.usage_metadata.prompt_token_count == 5
    upstream = gemini_upstream_request(gateway, GENERATE)
    body = upstream.json()
    assert body["contents"][0]["parts"][0]["text"] == "Say hello in five words"
    assert body["generationConfig"]["maxOutputTokens"] == 64
    # Read for its usage as it passed.
    line = gateway.access_line("e2e-gemini-generate")
    output = len(GEMINI_TEXT.split(" "))
    assert f"tokens_input=5 tokens_output={output}" in line, line


def test_a_stream_through_the_gateway(gateway):
    client = gemini_client(gateway, request_id="e2e-gemini-stream")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert "".join(chunk.text for chunk in chunks) == GEMINI_TEXT
    assert len(chunks) > 1
    assert chunks[-1].usage_metadata.candidates_token_count == len(GEMINI_TEXT.split(" "))
    gemini_upstream_request(gateway, STREAM)
    line = gateway.access_line("e2e-gemini-stream")
    assert f"tokens_input=2 tokens_output={len(GEMINI_TEXT.split(' '))}" in line, line


def test_the_beta_api_through_the_gateway(gateway):
    client = gemini_client(gateway, api_version="v1beta")
    assert client.models.generate_content(model=MODEL, contents="Hi").text == GEMINI_TEXT
    gemini_upstream_request(gateway, f"/v1beta/models/{MODEL}:generateContent")


def test_a_multi_turn_chat_through_the_gateway(gateway):
    client = gemini_client(gateway)
    chat = client.chats.create(model=MODEL)
    assert chat.send_message("Hi").text == GEMINI_TEXT
    gateway.mock.clear()
    assert chat.send_message("And again").text == GEMINI_TEXT
    roles = [c["role"] for c in gemini_upstream_request(gateway, GENERATE).json()["contents"]]
    assert roles == ["user", "model", "user"]


def test_a_wrong_gateway_key_is_refused_before_anything_goes_upstream(gateway):
    client = gemini_client(gateway, key="AIza-not-the-gateway-key")
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=MODEL, contents="Hi")
    assert refused.value.code == 401
    assert gateway.mock.requests == []


def test_a_batch_made_through_the_gateway_is_charged_once_when_read_ended(gateway):
    # The batch's usage comes with its responses, inlined in it once it has ended:
    # charged by the read that finds it ended, and by no read after.
    client = gemini_client(gateway, request_id="e2e-gemini-batch-make")
    requests = [{"contents": [{"parts": [{"text": "Say hello"}], "role": "user"}]}] * 2
    job = client.batches.create(model=MODEL, src=requests, config={"display_name": "e2e"})
    assert job.state == types.JobState.JOB_STATE_PENDING
    gemini_upstream_request(gateway, f"/v1/models/{MODEL}:batchGenerateContent")
    readers = [gemini_client(gateway, request_id=f"e2e-gemini-batch-read-{n}") for n in range(3)]
    reads = [reader.batches.get(name=job.name) for reader in readers]
    assert [r.state for r in reads] == [
        types.JobState.JOB_STATE_RUNNING,
        types.JobState.JOB_STATE_SUCCEEDED,
        types.JobState.JOB_STATE_SUCCEEDED,
    ]
    answers = reads[1].dest.inlined_responses
    assert [a.response.text for a in answers] == [GEMINI_TEXT, GEMINI_TEXT]
    output = 2 * len(GEMINI_TEXT.split(" "))
    assert "tokens_input=" not in gateway.access_line("e2e-gemini-batch-make")
    assert "tokens_input=" not in gateway.access_line("e2e-gemini-batch-read-0")
    ended = gateway.access_line("e2e-gemini-batch-read-1")
    assert f"tokens_input=4 tokens_output={output}" in ended, ended
    assert "tokens_input=" not in gateway.access_line("e2e-gemini-batch-read-2")
