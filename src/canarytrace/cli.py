"""The `canarytrace` command: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from canarytrace.deprecations import DeprecationTable
    from canarytrace.registry import Registry

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Upgrade LLM model versions without flakiness: pin, route, trace, judge, snapshot.",
)
stdout = Console()
stderr = Console(stderr=True)


@app.command()
def version(
    verbose: Annotated[bool, typer.Option(help="Also print the Python version.")] = False,
) -> None:
    """Print canarytrace's version."""
    from canarytrace import __version__

    stdout.print(__version__)
    if verbose:
        import sys

        stdout.print(sys.version)


# --- the model registry: status, validate, promote, rollback, lint ------------------------

RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        "-r",
        help="The registry file (default: $CANARYTRACE_REGISTRY, else ./models.yaml).",
    ),
]
AsOfOpt = Annotated[
    dt.datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"], help="Judge retirement dates as of this day (default: today)."
    ),
]
DeprecationsOpt = Annotated[
    Path | None,
    typer.Option(help="Your own deprecation file (default: $CANARYTRACE_DEPRECATIONS)."),
]
_LIFECYCLE_STYLE = {
    "retired": "bold red",
    "retiring": "yellow",
    "deprecated": "yellow",
    "active": "green",
    "unknown": "dim",
}


class LintFormat(StrEnum):
    text = "text"
    json = "json"


def _registry_path(option: Path | None) -> Path:
    return option or Path(os.environ.get("CANARYTRACE_REGISTRY") or "models.yaml")


#: The registry's providers whose models genai-prices prices under the same name.
_PRICED_PROVIDERS = ("openai", "anthropic", "google")


def _say(label: str, style: str, message: str) -> None:
    """One diagnostic line on stderr; the message is plain text (no rich markup)."""
    from rich.text import Text

    stderr.print(Text.assemble((label, style), " ", message), soft_wrap=True)


def _fail(exc: Exception) -> typer.Exit:
    """Print a canarytrace error (one line per problem) and return the exit to raise."""
    for line in str(exc).splitlines():
        _say("error", "red", line)
    return typer.Exit(code=1)


def _read_registry(
    registry: Path | None, as_of: dt.datetime | None, deprecations: Path | None
) -> tuple[Path, dt.date, DeprecationTable, Registry]:
    """The registry file, the day to judge dates on, the deprecation table and the registry."""
    from canarytrace.deprecations import load_table
    from canarytrace.errors import CanaryTraceError
    from canarytrace.registry import parse_registry

    path = _registry_path(registry)
    day = as_of.date() if as_of else dt.date.today()
    try:
        table = load_table(deprecations)
        return path, day, table, parse_registry(path, table=table)
    except CanaryTraceError as exc:
        raise _fail(exc) from exc


@app.command()
def status(
    registry: RegistryOpt = None, as_of: AsOfOpt = None, deprecations: DeprecationsOpt = None
) -> None:
    """Show every route: tiers, stage, rollback, pinned dates and deprecation warnings."""
    from rich.table import Table
    from rich.text import Text

    from canarytrace.registry import is_pinned
    from canarytrace.tables import fitted

    path, day, table, reg = _read_registry(registry, as_of, deprecations)
    view = Table(title=f"{path} (as of {day.isoformat()})")
    for column in ("route", "stage", "rollback", "tier", "model", "pinned on", "lifecycle"):
        view.add_column(column)
    for name, route in reg.routes.items():
        rolled = Text(f"yes: {route.rollback_reason or 'no reason given'}", "red")
        stage = f"{route.stage}% of {list(route.stages)}" if route.canary else "-"
        if route.upgraded_on:
            stage += f"\nupgraded {route.upgraded_on.isoformat()}"
        tiers = [(tier, model_id) for r, tier, model_id in reg.model_ids() if r == name]
        for index, (tier, model_id) in enumerate(tiers):
            entry = reg.model(model_id)
            state = table.assess(model_id, day)
            style = _LIFECYCLE_STYLE[state.lifecycle.value]
            pinned = Text(entry.pinned_date.isoformat() if entry and entry.pinned_date else "-")
            if not is_pinned(model_id, table):
                pinned = Text("alias", "red")
            head = (name, stage, rolled if route.rollback else "no") if index == 0 else ("",) * 3
            view.add_row(
                *(Text(cell) if isinstance(cell, str) else cell for cell in head),
                tier,
                Text(model_id, style),
                pinned,
                Text(state.describe(), style),
            )
        view.add_section()
    stdout.print(fitted(stdout, view))


@app.command()
def validate(
    registry: Annotated[
        Path | None,
        typer.Argument(
            help="The registry file (default: $CANARYTRACE_REGISTRY, else ./models.yaml)."
        ),
    ] = None,
    as_of: AsOfOpt = None,
    deprecations: DeprecationsOpt = None,
) -> None:
    """Check a registry: schema, rules, aliases, retirement dates, prices; exit 1 if any fail."""
    from importlib.metadata import version

    from canarytrace.pricing import has_price
    from canarytrace.registry import is_known_alias, is_pinned, key_lines

    path, day, table, reg = _read_registry(registry, as_of, deprecations)
    lines = key_lines(path)
    errors = 0
    for route, tier, model_id in reg.model_ids():
        where = f"{path}:{lines.get(('routes', route, tier), '?')}: routes.{route}.{tier}"
        state = table.assess(model_id, day)
        if state.refused:
            errors += 1
            _say("error", "red", f"{where}: {model_id} {state.describe()}")
        elif state.warned:
            _say("warning", "yellow", f"{where}: {model_id} {state.describe()}")
        if not is_pinned(model_id, table) and not is_known_alias(model_id, table):
            _say(
                "warning",
                "yellow",
                f"{where}: {model_id} has no snapshot date or version; if the provider "
                "documents it as a fixed snapshot, say so in your deprecation file "
                "(snapshot: true)",
            )
        entry = reg.model(model_id)
        if (
            entry
            and entry.provider in _PRICED_PROVIDERS
            and not has_price(entry.provider, model_id)
        ):
            _say(
                "warning",
                "yellow",
                f"{where}: genai-prices {version('genai-prices')} has no price for {model_id}: "
                "its calls will have no cost, and the judge holds a canary whose cost it "
                "cannot compare (upgrade genai-prices, or run its UpdatePrices in the "
                "application)",
            )
    for message in _judge_errors(path, reg, lines):
        errors += 1
        _say("error", "red", message)
    if errors:
        raise typer.Exit(code=1)
    stdout.print(
        f"{path}: valid ({len(reg.routes)} routes, {len(reg.models)} models)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _judge_errors(path: Path, reg: Registry, lines: dict[tuple[str | int, ...], int]) -> list[str]:
    """The routes' `judge:` settings checked as `analyze` checks them (it exits 2 on them).

    The judge (and polars with it) is imported only when some route has settings.
    """
    judged = {name: route.judge for name, route in reg.routes.items() if route.judge is not None}
    if not judged:
        return []
    from canarytrace.analysis.judge import JudgeConfig

    errors = []
    for name, settings in judged.items():
        where = f"{path}:{lines.get(('routes', name, 'judge'), '?')}: routes.{name}.judge"
        try:
            JudgeConfig().override(settings, where=where)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            errors.append(message if message.startswith(where) else f"{where}: {message}")
    return errors


@app.command()
def promote(
    route: Annotated[str, typer.Argument(help="The route whose canary moves one stage up.")],
    registry: RegistryOpt = None,
    as_of: AsOfOpt = None,
    deprecations: DeprecationsOpt = None,
    require_verdict: Annotated[
        bool,
        typer.Option(help="Refuse unless the latest `analyze` of this canary said PROMOTE."),
    ] = False,
) -> None:
    """Move a route's canary one stage up; past the last stage the canary becomes production."""
    from canarytrace.deprecations import load_table
    from canarytrace.errors import CanaryTraceError
    from canarytrace.registry_write import promote as promote_route

    day = as_of.date() if as_of else None
    try:
        checked = _check_verdict(route, _registry_path(registry)) if require_verdict else None
        table = load_table(deprecations)
        change = promote_route(
            _registry_path(registry), route, today=day, table=table, from_stage=checked
        )
    except CanaryTraceError as exc:
        raise _fail(exc) from exc
    stdout.print(f"{route}: {change.summary}", highlight=False, markup=False, soft_wrap=True)
    promoted = change.before.canary or ""
    state = table.assess(promoted, day or dt.date.today())
    if state.warned:
        _say("warning", "yellow", f"{route}: {promoted} {state.describe()}")


def _check_verdict(route: str, path: Path) -> int | None:
    """The route's stage, which the latest analysis said PROMOTE for (with its canary);
    else a RoutingError: a verdict supports one step, so each stage needs its own analysis."""
    from canarytrace.analysis.command import state_file
    from canarytrace.analysis.judge import Verdict
    from canarytrace.analysis.report import latest_verdict
    from canarytrace.errors import RoutingError
    from canarytrace.registry import parse_registry

    current = parse_registry(path).routes.get(route)
    if current is None or current.canary is None:
        return None  # promote itself refuses these, naming why
    state = state_file()
    try:
        recorded = latest_verdict(route, state)
    except OSError as exc:
        raise RoutingError(
            f"{state}: cannot be read ({exc.strerror}); promotion refused: make it a readable "
            "file or set $CANARYTRACE_STATE_DIR, then run `canarytrace analyze`"
        ) from exc
    except ValueError as exc:
        raise RoutingError(
            f"{exc}; promotion refused: run `canarytrace analyze` to record a new verdict "
            "(it moves the damaged file aside)"
        ) from exc
    judged = "the latest analysis"
    if recorded is None:
        problem = f"no analysis of it is recorded in {state}"
    elif recorded.canary_model != current.canary:
        problem = f"{judged} judged canary {recorded.canary_model}, not {current.canary}"
    elif recorded.stage is None:
        problem = (
            f"{judged} ({recorded.verdict}) recorded no stage (written by an older "
            "canarytrace, or without a registry naming the route)"
        )
    elif recorded.stage != current.stage:
        problem = (
            f"{judged} judged stage {recorded.stage}%, the route is now at {current.stage}%: "
            "a verdict supports one step, not the next"
        )
    elif recorded.verdict is not Verdict.PROMOTE:
        problem = f"{judged} of canary {current.canary} at {current.stage}% said {recorded.verdict}"
    else:
        return current.stage
    raise RoutingError(
        f"{path}: routes.{route}: {problem}; promotion refused (run `canarytrace analyze "
        f"-r {path}` on the canary's traces at its stage now, {current.stage}%)"
    )


@app.command()
def rollback(
    route: Annotated[str, typer.Argument(help="The route to roll back.")],
    reason: Annotated[str, typer.Option(help="What went wrong (recorded in the registry).")] = "",
    clear: Annotated[
        bool, typer.Option(help="Clear the rollback once the cause is fixed.")
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Send a route's users back to production (or, after an upgrade, to the fallback)."""
    from canarytrace.errors import CanaryTraceError
    from canarytrace.registry_write import clear_rollback
    from canarytrace.registry_write import rollback as rollback_route

    path = _registry_path(registry)
    try:
        change = clear_rollback(path, route) if clear else rollback_route(path, route, reason)
    except CanaryTraceError as exc:
        raise _fail(exc) from exc
    stdout.print(f"{route}: {change.summary}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def lint(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (default: .).", exists=True)
    ] = None,
    output: Annotated[LintFormat, typer.Option("--format", help="text or json.")] = LintFormat.text,
    as_of: AsOfOpt = None,
    deprecations: DeprecationsOpt = None,
) -> None:
    """Find undated aliases and deprecated or retired models in code and config; exit 1 if any.

    Exit 2 if a path does not exist or a file cannot be read: such a run proves nothing.
    """
    import json

    from canarytrace.deprecations import load_table
    from canarytrace.errors import CanaryTraceError
    from canarytrace.lint import Notice, lint_paths

    day = as_of.date() if as_of else dt.date.today()
    notices: list[Notice] = []
    try:
        findings = lint_paths(
            paths or [Path(".")], as_of=day, table=load_table(deprecations), notify=notices.append
        )
    except CanaryTraceError as exc:
        raise _fail(exc) from exc
    for notice in notices:
        _say("warning", "yellow", str(notice))
    if output is LintFormat.json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        for finding in findings:
            typer.echo(str(finding))
    if findings:
        _say("lint", "red", f"{len(findings)} model id(s) to pin or replace")
    if unread := [notice for notice in notices if notice.unread]:
        _say("lint", "red", f"{len(unread)} file(s) could not be read, so were not checked")
    if findings or unread:
        raise typer.Exit(code=2 if unread else 1)


@app.command()
def simulate(
    profiles: Annotated[
        Path | None, typer.Option(help="Model profiles YAML (default: the shipped profiles).")
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port to listen on; 0 picks a free one.")] = 8787,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Seed of every draw: same seed, same answers.")] = 0,
    time_scale: Annotated[
        float, typer.Option(min=0, help="Multiply every latency (0: answer at once).")
    ] = 1.0,
) -> None:
    """Serve the local OpenAI- and Anthropic-compatible provider simulator until Ctrl-C."""
    import signal
    import threading

    from canarytrace.errors import CanaryTraceError
    from canarytrace.simulator import Simulator

    try:
        sim = Simulator(profiles, seed=seed, time_scale=time_scale, host=host, port=port).start()
    except (CanaryTraceError, OSError) as exc:
        from rich.text import Text

        for line in str(exc).splitlines():
            stderr.print(Text.assemble(("simulate", "red"), " ", line), soft_wrap=True)
        raise typer.Exit(code=1) from exc
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    typer.echo(f"OpenAI base_url:    {sim.openai_base_url}")
    typer.echo(f"Anthropic base_url: {sim.anthropic_base_url}")
    typer.echo("Any API key is accepted. Stop with Ctrl-C.")
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


# --- analysis: analyze, export -------------------------------------------------------------

SourceArg = Annotated[
    str | None,
    typer.Argument(
        help="Trace files, folder, glob, .parquet, jaeger+http://HOST:PORT?service=NAME or "
        "tempo+http://HOST:PORT?q=TRACEQL (default: the embedded folder)."
    ),
]


class AnalyzeFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def analyze(
    source: SourceArg = None,
    route: Annotated[str | None, typer.Option(help="Judge only this route.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only calls since then: ISO time or a duration (6h).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only calls before then.")] = None,
    output: Annotated[
        AnalyzeFormat, typer.Option("--format", case_sensitive=False, help="table or json (CI).")
    ] = AnalyzeFormat.table,
    markdown: Annotated[Path | None, typer.Option(help="Also write a Markdown report.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report.")] = None,
    jaeger_url: Annotated[str | None, typer.Option(help="Link trace ids to Jaeger's UI.")] = None,
    tempo_url: Annotated[str | None, typer.Option(help="Link trace ids to Tempo/Grafana")] = None,
    confidence: Annotated[
        float | None, typer.Option(help="Confidence of each decision (default 0.95).")
    ] = None,
    sequential: Annotated[
        bool, typer.Option(help="Always-valid intervals: safe to re-run on a live canary.")
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Judge the canary: exit 0 PROMOTE, 1 ROLLBACK, 3 HOLD, 2 usage, 4 unreadable, 5 failed."""
    from canarytrace.analysis.command import EXIT_FAILED
    from canarytrace.analysis.command import analyze as run

    try:
        code = run(
            source,
            out=stdout,
            err=stderr,
            route=route,
            since=since,
            until=until,
            as_json=output == AnalyzeFormat.json,
            markdown=markdown,
            html=html,
            jaeger_url=jaeger_url,
            tempo_url=tempo_url,
            confidence=confidence,
            sequential=sequential,
            registry=_registry_path(registry),
        )
    except Exception:  # an uncaught error exits 1, which CI would read as ROLLBACK
        stderr.print_exception()
        _say("error", "red", "internal error in canarytrace analyze (please report it)")
        code = EXIT_FAILED
    raise typer.Exit(code=code)


@app.command()
def export(
    source: SourceArg = None,
    parquet: Annotated[Path, typer.Option(help="The Parquet file of calls to write.")] = Path(
        "calls.parquet"
    ),
    since: Annotated[str | None, typer.Option(help="Only calls since then.")] = None,
) -> None:
    """Convert traces to one Parquet file of calls (fast to analyse again)."""
    from canarytrace.analysis.command import export as run

    raise typer.Exit(code=run(source, parquet, err=stderr, since=since))


class RegressKind(StrEnum):
    latency = "latency"
    errors = "errors"
    quality = "quality"
    cost = "cost"
    refusals = "refusals"


@app.command()
def demo(
    users: Annotated[
        int, typer.Option(min=1, help="Simulated users (each makes 1-3 calls).")
    ] = 2000,
    stage: Annotated[
        int, typer.Option(help="Canary share in percent for the run: one of the routes' stages.")
    ] = 25,
    regress: Annotated[
        RegressKind | None,
        typer.Option(case_sensitive=False, help="Make the canary worse in this way."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same simulated answers.")] = 7,
    time_scale: Annotated[
        float, typer.Option(min=0, help="Simulated provider latency x this (1 = real time).")
    ] = 0.01,
    registry: RegistryOpt = None,
) -> None:
    """Simulated canary rollout -> traces -> verdict, with no service to run."""
    from rich.progress import Progress

    from canarytrace.analysis.command import analyze as judge_traces
    from canarytrace.demo import DemoSettings, at_stage, run
    from canarytrace.errors import RoutingError
    from canarytrace.registry import load_registry
    from canarytrace.telemetry import DEFAULT_TRACES_DIR, TRACES_DIR_ENV

    routes = load_registry(_registry_path(registry))
    try:
        at_stage(routes, stage)
    except RoutingError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--stage'") from exc
    settings = DemoSettings(
        registry=routes,
        users=users,
        stage=stage,
        seed=seed,
        regress=regress.value if regress else None,
        time_scale=time_scale,
    )
    traces = Path(os.environ.get(TRACES_DIR_ENV) or DEFAULT_TRACES_DIR)
    started = dt.datetime.now(dt.UTC)
    with Progress(console=stderr, transient=True) as progress:
        task = progress.add_task("simulated users calling", total=users * settings.calls_per_user)
        made = run(settings, on_call_done=lambda: progress.advance(task))
    stderr.print(f"{made} LLM calls traced to {traces}/; judging the canary ...")
    judge_traces(
        str(traces),
        out=stdout,
        err=stderr,
        since=started.isoformat(),
        registry=_registry_path(registry),
    )


# --- snapshot tests across model versions: snapshots review, compare ---------------------
# Defined in canarytrace.snapshots.commands, which imports nothing heavy until a command runs.
from canarytrace.snapshots import commands as _snapshots  # noqa: E402

app.add_typer(_snapshots.app, name="snapshots")
app.command("compare")(_snapshots.compare)


def main() -> None:
    """Console-script entry point."""
    app()
