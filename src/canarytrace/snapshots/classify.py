"""Is a changed output acceptable or worrying? One answer for the plugin, review and compare.

The article sorts snapshot changes after a model upgrade into two kinds:

    acceptable   unchanged · reformatted · more concise · rephrased (same meaning)
    worrying     now fails to parse · now a refusal · required information lost ·
                 forbidden content · meaning changed · far longer

Meaning is the embedding similarity against a threshold; the rest are plain checks on the
text. "Required information lost" covers the assertion's `must_contain` phrases, required
JSON keys, and numbers: a number in the old output that the new one lacks is a changed
or lost fact (prices, dates, counts), something embeddings barely notice; the "1." that
opens a list item is layout, not a fact. A worrying
reason outranks an acceptable one; every problem found is listed, the first names the kind.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

from canarytrace.snapshots.record import Checks

ACCEPTABLE: Final = "acceptable"
WORRYING: Final = "worrying"
DEFAULT_MAX_LENGTH_RATIO = 2.0  # "far longer": more than twice the words of the old output
CONCISE_RATIO = 0.8  # at most 80 % of the old words, same meaning: "more concise"

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"(?<![\d.])\d+(?:[.,:]\d+)*")
# "1. " or "2) " opening a line numbers a list item: layout, not a fact or a word (3 digits
# at most, so a line opening with a year keeps it).
_LIST_NUMBER = re.compile(r"^[ \t]*\d{1,3}[.)](?=[ \t]+\S)", re.MULTILINE)
# The speaker declining, not an apology about what the user cannot do.
_I_CANNOT = r"i (?:can(?:no|')?t|won'?t)|i(?:'?m| am) (?:unable|not able)"
_REFUSAL = re.compile(
    rf"\b(?:i'?m|i am) (?:sorry|afraid)\b[^.]{{0,60}}\b(?:{_I_CANNOT})\b"
    rf"|\b(?:{_I_CANNOT}|i must decline) (?:to )?"
    r"(?:help|assist|provide|comply|share|do that|answer|fulfil)"
    r"|\bas an ai(?: language model)?\b"
    r"|\bi must (?:decline|refuse)\b",
)


@dataclass(frozen=True)
class Classification:
    """The verdict on one old → new change, with why."""

    verdict: Literal["acceptable", "worrying"]
    kind: str  # e.g. "rephrased", "meaning changed"
    reason: str  # one line for people: every problem found, or why it is fine
    similarity: float
    threshold: float
    failed_checks: tuple[str, ...] = ()

    @property
    def acceptable(self) -> bool:
        """True for an acceptable change (or no change)."""
        return self.verdict == ACCEPTABLE


def is_refusal(text: str) -> bool:
    """Whether the text reads as a refusal to answer ("I'm sorry, but I can't help...")."""
    return bool(_REFUSAL.search(text.lower().replace("\u2019", "'")))


def numbers(text: str) -> set[str]:
    """The numbers a text states (2026, 3.5, 14:30), thousands separators kept; a list's
    item numbers are not stated facts, so turning it into bullets loses nothing."""
    return set(_NUMBER.findall(_LIST_NUMBER.sub("", text)))


def _words(text: str) -> list[str]:
    return _WORD.findall(_LIST_NUMBER.sub("", text).lower())


def _json(text: str) -> tuple[object | None, str | None]:
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, str(exc)


def _layout(text: str) -> tuple[int, int, int, int]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    bullets = sum(bool(re.match(r"([-*+]|\d+[.)])\s", line)) for line in lines)
    headings = sum(line.startswith("#") for line in lines)
    return len(lines), bullets, headings, text.count("```")


def check_failures(
    old: str, new: str, checks: Checks, *, required_numbers: Collection[str] | None = None
) -> list[tuple[str, str]]:
    """Every failed check as (kind, message), most serious kind first.

    `required_numbers` are the numbers the new output must keep; by default those of `old`.
    """
    failures: list[tuple[str, str]] = []
    parsed, error = _json(new.strip())
    old_parsed, _ = _json(old.strip())
    if (checks.wants_json or isinstance(old_parsed, dict | list)) and error is not None:
        failures.append(("now fails to parse", f"not valid JSON any more ({error})"))
    if is_refusal(new) and not is_refusal(old):
        failures.append(("now a refusal", "the new output refuses to answer"))
    lower = new.lower()
    missing = [p for p in checks.must_contain if p.lower() not in lower]
    if missing:
        failures.append(("required information lost", f"missing required {_quoted(missing)}"))
    if checks.json_keys and error is None:
        absent = (
            [k for k in checks.json_keys if k not in parsed]
            if isinstance(parsed, dict)
            else list(checks.json_keys)
        )
        if absent:
            failures.append(("required information lost", f"JSON lacks keys {_quoted(absent)}"))
    kept = numbers(new)
    lost = sorted((numbers(old) if required_numbers is None else set(required_numbers)) - kept)
    if lost:
        failures.append(
            ("required information lost", f"numbers gone or changed: {', '.join(lost)}")
        )
    forbidden = [p for p in checks.must_not_contain if p.lower() in lower]
    if forbidden:
        failures.append(("forbidden content", f"contains forbidden {_quoted(forbidden)}"))
    return failures


def _longer(ratio: float, limit: float) -> str:
    if math.isinf(ratio):
        return "text where the snapshot was empty"
    return f"{ratio:.1f}x the words (limit {limit:g}x)"


def _quoted(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def length_ratio(old: str, new: str) -> float:
    """Words of the new output per word of the old (characters when the old has no words)."""
    old_n, new_n = len(_words(old)), len(_words(new))
    if old_n:
        return new_n / old_n
    return len(new) / len(old) if old else (1.0 if not new else float("inf"))


def classify(
    old: str,
    new: str,
    *,
    similarity: float,
    threshold: float,
    checks: Checks | None = None,
    required_numbers: Collection[str] | None = None,
) -> Classification:
    """Classify the change from `old` to `new`.

    `similarity` is the embedding cosine of the two texts and `threshold` the bar for "same
    meaning" (the checks' own threshold, when set, wins). `required_numbers` overrides the
    numbers that must survive (compare passes those every baseline run agrees on).
    """
    checks = checks or Checks()
    bar = checks.threshold if checks.threshold is not None else threshold
    failures = check_failures(old, new, checks, required_numbers=required_numbers)
    if similarity < bar:
        failures.append(("meaning changed", f"similarity {similarity:.3f} < {bar:.2f}"))
    ratio = length_ratio(old, new)
    max_ratio = checks.max_length_ratio or DEFAULT_MAX_LENGTH_RATIO
    if ratio > max_ratio:
        failures.append(("far longer", _longer(ratio, max_ratio)))
    if failures:
        return Classification(
            verdict=WORRYING,
            kind=failures[0][0],
            reason="; ".join(message for _, message in failures),
            similarity=similarity,
            threshold=bar,
            failed_checks=tuple(message for _, message in failures),
        )
    kind, reason = _acceptable_kind(old, new, similarity, ratio)
    return Classification(ACCEPTABLE, kind, reason, similarity, bar)


def against_own_checks(text: str, checks: Checks) -> Classification:
    """A recorded or unchanged output against its own assertion's checks (phrases, JSON):
    a snapshot equal to the output it replaces must still satisfy what the test asks."""
    return classify(text, text, similarity=1.0, threshold=0.0, checks=checks)


def _acceptable_kind(old: str, new: str, similarity: float, ratio: float) -> tuple[str, str]:
    if old == new:
        return "unchanged", "identical"
    old_json, _ = _json(old)
    if _words(old) == _words(new) or (old_json is not None and old_json == _json(new)[0]):
        return "reformatted", "same words, new layout"
    if _layout(old) != _layout(new) and ratio >= CONCISE_RATIO:
        return "reformatted", f"new layout, same meaning (similarity {similarity:.2f})"
    if ratio < CONCISE_RATIO:
        return (
            "more concise",
            f"{ratio:.0%} of the words, same meaning (similarity {similarity:.2f})",
        )
    return "rephrased", f"same meaning (similarity {similarity:.2f})"
