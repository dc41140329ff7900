"""How a metric's numbers are written: one place for the judge's reasons and the report.

Proportions (error, regression and positive-feedback rates) read in % and their changes
and margins in percentage points; relative changes and margins in %; latencies in ms,
cost in USD. A missing or non-finite number is written as `missing`. `describe` writes
a metric's result as the judge's reasons name it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from canarytrace.analysis.judge import MetricResult


def _is_share(result: MetricResult) -> bool:
    return result.name.endswith("_rate") or result.name == "positive_feedback"


def value_text(result: MetricResult, value: float | None, missing: str = "–") -> str:
    """A metric's value in its unit (%, ms, USD, tokens, score)."""
    if value is None or not math.isfinite(value):
        return missing
    if _is_share(result):
        return f"{value:.2%}"
    if result.name.startswith(("latency", "ttft")):
        return f"{value:,.0f} ms"
    if result.name.startswith("cost"):
        return f"${value:.5f}"
    if result.name == "output_tokens":
        return f"{value:,.1f}"
    return f"{value:.3f}"


def change_text(result: MetricResult, value: float | None, missing: str = "–") -> str:
    """A change (or an interval's end): relative in %, proportions in percentage points."""
    if value is None or not math.isfinite(value):
        return missing
    if result.relative:
        return f"{value:+.1%}"
    if _is_share(result):
        return f"{value * 100:+.2f} pp"
    return f"{value:+.3g}"


def margin_text(result: MetricResult, *, signed: bool = True) -> str:
    """The margin; `signed` puts the direction that counts as worse in front."""
    worse = ("+" if result.higher_is_worse else "-") if signed else ""
    if result.relative:
        return f"{worse}{result.margin:.0%}"
    if _is_share(result):
        return f"{worse}{result.margin * 100:.2g} pp"
    return f"{worse}{result.margin:g}"


#: Below this a p-value is written as "<0.001": its digits there say more about the
#: normal approximation's tail than about the data, and one that underflowed to 0 is
#: not evidence of certainty.
SMALLEST_P = 0.001


def p_text(value: float | None) -> str:
    """A p-value to two significant digits, or "<0.001"."""
    if value is None:
        return "–"
    return f"<{SMALLEST_P:g}" if value < SMALLEST_P else f"{value:.2g}"


def p_is(value: float | None) -> str:
    """What follows "p" in a sentence: "= 0.012" or "< 0.001"."""
    if value is None:
        return "n/a"
    return f"< {SMALLEST_P:g}" if value < SMALLEST_P else f"= {value:.2g}"


def describe(result: MetricResult) -> str:
    """A metric's change, interval and margin, as a verdict's reason names them."""
    change, low, high = (
        change_text(result, v, missing="n/a") for v in (result.change, result.low, result.high)
    )
    margin = margin_text(result, signed=False)
    return f"{result.label} {change} (interval {low} to {high}; margin {margin})"


#: How a reason names a tier.
TIER_NAMES = {"production": "production", "canary": "the canary"}
