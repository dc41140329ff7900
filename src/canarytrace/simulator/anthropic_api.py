"""The Anthropic API surface: Messages, streaming or not.

Bodies carry what the anthropic SDK parses into `Message` and its stream events: ids,
`model` = the serving snapshot, `stop_reason` (`end_turn` / `max_tokens`), and usage
with `cache_creation_input_tokens` / `cache_read_input_tokens`. Prompt caching follows
the provider's rule: the prefix up to the last block marked `cache_control` is written
to the cache the first time (if it reaches the minimum size) and read from it after.
The stream is message_start, ping, content_block_start, content_block_delta...,
content_block_stop, message_delta (stop_reason, cumulative usage), message_stop;
message_start reports `output_tokens: 1`, as the API does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from canarytrace.simulator.engine import Completion, Engine, count_tokens
from canarytrace.simulator.errors import SimulatedError
from canarytrace.simulator.wire import (
    JsonReply,
    Reply,
    StreamReply,
    optional,
    require,
    sse,
)

CACHE_MIN_TOKENS = 1024  # prefixes shorter than this are not cached (Sonnet/Opus minimum)
_STOP = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def messages(engine: Engine, body: dict[str, Any]) -> Reply:
    """POST /v1/messages."""
    limit = require(body, "max_tokens", int)
    if limit < 1:
        raise SimulatedError(
            "invalid_request", "max_tokens: must be at least 1", param="max_tokens"
        )
    turns = require(body, "messages", list)
    if not turns:
        raise SimulatedError("invalid_request", "messages: at least one message is required")
    blocks = _system_blocks(body.get("system"))
    texts: list[tuple[str, str]] = [("system", b["text"]) for b in blocks]
    for i, turn in enumerate(turns):
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ("user", "assistant"):
            raise SimulatedError(
                "invalid_request", f"messages.{i}.role: expected 'user' or 'assistant'"
            )
        turn_blocks = _content_blocks(turn.get("content"), f"messages.{i}.content")
        blocks += turn_blocks
        texts.append((role, "\n".join(b["text"] for b in turn_blocks)))
    stream = optional(body, "stream", bool, False)
    stops = [s for s in optional(body, "stop_sequences", list, []) if isinstance(s, str)]
    prompt = next((text for role, text in reversed(texts) if role == "user"), texts[-1][1])
    conversation = json.dumps(texts)
    done = engine.complete(body.get("model"), "anthropic", prompt, conversation, limit, stops)
    usage = _usage(engine, done, blocks, texts)
    message = {
        "id": f"msg_01{_base62(int(done.uid, 16)).zfill(22)}",
        "type": "message",
        "role": "assistant",
        "model": done.snapshot,
        "content": [{"type": "text", "text": done.text}],
        "stop_reason": _STOP[done.finish],
        "stop_sequence": done.stop_sequence,
        "usage": usage,
    }
    last = done.ttft_s + max(0, done.output_tokens - 1) * done.per_token_s
    if not stream:
        return JsonReply(message, delay_s=last)

    def events() -> Iterator[tuple[float, bytes]]:
        start = message | {
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage | {"output_tokens": 1},
        }
        first = done.ttft_s
        yield first, sse({"type": "message_start", "message": start}, event="message_start")
        yield first, sse({"type": "ping"}, event="ping")
        block_start = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        yield first, sse(block_start, event="content_block_start")
        for i, piece in enumerate(done.pieces):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            yield first + i * done.per_token_s, sse(delta, event="content_block_delta")
        yield last, sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        final_usage = {k: usage[k] for k in _DELTA_USAGE}
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[done.finish], "stop_sequence": done.stop_sequence},
            "usage": final_usage,
        }
        yield last, sse(delta, event="message_delta")
        yield last, sse({"type": "message_stop"}, event="message_stop")

    return StreamReply.of(events())


def list_models(engine: Engine, body: dict[str, Any]) -> Reply:
    """GET /v1/models: the Anthropic models that are not retired (one page, newest first)."""
    rows = sorted(_anthropic_models(engine), key=lambda m: m["created_at"], reverse=True)
    first, last = (rows[0]["id"], rows[-1]["id"]) if rows else (None, None)
    return JsonReply({"data": rows, "has_more": False, "first_id": first, "last_id": last})


def retrieve_model(engine: Engine, body: dict[str, Any], model: str) -> Reply:
    """GET /v1/models/{model}; an alias answers with the snapshot it serves."""
    snapshot = engine.aliases().get(model, model)
    found = next((m for m in _anthropic_models(engine) if m["id"] == snapshot), None)
    if found is None:
        raise SimulatedError("not_found", f"model: {model}")
    return JsonReply(found)


def _anthropic_models(engine: Engine) -> list[dict[str, Any]]:
    return [
        {
            "type": "model",
            "id": model_id,
            "display_name": display_name(model_id),
            "created_at": dt.datetime.fromtimestamp(p.created, dt.UTC).isoformat(),
            "lifecycle": "active",
        }
        for model_id, p in engine.profiles.models.items()
        if p.provider == "anthropic" and not p.retired
    ]


def display_name(model_id: str) -> str:
    """'claude-3-5-sonnet-20241022' -> 'Claude 3.5 Sonnet', as the models list shows it."""
    words: list[str] = []
    for part in model_id.split("-"):
        if len(part) == 8 and part.isdigit():
            continue  # the snapshot date
        if part.isdigit() and words and words[-1][-1].isdigit():
            words[-1] += f".{part}"
        else:
            words.append(part.capitalize())
    return " ".join(words)


_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _usage(
    engine: Engine, done: Completion, blocks: list[dict[str, Any]], texts: list[tuple[str, str]]
) -> dict[str, Any]:
    total = sum(count_tokens(t) + 3 for _, t in texts) + done.profile.billing.input_overhead
    marked = [i for i, b in enumerate(blocks) if b.get("cache_control")]
    created = read = 0
    if marked:
        prefix = blocks[: marked[-1] + 1]
        prefix_tokens = sum(count_tokens(b["text"]) for b in prefix)
        if prefix_tokens >= CACHE_MIN_TOKENS:
            key = json.dumps([b["text"] for b in prefix])
            if engine.prompt_cache_hit(done.snapshot, key):
                read = prefix_tokens
            else:
                created = prefix_tokens
    return {
        "input_tokens": total - created - read,
        "output_tokens": done.output_tokens,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }


def _system_blocks(system: object) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}] if system else []
    return _content_blocks(system, "system")


def _content_blocks(content: object, where: str) -> list[dict[str, Any]]:
    """Text blocks of a content field (a string or a list of blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and content:
        blocks = [b for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
        if len(blocks) == len(content):
            return blocks
    raise SimulatedError(
        "invalid_request",
        f"{where}: expected a non-empty string or a list of text blocks",
    )


def _base62(number: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)) or "0"
