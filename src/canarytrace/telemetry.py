"""Where canarytrace's spans go: the application's provider, OTLP, or local files.

`setup()` picks, in this order:

1. the TracerProvider given to `instrument(tracer_provider=...)`;
2. the application's own global TracerProvider, if it set one (canarytrace then adds
   nothing to it, so spans go wherever the application already sends them);
3. a new TracerProvider with a BatchSpanProcessor, set as the global one, exporting
   - over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
     is set (`http/protobuf` by default, `grpc` per `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`;
     the exporters read the other `OTEL_EXPORTER_OTLP_*` variables themselves), with
     GenAI metrics exported the same way;
   - else to the embedded default, `OtlpJsonLinesExporter`, in `$CANARYTRACE_TRACES_DIR`
     or `./.canarytrace/traces/`;
   - nowhere when `OTEL_TRACES_EXPORTER=none`.

The embedded files hold one OTLP/JSON `ExportTraceServiceRequest` per line, encoded
exactly as the OpenTelemetry Collector's `file` exporter does with `format: json`, so
one loader reads both: lowerCamelCase field names, trace and span ids as lowercase hex,
64-bit integers as decimal strings, enums (`kind`, `status.code`) as integers, unset
fields left out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

TRACES_DIR_ENV = "CANARYTRACE_TRACES_DIR"
DEFAULT_TRACES_DIR = Path(".canarytrace") / "traces"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_SERVICE_NAME = "canarytrace-app"

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
#: The BatchSpanProcessor arguments the SDK validates, and the variable that sets each.
_BSP_VARIABLES = {
    "max_queue_size": "OTEL_BSP_MAX_QUEUE_SIZE",
    "schedule_delay_millis": "OTEL_BSP_SCHEDULE_DELAY",
    "max_export_batch_size": "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
}
_log = logging.getLogger(__name__)
_owned_provider: TracerProvider | None = None
_provider_in_use: trace.TracerProvider | None = None
_setup_lock = threading.Lock()


def setup(
    service_name: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> tuple[trace.TracerProvider, metrics.MeterProvider | None]:
    """The tracer and meter providers canarytrace should use, creating them if needed.

    The meter provider is None when nobody has set one: the GenAI metrics are then not
    recorded at all (rather than handed to a no-op), so set the application's
    MeterProvider before `instrument()`, or pass it as `meter_provider=`.
    """
    global _owned_provider, _provider_in_use
    if tracer_provider is None:
        tracer_provider = _application_provider()
    if tracer_provider is None:
        with _setup_lock:
            if _owned_provider is None:
                _owned_provider = _create_provider(service_name)
                trace.set_tracer_provider(_owned_provider)
                if meter_provider is None and _otlp_endpoint("METRICS"):
                    metrics.set_meter_provider(_create_meter_provider(_owned_provider.resource))
            tracer_provider = _owned_provider
    _provider_in_use = tracer_provider
    return tracer_provider, meter_provider or _application_meter_provider()


def flush(timeout_millis: int = 30_000) -> bool:
    """Export every finished span now (of the provider canarytrace uses); True on success."""
    provider = _provider_in_use or trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    return bool(force_flush(timeout_millis)) if force_flush else True


def _application_provider() -> trace.TracerProvider | None:
    provider = trace.get_tracer_provider()
    # The API's placeholders until somebody sets a real one.
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider


def _application_meter_provider() -> metrics.MeterProvider | None:
    provider = metrics.get_meter_provider()
    # The API's placeholders until somebody sets a real one.
    if isinstance(provider, metrics.NoOpMeterProvider):
        return None
    if type(provider).__name__ == "_ProxyMeterProvider":
        return None
    return provider


def _resource(service_name: str | None) -> Resource:
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _otlp_endpoint(signal: str) -> str | None:
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def _otlp_protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _create_provider(service_name: str | None) -> TracerProvider:
    provider = TracerProvider(resource=_resource(service_name))
    # The OTel variable that turns trace export off: no files, no OTLP.
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() != "none":
        provider.add_span_processor(DeliveryCountingProcessor(_create_exporter()))
    return provider


def _create_exporter() -> SpanExporter:
    if not _otlp_endpoint("TRACES"):
        return OtlpJsonLinesExporter(os.environ.get(TRACES_DIR_ENV) or DEFAULT_TRACES_DIR)
    if _otlp_protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _create_meter_provider(resource: Resource) -> metrics.MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader

    exporter: MetricExporter
    if _otlp_protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        exporter = HttpMetricExporter()
    reader = PeriodicExportingMetricReader(exporter)
    return MeterProvider(resource=resource, metric_readers=[reader])


class DeliveryCountingProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that says how many spans never reached their destination.

    The SDK logs the first "Queue full" and each failed export, but never a count. This
    counts the spans handed over and the spans each export delivered or lost, logs the
    running total of lost spans at most every `report_every_s` while exports fail, and
    at shutdown logs how many of all the spans were lost (a failed export after the
    exporter's own retries, a full queue while the destination was down, or spans still
    queued when the exit timeout ran out).
    """

    def __init__(self, exporter: SpanExporter, report_every_s: float = 30.0) -> None:
        self.handed = 0
        self.delivered = 0
        self.failed = 0
        self._report_every_s = report_every_s
        self._next_report = 0.0
        self._count_lock = threading.Lock()
        self._destination = type(exporter).__name__
        counting = _CountingExporter(exporter, self._on_export)
        try:
            super().__init__(counting)
        except ValueError as error:  # OTEL_BSP_* values the SDK rejects: start all the same
            _log.warning(
                "canarytrace: ignoring %s (%s); using the default batch settings",
                _rejected_bsp_variables(str(error)),
                error,
            )
            # The OpenTelemetry specification's defaults.
            super().__init__(
                counting, max_queue_size=2048, schedule_delay_millis=5000, max_export_batch_size=512
            )
        _live_processors.add(self)

    def on_end(self, span: ReadableSpan) -> None:
        with self._count_lock:
            self.handed += 1
        super().on_end(span)

    def shutdown(self) -> None:
        super().shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        lost = self.handed - self.delivered
        if lost > 0:
            _log.warning(
                "canarytrace: %d of %d spans were not delivered by %s (%d in failed exports, "
                "the rest dropped from a full queue or unsent at exit)",
                lost,
                self.handed,
                self._destination,
                self.failed,
            )

    def _forked(self) -> None:
        """In a forked child: a new lock (a thread the child lacks may have held the
        parent's, and every span's end would wait for it) and counts of its own."""
        self._count_lock = threading.Lock()
        self.handed = self.delivered = self.failed = 0
        self._next_report = 0.0

    def _on_export(self, count: int, ok: bool) -> None:
        with self._count_lock:
            if ok:
                self.delivered += count
                return
            self.failed += count
            now = time.monotonic()
            if now < self._next_report:
                return
            self._next_report = now + self._report_every_s
            failed, handed = self.failed, self.handed
        _log.warning(
            "canarytrace: %d of %d spans dropped so far: %s cannot deliver them; "
            "the application keeps running",
            failed,
            handed,
            self._destination,
        )


def _rejected_bsp_variables(message: str) -> str:
    """The OTEL_BSP_* variables, with their values, that the SDK's `message` names."""
    named = [
        f"{var}={os.environ[var]}"
        for arg, var in _BSP_VARIABLES.items()
        if arg in message and var in os.environ
    ]
    return ", ".join(named) or "the OTEL_BSP_* variables"


class _CountingExporter(SpanExporter):
    """Passes every call to `inner` and reports each export's size and success."""

    def __init__(self, inner: SpanExporter, on_export: Callable[[int, bool], None]) -> None:
        self._inner = inner
        self._on_export = on_export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._on_export(len(spans), False)
            raise
        self._on_export(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


class OtlpJsonLinesExporter(SpanExporter):
    """Writes each export batch as one OTLP/JSON line to `traces-*.jsonl` in `directory`.

    A file is rotated when it passes `max_bytes`; names carry the start time and the
    process id, so several processes can share one folder. Every line is flushed to the
    OS as it is written, so a crash loses at most the batch being written. A process
    forked from one that exports (a pre-forking server's workers) writes files of its
    own: see `_fork_safely`. A file or folder removed while the process runs (old
    traces cleared) is noticed at the next export, which starts a new file.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES):
        # Absolute now: a later chdir() must not move where the spans go.
        self.directory = Path(directory).absolute()
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: Any = None
        self._written = 0
        self._sequence = 0
        self._failed = False
        self._warned_removed = False
        _live_exporters.add(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = (encode_spans_json(spans) + "\n").encode("utf-8")
        with self._lock:
            try:
                if self._file is None or self._written >= self.max_bytes or self._removed():
                    self._rotate()
                self._file.write(data)
                self._file.flush()
            except OSError as error:  # a full disk or an unwritable folder: drop, say so once
                self._warn_failed(error)
                return SpanExportResult.FAILURE
            self._written += len(data)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            try:
                if self._file is not None:
                    self._file.flush()
            except OSError as error:
                self._warn_failed(error)
                return False
        return True

    def shutdown(self) -> None:
        """Close the file; a full disk is logged, never raised (this runs at exit)."""
        with self._lock:
            try:
                if self._file is not None:
                    self._file.close()
            except OSError as error:
                self._warn_failed(error)
            finally:
                self._file = None

    @property
    def current_path(self) -> Path | None:
        """The file being written, None before the first export."""
        return Path(self._file.name) if self._file is not None else None

    def _forked(self) -> None:
        """In a forked child: leave the parent's file to the parent (the child's copy holds
        nothing unwritten, the fork having waited for the lock) and open one named with
        the child's pid at the next export."""
        self._file = None
        self._written = 0
        self._lock.release()

    def _removed(self) -> bool:
        """Whether the open file was deleted (its folder cleared): writes would vanish."""
        if self._file is None or os.fstat(self._file.fileno()).st_nlink > 0:
            return False
        if not self._warned_removed:
            self._warned_removed = True
            _log.warning(
                "canarytrace: %s was removed while in use; writing to a new file in %s",
                self._file.name,
                self.directory,
            )
        return True

    def _warn_failed(self, error: OSError) -> None:
        if not self._failed:
            self._failed = True
            _log.warning("canarytrace: cannot write traces to %s: %s", self.directory, error)

    def _rotate(self) -> None:
        previous, self._file = self._file, None  # a close that fails leaves no closed file
        if previous is not None:
            previous.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"traces-{stamp}-{os.getpid()}-{self._sequence:04d}.jsonl"
        self._file = open(self.directory / name, "ab")  # noqa: SIM115 (kept open across exports)
        self._written = 0


#: Every exporter and counting processor alive in this process, and the exporters whose
#: locks a fork in progress holds.
_live_exporters: weakref.WeakSet[OtlpJsonLinesExporter] = weakref.WeakSet()
_live_processors: weakref.WeakSet[DeliveryCountingProcessor] = weakref.WeakSet()
_held_for_fork: list[OtlpJsonLinesExporter] = []
_flush_in_workers_registered = False


def _fork_safely() -> None:
    """Make `os.fork()` wait for the exports in progress, so that no child is born with
    an exporter's lock held by a thread it does not have (its exports would block
    forever) or with half a line in the parent's file buffer (it would write it again);
    the child's counting processors start afresh."""

    def before() -> None:
        _flush_in_multiprocessing_workers()
        _held_for_fork[:] = list(_live_exporters)
        for exporter in _held_for_fork:
            exporter._lock.acquire()

    def in_parent() -> None:
        for exporter in _held_for_fork:
            exporter._lock.release()
        _held_for_fork.clear()

    def in_child() -> None:
        for exporter in _held_for_fork:
            exporter._forked()
        _held_for_fork.clear()
        for processor in list(_live_processors):
            processor._forked()

    os.register_at_fork(before=before, after_in_parent=in_parent, after_in_child=in_child)


def _flush_in_multiprocessing_workers() -> None:
    """Have multiprocessing's forked workers flush their spans as they end: they leave
    with `os._exit()`, which skips the atexit flush, but run multiprocessing's finalizers.

    Registered once, with the first fork after multiprocessing was imported (a fork by
    multiprocessing implies it), so canarytrace never imports it itself.
    """
    global _flush_in_workers_registered
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or _flush_in_workers_registered:
        return
    _flush_in_workers_registered = True
    # Run in each new worker: its finalizers were cleared just before.
    mp_util.register_after_fork(
        sys.modules[__name__], lambda _module: mp_util.Finalize(None, flush, exitpriority=0)
    )


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    _fork_safely()


def encode_spans_json(spans: Sequence[ReadableSpan]) -> str:
    """`spans` as one OTLP/JSON ExportTraceServiceRequest, in the collector's encoding."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False)


def _hex_ids(record: dict[str, Any]) -> None:
    # Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids as hex.
    for field in _ID_FIELDS:
        if field in record:
            record[field] = base64.b64decode(record[field]).hex()
