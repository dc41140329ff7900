"""Run the whole test suite again on the oldest versions pyproject.toml admits.

The main virtualenv gets the newest release of every dependency, so a range's lower
bound would otherwise never be tried. This resolves every direct dependency (the
extras' too: the SDKs, pytest, syrupy, ...) to the lowest version its requirement
admits, with `uv pip compile --resolution lowest-direct`, makes a virtualenv exactly
that (`uv pip sync`), links this checkout into it and runs the tests there.

The virtualenv lives in the cache outside the checkout (as the Go builds do), so a
fresh clone only re-syncs it; a lock keeps two runs from syncing it under each other.
Run by `make test`, which passes its `uv` as $UV.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "canarytrace"
SHOWN = ("openai", "anthropic", "opentelemetry-sdk", "wrapt", "polars", "pytest", "syrupy")


def floors_python() -> str:
    """The cached virtualenv, synced to the lowest versions and with this checkout linked."""
    venv = CACHE / "floors"
    python = str(venv / "bin" / "python")
    pins = CACHE / "floors.txt"
    uv = os.environ.get("UV", "uv")
    lowest = ["--resolution", "lowest-direct", "--all-extras", str(REPO / "pyproject.toml")]
    subprocess.run([uv, "pip", "compile", "--quiet", *lowest, "-o", str(pins)], check=True)
    subprocess.run(
        [uv, "venv", "--quiet", "--allow-existing", "-p", sys.executable, str(venv)], check=True
    )
    subprocess.run([uv, "pip", "sync", "--quiet", "-p", python, str(pins)], check=True)
    # Installed, not put on the path: the entry points (the pytest plugin, the
    # instrumentor) come from the package's metadata.
    install = [uv, "pip", "install", "--quiet", "-p", python, "--no-deps"]
    subprocess.run([*install, "-e", str(REPO)], check=True)
    return python


def shown_versions(python: str) -> str:
    script = (
        "from importlib.metadata import version\n"
        f"print(', '.join(f'{{n}} {{version(n)}}' for n in {SHOWN!r}))"
    )
    found = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
    return found.stdout.strip()


def main() -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "floors.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        python = floors_python()
        print(f"oldest admitted versions: {shown_versions(python)}", flush=True)
        tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        return subprocess.run(tests, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
