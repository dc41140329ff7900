"""What survives when the collector or a back-end goes away.

The guarantees these tests pin down (the README's "Running with a collector" says the
same to users):

* App -> collector: the SDK's OTLP exporter retries a refused export with backoff
  (1 s, 2 s, 4 s, ...) until OTEL_EXPORTER_OTLP_TIMEOUT runs out, while the batch span
  processor keeps up to OTEL_BSP_MAX_QUEUE_SIZE (2048) spans. A collector outage
  shorter than about half that timeout therefore loses nothing; beyond the queue or the
  timeout spans are dropped (the SDK logs the queue overflow and every batch it gives
  up on, not the number of spans), and the app is never slowed down or made to fail.
* Collector -> Jaeger/Tempo: a span the collector accepted sits in the sending queue
  on disk (file_storage) until the back-end takes it, retried without a deadline, and a
  clean restart of the collector (SIGTERM, as orchestrators stop it) resumes from the
  disk; so does a crash (SIGKILL) for every span that had left the batch processor,
  which may lose what it still held (at most its 1 s timeout's worth).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .servers import free_port
from .stores import jaeger_spans, spans_in_files, wait_for_spans, wait_until

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
    # The SDK must meet the outage (and retry) before the collector returns: its batch
    # delay is 100 ms, but a loaded machine can postpone the export past a quick restart.
    wait_until(
        lambda: "Transient error" in app.stderr(),
        lambda: f"no export was tried during the outage; the app logged:\n{app.stderr()}",
    )
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


def test_spans_queued_for_jaeger_survive_a_collector_crash(
    start_jaeger: Any, start_collector: Any, start_app: Any
) -> None:
    service = f"canarytrace-crash-{uuid.uuid4().hex[:8]}"
    jaeger_port = free_port()
    collector = start_collector(f"127.0.0.1:{jaeger_port}", f"http://127.0.0.1:{free_port()}")
    done = start_app("--calls", "12", endpoint=collector.otlp_http, service=service).finish()
    # In the files means past the batch processor, so in the Jaeger queue on disk too.
    wait_for_spans(lambda: spans_in_files(collector.traces_dir), done["spans"], "the files")

    collector.server.crash()
    collector.server.start()
    jaeger = start_jaeger(otlp_grpc_port=jaeger_port)

    in_jaeger = wait_for_spans(
        lambda: jaeger_spans(jaeger.query_url, service), done["spans"], "Jaeger"
    )
    assert len(in_jaeger) == done["spans"]


def test_with_the_collector_gone_the_app_answers_with_bounded_memory(start_app: Any) -> None:
    calls, queue, batch = 150, 64, 32
    app = start_app(
        "--calls", str(calls), "--memory-every", "50", "--no-flush",
        endpoint=f"http://127.0.0.1:{free_port()}",  # nothing ever listens here
        service=f"canarytrace-down-{uuid.uuid4().hex[:8]}",
        # Each export is retried for 4 s, so spans come faster than they are given up.
        OTEL_EXPORTER_OTLP_TIMEOUT="4",
        OTEL_BSP_MAX_QUEUE_SIZE=str(queue),
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE=str(batch),
    )  # fmt: skip
    done = app.finish()

    errors = sum(e["event"] == "call-error" for e in app.events)
    assert done["answered"] + errors == calls and done["answered"] > errors
    # The app never holds more spans than the queue plus the batch being exported (and
    # the span just ending): memory stays bounded however long the outage. Without the
    # bound (a queue of 100000) the same run holds ~160 spans at the end and climbing.
    held = {e["calls"]: e["live_spans"] for e in app.events if e["event"] == "memory"}
    assert len(held) == calls // 50
    assert max(held.values()) <= queue + batch + 1, held
    # The SDK logs that its queue overflowed and each batch it gave up on; it does not
    # log how many spans that was (see the README). The exporter's words changed from
    # "span batch" (1.41) to "spans batch".
    log = app.stderr()
    assert "Queue full, dropping Span" in log
    assert "Failed to export span" in log
