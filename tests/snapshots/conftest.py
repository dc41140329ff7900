"""Fixtures for the snapshot tests: the real local model, an isolated embedding cache."""

from __future__ import annotations

import pytest

from canarytrace.snapshots.embedders import LocalEmbedder, local_model_available
from canarytrace.snapshots.similarity import Similarity, shared_similarity


@pytest.fixture(scope="session")
def local_model() -> Similarity:
    """all-MiniLM-L6-v2, loaded once for the whole session before any pytester run.

    Loading it first matters: pytester restores `sys.modules` after each inner run, and
    torch must not be imported inside one and dropped after it.
    """
    if not local_model_available():
        pytest.fail("the test environment must have canarytrace[embeddings] installed")
    similarity = Similarity(LocalEmbedder())
    similarity.vectors(["warm up"])
    return similarity


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own embedding cache and registry lookup, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CANARYTRACE_REGISTRY", raising=False)
    monkeypatch.delenv("CANARYTRACE_EMBEDDER", raising=False)


@pytest.fixture
def semantic(local_model: Similarity) -> Similarity:
    """The similarity the plugin itself uses by default (auto = local model), cached."""
    similarity = shared_similarity()
    assert similarity.embedder.name == LocalEmbedder.name
    return similarity
