"""The text form of one LLM snapshot: which model wrote it, what it had to satisfy, the output.

A snapshot is stored as a short header, a `---` line and the model's output verbatim:

    model: claude-3-opus-20241219
    pinned: 2026-06-01 (Canary candidate for deeper reasoning on long chats.)
    checks: {"must_contain": ["Paris"]}
    ---
    The capital of France is Paris.

The header is there so that a `git diff` of `__snapshots__/` says which model wrote each
output, and so that `canarytrace snapshots review` can apply the same checks the test
asserted without importing the test. This module has no pytest or syrupy dependency: the
review and `compare` read and write records too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

SEPARATOR = "---"


@dataclass(frozen=True)
class Checks:
    """What an output must satisfy besides being close in meaning to the snapshot.

    `threshold` overrides the embedder's default cosine similarity bar; `must_contain` and
    `must_not_contain` are phrases matched case-insensitively; `json_keys` (or
    `must_parse_json`) demands that the output parse as a JSON object holding those keys;
    `max_length_ratio` bounds how much longer the new output may be than the snapshot.
    """

    threshold: float | None = None
    must_contain: tuple[str, ...] = ()
    must_not_contain: tuple[str, ...] = ()
    must_parse_json: bool = False
    json_keys: tuple[str, ...] = ()
    max_length_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold}: a cosine similarity lies in [-1, 1]")
        if self.max_length_ratio is not None and self.max_length_ratio <= 0:
            raise ValueError(f"max_length_ratio={self.max_length_ratio}: must be above 0")

    @property
    def wants_json(self) -> bool:
        """Whether the output has to parse as JSON."""
        return self.must_parse_json or bool(self.json_keys)

    def to_json(self) -> str:
        """The compact JSON of the non-default checks, stable for diffs ('' when none)."""
        defaults = asdict(Checks())
        data = {k: v for k, v in asdict(self).items() if v != defaults[k]}
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        return json.dumps(data, sort_keys=True, ensure_ascii=False) if data else ""

    @classmethod
    def from_json(cls, text: str, *, where: str = "snapshot") -> Checks:
        """Parse the header's `checks:` value; `where` names the snapshot in errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: the 'checks:' header is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{where}: the 'checks:' header must be a JSON object")
        known = set(asdict(cls()))
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown check(s) {unknown}; known: {sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)


@dataclass(frozen=True)
class LLMOutput:
    """One model output with the checks a snapshot assertion applies to it.

    Compare plain text with `assert llm_snapshot == text`; add checks with
    `assert llm_snapshot == LLMOutput(text, must_contain=("Paris",), threshold=0.85)`.
    """

    text: str
    threshold: float | None = None
    must_contain: Sequence[str] = ()
    must_not_contain: Sequence[str] = ()
    must_parse_json: bool = False
    json_keys: Sequence[str] = ()
    max_length_ratio: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"LLMOutput.text must be str, got {type(self.text).__name__}")

    @property
    def checks(self) -> Checks:
        """The assertion's checks as a `Checks` value."""
        return Checks(
            threshold=self.threshold,
            must_contain=tuple(self.must_contain),
            must_not_contain=tuple(self.must_not_contain),
            must_parse_json=self.must_parse_json,
            json_keys=tuple(self.json_keys),
            max_length_ratio=self.max_length_ratio,
        )


@dataclass(frozen=True)
class Record:
    """A parsed snapshot: the output and the header that says where it came from."""

    text: str
    model: str | None = None
    pinned: str | None = None
    checks: Checks = field(default_factory=Checks)

    def render(self) -> str:
        """The stored form (see the module docstring)."""
        lines = []
        if self.model:
            lines.append(f"model: {self.model}")
        if self.pinned:
            lines.append(f"pinned: {self.pinned}")
        checks = self.checks.to_json()
        if checks:
            lines.append(f"checks: {checks}")
        lines.append(SEPARATOR)
        return "\n".join(lines) + "\n" + self.text

    @classmethod
    def parse(cls, stored: str, *, where: str = "snapshot") -> Record:
        """Read the stored form back; text without a header is taken as a bare output."""
        if stored.startswith(SEPARATOR + "\n"):  # an empty header
            return cls(text=stored[len(SEPARATOR) + 1 :])
        head, sep, text = stored.partition("\n" + SEPARATOR + "\n")
        if not sep:
            return cls(text=stored)
        fields: dict[str, str] = {}
        for number, line in enumerate(head.splitlines(), start=1):
            key, colon, value = line.partition(": ")
            if not colon or key not in {"model", "pinned", "checks"}:
                # Not our header: the output itself happens to contain a '---' line.
                return cls(text=stored)
            if key in fields:
                raise ValueError(f"{where}: header line {number} repeats '{key}:'")
            fields[key] = value
        checks = Checks.from_json(fields["checks"], where=where) if "checks" in fields else Checks()
        return cls(text=text, model=fields.get("model"), pinned=fields.get("pinned"), checks=checks)


def pin_label(pinned_date: object, why: str) -> str:
    """The `pinned:` header value: the registry's pin date and reason, as one line."""
    parts = [str(pinned_date) if pinned_date else "no pinned_date in models.yaml"]
    if why:
        parts.append(f"({' '.join(why.split())})")
    return " ".join(parts)
