"""Sphinx configuration of the course website (built by `make site`, see docs/build.py).

The source folder is a staging copy that docs/build.py prepares (the lectures, the
assignments, the generated glossary/results/corrections pages and the pages of this
folder); this file and docs/_static/ are used from here.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(DOCS / "_ext"))

import tomllib  # noqa: E402


def repository_url() -> str:
    """pyproject's [project.urls] Repository, as utils.notebooks reads it (without
    importing the `utils` package, which would load PyTorch into every build)."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return meta["project"]["urls"]["Repository"]


project = "Deep learning in PyTorch, from a statistics point of view"
author = "the course authors"
copyright = "the course authors, MIT licence"
language = "en"

extensions = [
    "myst_nb",
    "offline_mathjax",  # MathJax 3 served from the site itself, no CDN
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The committed, executed notebooks are shown as they are: nothing runs at build time.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# myst-nb writes the notebooks' images to <output folder>/../jupyter_execute, which for
# _site/ would be the repository's root: docs/build.py names a folder in its work area.
if os.environ.get("COURSE_SITE_OUTPUTS"):
    import myst_nb.sphinx_ext

    myst_nb.sphinx_ext.OUTPUT_FOLDER = os.environ["COURSE_SITE_OUTPUTS"]  # absolute: joined as is

# MathJax 3 (bundled by sphinx-mathjax-offline); myst adds its processHtmlClass here.
mathjax3_config = {"tex": {"tags": "none"}}

html_theme = "sphinx_book_theme"
html_title = "PyTorch, from a statistics point of view"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_copy_source = True
html_sourcelink_suffix = ""  # the download button then serves the .ipynb itself
html_last_updated_fmt = None
# A first visit has no stored mode: start from the reader's system setting (without it,
# the theme logs "Got invalid theme mode" on every first page view).
html_context = {"default_mode": "auto"}
html_favicon = "_static/favicon.svg"
html_theme_options = {
    "repository_url": repository_url(),
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

# Search in English and Chinese: Sphinx's Chinese splitter (jieba) also indexes the Latin
# words; the dictionary adds the glossary's Chinese terms (反向传播, ...) as single words.
html_search_language = "zh"
_dict = os.environ.get("COURSE_SITE_ZH_DICT", "")
html_search_options = {"dict": _dict}  # "" loads no extra dictionary (not the default one again)

try:  # jieba announces its dictionary on stderr at every build
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
except ImportError:
    pass

# Sphinx 9.0's language_data.js ends with `window.Stemmer = ChineseStemmer` (the language's
# name + "Stemmer"), but the Chinese search ships the English stemmer, so every page logs
# "ChineseStemmer is not defined" and the search breaks. Name the stemmer after the code
# that is shipped.
from sphinx import search as _search  # noqa: E402
from sphinx.search.zh import SearchChinese as _SearchChinese  # noqa: E402

if _SearchChinese.js_stemmer_rawcode == "english-stemmer.js":

    class _CourseSearchChinese(_SearchChinese):
        language_name = "English"

    _search.languages["zh"] = _CourseSearchChinese
