"""A small application for the integration tests: real SDK clients, one instrument() call.

It runs as its own process (as a user's service would), so that its tracer provider,
its OTLP exporter and its memory are its own. It starts the project's simulator,
calls it through the real `openai` and `anthropic` clients with the production and
canary models of models.yaml, sends feedback and outcomes for some calls, and exports
through whatever OTEL_EXPORTER_OTLP_ENDPOINT says. It talks to the test as JSON lines:
on stdout it reports events and, at the end, every call's ids and how many spans it
handed to the SDK; on stdin it waits for the test's "go" where asked to pause.

    python app.py --calls 20 [--pause-after 10] [--wait-before-flush]
                  [--memory-every 50] [--no-flush] [--background-calls 1]

`--background-calls` adds, after the others, calls of the summarize canary made in
OpenAI's background mode and polled until they end (their results are records of
their own, in traces of their own).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anthropic
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

import canarytrace
from canarytrace import telemetry
from canarytrace.registry import load_registry
from canarytrace.simulator import Simulator

REGISTRY = Path(__file__).resolve().parents[2] / "models.yaml"


class CountingProcessor(SpanProcessor):
    """Counts every span that ends, i.e. every span handed to the exporting pipeline."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def rss_kib() -> int:
    """The process's resident memory now (not the peak: start-up imports set the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status: the memory check needs Linux")


def live_spans() -> int:
    """Finished spans still held anywhere in this process (queued, or leaked)."""
    gc.collect()
    return sum(isinstance(o, ReadableSpan) for o in gc.get_objects())


def emit(event: str, **fields: Any) -> None:
    """One JSON line to the test."""
    print(json.dumps({"event": event, **fields}), flush=True)


def wait_for_go() -> None:
    """Block until the test writes a line (it stops or starts servers meanwhile)."""
    sys.stdin.readline()


def plan(calls: int) -> list[tuple[str, str, str]]:
    """(provider, model, tier) per call: both SDKs, production and canary, in turn."""
    registry = load_registry(REGISTRY)
    chat, summarize = registry.routes["chat"], registry.routes["summarize"]
    cycle = [
        ("anthropic", chat.production, "production"),
        ("openai", summarize.production, "production"),
        ("anthropic", chat.canary, "canary"),
        ("openai", summarize.canary, "canary"),
    ]
    return [cycle[i % len(cycle)] for i in range(calls)]


def call(
    clients: tuple[openai.OpenAI, anthropic.Anthropic], provider: str, model: str, prompt: str
) -> str:
    """One chat call through the real SDK; returns the answer text."""
    oa, an = clients
    if provider == "openai":
        completion = oa.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=64
        )
        return completion.choices[0].message.content or ""
    message = an.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": prompt}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def in_background(
    client: openai.OpenAI, model: str, prompt: str
) -> tuple[canarytrace.CallRef, bool]:
    """One background Responses call, polled until it ends: the call's ids, and whether
    it completed."""
    queued = client.responses.create(model=model, input=prompt, background=True)
    ref = canarytrace.current_call()
    assert ref is not None
    status = queued.status
    while status in ("queued", "in_progress"):  # at time scale 0 it is due at once
        status = client.responses.retrieve(queued.id).status
    return ref, status == "completed"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--pause-after", type=int, default=0)
    parser.add_argument("--wait-before-flush", action="store_true")
    # With the collector gone for good a final flush would only wait out the retries.
    parser.add_argument("--no-flush", action="store_true")
    parser.add_argument("--memory-every", type=int, default=0)
    parser.add_argument("--service-name", default="canarytrace-it")
    parser.add_argument("--background-calls", type=int, default=0)
    args = parser.parse_args(argv)

    canarytrace.instrument(registry=REGISTRY, service_name=args.service_name)
    counter = CountingProcessor()
    provider = trace.get_tracer_provider()
    provider.add_span_processor(counter)  # type: ignore[attr-defined]

    made: list[dict[str, Any]] = []
    answered = 0
    with Simulator(seed=7, time_scale=0.0) as sim:
        clients = (
            openai.OpenAI(base_url=sim.openai_base_url, api_key="test-key", max_retries=0),
            anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="test-key", max_retries=0),
        )
        for i, (vendor, model, tier) in enumerate(plan(args.calls)):
            if args.pause_after and i == args.pause_after:
                telemetry.flush()
                emit("paused", calls=i, spans=counter.ended)
                wait_for_go()
            try:
                text = call(clients, vendor, model, f"What is {i} + {i}?")
            except (openai.APIError, anthropic.APIError) as error:
                text, ok = "", False
                emit("call-error", i=i, error=type(error).__name__)
            else:
                answered += 1
                ok = True
            ref = canarytrace.current_call()
            made.append(
                {
                    "trace_id": ref.trace_id,
                    "span_id": ref.span_id,
                    "model": model,
                    "tier": tier,
                    "provider": vendor,
                    "ok": ok,
                }
            )
            if i % 3 == 0:
                canarytrace.feedback(ref, 4.0 if text else 1.0)
            if i % 4 == 1:
                canarytrace.outcome(ref, ok, kind=None if ok else "no_answer")
            if args.memory_every and (i + 1) % args.memory_every == 0:
                emit("memory", calls=i + 1, rss_kib=rss_kib(), live_spans=live_spans())
        canary = load_registry(REGISTRY).routes["summarize"].canary
        assert canary is not None
        for i in range(args.background_calls):
            ref, ok = in_background(clients[0], canary, f"Summarize item {i}.")
            answered += ok
            made.append(
                {
                    "trace_id": ref.trace_id,
                    "span_id": ref.span_id,
                    "model": canary,
                    "tier": "canary",
                    "provider": "openai",
                    "ok": ok,
                    "background": True,
                }
            )

    emit("calls-done", answered=answered, spans=counter.ended)
    if args.wait_before_flush:
        wait_for_go()
    if not args.no_flush:
        telemetry.flush()
    emit("done", answered=answered, spans=counter.ended, calls=made)


if __name__ == "__main__":
    main()
