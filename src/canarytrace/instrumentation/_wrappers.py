"""Wrapper factories shared by the OpenAI and Anthropic patches, sync and async twins.

A factory takes the `Instruments` and a `Spec` (what one SDK method is: provider,
operation, how to read its request and response) once at instrument time and returns
the `wrapt` wrapper. Two error paths never mix: an SDK exception is recorded on the
span and re-raised unchanged; an error of canarytrace's own is reported once per site
and swallowed, and the call goes on (untraced if the span could not start).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import set_span_in_context

from canarytrace import attributes as A
from canarytrace.instrumentation._call import (
    Call,
    Instruments,
    Target,
    captures_output,
    end_call,
    is_pinned,
    reads_response,
    report,
    start_call,
)
from canarytrace.instrumentation._extract import (
    HeaderSetting,
    Setting,
    Usage,
    add_output_messages,
    header_attributes,
    input_messages,
    request_attributes,
    request_id,
    request_user_id,
    server_attributes,
)
from canarytrace.instrumentation.providers import provider_name
from canarytrace.instrumentation.streams import Accumulator, AsyncStream, SyncStream

#: True while canarytrace traces an Anthropic call, so the SDK's own span stays off.
SUPPRESS_NATIVE: ContextVar[bool] = ContextVar("canarytrace_suppress_native", default=False)

_RAW_HEADER = "X-Stainless-Raw-Response"


@dataclass(frozen=True)
class Spec:
    """One wrapped SDK method."""

    provider: str  # the SDK's maker; a client may reach another (`providers.provider_name`)
    operation: str
    params: Mapping[str, tuple[Setting, ...]]  # kwarg -> its settings (`_extract.PARAMS`)
    extract: Callable[[Any], tuple[dict[str, Any], Usage | None]]
    texts: Callable[[Any], list[str]]
    accumulator: Callable[[bool, Any], Accumulator] | None  # (capture, the SDK stream)
    raw_types: tuple[type, ...]
    site: str
    # The provider's attribute for a call's request id, which `failed` takes from the
    # SDK's error (`extract` and the accumulator from a response).
    request_id_attribute: str
    suppress_native: bool = False
    stream: bool = False  # the method always streams (Anthropic's `messages.stream`)
    # Request headers recorded as settings (`_extract.ANTHROPIC_HEADERS`).
    headers: Mapping[str, HeaderSetting] = field(default_factory=dict)
    static: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        static = {
            A.GEN_AI_OPERATION_NAME: self.operation,
            # Always written, so a loader never has to guess what a missing value means.
            A.GEN_AI_REQUEST_STREAM: self.stream,
        }
        object.__setattr__(self, "static", static)


class Options:
    """Switches of one `instrument()` call that change what the wrappers do."""

    __slots__ = ("include_stream_usage",)

    def __init__(self, include_stream_usage: bool = False) -> None:
        self.include_stream_usage = include_stream_usage


#: (site, id(client), model) -> the `Target` of every call of one method to one model
#: through one client. The target holds the client's `base_url`, so that object's id
#: cannot be reused while cached, and a client whose `base_url` was replaced gets a new one.
_targets: dict[tuple[str, int, str], Target] = {}


def _target(spec: Spec, client: Any, base_url: Any, model: str) -> Target:
    """A call's target; `model` is "" for a request that names none (a Responses call
    with a stored prompt), which has no model attributes, as the conventions say."""
    pinned = bool(model) and is_pinned(model)
    server = server_attributes(base_url)
    provider = provider_name(spec.provider, client, server.get(A.SERVER_ADDRESS))
    attributes = {**spec.static, **server}
    # `gen_ai.system` too, for back-ends that still read it: its values are the same.
    attributes[A.GEN_AI_PROVIDER_NAME] = attributes[A.GEN_AI_SYSTEM] = provider
    if model:
        attributes[A.GEN_AI_REQUEST_MODEL] = model
        attributes[A.PINNED] = pinned
    if spec.headers:
        header_attributes(getattr(client, "_custom_headers", None), spec.headers, attributes)
    target = Target(provider, spec.operation, model, pinned, base_url, attributes)
    if len(_targets) >= 1024:  # an application that makes a client per request
        _targets.clear()
    _targets[(spec.site, id(client), model)] = target
    return target


def begin(ins: Instruments, spec: Spec, instance: Any, kwargs: dict[str, Any]) -> Call:
    """Start the span of a call with `kwargs`."""
    model = kwargs.get("model")
    if not isinstance(model, str):
        model = "" if model is None else str(model)
    client = instance._client
    # The attribute behind the SDKs' `base_url` property: openai's property imports a
    # module on every read.
    base_url = getattr(client, "_base_url", None)
    if base_url is None:
        base_url = client.base_url
    target = _targets.get((spec.site, id(client), model))
    if target is None or target.base_url is not base_url:
        target = _target(spec, client, base_url, model)
    attributes = target.attributes.copy()
    request_attributes(kwargs, spec.params, attributes)
    if spec.headers:
        extra_headers = kwargs.get("extra_headers")
        if extra_headers:
            header_attributes(extra_headers, spec.headers, attributes)
    if ins.capture_content:
        prompt = input_messages(kwargs)
        if prompt is not None:
            attributes[A.GEN_AI_INPUT_MESSAGES] = prompt
    return start_call(ins, target, attributes, request_user_id(kwargs))


def failed(spec: Spec, call: Call, error: BaseException) -> None:
    """End the span of a call that raised `error`, with the request id the error names
    (the id a provider's support asks for about a failure)."""
    attributes: dict[str, Any] = {}
    request_id(attributes, spec.request_id_attribute, getattr(error, "request_id", None))
    end_call(call, attributes or None, None, error)


def _raw_mode(kwargs: dict[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    return headers.get(_RAW_HEADER) if headers else None


def _finish_parsed(spec: Spec, call: Call, parsed: Any) -> None:
    if not reads_response(call):
        end_call(call, None, None)
        return
    attributes, usage = spec.extract(parsed)
    if captures_output(call):
        add_output_messages(attributes, spec.texts(parsed))
    end_call(call, attributes, usage)


def _wants_stream(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("stream") is True


def _adds_stream_usage(spec: Spec, options: Options) -> bool:
    """Whether the wrapper of `spec` asks for usage on streams (decided once per wrapper)."""
    # Opt-in only: the extra final chunk (empty `choices`) is visible to the application.
    return options.include_stream_usage and spec.operation == "chat" and spec.provider == "openai"


def _add_stream_usage(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` asking for usage on a stream, unless the caller said whether to. The
    SDK's `stream()` helper passes `stream_options` as its "omitted" sentinel, and an
    application may pass other stream options: both are added to, not taken as a no."""
    if not _wants_stream(kwargs):
        return kwargs
    options = kwargs.get("stream_options")
    if not isinstance(options, dict):
        return {**kwargs, "stream_options": {"include_usage": True}}
    if "include_usage" not in options:
        return {**kwargs, "stream_options": {**options, "include_usage": True}}
    return kwargs


def sync_wrapper(ins: Instruments, spec: Spec, options: Options) -> Callable[..., Any]:
    """The wrapper of a synchronous SDK method."""
    adds_usage = _adds_stream_usage(spec, options)

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            if adds_usage:
                kwargs = _add_stream_usage(kwargs)
            call = begin(ins, spec, instance, kwargs)
        except Exception:
            report(spec.site + ".start")
            return wrapped(*args, **kwargs)
        token = otel_context.attach(set_span_in_context(call.span))
        native = SUPPRESS_NATIVE.set(True) if spec.suppress_native else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            failed(spec, call, error)
            raise
        finally:
            if native is not None:
                SUPPRESS_NATIVE.reset(native)
            otel_context.detach(token)
        return finish_sync(ins, spec, call, kwargs, result)

    return traced


def finish_sync(ins: Instruments, spec: Spec, call: Call, kwargs: Any, result: Any) -> Any:
    """End (or hand to a stream proxy) the span of a call that returned `result`."""
    try:
        stream = kwargs.get("stream") is True
        if isinstance(result, spec.raw_types):
            if stream or _raw_mode(kwargs) == "stream":
                end_call(call, None, None)  # the body is the application's to read
            else:
                _finish_parsed(spec, call, _parse(result))
            return result
        if stream and spec.accumulator is not None:
            return SyncStream(result, call, spec.accumulator(ins.capture_content, result))
        _finish_parsed(spec, call, result)
    except Exception:
        report(spec.site + ".finish")
        _end_quietly(call)
    return result


def async_wrapper(ins: Instruments, spec: Spec, options: Options) -> Callable[..., Any]:
    """The wrapper of an asynchronous SDK method."""
    adds_usage = _adds_stream_usage(spec, options)

    async def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            if adds_usage:
                kwargs = _add_stream_usage(kwargs)
            call = begin(ins, spec, instance, kwargs)
        except Exception:
            report(spec.site + ".start")
            return await wrapped(*args, **kwargs)
        token = otel_context.attach(set_span_in_context(call.span))
        native = SUPPRESS_NATIVE.set(True) if spec.suppress_native else None
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            failed(spec, call, error)
            raise
        finally:
            if native is not None:
                SUPPRESS_NATIVE.reset(native)
            otel_context.detach(token)
        try:
            if isinstance(result, spec.raw_types):
                if _wants_stream(kwargs) or _raw_mode(kwargs) == "stream":
                    end_call(call, None, None)
                else:
                    parsed = _parse(result)
                    if inspect.isawaitable(parsed):
                        parsed = await parsed
                    _finish_parsed(spec, call, parsed)
                return result
            if _wants_stream(kwargs) and spec.accumulator is not None:
                return AsyncStream(result, call, spec.accumulator(ins.capture_content, result))
            _finish_parsed(spec, call, result)
        except Exception:
            report(spec.site + ".finish")
            _end_quietly(call)
        return result

    return traced


def _parse(raw_response: Any) -> Any:
    """The parsed body of a raw (`with_raw_response`) response; the SDK caches it."""
    return raw_response.parse()


def _end_quietly(call: Call) -> None:
    """End a call whose response could not be read. Every path that fails does so
    before `end_call` (which reports its own errors), so the call has not ended; a
    sampled-out span could not tell, and its call must still be counted."""
    try:
        end_call(call, None, None)
    except Exception:
        report("end_quietly")
