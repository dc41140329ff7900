"""The pytest plugin: choose the model under test, snapshot its output by meaning.

Registered through the `pytest11` entry point, so it loads in every pytest run of an
environment that has canarytrace: importing it stays cheap (no torch, no SDK, no syrupy
until a fixture is used) and it does nothing unless asked.

    pytest --model canary --snapshot-update     # record the candidate's outputs
    canarytrace snapshots review                # what changed, acceptable or worrying

`--model` takes a tier (production, canary, fallback), resolved through the registry
(`$CANARYTRACE_REGISTRY`, else `./models.yaml`) for `--route` (needed when the registry
has several routes), or a model id. An undated alias is refused, as `canarytrace lint`
refuses it: a snapshot must say exactly which model wrote it. `--canarytrace-model` and
`--canarytrace-route` are the same options under names that cannot clash with another
plugin's `--model`.

Hook reference: https://docs.pytest.org/en/stable/reference/reference.html#hooks
"""

from __future__ import annotations

from typing import Any

import pytest

from canarytrace.errors import CanaryTraceError
from canarytrace.snapshots.choose import REGISTRY_ENV, ChosenModel, resolve_model
from canarytrace.snapshots.embedders import EMBEDDER_NAMES

_CHOSEN = pytest.StashKey["ChosenModel | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options in one group (https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption)."""
    group = parser.getgroup("canarytrace", "canarytrace: LLM snapshot tests across model versions")
    group.addoption(
        "--model",
        "--canarytrace-model",
        dest="canarytrace_model",
        metavar="TIER_OR_ID",
        default=None,
        help="model the llm_model fixture returns: a tier of models.yaml (production, canary, "
        "fallback) or a dated model id; undated aliases are refused",
    )
    group.addoption(
        "--route",
        "--canarytrace-route",
        dest="canarytrace_route",
        metavar="ROUTE",
        default=None,
        help="route of models.yaml whose tier --model names (needed with several routes)",
    )
    group.addoption(
        "--llm-embedder",
        dest="canarytrace_embedder",
        choices=EMBEDDER_NAMES,
        default=None,
        help="how llm_snapshot measures meaning: local (all-MiniLM-L6-v2), openai, lexical, "
        "or auto (local when installed, else lexical); default $CANARYTRACE_EMBEDDER or auto",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Resolve an explicit --model now, so a bad one stops the run before any test."""
    if config.getoption("canarytrace_model") or config.getoption("canarytrace_route"):
        try:
            config.stash[_CHOSEN] = resolve_model(
                config.getoption("canarytrace_model"), config.getoption("canarytrace_route")
            )
        except CanaryTraceError as exc:
            raise pytest.UsageError(f"canarytrace: {exc}") from exc


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The model and its pin, so every CI log says which model the snapshots saw."""
    chosen = config.stash.get(_CHOSEN, None)
    if chosen is None:
        return []
    where = f"{chosen.tier} of route {chosen.route}" if chosen.tier else "not routed in models.yaml"
    return [f"canarytrace: model {chosen.model_id} ({where}); pinned {chosen.pinned}"]


def _chosen(config: pytest.Config) -> ChosenModel | None:
    if _CHOSEN not in config.stash:
        try:
            config.stash[_CHOSEN] = resolve_model(None, None)
        except CanaryTraceError as exc:
            pytest.fail(f"canarytrace: {exc}", pytrace=False)
    return config.stash[_CHOSEN]


@pytest.fixture(scope="session")
def llm_model(pytestconfig: pytest.Config) -> str:
    """The model id this session tests: --model, else the registry's production tier."""
    chosen = _chosen(pytestconfig)
    if chosen is None:
        pytest.fail(
            "canarytrace: no model chosen: pass --model TIER_OR_ID (a tier needs models.yaml "
            f"in the working directory or ${REGISTRY_ENV})",
            pytrace=False,
        )
    return chosen.model_id


@pytest.fixture
def llm_snapshot(snapshot: Any, pytestconfig: pytest.Config) -> Any:
    """syrupy's `snapshot`, comparing LLM output by meaning (see `extension.py`)."""
    from canarytrace.snapshots.extension import LLMSnapshotExtension

    chosen = _chosen(pytestconfig)
    extension = LLMSnapshotExtension.bound(
        model=chosen.model_id if chosen else None,
        pinned=chosen.pinned if chosen else None,
        embedder=pytestconfig.getoption("canarytrace_embedder"),
        exact=bool(snapshot.update_snapshots),
    )
    return snapshot.use_extension(extension)
