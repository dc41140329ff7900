"""Which model a snapshot session or a comparison uses: a tier of models.yaml or a pinned id.

Shared by the pytest plugin (`--model`, `--route`) and `canarytrace compare`
(`--baseline`, `--candidate`), so both refuse the same things with the same words: an
undated alias (the message of `canarytrace lint`: a snapshot must say exactly which model
wrote it), a tier without a registry, a route the registry lacks.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from canarytrace.errors import SnapshotError
from canarytrace.snapshots.record import pin_label

if TYPE_CHECKING:
    from canarytrace.registry import ModelEntry, Registry

REGISTRY_ENV = "CANARYTRACE_REGISTRY"
TIER_NAMES = ("production", "canary", "fallback")


@dataclass(frozen=True)
class ChosenModel:
    """A resolved model: its id, where the registry routes it, and its pin."""

    model_id: str
    route: str | None
    tier: str | None
    pinned: str  # the snapshot header's `pinned:` value
    provider: str | None  # from the registry entry, when listed


def registry_path() -> Path:
    """`$CANARYTRACE_REGISTRY`, else `./models.yaml`."""
    return Path(os.environ.get(REGISTRY_ENV) or "models.yaml")


def load_if_present() -> tuple[Path, Registry | None]:
    """The registry path and the registry, None when there is no file (and no env var)."""
    path = registry_path()
    if path.is_file():
        # parse_registry: validated, minus the retirement warnings about every other
        # model in the file, which would bury the one line that matters in the header.
        from canarytrace.registry import parse_registry

        return path, parse_registry(path)
    if os.environ.get(REGISTRY_ENV):
        raise SnapshotError(f"{path}: no such registry file (from ${REGISTRY_ENV})")
    return path, None


def resolve_model(
    value: str | None, route: str | None, *, option: str = "--model"
) -> ChosenModel | None:
    """Turn a tier or model id (and a route) into a pinned model id with its pin.

    `value` None means the registry's production tier, or nothing (None) without a
    registry. `option` names the command-line option in messages. Raises SnapshotError
    (or the registry's RegistryError) saying what to fix.
    """
    path, registry = load_if_present()
    if route is not None and registry is None:
        raise SnapshotError(
            f"--route {route} names a route of models.yaml: none at {path.resolve()}; set "
            f"${REGISTRY_ENV}, or drop --route and pass {option} a model id"
        )
    tier = value or ("production" if registry is not None else None)
    if tier is None:
        return None
    if tier in TIER_NAMES:
        if registry is None:
            raise SnapshotError(
                f"{option} {tier} is a tier, and tiers are resolved through models.yaml: "
                f"none at {path.resolve()}; set ${REGISTRY_ENV} or pass a model id"
            )
        route = route or _only_route(registry, path)
        if route not in registry.routes:
            raise SnapshotError(
                f"{path}: no route '{route}' (routes: {', '.join(registry.routes)}); fix --route"
            )
        model_id = getattr(registry.routes[route], tier)
        if model_id is None:
            raise SnapshotError(f"{path}: routes.{route} has no {tier}; set one or pick a tier")
    else:
        model_id = tier
    entry = registry.model(model_id) if registry else None
    refuse_alias(model_id, entry, option=option)
    found = registry.find_model(model_id) if registry else None
    return ChosenModel(
        model_id=model_id,
        route=found[0] if found else None,
        tier=found[1] if found else None,
        pinned=pin_label(entry.pinned_date, entry.why) if entry else f"not listed in {path}",
        provider=entry.provider if entry else None,
    )


def _only_route(registry: Registry, path: Path) -> str:
    if len(registry.routes) == 1:
        return next(iter(registry.routes))
    raise SnapshotError(f"{path} has routes {', '.join(registry.routes)}: choose one with --route")


def refuse_alias(
    model_id: str, entry: ModelEntry | None = None, *, option: str = "--model"
) -> None:
    """Raise SnapshotError for an undated alias, unless models.yaml allows it explicitly."""
    from canarytrace.deprecations import load_table
    from canarytrace.lint import check

    if entry is not None and entry.allow_alias:
        return
    finding = check(model_id, dt.date.today(), load_table())
    if finding is None or finding[0] != "undated-alias":
        return
    _, why, suggestion = finding
    instead = f"; pin {suggestion} instead" if suggestion else "; pin a dated snapshot id"
    raise SnapshotError(f"{option} {model_id}: {why}{instead} (as `canarytrace lint` says)")
