"""The Anthropic API surface: Messages, streaming or not, with refusals and fallback.

Bodies carry what the anthropic SDK parses into `Message` (and `BetaMessage`) and its
stream events: ids, `model` = the serving snapshot, `stop_reason` (`end_turn` /
`max_tokens` / `stop_sequence` / `refusal`), and usage with
`cache_creation_input_tokens` / `cache_read_input_tokens`. Prompt caching follows the
provider's rule: the prefix up to the last block marked `cache_control` is written to
the cache the first time (if it reaches the minimum size) and read from it after.
The stream is message_start, ping, content_block_start, content_block_delta...,
content_block_stop, message_delta (stop_reason, cumulative usage), message_stop;
message_start reports `output_tokens: 1`, as the API does.

A request the model's classifiers decline (its profile's `refusal_rate`) answers 200
with `stop_reason: "refusal"`, `stop_details` naming the policy category, no content
and no output tokens. With `fallbacks` in the body (the `server-side-fallback` beta;
the simulator does not check the beta header) the declined request is retried on each
listed model in turn until one answers: the answer starts with one `fallback` block
per declined hop, its `model` is the model that served, and `usage.iterations` holds a
`message` entry per declined hop and a `fallback_message` entry for the one that
served. `"fallbacks": "default"` means the requested model's predecessor
(`Engine.predecessor`: the newest older live Anthropic model); the oldest model has
none, so its refusals stay refusals. If every hop declines, the answer is the last
hop's refusal (after the fallback blocks of the hops before it); if a fallback model
fails with a transient error, it is the refusal so far, with that model as
`stop_details.recommended_model`. Each declined hop costs its time to first token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from typing import Any, Literal

from canarytrace.simulator.engine import Completion, Engine, count_tokens
from canarytrace.simulator.errors import SimulatedError
from canarytrace.simulator.wire import (
    JsonReply,
    Reply,
    StreamReply,
    conversation,
    optional,
    require,
    sse,
)

CACHE_MIN_TOKENS = 1024  # prefixes shorter than this are not cached (Sonnet/Opus minimum)
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
}
_EXPLANATIONS = {
    "cyber": "This request was declined because it could enable cyber harm.",
    "bio": "This request was declined because it could enable biological harm.",
    "general_harms": "This request was declined because it relates to a harmful area.",
}
# what a `fallbacks` entry may carry; the simulator honours model and max_tokens
_FALLBACK_KEYS = frozenset({"model", "max_tokens", "thinking", "output_config", "speed"})
_TRANSIENT = frozenset({"rate_limit", "server_error", "overloaded"})
Chain = list[tuple[str, int]]  # (snapshot, max_tokens) per fallback hop
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def messages(engine: Engine, body: dict[str, Any]) -> Reply:
    """POST /v1/messages (also the beta route, which the SDK marks with ?beta=true)."""
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
    chain = _fallbacks(engine, body.get("fallbacks"), limit)
    prompt = next((text for role, text in reversed(texts) if role == "user"), texts[-1][1])
    key = conversation(body, texts)
    requested = body.get("model")
    done = engine.complete(requested, "anthropic", prompt, key, limit, stops)
    hops, recommended = [done], None
    if done.refusal is not None and chain:
        if chain == "default":
            predecessor = engine.predecessor(done.snapshot)
            chain = [(predecessor, limit)] if predecessor else []
        hops, recommended = _fall_back(engine, done, chain, prompt, key, stops)
    usages = [_usage(engine, hop, blocks, texts) for hop in hops]
    served = hops[-1]
    content = _fallback_blocks(requested, hops)
    if served.refusal is None:
        content.append({"type": "text", "text": served.text})
    usage = usages[-1]
    if len(hops) > 1:
        usage = usage | {"iterations": _iterations(hops, usages)}
    message = {
        "id": f"msg_01{_base62(int(done.uid, 16)).zfill(22)}",
        "type": "message",
        "role": "assistant",
        "model": served.snapshot,
        "content": content,
        "stop_reason": _STOP[served.finish],
        "stop_sequence": served.stop_sequence,
        "stop_details": _stop_details(served, recommended),
        "usage": usage,
    }
    if not stream:
        return JsonReply(message, delay_s=_last_token_at(served))
    return StreamReply.of(_events(message, hops, usages[0]))


def _events(
    message: dict[str, Any], hops: list[Completion], first_usage: dict[str, Any]
) -> Iterator[tuple[float, bytes]]:
    """The stream of `message`: it starts as the requested model's and ends as the served one's.

    A fallback block goes out when its hop declines; the text block, if any, when the
    serving model's first token is due.
    """
    served, last = hops[-1], _last_token_at(hops[-1])
    start = message | {
        "model": hops[0].snapshot,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": first_usage | {"output_tokens": 1},
    }
    first = hops[0].ttft_s
    yield first, sse({"type": "message_start", "message": start}, event="message_start")
    yield first, sse({"type": "ping"}, event="ping")
    for index, block in enumerate(message["content"]):
        is_text = block["type"] == "text"
        at = served.ttft_s if is_text else hops[index].ttft_s
        block_start = {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""} if is_text else block,
        }
        yield at, sse(block_start, event="content_block_start")
        for i, piece in enumerate(served.pieces if is_text else ()):
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            }
            yield at + i * served.per_token_s, sse(delta, event="content_block_delta")
        stop = {"type": "content_block_stop", "index": index}
        yield last if is_text else at, sse(stop, event="content_block_stop")
    usage = message["usage"]
    final_usage = {k: usage[k] for k in (*_DELTA_USAGE, "iterations") if k in usage}
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": message["stop_reason"],
            "stop_sequence": message["stop_sequence"],
            "stop_details": message["stop_details"],
        },
        "usage": final_usage,
    }
    yield last, sse(delta, event="message_delta")
    yield last, sse({"type": "message_stop"}, event="message_stop")


def _fallbacks(engine: Engine, value: object, limit: int) -> Chain | Literal["default"]:
    """The request's `fallbacks`, checked before any model runs (a bad entry is a 400)."""
    if value is None or value == "default":
        return [] if value is None else "default"
    if not isinstance(value, list):
        raise SimulatedError(
            "invalid_request",
            'fallbacks: expected a list of {"model": ...} objects or "default"',
            param="fallbacks",
        )
    chain: Chain = []
    for i, entry in enumerate(value):
        where = f"fallbacks.{i}"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("model"), str)
            or entry.keys() - _FALLBACK_KEYS
        ):
            allowed = ", ".join(sorted(_FALLBACK_KEYS))
            raise SimulatedError(
                "invalid_request",
                f"{where}: expected an object with a 'model' and only the keys {allowed}",
                param=where,
            )
        hop_limit = optional(entry, "max_tokens", int, limit)
        try:
            snapshot, _ = engine.resolve(entry["model"], "anthropic", "chat")
        except SimulatedError as error:
            raise SimulatedError(
                "invalid_request", f"{where}.model: {error.text}", param=f"{where}.model"
            ) from None
        chain.append((snapshot, hop_limit))
    return chain


def _fall_back(
    engine: Engine,
    declined: Completion,
    chain: Chain,
    prompt: str,
    key: str,
    stops: list[str],
) -> tuple[list[Completion], str | None]:
    """Every hop run after `declined`, until one answers; and a model to retry, if any.

    Each hop starts when the one before it declined. A fallback model that fails with
    a transient error ends the chain, and the caller is told to retry it directly.
    """
    hops = [declined]
    for snapshot, limit in chain:
        try:
            done = engine.complete(snapshot, "anthropic", prompt, key, limit, stops)
        except SimulatedError as error:
            if error.kind in _TRANSIENT:
                return hops, snapshot
            raise
        hops.append(dataclasses.replace(done, ttft_s=hops[-1].ttft_s + done.ttft_s))
        if done.refusal is None:
            break
    return hops, None


def _fallback_blocks(requested: object, hops: list[Completion]) -> list[dict[str, Any]]:
    """One `fallback` block per hop that declined and handed over to the next."""
    return [
        {
            "type": "fallback",
            "from": {"model": requested if i == 0 else hop.snapshot},
            "to": {"model": nxt.snapshot},
            "trigger": {"type": "refusal", "category": hop.refusal},
        }
        for i, (hop, nxt) in enumerate(itertools.pairwise(hops))
    ]


def _iterations(hops: list[Completion], usages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`usage.iterations`: a `message` per declined hop, `fallback_message` for the server."""
    return [
        {
            "type": "message" if hop.refusal else "fallback_message",
            "model": hop.snapshot,
            **{k: usage[k] for k in _DELTA_USAGE},
        }
        for hop, usage in zip(hops, usages, strict=True)
    ]


def _stop_details(done: Completion, recommended: str | None) -> dict[str, Any] | None:
    """`stop_details` of a declined answer (None for an answered one)."""
    if done.refusal is None:
        return None
    details = {
        "type": "refusal",
        "category": done.refusal,
        "explanation": _EXPLANATIONS[done.refusal],
    }
    return details | ({"recommended_model": recommended} if recommended else {})


def _last_token_at(done: Completion) -> float:
    return done.ttft_s + max(0, done.output_tokens - 1) * done.per_token_s


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
