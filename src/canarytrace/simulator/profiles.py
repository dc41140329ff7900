"""Model profiles: how each simulated model behaves, read from YAML, and the draws from it.

A profile says, per model id, how long the first token takes and each further one, how
often each kind of provider error happens, how long answers are, how many hidden input
tokens the provider adds (what the bill sees), how often the model answers a known
prompt wrongly (its regression rate) and how often its safety classifiers decline a
request (its refusal rate). Known prompts carry correct and wrong answer variants plus
the facts that tell them apart, so a caller can score an answer. An alias table maps
undated names (``gpt-4o``) to the snapshot they currently serve.

Every draw takes a `random.Random` that the engine derives from the seed, so profiles
hold no state of their own.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from canarytrace.errors import CanaryTraceError

Provider = Literal["openai", "anthropic"]
Kind = Literal["chat", "embedding"]
Regression = Literal["latency", "errors", "quality", "cost", "refusals"]
RandomError = Literal["rate_limit", "server_error", "overloaded"]
RefusalCategory = Literal["cyber", "bio", "general_harms"]
REFUSAL_CATEGORIES: tuple[RefusalCategory, ...] = ("cyber", "bio", "general_harms")
REGRESSIONS: tuple[Regression, ...] = ("latency", "errors", "quality", "cost", "refusals")


class ProfileError(CanaryTraceError):
    """A profiles file that is malformed or refers to something it does not define."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Strict):
    """Time to first token (log-normal around a median) and the time of each further token."""

    ttft_median_s: float = Field(default=0.5, gt=0)
    ttft_sigma: float = Field(default=0.3, ge=0, le=3)
    per_token_s: float = Field(default=0.01, ge=0)

    def sample_ttft(self, rng: random.Random) -> float:
        """One time to first token, in unscaled seconds."""
        return rng.lognormvariate(math.log(self.ttft_median_s), self.ttft_sigma)

    def sample_per_token(self, rng: random.Random) -> float:
        """One request's per-token time: each request runs a little faster or slower."""
        return self.per_token_s * rng.uniform(0.8, 1.2)


class ErrorRates(_Strict):
    """Probability that one request fails with each kind of transient provider error.

    `overloaded` is Anthropic's 529; an OpenAI model with it answers 503, as OpenAI does
    when an engine is overloaded.
    """

    rate_limit: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    overloaded: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> ErrorRates:
        if self.rate_limit + self.server_error + self.overloaded > 1:
            raise ValueError("the error rates add up to more than 1; lower them")
        return self

    def draw(self, rng: random.Random) -> RandomError | None:
        """The error this request fails with, or None; always consumes one number."""
        x = rng.random()
        for kind, rate in (
            ("rate_limit", self.rate_limit),
            ("server_error", self.server_error),
            ("overloaded", self.overloaded),
        ):
            if x < rate:
                return kind  # type: ignore[return-value]
            x -= rate
        return None


class OutputLength(_Strict):
    """Length of answers to prompts the profiles do not know (log-normal, in tokens)."""

    median_tokens: int = Field(default=60, ge=1)
    sigma: float = Field(default=0.5, ge=0, le=3)
    max_tokens: int = Field(default=800, ge=1)

    def sample(self, rng: random.Random) -> int:
        """One answer length in tokens, between 1 and `max_tokens`."""
        drawn = rng.lognormvariate(math.log(self.median_tokens), self.sigma)
        return max(1, min(self.max_tokens, round(drawn)))


class Billing(_Strict):
    """What changes the token counts a bill is computed from.

    `input_overhead` tokens are added to every prompt (the provider's hidden template);
    `verbosity` stretches every answer by that factor (padding sentences after the facts).
    """

    input_overhead: int = Field(default=0, ge=0)
    verbosity: float = Field(default=1.0, ge=1, le=20)


class ModelProfile(_Strict):
    """How one model id behaves."""

    provider: Provider
    kind: Kind = "chat"
    retired: bool = False
    created: int = Field(
        default=1_700_000_000, ge=0, description="Unix time shown in models lists."
    )
    latency: Latency = Latency()
    errors: ErrorRates = ErrorRates()
    output: OutputLength = OutputLength()
    billing: Billing = Billing()
    wrong_rate: float = Field(default=0.0, ge=0, le=1)
    refusal_rate: float = Field(default=0.0, ge=0, le=1)
    variation: float = Field(default=0.2, ge=0, le=1)
    dimensions: int = Field(default=1536, ge=1, le=8192)

    def regressed(self, kind: Regression) -> ModelProfile:
        """This profile made worse in one way, for `Simulator.regress` and the demo.

        latency: first token 3x slower, each token 2x; errors: +6 % server errors,
        +4 % rate limits, +3 % overloaded; quality: +30 % wrong answers; cost: answers
        3x longer and 150 more hidden input tokens; refusals: its safety classifiers
        decline 8 % more requests.
        """
        if kind == "latency":
            lat = self.latency
            latency = lat.model_copy(
                update={"ttft_median_s": lat.ttft_median_s * 3, "per_token_s": lat.per_token_s * 2}
            )
            return self.model_copy(update={"latency": latency})
        if kind == "errors":
            err = self.errors
            errors = ErrorRates(
                rate_limit=min(1.0, err.rate_limit + 0.04),
                server_error=min(1.0, err.server_error + 0.06),
                overloaded=min(1.0, err.overloaded + 0.03),
            )
            return self.model_copy(update={"errors": errors})
        if kind == "quality":
            return self.model_copy(update={"wrong_rate": min(1.0, self.wrong_rate + 0.3)})
        if kind == "cost":
            bill = self.billing
            billing = Billing(
                input_overhead=bill.input_overhead + 150, verbosity=min(20.0, bill.verbosity * 3)
            )
            return self.model_copy(update={"billing": billing})
        if kind == "refusals":
            return self.model_copy(update={"refusal_rate": min(1.0, self.refusal_rate + 0.08)})
        raise ValueError(f"unknown regression {kind!r}; use one of {', '.join(REGRESSIONS)}")

    def draw_refusal(self, rng: random.Random) -> RefusalCategory | None:
        """The policy category this request is declined for, or None if it is answered.

        Always consumes two numbers, so later draws do not depend on the refusal rate.
        """
        declined = rng.random() < self.refusal_rate
        category = REFUSAL_CATEGORIES[rng.randrange(len(REFUSAL_CATEGORIES))]
        return category if declined else None


class KnownPrompt(_Strict):
    """A prompt with known right and wrong answers; `facts` decide which is which.

    An answer is correct when it contains every fact (case-insensitive). Every correct
    variant must contain all facts and every wrong one must miss at least one.
    """

    id: str
    task: str = Field(description="What the prompt is for, e.g. chat or summarize.")
    prompt: str = Field(min_length=1)
    facts: tuple[str, ...] = Field(min_length=1)
    correct: tuple[str, ...] = Field(min_length=1)
    wrong: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _facts_separate_the_variants(self) -> KnownPrompt:
        for text in self.correct:
            if not self.is_correct(text):
                raise ValueError(f"correct answer {text!r} lacks one of the facts {self.facts}")
        for text in self.wrong:
            if self.is_correct(text):
                raise ValueError(f"wrong answer {text!r} contains all the facts {self.facts}")
        return self

    def is_correct(self, text: str) -> bool:
        """Whether `text` states every fact of this prompt."""
        folded = text.casefold()
        return all(fact.casefold() in folded for fact in self.facts)


class Profiles(_Strict):
    """A whole profiles file: models, the alias table, known prompts."""

    models: dict[str, ModelProfile] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)
    prompts: tuple[KnownPrompt, ...] = ()

    @field_validator("aliases")
    @classmethod
    def _aliases_point_at_models(
        cls, aliases: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        models = info.data.get("models") or {}
        for alias, target in aliases.items():
            if alias in models:
                raise ValueError(f"{alias!r} is both a model and an alias; keep one")
            if target not in models:
                raise ValueError(f"alias {alias!r} points at {target!r}, which is not in models")
        return aliases

    @field_validator("prompts")
    @classmethod
    def _prompts_unique(cls, prompts: tuple[KnownPrompt, ...]) -> tuple[KnownPrompt, ...]:
        seen: set[str] = set()
        for p in prompts:
            key = normalize_prompt(p.prompt)
            if p.id in seen or key in seen:
                raise ValueError(f"prompt {p.id!r} repeats an id or a prompt text; make it unique")
            seen.update((p.id, key))
        return prompts

    def prompt(self, text: str) -> KnownPrompt | None:
        """The known prompt whose text is `text` (whitespace and case ignored), if any."""
        key = normalize_prompt(text)
        return next((p for p in self.prompts if normalize_prompt(p.prompt) == key), None)


def normalize_prompt(text: str) -> str:
    """The form prompts are compared in: case-folded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


def default_profiles_path() -> Path:
    """The profiles shipped with canarytrace (cover the example registry's models)."""
    return Path(str(resources.files("canarytrace.simulator").joinpath("profiles.yaml")))


def load_profiles(path: str | Path | None = None) -> Profiles:
    """Read and validate a profiles YAML file (the shipped default when `path` is None).

    Raises `ProfileError` naming the file, the line and the key of each problem.
    Profiles are immutable, so a file is parsed once until it changes on disk.
    """
    path = default_profiles_path() if path is None else Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ProfileError(f"{path}: no such profiles file; pass an existing file") from exc
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> Profiles:
    try:
        raw = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping with a 'models' key at the top")
    try:
        return Profiles.model_validate(_plain(raw))
    except ValidationError as exc:
        problems = [_describe(path, raw, err["loc"], err["msg"]) for err in exc.errors()]
        raise ProfileError("\n".join(problems)) from None


def _plain(node: object) -> object:
    """ruamel's commented containers as plain dicts and lists (pydantic wants those)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _describe(path: Path, raw: object, loc: Iterable[int | str], msg: str) -> str:
    """One problem as 'file:line: key.path: message'."""
    line = None
    node = raw
    keys: list[str] = []
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            node = None
        keys.append(str(key))
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where}: {'.'.join(keys) or '(top)'}: {msg}"
