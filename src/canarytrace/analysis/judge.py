"""The canary judge: PROMOTE, HOLD or ROLLBACK, with the statistics behind it.

What is tested, and how (every choice here is the documented default):

* **Unit of analysis: the user.** Routing randomises users, not calls, so calls of one
  user are correlated. The judge aggregates per user first (`metrics.user_aggregates`)
  and every interval is cluster-robust by user: ratio metrics use the delta method over
  per-user sums, proportions a Rao-Scott design-effect correction, latency quantiles
  a bootstrap of random clusters of users, the latency shift per-user geometric means.
* **Proportions** (error rate, regression rate, refusal rate, fallback rate,
  positive-feedback share): the two-sample score test for a difference of proportions
  with a non-zero null (Farrington-Manning / Miettinen-Nurminen,
  `statsmodels.stats.proportion.test_proportions_2indep`) and Newcomb's interval for
  the difference, on counts divided by the design effect (cluster variance / binomial
  variance, at least 1).
* **Means per call** (cost, output tokens, satisfaction): ratio of per-user sums with a
  delta-method variance, compared on the log scale by Welch's t with
  Welch-Satterthwaite degrees of freedom; relative margins are log(1 ± margin). Cost
  and output tokens are per call whose value is known (`metrics.COST_KNOWN`): a
  successful call without a cost (its model unpriced, or a stream without usage) is
  left out, not counted as free, and the reasons say which calls and why.
* **Latency**: the p95 by its log-ratio, from histograms with 0.5 % bins (their size
  does not grow with the input), with a Poisson bootstrap standard error over users in
  1,024 random clusters (`bootstrap_resamples`, default 200): each replicate of the
  share of calls at or below a tier's p95 (a ratio of per-user sums) is mapped back
  through the tier's quantile function (Woodruff's inversion);
  the typical latency by a Mann-Whitney test on per-user mean log-latency with the
  Hodges-Lehmann shift and Moses' distribution-free interval. A streamed answer's
  time to first token (what its user waits for) has its p95 judged the same way, over
  the calls that have one, on routes where some call does.
* **Refusals**: a model's safety classifiers decline requests with a successful
  response, so the error rate never sees them. The refusal rate counts the refusals
  the user saw (critical); the fallback rate those a server-side fallback model
  answered (not critical: the user got an answer, from another model than the one
  rolled out). Both are judged only where some call of the route was refused.
* **Direction and margin**: every metric knows which way is worse and a non-inferiority
  margin (absolute or relative). Two one-sided tests at level α = 1 - confidence:
  *harm* (H0: worse by at most the margin) and *non-inferiority* (H0: worse by at
  least the margin). Shown intervals are two-sided at 1 - 2α, which matches them.
* **Multiplicity**: Holm across the metrics' harm p-values. Non-inferiority needs every
  metric to pass (an intersection-union test), which is valid without adjustment.
* **Verdict**: ROLLBACK when a critical metric is worse beyond its margin (Holm-adjusted
  harm p < α); PROMOTE when every measured metric is shown non-inferior, no critical
  metric is measured on one tier only (a canary model without a price has no cost),
  no tier has `CONFOUNDED_SHARE` or more of its calls unpriced (cost would describe
  part of it), the split is sound and each tier has `min_users` users; otherwise HOLD,
  with a normal-theory power estimate of how many more canary calls (and hours at the
  current rate) would decide.
* **Sample-ratio mismatch**: chi-square of canary vs production users against the
  stage's share (`canarytrace.rollout_percent`, the widest each user saw; a user is
  in the canary if any of its calls was); p < `srm_alpha` (0.001) forces HOLD.
* **Confounders** (`confounders.py`): the comparison is of two pinned models, served
  alike. When the provider served the two tiers at different service tiers (OpenAI's
  flex or priority, Anthropic's priority; a share that differs by `CONFOUNDED_SHARE`,
  10 points, or more), or answered `CONFOUNDED_SHARE` or more of a tier's calls with
  another model than the pinned one (alias drift: a deployment upgraded under it),
  latency and cost compare something else than the models: HOLD, naming what differs,
  listing what would have failed. A canary's colder prompt cache (its share of input
  read from the cache `CONFOUNDED_SHARE` or more below production's) makes it dearer
  and slower whatever its model: the reasons say so where cost or latency did not
  pass, and a cost failure that warmth could explain holds instead of rolling back
  (`confounders.cache_warmth`).
* **Calls still running**: an OpenAI background call whose result has not been traced
  yet has no outcome, cost or latency. It is left out of every metric (counting it as
  a free success would flatter its tier) and the reasons say how many there are.
* **Sequential mode** (`sequential=True`): for a canary that is looked at again and
  again, fixed-sample tests inflate false rollbacks. Then every metric uses an
  always-valid mixture-SPRT confidence sequence on its normal approximation (Johari,
  Pekelis & Walsh 2017; Gaussian mixing variance τ² = margin²) with Bonferroni across
  metrics; any number of looks keeps the error rates.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import polars as pl
from scipy import special, stats

from canarytrace.analysis import confounders as C
from canarytrace.analysis import metrics as M
from canarytrace.analysis.estimates import (
    BOOTSTRAP_CLUSTERS,
    Estimate,
    Histograms,
    MetricSpec,
    Tier,
    holm,
    measured_on_one_tier,
    msprt_halfwidth,
    msprt_p,
    proportion_estimate,
    quantile_cuts,
    quantile_estimate,
    ratio_estimate,
    seen,
    shift_estimate,
    slowest_floor,
    t_pvalues,
    tier_histograms,
)
from canarytrace.analysis.formats import TIER_NAMES, describe, p_is


class Verdict(StrEnum):
    """What to do with the canary. Ordered from best to worst."""

    PROMOTE = "PROMOTE"
    HOLD = "HOLD"
    ROLLBACK = "ROLLBACK"


_SEVERITY = {Verdict.PROMOTE: 0, Verdict.HOLD: 1, Verdict.ROLLBACK: 2}


COST = "cost_per_call"
#: The metrics a cold prompt cache moves whatever the model (`confounders.cache_warmth`).
_CACHE_SENSITIVE = (COST, "latency_p95", "latency_typical", "ttft_p95")

DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "error_rate", "error rate", "proportion", True, 0.005, False, True, "errors", "calls"
    ),
    MetricSpec(
        "regression_rate",
        "regression rate",
        "proportion",
        True,
        0.02,
        False,
        True,
        "wrong",
        "outcomes",
    ),
    # Refusals the user saw: the requested model declined and no fallback model answered.
    MetricSpec(
        "refusal_rate",
        "refusal rate",
        "proportion",
        True,
        0.01,
        False,
        True,
        "refusals",
        "calls",
        only_if_seen=True,
    ),
    # Refusals a server-side fallback model answered: the user got an answer, but not
    # from the model being rolled out.
    MetricSpec(
        "fallback_rate",
        "fallback rate",
        "proportion",
        True,
        0.02,
        False,
        False,
        "fallbacks",
        "calls",
        only_if_seen=True,
    ),
    MetricSpec(
        "latency_p95", "latency p95", "quantile", True, 0.10, True, True, denominator="calls"
    ),
    MetricSpec("latency_typical", "latency (typical)", "shift", True, 0.10, True, False),
    # What a user of a streamed answer waits for; judged where the route streams.
    MetricSpec(
        "ttft_p95",
        "time to first token p95",
        "quantile",
        True,
        0.10,
        True,
        True,
        denominator="ttft_calls",
        column="ttft_ms",
        only_if_seen=True,
    ),
    # Per call whose cost is known: a successful call without a cost is not free.
    MetricSpec(COST, "cost per call", "ratio", True, 0.10, True, True, "cost", "cost_known"),
    MetricSpec(
        "output_tokens",
        "output tokens per call",
        "ratio",
        True,
        0.15,
        True,
        False,
        "output_tokens",
        "tokens_known",
    ),
    MetricSpec(
        "satisfaction", "satisfaction", "ratio", False, 0.03, True, True, "score_sum", "feedback"
    ),
    MetricSpec(
        "positive_feedback",
        "positive feedback",
        "proportion",
        False,
        0.05,
        False,
        False,
        "positive",
        "feedback",
    ),
)


@dataclass(frozen=True)
class JudgeConfig:
    """How strict the judge is. Override per route with a `judge:` mapping in models.yaml."""

    confidence: float = 0.95
    sequential: bool = False
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    min_users: int = 30
    srm_alpha: float = 0.001
    bootstrap_resamples: int = 200
    power: float = 0.8
    seed: int = 0

    @property
    def alpha(self) -> float:
        """The one-sided error rate of each decision."""
        return 1.0 - self.confidence

    @property
    def mode(self) -> str:
        """The name of the testing mode, as the report prints it."""
        if self.sequential:
            return "sequential (always-valid mixture-SPRT intervals, Bonferroni across metrics)"
        return "fixed-sample (one look; Holm across metrics)"

    def override(self, mapping: Mapping[str, Any], where: str = "judge") -> JudgeConfig:
        """A copy with the settings of a `judge:` mapping; unknown keys are a ValueError.

        `{confidence: 0.99, sequential: true, min_users: 50,
          metrics: {latency_p95: {margin: 0.2, relative: true, critical: false}}}`
        """
        simple = {
            "confidence",
            "sequential",
            "min_users",
            "srm_alpha",
            "bootstrap_resamples",
            "power",
            "seed",
        }
        changes: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in simple:
                changes[key] = _typed(value, getattr(self, key), f"{where}.{key}")
            elif key != "metrics":
                raise ValueError(
                    f"{where}.{key}: unknown judge setting; use one of "
                    f"{', '.join(sorted([*simple, 'metrics']))}"
                )
        specs = {m.name: m for m in self.metrics}
        for name, fields in (mapping.get("metrics") or {}).items():
            if name not in specs:
                raise ValueError(
                    f"{where}.metrics.{name}: unknown metric; use one of {', '.join(specs)}"
                )
            allowed = {"margin", "relative", "critical"}
            bad = set(fields) - allowed
            if bad:
                raise ValueError(
                    f"{where}.metrics.{name}.{sorted(bad)[0]}: unknown key; "
                    "set margin, relative or critical"
                )
            here = f"{where}.metrics.{name}"
            specs[name] = spec = replace(
                specs[name],
                **{k: _typed(v, getattr(specs[name], k), f"{here}.{k}") for k, v in fields.items()},
            )
            # A relative margin on a metric where lower is worse (satisfaction) is a
            # fall of that share: 100 % or more is no margin (log1p(-1) failed).
            ceiling = 1.0 if spec.relative and not spec.higher_is_worse else math.inf
            if not 0 < spec.margin < ceiling:
                limit = "above 0 and below 1" if ceiling == 1.0 else "above 0"
                raise ValueError(f"{here}.margin: {spec.margin} must be {limit}")
        conf = changes.get("confidence", self.confidence)
        if not 0.5 < conf < 1:
            raise ValueError(f"{where}.confidence: {conf} must be between 0.5 and 1 (e.g. 0.95)")
        return replace(self, metrics=tuple(specs.values()), **changes)


def _typed(value: Any, like: Any, where: str) -> Any:
    """`value` as a setting of the type of `like`, refused rather than converted: Python's
    `bool("false")` is True and `int(2.7)` is 2."""
    if isinstance(like, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(like, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    else:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok, kind = number and math.isfinite(value), "a number"
    if not ok:
        raise ValueError(f"{where}: {value!r} must be {kind}")
    return float(value) if isinstance(like, float) else value


@dataclass(frozen=True)
class MetricResult:
    """A metric on both tiers, the change with its interval, and what it means.

    `change` is canary minus production for absolute margins and canary / production - 1
    for relative ones; `low`/`high` bound it. `status`: "fail" (worse beyond the margin),
    "pass" (non-inferior), "inconclusive", or "no data"; with no data, `measured_only_on`
    names the tier that has it when the other does not (an unpriced canary model's calls
    have no cost), which holds a canary on a critical metric.
    """

    name: str
    label: str
    critical: bool
    higher_is_worse: bool
    margin: float
    relative: bool
    test: str
    production: float | None = None
    canary: float | None = None
    change: float | None = None
    low: float | None = None
    high: float | None = None
    p_harm: float | None = None
    p_harm_adjusted: float | None = None
    p_noninferior: float | None = None
    status: str = "no data"
    production_users: int = 0
    canary_users: int = 0
    more_canary_calls: float | None = None
    measured_only_on: str | None = None


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio-mismatch check of one route."""

    expected_share: float
    observed_share: float
    canary_users: int
    production_users: int
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class RouteVerdict:
    """The verdict of one route with everything the report shows."""

    route: str
    verdict: Verdict
    reasons: list[str]
    metrics: list[MetricResult]
    mode: str
    confidence: float
    production_model: str | None = None
    canary_model: str | None = None
    production_calls: int = 0
    canary_calls: int = 0
    # Per tier, background calls left out because no result was seen yet (metrics.ENDED).
    pending_calls: dict[str, int] = field(default_factory=dict)
    production_users: int = 0
    canary_users: int = 0
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    srm: SampleRatio | None = None
    more_canary_calls: float | None = None
    more_hours: float | None = None
    slowest_canary: list[dict[str, Any]] = field(default_factory=list)
    failing_canary: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Judgement:
    """Verdicts for every judged route; `verdict` is the worst of them."""

    routes: dict[str, RouteVerdict]
    config: JudgeConfig

    @property
    def verdict(self) -> Verdict:
        """ROLLBACK if any route rolls back, else HOLD if any holds, else PROMOTE."""
        if not self.routes:
            return Verdict.HOLD
        return max((r.verdict for r in self.routes.values()), key=_SEVERITY.__getitem__)

    def to_dict(self) -> Any:
        """Plain JSON-ready data (datetimes as ISO strings)."""

        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            if isinstance(value, dt.datetime):
                return value.isoformat()
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        return clean(
            {
                "verdict": str(self.verdict),
                "mode": self.config.mode,
                "confidence": self.config.confidence,
                "routes": {name: asdict(r) for name, r in self.routes.items()},
            }
        )


def _sums_read(config: JudgeConfig) -> set[str]:
    """The per-user sums (`metrics.user_sums`) that the configured metrics divide."""
    shift = any(spec.kind == "shift" for spec in config.metrics)
    names = {"log_latency_mean"} if shift else set()
    for spec in config.metrics:
        names.update(n for n in (spec.numerator, spec.denominator) if n and n != "calls")
    return names


# --- the judge ------------------------------------------------------------------------


def _test_name(spec: MetricSpec, sequential: bool) -> str:
    if sequential:
        return "always-valid mSPRT (normal approx.)"
    return {
        "proportion": "score test, Newcomb CI (Rao-Scott by user)",
        "ratio": "Welch t, delta method by user",
        "quantile": f"p{round(spec.quantile * 100)} log-ratio, user bootstrap (Woodruff)",
        "shift": "Mann-Whitney on user geometric means, Hodges-Lehmann",
    }[spec.kind]


def _change(spec: MetricSpec, value: float | None) -> float | None:
    if value is None:
        return None
    return math.expm1(value) if spec.relative else value


_REFUSAL_METRICS = ("refusal_rate", "fallback_rate")


def _refusal_categories(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """What the tiers' refusals were about (`metrics.refusal_categories`), as a reason:
    where a refusal metric did not pass, the first question is what was refused."""
    if not counts:
        return []
    tiers = [
        f"{tier} " + ", ".join(f"{name} {n:,}" for name, n in by_category.items())
        for tier, by_category in sorted(counts.items(), key=lambda item: item[0] != "canary")
    ]
    return ["refused calls by the category their refusal named: " + "; ".join(tiers)]


def _srm(users: pl.DataFrame, alpha: float) -> SampleRatio | None:
    """Chi-square of the users in the canary against the stage's share.

    A user counts in the canary when any of its calls went there, against the widest
    stage it saw: stages only add users to the canary, so at that stage it was in
    the canary with that stage's probability (a rollback moves nobody out of it).
    `users` has a row per (tier, user); only the few users with a row in each tier
    are grouped (grouping them all costs ~300 MB at two million users). The calls of no
    user (`metrics.NO_USER_STAGE`) are left out: routing sends them to production
    whatever the stage, and each counted as a production user of its own.
    """
    rows = users.select("user", "tier", "rollout_percent").filter(
        pl.col("rollout_percent").ne_missing(M.NO_USER_STAGE)
    )
    in_both = rows["user"].is_duplicated()
    n_users = rows.height - int(in_both.sum()) // 2
    widest_stage = pl.concat(
        [
            rows.filter(~in_both)["rollout_percent"],
            rows.filter(in_both)
            .group_by("user")
            .agg(pl.col("rollout_percent").max())["rollout_percent"],
        ]
    ).drop_nulls()
    if n_users < 20 or widest_stage.len() == 0:
        return None
    expected = float(widest_stage.to_numpy().mean()) / 100.0
    if not 0.0 < expected < 1.0:
        return None
    n_c = int((rows["tier"] == "canary").sum())
    n_p = n_users - n_c
    total = n_c + n_p
    p_value = float(stats.chisquare([n_c, n_p], [total * expected, total * (1 - expected)]).pvalue)
    return SampleRatio(expected, n_c / total, n_c, n_p, p_value, p_value < alpha)


def _undecided(r: MetricResult, alpha: float) -> str:
    """Why a metric is not decided; when its interval alone clears the margin, that the
    correction across metrics (Holm) is what holds it, or the reason contradicts its own
    numbers."""
    adjusted = r.p_harm_adjusted
    if r.p_harm is not None and adjusted is not None and r.p_harm < alpha <= adjusted:
        return (
            f"{describe(r)}: worse beyond the margin on its own, not yet across the metrics "
            f"(Holm-adjusted p {p_is(adjusted)})"
        )
    return f"{describe(r)}: not decided yet"


def _unmeasured(r: MetricResult) -> str:
    """Why a metric has no result: no data on either tier, or on one only. A critical one
    measured on one tier alone holds the canary: a canary whose model has no price must
    not be promoted on the strength of its other metrics."""
    on = r.measured_only_on
    if on is None:
        return f"{r.label}: no data on either tier, not judged"
    other = "canary" if on == "production" else "production"
    text = f"{r.label}: measured on {TIER_NAMES[on]} only, not on {TIER_NAMES[other]}"
    if r.critical:
        return text + "; a critical metric must be compared before a promotion"
    return text + ", not judged"


def _span_of(hours: float) -> str:
    """A wait in the unit a person reads: minutes under two hours, days over two days."""
    if hours < 2:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _canary_traces(
    lazy: pl.LazyFrame, route: str, histograms: Histograms
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The route's five slowest and five latest failing canary calls, for the report.

    Failing: an error, an outcome marked wrong, or a refusal (a successful call whose
    user got no answer from the model rolled out). Only those ten rows are kept
    (streaming top-k); the slowest are looked for above the latency the histogram says
    they reach.
    """
    canary_calls = M.tier_calls(lazy, route, "canary")
    cols = [
        "trace_id",
        "span_id",
        "start",
        "duration_ms",
        "status",
        "error_type",
        "outcome_kind",
        "refused",
        "refusal_category",
    ]
    failed = (
        (pl.col("status") == "error")
        | (pl.col("outcome_ok") == False)  # noqa: E712
        | pl.col("refused")
    )
    # `is_between`, not `>=`: polars skips Parquet row groups by their statistics for a
    # float range but not for a float `>=` (its NaN rule), so only the row groups that
    # hold a call this slow are read (33 of 84 on 10M calls: 0.21 -> 0.11 CPU-s).
    at_least_floor = pl.col("duration_ms").is_between(slowest_floor(histograms, 5), math.inf)
    slowest = (
        canary_calls.filter(at_least_floor)
        .select(cols)
        .top_k(5, by="duration_ms")
        .sort("duration_ms", descending=True)
    )
    failing = (
        canary_calls.filter(failed).select(cols).top_k(5, by="start").sort("start", descending=True)
    )
    return (
        slowest.collect(engine="streaming").to_dicts(),
        failing.collect(engine="streaming").to_dicts(),
    )


def _histograms(lazy: pl.LazyFrame, route: str, config: JudgeConfig) -> dict[str, Histograms]:
    """Per column a quantile metric reads, the tiers' histograms of it (the calls'
    duration always: the slowest calls are found with it). Another column only where a
    call of the route has it: a route that never streams has no time to first token."""
    columns = {"duration_ms"} | {s.column for s in config.metrics if s.kind == "quantile"}
    return {
        column: tier_histograms(
            M.latency_histograms(lazy, route, column).collect(engine="streaming")
        )
        for column in sorted(columns)
        if column == "duration_ms" or M.has_values(lazy, route, column)
    }


def _metric_results(
    config: JudgeConfig,
    prod: Tier,
    can: Tier,
    histograms: Mapping[str, Histograms],
    thin: bool,
) -> tuple[list[MetricResult], list[tuple[float, str]]]:
    """Every configured metric compared on the tiers' per-user columns: its estimate,
    harm and non-inferiority p-values (Holm-adjusted, or always-valid in sequential
    mode), interval and status. Also, per undecided metric, how many more canary calls
    would decide it, with its label. A `thin` route passes no metric."""
    rng = np.random.default_rng(config.seed)
    alpha = config.alpha
    n_prod, n_can = len(prod["calls"]), len(can["calls"])
    calls_c = int(can["calls"].sum())
    judged = [spec for spec in config.metrics if seen(spec, prod, can)]
    estimates: dict[str, Estimate | None] = {}
    for spec in judged:
        if spec.kind == "proportion":
            estimates[spec.name] = proportion_estimate(spec, prod, can, alpha)
        elif spec.kind == "ratio":
            estimates[spec.name] = ratio_estimate(spec, prod, can)
        elif spec.kind == "quantile":
            estimates[spec.name] = quantile_estimate(
                spec, histograms.get(spec.column, {}), prod, can, config.bootstrap_resamples, rng
            )
        else:
            estimates[spec.name] = shift_estimate(spec, prod, can, alpha, rng)

    measured = [s for s in judged if estimates[s.name] is not None]
    m = max(1, len(measured))
    z_a = stats.norm.ppf(1 - alpha)
    p_harm: dict[str, float] = {}
    p_ni: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    for spec in measured:
        est = estimates[spec.name]
        assert est is not None
        if est.se == 0:  # no user varies: the effect is exact, in either mode
            p_harm[spec.name], p_ni[spec.name] = t_pvalues(est)
            bounds[spec.name] = (est.theta, est.theta)
        elif config.sequential:
            tau = abs(est.bad) if est.bad else 0.1
            av = msprt_p(est.theta, est.bad, est.se, tau) if est.se > 0 else 1.0
            harm_side = est.worse_sign * (est.theta - est.bad) > 0
            p_harm[spec.name] = av if harm_side else 1.0
            p_ni[spec.name] = 1.0 if harm_side else av
            half = msprt_halfwidth(est.se, tau, alpha) if est.se > 0 else math.inf
            bounds[spec.name] = (est.theta - half, est.theta + half)
        else:
            if est.p_harm is None or est.p_noninferior is None:
                ph, pn = t_pvalues(est)
            else:  # p can be exactly 0.0 with millions of calls: never `or` it away
                ph, pn = est.p_harm, est.p_noninferior
            p_harm[spec.name], p_ni[spec.name] = ph, pn
            if est.low is not None and est.high is not None:
                bounds[spec.name] = (est.low, est.high)
            else:
                q = float(special.stdtrit(est.df, 1 - alpha)) if math.isfinite(est.df) else z_a
                bounds[spec.name] = (est.theta - q * est.se, est.theta + q * est.se)
    names = [s.name for s in measured]
    if config.sequential:
        adjusted = {n: min(1.0, p_harm[n] * m) for n in names}
    elif names:
        adjusted = dict(zip(names, holm([p_harm[n] for n in names]), strict=True))
    else:
        adjusted = {}

    results: list[MetricResult] = []
    needed: list[tuple[float, str]] = []
    for spec in judged:
        est = estimates[spec.name]
        base = MetricResult(
            spec.name,
            spec.label,
            spec.critical,
            spec.higher_is_worse,
            spec.margin,
            spec.relative,
            _test_name(spec, config.sequential),
            production_users=n_prod,
            canary_users=n_can,
        )
        if est is None:  # on one tier only, maybe: nothing to compare either way
            results.append(replace(base, measured_only_on=measured_on_one_tier(spec, prod, can)))
            continue
        low, high = bounds[spec.name]
        status = "inconclusive"
        if adjusted[spec.name] < alpha:
            status = "fail"
        elif p_ni[spec.name] < alpha and not thin:
            status = "pass"
        more = None
        if status == "inconclusive":
            gap = abs(est.theta - est.bad)
            factor = ((z_a + stats.norm.ppf(config.power)) * est.se / gap) ** 2 if gap else math.inf
            if thin:
                factor = max(factor, config.min_users / max(1, min(n_prod, n_can)))
            more = max(0.0, factor - 1.0) * calls_c if math.isfinite(factor) else math.inf
            needed.append((more, spec.label))
        results.append(
            replace(
                base,
                production=est.production,
                canary=est.canary,
                change=_change(spec, est.theta),
                low=_change(spec, low),
                high=_change(spec, high),
                p_harm=p_harm[spec.name],
                p_harm_adjusted=adjusted[spec.name],
                p_noninferior=p_ni[spec.name],
                status=status,
                more_canary_calls=more,
            )
        )
    return results, needed


def _judge_route(
    route: str,
    lazy: pl.LazyFrame,
    config: JudgeConfig,
    threshold: float | None,
    traces: Executor,
) -> RouteVerdict:
    """The verdict for one route.

    `traces` runs the query for the canary's slowest and failing calls.
    """
    pending_calls = M.pending_calls(lazy, route)
    if pending_calls:  # no outcome, cost or latency yet: out of every number below
        lazy = lazy.filter(M.ENDED)
    sums = _sums_read(config)
    # Each query on the streaming engine: the source is scanned in batches and reduced to
    # per-bin and per-user state. One after the other, not in one collect_all: run
    # together, their states are held at once (measured: 10M calls of 200k users peak
    # at 1.7 GB together, 0.6 GB in turn). The histograms come first: the per-user
    # query counts calls below the quantiles they give.
    histograms = _histograms(lazy, route, config)
    cuts = quantile_cuts(config.metrics, histograms)
    facts = M.route_facts(lazy, route)
    users = M.user_aggregates(
        lazy,
        route,
        threshold,
        sums,
        latency_cuts=cuts,
        every_call_has_a_user=facts.calls_without_user == 0,
    ).collect(engine="streaming")
    # The trace queries run in a thread beside the statistics below, which are Python
    # and numpy on one core (polars releases the GIL while it scans).
    canary_traces = traces.submit(_canary_traces, lazy, route, histograms["duration_ms"])
    parts = {
        tier: {
            **{
                c: frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                for c in ("calls", *sums, *cuts)
            },
            "cluster": (frame["user"] % BOOTSTRAP_CLUSTERS).cast(pl.Int64).to_numpy(),
        }
        for tier, frame in (
            ("production", users.filter(pl.col("tier") == "production")),
            ("canary", users.filter(pl.col("tier") == "canary")),
        )
    }
    prod, can = parts["production"], parts["canary"]
    n_prod, n_can = len(prod["calls"]), len(can["calls"])
    calls_p, calls_c = int(prod["calls"].sum()), int(can["calls"].sum())
    window_start, window_end = facts.first, facts.last
    hours = 0.0
    if facts.canary_first is not None and facts.canary_last is not None:
        hours = (facts.canary_last - facts.canary_first).total_seconds() / 3600
    canary_rate = calls_c / hours if hours > 0 else None

    thin = n_prod < config.min_users or n_can < config.min_users
    results, needed = _metric_results(config, prod, can, histograms, thin)

    srm = _srm(users, config.srm_alpha)
    mixes = {tier: M.tier_models(lazy, route, tier) for tier in ("production", "canary")}
    models = {tier: next(iter(mix), None) for tier, mix in mixes.items()}
    confounders = C.mixed_models(mixes) + C.drifted(M.drift(lazy, route), models)
    mismatch = C.service_tier_mismatch(M.service_tier_shares(lazy, route))
    if mismatch is not None:
        confounders.append(mismatch)
    outage = C.outage(next((r for r in results if r.name == "error_rate"), None))
    if outage is not None:
        confounders.append(outage)
    cost = next((r for r in results if r.name == COST), None)
    # Calls without a cost on a route whose calls have none (its models self-hosted, say)
    # need no more words than "no data".
    cost_measured = cost is not None and (cost.status != "no data" or cost.measured_only_on)
    without_cost = C.calls_without_cost(lazy, route, parts) if cost_measured else {}
    tier_calls = {"production": calls_p, "canary": calls_c}
    partly_priced = (
        cost is not None
        and cost.critical
        and cost.status != "no data"
        and C.partly_unpriced(without_cost, tier_calls)
    )
    reasons: list[str] = []
    failed_critical = [r for r in results if r.status == "fail" and r.critical]
    failed_other = [r for r in results if r.status == "fail" and not r.critical]
    undecided = [r for r in results if r.status == "inconclusive"]
    sensitive = [
        r for r in undecided + failed_critical + failed_other if r.name in _CACHE_SENSITIVE
    ]
    cost_failure = cost if cost is not None and cost.status == "fail" else None
    warmth = C.cache_warmth(cost_failure, M.cache_read_shares(lazy, route)) if sensitive else None
    if warmth and warmth[1]:  # the cost's failure could be a cold cache: not a rollback
        failed_critical = [r for r in failed_critical if r is not cost_failure]
        failed_other = [r for r in failed_other if r is not cost_failure]
    if calls_c == 0:
        verdict = Verdict.HOLD
        reasons.append(f"no canary calls on route {route!r} in the window")
    elif srm is not None and srm.mismatch:
        verdict = Verdict.HOLD
        reasons.append(
            f"sample ratio mismatch: {srm.observed_share:.1%} of users are in the canary "
            f"but the stage is {srm.expected_share:.0%} (chi-square p {p_is(srm.p_value)}); "
            "routing or tracing is broken, so no comparison can be trusted until it is fixed"
        )
        reasons += [f"(would have failed) {describe(r)}" for r in failed_critical]
    elif confounders:
        verdict = Verdict.HOLD
        reasons += confounders
        reasons += [f"(would have failed) {describe(r)}" for r in failed_critical]
    elif failed_critical:
        verdict = Verdict.ROLLBACK
        reasons += [
            f"{describe(r)}: significantly worse beyond the margin "
            f"(adjusted p {p_is(r.p_harm_adjusted)})"
            for r in failed_critical
        ]
    else:
        others = [r for r in results if r.status not in ("pass", "no data")]
        unmeasured_critical = [r for r in results if r.critical and r.measured_only_on]
        passed = any(r.status == "pass" for r in results)
        if not others and not thin and not unmeasured_critical and not partly_priced and passed:
            verdict = Verdict.PROMOTE
            reasons.append(
                f"every measured metric is within its margin at {config.confidence:.0%} "
                f"confidence ({n_can} canary users, {calls_c} canary calls)"
            )
        else:
            verdict = Verdict.HOLD
            if thin:
                reasons.append(
                    f"too little data: {n_can} canary and {n_prod} production users "
                    f"(at least {config.min_users} each are needed)"
                )
            reasons += [
                f"{describe(r)}: worse beyond the margin (not critical, needs a look)"
                for r in failed_other
            ]
            reasons += [_undecided(r, 1 - config.confidence) for r in undecided]
    for r in results:
        if r.status == "no data":
            reasons.append(_unmeasured(r))
    if without_cost:
        reasons.append(C.without_cost_reason(without_cost, tier_calls, partly_priced))
    if warmth:
        reasons.append(warmth[0])
    if pending_calls:
        counts = ", ".join(f"{tier} {n}" for tier, n in pending_calls.items())
        reasons.append(
            f"calls still running in the background, not judged until their results are "
            f"traced: {counts}"
        )
    if any(r.name in _REFUSAL_METRICS and r.status in ("fail", "inconclusive") for r in results):
        reasons += _refusal_categories(M.refusal_categories(lazy, route))
    more_calls = max((n for n, _ in needed), default=None) if verdict == Verdict.HOLD else None
    more_hours = None
    if more_calls is not None:
        if math.isfinite(more_calls) and canary_rate:
            more_hours = more_calls / canary_rate
            reasons.append(
                f"about {more_calls:,.0f} more canary calls would decide it "
                f"(~{_span_of(more_hours)} at the current {canary_rate:,.0f} canary calls/h)"
            )
        elif not math.isfinite(more_calls):
            reasons.append(
                "an estimate sits exactly on its margin: more data alone may not decide it"
            )

    slowest, failing = canary_traces.result()
    return RouteVerdict(
        route=route,
        verdict=verdict,
        reasons=reasons,
        metrics=results,
        mode=config.mode,
        confidence=config.confidence,
        production_model=models["production"],
        canary_model=models["canary"],
        production_calls=calls_p,
        canary_calls=calls_c,
        pending_calls=pending_calls,
        production_users=n_prod,
        canary_users=n_can,
        window_start=window_start,
        window_end=window_end,
        srm=srm,
        more_canary_calls=more_calls,
        more_hours=more_hours,
        slowest_canary=slowest,
        failing_canary=failing,
    )


def judge(
    calls: pl.DataFrame | pl.LazyFrame,
    *,
    route: str | None = None,
    config: JudgeConfig | None = None,
    route_configs: Mapping[str, JudgeConfig] | None = None,
) -> Judgement:
    """Judge the canary of every route in `calls` (or only `route`).

    **Parameters**

    * `calls`: the frame of calls (`load(...).calls`, or the LazyFrame of `scan`).
    * `route`: *(optional)* judge only this route.
    * `config`: *(optional)* settings for every route; default `JudgeConfig()`.
    * `route_configs`: *(optional)* per-route settings (from models.yaml) that win.

    **Returns:** a `Judgement`; `.verdict` is the worst route's, `.routes[name].verdict`
    each route's.
    """
    config = config or JudgeConfig()
    lazy = calls.lazy()
    routes = M.judged_routes(lazy) if route is None else [route]
    with ThreadPoolExecutor(max_workers=1) as traces:
        verdicts = {
            r: _judge_route(
                r,
                lazy,
                (route_configs or {}).get(r, config),
                M.positive_threshold(lazy, r),
                traces,
            )
            for r in routes
        }
    return Judgement(routes=verdicts, config=config)
