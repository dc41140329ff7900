"""`canarytrace simulate` runs as its own process and answers the real SDKs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest
from typer.testing import CliRunner

from canarytrace.cli import app

CANARYTRACE = Path(sys.executable).with_name("canarytrace")


@pytest.mark.integration
def test_simulate_serves_both_providers_until_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(CANARYTRACE), "simulate", "--port", "0", "--seed", "7", "--time-scale", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        openai_url = process.stdout.readline().split()[-1]
        anthropic_url = process.stdout.readline().split()[-1]
        assert openai_url.endswith("/v1")
        oai = openai.OpenAI(base_url=openai_url, api_key="test-key", max_retries=0)
        chat = oai.chat.completions.create(
            model="gpt-4o-2024-11-20", messages=[{"role": "user", "content": "Hello"}]
        )
        assert chat.model == "gpt-4o-2024-11-20"
        ant = anthropic.Anthropic(base_url=anthropic_url, api_key="test-key", max_retries=0)
        message = ant.messages.create(
            model="claude-3-5-sonnet-20241022",
            max_tokens=30,
            messages=[{"role": "user", "content": "Hello"}],
        )
        assert message.model == "claude-3-5-sonnet-20241022"
        oai.close()
        ant.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()


def test_simulate_reports_a_bad_profiles_file(tmp_path: Path) -> None:
    bad = tmp_path / "profiles.yaml"
    bad.write_text("models:\n  gpt-x:\n    provider: nobody\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", "--profiles", str(bad), "--port", "0"])
    assert result.exit_code == 1
    assert f"{bad}:3: models.gpt-x.provider" in " ".join(result.output.split())
