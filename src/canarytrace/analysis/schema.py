"""The frame of calls: the one schema every loader returns and the judge reads.

One row per LLM call (DESIGN.md), in this column order and with these dtypes, so that
the same spans give an identical frame whatever the source (collector files, Parquet,
Jaeger, Tempo). Feedback and outcome records are joined onto their call:
`feedback_score` is the mean of the call's feedback scores (`feedback_count` of them),
`outcome_ok` is False when any outcome of the call was marked wrong and `outcome_kind`
names the first such kind. `parent_span_id` and `service` make trace links possible.
`status` is "pending" for a background call whose result has not been seen yet: it
has not ended as far as the traces know, so it is neither a success nor a failure.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import polars as pl

UTC_TIME: Final = pl.Datetime("us", "UTC")

CALLS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "trace_id": pl.String(),
    "span_id": pl.String(),
    "parent_span_id": pl.String(),
    "service": pl.String(),
    "start": UTC_TIME,
    "duration_ms": pl.Float64(),
    "status": pl.String(),  # "ok" | "error" | "pending"
    "error_type": pl.String(),
    "provider": pl.String(),
    "operation": pl.String(),
    "route": pl.String(),
    "tier": pl.String(),
    "request_model": pl.String(),
    "response_model": pl.String(),
    "pinned": pl.Boolean(),
    "alias_drift": pl.Boolean(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "cache_read_tokens": pl.Int64(),  # of input_tokens, those read from the prompt cache
    "cost_usd": pl.Float64(),
    "user_hash": pl.String(),
    "bucket": pl.Int64(),
    "rollout_percent": pl.Int64(),
    "stream": pl.Boolean(),
    "ttft_ms": pl.Float64(),
    "service_tier": pl.String(),  # the provider's service tier that served the call
    "refused": pl.Boolean(),  # the requested model declined (a refusal), answered or not
    "fallback_model": pl.String(),  # the model that answered a refusal instead, if one did
    "refusal_category": pl.String(),  # the policy area a refusal names, where it names one
    "feedback_score": pl.Float64(),
    "feedback_count": pl.Int64(),
    "outcome_ok": pl.Boolean(),
    "outcome_kind": pl.String(),
}


#: Columns added after the first release: a calls file written before one of them gets
#: it as nulls rather than being refused.
LATER_COLUMNS: Final = frozenset(
    {"service_tier", "refused", "fallback_model", "refusal_category", "cache_read_tokens"}
)


def empty_calls() -> pl.DataFrame:
    """A frame of calls with no rows (what a source without LLM spans yields)."""
    return pl.DataFrame(schema=CALLS_SCHEMA)


def missing_columns(names: Collection[str]) -> list[str]:
    """The contract's columns that a frame or file with columns `names` lacks, but for
    `LATER_COLUMNS`."""
    return [c for c in CALLS_SCHEMA if c not in names and c not in LATER_COLUMNS]


def conform(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast the contract's columns, in order; a missing column is an error,
    but for `LATER_COLUMNS`, which are filled with nulls.

    Raises KeyError naming the missing columns, so a foreign Parquet file gets a clear
    message from the loader instead of a half-filled frame.
    """
    lazy = frame.lazy()
    names = lazy.collect_schema().names()
    missing = missing_columns(names)
    if missing:
        raise KeyError(", ".join(missing))
    return lazy.select(
        (pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c)
        for c, t in CALLS_SCHEMA.items()
    )
