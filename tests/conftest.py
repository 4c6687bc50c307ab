"""Shared test set-up: environment for notebook kernels, timing report per notebook."""

import os
from collections import defaultdict
from pathlib import Path

import pytest

# Kernels started by nbval inherit this environment. One thread per kernel (pytest-xdist
# runs two at a time on two cores), plain progress bars, a fixed hash seed.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("COURSE_PLAIN_PROGRESS", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

_durations: dict[str, float] = defaultdict(float)


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for a cell's output messages; a busy 2-core machine needs more.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _durations[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _durations:
        terminalreporter.section("notebook durations (setup + cells)")
        for path, seconds in sorted(_durations.items()):
            terminalreporter.write_line(f"{seconds:7.1f} s  {path}")


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory) -> Path:
    """A data mirror: verified copies of every data file (MNIST too), laid out like the cache.

    Served by a local HTTP server (``$COURSE_DATA_MIRROR``), it stands in for the
    original hosts. Written by ``utils.data.mirror`` from the verified cache (in CI the
    offline copy; elsewhere a real download).
    """
    from utils import data

    src = tmp_path_factory.mktemp("source")
    data.mirror(src, progress=False)
    return src
