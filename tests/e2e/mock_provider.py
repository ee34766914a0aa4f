"""A stand-in for Anthropic and OpenAI: replays recorded responses from tests/fixtures
and records every request, so tests can see exactly what the gateway sent upstream."""

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Request path -> (JSON response fixture, SSE transcript fixture).
ROUTES = {
    "/v1/messages": ("anthropic/messages.json", "anthropic/messages_stream.txt"),
    "/v1/chat/completions": ("openai/chat_completion.json", "openai/chat_completion_stream.txt"),
}

# A request for this model gets a 429 in the provider's own error format.
RATE_LIMITED_MODEL = "rate-limited"
RATE_LIMIT_MESSAGE = "mock provider: rate limit exceeded"
RATE_LIMITS = {
    "/v1/messages": (
        {"type": "error", "error": {"type": "rate_limit_error", "message": RATE_LIMIT_MESSAGE}},
        {"anthropic-ratelimit-requests-remaining": "0"},
    ),
    "/v1/chat/completions": (
        {
            "error": {
                "message": RATE_LIMIT_MESSAGE,
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        {"x-ratelimit-remaining-requests": "0"},
    ),
}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sse_events(name: str) -> list[bytes]:
    """An SSE transcript split into events, each ending with its blank line."""
    return [event + b"\n\n" for event in fixture_bytes(name).strip(b"\n").split(b"\n\n")]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self):
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as real providers do, so the gateway's connection reuse is exercised.
    protocol_version = "HTTP/1.1"
    mock: "MockProvider"  # set on the subclass MockProvider creates

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        body = self._read_body()
        self.mock._record(
            RecordedRequest(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
        )
        route = ROUTES.get(self.path)
        if self.command != "POST" or route is None:
            return self._send_json(404, {"error": {"message": f"mock: no route {self.path}"}})
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return self._send_json(400, {"error": {"message": "mock: body is not JSON"}})
        if payload.get("model") == RATE_LIMITED_MODEL:
            error, headers = RATE_LIMITS[self.path]
            return self._send_json(429, error, {"retry-after": "7", **headers})
        json_fixture, sse_fixture = route
        if payload.get("stream") is True:
            return self._send_sse(sse_events(sse_fixture))
        self._send(200, "application/json", fixture_bytes(json_fixture))

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after the chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def _send_json(self, status, obj, headers=None):
        self._send(status, "application/json", json.dumps(obj).encode(), headers)

    def _send(self, status, content_type, body, headers=None):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_sse(self, events):
        # Chunked, one chunk per event with a flush each, so the stream really arrives
        # in pieces and the gateway must forward it incrementally.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class MockProvider:
    """The mock server; `base_url` is what a provider's `*_BASE_URL` should be set to."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        handler = type("Handler", (_Handler,), {"mock": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: RecordedRequest):
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()
