"""The provider-independent core: which snapshot serves a request, and what it answers.

Determinism: the randomness of one request comes from a `random.Random` seeded with a
hash of (seed, serving snapshot, conversation, n), where n counts earlier requests for
the same snapshot and conversation. The n-th identical request therefore gets the same
answer, error and latency in every run with the same seed, however many clients run
at once and in whatever order their requests interleave. Which user sends the n-th
identical request does depend on that order, so a request that names its end user
counts as that user's own conversation (`wire.conversation`): then each user's draws are
fixed too.

The engine holds the state that changes at run time (alias table, regressions, request
counters, prompt-cache prefixes, background jobs) behind one lock; everything else is a
pure function.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from canarytrace.simulator.errors import SimulatedError
from canarytrace.simulator.profiles import (
    Kind,
    KnownPrompt,
    ModelProfile,
    Profiles,
    Provider,
    RefusalCategory,
    Regression,
)

Finish = Literal["stop", "length", "stop_sequence", "refusal"]
_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]")
_FILLER_TEXT = (
    "the answer depends on context and a few details matter here so it helps to check the "
    "request again before acting on it in most cases a short reply is enough but some "
    "teams prefer more background with examples and clear next steps that anyone can "
    "follow without extra help from support or the docs"
)
_WORDS = tuple(_FILLER_TEXT.split())
_MAX_JOBS = 10_000  # background jobs kept for polling; older ones are forgotten


def tokenize(text: str) -> list[str]:
    """Text cut into simulated tokens (a word or a punctuation mark, with its leading space).

    Joining the pieces gives back the stripped text, so streams can send one token per
    delta and usage counts agree with what was streamed.
    """
    return _TOKEN.findall(text.strip())


def count_tokens(text: str) -> int:
    """How many simulated tokens `text` is."""
    return len(tokenize(text))


def stable_int(*parts: object) -> int:
    """A 64-bit integer from a hash of `parts`: the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Completion:
    """What one successful request answers, with the wall-clock times to take doing it."""

    snapshot: str
    profile: ModelProfile
    pieces: tuple[str, ...]
    finish: Finish
    ttft_s: float
    per_token_s: float
    uid: str  # random hex from the seeded draw, for response ids
    stop_sequence: str | None = None  # the caller's stop sequence that ended the answer
    refusal: RefusalCategory | None = None  # why the classifiers declined (no pieces then)

    @property
    def text(self) -> str:
        """The whole answer."""
        return "".join(self.pieces).strip()

    @property
    def output_tokens(self) -> int:
        """Output tokens, as usage reports them."""
        return len(self.pieces)


@dataclass(frozen=True)
class BackgroundJob:
    """A request answered later: its reply bodies, held until the client polls for them.

    The bodies are the provider's own (the engine never reads them): `pending` while the
    job runs or once it is cancelled, `outcome` from `due` (`time.monotonic()`) on.
    """

    pending: Any
    outcome: Any
    due: float
    cancelled: bool = False

    def done_by(self, now: float) -> bool:
        """Whether the job has its outcome at monotonic time `now` (never, once cancelled)."""
        return not self.cancelled and now >= self.due


class Engine:
    """Serves draws from `profiles` for one simulator; thread-safe."""

    def __init__(self, profiles: Profiles, seed: int, time_scale: float) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.profiles = profiles
        self.seed = seed
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._aliases = dict(profiles.aliases)
        self._effective = dict(profiles.models)
        self._counters: Counter[tuple[str, int]] = Counter()
        self._cached_prefixes: set[tuple[str, int]] = set()
        self._jobs: dict[str, BackgroundJob] = {}

    # --- run-time changes ---------------------------------------------------------

    def set_alias(self, alias: str, snapshot: str) -> None:
        """Point `alias` at `snapshot` from now on (adds the alias if it is new)."""
        if snapshot not in self.profiles.models:
            raise KeyError(f"{snapshot!r} is not a model of the profiles; pick one of them")
        if alias in self.profiles.models:
            raise KeyError(f"{alias!r} is a dated model id, not an alias")
        with self._lock:
            self._aliases[alias] = snapshot

    def aliases(self) -> dict[str, str]:
        """The alias table as it stands now."""
        with self._lock:
            return dict(self._aliases)

    def regress(self, model: str, kind: Regression) -> None:
        """Make `model` (a snapshot or an alias's current snapshot) worse in one way."""
        with self._lock:
            snapshot = self._aliases.get(model, model)
            if snapshot not in self.profiles.models:
                raise KeyError(f"{model!r} is not a model of the profiles; pick one of them")
            self._effective[snapshot] = self._effective[snapshot].regressed(kind)

    # --- per request ----------------------------------------------------------------

    def resolve(self, model: object, provider: Provider, kind: Kind) -> tuple[str, ModelProfile]:
        """The snapshot serving `model` and its profile, or the provider's 404/400."""
        if not isinstance(model, str) or not model:
            raise SimulatedError(
                "invalid_request", "model: a model name is required", param="model"
            )
        with self._lock:
            snapshot = self._aliases.get(model, model)
            profile = self._effective.get(snapshot)
        if profile is None or profile.provider != provider or profile.kind != kind:
            raise SimulatedError(
                "not_found",
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        if profile.retired:
            raise SimulatedError(
                "not_found",
                f"The model `{model}` has been deprecated and retired; use a current model.",
                param="model",
                code="model_not_found",
            )
        return snapshot, profile

    def draw(self, snapshot: str, conversation: str) -> random.Random:
        """The seeded randomness of the next request for this snapshot and conversation."""
        key = (snapshot, stable_int(conversation))
        with self._lock:
            n = self._counters[key]
            self._counters[key] = n + 1
        return random.Random(stable_int(self.seed, snapshot, key[1], n))

    def fail_randomly(self, rng: random.Random, profile: ModelProfile) -> None:
        """Raise the transient error this draw fails with, if any.

        Draws the same numbers whether or not it raises, so that later draws of the
        request do not depend on the error rates.
        """
        kind = profile.errors.draw(rng)
        delay = profile.latency.sample_ttft(rng) * 0.5 * self.time_scale
        if kind is None:
            return
        retry = rng.uniform(1.0, 3.0) * self.time_scale if kind == "rate_limit" else None
        raise SimulatedError(kind, retry_after_s=retry, delay_s=delay)

    def complete(
        self,
        model: object,
        provider: Provider,
        prompt: str,
        conversation: str,
        max_tokens: int,
        stop: Sequence[str] = (),
    ) -> Completion:
        """Answer `prompt` (the last user turn; `conversation` is the whole request).

        The answer ends early at the first of the `stop` sequences it contains (which is
        not part of the answer) or after `max_tokens` tokens, whichever comes first.
        A request the profile's `refusal_rate` declines has no pieces, finish "refusal"
        and the policy category; it still took its time to first token.
        Raises `SimulatedError` for an unknown or retired model and for the transient
        errors the profile draws.
        """
        snapshot, profile = self.resolve(model, provider, "chat")
        rng = self.draw(snapshot, conversation)
        self.fail_randomly(rng, profile)
        ttft = profile.latency.sample_ttft(rng) * self.time_scale
        per_token = profile.latency.sample_per_token(rng) * self.time_scale
        known = self.profiles.prompt(prompt)
        text = self._answer(rng, snapshot, profile, known)
        uid = f"{rng.getrandbits(128):032x}"
        refusal = profile.draw_refusal(rng)  # drawn last: other draws stay as they were
        if refusal is not None:
            return Completion(snapshot, profile, (), "refusal", ttft, per_token, uid, None, refusal)
        hits = sorted((text.find(s), s) for s in stop if s and s in text)
        stop_sequence = hits[0][1] if hits else None
        pieces = tokenize(text[: hits[0][0]] if hits else text)
        finish: Finish = "stop_sequence" if hits else "stop"
        if len(pieces) > max_tokens:
            pieces, finish, stop_sequence = pieces[:max_tokens], "length", None
        return Completion(
            snapshot, profile, tuple(pieces), finish, ttft, per_token, uid, stop_sequence
        )

    def predecessor(self, snapshot: str) -> str | None:
        """The model a "default" fallback of `snapshot` goes to, if it has one.

        The newest live model of the same provider and kind released before `snapshot`
        (by `created`): the previous generation, which answers what the new one's
        classifiers decline. The oldest model has none, so its refusals stay refusals.
        """
        own = self.profiles.models[snapshot]
        older = [
            (p.created, model_id)
            for model_id, p in self.profiles.models.items()
            if p.provider == own.provider
            and p.kind == own.kind
            and not p.retired
            and p.created < own.created
        ]
        return max(older)[1] if older else None

    def prompt_cache_hit(self, snapshot: str, prefix: str) -> bool:
        """Whether `prefix` was cached for `snapshot` already; caches it if not."""
        key = (snapshot, stable_int(prefix))
        with self._lock:
            hit = key in self._cached_prefixes
            self._cached_prefixes.add(key)
        return hit

    # --- background jobs ---------------------------------------------------------------

    def add_job(self, job_id: str, job: BackgroundJob) -> None:
        """Keep `job` for polling; past `_MAX_JOBS` the oldest is forgotten, as providers
        expire them."""
        with self._lock:
            self._jobs[job_id] = job
            if len(self._jobs) > _MAX_JOBS:
                del self._jobs[next(iter(self._jobs))]

    def job(self, job_id: str) -> BackgroundJob | None:
        """The job kept under `job_id`, if any."""
        with self._lock:
            return self._jobs.get(job_id)

    def cancel_job(self, job_id: str, now: float) -> BackgroundJob | None:
        """Cancel the job unless it is done by `now`; the job as it then stands, if any.

        Checked and marked under the lock, so a job is either cancelled or done, never both.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and not job.cancelled and not job.done_by(now):
                job = self._jobs[job_id] = replace(job, cancelled=True)
            return job

    def _answer(
        self,
        rng: random.Random,
        snapshot: str,
        profile: ModelProfile,
        known: KnownPrompt | None,
    ) -> str:
        verbosity = profile.billing.verbosity
        if known is None:
            return filler(rng, round(profile.output.sample(rng) * verbosity))
        wrong = rng.random() < profile.wrong_rate
        pool = known.wrong if wrong else known.correct
        usual = stable_int(snapshot, known.id, wrong) % len(pool)
        text = pool[usual] if rng.random() >= profile.variation else rng.choice(pool)
        extra = round(count_tokens(text) * (verbosity - 1))
        return f"{text} {filler(rng, extra)}" if extra else text


def filler(rng: random.Random, tokens: int) -> str:
    """Plausible-looking sentences of exactly `tokens` simulated tokens."""
    sentences: list[str] = []
    count = 0
    while count < tokens:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
        sentences.append(sentence.capitalize() + ".")
        count += count_tokens(sentences[-1])
    return "".join(tokenize(" ".join(sentences))[:tokens]).strip()
