"""A resume continues the same run (netspec/resumption.py): every kind of change to the spec, by
--set or by editing the run's spec.yaml, is refused with the difference listed (exit 1, no
traceback, the run directory untouched), allowed (the run's length, where the data is, how the
computation is laid out), or allowed only with --allow-setting-changes and then recorded in
changes.json, ran.json, spec.yaml and TensorBoard. Also: a damaged run directory on resume, a
damaged latest checkpoint passed over for the one before it (resume, eval, predict), and predict
on a run whose training data has moved.

Runs are tiny XOR-sized ones, trained once per module and copied for each test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import README, accumulator, assert_one_paragraph, cli, damage, netspec, write

from netspec.spec.check import check
from netspec.spec.load import load
from netspec.spec.schema import SCHEMA
from netspec.training import checkpoint, resumption
from netspec.training import loop as T
from netspec.training.rundir import LOCK_FILE

# 8 examples in batches of 4 (so a validation split leaves a batch), SGD with momentum and
# clipping (so changing their values is a setting, not a new optimizer state), a checkpoint at
# steps 10 and 20.
XOR = """\
name: xor
seed: 0
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0], [0], [1], [1], [0]]
model:
  input: [2]
  defaults: {activation: sigmoid}
  layers:
    - {name: layer1, type: dense, units: 4}
    - {name: output, type: dense, units: 1}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.5, momentum: 0.5, clip_global_norm: 10}
train: {steps: 20, batch_size: 4}
summaries: {every: 10, graph: false, histograms: []}
checkpoint: {every: 10}
"""
LONGER = "train.steps=30"  # the base run finished its 20 steps: every resume here trains longer


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its content, but the lock (who last held the run)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("xor")
    (tmp / "xor.yaml").write_text(XOR)
    return T.run(check(load(tmp / "xor.yaml")), logdir=tmp / "runs", quiet=True).run_dir


@pytest.fixture
def run_dir(xor_run, tmp_path) -> Path:
    """A copy of the finished XOR run of 20 steps."""
    copy = tmp_path / "run"
    shutil.copytree(xor_run, copy)
    return copy


def edit_spec(run_dir: Path, change) -> None:
    """Edit the run's spec.yaml by hand: `change(mapping)`."""
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    change(spec)
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def add_dropout(spec):
    spec["model"]["layers"].insert(1, {"name": "drop", "type": "dropout", "rate": 0.5})


def set_units(spec):
    spec["model"]["layers"][0]["units"] = 5


def set_learning_rate(spec):
    spec["optimizer"]["learning_rate"] = 0.1


# -- the kinds of change ---------------------------------------------------------------------------

# case -> (--set values or a hand edit of spec.yaml, the key the message names)
REFUSED = {
    "optimizer_type": (["optimizer.type=adam"], "$.optimizer.type: sgd -> adam"),
    "activation": (["model.layers[0].activation=tanh"], "$.model.layers[0].activation.type: sigmoid -> tanh"),
    "added_dropout_layer": (
        add_dropout,
        "$.model.layers: [layer1 (dense), output (dense)] -> [layer1 (dense), drop (dropout), output (dense)]",
    ),
    "units": (["model.layers[0].units=5"], "$.model.layers[0].units: 4 -> 5"),
    "units_edited_by_hand": (set_units, "$.model.layers[0].units: 4 -> 5"),
    "kernel_init": (["model.layers[1].kernel_init=zeros"], "$.model.layers[1].kernel_init"),
    "precision": (["precision.compute=bfloat16"], "$.precision.compute: float32 -> bfloat16"),
    "loss_scale": (["precision.loss_scale=128"], "$.precision.loss_scale: null -> 128"),
    "seed": (["seed=1"], "$.seed: 0 -> 1"),
    "batch_size": (["train.batch_size=2"], "$.train.batch_size: 4 -> 2"),
    "shuffle": (["train.shuffle=false"], "$.train.shuffle: true -> false"),
    "inline_data": (["data.inline.y=[[1], [1], [1], [0], [0], [1], [1], [0]]"], "$.data.inline.y[0][0]: 0.0 -> 1.0"),
    "loss": (["loss=mean_squared_error"], "$.loss"),
    "scale": (["data.scale=0.5"], "$.data.scale: null -> 0.5"),
    "validation_split": (["data.validation_split=0.25"], "$.data.validation_split: 0.0 -> 0.25"),
    "limit": (["data.limit=4"], "$.data.limit: null -> 4"),
    "name": (["name=other"], "$.name: xor -> other"),
}
SETTINGS = {
    "learning_rate": (["optimizer.learning_rate=0.1"], "$.optimizer.learning_rate: 0.5 -> 0.1"),
    "learning_rate_edited_by_hand": (set_learning_rate, "$.optimizer.learning_rate: 0.5 -> 0.1"),
    "momentum": (["optimizer.momentum=0.9"], "$.optimizer.momentum: 0.5 -> 0.9"),
    "nesterov": (["optimizer.nesterov=true"], "$.optimizer.nesterov: false -> true"),
    "clipping": (["optimizer.clip_global_norm=1.0"], "$.optimizer.clip_global_norm: 10.0 -> 1.0"),
    "summaries_every": (["summaries.every=5"], "$.summaries.every: 10 -> 5"),
    "histograms": (["summaries.histograms=[weights]"], "$.summaries.histograms: [] -> [weights]"),
    "checkpoint_every": (["checkpoint.every=20"], "$.checkpoint.every: 10 -> 20"),
    "checkpoint_keep": (["checkpoint.keep=1"], "$.checkpoint.keep: 3 -> 1"),
    "on_nonfinite": (["train.on_nonfinite=skip_step"], "$.train.on_nonfinite: stop -> skip_step"),
    "metrics": (["metrics=[]"], "$.metrics: [{type: accuracy}] -> []"),
    "description": (["description=trained longer"], '$.description: "" -> trained longer'),
    "eval_batch_size": (["eval.batch_size=2"], "$.eval.batch_size: 1000 -> 2"),
}
ALLOWED = {
    "steps": ([LONGER], "$.train.steps: 20 -> 30"),
    "epochs": (["train.epochs=15"], "$.train.epochs: (absent) -> 15"),  # 2 steps an epoch: 30 steps
    "devices": ([LONGER, "distribute.devices=1"], "$.distribute.devices: null -> 1"),
    "unroll": ([LONGER, "train.unroll=2"], "$.train.unroll: null -> 2"),
    "loop": ([LONGER, "train.loop=steps"], "$.train.loop: auto -> steps"),
    "conv": ([LONGER, "train.conv=native"], "$.train.conv: auto -> native"),
    "resident": ([LONGER, "data.max_resident_mb=1"], "$.data.max_resident_mb: 2048.0 -> 1.0"),
}


def change(run_dir: Path, how, *more: str) -> list[str]:
    """Apply a case's change: edit spec.yaml by hand, or return its --set arguments (with `more`)."""
    sets = list(more)
    if callable(how):
        edit_spec(run_dir, how)
    else:
        sets = list(how) + sets
    return [arg for value in sets for arg in ("--set", value)]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_change_of_meaning_is_refused_with_the_difference_listed(run_dir, case):
    how, shown = REFUSED[case]
    args = change(run_dir, how, LONGER)
    before = snapshot(run_dir)
    result = netspec("resume", run_dir, *args, "--allow-setting-changes")  # no flag lets these through
    message = assert_one_paragraph(
        result, f"Cannot resume {run_dir}", shown, "Nothing in the run directory was changed"
    )
    assert "netspec run" in message
    assert snapshot(run_dir) == before  # spec.yaml (as edited, if it was), the checkpoints, the events


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_a_setting_needs_the_flag_and_is_then_recorded(run_dir, case):
    how, shown = SETTINGS[case]
    args = change(run_dir, how, LONGER)
    before = snapshot(run_dir)
    refused = netspec("resume", run_dir, *args)
    assert_one_paragraph(refused, "without --allow-setting-changes", shown, "changes.json")
    assert snapshot(run_dir) == before

    result = netspec("resume", run_dir, *args, "--quiet", "--allow-setting-changes")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((run_dir / "changes.json").read_text())
    assert entry["step"] == 20  # the step it continued from: steps 21 on ran with the change
    recorded = {c["key"]: c for c in entry["changes"]}
    key = shown.split(":")[0]
    assert recorded[key]["kind"] == "setting"
    assert recorded["$.train.steps"] == {"key": "$.train.steps", "kind": "length", "old": 20, "new": 30}
    ran = json.loads((run_dir / "ran.json").read_text())["spec"]
    assert ran == yaml.safe_load((run_dir / "spec.yaml").read_text())  # what runs from here, in both
    assert ran["train"]["steps"] == 30
    again = netspec("resume", run_dir, "--set", "train.steps=40", "--quiet")  # the change is now what ran
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_the_length_and_the_machine_may_change(run_dir, case):
    sets, shown = ALLOWED[case]
    result = netspec("resume", run_dir, *change(run_dir, sets), "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 30
    (entry,) = json.loads((run_dir / "changes.json").read_text())
    assert shown.split(":")[0] in {c["key"] for c in entry["changes"]}


def test_the_changes_are_shown_in_tensorboard(run_dir):
    result = netspec(
        "resume", run_dir, "--set", LONGER, "--set", "optimizer.learning_rate=0.1", "--allow-setting-changes", "--quiet"
    )
    assert result.exit_code == 0, result.output
    ea = accumulator(run_dir)
    (event,) = ea.Tensors("spec_changes")
    assert event.step == 21  # the first step that ran with them
    text = event.tensor_proto.string_val[0].decode()
    assert "`$.optimizer.learning_rate`" in text and "`0.5`" in text and "`0.1`" in text and "after step 20" in text


def test_a_changed_learning_rate_is_the_one_that_trains(run_dir, tmp_path):
    """optax keeps a constant rate in the optimizer state the checkpoint holds; the resume trains
    with the rate its spec asks for, not the checkpoint's (a newcomer found the old one kept)."""
    import shutil

    unchanged = tmp_path / "unchanged"
    shutil.copytree(run_dir, unchanged)
    for directory, sets in [(run_dir, ["--set", "optimizer.learning_rate=0.1"]), (unchanged, [])]:
        result = netspec("resume", directory, "--set", LONGER, *sets, "--allow-setting-changes", "--quiet")
        assert result.exit_code == 0, result.output
    rates = {e.step: e.value for e in accumulator(run_dir).Scalars("learning_rate")}
    assert rates[20] == pytest.approx(0.5) and rates[30] == pytest.approx(0.1)
    changed, kept = (json.loads((d / "result.json").read_text())["final"] for d in (run_dir, unchanged))
    assert changed["learning_rate"] == pytest.approx(0.1) and kept["learning_rate"] == pytest.approx(0.5)
    assert changed["loss"] != kept["loss"]


def test_a_setting_that_reshapes_the_optimizer_state_is_refused_by_the_checkpoints(run_dir):
    """A schedule in place of a number adds to what optax keeps: no checkpoint can be restored
    into it, which is said, and nothing is set aside or written."""
    before = snapshot(run_dir)
    schedule = (
        "optimizer.learning_rate={type: exponential_decay, init_value: 0.5, transition_steps: 10, decay_rate: 0.5}"
    )
    result = netspec("resume", run_dir, "--set", LONGER, "--set", schedule, "--allow-setting-changes")
    assert_one_paragraph(
        result, "None of the 2 checkpoints", "shapes the optimizer's state", "schedule in place of a number"
    )
    assert snapshot(run_dir) == before


def test_every_key_of_the_spec_is_classified():
    """Each top-level key is named by a rule, so a key added to the schema is decided here, not by default."""
    named = {rule.key.split(".")[0] for rule in resumption.RULES}
    assert set(SCHEMA["properties"]) <= named, set(SCHEMA["properties"]) - named
    assert resumption.rule_for(("model", "layers", 3, "units")).kind == resumption.MEANING
    assert resumption.rule_for(("data", "npz", "path")).kind == resumption.PLACE
    assert resumption.rule_for(("data", "npz", "x_key")).kind == resumption.MEANING
    assert resumption.rule_for(("optimizer", "b1")).kind == resumption.SETTING
    assert resumption.rule_for(("no_such_key",)).kind == resumption.MEANING


def test_the_readme_says_what_each_rule_says():
    """Each rule of two keys or fewer is named in the README's Resume paragraph (the rules are
    stated in resumption.RULES; the README says them for a reader, and must not drift)."""
    readme = README.read_text()
    section = readme[readme.index("- **Resume**") : readme.index("- **Damaged files**")]
    for rule in resumption.RULES:
        if rule.key.count(".") <= 1 and rule.key != "train":  # train's own keys are each named
            assert f"`{rule.key}`" in section, rule.key
    for kind in ("allowed", "only with `--allow-setting-changes`", "refused"):
        assert kind in section, kind


@pytest.mark.parametrize(
    "path, old, new, kind",
    [
        (("checkpoint", "best"), None, "loss", resumption.SETTING),  # nothing chosen yet
        (("checkpoint", "best"), "loss", "accuracy", resumption.MEANING),  # the best so far was chosen by loss
        (("checkpoint", "best"), "loss", None, resumption.MEANING),
        (("train", "early_stopping", "metric"), "loss", "accuracy", resumption.MEANING),
        (("train", "early_stopping"), None, {"metric": "loss"}, resumption.SETTING),
    ],
)
def test_the_selection_metric_is_a_setting_until_it_has_chosen(path, old, new, kind):
    assert resumption.classify(path, old, new).kind == kind


def test_early_stopping_may_be_added_and_then_its_metric_is_fixed(run_dir, tmp_path):
    """A resume may add early stopping (nothing was chosen yet); once its metric has chosen a
    best checkpoint, another metric is refused."""
    (tmp_path / "xor.yaml").write_text(XOR + "eval: {every: 10}\n")
    held_out = T.run(
        check(load(tmp_path / "xor.yaml", ["data.validation_split=0.25"])), logdir=tmp_path / "runs", quiet=True
    ).run_dir
    added = netspec(
        "resume",
        held_out,
        "--set",
        LONGER,
        "--set",
        "train.early_stopping={metric: loss, patience: 5}",
        "--allow-setting-changes",
        "--quiet",
    )
    assert added.exit_code == 0, added.output
    (entry,) = json.loads((held_out / "changes.json").read_text())
    assert {c["key"] for c in entry["changes"]} == {"$.train.steps", "$.train.early_stopping", "$.checkpoint.best"}
    other = netspec(
        "resume", held_out, "--set", "train.steps=40", "--set", "checkpoint.best=accuracy", "--allow-setting-changes"
    )
    assert_one_paragraph(other, "$.checkpoint.best: loss -> accuracy", "best.safetensors was chosen")


# -- the data: where it is may change, what it is may not ----------------------------------------------

NPZ = XOR.replace(
    """  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0], [0], [1], [1], [0]]""",
    "  npz: {path: data.npz}",
)


def xor_arrays(flip: bool = False) -> dict:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 2, np.float32)
    y = (x[:, :1] != x[:, 1:]).astype(np.float32)
    return {"x": x, "y": 1 - y if flip else y}


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("npz")
    np.savez(tmp / "data.npz", **xor_arrays())
    (tmp / "xor.yaml").write_text(NPZ)
    return T.run(check(load(tmp / "xor.yaml")), logdir=tmp / "runs", quiet=True).run_dir


@pytest.fixture
def moved_npz_run(npz_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the npz run whose data is not where its spec says, and where the data is now."""
    run_dir = tmp_path / "run"
    shutil.copytree(npz_run, run_dir)
    (tmp_path / "elsewhere").mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec_source": "xor.yaml", "base_dir": str(tmp_path / "elsewhere")}))
    moved = tmp_path / "moved" / "data.npz"
    moved.parent.mkdir()
    np.savez(moved, **xor_arrays())
    return run_dir, moved


def test_predict_needs_only_the_run_directory(moved_npz_run, npz_run, tmp_path):
    run_dir, _ = moved_npz_run
    points = tmp_path / "points.npy"
    np.save(points, xor_arrays()["x"][:4])
    result = netspec("predict", run_dir, "--input", points)
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout == netspec("predict", npz_run, "--input", points).stdout
    evaluated = netspec("eval", run_dir, "--split", "train")  # eval reads the split itself, so it needs the data
    message = assert_one_paragraph(
        evaluated,
        "training data",
        str(tmp_path / "elsewhere" / "data.npz"),
        "Put the data back",
        "netspec predict needs only the run directory",
    )
    assert "damaged" not in message


def test_the_data_may_be_found_elsewhere_when_it_is_the_same(moved_npz_run):
    run_dir, moved = moved_npz_run
    edit_spec(run_dir, lambda spec: spec["data"]["npz"].update(path=str(moved)))
    result = netspec("resume", run_dir, "--set", LONGER, "--quiet")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((run_dir / "changes.json").read_text())
    assert {"key": "$.data.npz.path", "kind": "place", "old": "data.npz", "new": str(moved)} in entry["changes"]


def test_other_data_at_the_same_place_is_refused(moved_npz_run):
    run_dir, moved = moved_npz_run
    np.savez(moved, **xor_arrays(flip=True))  # the same shapes and label range, other labels
    edit_spec(run_dir, lambda spec: spec["data"]["npz"].update(path=str(moved)))
    before = snapshot(run_dir)
    result = netspec("resume", run_dir, "--set", LONGER)
    assert_one_paragraph(
        result, "the training data found at the data paths", "other values", "which examples the parameters learn from"
    )
    assert snapshot(run_dir) == before


# -- a damaged run directory on resume -------------------------------------------------------------

WORDS = {  # file -> what its paragraph says besides its name
    "spec.yaml": ("damaged", "save that text as spec.yaml", "ran.json"),
    "run.json": ("base_dir", "Write it again"),
    "ran.json": ("damaged", "delete it", "spec.yaml as it is"),
}


# (a missing ran.json is a run of an older netspec: test_a_run_without_ran_json_resumes_and_gets_one)
@pytest.mark.parametrize(
    "file, how",
    [
        (file, how)
        for file in sorted(WORDS)
        for how in ("missing", "truncated", "garbage", "incomplete")
        if (file, how) != ("ran.json", "missing")
    ],
)
def test_a_damaged_run_directory_on_resume_is_one_paragraph(run_dir, file, how):
    damage(run_dir / file, how)
    before = snapshot(run_dir)
    result = netspec("resume", run_dir, "--set", LONGER)
    named = "no spec.yaml" if (file, how) == ("spec.yaml", "missing") else file
    words = WORDS[file] if (file, how) != ("spec.yaml", "missing") else ("save that text as spec.yaml",)
    assert_one_paragraph(result, named, *words)
    assert snapshot(run_dir) == before


def test_a_run_without_ran_json_resumes_and_gets_one(run_dir):
    """A run of an older netspec: compared with its spec.yaml as it is, and recorded from now on."""
    (run_dir / "ran.json").unlink()
    refused = netspec("resume", run_dir, "--set", LONGER, "--set", "seed=3")
    assert_one_paragraph(refused, "$.seed: 0 -> 3", "--set, against spec.yaml")
    result = netspec("resume", run_dir, "--set", LONGER, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "ran.json").read_text())["spec"]["train"]["steps"] == 30


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage"])
def test_a_damaged_preprocess_npz_is_written_again_by_resume(run_dir, how, tmp_path):
    damage(run_dir / "preprocess.npz", how)
    result = netspec("resume", run_dir, "--set", LONGER, "--quiet")
    assert result.exit_code == 0, result.output
    assert "preprocess.npz was missing or damaged; it is written again" in result.output
    np.save(tmp_path / "x.npy", np.zeros((1, 2), np.float32))
    assert netspec("predict", run_dir, "--input", tmp_path / "x.npy").exit_code == 0


def test_a_damaged_changes_json_is_kept_aside(run_dir):
    (run_dir / "changes.json").write_text("[{not json")
    result = netspec("resume", run_dir, "--set", LONGER, "--quiet")
    assert result.exit_code == 0, result.output
    assert "changes.json.damaged" in result.output
    assert (run_dir / "changes.json.damaged").read_text() == "[{not json"
    assert len(json.loads((run_dir / "changes.json").read_text())) == 1


def test_a_set_that_does_not_fit_spec_yaml_is_the_sets_problem(run_dir):
    """Not damage: a --set value leaves a key of spec.yaml that no longer fits it (checkpoint.every
    must be a multiple of summaries.every)."""
    before = snapshot(run_dir)
    result = netspec("resume", run_dir, "--set", LONGER, "--set", "summaries.every=7", "--allow-setting-changes")
    message = assert_one_paragraph(
        result, "The --set values do not fit the run's spec.yaml", "checkpoint.every", "Set that key too"
    )
    assert "damaged" not in message, message
    assert snapshot(run_dir) == before


# -- a damaged latest checkpoint ---------------------------------------------------------------------


def other_model_checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "other.yaml").write_text(XOR.replace("units: 4", "units: 3").replace("name: xor", "name: other"))
    run = T.run(check(load(tmp_path / "other.yaml")), logdir=tmp_path / "other-runs", quiet=True)
    return run.run_dir / "checkpoints" / "step-00000020.safetensors"


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory) -> Path:
    return other_model_checkpoint(tmp_path_factory.mktemp("other"))


def spoil(path: Path, how: str, foreign: Path) -> None:
    if how == "another_model":
        shutil.copy(foreign, path)
    else:
        damage(path, how)


@pytest.mark.parametrize("how", ["truncated", "garbage", "another_model"])
def test_resume_passes_over_a_damaged_latest_checkpoint(run_dir, how, foreign_checkpoint):
    latest = run_dir / "checkpoints" / "step-00000020.safetensors"
    spoil(latest, how, foreign_checkpoint)
    spoiled = latest.read_bytes()
    result = netspec("resume", run_dir, "--set", LONGER, "--quiet")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "does not load" in line]
    assert len(notes) == 1, result.output
    assert "step-00000020.safetensors" in notes[0] and "using step-00000010.safetensors instead" in notes[0]
    assert (latest.with_name(latest.name + ".damaged")).read_bytes() == spoiled  # set aside, not deleted
    assert checkpoint.metadata(latest)["step"] == 20  # written again by the resumed run, which went on from step 10
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 30


def test_resume_with_no_checkpoint_that_loads_is_an_error(run_dir):
    for path in (run_dir / "checkpoints").glob("step-*.safetensors"):
        damage(path, "truncated")
    before = snapshot(run_dir)
    result = netspec("resume", run_dir, "--set", LONGER)
    assert_one_paragraph(
        result,
        "None of the 2 checkpoints",
        "step-00000020.safetensors: damaged",
        "step-00000010.safetensors: damaged",
        "netspec run",
    )
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("how", ["truncated", "another_model"])
def test_eval_and_predict_pass_over_a_damaged_latest_checkpoint(run_dir, command, how, foreign_checkpoint, tmp_path):
    np.save(tmp_path / "x.npy", xor_arrays()["x"][:4])
    args = {
        "eval": ("eval", run_dir, "--split", "train"),
        "predict": ("predict", run_dir, "--input", tmp_path / "x.npy"),
    }[command]
    (run_dir / "checkpoints" / "step-00000020.safetensors").unlink()  # the answer with step 10's parameters
    want = netspec(*args)
    assert want.exit_code == 0, want.output
    shutil.copytree(run_dir, tmp_path / "spoiled")
    latest = tmp_path / "spoiled" / "checkpoints" / "step-00000020.safetensors"
    shutil.copy(foreign_checkpoint, latest)
    if how != "another_model":
        damage(latest, how)
    before = snapshot(tmp_path / "spoiled")
    args = tuple(tmp_path / "spoiled" if a == run_dir else a for a in args)
    result = netspec(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout == want.stdout
    said = [line for line in result.stderr.strip().splitlines() if not line.startswith("Evaluated ")]  # eval's split
    assert len(said) == 1, result.stderr
    assert (
        "step-00000020.safetensors does not load" in result.stderr
        and "using step-00000010.safetensors instead" in result.stderr
    )
    assert snapshot(tmp_path / "spoiled") == before  # eval and predict read; they set nothing aside


@pytest.mark.slow
def test_a_change_is_shown_once_when_the_resume_is_resumed_again(tmp_path):
    """EventAccumulator never purges text: a resume interrupted before its next checkpoint and
    resumed again from the same checkpoint replaces the first one's spec_changes, not adds to it."""
    from support import XOR  # support's XOR spec, not this module's

    spec = write(
        tmp_path / "xor.yaml",
        XOR.replace("train: {steps: 20, batch_size: 4}", "train: {steps: 20, batch_size: 4}\ncheckpoint: {every: 10}"),
    )
    assert cli("run", spec, "--logdir", tmp_path / "runs", "--quiet").exit_code == 0
    (run_dir,) = (tmp_path / "runs" / "xor").iterdir()
    for _ in range(2):  # the second resume starts from the same checkpoint (step 20) as the first
        outcome = cli("resume", run_dir, "--set", "train.steps=30", "--quiet")
        assert outcome.exit_code == 0, outcome.output
        for kept in sorted((run_dir / "checkpoints").glob("step-*.safetensors"))[-1:]:
            if kept.name != "step-00000020.safetensors":
                kept.unlink()  # as if the first resume had been killed before its checkpoint at 30
        (run_dir / "result.json").unlink(missing_ok=True)
    events = accumulator(run_dir).Tensors("spec_changes")
    assert [e.step for e in events] == [21], events
