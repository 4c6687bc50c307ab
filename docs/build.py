"""Build the course website: `make site` (or `python docs/build.py`).

1. Stage the sources in build/site/src/, laid out as in the repository (so that links
   between notebooks and Colab's launch links stay right): the lectures, the student
   assignments (never the solutions) and their README, and this folder's pages.
   On the way, every figure gets its alt text from the `# Figure: ...` comment line of
   the cell that draws it, and links to repository files that are not pages of the site
   point to the repository instead.
2. Generate the glossary (utils.glossary), results (utils.results) and corrections pages
   from the executed notebooks, and the search's Chinese dictionary.
3. Run Sphinx (myst-nb, execution off) into _site/ with warnings as errors.

A figure cell without a `# Figure:` caption, a lecture without a results table or without
its `## Corrections to the course notes` section is an error (`--lenient` only lists them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))

from utils import glossary, results  # noqa: E402
from utils.notebooks import repository_url  # noqa: E402

CORRECTIONS_HEADING = "## Corrections to the course notes"
FIGURE = re.compile(r"^\s*#\s*Figure:\s*(\S.*?)\s*$", re.M)
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
NOTEBOOK_PROBLEMS = 3  # exit status: the site was built, but notebooks lack captions, ...
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def lectures() -> list[Path]:
    return results.lecture_notebooks()


def assignments() -> list[Path]:
    return sorted((REPO / "assignments").glob("[0-9]*.ipynb"))


def site_sources() -> list[Path]:
    """The repository files that become pages of the site."""
    return lectures() + assignments() + [REPO / "assignments" / "README.md"]


# --- figures -----------------------------------------------------------------------------


def figure_cells(nb: dict) -> list[tuple[int, dict, list[str]]]:
    """(index among code cells, cell, captions) of every code cell that shows an image."""
    out = []
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for i, cell in enumerate(code):
        shows = any(
            m in (o.get("data") or {}) for o in cell.get("outputs", []) or [] for m in IMAGE_MIMES
        )
        if shows:
            out.append((i + 1, cell, FIGURE.findall("".join(cell.get("source", "")))))
    return out


def missing_captions(nb: dict) -> list[int]:
    """Numbers (1-based, among code cells) of the figure cells without a `# Figure:` line."""
    return [i for i, _, captions in figure_cells(nb) if not captions]


# --- corrections -------------------------------------------------------------------------


def corrections_section(nb: dict) -> str | None:
    """The markdown of the notebook's `## Corrections to the course notes` section.

    The markdown cells from the one that opens with the heading up to the next `#`/`##`
    heading or the end; the heading itself is left out. None if there is no such section.
    """
    cells = nb.get("cells", [])
    for k, cell in enumerate(cells):
        src = "".join(cell.get("source", "")).strip()
        if cell.get("cell_type") == "markdown" and src.startswith(CORRECTIONS_HEADING):
            parts = [src[len(CORRECTIONS_HEADING):].strip()]
            for later in cells[k + 1:]:
                text = "".join(later.get("source", "")).strip()
                if later.get("cell_type") != "markdown":
                    continue
                if re.match(r"#{1,2} ", text):
                    break
                parts.append(text)
            return "\n\n".join(p for p in parts if p)
    return None


def _slug(title: str) -> str:
    from myst_parser.mdit_to_docutils.base import default_slugify

    return default_slugify(title)


def corrections_page(notebooks: list[Path]) -> tuple[str, list[str]]:
    """The site's corrections page and the notebooks that lack the section."""
    lines = [
        "# Corrections to the course notes",
        "",
        "Where the course notes are wrong, each lecture says so in its last section: what the",
        "notes say, what is right, and why. This page collects those sections.",
        "",
    ]
    missing = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        body = corrections_section(nb)
        title = results.notebook_title(nb) or path.stem
        if body is None:
            missing.append(path.name)
            continue
        body = _relink(body, f"notebooks/{path.name}", ".")
        anchor = _slug(CORRECTIONS_HEADING[3:])
        label, _, rest = title.partition(" — ")
        lines += [f"## {label}", "",
                  f"From [{rest or label}](notebooks/{path.name}#{anchor}):", "", body, ""]
    return "\n".join(lines), missing


# --- links -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _site_pages() -> frozenset[str]:
    return frozenset(p.relative_to(REPO).as_posix() for p in site_sources())


def _relink(markdown: str, page: str, base: str) -> str:
    """Rewrite the relative links of a text that moves from `page` to a page in `base`.

    Links to other pages of the site stay relative (adjusted to the new place); links to
    any other repository file point to the repository; `#anchor` links point to `page`.
    """
    pages = _site_pages()
    src_dir = Path(page).parent

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            return m.group(0)
        path, _, anchor = target.partition("#")
        if not path:
            new = f"{page}#{anchor}"
        else:
            resolved = os.path.normpath((src_dir / path).as_posix())
            if resolved in pages:
                new = resolved + (f"#{anchor}" if anchor else "")
            else:
                kind = "tree" if (REPO / resolved).is_dir() else "blob"
                return f"{m.group(1)}{repository_url()}/{kind}/main/{resolved}{m.group(3)}"
        rel = os.path.relpath(new.split("#")[0], base.rstrip("/") or ".")
        rel += ("#" + new.split("#", 1)[1]) if "#" in new else ""
        return f"{m.group(1)}{rel}{m.group(3)}"

    return LINK.sub(fix, markdown)


# --- staging -----------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Write only if changed, so that Sphinx rebuilds only what changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def stage_notebook(path: Path) -> tuple[str, list[int]]:
    """The notebook as the site shows it, and its figure cells without a caption."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    path = Path(path).resolve()
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else f"notebooks/{path.name}"
    seen: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell.get("source", ""))
            cell["source"] = _relink(src, rel, str(Path(rel).parent)) + _index_entries(src, seen)
        for out in cell.get("outputs", []) or []:  # report_results' data, shown as text
            data = out.get("data") or {}
            if results.RESULTS_KEY in (data.get("application/json") or {}):
                del data["application/json"]
    for _, cell, captions in figure_cells(nb):
        if captions:
            meta = cell.setdefault("metadata", {}).setdefault("mystnb", {})
            meta.setdefault("image", {})["alt"] = " ".join(captions)
    return json.dumps(nb, ensure_ascii=False, indent=1) + "\n", missing_captions(nb)


def _index_entries(markdown: str, seen: set[str]) -> str:
    """An index directive for the terms that this cell pairs first in its notebook.

    Both names become entries of the site's index (genindex.html) and of its search, so
    that searching 反向传播 or backpropagation ranks the lectures that introduce the term.
    """
    names = []
    for en, zh in glossary.find_pairs(markdown):
        if en.lower() not in seen:
            seen.add(en.lower())
            names += [en, zh]
    entries = ", ".join("! " + n.replace(",", " ") for n in dict.fromkeys(names))
    return f"\n\n```{{index}} {entries}\n```\n" if names else ""


def stage(src: Path, dict_path: Path) -> tuple[list[str], bool]:
    """Prepare the Sphinx source folder; return the problems found in the notebooks and
    whether a page was removed."""
    problems: list[str] = []
    wanted: set[Path] = set()

    def put(rel: str, text: str) -> None:
        wanted.add(src / rel)
        _write(src / rel, text)

    for page in DOCS.glob("*.md"):
        put(page.name, page.read_text(encoding="utf-8"))
    for path in lectures() + assignments():
        text, missing = stage_notebook(path)
        put(path.relative_to(REPO).as_posix(), text)
        for i in missing:
            problems.append(f"{path.relative_to(REPO)}: code cell {i} shows a figure but has no "
                            "`# Figure: ...` caption line (the image's alt text)")
    readme = REPO / "assignments" / "README.md"
    put("assignments/README.md", _relink(readme.read_text(encoding="utf-8"),
                                          "assignments/README.md", "assignments"))

    terms = glossary.collect(lectures())
    put("glossary.md", glossary.glossary_page(terms))
    entries = results.collect(lectures())
    put("results.md", results.results_page(entries))
    for e in entries:
        if not e["rows"]:
            problems.append(f"notebooks/{e['notebook']}: no headline results "
                            "(the last code cell calls utils.results.report_results)")
    page, missing = corrections_page(lectures())
    put("corrections.md", page)
    for name in missing:
        problems.append(f"notebooks/{name}: no `{CORRECTIONS_HEADING}` section")

    extra = [w for line in (DOCS / "zh_words.txt").read_text(encoding="utf-8").splitlines()
             if not line.startswith("#") for w in line.split()]
    words = sorted(set(glossary.chinese_words(terms)) | set(extra))
    _write(dict_path, "".join(f"{w}\n" for w in words))

    removed = False
    for old in src.rglob("*"):  # pages that no longer exist
        if old.is_file() and old not in wanted:
            old.unlink()
            removed = True
    return problems, removed


def build(out: Path, work: Path, lenient: bool = False, jobs: str = "2") -> int:
    start = time.perf_counter()
    src, dict_path = work / "src", work / "zh_dict.txt"
    problems, removed = stage(src, dict_path)
    if removed:  # Sphinx keeps the pages of deleted sources: start afresh
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / "doctrees", ignore_errors=True)
    for p in problems:
        print(f"{'note' if lenient else 'ERROR'}: {p}", file=sys.stderr)
    env = dict(os.environ, COURSE_SITE_ZH_DICT=str(dict_path.resolve()), PYTHONHASHSEED="0",
               COURSE_SITE_OUTPUTS=str((work / "jupyter_execute").resolve()))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
           "-j", jobs, "-c", str(DOCS), "-d", str(work / "doctrees"), str(src), str(out)]
    status = subprocess.call(cmd, env=env)
    if status == 0:  # the download buttons serve the notebooks as committed, not as staged
        for path in lectures() + assignments():
            shutil.copy2(path, out / "_sources" / path.relative_to(REPO))
    seconds = time.perf_counter() - start
    pages = len([p for p in out.rglob("*.html") if "_static" not in p.parts]) if out.exists() else 0
    print(f"site: {pages} pages in {out} ({seconds:.1f} s)")
    if status == 0 and problems and not lenient:
        print(f"site: {len(problems)} problem(s) in the notebooks (listed above)", file=sys.stderr)
        return NOTEBOOK_PROBLEMS
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "_site", help="default: _site/")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "site",
                        help="staging and cache folder (default: build/site/)")
    parser.add_argument("--lenient", action="store_true",
                        help="only list notebooks without figure captions, results or corrections")
    parser.add_argument("-j", "--jobs", default="2", help="Sphinx's parallel jobs (default 2)")
    args = parser.parse_args(argv)
    return build(args.out, args.work, args.lenient, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
