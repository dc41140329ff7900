"""Per-route judge settings from the `judge:` mapping of a route in models.yaml.

    routes:
      chat:
        production: ...
        judge:
          confidence: 0.99
          sequential: true
          metrics:
            latency_p95: {margin: 0.2, relative: true, critical: false}

The registry keeps the mapping as it is written (it does not know the judge's
metrics); `JudgeConfig.override` validates every key and names the file, route and key
of a mistake.
"""

from __future__ import annotations

from pathlib import Path

from canarytrace.analysis.judge import JudgeConfig
from canarytrace.errors import RegistryError
from canarytrace.registry import parse_registry


def route_configs(path: str | Path, base: JudgeConfig | None = None) -> dict[str, JudgeConfig]:
    """The judge settings of every route of `path` that has a `judge:` mapping."""
    base = base or JudgeConfig()
    configs: dict[str, JudgeConfig] = {}
    for name, route in parse_registry(path).routes.items():
        if route.judge is None:
            continue
        try:
            configs[name] = base.override(route.judge, where=f"{path}: routes.{name}.judge")
        except (ValueError, TypeError) as exc:
            raise RegistryError(str(exc)) from exc
    return configs
