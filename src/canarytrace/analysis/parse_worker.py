"""A worker process of the JSON loader: one OTLP JSON file into temporary Parquet parts.

Run by `load._parse_elsewhere` as `python -m canarytrace.analysis.parse_worker PATH
FOLDER CHUNK_BYTES SPILL_CALLS`; prints a JSON manifest of the parts it wrote and the
lines it could not read, and nothing else on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from canarytrace.analysis.load import parse_to_parts


def main(argv: list[str]) -> None:
    """Parse the file named by `argv` and print the manifest."""
    path, folder, chunk_bytes, spill_calls = argv
    parts, problems = parse_to_parts(Path(path), Path(folder), int(chunk_bytes), int(spill_calls))
    manifest = {
        "parts": {kind: [str(f) for f in files] for kind, files in parts.items()},
        "problems": [dataclasses.asdict(problem) for problem in problems],
    }
    json.dump(manifest, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
