"""Anthropic's Message Batches API as the mock provider answers it
(`POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`, `GET …/{id}/results`):
a batch ends as soon as it is made, each request answered with the recorded message;
its `results_url` is the mock's own address, as the real API names its own; and, as
the real API, only a provider key (`sk-ant-…`) is let in."""

import copy
import itertools
import json
import threading

BATCHES_PATH = "/v1/messages/batches"

_ids = itertools.count(1)


class BatchesApi:
    """The mock's batches, by id: each its requests' custom ids and models."""

    def __init__(self):
        self._lock = threading.Lock()
        self._batches: dict[str, list[tuple[str, str]]] = {}

    def create(self, payload: dict) -> tuple[int, dict]:
        requests = payload.get("requests")
        if not isinstance(requests, list) or not requests:
            return 400, _error("invalid_request_error", "requests: Field required")
        made = []
        for r in requests:
            if not isinstance(r, dict) or not isinstance(r.get("custom_id"), str) or "params" not in r:
                return 400, _error("invalid_request_error", "each request needs custom_id and params")
            made.append((r["custom_id"], r["params"].get("model", "")))
        batch_id = f"msgbatch_mock{next(_ids):06d}"
        with self._lock:
            self._batches[batch_id] = made
        return 200, batch_id

    def batch(self, batch_id: str, origin: str) -> dict | None:
        with self._lock:
            made = self._batches.get(batch_id)
        if made is None:
            return None
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {"processing": 0, "succeeded": len(made), "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": "2026-12-06T00:00:01Z",
            "created_at": "2026-12-06T00:00:00Z",
            "expires_at": "2026-12-07T00:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{origin}{BATCHES_PATH}/{batch_id}/results",
        }

    def results(self, batch_id: str, message: dict) -> bytes | None:
        with self._lock:
            made = self._batches.get(batch_id)
        if made is None:
            return None
        lines = []
        for custom_id, model in made:
            answered = {**copy.deepcopy(message), "model": model or message["model"]}
            lines.append(json.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": answered}}))
        return ("\n".join(lines) + "\n").encode()


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def refusal(headers: dict) -> tuple[int, dict] | None:
    """The real API's refusal of a key it does not know, or None."""
    if not headers.get("x-api-key", "").startswith("sk-ant-"):
        return 401, _error("authentication_error", "invalid x-api-key")
    return None


OPENAI_BATCHES_PATH = "/v1/batches"
FILES_PATH = "/v1/files"

# An OpenAI batch that has ended, and its output file: two answers of the recorded
# completion, the batch's object reporting their usage summed, as OpenAI's does.
OPENAI_BATCH_ID = "batch_e2e"
OPENAI_OUTPUT_FILE = "file-e2e-out"


def openai_output_lines(completion: dict) -> bytes:
    lines = []
    for n in (1, 2):
        line = {
            "id": f"batch_req_{n}",
            "custom_id": f"request-{n}",
            "response": {"status_code": 200, "request_id": f"req_{n}", "body": completion},
            "error": None,
        }
        lines.append(json.dumps(line))
    return ("\n".join(lines) + "\n").encode()


def openai_batch(batch_id: str, completion: dict) -> dict | None:
    if batch_id != OPENAI_BATCH_ID:
        return None
    usage = completion["usage"]
    return {
        "id": OPENAI_BATCH_ID,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": completion["model"],
        "errors": None,
        "input_file_id": "file-e2e-in",
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": OPENAI_OUTPUT_FILE,
        "error_file_id": None,
        "created_at": 1796169600,
        "in_progress_at": 1796169601,
        "expires_at": 1796256000,
        "finalizing_at": 1796169700,
        "completed_at": 1796169710,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 2, "completed": 2, "failed": 0},
        "usage": {
            "input_tokens": 2 * usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 2 * usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 2 * usage["total_tokens"],
        },
        "metadata": None,
    }
