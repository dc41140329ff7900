"""The judgement for people and for CI: rich tables, JSON, Markdown or HTML with plots.

`print_judgement` writes one table per route (metric, production, canary, change with
its interval, adjusted p, margin, status), the verdict with its reasons and the canary
traces worth a look, as links when a Jaeger or Tempo URL is given. `to_json` is the
machine form (`--format json`). `write_markdown` / `write_html` add plots: latency
distributions per tier, error and regression rates with 95 % Wilson intervals, cost per
call over time. HTML embeds its plots; Markdown writes PNGs beside itself.
`save_latest` / `latest_verdict` keep the last verdict per route so that a promotion
can be refused when the analysis does not support it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from canarytrace.analysis import metrics as M
from canarytrace.analysis.formats import change_text, margin_text, p_is, p_text, value_text
from canarytrace.analysis.judge import Judgement, RouteVerdict, Verdict
from canarytrace.analysis.load import Problem
from canarytrace.tables import fitted

log = logging.getLogger(__name__)

_VERDICT_STYLE = {
    Verdict.PROMOTE: "bold green",
    Verdict.HOLD: "bold yellow",
    Verdict.ROLLBACK: "bold red",
}
_STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "no data": "dim"}
EXIT_CODES = {Verdict.PROMOTE: 0, Verdict.ROLLBACK: 1, Verdict.HOLD: 3}


def trace_link(
    trace_id: str, jaeger_url: str | None = None, tempo_url: str | None = None
) -> str | None:
    """A URL for a trace: `{trace_id}` in the URL is replaced, else a default path is added.

    Jaeger's UI shows a trace at `/trace/<id>`; Tempo (no UI of its own) at
    `/api/traces/<id>`; pass a Grafana Explore URL with `{trace_id}` to link there.
    """
    for base, default in ((jaeger_url, "/trace/{trace_id}"), (tempo_url, "/api/traces/{trace_id}")):
        if base:
            template = base if "{trace_id}" in base else base.rstrip("/") + default
            return template.replace("{trace_id}", trace_id)
    return None


def metric_rows(route: RouteVerdict) -> list[list[str]]:
    """The table's rows as text, shared by the console, Markdown and HTML."""
    rows = []
    for r in route.metrics:
        interval = "–"
        if r.low is not None and r.high is not None:
            interval = f"[{change_text(r, r.low)}, {change_text(r, r.high)}]"
        rows.append(
            [
                r.label + (" *" if r.critical else ""),
                value_text(r, r.production),
                value_text(r, r.canary),
                change_text(r, r.change),
                interval,
                p_text(r.p_harm_adjusted),
                margin_text(r),
                r.status,
            ]
        )
    return rows


HEADERS = [
    "metric",
    "production",
    "canary",
    "change",
    "interval",
    "adj. p (worse)",
    "margin",
    "status",
]


def _interval_note(route: RouteVerdict) -> str:
    level = 1 - 2 * (1 - route.confidence)
    if route.mode.startswith("sequential"):
        return f"intervals: always-valid at {route.confidence:.0%}"
    return f"intervals: {level:.0%} two-sided (= one-sided tests at {route.confidence:.0%})"


def _traces(route: RouteVerdict) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    seen += [("slowest", t) for t in route.slowest_canary]
    seen += [("failing", t) for t in route.failing_canary]
    return seen


def _metric_table(route: RouteVerdict) -> Table:
    """The route's metrics as a rich table, one line per metric (about 115 columns wide;
    `fitted` makes blocks of it on a narrower console).

    No vertical rules, which a CI log shows as noise; the metric and status never wrap.
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for header in HEADERS:
        whole = header in ("metric", "status")
        table.add_column(header, justify="left" if whole else "right", no_wrap=whole)
    for row in metric_rows(route):
        table.add_row(*row[:-1], _status(row[-1]))
    return table


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def print_judgement(
    judgement: Judgement,
    console: Console,
    *,
    problems: Sequence[Problem] = (),
    jaeger_url: str | None = None,
    tempo_url: str | None = None,
) -> None:
    """The console report: per route a table, the verdict, reasons and traces."""
    for route in judgement.routes.values():
        title = (
            f"route {route.route}: {route.production_model} (production, "
            f"{route.production_users} users / {route.production_calls} calls) vs "
            f"{route.canary_model} (canary, "
            f"{route.canary_users} users / {route.canary_calls} calls)"
        )
        console.print(Text(title, style="bold"))
        console.print(fitted(console, _metric_table(route)))
        console.print(Text(f"{route.mode}; {_interval_note(route)}; * critical", style="dim"))
        console.print(
            Text.assemble(
                ("verdict: ", "bold"), (str(route.verdict), _VERDICT_STYLE[route.verdict])
            )
        )
        reasons = Table.grid(padding=(0, 1))  # wrapped lines stay under their reason
        reasons.add_column(no_wrap=True)
        reasons.add_column()
        for reason in route.reasons:
            reasons.add_row("  -", Text(reason))
        console.print(reasons)
        if route.srm is not None:
            console.print(
                Text(
                    f"  split: {route.srm.observed_share:.1%} canary users, stage "
                    f"{route.srm.expected_share:.0%} (SRM p {p_is(route.srm.p_value)})"
                )
            )
        for label, trace in _traces(route):
            link = trace_link(trace["trace_id"], jaeger_url, tempo_url)
            text = Text(f"  {label} canary trace ")
            if link and not console.is_terminal:
                # A log or a file shows no hyperlink, but its viewer links a plain URL.
                text.append(link, style="cyan")
            else:
                text.append(trace["trace_id"], style=f"link {link}" if link else "cyan")
            text.append(f" {_trace_detail(trace)}")
            console.print(text, soft_wrap=True)  # a URL stays whole, on its line
    if problems:
        console.print(Text(f"{len(problems)} unreadable line(s) skipped:", style="yellow"))
        for problem in problems[:20]:
            console.print(Text(f"  {problem}"))
    console.print(
        Text.assemble(
            ("overall: ", "bold"), (str(judgement.verdict), _VERDICT_STYLE[judgement.verdict])
        )
    )


def to_json(judgement: Judgement, problems: Sequence[Problem] = ()) -> str:
    """The judgement and the problems met while loading, as JSON for CI."""
    data = judgement.to_dict()
    data["exit_code"] = EXIT_CODES[judgement.verdict]
    data["problems"] = [
        {"source": p.source, "line": p.line, "message": p.message} for p in problems
    ]
    return json.dumps(data, indent=2, default=str)


# --- plots ------------------------------------------------------------------------------


def _wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def plots(calls: pl.DataFrame | pl.LazyFrame, route: str) -> dict[str, bytes]:
    """PNG plots of one route: latency per tier (and time to first token, where the
    route streams), rates with intervals, cost over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lazy = calls.lazy().filter(
        (pl.col("route") == route) & pl.col("tier").is_in(["production", "canary"])
    )
    out: dict[str, bytes] = {}

    def save(fig: Any, name: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        out[name] = buffer.getvalue()

    def distribution(column: str, name: str, label: str) -> None:
        """Each tier's histogram of `column` (ms, on a log scale) with its p95; no plot
        when no call has a value."""
        fig, ax = plt.subplots(figsize=(7, 3.2))
        drawn = False
        for tier, colour in (("production", "tab:blue"), ("canary", "tab:orange")):
            timed = (pl.col("tier") == tier) & (pl.col(column) > 0)  # a time known
            values = lazy.filter(timed).select(column).collect()[column].to_numpy()
            if len(values):
                drawn = True
                bins = np.logspace(np.log10(values.min()), np.log10(values.max()), 60).tolist()
                ax.hist(values, bins=bins, density=True, alpha=0.5, label=tier, color=colour)
                ax.axvline(np.quantile(values, 0.95), color=colour, linestyle="--", linewidth=1)
        if not drawn:
            plt.close(fig)
            return
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (ms, log scale); dashed: p95")
        ax.set_title(f"{route}: {label} per tier")
        ax.legend()
        save(fig, name)

    distribution("duration_ms", "latency", "latency")
    distribution("ttft_ms", "ttft", "time to first token")

    summary = M.summary(lazy, by=("tier",))
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, (rate, count, total, title) in zip(
        axes,
        (
            ("error_rate", "errors", "calls", "error rate"),
            ("regression_rate", None, "outcomes", "regression rate"),
        ),
        strict=True,
    ):
        tiers, centres, lows, highs = [], [], [], []
        for row in summary.iter_rows(named=True):
            n = row[total] or 0
            k = row[count] if count else (row[rate] or 0) * n
            low, high = _wilson(k, n)
            tiers.append(row["tier"])
            centres.append(row[rate] or 0)
            lows.append(max(0.0, (row[rate] or 0) - low) if n else 0)
            highs.append(max(0.0, high - (row[rate] or 0)) if n else 0)
        ax.bar(
            tiers,
            centres,
            yerr=[lows, highs],
            capsize=6,
            color=["tab:orange", "tab:blue"][: len(tiers)],
        )
        ax.set_title(f"{title} (95% Wilson)")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    save(fig, "rates")

    timeline = M.over_time(lazy, every="1h", by=("tier",))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for tier in ("production", "canary"):
        part = timeline.filter(pl.col("tier") == tier)
        if part.height:
            ax.plot(
                part["start"].to_list(),
                part["cost_per_1k_calls_usd"].to_list(),
                marker="o",
                label=tier,
            )
    ax.set_ylabel("USD per 1,000 calls")
    ax.set_title(f"{route}: cost over time")
    ax.legend()
    fig.autofmt_xdate()
    save(fig, "cost")
    return out


# --- documents ------------------------------------------------------------------------------


def _markdown_table(route: RouteVerdict) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in metric_rows(route)]
    return "\n".join(lines)


def _trace_lines(
    route: RouteVerdict, jaeger_url: str | None, tempo_url: str | None, md: bool
) -> list[str]:
    lines = []
    for label, trace in _traces(route):
        link = trace_link(trace["trace_id"], jaeger_url, tempo_url)
        tid = trace["trace_id"]
        if md:
            shown = f"[`{tid}`]({link})" if link else f"`{tid}`"
        else:
            shown = (
                f'<a href="{html.escape(link)}"><code>{html.escape(tid)}</code></a>'
                if link
                else f"<code>{html.escape(tid)}</code>"
            )
        detail = _trace_detail(trace)  # error types and outcome kinds come from the spans
        lines.append(f"{label}: {shown} {detail if md else html.escape(detail)}")
    return lines


def _trace_detail(trace: dict[str, Any]) -> str:
    """What a listed trace's call was: its duration, when known (a background call has
    none until its result is seen), and how it failed."""
    duration = trace.get("duration_ms")
    details = [f"{duration:,.0f} ms" if duration is not None else "duration unknown"]
    details += [trace[key] for key in ("error_type", "outcome_kind") if trace.get(key)]
    if trace.get("refused"):
        category = trace.get("refusal_category")
        details.append(f"refused ({category})" if category else "refused")
    return ", ".join(details)


def _file_name(route: str) -> str:
    """A route's name as part of a file name: a "/" or ".." in it must not leave the plots'
    folder, nor a space break the Markdown link; a hash keeps two such names apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", route).strip("-") or "route"
    return safe if safe == route else f"{safe}-{hashlib.sha256(route.encode()).hexdigest()[:8]}"


def write_markdown(
    judgement: Judgement,
    calls: pl.DataFrame | pl.LazyFrame,
    path: str | Path,
    *,
    jaeger_url: str | None = None,
    tempo_url: str | None = None,
) -> Path:
    """A Markdown report; its PNG plots go to `<name>_plots/` beside it."""
    path = Path(path)
    folder = path.with_name(path.stem + "_plots")
    folder.mkdir(parents=True, exist_ok=True)
    parts = [f"# Canary analysis: {judgement.verdict}", "", f"Mode: {judgement.config.mode}.", ""]
    for route in judgement.routes.values():
        parts += [f"## Route `{route.route}`: **{route.verdict}**", ""]
        parts += [f"- {reason}" for reason in route.reasons] + [""]
        parts += [_markdown_table(route), "", f"_{_interval_note(route)}; * critical_", ""]
        parts += [f"- {line}" for line in _trace_lines(route, jaeger_url, tempo_url, md=True)] + [
            ""
        ]
        for name, png in plots(calls, route.route).items():
            file = folder / f"{_file_name(route.route)}_{name}.png"
            file.write_bytes(png)
            parts += [f"![{name}]({folder.name}/{file.name})", ""]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_html(
    judgement: Judgement,
    calls: pl.DataFrame | pl.LazyFrame,
    path: str | Path,
    *,
    jaeger_url: str | None = None,
    tempo_url: str | None = None,
) -> Path:
    """A self-contained HTML report (plots embedded as PNG data URIs)."""
    path = Path(path)
    body = [
        f"<h1>Canary analysis: {judgement.verdict}</h1>",
        f"<p>Mode: {html.escape(judgement.config.mode)}.</p>",
    ]
    for route in judgement.routes.values():
        body.append(f"<h2>Route <code>{html.escape(route.route)}</code>: {route.verdict}</h2><ul>")
        body += [f"<li>{html.escape(reason)}</li>" for reason in route.reasons]
        body.append("</ul><table><tr>" + "".join(f"<th>{h}</th>" for h in HEADERS) + "</tr>")
        for row in metric_rows(route):
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        body.append(f"</table><p><em>{html.escape(_interval_note(route))}; * critical</em></p><ul>")
        body += [
            f"<li>{line}</li>" for line in _trace_lines(route, jaeger_url, tempo_url, md=False)
        ]
        body.append("</ul>")
        for name, png in plots(calls, route.route).items():
            data = base64.b64encode(png).decode()
            body.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    style = "body{font-family:sans-serif;max-width:60em}td,th{padding:2px 8px;text-align:right}"
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
    )
    path.write_text(document + "\n".join(body) + "</body></html>", encoding="utf-8")
    return path


# --- the latest verdict, for `promote --require-verdict` ------------------------------------


@dataclass(frozen=True)
class RecordedVerdict:
    """A route's last verdict with what it judged: the canary model and the route's stage.

    `stage` is None in a file written before stages were recorded, or when `analyze` ran
    without a registry naming the route; such a verdict supports no promotion.
    """

    verdict: Verdict
    canary_model: str | None
    stage: int | None


def save_latest(
    judgement: Judgement,
    path: str | Path,
    stages: Mapping[str, int] | None = None,
    *,
    warn: Callable[[str], object] = log.warning,
) -> Path:
    """Record each route's verdict, canary and stage (from `stages`, the registry's) so
    that a promotion can check that the verdict judged the stage it leaves.

    A damaged file is moved aside (`warn` says where) rather than stopping the run; the
    write is atomic, so an interrupted run never leaves half a file. OSError when the
    folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous = _read_state(path)
    except ValueError as exc:
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        warn(
            f"{exc}; moved to {aside} and replaced by this run's verdicts (analyze any other "
            "route again before promoting it with --require-verdict)"
        )
        previous = {}
    for name, route in judgement.routes.items():
        previous[name] = {
            "verdict": str(route.verdict),
            "canary_model": route.canary_model,
            "stage": (stages or {}).get(name),
            "window_end": route.window_end.isoformat() if route.window_end else None,
        }
    _write_atomically(path, json.dumps(previous, indent=2))
    return path


def latest_verdict(route: str, path: str | Path) -> RecordedVerdict | None:
    """The last recorded verdict of `route`, or None when it was never analysed.

    ValueError naming the file when it (or the route's entry) is damaged.
    """
    path = Path(path)
    entry = _read_state(path).get(route)
    if entry is None:
        return None
    try:
        verdict = Verdict(entry["verdict"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: {route}: not a verdict record ({entry!r})") from exc
    canary, stage = entry.get("canary_model"), entry.get("stage")
    return RecordedVerdict(
        verdict,
        canary if isinstance(canary, str) else None,
        stage if isinstance(stage, int) and not isinstance(stage, bool) else None,
    )


def _read_state(path: Path) -> dict[str, Any]:
    """The recorded entries by route; {} when there is no file yet. ValueError naming the
    file when it is not a JSON object (truncated, edited by hand)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{path}: not a verdict file ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a verdict file (a JSON {type(data).__name__})")
    return data


def _write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
