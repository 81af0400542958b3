"""Go's text/tabwriter, as istioctl uses it, so our tables line up exactly like istioctl's.

istioctl writes rows as tab-separated cells into `tabwriter.NewWriter(out, minwidth 0,
tabwidth 8, padding P, ' ', 0)`: every cell that a tab terminates is padded to its
column's widest cell plus P spaces; the last cell of a line is not padded. P is 5 for most
tables and 1 for listeners and the bootstrap summary, as in istioctl. One deviation:
trailing spaces (a row whose last cells are empty) are stripped, so output diffs cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence


def tabulate(rows: Sequence[Sequence[object]], padding: int = 5) -> str:
    """Rows (the header first) as aligned text, one line per row, no final newline."""
    cells = [[str(c) for c in row] for row in rows]
    widths: dict[int, int] = {}
    for row in cells:
        for i, cell in enumerate(row[:-1]):  # the last cell of a line is not a column cell
            widths[i] = max(widths.get(i, 0), len(cell))
    lines = []
    for row in cells:
        parts = [cell.ljust(widths[i] + padding) for i, cell in enumerate(row[:-1])]
        if row:
            parts.append(row[-1])
        lines.append("".join(parts).rstrip())
    return "\n".join(lines)
