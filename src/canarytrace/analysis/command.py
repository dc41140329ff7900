"""What `canarytrace analyze` and `canarytrace export` do, behind the typer shell in cli.py.

Exit codes of `analyze` (documented in README.md, "Judging a canary"): 0 PROMOTE,
1 ROLLBACK, 3 HOLD, 2 usage error (bad option, bad registry `judge:` settings),
4 source unreadable, 5 failed (a report not written, an internal error). Every run also
records each route's verdict, with the canary and the registry's stage it judged, in
`.canarytrace/last-verdict.json` (or `$CANARYTRACE_STATE_DIR`) for `promote
--require-verdict`; a failure to record it is a warning that leaves the exit code to the
verdict.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.text import Text

from canarytrace.analysis import report
from canarytrace.analysis.judge import JudgeConfig, Judgement, judge
from canarytrace.analysis.load import export_parquet, parse_time, scan
from canarytrace.analysis.settings import route_configs
from canarytrace.errors import RegistryError, TraceSourceError
from canarytrace.registry import parse_registry

EXIT_USAGE = 2
EXIT_UNREADABLE = 4
#: The run failed after or instead of a verdict (a report not written, an internal error):
#: never 1, which CI reads as ROLLBACK.
EXIT_FAILED = 5
#: The registry `analyze` reads when none is named; unlike a named one, it may be absent.
DEFAULT_REGISTRY = Path("models.yaml")


def state_file() -> Path:
    """Where the latest verdict per route is kept."""
    folder = os.environ.get("CANARYTRACE_STATE_DIR") or ".canarytrace"
    return Path(folder) / "last-verdict.json"


def _err(console: Console, message: str) -> None:
    console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def _warn(console: Console, message: str) -> None:
    console.print(Text("warning: ", style="bold yellow") + Text(message), soft_wrap=True)


def _registry_settings(path: Path | None) -> tuple[dict[str, JudgeConfig], dict[str, int]]:
    """Each route's judge settings and current stage (recorded with its verdict).

    A named registry (`-r`, `$CANARYTRACE_REGISTRY`) that is missing is an error, never
    silently judged without its settings; only the default ./models.yaml may be absent.
    """
    if path is None or (path == DEFAULT_REGISTRY and not path.exists()):
        return {}, {}
    stages = {name: route.stage for name, route in parse_registry(path).routes.items()}
    return route_configs(path), stages


def _save_state(judgement: Judgement, stages: dict[str, int], err: Console) -> None:
    """Record the verdicts; on failure only warn, since CI acts on the verdict's exit code."""
    path = state_file()
    try:
        report.save_latest(judgement, path, stages, warn=lambda message: _warn(err, message))
    except OSError as exc:
        _warn(
            err,
            f"{path}: verdict not recorded ({exc.strerror or exc}), so `promote "
            f"--require-verdict` will not see it; make {path.parent} writable or set "
            "$CANARYTRACE_STATE_DIR",
        )


def analyze(
    source: str | None,
    *,
    out: Console,
    err: Console,
    route: str | None = None,
    since: str | None = None,
    until: str | None = None,
    as_json: bool = False,
    markdown: Path | None = None,
    html: Path | None = None,
    jaeger_url: str | None = None,
    tempo_url: str | None = None,
    confidence: float | None = None,
    sequential: bool = False,
    registry: Path | None = None,
) -> int:
    """Load, judge, report; return the exit code."""
    try:
        start, end = parse_time(since), parse_time(until)
    except ValueError as exc:
        _err(err, f"--since/--until: {exc}")
        return EXIT_USAGE
    if start is not None and end is not None and start >= end:
        _err(err, f"--since {since} is not before --until {until}: the window holds nothing")
        return EXIT_USAGE
    base = JudgeConfig()
    try:
        changes: dict[str, object] = {}
        if confidence is not None:
            changes["confidence"] = confidence
        if sequential:
            changes["sequential"] = True
        configs, stages = _registry_settings(registry)
        base = base.override(changes, where="option")
        configs = {name: cfg.override(changes, where="option") for name, cfg in configs.items()}
    except (ValueError, RegistryError) as exc:
        _err(err, str(exc))
        return EXIT_USAGE
    try:
        # Lazy: Parquet is scanned and large JSON is spilled to temporary Parquet, so the
        # judge's streaming queries never hold every call (the parts go at exit).
        calls, problems, sources = scan(source, since=since, until=until)
    except TraceSourceError as exc:
        _err(err, str(exc))
        return EXIT_UNREADABLE
    for problem in problems:
        err.print(Text("skipped ", style="yellow") + Text(str(problem)), soft_wrap=True)
    # Two counts rather than one per route: a count reads no column, and a filter on the
    # route reads only that column (dictionary pages, in Parquet).
    if _count(calls) == 0:
        _err(err, f"no LLM calls in {', '.join(sources) or source}; nothing to judge")
        return EXIT_UNREADABLE if problems else 3
    if route is not None and _count(calls.filter(pl.col("route") == route)) == 0:
        _err(err, f"--route {route}: no calls of that route in the source")
        return EXIT_USAGE
    judgement = judge(calls, route=route, config=base, route_configs=configs)
    if as_json:
        out.print_json(report.to_json(judgement, problems))
    else:
        # The skipped lines were already listed on stderr, where diagnostics belong.
        report.print_judgement(judgement, out, jaeger_url=jaeger_url, tempo_url=tempo_url)
    _save_state(judgement, stages, err)
    links = {"jaeger_url": jaeger_url, "tempo_url": tempo_url}
    try:
        if markdown is not None:
            report.write_markdown(judgement, calls, markdown, **links)
        if html is not None:
            report.write_html(judgement, calls, html, **links)
    except OSError as exc:
        _err(err, f"{exc.filename or 'report'}: cannot be written ({exc.strerror or exc})")
        return EXIT_FAILED
    return report.EXIT_CODES[judgement.verdict]


def export(source: str | None, parquet: Path, *, err: Console, since: str | None = None) -> int:
    """Convert traces to one Parquet file of calls; return the exit code."""
    try:
        loaded = export_parquet(source, parquet, since=since)
    except TraceSourceError as exc:
        _err(err, str(exc))
        return EXIT_UNREADABLE
    except ValueError as exc:
        _err(err, str(exc))
        return EXIT_USAGE
    for problem in loaded.problems:
        err.print(Text("skipped ", style="yellow") + Text(str(problem)), soft_wrap=True)
    err.print(f"wrote {loaded.calls.height} calls to {parquet}")
    return 0


def _count(calls: pl.LazyFrame) -> int:
    return int(calls.select(pl.len()).collect(engine="streaming").item())
