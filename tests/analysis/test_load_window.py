"""Jaeger and Tempo are asked for the window judged (`since`/`until`), not only for the
source's `lookback=` back from now; calls the answer holds outside it are not kept."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pytest

from analysis.conftest import serving
from canarytrace import attributes as A
from canarytrace.analysis import synth
from canarytrace.analysis.load import load

Span = dict[str, Any]
SINCE = dt.datetime(2026, 6, 2, 1, 0, 0, 500_000, tzinfo=dt.UTC)
UNTIL = dt.datetime(2026, 6, 2, 5, 0, 0, 250_000, tzinfo=dt.UTC)


@dataclass
class WindowedServer:
    """A fake Jaeger v2 and Tempo holding `traces` (id → spans), answering as they do:
    the whole traces with a span that started in the window asked for."""

    host: str = ""
    traces: dict[str, list[Span]] = field(default_factory=dict)
    queries: list[dict[str, str]] = field(default_factory=list)

    def within(self, low_ns: float, high_ns: float) -> list[str]:
        return [
            trace_id
            for trace_id, spans in self.traces.items()
            if any(low_ns <= int(s["startTimeUnixNano"]) <= high_ns for s in spans)
        ]


def _ns(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339).timestamp() * 1e9


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: WindowedServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        state = self.server_state
        body: dict[str, object]
        if url.path == "/api/v3/traces":
            state.queries.append(query)
            found = state.within(
                _ns(query["query.start_time_min"]), _ns(query["query.start_time_max"])
            )
            spans = [span for trace_id in found for span in state.traces[trace_id]]
            body = {"result": synth.request("demo-app", spans)}
        elif url.path == "/api/search":
            state.queries.append(query)
            found = state.within(int(query["start"]) * 1e9, int(query["end"]) * 1e9)
            body = {"traces": [{"traceID": trace_id} for trace_id in found]}
        else:
            spans = state.traces[url.path.rsplit("/", 1)[1]]
            body = {"batches": synth.request("demo-app", spans)["resourceSpans"]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    """Six hours of calls; a user's calls share a trace (a long session), so an answer's
    whole traces hold calls outside the window."""
    calls = synth.calls(synth.Scenario(users=60, seed=11))
    return calls.with_columns(pl.col("trace_id").first().over("user_hash"))


@pytest.fixture
def server(frame: pl.DataFrame) -> Iterator[WindowedServer]:
    state = WindowedServer()
    for _, span in synth.spans(frame):
        state.traces.setdefault(span["traceId"], []).append(span)
    with serving(type("Handler", (_Handler,), {"server_state": state})) as state.host:
        yield state


def _source(backend: str, server: WindowedServer, lookback: str = "1h") -> str:
    if backend == "jaeger":
        return f"jaeger+http://{server.host}?service=demo-app&lookback={lookback}&limit=100000"
    return f"tempo+http://{server.host}?lookback={lookback}&limit=100000"


def _asked(backend: str, server: WindowedServer) -> tuple[dt.datetime, ...]:
    (query,) = server.queries
    if backend == "jaeger":
        low, high = query["query.start_time_min"], query["query.start_time_max"]
        return dt.datetime.fromisoformat(low), dt.datetime.fromisoformat(high)
    return (
        dt.datetime.fromtimestamp(int(query["start"]), dt.UTC),
        dt.datetime.fromtimestamp(int(query["end"]), dt.UTC),
    )


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_the_server_is_asked_for_the_window_and_calls_outside_it_are_not_kept(
    frame: pl.DataFrame, server: WindowedServer, backend: str
) -> None:
    """`since` 6 hours back from a window's end read the last hour only (lookback=1h
    from now): the judge saw a sixth of the calls, or none, and never said so."""
    since_elsewhere = "2026-06-02T03:00:00.5+02:00"  # SINCE, written in another zone
    loaded = load(_source(backend, server), since=since_elsewhere, until=UNTIL)
    (query,) = server.queries
    if backend == "jaeger":  # RFC 3339 in UTC
        assert query["query.start_time_min"] == "2026-06-02T01:00:00.500000Z"
        assert query["query.start_time_max"] == "2026-06-02T05:00:00.250000Z"
    else:  # whole seconds, rounded outwards
        assert query["start"] == str(math.floor(SINCE.timestamp()))
        assert query["end"] == str(math.ceil(UNTIL.timestamp()))
    assert loaded.problems == []
    in_window = frame.filter(pl.col("start").is_between(SINCE, UNTIL, closed="left"))
    assert 0 < in_window.height < frame.height
    assert sorted(loaded.calls["span_id"]) == sorted(in_window["span_id"])
    answered = server.within(SINCE.timestamp() * 1e9, UNTIL.timestamp() * 1e9)
    calls = [s for t in answered for s in server.traces[t] if _is_call(s)]
    assert len(calls) > in_window.height  # whole traces: calls outside the window too


def _is_call(span: Span) -> bool:
    return any(kv["key"] == A.GEN_AI_OPERATION_NAME for kv in span["attributes"])


def _as_asked(backend: str, low: dt.datetime, high: dt.datetime) -> tuple[dt.datetime, ...]:
    """[low, high] as the server is sent it: Tempo's whole seconds, rounded outwards."""
    if backend == "jaeger":
        return low, high
    return (
        dt.datetime.fromtimestamp(math.floor(low.timestamp()), dt.UTC),
        dt.datetime.fromtimestamp(math.ceil(high.timestamp()), dt.UTC),
    )


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_lookback_reaches_back_from_the_windows_end_or_from_now(
    server: WindowedServer, backend: str
) -> None:
    load(_source(backend, server, lookback="2h"), until=UNTIL)
    assert _asked(backend, server) == _as_asked(backend, UNTIL - dt.timedelta(hours=2), UNTIL)
    server.queries.clear()
    before = dt.datetime.now(dt.UTC)
    load(_source(backend, server, lookback="2h"))
    after = dt.datetime.now(dt.UTC)
    earliest = _as_asked(backend, before - dt.timedelta(hours=2), before)
    latest = _as_asked(backend, after - dt.timedelta(hours=2), after)
    asked = _asked(backend, server)
    assert earliest[0] <= asked[0] <= latest[0] and earliest[1] <= asked[1] <= latest[1]
