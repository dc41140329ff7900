"""The model registry: `models.yaml`, the one source of truth for pinned models.

A registry holds, per route, the production, canary and fallback model ids with the
rollout stages and the current stage, and per model why and when it was pinned. JSON with
the same schema is accepted too (it is read as YAML, so its line numbers are known).

Every mistake gets one message naming the file, the line and the key, and all of them are
reported together (`InvalidRegistryError.problems`), so one run of `canarytrace validate`
shows everything to fix.

Environment variables override a route's tiers without editing the file, e.g. to point
one deployment at a different model: `CANARYTRACE_ROUTE_<ROUTE>_PRODUCTION`, `..._CANARY`,
`..._FALLBACK` and `..._STAGE`, where `<ROUTE>` is the route name upper-cased with every
character other than a letter or digit turned into `_` (route `chat-v2` ->
`CANARYTRACE_ROUTE_CHAT_V2_CANARY`). An empty CANARY or FALLBACK removes that tier. The
overridden values pass the same checks as the file's.

Dates and loading. Loading a registry (what routing does at start-up and on every reload)
never refuses a model because of its retirement date: it logs a warning instead. Taking an
application down the day a date passes would be worse than the provider's own 404, and a
provider sometimes extends a date. The date policy is enforced where a person is in the
loop: `canarytrace validate` and `promote` refuse a retired model, `status` and `lint` flag
it (see `canarytrace.deprecations`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from canarytrace.breaker import BreakerConfig
from canarytrace.deprecations import SHIPPED_ONLY as _SHIPPED_ONLY
from canarytrace.deprecations import DeprecationTable, Lifecycle, load_table
from canarytrace.errors import RegistryError

log = logging.getLogger(__name__)

DEFAULT_STAGES: tuple[int, ...] = (5, 25, 50, 100)
TIERS: tuple[str, ...] = ("production", "canary", "fallback")
ENV_PREFIX = "CANARYTRACE_ROUTE_"
Provider = Literal["openai", "anthropic", "google", "other"]

# A snapshot date or version: -20241022, @20241022, -2024-11-20, -0125(-preview), -001.
_PINNED = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2}|-\d{4}|-\d{3})(?=$|[-:@._v])")


class _Strict(BaseModel):
    """No unknown keys; numbers and flags as YAML types them (`stage: true` or `"25"`
    would otherwise be read as 1 and 25)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One pinned model and why it was chosen."""

    id: str
    provider: Provider
    pinned_date: dt.date | None = None
    tested: StrictBool = False
    regression_tested: StrictBool = False
    last_regression_test: dt.date | None = None
    canary_start: dt.date | None = None
    why: str = ""
    allow_alias: StrictBool = False


class Route(_Strict):
    """The tiers of one route and where its rollout stands."""

    production: str
    canary: str | None = None
    fallback: str | None = None
    stages: tuple[StrictInt, ...] = DEFAULT_STAGES
    stage: StrictInt = 0  # the canary's current share in percent; 0 = no canary traffic
    rollback: StrictBool = False
    rollback_reason: str | None = None
    rolled_back_on: dt.date | None = None
    upgraded_on: dt.date | None = None  # the day the last canary became production
    # The route's error-rate breaker (window, min_calls, max_error_rate); None = the
    # process-wide setting of `canarytrace.configure(breaker=...)`.
    breaker: BreakerConfig | None = None
    # Settings of the canary judge for this route (confidence, sequential, metrics with
    # margins); `canarytrace analyze` validates them, since the judge owns their meaning.
    judge: dict[str, Any] | None = None


class Registry(_Strict):
    """A whole `models.yaml`."""

    routes: dict[str, Route]
    models: tuple[ModelEntry, ...] = Field(default_factory=tuple)

    def model(self, model_id: str) -> ModelEntry | None:
        """The entry of `model_id`, or None when the registry does not list it."""
        return next((m for m in self.models if m.id == model_id), None)

    def find_model(self, model_id: str) -> tuple[str, str] | None:
        """The (route, tier) that serves `model_id`, or None.

        When several routes or tiers name the same id, the first route in file order wins,
        and within a route production before canary before fallback.
        """
        for name, route in self.routes.items():
            for tier in TIERS:
                if getattr(route, tier) == model_id:
                    return name, tier
        return None

    def model_ids(self) -> Iterator[tuple[str, str, str]]:
        """Every (route, tier, model id) the routes name, in file order."""
        for name, route in self.routes.items():
            for tier in TIERS:
                model_id = getattr(route, tier)
                if model_id:
                    yield name, tier, model_id


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is and what to do about it."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


class InvalidRegistryError(RegistryError):
    """A registry with one or more mistakes; `problems` lists each one."""

    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in problems))


def _table(table: DeprecationTable | None) -> DeprecationTable:
    """`table`, else the default one; never raises (the alias rule runs on the hot path).

    A broken `$CANARYTRACE_DEPRECATIONS` file falls back to the shipped table here; the
    commands that read the table directly report it.
    """
    if table is not None:
        return table
    try:
        return load_table()
    except RegistryError:
        return load_table(_SHIPPED_ONLY)


def is_known_alias(model_id: str, table: DeprecationTable | None = None) -> bool:
    """True for an undated alias that moves when the provider says so (`gpt-4o`, `*-latest`)."""
    return model_id in _table(table).aliases or model_id.endswith("-latest")


def is_pinned(model_id: str, table: DeprecationTable | None = None) -> bool:
    """True when `model_id` names one fixed model version.

    That is when it carries a snapshot date or version (`-20241022`, `@20241022`,
    `-2024-11-20`, `-0125-preview`, `-001`), or when the deprecation table lists it as a
    dateless snapshot (Anthropic's ids from Claude 4.6 on, e.g. `claude-sonnet-4-6`).
    Known aliases are never pinned. `table` defaults to the shipped deprecation table
    extended by `$CANARYTRACE_DEPRECATIONS`.
    """
    return _pinned(model_id, _table(table))


@functools.lru_cache(maxsize=4096)
def _pinned(model_id: str, table: DeprecationTable) -> bool:
    """Cached per (id, table): the instrumentation asks once per traced call."""
    if is_known_alias(model_id, table):
        return False
    return bool(_PINNED.search(model_id)) or table.is_snapshot(model_id)


def env_var(route: str, tier: str) -> str:
    """The environment variable that overrides `tier` (or `stage`) of `route`."""
    return f"{ENV_PREFIX}{re.sub(r'[^A-Za-z0-9]', '_', route).upper()}_{tier.upper()}"


# --- reading with positions -------------------------------------------------------------

KeyPath = tuple[str | int, ...]


class _Located:
    """Plain data plus where each key came from: (file, line) per key path."""

    def __init__(self, file: str):
        self.file = file
        self.where: dict[KeyPath, tuple[str, int | None]] = {}

    def plain(self, node: Any, path: KeyPath = ()) -> Any:
        if isinstance(node, CommentedMap):
            out = {}
            for key, value in node.items():
                self.where[(*path, key)] = (self.file, node.lc.key(key)[0] + 1)
                out[key] = self.plain(value, (*path, key))
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for index, value in enumerate(node):
                self.where[(*path, index)] = (self.file, node.lc.item(index)[0] + 1)
                items.append(self.plain(value, (*path, index)))
            return items
        return node

    def problem(self, path: KeyPath, message: str) -> Problem:
        """A problem at the deepest known position along `path`."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.where:
                file, line = self.where[path[:end]]
                return Problem(file, line, _dotted(path), message)
        return Problem(self.file, None, _dotted(path) or "(top level)", message)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Constructor(RoundTripConstructor):
    """Keeps an impossible date (`2024-13-45`) as its text, so that the schema reports it
    with its file, line and key; ruamel would raise a bare ValueError naming neither."""

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def _text(path: Path) -> str:
    """The file's text, or a RegistryError saying what is wrong with the file itself."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RegistryError(
            f"{path}: no such registry file; create one (see the example models.yaml) or set "
            "$CANARYTRACE_REGISTRY"
        ) from exc
    except IsADirectoryError as exc:
        raise RegistryError(
            f"{path}: is a directory; name the registry file itself (e.g. {path}/models.yaml)"
        ) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start : exc.start + 1].hex()
        message = f"byte 0x{byte} is not UTF-8; save the file as UTF-8"
        raise InvalidRegistryError([Problem(str(path), line, "(encoding)", message)]) from exc
    except OSError as exc:
        raise RegistryError(
            f"{path}: cannot be read ({exc.strerror}); check the path and its permissions"
        ) from exc


def _read(path: Path) -> tuple[Any, _Located]:
    text = _text(path)
    located = _Located(str(path))
    try:
        yaml = YAML(typ="rt")
        yaml.Constructor = _Constructor
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "syntax error"
        raise InvalidRegistryError([Problem(str(path), line, "(syntax)", what)]) from exc
    except YAMLError as exc:
        raise InvalidRegistryError([Problem(str(path), None, "(syntax)", str(exc))]) from exc
    return located.plain(data), located


# --- environment overrides ----------------------------------------------------------------


def _apply_env(data: dict[str, Any], located: _Located, environ: Mapping[str, str]) -> None:
    routes = data.get("routes")
    if not isinstance(routes, dict):
        return
    known: dict[str, tuple[str, str]] = {}
    for name in routes:
        for tier in (*TIERS, "stage"):
            known[env_var(str(name), tier)] = (str(name), tier)
    problems = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        if var not in known:
            problems.append(
                Problem(
                    "environment",
                    None,
                    var,
                    "names no route/tier of this registry; expected one of "
                    f"{sorted(known) or '(no routes)'}",
                )
            )
            continue
        name, tier = known[var]
        route = routes[name]
        if not isinstance(route, dict):
            continue
        located.where[("routes", name, tier)] = (f"environment ${var}", None)
        if tier == "stage":
            try:
                route["stage"] = int(value)
            except ValueError:
                problems.append(Problem("environment", None, var, f"'{value}' is not a number"))
        elif value.strip():
            route[tier] = value.strip()
        elif tier == "production":
            problems.append(Problem("environment", None, var, "production cannot be empty"))
        else:
            route.pop(tier, None)
    if problems:
        raise InvalidRegistryError(problems)


# --- validation ---------------------------------------------------------------------------


def _unknown_key(key: object, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown key; {hint}"


def _schema_problems(
    error: ValidationError, base: KeyPath, located: _Located, schema: type[BaseModel]
) -> list[Problem]:
    problems: dict[KeyPath, Problem] = {}
    for err in error.errors():
        loc = (*base, *err["loc"])
        if loc in problems:
            continue  # one message per mistake
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = _unknown_key(loc[-1], schema.model_fields)
        elif kind == "missing":
            msg = "missing; this key is required"
        elif kind.startswith("date_"):
            msg = f"{err['msg']} (got {err['input']!r}); write a real day as YYYY-MM-DD"
        else:
            msg = f"{err['msg']} (got {err['input']!r})"
        problems[loc] = located.problem(loc, msg)
    return list(problems.values())


def _validate(data: Any, located: _Located, table: DeprecationTable | None) -> Registry:
    if not isinstance(data, dict):
        raise InvalidRegistryError(
            [located.problem((), "expected a mapping with 'routes' and 'models'")]
        )
    problems: list[Problem] = []
    unknown = [key for key in data if key not in ("routes", "models")]
    for key in unknown:
        problems.append(located.problem((key,), _unknown_key(key, ("routes", "models"))))
    routes_raw = data.get("routes")
    models_raw = data.get("models") or []
    # Every entry that names an id counts as listed, valid or not, and a misspelt `models:`
    # key is one mistake: neither makes each route's models a second mistake.
    listed = {str(m["id"]) for m in models_raw if isinstance(m, dict) and "id" in m}
    check_listed = "models" in data or not unknown
    if not isinstance(routes_raw, dict):
        problems.append(located.problem(("routes",), "missing or not a mapping of route names"))
        routes_raw = {}
    if not isinstance(models_raw, list):
        problems.append(located.problem(("models",), "must be a list of model entries"))
        models_raw = []

    routes: dict[str, Route] = {}
    for name, raw in routes_raw.items():
        try:
            routes[str(name)] = Route.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_schema_problems(exc, ("routes", name), located, Route))
    models: list[tuple[int, ModelEntry]] = []
    for index, raw in enumerate(models_raw):
        try:
            models.append((index, ModelEntry.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(_schema_problems(exc, ("models", index), located, ModelEntry))

    listed_or_none = listed if check_listed else None
    problems.extend(_rule_problems(routes, models, listed_or_none, located, _table(table)))
    if problems:
        raise InvalidRegistryError(problems)
    return Registry(routes=routes, models=tuple(entry for _, entry in models))


def _rule_problems(
    routes: dict[str, Route],
    models: list[tuple[int, ModelEntry]],
    listed: set[str] | None,
    located: _Located,
    table: DeprecationTable,
) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for index, entry in models:
        where = ("models", index, "id")
        if entry.id in first:
            line = located.where.get(("models", first[entry.id]), ("", None))[1]
            yield located.problem(where, f"duplicate id '{entry.id}' (first at line {line})")
            continue
        first[entry.id] = index
        if is_known_alias(entry.id, table) and not entry.allow_alias:
            yield located.problem(
                where,
                f"'{entry.id}' is an undated alias that moves when the provider updates it; "
                "pin a dated snapshot (see `canarytrace lint`) or add `allow_alias: true`",
            )
    for name, route in routes.items():
        base = ("routes", name)
        stages = route.stages
        if not stages or list(stages) != sorted(set(stages)) or stages[0] < 1 or stages[-1] > 100:
            yield located.problem(
                (*base, "stages"),
                f"{list(stages)} must be rising percentages from 1 to 100, e.g. [5, 25, 50, 100]",
            )
        if route.stage != 0 and route.stage not in stages:
            yield located.problem(
                (*base, "stage"),
                f"{route.stage} is not among the stages {list(stages)}; use one of them "
                "(or 0 for no canary traffic)",
            )
        elif route.stage and route.canary is None:
            yield located.problem(
                (*base, "stage"),
                f"{route.stage}% goes to a canary but the route has none; set canary or stage: 0",
            )
        if route.canary is not None and route.canary == route.production:
            yield located.problem(
                (*base, "canary"),
                f"equals production ('{route.production}'); a canary must be a different model",
            )
        for tier in TIERS:
            model_id = getattr(route, tier)
            if model_id and listed is not None and model_id not in listed:
                yield located.problem(
                    (*base, tier),
                    f"'{model_id}' is not in the models list; add an entry (id, provider, why)",
                )


def key_lines(path: str | Path) -> dict[tuple[str | int, ...], int]:
    """The line of every key in a registry file, by key path (`("routes", "chat", "canary")`).

    For tools that report on a valid registry (the retirement checks of `validate`).
    """
    _, located = _read(Path(path))
    return {key: line for key, (_, line) in located.where.items() if line is not None}


def parse_registry(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    table: DeprecationTable | None = None,
) -> Registry:
    """Read and validate a registry without the retirement-date log (for tools).

    `table` decides which ids are known aliases (default: see `is_pinned`).
    """
    data, located = _read(Path(path))
    if isinstance(data, dict):
        _apply_env(data, located, os.environ if environ is None else environ)
    return _validate(data, located, table)


def load_registry(path: str | Path, environ: Mapping[str, str] | None = None) -> Registry:
    """Read and validate a registry file (YAML or JSON), with environment overrides.

    Raises InvalidRegistryError (a RegistryError) listing every mistake with file, line
    and key. Retired or soon-retiring models are logged as warnings, never refused here
    (see the module docstring for why).
    """
    registry = parse_registry(path, environ)
    _log_retirements(registry, Path(path))
    return registry


def _log_retirements(registry: Registry, path: Path) -> None:
    try:
        table = load_table()
    except RegistryError as exc:
        log.warning("deprecation table not read, retirement dates unchecked: %s", exc)
        return
    today = dt.date.today()
    for route, tier, model_id in registry.model_ids():
        state = table.assess(model_id, today)
        if state.lifecycle in (Lifecycle.RETIRED, Lifecycle.RETIRING):
            log.warning(
                "%s: routes.%s.%s: %s %s; still routed (run `canarytrace validate`)",
                path,
                route,
                tier,
                model_id,
                state.describe(),
            )
