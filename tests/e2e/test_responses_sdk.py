"""The official OpenAI SDK's Responses API (`responses.create`, `responses.stream`,
`previous_response_id`, `responses.retrieve`) through the gateway: an OpenAI model
answers it natively, an Anthropic model through translation and the gateway's own
response store."""

import json

import openai
import pydantic
import pytest

from mock_provider import (
    MESSAGES_PATH,
    RESPONSES_PATH,
    STRUCTURED_ANSWER,
    THINKING,
    THINKING_SIGNATURE,
    THINKING_TEXT,
    TOOL,
    TOOL_INPUT,
    TOOL_NAME,
    scenario,
)

CLAUDE = "anthropic:claude-sonnet-4-5"
GPT = "openai:gpt-4o-mini"
MODELS = {CLAUDE: MESSAGES_PATH, GPT: RESPONSES_PATH}

WEATHER_TOOL = {
    "type": "function",
    "name": TOOL_NAME,
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.master_key, max_retries=0)


def upstream_posts(gateway, path):
    return [r for r in gateway.mock.requests if r.method == "POST" and r.path == path]


@pytest.mark.parametrize("model", MODELS)
def test_responses_create_answers_text(client, gateway, model):
    response = client.responses.create(model=model, input="Say hello", instructions="Be brief.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text
    assert response.usage.input_tokens > 0
    (upstream,) = upstream_posts(gateway, MODELS[model])
    body = upstream.json()
    if model == CLAUDE:
        assert body["model"] == "claude-sonnet-4-5"
        assert body["system"] == "Be brief."
        assert response.model == CLAUDE
    else:
        assert body["model"] == "gpt-4o-mini"
        assert body["instructions"] == "Be brief."


class Weather(pydantic.BaseModel):
    city: str
    temperature_c: int


def test_responses_parse_reads_claudes_answer_in_the_schema_it_asked(client, gateway):
    response = client.responses.parse(model=CLAUDE, input="Weather in Paris?", text_format=Weather)
    assert response.output_parsed == Weather(**STRUCTURED_ANSWER)
    (upstream,) = upstream_posts(gateway, MESSAGES_PATH)
    schema_format = upstream.json()["output_config"]["format"]
    assert schema_format["type"] == "json_schema"
    assert set(schema_format["schema"]["properties"]) == {"city", "temperature_c"}


@pytest.mark.parametrize("model", MODELS)
def test_responses_create_returns_a_function_call(client, model):
    response = client.responses.create(
        model=model, input=f"Weather in Paris? {scenario(TOOL)}", tools=[WEATHER_TOOL]
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == TOOL_NAME
    assert json.loads(calls[0].arguments) == TOOL_INPUT
    assert calls[0].call_id


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_text(client, model):
    deltas = []
    with client.responses.stream(model=model, input="Say hello") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert final.status == "completed"
    assert len(deltas) > 1
    assert "".join(deltas) == final.output_text


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_function_call(client, model):
    arguments = []
    with client.responses.stream(
        model=model, input=f"Weather? {scenario(TOOL)}", tools=[WEATHER_TOOL]
    ) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                arguments.append(event.delta)
        final = stream.get_final_response()
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads("".join(arguments)) == TOOL_INPUT
    assert json.loads(call.arguments) == TOOL_INPUT


def test_responses_stream_reasoning_from_anthropic_thinking(client, gateway):
    summary = []
    with client.responses.stream(
        model=CLAUDE,
        input=f"Hello {scenario(THINKING)}",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    ) as stream:
        for event in stream:
            if event.type == "response.reasoning_summary_text.delta":
                summary.append(event.delta)
        final = stream.get_final_response()
    (reasoning,) = [item for item in final.output if item.type == "reasoning"]
    assert "".join(summary) == THINKING_TEXT
    assert reasoning.encrypted_content
    assert final.output_text
    (upstream,) = upstream_posts(gateway, MESSAGES_PATH)
    assert upstream.json()["thinking"] == {"type": "enabled", "budget_tokens": 1024}

    # The reasoning item goes back as it came, and Anthropic gets its signed thinking.
    gateway.mock.clear()
    client.responses.create(
        model=CLAUDE,
        input=[
            {"role": "user", "content": f"Hello {scenario(THINKING)}"},
            reasoning.model_dump(exclude_none=True),
            {"role": "assistant", "content": final.output_text},
            {"role": "user", "content": "And again"},
        ],
        reasoning={"effort": "low"},
        store=False,
    )
    (upstream,) = upstream_posts(gateway, MESSAGES_PATH)
    thinking = upstream.json()["messages"][1]["content"][0]
    assert thinking == {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_and_retrieve(client, gateway, model):
    first = client.responses.create(model=model, input="My name is Ada.")
    second = client.responses.create(model=model, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    upstream = upstream_posts(gateway, MODELS[model])[-1].json()
    if model == CLAUDE:
        # The gateway rebuilt the conversation from its store.
        texts = [json.dumps(m["content"]) for m in upstream["messages"]]
        assert "My name is Ada." in texts[0]
        assert first.output_text in texts[1]
        assert "What is my name?" in texts[2]
    else:
        # OpenAI keeps its own state: the id goes as sent.
        assert upstream["previous_response_id"] == first.id
    again = client.responses.retrieve(first.id)
    assert again.id == first.id
    assert again.output_text == first.output_text


def test_unknown_previous_response_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=CLAUDE, input="x", previous_response_id="resp_never_stored")
