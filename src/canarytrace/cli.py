"""The `canarytrace` command: one typer app; each command is a thin shell over the library."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

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


def main() -> None:
    """Console-script entry point."""
    app()
