"""Shared fixtures for the analysis tests: synthetic calls and a fake Jaeger/Tempo server."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from analysis.make_fixtures import FIXTURES, fixture_frame


@dataclass
class FakeTraceServer:
    """A running fake: its host:port, the paths asked for, and the folder it answers from."""

    host: str
    requested: list[str] = field(default_factory=list)
    root: Path = FIXTURES


class _FixtureHandler(http.server.BaseHTTPRequestHandler):
    """Answers the documented Jaeger v2 / Tempo query endpoints from tests/fixtures."""

    state: FakeTraceServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.state.requested.append(self.path)
        root = self.state.root
        if url.path == "/api/v3/traces":
            path = root / "jaeger" / "api_v3_traces.json"
        elif url.path == "/api/search":
            path = root / "tempo" / "api_search.json"
        elif url.path.startswith("/api/traces/"):
            path = root / "tempo" / f"api_traces_{url.path.rsplit('/', 1)[1]}.json"
        else:
            path = Path("/nonexistent")
        if not path.exists():
            self.send_error(404, "trace not found")
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server of `handler` in a thread while in the block; its host:port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def trace_server() -> Iterator[FakeTraceServer]:
    """A local HTTP server in a thread serving the fixtures (change `.root` to serve others)."""
    state = FakeTraceServer(host="")
    with serving(type("Handler", (_FixtureHandler,), {"state": state})) as state.host:
        yield state


@pytest.fixture(scope="session")
def small_frame() -> pl.DataFrame:
    """The calls behind the Jaeger and Tempo fixtures."""
    return fixture_frame()
