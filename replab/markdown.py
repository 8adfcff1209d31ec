"""Small helpers for studies and benchmarks that write results into Markdown docs."""

from __future__ import annotations

import math
import re
from pathlib import Path


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A pandas DataFrame as a GitHub Markdown table (no extra dependency)."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return "" if v is None else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def update_marked_section(path: str | Path, key: str, text: str) -> None:
    """Replace the block between ``<!-- key:begin -->`` and ``<!-- key:end -->`` in ``path`` with
    ``text`` (appending the block when the markers are absent)."""
    from replab.runs import atomic_write_bytes

    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if begin in old and end in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end) + "\n?", lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    atomic_write_bytes(path, new.encode())
