"""`canarytrace snapshots review` and `canarytrace compare`: thin typer shells.

The top-level `cli.py` mounts `app` as `snapshots` and registers `compare`. Everything
heavy (syrupy, the embedding model, the SDKs, scipy) is imported inside the commands,
so `canarytrace --help` stays fast and never imports torch.

Exit codes: 0 all acceptable / EQUIVALENT; 1 a worrying change / REGRESSED; 2 the
command could not run (bad option, no git, unreadable file), with the reason on stderr.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from canarytrace.errors import CanaryTraceError
from canarytrace.tables import fitted

app = typer.Typer(
    no_args_is_help=True,
    help="Snapshot tests across model versions: review what an update changed.",
)
stdout = Console()
stderr = Console(stderr=True)


class EmbedderChoice(StrEnum):
    """How similarity is measured (see canarytrace.snapshots.embedders)."""

    auto = "auto"
    local = "local"
    openai = "openai"
    lexical = "lexical"


EmbedderOption = Annotated[
    EmbedderChoice | None,
    typer.Option(
        "--embedder",
        case_sensitive=False,
        help="local (all-MiniLM-L6-v2), openai, lexical, or auto "
        "(default: $CANARYTRACE_EMBEDDER, else auto)",
    ),
]


def _fail(exc: CanaryTraceError) -> typer.Exit:
    stderr.print(Text("error:", "red"), Text(str(exc)), highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command("review")
def review(
    base: Annotated[
        str, typer.Option(help="Git revision to compare the working tree's snapshots with.")
    ] = "HEAD",
    html: Annotated[
        Path | None, typer.Option(help="Also write a side-by-side HTML report to this file.")
    ] = None,
    embedder: EmbedderOption = None,
) -> None:
    """Classify each changed LLM snapshot (*.llm) as acceptable or worrying; 1 if any worrying."""
    from canarytrace.snapshots import review as reviewing

    try:
        result = reviewing.review(base, embedder=embedder.value if embedder else None)
    except CanaryTraceError as exc:
        raise _fail(exc) from exc
    if result.changes:
        stdout.print(fitted(stdout, reviewing.table(result)))
    stdout.print(reviewing.summary(result), highlight=False, markup=False, soft_wrap=True)
    if html is not None:
        reviewing.write_html(result, html)
        stderr.print(f"wrote {html}", highlight=False, markup=False)
    raise typer.Exit(code=1 if result.worrying else 0)


def compare(
    prompts: Annotated[
        Path,
        typer.Argument(metavar="PROMPTS.yaml", help="A list of prompts (strings or mappings)."),
    ],
    baseline: Annotated[
        str, typer.Option(help="Model id, or a tier of models.yaml (e.g. production).")
    ],
    candidate: Annotated[str, typer.Option(help="Model id, or a tier (e.g. canary).")],
    runs: Annotated[
        int, typer.Option(min=2, help="Answers per prompt per model; one sample is noise.")
    ] = 5,
    route: Annotated[
        str | None, typer.Option(help="Route of models.yaml when a tier is given.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the verdict.")] = 0.05,
    embedder: EmbedderOption = None,
) -> None:
    """Ask both models each prompt N times; judge the candidate against the baseline's noise.

    Exit 0 EQUIVALENT, 1 REGRESSED, 2 when it cannot run.
    """
    from canarytrace.snapshots import compare as comparing
    from canarytrace.snapshots.display import side_by_side

    try:
        result = comparing.compare(
            baseline,
            candidate,
            comparing.load_prompts(prompts),
            runs=runs,
            route=route,
            alpha=alpha,
            embedder=embedder.value if embedder else None,
        )
    except CanaryTraceError as exc:
        raise _fail(exc) from exc
    stdout.print(fitted(stdout, comparing.table(result)))
    for r in result.results:
        for error in r.errors:
            stderr.print(f"{r.prompt.id}: {error}", highlight=False, markup=False)
        if r.worrying and r.worst:
            verdict, text = r.worst
            stdout.print(
                f"\n{r.prompt.id}: {verdict.kind}: {verdict.reason}", highlight=False, markup=False
            )
            lines = side_by_side(
                f"baseline {result.baseline.model_id} (medoid)",
                r.reference,
                f"candidate {result.candidate.model_id} (worst run)",
                text,
            )
            stdout.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    style = "red" if result.verdict == "REGRESSED" else "green"
    stdout.print(Text.assemble((result.verdict, style), f": {result.reason}"), soft_wrap=True)
    stdout.print(f"similarity: {result.similarity_label}", highlight=False, markup=False)
    raise typer.Exit(code=1 if result.verdict == "REGRESSED" else 0)
