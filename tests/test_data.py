"""The data layer: registry, cache, verification, mirrors and every error path.

End-to-end download tests run against a real HTTP server on 127.0.0.1 that serves a
folder laid out like the cache (the files come from the verified cache itself, so in
CI from ../shared/data and elsewhere from a real download). Nothing here reaches
another address: torchvision's MNIST mirrors are pointed at 127.0.0.1 where needed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import utils
from localserver import LocalServer
from utils import data

REPO = Path(__file__).resolve().parent.parent
NAMES = ["chinese_names", "foreign_names", "english_names"]
MNIST = ["mnist_train_images", "mnist_train_labels", "mnist_test_images", "mnist_test_labels"]
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def server(source_dir):
    s = LocalServer(source_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mirror_dir(source_dir) -> Path:
    """A mirror of every file, MNIST included, written by ``utils.data.mirror`` (conftest)."""
    for entry in data.ALL_FILES.values():
        assert data._problem(source_dir / entry.path, entry) is None
    return source_dir


@pytest.fixture
def mirror_server(mirror_dir):
    s = LocalServer(mirror_dir)
    yield s
    s.stop()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("COURSE_DATA_DIR", str(cache))
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    return cache


@pytest.fixture(autouse=True)
def no_real_mnist_hosts(monkeypatch):
    """torchvision's MNIST mirrors point nowhere unless a test serves them itself."""
    from torchvision.datasets import MNIST as TV

    monkeypatch.setattr(TV, "mirrors", [f"{DEAD}/"])


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _three_ways_out(message: str) -> None:
    assert "Three ways out" in message
    assert "internet" in message and "COURSE_DATA_MIRROR" in message
    assert "COURSE_DATA_DIR" in message and "python -m utils.data mirror" in message


# ------------------------------------------------------------------------------ registry
def test_registry_pins_every_file_by_url_and_sha256():
    assert sorted(data.REGISTRY) == sorted(NAMES)
    assert sorted(data.ALL_FILES) == sorted(NAMES + MNIST)
    for entry in data.ALL_FILES.values():
        assert entry.url.startswith("https://")
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.licence and entry.description
        assert entry.size or entry.idx.pinned == data.MNIST_VERIFIED_TRAIN


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(utils.UnknownDatasetError) as err:
        utils.fetch("mnist_fashion")
    message = str(err.value)
    assert "mnist_fashion" in message
    for name in NAMES + MNIST:
        assert name in message
    with pytest.raises(utils.UnknownDatasetError, match="grace_hopper"):
        utils.sample_image("lena")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert utils.cache_dir() == tmp_path.resolve()
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert utils.cache_dir() == REPO / "data"


def test_sha256_of_a_slice(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"header" + b"payload" + b"rest")
    assert data.sha256(f) == hashlib.sha256(b"headerpayloadrest").hexdigest()
    assert data.sha256(f, offset=6, limit=7) == hashlib.sha256(b"payload").hexdigest()


def test_verifying_a_complete_folder_writes_nothing(mirror_dir, tmp_path, monkeypatch):
    """CI's data folder is read-only: checking it must not create or touch any file."""
    folder = tmp_path / "complete"
    shutil.copytree(mirror_dir, folder)
    before = _tree(folder)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    monkeypatch.setenv("COURSE_DATA_MIRROR", DEAD)
    data._verified.clear()
    rows = data.fetch_all(progress=False)
    assert [r[3] for r in rows] == ["cached"] * len(data.ALL_FILES)
    utils.load_mnist_split("val")
    utils.load_english_names()
    assert _tree(folder) == before


# ------------------------------------------------------------------- download end to end
def test_download_verifies_and_caches(server, empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    path = utils.fetch("english_names")
    assert path == empty_cache / "names" / "names.txt"
    assert data.sha256(path) == data.REGISTRY["english_names"].sha256
    # the progress bar printed one plain line (tests run with COURSE_PLAIN_PROGRESS=1)
    out = capsys.readouterr().out
    assert out.count("download names.txt") == 1 and "100%" in out
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


def test_corrupt_download_is_refused_and_not_kept(
    server, source_dir, empty_cache, monkeypatch, capsys
):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    served = source_dir / "names" / "nrf.txt"
    original = served.read_bytes()
    served.write_bytes(original[:-10] + b"corrupted!")
    try:
        with pytest.raises(utils.DataIntegrityError) as err:
            utils.fetch("foreign_names")
    finally:
        served.write_bytes(original)
    message = str(err.value)
    assert f"{server.url}/names/nrf.txt" in message
    assert data.REGISTRY["foreign_names"].sha256 in message
    assert hashlib.sha256(original[:-10] + b"corrupted!").hexdigest() in message
    assert not (empty_cache / "names" / "nrf.txt").exists()
    assert not list((empty_cache / "names").glob("*")), "no temporary file may be left"
    assert capsys.readouterr().out == "", "no progress line for a refused download"


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
@pytest.mark.parametrize("name", NAMES)
def test_damaged_cached_names_file_is_named_deleted_and_fetched_again(
    name, damage, server, source_dir, empty_cache, monkeypatch
):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    entry = data.REGISTRY[name]
    good = (source_dir / entry.path).read_bytes()
    if damage == "truncated":
        bad = good[: len(good) // 2]
    else:  # same size, one byte changed
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x01
        bad = bytes(bad)
    cached = empty_cache / entry.path
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bad)
    with pytest.raises(utils.DataIntegrityError) as err:
        utils.fetch(name, progress=False)
    message = str(err.value)
    assert str(cached) in message and "damaged" in message
    assert ("truncated" in message) if damage == "truncated" else ("expected SHA-256" in message)
    assert not cached.exists(), "the damaged file must be deleted"
    assert utils.fetch(name, progress=False) == cached  # the next call downloads it afresh
    assert cached.read_bytes() == good


def test_server_gone_without_cache_says_what_to_do(server, empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    server.stop()
    with pytest.raises(utils.DataUnavailableError) as err:
        utils.fetch("chinese_names")
    message = str(err.value)
    entry = data.REGISTRY["chinese_names"]
    assert "chinese_names" in message and entry.path in message  # which file
    assert f"{server.url}/{entry.path}" in message  # where it tried
    assert entry.url in message  # where to get it by hand
    assert str(empty_cache / entry.path) in message  # where to put it
    _three_ways_out(message)
    assert not (empty_cache / entry.path).exists()
    assert capsys.readouterr().out == "", "no progress line for a failed download"


def test_server_gone_with_verified_cache_works_offline(server, empty_cache, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url)
    path = utils.fetch("foreign_names", progress=False)
    server.stop()
    assert utils.fetch("foreign_names", progress=False) == path


def test_missing_file_on_server_is_a_clear_error(server, empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_MIRROR", server.url + "/no-such-folder")
    with pytest.raises(utils.DataUnavailableError, match="HTTP 404"):
        utils.fetch("english_names")
    assert capsys.readouterr().out == "", "no progress line for a failed download"
    assert not list(empty_cache.rglob("*.part"))


def test_unwritable_data_folder_is_named(empty_cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.tempfile, "mkstemp", refuse)
    with pytest.raises(utils.DataUnavailableError) as err:
        utils.fetch("english_names", progress=False)
    assert "cannot be written to (Permission denied)" in str(err.value)
    _three_ways_out(str(err.value))


# ----------------------------------------------------------------------------------- MNIST
@pytest.fixture(scope="module")
def mnist_copy(mirror_dir) -> Path:
    """A verified MNIST cache that tests may copy and damage."""
    return mirror_dir


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
    # the same numbers as torchvision's own reader of the same files
    from torchvision.datasets import MNIST as TV

    ds = TV(root=str(mnist_copy), train=True, download=False)
    assert torch.equal(X, ds.data[:10_000].unsqueeze(1).float() / 255)
    assert torch.equal(y, ds.targets[:10_000])


def _damage(path: Path, how: str, header: int) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(raw[: header + (len(raw) - header) // 3]))
        return
    if how == "flipped byte":  # same size, inside the pinned records
        raw[header + min(len(raw) - header, 19_690 * (784 if header == 16 else 1)) // 2] ^= 0x01
    elif how == "bad header":  # same size: the record count says 70,000
        raw[4:8] = (70_000).to_bytes(4, "big")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("truncated", "truncated"),
        ("flipped byte", "expected SHA-256"),
        ("bad header", "bad header"),
    ],
)
@pytest.mark.parametrize("name", MNIST)
def test_damaged_mnist_file_is_named_deleted_and_fetched_again(
    name, how, says, mnist_copy, mirror_server, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "cache"
    shutil.copytree(mnist_copy / "MNIST", root / "MNIST")
    monkeypatch.setenv("COURSE_DATA_DIR", str(root))
    monkeypatch.setenv("COURSE_DATA_MIRROR", mirror_server.url)
    entry = data.MNIST_FILES[name]
    path = root / entry.path
    _damage(path, how, entry.idx.header)
    train = "train" in name
    with pytest.raises(utils.DataIntegrityError) as err:
        utils.load_mnist(train=train, n=100)
    message = str(err.value)
    assert str(path) in message and "damaged" in message and says in message
    assert "Could not download" not in message  # the file is blamed, not the network
    assert not path.exists(), "the damaged file must be deleted"
    capsys.readouterr()
    X, y = utils.load_mnist(train=train, n=100)  # the next call downloads it afresh
    assert X.shape == (100, 1, 28, 28) and len(y) == 100
    assert data.sha256(path) == data.sha256(mnist_copy / entry.path)
    assert capsys.readouterr().out.count("download ") == 1  # only the deleted file


def test_mnist_comes_from_the_course_mirror_when_one_is_set(
    mirror_server, empty_cache, monkeypatch
):
    monkeypatch.setenv("COURSE_DATA_MIRROR", mirror_server.url)
    X, y = utils.load_mnist_split("val")
    assert X.shape == (5_000, 1, 28, 28)
    Xt, _ = utils.load_mnist_split("test")
    assert Xt.shape == (10_000, 1, 28, 28)
    assert sorted(mirror_server.requests) == sorted(
        f"/{data.MNIST_FILES[n].path}" for n in MNIST
    )


def test_mnist_from_torchvisions_mirrors_as_gz_with_md5(
    mnist_copy, empty_cache, tmp_path, monkeypatch
):
    """The path a student without a mirror takes: .gz files, MD5-checked, decompressed."""
    from torchvision.datasets import MNIST as TV

    hosted = tmp_path / "torchvision-mirror"
    hosted.mkdir()
    resources = []
    for name in MNIST:
        raw = (mnist_copy / data.MNIST_FILES[name].path).read_bytes()
        gz_name = Path(data.MNIST_FILES[name].path).name + ".gz"
        (hosted / gz_name).write_bytes(gzip.compress(raw))
        resources.append((gz_name, hashlib.md5((hosted / gz_name).read_bytes()).hexdigest()))
    s = LocalServer(hosted)
    try:
        monkeypatch.setattr(TV, "mirrors", [f"{DEAD}/", f"{s.url}/"])  # the first one is down
        monkeypatch.setattr(TV, "resources", resources)
        X, y = utils.load_mnist(train=False)
        assert X.shape == (10_000, 1, 28, 28)
        assert data.sha256(empty_cache / data.MNIST_FILES["mnist_test_images"].path) == (
            data.MNIST_FILES["mnist_test_images"].sha256
        )
        # a .gz whose MD5 is not torchvision's is refused
        monkeypatch.setattr(TV, "resources", [(g, "0" * 32) for g, _ in resources])
        with pytest.raises(utils.DataIntegrityError, match="MD5"):
            utils.load_mnist(train=True, n=10)
        assert not list((empty_cache / "MNIST" / "raw").glob("train*"))
    finally:
        s.stop()


def test_mnist_missing_and_offline_says_where_to_put_files(empty_cache, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(utils.DataUnavailableError) as err:
            utils.load_mnist(train=False)
    message = str(err.value)
    assert str(empty_cache / "MNIST" / "raw" / "t10k-images-idx3-ubyte") in message
    assert f"{DEAD}/t10k-images-idx3-ubyte.gz" in message
    _three_ways_out(message)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------- command line, mirrors
def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_DATA")}
    full_env.update(env, COURSE_PLAIN_PROGRESS="1")
    return subprocess.run(
        [sys.executable, "-m", "utils.data", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_mirror_end_to_end_over_loopback(tmp_path):
    """An instructor builds a mirror; a student downloads everything through it."""
    mirror = tmp_path / "course-data"
    out = _cli("mirror", str(mirror), COURSE_DATA_DIR=str(utils.cache_dir()))
    assert out.returncode == 0, out.stderr
    assert "RuntimeWarning" not in out.stderr
    for entry in data.ALL_FILES.values():
        assert (mirror / entry.path).is_file()
    sums = (mirror / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(data.ALL_FILES)
    for line in sums:
        digest, rel = line.split("  ")
        assert data.sha256(mirror / rel) == digest
    server = LocalServer(mirror)
    student = tmp_path / "student-cache"
    try:
        out = _cli(COURSE_DATA_DIR=str(student), COURSE_DATA_MIRROR=server.url)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert sum(line.startswith("download ") for line in lines) == len(data.ALL_FILES)
        table = [line for line in lines if line.strip().endswith("downloaded")]
        assert len(table) == len(data.ALL_FILES) and all(" OK" in line for line in table)
        assert "All 7 data files are present and verified." in out.stdout
        n_requests = len(server.requests)
        again = _cli(COURSE_DATA_DIR=str(student), COURSE_DATA_MIRROR=server.url)
        assert again.returncode == 0 and "download " not in again.stdout
        assert again.stdout.count("cached") == len(data.ALL_FILES)
        assert len(server.requests) == n_requests  # re-running downloads nothing
    finally:
        server.stop()
    for entry in data.ALL_FILES.values():
        assert data.sha256(student / entry.path) == data.sha256(mirror / entry.path)


def test_offline_make_data_message_is_one_clear_message(tmp_path):
    out = _cli(COURSE_DATA_DIR=str(tmp_path / "empty"), COURSE_DATA_MIRROR=DEAD)
    assert out.returncode == 1
    assert out.stdout == ""  # no progress line, no table
    err = out.stderr
    assert err.count("Could not download") == 1 and "Traceback" not in err
    assert "names/Chinese_Celebrities_Names.csv" in err  # which file
    assert f"{DEAD}/names/Chinese_Celebrities_Names.csv" in err  # from where
    _three_ways_out(err)
    assert "Also missing from the data folder: names/nrf.txt" in err


# ---------------------------------------------------------------------------- sample images
@pytest.mark.parametrize("name", ["grace_hopper", "logo"])
def test_sample_images_are_real_and_scaled(name):
    img = utils.sample_image(name)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.dtype == np.float64 and 0.0 <= img.min() and img.max() <= 1.0
    assert img.std() > 0.05  # a real picture, not a blank
