"""Every data file the course uses: where it comes from, its checksum, and a loader.

Files are downloaded once from their original source into a cache folder and
verified with SHA-256 before anything reads them:

* the cache is ``$COURSE_DATA_DIR`` if that is set, otherwise the repository's
  ``data/`` folder (in a checkout), otherwise a per-user cache folder (Colab, or a
  non-editable install);
* ``$COURSE_DATA_MIRROR`` (optional) replaces the original hosts with a mirror that
  has the same folder layout as the cache, e.g. ``https://example.org/course-data``.

Nothing here trusts bytes it has not verified: a cached file with the wrong checksum
is deleted and downloaded again, a download with the wrong checksum is never kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "REGISTRY",
    "DataError",
    "DataIntegrityError",
    "DataUnavailableError",
    "UnknownDatasetError",
    "cache_dir",
    "fetch",
    "sha256",
    "load_mnist",
    "load_mnist_split",
    "load_chinese_names",
    "load_foreign_names",
    "load_english_names",
    "sample_image",
]

DATA_DIR_ENV = "COURSE_DATA_DIR"
MIRROR_ENV = "COURSE_DATA_MIRROR"


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
class DataFile:
    path: str  # relative to the cache folder (and to a mirror)
    url: str  # the canonical source
    sha256: str
    licence: str
    description: str


_GH = "https://raw.githubusercontent.com"
REGISTRY: dict[str, DataFile] = {
    "chinese_names": DataFile(
        "names/Chinese_Celebrities_Names.csv",
        f"{_GH}/FulangChen/Predict-Gender-from-Mandarin-Names/"
        "48b02b582dd440241abb0f2d442b9a806a446e6d/Chinese_Celebrities_Names.csv",
        "49e9f4005325592f34616652afcbfacc1645075a64b74d4e961de9200082a057",
        "none stated; names of public figures (download, do not redistribute)",
        "25,856 Chinese full names with gender (lecture 08)",
    ),
    "foreign_names": DataFile(
        "names/nrf.txt",
        f"{_GH}/hankcs/HanLP/c31b02a42da9d1a3f465360e48ad63d5793538d3/"
        "data/dictionary/person/nrf.txt",
        "c96e174c399a34caf70ecd16d01880ce3e3b603ef8dc2cddbbc7f092ad0e7024",
        "Apache-2.0",
        "14,678 transliterated foreign names, 音译人名 (lecture 09)",
    ),
    "english_names": DataFile(
        "names/names.txt",
        f"{_GH}/karpathy/makemore/988aa59e4d8fefa526d06f3b453ad116258398d4/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
        "MIT",
        "32,033 English first names from makemore (lectures 09, 10)",
    ),
}

# MNIST comes through torchvision (which MD5-checks its downloads); we pin SHA-256s of
# the decompressed test files and of the *first 19,690* training images and labels,
# the part of the training set the course trains on (identical in the full file).
MNIST_VERIFIED_TRAIN = 19_690
_MNIST_TEST_SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_MNIST_TRAIN_PREFIX_SHA256 = {  # sha256 of the first 19,690 records, header excluded
    "train-images-idx3-ubyte": "a5c8ade7e41e70d562178a52f70f44d638fcf70a416dcd4a33fac1e001d3f72d",
    "train-labels-idx1-ubyte": "bc4c67195ecc398fd045bbdb497ccd8ca465880aa069b0ca78c61db547b0e65f",
}
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's first mirror)"


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
    if name in REGISTRY:
        return REGISTRY[name]
    known = ", ".join(sorted(REGISTRY)) + ", and MNIST via load_mnist()"
    raise UnknownDatasetError(f"Unknown data file {name!r}. Known data files: {known}.")


def _url(entry: DataFile) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{entry.path}" if mirror else entry.url


def fetch(name: str, *, progress: bool = True) -> Path:
    """Return the path of a verified local copy of data file ``name``.

    Uses the cached copy when its SHA-256 is right; otherwise downloads it (with a
    progress bar) and verifies it. Raises a :class:`DataError` that says what to do.
    """
    import requests

    pooch = _pooch()
    entry = _entry(name)
    path = cache_dir() / entry.path
    url = _url(entry)
    if path.exists():
        actual = sha256(path)
        if actual == entry.sha256:
            return path
        path.unlink()
        warnings.warn(
            f"Deleted {path}: its SHA-256 {actual} is not the expected {entry.sha256}. "
            f"Downloading it again from {url}.",
            stacklevel=2,
        )
    pooch.get_logger().setLevel(logging.WARNING)  # no "Downloading ..." chatter
    if progress:
        from .training import progress_bar

        bar = progress_bar(
            desc=f"download {Path(entry.path).name}", total=1, unit="B", unit_scale=True
        )
    else:
        bar = False
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{entry.sha256}",
            fname=path.name,
            path=path.parent,
            progressbar=bar,
        )
    except ValueError as e:  # pooch: hash mismatch; the bad download was not kept
        _discard(bar)
        hashes = re.findall(r"\b[0-9a-f]{64}\b", str(e))
        actual = next((h for h in hashes if h != entry.sha256), "unknown")
        raise DataIntegrityError(
            f"The file downloaded from {url} is not the expected one and was deleted.\n"
            f"  expected SHA-256: {entry.sha256}\n  actual SHA-256:   {actual}\n"
            "The source may have changed or the download was corrupted. Try again; if it "
            "persists, download the file by hand from the URL above, check its SHA-256, "
            f"and save it as {path}."
        ) from None
    except (requests.exceptions.RequestException, OSError) as e:
        _discard(bar)
        reason = str(e) if len(str(e)) < 200 else str(e)[:200] + "..."
        raise DataUnavailableError(
            f"Could not download {name!r} from {url}\n  ({type(e).__name__}: {reason})\n"
            f"and there is no cached copy at {path}.\n"
            f"Fix: connect to the internet and run again, or download the file by hand "
            f"from {entry.url} and save it as {path} (or point ${DATA_DIR_ENV} at a "
            f"folder that holds {entry.path})."
        ) from None
    return path


def _discard(bar) -> None:
    """Close a progress bar of a failed download without printing it as finished."""
    if bar:
        bar.leave = False
        bar.close()


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
def _check_idx(path: Path, magic: int, n_needed: int) -> int:
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or struct.unpack(">I", head[:4])[0] != magic:
        raise DataIntegrityError(
            f"{path} is not an MNIST IDX file. Delete the folder {path.parent} and run "
            "again to download MNIST afresh."
        )
    n = struct.unpack(">I", head[4:])[0]
    if n < n_needed:
        raise DataIntegrityError(f"{path} holds {n} records but {n_needed} were asked for.")
    return n


def _verify_mnist(raw: Path, train: bool, n: int) -> None:
    if train:
        checks = [
            ("train-images-idx3-ubyte", 2051, 16, 784),
            ("train-labels-idx1-ubyte", 2049, 8, 1),
        ]
        for fname, magic, header, size in checks:
            _check_idx(raw / fname, magic, n)
            actual = sha256(raw / fname, offset=header, limit=MNIST_VERIFIED_TRAIN * size)
            if actual != _MNIST_TRAIN_PREFIX_SHA256[fname]:
                _bad_mnist(raw / fname, _MNIST_TRAIN_PREFIX_SHA256[fname], actual)
        if n > MNIST_VERIFIED_TRAIN:
            warnings.warn(
                f"Only the first {MNIST_VERIFIED_TRAIN:,} training images are pinned by "
                "SHA-256; the rest were checked by torchvision's MD5 at download time.",
                stacklevel=3,
            )
    else:
        for fname, expected in _MNIST_TEST_SHA256.items():
            actual = sha256(raw / fname)
            if actual != expected:
                _bad_mnist(raw / fname, expected, actual)


def _bad_mnist(path: Path, expected: str, actual: str) -> None:
    path.unlink(missing_ok=True)
    raise DataIntegrityError(
        f"Deleted {path}: it is not the official MNIST file.\n"
        f"  expected SHA-256: {expected}\n  actual SHA-256:   {actual}\n"
        "Run again to download it afresh from torchvision's MNIST mirrors."
    )


def load_mnist(train: bool = True, n: int | None = None):
    """The first ``n`` MNIST images (all if ``None``) as tensors.

    Returns ``(images, labels)``: float32 images in [0, 1] of shape ``[n, 1, 28, 28]``
    and int64 labels of shape ``[n]``. Goes through
    ``torchvision.datasets.MNIST(root=<cache>, download=True)`` and verifies the bytes.
    The course trains on the first 10,000 (at most 19,690) training images and tests
    on all 10,000 test images.
    """
    import torch
    from torchvision.datasets import MNIST

    root = cache_dir()
    try:
        ds = MNIST(root=str(root), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError/URLError on failed downloads
        raise DataUnavailableError(
            f"Could not load MNIST ({'train' if train else 'test'}) from {root / 'MNIST'}"
            f" nor download it ({type(e).__name__}: {e}).\n"
            f"Fix: connect to the internet and run again, or put the four decompressed "
            f"IDX files (train-images-idx3-ubyte, ...) from {_MNIST_URL} into "
            f"{root / 'MNIST' / 'raw'}."
        ) from e
    total = len(ds.targets)
    n = total if n is None else int(n)
    if not 0 < n <= total:
        raise ValueError(f"n must be between 1 and {total:,}, got {n}.")
    _verify_mnist(Path(ds.raw_folder), train, n)
    images = ds.data[:n].unsqueeze(1).to(torch.float32).div_(255.0)
    return images, ds.targets[:n].clone()


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
