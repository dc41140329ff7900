"""`fitted`: a table where it fits, else blocks that keep every cell whole."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from canarytrace.tables import fitted


def _render(table: Table, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(fitted(console, table))
    return console.export_text()


def _table() -> Table:
    table = Table(title="snapshots", caption="model: gpt-4o-2024-11-20")
    for header in ("name", "verdict", "reason"):
        table.add_column(header)
    table.add_row("refund", "[red]worrying[/red]", "the 30-day limit became 14 days in the answer")
    table.add_row("", Text("acceptable", "green"), "")  # a continuation row, one cell filled
    return table


def test_a_table_that_fits_is_printed_as_a_table() -> None:
    text = _render(_table(), 120)
    assert "┃ name" in text and "worrying" in text and "[red]" not in text


def test_a_table_too_wide_becomes_blocks_of_named_cells() -> None:
    text = _render(_table(), 40)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "snapshots" and lines[1] == "refund"
    assert "verdict worrying" in text and "[red]" not in text and "…" not in text
    assert "reason the 30-day limit became 14 days" in " ".join(line.strip() for line in lines)
    # Empty cells are left out, and a row without a first cell has no title line.
    assert lines[-2].strip() == "verdict acceptable" and lines[-1] == "model: gpt-4o-2024-11-20"
    assert not any(line.strip().startswith("reason") and len(line.split()) == 1 for line in lines)
