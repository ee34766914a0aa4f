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
from mock_provider import CHAT_COMPLETIONS_PATH, MESSAGES_PATH, RESPONSES_PATH, STRUCTURED_ANSWER

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
    done = subprocess.run(
        # The sandbox needs user namespaces, which test machines may not give.
        [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access", "-m", model, *extra, prompt],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"codex exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


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
