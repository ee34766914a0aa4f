"""A scripted model for coding agents (Claude Code, Codex) driven through the mock
provider.

A user message holding `[read:PATH]` starts a Read-tool loop (Claude Code's `Read`
with `{"file_path": PATH}`), one holding `[shell:COMMAND]` a shell loop (Codex's
`exec_command` with `{"cmd": COMMAND}`): the model first calls the tool; once the
conversation ends with that call's result, it answers with what it saw, so the test
can check the result crossed the gateway intact:

- text: `READ <the result's text, whitespace folded>` (`SHELL …` for a shell loop);
- an image: `IMAGE <media type> <width>x<height>`, read from the PNG header of the bytes
  the provider received.

Three wire formats are understood: Anthropic (`tool_result` blocks in the last user
message), OpenAI Chat (`tool` messages after the assistant's call, their images in the
user message that follows) and OpenAI Responses (`function_call_output` items).
A turn is `("tool", (name, arguments))` or `("text", answer)`.
"""

import base64
import re
import struct

TOOL_MARKER = re.compile(r"\[(read|shell):([^\]]+)\]")
READ_TOOL = "Read"
SHELL_TOOL = "exec_command"
# marker -> (tool name, argument name, answer label)
TOOLS = {"read": (READ_TOOL, "file_path", "READ"), "shell": (SHELL_TOOL, "cmd", "SHELL")}


def _texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def tool_request(messages):
    """`(tool name, arguments, answer label)` for the first marker in a user message."""
    for message in messages or []:
        if isinstance(message, dict) and message.get("role") == "user":
            for text in _texts(message.get("content")):
                match = TOOL_MARKER.search(text)
                if match:
                    name, argument, label = TOOLS[match.group(1)]
                    return name, {argument: match.group(2).strip()}, label
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
    wanted = tool_request(messages)
    if wanted is None:
        return None
    name, arguments, label = wanted
    last = messages[-1] if messages else {}
    blocks = last.get("content") if isinstance(last.get("content"), list) else []
    results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    if not results:
        return ("tool", (name, arguments))
    seen = []
    for result in results:
        content = result.get("content")
        if isinstance(content, str):
            seen.append(f"{label} " + _fold(content))
            continue
        for item in content or []:
            if item.get("type") == "text":
                seen.append(f"{label} " + _fold(item["text"]))
            elif item.get("type") == "image":
                source = item.get("source") or {}
                seen.append(describe_image(source.get("media_type", "?"), source.get("data", "")))
    return ("text", " | ".join(seen))


def openai_turn(payload: dict):
    """As `anthropic_turn`, for a Chat Completions request."""
    messages = payload.get("messages") or []
    wanted = tool_request(messages)
    if wanted is None:
        return None
    name, arguments, label = wanted
    calls = [i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")]
    after = messages[calls[-1] + 1 :] if calls else []
    if not any(m.get("role") == "tool" for m in after):
        return ("tool", (name, arguments))
    seen = []
    for message in after:
        if message.get("role") == "tool":
            text = " ".join(_texts(message.get("content")))
            if text and text != "(attached in the next message)":
                seen.append(f"{label} " + _fold(text))
        elif message.get("role") == "user" and isinstance(message.get("content"), list):
            for part in message["content"]:
                url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
                match = re.match(r"data:([^;]+);base64,(.*)", url, re.S)
                if match:
                    seen.append(describe_image(match.group(1), match.group(2)))
    return ("text", " | ".join(seen))


def responses_turn(payload: dict):
    """As `anthropic_turn`, for a Responses API request (its `input` items)."""
    items = payload.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    items = items if isinstance(items, list) else []
    messages = [i for i in items if isinstance(i, dict) and "role" in i]
    wanted = tool_request(messages)
    if wanted is None:
        return None
    name, arguments, label = wanted
    outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    if not outputs:
        return ("tool", (name, arguments))
    seen = []
    for output in outputs:
        content = output.get("output")
        text = content if isinstance(content, str) else " ".join(_texts(content))
        seen.append(f"{label} " + _fold(text))
    return ("text", " | ".join(seen))
