"""What every benchmark script shares: the printed table."""

from __future__ import annotations

from typing import Any


def print_table(rows: list[dict[str, Any]]) -> None:
    """Rows of equal keys as aligned columns, the keys as the header."""
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(str(row[k]).ljust(widths[k]) for k in keys))
