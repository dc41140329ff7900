"""Feedback and outcomes are spans that name the LLM call they are about."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanContext

import canarytrace
from canarytrace import CallRef
from tests.instrumentation.conftest import Telemetry, openai_client


def _call(telemetry: Telemetry) -> tuple[CallRef, SpanContext]:
    openai_client().chat.completions.create(
        model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "x"}]
    )
    ref = canarytrace.current_call()
    assert ref is not None
    return ref, telemetry.one_span().get_span_context()


def test_feedback_and_outcome_carry_the_calls_ids(instrumented: Telemetry) -> None:
    ref, context = _call(instrumented)
    canarytrace.feedback(ref, 4, comment="good")
    canarytrace.outcome(ref, ok=False, kind="wrong_answer")
    by_name = {s.name: s for s in instrumented.spans()}
    feedback = by_name["canarytrace.feedback"]
    assert feedback.attributes["canarytrace.feedback.score"] == 4.0
    assert feedback.attributes["canarytrace.feedback.comment"] == "good"
    outcome = by_name["canarytrace.outcome"]
    assert outcome.attributes["canarytrace.outcome.ok"] is False
    assert outcome.attributes["canarytrace.outcome.kind"] == "wrong_answer"
    for record in (feedback, outcome):
        assert record.attributes["canarytrace.target.trace_id"] == f"{context.trace_id:032x}"
        assert record.attributes["canarytrace.target.span_id"] == f"{context.span_id:016x}"
        assert record.links[0].context.span_id == context.span_id


@pytest.mark.parametrize("form", ["span_context", "tuple", "int_tuple"])
def test_a_call_can_be_named_in_several_forms(instrumented: Telemetry, form: str) -> None:
    ref, context = _call(instrumented)
    call = {
        "span_context": context,
        "tuple": (ref.trace_id.upper(), ref.span_id),
        "int_tuple": (context.trace_id, context.span_id),
    }[form]
    canarytrace.feedback(call, 1)
    (record,) = [s for s in instrumented.spans() if s.name == "canarytrace.feedback"]
    assert record.attributes["canarytrace.target.span_id"] == ref.span_id


def test_bad_call_ids_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match="span_id must be 16 lowercase hex digits"):
        canarytrace.feedback(("0" * 31 + "1", "xyz"), 3)
    with pytest.raises(TypeError, match="pass current_call"):
        canarytrace.outcome("not-a-call", ok=True)  # type: ignore[arg-type]
