"""The analysis package hands polars' freed memory back promptly (see its __init__)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import canarytrace.analysis, os; print(os.environ.get('_RJEM_MALLOC_CONF'))"


def _setting_seen(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_importing_the_analysis_sets_a_short_decay_for_polars_allocator() -> None:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    assert _setting_seen(env) == "dirty_decay_ms:50,muzzy_decay_ms:0"


@pytest.mark.parametrize("preset", ["dirty_decay_ms:10000", ""])
def test_an_allocator_setting_in_the_environment_wins(preset: str) -> None:
    assert _setting_seen({**os.environ, "_RJEM_MALLOC_CONF": preset}) == preset
