"""Rich tables that stay readable on a narrow console, such as a CI log's 80 columns.

rich fits a table that is too wide by squeezing its columns until words are cut off
(`claude-…`, `inconclu…`): in a status or a verdict, the cut words are the model ids
and the results. `fitted` prints such a table as blocks instead, one per row: the row's
first cell, then each other cell named by its column's header, wrapping between them.
"""

from __future__ import annotations

import sys

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text


def fitted(console: Console, table: Table) -> RenderableType:
    """`table` where `console` is wide enough for its lines, else its rows as blocks."""
    unbounded = console.options.update_width(sys.maxsize)
    if console.measure(table, options=unbounded).maximum <= console.width:
        return table
    return _as_blocks(table)


def _as_blocks(table: Table) -> Group:
    """The table's title, then per row: its first cell in bold (when it has one), and
    under it the row's other non-empty cells as `header value` pairs; its caption last."""
    columns = table.columns
    rows = zip(*(column.cells for column in columns), strict=True)
    blocks: list[RenderableType] = [Text(str(table.title), style="bold")] if table.title else []
    for cells in rows:
        first, *rest = (_text(cell) for cell in cells)
        if first.plain:
            blocks.append(Text.assemble(first, style="bold"))
        pairs = [
            Text.assemble(f"{column.header} ", cell)
            for column, cell in zip(columns[1:], rest, strict=True)
            if cell.plain
        ]
        blocks.append(Padding(Columns(pairs, padding=(0, 2)), (0, 0, 0, 2)))
    if table.caption:
        blocks.append(Text(str(table.caption), style="dim"))
    return Group(*blocks)


def _text(cell: RenderableType) -> Text:
    """A cell as rich Text: table cells are Text, or strings in rich's markup."""
    return cell if isinstance(cell, Text) else Text.from_markup(str(cell))
