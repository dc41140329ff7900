"""Old and new output side by side, as plain text: for pytest failures and `compare`."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from itertools import zip_longest

COLUMN = 48


def side_by_side(left_title: str, left: str, right_title: str, right: str) -> Iterator[str]:
    """Lines of two wrapped columns under their titles, indented by two spaces."""

    def wrap(text: str) -> list[str]:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            lines.extend(textwrap.wrap(paragraph, COLUMN) or [""])
        return lines

    yield f"  {left_title[:COLUMN]:<{COLUMN}} │ {right_title[:COLUMN]}"
    yield f"  {'─' * COLUMN}─┼─{'─' * COLUMN}"
    for a, b in zip_longest(wrap(left), wrap(right), fillvalue=""):
        yield f"  {a:<{COLUMN}} │ {b}".rstrip()
