"""OTLP JSON → the typed frame of spans that every trace source becomes. No I/O.

An `ExportTraceServiceRequest` in OTLP's JSON encoding (what the collector's `file`
exporter writes a line of, and what Jaeger's and Tempo's APIs answer with) is read into
row tuples holding only what the frame needs: a span's ids, names, times and status,
its first link, and the attributes of `attributes.py` that the analysis reads, by
column. msgspec decodes the common shape into typed structs that skip every other
field; a line of another shape falls back to the standard library's decoder, which
reads it or says why not. `span_frame` turns the rows into typed polars columns; a
numeric attribute that is no usable number (OTLP's double allows NaN and infinities)
becomes null there, and the span's `bad_numbers` says which, for the loader to report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec
import polars as pl

from canarytrace import attributes as A

# The span attributes read, by column, grouped by the type they are converted to.
_STR_ATTRS = {
    "error_type": A.ERROR_TYPE,
    "provider_name": A.GEN_AI_PROVIDER_NAME,
    "system": A.GEN_AI_SYSTEM,
    "operation": A.GEN_AI_OPERATION_NAME,
    "route": A.ROUTE,
    "tier": A.TIER,
    "request_model": A.GEN_AI_REQUEST_MODEL,
    "response_model": A.GEN_AI_RESPONSE_MODEL,
    "user_hash": A.USER_HASH,
    "openai_service_tier": A.OPENAI_RESPONSE_SERVICE_TIER,
    "anthropic_service_tier": A.ANTHROPIC_RESPONSE_SERVICE_TIER,
    "fallback_model": A.FALLBACK_MODEL,
    "refusal_category": A.REFUSAL_CATEGORY,
    "target_trace": A.TARGET_TRACE_ID,
    "target_span": A.TARGET_SPAN_ID,
    "kind": A.OUTCOME_KIND,
    "response_id": A.GEN_AI_RESPONSE_ID,
    "background_status": A.BACKGROUND_STATUS,
}
_BOOL_ATTRS = {
    "pinned": A.PINNED,
    "alias_drift": A.ALIAS_DRIFT,
    "refused": A.REFUSED,
    "stream": A.GEN_AI_REQUEST_STREAM,
    "ok": A.OUTCOME_OK,
    "background": A.BACKGROUND,
}
_INT_ATTRS = {
    "input_tokens": A.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": A.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read_tokens": A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "bucket": A.COHORT_BUCKET,
    "rollout_percent": A.ROLLOUT_PERCENT,
}
_FLOAT_ATTRS = {
    "cost_usd": A.COST_USD,
    "ttft_ms": A.TIME_TO_FIRST_TOKEN_MS,
    "score": A.FEEDBACK_SCORE,
    "background_ms": A.BACKGROUND_DURATION_MS,
}
_SPAN_FIELDS = (
    "trace",
    "span",
    "parent",
    "service",
    "name",
    "start_ns",
    "end_ns",
    "code",
    "link_trace",
    "link_span",
)
_COLUMNS = (*_SPAN_FIELDS, *_STR_ATTRS, *_BOOL_ATTRS, *_INT_ATTRS, *_FLOAT_ATTRS)
#: Where a row of `line_rows`/`span_rows` holds its span's trace id (as written).
TRACE_FIELD = _COLUMNS.index("trace")
_NUMBER_COLUMNS = (*_INT_ATTRS, *_FLOAT_ATTRS)
#: The numeric attributes, in the order of the bits of a span's `bad_numbers`.
NUMBER_ATTRIBUTES = (*_INT_ATTRS.values(), *_FLOAT_ATTRS.values())
_ATTR_KEYS = (
    *_STR_ATTRS.values(),
    *_BOOL_ATTRS.values(),
    *_INT_ATTRS.values(),
    *_FLOAT_ATTRS.values(),
)


def _generic_rows(doc: object) -> list[tuple[object, ...]]:
    """One request's spans as row tuples in `_COLUMNS` order; raises on a foreign shape.

    The OTLP attribute value is a one-key object ({"stringValue": ...}, {"intValue":
    "12"}, ...); its single value is kept as is and typed later by polars, so int64
    written as strings (the spec) or as numbers (some producers) both read.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise ValueError("not an OTLP ExportTraceServiceRequest (no resourceSpans list)")
    rows: list[tuple[object, ...]] = []
    for resource_spans in doc["resourceSpans"]:
        service = None
        for kv in (resource_spans.get("resource") or {}).get("attributes") or ():
            if kv.get("key") == "service.name":
                service = (kv.get("value") or {}).get("stringValue")
        for scope_spans in resource_spans.get("scopeSpans") or ():
            for span in scope_spans.get("spans") or ():
                attrs: dict[str, object] = {}
                for kv in span.get("attributes") or ():
                    for value in (kv.get("value") or {}).values():
                        attrs[kv.get("key")] = value
                        break
                link: dict[str, Any] = (span.get("links") or ({},))[0]
                rows.append(
                    (
                        span.get("traceId"),
                        span.get("spanId"),
                        span.get("parentSpanId"),
                        service,
                        span.get("name"),
                        span.get("startTimeUnixNano"),
                        span.get("endTimeUnixNano"),
                        (span.get("status") or {}).get("code"),
                        link.get("traceId"),
                        link.get("spanId"),
                        *map(attrs.get, _ATTR_KEYS),
                    )
                )
    return rows


# Typed OTLP shapes for msgspec: decoding straight into these skips every field the
# frame does not need (events, resource attributes other than the service, scopes) and
# is about twice as fast as `json.loads` plus dict lookups, with far smaller transients.
class _Status(msgspec.Struct, gc=False):
    code: int | str | None = None


class _Link(msgspec.Struct, gc=False):
    traceId: str | None = None
    spanId: str | None = None


class _AnyValue(msgspec.Struct, gc=False, frozen=True):
    stringValue: str | None = None
    boolValue: bool | None = None
    intValue: str | int | None = None
    doubleValue: float | str | None = None

    def scalar(self) -> object:
        """The one value set (OTLP sets exactly one); arrays and maps are not read."""
        if self.stringValue is not None:
            return self.stringValue
        if self.intValue is not None:
            return self.intValue
        if self.doubleValue is not None:
            return self.doubleValue
        return self.boolValue


_EMPTY = _AnyValue()


class _KeyValue(msgspec.Struct, gc=False):
    key: str | None = None
    value: _AnyValue = _EMPTY


class _Span(msgspec.Struct, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    parentSpanId: str | None = None
    name: str | None = None
    startTimeUnixNano: str | int | None = None
    endTimeUnixNano: str | int | None = None
    status: _Status | None = None
    attributes: list[_KeyValue] | None = None
    links: list[_Link] | None = None


class _ScopeSpans(msgspec.Struct, gc=False):
    spans: list[_Span] | None = None


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue] | None = None


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] | None = None


class _Request(msgspec.Struct, gc=False):
    resourceSpans: list[_ResourceSpans]


_DECODER = msgspec.json.Decoder(_Request)


def _typed_rows(request: _Request) -> list[tuple[object, ...]]:
    """`_generic_rows` for a request msgspec decoded: the same tuples, values as found."""
    rows: list[tuple[object, ...]] = []
    for resource_spans in request.resourceSpans:
        service = None
        resource = resource_spans.resource
        for kv in (resource.attributes if resource else None) or ():
            if kv.key == "service.name":
                service = kv.value.stringValue
        for scope_spans in resource_spans.scopeSpans or ():
            for span in scope_spans.spans or ():
                attrs = {kv.key: kv.value.scalar() for kv in span.attributes or ()}
                link = span.links[0] if span.links else _NO_LINK
                rows.append(
                    (
                        span.traceId,
                        span.spanId,
                        span.parentSpanId,
                        service,
                        span.name,
                        span.startTimeUnixNano,
                        span.endTimeUnixNano,
                        span.status.code if span.status else None,
                        link.traceId,
                        link.spanId,
                        *map(attrs.get, _ATTR_KEYS),
                    )
                )
    return rows


_NO_LINK = _Link()


def _hex_id(expr: pl.Expr, nbytes: int) -> pl.Expr:
    """Lowercase hex for hex ids; base64 ids decoded; empty ids become null."""
    is_hex = expr.str.contains(f"^[0-9a-fA-F]{{{2 * nbytes}}}$")
    decoded = expr.str.decode("base64", strict=False).bin.encode("hex")
    return (
        pl.when(expr.is_null() | (expr == ""))
        .then(None)
        .when(is_hex)
        .then(expr.str.to_lowercase())
        .otherwise(decoded.str.zfill(2 * nbytes))
    )


def _bits(flags: Iterable[pl.Expr]) -> pl.Expr:
    """Flags as the bits of one small integer (bit i: the i-th flag), so that finding
    the spans with any costs one column, not a loop over rows."""
    return pl.sum_horizontal(
        pl.when(flag).then(pl.lit(1 << bit, pl.UInt16)).otherwise(pl.lit(0, pl.UInt16))
        for bit, flag in enumerate(flags)
    )


def _usable(column: str) -> pl.Expr:
    """Whether a numeric attribute read as a float is a value the analysis can use:
    finite, and an integer's within int64 (a NaN cost or time measures nothing, and
    polars' integer cast fails on NaN)."""
    value = pl.col(column)
    return value.abs() < 2.0**63 if column in _INT_ATTRS else value.is_finite()


def _typed(raw: pl.DataFrame) -> pl.DataFrame:
    """`raw`'s attributes as booleans and numbers, a number not `_usable` as null, and
    `bad_numbers`: bit i set where the i-th of `NUMBER_ATTRIBUTES` was present but not
    usable (NaN, infinite, not a number, past int64), for the loader to report.

    Two steps so that each string is parsed once: the first marks the numbers present
    and parses them, the second takes the usable ones off (each of them is present).
    """
    raw = raw.with_columns(
        _bits(pl.col(c).is_not_null() for c in _NUMBER_COLUMNS).alias("bad_numbers"),
        *(pl.col(c).str.to_lowercase() == "true" for c in _BOOL_ATTRS),
        *(pl.col(c).cast(pl.Float64, strict=False) for c in _NUMBER_COLUMNS),
    )
    return raw.with_columns(
        pl.col("bad_numbers") - _bits(_usable(c) for c in _NUMBER_COLUMNS),
        *(pl.when(_usable(c)).then(pl.col(c)).cast(pl.Int64) for c in _INT_ATTRS),
        *(pl.when(_usable(c)).then(pl.col(c)) for c in _FLOAT_ATTRS),
    )


def span_frame(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    """Row tuples (values as found) → typed span columns the calls and records come from.

    A span's duration is null where its start or end is missing or its end is before
    its start: no duration is better than a negative one clipped into the fastest.
    """
    raw = pl.DataFrame(rows, schema=dict.fromkeys(_COLUMNS, pl.String), orient="row", strict=False)
    start = raw["start_ns"].cast(pl.Int64, strict=False)
    end = raw["end_ns"].cast(pl.Int64, strict=False)
    raw = _typed(raw)
    return raw.select(
        _hex_id(pl.col("trace"), 16).alias("trace_id"),
        _hex_id(pl.col("span"), 8).alias("span_id"),
        _hex_id(pl.col("parent"), 8).alias("parent_span_id"),
        "service",
        "name",
        pl.from_epoch(start // 1000, time_unit="us").dt.replace_time_zone("UTC").alias("start"),
        pl.when(end >= start).then((end - start) / 1e6).alias("duration_ms"),
        # Enums arrive as numbers (collector) or names (grpc-gateway, e.g. Jaeger's API).
        pl.when(pl.col("code").is_in(["2", "STATUS_CODE_ERROR"]))
        .then(pl.lit("error"))
        .otherwise(pl.lit("ok"))
        .alias("status"),
        "error_type",
        pl.coalesce("provider_name", "system").alias("provider"),
        "operation",
        "route",
        "tier",
        "request_model",
        "response_model",
        "pinned",
        "alias_drift",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cost_usd",
        "user_hash",
        "bucket",
        "rollout_percent",
        "stream",
        "ttft_ms",
        pl.coalesce("openai_service_tier", "anthropic_service_tier").alias("service_tier"),
        pl.col("refused").fill_null(False),  # recorded only when true
        "fallback_model",
        "refusal_category",
        _hex_id(pl.coalesce("target_trace", "link_trace"), 16).alias("target_trace_id"),
        _hex_id(pl.coalesce("target_span", "link_span"), 8).alias("target_span_id"),
        "score",
        "ok",
        "kind",
        "response_id",
        pl.col("background").fill_null(False),
        "background_status",
        "background_ms",
        "bad_numbers",
    )


def line_rows(line: bytes) -> list[tuple[object, ...]]:
    """The spans of one JSON line as rows; a ValueError says why a line cannot be read."""
    try:
        return _typed_rows(_DECODER.decode(line))
    except msgspec.MsgspecError:
        pass  # not the common shape: the generic path below reads it or says why
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = getattr(exc, "msg", str(exc))
        raise ValueError(f"malformed or truncated JSON ({message}); line skipped") from exc
    return span_rows(doc)


def span_rows(doc: object) -> list[tuple[object, ...]]:
    """The spans of one decoded request as rows; a ValueError says why it has none."""
    try:
        return _generic_rows(doc)
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"does not fit the OTLP JSON schema ({exc}); line skipped") from exc
