"""The deprecation table: when a model stops working, and what to move to.

The table ships as package data (`canarytrace/data/deprecations.yaml`, every date read
from the providers' deprecation pages, with the source URL). A team extends or overrides
it with its own file of the same layout, named by `$CANARYTRACE_DEPRECATIONS` or passed
explicitly; the fields of an entry there replace those of the shipped entry with the same
id, so a team can record a date the day the provider announces it, without waiting for a
release.

Policy (used by `canarytrace validate`, `status`, `promote` and `lint`):

- *retired*: the retirement date has passed; requests fail. Refused.
- *retiring*: it retires within `WARN_DAYS` (60) days. Warned about.
- *deprecated*: a retirement date is announced but further away. Reported.
- *active*: the table knows the id and no retirement is announced.
- *unknown*: the table has no record of the id; nothing is claimed either way.

Every check takes an `as_of` date, so results (and tests) do not depend on the day they
run.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from canarytrace.errors import RegistryError

WARN_DAYS = 60
ENV_TABLE = "CANARYTRACE_DEPRECATIONS"
SHIPPED_ONLY = ""  # pass as `extra` to load_table() for the shipped table alone
_ENTRY_KEYS = frozenset({"provider", "deprecated", "retires", "replacement", "source", "snapshot"})


class Lifecycle(StrEnum):
    """Where a model stands on a given day."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    RETIRING = "retiring"
    RETIRED = "retired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Deprecation:
    """One row of the table. Empty fields are unverified, not "never"."""

    model: str
    provider: str | None = None
    deprecated: dt.date | None = None
    retires: dt.date | None = None
    replacement: str | None = None
    source: str | None = None
    snapshot: bool = False


@dataclass(frozen=True)
class Assessment:
    """What the table says about one model id on one day."""

    model: str
    lifecycle: Lifecycle
    entry: Deprecation | None
    days_left: int | None  # days until retirement; negative once retired

    @property
    def refused(self) -> bool:
        return self.lifecycle is Lifecycle.RETIRED

    @property
    def warned(self) -> bool:
        return self.lifecycle is Lifecycle.RETIRING

    def describe(self) -> str:
        """One human sentence, e.g. 'retired on 2025-10-28 (replacement: claude-sonnet-4-6)'."""
        entry = self.entry
        if entry is None or self.lifecycle is Lifecycle.ACTIVE:
            return "no deprecation record" if entry is None else "active"
        when = f"{entry.retires.isoformat()}" if entry.retires else "an unannounced date"
        if self.lifecycle is Lifecycle.RETIRED:
            text = f"retired on {when}"
        elif self.lifecycle is Lifecycle.RETIRING:
            text = f"retires on {when}, in {self.days_left} days"
        else:
            text = f"deprecated, retires on {when}"
        if entry.replacement:
            text += f" (replacement: {entry.replacement})"
        return text


class DeprecationTable:
    """Deprecation rows by model id, plus the snapshot each known alias pointed at."""

    def __init__(self, models: dict[str, Deprecation], aliases: dict[str, str | None]):
        self.models = models
        self.aliases = aliases

    def get(self, model_id: str) -> Deprecation | None:
        return self.models.get(model_id)

    def is_snapshot(self, model_id: str) -> bool:
        """True for a dateless id that the provider documents as a fixed snapshot."""
        entry = self.models.get(model_id)
        return entry is not None and entry.snapshot

    def assess(self, model_id: str, as_of: dt.date) -> Assessment:
        """Classify `model_id` on `as_of` (see the module docstring for the classes)."""
        entry = self.models.get(model_id)
        if entry is None:
            return Assessment(model_id, Lifecycle.UNKNOWN, None, None)
        if entry.deprecated and as_of < entry.deprecated:
            # Judged as of a day before the announcement: nobody knew yet.
            return Assessment(model_id, Lifecycle.ACTIVE, entry, None)
        if entry.retires is None:
            state = Lifecycle.DEPRECATED if entry.deprecated else Lifecycle.ACTIVE
            return Assessment(model_id, state, entry, None)
        days = (entry.retires - as_of).days
        if days <= 0:
            state = Lifecycle.RETIRED
        elif days <= WARN_DAYS:
            state = Lifecycle.RETIRING
        else:
            state = Lifecycle.DEPRECATED
        return Assessment(model_id, state, entry, days)

    def suggest(self, model_id: str, as_of: dt.date) -> str | None:
        """The id to pin instead of `model_id`, or None when the table knows none.

        An alias resolves to its snapshot; a snapshot that is retired or retiring is
        replaced by the provider's recommendation, followed until one is safe on `as_of`.
        Returns `model_id`'s own snapshot when that is still fine.
        """
        current: str | None = self.aliases.get(model_id, model_id)
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            state = self.assess(current, as_of)
            if state.lifecycle not in (Lifecycle.RETIRED, Lifecycle.RETIRING):
                return None if current == model_id else current
            current = state.entry.replacement if state.entry else None
        return None


def _date(value: object, where: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise RegistryError(f"{where}: '{value}' is not a date; write YYYY-MM-DD") from exc


_Rows = dict[str, dict[str, Any]]


def _parse(text: str, origin: str) -> tuple[_Rows, dict[str, str | None]]:
    """The checked rows (only the fields each one gives) and the aliases of one file."""
    try:
        data = YAML(typ="rt").load(text) or {}
    except YAMLError as exc:
        raise RegistryError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{origin}: expected a mapping with 'models' and 'aliases'")
    unknown = set(data) - {"models", "aliases"}
    if unknown:
        raise RegistryError(f"{origin}: unknown top-level key(s) {sorted(unknown)}")
    rows: _Rows = {}
    for model_id, row in (data.get("models") or {}).items():
        line = data["models"].lc.key(model_id)[0] + 1
        where = f"{origin}:{line}: models.{model_id}"
        row = row or {}
        if not isinstance(row, dict) or set(row) - _ENTRY_KEYS:
            extra = sorted(set(row) - _ENTRY_KEYS) if isinstance(row, dict) else row
            raise RegistryError(f"{where}: unknown field(s) {extra}; allowed {sorted(_ENTRY_KEYS)}")
        checked = dict(row)
        for key in ("deprecated", "retires"):
            if key in checked:
                checked[key] = _date(checked[key], f"{where}.{key}")
        if "snapshot" in checked:
            checked["snapshot"] = bool(checked["snapshot"])
        rows[str(model_id)] = checked
    aliases = {str(k): (str(v) if v else None) for k, v in (data.get("aliases") or {}).items()}
    return rows, aliases


def _table(rows: _Rows, aliases: dict[str, str | None]) -> DeprecationTable:
    return DeprecationTable({m: Deprecation(model=m, **row) for m, row in rows.items()}, aliases)


@functools.cache
def _shipped_rows() -> tuple[_Rows, dict[str, str | None]]:
    text = resources.files("canarytrace.data").joinpath("deprecations.yaml").read_text("utf-8")
    return _parse(text, "canarytrace/data/deprecations.yaml")


@functools.cache
def _shipped() -> DeprecationTable:
    return _table(*_shipped_rows())


def load_table(extra: str | Path | None = None) -> DeprecationTable:
    """The shipped table, extended/overridden by `extra` (default: `$CANARYTRACE_DEPRECATIONS`).

    Raises RegistryError naming the file and line when the extra file is malformed. The
    result is cached per file and modification time, so callers on a hot path (the alias
    rule behind every traced call) pay a dictionary lookup, not a file read.
    """
    extra = extra if extra is not None else os.environ.get(ENV_TABLE, SHIPPED_ONLY)
    if extra == SHIPPED_ONLY:
        return _shipped()
    path = Path(extra)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the deprecation file ({exc.strerror})") from exc
    return _with_user_file(str(path.resolve()), mtime)


@functools.lru_cache(maxsize=8)
def _with_user_file(path: str, mtime_ns: int) -> DeprecationTable:
    """`mtime_ns` is only part of the cache key: an edited file is read again.

    A row of the user's file overrides the shipped row field by field, so adding a date
    keeps, say, the shipped `snapshot: true`.
    """
    rows, aliases = _shipped_rows()
    user_rows, user_aliases = _parse(Path(path).read_text(encoding="utf-8"), path)
    merged = {m: {**rows.get(m, {}), **row} for m, row in user_rows.items()}
    return _table({**rows, **merged}, {**aliases, **user_aliases})
