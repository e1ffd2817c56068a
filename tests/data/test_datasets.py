"""Tests for netspec.datasets: IDX files, standard-dataset lookup and download, npz, csv."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from support import FASHION, ROOT, free_port

from netspec.data import download
from netspec.data.download import cache_dir, load_standard, locate
from netspec.data.formats import FILES, idx_header, load_csv, load_idx_dir, load_npz, read_idx
from netspec.errors import DataError

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray, *, code: int | None = None) -> bytes:
    """An IDX encoding of `array`, written independently of the module under test."""
    code = IDX_CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the real cache, the real environment's data or a real mirror."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NETSPEC_DATA", raising=False)
    monkeypatch.delenv("NETSPEC_OFFLINE", raising=False)
    monkeypatch.setattr(download, "SYSTEM_DIRS", {})
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [], "fashion_mnist": []})
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=lambda t: t.__name__)
def test_read_idx_round_trips_every_dtype(tmp_path, dtype, gz):
    array = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
    path = write(tmp_path / "a.idx", idx_bytes(array), gz=gz)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 1  # writable
    assert idx_header(path) == (np.dtype(dtype), (2, 3, 4))


def test_read_idx_one_dimensional_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    path = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(labels), gz=True)
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda a: idx_bytes(a)[:-5], ["truncated", "only 19 bytes", "(2, 3, 4)"]),
        (lambda a: idx_bytes(a) + b"\0" * 3, ["wrong element count", "3 extra"]),
        (lambda a: b"\x01\x02" + idx_bytes(a)[2:], ["not an IDX file", "01 02 08 03"]),
        (lambda a: idx_bytes(a, code=0x0A), ["unknown IDX dtype code 0x0A", "0x08 uint8"]),
        (lambda a: idx_bytes(a)[:9], ["truncated IDX header"]),
        (lambda a: b"\0\0", ["empty or truncated"]),
    ],
    ids=["truncated", "extra-bytes", "magic", "dtype-code", "header", "tiny"],
)
def test_read_idx_bad_files(tmp_path, make, words, gz):
    path = write(tmp_path / "bad.idx", make(np.zeros((2, 3, 4), np.uint8)), gz=gz)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_read_idx_damaged_gzip_and_missing_file(tmp_path):
    full = gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))
    path = write(tmp_path / "cut.gz", full[: len(full) // 2])
    with pytest.raises(DataError, match="gzip data is damaged or cut short"):
        read_idx(path)
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        idx_header(tmp_path)


# --------------------------------------------------------------------------- fake datasets

FAKE_COUNTS = {"train": 6, "test": 3}


def fake_files(seed: int = 0) -> dict[str, bytes]:
    """Small IDX files under the official names: uint8 images [N, 28, 28], labels [N]."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n = FAKE_COUNTS[split]
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, n, dtype=np.uint8))
    return files


def fill_dir(directory: Path, *, gz: bool = True, seed: int = 0, skip: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in fake_files(seed).items():
        if name != skip:
            write(directory / (name + ".gz" if gz else name), data, gz=gz)
    return directory


def cache(tmp_path: Path, dataset: str = "mnist") -> Path:
    return tmp_path / "xdg" / "netspec" / dataset


# --------------------------------------------------------------------------- lookup


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    given = fill_dir(tmp_path / "given", seed=1)
    env = fill_dir(tmp_path / "env" / "mnist", seed=2)  # the <dataset>/ subfolder form
    fill_dir(cache(tmp_path), seed=3)
    monkeypatch.setenv("NETSPEC_DATA", str(tmp_path / "env"))

    def source():
        return locate("mnist", data_dir=given, download=False)["train_images"].parent

    assert source() == given
    for f in given.iterdir():
        f.unlink()
    assert source() == env
    monkeypatch.delenv("NETSPEC_DATA")
    assert source() == cache(tmp_path)


def test_env_dir_may_hold_files_directly_and_plain_beats_gz(tmp_path, monkeypatch):
    env = fill_dir(tmp_path / "env", gz=False)
    fill_dir(env, gz=True)
    monkeypatch.setenv("NETSPEC_DATA", str(env))
    found = locate("fashion_mnist", download=False)
    assert found == {role: env / name for role, name in FILES.items()}


def test_incomplete_directory_does_not_count(tmp_path):
    given = fill_dir(tmp_path / "given", skip="t10k-labels-idx1-ubyte")
    fill_dir(cache(tmp_path))
    assert locate("mnist", data_dir=given)["train_images"].parent == cache(tmp_path)


def test_xdg_unset_uses_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "netspec" / "mnist"


def test_unknown_dataset_suggests(tmp_path):
    with pytest.raises(DataError, match=re.escape("known ones are fashion_mnist, mnist. Did you mean 'mnist'")):
        locate("mnsit")


def test_load_standard_and_idx_dir(tmp_path):
    given = fill_dir(tmp_path / "given", gz=False)
    splits = load_standard("mnist", data_dir=given)
    assert splits.x_train.shape == (6, 28, 28) and splits.x_train.dtype == np.uint8
    assert splits.y_train.shape == (6,) and splits.x_test.shape == (3, 28, 28)
    again = load_idx_dir(given)
    for a, b in zip(splits, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_count_mismatch_between_images_and_labels(tmp_path):
    given = fill_dir(tmp_path / "given", skip="t10k-labels-idx1-ubyte")
    write(given / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match=r"holds 3 examples .* but .* holds 4 labels"):
        load_idx_dir(given)


def test_idx_dir_names_missing_files(tmp_path):
    given = fill_dir(tmp_path / "given", skip="train-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"missing train-labels-idx1-ubyte .*it holds t10k-images"):
        load_idx_dir(given)
    with pytest.raises(DataError, match="no such directory"):
        load_idx_dir(tmp_path / "absent")


def test_standard_rejects_wrong_image_shape(tmp_path):
    given = fill_dir(tmp_path / "given", skip="train-images-idx3-ubyte")
    write(given / "train-images-idx3-ubyte", idx_bytes(np.zeros((6, 8, 8), np.uint8)))
    with pytest.raises(DataError, match=r"uint8 \(6, 8, 8\), but mnist images are uint8"):
        load_standard("mnist", data_dir=given)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.setattr(download, "SYSTEM_DIRS", {"fashion_mnist": [FASHION]})
    x_train, y_train, x_test, y_test = load_standard("fashion_mnist", download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(np.unique(y_test)) == set(range(10))


# --------------------------------------------------------------------------- download


class Server:
    """A local HTTP server; `routes` maps a URL path to the bytes served, or to ("drop", bytes)."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                drop = isinstance(body, tuple)
                body = body[1] if drop else body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) * (2 if drop else 1)))
                self.end_headers()
                self.wfile.write(body)  # a dropped connection closes after half the promised bytes

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{prefix}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def served(server, monkeypatch):
    """Serves gzipped fake files under /good/ and sets the expected sums to theirs."""
    gz = {f"{name}.gz": gzip.compress(data) for name, data in fake_files().items()}
    for name, data in gz.items():
        server.routes[f"/good/{name}"] = data
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in gz.items()}
    monkeypatch.setattr(download, "SHA256", {"mnist": sums})
    return gz


def test_download_lands_verified_in_cache(tmp_path, monkeypatch, server, served):
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [server.url("good")]})
    found = locate("mnist")
    assert sorted(os.listdir(cache(tmp_path))) == sorted(served)  # no temp files left
    for path in found.values():
        assert path.read_bytes() == served[path.name]
    splits = load_standard("mnist")  # now from the cache, no server needed
    assert splits.x_train.shape == (6, 28, 28)


def test_download_falls_through_to_next_mirror(tmp_path, monkeypatch, server, served):
    for name, data in served.items():
        server.routes[f"/corrupt/{name}"] = data[:-1] + b"x"
    mirrors = [f"http://127.0.0.1:{free_port()}/", server.url("missing"), server.url("corrupt"), server.url("good")]
    monkeypatch.setattr(download, "MIRRORS", {"mnist": mirrors})
    locate("mnist")
    assert sorted(os.listdir(cache(tmp_path))) == sorted(served)


def test_download_only_missing_files(tmp_path, monkeypatch, server, served):
    fill_dir(cache(tmp_path), skip="t10k-images-idx3-ubyte")
    before = {p.name: p.stat().st_mtime_ns for p in cache(tmp_path).iterdir()}
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [server.url("good")]})
    locate("mnist")
    after = {p.name: p.stat().st_mtime_ns for p in cache(tmp_path).iterdir()}
    assert set(after) == set(before) | {"t10k-images-idx3-ubyte.gz"}
    assert all(after[name] == before[name] for name in before)


def test_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch, server, served):
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [server.url("good")]})
    expected = "0" * 64
    download.SHA256["mnist"]["train-images-idx3-ubyte.gz"] = expected
    actual = hashlib.sha256(served["train-images-idx3-ubyte.gz"]).hexdigest()
    with pytest.raises(DataError) as info:
        locate("mnist")
    message = str(info.value)
    assert "checksum is wrong" in message and expected in message and actual in message
    assert os.listdir(cache(tmp_path)) == []


def test_dropped_connection_leaves_no_partial_file(tmp_path, monkeypatch, server, served):
    for name, data in served.items():
        server.routes[f"/drop/{name}"] = ("drop", data)
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [server.url("drop")]})
    with pytest.raises(DataError) as info:
        locate("mnist")
    message = str(info.value)
    assert "connection dropped after" in message and "could not be downloaded" in message
    assert os.listdir(cache(tmp_path)) == []


def test_unreachable_mirror_message_lists_places(tmp_path, monkeypatch, served):
    url = f"http://127.0.0.1:{free_port()}/"
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [url]})
    given = fill_dir(tmp_path / "given", skip="train-images-idx3-ubyte")
    with pytest.raises(DataError) as info:
        locate("mnist", data_dir=given)
    message = str(info.value)
    assert message.startswith("mnist not found in ")
    assert f"{given} (data_dir; missing train-images-idx3-ubyte)" in message
    assert f"{cache(tmp_path)} (cache;" in message
    assert url + "train-images-idx3-ubyte.gz" in message and "could not be downloaded" in message
    assert f"put them in {cache(tmp_path)}, or pass --data-dir" in message
    assert os.listdir(cache(tmp_path)) == []


def test_no_mirror_listed(tmp_path):
    with pytest.raises(DataError, match=r"could not be downloaded \(no mirror is listed\)"):
        locate("fashion_mnist")


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_never_downloads(tmp_path, monkeypatch, server, served, how):
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [server.url("good")]})
    monkeypatch.setenv("NETSPEC_DATA", str(tmp_path / "env"))
    if how == "env":
        monkeypatch.setenv("NETSPEC_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        locate("mnist", download=how != "argument")
    message = str(info.value)
    reason = "NETSPEC_OFFLINE is set" if how == "env" else "downloading is turned off"
    assert f"could not be downloaded ({reason})" in message
    assert f"{tmp_path / 'env'} ($NETSPEC_DATA; no such directory)" in message
    assert not cache(tmp_path).exists()


def test_module_stays_light():
    code = (
        "import sys, netspec.data.formats, netspec.data.download; "
        "print(sorted(m for m in ('jax', 'click', 'urllib.request') if m in sys.modules))"
    )
    root = str(ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- npz


def test_npz_split_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.ones((4, 2)), y_train=np.arange(4), x_test=np.ones((2, 2)), y_test=np.arange(2))
    splits = load_npz(path)
    assert splits.x_train.shape == (4, 2) and splits.y_test.shape == (2,)


def test_npz_plain_keys_have_no_test_split(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, inputs=np.ones((3, 5)), targets=np.zeros(3))
    splits = load_npz(path, x_key="inputs", y_key="targets")
    assert splits.x_train.shape == (3, 5) and splits.x_test is None and splits.y_test is None


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"a": np.ones(3)}, ["missing 'x', 'y'", "holds 'a'"]),
        (
            {"x_train": np.ones(3), "y_train": np.ones(3), "x_test": np.ones(2)},
            ["missing 'y_test'", "holds 'x_test', 'x_train', 'y_train'"],
        ),
        ({"x": np.ones((3, 2)), "y": np.ones(4)}, ["'x' has shape (3, 2)", "'y' has shape (4,)"]),
        ({"x": np.array([{"a": 1}], dtype=object), "y": np.ones(1)}, ["Python objects", "'x'"]),
    ],
    ids=["no-keys", "half-test-split", "lengths", "object-array"],
)
def test_npz_bad(tmp_path, arrays, words):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_npz(path)
    for word in words:
        assert word in str(info.value)


def test_npz_not_an_archive(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(DataError, match=re.escape("single .npy array")):
        load_npz(tmp_path / "a.npy")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(DataError, match=re.escape("cannot be read as a .npz archive")):
        load_npz(tmp_path / "t.npz")
    with pytest.raises(DataError, match="file not found"):
        load_npz(tmp_path / "absent.npz")


# --------------------------------------------------------------------------- csv

IRIS = """sepal_length,sepal_width,species

5.1,3.5,setosa
7.0,3.2,versicolor
6.3,3.3,virginica
4.9,3.0,setosa
"""


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_csv_text_labels_become_sorted_classes(tmp_path):
    table = load_csv(csv_file(tmp_path, IRIS), label="species")
    assert table.x.dtype == np.float32 and table.x.shape == (4, 2)
    assert table.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(table.y, [0, 1, 2, 0])


def test_csv_numeric_labels_and_feature_selection(tmp_path):
    path = csv_file(tmp_path, "a,b,c\n1,2,0\n3,4,1\n")
    table = load_csv(path, features=["b", 0], label=2)
    np.testing.assert_array_equal(table.x, [[2, 1], [4, 3]])
    assert table.y.dtype == np.float32 and table.classes is None
    headless = tmp_path / "headless.csv"
    headless.write_text("1;2\n3;4\n")
    table = load_csv(headless, label=0, header=False, delimiter=";")
    np.testing.assert_array_equal(table.x, [[2], [4]])
    np.testing.assert_array_equal(table.y, [1, 3])


@pytest.mark.parametrize(
    "text, kwargs, words",
    [
        (IRIS, {"label": "specis"}, ["no column named 'specis'", "'sepal_width'", "Did you mean 'species'?"]),
        (IRIS, {"label": "species", "features": ["sepal_lenght"]}, ["Did you mean 'sepal_length'"]),
        ("a,b\n1,2\nx,3\n", {"label": "b"}, ["t.csv:3: column 'a' (index 0) holds 'x'"]),
        ("a,b\n1,2\n,1\n", {"label": "b"}, ["t.csv:3: column 'a' (index 0) holds an empty cell"]),
        ("a,b\n1,2\nnan,1\n", {"label": "b"}, ["t.csv:3:", "finite number"]),
        ("a,b\n1,2\n3,4,5\n", {"label": "b"}, ["t.csv:3: has 3 columns, but the header has 2"]),
        ("a,b\n1,2\n3,cat\n", {"label": "b"}, ["mixes numbers ('2' on line 2)", "'cat' on line 3"]),
        ("a,b\n1,2\n", {"label": 5}, ["column 5 does not exist", "0 to 1"]),
        ("1,2\n", {"label": "b", "header": False}, ["without a header"]),
        ("a,b\n1,2\n", {"label": "b", "features": ["a", "b"]}, ["both a feature and the label"]),
        ("a\n1\n", {"label": "a"}, ["no feature columns"]),
        ("a,b\n", {"label": "b"}, ["header but no rows"]),
        ("", {"label": "b"}, ["is empty"]),
    ],
    ids=[
        "label-typo",
        "feature-typo",
        "non-numeric",
        "empty-cell",
        "nan",
        "ragged",
        "mixed-labels",
        "index-range",
        "name-without-header",
        "label-as-feature",
        "no-features",
        "no-rows",
        "empty",
    ],
)
def test_csv_bad(tmp_path, text, kwargs, words):
    with pytest.raises(DataError) as info:
        load_csv(csv_file(tmp_path, text), **kwargs)
    for word in words:
        assert word in str(info.value)


def test_csv_line_numbers_count_quoted_newlines_and_blank_lines(tmp_path):
    path = csv_file(tmp_path, 'a,b,name\n1,2,"two\nlines"\n\n3,oops,z\n')
    with pytest.raises(DataError, match=r"t\.csv:5: column 'b' \(index 1\) holds 'oops'"):
        load_csv(path, features=["a", "b"], label="name")


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "absent.csv", label=0)
