"""Use a finished run: `netspec eval` and `netspec predict`, from the run directory alone.

Contract.

    evaluate_run(run_dir, *, split=None, data_dir=None, notice=None) -> {metric tag: mean}
    predict_run(run_dir, input_path, *, notice=None) -> (outputs, classes or None, class names)
    read_inputs(path, spec, *, feature_names=None, notice=None) -> float32 [N, *model.input]
    finished_state(spec, run_dir, *, notice=None) -> (Program, TrainState)

    A sweep directory's members (`--member best|K|NAME|ensemble`):
    is_sweep(path) -> bool
    sweep_member(sweep_dir, member="best") -> SweepMember (name, run_dir, position, total, rank, ranked_by)
    sweep_members(sweep_dir) -> [SweepMember], ensemble_members(sweep_dir, *, notice=None) -> the finished ones
    evaluate_ensemble(sweep_dir, *, split=None, data_dir=None, notice=None) -> EnsembleEvaluation
    predict_ensemble(sweep_dir, input_path, *, notice=None) -> (mean probabilities, classes or None, class names)

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

A sweep directory (sweep.json, result.json, one run directory per member: training/sweep.py) is
used through its members: `sweep_member` names one (`best`: rank 1 of result.json, judged on the
validation or training figure, never the test split's; K: 1-based in sweep.json's order; or its
name), which `evaluate_run` and `predict_run` then use as any run. `evaluate_ensemble` and
`predict_ensemble` are a deep ensemble (Lakshminarayanan et al. 2017) of every finished member:
the mean of their predicted probabilities (sigmoid or softmax of their logits; the mean output
for a regression loss), refused when the members do not predict the same thing from the same
inputs (another data source, input or output shape, loss type or class names).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from netspec.data.formats import open_data_file, open_npz, read_npy, read_npz_array
from netspec.errors import NetspecError, quoted
from netspec.spec.choices import LOSS_KINDS
from netspec.spec.types import Spec, plain
from netspec.training import rundir
from netspec.training.feed import load_arrays, padded, split_means
from netspec.training.rundir import SWEEP_FILE, _data_gone, load_run_spec, read_preprocess


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
    trained on, or a split the data does not have. Once evaluated, `notice` is told the split and
    its size in one line."""
    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)
    run_dir = Path(run_dir)
    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    arrays = _run_arrays(spec, run_dir, data_dir)
    name, chosen = _split_of(spec, arrays, split)
    program, state = finished_state(spec, run_dir, notice=notice)
    values = _evaluated(spec, program, state, chosen, arrays)
    if notice is not None:  # which figures these are: the default split depends on the data
        notice(f"Evaluated {run_dir} on the {name} split ({len(chosen.x):,} examples).")
    return values


def _run_arrays(spec: Spec, run_dir: Path, data_dir: str | None):
    """The run's data read from its files (`load_arrays`), refused when it is gone or no longer of
    the shapes the run trained on."""
    from netspec.errors import DataError

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
    return arrays


def _split_of(spec: Spec, arrays, split: str | None):
    """(the split's name, its `Split`): `split`, else `evaluate_run`'s default. Raises
    NetspecError when the data has no such split."""
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
    return split, chosen


def _evaluated(spec: Spec, program, state, chosen, arrays) -> dict[str, float]:
    """{metric tag: mean} of `chosen` (a `Split`) by the compiled `evaluate`."""
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
    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)  # the data as recorded: its files are not needed
    return _predicted(spec, Path(run_dir), input_path, notice=notice)


def _predicted(
    spec: Spec, run_dir: Path, input_path: str | Path, *, notice=None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """`predict_run` of the run in `run_dir`, its spec already loaded."""
    import jax

    from netspec.compile.state import Data
    from netspec.model.losses import num_classes, output_class

    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    pre = read_preprocess(run_dir, spec)
    x = read_inputs(input_path, spec, feature_names=pre.feature_names, notice=notice)
    x = x.reshape((len(x), *spec.data_info.x_shape))  # as the training data is stored: the scaling's shape
    program, state = finished_state(spec, run_dir, notice=notice)
    data = Data(
        x, np.zeros((len(x), *spec.data_info.y_shape), np.float32), pre.shift, pre.scale
    )  # labels as stored: none
    inputs, _ = program.prepare_batch(data, data.x, data.y)
    # on the device: numpy inputs would make the first layer's matrix product numpy's, rounded
    # otherwise than XLA's (training's, evaluation's and an exported model's) by a few ulps
    outputs = np.asarray(jax.device_get(program.apply(state.params, state.model_state, jax.numpy.asarray(inputs))))
    decide = output_class(spec)  # None only for a regression loss, which has no classes either
    classes = decide(outputs).reshape(len(x)) if num_classes(spec) and decide is not None else None
    return outputs, classes, pre.class_names


# -- a sweep's members: --member best | K | NAME | ensemble ----------------------------------------------

ENSEMBLE = "ensemble"  # --member's word for every finished member together (`evaluate_ensemble`, `predict_ensemble`)


class SweepMember(NamedTuple):
    """One member of a sweep directory, as `--member` names it."""

    name: str  # its directory name, as sweep.json lists it (its values: `learning_rate=0.1,seed=2`)
    run_dir: Path  # <sweep dir>/<name>: an ordinary run directory
    position: int  # 1-based, in sweep.json's order (a grid's, its last key varying fastest): what `--member K` counts
    total: int  # how many members the sweep has
    rank: int | None  # 1-based, in the sweep's result.json (1 is `best`); None when it has no ranking
    ranked_by: str | None  # what the ranking judged, "the last training step's loss"; None without one


class EnsembleEvaluation(NamedTuple):
    """`evaluate_ensemble`'s figures on one split, each a {metric tag: mean over the split}."""

    split: str  # "test", "validation" or "train"
    ensemble: dict[str, float]  # the ensemble's own: its averaged probabilities against the labels
    mean: dict[str, float]  # the mean over the members of their own figures, tag by tag
    members: dict[str, dict[str, float]]  # each member's own figures (`evaluate_run`'s), in sweep.json's order


def is_sweep(path: str | Path) -> bool:
    """Whether `path` is a sweep directory (it holds sweep.json), not a run directory."""
    return (Path(path) / SWEEP_FILE).is_file()


def sweep_member(sweep_dir: str | Path, member: str | int = "best") -> SweepMember:
    """The finished member of the sweep in `sweep_dir` that `member` names, for `evaluate_run` and
    `predict_run` of its `run_dir`:

    - "best": rank 1 of the sweep's result.json, chosen on the validation split's figure, else the
      training data's, never the test split's (`netspec.training.sweep.selection`);
    - K, an int or its digits: the K-th member in sweep.json's order, counting from 1 (the order
      `netspec.load_sweep` gives them: a grid's, its last key varying fastest; not the rank);
    - a member's name, its directory name (`learning_rate=0.1,seed=2`).

    Raises NetspecError for a damaged sweep.json or result.json, a K out of range, a name the sweep
    does not have (with the closest one), a member that failed or did not finish (resume the sweep,
    or choose another), "best" without result.json (the sweep stopped before it ranked its
    members: resume it, or choose by K or name), and "ensemble" (`evaluate_ensemble`,
    `predict_ensemble`)."""
    sweep_dir = Path(sweep_dir)
    members = _members_of(sweep_dir)
    names = [m.name for m in members]
    choice = str(member).strip().rstrip("/")  # a name as a shell completes a directory: seed=1/
    choice = choice.lower() if choice.lower() in ("best", ENSEMBLE) else choice
    if choice == "best":
        ranking = _ranking(sweep_dir, names)
        if ranking is None:
            finished = [m.name for m in members if _finished(m)]
            raise NetspecError(
                f"{sweep_dir} has no result.json, the ranking of its members that --member best reads: the sweep "
                f"stopped before all {len(names)} had trained ({len(finished)} finished"
                + (f": {_listed(finished)}" if finished else "")
                + f"). Resume it with netspec resume {quoted(sweep_dir)} to train the rest and rank them all, or choose a "
                f"member yourself with --member K (1 to {len(names)}, in sweep.json's order) or its name."
            )
        chosen = next(m for m in members if m.rank == 1)
    elif choice == ENSEMBLE:
        raise NetspecError(
            f"--member {ENSEMBLE} is every finished member of {sweep_dir} together, not one of them: from Python, "
            "call netspec.inference.evaluate_ensemble or predict_ensemble."
        )
    elif choice.isascii() and choice.isdigit():
        k = int(choice)
        if not 1 <= k <= len(members):
            raise NetspecError(
                f"--member {choice}: the sweep {sweep_dir} has {len(members)} members, so K is 1 to {len(members)} "
                f"(counting from 1, in sweep.json's order: 1 is {names[0]}, {len(names)} is {names[-1]}); "
                "--member best is the one its ranking puts first."
            )
        chosen = members[k - 1]
    elif choice in names:
        chosen = members[names.index(choice)]
    else:
        from netspec.spec.messages import did_you_mean

        near = did_you_mean(choice, names)  # "; did you mean 'x'?" or ""
        raise NetspecError(
            f"--member {choice!r}: the sweep {sweep_dir} has no member of that name{near or '.'} Give best, "
            f"{ENSEMBLE}, a number K from 1 to {len(names)} (sweep.json's order) or a member's name: {_listed(names)}."
        )
    if not _finished(chosen):
        raise NetspecError(_unfinished(sweep_dir, chosen))
    return chosen


def sweep_members(sweep_dir: str | Path) -> list[SweepMember]:
    """Every member of the sweep in `sweep_dir`, finished or not, in sweep.json's order, each with
    its rank when the sweep has a result.json. Raises NetspecError for a damaged sweep.json or
    result.json."""
    return _members_of(Path(sweep_dir))


def ensemble_members(sweep_dir: str | Path, *, notice=None) -> list[SweepMember]:
    """The members of a deep ensemble of the sweep in `sweep_dir`: every finished member (its
    result.json written), in sweep.json's order; those that failed or did not finish are left out,
    said in one line to `notice`. Raises NetspecError when fewer than two finished (one is that
    member, not an ensemble), or for a damaged sweep.json or result.json."""
    sweep_dir = Path(sweep_dir)
    members = _members_of(sweep_dir)
    finished = [m for m in members if _finished(m)]
    left = [m.name for m in members if not _finished(m)]
    if not finished:
        raise NetspecError(
            f"No member of the sweep {sweep_dir} finished training ({_listed(left)}), so there is no ensemble: "
            f"resume it with netspec resume {quoted(sweep_dir)}, or see each member's result.json for why it failed."
        )
    if len(finished) == 1:  # an "ensemble" of one is that member, named as it is
        raise NetspecError(
            f"Only one member of the sweep {sweep_dir} finished training ({finished[0].name}), and an ensemble averages "
            f"two or more: use --member {finished[0].name} for it, or train the others first with netspec resume "
            f"{sweep_dir}" + (f" ({_listed(left)} did not finish)." if left else ".")
        )
    if left and notice is not None:
        notice(
            f"The ensemble of {sweep_dir} leaves out {len(left)} of its {len(members)} members, which failed or did "
            f"not finish: {_listed(left)} (netspec resume {quoted(sweep_dir)} trains them)."
        )
    return finished


def evaluate_ensemble(
    sweep_dir: str | Path, *, split: str | None = None, data_dir: str | None = None, notice=None
) -> EnsembleEvaluation:
    """`netspec eval SWEEP_DIR --member ensemble`: a deep ensemble (Lakshminarayanan et al. 2017)
    of every finished member of the sweep (`ensemble_members`) on a split (default as
    `evaluate_run`'s, decided by the first member's spec; the same for every member).

    Each member's loss input on the split (float32 [N, *output]: logits for a classification
    loss, as the loss takes them; the output itself for regression) comes from its best (else
    latest) checkpoint. The ensemble predicts the mean of the members' probabilities p̄ =
    mean_i sigmoid(z_i) (binary_crossentropy) or mean_i softmax(z_i) (the categorical losses),
    the mean of their outputs for a regression loss. Its figures are the first member's loss and
    metric functions (`netspec.model.losses`) applied to logits whose sigmoid or softmax is p̄
    (log p̄ - log(1 - p̄), or log p̄, each from a logsumexp over the members' log-probabilities, so a
    saturated member gives no infinity): `loss` is the cross-entropy of p̄ (the negative
    log-likelihood, label_smoothing applied as the members apply it) or the regression loss of the
    mean output; `accuracy` counts the class of p̄ (above one half, or the largest); top_k_accuracy
    ranks p̄; mean_squared_error and mean_absolute_error compare p̄ (the mean output) with the
    labels. The tags are those every member reports; `loss` is left out (said to `notice`) when
    the members' loss sections differ beyond from_logits (a swept label_smoothing or delta), as
    then no one loss is theirs. `mean` is the mean over the members of their own figures
    (`evaluate_run`'s, in `members`), so ensemble minus mean is what ensembling gains.

    Raises NetspecError as `evaluate_run` does for each member, when no member finished, when the
    members do not predict alike (their data source, input or output shapes, loss type or class
    names differ: a sweep over data sets), or when the split holds different examples in
    different members (a validation split that each member's seed draws)."""
    import jax.numpy as jnp

    from netspec.model.losses import encode_labels, loss_fn, metric_fns

    sweep_dir = Path(sweep_dir)
    members = ensemble_members(sweep_dir, notice=notice)
    specs = [load_run_spec(m.run_dir, recorded_data=True, notice=notice) for m in members]
    _require_alike(sweep_dir, members, specs)
    first, ref = members[0], specs[0]
    cache: dict[str, object] = {}
    split_name: str | None = split
    reference, class_names = None, []
    own: dict[str, dict[str, float]] = {}
    inputs = []
    for member, spec in zip(members, specs, strict=True):
        rundir.tidy(member.run_dir)
        arrays = _cached_arrays(spec, member.run_dir, data_dir, cache)
        split_name, chosen = _split_of(spec, arrays, split_name)
        if reference is None:
            reference, class_names = chosen, list(arrays.class_names or [])
        elif list(arrays.class_names or []) != class_names:
            raise NetspecError(
                f"The members of the sweep {sweep_dir} name their classes differently ({first.name}: "
                f"{_listed(class_names)}; {member.name}: {_listed(arrays.class_names or [])}), so their "
                "probabilities are not of the same classes and cannot be averaged. Evaluate one member at a time "
                "(--member best, K or NAME)."
            )
        elif not (np.array_equal(chosen.x, reference.x) and np.array_equal(chosen.y, reference.y)):
            then = (
                "Choose --split test, the same examples for every member, or evaluate"
                if arrays.test is not None and split_name != "test"
                else "Evaluate"
            )
            raise NetspecError(
                f"The members of the sweep {sweep_dir} hold different examples in their {split_name} split "
                f"({first.name} and {member.name}: a validation split is drawn by each member's seed, and the "
                f"training split is what it leaves), so no one {split_name} split measures the ensemble. {then} one "
                "member at a time with --member K or NAME; netspec predict --member ensemble predicts on inputs "
                "you give it."
            )
        program, state = finished_state(spec, member.run_dir, notice=notice)
        own[member.name] = _evaluated(spec, program, state, chosen, arrays)
        inputs.append(_loss_inputs(spec, program, state, chosen, arrays))
    assert reference is not None and split_name is not None
    common = [tag for tag in own[first.name] if all(tag in figures for figures in own.values())]
    mean = {tag: float(np.mean([figures[tag] for figures in own.values()])) for tag in common}
    z = _ensemble_loss_input(ref, inputs)
    y = encode_labels(ref)(jnp.asarray(reference.y))
    functions = dict(metric_fns(ref))
    losses = {json.dumps(_loss_args(spec), sort_keys=True) for spec in specs}
    if len(losses) == 1:
        functions = {"loss": loss_fn(ref), **functions}
    elif notice is not None:
        notice(
            f"The members of {sweep_dir} train with different losses ({_difference(specs, members, _loss_args, 'loss')}), "
            "so the ensemble has no loss figure of its own; the members' mean loss is still shown."
        )
    ensemble = {tag: float(jnp.mean(functions[tag](z, y))) for tag in common if tag in functions}
    return EnsembleEvaluation(split_name, ensemble, mean, own)


def predict_ensemble(
    sweep_dir: str | Path, input_path: str | Path, *, notice=None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """`netspec predict SWEEP_DIR --member ensemble`: (probabilities float32 [N, *output],
    predicted classes int32 [N] or None, class names) of a deep ensemble of every finished member
    of the sweep (`ensemble_members`) on new inputs, each member reading and scaling them as its
    own `predict_run` does. The outputs are the mean of the members' probabilities (their
    `predict_run` outputs, after a sigmoid or softmax where a member's loss has from_logits: true,
    whose own outputs are logits), or of their outputs for a regression loss; the class is that of
    the mean, as `output_class` decides it for probabilities: above one half per unit for
    binary_crossentropy, else the largest (the first of equals); None where `predict_run` has none.
    Notes (a CSV read by name, a checkpoint passed over, members left out) go to `notice`, each
    once. Needs only the run directories. Raises NetspecError as `predict_run` does, when no
    member finished, or when the members do not predict alike (their data source, input or output
    shapes, loss type or class names differ)."""
    from netspec.model.losses import num_classes

    sweep_dir = Path(sweep_dir)
    members = ensemble_members(sweep_dir, notice=notice)
    specs = [load_run_spec(m.run_dir, recorded_data=True, notice=notice) for m in members]
    _require_alike(sweep_dir, members, specs)
    said: set[str] = set()

    def once(text: str) -> None:
        if notice is not None and text not in said:
            said.add(text)
            notice(text)

    probabilities, class_names = [], None
    for member, spec in zip(members, specs, strict=True):
        outputs, _, names = _predicted(spec, member.run_dir, input_path, notice=once)
        if class_names is None:
            class_names = names
        elif names != class_names:
            raise NetspecError(
                f"The members of the sweep {sweep_dir} name their classes differently ({members[0].name}: "
                f"{_listed(class_names)}; {member.name}: {_listed(names)}), so their probabilities are not of the "
                "same classes and cannot be averaged. Predict with one member instead (--member best, K or NAME)."
            )
        probabilities.append(_probabilities(spec, outputs))
    mean = np.mean(probabilities, axis=0).astype(np.float32)
    ref = specs[0]
    kind = LOSS_KINDS[ref.loss["type"]]
    classes = None
    if num_classes(ref) and kind.classification:
        classes = (mean > 0.5).astype(np.int32) if kind.targets == "binary" else mean.argmax(-1).astype(np.int32)
        classes = classes.reshape(len(mean))
    return mean, classes, class_names or []


def _members_of(sweep_dir: Path) -> list[SweepMember]:
    """sweep.json's members, each with its rank in result.json when there is one."""
    path = sweep_dir / SWEEP_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        names = [m["name"] for m in record["members"]]
        bad = next((n for n in names if not isinstance(n, str) or n in ("", ".", "..") or "/" in n or "\0" in n), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a member's directory name")
        if not names or len(set(names)) != len(names):
            raise ValueError("no members" if not names else "a member listed twice")
    except FileNotFoundError:
        raise NetspecError(f"{sweep_dir} is not a sweep directory: it has no {SWEEP_FILE}.") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else str(getattr(e, "strerror", None) or e)
        raise NetspecError(
            f"{path}, the sweep's list of its members, is damaged ({detail}), so --member cannot find them; each "
            f"member's run directory in {sweep_dir} can still be used on its own (netspec eval {quoted(sweep_dir)}/<member>)."
        ) from None
    ranking = _ranking(sweep_dir, names)
    ranks, ranked_by = ({}, None) if ranking is None else ranking
    return [
        SweepMember(name, sweep_dir / name, i, len(names), ranks.get(name), ranked_by)
        for i, name in enumerate(names, 1)
    ]


def _ranking(sweep_dir: Path, names: list[str]) -> tuple[dict[str, int], str] | None:
    """({member: rank}, what the ranking judged) from the sweep's result.json; None when it has none."""
    path = sweep_dir / "result.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        ranks = {row["member"]: int(row["rank"]) for row in table["members"]}
        if set(ranks) != set(names) or sorted(ranks.values()) != list(range(1, len(names) + 1)):
            raise ValueError(f"it does not rank the {len(names)} members {SWEEP_FILE} lists")
        selection = table["selection"]
        where = "validation split's" if selection["split"] == "validation" else "last training step's"
        return ranks, f"the {where} {selection['tag']}"
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else str(getattr(e, "strerror", None) or e)
        raise NetspecError(
            f"{path}, the ranking of the sweep's members, is damaged ({detail}). netspec resume {quoted(sweep_dir)} ranks "
            "them again (it trains nothing when every member has finished); meanwhile choose a member with "
            "--member K or its name."
        ) from None


def _finished(member: SweepMember) -> bool:
    """A member whose training ended: its run wrote result.json (as the sweep judges it)."""
    return (member.run_dir / "result.json").is_file()


def _unfinished(sweep_dir: Path, member: SweepMember) -> str:
    why = "did not finish"
    try:
        table = json.loads((sweep_dir / "result.json").read_text(encoding="utf-8"))
        row = next(r for r in table["members"] if r["member"] == member.name)
        if row.get("status") == "failed" and isinstance(row.get("error"), str):
            error = row["error"].strip().rstrip(".")
            # a long paragraph is cut after its last whole word within 300 characters
            why = f"failed ({error if len(error) <= 300 else error[:300].rsplit(' ', 1)[0] + ' ...'})"
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        pass
    try:
        finished = [m.name for m in _members_of(sweep_dir) if _finished(m)]
    except NetspecError:
        finished = []
    if not finished:
        other = "; no member of it has finished yet"
    elif (sweep_dir / "result.json").is_file():
        other = f", or choose a member that finished (--member best, or one of {_listed(finished)})"
    else:  # unranked: no best yet
        other = f", or choose a member that finished: {_listed(finished)}"
    return (
        f"Member {member.name} ({member.position} of {member.total}) of the sweep {sweep_dir} {why}, so it has no "
        f"finished model to use. Resume the sweep with netspec resume {quoted(sweep_dir)} to train it{other}."
    )


def _listed(names, most: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _loss_args(spec: Spec) -> dict:
    """The loss section without from_logits, which says only where the sigmoid or softmax is."""
    return {k: v for k, v in plain(spec.loss).items() if k != "from_logits"}


def _data_source(spec: Spec) -> dict:
    """What a member's examples are, beyond how many it holds out, limits or scales: its source and
    that source's settings (files, keys, columns, inline values), and where relative paths start."""
    from netspec.data.arrays import source_of

    source = source_of(spec.data)
    return {"data": {source: plain(spec.data[source])}, "base_dir (run.json)": spec.base_dir}


def _require_alike(sweep_dir: Path, members: list[SweepMember], specs: list[Spec]) -> None:
    """Refuse an ensemble whose members do not predict the same thing from the same inputs."""
    aspects = (
        ("their data", _data_source, ""),
        ("their input shapes", lambda s: list(s.input_shape), "model.input"),
        ("their output shapes", lambda s: list(s.output_shape), "the output shape"),
        ("their losses", lambda s: s.loss["type"], "loss.type"),
    )
    for what, of, key in aspects:
        if any(of(spec) != of(specs[0]) for spec in specs[1:]):
            raise NetspecError(
                f"The members of the sweep {sweep_dir} cannot form an ensemble: it averages the members' predicted "
                f"probabilities, example by example, so every member must predict the same thing from the same "
                f"inputs, and {what} differ ({_difference(specs, members, of, key)}). Evaluate or predict with one "
                "member instead (--member best, K or NAME). Members may differ in anything else a sweep sets: "
                "units, layers, optimizer, seed, the validation split, the scaling."
            )


def _difference(specs: list[Spec], members: list[SweepMember], of, key: str) -> str:
    """Where the first member that differs from the first member does, by key path:
    'data.npz.path: a.npz in A, b.npz in B'."""
    other = next(i for i, spec in enumerate(specs) if of(spec) != of(specs[0]))
    a, b, path = of(specs[0]), of(specs[other]), key
    while isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b):
        k = next(k for k in a if a[k] != b[k])
        a, b, path = a[k], b[k], f"{path}.{k}" if path else k
    if isinstance(a, dict) and isinstance(b, dict):  # another source: name it
        a, b = ", ".join(a), ", ".join(b)

    def shown(value) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."

    return f"{path}: {shown(a)} in {members[0].name}, {shown(b)} in {members[other].name}"


def _cached_arrays(spec: Spec, run_dir: Path, data_dir: str | None, cache: dict):
    """`_run_arrays`, read once for the members whose data reads alike (the same source, scaling,
    limit and held-out examples)."""
    key = json.dumps([plain(spec.data), spec.base_dir, spec.seed if spec.data.get("validation_split") else None])
    if key not in cache:
        cache[key] = _run_arrays(spec, run_dir, data_dir)
    return cache[key]


def _loss_inputs(spec: Spec, program, state, chosen, arrays) -> np.ndarray:
    """What the member's loss takes for each example of `chosen`, float32 [N, *output]: the
    logits of a classification loss (`model.network` with logits=True, as training computes
    them), the output itself for a regression loss. In evaluation mode, in eval.batch_size
    batches, the inputs scaled as training scaled them."""
    import jax
    import jax.numpy as jnp

    from netspec.model.network import network

    _, net_apply = network(spec.layers, conv=program.conv)
    logits = spec.fused_loss or spec.from_logits
    compute = jnp.dtype(spec.precision.compute)
    data, _ = padded(chosen, arrays, spec.eval["batch_size"])

    @jax.jit
    def forward(params, model_state, data):
        def one(carry, batch):
            x, _ = program.prepare_batch(data, *batch)
            out, _ = net_apply(
                params, model_state, x.astype(compute), train=False, key=program.keys.step, logits=logits
            )
            return carry, out.astype(jnp.float32)

        return jax.lax.scan(one, None, (data.x, data.y))[1]

    out = np.asarray(jax.device_get(forward(state.params, state.model_state, data)))
    return out.reshape((-1, *out.shape[2:]))[: len(chosen.x)]


def _ensemble_loss_input(spec: Spec, inputs: list[np.ndarray]):
    """The ensemble's loss input from its members' (`_loss_inputs`): logits whose sigmoid or
    softmax is the members' mean probability, or the mean output (regression)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    z = jnp.stack([jnp.asarray(x) for x in inputs])  # [members, N, *output]
    kind = LOSS_KINDS[spec.loss["type"]]
    if not kind.classification:
        return z.mean(0)
    log_m = jnp.log(float(len(inputs)))
    if kind.targets == "binary":  # log p̄ and log(1 - p̄), each a log of a mean of sigmoids
        log_p = logsumexp(jax.nn.log_sigmoid(z), axis=0) - log_m
        log_q = logsumexp(jax.nn.log_sigmoid(-z), axis=0) - log_m
        return log_p - log_q
    return logsumexp(jax.nn.log_softmax(z, axis=-1), axis=0) - log_m  # log p̄: its softmax is p̄


def _probabilities(spec: Spec, outputs: np.ndarray) -> np.ndarray:
    """A member's `predict_run` outputs as probabilities: a from_logits member's logits through
    their sigmoid or softmax; the outputs of any other member as they are (a fused output is
    already its probabilities; a regression output is averaged as it is)."""
    import jax

    kind = LOSS_KINDS[spec.loss["type"]]
    if not (kind.classification and spec.from_logits):
        return outputs
    squash = jax.nn.sigmoid if kind.targets == "binary" else jax.nn.softmax
    return np.asarray(squash(outputs), np.float32)
