"""canarytrace: upgrade the LLM model versions behind your product without flakiness.

The public face. Pin models in `models.yaml`, route users with `model()`, trace every
call with `instrument()`, judge the canary with `canarytrace analyze`.
"""

from __future__ import annotations

from canarytrace.breaker import BreakerConfig
from canarytrace.errors import CanaryTraceError, RegistryError, RoutingError, TraceSourceError
from canarytrace.feedback import CallRef, current_call, feedback, outcome
from canarytrace.instrumentation import instrument, uninstrument
from canarytrace.registry import Registry, load_registry
from canarytrace.routing import Decision, choose, configure, model, rollback

__version__ = "0.1.0"

__all__ = [
    "BreakerConfig",
    "CallRef",
    "CanaryTraceError",
    "Decision",
    "Registry",
    "RegistryError",
    "RoutingError",
    "TraceSourceError",
    "__version__",
    "choose",
    "configure",
    "current_call",
    "feedback",
    "instrument",
    "load_registry",
    "model",
    "outcome",
    "rollback",
    "uninstrument",
]
