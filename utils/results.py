"""Headline results of the lectures, reported by the notebooks and read back from them.

A lecture ends with one call::

    report_results("05", [
        {"quantity": "improved CNN accuracy", "validation": 0.9891, "test": 0.9885,
         "note": "3 seeds: 0.9889 ± 0.0004"},
        ...
    ])

which shows a small table and stores the same rows as JSON in the cell's output
(mime type ``application/json``), so that the results page of the site and
``python -m utils.results`` read the numbers from the executed notebooks: no number
is ever typed by hand twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["report_results", "RESULTS_KEY", "read_results"]

RESULTS_KEY = "course_results"
_COLUMNS = ("quantity", "validation", "test", "note")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def _clean(row: dict) -> dict:
    unknown = set(row) - set(_COLUMNS)
    if unknown or "quantity" not in row:
        raise ValueError(f"a row has the keys {_COLUMNS} ('quantity' required); got {sorted(row)}")
    out = {"quantity": str(row["quantity"])}
    for k in ("validation", "test"):
        v = row.get(k)
        out[k] = None if v is None else (float(v) if not isinstance(v, str) else v)
    out["note"] = str(row.get("note", "") or "")
    return out


def table_text(rows: list[dict]) -> str:
    """The rows as an aligned plain-text table."""
    cells = [list(_COLUMNS)] + [[_fmt(r.get(c)) if c != "note" else r.get(c, "") for c in _COLUMNS] for r in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_results(lecture: str, rows: list[dict]) -> None:
    """Show the lecture's headline numbers and store them for the results page.

    ``validation`` is the number used for choices; ``test`` is evaluated once at the end
    (``None`` where a lecture has no such split).
    """
    from IPython.display import display

    clean = [_clean(r) for r in rows]
    text = f"Headline results of lecture {lecture}\n" + table_text(clean)
    payload = {RESULTS_KEY: {"lecture": str(lecture), "rows": clean}}
    display({"text/plain": text, "application/json": payload}, raw=True)


def read_results(notebook: str | Path) -> list[dict]:
    """The rows stored by :func:`report_results` in an executed notebook (empty if none)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    rows: list[dict] = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = (out.get("data") or {}).get("application/json")
            if isinstance(data, dict) and RESULTS_KEY in data:
                rows.extend(data[RESULTS_KEY]["rows"])
    return rows
