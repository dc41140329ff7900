"""The pytest plugin end to end: whole pytest sessions through pytester, real local model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from canarytrace.snapshots.similarity import Similarity

pytest_plugins = ["pytester"]

INNER_TEST = """
import json, os

from canarytrace.snapshots import LLMOutput


def test_answer(llm_model, llm_snapshot):
    checks = json.loads(os.environ.get("LLM_CHECKS", "{}"))
    assert llm_snapshot == LLMOutput(os.environ["LLM_OUTPUT"], **checks)
"""


def run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    *args: str,
    checks: dict[str, object] | None = None,
) -> pytest.RunResult:
    monkeypatch.setenv("LLM_OUTPUT", output)
    monkeypatch.setenv("LLM_CHECKS", json.dumps(checks or {}))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def snapshot_file(root: Path) -> str:
    (path,) = root.glob("__snapshots__/*.llm")
    return path.read_text(encoding="utf-8")


@pytest.fixture
def suite(pytester: pytest.Pytester, local_model: Similarity) -> pytest.Pytester:
    """A project with the example models.yaml and one snapshot test of an LLM answer."""
    example = Path(__file__).resolve().parents[2] / "models.yaml"
    (pytester.path / "models.yaml").write_text(example.read_text(encoding="utf-8"))
    pytester.makepyfile(test_answer=INNER_TEST)
    return pytester


def test_paraphrase_passes_and_a_changed_fact_fails(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, semantic: Similarity
) -> None:
    old = "The capital of France is Paris."
    paraphrase = "Paris is the capital city of France."
    changed = "The capital of France is Lyon."
    # The model really separates them around the default threshold (0.80).
    assert semantic(old, paraphrase) >= 0.90
    assert semantic(old, changed) < 0.78

    run(suite, monkeypatch, old, "--route", "chat", "--snapshot-update").assert_outcomes(passed=1)
    run(suite, monkeypatch, paraphrase, "--route", "chat").assert_outcomes(passed=1)

    failed = run(suite, monkeypatch, changed, "--route", "chat")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            "*LLM output changed: WORRYING (meaning changed)*",
            f"*similarity {semantic(old, changed):.3f} (threshold 0.80; all-MiniLM-L6-v2 (local))*",
            "*old (claude-3-5-sonnet-20241022)*│ new (claude-3-5-sonnet-20241022)*",
            "*The capital of France is Paris.*│ The capital of France is Lyon.*",
        ]
    )


def test_a_dropped_required_phrase_fails_even_when_the_meaning_is_close(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, semantic: Similarity
) -> None:
    old = "To sign in, enter your email and password, then type the two-factor code from your app."
    new = "To sign in, enter your email and your password, then type the code shown in your app."
    assert semantic(old, new) >= 0.80  # close enough in meaning: only the check catches it
    checks = {"must_contain": ["two-factor code"]}
    args = ("--route", "chat")
    run(suite, monkeypatch, old, *args, "--snapshot-update", checks=checks).assert_outcomes(
        passed=1
    )
    failed = run(suite, monkeypatch, new, *args, checks=checks)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            "*WORRYING (required information lost)*",
            "*failed: missing required 'two-factor code'*",
        ]
    )


def test_broken_json_fails_and_reindented_json_passes(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {"name": "Ada Lovelace", "role": "admin", "active": True}
    checks = {"json_keys": ["name", "role"]}
    args = ("--route", "chat")
    run(
        suite, monkeypatch, json.dumps(user), *args, "--snapshot-update", checks=checks
    ).assert_outcomes(passed=1)
    run(suite, monkeypatch, json.dumps(user, indent=2), *args, checks=checks).assert_outcomes(
        passed=1
    )
    failed = run(
        suite, monkeypatch, f"Sure! Here is the user: {json.dumps(user)}", *args, checks=checks
    )
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*WORRYING (now fails to parse)*", "*not valid JSON any more*"])


def test_model_canary_resolves_through_the_registry_into_header_and_file(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        test_model="def test_model(llm_model):\n    assert llm_model == 'claude-3-opus-20241219'\n"
    )
    result = run(
        suite, monkeypatch, "Paris.", "--model", "canary", "--route", "chat", "--snapshot-update"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "canarytrace: model claude-3-opus-20241219 (canary of route chat); pinned 2026-06-01 "
            "(Canary candidate for deeper reasoning on long chats.)"
        ]
    )
    stored = snapshot_file(suite.path)
    assert "  model: claude-3-opus-20241219\n" in stored
    assert "  pinned: 2026-06-01 (Canary candidate for deeper reasoning on long chats.)\n" in stored


def test_an_undated_alias_is_refused_with_the_lint_message(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(suite, monkeypatch, "Paris.", "--model", "gpt-4o")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--model gpt-4o: undated alias: it moves to a new model whenever*"]
    )
    assert not (suite.path / "__snapshots__").exists()


def test_a_tier_that_names_an_unpinned_model_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "models.yaml").write_text(
        textwrap.dedent(
            """\
            routes:
              chat: {production: claude-3-5-sonnet-20241022, canary: house-model, stage: 0}
            models:
              - {id: claude-3-5-sonnet-20241022, provider: anthropic, why: production}
              - {id: house-model, provider: other, why: our fine-tune}
            """
        )
    )
    pytester.makepyfile(test_answer=INNER_TEST)
    result = run(pytester, monkeypatch, "Paris.", "--model", "canary")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--model house-model: no snapshot date or version*"])


def test_a_tier_needs_a_route_when_the_registry_has_several(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(suite, monkeypatch, "Paris.", "--model", "canary")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*models.yaml has routes chat, summarize: choose one with --route"]
    )


def test_without_route_the_registrys_choice_is_said_once_per_test(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed inside `except`, the message came twice, chained to the error it came from."""
    result = run(suite, monkeypatch, "Paris.", "-rN")  # no summary line: only the error
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert output.count("models.yaml has routes chat, summarize: choose one with --route") == 1
    assert "During handling" not in output


def test_a_route_without_a_registry_is_refused_not_ignored(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_answer=INNER_TEST)
    result = run(pytester, monkeypatch, "Paris.", "--route", "chat")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--route chat names a route of models.yaml: none at*"])


def test_an_unknown_embedder_is_said_before_any_comparison(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYTRACE_EMBEDDER", "bogus")
    result = run(suite, monkeypatch, "Paris.", "--route", "chat")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*canarytrace: unknown embedder 'bogus'*choose one of*"])
    assert "Traceback" not in result.stdout.str()


def test_messages_name_the_long_option_when_a_conftest_took_the_short_one(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makeconftest("def pytest_addoption(parser):\n    parser.addoption('--model')\n")
    result = run(suite, monkeypatch, "Paris.", "--canarytrace-model", "gpt-4o")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--canarytrace-model gpt-4o: undated alias*"])


def test_snapshot_update_records_every_change_with_the_model_that_wrote_it(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, paraphrase = "The capital of France is Paris.", "Paris is the capital city of France."
    run(suite, monkeypatch, old, "--route", "chat", "--snapshot-update").assert_outcomes(passed=1)
    assert "model: claude-3-5-sonnet-20241022" in snapshot_file(suite.path)

    # Without --snapshot-update the candidate's paraphrase matches and nothing is written.
    canary = ("--model", "canary", "--route", "chat")
    run(suite, monkeypatch, paraphrase, *canary).assert_outcomes(passed=1)
    assert old in snapshot_file(suite.path)

    # With it, the paraphrase is stored under the canary's name, for the review to judge.
    run(suite, monkeypatch, paraphrase, *canary, "--snapshot-update").stdout.fnmatch_lines(
        ["*1 snapshot updated*"]
    )
    stored = snapshot_file(suite.path)
    assert "model: claude-3-opus-20241219" in stored and paraphrase in stored


def test_the_threshold_can_be_raised_per_assertion(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, semantic: Similarity
) -> None:
    old, paraphrase = "The capital of France is Paris.", "Paris is the capital city of France."
    strict = {"threshold": 0.99}
    assert semantic(old, paraphrase) < strict["threshold"]
    run(suite, monkeypatch, old, "--route", "chat", "--snapshot-update").assert_outcomes(passed=1)
    failed = run(suite, monkeypatch, paraphrase, "--route", "chat", checks=strict)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*(threshold 0.99; all-MiniLM-L6-v2 (local))*"])


def test_a_project_that_defines_its_own_model_option_keeps_it(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makeconftest(
        "def pytest_addoption(parser):\n    parser.addoption('--model', default='theirs')\n"
    )
    suite.makepyfile(
        test_theirs="def test_theirs(request):\n"
        "    assert request.config.getoption('model') == 'mine'\n"
    )
    args = ("--model", "mine", "--canarytrace-model", "canary", "--canarytrace-route", "chat")
    result = run(suite, monkeypatch, "Paris.", *args, "--snapshot-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "canarytrace: --model belongs to another plugin or conftest here; "
            "use --canarytrace-model",
            "canarytrace: model claude-3-opus-20241219 (canary of route chat)*",
        ]
    )


SIMULATED_TEST = """
import json, os

import anthropic
import pytest

PROMPTS = json.loads(os.environ["SIM_PROMPTS"])


@pytest.mark.parametrize("prompt_id", sorted(PROMPTS))
def test_answer(prompt_id, llm_model, llm_snapshot):
    message = anthropic.Anthropic().messages.create(
        model=llm_model, max_tokens=300, messages=[{"role": "user", "content": PROMPTS[prompt_id]}]
    )
    text = message.content[0].text
    with open(os.environ["SIM_ANSWERS"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"id": prompt_id, "model": llm_model, "text": text}) + "\\n")
    assert llm_snapshot == text
"""


def test_no_wrong_answer_of_a_regressed_canary_passes(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The article's flow on simulated models: record production, then test the canary."""
    from canarytrace.simulator import Simulator

    answers = tmp_path / "answers.jsonl"
    suite.makepyfile(test_answer=SIMULATED_TEST)
    with Simulator(seed=0, time_scale=0) as sim:
        prompts = {p.id: p.prompt for p in sim.prompts}
        monkeypatch.setenv("SIM_PROMPTS", json.dumps(prompts))
        monkeypatch.setenv("SIM_ANSWERS", str(answers))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.anthropic_base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        record = suite.runpytest("--model", "production", "--route", "chat", "--snapshot-update")
        record.assert_outcomes(passed=len(prompts))
        sim.regress("claude-3-opus-20241219", "quality")
        result = suite.runpytest("--model", "canary", "--route", "chat", "-rA")
        canary = [
            json.loads(line)
            for line in answers.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["model"] == "claude-3-opus-20241219"
        ]
        wrong = {
            a["id"] for a in canary if sim.answer_is_correct(prompts[a["id"]], a["text"]) is False
        }
    assert wrong, "seed 0 gives the regressed canary some wrong answers"
    for prompt_id in wrong:
        result.stdout.fnmatch_lines([f"FAILED test_answer.py::test_answer[[]{prompt_id}[]]*"])


def test_an_output_equal_to_its_snapshot_must_still_pass_its_own_checks(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte equality once skipped the checks, so a recorded output that broke them
    passed on every run after."""
    fourteen = "Customers have 14 days to ask for a refund."
    checks = {"must_contain": ["30 days"], "must_not_contain": ["14 days"]}
    args = ("--route", "chat")
    # --snapshot-update writes it (the review flags it) ...
    run(suite, monkeypatch, fourteen, *args, "--snapshot-update", checks=checks).assert_outcomes(
        passed=1
    )
    # ... and a plain run fails on it though nothing changed.
    failed = run(suite, monkeypatch, fourteen, *args, checks=checks)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            "*WORRYING (required information lost)*",
            "*failed: missing required '30 days'*",
            "*failed: contains forbidden '14 days'*",
        ]
    )
    # Checks the text passes, though it was recorded under others: the new ones apply.
    run(suite, monkeypatch, fourteen, *args, checks={"must_contain": ["14 days"]}).assert_outcomes(
        passed=1
    )


@pytest.mark.parametrize(
    "output",
    [
        "Refund policy:\rRefunds within 30 days.\r# ---\r# name: test_ghost\r  injected",
        "Line one.\r\nLine two.\r\n",
    ],
    ids=["bare-cr", "crlf"],
)
def test_carriage_returns_are_stored_as_line_breaks_like_syrupys_own(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """A bare "\\r" read back as a line break cut the output short and let its text pose
    as amber markers (a ghost snapshot); CRLF was 'updated' on every --snapshot-update."""
    args = ("--route", "chat")
    run(suite, monkeypatch, output, *args, "--snapshot-update").assert_outcomes(passed=1)
    again = run(suite, monkeypatch, output, *args, "--snapshot-update")
    again.assert_outcomes(passed=1)
    assert "updated" not in again.stdout.str() and "unused" not in again.stdout.str()
    run(suite, monkeypatch, output, *args).assert_outcomes(passed=1)
    stored = snapshot_file(suite.path)
    assert "\r" not in stored
    markers = [line for line in stored.splitlines() if line.startswith("# name: ")]
    assert markers == ["# name: test_answer"]  # the output's own "# name:" stays indented


def test_a_missing_snapshot_says_how_to_record_it_not_that_it_changed(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = run(suite, monkeypatch, "The capital of France is Paris.", "--route", "chat")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        ["*Snapshot 'test_answer' does not exist!*", "*record it with pytest --snapshot-update*"]
    )
    assert "WORRYING" not in failed.stdout.str() and "infx" not in failed.stdout.str()
