"""The website's generated pages and the notebooks' duties towards them.

The generators (glossary, results, corrections, figure alt texts) are tested on small
notebooks made here; the last tests hold every lecture to what the site needs: a
`# Figure: ...` caption in each figure cell, a results table, a corrections section.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from utils import glossary, results

REPO = Path(__file__).resolve().parent.parent
LECTURES = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))

_spec = importlib.util.spec_from_file_location("site_build", REPO / "docs" / "build.py")
site_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site_build)

# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4a80000000049454e44ae426082"
    )
).decode()


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text: str, outputs=(), start=None, end=None) -> dict:
    meta = {}
    if start:
        meta["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
    return {"cell_type": "code", "metadata": meta, "source": text, "outputs": list(outputs),
            "execution_count": 1}


def figure_output() -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"}}


def results_output(lecture: str, rows: list[dict]) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": "table", "application/json": {
                results.RESULTS_KEY: {"lecture": lecture, "rows": [results._clean(r) for r in rows]}}}}


def write_nb(path: Path, cells: list[dict]) -> Path:
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


# --- glossary --------------------------------------------------------------------------------


def test_term_pairs_are_found_with_their_remarks_dropped():
    text = ("Gradients flow backwards: **backpropagation** (反向传播) computes them. A\n"
            "**convolution kernel** (卷积核, also called a filter) slides; **Batch\nnormalization** "
            "(批量归一化; the notes say BN) helps. Not terms: **bold** (plain words), "
            "**Too small** ($N(0, 1)$), **GRU** (门控循环单元).")
    assert glossary.find_pairs(text) == [
        ("backpropagation", "反向传播"),
        ("convolution kernel", "卷积核"),
        ("batch normalization", "批量归一化"),
        ("GRU", "门控循环单元"),
    ]


def test_a_notebook_with_a_new_pair_shows_up_in_the_glossary(tmp_path):
    first = write_nb(tmp_path / "01_a.ipynb", [md("# Lecture 1 — A\n\nA **loss function** (损失函数).")])
    second = write_nb(tmp_path / "02_b.ipynb", [
        md("# Lecture 2 — B\n\nThe **loss function** (损失函数) again, and a new term: "
           "**zebra regularisation** (斑马正则化).")])
    entries = glossary.collect([first, second])
    by_term = {e["english"]: e for e in entries}
    assert by_term["zebra regularisation"]["chinese"] == ["斑马正则化"]
    assert by_term["zebra regularisation"]["first"] == second
    assert by_term["loss function"]["first"] == first and by_term["loss function"]["also"] == [second]
    page = glossary.glossary_page(entries)
    assert "| zebra regularisation | 斑马正则化 | [Lecture 2](notebooks/02_b.ipynb) |  |" in page
    assert "| loss function | 损失函数 | [Lecture 1](notebooks/01_a.ipynb) | [Lecture 2](notebooks/02_b.ipynb) |" in page
    assert "斑马正则化" in glossary.chinese_words(entries)


# --- results ---------------------------------------------------------------------------------


def test_results_and_run_time_are_read_from_the_notebook(tmp_path):
    nb = write_nb(tmp_path / "05_x.ipynb", [
        md("# Lecture 5 — X"),
        code("train()", start="2026-01-01T10:00:00.000000Z", end="2026-01-01T10:00:41.500000Z"),
        code("report_results(...)", [results_output("05", [
            {"quantity": "accuracy", "validation": 0.98765, "test": 0.9812, "note": "3 seeds"},
            {"quantity": "loss", "validation": 0.0412}])],
            start="2026-01-01T10:00:41.600000Z", end="2026-01-01T10:00:42.100000Z"),
    ])
    (entry,) = results.collect([nb])
    assert entry["seconds"] == 42.0 and entry["title"] == "Lecture 5 — X"
    assert [r["quantity"] for r in entry["rows"]] == ["accuracy", "loss"]
    page = results.results_page([entry])
    assert "| [Lecture 5 — X](notebooks/05_x.ipynb) | 42 s | 2 |" in page
    assert "| accuracy | 0.9877 | 0.9812 | 3 seeds |" in page
    assert "| loss | 0.0412 | — |  |" in page
    out = subprocess.run([sys.executable, "-m", "utils.results", str(nb)], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    assert "05_x.ipynb" in out and "run time 42 s" in out and "0.9877" in out
    target = tmp_path / "results.md"
    assert results.main([str(nb), "--markdown", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == page


def test_a_notebook_without_results_says_so(tmp_path):
    nb = write_nb(tmp_path / "06_y.ipynb", [md("# Lecture 6 — Y"), code("1")])
    (entry,) = results.collect([nb])
    assert entry["rows"] == [] and entry["seconds"] is None
    assert "*No results reported.*" in results.results_page([entry])


# --- corrections and figures -----------------------------------------------------------------


def test_the_corrections_section_is_collected(tmp_path):
    nb = write_nb(tmp_path / "03_z.ipynb", [
        md("# Lecture 3 — Z\n\nText."),
        md("## Corrections to the course notes\n\n1. The notes write $a^2$; it is $2a$. "
           "See [the check](#the-check)."),
        code("check()"),
        md("2. A second correction."),
    ])
    section = site_build.corrections_section(json.loads(nb.read_text()))
    assert section.startswith("1. The notes write $a^2$") and section.endswith("2. A second correction.")
    page, missing = site_build.corrections_page([nb])
    assert missing == [] and "## Lecture 3\n\nFrom [Z](notebooks/03_z.ipynb#corrections-to-the-course-notes):" in page
    assert "[the check](notebooks/03_z.ipynb#the-check)" in page
    _, missing = site_build.corrections_page([write_nb(tmp_path / "04_w.ipynb", [md("# W")])])
    assert missing == ["04_w.ipynb"]


def test_figure_captions_become_alt_texts_and_missing_ones_are_found(tmp_path):
    nb = write_nb(tmp_path / "02_f.ipynb", [
        md("# Lecture 2 — F"),
        code("# Figure: the loss falls from 2.3 to 0.1 over ten epochs.\nplt.plot(x)\nplt.show()",
             [figure_output()]),
        code("plt.imshow(img)\nplt.show()", [figure_output()]),
        code("print(1)", [{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
    ])
    staged, missing = site_build.stage_notebook(nb)
    assert missing == [2]
    cells = [c for c in json.loads(staged)["cells"] if c["cell_type"] == "code"]
    assert cells[0]["metadata"]["mystnb"]["image"]["alt"] == (
        "the loss falls from 2.3 to 0.1 over ten epochs.")
    assert "mystnb" not in cells[1]["metadata"]


def test_the_alt_text_reaches_the_built_page(tmp_path):
    """The mechanism end to end: a notebook with a captioned figure, built by Sphinx."""
    pytest.importorskip("sphinx", reason="the site's packages: pip install -e '.[site]'")
    nb = write_nb(tmp_path / "01_fig.ipynb", [
        md("# Lecture 1 — Fig\n\nA **zebra term** (斑马术语), and $x^2$."),
        code("# Figure: a white square on a white background.\nplt.show()", [figure_output()]),
    ])
    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True)
    (src / "index.md").write_text("# Test\n\n```{toctree}\nnotebooks/01_fig\n```\n", encoding="utf-8")
    staged, missing = site_build.stage_notebook(nb)
    assert missing == []
    (src / "notebooks" / "01_fig.ipynb").write_text(staged, encoding="utf-8")
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-q", "-c", str(REPO / "docs"),
         str(src), str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    page = (out / "notebooks" / "01_fig.html").read_text(encoding="utf-8")
    assert 'alt="a white square on a white background."' in page
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()
    index = (out / "genindex.html").read_text(encoding="utf-8")
    assert "zebra term" in index and "斑马术语" in index


# --- every lecture ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_every_figure_cell_has_a_caption_for_its_alt_text(path):
    missing = site_build.missing_captions(json.loads(path.read_text(encoding="utf-8")))
    assert not missing, (
        f"code cell(s) {missing} (counting code cells from 1) show a figure without a "
        "`# Figure: <what the figure shows>` comment line (the site's alt text)"
    )


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_every_lecture_reports_its_results_and_corrections(path):
    assert results.read_results(path), "no headline results: end with utils.results.report_results(...)"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert site_build.corrections_section(nb) is not None, (
        f"no `{site_build.CORRECTIONS_HEADING}` section (the lecture's last section)"
    )
