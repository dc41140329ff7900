"""What makes a comparison of the tiers about something else than their models.

The judge compares two pinned models served alike. Each function here reads one fact
that `metrics` queried and says, in the judge's words, where that does not hold: the
provider served the tiers at different service tiers, a tier's calls asked for several
models (its pin changed in the window), another model answered a tier's calls (alias
drift), their prompt caches were unequally warm, or part of a tier's calls have no cost.
A share of calls from `CONFOUNDED_SHARE` up is too much to judge past.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from canarytrace.analysis import metrics as M
from canarytrace.analysis.formats import TIER_NAMES, describe

if TYPE_CHECKING:
    from canarytrace.analysis.judge import MetricResult

#: The share of calls (a difference in the share of a service tier between the tiers,
#: or the share of a tier's calls answered by another model or by an unpriced one) from
#: which the comparison is held as confounded.
CONFOUNDED_SHARE = 0.10


def service_tier_mismatch(shares: Mapping[str, Mapping[str, float]]) -> str | None:
    """Why production and canary, served at different service tiers, cannot be compared
    (`metrics.service_tier_shares`), or None when they were served alike."""
    production, canary = shares.get("production", {}), shares.get("canary", {})
    if not production or not canary:
        return None
    gap = max(abs(production.get(t, 0.0) - canary.get(t, 0.0)) for t in {*production, *canary})
    if gap < CONFOUNDED_SHARE:
        return None

    def mix(tier: Mapping[str, float]) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in sorted(tier.items()))

    return (
        f"served at different service tiers (production: {mix(production)}; canary: "
        f"{mix(canary)}): latency and cost compare the tiers as much as the models; "
        "serve both alike"
    )


#: An error rate from which a tier is down rather than answering.
OUTAGE_ERROR_RATE = 0.5


def outage(errors: MetricResult | None) -> str | None:
    """Why tiers that both fail most of their calls cannot be compared: equal in failing,
    the canary would pass every other metric on the few calls that answered."""
    if errors is None or errors.production is None or errors.canary is None:
        return None
    if min(errors.production, errors.canary) < OUTAGE_ERROR_RATE:
        return None
    return (
        f"both tiers fail most of their calls (production {errors.production:.0%}, canary "
        f"{errors.canary:.0%}): an outage, not a comparison of models; judge a window in "
        "which production answers"
    )


def mixed_models(mixes: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Why a tier whose calls asked for several models (`metrics.tier_models`), its pin
    changed in the window, does not stand for one model: one reason per such tier."""
    reasons = []
    for tier, mix in mixes.items():
        if len(mix) > 1 and sorted(mix.values())[-2] >= CONFOUNDED_SHARE:
            shares = ", ".join(f"{model} {share:.0%}" for model, share in mix.items())
            reasons.append(
                f"{tier}: its calls asked for several models ({shares}): the comparison "
                "mixes them; judge each model's window apart (--since/--until)"
            )
    return reasons


def drifted(drift: Mapping[str, M.Drift], models: Mapping[str, str | None]) -> list[str]:
    """Why a tier whose calls another model answered than its pinned one (`metrics.drift`)
    does not stand for that model, one reason per such tier."""
    return [
        f"{tier}: {found.share:.0%} of its calls were answered by {found.served}, not by "
        f"the pinned {models[tier]} (alias drift): the comparison is not of the pinned models"
        for tier, found in sorted(drift.items())
        if found.share >= CONFOUNDED_SHARE
    ]


#: What a cached input token costs against an uncached one, at the deepest discount the
#: providers give (Anthropic's cache reads and GPT-5's cached input: a tenth).
CACHED_INPUT_PRICE = 0.1


def cache_warmth(
    cost_failure: MetricResult | None, shares: Mapping[str, float]
) -> tuple[str, bool] | None:
    """What the prompt caches say of cost and latency metrics that did not pass: None
    when the tiers read shares of their input from the cache
    (`metrics.cache_read_shares`) within `CONFOUNDED_SHARE` of each other, else the
    reason to give and whether the caches' warmth alone could be `cost_failure`.

    A canary with little traffic finds its cache cold more often, and an uncached long
    prompt is slower as well as dearer. Were all of a call's cost its input, at the
    deepest discount, reading share c instead of p would change its cost by
    (1 - 0.9c) / (1 - 0.9p) - 1 and no more; a cost failure whose interval stays beyond
    the margin after dividing that out is the model's own. Latency has no such bound:
    the reason names the caches, the verdict stands.
    """
    production, canary = shares.get("production"), shares.get("canary")
    if production is None or canary is None or abs(production - canary) < CONFOUNDED_SHARE:
        return None
    discount = 1 - CACHED_INPUT_PRICE
    up_to = (1 - discount * canary) / (1 - discount * production) - 1
    note = (
        f"prompt cache: production read {production:.0%} of its input from it, the canary "
        f"{canary:.0%}, which alone can move cost per call by up to {up_to:+.0%} and the "
        "latency of long prompts"
    )
    if cost_failure is None:
        return note, False
    low, margin = cost_failure.low, cost_failure.margin
    if cost_failure.relative and low is not None and low > (1 + up_to) * (1 + margin) - 1:
        return note, False  # beyond what warmth can explain: the model's own
    wait = "judge again once the canary's cache has warmed"
    return f"(would have failed) {describe(cost_failure)}: {note}; {wait}", True


def calls_without_cost(
    lazy: pl.LazyFrame, route: str, parts: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, M.WithoutCost]:
    """The tiers' successful calls without a cost (`metrics.calls_without_cost`), asked
    only when the per-user sums in `parts` show some."""
    if "cost_known" not in parts["canary"]:  # the configured metrics judge no cost
        return {}
    if all(tier["calls"].sum() == tier["cost_known"].sum() for tier in parts.values()):
        return {}
    return M.calls_without_cost(lazy, route)


def partly_unpriced(without: Mapping[str, M.WithoutCost], calls: Mapping[str, int]) -> bool:
    """Whether a tier has `CONFOUNDED_SHARE` or more of its `calls` answered by models
    genai-prices did not price: its cost per call then describes part of it."""
    return any(
        sum(found.unpriced.values()) >= CONFOUNDED_SHARE * calls[tier]
        for tier, found in without.items()
    )


def without_cost_reason(
    without: Mapping[str, M.WithoutCost], calls: Mapping[str, int], holds: bool
) -> str:
    """Which successful calls had no cost and why, by tier: cost per call is compared on
    the others. With `holds`, why that keeps the canary from a promotion."""
    tiers = []
    for tier in ("canary", "production"):
        found = without.get(tier)
        if found is None:
            continue
        why = [f"{n:,} answered by {model}" for model, n in found.unpriced.items()]
        if found.without_usage:
            why.append(f"{found.without_usage:,} that reported no token usage")
        share = found.calls / calls[tier]
        percent = f"{share:.0%}" if share >= 0.01 else "<1%"
        tiers.append(
            f"{TIER_NAMES[tier]} {found.calls:,} of {calls[tier]:,} ({percent}): " + ", ".join(why)
        )
    text = "successful calls without a cost, left out of cost per call: " + "; ".join(tiers)
    if any(found.unpriced for found in without.values()):
        text += (
            "; genai-prices did not price those models when the calls were made "
            "(update genai-prices or add their prices)"
        )
    if any(found.without_usage for found in without.values()):
        text += (
            "; a stream reports its usage only when asked "
            "(instrument(include_stream_usage=True)), and a call without it is left out "
            "of output tokens per call too"
        )
    if holds:
        text += (
            f"; with {CONFOUNDED_SHARE:.0%} or more of a tier's calls unpriced, cost per "
            "call does not describe the tier (judge the calls made since the price was "
            "known, with --since): a critical metric must be compared before a promotion"
        )
    return text
