"""Every data file the course uses: where it comes from, its checksum, and a loader.

Files are downloaded once into a cache folder and verified before anything reads them:

* the cache is ``$COURSE_DATA_DIR`` if that is set, otherwise the repository's
  ``data/`` folder (in a checkout), otherwise a per-user cache folder (Colab, or a
  non-editable install); a read-only folder works as long as it holds every file;
* the files come from their original hosts (the names files from pinned commits,
  MNIST from torchvision's MNIST mirrors), or, if ``$COURSE_DATA_MIRROR`` is set, from
  that one mirror for every file, MNIST included, laid out like the cache, e.g.
  ``https://example.org/course-data/MNIST/raw/t10k-images-idx3-ubyte``.

Nothing here trusts bytes it has not verified: a cached file that is damaged (wrong
size, bad header, wrong SHA-256) raises :class:`DataIntegrityError`, is deleted and is
downloaded afresh on the next call; a download that fails verification is never kept.

From the command line (``make data`` runs the first)::

    python -m utils.data              # download what is missing, verify all, print a table
    python -m utils.data mirror DIR   # a verified copy of every file, for a mirror or a USB stick
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
import sys
import tempfile
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ALL_FILES",
    "MNIST_FILES",
    "REGISTRY",
    "DataError",
    "DataIntegrityError",
    "DataUnavailableError",
    "UnknownDatasetError",
    "cache_dir",
    "fetch",
    "fetch_all",
    "mirror",
    "sha256",
    "load_mnist",
    "load_mnist_split",
    "load_chinese_names",
    "load_foreign_names",
    "load_english_names",
    "sample_image",
]

# `python -m utils.data` runs this module while the package has already imported it;
# runpy's warning about that is noise here (main() uses the package's module).
warnings.filterwarnings("ignore", r"'utils\.data' found in sys\.modules", RuntimeWarning)

DATA_DIR_ENV = "COURSE_DATA_DIR"
MIRROR_ENV = "COURSE_DATA_MIRROR"
TIMEOUT = (15, 60)  # seconds: to connect, and between two received chunks


# --------------------------------------------------------------------------- errors
class DataError(RuntimeError):
    """Base class of every data problem; the message always says what to do."""


class UnknownDatasetError(DataError, KeyError):
    def __str__(self) -> str:  # KeyError would print the message with quotes
        return self.args[0]


class DataIntegrityError(DataError):
    """A file's bytes are not the ones the course was written for."""


class DataUnavailableError(DataError):
    """No verified copy in the cache, and the download failed."""


# ------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class IdxFormat:
    """The layout of an MNIST IDX file: every header byte is checked, then the size."""

    magic: int  # 2051 for images, 2049 for labels
    dims: tuple[int, ...]  # the shape of one record: (28, 28) or ()
    counts: tuple[int, ...]  # the record counts a genuine copy may hold
    pinned: int | None = None  # the SHA-256 covers only the first `pinned` records

    @property
    def header(self) -> int:
        return 8 + 4 * len(self.dims)

    @property
    def record(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the cache folder (and to a mirror)
    url: str  # the canonical source (for MNIST: the .gz on torchvision's first mirror)
    sha256: str
    licence: str
    description: str
    size: int | None = None  # bytes; None where it depends on the copy (see idx.counts)
    idx: IdxFormat | None = None  # MNIST only


_GH = "https://raw.githubusercontent.com"
REGISTRY: dict[str, DataFile] = {
    "chinese_names": DataFile(
        "names/Chinese_Celebrities_Names.csv",
        f"{_GH}/FulangChen/Predict-Gender-from-Mandarin-Names/"
        "48b02b582dd440241abb0f2d442b9a806a446e6d/Chinese_Celebrities_Names.csv",
        "49e9f4005325592f34616652afcbfacc1645075a64b74d4e961de9200082a057",
        "none stated; names of public figures (download, do not redistribute)",
        "25,856 Chinese full names with gender (lecture 08)",
        size=1_980_570,
    ),
    "foreign_names": DataFile(
        "names/nrf.txt",
        f"{_GH}/hankcs/HanLP/c31b02a42da9d1a3f465360e48ad63d5793538d3/"
        "data/dictionary/person/nrf.txt",
        "c96e174c399a34caf70ecd16d01880ce3e3b603ef8dc2cddbbc7f092ad0e7024",
        "Apache-2.0",
        "14,678 transliterated foreign names, 音译人名 (lecture 09)",
        size=161_155,
    ),
    "english_names": DataFile(
        "names/names.txt",
        f"{_GH}/karpathy/makemore/988aa59e4d8fefa526d06f3b453ad116258398d4/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
        "MIT",
        "32,033 English first names from makemore (lectures 09, 10)",
        size=228_145,
    ),
}

# MNIST: the four decompressed IDX files, where torchvision keeps them. The test files
# are pinned whole by SHA-256. The training files are pinned on their *first 19,690*
# records (header excluded), the part of the training set the course uses; a genuine
# copy holds 60,000 records (the official file, whose .gz torchvision's MD5 pins at
# download time) or exactly those 19,690 (an offline copy such as CI's).
MNIST_VERIFIED_TRAIN = 19_690
_TV_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_MNIST_LICENCE = "CC BY-SA 3.0"
MNIST_FILES: dict[str, DataFile] = {
    "mnist_train_images": DataFile(
        "MNIST/raw/train-images-idx3-ubyte",
        _TV_MNIST + "train-images-idx3-ubyte.gz",
        "a5c8ade7e41e70d562178a52f70f44d638fcf70a416dcd4a33fac1e001d3f72d",
        _MNIST_LICENCE,
        "MNIST training images (lectures 05-07, 11)",
        idx=IdxFormat(2051, (28, 28), (60_000, MNIST_VERIFIED_TRAIN), MNIST_VERIFIED_TRAIN),
    ),
    "mnist_train_labels": DataFile(
        "MNIST/raw/train-labels-idx1-ubyte",
        _TV_MNIST + "train-labels-idx1-ubyte.gz",
        "bc4c67195ecc398fd045bbdb497ccd8ca465880aa069b0ca78c61db547b0e65f",
        _MNIST_LICENCE,
        "MNIST training labels",
        idx=IdxFormat(2049, (), (60_000, MNIST_VERIFIED_TRAIN), MNIST_VERIFIED_TRAIN),
    ),
    "mnist_test_images": DataFile(
        "MNIST/raw/t10k-images-idx3-ubyte",
        _TV_MNIST + "t10k-images-idx3-ubyte.gz",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        _MNIST_LICENCE,
        "MNIST test images",
        size=7_840_016,
        idx=IdxFormat(2051, (28, 28), (10_000,)),
    ),
    "mnist_test_labels": DataFile(
        "MNIST/raw/t10k-labels-idx1-ubyte",
        _TV_MNIST + "t10k-labels-idx1-ubyte.gz",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        _MNIST_LICENCE,
        "MNIST test labels",
        size=10_008,
        idx=IdxFormat(2049, (), (10_000,)),
    ),
}
ALL_FILES: dict[str, DataFile] = {**REGISTRY, **MNIST_FILES}


# ---------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """The folder that holds (or will hold) the course's data files."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "notebooks").is_dir():
        return repo / "data"  # an editable install inside a checkout
    return Path(_pooch().os_cache("pytorch-stats-course"))


def _pooch():
    """Import pooch quietly: it imports tqdm.auto, which warns in Jupyter without ipywidgets."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import pooch
    return pooch


def sha256(path: str | os.PathLike, *, limit: int | None = None, offset: int = 0) -> str:
    """SHA-256 of a file (or of ``limit`` bytes of it starting at ``offset``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = limit
        while True:
            chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining == 0:
                    break
    return h.hexdigest()


def _entry(name: str) -> DataFile:
    if name in ALL_FILES:
        return ALL_FILES[name]
    known = ", ".join(ALL_FILES)
    raise UnknownDatasetError(
        f"Unknown data file {name!r}. Known data files: {known} "
        "(MNIST is read with load_mnist() or load_mnist_split())."
    )


def _name(entry: DataFile) -> str:
    return next(k for k, v in ALL_FILES.items() if v == entry)


# --------------------------------------------------------------------- verification
_verified: dict[str, tuple] = {}  # path -> (size, mtime, inode) of a copy verified here


def _problem(path: Path, entry: DataFile) -> str | None:
    """What is wrong with the file at ``path`` (``None``: it is the right file). Reads only."""
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    if _verified.get(str(path)) == stamp:
        return None
    size, idx, pinned = st.st_size, entry.idx, ""
    offset, limit = 0, None
    if idx is not None:
        with open(path, "rb") as f:
            head = f.read(idx.header)
        if len(head) < idx.header:
            return f"truncated: {size:,} bytes, not even an MNIST header"
        magic, count, *dims = struct.unpack(f">{2 + len(idx.dims)}I", head)
        if magic != idx.magic:
            return f"bad header: magic number {magic} instead of {idx.magic}"
        if count not in idx.counts:
            allowed = " or ".join(f"{c:,}" for c in idx.counts)
            return f"bad header: it claims {count:,} records, a genuine copy holds {allowed}"
        if tuple(dims) != idx.dims:
            return f"bad header: records of shape {tuple(dims)} instead of {idx.dims}"
        expected_size = idx.header + count * idx.record
        if idx.pinned:
            offset, limit = idx.header, idx.pinned * idx.record
            pinned = f" of the first {idx.pinned:,} records"
    else:
        expected_size = entry.size
    if expected_size is not None and size != expected_size:
        kind = "truncated" if size < expected_size else "wrong size"
        return f"{kind}: {size:,} bytes instead of {expected_size:,}"
    actual = sha256(path, offset=offset, limit=limit)
    if actual != entry.sha256:
        return (
            f"wrong checksum{pinned}:\n  expected SHA-256: {entry.sha256}\n"
            f"  actual SHA-256:   {actual}"
        )
    _verified[str(path)] = stamp
    return None


def _damaged(path: Path, entry: DataFile, problem: str) -> DataIntegrityError:
    """Delete a damaged cached file (if the folder allows) and say so."""
    _verified.pop(str(path), None)
    try:
        path.unlink()
        action = (
            "It was deleted; the next call downloads it afresh from\n"
            f"  {_sources(entry)[0][0]}"
        )
    except OSError as e:
        action = (
            f"It could not be deleted ({e.strerror}): replace it with a good copy "
            "(see data/README.md)"
        )
    return DataIntegrityError(
        f"The data file {path} is damaged, not the file the course was written for "
        f"({problem}).\n{action}"
    )


# ------------------------------------------------------------------------ downloads
def _sources(entry: DataFile) -> list[tuple[str, str | None]]:
    """Where ``entry`` can be downloaded from, in order: ``(url, md5 of a .gz or None)``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:  # one mirror for every file, laid out like the cache, nothing compressed
        return [(f"{mirror.rstrip('/')}/{entry.path}", None)]
    if entry.idx is None:
        return [(entry.url, None)]
    from torchvision.datasets import MNIST  # its mirror list and MD5s of the official .gz

    gz = Path(entry.path).name + ".gz"
    md5 = dict(MNIST.resources).get(gz, "")
    return [(f"{base}{gz}", md5) for base in MNIST.mirrors]


def _reason(e: BaseException) -> str:
    """A one-line reason for a failed download (requests' messages nest three deep)."""
    response = getattr(e, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    text = str(e)
    caused = re.search(r"Caused by \w+\((?:.*?\): )?(.*?)['\"]?\)+$", text)
    if caused:
        text = caused.group(1).strip("'\"")
    if len(text) > 160:
        text = text[:160] + "..."
    return f"{type(e).__name__}: {text}"


def _download(entry: DataFile, url: str, md5: str | None, dest: Path, progress: bool) -> None:
    """Download ``url`` into ``dest`` through a temporary file; keep it only if verified.

    A progress bar appears only once the server has answered with the file, and a
    download that fails (or fails verification) leaves no progress line and no file.
    """
    import requests

    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp, bar = Path(name), None
    try:
        with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=TIMEOUT) as r:
            r.raise_for_status()
            if progress:
                from .training import progress_bar

                total = int(r.headers.get("Content-Length") or 0) or None
                bar = progress_bar(
                    desc=f"download {dest.name}", total=total, unit="B", unit_scale=True
                )
            for chunk in r.iter_content(chunk_size=1 << 16):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if md5 is not None:  # a .gz from torchvision's mirrors
            if md5 and hashlib.md5(tmp.read_bytes()).hexdigest() != md5:
                raise DataIntegrityError(
                    f"The file downloaded from {url} is not the official one (its MD5 is "
                    f"not torchvision's {md5}) and was deleted. Try again later."
                )
            with gzip.open(tmp, "rb") as src, open(name + ".raw", "wb") as raw:
                shutil.copyfileobj(src, raw, 1 << 20)
            os.replace(name + ".raw", tmp)
        problem = _problem(tmp, entry)
        if problem is not None:
            raise DataIntegrityError(
                f"The file downloaded from {url} is not the expected one and was deleted "
                f"({problem}).\nThe source may have changed or the download was corrupted. "
                "Try again; if it persists, download the file by hand from the URL above, "
                f"check its SHA-256, and save it as {dest}."
            )
        os.replace(tmp, dest)
    except BaseException:
        if bar is not None:  # close without printing a finished bar
            bar.leave = False
            bar.close()
        tmp.unlink(missing_ok=True)
        Path(name + ".raw").unlink(missing_ok=True)
        raise
    if bar is not None:
        bar.close()


def _ways_out(entry: DataFile, path: Path) -> str:
    unzip = ", decompressed (gunzip)," if entry.idx is not None else ""
    return (
        "Three ways out:\n"
        "  1. Network: connect to the internet (or set HTTPS_PROXY) and run again.\n"
        f"  2. A mirror: set {MIRROR_ENV} to a data mirror (your instructor's), e.g.\n"
        f"       export {MIRROR_ENV}=https://your-school.example/course-data\n"
        f"  3. A folder: set {DATA_DIR_ENV} to a folder that holds the course's data (a copy\n"
        "     made with `python -m utils.data mirror DIR`, e.g. on a USB stick), or save\n"
        f"     the file by hand from\n       {entry.url}\n     {unzip.strip(', ')}"
        f"{' ' if unzip else ''}as\n       {path}"
    )


def _ensure(entry: DataFile, progress: bool = True) -> tuple[Path, str]:
    """The path of a verified copy of ``entry`` and ``"cached"`` or ``"downloaded"``."""
    path = cache_dir() / entry.path
    if path.is_file():
        problem = _problem(path, entry)
        if problem is None:
            return path, "cached"
        raise _damaged(path, entry, problem)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe, probe_name = tempfile.mkstemp(prefix=".write-test.", dir=path.parent)
        os.close(probe)
        os.unlink(probe_name)
    except OSError as e:
        raise DataUnavailableError(
            f"The data file {entry.path} ({_name(entry)}) is missing from the data folder "
            f"{cache_dir()},\nwhich cannot be written to ({e.strerror}).\n"
            + _ways_out(entry, path)
        ) from None
    failures = []
    for url, md5 in _sources(entry):
        try:
            _download(entry, url, md5, path, progress)
            return path, "downloaded"
        except OSError as e:  # requests' errors are OSErrors too
            failures.append(f"  tried {url}\n    ({_reason(e)})")
    raise DataUnavailableError(
        f"Could not download the data file {entry.path} ({_name(entry)}),\n"
        + "\n".join(failures)
        + f"\nand there is no copy of it in the data folder {cache_dir()}.\n"
        + _ways_out(entry, path)
    )


def fetch(name: str, *, progress: bool = True) -> Path:
    """Return the path of a verified local copy of data file ``name``.

    Uses the cached copy when it verifies; downloads a missing file (with a progress
    bar) and verifies it. A damaged cached file raises :class:`DataIntegrityError` and
    is deleted, so the next call downloads it afresh; a failed download raises
    :class:`DataUnavailableError` that says which file, from where, and what to do.
    """
    return _ensure(_entry(name), progress)[0]


# ---------------------------------------------------------------------------- names
def load_chinese_names():
    """The name → gender table (pandas DataFrame; columns include 姓名 and 性别)."""
    import pandas as pd

    return pd.read_csv(fetch("chinese_names"), encoding="utf-8")


def _lines(name: str) -> list[str]:
    text = fetch(name).read_text(encoding="utf-8")
    return [w.strip() for w in text.splitlines() if w.strip()]


def load_foreign_names() -> list[str]:
    """Transliterated foreign names (音译人名), one string per name, file order."""
    return _lines("foreign_names")


def load_english_names() -> list[str]:
    """The 32,033 lowercase English first names of makemore, file order."""
    return _lines("english_names")


# ---------------------------------------------------------------------------- MNIST
def _idx_count(path: Path) -> int:
    with open(path, "rb") as f:
        return struct.unpack(">I", f.read(8)[4:])[0]


def load_mnist(train: bool = True, n: int | None = None):
    """The first ``n`` MNIST images (all if ``None``) as tensors.

    Returns ``(images, labels)``: float32 images in [0, 1] of shape ``[n, 1, 28, 28]``
    and int64 labels of shape ``[n]``. The IDX files are fetched and verified like
    every data file (from torchvision's MNIST mirrors, or ``$COURSE_DATA_MIRROR``).
    The course trains on the first 10,000 (at most 19,690) training images and tests
    on all 10,000 test images.
    """
    import torch

    part = "train" if train else "test"
    images_path, labels_path = fetch(f"mnist_{part}_images"), fetch(f"mnist_{part}_labels")
    total = _idx_count(images_path)
    if _idx_count(labels_path) != total:
        raise DataIntegrityError(
            f"{images_path} holds {total:,} images but {labels_path} holds "
            f"{_idx_count(labels_path):,} labels: the two come from different copies. "
            "Delete both and run again."
        )
    n = total if n is None else int(n)
    if not 0 < n <= total:
        raise ValueError(f"n must be between 1 and {total:,}, got {n}.")
    if train and n > MNIST_VERIFIED_TRAIN:
        warnings.warn(
            f"Only the first {MNIST_VERIFIED_TRAIN:,} training images are pinned by "
            "SHA-256; the rest were checked by torchvision's MD5 at download time.",
            stacklevel=2,
        )
    images = np.fromfile(images_path, dtype=np.uint8, count=n * 784, offset=16)
    labels = np.fromfile(labels_path, dtype=np.uint8, count=n, offset=8)
    images = torch.from_numpy(images.reshape(n, 1, 28, 28)).to(torch.float32).div_(255.0)
    return images, torch.from_numpy(labels.astype(np.int64))


# The course's one MNIST split, shared by every lecture that trains on MNIST (05, 06, 07,
# 11) so that the same model gives the same numbers everywhere. Choices (epochs, learning
# rates, architectures, ...) are made on "val"; "test" is evaluated once, at the end.
MNIST_TRAIN_POOL = 14_690  # training images 0 ... 14,689 may be trained on
MNIST_VAL = (14_690, 19_690)  # training images 14,690 ... 19,689: the validation split


def load_mnist_split(split: str, n: int | None = None):
    """One split of the course's MNIST split, as ``(images, labels)`` like :func:`load_mnist`.

    - ``"train"``: the first ``n`` training images (default: the course's 10,000; at most
      14,690, the training pool);
    - ``"val"``: the 5,000 training images 14,690 ... 19,689, never trained on; every
      choice is made on them;
    - ``"test"``: all 10,000 official test images, evaluated once per final model.
    """
    if split == "train":
        n = 10_000 if n is None else int(n)
        if not 0 < n <= MNIST_TRAIN_POOL:
            raise ValueError(f"train: n must be between 1 and {MNIST_TRAIN_POOL:,}, got {n}")
        return load_mnist(train=True, n=n)
    if split == "val":
        if n is not None:
            raise ValueError("val: the validation split is always all 5,000 images")
        images, labels = load_mnist(train=True, n=MNIST_VAL[1])
        return images[MNIST_VAL[0]:].clone(), labels[MNIST_VAL[0]:].clone()
    if split == "test":
        if n is not None:
            raise ValueError("test: the test split is always all 10,000 images")
        return load_mnist(train=False)
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")


# --------------------------------------------------------------------------- images
_SAMPLE_IMAGES = {"grace_hopper": "grace_hopper.jpg", "logo": "logo2.png"}


def sample_image(name: str = "grace_hopper") -> np.ndarray:
    """A real image shipped with matplotlib, as float64 in [0, 1], shape (H, W, C)."""
    import matplotlib.cbook as cbook
    import matplotlib.pyplot as plt

    if name not in _SAMPLE_IMAGES:
        raise UnknownDatasetError(
            f"Unknown sample image {name!r}. Known: {', '.join(sorted(_SAMPLE_IMAGES))}."
        )
    with cbook.get_sample_data(_SAMPLE_IMAGES[name]) as f:
        img = plt.imread(f, format=_SAMPLE_IMAGES[name].rsplit(".", 1)[1])
    img = np.asarray(img, dtype=np.float64)
    return img / 255.0 if img.max() > 1.0 else img


# ------------------------------------------------------------ every file at once: CLI
def _fetch_verified(entry: DataFile, progress: bool) -> tuple[Path, str]:
    """Like ``_ensure``, but a damaged cached file is reported and fetched again at once."""
    try:
        return _ensure(entry, progress)
    except DataIntegrityError as e:
        if (cache_dir() / entry.path).exists():
            raise  # could not be deleted
        print(f"{e}\n", file=sys.stderr, flush=True)
        path, _ = _ensure(entry, progress)
        return path, "downloaded again"


def _row(path: Path, entry: DataFile, status: str) -> tuple[str, str, str, str]:
    size = path.stat().st_size
    ok = "OK" if entry.idx is None or not entry.idx.pinned else (
        f"OK (first {entry.idx.pinned:,})"
    )
    return entry.path, f"{size / 1e6:.2f} MB", ok, status


def fetch_all(*, progress: bool = True) -> list[tuple[str, str, str, str]]:
    """Fetch and verify every data file (MNIST included); one row per file.

    On the first file that cannot be had, raises :class:`DataUnavailableError` whose
    message also lists the other files missing from the cache.
    """
    rows = []
    for key, entry in ALL_FILES.items():
        try:
            path, status = _fetch_verified(entry, progress)
        except DataUnavailableError as e:
            others = [
                e2.path for k2, e2 in ALL_FILES.items()
                if k2 != key and not (cache_dir() / e2.path).is_file()
            ]
            if others:
                also = textwrap.fill(
                    "Also missing from the data folder: " + ", ".join(others),
                    width=88,
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                )
                e.args = (f"{e}\n{also}",)
            raise
        rows.append(_row(path, entry, status))
    return rows


_MIRROR_README = """\
A verified copy of every data file of the course, written by `python -m utils.data mirror`.

Use it in one of two ways:
- serve this folder over HTTP (e.g. `python -m http.server 8000` in it, or any web
  server) and let students set COURSE_DATA_MIRROR=http://<host>:8000 (the URL of this
  folder); every file, MNIST included, then downloads from here and is verified;
- or copy it (e.g. from a USB stick) and set COURSE_DATA_DIR=/path/to/this/folder.

SHA256SUMS lists every file's SHA-256 (check with `sha256sum -c SHA256SUMS`).
"""


def mirror(dest: str | os.PathLike, *, progress: bool = True) -> list[tuple[str, str, str, str]]:
    """Write a verified copy of every data file into ``dest``, laid out like the cache.

    The folder can be served as ``$COURSE_DATA_MIRROR`` or used as ``$COURSE_DATA_DIR``.
    Files missing from the cache are downloaded first; each copy is verified again.
    """
    dest = Path(dest).expanduser().resolve()
    if dest == cache_dir():
        raise DataError(f"{dest} is the data folder itself; choose another folder.")
    rows, sums = [], []
    for entry in ALL_FILES.values():
        src, _ = _fetch_verified(entry, progress)
        target = dest / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(src, tmp)
        problem = _problem(tmp, entry)
        if problem is not None:
            tmp.unlink()
            raise DataIntegrityError(f"The copy {target} differs from {src} ({problem}).")
        os.replace(tmp, target)
        rows.append(_row(target, entry, "copied"))
        sums.append(f"{sha256(target)}  {entry.path}\n")
    (dest / "SHA256SUMS").write_text("".join(sums))
    (dest / "README.txt").write_text(_MIRROR_README)
    return rows


def _print_table(rows, title: str) -> None:
    header = ("file", "size", "SHA-256", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(title)
    for r in [header, *rows]:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m utils.data",
        description="Download (if missing) and verify every data file of the course.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("fetch", help="download what is missing and verify all (the default)")
    m = sub.add_parser("mirror", help="write a verified copy of every file into DIR")
    m.add_argument("dir", help="the folder to write (created if needed)")
    args = parser.parse_args(argv)
    try:
        if args.command == "mirror":
            rows = mirror(args.dir)
            _print_table(rows, f"Mirror written to {Path(args.dir).resolve()}:")
            print(
                f"Serve it and set {MIRROR_ENV}=<its URL>, or copy it and set "
                f"{DATA_DIR_ENV}=<the folder>."
            )
        else:
            rows = fetch_all()
            _print_table(rows, f"Data folder {cache_dir()}:")
            print(f"All {len(rows)} data files are present and verified.")
    except DataError as e:
        print(f"\n{e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    from utils.data import main as _main  # the package's module, not a second copy

    sys.exit(_main())
