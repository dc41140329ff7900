"""The HTTP side: a threaded stdlib server speaking both providers' APIs, and `Simulator`.

Why the standard library: the simulator must run wherever canarytrace runs, with no
extra dependency, and a thread per connection is plenty for the demo's load. Why the
care with shutdown: the SDKs keep connections alive, so a plain `server_close()` would
wait for idle keep-alive threads forever. The server records every open connection,
and stopping it shuts those sockets down, wakes every sleeping request and joins every
thread, so nothing leaks between tests.

Routes (OpenAI under ``/v1``, Anthropic under ``/anthropic/v1``):

    POST /v1/chat/completions    POST /v1/responses    POST /v1/embeddings
    GET  /v1/responses/{id}      POST /v1/responses/{id}/cancel
    GET  /v1/models              GET  /v1/models/{id}
    POST /anthropic/v1/messages  GET  /anthropic/v1/models  GET  /anthropic/v1/models/{id}

``POST /v1/responses`` with ``background: true`` answers at once with the response
queued; ``GET /v1/responses/{id}`` polls it and ``/cancel`` cancels it (only background
responses are kept for polling). GET handlers receive the query parameters as their body.

A request may force an error with the header ``x-canarytrace-simulate-error: KIND``
(KIND one of `errors.ERROR_KINDS`), so tests of error handling need no special profile.
The header fails the HTTP request it comes with, whatever the route: on a background
create that is the create itself (as a real 429 on submitting would), not the job.
Failing the job instead comes from the profile's error rates, which background mode
reports as a `failed` response.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from canarytrace.simulator import anthropic_api, openai_api
from canarytrace.simulator.engine import Engine
from canarytrace.simulator.errors import (
    ERROR_KINDS,
    SimulatedError,
    anthropic_error,
    openai_error,
)
from canarytrace.simulator.profiles import (
    KnownPrompt,
    Profiles,
    Regression,
    load_profiles,
)
from canarytrace.simulator.wire import JsonReply, Reply, StreamReply

log = logging.getLogger(__name__)

FORCE_ERROR_HEADER = "x-canarytrace-simulate-error"
Handler = Callable[..., Reply]
_ROUTES: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("POST", re.compile(r"/v1/chat/completions"), openai_api.chat_completions),
    ("POST", re.compile(r"/v1/responses"), openai_api.responses),
    ("GET", re.compile(r"/v1/responses/(?P<response_id>[^/]+)"), openai_api.retrieve_response),
    (
        "POST",
        re.compile(r"/v1/responses/(?P<response_id>[^/]+)/cancel"),
        openai_api.cancel_response,
    ),
    ("POST", re.compile(r"/v1/embeddings"), openai_api.embeddings),
    ("GET", re.compile(r"/v1/models"), openai_api.list_models),
    ("GET", re.compile(r"/v1/models/(?P<model>[^/]+)"), openai_api.retrieve_model),
    ("POST", re.compile(r"/anthropic/v1/messages"), anthropic_api.messages),
    ("GET", re.compile(r"/anthropic/v1/models"), anthropic_api.list_models),
    ("GET", re.compile(r"/anthropic/v1/models/(?P<model>[^/]+)"), anthropic_api.retrieve_model),
)


class Simulator:
    """A local OpenAI- and Anthropic-compatible server, run in a background thread.

    `profiles` is a `Profiles` object, a YAML path, or None for the shipped defaults;
    `seed` fixes every draw; `time_scale` multiplies every latency (0 = no waiting,
    0.01 = a hundred times faster than the profiles say). Latency is real wall time,
    so spans around the SDK calls measure it.

    >>> with Simulator(seed=1, time_scale=0.01) as sim:
    ...     client = openai.OpenAI(base_url=sim.openai_base_url, api_key="test-key")
    """

    def __init__(
        self,
        profiles: Profiles | str | Path | None = None,
        seed: int = 0,
        time_scale: float = 1.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        loaded = profiles if isinstance(profiles, Profiles) else load_profiles(profiles)
        self.engine = Engine(loaded, seed, time_scale)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind the port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("this simulator is already running")
        self._server = _Server(self._address, self.engine)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="canarytrace-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where to reach it ----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; use it as a context manager")
        return f"http://{self._address[0]}:{self._server.server_port}"

    @property
    def openai_base_url(self) -> str:
        """`base_url` for `openai.OpenAI` / `AsyncOpenAI` (ends in ``/v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """`base_url` for `anthropic.Anthropic` / `AsyncAnthropic`."""
        return f"{self.url}/anthropic"

    # --- run-time control ------------------------------------------------------------

    @property
    def profiles(self) -> Profiles:
        """The profiles as loaded (regressions and alias moves are not reflected here)."""
        return self.engine.profiles

    @property
    def prompts(self) -> tuple[KnownPrompt, ...]:
        """The known prompts: draw from these to get answers `answer_is_correct` can score."""
        return self.engine.profiles.prompts

    def set_alias(self, alias: str, snapshot_id: str) -> None:
        """Make the undated `alias` serve `snapshot_id` from the next request on."""
        self.engine.set_alias(alias, snapshot_id)

    def aliases(self) -> dict[str, str]:
        """The alias table as it stands now."""
        return self.engine.aliases()

    def regress(self, model_id: str, kind: Regression) -> None:
        """Make `model_id` worse (cumulative): latency, errors, quality, cost or refusals."""
        self.engine.regress(model_id, kind)

    def answer_is_correct(self, prompt: str, text: str) -> bool | None:
        """Whether `text` answers the known `prompt` correctly; None for unknown prompts."""
        known = self.engine.profiles.prompt(prompt)
        return None if known is None else known.is_correct(text)


class _Server(ThreadingHTTPServer):
    """Thread per connection, with every connection tracked so that stopping closes it."""

    daemon_threads = True
    block_on_close = False  # close_connections() joins the threads instead
    request_queue_size = 128  # the default backlog of 5 drops bursts of new clients

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        super().__init__(address, _RequestHandler)
        self.engine = engine
        self.stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="canarytrace-simulator-connection",
            daemon=True,
        )
        with self._lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            log.debug("connection from %s ended", client_address, exc_info=True)
        finally:
            with self._lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def close_connections(self) -> None:
        """Wake sleeping requests, shut every open socket down, join every thread."""
        self.stopping.set()
        with self._lock:
            open_now = list(self._connections.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):  # already closed by its own thread
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in open_now:
            thread.join()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "canarytrace-simulator"
    # Headers and body go out in separate writes; with Nagle's algorithm on, each
    # keep-alive response would stall on the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self, method: str) -> None:
        arrived = time.monotonic()
        path, _, query = self.path.partition("?")
        path = path.rstrip("/")
        provider = "anthropic" if path.startswith("/anthropic/") else "openai"
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        try:
            body = self._read_body(method, query)
            handler, params = _route(method, path)
            self._check_key(provider)
            self._forced_error()
            reply = handler(self.server.engine, body, **params)
            if isinstance(reply, JsonReply):
                self._send_json(
                    reply.status, {}, reply.body, arrived + reply.delay_s, provider, request_id
                )
            else:
                self._send_stream(reply, arrived, provider, request_id)
        except SimulatedError as error:
            render = anthropic_error if provider == "anthropic" else openai_error
            status, headers, payload = render(error, request_id)
            self._send_json(status, headers, payload, arrived + error.delay_s, provider, request_id)
        except OSError:
            raise  # the client went away or the server is stopping: nobody to answer
        except Exception:
            log.exception("simulator bug while answering %s %s", method, path)
            render = anthropic_error if provider == "anthropic" else openai_error
            status, headers, payload = render(SimulatedError("server_error"), request_id)
            self._send_json(status, headers, payload, arrived, provider, request_id)

    def _read_body(self, method: str, query: str) -> dict[str, Any]:
        """A POST's JSON object (none for a bodiless POST such as a cancel); a GET's
        query parameters (strings), read as its body."""
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if method == "GET":
            return dict(parse_qsl(query))
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise SimulatedError("invalid_request", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise SimulatedError("invalid_request", "The request body must be a JSON object.")
        return body

    def _forced_error(self) -> None:
        forced = self.headers.get(FORCE_ERROR_HEADER)
        if not forced:
            return
        for kind in ERROR_KINDS:
            if forced == kind:
                retry = self.server.engine.time_scale if kind == "rate_limit" else None
                raise SimulatedError(kind, retry_after_s=retry)
        raise SimulatedError(
            "invalid_request",
            f"{FORCE_ERROR_HEADER}: {forced!r} is not one of {', '.join(ERROR_KINDS)}",
        )

    def _check_key(self, provider: str) -> None:
        bearer = self.headers.get("authorization", "").removeprefix("Bearer").strip()
        key = bearer or (
            self.headers.get("x-api-key", "").strip() if provider == "anthropic" else ""
        )
        if not key:
            raise SimulatedError("authentication")

    def _wait_until(self, deadline: float) -> None:
        """Sleep until `deadline` (monotonic), or abort the request if the server stops."""
        remaining = deadline - time.monotonic()
        if remaining > 0 and self.server.stopping.wait(remaining):
            raise ConnectionAbortedError("the simulator is stopping")

    def _send_json(
        self,
        status: int,
        headers: dict[str, str],
        body: Any,
        deadline: float,
        provider: str,
        request_id: str,
    ) -> None:
        self._wait_until(deadline)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._send_common_headers(provider, request_id, headers)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(
        self, reply: StreamReply, arrived: float, provider: str, request_id: str
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self._send_common_headers(provider, request_id, {})
        self.end_headers()
        self.wfile.flush()
        due: list[bytes] = []  # events already due go out in one write
        for at, event in reply.events:
            if arrived + at > time.monotonic():
                self._write_chunks(due)
                due = []
                self._wait_until(arrived + at)
            due.append(event)
        self._write_chunks([*due, b""])  # the empty chunk ends the body

    def _write_chunks(self, events: list[bytes]) -> None:
        if events:
            self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events))
            self.wfile.flush()

    def _send_common_headers(self, provider: str, request_id: str, extra: dict[str, str]) -> None:
        id_header = "request-id" if provider == "anthropic" else "x-request-id"
        for name, value in {id_header: request_id, **extra}.items():
            self.send_header(name, value)


def _route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    for verb, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match and verb == method:
            return handler, match.groupdict()
    raise SimulatedError("not_found", f"Unknown request URL: {method} {path}.")
