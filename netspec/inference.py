"""Use a finished run: `netspec eval` and `netspec predict`, from the run directory alone.

Contract.

    evaluate_run(run_dir, *, split=None, data_dir=None, notice=None) -> {metric tag: mean}
    predict_run(run_dir, input_path, *, notice=None) -> (outputs, classes or None, class names)
    read_inputs(path, spec, *, feature_names=None, notice=None) -> float32 [N, *model.input]
    finished_state(spec, run_dir, *, notice=None) -> (Program, TrainState)

Both rebuild the run's Spec from its spec.yaml, checked against the data as the run recorded it
(`rundir.load_run_spec(..., recorded_data=True)`), compile it (`compile_spec`) and restore its
best checkpoint if it kept one, else its latest; a checkpoint that does not load (damaged, or
another model's) is passed over for the one before it, said in one line to `notice`.
`evaluate_run` reads the split from the data files (default: test when the data has one, the
honest figure for a model chosen on the validation split) and evaluates it with the compiled
`evaluate`. `predict_run` needs no data files: it reads `.npy`, `.npz`, `.csv` (columns matched to
the training features by name when both sides name them) or one image, scales the inputs as the
training data was (`rundir.read_preprocess`) and decides classes with
`netspec.model.losses.output_class`, as evaluation and the closing report do. Input files are read
as data files are (`netspec.data.formats.open_data_file`: a regular file within the read limit).
Neither writes to the run, except `rundir.tidy` removing leftovers of cut-off writes when no
process holds it. Problems are NetspecErrors naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from netspec.data.formats import open_data_file, open_npz, read_npy, read_npz_array
from netspec.errors import NetspecError
from netspec.spec.types import Spec
from netspec.training import rundir
from netspec.training.feed import load_arrays, padded, split_means
from netspec.training.rundir import _data_gone, load_run_spec, read_preprocess


def finished_state(spec: Spec, run_dir: Path, *, notice=None):
    """(program, state) of a run from its best checkpoint if it kept one, else its latest; one
    that does not load (damaged, or another model's) is passed over for the one before it, said
    in one line to `notice`. Raises NetspecError when there is none, or when none loads, naming
    each file and why."""
    from netspec.compile.program import compile_spec
    from netspec.training import checkpoint

    program = compile_spec(spec)
    restored = checkpoint.Checkpoints(Path(run_dir) / "checkpoints", keep=1).restore(
        program.init(), prefer_best=True, notice=notice
    )
    if restored is None:
        raise NetspecError(
            f"{run_dir} has no checkpoint (checkpoints/step-*.safetensors or best.safetensors): the run stopped "
            f"before its first one (see checkpoint.every), or they were deleted, so there are no trained parameters "
            f"to use. Its TensorBoard events still show the training; train it again with netspec run."
        )
    return program, restored[1]


def evaluate_run(run_dir: str | Path, *, split: str | None = None, data_dir: str | None = None, notice=None) -> dict:
    """`netspec eval`: {metric tag: mean} of a finished run on a split ("test", "validation",
    "train"; default: test when the data has one, the honest figure for a model chosen on the
    validation split; else the spec's eval.split; else validation, else the training data, all
    that inline data such as XOR's has), from its best checkpoint if it kept one
    (early stopping, checkpoint.best), else its latest (one that does not load is passed over,
    said in one line to `notice`). The spec is checked against the data as the run recorded it;
    the split itself is read from the data files. Raises NetspecError for a damaged run
    directory (naming the file), data that is missing or no longer of the shapes the run
    trained on, or a split the data does not have."""
    from netspec.errors import DataError

    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)
    run_dir = Path(run_dir)
    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    try:
        arrays = load_arrays(spec, data_dir)
    except DataError as e:
        raise _data_gone(run_dir, str(e).rstrip("."), spec.base_dir, "evaluated") from None
    found = (tuple(arrays.train.x.shape[1:]), tuple(arrays.train.y.shape[1:]))
    ran = (tuple(spec.data_info.x_shape), tuple(spec.data_info.y_shape))
    if found != ran:
        raise NetspecError(
            f"The data of the run in {run_dir} is not what it trained on: examples of shape {list(found[0])} and "
            f"labels of shape {list(found[1])}, where it trained on {list(ran[0])} and {list(ran[1])}. Put the "
            f"training data back, or point data in spec.yaml to it."
        )
    split = split or (
        "test"
        if arrays.test is not None
        else spec.eval["split"] or ("validation" if arrays.validation is not None else "train")
    )
    chosen = {"test": arrays.test, "validation": arrays.validation, "train": arrays.train}[split]
    if chosen is None:
        raise NetspecError(
            f"The run's data has no {split} split. Choose --split train"
            + (", test" if arrays.test is not None else "")
            + "."
        )
    program, state = finished_state(spec, run_dir, notice=notice)
    return split_means(
        program.evaluate(state.params, state.model_state, *padded(chosen, arrays, spec.eval["batch_size"]))
    )[0]


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_inputs(
    path: str | Path, spec: Spec, *, feature_names: tuple[str, ...] | None = None, notice=None
) -> np.ndarray:
    """Examples to predict on, shaped [N, *model.input], as read (float32 from CSV): .npy, .npz
    (`x` or its only array), .csv, or one image for an image model.

    A CSV file is read with the training CSV's delimiter (else ","). Its first row is a header
    when none of its cells is a number, or when it names every feature in `feature_names` (the
    training data's, in training order; None when the run records none). With a header and
    `feature_names`, the columns are picked by name, in training order, whatever their order in
    the file; other columns are ignored. Otherwise the columns are the features in order, and
    `notice(text)` (one line) says so when that is a guess: no header, or a header the run has
    no names to match. Raises NetspecError naming the file: unreadable, a missing column (with
    the columns found), a cell that is not a number, or a shape the model does not take."""
    pass  # import moved

    path = Path(path)
    if not path.exists():
        raise NetspecError(f"No such input file: {path}.")
    suffix = path.suffix.lower()
    open_data_file(path, "an input file").close()  # a regular file within the read limit, whatever its kind
    try:
        if suffix == ".npy":
            x = read_npy(path)
        elif suffix == ".npz":
            with open_npz(path) as (archive, headers):
                keys = sorted(headers)
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise NetspecError(f"{path} holds {', '.join(keys) or 'no arrays'}; name the inputs x.")
                x = read_npz_array(archive, headers[key], path)
        elif suffix == ".csv":
            x = _read_csv_numbers(path, spec, feature_names, notice or (lambda text: None))
        elif suffix in IMAGE_SUFFIXES:
            x = _read_image(path, spec.input_shape)[None]
        else:
            raise NetspecError(
                f"{path}: unknown input type {suffix!r}; give .npy, .npz, .csv or an image ({', '.join(sorted(IMAGE_SUFFIXES))})."
            )
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise NetspecError(f"Cannot read {path}: {e}.") from None
    if x.dtype == object:
        raise NetspecError(f"{path} holds Python objects; give numbers.")
    size = int(np.prod(spec.input_shape))
    if x.size == size:
        return x.reshape((1, *spec.input_shape))
    if x.ndim >= 1 and x.size % size == 0 and int(np.prod(x.shape[1:])) == size:
        return x.reshape((len(x), *spec.input_shape))
    raise NetspecError(
        f"{path} holds an array of shape {list(x.shape)}; the model takes examples of shape {list(spec.input_shape)} ({size} values each)."
    )


def _read_csv_numbers(path: Path, spec: Spec, feature_names: tuple[str, ...] | None, notice) -> np.ndarray:
    """float32 [N, F] from a CSV file, its columns chosen as `read_inputs` says."""
    from netspec.data.arrays import source_of

    source = source_of(spec.data)
    delimiter = spec.data["csv"]["delimiter"] if source == "csv" else ","
    rows = _read_csv_rows(path, delimiter)
    first = rows[0][0]
    header, rows, width = _csv_header(path, rows, feature_names)
    if header is not None and feature_names:
        columns = _columns_by_name(path, header, feature_names)
    else:
        columns = list(range(width))
        _note_columns_in_order(path, spec, source, header, width, feature_names, notice)
    return _csv_values(path, rows, columns, first=first, header=header)


def _read_csv_rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file, each with its line number; at least one."""
    import csv
    import io

    from netspec.data.formats import _bounded_lines, _numbered_rows, open_data_file

    # -sig: a spreadsheet's byte-order mark is not part of a name; lines are bounded as the training CSV's are
    with io.TextIOWrapper(open_data_file(path, "a CSV file"), encoding="utf-8-sig", newline="") as f:
        try:
            rows = list(_numbered_rows(csv.reader(_bounded_lines(f, path), delimiter=delimiter)))
        except csv.Error as e:
            raise ValueError(f"not a CSV file ({e})") from None
    if not rows:
        raise NetspecError(f"{path} holds no rows; give one example per row, one column per feature.")
    return rows


def _csv_header(
    path: Path, rows: list[tuple[int, list[str]]], feature_names: tuple[str, ...] | None
) -> tuple[list[str] | None, list[tuple[int, list[str]]], int]:
    """(the header when the first row names the columns, else None; the rows of examples; their
    width), every row of the same width."""
    first, cells = rows[0][0], [cell.strip() for cell in rows[0][1]]
    header: list[str] | None = None  # the first row, when it names the columns
    if not any(_is_number(cell) for cell in cells) or (feature_names and set(feature_names) <= set(cells)):
        header = cells
        rows = rows[1:]
        if not rows:
            raise NetspecError(f"{path} has a header but no rows of examples.")
    width = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise NetspecError(
                f"{path}: row {line} has {len(row)} cells, but row {first} has {width}; every row needs the same number."
            )
    return header, rows, width


def _columns_by_name(path: Path, header: list[str], feature_names: tuple[str, ...]) -> list[int]:
    """The columns of the training features, in training order, picked by the header's names."""
    missing = [name for name in feature_names if name not in header]
    if missing:
        raise NetspecError(
            f"{path} has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}: the model "
            f"takes the features {', '.join(map(repr, feature_names))} (by name, in any order; other columns are "
            f"ignored), and the header names {', '.join(map(repr, header))}. Rename the columns to match."
        )
    twice = next((name for name in feature_names if header.count(name) > 1), None)
    if twice is not None:
        raise NetspecError(
            f"{path}: the header names {twice!r} {header.count(twice)} times; the model's feature {twice!r} "
            "must be one column. Rename or remove the others."
        )
    return [header.index(name) for name in feature_names]


def _note_columns_in_order(
    path: Path,
    spec: Spec,
    source: str,
    header: list[str] | None,
    width: int,
    feature_names: tuple[str, ...] | None,
    notice,
) -> None:
    """Says to `notice` why the columns are taken in order where that is a guess (a header with no
    names to match, or no header); refuses a headerless file of another width than the features."""
    if header is not None:
        if source != "csv":
            why = f"it trained on {source} data, which names no features"
        elif not spec.data["csv"]["header"]:
            why = "its training CSV had no header"
        else:
            why = "its preprocess.npz records no feature names (written by an older netspec)"
        notice(
            f"{path}: the header ({', '.join(header)}) was ignored, as this run has no feature names to match it "
            f"({why}); its {width} columns are taken in order as the model's inputs."
        )
    elif feature_names:
        if width != len(feature_names):
            raise NetspecError(
                f"{path} has {width} columns and no header; the model takes {len(feature_names)} features, "
                f"{', '.join(map(repr, feature_names))}. Give a header naming them to pick them by name."
            )
        notice(
            f"{path} has no header, so its {width} columns are taken in the training order: {', '.join(feature_names)}."
        )


def _csv_values(
    path: Path, rows: list[tuple[int, list[str]]], columns: list[int], *, first: int, header: list[str] | None
) -> np.ndarray:
    """float32 [N, F]: the cells of `columns`, each a number."""
    for line, row in rows:
        bad = next((row[c] for c in columns if not _is_number(row[c])), None)
        if bad is not None:
            raise NetspecError(
                f"{path}: row {line} has {bad!r}, not a number; every cell must be a number"
                + (
                    " (a header names its columns with words)."
                    if line == first and header is None and bad.strip()
                    else "."
                )
            )
    return np.asarray([[float(row[c]) for c in columns] for _, row in rows], np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_image(path: Path, input_shape) -> np.ndarray:
    """The pixels of one image, uint8 [height, width] (or [height, width, 3] for a 3-channel
    model). Raises NetspecError for a file that is not an image or of another size."""
    from PIL import Image, UnidentifiedImageError

    channels = input_shape[-1] if len(input_shape) == 3 else 1
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            pixels = np.asarray(image)
    except UnidentifiedImageError:
        raise NetspecError(f"{path} is not an image this tool can read.") from None
    height, width = input_shape[0], input_shape[1] if len(input_shape) > 1 else None
    if len(input_shape) < 2 or pixels.shape[:2] != (height, width):
        raise NetspecError(
            f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; the model takes {list(input_shape)}. Resize it first."
        )
    return pixels


def predict_run(
    run_dir: str | Path, input_path: str | Path, *, notice=None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """`netspec predict`: (outputs float32 [N, ...], predicted classes int32 [N] or None, class
    names) of a finished run on new inputs, scaled as its training data was; the class is
    `compile.output_class`'s, as in evaluation and the report. CSV columns are matched to the
    training features by name (`read_inputs`; `notice` gets its one-line notes, and one for a
    checkpoint passed over). Needs only the run directory: the spec is checked against the data
    as the run recorded it (ran.json), not against the data files. Raises NetspecError for a
    damaged run directory (naming the file) or unreadable inputs."""
    import jax

    from netspec.compile.state import Data
    from netspec.model.losses import num_classes, output_class

    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)  # the data as recorded: its files are not needed
    run_dir = Path(run_dir)
    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    pre = read_preprocess(run_dir, spec)
    x = read_inputs(input_path, spec, feature_names=pre.feature_names, notice=notice)
    x = x.reshape((len(x), *spec.data_info.x_shape))  # as the training data is stored: the scaling's shape
    program, state = finished_state(spec, run_dir, notice=notice)
    data = Data(
        x, np.zeros((len(x), *spec.data_info.y_shape), np.float32), pre.shift, pre.scale
    )  # labels as stored: none
    inputs, _ = program.prepare_batch(data, data.x, data.y)
    outputs = np.asarray(jax.device_get(program.apply(state.params, state.model_state, inputs)))
    decide = output_class(spec)  # None only for a regression loss, which has no classes either
    classes = decide(outputs).reshape(len(x)) if num_classes(spec) and decide is not None else None
    return outputs, classes, pre.class_names
