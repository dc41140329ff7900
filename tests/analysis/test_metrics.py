"""Per-tier metrics against hand counts, and the synthetic truth they should recover."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from canarytrace.analysis import metrics, synth
from canarytrace.analysis.schema import CALLS_SCHEMA


def _calls(rows: list[dict[str, object]]) -> pl.DataFrame:
    base = dict.fromkeys(CALLS_SCHEMA)
    base.update(route="chat", feedback_count=0)
    return pl.DataFrame([{**base, **row} for row in rows], schema=CALLS_SCHEMA)


T0 = dt.datetime(2026, 6, 2, tzinfo=dt.UTC)


def test_summary_counts_by_hand() -> None:
    frame = _calls(
        [
            {
                "tier": "canary",
                "user_hash": "a",
                "status": "error",
                "error_type": "Timeout",
                "duration_ms": 100.0,
                "start": T0,
                "cost_usd": 0.01,
                "outcome_ok": False,
            },
            {
                "tier": "canary",
                "user_hash": "a",
                "status": "ok",
                "duration_ms": 300.0,
                "start": T0,
                "cost_usd": 0.03,
                "feedback_score": 5.0,
                "feedback_count": 1,
            },
            {
                "tier": "canary",
                "user_hash": "b",
                "status": "ok",
                "duration_ms": 200.0,
                "start": T0 + dt.timedelta(hours=1),
                "cost_usd": 0.02,
                "feedback_score": 1.0,
                "feedback_count": 1,
                "outcome_ok": True,
            },
            {
                "tier": "production",
                "user_hash": "c",
                "status": "ok",
                "duration_ms": 50.0,
                "start": T0,
                "cost_usd": 0.01,
            },
        ]
    )
    rows = {r["tier"]: r for r in metrics.summary(frame).iter_rows(named=True)}
    canary = rows["canary"]
    assert (canary["calls"], canary["users"], canary["errors"]) == (3, 2, 1)
    assert canary["error_rate"] == pytest.approx(1 / 3)
    assert canary["latency_p50_ms"] == 200.0
    assert canary["cost_per_1k_calls_usd"] == pytest.approx(20.0)
    assert canary["satisfaction"] == 3.0 and canary["positive_share"] == 0.5
    assert canary["regression_rate"] == 0.5
    errors = metrics.errors_by_type(frame)
    assert errors.select("tier", "error_type", "errors").row(0) == ("canary", "Timeout", 1)
    timeline = metrics.over_time(frame, every="1h")
    assert timeline.filter(pl.col("tier") == "canary")["calls"].to_list() == [2, 1]


def test_the_synthetic_truth_is_recovered() -> None:
    scenario = synth.with_canary(
        synth.Scenario(users=20_000, canary_percent=25, seed=11),
        error_rate=0.03,
        satisfaction_mean=3.7,
        cost_multiplier=1.25,
    )
    rows = {r["tier"]: r for r in metrics.summary(synth.calls(scenario)).iter_rows(named=True)}
    prod, canary = rows["production"], rows["canary"]
    assert canary["users"] / (canary["users"] + prod["users"]) == pytest.approx(0.25, abs=0.01)
    assert prod["error_rate"] == pytest.approx(0.01, abs=0.002)
    assert canary["error_rate"] == pytest.approx(0.03, abs=0.005)
    assert canary["satisfaction"] == pytest.approx(3.7, abs=0.05)
    assert prod["satisfaction"] == pytest.approx(4.0, abs=0.03)
    assert canary["cost_per_call_usd"] / prod["cost_per_call_usd"] == pytest.approx(1.25, abs=0.02)
    assert prod["regression_rate"] == pytest.approx(0.05, abs=0.01)
