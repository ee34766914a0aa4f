"""Fallbacks through the official SDKs: an OpenAI-format model that is overloaded falls
back to an Anthropic model and still answers in OpenAI's shape (JSON and stream), and
`/v1/messages` for an overloaded Anthropic model falls back to an OpenAI model and
answers in Anthropic's shape. The mock records what each provider received."""

import anthropic
import openai

from mock_provider import CHAT_COMPLETIONS_PATH, MESSAGES_PATH, OVERLOADED_CLAUDE, OVERLOADED_GPT

PROMPT = [{"role": "user", "content": "Say hello"}]


def openai_client(gateway):
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.master_key, max_retries=0)


def anthropic_client(gateway):
    return anthropic.Anthropic(
        base_url=gateway.base_url,
        api_key=None,
        default_headers={"x-api-key": gateway.master_key},
        max_retries=0,
        timeout=30,
    )


def upstream(gateway):
    return [(r.path, r.json()["model"]) for r in gateway.mock.requests if r.method == "POST"]


def test_an_overloaded_openai_model_falls_back_to_anthropic_in_openai_shape(gateway):
    client = openai_client(gateway)
    raw = client.chat.completions.with_raw_response.create(model=OVERLOADED_GPT, messages=PROMPT)
    assert raw.headers["x-aurora-provider"] == "anthropic"
    assert raw.headers["x-aurora-attempts"] == "2"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert upstream(gateway) == [
        (CHAT_COMPLETIONS_PATH, OVERLOADED_GPT),
        (MESSAGES_PATH, "claude-sonnet-4-5"),
    ]

    gateway.mock.clear()
    stream = client.chat.completions.create(model=OVERLOADED_GPT, messages=PROMPT, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    assert upstream(gateway) == [
        (CHAT_COMPLETIONS_PATH, OVERLOADED_GPT),
        (MESSAGES_PATH, "claude-sonnet-4-5"),
    ]


def test_messages_for_an_overloaded_claude_fall_back_to_an_openai_model(gateway):
    client = anthropic_client(gateway)
    message = client.messages.create(model=OVERLOADED_CLAUDE, max_tokens=64, messages=PROMPT)
    assert message.type == "message"
    assert message.content[0].text
    assert upstream(gateway) == [
        (MESSAGES_PATH, OVERLOADED_CLAUDE),
        (CHAT_COMPLETIONS_PATH, "gpt-4o-mini"),
    ]

    gateway.mock.clear()
    with client.messages.stream(model=OVERLOADED_CLAUDE, max_tokens=64, messages=PROMPT) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.stop_reason
    assert upstream(gateway) == [
        (MESSAGES_PATH, OVERLOADED_CLAUDE),
        (CHAT_COMPLETIONS_PATH, "gpt-4o-mini"),
    ]


def test_without_fallbacks_the_overload_reaches_the_sdk(gateway):
    client = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1",
        api_key=gateway.master_key,
        max_retries=0,
        default_headers={"x-aurora-fallbacks": "none"},
    )
    try:
        client.chat.completions.create(model=OVERLOADED_GPT, messages=PROMPT)
    except openai.InternalServerError as e:
        assert e.status_code == 503
    else:
        raise AssertionError("the 503 must reach the SDK")
    assert upstream(gateway) == [(CHAT_COMPLETIONS_PATH, OVERLOADED_GPT)]
