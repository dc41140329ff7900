"""Run the whole test suite again on the oldest versions pyproject.toml admits.

The main virtualenv gets the newest release of every dependency, so a range's lower
bound would otherwise never be tried. This resolves every direct dependency (the
extras' too: the SDKs, pytest, syrupy, ...) to the lowest version its requirement
admits, with `uv pip compile --resolution lowest-direct`, makes a virtualenv exactly
that (`uv pip sync`), links this checkout into it and runs the tests there. A bound
that the resolution cannot reach (another requirement lifts it) is refused first, so
every lower bound pyproject.toml states is one the tests ran on.

The virtualenv lives in the cache outside the checkout (as the Go builds do), so a
fresh clone only re-syncs it; a lock keeps two runs from syncing it under each other.
Run by `make test`, which passes its `uv` as $UV.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "canarytrace"
VENV = CACHE / "floors"
PINS = CACHE / "floors.txt"
SHOWN = ("openai", "anthropic", "opentelemetry-sdk", "wrapt", "polars", "pytest", "syrupy")


def lowest_pins(uv: str) -> dict[str, Version]:
    """Every package at the version the lowest resolution picks, written to PINS too."""
    lowest = ["--resolution", "lowest-direct", "--all-extras", str(REPO / "pyproject.toml")]
    subprocess.run([uv, "pip", "compile", "--quiet", *lowest, "-o", str(PINS)], check=True)
    pinned: dict[str, Version] = {}
    for line in PINS.read_text().splitlines():
        if "==" in line and not line.startswith(("#", " ")):
            name, version = line.split("==", 1)
            pinned[canonicalize_name(name)] = Version(version.split()[0])
    return pinned


def unreached_bounds(pinned: dict[str, Version]) -> list[str]:
    """The declared `>=` bounds that the lowest resolution did not pick."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(r) for r in extra]
    unreached = []
    for requirement in declared:
        installed = pinned.get(canonicalize_name(requirement.name))
        for bound in (s for s in requirement.specifier if s.operator == ">="):
            floor = Version(bound.version)
            if installed is not None and installed.release[: len(floor.release)] != floor.release:
                unreached.append(f"{requirement}: the oldest that resolves is {installed}")
    return unreached


def synced_python(uv: str) -> str:
    """The cached virtualenv, made exactly PINS, with this checkout linked into it."""
    python = str(VENV / "bin" / "python")
    subprocess.run(
        [uv, "venv", "--quiet", "--allow-existing", "-p", sys.executable, str(VENV)], check=True
    )
    subprocess.run([uv, "pip", "sync", "--quiet", "-p", python, str(PINS)], check=True)
    # Installed, not put on the path: the entry points (the pytest plugin, the
    # instrumentor) come from the package's metadata.
    install = [uv, "pip", "install", "--quiet", "-p", python, "--no-deps"]
    subprocess.run([*install, "-e", str(REPO)], check=True)
    return python


def main() -> int:
    uv = os.environ.get("UV", "uv")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "floors.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        pinned = lowest_pins(uv)
        unreached = unreached_bounds(pinned)
        if unreached:
            print("pyproject.toml states lower bounds no install can have; raise them:")
            print("\n".join(f"  {line}" for line in unreached))
            return 1
        python = synced_python(uv)
        shown = ", ".join(f"{name} {pinned[name]}" for name in SHOWN)
        print(f"oldest admitted versions: {shown}", flush=True)
        tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        return subprocess.run(tests, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
