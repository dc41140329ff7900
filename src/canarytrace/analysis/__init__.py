"""Canary analysis: traces in, a verdict out.

`load` (sources → one polars frame of calls), `metrics` (per-tier numbers), `judge`
(PROMOTE / HOLD / ROLLBACK with the statistics behind it), `report` (tables, JSON,
Markdown/HTML with plots) and `synth` (spans with a known truth, for tests, the
notebook and the benchmark). Only `load` does I/O; `metrics` and `judge` are pure.
"""

import os

# polars allocates with jemalloc, which keeps freed pages for ten seconds by default.
# The judge's queries run one after the other, each freeing the per-user state of the
# one before, and numpy (another allocator) cannot reuse what jemalloc keeps: with the
# pages kept, 10M calls of 2M users peak at 1.0 GB; handed back after 50 ms, at 0.74 GB
# (200k users: 0.49 -> 0.39 GB, medians of interleaved runs), in the same time. It takes
# effect only when this package is imported before polars (the CLI, the benchmark), and
# an allocator setting already in the environment wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:50,muzzy_decay_ms:0")
