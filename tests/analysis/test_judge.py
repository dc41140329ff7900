"""The judge on synthetic canaries with a known truth.

Sample sizes are the ones README.md ("Judging a canary") documents: the stage is 50 %,
users make 5 calls on average, 30 % of calls get feedback and 30 % an outcome.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.multitest import multipletests

from canarytrace.analysis import confounders, metrics, synth
from canarytrace.analysis.estimates import holm
from canarytrace.analysis.judge import JudgeConfig, RouteVerdict, Verdict, _srm, judge
from canarytrace.analysis.settings import route_configs
from canarytrace.errors import RegistryError
from canarytrace.registry import load_registry

# (canary truth, total users) at which each regression must be caught in >= 90 % of runs.
DETECTION = {
    "error rate 1% -> 3%": ({"error_rate": 0.03}, 2000),
    "p95 latency +30%": ({"latency_median_ms": 900 * 1.3}, 1200),
    "cost +25%": ({"cost_multiplier": 1.25}, 200),
    "satisfaction -0.3 on 1-5": ({"satisfaction_mean": 3.7}, 1600),
}


@pytest.fixture(scope="module")
def aa_runs() -> list[RouteVerdict]:
    """200 seeded A/A canaries of 800 users, judged at the default settings."""
    return [judge(synth.calls(synth.aa(users=800, seed=s))).routes["chat"] for s in range(200)]


@pytest.mark.slow
def test_an_aa_canary_is_not_rolled_back_in_99_percent_of_200_runs(
    aa_runs: list[RouteVerdict],
) -> None:
    verdicts = [run.verdict for run in aa_runs]
    assert verdicts.count(Verdict.ROLLBACK) <= 2
    assert verdicts.count(Verdict.PROMOTE) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["latency_p95", "ttft_p95"])
def test_the_p95_interval_covers_the_true_change_as_often_as_it_says(
    aa_runs: list[RouteVerdict], name: str
) -> None:
    """Shown intervals are two-sided 90 %: on A/A canaries they hold zero in 90 % of runs
    (84-96 % is three binomial standard errors of 200 runs). The time to first token's
    quantile is over the streamed half of the calls."""
    p95 = [next(m for m in run.metrics if m.name == name) for run in aa_runs]
    covered = sum(m.low is not None and m.high is not None and m.low <= 0 <= m.high for m in p95)
    assert 0.84 * len(p95) <= covered <= 0.96 * len(p95)


@pytest.mark.slow
@pytest.mark.parametrize("case", DETECTION)
def test_a_regression_is_rolled_back_at_the_documented_sample_size(case: str) -> None:
    truth, users = DETECTION[case]
    runs = 30
    rolled = 0
    for seed in range(runs):
        scenario = synth.with_canary(synth.Scenario(users=users, seed=500 + seed), **truth)
        rolled += judge(synth.calls(scenario)).verdict == Verdict.ROLLBACK
    assert rolled >= 0.9 * runs


def test_the_reason_names_the_failing_metric() -> None:
    scenario = synth.with_canary(synth.Scenario(users=2000, seed=1), error_rate=0.03)
    route = judge(synth.calls(scenario)).routes["chat"]
    assert route.verdict == Verdict.ROLLBACK
    assert route.reasons[0].startswith("error rate +")
    failed = {m.name for m in route.metrics if m.status == "fail"}
    assert failed == {"error_rate"}
    assert route.failing_canary and all(
        t["status"] == "error" or t["outcome_kind"] for t in route.failing_canary
    )


def test_thin_data_holds_and_says_how_much_more_is_needed() -> None:
    route = judge(synth.calls(synth.aa(users=40, seed=2))).routes["chat"]
    assert route.verdict == Verdict.HOLD
    assert "too little data" in route.reasons[0]
    assert route.more_canary_calls is not None and route.more_canary_calls > 0
    assert route.more_hours is not None and route.more_hours > 0
    assert "more canary calls would decide it (~" in route.reasons[-1]


def test_a_large_aa_canary_is_promoted() -> None:
    route = judge(synth.calls(synth.aa(users=3000, seed=4))).routes["chat"]
    assert route.verdict == Verdict.PROMOTE
    assert all(m.status == "pass" for m in route.metrics)


def _without_on_canary(calls: pl.DataFrame, column: str) -> pl.DataFrame:
    canary = pl.col("tier") == "canary"
    return calls.with_columns(pl.when(canary).then(None).otherwise(pl.col(column)).alias(column))


def test_a_canary_measured_without_cost_or_feedback_is_not_promoted() -> None:
    """The canary of the promoted A/A run above, its model unknown to genai-prices (its
    calls have no cost) or its feedback not wired: nothing to compare a critical metric
    with is no licence to promote."""
    calls = synth.calls(synth.aa(users=3000, seed=4))
    unpriced = judge(_without_on_canary(calls, "cost_usd")).routes["chat"]
    assert unpriced.verdict == Verdict.HOLD
    cost = next(m for m in unpriced.metrics if m.name == "cost_per_call")
    assert (cost.status, cost.measured_only_on) == ("no data", "production")  # for machines
    canary_model = calls.filter(pl.col("tier") == "canary")["response_model"].drop_nulls()[0]
    canary_ok = calls.filter((pl.col("tier") == "canary") & (pl.col("status") == "ok")).height
    canary_calls = calls.filter(pl.col("tier") == "canary").height
    assert unpriced.reasons == [
        "cost per call: measured on production only, not on the canary; a critical metric "
        "must be compared before a promotion",
        f"successful calls without a cost, left out of cost per call: the canary "
        f"{canary_ok:,} of {canary_calls:,} (99%): {canary_ok:,} answered by {canary_model}; "
        "genai-prices did not price those models when the calls were made (update "
        "genai-prices or add their prices)",
    ]
    production_unpriced = calls.with_columns(
        pl.when(pl.col("tier") == "production").then(None).otherwise("cost_usd").alias("cost_usd")
    )
    route = judge(production_unpriced).routes["chat"]
    assert route.verdict == Verdict.HOLD
    assert route.reasons[0].startswith(
        "cost per call: measured on the canary only, not on production"
    )
    no_feedback = judge(_without_on_canary(calls, "feedback_score")).routes["chat"]
    assert no_feedback.verdict == Verdict.HOLD
    assert no_feedback.reasons == [
        "satisfaction: measured on production only, not on the canary; a critical metric "
        "must be compared before a promotion",
        "positive feedback: measured on production only, not on the canary, not judged",
    ]


def _unpriced(calls: pl.DataFrame, tier: str, share: float, served: str) -> pl.DataFrame:
    """`calls` with the first `share` of `tier`'s successful calls answered by `served`
    and without a cost (genai-prices priced it only later)."""
    ok = (pl.col("tier") == tier) & (pl.col("status") == "ok")
    hit = ok & (pl.int_range(pl.len()).over(ok) < share * ok.sum())
    return calls.sort("start").with_columns(
        pl.when(hit).then(pl.lit(served)).otherwise("response_model").alias("response_model"),
        pl.when(hit).then(None).otherwise("cost_usd").alias("cost_usd"),
    )


def test_calls_without_a_cost_are_left_out_not_counted_as_free() -> None:
    """A canary 30 % dearer whose first 40 % of calls were made before genai-prices knew
    its model: counted as free, those calls made it look cheaper than production."""
    scenario = synth.with_canary(synth.Scenario(users=3000, seed=4), cost_multiplier=1.3)
    calls = synth.calls(scenario)
    route = judge(_unpriced(calls, "canary", 0.4, "gpt-new-2026-11-01")).routes["chat"]
    cost = next(m for m in route.metrics if m.name == "cost_per_call")
    assert cost.change is not None and 0.2 < cost.change < 0.4
    assert (cost.status, route.verdict) == ("fail", Verdict.ROLLBACK)
    assert route.reasons[-1].startswith(
        "successful calls without a cost, left out of cost per call: the canary "
    )
    assert "answered by gpt-new-2026-11-01; genai-prices did not price" in route.reasons[-1]


@pytest.mark.parametrize(("share", "verdict"), [(0.05, Verdict.PROMOTE), (0.2, Verdict.HOLD)])
def test_a_canary_partly_unpriced_is_held_from_a_tenth_of_its_calls(
    share: float, verdict: Verdict
) -> None:
    """The promoted A/A run: its cost compares the priced calls, which stand for the tier
    while few are missing; from a tenth they may not."""
    calls = _unpriced(synth.calls(synth.aa(users=3000, seed=4)), "canary", share, "gpt-new")
    route = judge(calls).routes["chat"]
    assert route.verdict == verdict
    cost = next(m for m in route.metrics if m.name == "cost_per_call")
    assert cost.status == "pass"
    holds = "a critical metric must be compared before a promotion"
    assert route.reasons[-1].startswith("successful calls without a cost")
    assert route.reasons[-1].endswith(holds) == (verdict == Verdict.HOLD)


def test_streams_without_usage_are_left_out_of_cost_and_tokens() -> None:
    """Calls that reported no usage (OpenAI streams not asked for it) on both tiers: cost
    and output tokens per call are those of the calls that did."""
    calls = synth.calls(synth.aa(users=3000, seed=4))
    no_usage = (pl.col("status") == "ok") & (pl.int_range(pl.len()) % 10 < 3)
    blanked = calls.with_columns(
        pl.when(no_usage).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("input_tokens", "output_tokens", "cost_usd")
    )
    route = judge(blanked).routes["chat"]
    assert route.verdict == Verdict.PROMOTE
    known = blanked.filter(pl.col("tier") == "production", ~no_usage)
    cost = next(m for m in route.metrics if m.name == "cost_per_call")
    tokens = next(m for m in route.metrics if m.name == "output_tokens")
    assert cost.production == pytest.approx(known["cost_usd"].fill_null(0).mean())
    assert tokens.production == pytest.approx(known["output_tokens"].fill_null(0).mean())
    assert "that reported no token usage" in route.reasons[-1]
    assert "instrument(include_stream_usage=True)" in route.reasons[-1]


def test_a_sliver_of_calls_without_a_cost_is_not_written_as_none_of_them() -> None:
    without = {"production": metrics.WithoutCost(3, {}, 3)}
    text = confounders.without_cost_reason(without, {"production": 90_000, "canary": 9}, False)
    assert "production 3 of 90,000 (<1%): 3 that reported no token usage" in text


def test_a_metric_neither_tier_has_does_not_hold_the_canary() -> None:
    """Self-hosted models without a price: cost per call cannot be judged on either."""
    calls = synth.calls(synth.aa(users=3000, seed=4)).with_columns(
        pl.lit(None, pl.Float64).alias("cost_usd")
    )
    route = judge(calls).routes["chat"]
    assert route.verdict == Verdict.PROMOTE
    assert route.reasons[-1] == "cost per call: no data on either tier, not judged"
    cost = next(m for m in route.metrics if m.name == "cost_per_call")
    assert (cost.status, cost.measured_only_on) == ("no data", None)


def test_a_skewed_split_is_a_sample_ratio_mismatch_and_holds() -> None:
    skewed = synth.with_canary(
        synth.Scenario(users=3000, seed=5, observed_canary_share=0.44), error_rate=0.03
    )
    route = judge(synth.calls(skewed)).routes["chat"]
    assert route.srm is not None and route.srm.mismatch
    assert route.verdict == Verdict.HOLD
    assert "sample ratio mismatch" in route.reasons[0]
    # 44 % of 3000 users at a 25 % stage: a p-value that underflows is not written as 0.
    assert "(chi-square p < 0.001)" in route.reasons[0]
    sound = judge(synth.calls(synth.aa(users=3000, seed=5))).routes["chat"]
    assert sound.srm is not None and not sound.srm.mismatch


def _served(calls: pl.DataFrame, canary: str, production: str, share: float = 1.0) -> pl.DataFrame:
    """`calls` with production served at `production` and `share` of the canary's calls
    at `canary` (the rest at `production`)."""
    canary_call = (pl.col("tier") == "canary") & (pl.int_range(pl.len()) % 100 < share * 100)
    return calls.with_columns(
        pl.when(canary_call)
        .then(pl.lit(canary))
        .otherwise(pl.lit(production))
        .alias("service_tier")
    )


def test_arms_served_at_different_service_tiers_hold_and_say_so() -> None:
    """A canary on OpenAI's flex tier is slower and cheaper whatever its model: the
    comparison is confounded, even with a regression that would roll back."""
    regressed = synth.calls(
        synth.with_canary(synth.Scenario(users=3000, seed=4), latency_median_ms=900 * 1.3)
    )
    assert judge(regressed).routes["chat"].verdict == Verdict.ROLLBACK
    route = judge(_served(regressed, "flex", "default")).routes["chat"]
    assert route.verdict == Verdict.HOLD
    assert route.reasons[0].startswith(
        "served at different service tiers (production: default 100%; canary: flex 100%)"
    )
    assert any(r.startswith("(would have failed) latency p95") for r in route.reasons)


@pytest.mark.parametrize(
    ("canary", "share", "verdict"),
    [("default", 1.0, Verdict.PROMOTE), ("priority", 0.05, Verdict.PROMOTE)],
    ids=["same tier", "5 points apart"],
)
def test_arms_served_alike_are_judged(canary: str, share: float, verdict: Verdict) -> None:
    calls = _served(synth.calls(synth.aa(users=3000, seed=4)), canary, "default", share)
    route = judge(calls).routes["chat"]
    assert route.verdict == verdict
    assert not any("service tiers" in r for r in route.reasons)


def _drifted(calls: pl.DataFrame, tier: str, share: float, served: str) -> pl.DataFrame:
    """`calls` with `share` of `tier`'s successful calls answered by `served` (drift)."""
    hit = (
        (pl.col("tier") == tier)
        & pl.col("response_model").is_not_null()
        & (pl.int_range(pl.len()) % 100 < share * 100)
    )
    return calls.with_columns(
        pl.when(hit)
        .then(pl.lit(served))
        .otherwise(pl.col("response_model"))
        .alias("response_model"),
        pl.when(hit).then(pl.lit(True)).otherwise(pl.col("alias_drift")).alias("alias_drift"),
    )


def test_a_tier_answered_by_another_model_than_its_pinned_one_holds() -> None:
    """An Azure deployment upgraded under the canary: the verdict would be about a mix."""
    calls = synth.calls(synth.aa(users=3000, seed=4))
    canary = calls.filter(pl.col("tier") == "canary")["request_model"][0]
    route = judge(_drifted(calls, "canary", 0.3, "gpt-4o-2099-01-01")).routes["chat"]
    assert route.verdict == Verdict.HOLD
    first = route.reasons[0]
    assert first.startswith("canary: 2") or first.startswith("canary: 3")  # about 30%
    assert first.endswith(
        f"of its calls were answered by gpt-4o-2099-01-01, not by the pinned {canary} "
        "(alias drift): the comparison is not of the pinned models"
    )


def test_a_little_drift_does_not_hold() -> None:
    calls = _drifted(synth.calls(synth.aa(users=3000, seed=4)), "production", 0.05, "gpt-x")
    route = judge(calls).routes["chat"]
    assert route.verdict == Verdict.PROMOTE
    assert not any("alias drift" in r for r in route.reasons)


def test_a_non_critical_regression_holds_instead_of_rolling_back() -> None:
    # A cheaper model that talks more: 60 % more output tokens at the same cost per call.
    scenario = synth.with_canary(
        synth.Scenario(users=2000, seed=6), output_tokens_mean=400.0, cost_multiplier=0.71
    )
    route = judge(synth.calls(scenario)).routes["chat"]
    tokens = next(m for m in route.metrics if m.name == "output_tokens")
    assert tokens.status == "fail" and not tokens.critical
    assert route.verdict == Verdict.HOLD
    assert any("not critical" in r for r in route.reasons)


def test_a_canary_that_refuses_more_is_rolled_back() -> None:
    """Its safety classifiers decline 4 % of requests: every call succeeds, and users
    are refused (production's model refuses none)."""
    scenario = synth.with_canary(
        synth.Scenario(users=2000, seed=11), refusal_rate=0.04, refusal_category="cyber"
    )
    calls = synth.calls(scenario)
    route = judge(calls).routes["chat"]
    refusals = next(m for m in route.metrics if m.name == "refusal_rate")
    assert refusals.status == "fail" and refusals.critical
    assert refusals.production == 0 and refusals.canary == pytest.approx(0.04, abs=0.01)
    assert route.verdict == Verdict.ROLLBACK
    assert route.reasons[0].startswith("refusal rate")
    assert "fallback_rate" not in {m.name for m in route.metrics}  # none was answered
    # What was refused: the policy area the refusals named, counted.
    refused = calls.filter(pl.col("refused")).height
    assert f"refused calls by the category their refusal named: canary cyber {refused:,}" in (
        route.reasons
    )
    # Refused calls succeed, yet they are among the failing calls the report links to.
    assert any(trace["refusal_category"] == "cyber" for trace in route.failing_canary)


def test_refusals_a_fallback_answered_hold_for_a_look() -> None:
    """The user got an answer, from another model than the one rolled out."""
    scenario = synth.with_canary(
        synth.Scenario(users=2000, seed=11), refusal_rate=0.04, fallback_model="claude-x"
    )
    route = judge(synth.calls(scenario)).routes["chat"]
    fallbacks = next(m for m in route.metrics if m.name == "fallback_rate")
    assert fallbacks.status == "fail" and not fallbacks.critical
    assert "refusal_rate" not in {m.name for m in route.metrics}
    assert route.verdict == Verdict.HOLD
    assert any(r.startswith("fallback rate") and "not critical" in r for r in route.reasons)


def test_a_route_without_refusals_is_not_judged_on_them() -> None:
    """Nor made stricter elsewhere: Holm's correction counts only the judged metrics."""
    route = judge(synth.calls(synth.aa(users=800, seed=3))).routes["chat"]
    names = [m.name for m in route.metrics]
    assert "refusal_rate" not in names and "fallback_rate" not in names
    assert "error_rate" in names


def test_a_canary_slower_to_its_first_token_is_rolled_back() -> None:
    """A model that thinks before it answers: the whole call takes as long, but a user of
    a streamed answer waits 40 % longer for its first word."""
    scenario = synth.with_canary(synth.Scenario(users=3000, seed=4), ttft_multiplier=1.4)
    calls = synth.calls(scenario)
    route = judge(calls).routes["chat"]
    ttft = next(m for m in route.metrics if m.name == "ttft_p95")
    latency = next(m for m in route.metrics if m.name == "latency_p95")
    assert route.verdict == Verdict.ROLLBACK
    assert (ttft.status, latency.status) == ("fail", "pass")
    assert ttft.change is not None and 0.25 < ttft.change < 0.5
    streamed = calls.filter(pl.col("tier") == "production", pl.col("ttft_ms").is_not_null())
    exact = streamed["ttft_ms"].quantile(0.95, "linear")
    assert ttft.production == pytest.approx(exact, rel=0.01)  # from 0.5 % histogram bins
    assert route.reasons[0].startswith("time to first token p95 +")
    assert "significantly worse beyond the margin" in route.reasons[0]


def test_a_route_that_never_streams_is_not_judged_on_its_first_token() -> None:
    aa = synth.calls(synth.aa(users=3000, seed=4))
    streams = judge(aa).routes["chat"]
    assert next(m for m in streams.metrics if m.name == "ttft_p95").status == "pass"
    plain = aa.with_columns(pl.lit(None, pl.Float64).alias("ttft_ms"))
    route = judge(plain).routes["chat"]
    assert "ttft_p95" not in [m.name for m in route.metrics]
    assert route.verdict == Verdict.PROMOTE


def test_holm_matches_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def _assert_same(left: object, right: object, path: str = "") -> None:
    """`left == right`, nested in dicts and lists, floats to a relative 1e-12."""
    if isinstance(left, float) and isinstance(right, float):
        both_nan = math.isnan(left) and math.isnan(right)
        assert both_nan or math.isclose(left, right, rel_tol=1e-12), path
    elif isinstance(left, dict) and isinstance(right, dict):
        assert left.keys() == right.keys(), path
        for key in left:
            _assert_same(left[key], right[key], f"{path}.{key}")
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        assert len(left) == len(right), path
        for index, (one, other) in enumerate(zip(left, right, strict=True)):
            _assert_same(one, other, f"{path}[{index}]")
    else:
        assert left == right, path


def test_a_lazy_frame_gives_the_same_verdict() -> None:
    """The same verdict and numbers, to 1e-12: polars' streaming engine may add up one
    user's calls in another order from run to run, which moves a sum's last bits (seen:
    an interval's bound 0.0625534754522244 against 0.06255347545222345, about 1 run in
    100 on a busy machine)."""
    frame = synth.calls(synth.with_canary(synth.Scenario(users=600, seed=7), cost_multiplier=1.3))
    eager, lazy = judge(frame), judge(frame.lazy())
    _assert_same(eager.to_dict(), lazy.to_dict())
    assert eager.verdict == Verdict.ROLLBACK


@pytest.mark.slow
def test_sequential_looks_at_an_aa_canary_do_not_roll_back() -> None:
    config = JudgeConfig(sequential=True)
    rollbacks = 0
    for seed in range(40):
        frame = synth.calls(synth.aa(users=1200, seed=900 + seed))
        first = frame["start"].min()
        for hours in (1, 2, 4, 6):  # the same canary looked at four times as it grows
            look = frame.filter(pl.col("start") < first + dt.timedelta(hours=hours))
            if judge(look, config=config).verdict == Verdict.ROLLBACK:
                rollbacks += 1
                break
    assert rollbacks <= 1


def test_sequential_mode_is_named_and_still_catches_a_big_regression() -> None:
    config = JudgeConfig(sequential=True)
    scenario = synth.with_canary(synth.Scenario(users=2000, seed=8), error_rate=0.05)
    result = judge(synth.calls(scenario), config=config)
    assert result.verdict == Verdict.ROLLBACK
    assert result.to_dict()["mode"].startswith("sequential")


def test_overrides_change_margins_and_reject_unknown_keys() -> None:
    config = JudgeConfig().override(
        {"confidence": 0.99, "metrics": {"latency_p95": {"margin": 0.5, "critical": False}}}
    )
    p95 = next(m for m in config.metrics if m.name == "latency_p95")
    assert (config.confidence, p95.margin, p95.critical) == (0.99, 0.5, False)
    with pytest.raises(ValueError, match=r"judge\.metrics\.latency_p99: unknown metric"):
        JudgeConfig().override({"metrics": {"latency_p99": {"margin": 1}}})
    with pytest.raises(ValueError, match=r"judge\.confidance: unknown judge setting"):
        JudgeConfig().override({"confidance": 0.9})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"metrics": {"latency_p95": {"critical": "false"}}}, r"critical: 'false' must be true or"),
        ({"sequential": "no"}, r"judge\.sequential: 'no' must be true or false"),
        ({"min_users": 2.7}, r"judge\.min_users: 2\.7 must be a whole number"),
        ({"confidence": "high"}, r"judge\.confidence: 'high' must be a number"),
        (
            {"metrics": {"satisfaction": {"margin": 1.0}}},
            r"satisfaction\.margin: 1\.0 must be above 0 and below 1",
        ),
        (
            {"metrics": {"cost_per_call": {"margin": -0.1}}},
            r"cost_per_call\.margin: -0\.1 must be above 0",
        ),
    ],
)
def test_settings_are_refused_not_converted(settings: dict[str, Any], message: str) -> None:
    """`bool("false")` made a quoted false critical, `int(2.7)` made 2, and a 100 % fall
    of satisfaction as its margin crashed the judge (log1p(-1))."""
    with pytest.raises(ValueError, match=message):
        JudgeConfig().override(settings)


def test_models_yaml_judge_settings_are_read_per_route(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    models = (
        "models:\n  - {id: a-20240101, provider: other}\n  - {id: b-20240101, provider: other}\n"
    )
    path.write_text(
        "routes:\n"
        "  chat:\n    production: a-20240101\n    judge:\n      sequential: true\n"
        "      metrics:\n        cost_per_call: {margin: 0.5}\n"
        "  other:\n    production: b-20240101\n" + models
    )
    configs = route_configs(path)
    assert set(configs) == {"chat"} and configs["chat"].sequential
    # The registry itself accepts the mapping, so routing reads the same file.
    assert load_registry(path).routes["chat"].judge == {
        "sequential": True,
        "metrics": {"cost_per_call": {"margin": 0.5}},
    }
    path.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    judge: {colour: red}\n" + models
    )
    with pytest.raises(RegistryError, match=r"routes\.chat\.judge\.colour"):
        route_configs(path)


def test_routes_without_canary_traffic_do_not_hold_the_others() -> None:
    chat = synth.calls(synth.aa(users=3000, seed=4))
    quiet = synth.calls(synth.Scenario(users=200, seed=5, canary_percent=0, route="summarize"))
    result = judge(pl.concat([chat, quiet]))
    assert list(result.routes) == ["chat"] and result.verdict == Verdict.PROMOTE
    only_quiet = judge(quiet)
    assert only_quiet.verdict == Verdict.HOLD
    assert "no canary calls" in only_quiet.routes["summarize"].reasons[0]


def test_a_p_value_of_exactly_zero_still_passes() -> None:
    # With very precise data scipy returns p == 0.0 for a clear non-inferiority.
    steady = synth.TierTruth(model="m-20240101", latency_sigma=0.01)
    scenario = synth.aa(users=4000, seed=12, user_sigma=0.0, production=steady)
    route = judge(synth.calls(scenario)).routes["chat"]
    typical = next(m for m in route.metrics if m.name == "latency_typical")
    assert typical.p_noninferior == 0.0
    assert typical.status == "pass"


@pytest.mark.parametrize("tiny", [True, False])
def test_the_slowest_canary_calls_are_the_top_five_by_duration(tiny: bool) -> None:
    """The histogram's floor never drops one of the five slowest, down to durations under
    its 0.01 ms clip (all in its lowest bin)."""
    calls = synth.calls(synth.aa(users=200, seed=7))
    canary = pl.col("tier") == "canary"
    if tiny:
        ms = pl.Series([0.001, 0.001, 0.002, 0.003, 0.004, 9.0])
        calls = pl.concat(
            [calls.filter(~canary), calls.filter(canary).head(6).with_columns(duration_ms=ms)]
        )
    else:  # ties at the top
        top = canary & (pl.int_range(pl.len()) % 50 == 0)
        calls = calls.with_columns(
            pl.when(top).then(1e6).otherwise("duration_ms").alias("duration_ms")
        )
    route = judge(calls).routes["chat"]
    expected = calls.filter(canary)["duration_ms"].sort(descending=True).head(5).to_list()
    assert [t["duration_ms"] for t in route.slowest_canary] == expected


def test_users_sent_back_to_production_still_count_in_the_canary_split() -> None:
    """The split counts a user in the canary if any of its calls went there, at the widest
    stage it saw: canary users whose later calls went to production (a rollback) do not
    fake a sample-ratio mismatch, as counting each user's last tier would."""
    calls = synth.calls(synth.aa(users=2000, seed=6))
    canary = calls.filter(pl.col("tier") == "canary")
    moved = canary["user_hash"].unique().sort().head(200)
    later = (
        canary.filter(pl.col("user_hash").is_in(moved.implode()))
        .group_by("user_hash")
        .agg(pl.all().last())
        .with_columns(tier=pl.lit("production"), start=pl.col("start") + dt.timedelta(hours=1))
        .select(calls.columns)
    )
    route = judge(pl.concat([calls, later])).routes["chat"]
    assert route.srm is not None and not route.srm.mismatch
    assert route.srm.canary_users == canary["user_hash"].n_unique()


def test_srm_counts_each_user_once_at_the_widest_stage_it_saw() -> None:
    """`_srm` against a plain count: users 0-9 went from production at 5 % to the canary
    at 25 %, 10-29 stayed in production (some without a stage), 30-39 only saw the
    canary at 50 %."""
    rows = [("production", u, 5) for u in range(10)] + [("canary", u, 25) for u in range(10)]
    rows += [("production", u, None if u % 4 == 0 else 25) for u in range(10, 30)]
    rows += [("canary", u, 50) for u in range(30, 40)]
    users = pl.DataFrame(rows, schema=["tier", "user", "rollout_percent"], orient="row")
    widest: dict[int, int | None] = {}
    for _, user, stage in rows:
        known = [s for s in (widest.get(user), stage) if s is not None]
        widest[user] = max(known) if known else None
    in_canary = {user for tier, user, _ in rows if tier == "canary"}
    stages = [s for s in widest.values() if s is not None]

    srm = _srm(users.sample(fraction=1.0, shuffle=True, seed=3), alpha=0.01)

    assert srm is not None
    assert (srm.canary_users, srm.production_users) == (len(in_canary), 40 - len(in_canary))
    assert srm.expected_share == pytest.approx(sum(stages) / len(stages) / 100)


def test_background_calls_still_pending_are_left_out_and_counted() -> None:
    """A pending call has no outcome, cost or latency yet: the verdict is the one without
    it, not one that counts it as a free success, and the reasons say how many wait."""
    calls = synth.calls(synth.aa(users=3000, seed=4))
    waiting = (pl.col("tier") == "canary") & (pl.int_range(pl.len()) % 10 < 3)
    unknown = ("duration_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd")
    pending = calls.with_columns(
        pl.when(waiting).then(pl.lit("pending")).otherwise("status").alias("status"),
        *(pl.when(waiting).then(None).otherwise(c).alias(c) for c in unknown),
    )
    route = judge(pending).routes["chat"]
    ended = judge(calls.filter(~waiting)).routes["chat"]

    _assert_same([asdict(m) for m in route.metrics], [asdict(m) for m in ended.metrics])
    assert (route.verdict, route.canary_calls) == (ended.verdict, ended.canary_calls)
    assert route.pending_calls == {"canary": calls.filter(waiting).height}
    assert route.reasons[-1] == (
        "calls still running in the background, not judged until their results are "
        f"traced: canary {calls.filter(waiting).height}"
    )


def _cache_scenario(canary_share: float, **canary: float) -> synth.Scenario:
    """The A/A canary of `test_a_large_aa_canary_is_promoted`, production reading 60 % of
    its input from the prompt cache and the canary `canary_share`."""
    base = synth.aa(users=3000, seed=4)
    production = replace(base.production, cache_read_share=0.6)
    return replace(
        base,
        production=production,
        canary=replace(
            production, model=base.canary.model, cache_read_share=canary_share, **canary
        ),
    )


def test_a_canary_dearer_only_by_its_colder_prompt_cache_holds_and_says_so() -> None:
    """Same model and price; the canary finds its cache cold (10 % of its input read from
    it against 60 %), which makes it ~18 % dearer: not a reason to roll back."""
    route = judge(synth.calls(_cache_scenario(0.1))).routes["chat"]
    cost = next(m for m in route.metrics if m.name == "cost_per_call")

    assert cost.status == "fail" and route.verdict == Verdict.HOLD
    assert route.reasons[-1].startswith("(would have failed) cost per call +")
    assert route.reasons[-1].endswith(
        ": prompt cache: production read 60% of its input from it, the canary 10%, which "
        "alone can move cost per call by up to +98% and the latency of long prompts; judge "
        "again once the canary's cache has warmed"
    )


def test_a_canary_dearer_than_a_cold_cache_explains_is_still_rolled_back() -> None:
    route = judge(synth.calls(_cache_scenario(0.1, cost_multiplier=4.0))).routes["chat"]

    assert route.verdict == Verdict.ROLLBACK
    assert route.reasons[0].startswith("cost per call +")
    assert route.reasons[-1].startswith("prompt cache: production read 60% of its input")


def test_tiers_reading_the_cache_alike_are_judged_on_cost_as_ever() -> None:
    route = judge(synth.calls(_cache_scenario(0.55, cost_multiplier=1.3))).routes["chat"]

    assert route.verdict == Verdict.ROLLBACK
    assert not any("prompt cache" in reason for reason in route.reasons)


def test_a_slower_canary_with_a_colder_cache_is_rolled_back_and_the_caches_named() -> None:
    """Latency has no bound to divide out: the verdict stands, the reasons say why it may
    be the caches as much as the model. (The canary's price is cut to make up for its
    colder cache, so its cost per call passes.)"""
    slower = _cache_scenario(0.1, latency_median_ms=900 * 1.3, cost_multiplier=0.84)
    route = judge(synth.calls(slower)).routes["chat"]

    assert route.verdict == Verdict.ROLLBACK
    assert next(m for m in route.metrics if m.name == "cost_per_call").status == "pass"
    assert route.reasons[0].startswith("latency p95 +")
    assert route.reasons[-1].startswith("prompt cache: production read 60% of its input")


def test_calls_of_no_user_are_no_sample_of_the_split() -> None:
    """Routing sends a call without a user id to production whatever the stage; each was
    counted as a production user of its own, so 2 % of such calls made the split read
    47 % canary at a 50 % stage: 'routing or tracing is broken', HOLD forever."""
    calls = synth.calls(synth.aa(users=3000, seed=15))
    production = calls.filter(pl.col("tier") == "production")
    anonymous = production.sample(fraction=0.02, seed=1).with_columns(
        pl.lit(None, pl.String).alias("user_hash"),
        pl.Series("span_id", [f"{i:016x}" for i in range(int(production.height * 0.02))]),
    )
    route = judge(pl.concat([calls, anonymous])).routes["chat"]
    assert route.srm is not None and not route.srm.mismatch
    users = calls["user_hash"].n_unique()
    assert route.srm.canary_users + route.srm.production_users == users


def test_the_time_still_needed_is_at_the_canarys_own_rate() -> None:
    """A week of production traces beside a canary of six hours read '~216 days at 4
    canary calls/h': the canary's calls were divided by the whole window."""
    calls = synth.calls(synth.aa(users=40, seed=2))
    canary = calls.filter(pl.col("tier") == "canary")
    early = calls.filter(pl.col("tier") == "production").head(1)
    week_before = early.with_columns(pl.col("start") - dt.timedelta(days=7))
    route = judge(pl.concat([calls, week_before])).routes["chat"]
    hours = (canary["start"].max() - canary["start"].min()).total_seconds() / 3600
    assert route.more_canary_calls is not None and route.more_hours is not None
    assert route.more_hours == pytest.approx(route.more_canary_calls / (canary.height / hours))


@pytest.mark.parametrize("sequential", [False, True], ids=["fixed", "sequential"])
def test_a_metric_no_user_varies_on_is_decided_not_held_forever(sequential: bool) -> None:
    """A classifier route answers one token a call: its standard error is 0, and the
    metric stayed 'not decided yet', '0 more canary calls would decide it'."""
    calls = synth.calls(synth.aa(users=3000, seed=2))
    one_token = calls.with_columns(pl.lit(1, pl.Int64).alias("output_tokens"))
    config = JudgeConfig(sequential=sequential)
    tokens = next(
        m
        for m in judge(one_token, config=config).routes["chat"].metrics
        if m.name == "output_tokens"
    )
    assert (tokens.status, tokens.change, tokens.low, tokens.high) == ("pass", 0.0, 0.0, 0.0)
    two_tokens = one_token.with_columns(
        pl.when(pl.col("tier") == "canary").then(2).otherwise(1).alias("output_tokens")
    )
    doubled = judge(two_tokens, config=config).routes["chat"]
    tokens = next(m for m in doubled.metrics if m.name == "output_tokens")
    assert tokens.status == "fail" and tokens.change == pytest.approx(1.0)


def test_a_metric_held_only_by_holms_correction_says_so() -> None:
    """Its interval clears the margin, so 'not decided yet' read as a contradiction: the
    intervals are each metric's own, the decision is across the metrics."""
    scenario = synth.with_canary(
        synth.aa(users=1200, seed=501), error_rate=0.022, latency_median_ms=1010
    )
    route = judge(synth.calls(scenario)).routes["chat"]
    errors = next(m for m in route.metrics if m.name == "error_rate")
    assert errors.low is not None and errors.low > errors.margin  # beyond it on its own
    assert errors.status == "inconclusive" and route.verdict == Verdict.HOLD
    reason = next(r for r in route.reasons if r.startswith("error rate"))
    assert reason.endswith(
        f"worse beyond the margin on its own, not yet across the metrics "
        f"(Holm-adjusted p = {errors.p_harm_adjusted:.2g})"
    )


def test_positive_feedback_is_judged_on_each_routes_own_scale() -> None:
    """One threshold over all routes: stars 1-5 beside thumbs 0/1 put thumbs up (1)
    below it, so a 20-point fall of thumbs up read 0 % against 0 %, pass."""
    stars = synth.calls(replace(synth.aa(users=2000, seed=16), route="chat"))
    thumbs = synth.calls(replace(synth.aa(users=4000, seed=17), route="thumbs"))
    draw = np.random.default_rng(0).random(thumbs.height)
    up = np.where(thumbs["tier"] == "canary", draw < 0.6, draw < 0.8).astype(float)
    thumbs = thumbs.with_columns(
        pl.when(pl.col("feedback_score").is_not_null()).then(pl.Series(up)).alias("feedback_score")
    )
    together = judge(pl.concat([stars, thumbs])).routes["thumbs"]
    alone = judge(thumbs).routes["thumbs"]
    for route in (together, alone):
        positive = next(m for m in route.metrics if m.name == "positive_feedback")
        assert positive.production == pytest.approx(0.8, abs=0.03)
        assert positive.canary == pytest.approx(0.6, abs=0.03)
        assert positive.status == "fail"


def test_a_canary_whose_model_changed_in_the_window_holds() -> None:
    """The canary's pin moved to a model 14 % dearer after 40 % of the window: diluted by
    the old model's calls, cost read +8.8 % (margin 10 %), PROMOTE, under the new id."""
    calls = synth.calls(synth.aa(users=6000, seed=13))
    moved = calls.sort("start")["start"][int(calls.height * 0.4)]
    late = (pl.col("tier") == "canary") & (pl.col("start") > moved)
    new = "claude-opus-4-20250514"
    calls = calls.with_columns(
        *(
            pl.when(late).then(pl.lit(new)).otherwise(c).alias(c)
            for c in ("request_model", "response_model")
        ),
        pl.when(late).then(pl.col("cost_usd") * 1.14).otherwise("cost_usd").alias("cost_usd"),
    )
    route = judge(calls).routes["chat"]
    assert route.verdict == Verdict.HOLD
    reason = next(r for r in route.reasons if r.startswith("canary: its calls asked for several"))
    assert f"{new} 6" in reason and "%" in reason


def test_tiers_that_both_fail_most_calls_are_an_outage_not_a_promotion() -> None:
    """Every call of both tiers failing (a provider outage, an expired key) read as a
    canary no worse than production: PROMOTE, exit 0."""
    calls = synth.calls(synth.aa(users=3000, seed=2)).with_columns(
        pl.lit("error").alias("status"), pl.lit("RateLimitError").alias("error_type")
    )
    route = judge(calls).routes["chat"]
    assert route.verdict == Verdict.HOLD
    assert route.reasons[0].startswith(
        "both tiers fail most of their calls (production 100%, canary 100%): an outage"
    )
