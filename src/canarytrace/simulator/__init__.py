"""A local OpenAI- and Anthropic-compatible server for the demo and the tests.

The real, unmodified SDK clients talk to it through `base_url`::

    from canarytrace.simulator import Simulator

    with Simulator(seed=0, time_scale=0.01) as sim:
        client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="test-key")

Models behave as their profiles say (`profiles.yaml`, or your own file): latency,
error rates, answer length, hidden tokens, wrong answers to known prompts, refusals
(with Anthropic's server-side `fallbacks`). The same seed gives the same answers.
"""

from __future__ import annotations

from canarytrace.simulator.engine import count_tokens
from canarytrace.simulator.errors import ERROR_KINDS, ErrorKind
from canarytrace.simulator.profiles import (
    REGRESSIONS,
    KnownPrompt,
    ModelProfile,
    ProfileError,
    Profiles,
    Regression,
    default_profiles_path,
    load_profiles,
)
from canarytrace.simulator.server import FORCE_ERROR_HEADER, Simulator

__all__ = [
    "ERROR_KINDS",
    "FORCE_ERROR_HEADER",
    "REGRESSIONS",
    "ErrorKind",
    "KnownPrompt",
    "ModelProfile",
    "ProfileError",
    "Profiles",
    "Regression",
    "Simulator",
    "count_tokens",
    "default_profiles_path",
    "load_profiles",
]
