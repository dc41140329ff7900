"""The profiles file: the shipped defaults, and clear messages for bad files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from canarytrace.registry import load_registry
from canarytrace.simulator import ProfileError, load_profiles
from canarytrace.simulator.engine import count_tokens, filler, tokenize
from canarytrace.simulator.profiles import ErrorRates, KnownPrompt, Latency, OutputLength

EXAMPLE_REGISTRY = Path(__file__).resolve().parents[2] / "models.yaml"


def test_defaults_cover_every_model_of_the_example_registry() -> None:
    profiles = load_profiles()
    registry = load_registry(EXAMPLE_REGISTRY)
    for entry in registry.models:
        profile = profiles.models[entry.id]
        assert profile.provider == entry.provider
        assert not profile.retired
    assert any(p.retired for p in profiles.models.values())
    for alias, target in profiles.aliases.items():
        assert not profiles.models[target].retired, alias


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "models:\n  m:\n    provider: openai\n    latency: {ttft_median_s: -1}\n",
            ":4: models.m.latency.ttft_median_s: Input should be greater than 0",
        ),
        (
            "models:\n  m:\n    provider: openai\n"
            "    errors: {server_error: 0.7, rate_limit: 0.6}\n",
            ":4: models.m.errors: Value error, the error rates add up to more than 1",
        ),
        (
            "models:\n  m: {provider: openai}\naliases:\n  latest: gone\n",
            ":3: aliases: Value error, alias 'latest' points at 'gone', which is not in models",
        ),
        (
            "models:\n  m: {provider: openai}\nprompts:\n  - id: p\n    task: chat\n"
            "    prompt: Q?\n    facts: [yes]\n    correct: [No.]\n    wrong: [Maybe.]\n",
            ":4: prompts.0: Value error, correct answer 'No.' lacks one of the facts",
        ),
        (
            "models:\n  m:\n    provider: anthropic\n    refusal_rate: 1.5\n",
            ":4: models.m.refusal_rate: Input should be less than or equal to 1",
        ),
        (
            "models:\n  m: {provider: anthropic, refusal_rate: -0.1}\n",
            ":2: models.m.refusal_rate: Input should be greater than or equal to 0",
        ),
        ("models:\n  m: {provider: openai, colour: red}\n", ":2: models.m.colour: Extra inputs"),
        ("models: [\n", ": not valid YAML"),
        ("- a list\n", ": expected a mapping with a 'models' key"),
    ],
)
def test_bad_files_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path)
    assert f"{path}{expected}" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such profiles file"):
        load_profiles(tmp_path / "nope.yaml")


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  a: {provider: openai}\n")
    assert set(load_profiles(path).models) == {"a"}
    path.write_text("models:\n  a: {provider: openai}\n  bb: {provider: anthropic}\n")
    assert set(load_profiles(path).models) == {"a", "bb"}


def test_tokens_join_back_into_the_text() -> None:
    text = 'Use `items.append(42)`, it\'s 100 °C; "done".'
    assert "".join(tokenize(text)) == text
    assert count_tokens(text) == len(tokenize(text)) > 10
    rng = random.Random(0)
    for n in (1, 7, 120):
        assert count_tokens(filler(rng, n)) == n


def test_draws_follow_the_profile() -> None:
    rng = random.Random(1)
    latency = Latency(ttft_median_s=0.5, ttft_sigma=0.0, per_token_s=0.01)
    assert latency.sample_ttft(rng) == pytest.approx(0.5)
    assert 0.008 <= latency.sample_per_token(rng) <= 0.012
    lengths = [
        OutputLength(median_tokens=50, sigma=1.0, max_tokens=80).sample(rng) for _ in range(500)
    ]
    assert min(lengths) >= 1
    assert max(lengths) == 80
    kinds = [ErrorRates(rate_limit=0.2, overloaded=0.1).draw(rng) for _ in range(2000)]
    assert 0.15 < kinds.count("rate_limit") / 2000 < 0.25
    assert 0.06 < kinds.count("overloaded") / 2000 < 0.14
    assert "server_error" not in kinds


def test_known_prompt_rejects_a_wrong_answer_with_all_facts() -> None:
    with pytest.raises(ValueError, match=r"wrong answer 'Yes, 4\.' contains all the facts"):
        KnownPrompt(
            id="p", task="chat", prompt="2+2?", facts=("4",), correct=("4",), wrong=("Yes, 4.",)
        )
