"""OpenAI background responses: the call's span when created, the result record when
retrieved or cancelled, and the frame of calls that joins the two."""

from __future__ import annotations

import asyncio
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import httpx2
import openai
import polars as pl
import pytest
from genai_prices import Usage, calc_price
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from polars.testing import assert_frame_equal

from canarytrace import attributes as A
from canarytrace.analysis.load import load
from canarytrace.instrumentation import background, instrument, uninstrument
from canarytrace.telemetry import OtlpJsonLinesExporter
from tests.instrumentation.conftest import (
    BACKGROUND_FAILS,
    BACKGROUND_SECONDS,
    Telemetry,
    dropping_api,
    openai_client,
)

MODEL = "gpt-4o-2024-11-20"


def results(telemetry: Telemetry) -> list[Any]:
    return [s for s in telemetry.spans() if s.name == A.BACKGROUND_RESULT_SPAN_NAME]


def create_and_retrieve(prompt: str = "Hi", polls: int = 1, is_async: bool = False) -> Any:
    """Create a background response, then retrieve it `polls` times, as an app polls."""
    if is_async:

        async def main() -> Any:
            client = openai_client(is_async=True)
            queued = await client.responses.create(model=MODEL, input=prompt, background=True)
            return [await client.responses.retrieve(queued.id) for _ in range(polls)][-1]

        return asyncio.run(main())
    client = openai_client()
    queued = client.responses.create(model=MODEL, input=prompt, background=True)
    return [client.responses.retrieve(queued.id) for _ in range(polls)][-1]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_created_call_is_queued_and_its_result_is_recorded_once(
    instrumented: Telemetry, is_async: bool
) -> None:
    done = create_and_retrieve(polls=3, is_async=is_async)

    assert done.status == "completed"
    call = dict(instrumented.one_span().attributes)  # the record is not an LLM call
    assert call[A.BACKGROUND] is True
    assert call[A.BACKGROUND_STATUS] == "queued"
    assert call[A.GEN_AI_RESPONSE_ID] == done.id
    # Queued: no usage, cost or finish yet.
    for absent in (A.GEN_AI_USAGE_INPUT_TOKENS, A.COST_USD, A.GEN_AI_RESPONSE_FINISH_REASONS):
        assert absent not in call
    [record] = results(instrumented)  # three polls, one record
    result = dict(record.attributes)
    assert result[A.GEN_AI_RESPONSE_ID] == done.id
    assert result[A.BACKGROUND_STATUS] == "completed"
    assert result[A.BACKGROUND_DURATION_MS] == BACKGROUND_SECONDS * 1000
    assert result[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("completed",)
    assert result[A.GEN_AI_PROVIDER_NAME] == "openai"
    # The fake reports 20 input tokens, 5 of them cached, and 4 output tokens.
    assert (result[A.GEN_AI_USAGE_INPUT_TOKENS], result[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (20, 4)
    expected = calc_price(
        Usage(input_tokens=20, output_tokens=4, cache_read_tokens=5), MODEL, provider_id="openai"
    ).total_price
    assert result[A.COST_USD] == pytest.approx(float(expected), rel=1e-9)


def test_a_background_failure_is_recorded_with_its_code(instrumented: Telemetry) -> None:
    done = create_and_retrieve(BACKGROUND_FAILS)

    assert done.status == "failed"
    [record] = results(instrumented)
    result = dict(record.attributes)
    assert result[A.BACKGROUND_STATUS] == "failed"
    assert result[A.ERROR_TYPE] == "server_error"
    assert A.COST_USD not in result


def test_a_cancelled_response_is_recorded_by_cancel(instrumented: Telemetry) -> None:
    client = openai_client()
    queued = client.responses.create(model=MODEL, input="Hi", background=True)
    cancelled = client.responses.cancel(queued.id)

    assert cancelled.status == "cancelled"
    [record] = results(instrumented)
    assert record.attributes[A.BACKGROUND_STATUS] == "cancelled"


def test_the_raw_response_is_read_and_returned_as_it_was(instrumented: Telemetry) -> None:
    client = openai_client()
    queued = client.responses.create(model=MODEL, input="Hi", background=True)
    raw = client.responses.with_raw_response.retrieve(queued.id)

    assert raw.parse().status == "completed"
    assert raw.http_response.status_code == 200
    assert len(results(instrumented)) == 1


def test_retrieving_a_foreground_response_or_a_missing_one_records_nothing(
    instrumented: Telemetry,
) -> None:
    client = openai_client()
    assert client.responses.retrieve("resp_1").status == "completed"
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.retrieve("resp_missing")

    assert raised.value.status_code == 404
    assert results(instrumented) == []


def test_uninstrument_stops_recording_results(telemetry: Telemetry) -> None:
    instrument(tracer_provider=telemetry.provider)
    uninstrument()
    create_and_retrieve()

    assert telemetry.spans() == []


def test_the_frame_of_calls_takes_usage_cost_and_duration_from_the_result(
    tmp_path: Path,
) -> None:
    """Through the embedded exporter's files and the loader: the call that created a
    response carries what its result says, also when another process retrieved it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(tmp_path)))
    instrument(tracer_provider=provider)
    try:
        client = openai_client()
        done = client.responses.create(model=MODEL, input="Hi", background=True)
        failing = client.responses.create(model=MODEL, input=BACKGROUND_FAILS, background=True)
        pending = client.responses.create(model=MODEL + "-pending", input="Hi", background=True)
        client.responses.create(model=MODEL, input="Hi")  # a foreground call
        streamed = client.responses.create(model=MODEL, input="Hi", background=True, stream=True)
        assert [event.type for event in streamed][-1] == "response.completed"
        for response in (done, failing):
            client.responses.retrieve(response.id)
    finally:
        uninstrument()
        provider.shutdown()

    calls = load(tmp_path).calls
    assert calls.height == 5  # the records are not calls
    assert pending.status == "queued"
    # Finished: the server's 42.5 s from creating to finishing it is the call's duration.
    [done_row] = calls.filter(pl.col("duration_ms") == BACKGROUND_SECONDS * 1000).to_dicts()
    assert done_row["request_model"] == MODEL
    assert (done_row["input_tokens"], done_row["output_tokens"]) == (20, 4)
    assert done_row["cost_usd"] > 0
    assert done_row["status"] == "ok"
    by_model = {row["request_model"]: row for row in calls.to_dicts()}
    [failed] = calls.filter(pl.col("status") == "error").to_dicts()
    assert (failed["status"], failed["error_type"]) == ("error", "server_error")
    assert failed["cost_usd"] is None
    # No result yet: pending, neither ok nor an error, with no usage, no cost, and no
    # duration (its span timed the queuing only).
    waiting = by_model[MODEL + "-pending"]
    assert waiting["duration_ms"] is None and waiting["cost_usd"] is None
    assert waiting["status"] == "pending"
    # The foreground call keeps its own duration, and so does a background call streamed
    # to its end, which read its usage and cost itself.
    assert calls.filter(pl.col("duration_ms") < 10_000)["stream"].sort().to_list() == [
        False,
        True,
    ]
    [streamed_row] = calls.filter(pl.col("stream")).to_dicts()
    assert streamed_row["duration_ms"] is not None and streamed_row["cost_usd"] > 0
    # The same frame from the loader's other paths: calls spilled to Parquet parts, and
    # two files (the second a copy) parsed by worker processes.
    assert_frame_equal(load(tmp_path, spill_calls=1).calls, calls)
    [written] = tmp_path.glob("*.jsonl")
    shutil.copy(written, tmp_path / "copy.jsonl")
    assert_frame_equal(load(tmp_path, workers=2).calls, calls)


def test_a_background_stream_that_broke_off_is_ended_by_its_result(tmp_path: Path) -> None:
    """The connection dropped mid-answer, the answer went on on the server, and the app
    polled it: the call is what its result says, not the dropped connection."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(tmp_path)))
    instrument(tracer_provider=provider)
    try:
        http = httpx2.Client(transport=httpx2.MockTransport(dropping_api(events=3)))
        client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
        stream = client.responses.create(model=MODEL, input="Hi", background=True, stream=True)
        seen = []
        with pytest.raises(openai.APIConnectionError):  # as the SDK words a dropped stream
            for event in stream:
                seen.append(event)
        assert client.responses.retrieve(seen[0].response.id).status == "completed"
    finally:
        uninstrument()
        provider.shutdown()

    [call] = load(tmp_path).calls.to_dicts()
    assert (call["status"], call["error_type"]) == ("ok", None)
    assert call["cost_usd"] > 0 and call["duration_ms"] == BACKGROUND_SECONDS * 1000


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_resumed_stream_passes_its_events_on_and_records_the_end(
    instrumented: Telemetry, is_async: bool
) -> None:
    """`retrieve(id, stream=True, starting_after=n)`: what a dropped stream resumes with."""

    async def resume_async() -> list[Any]:
        client = openai_client(is_async=True)
        queued = await client.responses.create(model=MODEL, input="Hi", background=True)
        resumed = await client.responses.retrieve(queued.id, stream=True, starting_after=3)
        async with resumed as events:
            return [event async for event in events]

    def resume() -> list[Any]:
        client = openai_client()
        queued = client.responses.create(model=MODEL, input="Hi", background=True)
        with client.responses.retrieve(queued.id, stream=True, starting_after=3) as events:
            return list(events)

    events = asyncio.run(resume_async()) if is_async else resume()

    assert [e.type for e in events] == ["response.output_text.delta", "response.completed"]
    [record] = results(instrumented)
    assert record.attributes[A.GEN_AI_RESPONSE_ID] == events[-1].response.id
    assert record.attributes[A.BACKGROUND_STATUS] == "completed"
    assert record.attributes[A.COST_USD] > 0


def test_a_resumed_stream_left_before_its_end_records_nothing(instrumented: Telemetry) -> None:
    client = openai_client()
    queued = client.responses.create(model=MODEL, input="Hi", background=True)
    events = client.responses.retrieve(queued.id, stream=True)
    assert next(iter(events)).type == "response.output_text.delta"
    events.close()

    assert results(instrumented) == []


def test_the_ids_remembered_against_recording_twice_are_bounded(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running process retrieves many responses: it keeps only the newest ids."""
    monkeypatch.setattr(background, "_REMEMBERED", 3)
    monkeypatch.setattr(background, "_recorded", OrderedDict())
    done = [create_and_retrieve() for _ in range(5)]

    assert len(results(instrumented)) == 5
    assert list(background._recorded) == [response.id for response in done[-3:]]


def test_the_end_brings_the_calls_tokens_and_cost_to_the_metrics(instrumented: Telemetry) -> None:
    """Dashboards read the metrics: a background call's usage is counted when it ends,
    with the labels of the call that created it."""
    client = openai_client()
    queued = client.responses.create(model=MODEL, input="Hi", background=True)
    assert len(instrumented.metric_points(A.METRIC_OPERATION_DURATION)) == 1
    assert instrumented.metric_points(A.METRIC_TOKEN_USAGE) == []
    client.responses.retrieve(queued.id)
    client.responses.retrieve(queued.id)  # polled again: counted once

    tokens = instrumented.metric_points(A.METRIC_TOKEN_USAGE)
    assert {p.attributes[A.METRIC_TOKEN_TYPE]: p.sum for p in tokens} == {"input": 20, "output": 4}
    for point in tokens:
        assert point.attributes[A.GEN_AI_REQUEST_MODEL] == MODEL
        assert (point.attributes[A.ROUTE], point.attributes[A.TIER]) == ("chat", "canary")
    [cost] = instrumented.metric_points(A.METRIC_COST)
    [record] = results(instrumented)
    assert cost.value == pytest.approx(record.attributes[A.COST_USD])
