"""Regenerate tests/fixtures/jaeger and tests/fixtures/tempo from a small synthetic canary.

Run `python tests/analysis/make_fixtures.py` after changing `synth`. The files are the
responses of the documented HTTP APIs for the spans of `fixture_frame()`:

* Jaeger v2 `GET /api/v3/traces?query.service_name=...` →
  `jaeger/api_v3_traces.json`: `{"result": {"resourceSpans": [...]}}`, OTLP JSON with hex
  ids and enums by name (`SPAN_KIND_CLIENT`, `STATUS_CODE_ERROR`) as grpc-gateway writes.
* Tempo `GET /api/search?q=...` → `tempo/api_search.json` (`traces` with `traceID`
  without leading zeros, `rootServiceName`, `rootTraceName`, `startTimeUnixNano`,
  `durationMs`; `metrics`), and `GET /api/traces/<traceID>` →
  `tempo/api_traces_<traceID>.json`: `{"batches": [...]}` with base64 trace/span ids as
  Tempo's protobuf JSON encodes bytes fields.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import polars as pl

from canarytrace.analysis import synth

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_frame() -> pl.DataFrame:
    """The calls behind the fixtures: a handful of users, both tiers, records included."""
    scenario = synth.Scenario(users=6, calls_per_user=3, feedback_rate=0.6, outcome_rate=0.6)
    return synth.calls(synth.with_canary(scenario, error_rate=0.3, latency_median_ms=1200.0))


def _enum_names(span: dict[str, object]) -> dict[str, object]:
    """Jaeger's grpc-gateway writes enums by name, not number."""
    span = copy.deepcopy(span)
    span["kind"] = {1: "SPAN_KIND_INTERNAL", 3: "SPAN_KIND_CLIENT"}[span["kind"]]  # type: ignore[index]
    if span.get("status"):
        span["status"] = {"code": "STATUS_CODE_ERROR"}
    return span


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _tempo_batch(service: str, span: dict[str, object]) -> dict[str, object]:
    span = copy.deepcopy(span)
    span["traceId"] = _b64(str(span["traceId"]))
    span["spanId"] = _b64(str(span["spanId"]))
    if "parentSpanId" in span:
        span["parentSpanId"] = _b64(str(span["parentSpanId"]))
    for link in span.get("links", []):  # type: ignore[union-attr]
        link["traceId"] = _b64(link["traceId"])
        link["spanId"] = _b64(link["spanId"])
    return synth.request(service, [span])["resourceSpans"][0]  # type: ignore[index]


def main() -> None:
    frame = fixture_frame()
    pairs = list(synth.spans(frame))
    jaeger = {"result": synth.request(pairs[0][0], [_enum_names(span) for _, span in pairs])}
    (FIXTURES / "jaeger").mkdir(parents=True, exist_ok=True)
    (FIXTURES / "jaeger" / "api_v3_traces.json").write_text(json.dumps(jaeger, indent=1) + "\n")
    tempo = FIXTURES / "tempo"
    tempo.mkdir(parents=True, exist_ok=True)
    for old in tempo.glob("api_traces_*.json"):
        old.unlink()
    found = []
    for service, span in pairs:
        trace_id = str(span["traceId"])
        short = trace_id.lstrip("0")
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        found.append(
            {
                "traceID": short,
                "rootServiceName": service,
                "rootTraceName": span["name"],
                "startTimeUnixNano": str(start),
                "durationMs": (end - start) // 1_000_000,
            }
        )
        body = {"batches": [_tempo_batch(service, span)]}
        (tempo / f"api_traces_{trace_id}.json").write_text(json.dumps(body, indent=1) + "\n")
    search = {"traces": found, "metrics": {"inspectedTraces": len(found), "inspectedBytes": "0"}}
    (tempo / "api_search.json").write_text(json.dumps(search, indent=1) + "\n")


if __name__ == "__main__":
    main()
