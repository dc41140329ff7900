"""The span export keeps working, or fails quietly, when the process or its folder changes.

Forked multiprocessing workers, a traces folder cleared while the app runs, a full disk
at exit, batch settings the SDK rejects, a chdir(), flush() with the application's
own provider, and OTEL_TRACES_EXPORTER=none.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from canarytrace import telemetry
from canarytrace.instrumentation import instrument, uninstrument
from canarytrace.telemetry import DeliveryCountingProcessor, OtlpJsonLinesExporter

LOGGER = "canarytrace.telemetry"


def _names_by_file(folder: Path) -> dict[str, list[str]]:
    return {
        path.name: [
            span["name"]
            for line in path.read_text(encoding="utf-8").splitlines()
            for resource in json.loads(line)["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]
        for path in sorted(folder.glob("traces-*.jsonl"))
    }


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_multiprocessing_fork_workers_write_their_spans(tmp_path: Path) -> None:
    """Process and Pool workers end with os._exit(), skipping the atexit flush."""
    script = textwrap.dedent(
        """
        import multiprocessing, os
        import canarytrace
        from opentelemetry import trace
        canarytrace.instrument()

        def work(n):
            trace.get_tracer("app").start_span(f"worker {n}").end()
            return os.getpid()

        ctx = multiprocessing.get_context("fork")
        processes = [ctx.Process(target=work, args=(n,)) for n in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            assert process.exitcode == 0
        pool = ctx.Pool(2)
        pool.map(work, range(10, 16))
        pool.close()
        pool.join()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"CANARYTRACE_TRACES_DIR": str(tmp_path), "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names = [name for names in _names_by_file(tmp_path).values() for name in names]
    assert sorted(names) == sorted(f"worker {n}" for n in [0, 1, 2, 10, 11, 12, 13, 14, 15])


def test_a_removed_folder_is_recreated_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "traces"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(folder)))
    tracer = provider.get_tracer("app")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tracer.start_span("before").end()
        shutil.rmtree(folder)  # old traces cleared while the app runs
        for n in range(3):
            tracer.start_span(f"after {n}").end()
        provider.shutdown()

    assert list(_names_by_file(folder).values()) == [["after 0", "after 1", "after 2"]]
    messages = _warnings(caplog)
    assert len(messages) == 1 and "was removed while in use" in messages[0]


class _FullDiskFile:
    """The exporter's file on a disk that just filled up: writes buffer, flushes fail."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.name = real.name

    def fileno(self) -> int:
        return int(self._real.fileno())

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        self._real.close()
        self.flush()


def test_a_full_disk_at_exit_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = OtlpJsonLinesExporter(tmp_path)
    processor = DeliveryCountingProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    tracer.start_span("written").end()
    provider.force_flush()
    exporter._file = _FullDiskFile(exporter._file)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tracer.start_span("lost").end()
        provider.shutdown()  # what the SDK's atexit callback does

    assert exporter.current_path is None
    messages = _warnings(caplog)
    assert len(messages) == 3, messages
    assert "cannot write traces" in messages[0] and "No space left" in messages[0]
    assert "1 of 2 spans were not delivered" in messages[-1]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE=0"),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "500"},
            "OTEL_BSP_MAX_QUEUE_SIZE=100, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=500",
        ),
    ],
)
def test_rejected_batch_settings_fall_back_to_the_defaults(
    variables: dict[str, str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("CANARYTRACE_TRACES_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        provider = telemetry._create_provider("svc")  # what instrument() creates
    provider.get_tracer("app").start_span("still traced").end()
    provider.shutdown()

    messages = _warnings(caplog)
    assert len(messages) == 1 and f"ignoring {named} (" in messages[0]
    assert list(_names_by_file(tmp_path).values()) == [["still traced"]]


def test_a_chdir_does_not_move_the_embedded_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, later = tmp_path / "started", tmp_path / "later"
    started.mkdir()
    later.mkdir()
    monkeypatch.chdir(started)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(Path("traces"))))
    monkeypatch.chdir(later)  # a daemon's chdir, before the first export
    provider.get_tracer("app").start_span("call").end()
    provider.shutdown()

    assert list(_names_by_file(started / "traces").values()) == [["call"]]
    assert not (later / "traces").exists()


def test_flush_flushes_the_provider_given_to_instrument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_provider_in_use", None)
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exported, schedule_delay_millis=60_000))
    instrument(tracer_provider=provider)
    try:
        provider.get_tracer("app").start_span("call").end()
        assert telemetry.flush()
        assert [span.name for span in exported.get_finished_spans()] == ["call"]
    finally:
        uninstrument()
        provider.shutdown()


def test_otel_traces_exporter_none_writes_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("CANARYTRACE_TRACES_DIR", str(tmp_path / "traces"))
    provider = telemetry._create_provider("svc")
    provider.get_tracer("app").start_span("not exported").end()
    provider.shutdown()

    assert not (tmp_path / "traces").exists()
