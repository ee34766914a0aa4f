"""A scripted model for coding agents (Claude Code) driven through the mock provider.

A user message holding `[read:PATH]` starts a Read-tool loop: the model first calls
`Read` with `{"file_path": PATH}`; once the conversation ends with that call's result,
it answers with what it saw, so the test can check the result crossed the gateway
intact:

- text: `READ <the result's text, whitespace folded>`;
- an image: `IMAGE <media type> <width>x<height>`, read from the PNG header of the bytes
  the provider received.

Both wire formats are understood: Anthropic (`tool_result` blocks in the last user
message) and OpenAI (`tool` messages after the assistant's call, their images in the
user message that follows).
"""

import base64
import re
import struct

READ_MARKER = re.compile(r"\[read:([^\]\s]+)\]")
READ_TOOL = "Read"


def _texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def read_request(messages) -> str | None:
    """The PATH of the first `[read:PATH]` in a user message, if any."""
    for message in messages or []:
        if isinstance(message, dict) and message.get("role") == "user":
            for text in _texts(message.get("content")):
                match = READ_MARKER.search(text)
                if match:
                    return match.group(1)
    return None


def describe_image(media_type: str, data: str) -> str:
    """`IMAGE image/png 3x2`: the dimensions from the PNG header of the received bytes."""
    raw = base64.b64decode(data)
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR":
        width, height = struct.unpack(">II", raw[16:24])
        return f"IMAGE {media_type} {width}x{height}"
    return f"IMAGE {media_type} unreadable"


def _fold(text: str) -> str:
    return " ".join(text.split())


def anthropic_turn(payload: dict):
    """`("tool", path)`, `("text", answer)`, or None when no read loop was asked for."""
    messages = payload.get("messages") or []
    path = read_request(messages)
    if path is None:
        return None
    last = messages[-1] if messages else {}
    blocks = last.get("content") if isinstance(last.get("content"), list) else []
    results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    if not results:
        return ("tool", path)
    seen = []
    for result in results:
        content = result.get("content")
        if isinstance(content, str):
            seen.append("READ " + _fold(content))
            continue
        for item in content or []:
            if item.get("type") == "text":
                seen.append("READ " + _fold(item["text"]))
            elif item.get("type") == "image":
                source = item.get("source") or {}
                seen.append(describe_image(source.get("media_type", "?"), source.get("data", "")))
    return ("text", " | ".join(seen))


def openai_turn(payload: dict):
    """As `anthropic_turn`, for a Chat Completions request."""
    messages = payload.get("messages") or []
    path = read_request(messages)
    if path is None:
        return None
    calls = [i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")]
    after = messages[calls[-1] + 1 :] if calls else []
    if not any(m.get("role") == "tool" for m in after):
        return ("tool", path)
    seen = []
    for message in after:
        if message.get("role") == "tool":
            text = " ".join(_texts(message.get("content")))
            if text and text != "(attached in the next message)":
                seen.append("READ " + _fold(text))
        elif message.get("role") == "user" and isinstance(message.get("content"), list):
            for part in message["content"]:
                url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
                match = re.match(r"data:([^;]+);base64,(.*)", url, re.S)
                if match:
                    seen.append(describe_image(match.group(1), match.group(2)))
    return ("text", " | ".join(seen))
