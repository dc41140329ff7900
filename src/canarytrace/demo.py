"""The demo: a simulated canary rollout, traced end to end, then judged.

It starts the provider simulator, routes a few thousand simulated users through the
example registry at a canary stage with `canarytrace.choose()`, calls the real
`anthropic` and `openai` clients (instrumented by one `instrument()` call), records
user feedback and answer outcomes for some calls, and writes the spans to the embedded
trace folder, where `canarytrace analyze` (run at the end) reads them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anthropic
import openai

import canarytrace
from canarytrace import telemetry
from canarytrace.errors import RoutingError
from canarytrace.registry import Registry
from canarytrace.simulator import KnownPrompt, Regression, Simulator

PROVIDER_OF_ROUTE = {"chat": "anthropic", "summarize": "openai"}
FEEDBACK_SHARE = 0.3  # share of calls whose user leaves a 1-5 rating, as in a real app


@dataclass(frozen=True)
class DemoSettings:
    """What the demo drives; the CLI fills it from its options."""

    registry: Registry
    users: int = 3000
    calls_per_user: int = 2
    stage: int = 25
    seed: int = 7
    regress: Regression | None = None
    time_scale: float = 0.02
    workers: int = 16


@dataclass(frozen=True)
class _Clients:
    anthropic: anthropic.Anthropic
    openai: openai.OpenAI


def at_stage(registry: Registry, stage: int) -> Registry:
    """The registry with every route's canary at `stage` percent and no rollback set;
    a RoutingError when a route with a canary has no such stage (it would run at its own)."""
    for name, route in registry.routes.items():
        if route.canary and stage not in route.stages:
            stages = ", ".join(map(str, route.stages))
            raise RoutingError(f"{stage}: route {name} rolls out in stages {stages}; pick one")
    routes = {
        name: route.model_copy(update={"stage": stage, "rollback": False})
        if route.canary
        else route
        for name, route in registry.routes.items()
    }
    return registry.model_copy(update={"routes": routes})


def run(settings: DemoSettings, on_call_done: Callable[[], None] = lambda: None) -> int:
    """Drive the simulated users; returns the number of LLM calls made."""
    registry = at_stage(settings.registry, settings.stage)
    canarytrace.configure(registry=registry)
    canarytrace.instrument(service_name="canarytrace-demo")
    with Simulator(seed=settings.seed, time_scale=settings.time_scale) as sim:
        if settings.regress:
            for route in registry.routes.values():
                if route.canary:
                    sim.regress(route.canary, settings.regress)
        clients = _Clients(
            anthropic=anthropic.Anthropic(
                base_url=sim.anthropic_base_url, api_key="demo-key", max_retries=0
            ),
            openai=openai.OpenAI(base_url=sim.openai_base_url, api_key="demo-key", max_retries=0),
        )
        prompts = _prompts_by_route(sim.prompts, registry)

        def one_user(user_index: int) -> int:
            rng = random.Random(f"{settings.seed}:{user_index}")
            calls = rng.randint(1, 2 * settings.calls_per_user - 1)
            for _ in range(calls):
                _one_call(sim, clients, prompts, f"user-{user_index}", rng)
                on_call_done()
            return calls

        with ThreadPoolExecutor(max_workers=settings.workers) as pool:
            made = sum(pool.map(one_user, range(settings.users)))
    telemetry.flush()
    return made


def _prompts_by_route(
    known: tuple[KnownPrompt, ...], registry: Registry
) -> dict[str, list[KnownPrompt]]:
    """Known prompts per demo route (a route without its own task reuses all of them)."""
    routes = [name for name in PROVIDER_OF_ROUTE if name in registry.routes]
    return {name: [p for p in known if p.task == name] or list(known) for name in routes}


def _one_call(
    sim: Simulator,
    clients: _Clients,
    prompts: dict[str, list[KnownPrompt]],
    user_id: str,
    rng: random.Random,
) -> None:
    """One request of one user, as an application would make it, then its feedback.

    Every draw of the request is made before it is sent, so a failed request shifts none
    of the user's later draws: with the user named to the provider (the simulator keys
    its own draws by it), a run's calls are the same in every run with the same seed.
    """
    route = rng.choice(sorted(prompts))
    known = rng.choice(prompts[route])
    stream = rng.random() < 0.3
    feedback_rng = random.Random(rng.getrandbits(64))
    decision = canarytrace.choose(route, user_id=user_id)
    try:
        if PROVIDER_OF_ROUTE[route] == "anthropic":
            text = _ask_anthropic(clients.anthropic, decision.model, known.prompt, stream, user_id)
        else:
            text = _ask_openai(clients.openai, decision.model, known.prompt, stream, user_id)
    except (anthropic.APIError, openai.APIError):
        return  # the span already says which error; a real app would retry or apologise
    call = canarytrace.current_call()
    if call is None:
        return
    correct = sim.answer_is_correct(known.prompt, text)
    if correct is not None:
        canarytrace.outcome(call, ok=correct, kind=None if correct else "wrong_answer")
    if feedback_rng.random() < FEEDBACK_SHARE:
        canarytrace.feedback(call, score=_rating(feedback_rng, correct))


def _rating(rng: random.Random, correct: bool | None) -> float:
    """A 1-5 user rating: happy users mostly give 4-5, a wrong answer mostly 1-2."""
    weights = (1, 2, 8, 30, 40) if correct is not False else (45, 30, 12, 8, 5)
    return float(rng.choices((1, 2, 3, 4, 5), weights=weights)[0])


def _ask_anthropic(
    client: anthropic.Anthropic, model: str, prompt: str, stream: bool, user_id: str
) -> str:
    messages: Any = [{"role": "user", "content": prompt}]
    user: Any = {"user_id": user_id}  # as Anthropic asks, for abuse detection
    if stream:
        with client.messages.stream(
            model=model, max_tokens=512, messages=messages, metadata=user
        ) as events:
            return "".join(events.text_stream)
    message = client.messages.create(model=model, max_tokens=512, messages=messages, metadata=user)
    return "".join(block.text for block in message.content if block.type == "text")


def _ask_openai(client: openai.OpenAI, model: str, prompt: str, stream: bool, user_id: str) -> str:
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        chunks = client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            safety_identifier=user_id,  # as OpenAI asks, for abuse detection
        )
        return "".join(_deltas(chunks))
    completion = client.chat.completions.create(
        model=model, messages=messages, temperature=0.6, safety_identifier=user_id
    )
    return completion.choices[0].message.content or ""


def _deltas(chunks: Any) -> Iterator[str]:
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.content:
                yield choice.delta.content
