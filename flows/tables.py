"""Query results printed for people (aligned table) or programs (jsonl, csv); used by `hub query`
and the run summary."""
from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson


def print_rows(names: list[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "jsonl":
        for row in rows:
            out.write(orjson.dumps(dict(zip(names, row)), default=str, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(names)
        w.writerows(rows)
    else:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
        out.write("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip() + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for r in cells:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
