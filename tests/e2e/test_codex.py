"""The real Codex CLI (`codex exec`, pinned in the Makefile) with a provider entry of
`wire_api = "responses"` whose base URL is the gateway's `/v1`, against an
Anthropic-format model, a chat-only OpenAI-compatible server (vLLM) and OpenAI itself.
Codex sends what it always sends (developer messages, its function and namespace tools,
an offered `web_search`, `store: false`, `include: ["reasoning.encrypted_content"]`);
the mock provider plays a model that runs one `exec_command` round trip (see
agent_script.py) and refuses what the real APIs refuse."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from mock_provider import (
    CHAT_COMPLETIONS_PATH,
    CONTEXT_OVERFLOW,
    MESSAGES_PATH,
    MIDSTREAM_ERROR,
    OPENAI_MIDSTREAM_ERROR,
    RESPONSES_PATH,
    STRUCTURED_ANSWER,
    scenario,
)

CODEX = Path(os.environ.get("CODEX_BIN", REPO / "tests" / "e2e" / "agents" / "node_modules" / ".bin" / "codex"))
RUN_TIMEOUT = 120

# model -> the path the provider is reached on
MODELS = {
    "anthropic:claude-sonnet-4-5": MESSAGES_PATH,
    "vllm/qwen3-coder": CHAT_COMPLETIONS_PATH,
    "openai:gpt-4o-mini": RESPONSES_PATH,
}


@pytest.fixture(scope="module")
def codex():
    if not CODEX.is_file():
        pytest.fail(f"Codex not found at {CODEX}: run `make agents`", pytrace=False)
    return CODEX


def run_codex(codex: Path, gateway, model: str, prompt: str, workdir: Path, extra: tuple = ()) -> str:
    """Codex's answer (its stdout), once it exited 0."""
    done = codex_exec(codex, gateway, model, prompt, workdir, extra)
    assert done.returncode == 0, f"codex exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def codex_exec(codex: Path, gateway, model: str, prompt: str, workdir: Path, extra: tuple = ()):
    """`codex exec` with `prompt`, whatever its end."""
    home = workdir / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(
        'model_provider = "aurora"\n'
        "[model_providers.aurora]\n"
        'name = "Aurora"\n'
        f'base_url = "{gateway.base_url}/v1"\n'
        'env_key = "AURORA_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AURORA_API_KEY": gateway.master_key,
    }
    return subprocess.run(
        # The sandbox needs user namespaces, which test machines may not give.
        [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access", "-m", model, *extra, prompt],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


@pytest.mark.parametrize("model", MODELS)
def test_codex_runs_a_shell_round_trip(gateway, codex, tmp_path, model):
    token = "aurora-codex-token-42"
    answer = run_codex(codex, gateway, model, f"Run [shell:echo {token}] and report", tmp_path)
    # The model saw the command's output, which Codex ran between the two requests.
    assert "SHELL" in answer and token in answer, answer
    path = MODELS[model]
    sent = [r for r in gateway.mock.requests if r.method == "POST" and r.path.split("?")[0] == path]
    assert len(sent) == 2, [r.path for r in gateway.mock.requests]
    first, second = (r.json() for r in sent)
    if path == RESPONSES_PATH:
        # OpenAI gets Codex's request as sent, but for the model's name.
        assert first["model"] == "gpt-4o-mini"
        assert any(t.get("name") == "exec_command" for t in first["tools"])
        assert "function_call_output" in [item.get("type") for item in second["input"]]
        return
    names = [t["name"] if path == MESSAGES_PATH else t["function"]["name"] for t in first["tools"]]
    # Namespace tools flattened, the offered web_search left out.
    assert "exec_command" in names
    assert any(n.startswith("multi_agent_v1__") for n in names), names
    assert "web_search" not in names
    for hint in ("prompt_cache_key", "client_metadata", "include", "store"):
        assert hint not in first
    if path == MESSAGES_PATH:
        # Codex's developer messages are the system prompt; the round trip is a
        # tool_use answered by a tool_result.
        assert "Codex" in first["system"]
        results = [b for m in second["messages"] for b in m["content"] if isinstance(m["content"], list) and b.get("type") == "tool_result"]
        assert len(results) == 1 and token in str(results[0]["content"])
    else:
        tools = [m for m in second["messages"] if m["role"] == "tool"]
        assert len(tools) == 1 and token in tools[0]["content"]


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-5", "vllm/qwen3-coder"])
def test_codex_output_schema_reaches_the_model_in_its_providers_terms(gateway, codex, tmp_path, model):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(WEATHER_SCHEMA))
    answer = run_codex(codex, gateway, model, "What is the weather in Paris?", tmp_path, ("--output-schema", str(schema)))
    path = MODELS[model]
    (sent,) = [r.json() for r in gateway.mock.requests if r.method == "POST" and r.path.split("?")[0] == path]
    if path == MESSAGES_PATH:
        # Anthropic's structured outputs: the schema alone, Claude's JSON the answer.
        assert sent["output_config"]["format"] == {"type": "json_schema", "schema": WEATHER_SCHEMA}
        assert json.loads(answer.strip().splitlines()[-1]) == STRUCTURED_ANSWER, answer
    else:
        response_format = sent["response_format"]
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["schema"] == WEATHER_SCHEMA
        assert response_format["json_schema"]["name"]


def model_calls(gateway, model: str) -> int:
    path = MODELS[model]
    return len([r for r in gateway.mock.requests if r.method == "POST" and r.path.split("?")[0] == path])


# What Codex says when a stream ended without `response.completed` or `response.failed`:
# it read no failure, and sent the request again.
CUT_SHORT = "stream closed before response.completed"


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-5", "vllm/qwen3-coder"])
def test_codex_stops_at_a_prompt_too_long_that_fails_the_stream(gateway, codex, tmp_path, model):
    # The provider's stream breaks off with "prompt is too long" (Anthropic's words, or
    # OpenAI's context_length_exceeded from the chat server): the gateway ends it with
    # response.failed, code context_length_exceeded, on which Codex gives up at once
    # rather than run the model five more times.
    done = codex_exec(codex, gateway, model, f"Say hi {scenario(CONTEXT_OVERFLOW)}", tmp_path)
    assert done.returncode != 0, done.stdout
    assert model_calls(gateway, model) == 1, done.stderr
    assert "ran out of room in the model's context window" in done.stderr, done.stderr
    assert CUT_SHORT not in done.stderr and "Reconnecting" not in done.stderr, done.stderr


def test_codex_shows_the_message_of_a_stream_that_failed(gateway, codex, tmp_path):
    # A chat server's error mid-stream: Codex tries again (as it does OpenAI's own
    # server_error), and in the end shows the error the gateway passed on.
    model = "vllm/qwen3-coder"
    done = codex_exec(codex, gateway, model, f"Say hi {scenario(MIDSTREAM_ERROR)}", tmp_path)
    assert done.returncode != 0, done.stdout
    message = OPENAI_MIDSTREAM_ERROR["error"]["message"]
    assert f"stream disconnected before completion: {message}" in done.stderr, done.stderr
    assert CUT_SHORT not in done.stderr, done.stderr


def test_codex_does_not_run_an_overloaded_model_again(gateway, codex, tmp_path):
    # Anthropic's overloaded_error mid-stream: response.failed says
    # server_is_overloaded, and Codex stops with its own words for it.
    model = "anthropic:claude-sonnet-4-5"
    done = codex_exec(codex, gateway, model, f"Say hi {scenario(MIDSTREAM_ERROR)}", tmp_path)
    assert done.returncode != 0, done.stdout
    assert model_calls(gateway, model) == 1, done.stderr
    assert "Selected model is at capacity" in done.stderr, done.stderr
