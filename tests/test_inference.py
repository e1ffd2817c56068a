"""Using a finished run: `netspec predict` finds CSV columns by name, `netspec eval` and `netspec
predict` on a damaged run directory end in one paragraph naming the file (never a traceback) or,
for a damaged latest checkpoint, use the one before it and say so in one line, predict needs
only the run directory, and evaluation, `netspec predict` and the closing report decide the same
class for every loss.

Runs are tiny (inline XOR-sized data or a CSV of a few rows, a step or twenty) and trained once
per module; each test reads them through the real command line (click's CliRunner).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import assert_one_paragraph, damage, netspec

from netspec.inference import predict_run
from netspec.spec import choices as R
from netspec.spec.check import check
from netspec.spec.load import load
from netspec.training.feed import load_arrays, padded, split_means
from netspec.training.loop import RunResult, run
from netspec.training.report import report
from netspec.training.rundir import load_run_spec


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.output and "failed unexpectedly" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def train(tmp: Path, spec_text: str, name: str = "spec.yaml") -> Path:
    """Train a spec written into `tmp`; returns its run directory."""
    (tmp / name).write_text(spec_text)
    return run(check(load(tmp / name)), logdir=tmp / "runs", quiet=True).run_dir


QUIET = "summaries: {every: 10, histograms: [], graph: false}\n"


# -- predict reads CSV columns by name --------------------------------------------------------------

# The training table has a column that is no feature (c), the label in the middle, and the spec
# takes the features in an order of its own: b, then a.
TRAINING_CSV = "a,label,b,c\n0,0,0,7\n0,1,1,7\n1,1,0,7\n1,0,1,7\n"
CSV_SPEC = (
    """\
name: by_name
data:
  csv: {path: table.csv, label: label, features: [b, a]}
  scale: standardize
model:
  input: [2]
  layers:
    - {name: hidden, type: dense, units: 8, activation: tanh}
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: adam, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
"""
    + QUIET
)

XOR_SPEC = (
    """\
name: xor_inline
data:
  inline: {x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]}
model:
  input: [2]
  layers:
    - {name: hidden, type: dense, units: 8, activation: tanh}
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: adam, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
"""
    + QUIET
)

POINTS = [(0.0, 1.0), (1.0, 1.0), (0.5, 0.0)]  # (a, b) of each example asked about


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A run trained on TRAINING_CSV, and its outputs for POINTS read from a file in training order."""
    tmp = tmp_path_factory.mktemp("csv-run")
    (tmp / "table.csv").write_text(TRAINING_CSV)
    run_dir = train(tmp, CSV_SPEC)
    reference = tmp / "reference.csv"
    reference.write_text("b,a\n" + "".join(f"{b},{a}\n" for a, b in POINTS))
    result = netspec("predict", run_dir, "--input", reference)
    assert result.exit_code == 0 and not result.stderr, result.output
    return run_dir, outputs_of(result.stdout)


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("inline-run"), XOR_SPEC)


def outputs_of(stdout: str) -> np.ndarray:
    lines = stdout.strip().splitlines()
    assert lines[0] == "prediction,output_0", lines
    return np.array([float(line.split(",")[1]) for line in lines[1:]])


def test_the_run_records_the_feature_names_in_the_specs_order(csv_run):
    run_dir, _ = csv_run
    with np.load(run_dir / "preprocess.npz", allow_pickle=False) as pre:
        assert list(pre["feature_names"]) == ["b", "a"]
        assert pre["shift"].shape == (2,)  # standardized per feature, in that order


@pytest.mark.parametrize(
    "features, header, names",
    [
        (None, True, ("a", "b", "c")),  # every column but the label, in file order
        (["c", "a"], True, ("c", "a")),  # a subset, in its own order
        ([2, 0], True, ("b", "a")),  # by index: the header's names
        ([2, 0], False, None),  # no header: no names
    ],
)
def test_data_load_names_the_features_it_took(tmp_path, features, header, names):
    from netspec.data.arrays import load as load_data

    text = TRAINING_CSV if header else TRAINING_CSV.split("\n", 1)[1]
    (tmp_path / "t.csv").write_text(text)
    label = "label" if header else 1
    arrays = load_data(
        {"csv": {"path": "t.csv", "label": label, "features": features, "header": header, "delimiter": ","}},
        tmp_path,
        seed=0,
    )
    assert arrays.feature_names == names
    if names is not None:  # x's columns are those names' columns
        table = [line.split(",") for line in TRAINING_CSV.strip().splitlines()]
        columns = [table[0].index(n) for n in names]
        np.testing.assert_array_equal(arrays.train.x, np.array([[float(row[c]) for c in columns] for row in table[1:]]))


def write_points(path: Path, header: str | None, row) -> Path:
    """POINTS as a CSV: `header` (or none), each line `row(a, b)`."""
    path.write_text(("" if header is None else header + "\n") + "".join(row(a, b) + "\n" for a, b in POINTS))
    return path


BY_NAME = {  # case -> (header, row(a, b), exit code, words on stderr (empty: no stderr at all))
    "reordered": ("a,b", lambda a, b: f"{a},{b}", 0, ()),
    "extra_columns": ("id,b,species,a,more", lambda a, b: f"7,{b},cat,{a},1e9", 0, ()),
    "header_with_spaces": (" a , b ", lambda a, b: f"{a},{b}", 0, ()),
    "no_header": (None, lambda a, b: f"{b},{a}", 0, ("no header", "training order: b, a")),
    "missing_column": ("a,bee", lambda a, b: f"{a},{b}", 1, ("no column 'b'", "'a', 'bee'", "by name")),
    "no_header_too_many_columns": (
        None,
        lambda a, b: f"{b},{a},1",
        1,
        ("3 columns and no header", "2 features", "'b', 'a'"),
    ),
    "text_in_a_feature": ("a,b", lambda a, b: f"{a},x{b}", 1, ("not a number",)),
}


@pytest.mark.parametrize("case", sorted(BY_NAME))
def test_predict_picks_csv_columns_by_name(csv_run, tmp_path, case):
    run_dir, expected = csv_run
    header, row, code, words = BY_NAME[case]
    result = netspec("predict", run_dir, "--input", write_points(tmp_path / "x.csv", header, row))
    assert_no_traceback(result)
    assert result.exit_code == code, result.output
    if code == 1:
        assert_one_paragraph(result, "x.csv", *words)
        return
    np.testing.assert_array_equal(outputs_of(result.stdout), expected)  # the same features, whatever the file's order
    if words:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line says how the columns were taken
        for word in words:
            assert word in result.stderr, (word, result.stderr)
    else:
        assert result.stderr == "", result.stderr


def test_a_header_on_a_run_without_names_is_ignored_and_said(inline_run, tmp_path):
    ordered = netspec(
        "predict", inline_run, "--input", write_points(tmp_path / "plain.csv", None, lambda a, b: f"{a},{b}")
    )
    assert ordered.exit_code == 0 and ordered.stderr == "", ordered.output
    result = netspec("predict", inline_run, "--input", write_points(tmp_path / "x.csv", "b,a", lambda a, b: f"{a},{b}"))
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    assert result.stdout == ordered.stdout  # taken in order: the names are not used
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in ("x.csv", "header (b, a) was ignored", "inline data, which names no features", "in order"):
        assert word in result.stderr, (word, result.stderr)


def test_a_run_of_an_older_netspec_takes_csv_columns_in_order(csv_run, tmp_path):
    """A run directory written before feature names were recorded: its columns are taken in order."""
    run_dir, expected = csv_run
    older = tmp_path / "older"
    shutil.copytree(run_dir, older)
    with np.load(run_dir / "preprocess.npz", allow_pickle=False) as pre:
        np.savez(older / "preprocess.npz", shift=pre["shift"], scale=pre["scale"], class_names=pre["class_names"])
    result = netspec("predict", older, "--input", write_points(tmp_path / "x.csv", "b,a", lambda a, b: f"{b},{a}"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(outputs_of(result.stdout), expected)
    assert "header (b, a) was ignored" in result.stderr and "older netspec" in result.stderr, result.stderr


# -- eval and predict on a damaged run directory ----------------------------------------------------


def _checkpoint(run_dir: Path) -> Path:
    (path,) = (run_dir / "checkpoints").glob("step-*.safetensors")
    return path


FILES = {  # damaged file -> its path in a run directory
    "spec.yaml": lambda run_dir: run_dir / "spec.yaml",
    "run.json": lambda run_dir: run_dir / "run.json",
    "preprocess.npz": lambda run_dir: run_dir / "preprocess.npz",
    "checkpoint": _checkpoint,
}


WORDS = {  # damaged file -> words its paragraph holds besides the file's name
    "spec.yaml": ("TensorBoard", "save that text as spec.yaml"),
    "run.json": ("base_dir", "Write it again"),
    "preprocess.npz": ("netspec eval still works",),
    "checkpoint": ("checkpoint", "netspec run"),
}


@pytest.fixture(scope="module")
def damageable_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("damaged")
    (tmp / "table.csv").write_text(TRAINING_CSV)
    run_dir = train(tmp, CSV_SPEC)
    write_points(tmp / "points.csv", "a,b", lambda a, b: f"{a},{b}")
    return run_dir, tmp / "points.csv"


COMMANDS = {
    "eval": lambda run_dir, points: ("eval", run_dir, "--split", "train"),
    "predict": lambda run_dir, points: ("predict", run_dir, "--input", points),
}


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "garbage_text"])
@pytest.mark.parametrize("file", sorted(FILES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_run_directory_is_one_paragraph(damageable_run, tmp_path, command, file, how):
    original, points = damageable_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    target = FILES[file](run_dir)
    damage(target, how)
    result = netspec(*COMMANDS[command](run_dir, points))
    assert_no_traceback(result)
    if (
        command == "eval" and file == "preprocess.npz"
    ):  # eval scales the training data itself: it needs no preprocess.npz
        assert result.exit_code == 0 and result.stdout.startswith("accuracy"), result.output
        return
    named = "step-" if file == "checkpoint" and how != "missing" else ("checkpoint" if file == "checkpoint" else file)
    assert_one_paragraph(result, named, *WORDS[file])


def test_a_checkpoint_of_another_model(damageable_run, tmp_path):
    original, points = damageable_run
    (tmp_path / "table.csv").write_text(TRAINING_CSV)
    other = train(tmp_path, CSV_SPEC.replace("units: 8", "units: 5"), name="other.yaml")
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    shutil.copy(_checkpoint(other), _checkpoint(run_dir))
    for command in sorted(COMMANDS):
        result = netspec(*COMMANDS[command](run_dir, points))
        assert_one_paragraph(result, _checkpoint(run_dir).name, "does not fit", "another run", "netspec run")


def test_a_damaged_checkpoint_is_passed_over_for_the_one_before(damageable_run, tmp_path):
    original, points = damageable_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    latest = _checkpoint(run_dir)
    older = latest.with_name("step-00000010.safetensors")
    shutil.copy(latest, older)
    want = netspec("predict", run_dir, "--input", points)
    damage(latest, "truncated")
    result = netspec("predict", run_dir, "--input", points)
    assert result.exit_code == 0, result.output
    assert result.stdout == want.stdout  # the same parameters, from the one before
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # said in one line
    for word in (latest.name, "damaged", f"using {older.name} instead"):
        assert word in result.stderr, (word, result.stderr)


def test_training_data_gone_is_said_so_by_eval_and_predict_needs_none(damageable_run, tmp_path):
    """Not damage: eval reads the split from the data files, and the data moved; predict needs
    only the run directory (the spec is checked against the data as the run recorded it)."""
    original, points = damageable_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    (tmp_path / "elsewhere").mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec_source": "spec.yaml", "base_dir": str(tmp_path / "elsewhere")}))
    result = netspec(*COMMANDS["eval"](run_dir, points))
    message = assert_one_paragraph(
        result,
        "training data",
        str(tmp_path / "elsewhere" / "table.csv"),
        "Put the data back",
        "netspec predict needs only the run directory",
    )
    assert "damaged" not in message, message
    predicted = netspec(*COMMANDS["predict"](run_dir, points))
    assert predicted.exit_code == 0 and predicted.stderr == "", predicted.output
    assert predicted.stdout == netspec(*COMMANDS["predict"](original, points)).stdout


def test_a_bad_set_on_resume_is_still_the_users_mistake(damageable_run):
    """Only problems in spec.yaml are damage; a --set problem is reported as for any spec."""
    original, _ = damageable_run
    result = netspec("resume", original, "--set", "train.steps=-5")
    assert result.exit_code == 1 and "damaged" not in result.output, result.output
    assert "--set train.steps=-5" in result.stderr
    assert_no_traceback(result)


# -- evaluation, predict and the report decide the same class, for every loss --------------------

# The model is one dense layer whose kernel is set to the identity and bias to 0 after training,
# so its logits are exactly the inputs: the boundary cases below reach every decision as written.
BINARY_LOGITS = [-3.0, -0.12, -1e-8, 0.0, 1e-8, 0.1, 0.12, 3.0]  # with a sigmoid, 0 and +-1e-8 give exactly 0.5
CATEGORICAL_LOGITS = [
    [0, 0, 0],
    [0, 1e-8, 0],
    [1, 1, 0],
    [0.1, 0.12, -2],
    [-1, 2, 0.5],
    [3, -3, 2.999],
    [0, 0, 1e-8],
    [-5, -5, -5],
]
MULTI_LABEL_LOGITS = [[-1e-8, 1e-8], [0, 0], [0.1, -0.1], [2, 0.12]]


def loss_cases():
    """(id, loss mapping, output activation, logits) for every loss in the registry, with and
    without from_logits where it has the choice, and binary_crossentropy over several units."""
    for name, fields in R.LOSSES.items():
        logits = BINARY_LOGITS if name == "binary_crossentropy" else CATEGORICAL_LOGITS
        fused = R.FUSED_ACTIVATION.get(name)
        if fused is None:
            yield name, {"type": name}, "linear", logits
            continue
        assert "from_logits" in fields
        yield name, {"type": name}, fused, logits
        yield f"{name}-from_logits", {"type": name, "from_logits": True}, "linear", logits
    yield "binary_crossentropy-2_units", {"type": "binary_crossentropy"}, "sigmoid", MULTI_LABEL_LOGITS
    yield (
        "binary_crossentropy-2_units-from_logits",
        {"type": "binary_crossentropy", "from_logits": True},
        "linear",
        MULTI_LABEL_LOGITS,
    )


def labels_for(loss: str, logits) -> list:
    n, units = len(logits), np.shape(logits)[1] if np.ndim(logits) == 2 else 1
    if loss == "binary_crossentropy":
        return [[(i + j) % 2 for j in range(units)] for i in range(n)]
    if loss == "sparse_categorical_crossentropy":
        return [i % units for i in range(n)]
    if loss == "categorical_crossentropy":
        return [[float(j == i % units) for j in range(units)] for i in range(n)]
    return [[float((i + j) % 2) for j in range(units)] for i in range(n)]


def one_layer_spec(loss: dict, activation: str, x: np.ndarray, y: list) -> str:
    """A spec of one dense layer, as many units as x has columns, trained a step on (x, y)
    inline; accuracy (and top-1 accuracy) for a classification loss."""
    units = x.shape[1]
    metrics = "[]"
    if loss["type"] in R.FUSED_ACTIVATION:
        metrics = "[accuracy" + (", {type: top_k_accuracy, k: 1}" if units > 2 else "") + "]"
    loss_text = "{" + ", ".join(f"{k}: {str(v).lower()}" for k, v in loss.items()) + "}"
    return f"""\
name: agree
data:
  inline: {{x: {x.tolist()}, y: {y}}}
model:
  input: [{units}]
  layers:
    - {{name: out, type: dense, units: {units}, activation: {activation}}}
loss: {loss_text}
metrics: {metrics}
optimizer: {{type: sgd, learning_rate: 0.01}}
train: {{steps: 1, batch_size: {len(x)}}}
summaries: {{every: 1, histograms: [], graph: false}}
"""


TOKEN = re.compile(r"\[[^\]]*\]|\S+")


def report_predictions(spec, program, params_state, arrays) -> list[np.ndarray]:
    """The prediction column of the closing report's table."""
    lines = []
    result = RunResult(Path("runs/x/y"), {}, 0.0, 0.0, [])
    report(spec, program, params_state, 1, arrays, result, lines.append)
    assert lines[0].split() == ["input", "hypothesis", "prediction", "target"], lines
    rows = [TOKEN.findall(line) for line in lines[1 : 1 + len(arrays.train.x)]]
    return [np.array(row[2].strip("[]").split(), np.float64) for row in rows]


@pytest.mark.parametrize("case", list(loss_cases()), ids=lambda case: case[0])
def test_evaluation_predict_and_the_report_agree(tmp_path, case):
    import jax.numpy as jnp

    from netspec.compile.program import compile_spec
    from netspec.data.arrays import Split
    from netspec.model.losses import num_classes, output_class
    from netspec.training import checkpoint

    _, loss, activation, logits = case
    x = np.asarray(logits, np.float32).reshape(len(logits), -1)
    units = x.shape[1]
    y = labels_for(loss["type"], logits)
    classification = loss["type"] in R.FUSED_ACTIVATION
    run_dir = train(tmp_path, one_layer_spec(loss, activation, x, y))
    spec = load_run_spec(run_dir)
    program = compile_spec(spec)
    path = _checkpoint(run_dir)
    state = checkpoint.load(path, program.init())
    state = state._replace(params={"out": {"kernel": jnp.eye(units), "bias": jnp.zeros(units)}})
    checkpoint.save(path, state, checkpoint.metadata(path))

    arrays = load_arrays(spec)
    np.save(tmp_path / "x.npy", x)
    predicted = netspec("predict", run_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "out.npy")
    assert predicted.exit_code == 0, predicted.output
    outputs = np.load(tmp_path / "out.npy")
    reported = report_predictions(spec, program, (state.params, state.model_state), arrays)
    _, classes, _ = predict_run(run_dir, tmp_path / "x.npy")
    decide = output_class(spec)

    if not classification:  # a regression model's prediction is its output; there are no classes
        assert decide is None and classes is None
        for row, out in zip(reported, outputs, strict=True):
            np.testing.assert_allclose(row, out.reshape(-1), rtol=1e-5)
        return
    expected = decide(outputs)
    for row, want in zip(reported, expected, strict=True):  # the report says what predict's rule says
        np.testing.assert_array_equal(row, np.reshape(want, -1))
    if num_classes(spec):
        np.testing.assert_array_equal(classes, expected.reshape(-1))
        printed = netspec("predict", run_dir, "--input", tmp_path / "x.npy")
        column = [int(line.split(",")[0]) for line in printed.stdout.strip().splitlines()[1:]]
        assert column == classes.tolist()
    else:
        assert classes is None  # several yes/no units: no one class to print

    # evaluation, one example at a time: its confusion matrix names the class it decided
    truth = np.asarray(y).argmax(-1) if loss["type"] == "categorical_crossentropy" else np.asarray(y)
    for i in range(len(x)):
        one = Split(arrays.train.x[i : i + 1], arrays.train.y[i : i + 1])
        means, confusion = split_means(program.evaluate(state.params, state.model_state, *padded(one, arrays, 1)))
        if confusion is not None:
            assert int(np.asarray(confusion).sum(0).argmax()) == int(expected.reshape(len(x), -1)[i, 0]), (
                i,
                x[i],
                confusion,
            )
        agree = np.mean(np.reshape(expected[i], -1) == np.reshape(truth[i], -1))
        assert means["accuracy"] == pytest.approx(agree), (i, x[i], means)
        if "top_1_accuracy" in means:
            assert means["top_1_accuracy"] == means["accuracy"], (i, x[i], means)
    evaluated = netspec("eval", run_dir, "--split", "train")
    words = evaluated.stdout.split()
    accuracy = float(words[words.index("accuracy") + 1])
    assert accuracy == pytest.approx(
        np.mean(np.reshape(expected, (len(x), -1)) == np.reshape(truth, (len(x), -1))), abs=1e-6
    )


def test_the_rule_itself_at_the_boundaries():
    """What a loss's output means, stated once: a probability above 0.5, a logit above 0, the first
    of equal largest outputs; numpy and jax alike."""
    import jax.numpy as jnp

    from netspec.model.losses import output_class
    from netspec.spec.load import parse

    def spec_of(loss, activation, units):
        y = labels_for(loss["type"], [[0] * units] * 3)
        return check(parse(one_layer_spec(loss, activation, np.zeros((3, units), np.float32), y), "rule.yaml"))

    cases = [
        (spec_of({"type": "binary_crossentropy"}, "sigmoid", 1), [[0.5], [0.5000001], [0.4999999]], [[0], [1], [0]]),
        (
            spec_of({"type": "binary_crossentropy", "from_logits": True}, "linear", 1),
            [[0.0], [1e-8], [-1e-8], [0.1]],
            [[0], [1], [0], [1]],
        ),
        (
            spec_of({"type": "sparse_categorical_crossentropy"}, "softmax", 3),
            [[0.2, 0.4, 0.4], [0.5, 0.2, 0.3]],
            [1, 0],
        ),
        (
            spec_of({"type": "categorical_crossentropy", "from_logits": True}, "linear", 3),
            [[0, 0, 0], [-1, 0, 1e-8]],
            [0, 2],
        ),
    ]
    for spec, outputs, classes in cases:
        for xp in (np, jnp):
            got = output_class(spec)(xp.asarray(outputs, np.float32))
            np.testing.assert_array_equal(np.asarray(got), np.asarray(classes))
            assert np.asarray(got).dtype == np.int32
    assert output_class(spec_of({"type": "mean_squared_error"}, "linear", 1)) is None


def _hostile_input(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(tmp_path / "in.csv")
        return tmp_path / "in.csv"
    if kind == "device":
        (tmp_path / "in.npy").symlink_to("/dev/zero")
        return tmp_path / "in.npy"
    if kind == "lying_npy":  # a header of 2**40 rows over 16 bytes of data
        path = tmp_path / "in.npy"
        np.save(path, np.zeros((2, 2), np.float32))
        raw = path.read_bytes().replace(b"(2, 2)", b"(1099511627776, 2)")
        path.write_bytes(raw)
        return path
    if kind == "long_line":
        path = tmp_path / "in.csv"
        with open(path, "w") as f:
            f.write("1," * 5_000_000 + "1\n")
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("fifo", ("FIFO",)),
        ("device", ("/dev/zero",)),
        ("lying_npy", ("header says", "1099511627776")),
        ("long_line", ("a line of more than",)),
    ],
)
def test_predict_refuses_a_hostile_input_file_in_one_paragraph(inline_run, tmp_path, kind, words):
    result = netspec("predict", str(inline_run), "--input", str(_hostile_input(tmp_path, kind)))
    assert_one_paragraph(result, *words)
