"""What a resume may change, and the run directory's record of what ran.

Contract. A run directory holds `ran.json`, netspec's own record of what ran: the resolved spec
(`spec`), what check learned of the data (`data_info`, a `netspec.data.sources.DataInfo`) and a fingerprint of
the training examples (`data_fingerprint`). `record(run_dir, spec, arrays)` writes it when a run
starts and again when a resume goes ahead. `accepted_changes(run_dir, spec, arrays,
allow_setting_changes=...)` compares what would run (the spec checked from the run's spec.yaml
and --set, and the data as it is now) with that record, and returns the differences a resume
may make, or raises NetspecError listing those it may not; `record(..., changes, step=N)` then
appends them to `changes.json` with the step the resume continued from. spec.yaml is the
editable copy: an edit made there by hand is a change like a --set.

A resume continues the same run. Every key of the resolved spec has one kind, stated once in
`RULES` (the longest rule whose key is a prefix of the changed key decides; a key no rule names
is MEANING, so a key added to the schema is refused until someone decides otherwise here):

- LENGTH: how long the run trains (train.steps, train.epochs): allowed.
- PLACE: where the same data is found (a data file's path, a data set's directory): allowed,
  as the data found there is compared with the record and must be what the run trained on.
- MACHINE: how the same computation is laid out (distribute, train.loop, train.unroll, train.conv,
  data.max_resident_mb): allowed, as `--devices` is; the last bit of a float may differ.
- SETTING: how training goes on from here (the learning rate and its schedule, the optimizer's
  arguments and clipping, on_nonfinite, early stopping, evaluation, checkpoints, summaries,
  metrics, description): only with `netspec resume --allow-setting-changes`, and recorded.
- SELECTION: the metric the best checkpoint or early stopping chose by: a SETTING while none
  was set, MEANING once one was (the best so far was measured by it).
- MEANING: what the parameters are or which data they learn from (name, seed, data, model,
  loss, optimizer.type, train.batch_size and shuffle, precision): refused.

No jax here (numpy only for the fingerprint): a refused resume ends before anything compiles.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NamedTuple

from netspec.data.labels import Labels
from netspec.data.sources import DataInfo
from netspec.errors import NetspecError, quoted
from netspec.spec.types import Spec, plain

RECORD = "ran.json"


CHANGES = "changes.json"


FLAG = "--allow-setting-changes"


LENGTH, PLACE, MACHINE, SETTING, SELECTION, MEANING = "length", "place", "machine", "setting", "selection", "meaning"


ALLOWED = (LENGTH, PLACE, MACHINE)  # without the flag


class Rule(NamedTuple):
    """What a resume may do with one key of the resolved spec, and with the keys below it that no longer rule names."""

    key: str  # a dotted key of the resolved spec (list indices left out)
    kind: str
    why: str  # what the key decides, said when a change to it is refused


_WHERE_DATA = "where the data is found (the data there must be what the run trained on)"


RULES: tuple[Rule, ...] = (
    Rule("name", MEANING, "the run's name: its place in the logdir and its name in TensorBoard"),
    Rule("description", SETTING, "free text shown with the spec"),
    Rule("seed", MEANING, "the initial parameters, the batch order and every random key"),
    Rule("sweep", MEANING, "a sweep is many runs: a member's run directory holds one of them, without it"),
    Rule("data", MEANING, "which examples the parameters learn from, and how they are scaled"),
    *(
        Rule(f"data.{source}.{key}", PLACE, _WHERE_DATA)
        for source, keys in (
            ("mnist", ("dir", "download")),
            ("fashion_mnist", ("dir", "download")),
            ("idx", ("path",)),
            ("npz", ("path",)),
            ("csv", ("path",)),
        )
        for key in keys
    ),
    Rule("data.max_resident_mb", MACHINE, "where the training data is held: the same batches either way"),
    Rule("model", MEANING, "what the parameters are"),
    Rule("loss", MEANING, "what the parameters are trained to minimise"),
    Rule("metrics", SETTING, "what is measured besides the loss"),
    Rule("eval", SETTING, "when and how the run is evaluated"),
    Rule("optimizer", SETTING, "how the optimizer steps from here: learning rate, schedule, clipping, its arguments"),
    Rule("optimizer.type", MEANING, "the optimizer: the state in the checkpoints is that optimizer's"),
    Rule("optimizer.seed", MEANING, "the optimizer's noise, drawn from this seed"),
    Rule("train", SETTING, "how training goes on from here"),
    Rule("train.steps", LENGTH, "how long the run trains"),
    Rule("train.epochs", LENGTH, "how long the run trains"),
    Rule("train.batch_size", MEANING, "the examples of every step"),
    Rule("train.shuffle", MEANING, "the batch order"),
    Rule("train.loop", MACHINE, "how the compiled steps are looped: the same steps"),
    Rule("train.unroll", MACHINE, "how the compiled steps are looped: the same steps"),
    Rule(
        "train.conv", MACHINE, "how a convolution is computed (native or im2col): the same model, to float32 rounding"
    ),
    Rule("train.early_stopping.metric", SELECTION, "the measure of the best evaluation so far"),
    Rule("train.early_stopping.mode", SELECTION, "the measure of the best evaluation so far"),
    Rule("checkpoint", SETTING, "when checkpoints are written and how many are kept"),
    Rule("checkpoint.best", SELECTION, "the measure by which best.safetensors was chosen so far"),
    Rule("summaries", SETTING, "what goes to TensorBoard, and how often"),
    Rule(
        "distribute",
        MACHINE,
        "how the devices share the work (a checkpoint restores on any device count, as with --devices)",
    ),
    Rule("precision", MEANING, "the dtypes the model computes in, and the loss scale kept in the state"),
)


UNNAMED = Rule("", MEANING, "a key no rule of netspec.resumption names")


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()  # a key one side does not have


class Difference(NamedTuple):
    """One difference between what ran and what would run."""

    path: tuple  # key path in the resolved spec; () for the data found at the data paths
    old: Any  # ABSENT when the key was not there
    new: Any
    kind: str  # LENGTH, PLACE, MACHINE, SETTING or MEANING (a SELECTION is resolved to one of the last two)
    why: str

    @property
    def key(self) -> str:
        from netspec.spec.load import json_path

        return json_path(self.path) if self.path else "the training data found at the data paths"

    def __str__(self) -> str:
        width = 70 if self.path else 200  # the data's description is one sentence
        return f"{self.key}: {show(self.old, width)} -> {show(self.new, width)}"

    def as_json(self) -> dict:
        out: dict = {"key": self.key, "kind": self.kind}
        out.update({name: value for name, value in (("old", self.old), ("new", self.new)) if value is not ABSENT})
        return out


def rule_for(path: tuple) -> Rule:
    """The rule that decides a change at `path`: the longest whose key is a prefix of it."""
    names = [part for part in path if isinstance(part, str)]
    best, length = UNNAMED, 0
    for rule in RULES:
        parts = rule.key.split(".")
        if len(parts) > length and names[: len(parts)] == parts:
            best, length = rule, len(parts)
    return best


def classify(path: tuple, old, new) -> Difference:
    """The Difference at `path`, its kind decided by `RULES`."""
    rule = rule_for(path)
    kind = rule.kind
    if kind == SELECTION:  # nothing chosen yet by a metric that was not set
        kind = SETTING if old is None or old is ABSENT else MEANING
    return Difference(path, old, new, kind, rule.why)


def differences(old, new, path: tuple = ()) -> list[Difference]:
    """Every difference between two plain specs (dicts, lists, scalars), classified. Lists of one
    length are compared item by item; lists of different lengths (a layer added) are one
    difference, at the list."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += differences(old.get(key, ABSENT), new.get(key, ABSENT), path + (key,))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, path + (i,))]
    return [] if _same(old, new) else [classify(path, old, new)]


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python, not in a spec
        return type(a) is type(b) and a == b
    return a == b


def show(value, width: int = 70) -> str:
    """A value as the message shows it: compact flow YAML; a list of layers by name and type."""
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        text = "[" + ", ".join(f"{v['name']} ({v.get('type', '?')})" for v in value) + "]"
    else:
        text = _flow(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value.strip() and value == value.strip() else json.dumps(value)
    return json.dumps(value)


class Record(NamedTuple):
    """ran.json: what ran."""

    spec: dict  # the resolved spec, plain
    data_info: DataInfo
    data_fingerprint: str


class DamagedRecord(NetspecError):
    """ran.json is there but cannot be read; `detail` says why."""

    def __init__(self, run_dir: Path, detail: str):
        self.detail = detail
        super().__init__(
            f"The run directory {run_dir} has a damaged {RECORD} ({detail}): netspec's record of the spec and data as they "
            f"ran, which a resume compares with. To resume anyway, delete it: the resume then compares with spec.yaml as it "
            f"is (an edit made there by hand goes unnoticed) and writes it again. netspec eval and predict do not need it "
            f"while the training data is in place; spec.yaml, the checkpoints and the events are untouched."
        )


def read_record(run_dir: str | Path) -> Record | None:
    """The run's ran.json, or None when it has none (a run of an older netspec). Raises
    DamagedRecord when it cannot be read or is incomplete."""
    path = Path(run_dir) / RECORD
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw.get("spec"), dict) or not isinstance(raw.get("data_fingerprint"), str):
            raise ValueError("no spec or data_fingerprint")
        return Record(raw["spec"], data_info_from_json(raw["data_info"]), raw["data_fingerprint"])
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else str(getattr(e, "strerror", None) or e)
        raise DamagedRecord(Path(run_dir), detail) from None


def data_info_json(info: DataInfo) -> dict:
    """A DataInfo as plain JSON data (its Labels as mappings)."""
    return json.loads(json.dumps(asdict(info), default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def data_info_from_json(data: dict) -> DataInfo:
    """The DataInfo `data_info_json` wrote. Raises KeyError or TypeError for anything else."""

    def build(cls, values: dict):
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})

    values = dict(data)
    for name in ("labels", "test_labels"):
        if values.get(name) is not None:
            values[name] = build(Labels, values[name])
    return build(DataInfo, values)


def fingerprint(arrays) -> str:
    """A hash of the examples training learns from (the training and validation splits as
    stored): all of them up to 256 MiB, else 65,536 rows spread evenly, with every shape."""
    import hashlib

    import numpy as np

    digest = hashlib.blake2b(digest_size=16)
    for split in (arrays.train, arrays.validation):
        for array in split if split is not None else ():
            array = np.asarray(array)
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            if array.nbytes > 256 * 2**20:
                array = array[np.linspace(0, len(array) - 1, 65536).astype(np.int64)]
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return "blake2b:" + digest.hexdigest()


def record(
    run_dir: str | Path, spec: Spec, arrays, changes: Sequence[Difference] = (), *, step: int | None = None, notice=None
) -> None:
    """Write ran.json for `spec` and its data (`arrays`, as loaded); after a resume (`step`: the
    step it continued from) also append the `changes` it made, if any, to changes.json. A
    damaged changes.json is kept beside it as changes.json.damaged, said in one line to
    `notice`. Raises OSError when the run directory cannot be written."""
    run_dir = Path(run_dir)
    what = {
        "spec": _plain_json(spec.resolved),
        "data_info": data_info_json(spec.data_info),
        "data_fingerprint": fingerprint(arrays),
    }
    _write_json(run_dir / RECORD, what)
    if not changes:
        return
    path = run_dir / CHANGES
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(history, list):
            raise ValueError("not a list")
    except FileNotFoundError:
        history = []
    except (OSError, UnicodeDecodeError, ValueError) as e:
        os.replace(path, path.with_name(CHANGES + ".damaged"))
        if notice is not None:
            notice(
                f"{path} was damaged ({getattr(e, 'strerror', None) or e}); it is kept as {CHANGES}.damaged and a new one begins."
            )
        history = []
    history.append(
        {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": [c.as_json() for c in changes]}
    )
    _write_json(path, history)


def _plain_json(value):
    return json.loads(json.dumps(plain(value)))


def _write_json(path: Path, value) -> None:
    from netspec.training.rundir import write_atomically

    write_atomically(path, json.dumps(value) + "\n")


def markdown(changes: list[Difference], step: int) -> str:
    """The changes a resume made, as TensorBoard's Text tab shows them."""
    rows = "\n".join(f"| `{c.key}` | `{show(c.old)}` | `{show(c.new)}` | {c.kind} |" for c in changes)
    return (
        f"Resumed after step {step}; steps {step + 1} on ran with these changes (also in {CHANGES}):\n\n"
        f"| key | before | after | kind |\n|---|---|---|---|\n{rows}"
    )


def accepted_changes(
    run_dir: str | Path,
    spec: Spec,
    arrays,
    *,
    allow_setting_changes: bool = False,
    sweep_dir: Path | None = None,
) -> list[Difference]:
    """What a resume of `run_dir` with `spec` (checked from its spec.yaml and --set) and `arrays`
    (its data as loaded now; None: the spec alone is compared, as a sweep does for every member
    before it writes anything) changes, when a resume may: LENGTH, PLACE and MACHINE changes, and
    SETTING ones with `allow_setting_changes`. Raises NetspecError listing every difference
    that changes what the parameters mean or which data they learn from (and, without the flag,
    the settings), or DamagedRecord for an unreadable ran.json. A run of an older netspec (no
    ran.json) is compared with its spec.yaml as it is. `sweep_dir`: `run_dir` is a member of the
    sweep there, which is what the message tells to resume."""
    run_dir = Path(run_dir)
    record_ = read_record(run_dir)
    found = differences(_what_ran(run_dir, spec, record_), _plain_json(spec.resolved))
    # the data itself, unless a refused key already changes it (inline data, the split, the seed)
    refuses_data = any(d.kind == MEANING and d.path[0] in ("data", "seed") for d in found)
    if record_ is not None and arrays is not None and not refuses_data:
        found += _data_differences(record_, spec.data_info, fingerprint(arrays))
    refused = [d for d in found if d.kind == MEANING]
    settings = [d for d in found if d.kind == SETTING]
    compared = f"spec.yaml and --set, against {RECORD}" if record_ is not None else "--set, against spec.yaml"
    if refused:
        raise refusal(run_dir, refused, [] if allow_setting_changes else settings, compared, sweep_dir=sweep_dir)
    if settings and not allow_setting_changes:
        resumed, changed = _resumed(run_dir, sweep_dir)
        raise NetspecError(
            f"Cannot resume {resumed} without {FLAG}: these training settings differ from what {changed} ran "
            f"({compared}): {_listed(settings)}. A resume may change them from the step it continues at when asked: "
            f"netspec resume {quoted(sweep_dir or run_dir)} {FLAG} (with the same --set), and the changes are recorded with that "
            f"step in {run_dir / CHANGES} and in TensorBoard (Text, tag spec_changes). Nothing in the "
            f"{'sweep' if sweep_dir else 'run'} directory was changed."
        )
    return found


def _resumed(run_dir: Path, sweep_dir: Path | None) -> tuple[str, str]:
    """What a refusal names as resumed, and as having run."""
    if sweep_dir is None:
        return str(run_dir), "it"
    return f"the sweep {sweep_dir}", f"its member {run_dir.name} (and every member alike)"


def refusal(
    run_dir: Path,
    refused: list[Difference],
    settings: Sequence[Difference] = (),
    compared: str = "--set",
    *,
    sweep_dir: Path | None = None,
) -> NetspecError:
    """The error that refuses a resume for the MEANING differences `refused` (and names the
    `settings` that would also need the flag); `sweep_dir` as `accepted_changes` takes it."""
    also = f" (These settings would also need {FLAG}: {_listed(settings)}.)" if settings else ""
    resumed, changed = _resumed(Path(run_dir), sweep_dir)
    spec_file = Path(sweep_dir) / "sweep.yaml" if sweep_dir else Path(run_dir) / "spec.yaml"
    return NetspecError(
        f"Cannot resume {resumed}: a resume continues the same run, and these changes ({compared}) would change what "
        f"the parameters of {changed if sweep_dir else 'it'} mean or which data they learn from: "
        f"{_listed(refused, why=True)}.{also} Undo them (in {spec_file}, or drop the --set), or train the changed spec "
        f"as a new run with netspec run. Nothing in the {'sweep' if sweep_dir else 'run'} directory was changed."
    )


def _listed(found: Sequence[Difference], *, why: bool = False, most: int = 8) -> str:
    items = [f"{d} ({d.why})" if why else str(d) for d in found[:most]]
    if len(found) > most:
        items.append(f"and {len(found) - most} more")
    return "; ".join(items)


def _what_ran(run_dir: Path, spec: Spec, record_: Record | None) -> dict:
    """The resolved spec that ran, resolved again by this netspec (a key added since gets its
    default, as on the other side): ran.json's, else (an older run) spec.yaml as it is."""
    from netspec.errors import SpecError
    from netspec.spec.check import check
    from netspec.spec.load import load, parse

    loaded = None
    try:
        if record_ is not None:
            loaded = parse(json.dumps(record_.spec), str(run_dir / RECORD))
            info = record_.data_info
        else:
            loaded = load(run_dir / "spec.yaml")
            info = spec.data_info
        loaded.source = spec.source  # relative data paths start where the spec's did
        return _plain_json(check(loaded, data_info=info).resolved)
    except SpecError:  # no longer a valid spec for this netspec: compare what it says
        return (
            record_.spec if record_ is not None else json.loads(json.dumps(loaded.data if loaded is not None else {}))
        )


def _data_differences(record_: Record, info: DataInfo, fingerprint_now: str) -> list[Difference]:
    """The data found now against the data that ran: its description, then its examples."""
    before, now = _describe(data_info_json(record_.data_info)), _describe(data_info_json(info))
    if before == now and record_.data_fingerprint == fingerprint_now:
        return []
    if before == now:
        before, now = (
            f"{before}; examples {record_.data_fingerprint[8:20]}",
            f"{now}; other values ({fingerprint_now[8:20]})",
        )
    return [Difference((), before, now, MEANING, "which examples the parameters learn from")]


def _describe(info: dict) -> str:
    text = f"{info['num_train']} training examples of shape {info['x_shape']} ({info['x_dtype']}), labels of shape {info['y_shape']}"
    labels = info.get("labels")
    if labels:
        text += f" in [{labels['minimum']:g}, {labels['maximum']:g}]"
    if info.get("num_test"):
        text += f", {info['num_test']} test examples"
    return text
