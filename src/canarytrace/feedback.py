"""User feedback and application outcomes, recorded as telemetry joined to an LLM call.

`feedback(call, score)` records what a user thought of an answer; `outcome(call, ok)`
records the application's own verdict (a wrong answer it caught). Each is one short span
(`canarytrace.feedback` / `canarytrace.outcome`) carrying the call's trace and span ids
as attributes and a link to the call, so the analysis joins it to the call even when it
arrives minutes later from another process (keep `current_call()`'s ids, e.g. in the
web session, and pass them back then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags

from canarytrace import attributes as A
from canarytrace.instrumentation._call import LAST_CALL

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRef:
    """The ids of one LLM call's span, as lowercase hex (32 and 16 digits)."""

    trace_id: str
    span_id: str

    def __post_init__(self) -> None:
        for name, digits in (("trace_id", 32), ("span_id", 16)):
            value = getattr(self, name)
            if not (isinstance(value, str) and len(value) == digits and _is_hex(value)):
                raise ValueError(
                    f"CallRef.{name} must be {digits} lowercase hex digits, got {value!r}"
                )
            if int(value, 16) == 0:
                raise ValueError(f"CallRef.{name} is all zeros, which is not a valid id")


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value)


CallLike = CallRef | Span | SpanContext | tuple[str, str] | tuple[int, int]


def current_call() -> CallRef | None:
    """The LLM call made last in this context (thread or asyncio task), or None."""
    context = LAST_CALL.get()
    if context is None:
        return None
    return CallRef(trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id))


def as_call_ref(call: CallLike) -> CallRef:
    """`call` (a CallRef, span, span context, or (trace_id, span_id) pair) as a CallRef."""
    if isinstance(call, CallRef):
        return call
    if isinstance(call, Span):
        call = call.get_span_context()
    if isinstance(call, SpanContext):
        return CallRef(trace.format_trace_id(call.trace_id), trace.format_span_id(call.span_id))
    if isinstance(call, tuple) and len(call) == 2:
        trace_id, span_id = call
        if isinstance(trace_id, int) and isinstance(span_id, int):
            return CallRef(trace.format_trace_id(trace_id), trace.format_span_id(span_id))
        return CallRef(str(trace_id).lower(), str(span_id).lower())
    raise TypeError(
        f"cannot identify an LLM call from {type(call).__name__}; pass current_call(), "
        "the call's span or span context, or a (trace_id, span_id) pair of hex strings"
    )


def feedback(call: CallLike, score: float, comment: str | None = None) -> None:
    """Record a user's `score` (the application's scale, e.g. 1-5) for the LLM `call`."""
    attributes: dict[str, Any] = {A.FEEDBACK_SCORE: float(score)}
    if comment is not None:
        attributes[A.FEEDBACK_COMMENT] = comment
    _emit(A.FEEDBACK_SPAN_NAME, call, attributes)


def outcome(call: CallLike, ok: bool, kind: str | None = None) -> None:
    """Record the application's verdict on the LLM `call`: `ok=False` for a caught
    wrong answer, with a `kind` such as "wrong_answer" or "invalid_json"."""
    attributes: dict[str, Any] = {A.OUTCOME_OK: bool(ok)}
    if kind is not None:
        attributes[A.OUTCOME_KIND] = kind
    _emit(A.OUTCOME_SPAN_NAME, call, attributes)


def _emit(name: str, call: CallLike, attributes: dict[str, Any]) -> None:
    ref = as_call_ref(call)
    attributes[A.TARGET_TRACE_ID] = ref.trace_id
    attributes[A.TARGET_SPAN_ID] = ref.span_id
    target = SpanContext(
        int(ref.trace_id, 16), int(ref.span_id, 16), is_remote=True, trace_flags=TraceFlags(1)
    )
    tracer = _tracer()
    tracer.start_span(name, attributes=attributes, links=[Link(target)]).end()


def _tracer() -> trace.Tracer:
    from canarytrace.instrumentation import CanaryTraceInstrumentor

    state = CanaryTraceInstrumentor._state
    if state is not None:
        return state[0].tracer
    # A process that only records feedback: same export set-up as instrument() makes.
    from canarytrace import telemetry

    return trace.get_tracer(A.INSTRUMENTATION_SCOPE, tracer_provider=telemetry.setup()[0])
