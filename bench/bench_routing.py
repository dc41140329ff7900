"""How long `canarytrace.model()` and `choose()` take per call, against the article's router.

Run by hand: `.venv/bin/python bench/bench_routing.py`. Prints microseconds per call (the
best of several repeats) and the ratio to the article's `hash(user_id) % 100` router, the
floor that a sticky router cannot beat by much, which is neither stable across processes
nor keyed. Routing reads a registry file, as in production, so every call includes the
once-a-second re-read check.
"""

from __future__ import annotations

import json
import tempfile
import timeit
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

from canarytrace import routing

PRODUCTION = "acme-chat-20260101"
CANARY = "acme-chat-20260601"
REPEATS = 5
NUMBER = 100_000


def article_router(user_id: str) -> str:
    """The article's canary split: built-in hash(), so it differs from process to process."""
    return CANARY if hash(user_id) % 100 < 5 else PRODUCTION


def per_call_us(call: Callable[[], object]) -> float:
    return min(timeit.repeat(call, number=NUMBER, repeat=REPEATS)) / NUMBER * 1e6


def write_registry(folder: Path, *, rollback: bool) -> Path:
    route = {"production": PRODUCTION, "canary": CANARY, "stage": 5, "rollback": rollback}
    models = [{"id": m, "provider": "other"} for m in (PRODUCTION, CANARY)]
    path = folder / f"models-{rollback}.json"
    path.write_text(json.dumps({"routes": {"chat": route}, "models": models}), encoding="utf-8")
    return path


def main() -> None:
    users = cycle([f"user-{i}" for i in range(1_000)])
    with tempfile.TemporaryDirectory() as folder:
        routing.configure(write_registry(Path(folder), rollback=False))
        floor = per_call_us(lambda: article_router(next(users)))
        rows = [
            ("article: hash(user_id) % 100", floor),
            ("model(route, user_id)", per_call_us(lambda: routing.model("chat", next(users)))),
            ("model(route)", per_call_us(lambda: routing.model("chat"))),
            ("choose(route, user_id)", per_call_us(lambda: routing.choose("chat", next(users)))),
            ("choose(route)", per_call_us(lambda: routing.choose("chat"))),
            ("user_hash(user_id)", per_call_us(lambda: routing.user_hash(next(users)))),
        ]
        routing.configure(write_registry(Path(folder), rollback=True))
        rows.append(
            ("model(route, user_id), rolled back", per_call_us(lambda: routing.model("chat", "u")))
        )
    width = max(len(name) for name, _ in rows)
    print(f"{'call':<{width}}  µs/call  × article")
    for name, us in rows:
        print(f"{name:<{width}}  {us:7.3f}  {us / floor:8.1f}")


if __name__ == "__main__":
    main()
