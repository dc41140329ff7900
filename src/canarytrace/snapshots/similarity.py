"""Cosine similarity between outputs, with embeddings cached on disk by text hash.

A review of hundreds of snapshots, re-run after each small edit, embeds almost nothing
new: every vector is kept in a SQLite file per embedder under
`${XDG_CACHE_HOME:-~/.cache}/canarytrace/embeddings/`, keyed by the SHA-256 of the text.
SQLite because pytest-xdist workers write to it at the same time. A cache that cannot be
opened is skipped with one warning; it never fails a test.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
from array import array
from collections.abc import Sequence
from pathlib import Path

from canarytrace.snapshots.embedders import Embedder, get_embedder

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

    def __call__(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, rounded to 4 places so reports and files agree."""
        u, v = self.vectors([a, b])
        return round(cosine(u, v), 4)


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
