"""Run the instrumentation tests again on the oldest SDK releases canarytrace supports.

The `openai` and `anthropic` extras of pyproject.toml declare the supported ranges, and
the main virtualenv gets the newest release in each. The instrumentation leans on SDK
internals (a stream's `_iterator`, a stream manager's request attribute, a client's
`_base_url`), so the other end of each range is tested too: this installs each range's
lower bound into a virtualenv of its own and runs tests/instrumentation there.

The virtualenv lives in the cache outside the checkout (as the Go builds do), so a fresh
clone only re-links it; a lock keeps two runs from re-linking it under each other.
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
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "canarytrace"
SDK_EXTRAS = ("openai", "anthropic")


def lower_bound(requirement: Requirement) -> Version:
    """The `>=` bound of a supported range: the oldest release it admits."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    if len(bounds) != 1:
        sys.exit(
            f"pyproject.toml: extra {requirement.name!r} needs one '>=' bound, not {requirement}"
        )
    return bounds[0]


def supported_ranges() -> list[Requirement]:
    """The SDK requirements of the extras, as pyproject.toml declares them."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    return [Requirement(extras[name][0]) for name in SDK_EXTRAS]


def floor_python(floors: dict[str, Version]) -> str:
    """A virtualenv with this checkout installed and each SDK at its range's oldest release."""
    venv = CACHE / "sdk-floor"
    python = str(venv / "bin" / "python")
    uv = os.environ.get("UV", "uv")
    run = [uv, "pip", "install", "--quiet", "-p", python]
    subprocess.run(
        [uv, "venv", "--quiet", "--allow-existing", "-p", sys.executable, str(venv)], check=True
    )
    # This checkout (re-linked: the last run may have been another clone), then each SDK
    # at the first release of its floor (3.40 -> 3.40.0), whatever the venv held before.
    subprocess.run([*run, "--reinstall-package", "canarytrace", "-e", f"{REPO}[dev]"], check=True)
    pins = [f"{name}=={floor}.*" for name, floor in floors.items()]
    subprocess.run([*run, "--resolution", "lowest-direct", *pins], check=True)
    return python


def installed_versions(python: str) -> dict[str, Version]:
    script = f"from importlib.metadata import version; print(*(version(n) for n in {SDK_EXTRAS!r}))"
    found = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
    return {name: Version(v) for name, v in zip(SDK_EXTRAS, found.stdout.split(), strict=True)}


def main() -> int:
    floors = {r.name: lower_bound(r) for r in supported_ranges()}
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "sdk-floor.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        python = floor_python(floors)
        found = installed_versions(python)
        print("sdk floor: " + ", ".join(f"{n} {v}" for n, v in found.items()), flush=True)
        tests = [python, "-m", "pytest", "tests/instrumentation", "-q", "-p", "no:cacheprovider"]
        return subprocess.run(tests, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
