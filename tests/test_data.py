"""The data layer: registry, cache, verification and every error path.

End-to-end download tests run against a real HTTP server on 127.0.0.1 that serves a
folder laid out like the cache (the files come from the verified cache itself, so in
CI from ../shared/data and elsewhere from a real download).
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import utils
from localserver import LocalServer
from utils import data

NAMES = ["chinese_names", "foreign_names", "english_names"]


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def server(source_dir):
    s = LocalServer(source_dir)
    yield s
    s.stop()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("COURSE_DATA_DIR", str(cache))
    return cache


# ------------------------------------------------------------------------------ registry
def test_registry_pins_every_names_file_by_url_and_sha256():
    assert sorted(data.REGISTRY) == sorted(NAMES)
    for entry in data.REGISTRY.values():
        assert entry.url.startswith("https://")
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.licence and entry.description


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(utils.UnknownDatasetError) as err:
        utils.fetch("mnist_fashion")
    message = str(err.value)
    assert "mnist_fashion" in message
    for name in NAMES:
        assert name in message
    with pytest.raises(utils.UnknownDatasetError, match="grace_hopper"):
        utils.sample_image("lena")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert utils.cache_dir() == tmp_path.resolve()
    monkeypatch.delenv("COURSE_DATA_DIR")
    repo = Path(__file__).resolve().parent.parent
    assert utils.cache_dir() == repo / "data"


def test_sha256_of_a_slice(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"header" + b"payload" + b"rest")
    assert data.sha256(f) == hashlib.sha256(b"headerpayloadrest").hexdigest()
    assert data.sha256(f, offset=6, limit=7) == hashlib.sha256(b"payload").hexdigest()


# ------------------------------------------------------------------- download end to end
def test_download_verifies_and_caches(server, empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    path = utils.fetch("english_names")
    assert path == empty_cache / "names" / "names.txt"
    assert data.sha256(path) == data.REGISTRY["english_names"].sha256
    # the progress bar printed one plain line (tests run with COURSE_PLAIN_PROGRESS=1)
    out = capsys.readouterr().out
    assert "download names.txt" in out and "100%" in out
    # a second call uses the cache: no new request
    n_requests = len(server.requests)
    assert utils.fetch("english_names") == path
    assert len(server.requests) == n_requests
    words = utils.load_english_names()
    assert len(words) == 32_033 and words[:3] == ["emma", "olivia", "ava"]


def test_loaders_parse_every_file(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    table = utils.load_chinese_names()
    assert len(table) == 25_856
    assert table["性别"].value_counts().to_dict() == {"男": 12_928, "女": 12_928}
    foreign = utils.load_foreign_names()
    assert len(foreign) == 14_678 and all(1 < len(n) for n in foreign)


def test_corrupt_download_is_refused_and_not_kept(server, source_dir, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    served = source_dir / "names" / "nrf.txt"
    original = served.read_bytes()
    served.write_bytes(original[:-10] + b"corrupted!")
    try:
        with pytest.raises(utils.DataIntegrityError) as err:
            utils.fetch("foreign_names", progress=False)
    finally:
        served.write_bytes(original)
    message = str(err.value)
    assert f"{server.url}/names/nrf.txt" in message
    assert data.REGISTRY["foreign_names"].sha256 in message
    assert hashlib.sha256(original[:-10] + b"corrupted!").hexdigest() in message
    assert not (empty_cache / "names" / "nrf.txt").exists()
    assert not list((empty_cache / "names").glob("*")), "no temporary file may be left"


def test_corrupt_cached_file_is_deleted_and_downloaded_again(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    bad = empty_cache / "names" / "names.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("not the names\n")
    with pytest.warns(UserWarning, match="Deleted .*names.txt.*SHA-256"):
        path = utils.fetch("english_names", progress=False)
    assert data.sha256(path) == data.REGISTRY["english_names"].sha256


def test_server_gone_without_cache_says_what_to_do(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    server.stop()
    with pytest.raises(utils.DataUnavailableError) as err:
        utils.fetch("chinese_names", progress=False)
    message = str(err.value)
    entry = data.REGISTRY["chinese_names"]
    assert "chinese_names" in message
    assert f"{server.url}/{entry.path}" in message  # where it tried
    assert entry.url in message  # where to get it by hand
    assert str(empty_cache / entry.path) in message  # where to put it
    assert not (empty_cache / entry.path).exists()


def test_server_gone_with_verified_cache_works_offline(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    path = utils.fetch("foreign_names", progress=False)
    server.stop()
    assert utils.fetch("foreign_names", progress=False) == path


def test_missing_file_on_server_is_a_clear_error(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url + "/no-such-folder")
    with pytest.raises(utils.DataUnavailableError, match="404"):
        utils.fetch("english_names", progress=False)


# ----------------------------------------------------------------------------------- MNIST
@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory) -> Path:
    """A writable copy of the verified MNIST cache (so tests may corrupt it)."""
    utils.load_mnist(train=False, n=1)  # make sure a verified copy exists (download if needed)
    utils.load_mnist(train=True, n=1)
    root = tmp_path_factory.mktemp("mnist_cache")
    shutil.copytree(utils.cache_dir() / "MNIST" / "raw", root / "MNIST" / "raw")
    return root


def test_mnist_first_n_subsets(mnist_copy, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(mnist_copy))
    X, y = utils.load_mnist(train=True, n=10_000)
    assert X.shape == (10_000, 1, 28, 28) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert 0.0 <= X.min() and X.max() <= 1.0
    Xt, yt = utils.load_mnist(train=False)
    assert Xt.shape == (10_000, 1, 28, 28) and np.bincount(yt.numpy()).sum() == 10_000
    with pytest.raises(ValueError, match="between 1 and"):
        utils.load_mnist(train=False, n=10_001)


def test_mnist_corrupt_bytes_are_detected_and_deleted(mnist_copy, monkeypatch, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(mnist_copy, root)
    monkeypatch.setenv("COURSE_DATA_DIR", str(root))
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[16 + 784 * 5000 + 400] ^= 0xFF  # one pixel of image 5,000
    images.write_bytes(bytes(raw))
    with pytest.raises(utils.DataIntegrityError, match="expected SHA-256"):
        utils.load_mnist(train=True, n=100)
    assert not images.exists(), "the corrupt file must be deleted"


def test_mnist_missing_and_offline_says_where_to_put_files(empty_cache, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(utils.DataUnavailableError) as err:
            utils.load_mnist(train=False)
    assert str(empty_cache / "MNIST" / "raw") in str(err.value)


# ---------------------------------------------------------------------------- sample images
@pytest.mark.parametrize("name", ["grace_hopper", "logo"])
def test_sample_images_are_real_and_scaled(name):
    img = utils.sample_image(name)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.dtype == np.float64 and 0.0 <= img.min() and img.max() <= 1.0
    assert img.std() > 0.05  # a real picture, not a blank
