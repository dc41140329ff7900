"""The exceptions canarytrace raises on purpose.

    CanaryTraceError            root: catch this to catch every canarytrace error
    ├── RegistryError           models.yaml is malformed or breaks a rule (names file, line, key)
    ├── RoutingError            a route that the registry does not know, a refused promotion
    ├── TraceSourceError        a trace source that cannot be read at all (names the source)
    └── SnapshotError           snapshot plugin/review/compare: bad option, embedder missing

Every message says where the problem is and what to do about it.
"""

from __future__ import annotations


class CanaryTraceError(Exception):
    """Root of every error canarytrace raises on purpose."""


class RegistryError(CanaryTraceError):
    """The model registry is malformed or breaks a rule."""


class RoutingError(CanaryTraceError):
    """A routing request that cannot be answered (unknown route, refused promotion)."""


class TraceSourceError(CanaryTraceError):
    """A trace source that cannot be read at all."""


class SnapshotError(CanaryTraceError):
    """A snapshot test, review or compare that cannot run as asked (names what to fix)."""
