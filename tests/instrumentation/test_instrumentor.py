"""The BaseInstrumentor face: auto-instrumentation entry point and declared SDK ranges."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from canarytrace.instrumentation import CanaryTraceInstrumentor
from canarytrace.instrumentation import anthropic as anthropic_patches
from canarytrace.instrumentation import openai as openai_patches
from tests.instrumentation.conftest import Telemetry, openai_client

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_registered_for_opentelemetry_instrument() -> None:
    (entry,) = [
        e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "canarytrace"
    ]
    assert entry.load() is CanaryTraceInstrumentor


@pytest.mark.parametrize("module", [openai_patches, anthropic_patches])
def test_supported_ranges_are_the_extras_and_hold_for_the_installed_sdks(module: object) -> None:
    supported = Requirement(module.SUPPORTED)  # type: ignore[attr-defined]
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert str(Requirement(extras[supported.name][0]).specifier) == str(supported.specifier)
    assert supported.specifier.contains(version(supported.name))


def test_the_instrumentor_itself_traces_and_is_idempotent(telemetry: Telemetry) -> None:
    instrumentor = CanaryTraceInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.provider)
    instrumentor.instrument(tracer_provider=telemetry.provider)
    try:
        openai_client().chat.completions.create(model="gpt-4o-2024-08-06", messages=[])
    finally:
        instrumentor.uninstrument()
    assert len(telemetry.llm_spans()) == 1


def test_an_sdk_outside_the_supported_range_is_left_alone(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(openai_patches, "SUPPORTED", "openai < 1")
    with caplog.at_level("WARNING", logger="canarytrace.instrumentation"):
        instrumentor = CanaryTraceInstrumentor()
        instrumentor.instrument(tracer_provider=telemetry.provider)
    try:
        result = openai_client().chat.completions.create(model="gpt-4o-2024-08-06", messages=[])
    finally:
        instrumentor.uninstrument()
    assert result.id == "chatcmpl-1"
    assert telemetry.llm_spans() == []
    assert "not tracing openai" in caplog.text


def test_another_instrumentation_of_the_same_method_is_reported(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    import wrapt
    from openai.resources.chat.completions.completions import Completions

    original = Completions.__dict__["create"]
    wrapt.wrap_function_wrapper(Completions, "create", lambda wrapped, _i, a, k: wrapped(*a, **k))
    try:
        with caplog.at_level("WARNING", logger="canarytrace.instrumentation"):
            instrumentor = CanaryTraceInstrumentor()
            instrumentor.instrument(tracer_provider=telemetry.provider)
            instrumentor.uninstrument()
    finally:
        Completions.create = original
    assert "Completions.create is already wrapped by another instrumentation" in caplog.text
