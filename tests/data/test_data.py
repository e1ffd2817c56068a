"""Tests for netspec.data: `describe` for every source, data problems through `netspec validate`
(position at `data.<source>`, no traceback), `load` (validation split, limit, scaling) and the
host-made batch order `BatchOrder`. Everything here is fast: files are tiny and made in tmp_path."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from support import validate

from netspec.data import arrays as D
from netspec.data import download as datasets
from netspec.errors import DataError
from netspec.spec.check import check
from netspec.spec.load import load

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """An IDX file of `array`, written independently of the module under test."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def idx_dir(directory: Path, *, n_train=12, n_test=5, shape=(6, 5), test=True, gz=False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    write_idx(
        directory / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, *shape), dtype=np.uint8), gz=gz
    )
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n_train, dtype=np.uint8), gz=gz)
    if test:
        write_idx(
            directory / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, *shape), dtype=np.uint8), gz=gz
        )
        write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n_test, dtype=np.uint8), gz=gz)
    return directory


def csv_file(path: Path, *, rows: int = 9) -> Path:
    """Columns a, b, c (numbers) and kind (text: 3 classes)."""
    lines = ["a,b,kind,c"]
    for i in range(rows):
        lines.append(f"{i},{i * 0.5},{['cat', 'dog', 'eel'][i % 3]},{-i}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- describe ----------------------------------------------------------------------------------


def test_describe_inline(tmp_path):
    info = D.describe({"inline": {"x": [[0, 0], [0, 1], [1, 0]], "y": [[0], [1], [1]]}}, tmp_path)
    assert (info.source, info.num_train, info.num_test) == ("inline", 3, None)
    assert info.x_shape == (2,) and info.y_shape == (1,) and info.classes is None


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_describe_idx_directory(tmp_path, gz):
    directory = idx_dir(tmp_path / "digits", n_train=12, n_test=5, shape=(6, 5), gz=gz)
    info = D.describe({"idx": {"path": "digits"}}, tmp_path)  # relative to the spec's directory
    assert (info.source, info.num_train, info.num_test) == ("idx", 12, 5)
    assert info.x_shape == (6, 5) and info.x_dtype == "uint8" and info.y_shape == ()
    assert D.describe({"idx": {"path": str(directory)}}, Path("/nowhere")) == info  # absolute path


def test_describe_idx_directory_without_test_files(tmp_path):
    idx_dir(tmp_path / "d", test=False)
    info = D.describe({"idx": {"path": "d"}}, tmp_path)
    assert info.num_train == 12 and info.num_test is None


@pytest.mark.parametrize("make", ["nothing", "empty", "labels-only"])
def test_describe_idx_missing_files(tmp_path, make):
    directory = tmp_path / "d"
    if make != "nothing":
        directory.mkdir()
    if make == "labels-only":
        write_idx(directory / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError) as e:
        D.describe({"idx": {"path": "d"}}, tmp_path)
    message = str(e.value)
    assert str(directory) in message
    assert "train-images-idx3-ubyte" in message
    if make == "labels-only":
        assert "Missing: train-images-idx3-ubyte" in message
    if make == "nothing":
        assert "Missing: the directory itself" in message
    assert "train_images" not in message  # file names, not internal role names


def test_describe_npz_split_keys(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((20, 3, 4), np.float32),
        y_train=np.zeros(20, np.int64),
        x_test=np.zeros((7, 3, 4), np.float32),
        y_test=np.zeros(7, np.int64),
    )
    info = D.describe({"npz": {"path": "d.npz", "x_key": "x", "y_key": "y"}}, tmp_path)
    assert (info.source, info.num_train, info.num_test) == ("npz", 20, 7)
    assert info.x_shape == (3, 4) and info.x_dtype == "float32" and info.y_shape == ()


def test_describe_npz_named_keys(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", inputs=np.zeros((15, 6), np.uint8), targets=np.zeros((15, 2), np.float32))
    info = D.describe({"npz": {"path": "d.npz", "x_key": "inputs", "y_key": "targets"}}, tmp_path)
    assert (info.num_train, info.num_test) == (15, None)
    assert info.x_shape == (6,) and info.x_dtype == "uint8" and info.y_shape == (2,)


def test_describe_npz_problems(tmp_path):
    with pytest.raises(DataError, match=r"No such npz file: .*missing\.npz.*data\.npz\.path"):
        D.describe({"npz": {"path": "missing.npz", "x_key": "x", "y_key": "y"}}, tmp_path)
    np.savez(tmp_path / "d.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(DataError) as e:
        D.describe({"npz": {"path": "d.npz", "x_key": "x", "y_key": "y"}}, tmp_path)
    assert "no array 'x'" in str(e.value) and "a, b" in str(e.value) and "x_key" in str(e.value)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match=re.escape("cannot be read as a .npz archive")):
        D.describe({"npz": {"path": "junk.npz", "x_key": "x", "y_key": "y"}}, tmp_path)


def test_describe_csv(tmp_path):
    csv_file(tmp_path / "t.csv", rows=9)
    cfg = {"path": "t.csv", "label": "kind", "features": None, "header": True, "delimiter": ","}
    info = D.describe({"csv": cfg}, tmp_path)
    assert (info.source, info.num_train, info.num_test) == ("csv", 9, None)
    assert info.x_shape == (3,) and info.y_shape == () and info.classes == 3
    numeric = D.describe({"csv": {**cfg, "label": "c", "features": ["a"]}}, tmp_path)
    assert numeric.x_shape == (1,) and numeric.classes is None


def test_describe_csv_problems(tmp_path):
    cfg = {"path": "t.csv", "label": "kind", "features": None, "header": True, "delimiter": ","}
    with pytest.raises(DataError, match="file not found"):
        D.describe({"csv": cfg}, tmp_path)
    csv_file(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"no column named 'knd'.*Did you mean 'kind'"):
        D.describe({"csv": {**cfg, "label": "knd"}}, tmp_path)


@pytest.mark.parametrize("source", ["fashion_mnist", "mnist"])
def test_standard_datasets_are_known_without_their_files(tmp_path, source):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: s\ndata: {{{source}: {{dir: {tmp_path / 'nowhere'}, download: false}}}}\n"
        "model: {input: [28, 28], layers: [{name: f, type: flatten}, {name: out, type: dense, units: 10, activation: softmax}]}\n"
        "loss: sparse_categorical_crossentropy\noptimizer: {type: sgd, learning_rate: 0.1}\ntrain: {steps: 1, batch_size: 10}\n"
    )
    info = check(load(spec, [])).data_info
    assert (info.num_train, info.num_test, info.x_shape, info.x_dtype, info.y_shape, info.classes) == (
        60000,
        10000,
        (28, 28),
        "uint8",
        (),
        10,
    )


# -- data problems through `netspec validate` ---------------------------------------------------

SPEC = """\
name: t
data:
  {source}
model:
  input: {input}
  layers:
    - {{name: flat, type: flatten}}
    - {{name: out, type: dense, units: {units}, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{type: sgd, learning_rate: 0.1}}
train: {{steps: 10, batch_size: 4}}
"""


def write_spec(tmp_path: Path, source: str, *, input="[12]", units=3) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(source=source, input=input, units=units))
    return path


def good_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 12), np.float32), y=np.arange(10) % 3)


def assert_problem_at_source(result, path: Path, source: str, *words: str) -> str:
    """Exit 1, one line `file:line:col: $.data.<source>: message` at the source's line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    text = path.read_text().splitlines()
    line = next(i for i, row in enumerate(text, 1) if row.lstrip().startswith(f"{source}:"))
    key_col = text[line - 1].index(source) + 1
    value_col = key_col + len(source) + 2
    m = re.search(rf"^  {re.escape(str(path))}:(\d+):(\d+): \$\.data\.{source}: (.+)$", result.output, re.M)
    assert m, result.output
    assert int(m.group(1)) == line and int(m.group(2)) in (key_col, value_col), result.output
    for word in words:
        assert word in m.group(3), m.group(3)
    return m.group(3)


def test_validate_npz_path_missing(tmp_path):
    path = write_spec(tmp_path, "npz: {path: missing.npz}")
    assert_problem_at_source(validate(path), path, "npz", str(tmp_path / "missing.npz"), "data.npz.path")


def test_validate_npz_without_the_named_keys(tmp_path):
    good_npz(tmp_path)
    path = write_spec(tmp_path, "npz: {path: d.npz, x_key: inputs, y_key: y}")
    assert_problem_at_source(validate(path), path, "npz", "no array 'inputs'", "x, y")


def test_validate_csv_unknown_column(tmp_path):
    csv_file(tmp_path / "t.csv")
    path = write_spec(tmp_path, "csv: {path: t.csv, label: knd}", input="[3]")
    assert_problem_at_source(validate(path), path, "csv", "no column named 'knd'", "'kind'")


def test_validate_idx_directory_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    path = write_spec(tmp_path, "idx: {path: empty}", input="[6, 5]", units=10)
    assert_problem_at_source(validate(path), path, "idx", "train-images-idx3-ubyte", str(tmp_path / "empty"))


def test_validate_example_shape_does_not_fit_model_input(tmp_path):
    good_npz(tmp_path)
    path = write_spec(tmp_path, "npz: {path: d.npz}", input="[5]")
    assert_problem_at_source(validate(path), path, "npz", "shape [12]", "model.input is [5]")


@pytest.mark.parametrize(
    "source, input, units, classes",
    [
        ("csv: {path: t.csv, label: kind}", "[3]", 4, 3),
        ("fashion_mnist: {download: false}", "[784]", 5, 10),
    ],
    ids=["csv", "fashion_mnist"],
)
def test_validate_classes_do_not_match_output_units(tmp_path, source, input, units, classes):
    csv_file(tmp_path / "t.csv")
    path = write_spec(tmp_path, source, input=input, units=units)
    name = source.split(":")[0]
    assert_problem_at_source(validate(path), path, name, f"{classes} classes", f"{units} units", f"units: {classes}")


@pytest.mark.parametrize(
    "source, input, units",
    [
        ("npz: {path: d.npz}", "[12]", 3),
        ("npz: {path: d.npz}", "[3, 4]", 3),  # another shape of the same number of values
        ("csv: {path: t.csv, label: kind}", "[3]", 3),
        ("csv: {path: t.csv, label: 2, features: [0, 3]}", "[2]", 3),
        ("idx: {path: digits}", "[6, 5]", 10),
        ("idx: {path: digits}", "[30]", 10),
    ],
    ids=["npz", "npz-reshaped", "csv", "csv-indices", "idx", "idx-flat"],
)
def test_validate_file_sources_ok(tmp_path, source, input, units):
    good_npz(tmp_path)
    csv_file(tmp_path / "t.csv")
    idx_dir(tmp_path / "digits")
    path = write_spec(tmp_path, source, input=input, units=units)
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: ok (t: 2 layers"), result.output


# -- load ----------------------------------------------------------------------------------------


def npz_data(tmp_path: Path, n=100, features=4, **data) -> dict:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(n, features)) * np.arange(1, features + 1) + np.arange(features) * 10).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(n))  # y identifies each example
    return {
        "npz": {"path": "d.npz", "x_key": "x", "y_key": "y"},
        "validation_split": 0.0,
        "scale": None,
        "limit": None,
        **data,
    }


def test_validation_split_is_fixed_by_the_seed(tmp_path):
    data = npz_data(tmp_path, n=100, validation_split=0.2)
    a = D.load(data, tmp_path, seed=3)
    again = D.load(data, tmp_path, seed=3)
    other = D.load(data, tmp_path, seed=4)
    assert len(a.validation.y) == 20 and len(a.train.y) == 80
    np.testing.assert_array_equal(a.validation.y, again.validation.y)
    np.testing.assert_array_equal(a.train.y, again.train.y)
    assert set(a.validation.y) != set(other.validation.y)
    assert set(a.validation.y).isdisjoint(a.train.y)
    assert sorted([*a.validation.y, *a.train.y]) == list(range(100))
    np.testing.assert_array_equal(a.train.x[:, 0], np.load(tmp_path / "d.npz")["x"][a.train.y, 0])  # rows stay paired
    assert a.validation.y.tolist() != list(range(20))  # chosen by the seed, not the first rows


@pytest.mark.parametrize("n, fraction, n_val", [(10, 0.25, 2), (10, 0.001, 1), (7, 0.5, 4)])
def test_validation_split_sizes(tmp_path, n, fraction, n_val):
    arrays = D.load(npz_data(tmp_path, n=n, validation_split=fraction), tmp_path, seed=0)
    assert len(arrays.validation.x) == n_val and len(arrays.train.x) == n - n_val


def test_no_validation_split_by_default(tmp_path):
    arrays = D.load(npz_data(tmp_path, n=10), tmp_path, seed=0)
    assert arrays.validation is None and arrays.test is None
    assert arrays.train.y.tolist() == list(range(10))


def test_limit_takes_the_first_examples_of_each_split(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.normal(size=(50, 3)),
        y_train=np.arange(50),
        x_test=rng.normal(size=(30, 3)),
        y_test=np.arange(100, 130),
    )
    data = {"npz": {"path": "d.npz", "x_key": "x", "y_key": "y"}, "limit": 12, "validation_split": 0.25}
    arrays = D.load(data, tmp_path, seed=0)
    assert arrays.test.y.tolist() == list(range(100, 112))
    assert sorted([*arrays.train.y, *arrays.validation.y]) == list(range(12))  # split after the limit
    assert len(arrays.validation.y) == 3


def test_limit_on_an_idx_directory(tmp_path):
    idx_dir(tmp_path / "d", n_train=12, n_test=5)
    arrays = D.load({"idx": {"path": "d"}, "limit": 4}, tmp_path, seed=0)
    assert arrays.train.x.shape == (4, 6, 5) and arrays.train.x.dtype == np.uint8  # stored as is
    assert arrays.test.x.shape == (4, 6, 5)


@pytest.mark.parametrize("scale, factor", [("1/255", 1 / 255), ("1 / 2", 0.5), (0.5, 0.5), (2, 2.0), (None, 1.0)])
def test_scale_factor(tmp_path, scale, factor):
    arrays = D.load(npz_data(tmp_path, scale=scale), tmp_path, seed=0)
    assert float(arrays.shift) == 0.0
    assert float(arrays.scale) == pytest.approx(factor, rel=1e-6)
    assert arrays.scale.dtype == np.float32


def test_standardize_uses_the_training_split(tmp_path):
    data = npz_data(tmp_path, n=200, features=4, scale="standardize", validation_split=0.3)
    arrays = D.load(data, tmp_path, seed=5)
    x = arrays.train.x.astype(np.float64)
    scaled = (x - arrays.shift) * arrays.scale
    assert arrays.shift.shape == arrays.scale.shape == (4,)
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(0), 1, atol=1e-5)
    np.testing.assert_allclose(arrays.shift, x.mean(0), rtol=1e-6)  # not the mean over train + validation
    everything = np.load(tmp_path / "d.npz")["x"].astype(np.float64)
    assert not np.allclose(arrays.shift, everything.mean(0), rtol=1e-6, atol=0)


def test_standardize_leaves_a_constant_feature_finite(tmp_path):
    x = np.stack([np.arange(10.0), np.full(10, 7.0)], 1).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(10))
    arrays = D.load({"npz": {"path": "d.npz", "x_key": "x", "y_key": "y"}, "scale": "standardize"}, tmp_path, seed=0)
    scaled = (arrays.train.x - arrays.shift) * arrays.scale
    assert np.all(np.isfinite(scaled))
    np.testing.assert_allclose(scaled[:, 1], 0)


def test_standardize_per_pixel_on_images(tmp_path):
    idx_dir(tmp_path / "d", n_train=12, shape=(6, 5))
    arrays = D.load({"idx": {"path": "d"}, "scale": "standardize"}, tmp_path, seed=0)
    assert arrays.shift.shape == (6, 5)
    scaled = (arrays.train.x.astype(np.float64) - arrays.shift) * arrays.scale
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(0), 1, atol=1e-4)


def test_load_csv_gives_class_names(tmp_path):
    csv_file(tmp_path / "t.csv", rows=6)
    cfg = {"path": "t.csv", "label": "kind", "features": None, "header": True, "delimiter": ","}
    arrays = D.load({"csv": cfg}, tmp_path, seed=0)
    assert arrays.class_names == ("cat", "dog", "eel")
    assert arrays.train.y.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(arrays.train.x[:, 0], np.arange(6))


def test_load_idx_directory_without_test_files(tmp_path):
    idx_dir(tmp_path / "d", n_train=12, test=False)
    arrays = D.load({"idx": {"path": "d"}, "validation_split": 0.25}, tmp_path, seed=0)
    assert arrays.test is None and len(arrays.train.x) == 9 and len(arrays.validation.x) == 3


def test_load_fashion_mnist_not_found_is_a_data_error(tmp_path, monkeypatch):
    pass  # import moved

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NETSPEC_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {})
    with pytest.raises(DataError) as e:
        D.load({"fashion_mnist": {"dir": str(tmp_path / "nowhere"), "download": False}}, tmp_path, seed=0)
    message = str(e.value)
    assert "fashion_mnist not found" in message and str(tmp_path / "nowhere") in message
    assert "downloading is turned off" in message and "train-images-idx3-ubyte.gz" in message


def test_load_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        D.load({"npz": {"path": "gone.npz", "x_key": "x", "y_key": "y"}}, tmp_path, seed=0)
    with pytest.raises(DataError, match="no such directory"):
        D.load({"idx": {"path": "gone"}}, tmp_path, seed=0)


# -- BatchOrder ------------------------------------------------------------------------------------


def test_same_seed_same_batches():
    a = D.BatchOrder(50, 8, seed=7, shuffle=True).indices(0, 30)
    b = D.BatchOrder(50, 8, seed=7, shuffle=True).indices(0, 30)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (30, 8) and a.dtype == np.int32


def test_different_seed_different_order():
    a = D.BatchOrder(50, 8, seed=7, shuffle=True).indices(0, 6)
    b = D.BatchOrder(50, 8, seed=8, shuffle=True).indices(0, 6)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("cuts", [[1] * 23, [7, 7, 7, 2], [5, 18], [23], [3, 1, 9, 10]])
def test_chunking_never_changes_the_order(cuts):
    n, batch, total = 37, 5, sum(cuts)  # 7 batches an epoch, 2 examples left out each epoch
    whole = D.BatchOrder(n, batch, seed=11, shuffle=True).indices(0, total)
    order = D.BatchOrder(n, batch, seed=11, shuffle=True)  # one object, as the run uses it
    pieces, start = [], 0
    for length in cuts:
        pieces.append(order.indices(start, length))
        start += length
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_any_window_equals_the_rows_of_one_long_call():
    n, batch = 40, 6
    whole = D.BatchOrder(n, batch, seed=2, shuffle=True).indices(0, 60)
    for start in range(0, 60, 7):
        for length in (1, 5, 13):
            if start + length <= 60:
                fresh = D.BatchOrder(n, batch, seed=2, shuffle=True)  # resumed at `start`: nothing cached
                np.testing.assert_array_equal(fresh.indices(start, length), whole[start : start + length])
    late = D.BatchOrder(n, batch, seed=2, shuffle=True)
    late.indices(50, 10)  # later epochs first, then back to the start
    np.testing.assert_array_equal(late.indices(0, 60), whole)


@pytest.mark.parametrize("n, batch", [(40, 8), (37, 5), (10, 10), (9, 2)])
def test_each_epoch_is_a_permutation_cut_into_batches(n, batch):
    order = D.BatchOrder(n, batch, seed=3, shuffle=True)
    per_epoch = n // batch
    assert order.per_epoch == per_epoch
    epochs = order.indices(0, 4 * per_epoch).reshape(4, per_epoch * batch)
    for e, rows in enumerate(epochs):
        assert len(set(rows.tolist())) == per_epoch * batch  # no example twice in an epoch
        assert set(rows.tolist()) <= set(range(n))
        np.testing.assert_array_equal(rows, order.epoch(e)[: per_epoch * batch])
        assert sorted(order.epoch(e).tolist()) == list(range(n))
    if n > batch or n > 2:
        assert not all(np.array_equal(epochs[0], epochs[e]) for e in range(1, 4))  # reshuffled every epoch


def test_without_shuffle_the_order_is_0_to_n():
    order = D.BatchOrder(10, 3, seed=5, shuffle=False)
    got = order.indices(0, 6)
    assert got.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] * 2
    np.testing.assert_array_equal(D.BatchOrder(10, 3, seed=99, shuffle=False).indices(0, 6), got)
