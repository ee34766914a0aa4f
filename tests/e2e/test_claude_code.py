"""The real Claude Code CLI (`claude -p`, pinned in the Makefile) pointed at the gateway,
with its default tools, against an Anthropic-format and an OpenAI-format model. The mock
provider plays a model that runs a Read-tool loop (see agent_script.py) and refuses what
the real APIs refuse, so every request Claude Code makes must come out of the gateway in
a shape the provider accepts."""

import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import REPO

CLAUDE = Path(os.environ.get("CLAUDE_BIN", REPO / "tests" / "e2e" / "agents" / "node_modules" / ".bin" / "claude"))
RUN_TIMEOUT = 120

MODELS = {
    "anthropic": ("anthropic:claude-sonnet-4-5", "/v1/messages"),
    "openai": ("openai:gpt-4o-mini", "/v1/chat/completions"),
}
ANTHROPIC_ONLY_HEADERS = ("anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access")


def png(width: int, height: int) -> bytes:
    """A solid red RGB PNG."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def claude():
    if not CLAUDE.is_file():
        pytest.fail(f"Claude Code not found at {CLAUDE}: run `make agents`", pytrace=False)
    return CLAUDE


def run_claude(claude: Path, gateway, model: str, prompt: str, workdir: Path) -> str:
    """`claude -p PROMPT` in `workdir` against the gateway; its answer."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_API_KEY": gateway.master_key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [str(claude), "-p", prompt, "--model", model, "--allowedTools", "Read"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"claude exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def model_calls(gateway, path: str):
    return [r for r in gateway.mock.requests if r.method == "POST" and r.path.split("?")[0] == path]


def check_upstream(gateway, provider: str, calls: int):
    """Every call went to the provider's own API, in its own shape."""
    _, path = MODELS[provider]
    sent = model_calls(gateway, path)
    assert len(sent) == calls, [r.path for r in gateway.mock.requests]
    for request in sent:
        body = request.json()
        if provider == "openai":
            assert request.path == path
            for name in ANTHROPIC_ONLY_HEADERS:
                assert name not in request.headers
            assert body["max_completion_tokens"] <= 16384
            assert "max_tokens" not in body
        else:
            # Claude Code's beta query and headers reach Anthropic as sent.
            assert request.path == f"{path}?beta=true"
            assert "anthropic-beta" in request.headers
            assert body["model"] == "claude-sonnet-4-5"
    return sent


@pytest.mark.parametrize("provider", MODELS)
def test_claude_code_answers_a_prompt(gateway, claude, tmp_path, provider):
    model, _ = MODELS[provider]
    answer = run_claude(claude, gateway, model, "say hi", tmp_path)
    assert answer.strip()
    check_upstream(gateway, provider, 1)


@pytest.mark.parametrize("provider", MODELS)
def test_claude_code_read_tool_loop_on_a_text_file(gateway, claude, tmp_path, provider):
    model, _ = MODELS[provider]
    notes = tmp_path / "notes.txt"
    notes.write_text("the secret token is zebra-42\n")
    answer = run_claude(claude, gateway, model, f"What does [read:{notes}] say?", tmp_path)
    assert "READ" in answer and "zebra-42" in answer, answer
    sent = check_upstream(gateway, provider, 2)
    if provider == "openai":
        # Claude Code's mid-conversation system messages stay system messages.
        roles = [m["role"] for m in sent[-1].json()["messages"]]
        assert roles[-2:] == ["assistant", "tool"], roles
        assert roles.count("system") >= 1, roles


@pytest.mark.parametrize("provider", MODELS)
def test_claude_code_read_tool_loop_on_a_png(gateway, claude, tmp_path, provider):
    model, _ = MODELS[provider]
    image = tmp_path / "dot.png"
    image.write_bytes(png(3, 2))
    answer = run_claude(claude, gateway, model, f"Describe [read:{image}]", tmp_path)
    # The mock read the PNG's own header from the bytes it received.
    assert "IMAGE image/png 3x2" in answer, answer
    sent = check_upstream(gateway, provider, 2)
    if provider == "openai":
        messages = sent[-1].json()["messages"]
        tool = next(m for m in messages if m["role"] == "tool")
        follow = messages[messages.index(tool) + 1]
        assert follow["role"] == "user", json.dumps(messages)[-2000:]
        assert any(p.get("type") == "image_url" for p in follow["content"])
