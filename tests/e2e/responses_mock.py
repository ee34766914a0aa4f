"""OpenAI's Responses API as the mock provider answers it (`POST /v1/responses`,
`GET` / `DELETE /v1/responses/{id}`): the recorded response shape with the requested
model, answers kept by id so `previous_response_id` and retrieval work (a call in
`background` mode answered "queued", the response read complete afterwards), the event
stream built from the answer as OpenAI's streaming reference lays it out, and the
scripted agent turns of agent_script."""

import copy
import itertools
import json
import threading
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

_ids = itertools.count(1)


def _sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


class ResponsesApi:
    """The mock's Responses API state: answers by id."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stored: dict[str, dict] = {}

    def problem(self, payload: dict) -> tuple[int, str] | None:
        """OpenAI's refusal of a request, as (status, message), or None."""
        if not isinstance(payload.get("model"), str) or not payload["model"]:
            return 400, "Missing required parameter: 'model'."
        if "input" not in payload:
            return 400, "Missing required parameter: 'input'."
        if payload.get("background") is True and payload.get("store") is False:
            return 400, "Background mode requires `store` to be true."
        previous = payload.get("previous_response_id")
        if previous is not None:
            with self._lock:
                if previous not in self._stored:
                    return 404, f"Previous response with id '{previous}' not found."
        return None

    def answer(self, payload: dict, output: list[dict]) -> dict:
        """A completed response to `payload` with `output`, kept when `store` is not false."""
        response = json.loads((FIXTURES / "openai" / "responses.json").read_text())
        response["id"] = f"resp_mock{next(_ids):06d}"
        response["model"] = payload["model"]
        response["output"] = output
        response["previous_response_id"] = payload.get("previous_response_id")
        response["store"] = payload.get("store", True) is not False
        response["background"] = payload.get("background") is True
        response["tools"] = payload.get("tools") or []
        if response["store"]:
            with self._lock:
                self._stored[response["id"]] = response
        return response

    @staticmethod
    def queued(response: dict) -> dict:
        """What the call that starts a background `response` is answered: the
        response queued, no output, no usage; it is read complete later."""
        return {**copy.deepcopy(response), "status": "queued", "output": [], "usage": None,
                "completed_at": None}

    def get(self, response_id: str) -> dict | None:
        with self._lock:
            return self._stored.get(response_id)

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._stored.pop(response_id, None) is not None


def text_output(text: str) -> list[dict]:
    return [{
        "id": f"msg_mock{next(_ids):06d}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    }]


def call_output(name: str, arguments: dict, call_id: str) -> list[dict]:
    return [{
        "id": f"fc_mock{next(_ids):06d}",
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments, separators=(",", ":")),
    }]


def stream_events(response: dict) -> list[bytes]:
    """The event stream for a completed `response`: created, in_progress, per item its
    added / delta / done events, completed; sequence numbers from 0."""
    seq = itertools.count()
    events = []

    def emit(event: dict):
        events.append(_sse({**event, "sequence_number": next(seq)}))

    pending = {**copy.deepcopy(response), "status": "in_progress", "output": [], "usage": None}
    emit({"type": "response.created", "response": pending})
    emit({"type": "response.in_progress", "response": pending})
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            opening = {**item, "status": "in_progress", "content": []}
            emit({"type": "response.output_item.added", "output_index": index, "item": opening})
            for c, part in enumerate(item["content"]):
                empty = {**part, "text": ""}
                emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                      "content_index": c, "part": empty})
                words = part["text"].split(" ")
                for w, word in enumerate(words):
                    delta = word if w == 0 else " " + word
                    emit({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                          "content_index": c, "delta": delta, "logprobs": []})
                emit({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                      "content_index": c, "text": part["text"], "logprobs": []})
                emit({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                      "content_index": c, "part": part})
        else:
            opening = {**item, "status": "in_progress", "arguments": ""}
            emit({"type": "response.output_item.added", "output_index": index, "item": opening})
            emit({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                  "output_index": index, "delta": item["arguments"]})
            emit({"type": "response.function_call_arguments.done", "item_id": item["id"],
                  "output_index": index, "arguments": item["arguments"]})
        emit({"type": "response.output_item.done", "output_index": index, "item": item})
    emit({"type": "response.completed", "response": response})
    return events
