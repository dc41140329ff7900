"""Per-route judge settings from the `judge:` mapping of a route in models.yaml.

    routes:
      chat:
        production: ...
        judge:
          confidence: 0.99
          sequential: true
          metrics:
            latency_p95: {margin: 0.2, relative: true, critical: false}

The registry's schema (`registry.Route`) forbids unknown keys, so until it declares
`judge` this module reads the raw YAML itself; every key is validated by
`JudgeConfig.override`, which names the file, route and key of a mistake.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from canarytrace.analysis.judge import JudgeConfig
from canarytrace.errors import RegistryError


def route_configs(path: str | Path, base: JudgeConfig | None = None) -> dict[str, JudgeConfig]:
    """The judge settings of every route of `path` that has a `judge:` mapping."""
    base = base or JudgeConfig()
    path = Path(path)
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except (OSError, YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read the registry ({exc})") from exc
    configs: dict[str, JudgeConfig] = {}
    for name, route in (data.get("routes") or {}).items():
        settings = route.get("judge") if isinstance(route, dict) else None
        if settings is None:
            continue
        where = f"{path}: routes.{name}.judge"
        if not isinstance(settings, dict):
            raise RegistryError(f"{where}: must be a mapping of judge settings")
        try:
            configs[name] = base.override(settings, where=where)
        except (ValueError, TypeError) as exc:
            raise RegistryError(str(exc)) from exc
    return configs
