"""Concurrency and a clean shutdown: no thread, socket or sleeping request outlives `stop`."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from canarytrace.simulator import Simulator


def _simulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("canarytrace-simulator")]


def _open_sockets() -> int:
    """Sockets this process holds (files are left out: other tests' exporters write some).

    Collected first: an unreachable client of an earlier test still holds its socket,
    and closing it in the middle of a count would make the count wrong.
    """
    gc.collect()
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of listdir itself is gone already
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sum(link.startswith("socket:") for link in links)


def test_many_concurrent_clients_all_get_answers(simulator: Simulator) -> None:
    oai = openai.OpenAI(base_url=simulator.openai_base_url, api_key="k", max_retries=0)
    ant = anthropic.Anthropic(base_url=simulator.anthropic_base_url, api_key="k", max_retries=0)
    hello = [{"role": "user", "content": "Hello"}]

    def one(i: int) -> str:
        try:
            if i % 2:
                stream = oai.chat.completions.create(model="gpt-4o", messages=hello, stream=True)  # type: ignore[arg-type]
                return next(c.model for c in stream)
            reply = ant.messages.create(
                model="claude-3-5-sonnet-20241022",
                max_tokens=20,
                messages=hello,  # type: ignore[arg-type]
            )
            return reply.model
        except (openai.APIStatusError, anthropic.APIStatusError) as error:
            return str(error.status_code)  # drawn errors are fine; hangs and resets are not

    with oai, ant, ThreadPoolExecutor(max_workers=16) as pool:
        models = list(pool.map(one, range(64)))
    answered = [m for m in models if not m.isdigit()]
    assert len(answered) > 56
    assert set(answered) == {"gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022"}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets through /proc")
def test_stop_closes_keep_alive_and_streaming_connections_and_joins_threads() -> None:
    with (
        Simulator(seed=0, time_scale=0) as warmup,  # imports and lazy state, once
        openai.OpenAI(base_url=warmup.openai_base_url, api_key="k") as client,
    ):
        client.models.list()
    sockets = _open_sockets()
    sim = Simulator(seed=0, time_scale=1000.0).start()  # every answer takes minutes
    url = sim.openai_base_url
    idle = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
    idle.models.list()  # leaves a kept-alive connection open on the server
    hung = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
    outcome: list[BaseException] = []

    def stream_forever() -> None:
        try:
            stream = hung.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            list(stream)
        except BaseException as error:
            outcome.append(error)

    streamer = threading.Thread(target=stream_forever)
    streamer.start()
    while len(_simulator_threads()) < 3:  # serve loop + idle + streaming connection
        threading.Event().wait(0.01)
    stopper = threading.Thread(target=sim.stop)
    stopper.start()
    stopper.join(timeout=60)  # a guard against a hang, not a timing assertion
    assert not stopper.is_alive()
    streamer.join(timeout=60)
    assert not streamer.is_alive()
    assert isinstance(outcome[0], openai.APIError)  # the client saw the connection end
    assert _simulator_threads() == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])), 1)
    idle.close()
    hung.close()
    assert _open_sockets() == sockets


def test_a_simulator_cannot_start_twice_and_stop_is_idempotent() -> None:
    sim = Simulator(time_scale=0).start()
    with pytest.raises(RuntimeError, match="already running"):
        sim.start()
    sim.stop()
    sim.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.openai_base_url
