"""`netspec predict` on good and bad inputs: arrays (.npy, .npz), CSV with and without a header,
PNG images, and what it refuses (ragged or wrong-shaped input, an unwritable output, a directory
that is not a run). Its classes and outputs are the ones the run's closing report printed.

Each failure is exit 1 with one clear paragraph and no traceback. Tests that train are marked
slow; the runs they predict with are trained once per module.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from support import SPECS, assert_complete, assert_one_paragraph, netspec, run_dirs

XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


# -- netspec predict: XOR ---------------------------------------------------------------------------

REPORT_ROW = re.compile(r"^\[(\d) (\d)\]\s+([0-9.]+)\s+(\d)\s+(\d)$", re.M)


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    """xor_wide fully trained (~5 s), and the hypothesis its report prints for each XOR point."""
    logdir = tmp_path_factory.mktemp("xor")
    result = netspec("run", SPECS / "xor_wide.yaml", "--logdir", logdir)
    assert result.exit_code == 0, result.output
    rows = REPORT_ROW.findall(result.stdout)
    assert len(rows) == 4, result.stdout
    report = {(int(a), int(b)): (float(h), int(pred)) for a, b, h, pred, _ in rows}
    (run_dir,) = run_dirs(logdir)
    return run_dir, report


def predicted_csv(text: str) -> tuple[list[int], np.ndarray]:
    lines = text.strip().splitlines()
    assert lines[0] == "prediction,output_0", lines
    rows = [line.split(",") for line in lines[1:]]
    return [int(r[0]) for r in rows], np.array([float(r[1]) for r in rows])


def assert_matches_report(classes, outputs, report, points=XOR):
    assert classes == [0, 1, 1, 0]
    for point, cls, out in zip(points, classes, outputs, strict=True):
        h, pred = report[tuple(int(v) for v in point)]
        assert cls == pred and abs(out - h) < 1e-4, (point, out, h)


def write_input(directory: Path, kind: str) -> Path:
    if kind == "npy":
        np.save(directory / "points.npy", XOR)
        return directory / "points.npy"
    if kind == "npz":
        np.savez(directory / "points.npz", x=XOR)
        return directory / "points.npz"
    if kind == "npz_one_array":
        np.savez(directory / "one.npz", whatever=XOR.astype(np.float64))
        return directory / "one.npz"
    path = directory / f"{kind}.csv"
    header = "a,b\n" if kind == "csv_header" else ""
    path.write_text(header + "".join(f"{int(a)},{int(b)}\n" for a, b in XOR))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["npy", "npz", "npz_one_array", "csv", "csv_header"])
def test_predict_xor_to_stdout(xor_run, tmp_path, kind):
    run_dir, report = xor_run
    result = netspec("predict", run_dir, "--input", write_input(tmp_path, kind))
    assert result.exit_code == 0, result.output
    classes, outputs = predicted_csv(result.stdout)
    assert_matches_report(classes, outputs, report)


@pytest.mark.slow
def test_predict_xor_to_csv_and_npy_files(xor_run, tmp_path):
    run_dir, report = xor_run
    points = write_input(tmp_path, "npy")
    assert netspec("predict", run_dir, "--input", points, "--output", tmp_path / "out.csv").exit_code == 0
    classes, outputs = predicted_csv((tmp_path / "out.csv").read_text())
    assert_matches_report(classes, outputs, report)
    assert netspec("predict", run_dir, "--input", points, "--output", tmp_path / "out.npy").exit_code == 0
    array = np.load(tmp_path / "out.npy", allow_pickle=False)
    assert array.shape == (4, 1)
    np.testing.assert_allclose(array[:, 0], outputs, atol=1e-5)


@pytest.mark.slow
def test_predict_one_example(xor_run, tmp_path):
    run_dir, report = xor_run
    np.save(tmp_path / "one.npy", np.array([1, 0], np.float32))
    result = netspec("predict", run_dir, "--input", tmp_path / "one.npy")
    assert result.exit_code == 0, result.output
    classes, outputs = predicted_csv(result.stdout)
    assert classes == [1] and abs(outputs[0] - report[(1, 0)][0]) < 1e-4


def write_bad_input(directory: Path, kind: str) -> Path:
    path = (
        directory
        / {
            "wrong_shape": "x.npy",
            "one_row_too_wide": "x.csv",
            "non_numeric_cell": "x.csv",
            "missing": "gone.npy",
            "unknown_suffix": "x.txt",
            "pickled_objects": "x.npy",
            "npz_of_many_arrays": "x.npz",
            "not_an_npy": "x.npy",
            "image_for_a_vector_model": "x.png",
            "empty_csv": "x.csv",
        }[kind]
    )
    if kind == "wrong_shape":
        np.save(path, np.zeros((4, 3), np.float32))
    elif kind == "one_row_too_wide":
        path.write_text("0,0\n0,1,1\n")
    elif kind == "non_numeric_cell":
        path.write_text("0,0\n0,one\n")
    elif kind == "unknown_suffix":
        path.write_text("0,0\n")
    elif kind == "pickled_objects":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "npz_of_many_arrays":
        np.savez(path, a=XOR, b=XOR)
    elif kind == "not_an_npy":
        path.write_bytes(b"\x93NUMPY garbage")
    elif kind == "image_for_a_vector_model":
        from PIL import Image

        Image.new("L", (2, 1)).save(path)
    elif kind == "empty_csv":
        path.write_text("")
    return path


BAD_INPUTS = {  # kind -> words of the message
    "wrong_shape": ("shape [4, 3]", "examples of shape [2]"),
    "one_row_too_wide": ("x.csv",),
    "non_numeric_cell": ("x.csv", "every cell must be a number"),
    "missing": ("No such input file", "gone.npy"),
    "unknown_suffix": ("unknown input type '.txt'", ".npy, .npz, .csv"),
    "pickled_objects": ("x.npy",),
    "npz_of_many_arrays": ("holds a, b", "name the inputs x"),
    "not_an_npy": ("x.npy: is not a .npy array", "numpy.save"),
    "image_for_a_vector_model": ("x.png", "the model takes [2]"),
    "empty_csv": ("x.csv",),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_predict_refuses_bad_input(xor_run, tmp_path, kind):
    run_dir, _ = xor_run
    result = netspec("predict", run_dir, "--input", write_bad_input(tmp_path, kind))
    assert_one_paragraph(result, *BAD_INPUTS[kind], single_line=False)


@pytest.mark.slow
def test_predict_names_a_ragged_csv_row(xor_run, tmp_path):
    run_dir, _ = xor_run
    result = netspec("predict", run_dir, "--input", write_bad_input(tmp_path, "one_row_too_wide"))
    message = assert_one_paragraph(result, "x.csv", single_line=False)
    assert "row 2" in message and "must be a number" not in message, message


@pytest.mark.slow
def test_predict_to_an_unwritable_output(xor_run, tmp_path):
    run_dir, _ = xor_run
    (tmp_path / "file.txt").write_text("")
    result = netspec(
        "predict", run_dir, "--input", write_input(tmp_path, "npy"), "--output", tmp_path / "file.txt" / "out.csv"
    )
    assert_one_paragraph(result, "Cannot write", "out.csv", single_line=False)


def test_predict_on_a_directory_that_is_not_a_run(tmp_path):
    np.save(tmp_path / "points.npy", XOR)
    result = netspec("predict", tmp_path, "--input", tmp_path / "points.npy")
    assert_one_paragraph(result, "is not a netspec run directory", single_line=False)


# -- netspec predict: an image model ----------------------------------------------------------------

IMAGE_SPEC = """\
name: tiny_images
seed: 0
data:
  npz: {path: images.npz}
  scale: 1/255
model:
  input: [8, 8, 1]
  layers:
    - {name: conv, type: conv2d, filters: 4, kernel_size: 3, activation: relu}
    - {name: flatten, type: flatten}
    - {name: out, type: dense, units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
train: {steps: 20, batch_size: 10}
summaries: {every: 10}
"""


def tiny_images(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 grey images of 3 classes: a bright band at the top, middle or bottom, with noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 8, 8, 1)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 3 * label : 3 * label + 2] = 230
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    x, y = tiny_images()
    np.savez(directory / "images.npz", x_train=x, y_train=y)
    (directory / "spec.yaml").write_text(IMAGE_SPEC)
    result = netspec("run", directory / "spec.yaml", "--logdir", directory / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(directory / "runs")
    assert_complete(run_dir, 20)
    return run_dir, x


def write_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    Image.fromarray(pixels, mode=mode if mode != "L" else None).convert(mode).save(path)
    return path


@pytest.mark.slow
def test_predict_an_image_from_a_png(image_run, tmp_path):
    run_dir, x = image_run
    png = write_png(tmp_path / "digit.png", x[1, :, :, 0])
    result = netspec("predict", run_dir, "--input", png)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "prediction,output_0,output_1,output_2" and len(lines) == 2, lines
    cells = lines[1].split(",")
    probabilities = np.array([float(v) for v in cells[1:]])
    assert int(cells[0]) == probabilities.argmax() and abs(probabilities.sum() - 1) < 1e-4
    # the same pixels as an array give the same outputs: a PNG is scaled as the training data was
    np.save(tmp_path / "digit.npy", x[1])
    same = netspec("predict", run_dir, "--input", tmp_path / "digit.npy")
    assert same.exit_code == 0, same.output
    assert same.stdout == result.stdout


@pytest.mark.slow
def test_predict_an_rgb_png_for_a_grey_model(image_run, tmp_path):
    run_dir, x = image_run
    grey = x[2, :, :, 0]
    png = write_png(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1), mode="RGB")
    result = netspec("predict", run_dir, "--input", png)
    assert result.exit_code == 0, result.output
    np.save(tmp_path / "grey.npy", x[2])
    assert netspec("predict", run_dir, "--input", tmp_path / "grey.npy").stdout == result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, words",
    [
        ("wrong_size", ("10x12 pixels", "the model takes [8, 8, 1]", "Resize it")),
        ("not_an_image", ("is not an image",)),
        ("missing", ("No such input file",)),
    ],
)
def test_predict_refuses_a_bad_image(image_run, tmp_path, kind, words):
    run_dir, _ = image_run
    png = tmp_path / "bad.png"
    if kind == "wrong_size":
        write_png(png, np.zeros((12, 10), np.uint8))
    elif kind == "not_an_image":
        png.write_text("this is text with a .png name\n")
    assert_one_paragraph(netspec("predict", run_dir, "--input", png), *words, single_line=False)
