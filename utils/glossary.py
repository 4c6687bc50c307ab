"""The course glossary (术语表), generated from the lectures' first-use term pairs.

A lecture introduces a course term in bold with its Chinese name in parentheses, exactly
``**backpropagation** (反向传播)``; anything after a comma or semicolon inside the
parentheses is a remark (``**pooling** (池化; the notes say 汇聚层)``). This module finds
those pairs and writes the site's glossary page: every term, its Chinese name(s), the
lecture that introduces it and the later lectures that use it again.

    python -m utils.glossary                        # the glossary as text, in a terminal
    python -m utils.glossary --markdown glossary.md # the site's page
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from utils.results import lecture_notebooks, notebook_title

__all__ = ["find_pairs", "collect", "glossary_page", "chinese_words"]


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# **English** (中文[, remark]) -- the bold term, at most one space, then the parentheses.
PAIR = re.compile(
    r"\*\*(?P<en>[^*]{1,80}?)\*\*\s?[(（](?P<zh>[^,;，；()（）\n]*[" + _CJK + r"][^,;，；()（）\n]*)[,;，；)）]"
)
_ARTICLE = re.compile(r"^(a|an|the)\s+", re.I)


def _normal_english(text: str) -> str | None:
    """The term as the glossary lists it, or None if it is not a term (a sentence, maths)."""
    en = " ".join(text.split()).strip(" :.,;")
    if not en or "$" in en or "`" in en or len(en.split()) > 6 or len(en) > 60:
        return None
    en = _ARTICLE.sub("", en)
    # "Batch normalization" -> "batch normalization"; keep "GRU", "KL divergence".
    if len(en) > 1 and en[0].isupper() and en[1].islower():
        en = en[0].lower() + en[1:]
    return en


def find_pairs(markdown: str) -> list[tuple[str, str]]:
    """The ``**English** (中文)`` pairs in a markdown text, in order of appearance."""
    pairs = []
    for m in PAIR.finditer(markdown):
        en = _normal_english(m.group("en"))
        zh = " ".join(m.group("zh").split())
        if en and zh and len(zh) <= 20:
            pairs.append((en, zh))
    return pairs


def _notebook_pairs(path: Path) -> list[tuple[str, str]]:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            pairs += find_pairs("".join(cell.get("source", "")))
    return pairs


def collect(notebooks: list[str | Path]) -> list[dict]:
    """The glossary: one entry per term (case-insensitive), sorted by the English term.

    Each entry: ``english``, ``chinese`` (the distinct Chinese names, first one first),
    ``first`` (the notebook, in the given order, that introduces the term) and ``also``
    (later notebooks that pair the term again).
    """
    terms: dict[str, dict] = {}
    for path in notebooks:
        path = Path(path)
        for en, zh in _notebook_pairs(path):
            entry = terms.setdefault(
                en.lower(), {"english": en, "chinese": [], "first": path, "also": []}
            )
            if zh not in entry["chinese"]:
                entry["chinese"].append(zh)
            if path != entry["first"] and path not in entry["also"]:
                entry["also"].append(path)
    return sorted(terms.values(), key=lambda e: e["english"].lower())


def _lecture_label(path: Path) -> str:
    title = notebook_title(path)
    return title.split(" — ", 1)[0] if " — " in title else (title or path.stem)


def glossary_page(entries: list[dict], link_prefix: str = "notebooks/") -> str:
    """The site's glossary page (MyST markdown)."""

    def link(path: Path) -> str:
        return f"[{_lecture_label(path)}]({link_prefix}{path.name})"

    lines = [
        "# Glossary (术语表)",
        "",
        "Every course term with its Chinese name, generated from the lectures: a lecture",
        "introduces a term in bold with its Chinese name in parentheses, e.g.",
        "**backpropagation** (反向传播). The link leads to the lecture that introduces it.",
        "",
        "| term | 中文 | introduced in | used again in |",
        "|---|---|---|---|",
    ]
    for e in entries:
        also = ", ".join(link(p) for p in e["also"])
        zh = "；".join(e["chinese"])
        lines.append(f"| {e['english']} | {zh} | {link(e['first'])} | {also} |")
    lines += ["", f"{len(entries)} terms.", ""]
    return "\n".join(lines)


def chinese_words(entries: list[dict]) -> list[str]:
    """The Chinese words of the glossary (runs of CJK characters), for the search's dictionary."""
    words = set()
    for e in entries:
        for zh in e["chinese"]:
            words.update(w for w in re.findall(f"[{_CJK}]+", zh) if len(w) >= 2)
    return sorted(words)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m utils.glossary", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the glossary page here")
    args = parser.parse_args(argv)
    entries = collect(args.notebooks or lecture_notebooks())
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(glossary_page(entries), encoding="utf-8")
        print(f"wrote {args.markdown}")
    else:
        for e in entries:
            print(f"{e['english']:<40} {'；'.join(e['chinese']):<16} {e['first'].name}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
