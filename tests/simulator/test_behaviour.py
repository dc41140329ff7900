"""Seeded determinism, the alias table, regressions and answer scoring."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import anthropic
import openai
import pytest

from canarytrace.simulator import REGRESSIONS, Simulator, load_profiles
from canarytrace.simulator.engine import Engine

PROMPTS = [p.prompt for p in load_profiles().prompts] + ["Write a haiku.", "Hello"]


def _outcome(call: Callable[[], tuple[str, str, int]]) -> tuple[str, str, int]:
    """What a request gave: (id, text, tokens), or the provider error (drawn, so seeded too)."""
    try:
        return call()
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        return type(error).__name__, "", error.status_code


def _run(seed: int) -> list[tuple[str, str, int]]:
    """Three rounds over every prompt on both providers, asked in one fixed order."""
    out = []
    with Simulator(seed=seed, time_scale=0) as sim:
        oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
        ant = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k", max_retries=0)

        def chat(prompt: str) -> tuple[str, str, int]:
            reply = oai.chat.completions.create(
                model="gpt-4o-2024-11-20", messages=[{"role": "user", "content": prompt}]
            )
            assert reply.usage is not None
            return reply.id, reply.choices[0].message.content or "", reply.usage.total_tokens

        def message(prompt: str) -> tuple[str, str, int]:
            reply = ant.messages.create(
                model="claude-3-opus-20241219",
                max_tokens=300,
                messages=[{"role": "user", "content": prompt}],
            )
            return reply.id, reply.content[0].text, reply.usage.output_tokens  # type: ignore[union-attr]

        with oai, ant:
            for _ in range(3):
                for prompt in PROMPTS:
                    out.append(_outcome(lambda: chat(prompt)))  # noqa: B023
                    out.append(_outcome(lambda: message(prompt)))  # noqa: B023
    return out


def test_same_seed_same_answers_other_seed_other_answers() -> None:
    first, second, other = _run(5), _run(5), _run(6)
    assert first == second
    assert first != other
    # repeated identical requests are fresh draws, not a replay of the first
    assert len({text for _, text, _ in first}) > len(PROMPTS) * 2


def _concurrent(seed: int) -> dict[str, list[tuple[str, str, int]]]:
    answers: dict[str, list[tuple[str, str, int]]] = {p: [] for p in PROMPTS}
    with Simulator(seed=seed, time_scale=0) as sim:
        oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)

        def ask(prompt: str) -> tuple[str, str, int]:
            reply = oai.chat.completions.create(
                model="gpt-4-0125-preview", messages=[{"role": "user", "content": prompt}]
            )
            return reply.id, reply.choices[0].message.content or "", 0

        def outcome(prompt: str) -> tuple[str, tuple[str, str, int]]:
            return prompt, _outcome(lambda: ask(prompt))

        with oai, ThreadPoolExecutor(max_workers=8) as pool:
            for prompt, result in pool.map(outcome, PROMPTS * 4):
                answers[prompt].append(result)
    return {p: sorted(results) for p, results in answers.items()}


def test_same_seed_same_answers_under_concurrency() -> None:
    # Arrival order differs between runs; the n-th request per prompt does not.
    assert _concurrent(11) == _concurrent(11)


def _per_user(seed: int, users: list[str]) -> dict[str, list[tuple[str, str, int]]]:
    """Each user asks every prompt in turn, on both providers, naming itself."""
    with Simulator(seed=seed, time_scale=0) as sim:
        oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
        ant = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k", max_retries=0)

        def chat(user: str, prompt: str) -> tuple[str, str, int]:
            reply = oai.chat.completions.create(
                model="gpt-4-0125-preview",
                messages=[{"role": "user", "content": prompt}],
                safety_identifier=user,
            )
            return reply.id, reply.choices[0].message.content or "", 0

        def message(user: str, prompt: str) -> tuple[str, str, int]:
            reply = ant.messages.create(
                model="claude-3-opus-20241219",
                max_tokens=300,
                messages=[{"role": "user", "content": prompt}],
                metadata={"user_id": user},
            )
            return reply.id, reply.content[0].text, reply.usage.output_tokens  # type: ignore[union-attr]

        def sessions(user: str) -> tuple[str, list[tuple[str, str, int]]]:
            asks = [(f, p) for p in PROMPTS[:4] * 2 for f in (chat, message)]
            return user, [_outcome(partial(f, user, p)) for f, p in asks]

        with oai, ant, ThreadPoolExecutor(max_workers=8) as pool:
            return dict(pool.map(sessions, users))


def test_a_request_naming_its_user_draws_the_same_in_any_interleaving() -> None:
    # The users are served in opposite orders; each one's answers do not move.
    users = [f"user-{i}" for i in range(16)]
    forward, backward = _per_user(3, users), _per_user(3, users[::-1])
    assert forward == backward
    assert forward["user-0"] != forward["user-1"]  # each user draws on its own


def test_alias_switch_shows_in_response_model(simulator: Simulator) -> None:
    oai = openai.OpenAI(base_url=simulator.openai_base_url, api_key="k", max_retries=0)
    ant = anthropic.Anthropic(base_url=simulator.anthropic_base_url, api_key="k", max_retries=0)
    hello = [{"role": "user", "content": "Hello"}]
    with oai, ant:
        before = oai.chat.completions.create(model="gpt-4o", messages=hello)  # type: ignore[arg-type]
        simulator.set_alias("gpt-4o", "gpt-4o-2024-11-20")
        after = oai.chat.completions.create(model="gpt-4o", messages=hello)  # type: ignore[arg-type]
        assert (before.model, after.model) == ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20")
        alias = "claude-3-5-sonnet-latest"
        old = ant.messages.create(model=alias, max_tokens=20, messages=hello)  # type: ignore[arg-type]
        simulator.set_alias(alias, "claude-3-7-sonnet-20250219")
        new = ant.messages.create(model=alias, max_tokens=20, messages=hello)  # type: ignore[arg-type]
        assert (old.model, new.model) == (
            "claude-3-5-sonnet-20241022",
            "claude-3-7-sonnet-20250219",
        )
    assert simulator.aliases()[alias] == "claude-3-7-sonnet-20250219"
    with pytest.raises(KeyError, match="not a model"):
        simulator.set_alias("gpt-4o", "gpt-9")
    with pytest.raises(KeyError, match="dated model id"):
        simulator.set_alias("gpt-4o-2024-11-20", "gpt-4o-2024-08-06")


def test_answer_is_correct_scores_by_facts(simulator: Simulator) -> None:
    for known in simulator.prompts:
        assert all(simulator.answer_is_correct(known.prompt, t) for t in known.correct)
        assert not any(simulator.answer_is_correct(known.prompt, t) for t in known.wrong)
    first = simulator.prompts[0]
    assert simulator.answer_is_correct(f"  {first.prompt.upper()} ", first.correct[0]) is True
    assert simulator.answer_is_correct("Something nobody asked before?", "Yes.") is None
    assert {p.task for p in simulator.prompts} == {"chat", "summarize"}


def _sample(engine: Engine, model: str, n: int = 400) -> dict[str, float]:
    """Statistics of n draws per known prompt (errors counted, not raised; the wrong
    answers and the answers' length among the requests answered, not refused)."""
    wrong = errors = refused = 0
    ttfts, tokens = [], []
    for i in range(n):
        known = engine.profiles.prompts[i % len(engine.profiles.prompts)]
        try:
            done = engine.complete(model, "openai", known.prompt, known.prompt, 10_000)
        except Exception:
            errors += 1
            continue
        ttfts.append(done.ttft_s)
        if done.refusal is not None:
            refused += 1
            continue
        wrong += not known.is_correct(done.text)
        tokens.append(done.output_tokens)
    return {
        "wrong": wrong / len(tokens),
        "errors": errors / n,
        "refused": refused / n,
        "ttft": statistics.median(ttfts),
        "tokens": statistics.mean(tokens),
    }


@pytest.mark.parametrize("kind", REGRESSIONS)
def test_regress_makes_a_model_worse_in_that_way_only(kind: str) -> None:
    model = "gpt-4o-2024-11-20"
    engine = Engine(load_profiles(), seed=1, time_scale=1.0)
    before = _sample(engine, model)
    engine.regress(model, kind)  # type: ignore[arg-type]
    after = _sample(engine, model)
    worse = {
        "quality": "wrong",
        "errors": "errors",
        "latency": "ttft",
        "cost": "tokens",
        "refusals": "refused",
    }[kind]
    assert after[worse] > before[worse] * 1.5 + 0.01
    for other in {"wrong", "errors", "refused", "ttft", "tokens"} - {worse}:
        assert after[other] < before[other] * 1.5 + 0.02


def test_regress_accepts_an_alias_and_rejects_unknown_models(simulator: Simulator) -> None:
    simulator.regress("gpt-4o", "latency")
    profile = simulator.engine.resolve("gpt-4o", "openai", "chat")[1]
    base = simulator.profiles.models["gpt-4o-2024-08-06"]
    assert profile.latency.ttft_median_s == base.latency.ttft_median_s * 3
    with pytest.raises(KeyError):
        simulator.regress("gpt-9", "latency")
