"""The Anthropic SDK patches: `messages.create` (streaming or not), `messages.parse`
(structured outputs) and `messages.stream(...)`, and the same three of `beta.messages`,
sync and async.

Anthropic 2.x traces each API call itself (a CLIENT span, scope `com.anthropic.sdk.python`)
as soon as a TracerProvider exists. canarytrace *replaces* that span for the calls it
traces rather than enriching it: the SDK span is named `anthropic.messages.create`, not
`chat {model}`, lacks finish reasons, and is opened inside the SDK where no attribute can
be added before it starts. While a traced call runs, the client's `_tracer` reads None
(a context variable switched around the call), so the SDK makes no span of its own for
that call; its other calls (count_tokens, batches, ...) keep their native spans, and
`uninstrument()` restores the SDK's property.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import set_span_in_context

from canarytrace import attributes as A
from canarytrace.instrumentation import _extract as X
from canarytrace.instrumentation._call import Instruments, report
from canarytrace.instrumentation._wrappers import (
    SUPPRESS_NATIVE,
    Options,
    Spec,
    async_wrapper,
    begin,
    failed,
    sync_wrapper,
)
from canarytrace.instrumentation.streams import (
    Accumulator,
    AsyncStream,
    SyncStream,
    wrap_stream_manager,
)

#: The versions tested (the `anthropic` extra of pyproject.toml).
SUPPORTED = "anthropic >= 2.10, < 3"

_MESSAGES = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"
#: The Vertex and Bedrock clients' `beta.messages` classes copy the first-party beta
#: methods when `import anthropic` runs, before any patch, so they are wrapped themselves.
_PLATFORM_BETAS = ("anthropic.lib.vertex._beta_messages", "anthropic.lib.bedrock._beta_messages")


#: The deltas of a stream's extended thinking, which come before the answer.
_BEFORE_THE_ANSWER = frozenset({"thinking_delta", "signature_delta"})


class AnthropicAccumulator(Accumulator):
    """Reads raw Messages stream events. The last `message_delta` carries the final,
    cumulative usage, which replaces (never adds to) what `message_start` said. The
    request id is the stream's HTTP response's header, read at the end. A `fallback`
    content block names the model that answers from there on, after the one before it
    refused (Anthropic's server-side fallback), as the SDK's own accumulator reads it."""

    __slots__ = (
        "capture",
        "fallback",
        "final_delta",
        "final_usage",
        "first_token",
        "http",
        "id",
        "model",
        "parts",
        "reason",
        "start_usage",
    )

    late = frozenset({"message_start", "message_delta"})

    def __init__(self, capture: bool, stream: Any = None) -> None:
        self.capture = capture
        self.http = getattr(stream, "response", None)  # its headers hold the request id
        self.first_token: float | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.reason: str | None = None
        self.fallback: Any = None  # the `fallback` block, when a fallback model answered
        self.final_delta: Any = None  # the last `message_delta`'s, for a refusal's details
        self.start_usage: Any = None  # the events' usage objects, read once at the end
        self.final_usage: Any = None
        self.parts: list[str] = []

    def process(self, event: Any) -> None:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta.type
            # The answer's first token, as OpenAI's readers take it: extended thinking
            # comes before the answer (and an application seldom shows it).
            if self.first_token is None and delta not in _BEFORE_THE_ANSWER:
                self.first_token = time.perf_counter()
            if self.capture and delta == "text_delta":
                self.parts.append(event.delta.text)
        elif kind == "message_start":
            message = event.message
            self.id, self.model = message.id, message.model
            self.start_usage = message.usage
        elif kind == "message_delta":
            delta = self.final_delta = event.delta
            if delta.stop_reason:
                self.reason = delta.stop_reason
            if event.usage is not None:
                self.final_usage = event.usage
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "fallback":
                self.fallback = block
                self.model = block.to.model

    def result(self) -> tuple[dict[str, Any], X.Usage | None]:
        out: dict[str, Any] = {}
        if self.id:
            out[A.GEN_AI_RESPONSE_ID] = self.id
        if self.model:
            out[A.GEN_AI_RESPONSE_MODEL] = self.model
        if self.fallback is not None:
            X.anthropic_fallback(out, self.model, getattr(self.fallback, "trigger", None))
        X.anthropic_stop_reason(out, self.reason, self.final_delta)
        X.header_request_id(out, A.ANTHROPIC_REQUEST_ID, self.http, "request-id")
        return out, X.anthropic_usage(self.final_usage, self.start_usage, out)

    def texts(self) -> list[str]:
        return ["".join(self.parts)] if self.parts else []


class AnthropicBetaAccumulator(AnthropicAccumulator):
    """`AnthropicAccumulator` for the beta API's streams, whose final usage also lists
    the sampling steps (`X.anthropic_iterations`), and where a refused answer can hand
    over to a fallback model mid-stream: block starts are read after the first token too."""

    __slots__ = ()

    late = AnthropicAccumulator.late | {"content_block_start"}

    def result(self) -> tuple[dict[str, Any], X.Usage | None]:
        out, usage = super().result()
        iterations = getattr(self.final_usage, "iterations", None)
        return out, X.anthropic_iterations(out, iterations, usage)


def _spec(site: str, stream: bool = False, beta: bool = False) -> Spec:
    from anthropic._response import BaseAPIResponse

    return Spec(
        provider="anthropic",
        operation="chat",
        params=X.PARAMS["anthropic.messages"],
        extract=X.anthropic_beta_message_response if beta else X.anthropic_message_response,
        texts=X.anthropic_text,
        accumulator=AnthropicBetaAccumulator if beta else AnthropicAccumulator,
        raw_types=(BaseAPIResponse,),
        site=site,
        request_id_attribute=A.ANTHROPIC_REQUEST_ID,
        suppress_native=True,
        stream=stream,
        headers=X.ANTHROPIC_HEADERS,
    )


def _stream_wrapper(ins: Instruments, spec: Spec, is_async: bool) -> Any:
    """`messages.stream(...)`: the manager's request, made on `__enter__`, gets the span."""
    reader = spec.accumulator or AnthropicAccumulator  # the beta API has a reader of its own

    def open_sync(instance: Any, kwargs: Any, request: Any) -> Any:
        try:
            call = begin(ins, spec, instance, kwargs)
        except Exception:
            report(spec.site + ".start")
            return request()
        token = otel_context.attach(set_span_in_context(call.span))
        native = SUPPRESS_NATIVE.set(True)
        try:
            raw = request()
        except BaseException as error:
            failed(spec, call, error)
            raise
        finally:
            SUPPRESS_NATIVE.reset(native)
            otel_context.detach(token)
        return SyncStream(raw, call, reader(ins.capture_content, raw))

    async def open_async(instance: Any, kwargs: Any, request: Any) -> Any:
        try:
            call = begin(ins, spec, instance, kwargs)
        except Exception:
            report(spec.site + ".start")
            return await request
        token = otel_context.attach(set_span_in_context(call.span))
        native = SUPPRESS_NATIVE.set(True)
        try:
            raw = await request
        except BaseException as error:
            failed(spec, call, error)
            raise
        finally:
            SUPPRESS_NATIVE.reset(native)
            otel_context.detach(token)
        return AsyncStream(raw, call, reader(ins.capture_content, raw))

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            if is_async:
                wrapped_ok = wrap_stream_manager(
                    manager, open_async=lambda request: open_async(instance, kwargs, request)
                )
            else:
                wrapped_ok = wrap_stream_manager(
                    manager, open_sync=lambda request: open_sync(instance, kwargs, request)
                )
            if not wrapped_ok:
                raise AttributeError(f"{type(manager).__name__} has no request to wrap")
        except Exception:
            report(spec.site)
        return manager

    return traced


def patches(ins: Instruments, options: Options) -> list[tuple[str, str, Any]]:
    """(module, Class.method, wrapper) for `wrapt.wrap_function_wrapper`."""
    out = []
    sites = [(_MESSAGES, "anthropic.messages"), (_BETA, "anthropic.beta.messages")]
    sites += [(module, "anthropic.beta.messages") for module in _PLATFORM_BETAS]
    for module, site in sites:
        beta = module != _MESSAGES
        calls = _spec(site, beta=beta)
        stream = _spec(site + ".stream", stream=True, beta=beta)
        out += [
            (module, "Messages.create", sync_wrapper(ins, calls, options)),
            (module, "AsyncMessages.create", async_wrapper(ins, calls, options)),
            # Structured outputs: `parse` posts the request itself, not through `create`.
            (module, "Messages.parse", sync_wrapper(ins, calls, options)),
            (module, "AsyncMessages.parse", async_wrapper(ins, calls, options)),
            (module, "Messages.stream", _stream_wrapper(ins, stream, is_async=False)),
            (module, "AsyncMessages.stream", _stream_wrapper(ins, stream, is_async=True)),
        ]
    return out


class NativeSpanSwitch:
    """Turns the SDK's own span off for the calls canarytrace traces (see module doc)."""

    def __init__(self) -> None:
        self._original: Any = None

    def install(self) -> None:
        from anthropic._base_client import BaseClient

        if self._original is not None:
            return
        original = BaseClient.__dict__["_tracer"]

        def _tracer(client: Any) -> Any:
            if SUPPRESS_NATIVE.get():
                return None
            return original.fget(client)

        self._original = original
        setattr(BaseClient, "_tracer", property(_tracer, doc=original.__doc__))  # noqa: B010

    def uninstall(self) -> None:
        if self._original is None:
            return
        from anthropic._base_client import BaseClient

        setattr(BaseClient, "_tracer", self._original)  # noqa: B010
        self._original = None
