"""`canarytrace compare` through the real SDKs against the seeded simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from canarytrace.cli import app
from canarytrace.errors import SnapshotError
from canarytrace.simulator import Simulator
from canarytrace.snapshots.compare import compare, load_prompts
from canarytrace.snapshots.similarity import Similarity

EXAMPLE = Path(__file__).resolve().parents[2] / "models.yaml"
BASELINE, CANDIDATE = "claude-3-5-sonnet-20241022", "claude-3-opus-20241219"


@pytest.fixture
def sim(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, local_model: Similarity
) -> Iterator[Simulator]:
    """A simulator (seed 0 unless parametrized) that the SDKs reach through their own
    environment variables."""
    with Simulator(seed=getattr(request, "param", 0), time_scale=0) as simulator:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", simulator.anthropic_base_url)
        monkeypatch.setenv("OPENAI_BASE_URL", simulator.openai_base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        yield simulator


@pytest.fixture
def prompts_file(sim: Simulator, tmp_path: Path) -> Path:
    """The simulator's known prompts as a PROMPTS.yaml, without their facts as checks:
    what separates right from wrong here is similarity and the numbers rule."""
    path = tmp_path / "prompts.yaml"
    entries = [{"id": p.id, "prompt": p.prompt, "max_tokens": 300} for p in sim.prompts]
    YAML().dump({"prompts": entries}, path)
    return path


@pytest.mark.parametrize("sim", [0, 1, 2], indirect=True, ids=lambda seed: f"seed{seed}")
def test_compare_separates_a_regressed_candidate_from_an_equivalent_one(
    sim: Simulator, prompts_file: Path
) -> None:
    prompts = load_prompts(prompts_file)
    equivalent = compare(BASELINE, CANDIDATE, prompts, runs=5)
    assert equivalent.verdict == "EQUIVALENT", equivalent.reason
    assert equivalent.p_value > 0.1

    sim.regress(CANDIDATE, "quality")  # 30 % more wrong answers to these prompts
    regressed = compare(BASELINE, CANDIDATE, prompts, runs=5)
    assert regressed.verdict == "REGRESSED", regressed.reason
    assert regressed.p_value < 0.05
    worse = [r for r in regressed.results if r.worrying]
    assert worse, "the regression shows on individual prompts"
    # A flagged prompt's worst candidate answer really is a wrong answer of the simulator.
    for result in worse:
        assert result.worst is not None
        assert sim.answer_is_correct(result.prompt.prompt, result.worst[1]) is False


def test_cli_compare_reports_the_verdict_with_exit_code(sim: Simulator, prompts_file: Path) -> None:
    args = ["compare", "--baseline", BASELINE, "--candidate", CANDIDATE, str(prompts_file)]
    same = CliRunner().invoke(app, [*args, "--runs", "4"])
    assert same.exit_code == 0, same.output
    assert "EQUIVALENT: no evidence of a regression" in same.output
    assert "all-MiniLM-L6-v2 (local)" in same.output

    sim.regress(CANDIDATE, "quality")
    worse = CliRunner().invoke(app, [*args, "--runs", "4"])
    assert worse.exit_code == 1, worse.output
    assert "REGRESSED: candidate worrying in" in worse.output
    # Like the article's investigate_regression: old and new answer side by side.
    assert "(medoid)" in worse.output and "(worst run)" in worse.output


def test_compare_calls_openai_models_by_registry_tier(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYTRACE_REGISTRY", str(EXAMPLE))
    summaries = [p for p in sim.prompts if p.task == "summarize"]
    path = tmp_path / "prompts.yaml"
    YAML().dump(
        [{"id": p.id, "prompt": p.prompt, "must_contain": list(p.facts)} for p in summaries], path
    )
    result = compare("production", "canary", load_prompts(path), runs=3, route="summarize")
    assert (result.baseline.model_id, result.candidate.model_id) == (
        "gpt-4-0125-preview",
        "gpt-4o-2024-11-20",
    )
    assert all(len(r.candidate) == 3 and len(r.baseline) == 3 for r in result.results)


def test_one_run_per_model_is_refused_as_noise(sim: Simulator, prompts_file: Path) -> None:
    with pytest.raises(SnapshotError, match="at least 2 runs"):
        compare(BASELINE, CANDIDATE, load_prompts(prompts_file), runs=1)


def test_an_alias_candidate_is_refused_before_any_call(sim: Simulator, prompts_file: Path) -> None:
    result = CliRunner().invoke(
        app, ["compare", "--baseline", BASELINE, "--candidate", "gpt-4o", str(prompts_file)]
    )
    assert result.exit_code == 2
    assert "--candidate gpt-4o: undated alias" in result.output


def test_a_bad_prompts_file_names_the_entry_and_key(tmp_path: Path) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text("prompts:\n  - prompt: hi\n  - {prompt: there, must_contian: [x]}\n")
    with pytest.raises(SnapshotError, match=r"prompts\[1\]: unknown key\(s\) \['must_contian'\]"):
        load_prompts(path)
