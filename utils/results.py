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

__all__ = ["report_results", "RESULTS_KEY", "read_results", "collect", "run_seconds", "results_page"]

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


# ---------------------------------------------------------------------------------------
# Reading every lecture back: the terminal table and the site's results page.
#
#     python -m utils.results                         # the table, in a terminal
#     python -m utils.results --markdown results.md   # the site's page
# ---------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def _load(notebook: str | Path | dict) -> dict:
    if isinstance(notebook, dict):
        return notebook
    return json.loads(Path(notebook).read_text(encoding="utf-8"))


def notebook_title(notebook: str | Path | dict) -> str:
    """The text of the notebook's first ``# `` heading (empty if it has none)."""
    for cell in _load(notebook).get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _timestamp(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_seconds(notebook: str | Path | dict) -> float | None:
    """The notebook's run time: the sum of its code cells' execution times.

    Read from the timestamps that Jupyter stores in each executed cell's metadata
    (``execution.iopub.execute_input`` to ``execution.shell.execute_reply``); ``None`` if
    the notebook holds no timestamps.
    """
    total, found = 0.0, False
    for cell in _load(notebook).get("cells", []):
        stamps = (cell.get("metadata") or {}).get("execution") or {}
        start = stamps.get("iopub.execute_input")
        end = stamps.get("shell.execute_reply")
        if cell.get("cell_type") == "code" and start and end:
            total += (_timestamp(end) - _timestamp(start)).total_seconds()
            found = True
    return round(total, 1) if found else None


def collect(notebooks: list[str | Path]) -> list[dict]:
    """One entry per notebook: its name, title, stored result rows and run time."""
    entries = []
    for path in notebooks:
        nb = _load(path)
        entries.append(
            {
                "notebook": Path(path).name,
                "lecture": Path(path).name.split("_", 1)[0],
                "title": notebook_title(nb),
                "rows": read_results(path),
                "seconds": run_seconds(nb),
            }
        )
    return entries


def lecture_notebooks() -> list[Path]:
    """The lecture notebooks, in course order (notebooks/NN*.ipynb)."""
    return sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))


def _seconds(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f} s"


def summary_text(entries: list[dict]) -> str:
    """Every lecture's headline numbers and run time, as plain text for a terminal."""
    blocks = []
    for e in entries:
        head = f"{e['notebook']}  ({e['title']}; run time {_seconds(e['seconds'])})"
        body = table_text(e["rows"]) if e["rows"] else "(no results reported)"
        blocks.append(head + "\n" + body)
    return "\n\n".join(blocks)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_page(entries: list[dict], link_prefix: str = "notebooks/") -> str:
    """The site's results page (MyST markdown), generated from the executed notebooks."""
    total = sum(e["seconds"] or 0 for e in entries)
    lines = [
        "# Results",
        "",
        "The headline numbers of every lecture, read from the committed, executed notebooks",
        "(each lecture stores them with `utils.results.report_results` in its last code cell),",
        "and each lecture's run time: the sum of its cells' execution times, as recorded when",
        "the notebook was last executed. *Validation* numbers are the ones used for choices;",
        "*test* numbers were evaluated once, at the end. `python -m utils.results` prints the",
        "same tables in a terminal.",
        "",
        "| lecture | run time | headline results |",
        "|---|---|---|",
    ]
    for e in entries:
        link = f"[{_md(e['title'] or e['notebook'])}]({link_prefix}{e['notebook']})"
        lines.append(f"| {link} | {_seconds(e['seconds'])} | {len(e['rows']) or '—'} |")
    lines += ["", f"Total run time of the lectures: {total:.0f} s.", ""]
    for e in entries:
        label, _, rest = (e["title"] or e["notebook"]).partition(" — ")
        lines += [f"## {label}", "",
                  f"[{_md(rest or label)}]({link_prefix}{e['notebook']}); run time {_seconds(e['seconds'])}.", ""]
        if not e["rows"]:
            lines += ["*No results reported.*", ""]
            continue
        lines += ["| quantity | validation | test | note |", "|---|---|---|---|"]
        for r in e["rows"]:
            cells = [r.get("quantity", ""), _fmt(r.get("validation")), _fmt(r.get("test")), r.get("note", "")]
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m utils.results",
        description="Print the lectures' headline results and run times, or write the site's page.",
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the results page here")
    args = parser.parse_args(argv)
    entries = collect(args.notebooks or lecture_notebooks())
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(results_page(entries), encoding="utf-8")
        print(f"wrote {args.markdown}")
    else:
        print(summary_text(entries))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
