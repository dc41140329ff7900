"""OpenAI's background responses: how they ended, recorded when the application sees it.

`responses.create(background=True)` returns at once with the response queued. Its
usage, cost and finish exist only once it has finished, which the application learns
by retrieving it (polling `responses.retrieve(id)`) or from cancelling it. The create
call's span has ended long before, so the end goes into a record of its own, as
feedback does: a short `canarytrace.background_result` span carrying the response id,
which the loader joins to the call that created the response (its
`gen_ai.response.id`), also when another process retrieved it. Only a finished
background response is recorded, once per process; one retrieved as a stream
(`stream=True`) or through `with_streaming_response` is not read. A canary call's
end also goes to the route's error-rate breaker, when the process that created it sees
it: its creation did not count, since it said nothing of how the call would go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from canarytrace import attributes as A
from canarytrace.instrumentation import _extract as X
from canarytrace.instrumentation._call import (
    Instruments,
    add_usage,
    background_outcome,
    report,
)
from canarytrace.instrumentation.providers import provider_name

#: The response ids recorded by this process, oldest first (a dict keeps the order).
_recorded: dict[str, None] = {}
_REMEMBERED = 10_000


def sync_wrapper(ins: Instruments, legacy_raw: type[Any]) -> Callable[..., Any]:
    """The wrapper of `Responses.retrieve` / `.cancel`: the result, recorded if finished."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        _record_quietly(ins, instance, result, legacy_raw)
        return result

    return traced


def async_wrapper(ins: Instruments, legacy_raw: type[Any]) -> Callable[..., Any]:
    """`sync_wrapper` for `AsyncResponses.retrieve` / `.cancel`."""

    async def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = await wrapped(*args, **kwargs)
        _record_quietly(ins, instance, result, legacy_raw)
        return result

    return traced


def _record_quietly(ins: Instruments, instance: Any, result: Any, legacy_raw: type[Any]) -> None:
    try:
        if isinstance(result, legacy_raw):  # `with_raw_response`: parsed once, cached
            result = result.parse()
        if X.finished_in_background(result) and result.id not in _recorded:
            _remember(result.id)
            record(ins, instance._client, result)
    except Exception:
        report("openai.background")


def _remember(response_id: str) -> None:
    if len(_recorded) >= _REMEMBERED:
        del _recorded[next(iter(_recorded))]
    _recorded[response_id] = None


def record(ins: Instruments, client: Any, response: Any) -> None:
    """Emit the `canarytrace.background_result` record of a finished `response`."""
    base_url = getattr(client, "_base_url", None) or client.base_url
    host = X.server_attributes(base_url).get(A.SERVER_ADDRESS)
    provider = provider_name("openai", client, host)
    attributes, usage = X.openai_responses_response(response)
    attributes[A.GEN_AI_PROVIDER_NAME] = provider
    attributes.update(X.openai_background_end(response))
    if usage is not None:
        add_usage(attributes, provider, response.model, usage)
    ins.tracer.start_span(A.BACKGROUND_RESULT_SPAN_NAME, attributes=attributes).end()
    background_outcome(response.id, response.status)
