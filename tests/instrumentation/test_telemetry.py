"""The embedded exporter writes what the collector's file exporter writes (OTLP/JSON)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from canarytrace import telemetry
from canarytrace.instrumentation import instrument, uninstrument
from canarytrace.telemetry import DeliveryCountingProcessor, OtlpJsonLinesExporter
from tests.forking import in_forked_child
from tests.instrumentation.conftest import openai_client

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _provider(tmp_path: Path, **kwargs: Any) -> tuple[TracerProvider, OtlpJsonLinesExporter]:
    exporter = OtlpJsonLinesExporter(tmp_path, **kwargs)
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("traces-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_embedded_files_parse_as_otlp_json(tmp_path: Path) -> None:
    provider, _ = _provider(tmp_path)
    instrument(tracer_provider=provider)
    try:
        openai_client().chat.completions.create(
            model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "x"}]
        )
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("parent") as parent:
            parent.set_status(Status(StatusCode.ERROR, "boom"))
            with tracer.start_as_current_span("child"):
                pass
    finally:
        uninstrument()
        provider.shutdown()
    requests = _lines(tmp_path)
    spans = {
        span["name"]: span
        for request in requests
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    }
    resource = requests[0]["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "svc"}} in resource
    llm = spans["chat gpt-4o-2024-08-06"]
    assert HEX32.match(llm["traceId"]) and HEX16.match(llm["spanId"])
    assert llm["kind"] == 3  # CLIENT, as an integer
    assert isinstance(llm["startTimeUnixNano"], str) and llm["startTimeUnixNano"].isdigit()
    assert int(llm["endTimeUnixNano"]) >= int(llm["startTimeUnixNano"])
    attrs = {a["key"]: a["value"] for a in llm["attributes"]}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "12"}  # int64 as a string
    assert attrs["canarytrace.pinned"] == {"boolValue": True}
    assert "doubleValue" in attrs["canarytrace.cost_usd"]
    assert attrs["gen_ai.response.finish_reasons"] == {
        "arrayValue": {"values": [{"stringValue": "stop"}]}
    }
    assert spans["parent"]["status"] == {"code": 2, "message": "boom"}
    assert spans["child"]["parentSpanId"] == spans["parent"]["spanId"]
    assert HEX16.match(spans["child"]["parentSpanId"])


def test_files_rotate_by_size(tmp_path: Path) -> None:
    provider, _ = _provider(tmp_path, max_bytes=1)
    tracer = provider.get_tracer("app")
    for n in range(3):
        tracer.start_span(f"span {n}", kind=SpanKind.INTERNAL).end()
    provider.shutdown()
    files = sorted(tmp_path.glob("traces-*.jsonl"))
    assert len(files) == 3
    assert all(len(f.read_text().splitlines()) == 1 for f in files)


def test_setup_reuses_the_applications_provider(monkeypatch: Any) -> None:
    app_provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: app_provider)
    provider, _ = telemetry.setup()
    assert provider is app_provider


def test_exporter_choice_follows_otel_variables(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("CANARYTRACE_TRACES_DIR", str(tmp_path))
    embedded = telemetry._create_exporter()
    assert isinstance(embedded, OtlpJsonLinesExporter) and embedded.directory == tmp_path

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    http = telemetry._create_exporter()
    assert type(http).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    grpc = telemetry._create_exporter()
    assert type(grpc).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    for exporter in (embedded, http, grpc):
        exporter.shutdown()


def test_embedded_default_writes_files_when_nothing_is_configured(tmp_path: Path) -> None:
    """A fresh process with no provider and no endpoint: files appear after flush()."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import canarytrace
        from canarytrace import telemetry
        canarytrace.instrument(service_name="demo")
        from tests.instrumentation.conftest import openai_client
        openai_client().chat.completions.create(model="gpt-4o-2024-08-06", messages=[])
        canarytrace.feedback(canarytrace.current_call(), 4)
        assert telemetry.flush()
        """
    )
    env = {
        **_clean_env(),
        "CANARYTRACE_TRACES_DIR": str(tmp_path / "traces"),
        "PYTHONPATH": str(Path.cwd()),
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    names = [
        span["name"]
        for request in _lines(tmp_path / "traces")
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]
    assert sorted(names) == ["canarytrace.feedback", "chat gpt-4o-2024-08-06"]


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def test_spans_are_written_at_exit_without_an_explicit_flush(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import canarytrace\n"
        "canarytrace.instrument()\n"
        "from tests.instrumentation.conftest import openai_client\n"
        "openai_client().chat.completions.create(model='gpt-4o-2024-08-06', messages=[])\n"
    )
    env = {**_clean_env(), "CANARYTRACE_TRACES_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert len(_lines(tmp_path)) == 1


def test_an_unwritable_folder_fails_the_export_without_raising(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    provider, exporter = _provider(blocker / "traces")
    provider.get_tracer("app").start_span("lost").end()
    assert exporter.current_path is None
    provider.shutdown()


class _Unreachable(SpanExporter):
    """An exporter whose destination is down: every export fails."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_lost_spans_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    processor = DeliveryCountingProcessor(_Unreachable(), report_every_s=3600)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with caplog.at_level(logging.WARNING, logger="canarytrace.telemetry"):
        for _ in range(5):
            tracer.start_span("call").end()
        provider.force_flush()
        for _ in range(3):
            tracer.start_span("call").end()
        provider.shutdown()

    assert (processor.handed, processor.delivered, processor.failed) == (8, 0, 8)
    messages = [r.getMessage() for r in caplog.records if r.name == "canarytrace.telemetry"]
    # One report while exports fail (rate-limited), one total at shutdown.
    assert len(messages) == 2
    assert "5 of 5 spans dropped so far" in messages[0]
    assert "8 of 8 spans were not delivered by _Unreachable" in messages[1]


def test_delivered_spans_log_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    processor = DeliveryCountingProcessor(OtlpJsonLinesExporter(tmp_path))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with caplog.at_level(logging.WARNING, logger="canarytrace.telemetry"):
        for _ in range(4):
            provider.get_tracer("test").start_span("call").end()
        provider.shutdown()

    assert (processor.handed, processor.delivered, processor.failed) == (4, 4, 0)
    assert not [r for r in caplog.records if r.name == "canarytrace.telemetry"]
    assert len(_lines(tmp_path)) >= 1


def _span_names_by_pid(folder: Path) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for path in folder.glob("traces-*.jsonl"):
        pid = int(path.name.split("-")[2])
        for line in path.read_text(encoding="utf-8").splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    names.setdefault(pid, []).extend(span["name"] for span in scope["spans"])
    return names


def test_a_fork_waits_for_the_export_in_progress_and_the_child_writes_its_own_file(
    tmp_path: Path,
) -> None:
    provider, exporter = _provider(tmp_path)
    tracer = provider.get_tracer("app")
    tracer.start_span("before the fork").end()  # the parent's file is open
    writing, release = threading.Event(), threading.Event()

    def an_export_in_progress() -> None:
        with exporter._lock:  # as `export` holds it while it writes
            writing.set()
            release.wait()

    writer = threading.Thread(target=an_export_in_progress)
    writer.start()
    writing.wait()
    threading.Timer(0.2, release.set).start()  # the write ends while fork() waits for it

    def child() -> None:
        tracer.start_span("in the child").end()
        provider.shutdown()

    child_pid, code = in_forked_child(child)
    writer.join()
    tracer.start_span("after the fork").end()
    provider.shutdown()
    assert code == 0
    assert _span_names_by_pid(tmp_path) == {
        os.getpid(): ["before the fork", "after the fork"],
        child_pid: ["in the child"],
    }


def test_a_fork_while_a_span_is_counted_leaves_the_child_counting_its_own(tmp_path: Path) -> None:
    processor = DeliveryCountingProcessor(OtlpJsonLinesExporter(tmp_path))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    for _ in range(3):
        tracer.start_span("in the parent").end()
    counting, release = threading.Event(), threading.Event()

    def a_span_being_counted() -> None:
        with processor._count_lock:  # as another thread's span end holds it
            counting.set()
            release.wait()

    other = threading.Thread(target=a_span_being_counted)
    other.start()
    counting.wait()

    def child() -> None:
        tracer.start_span("in the child").end()  # hung here on the parent's held lock
        provider.shutdown()
        assert (processor.handed, processor.delivered) == (1, 1)

    _, code = in_forked_child(child)
    release.set()
    other.join()
    provider.shutdown()
    assert code == 0
    assert (processor.handed, processor.delivered) == (3, 3)
