"""Stream proxies that end an LLM call's span exactly once, however the stream ends.

`SyncStream` and `AsyncStream` are `wrapt.ObjectProxy`s around the SDK's stream, so
every attribute and helper of the SDK object (`response`, `request_id`, ...) passes
through and `isinstance` checks keep working. They override only iteration, `close()`
and the context-manager methods, and end the span when the stream is exhausted, closed,
left through `with`, raises, or is garbage-collected unconsumed (a caller that breaks
off after one chunk). A provider supplies an `Accumulator` that reads the events; the
proxies hand them over from one generator per stream (async: an async generator). That
generator reads the SDK stream's private `_iterator` itself when the SDK's `__iter__`
only hands its items on (`sdk_iterator`), so an event takes one generator step, not two.

Anthropic's `messages.stream()` returns a manager that makes the request on `__enter__`;
`wrap_stream_manager` swaps the manager's request callable for one that returns a
`SyncStream`/`AsyncStream`, so `text_stream`, `get_final_message()` and `until_done()`
(which all read the raw stream) are covered too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, Protocol

import wrapt

from canarytrace import attributes as A
from canarytrace.instrumentation._call import (
    Call,
    captures_output,
    end_call,
    reads_response,
    report,
)
from canarytrace.instrumentation._extract import Usage, add_output_messages


class Accumulator(Protocol):
    """Reads a provider's stream events; one per stream.

    The readers subclass it (for `process_late`'s default); its empty `__slots__` keeps
    theirs effective, so a reader has no per-instance `__dict__`.
    """

    __slots__ = ()

    first_token: float | None  # perf_counter() of the first output token seen
    capture: bool  # whether the text is kept (content capture on)
    # The event types `process` still needs once the first token is seen and the text is
    # not kept. The readers skip the `process` call for the others, which are most events
    # of a stream (text deltas, block starts and stops). None: the events are chunks with
    # no `type` (OpenAI chat: `choices` with a `finish_reason`, and `usage`), and only
    # those that end a choice or have no choices reach `process_late`. Usage comes on
    # those: OpenAI sends it on a last chunk without choices, other providers with the
    # ending, and those that count on every chunk count on the ending's too. Checking
    # every chunk's `usage` would cost one pydantic attribute read per chunk.
    late: ClassVar[frozenset[str] | None]

    def process(self, event: Any) -> None: ...

    def process_late(self, chunk: Any) -> None:
        """`process` for a chunk that ends a choice or has none, once the first token
        is seen and the text is not kept (`late` None)."""
        self.process(chunk)

    def result(self) -> tuple[dict[str, Any], Usage | None]: ...

    def texts(self) -> list[str]: ...


class _PassOn:
    """The shapes of an SDK stream's `__iter__`/`__aiter__` that only hand on the items of
    the stream's private `_iterator`: openai 3.x's, and anthropic 2.x's, which also tells
    its native tracing's observer (absent while canarytrace traces the call)."""

    _iterator: Any
    _observer: Any

    def plain(self) -> Iterator[Any]:
        # The SDK's words exactly (not `yield from`): the bytecode is what is compared.
        for item in self._iterator:  # noqa: UP028
            yield item

    def observed(self) -> Iterator[Any]:
        for item in self._iterator:
            if (observer := self._observer) is not None:
                observer.item(item)
            yield item

    async def aplain(self) -> AsyncIterator[Any]:
        async for item in self._iterator:
            yield item

    async def aobserved(self) -> AsyncIterator[Any]:
        async for item in self._iterator:
            if (observer := self._observer) is not None:
                observer.item(item)
            yield item


def _shape(method: Any) -> tuple[Any, ...] | None:
    code = getattr(method, "__code__", None)
    return None if code is None else (code.co_code, code.co_names, code.co_consts)


#: Pass-on shape -> whether it tells an observer (which must then be absent).
_PASS_ON = {
    _shape(_PassOn.plain): False,
    _shape(_PassOn.aplain): False,
    _shape(_PassOn.observed): True,
    _shape(_PassOn.aobserved): True,
}
#: An SDK stream class's `__iter__`/`__aiter__` -> its `_PASS_ON` entry, None if not one.
#: Keyed by the method itself, so a method patched in later is judged afresh.
_pass_on_methods: dict[Any, bool | None] = {}


def sdk_iterator(stream: Any, method_name: str) -> Any | None:
    """The `_iterator` behind `stream`'s `method_name` when that method only hands its
    items on, else None.

    Reading it directly replaces the SDK's generator step (and anthropic's observer
    lookup) on every event with the proxy's own, instead of stacking one on the other.
    The SDK's method is compared, once, with the pass-on shapes compiled here, so a
    version or subclass whose iteration does more keeps it.
    """
    try:
        method = getattr(type(stream), method_name, None)
        if method in _pass_on_methods:
            observed = _pass_on_methods[method]
        else:
            observed = _pass_on_methods[method] = _PASS_ON.get(_shape(method))
        if observed is None or (observed and stream._observer is not None):
            return None
        return stream._iterator
    except Exception:
        report("stream.source")
        return None


class _Finisher:
    """The end-once logic shared by both proxies (kept off the proxies' attribute space).

    Held by the proxy and by the proxy's event generator, and by nothing else, so it is
    freed when the last of them is: a stream dropped unconsumed or half read ends its
    span in `__del__`, promptly (no reference cycle), whichever of the two goes last.
    """

    __slots__ = ("acc", "call", "done", "first_chunk")

    def __init__(self, call: Call, acc: Accumulator) -> None:
        self.call = call
        self.acc = acc
        self.done = False
        self.first_chunk: float | None = None

    def read(self, stream: Any) -> Iterator[Any]:
        """The events of a sync `stream`, read by the accumulator; ends the span when they
        end. A generator, so the per-event cost is one resumption rather than a proxy
        method, a helper and `process` (a stream has hundreds of events). Once the first
        token is seen (and the text is not kept), only the events the accumulator still
        needs reach it: `late` types, or chunks that end a choice or have none. Those
        checks are inline: a call per event cost more than the rest of the step."""
        acc = self.acc
        process = acc.process
        try:
            events = sdk_iterator(stream, "__iter__")
            if events is None:
                events = iter(stream)  # the SDK's own iterator, as a plain `for` would use
            for event in events:
                if self.first_chunk is None:
                    self.first_chunk = time.perf_counter()
                try:
                    process(event)
                except Exception:
                    report("stream.process")
                yield event
                if acc.first_token is not None and not acc.capture:
                    break
            late = acc.late
            if late is None:
                process_late = acc.process_late
                for event in events:
                    try:
                        choices = event.choices
                        if not choices:  # OpenAI's usage chunk
                            process_late(event)
                        else:
                            for choice in choices:
                                if choice.finish_reason:
                                    process_late(event)
                                    break
                    except Exception:
                        report("stream.process")
                    yield event
            else:
                for event in events:
                    try:
                        if event.type in late:
                            process(event)
                    except Exception:
                        report("stream.process")
                    yield event
        except GeneratorExit:  # closed by the application, or collected half read
            self.end(None)
            raise
        except BaseException as error:
            self.end(error)
            raise
        self.end(None)

    async def aread(self, stream: Any) -> AsyncIterator[Any]:
        """`read` for an async `stream`: the same steps, in an async generator."""
        acc = self.acc
        process = acc.process
        try:
            events = sdk_iterator(stream, "__aiter__")
            if events is None:
                events = stream.__aiter__()  # the SDK's own, as a plain `async for` would use
            async for event in events:
                if self.first_chunk is None:
                    self.first_chunk = time.perf_counter()
                try:
                    process(event)
                except Exception:
                    report("stream.process")
                yield event
                if acc.first_token is not None and not acc.capture:
                    break
            late = acc.late
            if late is None:
                process_late = acc.process_late
                async for event in events:
                    try:
                        choices = event.choices
                        if not choices:  # OpenAI's usage chunk
                            process_late(event)
                        else:
                            for choice in choices:
                                if choice.finish_reason:
                                    process_late(event)
                                    break
                    except Exception:
                        report("stream.process")
                    yield event
            else:
                async for event in events:
                    try:
                        if event.type in late:
                            process(event)
                    except Exception:
                        report("stream.process")
                    yield event
        except GeneratorExit:  # closed by the application, or finalized half read
            self.end(None)
            raise
        except BaseException as error:
            self.end(error)
            raise
        self.end(None)

    def __del__(self) -> None:
        self.end(None)

    def end(self, error: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        try:
            call = self.call
            attributes = usage = None
            if reads_response(call):
                acc = self.acc
                attributes, usage = acc.result()
                if self.first_chunk is not None:
                    ttfc = self.first_chunk - call.start
                    attributes[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
                if acc.first_token is not None:
                    ttft_ms = (acc.first_token - call.start) * 1000.0
                    attributes[A.TIME_TO_FIRST_TOKEN_MS] = ttft_ms
                if captures_output(call):
                    add_output_messages(attributes, acc.texts())
            end_call(call, attributes, usage, error)
        except Exception:
            report("stream.end")


class IteratingProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """An SDK stream whose events go through the proxy's generator `_self_events` (set
    by the subclass), also inside `with`, which gives the proxy, not the SDK's stream.

    Like the SDK's own `__iter__`, a generator; one per proxy, so `next()` and `for`
    share it. The proxy holds it (not the reverse), so dropping the proxy frees both.
    """

    _self_events: Iterator[Any]

    def __iter__(self) -> Iterator[Any]:
        return self._self_events

    def __next__(self) -> Any:
        return next(self._self_events)

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return self.__wrapped__.__exit__(exc_type, exc, tb)


class AsyncIteratingProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """`IteratingProxy` for an async SDK stream (`async for`, `async with`)."""

    _self_events: AsyncIterator[Any]

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_events

    async def __anext__(self) -> Any:
        return await self._self_events.__anext__()

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await self.__wrapped__.__aexit__(exc_type, exc, tb)


class SyncStream(IteratingProxy):
    """A synchronous SDK stream that ends its call's span exactly once."""

    def __init__(self, stream: Any, call: Call, acc: Accumulator) -> None:
        super().__init__(stream)
        self._self_finisher = finisher = _Finisher(call, acc)
        # A generator never started ends nothing: the finisher's `__del__` ends the span.
        self._self_events = finisher.read(stream)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_finisher.end(None)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_finisher.end(None)


class AsyncStream(AsyncIteratingProxy):
    """An asynchronous SDK stream that ends its call's span exactly once."""

    def __init__(self, stream: Any, call: Call, acc: Accumulator) -> None:
        super().__init__(stream)
        self._self_finisher = finisher = _Finisher(call, acc)
        # As `SyncStream`'s: one async generator per proxy, held by the proxy.
        self._self_events = finisher.aread(stream)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_finisher.end(None)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_finisher.end(None)


def _end_stream_under(helper: Any) -> None:
    """End the span of the proxied SDK stream a helper stream reads (`_raw_stream`)."""
    try:
        finisher = getattr(getattr(helper, "_raw_stream", None), "_self_finisher", None)
        if isinstance(finisher, _Finisher):
            finisher.end(None)
    except Exception:
        report("stream.helper_close")


def close_helper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """The wrapper of a helper stream's `close()` that closes the HTTP response itself
    (OpenAI's `ChatCompletionStream`, `ResponseStream`), never the stream it reads: it
    ends that stream's span too, or a helper left early kept its span open until the
    garbage collector found the helper's reference cycle, with the wrong duration, or
    lost it at exit."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        _end_stream_under(instance)


async def aclose_helper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """`close_helper` for the async helpers."""
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _end_stream_under(instance)


def wrap_stream_manager(
    manager: Any,
    open_sync: Callable[[Callable[[], Any]], Any] | None = None,
    open_async: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
) -> bool:
    """Route an Anthropic stream manager's request through `open_sync`/`open_async`.

    The manager keeps its request in a name-mangled attribute (`_<Class>__api_request`);
    the replacement makes the same request and returns it wrapped in a stream proxy. Returns
    False, leaving the manager as it is, when the SDK no longer has that attribute.
    """
    attribute = f"_{type(manager).__name__}__api_request"
    request = getattr(manager, attribute, None)
    if request is None:
        return False
    if open_async is not None:
        setattr(manager, attribute, open_async(request))
    elif open_sync is not None:
        setattr(manager, attribute, lambda: open_sync(request))
    return True
