"""Per-call overhead of canarytrace's instrumentation, against the floor and the peers.

Every variant makes the same SDK calls (openai chat, openai chat streamed with 20
chunks, anthropic messages, anthropic messages streamed with 20 events; `--stream-chunks`
sets another length: per event, canarytrace's anthropic reader adds no more Python
instructions than the by-hand loop, its openai reader adds more; and, through the async
clients, the openai stream and the anthropic call, one per async path of canarytrace,
each run to completion on the process's event loop) through an in-process
`httpx2.MockTransport` that answers at once, with one `SimpleSpanProcessor` to a
counting no-op exporter, in a fresh interpreter per variant:

- `bare (by hand)` the floor that decides the goal: the most direct code a careful
                engineer would write inline around one call for a span with the same
                attributes as canarytrace's (19 to 21): the request attributes read from
                the call's kwargs, the span made current (attach/detach, as
                `start_as_current_span` does, so child spans nest), the response
                attributes read from the response object (id, model, finish reasons,
                usage, drift, cost from a price per token, the request id the SDK
                kept), a stream iterated directly with its first chunk's time and its
                finish reason and usage taken from the chunks (its request id from its
                HTTP response's headers), no error handling beyond a try/finally that
                ends the span; what is known when such code is written (server, route,
                tier, pin, prices) is set once;
- `bare (wrapt)`  (synchronous calls only) the by-hand span's code moved behind the
                mechanism issue 5 asks for: a `wrapt` wrapper on the SDKs' `create`
                methods and, for a stream, a
                `wrapt.ObjectProxy` whose generator reads the chunks and ends the span;
                nothing of what an instrumentation must do besides (routing, errors kept
                from the application, one end however a stream ends): what any
                instrumentation built that way costs at least;
- `bare (constants)` (synchronous calls only) the same span with hard-coded constant
                attributes, never made current: cheaper than any instrumentation can be,
                since an instrumentation has to read the values it records and must make
                its span current (the floor of earlier runs, shown beside for comparison);
- `nothing (drift)` switches nothing on, so both halves time the same uninstrumented
                calls: its "overhead" is how much a process drifts between the halves,
                which every variant's difference holds too;
- `canarytrace` `canarytrace.instrument()`, anthropic's native tracing left at its default;
- `openllmetry` `opentelemetry-instrumentation-openai`/`-anthropic` 0.62 (native tracing off,
                which is their best case: left on it doubles the spans);
- `openai-v2`   the official `opentelemetry-instrumentation-openai-v2` 2.4b0 (openai only);
- `anthropic-native` anthropic 2.x's own tracing (anthropic only).

Peers run from their own virtualenvs under `${XDG_CACHE_HOME:-~/.cache}/canarytrace/
bench-venvs`, made with `uv` on first use (openai-v2 needs `httpx` and
`opentelemetry-util-genai<1.2` added to import next to openai 3.x; see PEERS.md). If
one cannot be made, the run stops before timing anything (`--no-peers` skips them).

Each process measures its variant against the uninstrumented calls *in the same
process*, as an application runs it: all rounds of uninstrumented calls first, then the
instrumentation switched on once and its rounds, in CPU time (`time.process_time`),
keeping each side's fastest round. Comparing within one process keeps
process-to-process differences out of a difference of a few tens of µs on calls of
hundreds; load that changes between the two halves does not cancel (see below).
After switching on, `SETTLE` untimed calls of each scenario run before the first timed
round: patching an SDK class invalidates the interpreter's specialised attribute
lookups on it, and the calls that follow pay to re-specialise them (measured for
canarytrace on the openai call, median µs above the uninstrumented call: +400 on the
first call after `instrument()`, +130 on the next four, +88 on calls 5-20, +76 by call
40), which an application pays once at start-up.
Every variant runs the same order (the by-hand span too, which switches nothing), so a
process that speeds up or slows down as it runs moves all of them alike. Earlier runs
alternated on and off rounds, switching the instrumentation every round, which made
canarytrace look cheaper than instrumenting once does (bench/README.md, "Why the order
changed"). This order is noisier, since a process's drift between its two halves stays
in the difference: read the medians over many processes, not single ones.
Each worker first shuffles its heap (`_shuffle_heap`: a random number of small objects
of random sizes, a random share kept), so that the processes of a variant sample many
memory layouts rather than one: a fixed start-up layout biases a difference of this
size (the paired runs that showed it are in bench/README.md). The seed and the objects
kept are in each process's results.
The table reports the median over processes of that overhead, and the overhead divided
by the by-hand span's (the goal is <= 1.5x), with the ratio to the constants span
beside it. Absolute times move with the machine; compare the ratios. Last, canarytrace's
ratio per scenario, its overhead and the by-hand span's each less the median drift, with
a 95% bootstrap interval (the processes of all three resampled) and whether that interval
lies within the goal: `met`, `missed`, `on the line` when it straddles 1.5x, which more
processes may settle, or `too noisy` when it reaches zero.
Then the same ratio for the wrapt floor against the by-hand span (what the mechanism
alone takes of the 1.5x) and for canarytrace against the wrapt floor (what its own logic
adds).

    .venv/bin/python bench/bench_instrumentation.py [--processes 3] [--calls 100] [--no-peers]
        [--stream-chunks 20]
        [--only anthropic 'anthropic stream'] [--side-by-side] [--callgrind]
        [--save runs.json] [--load runs.json ...]

`--side-by-side` measures canarytrace and the by-hand span together, in each of
`--processes` fresh processes (heap shuffled as for the table), their rounds alternating
in a new random order each time (the by-hand span around the SDK's own methods, which
canarytrace's wrappers keep as `__wrapped__`). A slow phase of the machine hits all three
alike, so a process's two overheads hold no drift between halves, and the processes are
resampled in pairs. Each variant's code keeps one memory layout for the whole process,
which can move its time by tens of µs; many processes sample many layouts. It leaves out
what canarytrace's presence costs the SDK's own methods, which the table's protocol keeps
in (its uninstrumented calls run before canarytrace is switched on).

`--save` writes every process's results to a JSON file as they come; `--load` prints the
table (or the side-by-side lines) of one or more such files, their processes pooled.

`--callgrind` prints, instead of times, the machine instructions each variant adds to a
call, C included, counted by valgrind's callgrind (see `count_instructions`): a measure
of the work done that a busy machine does not disturb, though not of its time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SYNC_SCENARIOS = ("openai", "openai stream", "anthropic", "anthropic stream")
# One per async path of canarytrace: the async stream proxy, and the async wrapper.
ASYNC_SCENARIOS = ("async openai stream", "async anthropic")
SCENARIOS = (*SYNC_SCENARIOS, *ASYNC_SCENARIOS)
# Untimed calls of each scenario after switching on (see the module docstring).
SETTLE = 40
OPENAI_MODEL = "gpt-4o-2024-11-20"
CLAUDE_MODEL = "claude-3-5-sonnet-20241022"
# USD per input and output token, as a span written for these models would hard-code them.
PRICES = {OPENAI_MODEL: (2.5e-6, 10e-6), CLAUDE_MODEL: (3e-6, 15e-6)}
REQUEST_ID = "req_bench"
# Events of each streamed reply; `--stream-chunks` changes it (every process gets it).
STREAM_CHUNKS = 20
REPO = Path(__file__).resolve().parent.parent

PEER_VENVS: dict[str, list[str]] = {
    "openllmetry": [
        "openai==3.57.0",
        "anthropic==2.14.0",
        "opentelemetry-sdk==1.45.2",
        "opentelemetry-instrumentation-openai==0.62.4",
        "opentelemetry-instrumentation-anthropic==0.62.4",
    ],
    "openai-v2": [
        "openai==3.57.0",
        "anthropic==2.14.0",
        "opentelemetry-sdk==1.45.2",
        "opentelemetry-instrumentation-openai-v2==2.4b0",
        "opentelemetry-util-genai<1.2",
        "httpx",
    ],
}
BY_HAND, CONSTANTS, WRAPT = "bare (by hand)", "bare (constants)", "bare (wrapt)"
# Switches nothing on: both halves time the same uninstrumented calls, so its "overhead"
# is what a process drifts between them, which every variant's difference also holds.
DRIFT = "nothing (drift)"
# The worker of `--side-by-side`: canarytrace and the by-hand span in one process.
SIDE_BY_SIDE = "side by side"
OURS = (BY_HAND, WRAPT, CONSTANTS, DRIFT, "canarytrace")
VARIANTS = (*OURS, "openllmetry", "openai-v2", "anthropic-native")
SKIP = {("openai-v2", "anthropic"), ("openai-v2", "anthropic stream")}
SKIP |= {("anthropic-native", "openai"), ("anthropic-native", "openai stream")}
SKIP |= {("openai-v2", "async anthropic"), ("anthropic-native", "async openai stream")}
# The wrapt floor and the constants span are built for the synchronous calls only.
SKIP |= {(variant, s) for variant in (WRAPT, CONSTANTS) for s in ASYNC_SCENARIOS}
# Issue 5's goal: canarytrace's overhead at most this multiple of the by-hand span's.
GOAL = 1.5
# Bootstrap resamples of the processes behind each ratio's 95% interval.
RESAMPLES = 2000


# --- the worker: runs inside the variant's interpreter ------------------------------------


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def _bodies() -> dict[str, bytes]:
    usage = {"prompt_tokens": 42, "completion_tokens": 20, "total_tokens": 62}
    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": OPENAI_MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1}
    base["model"] = OPENAI_MODEL
    chunks: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, {**base, "choices": [{"index": 0, "delta": {"content": f"w{n} "}}]})
        for n in range(STREAM_CHUNKS - 1)
    ]
    chunks.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    chunks.append((None, "[DONE]"))
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE_MODEL,
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 42, "output_tokens": 20},
    }
    start_usage = {"input_tokens": 42, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    block = {"type": "text", "text": ""}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
    ]
    for n in range(STREAM_CHUNKS - 4):
        delta = {"type": "text_delta", "text": f"w{n} "}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return {
        "chat": json.dumps(chat).encode(),
        "chat stream": _sse(chunks),
        "messages": json.dumps(message).encode(),
        "messages stream": _sse(events),
    }


def _handler() -> Callable[[Any], Any]:
    """The in-process API: each request answered at once with its canned reply."""
    import httpx2

    bodies = _bodies()
    # Each reply names its request, as the providers' do: OpenAI in `x-request-id`,
    # Anthropic in `request-id`.
    headers = {
        f"{kind}{stream}": {
            "content-type": "text/event-stream" if stream else "application/json",
            "x-request-id" if kind == "chat" else "request-id": REQUEST_ID,
        }
        for kind in ("chat", "messages")
        for stream in ("", " stream")
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        stream = b'"stream":true' in request.content or b'"stream": true' in request.content
        kind = "chat" if request.url.path.endswith("/chat/completions") else "messages"
        key = f"{kind} stream" if stream else kind
        return httpx2.Response(200, headers=headers[key], content=bodies[key])

    return handler


def _clients(native: bool) -> tuple[Any, Any]:
    import anthropic
    import httpx2
    import openai

    transport = httpx2.MockTransport(_handler())
    oa = openai.OpenAI(
        api_key="k", base_url="http://bench/v1", http_client=httpx2.Client(transport=transport)
    )
    an = anthropic.Anthropic(
        api_key="k",
        base_url="http://bench",
        http_client=httpx2.Client(transport=transport),
        open_telemetry=None if native else False,
    )
    return oa, an


def _async_clients(native: bool) -> tuple[Any, Any]:
    """`_clients`, async: `AsyncOpenAI` and `AsyncAnthropic` on the same in-process API."""
    import anthropic
    import httpx2
    import openai

    handler = _handler()

    async def answer(request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return handler(request)

    transport = httpx2.MockTransport(answer)
    oa = openai.AsyncOpenAI(
        api_key="k", base_url="http://bench/v1", http_client=httpx2.AsyncClient(transport=transport)
    )
    an = anthropic.AsyncAnthropic(
        api_key="k",
        base_url="http://bench",
        http_client=httpx2.AsyncClient(transport=transport),
        open_telemetry=None if native else False,
    )
    return oa, an


def _async_calls(oa: Any, an: Any, run: Callable[[Any], Any]) -> dict[str, Any]:
    """The async scenarios, each a coroutine `run` to completion on the process's loop
    (the loop's own cost is in the uninstrumented call too)."""
    messages = [{"role": "user", "content": "Say hi"}]

    async def openai_stream() -> Any:
        stream = await oa.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, temperature=0.2, max_tokens=64, stream=True
        )
        async for _ in stream:
            pass

    async def anthropic_call() -> Any:
        return await an.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=messages)

    return {
        "async openai stream": lambda: run(openai_stream()),
        "async anthropic": lambda: run(anthropic_call()),
    }


def _calls(oa: Any, an: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Say hi"}]

    def openai_call() -> Any:
        return oa.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, temperature=0.2, max_tokens=64
        )

    def openai_stream() -> Any:
        for _ in oa.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, temperature=0.2, max_tokens=64, stream=True
        ):
            pass

    def anthropic_call() -> Any:
        return an.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=messages)

    def anthropic_stream() -> Any:
        for _ in an.messages.create(
            model=CLAUDE_MODEL, max_tokens=64, messages=messages, stream=True
        ):
            pass

    return {
        "openai": openai_call,
        "openai stream": openai_stream,
        "anthropic": anthropic_call,
        "anthropic stream": anthropic_stream,
    }


def _constants(tracer: Any, calls: dict[str, Any]) -> dict[str, Any]:
    """Each call inside one hand-made span with constant attributes, never current."""
    from opentelemetry.trace import SpanKind

    def request(provider: str, model: str, stream: bool) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": 64,
            "server.address": "bench",
            "server.port": 80,
            "canarytrace.route": "chat",
            "canarytrace.tier": "production",
            "canarytrace.pinned": True,
            # canarytrace always records whether the call streamed
            "gen_ai.request.stream": stream,
        }
        if provider == "openai":  # the openai calls also pass a temperature
            attrs["gen_ai.request.temperature"] = 0.2
        return attrs

    def response(provider: str, model: str, stream: bool) -> dict[str, Any]:
        attrs = {
            "gen_ai.response.id": "x",
            "gen_ai.response.model": model,
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.usage.output_tokens": 20,
            "canarytrace.alias_drift": False,
            "canarytrace.cost_usd": 0.0003,
            f"{provider}.request.id": REQUEST_ID,
        }
        if stream:  # and, for a stream, when its first chunk and first token came
            attrs["gen_ai.response.time_to_first_chunk"] = 0.0004
            attrs["canarytrace.time_to_first_token_ms"] = 0.4
            if provider == "openai":  # an openai stream reports no usage unless asked to
                for name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
                    del attrs[name]
                del attrs["canarytrace.cost_usd"]
        return attrs

    def wrap(name: str, provider: str, model: str, stream: bool) -> Any:
        call = calls[name]

        def traced() -> Any:
            span = tracer.start_span(
                f"chat {model}", kind=SpanKind.CLIENT, attributes=request(provider, model, stream)
            )
            result = call()
            span.set_attributes(response(provider, model, stream))
            span.end()
            return result

        return traced

    return {
        "openai": wrap("openai", "openai", OPENAI_MODEL, False),
        "openai stream": wrap("openai stream", "openai", OPENAI_MODEL, True),
        "anthropic": wrap("anthropic", "anthropic", CLAUDE_MODEL, False),
        "anthropic stream": wrap("anthropic stream", "anthropic", CLAUDE_MODEL, True),
    }


def _site(client: Any, provider: str, route: str, tier: str) -> dict[str, Any]:
    """The attributes a span written for calls through `client` knows in advance: the
    server, and the route, tier and pin of its model."""
    url = client.base_url
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "server.address": url.host,
        "server.port": url.port or 80,
        "canarytrace.route": route,
        "canarytrace.tier": tier,
        "canarytrace.pinned": True,
    }


def _by_hand(tracer: Any, oa: Any, an: Any) -> dict[str, Any]:
    """Each call inside a span written by hand for it, with what canarytrace records.

    What is known when the code is written is set once: the server (from the client),
    the route, tier and pin of the model, and its price per token. Everything else is
    read from the call's kwargs and from the response or the stream's chunks.
    """
    from opentelemetry import context
    from opentelemetry.trace import SpanKind, set_span_in_context

    client = SpanKind.CLIENT
    messages = [{"role": "user", "content": "Say hi"}]

    openai_site = _site(oa, "openai", "summarize", "canary")
    anthropic_site = _site(an, "anthropic", "chat", "production")
    (gpt_in, gpt_out), (claude_in, claude_out) = PRICES[OPENAI_MODEL], PRICES[CLAUDE_MODEL]

    def openai_call() -> Any:
        kwargs = {"model": OPENAI_MODEL, "messages": messages, "temperature": 0.2}
        kwargs["max_tokens"] = 64
        model = kwargs["model"]
        attributes = {
            **openai_site,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": kwargs["temperature"],
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": False,
        }
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            response = oa.chat.completions.create(**kwargs)
            usage = response.usage
            span.set_attributes(
                {
                    "openai.request.id": response._request_id,
                    "gen_ai.response.id": response.id,
                    "gen_ai.response.model": response.model,
                    "gen_ai.response.finish_reasons": [c.finish_reason for c in response.choices],
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "canarytrace.alias_drift": response.model != model,
                    "canarytrace.cost_usd": usage.prompt_tokens * gpt_in
                    + usage.completion_tokens * gpt_out,
                }
            )
            return response
        finally:
            context.detach(token)
            span.end()

    def openai_stream() -> Any:
        kwargs = {"model": OPENAI_MODEL, "messages": messages, "temperature": 0.2}
        kwargs["max_tokens"], kwargs["stream"] = 64, True
        model = kwargs["model"]
        attributes = {
            **openai_site,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": kwargs["temperature"],
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": True,
        }
        start = time.perf_counter()
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            first = response_id = response_model = None
            reasons = []
            stream = oa.chat.completions.create(**kwargs)
            for chunk in stream:
                if first is None:
                    first = time.perf_counter() - start
                    response_id, response_model = chunk.id, chunk.model
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
            span.set_attributes(
                {
                    "openai.request.id": stream.response.headers.get("x-request-id"),
                    "gen_ai.response.id": response_id,
                    "gen_ai.response.model": response_model,
                    "gen_ai.response.finish_reasons": reasons,
                    "gen_ai.response.time_to_first_chunk": first,
                    "canarytrace.time_to_first_token_ms": first * 1000.0,
                    "canarytrace.alias_drift": response_model != model,
                }
            )
        finally:
            context.detach(token)
            span.end()

    def anthropic_call() -> Any:
        kwargs = {"model": CLAUDE_MODEL, "max_tokens": 64, "messages": messages}
        model = kwargs["model"]
        attributes = {
            **anthropic_site,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": False,
        }
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            response = an.messages.create(**kwargs)
            usage = response.usage
            span.set_attributes(
                {
                    "anthropic.request.id": response._request_id,
                    "gen_ai.response.id": response.id,
                    "gen_ai.response.model": response.model,
                    "gen_ai.response.finish_reasons": [response.stop_reason],
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "canarytrace.alias_drift": response.model != model,
                    "canarytrace.cost_usd": usage.input_tokens * claude_in
                    + usage.output_tokens * claude_out,
                }
            )
            return response
        finally:
            context.detach(token)
            span.end()

    def anthropic_stream() -> Any:
        kwargs = {"model": CLAUDE_MODEL, "max_tokens": 64, "messages": messages, "stream": True}
        model = kwargs["model"]
        attributes = {
            **anthropic_site,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": True,
        }
        start = time.perf_counter()
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            first = message = reason = None
            output_tokens = 0
            stream = an.messages.create(**kwargs)
            for event in stream:
                if first is None:
                    first = time.perf_counter() - start
                kind = event.type
                if kind == "message_start":
                    message = event.message
                elif kind == "message_delta":
                    reason, output_tokens = event.delta.stop_reason, event.usage.output_tokens
            input_tokens = message.usage.input_tokens
            span.set_attributes(
                {
                    "anthropic.request.id": stream.response.headers.get("request-id"),
                    "gen_ai.response.id": message.id,
                    "gen_ai.response.model": message.model,
                    "gen_ai.response.finish_reasons": [reason],
                    "gen_ai.response.time_to_first_chunk": first,
                    "canarytrace.time_to_first_token_ms": first * 1000.0,
                    "canarytrace.alias_drift": message.model != model,
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "canarytrace.cost_usd": input_tokens * claude_in + output_tokens * claude_out,
                }
            )
        finally:
            context.detach(token)
            span.end()

    return {
        "openai": openai_call,
        "openai stream": openai_stream,
        "anthropic": anthropic_call,
        "anthropic stream": anthropic_stream,
    }


def _by_hand_async(tracer: Any, oa: Any, an: Any, run: Callable[[Any], Any]) -> dict[str, Any]:
    """The by-hand span of `_by_hand` around the async scenarios: the same code, awaited."""
    from opentelemetry import context
    from opentelemetry.trace import SpanKind, set_span_in_context

    client = SpanKind.CLIENT
    messages = [{"role": "user", "content": "Say hi"}]

    openai_site = _site(oa, "openai", "summarize", "canary")
    anthropic_site = _site(an, "anthropic", "chat", "production")
    claude_in, claude_out = PRICES[CLAUDE_MODEL]

    async def openai_stream() -> Any:
        kwargs = {"model": OPENAI_MODEL, "messages": messages, "temperature": 0.2}
        kwargs["max_tokens"], kwargs["stream"] = 64, True
        model = kwargs["model"]
        attributes = {
            **openai_site,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": kwargs["temperature"],
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": True,
        }
        start = time.perf_counter()
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            first = response_id = response_model = None
            reasons = []
            stream = await oa.chat.completions.create(**kwargs)
            async for chunk in stream:
                if first is None:
                    first = time.perf_counter() - start
                    response_id, response_model = chunk.id, chunk.model
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
            span.set_attributes(
                {
                    "openai.request.id": stream.response.headers.get("x-request-id"),
                    "gen_ai.response.id": response_id,
                    "gen_ai.response.model": response_model,
                    "gen_ai.response.finish_reasons": reasons,
                    "gen_ai.response.time_to_first_chunk": first,
                    "canarytrace.time_to_first_token_ms": first * 1000.0,
                    "canarytrace.alias_drift": response_model != model,
                }
            )
        finally:
            context.detach(token)
            span.end()

    async def anthropic_call() -> Any:
        kwargs = {"model": CLAUDE_MODEL, "max_tokens": 64, "messages": messages}
        model = kwargs["model"]
        attributes = {
            **anthropic_site,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
            "gen_ai.request.stream": False,
        }
        span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
        token = context.attach(set_span_in_context(span))
        try:
            response = await an.messages.create(**kwargs)
            usage = response.usage
            span.set_attributes(
                {
                    "anthropic.request.id": response._request_id,
                    "gen_ai.response.id": response.id,
                    "gen_ai.response.model": response.model,
                    "gen_ai.response.finish_reasons": [response.stop_reason],
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "canarytrace.alias_drift": response.model != model,
                    "canarytrace.cost_usd": usage.input_tokens * claude_in
                    + usage.output_tokens * claude_out,
                }
            )
            return response
        finally:
            context.detach(token)
            span.end()

    return {
        "async openai stream": lambda: run(openai_stream()),
        "async anthropic": lambda: run(anthropic_call()),
    }


def _wrapt_floor(tracer: Any, oa: Any, an: Any) -> Any:
    """What switches on the by-hand span's code moved behind the mechanism issue 5 asks
    for: a `wrapt` wrapper on the SDK's `create` methods, and for a stream a
    `wrapt.ObjectProxy` whose generator reads the chunks and ends the span.

    The same reads and attributes as `_by_hand`, and nothing of what an instrumentation
    must also do (routing, errors kept from the application, a span ended once however
    the stream ends, other methods and forms): what any instrumentation built this way
    costs at least.
    """
    import wrapt
    from opentelemetry import context
    from opentelemetry.trace import SpanKind, set_span_in_context

    client = SpanKind.CLIENT
    openai_site, anthropic_site = (
        _site(oa, "openai", "summarize", "canary"),
        _site(an, "anthropic", "chat", "production"),
    )
    (gpt_in, gpt_out), (claude_in, claude_out) = PRICES[OPENAI_MODEL], PRICES[CLAUDE_MODEL]

    class Stream(wrapt.ObjectProxy):  # type: ignore[misc]
        def __init__(self, stream: Any, events: Any) -> None:
            super().__init__(stream)
            self._self_events = events

        def __iter__(self) -> Any:
            return self._self_events

    def openai_chunks(stream: Any, span: Any, start: float, model: str) -> Any:
        first = response_id = response_model = None
        reasons = []
        try:
            for chunk in stream._iterator:
                if first is None:
                    first = time.perf_counter() - start
                    response_id, response_model = chunk.id, chunk.model
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
                yield chunk
            span.set_attributes(
                {
                    "openai.request.id": stream.response.headers.get("x-request-id"),
                    "gen_ai.response.id": response_id,
                    "gen_ai.response.model": response_model,
                    "gen_ai.response.finish_reasons": reasons,
                    "gen_ai.response.time_to_first_chunk": first,
                    "canarytrace.time_to_first_token_ms": first * 1000.0,
                    "canarytrace.alias_drift": response_model != model,
                }
            )
        finally:
            span.end()

    def anthropic_events(stream: Any, span: Any, start: float, model: str) -> Any:
        first = message = reason = None
        output_tokens = 0
        try:
            for event in stream._iterator:
                if first is None:
                    first = time.perf_counter() - start
                kind = event.type
                if kind == "message_start":
                    message = event.message
                elif kind == "message_delta":
                    reason, output_tokens = event.delta.stop_reason, event.usage.output_tokens
                yield event
            input_tokens = message.usage.input_tokens
            span.set_attributes(
                {
                    "anthropic.request.id": stream.response.headers.get("request-id"),
                    "gen_ai.response.id": message.id,
                    "gen_ai.response.model": message.model,
                    "gen_ai.response.finish_reasons": [reason],
                    "gen_ai.response.time_to_first_chunk": first,
                    "canarytrace.time_to_first_token_ms": first * 1000.0,
                    "canarytrace.alias_drift": message.model != model,
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "canarytrace.cost_usd": input_tokens * claude_in + output_tokens * claude_out,
                }
            )
        finally:
            span.end()

    def openai_request(kwargs: Any) -> dict[str, Any]:
        return {
            "gen_ai.request.temperature": kwargs["temperature"],
            "gen_ai.request.max_tokens": kwargs["max_tokens"],
        }

    def openai_response(response: Any, model: str) -> dict[str, Any]:
        usage = response.usage
        return {
            "openai.request.id": response._request_id,
            "gen_ai.response.id": response.id,
            "gen_ai.response.model": response.model,
            "gen_ai.response.finish_reasons": [c.finish_reason for c in response.choices],
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "canarytrace.alias_drift": response.model != model,
            "canarytrace.cost_usd": usage.prompt_tokens * gpt_in
            + usage.completion_tokens * gpt_out,
        }

    def anthropic_request(kwargs: Any) -> dict[str, Any]:
        return {"gen_ai.request.max_tokens": kwargs["max_tokens"]}

    def anthropic_response(response: Any, model: str) -> dict[str, Any]:
        usage = response.usage
        return {
            "anthropic.request.id": response._request_id,
            "gen_ai.response.id": response.id,
            "gen_ai.response.model": response.model,
            "gen_ai.response.finish_reasons": [response.stop_reason],
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "canarytrace.alias_drift": response.model != model,
            "canarytrace.cost_usd": usage.input_tokens * claude_in
            + usage.output_tokens * claude_out,
        }

    def wrapper(site: dict[str, Any], request: Any, events: Any, response: Any) -> Any:
        """One SDK's `create` wrapper, from what its span reads of the request, of a
        stream's events and of a response."""

        def create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            model, stream = kwargs["model"], kwargs.get("stream") is True
            attributes = {
                **site,
                "gen_ai.request.model": model,
                **request(kwargs),
                "gen_ai.request.stream": stream,
            }
            start = time.perf_counter()
            span = tracer.start_span(f"chat {model}", kind=client, attributes=attributes)
            token = context.attach(set_span_in_context(span))
            try:
                result = wrapped(*args, **kwargs)
            except BaseException:
                span.end()
                raise
            finally:
                context.detach(token)
            if stream:
                return Stream(result, events(result, span, start, model))
            span.set_attributes(response(result, model))
            span.end()
            return result

        return create

    def enable() -> None:
        chat = "openai.resources.chat.completions.completions"
        openai_create = wrapper(openai_site, openai_request, openai_chunks, openai_response)
        wrapt.wrap_function_wrapper(chat, "Completions.create", openai_create)
        anthropic_create = wrapper(
            anthropic_site, anthropic_request, anthropic_events, anthropic_response
        )
        wrapt.wrap_function_wrapper(
            "anthropic.resources.messages.messages", "Messages.create", anthropic_create
        )

    return enable


def _switch_on(variant: str, provider: Any) -> Any:
    """What switches the variant's instrumentation on, so one process can time the same
    calls without it and then with it."""
    if variant == "canarytrace":
        import canarytrace

        return lambda: canarytrace.instrument(tracer_provider=provider)
    if variant in ("openllmetry", "openai-v2"):
        if variant == "openllmetry":
            from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor

            instrumentors = [OpenAIInstrumentor(), AnthropicInstrumentor()]
        else:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            instrumentors = [OpenAIInstrumentor()]

        def enable() -> None:
            for instrumentor in instrumentors:
                instrumentor.instrument(tracer_provider=provider)

        return enable
    return lambda: None


def _provider() -> tuple[Any, Any]:
    """The global TracerProvider every variant's spans go to, and its exporter, which
    only counts them (a SimpleSpanProcessor: each span is exported as it ends)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.count += len(spans)
            return SpanExportResult.SUCCESS

    exporter = Counting()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, exporter


def _opcodes(function: Any) -> int:
    """Python bytecode instructions one call of `function` executes.

    Unlike time, the count is the same on a quiet or a loaded machine, so two variants
    can be compared to the instruction; it leaves out work done in C (wrapt's proxies,
    pydantic-core, the dict and contextvar operations themselves).
    """
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        function()
    finally:
        sys.settrace(None)
    return count


def attribute_names(variant: str) -> dict[str, list[list[str]]]:
    """The attribute names of the LLM spans (those naming a request model) that one call
    of each scenario gives under `variant`. The floors compare with canarytrace only if
    they record the same attributes on the same calls (tests/test_bench_goal.py)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, _ = _provider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _, traced, enable = _variant_calls(variant, provider)
    enable()
    names = {}
    for scenario, call in traced.items():
        memory.clear()
        call()
        spans = [span.attributes or {} for span in memory.get_finished_spans()]
        names[scenario] = [sorted(a) for a in spans if "gen_ai.request.model" in a]
    return names


def _settle(functions: dict[str, Any], scenarios: list[str], times: int = SETTLE) -> None:
    """Untimed calls (`times` of each scenario) before timed rounds, so that they measure
    the steady state."""
    for name in scenarios:
        for _ in range(times):
            functions[name]()


def _variant_calls(variant: str, provider: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The uninstrumented calls, the variant's calls, and what switches it on.

    Both halves of a process call through the same client objects, as the drift variant
    does, so the drift it measures is the drift the others hold. The one exception is
    anthropic's client for canarytrace and anthropic-native, which is measured as users
    get it: with anthropic's own tracing left on (canarytrace turns it off per call;
    anthropic-native is that tracing alone).
    """
    clients, async_clients = _clients(native=False), _async_clients(native=False)
    run = asyncio.new_event_loop().run_until_complete
    plain = {**_calls(*clients), **_async_calls(*async_clients, run)}
    tracer = provider.get_tracer("bench")
    traced = plain  # an instrumentor patches the classes of the same clients
    if variant == WRAPT:
        return plain, plain, _wrapt_floor(tracer, *clients)
    if variant == BY_HAND:
        traced = {**_by_hand(tracer, *clients), **_by_hand_async(tracer, *async_clients, run)}
    elif variant == CONSTANTS:
        traced = _constants(tracer, plain)
    elif variant in ("canarytrace", "anthropic-native"):
        natives = _clients(native=True)[1], _async_clients(native=True)[1]
        traced = {
            **_calls(clients[0], natives[0]),
            **_async_calls(async_clients[0], natives[1], run),
        }
    return plain, traced, _switch_on(variant, provider)


def _shuffle_heap(seed: int) -> list[bytearray]:
    """Allocate a random number of small objects of random sizes, keep a random share of
    them (returned, to be held) and free the rest, before anything is imported.

    Without this every process of a variant starts from the same heap, so the median
    over processes samples one memory layout, not many (bench/README.md has the runs
    that showed it).
    """
    rng = random.Random(seed)
    made = [bytearray(rng.randint(8, 512)) for _ in range(rng.randint(0, 30_000))]
    return made[:: rng.randint(1, 8)]


def worker(variant: str, scenarios: list[str], calls: int, rounds: int) -> dict[str, Any]:
    """Time the scenarios without `variant`, then with it, in this one process.

    Per scenario: the fastest round's CPU µs per call without the instrumentation
    (`base`) and the fastest round's extra µs with it (`overhead`). The instrumentation
    is switched on once, as an application does (see the module docstring).
    """
    heap_seed = random.SystemRandom().randrange(2**32)
    kept = _shuffle_heap(heap_seed)
    provider, exporter = _provider()
    plain, traced, enable = _variant_calls(variant, provider)

    def timed(function: Any) -> float:
        start = time.process_time()
        for _ in range(calls):
            function()
        return (time.process_time() - start) / calls * 1e6

    off: dict[str, list[float]] = {name: [] for name in scenarios}
    on: dict[str, list[float]] = {name: [] for name in scenarios}
    warm_up = max(calls // 3, 20)
    _settle(plain, scenarios, warm_up)
    opcodes_off = {name: _opcodes(plain[name]) for name in scenarios}
    for _ in range(rounds):
        for name in scenarios:
            off[name].append(timed(plain[name]))
    enable()
    # imports, caches, price lookups, re-specialisation after patching
    _settle(traced, scenarios, max(warm_up, SETTLE))
    spans_before, calls_on = exporter.count, 0
    for _ in range(rounds):
        for name in scenarios:
            on[name].append(timed(traced[name]))
            calls_on += calls
    opcodes_on = {name: _opcodes(traced[name]) for name in scenarios}
    calls_on += len(scenarios)
    provider.force_flush()
    results: dict[str, Any] = {
        name: {
            "base": min(off[name]),
            "overhead": min(on[name]) - min(off[name]),
            "opcodes": opcodes_on[name] - opcodes_off[name],
        }
        for name in scenarios
    }
    results["spans_per_call"] = (exporter.count - spans_before) / calls_on
    results["heap_seed"], results["heap_objects_kept"] = heap_seed, len(kept)
    return results


# --- the driver -------------------------------------------------------------------------


def _venv_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "canarytrace" / "bench-venvs"


def _python_for(variant: str) -> str:
    """The interpreter that runs `variant`; a peer's virtualenv is made on first use."""
    if variant not in PEER_VENVS:
        return sys.executable
    venv = _venv_root() / variant
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    # Where the Makefile finds uv: on PATH, else where its `pip install --user` puts it.
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    print(f"setting up {venv} with {uv} ...", file=sys.stderr)
    try:
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "-p", str(python), *PEER_VENVS[variant]], check=True
        )
    except (OSError, subprocess.CalledProcessError) as error:
        # A half-made virtualenv would be taken for a ready one next time.
        shutil.rmtree(venv, ignore_errors=True)
        # Stop rather than print a table without the peers the goal is judged against.
        sys.exit(
            f"could not set up {variant}'s virtualenv at {venv}: {error}\n"
            "(the peers need the package index; --no-peers measures without them)"
        )
    return str(python)


def _worker_env() -> dict[str, str]:
    """This environment without the OTel and Anthropic settings that would change a variant."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}


def _run(python: str, variant: str, scenarios: list[str], calls: int, rounds: int) -> Any:
    env = _worker_env()
    command = [python, __file__, "--worker", variant, "--calls", str(calls)]
    command += ["--rounds", str(rounds), "--scenarios", json.dumps(scenarios)]
    command += ["--stream-chunks", str(STREAM_CHUNKS)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        print(f"  {variant} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _set_stream_chunks(chunks: int) -> None:
    global STREAM_CHUNKS
    STREAM_CHUNKS = max(chunks, 5)  # the anthropic stream's four fixed events and a delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per variant")
    parser.add_argument("--calls", type=int, default=100, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per process")
    parser.add_argument(
        "--stream-chunks",
        type=int,
        default=STREAM_CHUNKS,
        help="events of each streamed reply (at least 5)",
    )
    parser.add_argument("--no-peers", action="store_true", help="only the floors and canarytrace")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="measure only these scenarios")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="canarytrace and the by-hand span in one process instead (no peers)",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="machine instructions per call under callgrind instead of times",
    )
    parser.add_argument(
        "--save", type=Path, help="write every process's results to this JSON file as they come"
    )
    parser.add_argument(
        "--load",
        type=Path,
        nargs="+",
        help="print the table (or the side-by-side lines) of saved runs, pooled, and time nothing",
    )
    parser.add_argument("--counted-worker", help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", help=argparse.SUPPRESS)
    parser.add_argument("--attribute-names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _set_stream_chunks(args.stream_chunks)

    if args.attribute_names:
        print(json.dumps(attribute_names(args.attribute_names)))
        return

    if args.counted_worker:
        counted_worker(args.counted_worker, json.loads(args.scenarios)[0], args.calls)
        return

    if args.callgrind:
        count_instructions(
            [v for v in (OURS if args.no_peers else VARIANTS) if v != DRIFT],
            args.only or list(SCENARIOS),
        )
        return

    if args.worker == SIDE_BY_SIDE:
        scenarios = json.loads(args.scenarios)
        print(json.dumps(side_by_side(scenarios, args.calls // 2, args.rounds * 3)))
        return

    if args.load:
        print_saved(args.load)
        return

    if args.side_by_side:
        paired: list[dict[str, Any]] = []
        for number in range(args.processes):
            print(f"process {number + 1}/{args.processes}: side by side", file=sys.stderr)
            result = _run(
                sys.executable, SIDE_BY_SIDE, args.only or list(SCENARIOS), args.calls, args.rounds
            )
            if result is not None:
                paired.append(result)
                _save(args.save, paired)
        print_side_by_side(paired)
        return

    if args.worker:
        scenarios = json.loads(args.scenarios)
        print(json.dumps(worker(args.worker, scenarios, args.calls, args.rounds)))
        return

    variants = OURS if args.no_peers else VARIANTS
    pythons = {variant: _python_for(variant) for variant in variants}  # before any timing
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.processes):
        for variant, python in pythons.items():  # interleaved: a slow minute hits them all
            wanted = args.only or SCENARIOS
            scenarios = [s for s in wanted if (variant, s) not in SKIP]
            if not scenarios:
                continue
            print(f"process {round_number + 1}/{args.processes}: {variant}", file=sys.stderr)
            result = _run(python, variant, scenarios, args.calls, args.rounds)
            if result is not None:
                runs.setdefault(variant, []).append(result)
                _save(args.save, runs)
    _print_table(runs)


def _save(path: Path | None, results: Any) -> None:
    """Write the results so far (a crashed or stopped run keeps what it measured)."""
    if path is not None:
        path.write_text(json.dumps(results, indent=1))


def print_saved(paths: list[Path]) -> None:
    """The table of saved `--save` runs, pooled: all side by side, or all tables."""
    saved = []
    for path in paths:
        try:
            saved.append(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            sys.exit(f"--load: cannot read {path}: {error} (give a file written by --save)")
    if all(isinstance(results, list) for results in saved):
        print_side_by_side([run for results in saved for run in results])
    elif all(isinstance(results, dict) for results in saved):
        runs: dict[str, list[dict[str, Any]]] = {}
        for results in saved:
            for variant, processes in results.items():
                runs.setdefault(variant, []).extend(processes)
        _print_table(runs)
    else:
        sys.exit("--load: give files of side-by-side runs or of table runs, not both")


def side_by_side(scenarios: list[str], calls: int, rounds: int) -> dict[str, Any]:
    """canarytrace and the by-hand span in this one process, rounds alternating.

    canarytrace stays instrumented; the by-hand span wraps the SDK's own methods (the
    wrappers' `__wrapped__`), and those alone are the uninstrumented calls. Each round
    runs the three in a new random order, so none always follows another. Per scenario,
    the lower quartile of the rounds' CPU µs per call above the uninstrumented call.
    """
    from types import SimpleNamespace

    heap_seed = random.SystemRandom().randrange(2**32)
    kept = _shuffle_heap(heap_seed)
    order = random.Random(heap_seed)
    import canarytrace

    provider, _ = _provider()
    canarytrace.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("bench")

    def own_methods(oa: Any, an: Any) -> tuple[Any, Any]:
        """Stand-ins for the clients whose `create` is the SDK's own method."""
        completions, messages = oa.chat.completions, an.messages
        own_oa = SimpleNamespace(
            base_url=oa.base_url,
            chat=SimpleNamespace(
                completions=SimpleNamespace(
                    create=type(completions).create.__wrapped__.__get__(completions)
                )
            ),
        )
        own_an = SimpleNamespace(
            base_url=an.base_url,
            messages=SimpleNamespace(create=type(messages).create.__wrapped__.__get__(messages)),
        )
        return own_oa, own_an

    own = own_methods(*_clients(native=False))
    own_async = own_methods(*_async_clients(native=False))
    run = asyncio.new_event_loop().run_until_complete
    variants = {
        UNINSTRUMENTED: {**_calls(*own), **_async_calls(*own_async, run)},
        BY_HAND: {**_by_hand(tracer, *own), **_by_hand_async(tracer, *own_async, run)},
        "canarytrace": {
            **_calls(*_clients(native=True)),
            **_async_calls(*_async_clients(native=True), run),
        },
    }
    results: dict[str, Any] = {"heap_seed": heap_seed, "heap_objects_kept": len(kept)}
    for name in scenarios:
        times: dict[str, list[float]] = {variant: [] for variant in variants}
        for functions in variants.values():
            _settle(functions, [name])
        for _ in range(rounds):
            for variant in order.sample(list(variants), len(variants)):
                function = variants[variant][name]
                started = time.process_time()
                for _ in range(calls):
                    function()
                times[variant].append((time.process_time() - started) / calls * 1e6)
        q = {variant: sorted(values)[len(values) // 4] for variant, values in times.items()}
        results[name] = {
            BY_HAND: q[BY_HAND] - q[UNINSTRUMENTED],
            "canarytrace": q["canarytrace"] - q[UNINSTRUMENTED],
        }
    return results


def print_side_by_side(runs: list[dict[str, Any]]) -> None:
    """The paired runs' medians and canarytrace's ratio to the by-hand span, per scenario.

    Both overheads of a process come from the same rounds, so its drift cancels and the
    processes are resampled in pairs. What canarytrace's presence costs the SDK's own
    methods is left out (bench/README.md has its size).
    """
    print(
        f"\nside by side, {len(runs)} processes: CPU µs per call above the SDK's own methods "
        "(median over processes; lower quartile of rounds in each), canarytrace's ratio to "
        "the by-hand span with a 95% interval over processes resampled in pairs\n"
    )
    for scenario in SCENARIOS:
        ours = _values(runs, scenario, "canarytrace")
        floors = _values(runs, scenario, BY_HAND)
        if not ours:
            continue
        shown, interval = _ratio_and_interval(ours, floors, [], paired=True)
        print(
            f"  {scenario:19} by hand {statistics.median(floors):5.1f} "
            f"({min(floors):.0f}-{max(floors):.0f})  canarytrace {statistics.median(ours):5.1f} "
            f"({min(ours):.0f}-{max(ours):.0f})  {shown}  {goal_verdict(interval)}"
        )


# --- executed instructions, C included (callgrind) ---------------------------------------

UNINSTRUMENTED = "uninstrumented"
# Two runs per (variant, scenario), of these many counted calls: their difference is free
# of start-up, warm-up and exit, so it divides into instructions per call.
COUNTED_CALLS = (20, 120)


def counted_worker(variant: str, scenario: str, calls: int) -> None:
    """Under callgrind, with counting off: warm up, then make `calls` calls between two
    handshakes on stdin/stdout, which the driver uses to switch counting on and off."""
    provider, _ = _provider()
    _, traced, enable = _variant_calls(variant, provider)
    function = traced[scenario]  # `uninstrumented` has no calls of its own: the plain ones
    enable()
    for _ in range(5 * SETTLE):
        function()
    # Both runs start from the same heap, and collections leave out what start-up made:
    # a full collection of it, millions of instructions, would fall in one run only.
    gc.collect()
    gc.freeze()
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(calls):
        function()
    print("done", flush=True)
    sys.stdin.readline()


def _collected(python: str, variant: str, scenario: str, calls: int) -> int:
    """Instructions callgrind counted over `calls` calls of `scenario` (C and Python)."""
    command = ["setarch", "-R", "valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += ["--callgrind-out-file=/dev/null", python, __file__, "--counted-worker", variant]
    command += ["--scenarios", json.dumps([scenario]), "--calls", str(calls)]
    command += ["--stream-chunks", str(STREAM_CHUNKS)]
    # Fixed string hashes and no address randomisation: dict probes then repeat exactly.
    env = _worker_env()
    env["PYTHONHASHSEED"] = "0"
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        for expected, switch in (("ready", "on"), ("done", "off")):
            line = process.stdout.readline().strip()
            if line != expected:
                process.kill()
                raise RuntimeError(f"{variant} / {scenario}: {process.communicate()[1][-2000:]}")
            control = ["callgrind_control", "--instr=" + switch, str(process.pid)]
            subprocess.run(control, capture_output=True, check=True)
            process.stdin.write("\n")
            process.stdin.flush()
        _, stderr = process.communicate()
    found = re.search(r"Collected : (\d+)", stderr)
    if found is None:
        raise RuntimeError(f"{variant} / {scenario}: no count in\n{stderr[-2000:]}")
    return int(found.group(1))


def instructions_per_call(python: str, variant: str, scenario: str) -> float:
    few, many = (_collected(python, variant, scenario, calls) for calls in COUNTED_CALLS)
    return (many - few) / (COUNTED_CALLS[1] - COUNTED_CALLS[0])


def count_instructions(variants: list[str], scenarios: list[str]) -> None:
    """Print the machine instructions a call executes with each variant, C included.

    callgrind counts every instruction, the interpreter's and the C extensions' (wrapt,
    pydantic-core, the SDK's parsing), so unlike CPU time it does not depend on what
    else the machine runs: a count repeats within ~600 instructions per call, except the
    openai stream's (~20,000 of 19.5 million, in the SDK's own path). It is not time:
    the same instructions run slower when their code and data are not in cache, which
    is the case for the few thousand an instrumentation adds between two stretches of
    SDK code.
    """
    if shutil.which("valgrind") is None or shutil.which("setarch") is None:
        sys.exit("--callgrind needs valgrind (Debian: apt-get install valgrind) and setarch")
    pythons = {variant: _python_for(variant) for variant in [UNINSTRUMENTED, *variants]}
    jobs = [
        (python, variant, scenario)
        for variant, python in pythons.items()
        for scenario in scenarios
        if (variant, scenario) not in SKIP
    ]
    # Counts do not depend on load: one valgrind per core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(
            zip(
                [(variant, scenario) for _, variant, scenario in jobs],
                pool.map(lambda job: instructions_per_call(*job), jobs),
                strict=True,
            )
        )
    base = {s: counts.get((UNINSTRUMENTED, s)) for s in scenarios}
    print("\nmachine instructions per call, C included (callgrind; deterministic, not time)")
    print("uninstrumented: " + ", ".join(f"{s} {base[s] or 0:,.0f}" for s in scenarios))
    print("added by each variant (x the by-hand span's)\n")

    def added(variant: str, scenario: str) -> float | None:
        count, floor = counts.get((variant, scenario)), base[scenario]
        return None if count is None or floor is None else count - floor

    def cell(variant: str, scenario: str) -> str | None:
        extra, by_hand = added(variant, scenario), added(BY_HAND, scenario)
        return None if extra is None else f"{extra:>9,.0f} ({_ratio(extra, by_hand)})"

    _print_rows(cell, 23, scenarios)


def _values(runs: list[dict[str, Any]], scenario: str, field: str) -> list[float]:
    """`field` of `scenario` in each process that measured it."""
    return [run[scenario][field] for run in runs if scenario in run]


def _median(runs: list[dict[str, Any]], scenario: str, field: str) -> float | None:
    values = _values(runs, scenario, field)
    return statistics.median(values) if values else None


def _ratio(overhead: float, floor: float | None) -> str:
    return f"{overhead / floor:.2f}x" if floor else "–"


def drift_free_ratio(
    overheads: list[float], floors: list[float], drifts: list[float]
) -> float | None:
    """median(overheads) / median(floors), each less the median drift (0 without drifts);
    None when the floor less the drift is not positive."""
    drift = statistics.median(drifts) if drifts else 0.0
    floor = statistics.median(floors) - drift
    return (statistics.median(overheads) - drift) / floor if floor > 0 else None


def ratio_interval(
    overheads: list[float],
    floors: list[float],
    drifts: list[float] | None = None,
    resamples: int = RESAMPLES,
    paired: bool = False,
) -> tuple[float, float] | None:
    """95% bootstrap interval of `drift_free_ratio`.

    Each list holds one value per process; resampling the processes of every side shows
    how far the ratio could move with other processes on the same machine (`paired`: the
    i-th overhead and floor come from one process and are drawn together). None when a
    resampled floor, less the drift, is not positive (no ratio to speak of).
    """
    rng = random.Random(0)  # the same interval for the same runs
    ratios = []
    for _ in range(resamples):
        drift_sample = rng.choices(drifts, k=len(drifts)) if drifts else []
        if paired:  # overheads[i] and floors[i] were measured in the same process
            picked = rng.choices(range(len(floors)), k=len(floors))
            overhead_sample = [overheads[i] for i in picked]
            floor_sample = [floors[i] for i in picked]
        else:
            floor_sample = rng.choices(floors, k=len(floors))
            overhead_sample = rng.choices(overheads, k=len(overheads))
        ratio = drift_free_ratio(overhead_sample, floor_sample, drift_sample)
        if ratio is None:
            return None
        ratios.append(ratio)
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def goal_verdict(interval: tuple[float, float] | None) -> str:
    """Whether an interval of ratios to the by-hand span lies within `GOAL`.

    An interval reaching zero or below says the processes disagree by more than the
    overhead itself (no instrumentation is free), so it meets nothing.
    """
    if interval is None:
        return "no floor"
    low, high = interval
    if low <= 0:
        return "too noisy"
    if high <= GOAL:
        return "met"
    return "missed" if low > GOAL else "on the line"


def _ratio_lines(
    runs: dict[str, list[dict[str, Any]]], variant: str, floor: str, verdict: bool
) -> list[str]:
    """Per scenario: `variant`'s overhead over `floor`'s, both less the median drift, its
    95% interval over resampled processes and, if `verdict`, the goal's verdict."""
    ours, floors_runs, drift = (runs.get(v, []) for v in (variant, floor, DRIFT))
    lines = []
    for scenario in SCENARIOS:
        overheads = _values(ours, scenario, "overhead")
        floors = _values(floors_runs, scenario, "overhead")
        drifts = _values(drift, scenario, "overhead")
        if not overheads or not floors:
            continue
        shown, interval = _ratio_and_interval(overheads, floors, drifts)
        reading = f"  {goal_verdict(interval)}" if verdict else ""
        lines.append(f"  {scenario:19} {shown}{reading}")
    return lines


def _ratio_and_interval(
    overheads: list[float], floors: list[float], drifts: list[float], paired: bool = False
) -> tuple[str, tuple[float, float] | None]:
    """`drift_free_ratio` and its `ratio_interval` written as "1.38x [1.35-1.41]", and the
    interval itself (for `goal_verdict`)."""
    interval = ratio_interval(overheads, floors, drifts, paired=paired)
    point = drift_free_ratio(overheads, floors, drifts)
    ratio = "–" if point is None else f"{point:.2f}x"
    bounds = f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "–"
    return f"{ratio} [{bounds}]", interval


def _print_block(title: str, lines: list[str]) -> None:
    if lines:
        print(f"\n{title}\n")
        print("\n".join(lines))


def _print_goal(runs: dict[str, list[dict[str, Any]]]) -> None:
    """canarytrace's ratio to the by-hand span per scenario and the verdict; then what the
    mechanism alone costs (the wrapt floor against the by-hand span), and canarytrace
    against that floor."""
    _print_block(
        f"canarytrace against the goal (<= {GOAL}x the by-hand span's overhead), both less "
        "the median drift, 95% interval over resampled processes:",
        _ratio_lines(runs, "canarytrace", BY_HAND, verdict=True),
    )
    _print_block(
        f"the by-hand span's code behind wrapt ({WRAPT}) against the by-hand span:",
        _ratio_lines(runs, WRAPT, BY_HAND, verdict=False),
    )
    _print_block(
        f"canarytrace against {WRAPT}:", _ratio_lines(runs, "canarytrace", WRAPT, verdict=False)
    )


def _print_table(runs: dict[str, list[dict[str, Any]]]) -> None:
    # The scenarios some process measured (`--only` runs print only theirs).
    scenarios = [s for s in SCENARIOS if any(_values(r, s, "overhead") for r in runs.values())]
    base = {s: _median(runs.get(BY_HAND, []), s, "base") for s in scenarios}
    by_hand = {s: _median(runs.get(BY_HAND, []), s, "overhead") for s in scenarios}
    constants = {s: _median(runs.get(CONSTANTS, []), s, "overhead") for s in scenarios}
    print(
        "\nuninstrumented call, CPU µs: " + ", ".join(f"{s} {base[s] or 0:.0f}" for s in scenarios)
    )
    print(
        "\noverhead per call above uninstrumented, CPU µs "
        "(x the by-hand span's overhead | x the constants span's)\n"
    )
    width = 23  # "  609 (11.89x | 11.52x)"
    header = f"| {'variant':<17}|" + "".join(f" {s:<{width}}|" for s in scenarios)
    header += " spans/call |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for variant in VARIANTS:
        if variant not in runs:
            continue
        cells = []
        for s in scenarios:
            overhead = _median(runs[variant], s, "overhead")
            if overhead is None:
                cells.append(f" {'–':<{width}}")
                continue
            ratios = f"({_ratio(overhead, by_hand[s])} | {_ratio(overhead, constants[s])})"
            cells.append(f" {overhead:>5.0f} {ratios:<{width - 6}}")
        spans = statistics.median(run["spans_per_call"] for run in runs[variant])
        print(f"| {variant:<17}|" + "|".join(cells) + f"| {spans:>10.2f} |")
    print(
        "\nPython instructions per call above uninstrumented (x the by-hand span's): "
        "deterministic, but blind to work done in C\n"
    )
    instructions = {s: _median(runs.get(BY_HAND, []), s, "opcodes") for s in scenarios}

    def instruction_cell(variant: str, scenario: str) -> str | None:
        count = _median(runs.get(variant, []), scenario, "opcodes")
        return None if count is None else f"{count:>6.0f} ({_ratio(count, instructions[scenario])})"

    _print_rows(instruction_cell, width, scenarios)
    print("\nspread: lowest-highest overhead over the processes, CPU µs\n")

    def spread_cell(variant: str, scenario: str) -> str | None:
        values = _values(runs.get(variant, []), scenario, "overhead")
        return f"{min(values):>5.0f}-{max(values):.0f}" if values else None

    _print_rows(spread_cell, width, scenarios)
    _print_goal(runs)


def _print_rows(cell: Callable[[str, str], str | None], width: int, scenarios: list[str]) -> None:
    """A row per variant that has a value in some scenario: `cell(variant, scenario)`."""
    for variant in VARIANTS:
        cells = [cell(variant, s) or "–" for s in scenarios]
        if any(c != "–" for c in cells):
            print(f"| {variant:<17}|" + "|".join(f" {c:<{width}}" for c in cells) + "|")


if __name__ == "__main__":
    main()
