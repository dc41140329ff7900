"""What survives when the collector or a back-end goes away.

The guarantees these tests pin down (the README's "Running with a collector" says the
same to users):

* App -> collector: the SDK's OTLP exporter retries a refused export with backoff
  (1 s, 2 s, 4 s, ...) until OTEL_EXPORTER_OTLP_TIMEOUT runs out, while the batch span
  processor keeps up to OTEL_BSP_MAX_QUEUE_SIZE (2048) spans. A collector outage
  shorter than about half that timeout therefore loses nothing; beyond the queue or the
  timeout spans are dropped, each drop logged by the SDK, and the app is never slowed
  down or made to fail.
* Collector -> Jaeger/Tempo: a span the collector accepted sits in the sending queue
  on disk (file_storage) until the back-end takes it, retried without a deadline, and a
  clean restart of the collector (SIGTERM, as orchestrators stop it) resumes from the
  disk. A crash (SIGKILL) may lose what the batch processor held (at most 1 s).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .servers import free_port
from .stores import jaeger_spans, spans_in_files, wait_for_spans

pytestmark = pytest.mark.integration


def test_a_collector_restart_mid_run_loses_no_span(
    start_jaeger: Any, start_collector: Any, start_app: Any
) -> None:
    service = f"canarytrace-restart-{uuid.uuid4().hex[:8]}"
    jaeger_port = free_port()
    # Jaeger is not up yet: what the collector accepts must wait in its queue on disk.
    collector = start_collector(f"127.0.0.1:{jaeger_port}", f"http://127.0.0.1:{free_port()}")
    app = start_app(
        "--calls", "24", "--pause-after", "12", "--wait-before-flush",
        endpoint=collector.otlp_http,
        service=service,
        OTEL_EXPORTER_OTLP_TIMEOUT="30",
    )  # fmt: skip

    paused = app.expect("paused")  # the first half is flushed to the collector
    wait_for_spans(lambda: spans_in_files(collector.traces_dir), paused["spans"], "the files")
    collector.server.stop()

    app.go()  # the second half while nothing listens on the OTLP port
    app.expect("calls-done")
    collector.server.start()  # same ports, same queue folder
    jaeger = start_jaeger(otlp_grpc_port=jaeger_port)
    app.go()
    done = app.finish()

    in_files = wait_for_spans(
        lambda: spans_in_files(collector.traces_dir), done["spans"], "the files"
    )
    in_jaeger = wait_for_spans(
        lambda: jaeger_spans(jaeger.query_url, service), done["spans"], "Jaeger"
    )
    sent = done["spans"]
    assert len(in_files) == sent and len(in_jaeger) == sent
    assert {c["span_id"] for c in done["calls"]} <= in_jaeger.keys()
    assert "Transient error" in app.stderr()  # the SDK did have to retry


def test_with_the_collector_gone_the_app_answers_with_bounded_memory(start_app: Any) -> None:
    calls, prompt_bytes = 400, 50_000
    app = start_app(
        "--calls", str(calls), "--memory-every", "100", "--prompt-bytes", str(prompt_bytes),
        endpoint=f"http://127.0.0.1:{free_port()}",  # nothing ever listens here
        service=f"canarytrace-down-{uuid.uuid4().hex[:8]}",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
        OTEL_BSP_MAX_QUEUE_SIZE="64",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="32",
    )  # fmt: skip
    done = app.finish()

    assert done["answered"] + sum(e["event"] == "call-error" for e in app.events) == calls
    # The SDK logs that its queue overflowed and each batch it gave up on; it does not
    # log how many spans that was (see the README).
    log = app.stderr()
    assert "Queue full, dropping Span" in log
    assert "Failed to export spans batch" in log
    # Every span carries its ~50 kB prompt: had the app kept them, 300 calls would add
    # some 15 MB (and more with the answers); a bounded queue adds nothing after warm-up.
    rss = {e["calls"]: e["max_rss_kib"] for e in app.events if e["event"] == "memory"}
    growth_kib = rss[calls] - rss[100]
    assert growth_kib < (calls - 100) * prompt_bytes // 1024 // 3, rss
