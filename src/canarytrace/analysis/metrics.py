"""Per-tier numbers from the frame of calls: what a person reads before the verdict.

Pure polars over the frame of calls (a DataFrame or a LazyFrame, so Parquet can be
aggregated without materialising every call). `summary` gives one row per group
(route, tier, and optionally model id); `errors_by_type` splits the errors;
`over_time` buckets the same numbers by time. `user_aggregates` and
`latency_histograms` are what the judge reads: small frames (per user, the unit of
randomisation; per latency bin) rather than per call, lazy, so that the streaming
engine reduces the source to them without holding calls; `judged_routes`,
`route_facts` and `tier_models` are the few other facts it needs, each read by a query
that costs a fraction of a grouped one.

Background calls still pending (`ENDED`) are counted apart in `summary`'s `pending`,
not in its calls, users, error rate or cost (they have no latency or tokens yet). Cost
per call is the mean over the calls whose cost is known (`COST_KNOWN`);
`calls_without_cost` counts the successful calls without one.

Satisfaction: `satisfaction` is the mean feedback score; `positive_share` the share of
scores at or above `positive_threshold`, by default three quarters of the way up the
observed score range (4 on a 1-5 scale, 1 for thumbs 0/1). Regression rate is the
share of outcomes marked wrong (`outcome_ok == False`) among calls with an outcome.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import polars as pl

Frame = pl.DataFrame | pl.LazyFrame

#: The calls whose end is known: all but background calls still "pending" (schema.py).
#: A pending call is neither a success nor a failure and has no cost or latency yet, so
#: the numbers per call leave it out rather than count it as a free success.
ENDED = pl.col("status").ne_missing("pending")

#: The calls whose cost is known: those with one, and the failed ones (a failed request
#: is not billed). A successful call without a cost was answered by a model genai-prices
#: did not price when it was made, or reported no token usage (an OpenAI stream without
#: `include_usage`): counted as free, it would make its tier look cheaper than it is.
COST_KNOWN = pl.col("cost_usd").is_not_null() | (pl.col("status") == "error")
#: Likewise the calls whose output tokens are known.
TOKENS_KNOWN = pl.col("output_tokens").is_not_null() | (pl.col("status") == "error")

# Latency histograms: log-spaced bins 0.5 % wide, so a quantile read from them is
# within ±0.25 % of the exact one, far below any margin worth judging.
LOG_BIN_WIDTH = 0.005
_MIN_MS = 0.01
_MAX_MS = 1e7


def positive_threshold(calls: Frame, route: str | None = None) -> float | None:
    """The score at or above which feedback counts as positive (see module docstring),
    over one route's calls when given: routes may score on different scales (thumbs 0/1
    beside stars 1-5)."""
    fb = pl.col("feedback_score")
    lazy = calls.lazy() if route is None else calls.lazy().filter(pl.col("route") == route)
    scores = lazy.select(fb.min().alias("lo"), fb.max().alias("hi"))
    lo, hi = scores.collect(engine="streaming").row(0)
    if lo is None or hi is None:
        return None
    return float(lo + 0.75 * (hi - lo)) if hi > lo else float(hi)


#: The share of the input tokens read from the provider's prompt cache (the input count
#: includes them).
_CACHE_READ_SHARE = pl.col("cache_read_tokens").fill_null(0).sum() / pl.col("input_tokens").sum()


def _aggregations(threshold: float | None) -> list[pl.Expr]:
    error = pl.col("status") == "error"
    fb = pl.col("feedback_score")
    positive = (fb >= threshold) if threshold is not None else pl.lit(None, pl.Boolean)
    cost_per_call = pl.col("cost_usd").fill_null(0).filter(COST_KNOWN).mean()
    return [
        ENDED.sum().alias("calls"),
        (~ENDED).sum().alias("pending"),
        pl.col("user_hash").filter(ENDED).n_unique().alias("users"),
        error.sum().alias("errors"),
        error.filter(ENDED).mean().alias("error_rate"),
        pl.col("duration_ms").quantile(0.5, "linear").alias("latency_p50_ms"),
        pl.col("duration_ms").quantile(0.95, "linear").alias("latency_p95_ms"),
        pl.col("duration_ms").quantile(0.99, "linear").alias("latency_p99_ms"),
        pl.col("ttft_ms").quantile(0.5, "linear").alias("ttft_p50_ms"),
        pl.col("ttft_ms").quantile(0.95, "linear").alias("ttft_p95_ms"),
        pl.col("input_tokens").mean().alias("input_tokens_per_call"),
        pl.col("output_tokens").mean().alias("output_tokens_per_call"),
        _CACHE_READ_SHARE.alias("cache_read_share"),
        cost_per_call.alias("cost_per_call_usd"),
        (ENDED & ~COST_KNOWN).sum().alias("calls_without_cost"),
        (cost_per_call * 1000).alias("cost_per_1k_calls_usd"),
        fb.count().alias("feedback"),
        fb.mean().alias("satisfaction"),
        positive.filter(fb.is_not_null()).mean().alias("positive_share"),
        pl.col("outcome_ok").count().alias("outcomes"),
        (~pl.col("outcome_ok")).mean().alias("regression_rate"),
    ]


def summary(calls: Frame, by: Sequence[str] = ("route", "tier")) -> pl.DataFrame:
    """One row per group with every metric of the module docstring, sorted by group."""
    threshold = positive_threshold(calls)
    return calls.lazy().group_by(list(by)).agg(_aggregations(threshold)).sort(list(by)).collect()


def errors_by_type(calls: Frame, by: Sequence[str] = ("route", "tier")) -> pl.DataFrame:
    """Error counts per group and `error_type`, with their share of the group's calls."""
    lazy = calls.lazy()
    totals = lazy.group_by(list(by)).agg(ENDED.sum().alias("group_calls"))
    return (
        lazy.filter(pl.col("status") == "error")
        .group_by([*by, "error_type"])
        .agg(pl.len().alias("errors"))
        .join(totals, on=list(by))
        .with_columns((pl.col("errors") / pl.col("group_calls")).alias("rate"))
        .drop("group_calls")
        .sort([*by, "errors"], descending=[False] * len(by) + [True])
        .collect()
    )


def over_time(
    calls: Frame, every: str = "1h", by: Sequence[str] = ("route", "tier")
) -> pl.DataFrame:
    """`summary` per time bucket of length `every` (a polars duration such as '15m', '1h')."""
    threshold = positive_threshold(calls)
    return (
        calls.lazy()
        .sort("start")
        .group_by_dynamic("start", every=every, group_by=list(by))
        .agg(_aggregations(threshold))
        .sort([*by, "start"])
        .collect()
    )


def _user_key(every_call_has_a_user: bool = False) -> pl.Expr:
    """A 64-bit hash of the user (or of the call's start for calls without one).

    Grouping on an integer instead of the 16-character hash string halves the memory
    of the per-user state; a collision among two million users has odds of ~1e-7
    (~2e-7 once `user_aggregates` gives the lowest bit to the tier).
    A call without a user is its own cluster: keyed by its start time (the span ids
    would cost a string column; two user-less calls starting in the same microsecond
    share a cluster, harmlessly). When `every_call_has_a_user` (`route_facts`
    says so), the key is the user's hash alone: neither the start times nor the
    choice per call need reading (about 7 % of the per-user query on 10M calls).
    """
    user = pl.col("user_hash")
    if every_call_has_a_user:
        return user.hash(seed=0)
    return pl.when(user.is_null()).then(pl.col("start").hash(seed=1)).otherwise(user.hash(seed=0))


JUDGED_TIERS = pl.Enum(["production", "canary"])


def tier_calls(calls: Frame, route: str, tier: str) -> pl.LazyFrame:
    """The route's calls in one tier."""
    return calls.lazy().filter((pl.col("route") == route) & (pl.col("tier") == tier))


def _judged(calls: Frame, route: str) -> pl.LazyFrame:
    """The route's production and canary calls. The judge leaves out pending calls
    before it asks (`pending_calls`)."""
    in_route = (pl.col("route") == route) & pl.col("tier").is_in(["production", "canary"])
    return calls.lazy().filter(in_route)


def pending_calls(calls: Frame, route: str) -> dict[str, int]:
    """Per judged tier, its background calls still pending (`ENDED`); tiers without one
    are left out. A filter on a literal, which skips Parquet's dictionary-encoded pages
    without the value: the judge filters the pending calls out only where there are
    some, since that filter in its every query costs ~15 % of its time."""
    waiting = _judged(calls, route).filter(pl.col("status") == "pending")
    counts = waiting.group_by("tier").agg(pl.len()).sort("tier")
    return dict(counts.collect(engine="streaming").iter_rows())


class RouteFacts(NamedTuple):
    """What the judge needs of a route besides its per-user and per-bin numbers."""

    first: dt.datetime | None  # start of the route's first judged call
    last: dt.datetime | None  # start of its last one
    calls_without_user: int  # judged calls that carry no user hash
    canary_first: dt.datetime | None  # the canary's first call: its rate is over its own
    canary_last: dt.datetime | None  # time, not a window production's traces made longer


def route_facts(calls: Frame, route: str) -> RouteFacts:
    """The route's window and user-less calls, in one query without groups (which costs
    a fraction of a grouped one: ~0.18 CPU-s on 10M calls, against ~0.45 for the
    per-(route, tier, model) overview it replaces)."""
    start = pl.col("start")
    canary = start.filter(pl.col("tier") == "canary")
    query = _judged(calls, route).select(
        start.min().alias("first"),
        start.max().alias("last"),
        pl.col("user_hash").null_count().alias("calls_without_user"),
        canary.min().alias("canary_first"),
        canary.max().alias("canary_last"),
    )
    first, last, without_user, canary_first, canary_last = query.collect(engine="streaming").row(0)
    return RouteFacts(first, last, int(without_user), canary_first, canary_last)


def has_values(calls: Frame, route: str, column: str) -> bool:
    """Whether some judged call of the route has a value in `column` (a stream's time
    to first token): one query, which stops at the first such call."""
    found = _judged(calls, route).filter(pl.col(column).is_not_null()).select(column).head(1)
    return found.collect(engine="streaming").height > 0


def judged_routes(calls: Frame) -> list[str]:
    """The routes worth judging, sorted: those with canary calls; when no route has any,
    those with production calls (judged only to say HOLD, with the reason).

    A filter on the tier before anything is read: Parquet's dictionary-encoded tier
    column lets the scan skip the other calls' routes (~0.03 CPU-s on 10M calls).
    """
    lazy = calls.lazy()
    for tiers in (["canary"], ["production"]):
        query = lazy.filter(pl.col("tier").is_in(tiers)).select(
            pl.col("route").drop_nulls().unique()
        )
        routes = query.collect(engine="streaming")["route"]
        if routes.len():
            return sorted(routes.to_list())
    return []


def _sole_value(rows: pl.LazyFrame, column: str) -> tuple[Any, bool]:
    """The first non-null value of `column` in `rows` (None when there is none), and
    whether another value is there too.

    Usually a column holds one value in the window, which two cheap queries show: any
    row's value, then whether a row has another (a filter on a literal, which skips
    Parquet's dictionary-encoded pages before reading). Only then need values be counted.
    """
    value = pl.col(column)
    one = rows.filter(value.is_not_null()).select(value).head(1).collect(engine="streaming")
    if one.height == 0:
        return None, False
    others = rows.filter(value != one.item()).select(pl.len()).collect(engine="streaming")
    return one.item(), others.item() > 0


def tier_models(calls: Frame, route: str, tier: str) -> dict[str, float]:
    """The request models of the tier's calls with their shares, most calls first (ties:
    by name); {} when no call names one. Counted only when the tier has several
    (`_sole_value`): a canary whose pin changed mid-window mixes two models."""
    in_tier = tier_calls(calls, route, tier)
    model, several = _sole_value(in_tier, "request_model")
    if model is None:
        return {}
    if not several:
        return {str(model): 1.0}
    counts = (
        in_tier.filter(pl.col("request_model").is_not_null())
        .group_by("request_model")
        .agg(pl.len().alias("calls"))
        .sort("calls", "request_model", descending=[True, False])
        .collect(engine="streaming")
    )
    total = int(counts["calls"].sum())
    return {str(m): n / total for m, n in counts.iter_rows()}


def service_tier_shares(calls: Frame, route: str) -> dict[str, dict[str, float]]:
    """For each judged tier, the share of its calls that each provider service tier
    served (`{"production": {"default": 1.0}, "canary": {"flex": 0.8, ...}}`), counting
    the calls that name one; empty when the route's calls name at most one, which costs
    only `_sole_value`'s two cheap queries.
    """
    judged = _judged(calls, route)
    _, several = _sole_value(judged, "service_tier")
    if not several:
        return {}
    counts = (
        judged.filter(pl.col("service_tier").is_not_null())
        .group_by("tier", "service_tier")
        .agg(pl.len().alias("calls"))
    )
    shares = counts.with_columns(pl.col("calls") / pl.col("calls").sum().over("tier"))
    result: dict[str, dict[str, float]] = {}
    for judged_tier, served, share in shares.collect(engine="streaming").iter_rows():
        result.setdefault(judged_tier, {})[served] = share
    return result


def cache_read_shares(calls: Frame, route: str) -> dict[str, float]:
    """For each judged tier, the share of its input tokens read from the provider's
    prompt cache (`{"production": 0.62, "canary": 0.18}`); tiers without input tokens
    are left out."""
    shares = (
        _judged(calls, route)
        .filter(pl.col("input_tokens") > 0)
        .group_by("tier")
        .agg(_CACHE_READ_SHARE.alias("share"))
    )
    return dict(shares.collect(engine="streaming").iter_rows())


def refusal_categories(calls: Frame, route: str) -> dict[str, dict[str, int]]:
    """For each judged tier, its refused calls by the category their refusal named, most
    first (`{"canary": {"cyber": 12, "bio": 3}}`); tiers without one are left out."""
    counts = (
        _judged(calls, route)
        .filter(pl.col("refused") & pl.col("refusal_category").is_not_null())
        .group_by("tier", "refusal_category")
        .agg(pl.len().alias("calls"))
        .sort("calls", "refusal_category", descending=[True, False])
    )
    result: dict[str, dict[str, int]] = {}
    for tier, category, n in counts.collect(engine="streaming").iter_rows():
        result.setdefault(tier, {})[category] = n
    return result


class WithoutCost(NamedTuple):
    """A judged tier's successful calls that have no cost (not `COST_KNOWN`)."""

    calls: int
    unpriced: dict[str, int]  # calls with usage, by the model genai-prices did not price
    without_usage: int  # calls that reported no token usage


def calls_without_cost(calls: Frame, route: str) -> dict[str, WithoutCost]:
    """For each judged tier with successful calls that have no cost, what they were; the
    judge asks only when its per-user sums show some."""
    served = pl.coalesce("response_model", "request_model").fill_null("unknown model")
    counts = (
        _judged(calls, route)
        .filter(ENDED & ~COST_KNOWN)
        .group_by("tier", pl.col("input_tokens").is_null().alias("no_usage"), served.alias("model"))
        .agg(pl.len().alias("calls"))
        .sort("calls", "model", descending=[True, False])
    )
    result: dict[str, WithoutCost] = {}
    for tier, no_usage, model, n in counts.collect(engine="streaming").iter_rows():
        found = result.get(tier, WithoutCost(0, {}, 0))
        if no_usage:
            found = found._replace(without_usage=found.without_usage + n)
        else:
            found.unpriced[model] = n
        result[tier] = found._replace(calls=found.calls + n)
    return result


class Drift(NamedTuple):
    """A judged tier's calls that another model answered than the pinned one asked for."""

    share: float  # of the tier's calls whose drift is known
    served: str  # the model that answered most of them


def drift(calls: Frame, route: str) -> dict[str, Drift]:
    """For each judged tier with drifted calls (`alias_drift`), their share and the
    model that answered most of them; empty when no call drifted (one cheap query,
    which stops at the first drifted call).
    """
    drifted = pl.col("alias_drift")
    judged = _judged(calls, route)
    if judged.filter(drifted).select("tier").head(1).collect(engine="streaming").height == 0:
        return {}
    shares = (
        judged.filter(drifted.is_not_null())
        .group_by("tier")
        .agg(
            drifted.mean().alias("share"),
            pl.col("response_model").filter(drifted).mode().sort().first(),
        )
        .filter(pl.col("share") > 0)
    )
    return {
        tier: Drift(share, served)
        for tier, share, served in shares.collect(engine="streaming").iter_rows()
    }


def _tier_code() -> pl.Expr:
    """A judged call's tier as `JUDGED_TIERS`' physical value: 0 production, 1 canary.

    The judge's queries pack it into their one integer grouping key: grouping on one
    integer is much cheaper than on a tier column beside it.
    """
    return (pl.col("tier") == "canary").cast(pl.UInt64)


def _tier_of(code: pl.Expr) -> pl.Expr:
    """The tier, as `JUDGED_TIERS`, of a `_tier_code`."""
    return code.replace_strict(dict(enumerate(JUDGED_TIERS.categories)), return_dtype=JUDGED_TIERS)


def user_sums(threshold: float | None) -> dict[str, pl.Expr]:
    """The per-user sums `user_aggregates` can compute, by name (what metrics divide),
    each as its value per call (counts as booleans; `log_latency_mean` is averaged)."""
    fb = pl.col("feedback_score")
    outcome_ok = pl.col("outcome_ok")
    return {
        "errors": pl.col("status") == "error",
        "refusals": pl.col("refused") & pl.col("fallback_model").is_null(),
        "fallbacks": pl.col("fallback_model").is_not_null(),
        "cost": pl.col("cost_usd"),
        "cost_known": COST_KNOWN,
        "output_tokens": pl.col("output_tokens"),
        "tokens_known": TOKENS_KNOWN,
        "ttft_calls": pl.col("ttft_ms").is_not_null(),
        "input_tokens": pl.col("input_tokens"),
        "feedback": fb.is_not_null(),
        "score_sum": fb,
        "positive": (fb >= threshold) if threshold is not None else pl.lit(False),
        "outcomes": outcome_ok.is_not_null(),
        "wrong": ~outcome_ok,
        "log_latency_mean": pl.col("duration_ms").clip(_MIN_MS).log(),
    }


_MEANS = frozenset({"log_latency_mean"})


#: The `rollout_percent` of `user_aggregates`' pseudo-user of a call without a user.
NO_USER_STAGE = -1


def user_aggregates(
    calls: Frame,
    route: str,
    threshold: float | None,
    sums: Collection[str] | None = None,
    latency_cuts: Mapping[str, tuple[str, Mapping[str, float]]] | None = None,
    every_call_has_a_user: bool = False,
) -> pl.LazyFrame:
    """Per (tier, user): calls, widest stage seen, and the sums the judge's tests need.

    `sums` names the columns of `user_sums` to compute (default: all); each one is
    work over every call, so the judge asks only for those its metrics read.
    `latency_cuts` adds, per name, the user's calls whose column is at most its tier's
    cut (`{"within_latency_p95": ("duration_ms", {"production": 2100.0, "canary":
    2170.0})}`, in ms; a tier without a cut counts none): what the interval of a
    latency quantile needs.
    `rollout_percent` is the largest the user's calls carry (stages only grow).
    Calls without a user hash are grouped as one pseudo-user per call (their own
    cluster), so they still count without pretending to be independent of nothing;
    their `rollout_percent` is `NO_USER_STAGE`, since routing sends them to production
    whatever the stage (they are no sample of the split); `every_call_has_a_user` skips
    that case (see `_user_key`).
    Every aggregation here is a running sum, mean or maximum, so polars' streaming
    engine keeps one small state per user and never holds the calls. The user's
    typical latency is therefore the mean of its log-latencies (a geometric mean), not
    a median, which would need every call's latency in memory. Sums skip missing
    values, so a call without cost or tokens adds nothing. The values per call are
    worked out before grouping, so the grouping only sums plain columns (about a
    tenth faster on 10M calls than aggregating the expressions).
    """
    available = user_sums(threshold)
    chosen = available if sums is None else {name: available[name] for name in sums}
    is_canary = pl.col("tier") == "canary"  # the judged calls are production or canary
    for name, (column, cuts) in (latency_cuts or {}).items():
        production, canary = (cuts.get(tier, -math.inf) for tier in JUDGED_TIERS.categories)
        chosen[name] = pl.col(column) <= pl.when(is_canary).then(canary).otherwise(production)
    # One integer key: the user's hash with its lowest bit replaced by the tier code.
    key = _user_key(every_call_has_a_user) // 2 * 2 + _tier_code()
    summed = [name for name in chosen if name not in _MEANS]
    averaged = [name for name in chosen if name in _MEANS]
    stage = pl.col("rollout_percent")
    if not every_call_has_a_user:
        stage = pl.when(pl.col("user_hash").is_null()).then(NO_USER_STAGE).otherwise(stage)
    return (
        _judged(calls, route)
        .select(
            key.alias("key"),
            *(expr.alias(name) for name, expr in chosen.items()),
            stage.alias("rollout_percent"),
        )
        .group_by("key")
        .agg(
            pl.len().alias("calls"),
            pl.col(summed).sum(),
            pl.col(averaged).mean(),
            pl.col("rollout_percent").max(),
        )
        .select(
            _tier_of(pl.col("key") % 2).alias("tier"),
            (pl.col("key") // 2).alias("user"),
            "calls",
            *chosen,
            "rollout_percent",
        )
        .sort("tier", "user")
    )


# The histogram's key packs tier and bin into one 32-bit integer: grouping ten million
# calls on one integer is about twice as fast as on two columns.
# Bins run from -922 (0.01 ms) to 3224 (10^7 ms), offset into 0..8191.
_BIN_OFFSET = 1024
_BIN_SLOTS = 8192


def latency_histograms(calls: Frame, route: str, column: str = "duration_ms") -> pl.LazyFrame:
    """Per (tier, log-latency bin) of `column` (in ms): call counts, for the latency
    quantiles (lazy); calls without a value are left out.

    At most 2 tiers x 4,146 bins, whatever the input's size. The quantiles' intervals
    need one more number per user (its calls at or below the quantile), which
    `user_aggregates` counts once the quantiles are known (`latency_cuts`).
    """
    log_ms = pl.col(column).clip(_MIN_MS, _MAX_MS).log()
    bin_slot = ((log_ms / LOG_BIN_WIDTH).floor() + _BIN_OFFSET).cast(pl.UInt32)
    packed = pl.col("key")
    return (
        _judged(calls, route)
        .filter(pl.col(column).is_not_null())
        .group_by((_tier_code().cast(pl.UInt32) * _BIN_SLOTS + bin_slot).alias("key"))
        .agg(pl.len().cast(pl.UInt32).alias("n"))
        .select(
            _tier_of(packed // _BIN_SLOTS).alias("tier"),
            ((packed % _BIN_SLOTS).cast(pl.Int16) - _BIN_OFFSET).alias("bin"),
            "n",
        )
        .sort("tier", "bin")
    )


def bin_value(bin_index: float) -> float:
    """The latency (ms) at the middle of a histogram bin."""
    return math.exp((bin_index + 0.5) * LOG_BIN_WIDTH)
