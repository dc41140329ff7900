"""Sticky canary routing: which pinned model a request uses, and the switch back.

`model(route, user_id)` answers from the registry (`configure(registry=...)`, else
`$CANARYTRACE_REGISTRY`, else `./models.yaml`). A user's cohort bucket is

    bucket = int.from_bytes(BLAKE2b(key=K, digest_size=8,
                                    data=b"bucket\\0" + route + b"\\0" + user_id), "big") % 10000
    user_hash = BLAKE2b(key=K, digest_size=8, data=b"user\\0" + user_id).hexdigest()

(UTF-8 strings), and the user gets the canary when `bucket < stage_percent * 100`.
A keyed hash, not Python's `hash()`, so every process and every restart (and any other
language) puts a user in the same bucket; the route is part of the input so that each
route draws its own cohort. Raising the stage only raises the threshold, so a user who
was in the canary stays in it as the share grows. The key K comes from
`configure(hash_key=...)`, else `$CANARYTRACE_HASH_KEY`, else the fixed public default
`DEFAULT_HASH_KEY`: it must be the same in every process and stay put during a rollout
(a new key reshuffles the cohorts). Set a secret key in production, because the same key
makes `user_hash()`, the only form in which user ids reach spans, and with the public
default anyone holding a list of candidate ids could recompute it.

Rollback: while a route runs a canary, a rollback sends every user to production; after
a completed upgrade (no canary left, a fallback present) it sends everyone to the
fallback, the article's emergency switch to the older stable version. `rollback()` and
the error-rate breaker (`breaker.py`, fed by `record_result`) act at once in this process
and hold until the route's tiers change in the registry (a new rollout replaces the one
that was rolled back) or the process restarts; the registry's `rollback: true` flag acts
in every process that reads the file.

Re-reading: the registry file is checked when its modification time, size or inode
change, at most once per `reload_interval` (1 s). The check happens inline: each call
compares `time.monotonic()` with the next check time (tens of nanoseconds), and the one
call per interval that passes it does one `os.stat`; only a call right after an edit pays
the parse. A background thread would take even that off the request, but it dies in
processes forked after import (gunicorn's preload, multiprocessing), outlives short
scripts and tests, and needs shutting down; the inline check works in every process with
nothing to manage. A file that breaks on re-read is logged once and the last good
registry stays in force: a bad edit must not take routing down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from canarytrace.attributes import TIERS
from canarytrace.breaker import Breaker, BreakerConfig
from canarytrace.errors import CanaryTraceError, RegistryError, RoutingError
from canarytrace.registry import Registry, Route, load_registry

REGISTRY_ENV = "CANARYTRACE_REGISTRY"
HASH_KEY_ENV = "CANARYTRACE_HASH_KEY"
DEFAULT_REGISTRY = "models.yaml"
# Public on purpose: routing works with no set-up, the same in every process. Not a secret.
DEFAULT_HASH_KEY = b"canarytrace-default-cohort-key-v1"
BUCKETS = 10_000
RELOAD_INTERVAL = 1.0

_log = logging.getLogger(__name__)

OnRollback = Callable[[str, str], object]
# model, tier, route, rollout %, user id, bucket (None until needed: model() skips the
# hash when nobody of the route can be in the canary)
_Picked = tuple[str, str, str, int, str | None, int | None]

# The last decision made in this context, for the instrumentation of the call that follows.
_pending: ContextVar[_Picked | None] = ContextVar("canarytrace_decision", default=None)


@dataclass(frozen=True, slots=True)
class Decision:
    """Which model one request of a route uses, and why.

    rollout_percent is the canary share in force for the route right now: the stage, or
    0 when the route has no canary or is rolled back. bucket (0..9999) and user_hash
    (keyed, 16 hex digits) are None when the request came without a user id.
    """

    model: str
    tier: str
    route: str
    bucket: int | None
    rollout_percent: int
    user_hash: str | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """One route's routing, worked out once per registry so model() only hashes and compares."""

    base: _Picked  # what a request without the canary gets (user id filled in per call)
    canary: str  # "" when the route has none
    threshold: int  # buckets below it use the canary; 0 means nobody does
    hasher: hashlib.blake2b  # keyed, already fed with the route's prefix


def _key(hash_key: str | bytes | None) -> bytes:
    raw = hash_key if hash_key is not None else os.environ.get(HASH_KEY_ENV) or DEFAULT_HASH_KEY
    key = raw.encode() if isinstance(raw, str) else raw
    if not key:
        raise ValueError("hash_key must not be empty; pass a secret string or leave it unset")
    # BLAKE2b takes keys of up to 64 bytes; a longer one is first hashed down to 64.
    return key if len(key) <= 64 else hashlib.blake2b(key).digest()


def _route_hasher(key: bytes, route: str) -> hashlib.blake2b:
    return hashlib.blake2b(b"bucket\0" + route.encode() + b"\0", key=key, digest_size=8)


class _Router:
    """The routing state of one configuration: registry, plans, rollbacks, breakers."""

    def __init__(
        self,
        registry: str | Path | Registry | None,
        hash_key: str | bytes | None,
        breaker: BreakerConfig | None,
        on_rollback: OnRollback | None,
        reload_interval: float,
    ) -> None:
        self.key = _key(hash_key)
        self.user_hasher = hashlib.blake2b(b"user\0", key=self.key, digest_size=8)
        self.breaker_config = breaker or BreakerConfig()
        self.on_rollback = on_rollback
        self.interval = reload_interval
        self.lock = threading.Lock()
        self.registry: Registry | None = None
        self.problem: str | None = None  # why the registry cannot be read, if it cannot
        self.plans: dict[str, _Plan] = {}
        self.index: dict[str, tuple[str, str]] = {}
        self.rollbacks: dict[str, str] = {}  # route -> reason, set in this process
        self.breakers: dict[str, Breaker] = {}
        self.stamp: tuple[int, int, int] | None = None
        self.next_check = -math.inf
        self.path: Path | None = None
        if isinstance(registry, Registry):
            self.where = "the Registry passed to canarytrace.configure()"
            self.next_check = math.inf
            self._install(registry)
        elif registry is not None:
            self.path = Path(registry).absolute()
            self.where = f"{self.path} (configure(registry=...))"
        elif os.environ.get(REGISTRY_ENV):
            self.path = Path(os.environ[REGISTRY_ENV]).absolute()
            self.where = f"{self.path} (from ${REGISTRY_ENV})"
        else:
            self.path = Path.cwd() / DEFAULT_REGISTRY
            self.where = f"{self.path} (./{DEFAULT_REGISTRY}; ${REGISTRY_ENV} is not set)"

    # --- reading the registry ---------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the registry file if it changed; at most once per interval."""
        # Until a registry is in, callers wait for the first read; after that one thread
        # re-reads while the others go on with the plans they have.
        if not self.lock.acquire(blocking=self.registry is None):
            return
        try:
            now = time.monotonic()
            if now < self.next_check:
                return
            self.next_check = now + self.interval
            self._reload()
        finally:
            self.lock.release()

    def _reload(self) -> None:
        assert self.path is not None  # a Registry object never schedules a re-read
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._fail(
                f"no model registry found at {self.where}: {exc.strerror}. Create it (see the "
                f"example models.yaml), set ${REGISTRY_ENV}=PATH, or call "
                "canarytrace.configure(registry=PATH)"
            )
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            registry = load_registry(self.path)
        # Any failure (a YAML syntax error as much as a RegistryError) must leave the
        # last good registry routing; it is reported, never raised into the request.
        except Exception as exc:
            text = str(exc)
            self._fail(text if str(self.path) in text else f"{self.path}: {text}")
            return
        self._install(registry)

    def _fail(self, message: str) -> None:
        if self.registry is not None and message != self.problem:
            _log.warning("%s; routing keeps the registry it read before", message)
        self.problem = message

    def _install(self, registry: Registry) -> None:
        before = self.registry.routes if self.registry is not None else {}
        for name, route in before.items():
            now = registry.routes.get(name)
            if now is None or _tiers(now) != _tiers(route):
                # A new rollout replaced the one that was rolled back or watched.
                self.rollbacks.pop(name, None)
                self.breakers.pop(name, None)
        index: dict[str, tuple[str, str]] = {}
        for name, route in registry.routes.items():
            for tier, model_id in zip(TIERS, _tiers(route), strict=True):
                if model_id is not None:
                    index.setdefault(model_id, (name, tier))
        self.registry, self.problem, self.index = registry, None, index
        self.plans = {name: self._plan(name, route) for name, route in registry.routes.items()}

    def _plan(self, name: str, route: Route) -> _Plan:
        if route.rollback or name in self.rollbacks:
            if route.canary is None and route.fallback is not None:
                base: _Picked = (route.fallback, "fallback", name, 0, None, None)
            else:
                base = (route.production, "production", name, 0, None, None)
            threshold = 0
        elif route.canary is None:
            base, threshold = (route.production, "production", name, 0, None, None), 0
        else:
            percent = int(route.stage)
            base = (route.production, "production", name, percent, None, None)
            threshold = round(route.stage * BUCKETS / 100)
        return _Plan(base, route.canary or "", threshold, _route_hasher(self.key, name))

    # --- answering ----------------------------------------------------------------------
    def unreadable(self) -> RegistryError:
        return RegistryError(self.problem or f"no model registry read from {self.where}")

    def missing(self, route: str) -> CanaryTraceError:
        if self.registry is None:
            return self.unreadable()
        known = ", ".join(sorted(self.plans)) or "none"
        return RoutingError(
            f"route {route!r} is not in the registry {self.where} (routes: {known}); "
            "add it under `routes:` or fix the name"
        )

    def bucket(self, route: str, user_id: str) -> int:
        plan = self.plans.get(route)
        hasher = plan.hasher.copy() if plan is not None else _route_hasher(self.key, route)
        hasher.update(user_id.encode())
        return int.from_bytes(hasher.digest(), "big") % BUCKETS

    def user_hash(self, user_id: str) -> str:
        hasher = self.user_hasher.copy()
        hasher.update(user_id.encode())
        return hasher.hexdigest()

    # --- rolling back -------------------------------------------------------------------
    def roll_back(self, route: str, reason: str) -> None:
        if self.registry is None:
            self.refresh()
        with self.lock:
            if route not in self.plans or self.registry is None:
                raise self.missing(route)
            if route in self.rollbacks:
                return
            self.rollbacks[route] = reason
            plans = dict(self.plans)
            plans[route] = self._plan(route, self.registry.routes[route])
            self.plans = plans
        target = plans[route].base
        _log.warning(
            "canarytrace: route %r rolled back in this process (%s); everyone now uses %s (%s)",
            route,
            reason,
            target[0],
            target[1],
        )
        if self.on_rollback is not None:
            try:
                self.on_rollback(route, reason)
            # The user's alert hook must not break routing; its failure is logged in full.
            except Exception:
                _log.exception("canarytrace: the on_rollback callback failed for route %r", route)

    def forked(self) -> None:
        """In a forked child: new locks, its own and its breakers' (see `_forked`)."""
        self.lock = threading.Lock()
        for breaker in self.breakers.values():
            breaker.forked()

    def breaker(self, route: str) -> Breaker | None:
        breaker = self.breakers.get(route)
        if breaker is None:
            with self.lock:
                plan = self.plans.get(route)
                if plan is None or not plan.canary or self.registry is None:
                    return None
                config = self.registry.routes[route].breaker or self.breaker_config
                breaker = self.breakers.setdefault(route, Breaker(config))
        return breaker


def _tiers(route: Route) -> tuple[str, str | None, str | None]:
    return (route.production, route.canary, route.fallback)


_router: _Router | None = None
_router_lock = threading.Lock()


def _current() -> _Router:
    global _router
    with _router_lock:
        if _router is None:
            _router = _Router(None, None, None, None, RELOAD_INTERVAL)
        return _router


def configure(
    registry: str | Path | Registry | None = None,
    *,
    hash_key: str | bytes | None = None,
    breaker: BreakerConfig | None = None,
    on_rollback: OnRollback | None = None,
    reload_interval: float = RELOAD_INTERVAL,
) -> None:
    """Set up routing for this process; replaces any earlier configuration and its state.

    registry: a path (read now, so a wrong one fails at start-up, then re-read when it
        changes) or a `Registry` (used as is); None finds it at `$CANARYTRACE_REGISTRY`,
        else `./models.yaml`, on first use.
    hash_key: the cohort hash key; None reads `$CANARYTRACE_HASH_KEY`, else the public
        default (see the module docstring for why production should set a secret).
    breaker: when the error-rate breaker trips (default `BreakerConfig()`).
    on_rollback: called as `on_rollback(route, reason)` once for each rollback this
        process makes (breaker trip or `rollback()`): the place to hook an alert.
    reload_interval: seconds between checks of the registry file for changes.
    """
    global _router
    router = _Router(registry, hash_key, breaker, on_rollback, reload_interval)
    if router.path is not None and registry is not None:
        router.refresh()
        if router.registry is None:
            raise router.unreadable()
    with _router_lock:
        _router = router


def _forked() -> None:
    """In a forked child: new locks, since a thread the child lacks may have held the
    parent's; the child's next routing change or failed canary call would wait forever.
    The routes, rollbacks and breakers' counts carry over, as the rest of memory does."""
    global _router_lock
    _router_lock = threading.Lock()
    if _router is not None:
        _router.forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)


def reset() -> None:
    """Forget the configuration, rollbacks and breakers; the next call starts afresh."""
    global _router
    with _router_lock:
        _router = None
    _pending.set(None)


def _decide(route: str, user_id: str | int | None) -> _Picked:
    r = _router or _current()
    if time.monotonic() >= r.next_check:
        r.refresh()
    plan = r.plans.get(route)
    if plan is None:
        raise r.missing(route)
    if user_id is None:
        picked = plan.base
    else:
        user = str(user_id)
        model_id, tier, _, percent, _, bucket = plan.base
        if plan.threshold:
            hasher = plan.hasher.copy()
            hasher.update(user.encode())
            bucket = int.from_bytes(hasher.digest(), "big") % BUCKETS
            if bucket < plan.threshold:
                model_id, tier = plan.canary, "canary"
        picked = (model_id, tier, route, percent, user, bucket)
    _pending.set(picked)
    return picked


def model(route: str, user_id: str | int | None = None) -> str:
    """The pinned model id that this request of `route` should use, ready for `model=`.

    A user id (converted with str()) puts the user in a fixed cohort bucket, so the same
    user gets the same model in every process and across restarts, and stays in the
    canary as its share grows. Without a user id the request goes to production (or,
    after a rolled-back upgrade, to the fallback), never to the canary: a random split
    would flip one user's conversation between models from turn to turn, and keeping a
    user on one model is the point of a sticky canary; such requests are also not
    attributable to a cohort when the canary is judged.

    The decision is also recorded for the instrumentation of the next LLM call in this
    context (see `take_decision`). Raises RegistryError when no registry can be read and
    RoutingError for a route the registry lacks.
    """
    return _decide(route, user_id)[0]


def choose(route: str, user_id: str | int | None = None) -> Decision:
    """The whole routing decision for this request of `route` (see `model()` for the rules)."""
    return _complete(_decide(route, user_id))


def _complete(picked: _Picked) -> Decision:
    model_id, tier, route, percent, user, bucket = picked
    if user is None:
        return Decision(model_id, tier, route, None, percent, None)
    r = _router or _current()
    if bucket is None:
        bucket = r.bucket(route, user)
    return Decision(model_id, tier, route, bucket, percent, r.user_hash(user))


def take_decision(request_model: str) -> Decision | None:
    """The decision `model()`/`choose()` recorded in this context, if it chose `request_model`.

    For the instrumentation: it returns the decision and clears it, so it labels exactly
    one call. A call made with another model leaves the decision for the call that uses it.
    """
    picked = _pending.get()
    if picked is None or picked[0] != request_model:
        return None
    _pending.set(None)
    return _complete(picked)


def rollback(route: str, reason: str) -> None:
    """Roll `route` back in this process at once: everyone to production (or the fallback).

    Holds until the route's tiers change in the registry or the process restarts; to roll
    back every process, set the registry's flag (`canarytrace rollback ROUTE --reason ...`).
    Logs one warning and calls `on_rollback` the first time.
    """
    (_router or _current()).roll_back(route, reason)


def record_result(route: str, tier: str, ok: bool) -> None:
    """Feed one call's outcome to the route's error-rate breaker (only canary calls count)."""
    if tier != "canary":
        return
    r = _router
    if r is None:
        return
    breaker = r.breaker(route)
    if breaker is None:
        return
    reason = breaker.record(ok)
    if reason is not None:
        r.roll_back(route, reason)


def lookup(model_id: str) -> tuple[str, str] | None:
    """(route, tier) of `model_id` in the active registry; None when unknown or unreadable."""
    r = _router or _current()
    if time.monotonic() >= r.next_check:
        r.refresh()
    return r.index.get(model_id)


def user_hash(user_id: str | int) -> str:
    """The keyed hash of a user id that spans carry instead of the id: 16 hex digits."""
    return (_router or _current()).user_hash(str(user_id))
