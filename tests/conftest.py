"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canarytrace.simulator import Simulator


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A running provider simulator with the default profiles, seed 0, 100x faster.

    Point the real SDKs at it: `openai.OpenAI(base_url=simulator.openai_base_url,
    api_key="test-key")`, `anthropic.Anthropic(base_url=simulator.anthropic_base_url,
    api_key="test-key")`. Pass `max_retries=0` when a test expects an error class.
    """
    with Simulator(seed=0, time_scale=0.01) as sim:
        yield sim
