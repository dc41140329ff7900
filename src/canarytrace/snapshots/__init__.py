"""Snapshot tests across model versions: judge changed LLM output by meaning.

The pytest plugin (`plugin.py`, loaded through the `pytest11` entry point) gives the
`llm_model` and `llm_snapshot` fixtures; `LLMOutput` adds checks to one assertion:

    assert llm_snapshot == LLMOutput(text, must_contain=["30 days"])

Only the light record types are imported here; the embedding model, syrupy and the
SDKs load when a fixture or command first needs them.
"""

from __future__ import annotations

from canarytrace.snapshots.record import Checks, LLMOutput

__all__ = ["Checks", "LLMOutput"]
