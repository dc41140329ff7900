"""One LLM call's span, from start to end: the part shared by every provider and form.

`Instruments` is built once per `instrument()` (tracer, metrics, content switch).
`start_call` opens the span with the request attributes and canarytrace's routing
attributes; `end_call` adds the response attributes, usage, cost and alias drift,
records the metrics, tells the routing breaker how the call went and ends the span.
Streaming and non-streaming calls end through the same `end_call`.

Errors inside canarytrace go through `report()`: a warning the first time per call
site, debug after that, and never an exception to the application.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, NamedTuple

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode

from canarytrace import attributes as A
from canarytrace import pricing, routing
from canarytrace.instrumentation._extract import Usage
from canarytrace.instrumentation.providers import same_model
from canarytrace.registry import is_pinned as _registry_is_pinned

_log = logging.getLogger("canarytrace.instrumentation")
_reported: set[str] = set()

#: The span context (ids) of the LLM call made last in this context, read by
#: `current_call()`. Not the span: held until the next call, a span would outlive its
#: export, and a new span could not reuse its still-warm memory (measured: 3-8 µs a call).
LAST_CALL: ContextVar[SpanContext | None] = ContextVar("canarytrace_last_call", default=None)

_CLIENT = SpanKind.CLIENT
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


def report(site: str) -> None:
    """Log the exception being handled: a warning once per `site`, then at debug level."""
    if site in _reported:
        _log.debug("canarytrace error in %s", site, exc_info=True)
    else:
        _reported.add(site)
        _log.warning(
            "canarytrace: internal error in %s; the call itself is unaffected", site, exc_info=True
        )


class Instruments:
    """What every wrapper needs, captured once at instrument time.

    Without a meter provider the metric instruments are None and no metric is recorded.
    """

    __slots__ = ("capture_content", "cost", "duration", "first_chunk", "tokens", "tracer")

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider | None,
        capture_content: bool,
        version: str,
    ) -> None:
        self.tracer = trace.get_tracer(A.INSTRUMENTATION_SCOPE, version, tracer_provider)
        self.duration: Histogram | None = None
        self.first_chunk: Histogram | None = None
        self.tokens: Histogram | None = None
        self.cost: Counter | None = None
        if meter_provider is not None:
            meter = metrics.get_meter(A.INSTRUMENTATION_SCOPE, version, meter_provider)
            self.duration = meter.create_histogram(
                A.METRIC_OPERATION_DURATION,
                unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            )
            # Streams only, as the conventions ask. Their other streaming metric, time per
            # output chunk, would record once per chunk: the span's duration, first chunk
            # and output tokens give a call's rate without that cost on every chunk.
            self.first_chunk = meter.create_histogram(
                A.METRIC_TIME_TO_FIRST_CHUNK,
                unit="s",
                description="Time to receive the first chunk of a streamed response",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            )
            self.tokens = meter.create_histogram(
                A.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
            )
            self.cost = meter.create_counter(
                A.METRIC_COST, unit="USD", description="Cost of LLM calls in US dollars"
            )
        self.capture_content = capture_content


@lru_cache(maxsize=4096)
def is_pinned(model: str) -> bool:
    """The registry's alias rule for `model`, cached: it runs once per model id."""
    return bool(_registry_is_pinned(model))


# --- the span ------------------------------------------------------------------------------


class Target:
    """What every call of one SDK method to one model through one client starts with,
    worked out once: span name, start attributes, and the pin rule's answer."""

    __slots__ = ("attributes", "base_url", "model", "name", "operation", "pinned", "provider")

    def __init__(
        self,
        provider: str,
        operation: str,
        model: str,
        pinned: bool,
        base_url: Any,
        attributes: dict[str, Any],
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.model = model
        self.pinned = pinned
        self.base_url = base_url  # the client's, so a replaced base_url is noticed
        self.attributes = attributes
        self.name = f"{operation} {model}" if model else operation


class Call:
    """One LLM call in flight.

    A class with `__slots__`, not a NamedTuple: Python 3.11 specialises the reads of a
    slot, not of a NamedTuple's field, and a call's fields are read some fifteen times
    (callgrind counted 5-20k more machine instructions a call with a NamedTuple).
    """

    __slots__ = ("ins", "route", "span", "start", "target", "tier")

    def __init__(
        self, ins: Instruments, span: Span, target: Target, route: str | None, tier: str | None
    ) -> None:
        self.ins = ins
        self.span = span
        self.target = target
        self.route = route
        self.tier = tier
        self.start = time.perf_counter()


def start_call(
    ins: Instruments, target: Target, attributes: dict[str, Any], user_id: str | None = None
) -> Call:
    """Open the span of a call to `target`, adding canarytrace's routing attributes to
    the request's `attributes` (a copy of the target's with the call's own added)."""
    route = tier = None
    model = target.model
    decision = routing.take_decision(model)
    if decision is not None:
        route, tier = decision.route, decision.tier
        attributes[A.ROUTE] = route
        attributes[A.TIER] = tier
        attributes[A.ROLLOUT_PERCENT] = decision.rollout_percent
        if decision.bucket is not None:
            attributes[A.COHORT_BUCKET] = decision.bucket
        if decision.user_hash:
            attributes[A.USER_HASH] = decision.user_hash
            user_id = None
    else:
        found = routing.lookup(model)
        if found is not None:
            route, tier = found
            attributes[A.ROUTE] = route
            attributes[A.TIER] = tier
    if user_id is not None:
        attributes[A.USER_HASH] = routing.user_hash(user_id)
    span = ins.tracer.start_span(target.name, kind=_CLIENT, attributes=attributes)
    call = Call(ins, span, target, route, tier)
    LAST_CALL.set(span.get_span_context())
    return call


def reads_response(call: Call) -> bool:
    """Whether the response of `call` is read: for its span, or for the metrics. The
    metrics count the calls whose spans a sampler drops too (their tokens, cost and
    response model), since dashboards read them because traces are sampled."""
    return call.ins.duration is not None or call.span.is_recording()


def captures_output(call: Call) -> bool:
    """Whether the completion's text goes on `call`'s span: content capture is on, and
    the span records (a sampled-out span would only drop it)."""
    return call.ins.capture_content and call.span.is_recording()


def end_call(
    call: Call,
    attributes: dict[str, Any] | None,
    usage: Usage | None,
    error: BaseException | None = None,
) -> None:
    """Finish `call`: response attributes, usage, cost, drift, metrics, breaker, span end.

    `attributes` and `usage` are None when the response was not looked at (an error,
    a raw streaming response, or neither span nor metrics recorded: `reads_response`).
    """
    span = call.span
    target = call.target
    duration = time.perf_counter() - call.start
    error_type = type(error).__qualname__ if error is not None else None
    response_model = first_chunk = None
    cost = None
    try:
        if attributes is not None:
            response_model = attributes.get(A.GEN_AI_RESPONSE_MODEL)
            first_chunk = attributes.get(A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
            if target.pinned and response_model:
                # A fallback model that answered a refusal is a substitution the request
                # asked for, not the pin moving.
                attributes[A.ALIAS_DRIFT] = (
                    response_model != target.model
                    and not same_model(target.model, response_model)
                    and A.FALLBACK_MODEL not in attributes
                )
            if usage is not None:
                model = response_model or target.model
                cost = add_usage(attributes, target.provider, model, usage)
            span.set_attributes(attributes)
            if error_type is None:  # a failure the response reports (OpenAI's Responses)
                error_type = attributes.get(A.ERROR_TYPE)
        if error_type is not None:
            span.set_attribute(A.ERROR_TYPE, error_type)
            # The type only: SDK error messages can quote request details.
            span.set_status(Status(StatusCode.ERROR, error_type))
    except Exception:
        report("end_call")
    span.end()
    try:
        # A call still running in the background has told nothing of how it goes: its
        # tokens, cost and outcome count when this process sees it end (`background_end`).
        if call.ins.duration is not None:
            _record_metrics(call, duration, first_chunk, response_model, usage, cost, error_type)
            _await_end_if_running(call, attributes, usage)
        if (
            call.tier == "canary"  # only canary calls count
            and call.route is not None
            and not _await_end_if_running(call, attributes, usage)
        ):
            routing.record_result(call.route, call.tier, error_type is None)
    except Exception:
        report("end_call.metrics")


class _Running(NamedTuple):
    """What a call still running in the background needs when it ends (not its span)."""

    ins: Instruments
    target: Target
    route: str | None
    tier: str | None


#: Calls still running in the background, by response id, oldest first (bounded).
_running: OrderedDict[str, _Running] = OrderedDict()
#: How many response ids a process keeps, at most, in each such map.
REMEMBERED_RESPONSES = 10_000


def remember(store: OrderedDict[str, Any], response_id: str, value: Any, bound: int) -> None:
    """Keep `value` under `response_id` in `store`, forgetting the oldest past `bound`
    (responses never seen again here must not pile up)."""
    if len(store) >= bound:
        store.popitem(last=False)  # atomic, so safe across threads
    store[response_id] = value


def _await_end_if_running(
    call: Call, attributes: dict[str, Any] | None, usage: Usage | None
) -> bool:
    """Whether `call` returned still running in the background (queued), kept then by
    its response id until its end is seen. Asked only where it matters (metrics on, or
    a canary call), so that other calls pay nothing for it."""
    if usage is not None or not attributes or A.BACKGROUND_STATUS not in attributes:
        return False
    response_id = attributes.get(A.GEN_AI_RESPONSE_ID)
    if isinstance(response_id, str):
        running = _Running(call.ins, call.target, call.route, call.tier)
        remember(_running, response_id, running, REMEMBERED_RESPONSES)
    return True


def background_end(
    response_id: str,
    status: str,
    response_model: str | None,
    usage: Usage | None,
    cost: float | None,
) -> None:
    """Count the end of a call this process saw start in the background: its tokens and
    cost in the metrics, and, for a canary call, its outcome in the breaker (failed, or
    answered; a cancelled one says nothing either way)."""
    running = _running.pop(response_id, None)
    if running is None:
        return
    ins, target, route, tier = running
    if ins.duration is not None:
        labels = _labels_of(target, route, tier, response_model, None)
        _record_usage(ins, labels, usage, cost)
    if tier == "canary" and route is not None and status != "cancelled":
        routing.record_result(route, tier, status != "failed")


def add_usage(attributes: dict[str, Any], provider: str, model: str, usage: Usage) -> float | None:
    """Write `usage`'s token counts and its cost at `model`'s price into `attributes`;
    returns the cost, None when it cannot be priced."""
    tokens_in, tokens_out, cache_read, cache_write = usage[:4]
    attributes[A.GEN_AI_USAGE_INPUT_TOKENS] = tokens_in
    attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] = tokens_out
    if cache_read:
        attributes[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
    if cache_write:
        attributes[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write
    # Its own guard: a price that cannot be worked out costs the span its cost, not the
    # attributes read before.
    cost = None
    try:
        cost = pricing.cost_usd(provider, model, *usage[:7], inference_geo=usage.inference_geo)
        if usage.compaction is not None and cost is not None:
            cost = _with_compaction(cost, provider, model, usage.compaction)
    except Exception:
        report("end_call.cost")
    if cost is not None:
        attributes[A.COST_USD] = cost
    return cost


def _with_compaction(cost: float, provider: str, model: str, compaction: Usage) -> float | None:
    """`cost` with the price of the call's server-side context compactions added (the
    summary is written by the requested model; Anthropic bills it apart)."""
    geo = compaction.inference_geo
    extra = pricing.cost_usd(provider, model, *compaction[:7], inference_geo=geo)
    return None if extra is None else cost + extra


_Labels = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # common, input, output
_labels: dict[tuple[Any, ...], _Labels] = {}


def _record_metrics(
    call: Call,
    duration: float,
    first_chunk: float | None,
    response_model: str | None,
    usage: Usage | None,
    cost: float | None,
    error_type: str | None,
) -> None:
    ins = call.ins
    if ins.duration is None or ins.first_chunk is None:
        return  # all or none
    labels = _labels_of(call.target, call.route, call.tier, response_model, error_type)
    ins.duration.record(duration, labels[0])
    if first_chunk is not None:
        ins.first_chunk.record(first_chunk, labels[0])
    _record_usage(ins, labels, usage, cost)


def _record_usage(
    ins: Instruments, labels: _Labels, usage: Usage | None, cost: float | None
) -> None:
    """A call's token usage and cost, in the metrics."""
    if ins.tokens is None or ins.cost is None:
        return  # all or none
    common, input_labels, output_labels = labels
    if usage is not None:
        ins.tokens.record(usage.input, input_labels)
        ins.tokens.record(usage.output, output_labels)
    if cost is not None:
        ins.cost.add(cost, common)


def _labels_of(
    target: Target,
    route: str | None,
    tier: str | None,
    response_model: str | None,
    error_type: str | None,
) -> _Labels:
    """The metric attributes of a call, worked out once per combination."""
    key = (target.operation, target.provider, target.model, response_model, tier, route, error_type)
    labels = _labels.get(key)
    if labels is not None:
        return labels
    common: dict[str, Any] = {
        A.GEN_AI_OPERATION_NAME: target.operation,
        A.GEN_AI_PROVIDER_NAME: target.provider,
    }
    if target.model:
        common[A.GEN_AI_REQUEST_MODEL] = target.model
    if response_model:
        common[A.GEN_AI_RESPONSE_MODEL] = response_model
    if tier is not None:
        common[A.TIER] = tier
        common[A.ROUTE] = route
    if error_type is not None:
        common[A.ERROR_TYPE] = error_type
    labels = (
        common,
        {**common, A.METRIC_TOKEN_TYPE: "input"},
        {**common, A.METRIC_TOKEN_TYPE: "output"},
    )
    if len(_labels) >= 4096:  # bounded: model ids come from the application
        _labels.clear()
    _labels[key] = labels
    return labels
