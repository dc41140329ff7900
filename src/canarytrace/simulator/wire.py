"""What an API module hands the HTTP server: a JSON body or a timed stream of SSE events.

Keeping the replies as plain data lets the API modules stay pure functions of the
request (tested without sockets) while the server alone owns sockets and sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from canarytrace.instrumentation._extract import request_user_id
from canarytrace.simulator.errors import SimulatedError


@dataclass(frozen=True)
class JsonReply:
    """A JSON body sent after `delay_s` wall seconds."""

    body: Any
    delay_s: float = 0.0
    status: int = 200


@dataclass(frozen=True)
class StreamReply:
    """Server-sent events, each with its due time in wall seconds after the request.

    The events are built in full before the status line goes out, so a bad request can
    still be refused with a proper error instead of a stream cut in the middle.
    """

    events: tuple[tuple[float, bytes], ...]

    @classmethod
    def of(cls, events: Iterable[tuple[float, bytes]]) -> StreamReply:
        """A reply from any iterable of (due time, event), consumed now."""
        return cls(tuple(events))


Reply = JsonReply | StreamReply


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def conversation(body: dict[str, Any], turns: object) -> str:
    """The key of a request's draws: its turns, and its end user when it names one.

    With the end user (OpenAI's `safety_identifier` or `user`, Anthropic's
    `metadata.user_id`) in the key, each user's n-th identical request draws the same in
    every run, however many users' requests interleave; without it, which user gets the
    n-th draw of a shared prompt depends on the interleaving.
    """
    user = request_user_id(body)
    return json.dumps(turns if user is None else [user, turns])


def require(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """`body[name]`, or the 400 both providers answer when it is missing or mistyped."""
    if name not in body or body[name] is None:
        raise SimulatedError(
            "invalid_request", f"Missing required parameter: '{name}'.", param=name
        )
    return optional(body, name, kind, None)


def optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """`body[name]` if present and of type `kind` (bool is never an int), else `default`."""
    value = body.get(name)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise SimulatedError(
            "invalid_request",
            f"Invalid type for '{name}': expected {wanted}, got {type(value).__name__}.",
            param=name,
        )
    return value


def positive_int(body: dict[str, Any], *names: str) -> int | None:
    """The first of `names` present in `body`, checked to be an integer >= 1."""
    for name in names:
        value: int | None = optional(body, name, int, None)
        if value is not None:
            if value < 1:
                raise SimulatedError(
                    "invalid_request", f"'{name}' must be at least 1, got {value}.", param=name
                )
            return value
    return None
