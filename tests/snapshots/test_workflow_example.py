"""The shipped GitHub Actions example stays runnable: valid YAML, real commands and options."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from canarytrace.cli import app

WORKFLOW = Path(__file__).resolve().parents[2] / "examples/github-actions/weekly-regression.yml"


def test_weekly_workflow_runs_weekly_and_uses_existing_commands() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert workflow[True]["schedule"] == [{"cron": "0 2 * * 0"}]  # `on:` parses as True
    scripts = "\n".join(s.get("run", "") for s in workflow["jobs"]["canary-snapshots"]["steps"])
    assert '--model canary --route "$ROUTE" --snapshot-update' in scripts
    commands = [
        shlex.split(line.strip().split("|")[0])[1:]
        for line in scripts.splitlines()
        if line.strip().startswith(".venv/bin/canarytrace ")
    ]
    assert commands == [["snapshots", "review", "--html", "llm-review.html"]]
    for argv in commands:
        options = [a for a in argv if a.startswith("--")]
        shown = CliRunner().invoke(app, [*[a for a in argv if not a.startswith("-")][:2], "--help"])
        assert shown.exit_code == 0
        assert all(option in shown.output for option in options)
