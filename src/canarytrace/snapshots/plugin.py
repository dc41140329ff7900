"""The pytest plugin: choose the model under test, snapshot its output by meaning.

Registered through the `pytest11` entry point, so it loads in every pytest run of an
environment that has canarytrace: importing it stays cheap (no torch, no SDK, no syrupy
until a fixture is used) and it does nothing unless asked.

    pytest --model canary --snapshot-update     # record the candidate's outputs
    canarytrace snapshots review                # what changed, acceptable or worrying

`--model` takes a tier (production, canary, fallback), resolved through the registry
(`$CANARYTRACE_REGISTRY`, else `./models.yaml`) for `--route` (needed when the registry
has several routes), or a model id. An undated alias is refused, as `canarytrace lint`
refuses it: a snapshot must say exactly which model wrote it.

The options are `--canarytrace-model` and `--canarytrace-route`; the short `--model` and
`--route` are added after the project's conftest files have registered theirs, and only
when still free, because many test suites already define a `--model` of their own and
installing canarytrace must not break them (argparse refuses a name defined twice).

Hook reference: https://docs.pytest.org/en/stable/reference/reference.html#hooks
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import pytest

from canarytrace.errors import CanaryTraceError
from canarytrace.snapshots.choose import REGISTRY_ENV, ChosenModel, resolve_model
from canarytrace.snapshots.embedders import EMBEDDER_NAMES

_T = TypeVar("_T")
_CHOSEN = pytest.StashKey["ChosenModel | None"]()
_TAKEN = pytest.StashKey[list[str]]()
_GROUP = ("canarytrace", "canarytrace: LLM snapshot tests across model versions")
_MODEL_HELP = (
    "model the llm_model fixture returns: a tier of models.yaml (production, canary, "
    "fallback) or a dated model id; undated aliases are refused"
)
_ROUTE_HELP = "route of models.yaml whose tier --model names (needed with several routes)"
_SHORT = (("--model", "canarytrace_model", "TIER_OR_ID"), ("--route", "canarytrace_route", "ROUTE"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options in one group (https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption)."""
    group = parser.getgroup(*_GROUP)
    group.addoption(
        "--canarytrace-model", dest="canarytrace_model", metavar="TIER_OR_ID", help=_MODEL_HELP
    )
    group.addoption(
        "--canarytrace-route", dest="canarytrace_route", metavar="ROUTE", help=_ROUTE_HELP
    )
    group.addoption(
        "--llm-embedder",
        dest="canarytrace_embedder",
        choices=EMBEDDER_NAMES,
        default=None,
        help="how llm_snapshot measures meaning: local (all-MiniLM-L6-v2), openai, lexical, "
        "or auto (local when installed, else lexical); default $CANARYTRACE_EMBEDDER or auto",
    )


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, object, object]:
    """Once the project's conftests have added their options, take `--model`/`--route` if free."""
    result = yield
    group = parser.getgroup(*_GROUP)
    defined = _defined_options(parser)
    taken = []
    for name, dest, metavar in _SHORT:
        if name in defined:  # a conftest or plugin defined it first: theirs wins
            taken.append(name)
            continue
        try:
            group.addoption(
                name, dest=dest, metavar=metavar, help=f"short for --canarytrace-{name[2:]}"
            )
        except argparse.ArgumentError:  # the same, seen by a pytest laid out otherwise
            taken.append(name)
    early_config.stash[_TAKEN] = taken
    return result


def _defined_options(parser: pytest.Parser) -> set[str]:
    """The option names registered so far.

    pytest 9 refuses a name defined twice as it is added, but pytest 8 only once it
    builds its argparse parser, after this hook, when the whole run fails. pytest has
    no public list of options; its groups (`_anonymous`, `_groups`, each with `options`)
    are laid out alike in both, so they are read, and a layout without them reads empty.
    """
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", ())]
    return {
        name
        for group in groups
        for option in getattr(group, "options", ())
        for name in option.names()
    }


def pytest_configure(config: pytest.Config) -> None:
    """Resolve an explicit --model now, so a bad one stops the run before any test."""
    if config.getoption("canarytrace_model") or config.getoption("canarytrace_route"):
        # Messages name the option the command line can have used.
        short = "--model" not in config.stash.get(_TAKEN, [])
        try:
            config.stash[_CHOSEN] = resolve_model(
                config.getoption("canarytrace_model"),
                config.getoption("canarytrace_route"),
                option="--model" if short else "--canarytrace-model",
            )
        except CanaryTraceError as exc:
            raise pytest.UsageError(f"canarytrace: {exc}") from exc


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The model and its pin, so every CI log says which model the snapshots saw."""
    lines = [
        f"canarytrace: {name} belongs to another plugin or conftest here; "
        f"use --canarytrace-{name[2:]}"
        for name in config.stash.get(_TAKEN, [])
    ]
    chosen = config.stash.get(_CHOSEN, None)
    if chosen is None:
        return lines
    where = f"{chosen.tier} of route {chosen.route}" if chosen.tier else "not routed in models.yaml"
    return [*lines, f"canarytrace: model {chosen.model_id} ({where}); pinned {chosen.pinned}"]


def _or_fail(resolve: Callable[[], _T]) -> _T:
    """`resolve()`, else the test fails with canarytrace's message, once: `pytest.fail`
    inside `except` printed it twice, chained to the error it came from."""
    try:
        return resolve()
    except CanaryTraceError as exc:
        message = f"canarytrace: {exc}"
    pytest.fail(message, pytrace=False)


def _chosen(config: pytest.Config) -> ChosenModel | None:
    if _CHOSEN not in config.stash:
        config.stash[_CHOSEN] = _or_fail(lambda: resolve_model(None, None))
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
    from canarytrace.snapshots.similarity import shared_similarity

    chosen = _chosen(pytestconfig)
    embedder = pytestconfig.getoption("canarytrace_embedder")
    # A bad $CANARYTRACE_EMBEDDER is said here, not as a traceback when a change is judged.
    _or_fail(lambda: shared_similarity(embedder))
    extension = LLMSnapshotExtension.bound(
        model=chosen.model_id if chosen else None,
        pinned=chosen.pinned if chosen else None,
        embedder=embedder,
        exact=bool(snapshot.update_snapshots),
    )
    return snapshot.use_extension(extension)
