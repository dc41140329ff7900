"""The model registry: `models.yaml`, the one source of truth for pinned models.

A registry holds, per route, the production, canary and fallback model ids with the
rollout stages and the current stage, and per model why and when it was pinned.
JSON with the same schema is accepted too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from ruamel.yaml import YAML

from canarytrace.errors import RegistryError

DEFAULT_STAGES: tuple[int, ...] = (5, 25, 50, 100)
Provider = Literal["openai", "anthropic", "google", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One pinned model and why it was chosen."""

    id: str
    provider: Provider
    pinned_date: dt.date | None = None
    tested: bool = False
    regression_tested: bool = False
    last_regression_test: dt.date | None = None
    canary_start: dt.date | None = None
    why: str = ""
    allow_alias: bool = False


class Route(_Strict):
    """The tiers of one route and where its rollout stands."""

    production: str
    canary: str | None = None
    fallback: str | None = None
    stages: tuple[int, ...] = DEFAULT_STAGES
    stage: int = 0  # the canary's current share in percent; 0 = no canary traffic
    rollback: bool = False
    rollback_reason: str | None = None


class Registry(_Strict):
    """A whole `models.yaml`."""

    routes: dict[str, Route]
    models: tuple[ModelEntry, ...] = Field(default_factory=tuple)

    def model(self, model_id: str) -> ModelEntry | None:
        """The entry of `model_id`, or None when the registry does not list it."""
        return next((m for m in self.models if m.id == model_id), None)


def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry file (YAML or JSON)."""
    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"{path}: no such registry file; create one (see models.yaml)") from exc
    return Registry.model_validate(data)
