"""Review N changed LLM snapshots: cold (model load + embedding) vs warm (the disk cache).

Run by hand:

    .venv/bin/python bench/bench_snapshots.py --snapshots 200

It writes N old/new snapshot pairs (paraphrases and changed numbers of a few answers)
into a throw-away git repository, then runs `canarytrace snapshots review` three times
in fresh processes with one fresh embedding cache: the first embeds every text (and
loads all-MiniLM-L6-v2), the next two find every vector in the cache. Each line reports
wall time, peak RSS and whether torch was imported, which shows the point of the cache:
a warm review does not load the model at all.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.amber.serializer import AmberDataSerializer

from canarytrace.snapshots.record import Record

ANSWERS = (
    (
        "Refunds are possible within {n} days of purchase with the receipt.",
        "You can get your money back for {n} days after buying, if you keep the receipt.",
    ),
    (
        "The outage lasted {n} minutes after a certificate expired.",
        "A certificate expired and the service was down for {n} minutes.",
    ),
    (
        "Version 2.{n} adds SSO login and fixes the CSV export.",
        "Release 2.{n}: SSO login, and the CSV export bug is fixed.",
    ),
)

MEASURE = """
import resource, sys, time
t = time.perf_counter()
from canarytrace.snapshots.review import review
result = review()
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"{wall:.1f}|{rss}|{'torch' in sys.modules}|{len(result.changes)}|{len(result.worrying)}")
"""


def write(path: Path, side: int, count: int) -> None:
    collection = SnapshotCollection(location=str(path))
    for i in range(count):
        old, new = ANSWERS[i % len(ANSWERS)]
        n = i if side == 0 or i % 10 else i + 1  # every tenth new answer changes a number
        text = (old, new)[side].format(n=n)
        model = ("claude-3-5-sonnet-20241022", "claude-3-opus-20241219")[side]
        collection.add(Snapshot(name=f"test_answer_{i:04d}", data=Record(text, model).render()))
    AmberDataSerializer.write_file(collection)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        snapshot = repo / "tests" / "__snapshots__" / "test_answers.llm"
        snapshot.parent.mkdir(parents=True)
        git(repo, "init", "-q")
        write(snapshot, 0, args.snapshots)
        git(repo, "add", ".")
        git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "old")
        write(snapshot, 1, args.snapshots)
        env = {"XDG_CACHE_HOME": str(cache), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
        print(f"review of {args.snapshots} changed snapshots (run | wall s | peak MB | torch)")
        for run in ("cold", "warm", "warm"):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", MEASURE],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            wall, rss, torch, changed, worrying = done.stdout.strip().splitlines()[-1].split("|")
            process = time.perf_counter() - start
            print(
                f"{run:5} | review {wall} s, process {process:.1f} s | {rss} MB | torch {torch}"
                f" | {changed} changed, {worrying} worrying"
            )


if __name__ == "__main__":
    main()
