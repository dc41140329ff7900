"""Canary analysis: traces in, a verdict out.

`load` (sources → one polars frame of calls), `metrics` (per-tier numbers), `judge`
(PROMOTE / HOLD / ROLLBACK with the statistics behind it), `report` (tables, JSON,
Markdown/HTML with plots) and `synth` (spans with a known truth, for tests, the
notebook and the benchmark). Only `load` does I/O; `metrics` and `judge` are pure.
"""
