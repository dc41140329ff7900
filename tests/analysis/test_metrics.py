"""Per-tier metrics against hand counts, and the synthetic truth they should recover."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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
                "input_tokens": 300,
                "cache_read_tokens": 100,
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
                "input_tokens": 100,
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
                "input_tokens": 50,
                "cost_usd": 0.01,
            },
            # Successful calls without a cost, left out of cost per call: a model
            # genai-prices did not price, a stream that reported no usage.
            {
                "tier": "production",
                "user_hash": "c",
                "status": "ok",
                "start": T0,
                "input_tokens": 80,
                "response_model": "gpt-new",
            },
            {"tier": "production", "user_hash": "e", "status": "ok", "start": T0},
            # A background call with no result yet: counted apart, in no number per call.
            {"tier": "canary", "user_hash": "d", "status": "pending", "start": T0},
        ]
    )
    rows = {r["tier"]: r for r in metrics.summary(frame).iter_rows(named=True)}
    canary, production = rows["canary"], rows["production"]
    assert (canary["calls"], canary["users"], canary["errors"]) == (3, 2, 1)
    assert (production["cost_per_call_usd"], production["calls_without_cost"]) == (0.01, 2)
    assert canary["calls_without_cost"] == 0
    assert metrics.calls_without_cost(frame, "chat") == {
        "production": metrics.WithoutCost(2, {"gpt-new": 1}, 1)
    }
    assert (canary["pending"], rows["production"]["pending"]) == (1, 0)
    assert (canary["cache_read_share"], production["cache_read_share"]) == (0.25, 0.0)
    assert canary["error_rate"] == pytest.approx(1 / 3)
    assert canary["latency_p50_ms"] == 200.0
    assert canary["cost_per_1k_calls_usd"] == pytest.approx(20.0)
    assert canary["satisfaction"] == 3.0 and canary["positive_share"] == 0.5
    assert canary["regression_rate"] == 0.5
    errors = metrics.errors_by_type(frame)
    assert errors.select("tier", "error_type", "errors").row(0) == ("canary", "Timeout", 1)
    assert errors["rate"][0] == pytest.approx(1 / 3)
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


def test_user_aggregates_match_a_per_user_reading() -> None:
    """Each user's widest stage (an unknown percent is skipped), a call without a user
    is its own pseudo-user, and sums skip missing values."""
    frame = _calls(
        [
            {"tier": "canary", "user_hash": "a", "start": T0, "rollout_percent": 5},
            {
                "tier": "canary",
                "user_hash": "a",
                "start": T0 + dt.timedelta(hours=2),
                "rollout_percent": 25,
                "cost_usd": 0.5,
            },
            {
                "tier": "canary",
                "user_hash": "a",
                "start": T0 + dt.timedelta(hours=1),
                "rollout_percent": 50,
                "cost_usd": 0.25,
            },
            {"tier": "production", "user_hash": "b", "start": T0, "rollout_percent": 25},
            {"tier": "production", "user_hash": "b", "start": T0 + dt.timedelta(hours=3)},
            {"tier": "production", "user_hash": None, "start": T0, "status": "error"},
            {"tier": "production", "user_hash": None, "start": T0 + dt.timedelta(minutes=1)},
        ]
    ).with_columns(pl.col("status").fill_null("ok"), pl.col("duration_ms").fill_null(100.0))
    assert metrics.route_facts(frame, "chat").calls_without_user == 2
    users = metrics.user_aggregates(frame, "chat", None, sums=["cost", "errors"]).collect()
    assert users.columns == ["tier", "user", "calls", "cost", "errors", "rollout_percent"]
    by_calls = users.sort("calls", "errors", descending=True).to_dicts()
    a, b, *no_user = by_calls
    assert (a["tier"], a["calls"], a["cost"], a["rollout_percent"]) == ("canary", 3, 0.75, 50)
    assert (b["calls"], b["cost"], b["rollout_percent"]) == (2, 0.0, 25)
    assert [(u["calls"], u["errors"]) for u in no_user] == [(1, 1), (1, 0)]
    # With a user on every call, keying on the user's hash alone gives the same rows.
    with_users = frame.filter(pl.col("user_hash").is_not_null())
    assert metrics.route_facts(with_users, "chat").calls_without_user == 0
    both = [
        metrics.user_aggregates(with_users, "chat", None, every_call_has_a_user=complete)
        for complete in (False, True)
    ]
    assert both[0].collect().equals(both[1].collect())


def test_route_facts_window_and_users_are_the_judged_calls_only() -> None:
    """The window spans both judged tiers of the route; other routes and tiers are out."""
    frame = _calls(
        [
            {"tier": "production", "user_hash": "a", "start": T0 + dt.timedelta(hours=1)},
            {"tier": "canary", "user_hash": None, "start": T0 + dt.timedelta(hours=4)},
            {"tier": "fallback", "user_hash": None, "start": T0},
            {"tier": "canary", "user_hash": None, "start": T0 + dt.timedelta(hours=9)},
        ]
    )
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("other")).otherwise("route").alias("route")
    )
    facts = metrics.route_facts(frame, "chat")
    canary = T0 + dt.timedelta(hours=4)  # the only canary call of the route
    assert facts == (T0 + dt.timedelta(hours=1), canary, 1, canary, canary)
    assert metrics.route_facts(frame, "missing") == (None, None, 0, None, None)


def test_pending_calls_are_counted_per_judged_tier() -> None:
    frame = _calls(
        [
            {"tier": "canary", "status": "pending", "start": T0},
            {"tier": "canary", "status": "pending", "start": T0},
            {"tier": "production", "status": "ok", "start": T0},
            {"tier": "fallback", "status": "pending", "start": T0},
        ]
    )
    assert metrics.pending_calls(frame, "chat") == {"canary": 2}
    assert metrics.pending_calls(frame.filter(pl.col("status") != "pending"), "chat") == {}


def test_judged_routes_are_those_with_a_canary_else_those_with_production() -> None:
    frame = _calls(
        [
            {"route": "b", "tier": "canary"},
            {"route": "a", "tier": "production"},
            {"route": "c", "tier": "canary"},
            {"route": None, "tier": "canary"},
        ]
    )
    assert metrics.judged_routes(frame) == ["b", "c"]
    assert metrics.judged_routes(frame.filter(pl.col("tier") != "canary")) == ["a"]
    assert metrics.judged_routes(frame.filter(pl.col("tier") == "fallback")) == []


@pytest.mark.parametrize(
    ("models", "main"),
    [
        (["m-1", "m-1"], "m-1"),
        (["m-2", "m-1", "m-1", None, None, None], "m-1"),  # the most calls, nulls aside
        (["m-2", "m-1"], "m-1"),  # a tie: the first by name
        ([None], None),
        ([], None),
    ],
)
def test_tier_models_come_most_frequent_first_with_their_shares(
    models: list[str | None], main: str | None, tmp_path: Path
) -> None:
    rows = [{"tier": "canary", "request_model": m} for m in models]
    rows.append({"tier": "production", "request_model": "prod-model"})
    path = tmp_path / "calls.parquet"  # the cheap queries rely on Parquet's pushdown
    _calls(rows).write_parquet(path)
    named = [m for m in models if m is not None]
    for source in (_calls(rows), pl.scan_parquet(path)):
        mix = metrics.tier_models(source, "chat", "canary")
        assert next(iter(mix), None) == main
        assert mix == {m: named.count(m) / len(named) for m in mix}
        assert metrics.tier_models(source, "chat", "production") == {"prod-model": 1.0}


def test_latency_histograms_unpack_to_tier_and_bin() -> None:
    """The one-integer key decodes to the counts a two-column grouping gives."""
    scenario = synth.Scenario(users=300, calls_per_user=4, seed=3, canary_percent=30)
    frame = synth.calls(scenario)
    # The bins' extremes: under a millisecond (negative log) and beyond the clip.
    extremes = frame.head(4).with_columns(pl.Series("duration_ms", [0.001, 0.02, 1e7, 1e9]))
    frame = pl.concat([frame, extremes])
    route = frame["route"][0]
    got = metrics.latency_histograms(frame, route).collect()
    log_ms = pl.col("duration_ms").clip(0.01, 1e7).log()
    expected = (
        frame.filter(pl.col("route") == route, pl.col("tier").is_in(["production", "canary"]))
        .group_by(
            pl.col("tier").cast(metrics.JUDGED_TIERS),
            (log_ms / metrics.LOG_BIN_WIDTH).floor().cast(pl.Int16).alias("bin"),
        )
        .agg(pl.len().cast(pl.UInt32).alias("n"))
    )
    assert got["n"].sum() == frame.filter(pl.col("route") == route).height
    assert got["bin"].min() == -922 and got["bin"].max() == 3223
    assert got.equals(expected.sort("tier", "bin"))


def test_user_aggregates_count_calls_within_each_tiers_latency_cut() -> None:
    """A latency cut counts a user's calls whose column is at or below its tier's cut;
    no cut, none; a call without a value (no first token: not streamed), none."""
    rows = [("canary", "a", ms) for ms in (100.0, 200.0, 300.0)]
    rows += [("production", "b", ms) for ms in (100.0, 200.0, 300.0)]
    rows += [("fallback", "c", 1.0)]
    frame = _calls(
        [
            {"tier": t, "user_hash": u, "duration_ms": ms, "start": T0}
            | ({"ttft_ms": ms / 10} if ms < 300 else {})
            for t, u, ms in rows
        ]
    )
    cuts = {
        "fast": ("duration_ms", {"canary": 200.0, "production": 100.0}),
        "none": ("duration_ms", {"production": 1e9}),
        "first": ("ttft_ms", {"canary": 1e9, "production": 10.0}),
    }
    users = metrics.user_aggregates(
        frame, "chat", None, sums=["ttft_calls"], latency_cuts=cuts
    ).collect()
    got = {
        row["tier"]: (row["calls"], row["fast"], row["none"], row["first"], row["ttft_calls"])
        for row in users.to_dicts()
    }
    assert got == {"canary": (3, 2, 0, 2, 2), "production": (3, 1, 3, 1, 2)}


@pytest.mark.parametrize(
    ("scores", "threshold"),
    [([1.0, 3.0, 5.0], 4.0), ([0.0, 1.0], 0.75), ([4.0, 4.0], 4.0), ([None], None)],
)
def test_positive_threshold_is_three_quarters_up_the_observed_scale(
    scores: list[float | None], threshold: float | None
) -> None:
    frame = _calls([{"tier": "canary", "feedback_score": score} for score in scores])
    assert metrics.positive_threshold(frame) == threshold
    assert metrics.positive_threshold(frame.lazy()) == threshold
