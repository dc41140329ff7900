"""OpenAI's background responses: how they ended, recorded when the application sees it.

`responses.create(background=True)` returns at once with the response queued. Its
usage, cost and finish exist only once it has finished, which the application learns
by retrieving it (polling `responses.retrieve(id)`), from cancelling it, or from the
end of its stream, resumed after a dropped connection with `retrieve(id, stream=True,
starting_after=...)` (whose events pass on unchanged).

The create call's span has ended long before, so the end goes into a record of its
own, as feedback does: a short `canarytrace.background_result` span carrying the
response id, which the loader joins to the call that created the response (its
`gen_ai.response.id`), also when another process retrieved it. A finished response is
recorded once per process; one retrieved through `with_streaming_response` is not read.

When the process that created the call sees it end, the end also counts where the
creation could not: its tokens and cost in the GenAI metrics and, for a canary call, its
outcome in the route's error-rate breaker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from canarytrace import attributes as A
from canarytrace.instrumentation import _extract as X
from canarytrace.instrumentation._call import (
    REMEMBERED_RESPONSES,
    Instruments,
    add_usage,
    background_end,
    remember,
    report,
)
from canarytrace.instrumentation.providers import provider_name
from canarytrace.instrumentation.streams import AsyncIteratingProxy, IteratingProxy

#: The response ids recorded by this process, oldest first.
_recorded: OrderedDict[str, None] = OrderedDict()
_REMEMBERED = REMEMBERED_RESPONSES


def sync_wrapper(ins: Instruments, legacy_raw: type[Any]) -> Callable[..., Any]:
    """The wrapper of `Responses.retrieve` / `.cancel`: the result, recorded if finished."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        return _handled(ins, instance, result, kwargs, legacy_raw, ResumedStream)

    return traced


def async_wrapper(ins: Instruments, legacy_raw: type[Any]) -> Callable[..., Any]:
    """`sync_wrapper` for `AsyncResponses.retrieve` / `.cancel`."""

    async def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = await wrapped(*args, **kwargs)
        return _handled(ins, instance, result, kwargs, legacy_raw, AsyncResumedStream)

    return traced


def _handled(
    ins: Instruments,
    instance: Any,
    result: Any,
    kwargs: dict[str, Any],
    legacy_raw: type[Any],
    resumed: Callable[[Any, Callable[[Any], None]], Any],
) -> Any:
    """`result` as the application gets it: a resumed stream watched for the event that
    ends the response, anything else as it is, its end recorded if it has ended."""
    streamed = kwargs.get("stream") is True
    if isinstance(result, legacy_raw):  # `with_raw_response`
        if not streamed:  # the SDK parses once and keeps it, for the application too
            _record_quietly(ins, instance, result.parse)
    elif streamed:
        try:
            return resumed(result, lambda end: _record_quietly(ins, instance, lambda: end))
        except Exception:
            report("openai.background")
    else:
        _record_quietly(ins, instance, lambda: result)
    return result


#: The events that end a Responses API stream, each carrying the response as it ended.
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResumedStream(IteratingProxy):
    """A background response's resumed stream, as the SDK returned it; the event that
    ends the response is handed to `on_end` (which never raises) as it passes."""

    def __init__(self, stream: Any, on_end: Callable[[Any], None]) -> None:
        super().__init__(stream)
        self._self_events = _watched(stream, on_end)


class AsyncResumedStream(AsyncIteratingProxy):
    """`ResumedStream` for the async client."""

    def __init__(self, stream: Any, on_end: Callable[[Any], None]) -> None:
        super().__init__(stream)
        self._self_events = _awatched(stream, on_end)


def _watched(stream: Any, on_end: Callable[[Any], None]) -> Iterator[Any]:
    for event in stream:
        if getattr(event, "type", None) in _ENDS:
            on_end(event.response)
        yield event


async def _awatched(stream: Any, on_end: Callable[[Any], None]) -> AsyncIterator[Any]:
    async for event in stream:
        if getattr(event, "type", None) in _ENDS:
            on_end(event.response)
        yield event


def _record_quietly(ins: Instruments, instance: Any, response_of: Callable[[], Any]) -> None:
    """Record the response `response_of` gives if it is a background one that ended and
    was not recorded yet; never raises."""
    try:
        response = response_of()
        if X.finished_in_background(response) and response.id not in _recorded:
            remember(_recorded, response.id, None, _REMEMBERED)
            record(ins, instance._client, response)
    except Exception:
        report("openai.background")


def record(ins: Instruments, client: Any, response: Any) -> None:
    """Emit the `canarytrace.background_result` record of a finished `response`."""
    base_url = getattr(client, "_base_url", None) or client.base_url
    host = X.server_attributes(base_url).get(A.SERVER_ADDRESS)
    provider = provider_name("openai", client, host)
    attributes, usage = X.openai_responses_response(response)
    attributes[A.GEN_AI_PROVIDER_NAME] = provider
    attributes.update(X.openai_background_end(response))
    cost = None
    if usage is not None:
        cost = add_usage(attributes, provider, response.model, usage)
    ins.tracer.start_span(A.BACKGROUND_RESULT_SPAN_NAME, attributes=attributes).end()
    background_end(response.id, response.status, response.model, usage, cost)
