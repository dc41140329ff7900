"""`canarytrace demo`: simulated rollout -> traces -> verdict, as a fresh checkout runs it.

Each run is a separate process, as a user runs it: instrument() sets the global
TracerProvider, which must not leak into other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from canarytrace.analysis.load import load
from canarytrace.cli import RegressKind
from canarytrace.simulator import REGRESSIONS

REPO = Path(__file__).resolve().parents[1]


def run_demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "models.yaml", tmp_path / "models.yaml")
    env = {
        **os.environ,
        "CANARYTRACE_TRACES_DIR": str(tmp_path / "traces"),
        "CANARYTRACE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "160",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run(
        [sys.executable, "-c", "from canarytrace.cli import main; main()", "demo", *options],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def verdicts(tmp_path: Path) -> dict[str, str]:
    state = json.loads((tmp_path / "state" / "last-verdict.json").read_text())
    return {route: entry["verdict"] for route, entry in state.items()}


def test_demo_runs_end_to_end_and_leaves_traces_that_parse(tmp_path: Path) -> None:
    done = run_demo(tmp_path, "--users", "400")

    assert done.returncode == 0, done.stderr
    assert "route chat" in done.stdout and "route summarize" in done.stdout
    assert done.stdout.count("verdict:") == 2
    loaded = load(tmp_path / "traces")
    assert loaded.problems == []
    calls = loaded.calls
    assert calls.height >= 400
    seen = set(calls.select("route", "tier").unique().iter_rows())
    assert seen == {
        ("chat", "production"),
        ("chat", "canary"),
        ("summarize", "production"),
        ("summarize", "canary"),
    }
    assert set(calls["provider"].unique()) == {"anthropic", "openai"}
    assert calls["stream"].any() and not calls["stream"].all()
    # Feedback and outcomes came back joined to their calls.
    assert calls["feedback_score"].drop_nulls().len() > 50
    assert calls["outcome_ok"].drop_nulls().len() > calls.height // 2
    assert calls.filter(pl.col("status") == "ok")["cost_usd"].drop_nulls().len() > 0
    assert set(verdicts(tmp_path).values()) <= {"PROMOTE", "HOLD", "ROLLBACK"}


#: What a call was, leaving out when it ran and how long it took (the machine's doing).
WHAT_HAPPENED = [
    "user_hash",
    "route",
    "tier",
    "response_model",
    "stream",
    "status",
    "error_type",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "feedback_score",
    "outcome_ok",
]


def test_the_same_seed_gives_the_same_calls_whatever_the_threads_interleaving(
    tmp_path: Path,
) -> None:
    """Its sixteen users' threads interleave differently in every run."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        done = run_demo(folder, "--users", "300")
        assert done.returncode == 0, done.stderr

    def calls(folder: Path) -> pl.DataFrame:
        return load(folder / "traces").calls.select(WHAT_HAPPENED).sort(pl.all())

    assert calls(first).equals(calls(second))
    assert calls(first)["error_type"].drop_nulls().len() > 0  # failures, fixed too


@pytest.mark.slow
def test_demo_with_a_canary_regressed_in_errors_says_rollback(tmp_path: Path) -> None:
    done = run_demo(tmp_path, "--users", "800", "--stage", "50", "--regress", "errors")

    assert done.returncode == 0, done.stderr
    assert verdicts(tmp_path)["summarize"] == "ROLLBACK"
    assert "error rate" in done.stdout


@pytest.mark.slow
def test_demo_with_a_canary_that_refuses_says_rollback_on_the_refusal_rate(
    tmp_path: Path,
) -> None:
    """Every refused call succeeds: only the refusal rate sees them."""
    done = run_demo(tmp_path, "--users", "800", "--stage", "50", "--regress", "refusals")

    assert done.returncode == 0, done.stderr
    assert set(verdicts(tmp_path).values()) == {"ROLLBACK"}
    assert "refusal rate" in done.stdout
    assert ", refused" in done.stdout  # refused canary calls are linked as failing ones


def test_the_demo_offers_exactly_the_simulators_regressions() -> None:
    # The CLI spells the choices itself so that `canarytrace --help` need not import the
    # simulator; this keeps the two lists in step.
    assert [kind.value for kind in RegressKind] == list(REGRESSIONS)


@pytest.mark.parametrize("stage", ["0", "30", "150"])
def test_a_stage_no_route_has_is_refused_not_run_at_the_registrys(
    tmp_path: Path, stage: str
) -> None:
    """It ran at each route's own stage, so `--stage 30` showed a verdict on 25 %."""
    done = run_demo(tmp_path, "--stage", stage, "--users", "10")
    assert done.returncode == 2, done.stderr
    assert f"{stage}: route chat rolls out in stages 5, 25, 50, 100" in " ".join(
        done.stderr.split()
    )
    assert not (tmp_path / "traces").exists()  # refused before any call
