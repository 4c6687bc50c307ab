"""Serve MathJax 3 from the site itself (no CDN): the files bundled by the PyPI package
sphinx-mathjax-offline are copied into _static/mathjax/ and Sphinx's mathjax extension
loads them from there. (The package's own extension does the same but does not declare
itself safe for parallel builds, which is a warning, so an error under `-W`.)"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def mathjax_dir() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the site needs sphinx-mathjax-offline: pip install -e '.[site]'")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"


def _copy(app, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    src, dest = mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    for f in src.rglob("*"):
        if f.is_file():
            target = dest / f.relative_to(src)
            if not target.exists() or target.stat().st_size != f.stat().st_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.config.mathjax_path = "mathjax/tex-chtml.js"
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
