"""Tracing of the openai and anthropic SDKs: `instrument()` / `uninstrument()`.

`CanaryTraceInstrumentor` is an OpenTelemetry `BaseInstrumentor` (registered under the
`opentelemetry_instrumentor` entry point, so `opentelemetry-instrument python app.py`
works unchanged). It only wires things up: it builds the tracer and metric instruments
once, then patches the SDK resource classes with `wrapt` (so clients created before
`instrument()` are covered too) through post-import hooks, so the SDKs may be imported
before or after. An SDK that is not installed, or outside the supported range, is
skipped with a log line. The wrappers live in `openai.py` and `anthropic.py`.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,  # listed in __all__, which mypy does not see
)

from canarytrace.instrumentation._call import Instruments
from canarytrace.instrumentation._wrappers import Options

__all__ = ["CanaryTraceInstrumentor", "instrument", "uninstrument"]

_log = logging.getLogger(__name__)
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SDKS = ("openai", "anthropic")


def _content_enabled_by_env() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"


class _Patcher:
    """Applies and removes one SDK's wrappers; reached from a post-import hook."""

    def __init__(self, sdk: str) -> None:
        self.sdk = sdk
        self.applied: list[tuple[str, str]] = []
        self.native: Any = None

    def apply(self, ins: Instruments, options: Options) -> None:
        if self.applied:
            return
        from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

        module = importlib.import_module(f"canarytrace.instrumentation.{self.sdk}")
        conflict = get_dependency_conflicts([module.SUPPORTED])
        if conflict is not None:
            _log.warning("canarytrace: not tracing %s: %s", self.sdk, conflict)
            return
        for target, name, wrapper in module.patches(ins, options):
            owner, method = _resolve(target, name)
            if isinstance(owner.__dict__.get(method), wrapt.FunctionWrapper):
                _log.warning(
                    "canarytrace: %s.%s is already wrapped by another instrumentation "
                    "(e.g. opentelemetry-instrumentation-openai-v2); each call will have two "
                    "spans unless that one is switched off",
                    target,
                    name,
                )
            wrapt.wrap_function_wrapper(owner, method, wrapper)
            self.applied.append((target, name))
        if hasattr(module, "NativeSpanSwitch"):
            self.native = module.NativeSpanSwitch()
            self.native.install()

    def remove(self) -> None:
        for target, name in self.applied:
            owner, method = _resolve(target, name)
            attribute = owner.__dict__.get(method)
            if isinstance(attribute, wrapt.FunctionWrapper):
                setattr(owner, method, attribute.__wrapped__)
        self.applied.clear()
        if self.native is not None:
            self.native.uninstall()
            self.native = None


def _resolve(target: str, name: str) -> tuple[Any, str]:
    """(class, method name) of "Class.method" in module `target`."""
    class_name, method = name.split(".")
    return getattr(importlib.import_module(target), class_name), method


_patchers = {sdk: _Patcher(sdk) for sdk in _SDKS}
_hooks_registered = False


class CanaryTraceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces openai and anthropic calls as GenAI spans with canarytrace's attributes.

    `instrument(**kwargs)` accepts `service_name`, `capture_content`, `tracer_provider`,
    `meter_provider` and `include_stream_usage` (see `canarytrace.instrument`).
    """

    _state: tuple[Instruments, Options] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # Each SDK is optional and version-checked on its own when it is imported.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        global _hooks_registered
        # Imported here: `import canarytrace` should not load the OTel SDK and exporters.
        from canarytrace import pricing, telemetry

        tracer_provider, meter_provider = telemetry.setup(
            kwargs.get("service_name"), kwargs.get("tracer_provider"), kwargs.get("meter_provider")
        )
        capture = kwargs.get("capture_content")
        if capture is None:
            capture = _content_enabled_by_env()
        from canarytrace import __version__

        ins = Instruments(tracer_provider, meter_provider, bool(capture), __version__)
        CanaryTraceInstrumentor._state = (
            ins,
            Options(include_stream_usage=bool(kwargs.get("include_stream_usage"))),
        )
        pricing.warm()
        if not _hooks_registered:
            _hooks_registered = True
            for sdk in _SDKS:
                wrapt.register_post_import_hook(_on_import(sdk), sdk)
        else:
            for sdk in _SDKS:
                if sdk in _imported_sdks:
                    _apply(sdk)

    def _uninstrument(self, **kwargs: Any) -> None:
        CanaryTraceInstrumentor._state = None
        for patcher in _patchers.values():
            patcher.remove()


_imported_sdks: set[str] = set()


def _apply(sdk: str) -> None:
    state = CanaryTraceInstrumentor._state
    if state is None:
        return
    try:
        _patchers[sdk].apply(*state)
    except Exception:
        _log.warning("canarytrace: could not instrument %s", sdk, exc_info=True)


def _on_import(sdk: str) -> Callable[[Any], None]:
    def hook(_module: Any) -> None:
        _imported_sdks.add(sdk)
        _apply(sdk)

    return hook


def instrument(
    registry: Any = None,
    service_name: str | None = None,
    capture_content: bool | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    include_stream_usage: bool = False,
) -> None:
    """Trace every openai/anthropic SDK call from now on; calling it again does nothing.

    - `registry` *(optional)*: a `Registry` or the path of a `models.yaml`, handed to
      `canarytrace.routing.configure` so spans get their route and tier.
    - `service_name` *(optional)*: `service.name` of the provider canarytrace creates
      (ignored when the application set its own TracerProvider).
    - `capture_content` *(optional)*: record prompts and completions; default from
      `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, else off.
    - `tracer_provider`, `meter_provider` *(optional)*: use these instead of the global ones.
    - `include_stream_usage`: ask OpenAI for usage on streamed chat completions
      (`stream_options={"include_usage": True}`, which adds a last chunk with no
      `choices`); off by default because it changes the stream the application sees.
    """
    if registry is not None:
        from canarytrace import routing

        routing.configure(registry=registry)
    instrumentor = CanaryTraceInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return
    instrumentor.instrument(
        service_name=service_name,
        capture_content=capture_content,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        include_stream_usage=include_stream_usage,
    )


def uninstrument() -> None:
    """Restore the SDKs' original methods; calls are no longer traced."""
    instrumentor = CanaryTraceInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
