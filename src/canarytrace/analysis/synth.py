"""Canary traffic with a known truth, as a frame of calls or as OTLP JSON lines.

Tests, the notebook and the benchmark need spans whose answer is known in advance:
this module draws users, routes a share of them to the canary the way routing does
(bucket < percent × 100), and gives every tier its own true error rate, latency
distribution, token use, price, satisfaction and regression rate. The same calls can
be written as the OpenTelemetry Collector's `file` exporter writes them (one
`ExportTraceServiceRequest` per line, ids as lowercase hex, int64 as decimal strings,
enums as integers, empty fields left out), so loading them back must give the frame
`calls()` returned.

Per-user heterogeneity is deliberate: each user has a latency factor and their own
error, satisfaction and regression probabilities (Beta around the tier's rate, so the
tier mean stays exact), which is what makes calls of one user correlated and why the
judge aggregates per user.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from canarytrace import attributes as A
from canarytrace.analysis.schema import CALLS_SCHEMA

_CONCENTRATION = 20.0  # Beta concentration of per-user probabilities around the tier's rate
_PRICE_IN = 3e-6  # USD per input token at cost multiplier 1
_PRICE_OUT = 15e-6
_CACHE_READ_DISCOUNT = 0.9  # a cached input token costs a tenth of an uncached one


@dataclass(frozen=True)
class TierTruth:
    """The true behaviour of one tier's model.

    `satisfaction_mean` is the exact expected feedback score on a 1-5 scale (scores are
    1 + Binomial(4, p)); `cost_multiplier` scales the price per token, so cost per call
    moves by exactly that factor while token counts stay the same. A share
    `refusal_rate` of the successful calls is refused, naming `refusal_category` when
    set; `fallback_model`, when set, answers each of them instead (a server-side
    fallback). Their tokens and cost are drawn as any call's. A share
    `cache_read_share` of the input tokens, when set, is read from the prompt cache and
    billed at a tenth of the input price (Anthropic's and GPT-5's discount). A streamed
    call's first token comes after 15-40 % of its duration, times `ttft_multiplier` (a
    model that thinks before it answers), and never after its end.
    """

    model: str
    error_rate: float = 0.01
    latency_median_ms: float = 900.0
    latency_sigma: float = 0.45
    input_tokens_mean: float = 600.0
    output_tokens_mean: float = 250.0
    cost_multiplier: float = 1.0
    satisfaction_mean: float = 4.0
    regression_rate: float = 0.05
    refusal_rate: float = 0.0
    refusal_category: str | None = None
    fallback_model: str | None = None
    cache_read_share: float = 0.0
    ttft_multiplier: float = 1.0


@dataclass(frozen=True)
class Scenario:
    """A canary rollout to simulate.

    `canary_percent` is the stage recorded on the spans; `observed_canary_share`, when
    set, routes users with that probability instead (a broken split, for SRM tests).
    """

    production: TierTruth = field(
        default_factory=lambda: TierTruth(model="claude-3-5-sonnet-20241022")
    )
    canary: TierTruth = field(default_factory=lambda: TierTruth(model="claude-3-opus-20241219"))
    users: int = 2000
    calls_per_user: float = 5.0
    canary_percent: int = 50
    observed_canary_share: float | None = None
    feedback_rate: float = 0.3
    outcome_rate: float = 0.3
    stream_share: float = 0.5
    user_sigma: float = 0.25
    hours: float = 6.0
    route: str = "chat"
    provider: str = "anthropic"
    service: str = "demo-app"
    start: dt.datetime = dt.datetime(2026, 6, 2, tzinfo=dt.UTC)
    seed: int = 0


def aa(users: int = 2000, seed: int = 0, **kwargs: object) -> Scenario:
    """An A/A canary: the canary tier behaves exactly like production."""
    base = Scenario(users=users, seed=seed, **kwargs)  # type: ignore[arg-type]
    return replace(base, canary=replace(base.production, model=base.canary.model))


def with_canary(scenario: Scenario, **truth: float | str) -> Scenario:
    """`scenario` with the canary's truth changed (e.g. error_rate=0.03)."""
    return replace(scenario, canary=replace(scenario.canary, **truth))  # type: ignore[arg-type]


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    raw = rng.bytes(n * nbytes).hex()
    width = 2 * nbytes
    return [raw[i * width : (i + 1) * width] for i in range(n)]


def _beta(rng: np.random.Generator, mean: np.ndarray, size: int) -> np.ndarray:
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    return rng.beta(mean * _CONCENTRATION, (1 - mean) * _CONCENTRATION, size)


def _cache_reads(rng: np.random.Generator, inputs: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Each call's input tokens read from the prompt cache. Not drawn when no tier reads
    the cache, so scenarios without one keep their draws."""
    return rng.binomial(inputs, share) if share.any() else np.zeros_like(inputs)


def calls(scenario: Scenario) -> pl.DataFrame:
    """Draw the calls of `scenario` as a frame of calls (the loaders' schema)."""
    s = scenario
    rng = np.random.default_rng(s.seed)
    bucket = rng.integers(0, 10_000, s.users)
    if s.observed_canary_share is None:
        canary_user = bucket < s.canary_percent * 100
    else:
        canary_user = rng.random(s.users) < s.observed_canary_share
    n_per_user = 1 + rng.poisson(max(s.calls_per_user - 1.0, 0.0), s.users)
    n = int(n_per_user.sum())
    user = np.repeat(np.arange(s.users), n_per_user)
    is_canary = canary_user[user]

    def tier_value(name: str) -> np.ndarray:
        return np.asarray(np.where(is_canary, getattr(s.canary, name), getattr(s.production, name)))

    def user_prob(name: str, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
        prod = (getattr(s.production, name) - shift) / scale
        can = (getattr(s.canary, name) - shift) / scale
        per_user = _beta(rng, np.where(canary_user, can, prod), s.users)
        return per_user[user]

    user_factor = np.exp(rng.normal(0.0, s.user_sigma, s.users))[user]
    latency = (
        tier_value("latency_median_ms")
        * user_factor
        * np.exp(rng.normal(0.0, 1.0, n) * tier_value("latency_sigma"))
    )
    error = rng.random(n) < user_prob("error_rate")
    stream = rng.random(n) < s.stream_share
    first_token = np.minimum(
        latency * rng.uniform(0.15, 0.4, n) * tier_value("ttft_multiplier"), latency
    )
    ttft = np.where(stream, first_token, np.nan)
    input_tokens = rng.poisson(tier_value("input_tokens_mean") * user_factor)
    output_tokens = np.where(error, 0, rng.poisson(tier_value("output_tokens_mean")))
    cost = (input_tokens * _PRICE_IN + output_tokens * _PRICE_OUT) * tier_value("cost_multiplier")
    has_feedback = (rng.random(n) < s.feedback_rate) & ~error
    score = 1.0 + rng.binomial(4, user_prob("satisfaction_mean", scale=4.0, shift=1.0))
    has_outcome = (rng.random(n) < s.outcome_rate) & ~error
    wrong = rng.random(n) < user_prob("regression_rate")
    offset_us = np.sort(rng.uniform(0, s.hours * 3.6e9, n)).astype(np.int64)
    start0 = int(s.start.timestamp() * 1_000_000)
    user_hashes = np.array(_hex_ids(rng, s.users, 8))
    model = np.where(is_canary, s.canary.model, s.production.model)
    frame = pl.DataFrame(
        {
            "trace_id": _hex_ids(rng, n, 16),
            "span_id": _hex_ids(rng, n, 8),
            "start": start0 + offset_us,
            "duration_ms": np.round(latency, 3),
            "error": error,
            "tier": np.where(is_canary, "canary", "production"),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": np.round(cost, 9),
            "user_hash": user_hashes[user],
            "bucket": bucket[user],
            "stream": stream,
            "ttft_ms": np.round(ttft, 3),
            "has_feedback": has_feedback,
            "score": score,
            "has_outcome": has_outcome,
            "wrong": wrong,
        }
    )
    # Drawn last, so that the draws above stay those of scenarios without refusals.
    refusing = np.where(tier_value("refusal_rate") > 0, user_prob("refusal_rate"), 0.0)
    refused = ~error & (rng.random(n) < refusing)
    fallbacks = np.where(
        is_canary, s.canary.fallback_model or "", s.production.fallback_model or ""
    )
    answered_by = np.where(refused, fallbacks, "")
    categories = np.where(
        is_canary, s.canary.refusal_category or "", s.production.refusal_category or ""
    )
    frame = frame.with_columns(
        pl.Series("refused", refused),
        pl.Series("fallback_model", answered_by).replace("", None),
        pl.Series("refusal_category", np.where(refused, categories, "")).replace("", None),
    )
    reads = _cache_reads(rng, input_tokens, tier_value("cache_read_share"))
    saved = reads * _PRICE_IN * _CACHE_READ_DISCOUNT * tier_value("cost_multiplier")
    frame = frame.with_columns(
        # Null where none were read: the instrumentation leaves the attribute out then.
        pl.Series("cache_read_tokens", reads).replace(0, None),
        pl.Series("cost_usd", np.round(cost - saved, 9)),
    )
    ok = ~pl.col("error")
    return frame.with_columns(
        pl.lit(None).alias("parent_span_id"),
        pl.lit(s.service).alias("service"),
        pl.col("start").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.when(ok).then(pl.lit("ok")).otherwise(pl.lit("error")).alias("status"),
        pl.when(ok).then(None).otherwise(pl.lit("InternalServerError")).alias("error_type"),
        pl.lit(s.provider).alias("provider"),
        pl.lit("chat").alias("operation"),
        pl.lit(s.route).alias("route"),
        pl.col("model").alias("request_model"),
        pl.when(ok).then(pl.coalesce("fallback_model", "model")).alias("response_model"),
        pl.lit(True).alias("pinned"),
        pl.lit(False).alias("alias_drift"),
        pl.when(ok).then(pl.col("output_tokens")).alias("output_tokens"),
        pl.lit(s.canary_percent).alias("rollout_percent"),
        pl.col("ttft_ms").fill_nan(None),
        pl.lit(None).alias("service_tier"),
        pl.when(pl.col("has_feedback")).then(pl.col("score")).alias("feedback_score"),
        pl.col("has_feedback").cast(pl.Int64).alias("feedback_count"),
        pl.when(pl.col("has_outcome")).then(~pl.col("wrong")).alias("outcome_ok"),
        pl.when(pl.col("has_outcome") & pl.col("wrong"))
        .then(pl.lit("wrong_answer"))
        .alias("outcome_kind"),
    ).select(pl.col(c).cast(t) for c, t in CALLS_SCHEMA.items())


# --- OTLP JSON, as the collector's file exporter writes it ---------------------------


def _value(v: object) -> dict[str, object]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def _attrs(pairs: list[tuple[str, object]]) -> list[dict[str, object]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs if v is not None]


def _nanos(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _call_span(row: dict[str, object]) -> dict[str, object]:
    start = _nanos(row["start"])  # type: ignore[arg-type]
    end = start + round(float(row["duration_ms"]) * 1_000_000)  # type: ignore[arg-type]
    served = (
        A.ANTHROPIC_RESPONSE_SERVICE_TIER
        if row["provider"] == "anthropic"
        else A.OPENAI_RESPONSE_SERVICE_TIER
    )
    span: dict[str, object] = {
        "traceId": row["trace_id"],
        "spanId": row["span_id"],
        "name": f"{row['operation']} {row['request_model']}",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": _attrs(
            [
                (A.GEN_AI_OPERATION_NAME, row["operation"]),
                (A.GEN_AI_PROVIDER_NAME, row["provider"]),
                (A.GEN_AI_SYSTEM, row["provider"]),
                (A.GEN_AI_REQUEST_MODEL, row["request_model"]),
                (A.GEN_AI_REQUEST_STREAM, row["stream"]),
                (A.GEN_AI_RESPONSE_MODEL, row["response_model"]),
                (A.GEN_AI_USAGE_INPUT_TOKENS, row["input_tokens"]),
                (A.GEN_AI_USAGE_OUTPUT_TOKENS, row["output_tokens"]),
                (A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, row["cache_read_tokens"]),
                (A.ERROR_TYPE, row["error_type"]),
                (A.ROUTE, row["route"]),
                (A.TIER, row["tier"]),
                (A.PINNED, row["pinned"]),
                (A.ALIAS_DRIFT, row["alias_drift"]),
                (A.COST_USD, row["cost_usd"]),
                (A.ROLLOUT_PERCENT, row["rollout_percent"]),
                (A.COHORT_BUCKET, row["bucket"]),
                (A.USER_HASH, row["user_hash"]),
                (A.TIME_TO_FIRST_TOKEN_MS, row["ttft_ms"]),
                (served, row["service_tier"]),
                (A.REFUSED, row["refused"] or None),  # recorded only when true
                (A.FALLBACK_MODEL, row["fallback_model"]),
                (A.REFUSAL_CATEGORY, row["refusal_category"]),
            ]
        ),
        "status": {"code": 2} if row["status"] == "error" else {},
    }
    if row["parent_span_id"]:
        span["parentSpanId"] = row["parent_span_id"]
    return span


def _record_span(
    rng: np.random.Generator, row: dict[str, object], name: str, pairs: list[tuple[str, object]]
) -> dict[str, object]:
    """A feedback/outcome span: its own trace, linked to the call, ids as attributes."""
    start = _nanos(row["start"]) + int(rng.integers(5, 600)) * 1_000_000_000  # type: ignore[arg-type]
    target = [(A.TARGET_TRACE_ID, row["trace_id"]), (A.TARGET_SPAN_ID, row["span_id"])]
    return {
        "traceId": rng.bytes(16).hex(),
        "spanId": rng.bytes(8).hex(),
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1000),
        "attributes": _attrs(target + pairs),
        "links": [{"traceId": row["trace_id"], "spanId": row["span_id"]}],
        "status": {},
    }


def spans(frame: pl.DataFrame, seed: int = 0) -> Iterator[tuple[str, dict[str, object]]]:
    """The spans behind a frame of calls: each call's span, then its feedback/outcome.

    Yields (service, span) pairs. Records follow their call in time order only loosely:
    they carry their own later timestamps, as they would when an app reports feedback.
    """
    rng = np.random.default_rng(seed)
    for row in frame.iter_rows(named=True):
        service = str(row["service"])
        yield service, _call_span(row)
        if row["feedback_count"]:
            yield (
                service,
                _record_span(
                    rng, row, A.FEEDBACK_SPAN_NAME, [(A.FEEDBACK_SCORE, row["feedback_score"])]
                ),
            )
        if row["outcome_ok"] is not None:
            pairs = [(A.OUTCOME_OK, row["outcome_ok"]), (A.OUTCOME_KIND, row["outcome_kind"])]
            yield service, _record_span(rng, row, A.OUTCOME_SPAN_NAME, pairs)


def request(service: str, batch: list[dict[str, object]]) -> dict[str, object]:
    """One OTLP `ExportTraceServiceRequest` holding `batch` under one resource and scope."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs([("service.name", service)])},
                "scopeSpans": [
                    {"scope": {"name": A.INSTRUMENTATION_SCOPE, "version": "0.1.0"}, "spans": batch}
                ],
            }
        ]
    }


def requests(
    frame: pl.DataFrame, spans_per_request: int = 256, seed: int = 0
) -> Iterator[dict[str, object]]:
    """The frame's spans batched into requests, as a batch span processor would send them."""
    batch: list[dict[str, object]] = []
    service = ""
    for svc, span in spans(frame, seed):
        if batch and (svc != service or len(batch) >= spans_per_request):
            yield request(service, batch)
            batch = []
        service = svc
        batch.append(span)
    if batch:
        yield request(service, batch)


def write_otlp(
    frame: pl.DataFrame,
    path: str | Path,
    *,
    spans_per_request: int = 256,
    compress: bool = False,
    seed: int = 0,
) -> Path:
    """Write the frame's spans as OTLP JSON lines (zstd-compressed when `compress`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        json.dumps(r, separators=(",", ":")) + "\n"
        for r in requests(frame, spans_per_request, seed)
    )
    if compress:
        import zstandard

        with path.open("wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
            for line in lines:
                out.write(line.encode())
    else:
        with path.open("w", encoding="utf-8") as out:
            out.writelines(lines)
    return path
