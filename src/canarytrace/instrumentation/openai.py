"""The OpenAI SDK patches: chat completions (create, parse; `stream()` goes through
create), the Responses API (create, parse, compact; `stream()` goes through create;
retrieve and cancel for the end of a background response, `background.py`) and
embeddings, sync and async.

The `stream(...)` helpers are not wrapped themselves: the SDK implements them by calling
`self.create(stream=True)`, which is wrapped, so wrapping both would double the span.
Only their streams' `close()` is, since it closes the HTTP response past the proxy.
`with_raw_response` and `with_streaming_response` call the same wrapped methods, as
bound when the SDK built them (once per resource: one built before `instrument()` keeps
the method unwrapped).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from canarytrace import attributes as A
from canarytrace.instrumentation import _extract as X
from canarytrace.instrumentation import background
from canarytrace.instrumentation._call import Instruments
from canarytrace.instrumentation._wrappers import Options, Spec, async_wrapper, sync_wrapper
from canarytrace.instrumentation.streams import Accumulator, aclose_helper, close_helper

#: The versions tested (the `openai` extra of pyproject.toml).
SUPPORTED = "openai >= 3.40, < 4"

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_EMBEDDINGS = "openai.resources.embeddings"
_CHAT_HELPERS = "openai.lib.streaming.chat._completions"
_RESPONSES_HELPERS = "openai.lib.streaming.responses._responses"
_REQUEST_ID_HEADER = "x-request-id"


class ChatAccumulator(Accumulator):
    """Reads `ChatCompletionChunk`s. Usage arrives only with `include_usage` on."""

    __slots__ = (
        "capture",
        "fingerprint",
        "first_token",
        "http",
        "id",
        "model",
        "parts",
        "reasons",
        "refused",
        "tier",
        "usage",
    )

    late = None  # no type: the reader hands over the chunks that end a choice or have none

    def __init__(self, capture: bool, stream: Any = None) -> None:
        self.capture = capture
        self.http = getattr(stream, "response", None)  # its headers hold the request id
        self.first_token: float | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.tier: Any = None  # the service tier and fingerprint, which every chunk repeats
        self.fingerprint: Any = None
        self.reasons: list[str] = []
        self.refused = False  # a refusal's text comes instead of content: no first token
        self.usage: Any = None
        self.parts: dict[int, list[str]] = {}

    def process(self, chunk: Any) -> None:
        if not self.id:  # Azure's first chunk, its prompt filter's, has an empty id
            self.id = chunk.id
            self.model = chunk.model
            self.tier = chunk.service_tier
            self.fingerprint = chunk.system_fingerprint
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None:
                if self.first_token is None and (delta.content or delta.tool_calls):
                    self.first_token = time.perf_counter()
                if self.capture and delta.content:  # each choice (`n`) its own text
                    self.parts.setdefault(choice.index, []).append(delta.content)
                if delta.refusal:
                    self.refused = True
            if choice.finish_reason:
                self.reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            self.usage = chunk.usage

    def process_late(self, chunk: Any) -> None:
        """Past the first token, with the text not kept, only endings and usage matter."""
        for choice in chunk.choices:
            if choice.finish_reason:
                self.reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            self.usage = chunk.usage

    def result(self) -> tuple[dict[str, Any], X.Usage | None]:
        out: dict[str, Any] = {}
        if self.id:
            out[A.GEN_AI_RESPONSE_ID] = self.id
        if self.model:
            out[A.GEN_AI_RESPONSE_MODEL] = self.model
        if self.reasons:
            out[A.GEN_AI_RESPONSE_FINISH_REASONS] = self.reasons
            X.refused_by_filter(out, self.reasons)
        if self.refused:
            out[A.REFUSED] = True
        X.openai_served(out, self.tier, self.fingerprint)
        X.header_request_id(out, A.OPENAI_REQUEST_ID, self.http, _REQUEST_ID_HEADER)
        return out, X.openai_chat_usage(self.usage, self.tier, out)

    def texts(self) -> list[str]:
        return ["".join(parts) for _, parts in sorted(self.parts.items())]


class ResponsesAccumulator(Accumulator):
    """Reads Responses API stream events; the final `response.*` event has the usage."""

    __slots__ = ("capture", "error", "first_token", "http", "parts", "response")

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
    # `error`: the stream's own failure event, which ends it without a final response.
    late = _FINAL | {"response.created", "error"}

    def __init__(self, capture: bool, stream: Any = None) -> None:
        self.capture = capture
        self.http = getattr(stream, "response", None)  # its headers hold the request id
        self.first_token: float | None = None
        self.response: Any = None  # the API's `Response`, as created, then as it ended
        self.error: str | None = None  # the code of an `error` event
        self.parts: list[str] = []

    def process(self, event: Any) -> None:
        kind = event.type
        if kind == "response.output_text.delta":
            if self.first_token is None:
                self.first_token = time.perf_counter()
            if self.capture:
                self.parts.append(event.delta)
        elif kind == "error":
            self.error = X.failure_code(getattr(event, "code", None), "error")
        elif kind in self.late:
            self.response = event.response

    def result(self) -> tuple[dict[str, Any], X.Usage | None]:
        out: dict[str, Any] = {}
        usage = None
        if self.response is not None:
            out, usage = X.openai_responses_response(self.response)
        if self.error is not None:
            out.setdefault(A.ERROR_TYPE, self.error)
        X.header_request_id(out, A.OPENAI_REQUEST_ID, self.http, _REQUEST_ID_HEADER)
        return out, usage

    def texts(self) -> list[str]:
        return ["".join(self.parts)] if self.parts else []


def _specs() -> list[tuple[str, str, Spec, bool]]:
    """(module, Class.method, spec, is_async) for every wrapped method."""
    from openai._legacy_response import LegacyAPIResponse
    from openai._response import BaseAPIResponse

    raw = (LegacyAPIResponse, BaseAPIResponse)

    def spec(api: str, operation: str, extract: Any, texts: Any, accumulator: Any) -> Spec:
        """The spec of one OpenAI API (`chat`, `responses`, `embeddings`): its parameters
        and its site are named after it; the raw-response types and request id are the
        SDK's."""
        return Spec(
            provider="openai",
            operation=operation,
            params=X.PARAMS[f"openai.{api}"],
            extract=extract,
            texts=texts,
            accumulator=accumulator,
            raw_types=raw,
            site=f"openai.{api}",
            request_id_attribute=A.OPENAI_REQUEST_ID,
        )

    chat = spec("chat", "chat", X.openai_chat_response, X.openai_chat_text, ChatAccumulator)
    responses = spec(
        "responses",
        "chat",
        X.openai_responses_response,
        X.openai_responses_text,
        ResponsesAccumulator,
    )
    embeddings = spec("embeddings", "embeddings", X.openai_embeddings_response, lambda _: [], None)
    # A compaction runs the model over a conversation and bills its tokens; its reply has
    # the Responses API's usage and output items. Its own operation name, so dashboards
    # and the targets' cache keep it apart from the calls that answer.
    compact = replace(responses, operation="compact", site="openai.responses.compact")
    return [
        (_CHAT, "Completions.create", chat, False),
        (_CHAT, "AsyncCompletions.create", chat, True),
        (_CHAT, "Completions.parse", chat, False),
        (_CHAT, "AsyncCompletions.parse", chat, True),
        (_RESPONSES, "Responses.create", responses, False),
        (_RESPONSES, "AsyncResponses.create", responses, True),
        (_RESPONSES, "Responses.parse", responses, False),
        (_RESPONSES, "AsyncResponses.parse", responses, True),
        (_RESPONSES, "Responses.compact", compact, False),
        (_RESPONSES, "AsyncResponses.compact", compact, True),
        (_EMBEDDINGS, "Embeddings.create", embeddings, False),
        (_EMBEDDINGS, "AsyncEmbeddings.create", embeddings, True),
    ]


def patches(ins: Instruments, options: Options) -> list[tuple[str, str, Any]]:
    """(module, Class.method, wrapper) for `wrapt.wrap_function_wrapper`."""
    from openai._legacy_response import LegacyAPIResponse

    calls = [
        (module, name, (async_wrapper if is_async else sync_wrapper)(ins, spec, options))
        for module, name, spec, is_async in _specs()
    ]
    # Where a background response's end is seen (`background.py`): not LLM calls.
    ends = [
        (_RESPONSES, f"{owner}.{method}", wrapper(ins, LegacyAPIResponse))
        for owner, wrapper in (
            ("Responses", background.sync_wrapper),
            ("AsyncResponses", background.async_wrapper),
        )
        for method in ("retrieve", "cancel")
    ]
    # The `stream()` helpers close the HTTP response on `close()` and on leaving `with`,
    # past the stream proxy: their close ends the call's span too.
    helpers = [
        (module, f"{owner}.close", aclose_helper if owner.startswith("Async") else close_helper)
        for module, owners in (
            (_CHAT_HELPERS, ("ChatCompletionStream", "AsyncChatCompletionStream")),
            (_RESPONSES_HELPERS, ("ResponseStream", "AsyncResponseStream")),
        )
        for owner in owners
    ]
    return calls + ends + helpers
