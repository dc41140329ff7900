"""The OpenAI API surface: Chat Completions, Responses, Embeddings, Models.

Each function takes the engine and the decoded JSON body and returns a `Reply` whose
bodies carry every field the openai SDK's typed objects parse: ids, `model` = the
snapshot that actually served (not the alias asked for), usage with its details,
finish reasons, and for streams the exact event sequence the SDK's helpers expect.

A request the model's classifiers decline (its profile's `refusal_rate`) answers as
OpenAI does: Chat Completions with `content: null`, the text in `message.refusal` and
`finish_reason: "stop"` (streamed as `delta.refusal` chunks); Responses with a
`refusal` content part (streamed as `response.refusal.delta` events). The refusal
text is the output, so usage counts its tokens.

Responses also run in OpenAI's background mode (`background: true`, not streamed): the
answer is drawn at once, exactly as in the foreground, but the reply is the response
`queued` (no output, `usage: null`). The engine keeps the outcome; polling
``GET /v1/responses/{id}`` says `in_progress` until the draw's latency has passed, then
gives the body the foreground reply would have sent, with `background: true`. A drawn
provider error does not fail the create: the response ends `failed` with OpenAI's
`error.code` (`server_error`, `rate_limit_exceeded`). ``POST /v1/responses/{id}/cancel``
cancels a queued or in-progress response (again: the same answer); a finished one
answers 400.
"""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from canarytrace.simulator.engine import (
    BackgroundJob,
    Completion,
    Engine,
    count_tokens,
    stable_int,
    tokenize,
)
from canarytrace.simulator.errors import ErrorKind, SimulatedError
from canarytrace.simulator.wire import (
    JsonReply,
    Reply,
    StreamReply,
    conversation,
    optional,
    positive_int,
    require,
    sse,
)

# Without max_tokens a model still stops somewhere; the real limit is the context window.
_NO_LIMIT = 16_384
_PER_MESSAGE_TOKENS = 3  # OpenAI's chat format adds about this much per message
REFUSAL_TEXT = "I'm sorry, I can't help with that."
# A drawn error fails a background response later, with the code OpenAI reports then.
_BACKGROUND_FAILURE_CODES: dict[ErrorKind, str] = {
    "rate_limit": "rate_limit_exceeded",
    "server_error": "server_error",
    "overloaded": "server_error",
}
_NO_BACKGROUND_STREAMS = (
    "The simulator does not stream background responses; "
    "create them without 'stream' and poll GET /v1/responses/{response_id}."
)


def chat_completions(engine: Engine, body: dict[str, Any]) -> Reply:
    """POST /v1/chat/completions, streaming (SSE) or not."""
    messages = require(body, "messages", list)
    if not messages:
        raise SimulatedError("invalid_request", "'messages' must not be empty.", param="messages")
    texts = [
        (_role(m, i), _content_text(m.get("content"), f"messages[{i}]"))
        for i, m in enumerate(messages)
    ]
    if optional(body, "n", int, 1) != 1:
        raise SimulatedError("invalid_request", "The simulator supports only n=1.", param="n")
    stream = optional(body, "stream", bool, False)
    options = optional(body, "stream_options", dict, {})
    if options and not stream:
        raise SimulatedError(
            "invalid_request",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    limit = positive_int(body, "max_completion_tokens", "max_tokens") or _NO_LIMIT
    stop = optional(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
    prompt = next((text for role, text in reversed(texts) if role == "user"), texts[-1][1])
    done = engine.complete(
        body.get("model"), "openai", prompt, conversation(body, texts), limit, stops
    )
    done = _refusal_as_text(done)
    refused = done.refusal is not None
    usage = _chat_usage(done, texts)
    cid, created = f"chatcmpl-{done.uid}", int(time.time())
    fingerprint = f"fp_{stable_int(done.snapshot) % 16**10:010x}"
    finish = "length" if done.finish == "length" else "stop"  # OpenAI: a stop sequence is "stop"
    if not stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if refused else done.text,
            "refusal": done.text if refused else None,
            "annotations": [],
        }
        return JsonReply(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": done.snapshot,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
            },
            delay_s=_last_token_at(done),
        )

    include_usage = bool(options.get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        out = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": done.snapshot,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            out["usage"] = None
        return out

    field = "refusal" if refused else "content"
    other = "content" if refused else "refusal"

    def events() -> Iterator[tuple[float, bytes]]:
        yield done.ttft_s, sse(chunk({"role": "assistant", field: "", other: None}, None))
        for i, piece in enumerate(done.pieces):
            yield done.ttft_s + i * done.per_token_s, sse(chunk({field: piece}, None))
        end = _last_token_at(done)
        yield end, sse(chunk({}, finish))
        if include_usage:
            final = chunk({}, None) | {"choices": [], "usage": usage}
            yield end, sse(final)
        yield end, sse("[DONE]")

    return StreamReply.of(events())


def responses(engine: Engine, body: dict[str, Any]) -> Reply:
    """POST /v1/responses: streamed (the response.* event sequence), whole, or in the background."""
    request = _ResponsesRequest.parse(body)
    started = time.time()
    try:
        done = engine.complete(
            body.get("model"),
            "openai",
            request.prompt,
            conversation(body, request.texts),
            request.limit or _NO_LIMIT,
        )
    except SimulatedError as error:
        if request.background and error.kind in _BACKGROUND_FAILURE_CODES:
            return _fail_in_background(engine, body.get("model"), request, started, error)
        raise
    done = _refusal_as_text(done)
    part = _refusal_part if done.refusal is not None else _output_text
    kind = "refusal" if done.refusal is not None else "output_text"
    input_tokens = _input_tokens(done, request.texts)
    head = _ResponseHead(request, f"resp_{done.uid}", done.snapshot, int(started))
    mid = f"msg_{done.uid}"
    complete = done.finish in ("stop", "refusal")

    def item(status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [part(text)]
        return {
            "id": mid,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": done.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + done.output_tokens,
    }
    end = _last_token_at(done)
    final_status = "completed" if complete else "incomplete"
    final_item = item(final_status, done.text)
    final = head.body(final_status, [final_item], usage, completed_at=head.created_at + end)
    if request.background:
        return _run_in_background(engine, head, final, end)
    if not request.stream:
        return JsonReply(final, delay_s=end)

    def events() -> Iterator[tuple[float, bytes]]:
        seq = iter(range(1_000_000))

        def event(type_: str, at: float, **fields: Any) -> tuple[float, bytes]:
            return at, sse({"type": type_, "sequence_number": next(seq), **fields}, event=type_)

        start = done.ttft_s
        where = {"item_id": mid, "output_index": 0, "content_index": 0}
        yield event("response.created", 0.0, response=head.body("in_progress"))
        yield event("response.in_progress", 0.0, response=head.body("in_progress"))
        yield event(
            "response.output_item.added", start, output_index=0, item=item("in_progress", None)
        )
        logprobs: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        yield event("response.content_part.added", start, part=part(""), **where)
        for i, piece in enumerate(done.pieces):
            at = start + i * done.per_token_s
            yield event(f"response.{kind}.delta", at, delta=piece, **logprobs, **where)
        done_text = {"text" if kind == "output_text" else "refusal": done.text}
        yield event(f"response.{kind}.done", end, **done_text, **logprobs, **where)
        yield event("response.content_part.done", end, part=part(done.text), **where)
        yield event("response.output_item.done", end, output_index=0, item=final_item)
        yield event(f"response.{final_status}", end, response=final)

    return StreamReply.of(events())


def retrieve_response(engine: Engine, body: dict[str, Any], response_id: str) -> Reply:
    """GET /v1/responses/{response_id}: a background response as it stands now.

    Only background responses are kept (the newest 10,000): the simulator does not
    store foreground ones, so their ids are unknown here.
    """
    if body.get("stream") == "true":
        raise SimulatedError("invalid_request", _NO_BACKGROUND_STREAMS, param="stream")
    job = engine.job(response_id)
    if job is None:
        raise _unknown_response(response_id)
    return JsonReply(_job_body(job, time.monotonic()))


def cancel_response(engine: Engine, body: dict[str, Any], response_id: str) -> Reply:
    """POST /v1/responses/{response_id}/cancel: stop a queued or in-progress response.

    Cancelling twice answers the cancelled response again (OpenAI calls it idempotent);
    a response that has already finished cannot be cancelled.
    """
    now = time.monotonic()
    job = engine.cancel_job(response_id, now)
    if job is None:
        raise _unknown_response(response_id)
    if job.done_by(now):
        status = job.outcome["status"]
        raise SimulatedError(
            "invalid_request",
            f"Cannot cancel a {status} response; only queued or in-progress ones can be.",
        )
    return JsonReply(_job_body(job, now))


@dataclasses.dataclass(frozen=True)
class _ResponsesRequest:
    """A checked POST /v1/responses body: its turns and the settings every reply echoes."""

    texts: list[tuple[str, str]]
    instructions: str | None
    limit: int | None
    stream: bool
    temperature: float
    top_p: float
    background: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> _ResponsesRequest:
        """The request, or the 400 OpenAI answers to a malformed one."""
        texts = _responses_input(require(body, "input", (str, list)))
        instructions = optional(body, "instructions", str, None)
        if instructions:
            texts.insert(0, ("developer", instructions))
        request = cls(
            texts,
            instructions,
            positive_int(body, "max_output_tokens"),
            optional(body, "stream", bool, False),
            optional(body, "temperature", (int, float), 1.0),
            optional(body, "top_p", (int, float), 1.0),
            optional(body, "background", bool, False),
        )
        if request.background and request.stream:
            raise SimulatedError("invalid_request", _NO_BACKGROUND_STREAMS, param="stream")
        if request.background and not optional(body, "store", bool, True):
            raise SimulatedError(
                "invalid_request", "Background mode requires 'store' to be true.", param="store"
            )
        return request

    @property
    def prompt(self) -> str:
        """The last user turn: what the model answers."""
        return next(
            (text for role, text in reversed(self.texts) if role == "user"), self.texts[-1][1]
        )


@dataclasses.dataclass(frozen=True)
class _ResponseHead:
    """What every Response body of one request shares: its id, serving model and start."""

    request: _ResponsesRequest
    rid: str
    model: str
    created_at: int

    def body(
        self,
        status: str,
        output: Sequence[Any] = (),
        usage: dict[str, Any] | None = None,
        *,
        completed_at: float | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The Response object in `status`: the one builder of streamed, whole and
        background replies, so they cannot drift apart."""
        request = self.request
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": request.background,
            "completed_at": completed_at,
            "error": error,
            "incomplete_details": None
            if status != "incomplete"
            else {"reason": "max_output_tokens"},
            "instructions": request.instructions,
            "max_output_tokens": request.limit,
            "model": self.model,
            "output": list(output),
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "temperature": request.temperature,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_p": request.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }


def _run_in_background(
    engine: Engine, head: _ResponseHead, outcome: dict[str, Any], delay_s: float
) -> JsonReply:
    """Answer at once that the response is queued; keep its outcome, due in `delay_s`."""
    queued = head.body("queued")
    engine.add_job(head.rid, BackgroundJob(queued, outcome, time.monotonic() + delay_s))
    return JsonReply(queued)


def _fail_in_background(
    engine: Engine,
    model: object,
    request: _ResponsesRequest,
    started: float,
    error: SimulatedError,
) -> JsonReply:
    """A drawn provider error as background mode reports it: a response that fails later.

    The failed draw made no answer and so no seeded uid: this response's id is random.
    """
    snapshot, _ = engine.resolve(model, "openai", "chat")
    head = _ResponseHead(request, f"resp_{uuid.uuid4().hex}", snapshot, int(started))
    failure = {"code": _BACKGROUND_FAILURE_CODES[error.kind], "message": error.text}
    return _run_in_background(engine, head, head.body("failed", error=failure), error.delay_s)


def _job_body(job: BackgroundJob, now: float) -> Any:
    """A background response at monotonic time `now`: running (or cancelled), or its outcome."""
    if job.done_by(now):
        return job.outcome
    return job.pending | {"status": "cancelled" if job.cancelled else "in_progress"}


def _unknown_response(response_id: str) -> SimulatedError:
    """The 404 for an id that is not (or no longer) a kept background response."""
    return SimulatedError("not_found", f"Response with id '{response_id}' not found.")


def embeddings(engine: Engine, body: dict[str, Any]) -> Reply:
    """POST /v1/embeddings: deterministic vectors from the words of each input.

    Each word adds a fixed pseudo-random direction seeded by its hash, so equal texts
    give equal vectors and texts sharing words are close, as real embeddings are.
    openai 3.x asks for base64 by default; float lists are sent when asked for.
    """
    inputs = _embedding_inputs(require(body, "input", (str, list)))
    encoding = optional(body, "encoding_format", str, "float")
    if encoding not in ("float", "base64"):
        raise SimulatedError(
            "invalid_request",
            f"Invalid value for 'encoding_format': {encoding!r}; use 'float' or 'base64'.",
            param="encoding_format",
        )
    snapshot, profile = engine.resolve(body.get("model"), "openai", "embedding")
    dims = positive_int(body, "dimensions") or profile.dimensions
    if dims > profile.dimensions:
        raise SimulatedError(
            "invalid_request",
            f"'dimensions' must be at most {profile.dimensions} for {snapshot}, got {dims}.",
            param="dimensions",
        )
    rng = engine.draw(snapshot, conversation(body, inputs))
    engine.fail_randomly(rng, profile)
    delay = profile.latency.sample_ttft(rng) * engine.time_scale
    data = []
    for i, text in enumerate(inputs):
        vector = embedding_vector(text, dims)
        value: Any = vector.tolist()
        if encoding == "base64":
            value = base64.b64encode(vector.astype("<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(count_tokens(t) for t in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JsonReply({"object": "list", "data": data, "model": snapshot, "usage": usage}, delay)


def embedding_vector(text: str, dims: int) -> np.ndarray:
    """The unit vector the simulator answers for `text`, as float32."""
    total = np.zeros(dims)
    for word in text.casefold().split() or [""]:
        total += np.random.default_rng(stable_int("word", word)).standard_normal(dims)
    norm = float(np.linalg.norm(total))
    return (total / norm).astype(np.float32)


def list_models(engine: Engine, body: dict[str, Any]) -> Reply:
    """GET /v1/models: the OpenAI models that are not retired, and the aliases to them."""
    return JsonReply({"object": "list", "data": _openai_models(engine)})


def retrieve_model(engine: Engine, body: dict[str, Any], model: str) -> Reply:
    """GET /v1/models/{model}."""
    found = next((m for m in _openai_models(engine) if m["id"] == model), None)
    if found is None:
        raise SimulatedError(
            "not_found",
            f"The model '{model}' does not exist",
            param="model",
            code="model_not_found",
        )
    return JsonReply(found)


def _openai_models(engine: Engine) -> list[dict[str, Any]]:
    live = {
        model_id: p
        for model_id, p in engine.profiles.models.items()
        if p.provider == "openai" and not p.retired
    }
    rows = [
        {"id": model_id, "object": "model", "created": p.created, "owned_by": "system"}
        for model_id, p in live.items()
    ]
    rows += [
        {"id": alias, "object": "model", "created": live[target].created, "owned_by": "system"}
        for alias, target in engine.aliases().items()
        if target in live
    ]
    return rows


def _chat_usage(done: Completion, texts: list[tuple[str, str]]) -> dict[str, Any]:
    prompt_tokens = _input_tokens(done, texts)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": done.output_tokens,
        "total_tokens": prompt_tokens + done.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _input_tokens(done: Completion, texts: list[tuple[str, str]]) -> int:
    counted = sum(count_tokens(text) + _PER_MESSAGE_TOKENS for _, text in texts)
    return counted + _PER_MESSAGE_TOKENS + done.profile.billing.input_overhead


def _last_token_at(done: Completion) -> float:
    return done.ttft_s + max(0, done.output_tokens - 1) * done.per_token_s


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _refusal_part(text: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": text}


def _refusal_as_text(done: Completion) -> Completion:
    """A declined completion as OpenAI answers it: the refusal text is its (billed) output."""
    if done.refusal is None:
        return done
    return dataclasses.replace(done, pieces=tuple(tokenize(REFUSAL_TEXT)))


def _role(message: object, index: int) -> str:
    role = message.get("role") if isinstance(message, dict) else None
    if not isinstance(role, str):
        raise SimulatedError(
            "invalid_request",
            f"Invalid 'messages[{index}]': expected an object with a 'role'.",
            param=f"messages[{index}]",
        )
    return role


def _content_text(content: object, where: str) -> str:
    """The text of a message's content: a string or a list of text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise SimulatedError(
        "invalid_request",
        f"Invalid '{where}.content': expected a string or a list of parts.",
        param=f"{where}.content",
    )


def _responses_input(value: str | list[Any]) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [("user", value)]
    if not value:
        raise SimulatedError("invalid_request", "'input' must not be empty.", param="input")
    return [
        (_role(item, i), _content_text(item.get("content"), f"input[{i}]"))
        for i, item in enumerate(value)
    ]


def _embedding_inputs(value: str | list[Any]) -> list[str]:
    """Input texts; token-id arrays are embedded as the text of their ids."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise SimulatedError("invalid_request", "'input' must not be empty.", param="input")
    if all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
        return [" ".join(map(str, v)) for v in value]
    raise SimulatedError(
        "invalid_request",
        "'input' must be a string, a list of strings or of token arrays.",
        param="input",
    )
