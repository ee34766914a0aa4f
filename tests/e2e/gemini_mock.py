"""Gemini's own API (`generateContent`, `streamGenerateContent`) in the mock provider,
refusing what Google refuses: a request without the provider's key, a bearer token
that is not Google's, a query parameter it does not bind (a key in the query among
them: the gateway sends none), an unknown field, empty contents or parts, a part of
no known kind, a role other than `user`/`model`, and a conversation whose last turn is
not the user's.

Batches too: `models/{model}:batchGenerateContent` (inlined requests, each checked as
above) makes one, and `batches/{id}` reads it, running at its first read and ended at
the next, its responses inlined with their usage.

Paths sit at the mock's root (`/v1/models/{model}:{method}`, and `/v1beta/…`), where
Google's SDKs put them under a base URL; a provider pointed at the mock's root serves
them, and is asked its model list at `/v1beta/openai/models` (the recorded one).
"""

import json
import re
import threading
from pathlib import Path
from urllib.parse import parse_qs

GEMINI_TEXT = "Hello from Gemini, through the gateway."

# Gemini's OpenAI-compatible model list, where an instance at Google's root is asked it.
OPENAI_MODELS_PATH = "/v1beta/openai/models"
_RECORDED_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "gemini" / "models.json"

# Any method of a model, so that an unknown one is Google's 404, not another API's.
_METHOD = re.compile(r"^/v1(?:beta)?/models/([A-Za-z0-9._-]+):([A-Za-z]+)$")
# A batch, by its id.
_BATCH = re.compile(r"^/v1(?:beta)?/batches/([A-Za-z0-9_-]+)$")
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_FIELDS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "generationConfig",
    "cachedContent",
}
_PART_KINDS = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
_PART_EXTRAS = {"thought", "thoughtSignature"}


def google_error(code: int, status: str, message: str) -> dict:
    """Google's error envelope."""
    return {"error": {"code": code, "message": message, "status": status}}


# The query parameters every Google API binds (`key` aside: any key in the query is
# refused here, since the gateway must never send one).
_SYSTEM_PARAMS = {"alt", "$alt", "prettyPrint", "fields", "quotaUser", "$.xgafv"}


def gemini_auth_problem(headers: dict, query: str, key: str):
    """Google's refusal of a request's credentials or query, as (status, body); `None`
    when the request carries exactly the provider's key in `x-goog-api-key` and binds
    every query parameter."""
    params = parse_qs(query, keep_blank_values=True)
    for name in params:
        if name not in _SYSTEM_PARAMS:
            message = f"Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter."
            return 400, google_error(400, "INVALID_ARGUMENT", message)
    if "authorization" in headers:
        message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
        return 401, google_error(401, "UNAUTHENTICATED", message)
    given = headers.get("x-goog-api-key")
    if given is None:
        message = "Method doesn't allow unregistered callers (callers without established identity)."
        return 403, google_error(403, "PERMISSION_DENIED", message)
    if given != key:
        return 400, google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    return None


def gemini_request_problem(payload, in_batch: bool = False) -> str | None:
    """Why Google would refuse `payload` with a 400, or `None`. A batch's requests may
    name their `model`; a call's is in its path."""
    if not isinstance(payload, dict):
        return "Invalid JSON payload received. Expected an object."
    for name in payload:
        if name not in _FIELDS and not (in_batch and name == "model"):
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for at, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{at}].role: {role!r})"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{at}].parts: contents.parts must not be empty."
        for part in parts:
            kinds = [k for k in part if k in _PART_KINDS]
            unknown = [k for k in part if k not in _PART_KINDS and k not in _PART_EXTRAS]
            if unknown:
                return f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'contents[{at}].parts\''
            if len(kinds) != 1:
                return f"* GenerateContentRequest.contents[{at}].parts: a part must hold exactly one kind of data"
    if contents[-1].get("role", "user") != "user":
        return "Please ensure that single turn requests end with a user role or the role field is empty."
    return None


def _words(payload) -> int:
    texts = [p.get("text", "") for c in payload["contents"] for p in c["parts"]]
    return sum(len(t.split()) for t in texts)


def gemini_usage(payload, output_words: int) -> dict:
    prompt = _words(payload)
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output_words,
        "totalTokenCount": prompt + output_words,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def _candidate(text: str, finished: bool) -> dict:
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finished:
        candidate["finishReason"] = "STOP"
    return candidate


def gemini_answer(payload, model: str) -> dict:
    """The whole `generateContent` answer to `payload`."""
    usage = gemini_usage(payload, len(GEMINI_TEXT.split(" ")))
    return {
        "candidates": [_candidate(GEMINI_TEXT, True)],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "mock-gemini-response",
    }


def batch_problem(payload) -> str | None:
    """Why Google would refuse a `batchGenerateContent` body with a 400, or `None`."""
    batch = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(batch, dict) or set(payload) != {"batch"}:
        return "* BatchGenerateContentRequest.batch: batch is not specified"
    requests = batch.get("inputConfig", {}).get("requests", {}).get("requests")
    if not isinstance(requests, list) or not requests:
        return "* BatchGenerateContentRequest.batch.input_config: input_config is required"
    for at, item in enumerate(requests):
        problem = gemini_request_problem(item.get("request"), in_batch=True)
        if problem:
            return f"requests[{at}].request: {problem}"
    return None


class GeminiApi:
    """Answers Gemini's own methods for the mock; `key` is the provider key it takes.
    A batch runs while it is read once (`BATCH_STATE_RUNNING`) and has succeeded at
    the next read, its responses inlined."""

    def __init__(self, key: str):
        self.key = key
        self._lock = threading.Lock()
        self._batches: dict[str, dict] = {}

    @staticmethod
    def serves(path: str, headers: dict) -> bool:
        """Whether the request is Gemini's: `batches/{id}` is OpenAI's path too, told
        apart by Google's key header."""
        return (
            path == OPENAI_MODELS_PATH
            or _METHOD.match(path) is not None
            or (_BATCH.match(path) is not None and "x-goog-api-key" in headers)
        )

    def _batch(self, batch_id: str, model: str, state: str, output=None) -> dict:
        metadata = {
            "@type": _BATCH_TYPE,
            "model": f"models/{model}",
            "displayName": "mock batch",
            "state": state,
            "name": f"batches/{batch_id}",
        }
        operation = {"name": f"batches/{batch_id}", "metadata": metadata}
        if output is not None:
            metadata["output"] = output
            operation.update(done=True, response=dict(output, **{"@type": _OUTPUT_TYPE}))
        return operation

    def _create_batch(self, handler, model: str, payload):
        problem = batch_problem(payload)
        if problem:
            return handler._send_json(400, google_error(400, "INVALID_ARGUMENT", problem))
        requests = payload["batch"]["inputConfig"]["requests"]["requests"]
        with self._lock:
            batch_id = f"mock-batch-{len(self._batches) + 1}"
            self._batches[batch_id] = {"model": model, "requests": requests, "reads": 0}
        return handler._send_json(200, self._batch(batch_id, model, "BATCH_STATE_PENDING"))

    def _read_batch(self, handler, batch_id: str):
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is not None:
                batch["reads"] += 1
        if batch is None:
            return handler._send_json(404, google_error(404, "NOT_FOUND", f"Batch {batch_id} not found"))
        model = batch["model"]
        if batch["reads"] == 1:
            return handler._send_json(200, self._batch(batch_id, model, "BATCH_STATE_RUNNING"))
        inlined = [
            {"response": gemini_answer(item["request"], model), "metadata": item.get("metadata", {})}
            for item in batch["requests"]
        ]
        output = {"inlinedResponses": {"inlinedResponses": inlined}}
        return handler._send_json(200, self._batch(batch_id, model, "BATCH_STATE_SUCCEEDED", output))

    def handle(self, handler, path: str, query: str, headers: dict, body: bytes):
        refused = gemini_auth_problem(headers, query, self.key)
        if refused:
            return handler._send_json(*refused)
        if path == OPENAI_MODELS_PATH and handler.command == "GET":
            return handler._send_json(200, json.loads(_RECORDED_MODELS.read_bytes()))
        batch = _BATCH.match(path)
        if batch is not None and handler.command == "GET":
            return self._read_batch(handler, batch.group(1))
        model, method = _METHOD.match(path).groups() if batch is None else (None, None)
        methods = ("generateContent", "streamGenerateContent", "batchGenerateContent")
        if handler.command != "POST" or method not in methods:
            return handler._send_json(404, google_error(404, "NOT_FOUND", f"mock: no route {path}"))
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return handler._send_json(400, google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        if method == "batchGenerateContent":
            return self._create_batch(handler, model, payload)
        problem = gemini_request_problem(payload)
        if problem:
            return handler._send_json(400, google_error(400, "INVALID_ARGUMENT", problem))
        words = GEMINI_TEXT.split(" ")
        usage = gemini_usage(payload, len(words))
        answer = {"modelVersion": model, "responseId": "mock-gemini-response"}
        if method == "generateContent":
            return handler._send_json(200, gemini_answer(payload, model))
        if parse_qs(query).get("alt") != ["sse"]:
            return handler._send_json(400, google_error(400, "INVALID_ARGUMENT", "mock: streams are served as ?alt=sse only"))
        # As Google streams: every chunk reports the prompt's count so far, the last
        # one (with the finish) the whole count.
        pieces = [" ".join(words[:3]) + " ", " ".join(words[3:])]
        events = []
        for at, piece in enumerate(pieces):
            last = at == len(pieces) - 1
            chunk = dict(answer, candidates=[_candidate(piece, last)])
            chunk["usageMetadata"] = usage if last else {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"]}
            events.append(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
        return handler._send_sse(events)
