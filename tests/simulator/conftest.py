"""Real SDK clients pointed at the `simulator` fixture (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from canarytrace.simulator import Simulator

KEY = "test-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def oai(simulator: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=simulator.openai_base_url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
async def aoai(simulator: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=simulator.openai_base_url, api_key=KEY, max_retries=0)
    async with client:
        yield client


@pytest.fixture
def ant(simulator: Simulator) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key=KEY, max_retries=0, open_telemetry=False
    )
    with client:
        yield client


@pytest.fixture
async def aant(simulator: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=simulator.anthropic_base_url, api_key=KEY, max_retries=0, open_telemetry=False
    )
    async with client:
        yield client
