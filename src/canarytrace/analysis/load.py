"""Every trace source → one polars frame of calls (schema.CALLS_SCHEMA).

Sources (`load(source)`):

* OTLP JSON lines as the OpenTelemetry Collector's `file` exporter writes them, plain or
  zstd-compressed (`.zst`), one file, rotated files, a folder (searched recursively for
  `*.jsonl`, `*.json`, `*.zst`, `*.parquet`) or a glob; `None` means the embedded folder
  (`$CANARYTRACE_TRACES_DIR`, else `./.canarytrace/traces/`);
* Parquet written by `canarytrace export --parquet` (read lazily, filters pushed down);
* `jaeger+http://HOST:PORT?service=NAME&lookback=1h[&limit=N]`: Jaeger v2's query API
  (`GET /api/v3/traces`, OTLP JSON);
* `tempo+http://HOST:PORT?q=TRACEQL&lookback=1h[&limit=N]`: Tempo's HTTP API
  (`GET /api/search?q=` for trace ids, then `GET /api/traces/{id}` for each trace).

How JSON is read: lines are taken in chunks of a bounded number of bytes and each chunk
is parsed by polars (`read_ndjson` with a fixed OTLP schema, in Rust); span attributes
are picked out with list expressions, never in a Python loop. Only the chunk's LLM
calls and feedback/outcome records are kept, so memory grows with the number of calls,
not with the size of the JSON. A chunk that polars rejects is re-read line by line, so
a malformed or truncated line costs only that line: it is recorded in
`Loaded.problems` with its file and line number and every other line is kept.

Trace and span ids are normalised to lowercase hex; base64 ids (what Tempo's
`/api/traces` returns for the proto `bytes` fields) are decoded. An LLM call is a span
with `gen_ai.operation.name`; a call nested inside another call of the same trace (for
example anthropic's own native span under canarytrace's) is dropped so each call counts
once, and a span seen twice (overlapping files) is kept once.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import io
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from canarytrace import attributes as A
from canarytrace.analysis.schema import CALLS_SCHEMA, UTC_TIME, conform, empty_calls
from canarytrace.errors import TraceSourceError

CHUNK_BYTES = 32 * 1024 * 1024
_FILE_SUFFIXES = (".jsonl", ".json", ".zst", ".parquet")
_HTTP_TIMEOUT_S = 30.0

_VALUE = pl.Struct(
    {
        "stringValue": pl.String,
        "intValue": pl.String,
        "doubleValue": pl.Float64,
        "boolValue": pl.Boolean,
    }
)
_KEYVALUES = pl.List(pl.Struct({"key": pl.String, "value": _VALUE}))
_SPAN = pl.Struct(
    {
        "traceId": pl.String,
        "spanId": pl.String,
        "parentSpanId": pl.String,
        "name": pl.String,
        "startTimeUnixNano": pl.String,
        "endTimeUnixNano": pl.String,
        "attributes": _KEYVALUES,
        "status": pl.Struct({"code": pl.Int64}),
        "links": pl.List(pl.Struct({"traceId": pl.String, "spanId": pl.String})),
    }
)
_REQUEST_SCHEMA = {
    "resourceSpans": pl.List(
        pl.Struct(
            {
                "resource": pl.Struct({"attributes": _KEYVALUES}),
                "scopeSpans": pl.List(pl.Struct({"spans": pl.List(_SPAN)})),
            }
        )
    )
}
_RECORD_NAMES = (A.FEEDBACK_SPAN_NAME, A.OUTCOME_SPAN_NAME)
# Tempo: the traces holding LLM calls and the feedback/outcome records that judge them.
DEFAULT_TRACEQL = (
    f'{{ span.{A.TIER} != nil || name = "{A.FEEDBACK_SPAN_NAME}"'
    f' || name = "{A.OUTCOME_SPAN_NAME}" }}'
)


@dataclass(frozen=True)
class Problem:
    """A line (or a whole source) that could not be read, and why."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


@dataclass
class Loaded:
    """What `load` found: the frame of calls and every problem on the way."""

    calls: pl.DataFrame
    problems: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


# --- attribute extraction (pure polars expressions) ----------------------------------


def _attr(key: str, part: str, col: str = "attributes") -> pl.Expr:
    return (
        pl.col(col)
        .list.eval(
            pl.element().filter(pl.element().struct.field("key") == key).struct.field("value")
        )
        .list.first()
        .struct.field(part)
    )


def _str(key: str) -> pl.Expr:
    return _attr(key, "stringValue")


def _int(key: str) -> pl.Expr:
    return pl.coalesce(
        _attr(key, "intValue").cast(pl.Int64, strict=False),
        _attr(key, "doubleValue").cast(pl.Int64, strict=False),
    )


def _float(key: str) -> pl.Expr:
    return pl.coalesce(
        _attr(key, "doubleValue"), _attr(key, "intValue").cast(pl.Float64, strict=False)
    )


def _bool(key: str) -> pl.Expr:
    return pl.coalesce(_attr(key, "boolValue"), _str(key).str.to_lowercase() == "true")


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


def _nanos(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Int64, strict=False)


def _flatten(requests: pl.DataFrame) -> pl.DataFrame:
    """ExportTraceServiceRequest rows → one row per span with the columns we need."""
    spans = (
        requests.lazy()
        .select(pl.col("resourceSpans").explode())
        .drop_nulls()
        .select(
            pl.col("resourceSpans")
            .struct.field("resource")
            .struct.field("attributes")
            .list.eval(
                pl.element()
                .filter(pl.element().struct.field("key") == "service.name")
                .struct.field("value")
                .struct.field("stringValue")
            )
            .list.first()
            .alias("service"),
            pl.col("resourceSpans").struct.field("scopeSpans"),
        )
        .explode("scopeSpans")
        .drop_nulls("scopeSpans")
        .select("service", pl.col("scopeSpans").struct.field("spans"))
        .explode("spans")
        .drop_nulls("spans")
        .unnest("spans")
    )
    start = _nanos(pl.col("startTimeUnixNano"))
    end = _nanos(pl.col("endTimeUnixNano"))
    link = pl.col("links").list.first().struct
    return spans.select(
        _hex_id(pl.col("traceId"), 16).alias("trace_id"),
        _hex_id(pl.col("spanId"), 8).alias("span_id"),
        _hex_id(pl.col("parentSpanId"), 8).alias("parent_span_id"),
        pl.col("service"),
        pl.col("name"),
        pl.from_epoch(start // 1000, time_unit="us").dt.replace_time_zone("UTC").alias("start"),
        ((end - start) / 1e6).alias("duration_ms"),
        pl.when(pl.col("status").struct.field("code") == 2)
        .then(pl.lit("error"))
        .otherwise(pl.lit("ok"))
        .alias("status"),
        _str(A.ERROR_TYPE).alias("error_type"),
        pl.coalesce(_str(A.GEN_AI_PROVIDER_NAME), _str(A.GEN_AI_SYSTEM)).alias("provider"),
        _str(A.GEN_AI_OPERATION_NAME).alias("operation"),
        _str(A.ROUTE).alias("route"),
        _str(A.TIER).alias("tier"),
        _str(A.GEN_AI_REQUEST_MODEL).alias("request_model"),
        _str(A.GEN_AI_RESPONSE_MODEL).alias("response_model"),
        _bool(A.PINNED).alias("pinned"),
        _bool(A.ALIAS_DRIFT).alias("alias_drift"),
        _int(A.GEN_AI_USAGE_INPUT_TOKENS).alias("input_tokens"),
        _int(A.GEN_AI_USAGE_OUTPUT_TOKENS).alias("output_tokens"),
        _float(A.COST_USD).alias("cost_usd"),
        _str(A.USER_HASH).alias("user_hash"),
        _int(A.COHORT_BUCKET).alias("bucket"),
        _int(A.ROLLOUT_PERCENT).alias("rollout_percent"),
        _bool(A.GEN_AI_REQUEST_STREAM).alias("stream"),
        _float(A.TIME_TO_FIRST_TOKEN_MS).alias("ttft_ms"),
        _hex_id(pl.coalesce(_str(A.TARGET_TRACE_ID), link.field("traceId")), 16).alias(
            "target_trace_id"
        ),
        _hex_id(pl.coalesce(_str(A.TARGET_SPAN_ID), link.field("spanId")), 8).alias(
            "target_span_id"
        ),
        _float(A.FEEDBACK_SCORE).alias("score"),
        _bool(A.OUTCOME_OK).alias("ok"),
        _str(A.OUTCOME_KIND).alias("kind"),
    ).collect()


_CALL_COLUMNS = [c for c in CALLS_SCHEMA if c not in ("feedback_score", "feedback_count")]
_CALL_COLUMNS = [c for c in _CALL_COLUMNS if not c.startswith("outcome_")]


@dataclass
class _Parts:
    """Calls and records collected chunk by chunk, joined once at the end."""

    calls: list[pl.DataFrame] = field(default_factory=list)
    feedback: list[pl.DataFrame] = field(default_factory=list)
    outcomes: list[pl.DataFrame] = field(default_factory=list)
    parquet: list[pl.LazyFrame] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add_spans(self, spans: pl.DataFrame) -> None:
        is_call = pl.col("operation").is_not_null() & ~pl.col("name").is_in(_RECORD_NAMES)
        self.calls.append(spans.filter(is_call).select(_CALL_COLUMNS))
        target = ["target_trace_id", "target_span_id"]
        self.feedback.append(
            spans.filter(pl.col("name") == A.FEEDBACK_SPAN_NAME).select(*target, "score")
        )
        self.outcomes.append(
            spans.filter(pl.col("name") == A.OUTCOME_SPAN_NAME).select(
                *target, "start", "ok", "kind"
            )
        )


def _parse_chunk(lines: list[bytes], source: str, first_line: int, parts: _Parts) -> None:
    """Parse a chunk of JSON lines numbered from `first_line`."""
    _parse_numbered(
        [(first_line + i, ln) for i, ln in enumerate(lines) if ln.strip()], source, parts
    )


def _parse_numbered(numbered: list[tuple[int, bytes]], source: str, parts: _Parts) -> None:
    """Parse (line number, line) pairs; on failure, find and report the bad lines."""
    if not numbered:
        return
    try:
        frame = pl.read_ndjson(
            io.BytesIO(b"\n".join(ln for _, ln in numbered)), schema=_REQUEST_SCHEMA
        )
    except Exception:  # polars rejects the chunk as a whole: find the culprits line by line
        good: list[tuple[int, bytes]] = []
        for number, line in numbered:
            problem = _check_line(line)
            if problem:
                parts.problems.append(Problem(source, number, problem))
            else:
                good.append((number, line))
        if len(good) < len(numbered):
            _parse_numbered(good, source, parts)
        else:  # valid JSON each, yet polars refused: go one by one
            for number, line in good:
                _parse_one(line, source, number, parts)
        return
    empty = frame.select(pl.col("resourceSpans").is_null()).to_series()
    for (number, _), missing in zip(numbered, empty, strict=True):
        if missing:
            parts.problems.append(
                Problem(source, number, "not an OTLP ExportTraceServiceRequest (no resourceSpans)")
            )
    parts.add_spans(_flatten(frame))


def _parse_one(line: bytes, source: str, number: int, parts: _Parts) -> None:
    try:
        frame = pl.read_ndjson(io.BytesIO(line), schema=_REQUEST_SCHEMA)
    except Exception as exc:
        parts.problems.append(Problem(source, number, f"does not fit the OTLP JSON schema: {exc}"))
        return
    if frame["resourceSpans"].null_count():
        parts.problems.append(
            Problem(source, number, "not an OTLP ExportTraceServiceRequest (no resourceSpans)")
        )
        return
    parts.add_spans(_flatten(frame))


def _check_line(line: bytes) -> str | None:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"malformed or truncated JSON ({exc.msg} at column {exc.colno}); line skipped"
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        return "not an OTLP ExportTraceServiceRequest (no resourceSpans list)"
    return None


# --- files -----------------------------------------------------------------------------


def _chunks(stream: io.BufferedIOBase, chunk_bytes: int) -> Iterator[list[bytes]]:
    """Whole lines in chunks of about `chunk_bytes`; a last line without newline included."""
    rest = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        rest = block[cut + 1 :]
        yield block[:cut].split(b"\n")
    if rest:
        yield [rest]


def _read_json_file(path: Path, parts: _Parts, chunk_bytes: int) -> None:
    source = str(path)
    line = 1
    try:
        with path.open("rb") as raw:
            if path.suffix == ".zst":
                import zstandard

                stream: io.BufferedIOBase = zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[assignment]
            else:
                stream = raw  # type: ignore[assignment]
            for lines in _chunks(stream, chunk_bytes):
                _parse_chunk(lines, source, line, parts)
                line += len(lines)
    except OSError as exc:
        parts.problems.append(Problem(source, None, f"cannot read: {exc}"))
    except Exception as exc:  # zstandard.ZstdError on a truncated or corrupt frame
        parts.problems.append(
            Problem(source, line, f"compressed stream broken ({exc}); lines before it were kept")
        )


def _files(source: Path | str) -> list[Path]:
    text = str(source)
    if any(ch in text for ch in "*?["):
        found = [Path(p) for p in globlib.glob(text, recursive=True)]
    elif Path(text).is_dir():
        found = [p for p in Path(text).rglob("*") if p.is_file()]
    else:
        return [Path(text)]
    return sorted(p for p in found if p.is_file() and p.name.endswith(_FILE_SUFFIXES))


def default_source() -> Path:
    """The embedded folder the instrumentation writes to when no OTLP endpoint is set."""
    return Path(os.environ.get("CANARYTRACE_TRACES_DIR") or ".canarytrace/traces")


# --- Jaeger and Tempo -------------------------------------------------------------------


def _http_json(url: str) -> list[dict[str, object]]:
    """GET `url`; one JSON document, or several back to back (a streamed response)."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT_S) as resp:
            body = resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise TraceSourceError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TraceSourceError(f"{url}: cannot connect ({exc}); is the server running?") from exc
    docs: list[dict[str, object]] = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(body):
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if pos >= len(body):
            break
        try:
            doc, pos = decoder.raw_decode(body, pos)
        except json.JSONDecodeError as exc:
            raise TraceSourceError(f"{url}: response is not JSON ({exc.msg})") from exc
        docs.append(doc)
    return docs


def _resource_spans(doc: dict[str, object]) -> list[object] | None:
    """The resourceSpans of any of the wrappers: OTLP, Jaeger `result`, Tempo v1/v2."""
    for key in ("result", "trace"):
        inner = doc.get(key)
        if isinstance(inner, dict):
            doc = inner
    spans = doc.get("resourceSpans", doc.get("batches"))
    return spans if isinstance(spans, list) else None


def _lookback(query: dict[str, str], now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    return now - parse_duration(query.get("lookback", "1h")), now


def _jaeger(url: str, parts: _Parts, now: dt.datetime) -> None:
    parsed = urllib.parse.urlsplit(url.removeprefix("jaeger+"))
    query = dict(urllib.parse.parse_qsl(parsed.query))
    if "service" not in query:
        raise TraceSourceError(f"{url}: add ?service=NAME (the service whose traces to read)")
    start, end = _lookback(query, now)
    params = {
        "query.service_name": query["service"],
        "query.start_time_min": start.isoformat().replace("+00:00", "Z"),
        "query.start_time_max": end.isoformat().replace("+00:00", "Z"),
        # Jaeger v2's HTTP gateway (v1.76) reads the limit as query.num_traces and answers
        # 500 without it; checked against the real Jaeger in tests/integration.
        "query.num_traces": query.get("limit", "1000"),
    }
    base = f"{parsed.scheme}://{parsed.netloc}"
    api = f"{base}/api/v3/traces?{urllib.parse.urlencode(params)}"
    _feed_docs(api, _http_json(api), parts)


def _jaeger_error(doc: dict[str, object]) -> str | None:
    err = doc.get("error")
    return json.dumps(err) if err else None


def _tempo(url: str, parts: _Parts, now: dt.datetime) -> None:
    parsed = urllib.parse.urlsplit(url.removeprefix("tempo+"))
    query = dict(urllib.parse.parse_qsl(parsed.query))
    start, end = _lookback(query, now)
    params = {
        "q": query.get("q", DEFAULT_TRACEQL),
        "start": str(int(start.timestamp())),
        "end": str(int(end.timestamp())),
        "limit": query.get("limit", "1000"),
    }
    base = f"{parsed.scheme}://{parsed.netloc}"
    search = f"{base}/api/search?{urllib.parse.urlencode(params)}"
    found = _http_json(search)
    traces = found[0].get("traces", []) if found else []
    if not isinstance(traces, list):
        raise TraceSourceError(f"{search}: no `traces` list in the search response")
    for trace in traces:
        trace_id = str(trace.get("traceID", "")).rjust(32, "0")
        api = f"{base}/api/traces/{trace_id}"
        _feed_docs(api, _http_json(api), parts)


def _feed_docs(url: str, docs: list[dict[str, object]], parts: _Parts) -> None:
    lines: list[bytes] = []
    for number, doc in enumerate(docs, 1):
        error = _jaeger_error(doc)
        if error:
            parts.problems.append(Problem(url, number, f"server answered with an error: {error}"))
            continue
        spans = _resource_spans(doc)
        if spans is None:
            parts.problems.append(Problem(url, number, "no resourceSpans/batches in the response"))
            continue
        lines.append(json.dumps({"resourceSpans": spans}).encode())
    _parse_chunk(lines, url, 1, parts)


# --- the public face ------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '30m', '6h', '2d', '1w' → timedelta; anything else is a ValueError."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30m, 6h, 2d")
    return dt.timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])


def parse_time(
    value: str | dt.datetime | None, now: dt.datetime | None = None
) -> dt.datetime | None:
    """A point in time: a datetime, an ISO 8601 string, or a duration back from now ('6h')."""
    if value is None or isinstance(value, dt.datetime):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value
    now = now or dt.datetime.now(dt.UTC)
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"{value!r}: give an ISO time (2026-06-02T10:00) or a duration (6h)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _join(parts: _Parts) -> pl.LazyFrame:
    """Concatenate the chunks, drop duplicates and nested calls, join feedback/outcomes."""
    frames = [f for f in parts.calls if f.height]
    calls = pl.concat(frames).lazy() if frames else empty_calls().select(_CALL_COLUMNS).lazy()
    calls = calls.unique(["trace_id", "span_id"], keep="first", maintain_order=True)
    parents = calls.select(pl.col("trace_id"), pl.col("span_id").alias("parent_span_id")).unique()
    calls = calls.join(parents, on=["trace_id", "parent_span_id"], how="anti", nulls_equal=False)
    key = ["trace_id", "span_id"]
    target = {"target_trace_id": "trace_id", "target_span_id": "span_id"}
    fb_frames = [f for f in parts.feedback if f.height]
    oc_frames = [f for f in parts.outcomes if f.height]
    if fb_frames:
        feedback = (
            pl.concat(fb_frames)
            .lazy()
            .rename(target)
            .group_by(key)
            .agg(
                pl.col("score").mean().alias("feedback_score"),
                pl.col("score").count().cast(pl.Int64).alias("feedback_count"),
            )
        )
        calls = calls.join(feedback, on=key, how="left")
    else:
        calls = calls.with_columns(
            pl.lit(None, pl.Float64).alias("feedback_score"), pl.lit(0).alias("feedback_count")
        )
    if oc_frames:
        outcomes = (
            pl.concat(oc_frames)
            .lazy()
            .rename(target)
            .sort("start")
            .group_by(key)
            .agg(
                pl.col("ok").all().alias("outcome_ok"),
                pl.col("kind").filter(~pl.col("ok")).first().alias("outcome_kind"),
            )
        )
        calls = calls.join(outcomes, on=key, how="left")
    else:
        calls = calls.with_columns(
            pl.lit(None, pl.Boolean).alias("outcome_ok"),
            pl.lit(None, pl.String).alias("outcome_kind"),
        )
    return calls.with_columns(pl.col("feedback_count").fill_null(0))


def _window(
    frame: pl.LazyFrame, since: dt.datetime | None, until: dt.datetime | None
) -> pl.LazyFrame:
    if since is not None:
        frame = frame.filter(pl.col("start") >= since)
    if until is not None:
        frame = frame.filter(pl.col("start") < until)
    return frame


def _read_parquet(path: Path, parts: _Parts) -> None:
    try:
        parts.parquet.append(conform(pl.scan_parquet(path)))
    except KeyError as exc:
        raise TraceSourceError(
            f"{path}: not a canarytrace calls file (missing columns {exc.args[0]}); "
            "write one with `canarytrace export SOURCE --parquet OUT`"
        ) from exc
    except (OSError, pl.exceptions.PolarsError) as exc:
        parts.problems.append(Problem(str(path), None, f"unreadable Parquet: {exc}"))


def _collect_sources(
    source: str | Path | Iterable[str | Path] | None,
    parts: _Parts,
    now: dt.datetime,
    chunk_bytes: int,
) -> list[str]:
    if source is None:
        source = default_source()
    items = [source] if isinstance(source, str | Path) else list(source)
    names: list[str] = []
    for item in items:
        text = str(item)
        if text.startswith(("jaeger+http://", "jaeger+https://")):
            _jaeger(text, parts, now)
            names.append(text)
            continue
        if text.startswith(("tempo+http://", "tempo+https://")):
            _tempo(text, parts, now)
            names.append(text)
            continue
        files = _files(item)
        if not files or not all(f.exists() for f in files):
            raise TraceSourceError(
                f"{text}: no trace files found (looked for {', '.join(_FILE_SUFFIXES)}); "
                "point at a file, a folder, a glob, or jaeger+http:// / tempo+http://"
            )
        for path in files:
            names.append(str(path))
            if path.suffix == ".parquet":
                _read_parquet(path, parts)
            else:
                _read_json_file(path, parts, chunk_bytes)
    return names


def scan(
    source: str | Path | Iterable[str | Path] | None = None,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[pl.LazyFrame, list[Problem], list[str]]:
    """Like `load`, but the frame stays lazy (Parquet is scanned, not read).

    Hand the LazyFrame to `metrics`/`judge` to aggregate without materialising every
    call: with Parquet input memory then stays flat as the input grows.
    """
    now = dt.datetime.now(dt.UTC)
    start, end = parse_time(since, now), parse_time(until, now)
    parts = _Parts()
    names = _collect_sources(source, parts, now, chunk_bytes)
    lazies = list(parts.parquet)
    if parts.calls or not lazies:
        lazies.insert(0, conform(_join(parts)))
    frame = pl.concat(lazies) if len(lazies) > 1 else lazies[0]
    return _window(frame, start, end), parts.problems, names


def load(
    source: str | Path | Iterable[str | Path] | None = None,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Loaded:
    """Read `source` into the frame of calls, sorted by start time.

    **Parameters**

    * `source`: a file, folder, glob, `.parquet`, `jaeger+http://...`, `tempo+http://...`,
      or a list of them; *(optional)* default the embedded folder.
    * `since` / `until`: *(optional)* keep calls that started in [since, until): a datetime,
      an ISO time, or a duration back from now such as `"6h"`.

    **Returns:** `Loaded(calls, problems, sources)`. Raises `TraceSourceError` when a
    source cannot be read at all (missing path, server down); a bad line is a problem,
    not an error.
    """
    frame, problems, names = scan(source, since=since, until=until, chunk_bytes=chunk_bytes)
    calls = frame.sort("start", "trace_id", "span_id").collect()
    return Loaded(calls=calls, problems=problems, sources=names)


def export_parquet(
    source: str | Path | Iterable[str | Path] | None,
    out: str | Path,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
) -> Loaded:
    """Convert `source` to one Parquet file of calls (what `canarytrace export` does)."""
    loaded = load(source, since=since, until=until)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    loaded.calls.write_parquet(out, compression="zstd", statistics=True)
    return loaded


__all__ = [
    "CALLS_SCHEMA",
    "UTC_TIME",
    "Loaded",
    "Problem",
    "default_source",
    "export_parquet",
    "load",
    "parse_duration",
    "parse_time",
    "scan",
]
