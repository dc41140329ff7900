"""Background mode of the Responses API through the real openai SDK: queue, poll, cancel.

Timing tests use a model whose latency is fixed (no spread, no per-token time), so
"before the answer is due" and "after" are certain: a second apart, ample for a create
and a retrieve or cancel on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseOutputMessage, ResponseOutputRefusal

from canarytrace.simulator import FORCE_ERROR_HEADER, Profiles, Simulator
from canarytrace.simulator.openai_api import REFUSAL_TEXT
from canarytrace.simulator.profiles import ErrorRates, Latency, ModelProfile

CAPITAL = "What is the capital of Australia?"
FIXED = "gpt-x-2025-01-01"
RUNNING = ("queued", "in_progress")
# What a background reply adds to the foreground one (the wall-clock fields differ too).
BACKGROUND_ONLY = {"background", "created_at", "completed_at"}


def _fixed(latency_s: float, **options: Any) -> Profiles:
    """One OpenAI model answering (or failing) after exactly `latency_s` unscaled seconds."""
    latency = Latency(ttft_median_s=latency_s, ttft_sigma=0, per_token_s=0)
    return Profiles(models={FIXED: ModelProfile(provider="openai", latency=latency, **options)})


def _client(sim: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)


def _create(client: openai.OpenAI, **options: Any) -> Response:
    """A background create, its raw JSON checked against the SDK's own model."""
    raw = client.responses.with_raw_response.create(background=True, **options)
    Response.model_validate(json.loads(raw.text))
    reply: Response = raw.parse()
    return reply


def _poll(client: openai.OpenAI, response_id: str) -> Response:
    """Retrieve until the response leaves queued/in_progress, as OpenAI's guide polls."""
    deadline = time.monotonic() + 5
    while (reply := client.responses.retrieve(response_id)).status in RUNNING:
        assert time.monotonic() < deadline, "the background response never finished"
        time.sleep(0.005)
    return reply


async def _apoll(client: openai.AsyncOpenAI, response_id: str) -> Response:
    """`_poll` for the async client."""
    deadline = time.monotonic() + 5
    while (reply := await client.responses.retrieve(response_id)).status in RUNNING:
        assert time.monotonic() < deadline, "the background response never finished"
        await asyncio.sleep(0.005)
    return reply


def _foreground(seed: int, **options: Any) -> Response:
    """What a foreground create answers on a fresh simulator with `seed`."""
    with Simulator(seed=seed, time_scale=0.01) as sim, _client(sim) as client:
        reply: Response = client.responses.create(**options)
    return reply


def _assert_queued(reply: Response, model: str) -> None:
    assert reply.status == "queued"
    assert reply.background is True
    assert reply.usage is None
    assert reply.output == []
    assert reply.completed_at is None
    assert reply.error is None
    assert reply.model == model


def _same_as_foreground(background: Response, foreground: Response) -> None:
    """The finished background body is the foreground one, plus background mode's fields."""
    assert background.model_dump(exclude=BACKGROUND_ONLY) == foreground.model_dump(
        exclude=BACKGROUND_ONLY
    )
    assert background.background is True
    assert foreground.background is False
    assert background.completed_at is not None
    assert background.completed_at >= background.created_at


def test_background_create_is_queued_then_polls_to_the_foreground_answer(
    oai: openai.OpenAI,
) -> None:
    ask = {"model": "gpt-4o", "input": CAPITAL, "instructions": "Be brief."}
    queued = _create(oai, **ask)
    _assert_queued(queued, "gpt-4o-2024-08-06")
    done = _poll(oai, queued.id)
    foreground = _foreground(0, **ask)  # the `simulator` fixture's seed
    assert done.id == queued.id == foreground.id
    assert done.status == "completed"
    assert done.usage is not None
    assert done.usage == foreground.usage
    assert done.output_text == foreground.output_text != ""
    _same_as_foreground(done, foreground)


def test_create_answers_at_once_and_polls_in_progress_until_due() -> None:
    latency = 1.0  # ample for a create and a retrieve on a busy machine
    with Simulator(_fixed(latency), time_scale=1.0) as sim, _client(sim) as client:
        sent = time.monotonic()
        queued = _create(client, model=FIXED, input="Hello")
        assert time.monotonic() - sent < latency  # a foreground reply would take `latency`
        running = client.responses.retrieve(queued.id)
        assert running.status == "in_progress"
        assert (running.usage, running.output, running.completed_at) == (None, [], None)
        done = _poll(client, queued.id)
        assert time.monotonic() - sent >= latency
    assert done.status == "completed"
    assert done.usage is not None
    assert done.usage.output_tokens > 0


def test_a_cut_answer_ends_incomplete_and_a_refusal_completes_with_its_part() -> None:
    cut = {"model": "gpt-4.1", "input": "Tell a story.", "max_output_tokens": 5}
    with Simulator(seed=4, time_scale=0.01) as sim, _client(sim) as client:
        incomplete = _poll(client, _create(client, **cut).id)
    assert incomplete.status == "incomplete"
    assert incomplete.incomplete_details is not None
    assert incomplete.incomplete_details.reason == "max_output_tokens"
    _same_as_foreground(incomplete, _foreground(4, **cut))

    with Simulator(_fixed(0.01, refusal_rate=1.0), time_scale=1.0) as sim, _client(sim) as client:
        refused = _poll(client, _create(client, model=FIXED, input="Hello").id)
    assert refused.status == "completed"
    message = refused.output[0]
    assert isinstance(message, ResponseOutputMessage)
    part = message.content[0]
    assert isinstance(part, ResponseOutputRefusal)
    assert part.refusal == REFUSAL_TEXT
    assert refused.usage is not None
    assert refused.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("rate_limit", "rate_limit_exceeded"),
        ("server_error", "server_error"),
        ("overloaded", "server_error"),
    ],
)
def test_a_drawn_error_fails_the_response_not_the_create(kind: str, code: str) -> None:
    always = _fixed(0.05, errors=ErrorRates(**{kind: 1.0}))
    with Simulator(always, time_scale=1.0) as sim, _client(sim) as client:
        queued = _create(client, model=FIXED, input="Hello")
        _assert_queued(queued, FIXED)
        failed = _poll(client, queued.id)
        raw = client.responses.with_raw_response.retrieve(queued.id)
        Response.model_validate(json.loads(raw.text))
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == code
    assert failed.error.message
    assert (failed.usage, failed.output, failed.completed_at) == (None, [], None)


@pytest.mark.parametrize(
    ("kind", "error"),
    [("rate_limit", openai.RateLimitError), ("server_error", openai.InternalServerError)],
)
def test_the_forced_error_header_fails_the_create_itself(
    oai: openai.OpenAI, kind: str, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error):
        oai.responses.create(
            model="gpt-4o",
            input=CAPITAL,
            background=True,
            extra_headers={FORCE_ERROR_HEADER: kind},
        )


def test_cancel_before_completion_cancels_for_good() -> None:
    latency = 1.0  # ample for a create and two cancels on a busy machine
    with Simulator(_fixed(latency), time_scale=1.0) as sim, _client(sim) as client:
        sent = time.monotonic()
        queued = _create(client, model=FIXED, input="Hello")
        raw = client.responses.with_raw_response.cancel(queued.id)
        Response.model_validate(json.loads(raw.text))
        cancelled = raw.parse()
        assert client.responses.cancel(queued.id).status == "cancelled"  # idempotent
        time.sleep(max(0.0, sent + latency + 0.05 - time.monotonic()))
        later = client.responses.retrieve(queued.id)
    for reply in (cancelled, later):
        assert reply.id == queued.id
        assert reply.status == "cancelled"
        assert reply.background is True
        assert (reply.usage, reply.output, reply.completed_at) == (None, [], None)


def test_cancel_after_the_end_is_400() -> None:
    fails = _fixed(1.0, errors=ErrorRates(server_error=1.0))
    for profiles, end in ((_fixed(1.0), "completed"), (fails, "failed")):
        with Simulator(profiles, time_scale=0) as sim, _client(sim) as client:
            finished = _poll(client, _create(client, model=FIXED, input="Hello").id)
            assert finished.status == end
            with pytest.raises(openai.BadRequestError) as caught:
                client.responses.cancel(finished.id)
            assert end in caught.value.message
            assert client.responses.retrieve(finished.id).status == end


def test_unknown_and_foreground_ids_are_404(oai: openai.OpenAI) -> None:
    # Only background responses are kept for polling; the route itself exists.
    queued = oai.responses.create(model="gpt-4o", input=CAPITAL, background=True)
    assert oai.responses.retrieve(queued.id).id == queued.id
    foreground = oai.responses.create(model="gpt-4o", input=CAPITAL)
    for unknown in ("resp_does_not_exist", foreground.id):
        with pytest.raises(openai.NotFoundError) as caught:
            oai.responses.retrieve(unknown)
        assert caught.value.message.endswith(f"Response with id '{unknown}' not found.")
        assert caught.value.code is None  # not `model_not_found`: no model is missing
        with pytest.raises(openai.NotFoundError):
            oai.responses.cancel(unknown)


def test_streamed_or_unstored_background_is_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="gpt-4o", input=CAPITAL, background=True, stream=True)
    assert caught.value.param == "stream"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="gpt-4o", input=CAPITAL, background=True, store=False)
    assert caught.value.param == "store"
    queued = oai.responses.create(model="gpt-4o", input=CAPITAL, background=True)
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.retrieve(queued.id, stream=True)
    assert caught.value.param == "stream"


@pytest.mark.anyio
async def test_async_background_polls_to_the_foreground_answer(
    aoai: openai.AsyncOpenAI,
) -> None:
    queued = await aoai.responses.create(model="gpt-4.1", input=CAPITAL, background=True)
    _assert_queued(queued, "gpt-4.1-2025-04-14")
    done = await _apoll(aoai, queued.id)
    foreground = _foreground(0, model="gpt-4.1", input=CAPITAL)
    assert done.status == "completed"
    assert done.usage == foreground.usage
    assert done.output_text == foreground.output_text != ""
    _same_as_foreground(done, foreground)
    with pytest.raises(openai.BadRequestError):
        await aoai.responses.cancel(queued.id)
    with pytest.raises(openai.NotFoundError):
        await aoai.responses.retrieve("resp_does_not_exist")


@pytest.mark.anyio
async def test_async_cancel_before_completion() -> None:
    with Simulator(_fixed(1.0), time_scale=1.0) as sim:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
        async with client:
            queued = await client.responses.create(model=FIXED, input="Hello", background=True)
            assert (await client.responses.retrieve(queued.id)).status == "in_progress"
            cancelled = await client.responses.cancel(queued.id)
            assert cancelled.status == "cancelled"
            assert (await client.responses.retrieve(queued.id)).status == "cancelled"
