"""Session fixtures: a mock provider and the real gateway binary pointed at it."""

import hashlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mock_provider import MockProvider

REPO = Path(__file__).resolve().parents[2]

# Fake credentials: the tests check where each one does (and does not) end up.
MASTER_KEY = "aurora-e2e-master-0123456789abcdef"
# A managed key whose budget (one token a month) its first call spends.
SPENT_BUDGET_KEY = "aur_e2e_spent_budget_key_0123456789abcdef"
PROVIDER_KEYS = {
    "anthropic": "sk-ant-e2e-provider",
    "openai": "sk-openai-e2e-provider",
    "gemini": "AIza-gemini-e2e-provider",
}

STARTUP_TIMEOUT = 15.0



def gateway_config(mock: MockProvider) -> str:
    """What only the file can say: a chat-only OpenAI-compatible server (vLLM) on the
    mock, Gemini's own API at the mock's root (enabled on `/p/`, as Gemini is not by
    default), OpenAI's output ceiling for gpt-4o-mini, which the mock enforces as
    OpenAI does (coding agents ask for more: Claude Code 32000), and fallbacks for the
    mock's always-overloaded models; a managed key with a budget of one token."""
    spent_budget = hashlib.sha256(SPENT_BUDGET_KEY.encode()).hexdigest()
    return f"""server:
  enabled_passthrough_providers: [openai, anthropic, vllm, gemini-native]
auth:
  keys:
    - name: spent-budget
      sha256: "{spent_budget}"
      limits: {{budget: {{tokens: 1, period: month}}}}
providers:
  vllm:
    base_url: {mock.base_url}
  gemini-native:
    type: gemini
    base_url: {mock.root_url}
    api_key: {PROVIDER_KEYS["gemini"]}
models:
  limits:
    gpt-4o-mini: {{max_output_tokens: 16384}}
  fallbacks:
    gpt-4o-overloaded: [anthropic/claude-sonnet-4-5]
    claude-overloaded: [openai/gpt-4o-mini]
"""


@dataclass
class Gateway:
    base_url: str
    master_key: str
    provider_keys: dict[str, str]
    mock: MockProvider
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_line(self, request_id: str) -> str:
        """The access line of the request `request_id`, once written (within 5 s): it
        is written after the response."""
        needle = f"request_id={request_id}"
        deadline = time.monotonic() + 5
        while needle not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return next(l for l in self.log().splitlines() if needle in l)


@pytest.fixture(scope="session")
def isolated_sdk_env():
    """Drop the developer's SDK settings (keys, base URLs, custom headers) and proxies,
    so the SDKs talk straight to the gateway with only what the tests pass. `gateway`
    depends on it, so it is in place before any client is made."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            upper = name.upper()
            if upper.startswith(("ANTHROPIC_", "OPENAI_", "GEMINI_", "GOOGLE_")) or upper.endswith("_PROXY"):
                mp.delenv(name)
        yield


@pytest.fixture(scope="session")
def mock_provider():
    mock = MockProvider(gemini_key=PROVIDER_KEYS["gemini"])
    mock.start()
    yield mock
    mock.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, base_url: str, log_path: Path):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gateway exited with {proc.returncode}:\n{log_path.read_text()}", pytrace=False)
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gateway not healthy after {STARTUP_TIMEOUT}s:\n{log_path.read_text()}", pytrace=False)


@pytest.fixture(scope="session")
def gateway(isolated_sdk_env, mock_provider, tmp_path_factory):
    binary = Path(os.environ.get("AURORA_BIN", REPO / "target" / "debug" / "aurora"))
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set AURORA_BIN", pytrace=False)
    work = tmp_path_factory.mktemp("aurora")
    config = work / "aurora.yaml"
    # Providers come from the environment below; the file holds what only it can say.
    config.write_text(gateway_config(mock_provider))
    log_path = work / "aurora.log"
    port = _free_port()
    # Only what the gateway needs, so nothing from the developer's shell leaks in.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(work)),
        "RUST_LOG": "info",
        "AURORA_GRACE_PERIOD_SECONDS": "0",  # no load balancer to drain: exit on SIGTERM at once
        "AURORA_LISTEN": f"127.0.0.1:{port}",
        "AURORA_METRICS_LISTEN": "",  # no fixed port shared with another gateway
        "AURORA_MASTER_KEY": MASTER_KEY,
        "ANTHROPIC_API_KEY": PROVIDER_KEYS["anthropic"],
        "ANTHROPIC_BASE_URL": mock_provider.base_url,
        "OPENAI_API_KEY": PROVIDER_KEYS["openai"],
        "OPENAI_BASE_URL": mock_provider.base_url,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "--config", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, base_url, log_path)
        yield Gateway(base_url, MASTER_KEY, dict(PROVIDER_KEYS), mock_provider, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _fresh_mock(gateway):
    """Each test sees only the upstream requests it caused."""
    gateway.mock.clear()
