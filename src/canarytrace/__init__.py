"""canarytrace: upgrade the LLM model versions behind your product without flakiness.

The public face. Pin models in `models.yaml`, route users with `model()`, trace every
call with `instrument()`, judge the canary with `canarytrace analyze`.
"""

from __future__ import annotations

from canarytrace.errors import CanaryTraceError, RegistryError, RoutingError, TraceSourceError
from canarytrace.registry import Registry, load_registry

__version__ = "0.1.0"

__all__ = [
    "CanaryTraceError",
    "Registry",
    "RegistryError",
    "RoutingError",
    "TraceSourceError",
    "__version__",
    "load_registry",
]
