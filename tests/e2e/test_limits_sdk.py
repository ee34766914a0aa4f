"""What the official SDKs retry by themselves, with their default retries, and what the
gateway tells them not to: a key whose budget is spent is raised at once, after one
request, rather than retried for nothing or slept on until the budget's period ends
(the Anthropic SDK sleeps for whatever `Retry-After` says, here weeks); an answer the
provider gave with success but the gateway could not deliver is not asked for again
(the work was done and billed)."""

import threading
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from conftest import SPENT_BUDGET_KEY
from mock_provider import CHAT_COMPLETIONS_PATH, GARBLED_GPT

GPT = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hello"}]
# Far more than the SDKs' retries of a refusal they give up on take (a few seconds).
SDK_BOUND_SECONDS = 20


@pytest.fixture
def spent_budget(gateway):
    """The key's budget spent: its first call is served and charged, the next refused
    (the charge lands just after the answer)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{gateway.base_url}/p/openai/v1/chat/completions",
            headers={"authorization": f"Bearer {SPENT_BUDGET_KEY}"},
            json={"model": GPT, "messages": PROMPT},
        )
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "insufficient_quota"
            gateway.mock.clear()
            return
        assert response.status_code == 200, response.text
        time.sleep(0.05)
    pytest.fail("the key's budget was never spent")


class CountingTransport(httpx2.HTTPTransport):
    """Counts the requests an SDK sends (through `httpx2`, the SDKs' HTTP client)."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    def handle_request(self, request):
        self.sent += 1
        return super().handle_request(request)


def raised_within_bound(call):
    """What `call` raised, failing the test if it has not returned within the bound."""
    outcome = {}

    def run():
        try:
            call()
        except Exception as e:  # the error the SDK raised is what is checked
            outcome["raised"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(SDK_BOUND_SECONDS)
    assert not worker.is_alive(), f"the SDK was still retrying or waiting after {SDK_BOUND_SECONDS} s"
    return outcome.get("raised")


@pytest.mark.parametrize(
    "base, model",
    [("/v1", "anthropic:claude-sonnet-4-5"), ("/p/anthropic", "claude-sonnet-4-20250514")],
    ids=["v1_messages", "p_anthropic"],
)
def test_anthropic_sdk_raises_a_spent_budget_at_once_instead_of_sleeping_until_the_period_ends(
    gateway, spent_budget, base, model
):
    transport = CountingTransport()
    client = anthropic.Anthropic(
        base_url=gateway.base_url + base.removesuffix("/v1"),
        api_key=SPENT_BUDGET_KEY,
        http_client=httpx2.Client(transport=transport),
    )
    assert client.max_retries >= 2  # the SDK's default: retries a 429

    raised = raised_within_bound(
        lambda: client.messages.create(model=model, max_tokens=32, messages=PROMPT)
    )

    assert isinstance(raised, anthropic.RateLimitError), raised
    response = raised.response
    assert int(response.headers["retry-after"]) > 60
    assert response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert transport.sent == 1
    assert gateway.mock.requests == []


def test_openai_sdk_raises_a_spent_budget_at_once_without_retrying(gateway, spent_budget):
    transport = CountingTransport()
    client = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1",
        api_key=SPENT_BUDGET_KEY,
        http_client=httpx2.Client(transport=transport),
    )
    assert client.max_retries >= 2

    raised = raised_within_bound(lambda: client.chat.completions.create(model=GPT, messages=PROMPT))

    assert isinstance(raised, openai.RateLimitError), raised
    assert raised.code == "insufficient_quota"
    assert raised.response.headers["x-should-retry"] == "false"
    assert transport.sent == 1
    assert gateway.mock.requests == []


def test_anthropic_sdk_does_not_ask_again_for_work_the_provider_did_but_could_not_be_delivered(gateway):
    transport = CountingTransport()
    client = anthropic.Anthropic(
        base_url=gateway.base_url,
        api_key=gateway.master_key,
        http_client=httpx2.Client(transport=transport),
    )

    raised = raised_within_bound(
        lambda: client.messages.create(model=f"openai:{GARBLED_GPT}", max_tokens=32, messages=PROMPT)
    )

    assert isinstance(raised, anthropic.APIStatusError), raised
    assert raised.status_code == 502
    assert raised.response.headers["x-should-retry"] == "false"
    assert transport.sent == 1
    asked = [r for r in gateway.mock.requests if r.path == CHAT_COMPLETIONS_PATH]
    assert len(asked) == 1, "the SDK retried work the provider had done"
