"""Cosine similarity between outputs, with embeddings cached on disk by text hash.

A review of hundreds of snapshots, re-run after each small edit, embeds almost nothing
new: every vector is kept in a SQLite file per embedder under
`${XDG_CACHE_HOME:-~/.cache}/canarytrace/embeddings/`, keyed by the SHA-256 of the text.
SQLite because pytest-xdist workers write to it at the same time. A cache that cannot be
opened is skipped with one warning; it never fails a test.

A text longer than the model reads (MiniLM: 256 word-pieces) is never embedded whole,
since the model would silently drop its end. Both texts are cut into sentences and
lines, each embedded (and cached) on its own; a passage's vector is the token-weighted
sum of its sentences' vectors, as the model's mean pooling weighs tokens. Sentences found
word for word in the other text are kept out of the passages, so a change among unchanged
sentences is compared on its own and cannot be diluted; the rest is packed into
near-equal passages of at most one model input, each matched to its best run of
sentences in the other text. The weakest match, either way, is the similarity.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import re
import sqlite3
import threading
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from canarytrace.snapshots.embedders import BoundedEmbedder, Embedder, get_embedder

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/canarytrace/embeddings`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "canarytrace" / "embeddings"


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine of two vectors; 0.0 when either is all zeros (an empty text)."""
    dot = math.fsum(a * b for a, b in zip(u, v, strict=True))
    norm = math.sqrt(math.fsum(a * a for a in u)) * math.sqrt(math.fsum(b * b for b in v))
    return dot / norm if norm else 0.0


class EmbeddingCache:
    """Vectors by (embedder, text hash) in one SQLite file per embedder."""

    def __init__(self, directory: Path, embedder_name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder_name)
        self.path = directory / f"{safe}.sqlite3"
        self._conn: sqlite3.Connection | None = None
        self._broken = False
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        """The cache key of a text."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, d BLOB NOT NULL)")
                conn.commit()
                self._conn = conn
            except (OSError, sqlite3.Error) as exc:
                self._broken = True
                log.warning(
                    "canarytrace: embedding cache %s unusable (%s); not caching", self.path, exc
                )
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, list[float]]:
        """The cached vectors among `keys`."""
        with self._lock:
            conn = self._connect()
            if conn is None or not keys:
                return {}
            found: dict[str, list[float]] = {}
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for k, blob in conn.execute(f"SELECT k, d FROM v WHERE k IN ({marks})", chunk):
                    found[k] = array("f", blob).tolist()
            return found

    def put_many(self, items: dict[str, list[float]]) -> None:
        """Store vectors (float32)."""
        with self._lock:
            conn = self._connect()
            if conn is None or not items:
                return
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO v (k, d) VALUES (?, ?)",
                    [(k, array("f", vec).tobytes()) for k, vec in items.items()],
                )
                conn.commit()
            except sqlite3.Error as exc:
                log.warning(
                    "canarytrace: could not write the embedding cache %s: %s", self.path, exc
                )


class Similarity:
    """Similarity of texts under one embedder, through the on-disk and in-memory caches."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.cache = cache
        self._memory: dict[str, list[float]] = {}

    @property
    def default_threshold(self) -> float:
        """The embedder's own bar for "same meaning"."""
        return self.embedder.default_threshold

    @property
    def label(self) -> str:
        """What reports print next to a similarity, e.g. that it is lexical."""
        return self.embedder.label

    def vectors(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`, embedding only those no cache holds, in one batch."""
        keys = [EmbeddingCache.key(t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._memory]
        if missing and self.cache is not None:
            self._memory.update(self.cache.get_many(missing))
            missing = [k for k in missing if k not in self._memory]
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            fresh = dict(
                zip(missing, self.embedder.embed([text_of[k] for k in missing]), strict=True)
            )
            self._memory.update(fresh)
            if self.cache is not None:
                self.cache.put_many(fresh)
        return [self._memory[k] for k in keys]

    def prefetch(self, texts: Sequence[str]) -> None:
        """Embed in one batch what comparing `texts` will read: a text the model reads
        whole, else its pieces (a long text is never embedded whole, so a batch of the
        texts themselves would embed it for nothing)."""
        model = self.embedder
        if isinstance(model, BoundedEmbedder):
            texts = [p for t in texts for p in ([t] if _fits(t, model) else _pieces(t, model))]
        self.vectors(texts)

    def __call__(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, rounded to 4 places so reports and files agree;
        by passage when either is too long for the model to read whole."""
        model = self.embedder
        if isinstance(model, BoundedEmbedder) and not (_fits(a, model) and _fits(b, model)):
            return round(self._by_passage(a, b, model), 4)
        u, v = self.vectors([a, b])
        return round(cosine(u, v), 4)

    def _by_passage(self, a: str, b: str, model: BoundedEmbedder) -> float:
        """The weakest best match of any passage of either text in the other one."""
        pieces = {text: _pieces(text, model) for text in (a, b)}
        if not (pieces[a] and pieces[b]):
            return 0.0  # as the cosine with an empty text's zero vector
        unique = list(dict.fromkeys(pieces[a] + pieces[b]))
        vectors = dict(zip(unique, self.vectors(unique), strict=True))
        side_a, side_b = (_Side(pieces[text], vectors, model) for text in (a, b))
        limit = model.max_tokens
        return min(_support(side_a, side_b, limit), _support(side_b, side_a, limit))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


def _sentences(text: str) -> list[str]:
    """A text's sentences and lines, spaces normalised so a re-wrapped sentence still matches."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]


def _fits(text: str, model: BoundedEmbedder) -> bool:
    return model.count_tokens(text) <= model.max_tokens


def _pieces(text: str, model: BoundedEmbedder) -> list[str]:
    """The sentences of `text`, any the model cannot read whole cut at spaces."""
    return [chunk for sentence in _sentences(text) for chunk in _cut(sentence, model)]


def _cut(sentence: str, model: BoundedEmbedder) -> list[str]:
    """A sentence the model reads whole, else chunks of words that fit (a single word
    longer than the model's input, a pasted blob, stays whole and is truncated)."""
    if _fits(sentence, model):
        return [sentence]
    chunks: list[list[str]] = [[]]
    size = 0
    for word in sentence.split(" "):
        tokens = model.count_tokens(word)
        if chunks[-1] and size + tokens > model.max_tokens:
            chunks.append([])
            size = 0
        chunks[-1].append(word)
        size += tokens
    return [" ".join(chunk) for chunk in chunks]


class _Side:
    """One text as pieces, with running sums of token-weighted piece vectors: the vector of
    any run of consecutive pieces is then one subtraction."""

    def __init__(
        self, pieces: list[str], vectors: Mapping[str, list[float]], model: BoundedEmbedder
    ) -> None:
        self.pieces = pieces
        # At least 1: a piece of characters the tokenizer drops still weighs something.
        self.tokens = [max(1, model.count_tokens(p)) for p in pieces]
        rows = np.array([vectors[p] for p in pieces]) * np.array(self.tokens)[:, np.newaxis]
        self._sums = np.vstack([np.zeros(rows.shape[1]), np.cumsum(rows, axis=0)])

    def runs(self, bounds: Sequence[tuple[int, int]]) -> npt.NDArray[np.float64]:
        """Unit vectors of the runs [start, end) of pieces."""
        starts, ends = zip(*bounds, strict=True)
        return _unit(self._sums[list(ends)] - self._sums[list(starts)])

    def runs_from(self, start: int, stop: int) -> npt.NDArray[np.float64]:
        """Unit vectors of the runs [start, end) for every end up to `stop`."""
        return _unit(self._sums[start + 1 : stop + 1] - self._sums[start])


def _unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    unit: npt.NDArray[np.float64] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def _support(a: _Side, b: _Side, limit: int) -> float:
    """How well `b` says everything `a` says: the lowest cosine between a passage of `a`
    (made of pieces `b` lacks word for word) and its best-matching run of pieces of `b`."""
    present = set(b.pieces)
    changed = [piece not in present for piece in a.pieces]
    bounds = [p for run in _runs(changed) for p in _balanced(run, a.tokens, limit)]
    if not bounds:
        return 1.0
    passages = a.runs(bounds)
    best = np.full(len(bounds), -1.0)
    for start, stop in _reach(b.tokens, limit):  # one start at a time: memory stays small
        best = np.maximum(best, (passages @ b.runs_from(start, stop).T).max(axis=1))
    return float(best.min())


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive True."""
    runs = []
    for flag, group in itertools.groupby(range(len(flags)), key=flags.__getitem__):
        if flag:
            indices = list(group)
            runs.append((indices[0], indices[-1] + 1))
    return runs


def _balanced(run: tuple[int, int], tokens: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """A run cut into near-equal passages of at most `limit` tokens: no tiny last passage,
    whose few words would match a rewording poorly."""
    start, end = run
    target = sum(tokens[start:end]) / math.ceil(sum(tokens[start:end]) / limit)
    passages, begin, size = [], start, 0
    for i in range(start, end):
        if i > begin and (size + tokens[i] > limit or size + tokens[i] / 2 > target):
            passages.append((begin, i))
            begin, size = i, 0
        size += tokens[i]
    passages.append((begin, end))
    return passages


def _reach(tokens: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
    """(start, stop) for each piece: runs from `start` up to `stop` hold at most `limit`
    tokens, beyond the first piece, which always counts."""
    stop = size = 0
    for start in range(len(tokens)):
        if stop == start:
            size, stop = size + tokens[stop], stop + 1
        while stop < len(tokens) and size + tokens[stop] <= limit:
            size, stop = size + tokens[stop], stop + 1
        yield start, stop
        size -= tokens[start]


_shared: dict[str, Similarity] = {}  # by embedder and cache folder
_shared_lock = threading.Lock()


def shared_similarity(embedder: str | None = None) -> Similarity:
    """One `Similarity` per embedder name and process, with the disk cache: the model loads once."""
    chosen = get_embedder(embedder)
    directory = cache_dir()
    key = f"{chosen.name}@{directory}"
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Similarity(chosen, EmbeddingCache(directory, chosen.name))
        return _shared[key]
