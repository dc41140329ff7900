"""`canarytrace compare`: the article's investigate_regression, with enough runs to mean something.

The article asks the old and the new model once and compares the two outputs: one
sample is noise, since the same model words the same answer differently from run to
run. Here each prompt is sent `runs` times to each model through the official SDKs (base
URLs and keys from the usual `OPENAI_*` / `ANTHROPIC_*` variables, so the simulator can
serve it), and the candidate is judged against the baseline's own variation:

- the baseline's reference answer is its medoid (the run most similar to its other runs);
  `baseline_self` is the mean similarity between baseline runs, the noise floor;
- every other baseline run and every candidate run is classified against the reference
  with `classify` (the same acceptable/worrying rules as the snapshot review); the
  similarity bar is the embedder's threshold, lowered to the noise floor minus a margin
  when the baseline itself varies that much; numbers must survive only when every
  baseline run states them;
- the verdict is REGRESSED when the candidate's share of worrying runs is larger than
  the baseline's own, by a one-sided Fisher exact test at `alpha` over all prompts, or
  when on some prompt every candidate run is worrying and no baseline run is (a
  consistent change that pooling would dilute); EQUIVALENT otherwise (no evidence of a
  regression at this sample size, which the report states with the counts).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from canarytrace.errors import SnapshotError
from canarytrace.snapshots.choose import ChosenModel, resolve_model
from canarytrace.snapshots.classify import Classification, classify, numbers
from canarytrace.snapshots.record import Checks
from canarytrace.snapshots.similarity import Similarity, shared_similarity

NOISE_MARGIN = 0.05  # how far below the baseline's own run-to-run similarity is still noise
_CHECK_KEYS = (
    "must_contain",
    "must_not_contain",
    "must_parse_json",
    "json_keys",
    "max_length_ratio",
)


@dataclass(frozen=True)
class Prompt:
    """One entry of PROMPTS.yaml."""

    id: str
    prompt: str
    system: str | None = None
    max_tokens: int = 512
    temperature: float | None = None
    checks: Checks = field(default_factory=Checks)


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read PROMPTS.yaml: a list (or `prompts:` list) of strings or mappings.

    A mapping has `prompt` and optionally `id`, `system`, `max_tokens`, `temperature`
    and the checks of `LLMOutput` (`must_contain`, `must_not_contain`, `json_keys`,
    `must_parse_json`, `max_length_ratio`, `threshold`).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SnapshotError(f"{path}: no such prompts file") from exc
    except YAMLError as exc:
        raise SnapshotError(f"{path}: not valid YAML: {exc}") from exc
    items = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise SnapshotError(f"{path}: expected a list of prompts (or a 'prompts:' list)")
    prompts = [_prompt(item, f"{path}: prompts[{i}]", i) for i, item in enumerate(items)]
    ids = [p.id for p in prompts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SnapshotError(f"{path}: duplicate prompt ids {duplicates}; make each id unique")
    return prompts


def _prompt(item: Any, where: str, index: int) -> Prompt:
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
        raise SnapshotError(f"{where}: needs a 'prompt' string")
    known = {"id", "prompt", "system", "max_tokens", "temperature", "threshold", *_CHECK_KEYS}
    unknown = sorted(set(item) - known)
    if unknown:
        raise SnapshotError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    checks: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in item.items() if k in _CHECK_KEYS
    }
    try:
        return Prompt(
            id=str(item.get("id", f"prompt-{index + 1}")),
            prompt=item["prompt"],
            system=item.get("system"),
            max_tokens=int(item.get("max_tokens", 512)),
            temperature=item.get("temperature"),
            checks=Checks(threshold=item.get("threshold"), **checks),
        )
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class PromptResult:
    """What one prompt showed over the runs of both models."""

    prompt: Prompt
    baseline: tuple[str, ...]  # successful runs' texts
    candidate: tuple[str, ...]
    errors: tuple[str, ...]  # one line per failed call
    reference: str  # the baseline's medoid answer
    baseline_self: float  # mean similarity between baseline runs: the noise floor
    cross: float  # mean similarity of candidate runs to baseline runs
    threshold: float  # the similarity bar used for this prompt
    baseline_verdicts: tuple[Classification, ...]  # other baseline runs vs the reference
    candidate_verdicts: tuple[Classification, ...]  # candidate runs vs the reference

    @property
    def baseline_worrying(self) -> int:
        """Baseline runs that are worrying against the baseline's own reference."""
        return sum(not v.acceptable for v in self.baseline_verdicts)

    @property
    def candidate_worrying(self) -> int:
        """Candidate runs that are worrying against the baseline's reference."""
        return sum(not v.acceptable for v in self.candidate_verdicts)

    @property
    def worrying(self) -> bool:
        """More of the candidate's runs worrying than of the baseline's own."""
        if not self.candidate_verdicts or not self.baseline_verdicts:
            return False
        candidate = self.candidate_worrying / len(self.candidate_verdicts)
        return candidate > self.baseline_worrying / len(self.baseline_verdicts)

    @property
    def consistent_change(self) -> bool:
        """Every candidate run worrying, no baseline run: a change, not noise."""
        return (
            len(self.candidate_verdicts) >= 2
            and self.candidate_worrying == len(self.candidate_verdicts)
            and self.baseline_worrying == 0
        )

    @property
    def worst(self) -> tuple[Classification, str] | None:
        """The most worrying candidate run (worrying first, then lowest similarity) and its text."""
        runs = zip(self.candidate_verdicts, self.candidate, strict=True)
        ranked = sorted(runs, key=lambda run: (run[0].acceptable, run[0].similarity))
        return ranked[0] if ranked else None


@dataclass(frozen=True)
class Comparison:
    """Every prompt's result and the verdict."""

    baseline: ChosenModel
    candidate: ChosenModel
    runs: int
    results: tuple[PromptResult, ...]
    verdict: Literal["REGRESSED", "EQUIVALENT"]
    p_value: float
    reason: str
    similarity_label: str


Ask = Callable[[ChosenModel, Prompt], str]


def compare(
    baseline: str,
    candidate: str,
    prompts: Sequence[Prompt],
    *,
    runs: int = 5,
    route: str | None = None,
    embedder: str | None = None,
    alpha: float = 0.05,
    concurrency: int = 4,
    ask: Ask | None = None,
) -> Comparison:
    """Ask both models every prompt `runs` times and judge the candidate against the baseline.

    `baseline`/`candidate` are model ids or tiers of models.yaml (with `route`); undated
    aliases are refused. `ask` replaces the SDK call (the default uses the official SDKs).
    """
    if runs < 2:
        raise SnapshotError(
            f"--runs {runs}: at least 2 runs per model are needed (one sample is noise: "
            "the baseline's own run-to-run variation is the yardstick)"
        )
    chosen = [_resolve(baseline, route, "--baseline"), _resolve(candidate, route, "--candidate")]
    if ask is None:
        for model in chosen:
            provider_of(model)  # an unknown provider is a usage error, not a failed run
        ask = SdkAsker()
    jobs = [(m, p) for p in prompts for m in chosen for _ in range(runs)]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(pool.map(lambda job: _safe_ask(ask, *job), jobs))
    similarity = shared_similarity(embedder)
    similarity.prefetch([a for a in answers if isinstance(a, str)])  # one batch for all texts
    results = []
    for i, prompt in enumerate(prompts):
        chunk = answers[i * 2 * runs : (i + 1) * 2 * runs]
        results.append(_judge(prompt, chunk[:runs], chunk[runs:], similarity))
    usable = [r for r in results if len(r.baseline) >= 2 and r.candidate]
    if not usable:
        first = next((e for r in results for e in r.errors), "no answers")
        raise SnapshotError(f"no prompt got 2 baseline answers and a candidate answer: {first}")
    return _verdict(chosen[0], chosen[1], runs, tuple(results), usable, alpha, similarity)


def _resolve(value: str, route: str | None, option: str) -> ChosenModel:
    chosen = resolve_model(value, route, option=option)
    if chosen is None:  # only when value is empty
        raise SnapshotError(f"{option}: give a model id or a tier of models.yaml")
    return chosen


def _safe_ask(ask: Ask, model: ChosenModel, prompt: Prompt) -> str | Exception:
    try:
        return ask(model, prompt)
    except Exception as exc:  # an API error is data here: counted per prompt and reported
        return exc


def _judge(
    prompt: Prompt,
    baseline_raw: Sequence[str | Exception],
    candidate_raw: Sequence[str | Exception],
    similarity: Similarity,
) -> PromptResult:
    baseline = tuple(a for a in baseline_raw if isinstance(a, str))
    candidate = tuple(a for a in candidate_raw if isinstance(a, str))
    errors = tuple(
        f"{side}: {type(a).__name__}: {a}"
        for side, raw in (("baseline", baseline_raw), ("candidate", candidate_raw))
        for a in raw
        if isinstance(a, Exception)
    )
    if len(baseline) < 2 or not candidate:
        return PromptResult(prompt, baseline, candidate, errors, "", 0.0, 0.0, 0.0, (), ())
    pairs = list(itertools.combinations(range(len(baseline)), 2))
    sims = {(i, j): similarity(baseline[i], baseline[j]) for i, j in pairs}
    sims |= {(j, i): s for (i, j), s in sims.items()}
    medoid = max(
        range(len(baseline)), key=lambda i: sum(sims.get((i, j), 0) for j in range(len(baseline)))
    )
    reference = baseline[medoid]
    baseline_self = statistics.fmean(sims[p] for p in pairs)
    cross = statistics.fmean(similarity(b, c) for b in baseline for c in candidate)
    threshold = min(similarity.default_threshold, round(baseline_self - NOISE_MARGIN, 4))
    stable = set.intersection(*(numbers(b) for b in baseline))

    def verdict(text: str) -> Classification:
        return classify(
            reference,
            text,
            similarity=similarity(reference, text),
            threshold=threshold,
            checks=prompt.checks,
            required_numbers=stable,
        )

    others = [b for i, b in enumerate(baseline) if i != medoid]
    return PromptResult(
        prompt,
        baseline,
        candidate,
        errors,
        reference,
        round(baseline_self, 4),
        round(cross, 4),
        threshold,
        tuple(verdict(b) for b in others),
        tuple(verdict(c) for c in candidate),
    )


def _verdict(
    baseline: ChosenModel,
    candidate: ChosenModel,
    runs: int,
    results: tuple[PromptResult, ...],
    usable: list[PromptResult],
    alpha: float,
    similarity: Similarity,
) -> Comparison:
    from scipy.stats import fisher_exact

    cand_bad = sum(r.candidate_worrying for r in usable)
    cand_n = sum(len(r.candidate_verdicts) for r in usable)
    base_bad = sum(r.baseline_worrying for r in usable)
    base_n = sum(len(r.baseline_verdicts) for r in usable)
    table = [[cand_bad, cand_n - cand_bad], [base_bad, base_n - base_bad]]
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    counts = (
        f"candidate worrying in {cand_bad}/{cand_n} runs, baseline against itself in "
        f"{base_bad}/{base_n} (one-sided Fisher exact p={p_value:.3g}, alpha {alpha:g})"
    )
    consistent = [r.prompt.id for r in usable if r.consistent_change]
    if p_value < alpha or consistent:
        also = f"; every candidate run worrying on {', '.join(consistent)}" if consistent else ""
        verdict: Literal["REGRESSED", "EQUIVALENT"] = "REGRESSED"
        reason = counts + also
    else:
        verdict, reason = "EQUIVALENT", f"no evidence of a regression: {counts}"
    return Comparison(
        baseline, candidate, runs, results, verdict, p_value, reason, similarity.label
    )


class SdkAsker:
    """Ask a model through the official SDK of its provider (clients made once, shared)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def _client(self, provider: str) -> Any:
        if provider not in self._clients:
            try:
                if provider == "anthropic":
                    import anthropic

                    self._clients[provider] = anthropic.Anthropic()
                else:
                    import openai

                    self._clients[provider] = openai.OpenAI()
            except ImportError as exc:
                raise SnapshotError(
                    f"comparing {provider} models needs: pip install 'canarytrace[{provider}]'"
                ) from exc
        return self._clients[provider]

    def __call__(self, model: ChosenModel, prompt: Prompt) -> str:
        """The text of one answer."""
        provider = provider_of(model)
        client = self._client(provider)
        optional: dict[str, Any] = {}
        if prompt.temperature is not None:
            optional["temperature"] = prompt.temperature
        if provider == "anthropic":
            if prompt.system:
                optional["system"] = prompt.system
            message = client.messages.create(
                model=model.model_id,
                max_tokens=prompt.max_tokens,
                messages=[{"role": "user", "content": prompt.prompt}],
                **optional,
            )
            return "".join(b.text for b in message.content if b.type == "text")
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        completion = client.chat.completions.create(
            model=model.model_id,
            messages=[*messages, {"role": "user", "content": prompt.prompt}],
            max_completion_tokens=prompt.max_tokens,
            **optional,
        )
        return completion.choices[0].message.content or ""


_OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt-")


def provider_of(model: ChosenModel) -> str:
    """anthropic or openai: from models.yaml, else from the id's family name."""
    if model.provider in ("anthropic", "openai"):
        return model.provider
    if model.provider is None and model.model_id.startswith("claude-"):
        return "anthropic"
    if model.provider is None and model.model_id.startswith(_OPENAI_PREFIXES):
        return "openai"
    raise SnapshotError(
        f"cannot tell how to call {model.model_id} (provider {model.provider or 'unknown'}): "
        "compare calls openai and anthropic models; list it in models.yaml with its provider"
    )


def table(result: Comparison) -> Any:
    """The per-prompt table for the terminal (rich)."""
    from rich.table import Table
    from rich.text import Text

    out = Table(
        title=f"{result.candidate.model_id} vs {result.baseline.model_id}, {result.runs} runs each"
    )
    for column in ("prompt", "baseline self", "cand→base", "worrying runs", "verdict", "worst"):
        out.add_column(column, overflow="fold")
    for r in result.results:
        worst = r.worst[0] if r.worst else None
        # Text, not markup: a prompt id or a reason may hold brackets.
        if not r.candidate_verdicts:
            out.add_row(
                Text(r.prompt.id),
                "",
                "",
                "",
                Text("no answers", "yellow"),
                Text("; ".join(r.errors)),
            )
            continue
        label = Text("worrying", "red") if r.worrying else Text("acceptable", "green")
        out.add_row(
            Text(r.prompt.id),
            f"{r.baseline_self:.2f}",
            f"{r.cross:.2f}",
            f"{r.candidate_worrying}/{len(r.candidate_verdicts)} vs "
            f"{r.baseline_worrying}/{len(r.baseline_verdicts)}",
            label,
            Text(f"{worst.kind}: {worst.reason}" if worst and not worst.acceptable else ""),
        )
    return out
