"""Report helpers: trace links, value formats, the JSON for CI, the latest verdict."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from canarytrace.analysis import synth
from canarytrace.analysis.judge import Verdict, judge
from canarytrace.analysis.report import (
    latest_verdict,
    print_judgement,
    save_latest,
    to_json,
    trace_link,
)


def test_trace_links_for_jaeger_tempo_and_templates() -> None:
    tid = "ab" * 16
    assert trace_link(tid, jaeger_url="http://j:16686/") == f"http://j:16686/trace/{tid}"
    assert trace_link(tid, tempo_url="http://t:3200") == f"http://t:3200/api/traces/{tid}"
    grafana = "http://g/explore?traceId={trace_id}"
    assert trace_link(tid, tempo_url=grafana) == f"http://g/explore?traceId={tid}"
    assert trace_link(tid) is None


def test_console_json_and_latest_verdict(tmp_path: Path) -> None:
    scenario = synth.with_canary(synth.Scenario(users=1500, seed=2), latency_median_ms=1300.0)
    judgement = judge(synth.calls(scenario))
    console = Console(record=True, width=160)
    print_judgement(judgement, console, tempo_url="http://t:3200")
    text = console.export_text()
    assert "verdict: ROLLBACK" in text and "latency p95 *" in text and "+10%" in text
    data = json.loads(to_json(judgement))
    assert data["exit_code"] == 1
    assert data["routes"]["chat"]["metrics"][2]["name"] == "latency_p95"
    state = save_latest(judgement, tmp_path / "last.json")
    assert latest_verdict("chat", state) == Verdict.ROLLBACK
    assert latest_verdict("summarize", state) is None
