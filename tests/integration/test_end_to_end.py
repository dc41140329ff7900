"""End to end: SDK calls -> canarytrace.instrument() -> OTLP -> the real collector ->
its files and Jaeger (and, tail-sampled, the Tempo pipeline) -> canarytrace.analysis.

The app is a separate process with the real openai and anthropic clients against the
project's simulator; the collector runs collector-config.yaml unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from canarytrace import cli
from canarytrace.analysis.load import load
from canarytrace.attributes import (
    BACKGROUND_RESULT_SPAN_NAME,
    FEEDBACK_SPAN_NAME,
    GEN_AI_REQUEST_MODEL,
    METRIC_OPERATION_DURATION,
    METRIC_TOKEN_USAGE,
    OUTCOME_SPAN_NAME,
    TIER,
)

from .servers import REPO
from .stores import (
    jaeger_spans,
    metric_names_in_files,
    spans_in_files,
    wait_for_spans,
    wait_until,
)

pytestmark = pytest.mark.integration

CALLS = 16
BACKGROUND_CALLS = 1  # made after the others, in OpenAI's background mode
OTHER_CALLS = 4
REGISTRY = REPO / "models.yaml"


def _service() -> str:
    """A service name of this test alone, so one Jaeger query finds only its spans."""
    return f"canarytrace-it-{uuid.uuid4().hex[:8]}"


def _jaeger_source(query_url: str, service: str) -> str:
    return f"jaeger+{query_url}?service={service}&lookback=1h"


@pytest.fixture(scope="module")
def pipeline(start_jaeger: Any, start_collector: Any, start_app: Any) -> dict[str, Any]:
    """Run the apps once through collector and Jaeger; what they sent and where it went.

    The main app exports OTLP/HTTP; a second, smaller one (another service) exports
    OTLP/gRPC at the same time, so each store holds two services to tell apart.
    """
    jaeger, tempo_stand_in = start_jaeger(), start_jaeger()
    # Tail sampling keeps no healthy production call here, so what Tempo would get is
    # exactly the canary calls, the failed calls and the feedback/outcome records.
    collector = start_collector(
        jaeger.otlp_grpc, tempo_stand_in.otlp_http, CANARYTRACE_TEMPO_SAMPLE_PERCENT="0"
    )
    service, other = _service(), _service()
    app = start_app(
        "--calls", str(CALLS), "--background-calls", str(BACKGROUND_CALLS),
        endpoint=collector.otlp_http,
        service=service,
    )  # fmt: skip
    grpc_app = start_app(
        "--calls", str(OTHER_CALLS),
        endpoint=f"http://{collector.otlp_grpc}",
        service=other,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_INSECURE="true",
    )  # fmt: skip
    done, other_done = app.finish(), grpc_app.finish()
    app_logs = app.stderr() + grpc_app.stderr()
    in_files = wait_for_spans(
        lambda: spans_in_files(collector.traces_dir),
        done["spans"] + other_done["spans"],
        "the collector's files",
    )
    in_jaeger = wait_for_spans(
        lambda: jaeger_spans(jaeger.query_url, service), done["spans"], "Jaeger"
    )
    other_in_jaeger = wait_for_spans(
        lambda: jaeger_spans(jaeger.query_url, other), other_done["spans"], "Jaeger"
    )
    return {
        "service": service,
        "done": done,
        "other": other,
        "other_done": other_done,
        "collector": collector,
        "jaeger": jaeger,
        "tempo": tempo_stand_in,
        "in_files": in_files,
        "in_jaeger": in_jaeger,
        "other_in_jaeger": other_in_jaeger,
        "app_logs": app_logs,
    }


def test_every_span_arrives_in_the_files_and_in_jaeger(pipeline: dict[str, Any]) -> None:
    done, service = pipeline["done"], pipeline["service"]
    in_jaeger = pipeline["in_jaeger"]
    in_files = {k: s for k, s in pipeline["in_files"].items() if s.service == service}
    assert done["answered"] > 0 and len(done["calls"]) == CALLS + BACKGROUND_CALLS

    # Exactly what the app handed to its SDK: no span lost, none doubled.
    assert len(in_files) == done["spans"]
    assert in_files.keys() == in_jaeger.keys()
    assert {c["span_id"] for c in done["calls"]} <= in_files.keys()
    names = [s.name for s in in_files.values()]
    assert FEEDBACK_SPAN_NAME in names and OUTCOME_SPAN_NAME in names
    assert names.count(BACKGROUND_RESULT_SPAN_NAME) == BACKGROUND_CALLS


def test_otlp_grpc_arrives_as_well_as_otlp_http(pipeline: dict[str, Any]) -> None:
    other, other_done = pipeline["other"], pipeline["other_done"]
    in_files = {k: s for k, s in pipeline["in_files"].items() if s.service == other}
    assert len(in_files) == other_done["spans"]
    assert in_files.keys() == pipeline["other_in_jaeger"].keys()
    assert {c["span_id"] for c in other_done["calls"]} <= in_files.keys()
    # Nothing else in the files: the two services are all there is.
    assert len(pipeline["in_files"]) == pipeline["done"]["spans"] + other_done["spans"]


def test_the_genai_metrics_arrive_in_the_metrics_files(pipeline: dict[str, Any]) -> None:
    collector = pipeline["collector"]
    wanted = {METRIC_OPERATION_DURATION, METRIC_TOKEN_USAGE}

    def exported() -> bool:
        found = metric_names_in_files(collector.metrics_dir)
        return all(wanted <= found.get(s, set()) for s in (pipeline["service"], pipeline["other"]))

    wait_until(
        exported, lambda: f"metrics files hold {metric_names_in_files(collector.metrics_dir)}"
    )
    assert "Failed to export metrics" not in pipeline["app_logs"]


def test_the_analysis_reads_the_same_calls_from_files_and_from_jaeger(
    pipeline: dict[str, Any],
) -> None:
    done, service = pipeline["done"], pipeline["service"]
    collector, jaeger = pipeline["collector"], pipeline["jaeger"]

    from_files = load(collector.traces_dir)
    from_jaeger = load(_jaeger_source(jaeger.query_url, service))

    assert from_files.problems == [] and from_jaeger.problems == []
    assert set(from_jaeger.calls["service"]) == {service}
    calls = from_files.calls.filter(pl.col("service") == service).sort("span_id")
    assert calls.height == CALLS + BACKGROUND_CALLS
    assert set(calls["span_id"]) == {c["span_id"] for c in done["calls"]}
    # Feedback and outcome records were joined onto their calls in both.
    assert calls["feedback_score"].drop_nulls().len() > 0
    assert calls["outcome_ok"].drop_nulls().len() > 0
    assert_frame_equal(calls, from_jaeger.calls.sort("span_id"))
    expected_tiers = {c["span_id"]: c["tier"] for c in done["calls"]}
    assert dict(zip(calls["span_id"], calls["tier"], strict=True)) == expected_tiers
    # Each background call got its result, sent in a trace of its own: its cost, and
    # the server's time to finish as its duration.
    background = {c["span_id"] for c in done["calls"] if c.get("background")}
    finished = calls.filter(pl.col("span_id").is_in(list(background)))
    assert finished.height == BACKGROUND_CALLS
    assert finished["duration_ms"].is_not_null().all()
    assert finished.filter(pl.col("status") == "ok")["cost_usd"].is_not_null().all()


@pytest.mark.parametrize(
    "tag",
    [
        {TIER: "canary"},
        {GEN_AI_REQUEST_MODEL: "gpt-4o-2024-11-20"},
        {GEN_AI_REQUEST_MODEL: "claude-3-5-sonnet-20241022"},
    ],
    ids=["tier", "openai-canary-model", "anthropic-production-model"],
)
def test_jaeger_finds_the_calls_by_tag(pipeline: dict[str, Any], tag: dict[str, str]) -> None:
    done, service, jaeger = pipeline["done"], pipeline["service"], pipeline["jaeger"]
    key, value = next(iter(tag.items()))
    field = "tier" if key == TIER else "model"
    expected = {c["span_id"] for c in done["calls"] if c[field] == value}
    assert expected, "the app made no such call; the test would prove nothing"

    # Jaeger indexes tags as its batch arrives; the full copy is already in (fixture).
    found = wait_for_spans(
        lambda: jaeger_spans(jaeger.query_url, service, tag), expected, f"Jaeger's {tag} search"
    )
    assert found.keys() == expected


def test_the_tempo_pipeline_keeps_canaries_failures_records_and_results_only(
    pipeline: dict[str, Any],
) -> None:
    done, service = pipeline["done"], pipeline["service"]
    kept = [c for c in done["calls"] if c["tier"] == "canary" or not c["ok"]]
    dropped = {c["span_id"] for c in done["calls"]} - {c["span_id"] for c in kept}
    assert kept and dropped, "the run needs both kinds of call to show the sampling"

    tempo = pipeline["tempo"]
    found = wait_for_spans(
        lambda: jaeger_spans(tempo.query_url, service),
        {c["span_id"] for c in kept},
        "the Tempo stand-in",
    )
    assert not dropped & found.keys()
    records = [s for s in found.values() if s.name in (FEEDBACK_SPAN_NAME, OUTCOME_SPAN_NAME)]
    assert records, "feedback and outcome records are kept whatever their call"

    def results() -> list[str]:  # each in a trace of its own, decided on by itself
        spans = jaeger_spans(tempo.query_url, service).values()
        return [s.span_id for s in spans if s.name == BACKGROUND_RESULT_SPAN_NAME]

    kept_results = wait_until(results, lambda: "no background result in the Tempo stand-in")
    assert len(kept_results) == BACKGROUND_CALLS


def _analyze(*args: str) -> tuple[int, dict[str, Any]]:
    """`canarytrace analyze ... --format json` in-process: exit code and report."""
    result = CliRunner().invoke(
        cli.app, ["analyze", *args, "--format", "json", "--registry", str(REGISTRY)]
    )
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def test_canarytrace_analyze_reads_jaeger_by_service_and_time_window(
    pipeline: dict[str, Any],
) -> None:
    done, service, jaeger = pipeline["done"], pipeline["service"], pipeline["jaeger"]
    source = _jaeger_source(jaeger.query_url, service)
    route_of = {"anthropic": "chat", "openai": "summarize"}
    expected = Counter((route_of[c["provider"]], c["tier"]) for c in done["calls"])

    code, report = _analyze(source)

    # Only this service's calls (the gRPC app's, in the same Jaeger, are left out).
    assert code == report["exit_code"] and report["problems"] == []
    assert report["verdict"] in ("PROMOTE", "HOLD", "ROLLBACK")
    judged = {
        (route, tier): report["routes"][route][f"{tier}_calls"]
        for route in ("chat", "summarize")
        for tier in ("production", "canary")
    }
    assert judged == dict(expected)

    # The window: only the calls that started from the ninth call on.
    starts = sorted(load(source).calls["start"])
    code, report = _analyze(source, "--since", starts[8].isoformat())
    assert (
        sum(r["production_calls"] + r["canary_calls"] for r in report["routes"].values())
        == CALLS + BACKGROUND_CALLS - 8
    )
    # A window before the run holds nothing: exit 3 (HOLD, nothing to judge).
    code, _ = _analyze(source, "--until", starts[0].isoformat())
    assert code == 3
