"""What the gateway sent the mock provider: exactly one request, checked for the
credentials it must carry and the gateway key it must never pass on."""

from mock_provider import CHAT_COMPLETIONS_PATH, MESSAGES_PATH


def single_upstream_request(gateway, path):
    """The one POST the gateway sent to `path`."""
    (request,) = gateway.mock.requests
    assert request.method == "POST"
    assert request.path == path
    # The gateway key must never reach a provider, under any header name or in the body.
    assert not [k for k, v in request.headers.items() if gateway.master_key in v]
    assert gateway.master_key.encode() not in request.body
    return request


def anthropic_upstream_request(gateway, path=MESSAGES_PATH):
    """The one request the gateway sent to Anthropic, checked for Anthropic's credentials."""
    upstream = single_upstream_request(gateway, path)
    assert upstream.headers["x-api-key"] == gateway.provider_keys["anthropic"]
    assert "authorization" not in upstream.headers
    return upstream


def openai_upstream_request(gateway):
    """The one request the gateway sent to OpenAI, checked for OpenAI's credentials."""
    upstream = single_upstream_request(gateway, CHAT_COMPLETIONS_PATH)
    assert upstream.headers["authorization"] == f"Bearer {gateway.provider_keys['openai']}"
    assert "x-api-key" not in upstream.headers
    return upstream
