"""Reading what arrived: the collector's files, Jaeger's query API, and the test app.

These read the stores directly (not through canarytrace.analysis) so that a count of
spans received does not depend on the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

APP = Path(__file__).with_name("app.py")
# Upper bound on waiting for spans to arrive; never an assertion about speed.
ARRIVAL_TIMEOUT_S = 90.0

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: Callable[[], str]) -> T:
    """Poll `check` until it returns something truthy; fail with `what()` at the deadline."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {ARRIVAL_TIMEOUT_S} s: {what()}")
        time.sleep(0.25)


def wait_for_spans(
    fetch: Callable[[], dict[str, StoredSpan]], expected: set[str] | int, where: str
) -> dict[str, StoredSpan]:
    """Poll `fetch` until it holds the `expected` span ids (or that many spans)."""
    last: dict[str, StoredSpan] = {}

    def arrived() -> bool:
        nonlocal last
        last = fetch()
        if isinstance(expected, int):
            return len(last) >= expected
        return last.keys() >= expected

    wanted = expected if isinstance(expected, int) else len(expected)
    wait_until(arrived, lambda: f"{where} holds {len(last)} spans, expected {wanted}")
    return last


def _otlp_value(value: dict[str, Any]) -> Any:
    """The Python value of an OTLP/JSON AnyValue."""
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return value


@dataclass(frozen=True)
class StoredSpan:
    """The parts of a stored span these tests look at."""

    trace_id: str
    span_id: str
    name: str
    service: str
    attributes: dict[str, Any]


def spans_in_files(folder: Path) -> dict[str, StoredSpan]:
    """Every span in the file exporter's OTLP/JSON lines under `folder`, by span id."""
    found: dict[str, StoredSpan] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", []):
                resource = {
                    a["key"]: _otlp_value(a["value"])
                    for a in resource_spans.get("resource", {}).get("attributes", [])
                }
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        found[span["spanId"]] = StoredSpan(
                            trace_id=span["traceId"],
                            span_id=span["spanId"],
                            name=span["name"],
                            service=str(resource.get("service.name", "")),
                            attributes={
                                a["key"]: _otlp_value(a["value"])
                                for a in span.get("attributes", [])
                            },
                        )
    return found


def metric_names_in_files(folder: Path) -> dict[str, set[str]]:
    """The names of the metrics in the file exporter's OTLP/JSON lines, by service."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            for resource_metrics in json.loads(line).get("resourceMetrics", []) if line else []:
                resource = {
                    a["key"]: _otlp_value(a["value"])
                    for a in resource_metrics.get("resource", {}).get("attributes", [])
                }
                names = found.setdefault(str(resource.get("service.name", "")), set())
                for scope_metrics in resource_metrics.get("scopeMetrics", []):
                    names.update(m["name"] for m in scope_metrics.get("metrics", []))
    return found


def jaeger_spans(
    query_url: str, service: str, tags: dict[str, str] | None = None
) -> dict[str, StoredSpan]:
    """Spans of `service` in Jaeger, by span id, found through the query API's tag search.

    With `tags`, only the spans that carry all of them (Jaeger returns whole traces
    whose spans match; the other spans of such a trace are left out here).
    """
    params = {"service": service, "limit": "10000", "lookback": "1h"}
    if tags:
        params["tags"] = json.dumps(tags)
    url = f"{query_url}/api/traces?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    found: dict[str, StoredSpan] = {}
    for trace in body.get("data") or []:
        processes = trace.get("processes", {})
        for span in trace.get("spans", []):
            attributes = {t["key"]: t["value"] for t in span.get("tags", [])}
            if tags and any(str(attributes.get(k)) != v for k, v in tags.items()):
                continue
            found[span["spanID"]] = StoredSpan(
                trace_id=span["traceID"],
                span_id=span["spanID"],
                name=span["operationName"],
                service=processes.get(span.get("processID"), {}).get("serviceName", ""),
                attributes=attributes,
            )
    return found


class AppRun:
    """The test app (app.py) as a child process speaking JSON lines."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.events: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [sys.executable, str(APP), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def expect(self, event: str) -> dict[str, Any]:
        """Read lines until `event`; fail with the app's stderr if it ends first."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message: dict[str, Any] = json.loads(line)
            self.events.append(message)
            if message["event"] == event:
                return message
        self.process.wait()
        pytest.fail(f"app ended ({self.process.returncode}) before {event!r}:\n{self.stderr()}")

    def go(self) -> None:
        """Let a paused app continue."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> dict[str, Any]:
        """Wait for the final report and the exit; fail if the app failed."""
        done = self.expect("done")
        code = self.process.wait(timeout=120)
        assert code == 0, self.stderr()
        return done

    def stderr(self) -> str:
        """What the app logged (the SDK's warnings about exports land here)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Kill the app if a failed test left it running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
