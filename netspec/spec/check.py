"""Check a loaded spec and produce the `Spec` every later stage reads.

Contract: `check(loaded) -> Spec` or raises `SpecError` listing every problem found, each with
file:line:col, key path, what was expected and what was found. Two passes:

1. the JSON Schema (`netspec.spec.schema.SCHEMA`): types, ranges, names, unknown keys;
2. meaning, only once the schema passes: layer names unique, `inputs` name earlier layers,
   shapes agree through the whole model (the registry's pure-Python shape rules), the data's
   shape fits the model's input, the loss fits the output and the labels, metrics fit the loss;
   and what the spec asks of the machine (`netspec.spec.cost`): at most MAX_LAYERS layers, a plan
   within the summary points, evaluations and checkpoints a run may write, and the memory
   training needs at least within the budget (skipped for a run directory's own record,
   `data_info`, which was admitted where the run started).

After `check` the Spec is frozen and fully defaulted (`netspec.spec.defaults.resolve`, then what
depends on the data: eval.split, early stopping's mode, checkpoint.best, the number of steps).
No later stage re-validates, guesses or mutates it; `resolved` is what ran and is what the run
directory saves. `load_spec`, the CLI and a run directory's reopening (with its `data_info`) call
it. No jax here: `validate` must stay fast.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from netspec.data.labels import known, summarize
from netspec.data.sources import SOURCES, STANDARD, DataInfo
from netspec.errors import NetspecError, Problem, SpecError
from netspec.machine import BUDGET_ENV, device_split_problems, format_bytes, memory_budget
from netspec.spec.choices import FUSED_ACTIVATION
from netspec.spec.cost import (
    DEPTH_MEASURED,
    MAX_CHECKPOINTS,
    MAX_EVALUATIONS,
    MAX_LAYERS,
    MAX_SUMMARY_POINTS,
    LayerCost,
    Part,
    dtype_bytes,
    model_costs,
    prod,
    training_memory,
)
from netspec.spec.defaults import resolve
from netspec.spec.fields import INT32
from netspec.spec.label_rules import label_problems, output_problems
from netspec.spec.layers import LAYERS, Shape, ShapeMismatch
from netspec.spec.load import Key, Loaded
from netspec.spec.messages import did_you_mean, schema_problems
from netspec.spec.types import Layer, Spec, freeze, metric_mode, metric_name


def check(loaded: Loaded, *, data_info: DataInfo | None = None) -> Spec:
    """Validate `loaded` against the schema and for meaning; return the Spec or raise SpecError.

    `data_info`: what the data was found to be when this spec ran (a run directory's record,
    `netspec.resumption`); it stands in for describing the data, so no data file is read (netspec
    predict on a run whose data has moved). The data's rules are then checked against it."""
    too_deep = _depth_problem(loaded)
    if too_deep is not None:  # before the schema walks every layer (10,000 layers: seconds)
        raise SpecError([too_deep])
    if isinstance(loaded.data, dict) and "sweep" in loaded.data:  # many runs, not one: netspec.spec.sweep
        raise SpecError(
            [
                loaded.problem(
                    ("sweep",),
                    "this spec is a sweep, whose members are each a spec of their own: check it with "
                    "netspec.load_sweep (netspec validate and netspec run take it as it is), or give "
                    "--set sweep=null for the plain spec",
                    key=True,
                )
            ]
        )
    problems = schema_problems(loaded)
    if problems:
        raise SpecError(problems)
    data = resolve(copy.deepcopy(loaded.data))
    spec, problems = _meaning(loaded, data, data_info)
    if spec is None:
        raise SpecError(sorted(problems, key=lambda p: (p.line or 0, p.col or 0)))  # file order, like the schema's
    return spec


def _shape_of(value: Any, path: Key, loaded: Loaded, problems: list[Problem], what: str) -> Shape | None:
    """The shape of a nested list of numbers, or None (with a problem) if ragged."""
    if not isinstance(value, list):
        return ()
    shapes = [s for i, v in enumerate(value) if (s := _shape_of(v, path + (i,), loaded, problems, what)) is not None]
    if len(shapes) < len(value):
        return None
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            problems.append(
                loaded.problem(
                    path + (i,),
                    f"rows of {what} must all have the same shape: item 0 has shape {list(shapes[0])}, item {i} has {list(s)}",
                )
            )
            return None
    return (len(value),) + (shapes[0] if shapes else ())


def _meaning(
    loaded: Loaded, data: dict[str, Any], data_info: DataInfo | None = None
) -> tuple[Spec | None, list[Problem]]:
    """The meaning checks, in the order data flows: the layer graph, the output against the loss,
    the data against the model, the metrics, the run plan and the learning-rate schedule. A check
    that fails leaves out the checks that depend on it, so one mistake gives one message."""
    problems: list[Problem] = []
    input_shape = tuple(data["model"]["input"])
    layers = _check_layers(loaded, data["model"], input_shape, problems)
    if layers is None:
        return None, problems
    loss = data["loss"]
    last = data["model"]["layers"][-1]
    activation = last.get("activation", {"type": "linear"})
    output_ok = _check_output(loaded, loss, activation, layers, problems)
    info = _check_data(loaded, data, layers, activation, output_ok, problems, data_info)
    num_examples = None
    if info is not None:
        num_examples = info.num_train
        if data["data"]["limit"]:
            num_examples = min(num_examples, data["data"]["limit"])
        if data["data"]["validation_split"]:
            num_examples -= max(1, round(data["data"]["validation_split"] * num_examples))
    metrics = tuple(data["metrics"])
    _check_metrics(loaded, metrics, loss, layers[-1].out_shape, problems)
    steps = _check_plan(loaded, data, info, num_examples, problems)
    if steps is not None:
        _check_schedule(loaded, data["optimizer"]["learning_rate"], steps, problems)
    if not problems and data_info is None:  # a run directory's record (data_info) was admitted where it started
        _check_memory(loaded, data, layers, info, num_examples, steps, problems)
    if problems:
        return None, problems
    assert info is not None and num_examples is not None and steps is not None  # else a problem says why
    spec = Spec(
        name=data["name"],
        seed=data["seed"],
        source=loaded.source,
        data=freeze(data["data"]),
        input_shape=input_shape,
        layers=tuple(layers),
        loss=freeze(loss),
        output_activation=activation["type"],
        metrics=metrics,
        optimizer=freeze(data["optimizer"]),
        train=freeze(data["train"]),
        steps=steps,
        num_examples=num_examples,
        data_info=info,
        eval=freeze(data["eval"]),
        base_dir=str(Path(loaded.source).resolve().parent),
        checkpoint=freeze(data["checkpoint"]),
        summaries=freeze(data["summaries"]),
        resolved=freeze(data),
    )
    return spec, []


def _check_layers(
    loaded: Loaded, model: dict[str, Any], input_shape: Shape, problems: list[Problem]
) -> list[Layer] | None:
    """The layer graph: names unique, `inputs` naming earlier layers, every shape rule met. A layer
    whose input's shape is unknown (an earlier layer failed) is not checked: its problem would be
    a follow-on of the first. Returns the layers, or None when any problem was found."""
    shapes: dict[str, Shape | None] = {"input": input_shape}
    first_seen: dict[str, int] = {}
    layers: list[Layer] = []
    count = len(problems)
    previous = "input"
    for i, layer in enumerate(model["layers"]):
        at = ("model", "layers", i)
        name, kind = layer["name"], LAYERS[layer["type"]]
        if name in first_seen:  # ('input' itself is refused by the schema)
            line = loaded.where(("model", "layers", first_seen[name], "name"))[1]
            problems.append(
                loaded.problem(
                    at + ("name",),
                    f"duplicate layer name {name!r} (first used by layers[{first_seen[name]}], line {line}); layer names must be unique",
                )
            )
        else:
            first_seen[name] = i
        inputs = layer.get("inputs", previous)
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        previous = name
        missing = False
        for j, ref in enumerate(inputs):
            ref_at = at + ("inputs",) if isinstance(layer.get("inputs"), str) else at + ("inputs", j)
            if ref not in shapes:
                later = [other["name"] for other in model["layers"][i:]]
                if ref in later:
                    problems.append(
                        loaded.problem(
                            ref_at,
                            f"{ref!r} is this layer or a later one; inputs must name earlier layers (or 'input')",
                        )
                    )
                else:
                    earlier = ["input", *[other["name"] for other in model["layers"][:i]]]
                    problems.append(
                        loaded.problem(
                            ref_at,
                            f"no earlier layer is named {ref!r}{did_you_mean(ref, earlier)} (earlier: {', '.join(earlier)})",
                        )
                    )
                missing = True
        shapes[name] = None  # unknown until its rule has run
        args = {k: v for k, v in layer.items() if k not in ("name", "type", "inputs")}
        in_shapes = tuple(shape for r in inputs if (shape := shapes.get(r)) is not None)
        if missing or len(in_shapes) < len(inputs):
            continue  # an earlier layer failed: its message says why
        try:
            out_shape = tuple(kind.shape(args, list(in_shapes)))
        except ShapeMismatch as e:
            field_at = at + (e.field,) if e.field and e.field in layer else at
            problems.append(loaded.problem(field_at, f"layer {name!r} ({layer['type']}): {e}"))
            continue
        shapes[name] = out_shape
        layers.append(Layer(name, layer["type"], inputs, freeze(args), in_shapes, out_shape))
    return layers if len(problems) == count else None


def _missing_flatten(layers: list[Layer]) -> Layer | None:
    """The first dense layer fed a multi-axis input (from a conv2d, a pool, a reshape), when the
    model's output still has several axes: a flatten layer belongs before it. Keras's Dense, like
    netspec's, acts on the last axis only, so nothing else says so."""
    if len(layers[-1].out_shape) < 2:
        return None
    return next((layer for layer in layers if layer.type == "dense" and len(layer.in_shapes[0]) > 1), None)


def _flatten_message(loaded: Loaded, layers: list[Layer], needed: str) -> Problem | None:
    """'a flatten layer is missing before ...' at that dense layer, or None when no dense layer is to blame."""
    dense = _missing_flatten(layers)
    if dense is None:
        return None
    index = [layer.name for layer in layers].index(dense.name)
    source = dense.inputs[0]
    return loaded.problem(
        ("model", "layers", index),
        (
            f"a flatten layer is missing before {dense.name!r}: it gets {list(dense.in_shapes[0])} from {source!r}, and a dense "
            f"layer acts on the last axis only, so the model's output is {list(layers[-1].out_shape)} where {needed} is needed. "
            f"Add {{name: flatten, type: flatten}} before {dense.name!r}"
        ),
    )


def _check_output(
    loaded: Loaded, loss: Mapping[str, Any], activation: Mapping[str, Any], layers: list[Layer], problems: list[Problem]
) -> bool:
    """The output layer against the loss, whatever the data: its activation (fused or from_logits)
    and its shape. Returns whether they fit (the label rules assume they do)."""
    kind, count = loss["type"], len(problems)
    last_index = len(layers) - 1
    at: Key = ("model", "layers", last_index, "activation")
    written = loaded.data["model"]["layers"][last_index]
    origin = ""
    if (
        isinstance(written, dict)
        and "activation" not in written
        and "activation" in (loaded.data["model"].get("defaults") or {})
    ):
        at, origin = ("model", "defaults", "activation"), " (from model.defaults)"  # point where it is written
    fused = FUSED_ACTIVATION.get(kind)
    name = activation["type"]
    if fused and not loss["from_logits"] and name != fused:
        problems.append(
            loaded.problem(
                at,
                f"{kind} expects {'probabilities from a sigmoid' if fused == 'sigmoid' else 'a probability distribution from a softmax'} output, but the last layer's activation is {name}{origin}; use activation: {fused}, or set loss.from_logits: true with activation: linear",
            )
        )
    for message in output_problems(loss, activation):
        problems.append(loaded.problem(at, message + origin))
    out_shape = layers[-1].out_shape
    if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") and (
        len(out_shape) != 1 or out_shape[0] < 2
    ):
        flatten = _flatten_message(loaded, layers, "[classes]") if len(out_shape) > 1 else None
        if flatten is not None:
            problems.append(flatten)
        else:
            units_at = ("model", "layers", last_index) + (
                ("units",) if isinstance(written, dict) and "units" in written else ()
            )
            problems.append(
                loaded.problem(
                    units_at,
                    f"{kind} needs an output of shape [classes] with at least 2 classes; the model's output has shape {list(out_shape)}; give the last layer one unit per class (for two classes, binary_crossentropy with one sigmoid unit also works)",
                )
            )
    return len(problems) == count


def _check_data(
    loaded: Loaded,
    data: dict[str, Any],
    layers: list[Layer],
    activation: Mapping[str, Any],
    output_ok: bool,
    problems: list[Problem],
    data_info: DataInfo | None = None,
) -> DataInfo | None:
    """The data's DataInfo, after checking that its examples fit the model's input and its labels
    the output and the loss, by the same rules for every source (`netspec.spec.label_rules`); None if the
    data cannot be described."""
    sources = [k for k in SOURCES if k in data["data"]]
    source = sources[0]
    at = ("data", source)
    info = data_info if data_info is not None else _describe_data(loaded, data, source, problems)
    if info is None:
        return None
    _check_input_shape(loaded, source, info, tuple(data["model"]["input"]), problems)
    if not output_ok:
        return info  # the output's own problem comes first; its labels' would follow from it
    kind = data["loss"]["type"]
    y_at: Key = at + ("y",) if source == "inline" else at
    out_shape = layers[-1].out_shape
    class_indices = kind == "sparse_categorical_crossentropy" or (
        kind == "categorical_crossentropy" and info.y_shape in ((), (1,)) and info.y_shape != out_shape
    )
    if _check_target_shape(loaded, layers, kind, info, y_at, class_indices, problems):
        _check_labels(loaded, data, source, info, out_shape, activation, class_indices, y_at, problems)
    return info


def _check_input_shape(
    loaded: Loaded, source: str, info: DataInfo, input_shape: Shape, problems: list[Problem]
) -> None:
    """Each example has model.input's number of values (inline data: its very shape)."""
    at = ("data", source)
    if _prod(info.x_shape) != _prod(input_shape) or (source == "inline" and info.x_shape != input_shape):
        problems.append(
            loaded.problem(
                at if source != "inline" else at + ("x",),
                f"each example has shape {list(info.x_shape)} ({_prod(info.x_shape)} values), but model.input is {list(input_shape)}"
                + (
                    ""
                    if source == "inline"
                    else f" ({_prod(input_shape)} values); make model.input {list(info.x_shape)} (or another shape of {_prod(info.x_shape)} values)"
                ),
            )
        )


def _check_target_shape(
    loaded: Loaded,
    layers: list[Layer],
    kind: str,
    info: DataInfo,
    y_at: Key,
    class_indices: bool,
    problems: list[Problem],
) -> bool:
    """Each target's shape fits the loss and the output: one class index, or the output's shape;
    False (with the problem) where it does not, so that its labels are not checked."""
    out_shape = layers[-1].out_shape
    if kind == "sparse_categorical_crossentropy" and info.y_shape not in ((), (1,)):
        problems.append(
            loaded.problem(
                y_at,
                f"sparse_categorical_crossentropy needs one integer class per example (y of shape [{info.num_train}]), found labels of shape {list(info.y_shape)}",
            )
        )
        return False
    if not class_indices and info.y_shape != out_shape and not (info.y_shape == () and out_shape == (1,)):
        flatten = (
            _flatten_message(loaded, layers, f"{list(info.y_shape)}, the shape of one target")
            if len(out_shape) > max(1, len(info.y_shape))
            else None
        )
        problems.append(
            flatten
            or loaded.problem(
                y_at,
                f"each target of y has shape {list(info.y_shape)}, but the model's output has shape {list(out_shape)} and {kind} needs them equal",
            )
        )
        return False
    return True


def _check_labels(
    loaded: Loaded,
    data: dict[str, Any],
    source: str,
    info: DataInfo,
    out_shape: Shape,
    activation: Mapping[str, Any],
    class_indices: bool,
    y_at: Key,
    problems: list[Problem],
) -> None:
    """The training labels, then the test split's, fit the loss and the output (`label_rules`), and
    the data's classes are the output's units."""
    kind = data["loss"]["type"]
    where = (
        "the labels (y)"
        if source == "inline"
        else f"the labels in column {data['data']['csv']['label']!r}"
        if source == "csv"
        else "the labels"
    )
    count = len(problems)
    for labels, what, training in ((info.labels, where, True), (info.test_labels, "the test split's labels", False)):
        if labels is None or len(problems) > count:  # the test split's, only when the training labels are right
            continue
        for problem in label_problems(
            labels, kind, out_shape, activation, class_indices=class_indices, what=what, training=training
        ):
            path, message = y_at, problem.message
            if source == "inline" and problem.index is not None:
                path = y_at + (labels.example(problem.index),)
            elif problem.index is not None and source not in STANDARD:
                message += (
                    f" (e.g. example {labels.example(problem.index)}, counting from 0, of {_data_file(data, source)})"
                )
            problems.append(loaded.problem(path, message))
    if len(problems) == count and class_indices and info.classes is not None and info.classes != out_shape[0]:
        problems.append(
            loaded.problem(
                y_at,
                f"the data has {info.classes} classes but the model's output has {out_shape[0]} units; make the last layer units: {info.classes}",
            )
        )


def _data_file(data: dict[str, Any], source: str) -> str:
    path: str = data["data"][source].get("path", source)
    return path


def _describe_data(loaded: Loaded, data: dict[str, Any], source: str, problems: list[Problem]) -> DataInfo | None:
    """What the data looks like: inline data and the named data sets without numpy, data in files
    through `netspec.data.arrays.describe` (their headers, and their labels)."""
    at = ("data", source)
    if source == "inline":
        inline = data["data"]["inline"]
        x_shape = _shape_of(inline["x"], at + ("x",), loaded, problems, "x")
        y_shape = _shape_of(inline["y"], at + ("y",), loaded, problems, "y")
        if x_shape is None or y_shape is None:
            return None
        if y_shape[0] != x_shape[0]:
            problems.append(
                loaded.problem(at + ("y",), f"y has {y_shape[0]} rows but x has {x_shape[0]}; they must match")
            )
            return None
        labels = summarize(list(_flatten(inline["y"])), per_example=_prod(y_shape[1:]))
        return DataInfo(source, x_shape[0], None, x_shape[1:], "float32", y_shape[1:], None, labels)
    if source in STANDARD:  # known without its files (run downloads them): nothing to read, no numpy
        n_train, n_test, shape, classes = STANDARD[source]
        return DataInfo(
            source, n_train, n_test, shape, "uint8", (), classes, known(classes, n_train), known(classes, n_test)
        )
    from netspec.data.arrays import describe  # numpy and file reading: only for data in files

    try:
        return describe(data["data"], Path(loaded.source).resolve().parent)
    except NetspecError as e:
        problems.append(loaded.problem(at, str(e)))
        return None


def _check_metrics(
    loaded: Loaded,
    metrics: tuple[Mapping[str, Any], ...],
    loss: Mapping[str, Any],
    out_shape: Shape,
    problems: list[Problem],
) -> None:
    """Each metric fits the loss and the output, and is listed once."""
    for i, m in enumerate(
        metrics
    ):  # (the schema refuses accuracy without a classification loss, top-k without a categorical one)
        if m["type"] == "top_k_accuracy" and m["k"] >= out_shape[-1]:
            problems.append(
                loaded.problem(
                    ("metrics", i),
                    f"top_k_accuracy with k={m['k']} needs a categorical output of more than {m['k']} classes; the output has shape {list(out_shape)}",
                )
            )
    names = [metric_name(m) for m in metrics]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(loaded.problem(("metrics", i), f"the metric {name} is listed twice"))


def _check_plan(
    loaded: Loaded, data: dict[str, Any], info: DataInfo | None, num_examples: int | None, problems: list[Problem]
) -> int | None:
    """The run plan: batch against examples and devices, the step count, intervals, the evaluated
    split, early stopping and the best checkpoint (which select on a validation split, never on
    the test split). Resolves `eval.split`, `early_stopping.mode` and `checkpoint.best` in `data`;
    returns the number of steps (None when the data could not be described)."""
    steps: int | None = data["train"].get("steps")
    if num_examples is not None:
        steps = _plan_steps(loaded, data, num_examples, steps, problems)
    if info is not None:
        _resolve_eval_split(loaded, data, info, problems)
    _check_intervals(loaded, data, info, problems)
    _check_selection(loaded, data, info, problems)
    if steps is not None:
        _check_plan_bounds(loaded, data, steps, problems)
    return steps


def _plan_steps(
    loaded: Loaded, data: dict[str, Any], num_examples: int, steps: int | None, problems: list[Problem]
) -> int | None:
    """The batch against the devices and the training examples; the number of steps: `steps`, or
    train.epochs over the examples (None where that count is past a 32-bit integer)."""
    train = data["train"]
    devices = data["distribute"]["devices"]
    if devices:  # the rule a run checks again for --devices, worded once (netspec.machine)
        for key, why in device_split_problems(train["batch_size"], devices, data["distribute"]["fsdp_devices"]):
            problems.append(loaded.problem(tuple(key.split(".")), f"{why} (distribute.devices is {devices})"))
    if train["batch_size"] > num_examples:
        problems.append(
            loaded.problem(
                ("train", "batch_size"),
                f"batch_size {train['batch_size']} is larger than the {num_examples} training examples",
            )
        )
    elif steps is None:
        steps = train["epochs"] * (num_examples // train["batch_size"])
        if steps >= INT32:
            problems.append(
                loaded.problem(
                    ("train", "epochs"),
                    f"{train['epochs']} epochs of {num_examples // train['batch_size']} steps are {steps} steps; the step count is a 32-bit integer in the compiled program, so a run may take at most {INT32 - 1}",
                )
            )
            steps = None
    return steps


def _resolve_eval_split(loaded: Loaded, data: dict[str, Any], info: DataInfo, problems: list[Problem]) -> None:
    """Resolves an unset eval.split (validation when there is one, else test when there is one);
    a chosen test split must exist."""
    evaluation = data["eval"]
    chosen = evaluation["split"]
    if chosen is None:  # the validation split when there is one: evaluations during training may steer the run
        has_validation = data["data"]["validation_split"] > 0
        evaluation["split"] = "validation" if has_validation else ("test" if info.num_test else None)
    elif chosen == "test" and not info.num_test:
        problems.append(
            loaded.problem(
                ("eval", "split"),
                f"this {info.source} data has no test split; use eval.split: validation with data.validation_split (e.g. 0.1)",
            )
        )


def _check_intervals(loaded: Loaded, data: dict[str, Any], info: DataInfo | None, problems: list[Problem]) -> None:
    """Evaluations and checkpoints fall between compiled chunks, and evaluations have a split to run on."""
    evaluation, ckpt = data["eval"], data["checkpoint"]
    every = evaluation["every"]
    if every is not None and every % data["summaries"]["every"]:
        problems.append(
            loaded.problem(
                ("eval", "every"),
                f"eval.every ({every}) must be a multiple of summaries.every ({data['summaries']['every']}): evaluations run between compiled chunks",
            )
        )
    if every is not None and info is not None and evaluation["split"] is None:
        problems.append(
            loaded.problem(
                ("eval", "every"),
                "there is nothing to evaluate on: the data has no test split and data.validation_split is 0",
            )
        )
    if ckpt["every"] is not None and ckpt["every"] % data["summaries"]["every"]:
        problems.append(
            loaded.problem(
                ("checkpoint", "every"),
                f"checkpoint.every ({ckpt['every']}) must be a multiple of summaries.every ({data['summaries']['every']}): checkpoints are written between compiled chunks",
            )
        )


def _check_plan_bounds(loaded: Loaded, data: dict[str, Any], steps: int, problems: list[Problem]) -> None:
    """What the plan asks the host to write: summary points, evaluations and checkpoints, each
    within its bound (`netspec.spec.cost`: MAX_SUMMARY_POINTS, MAX_EVALUATIONS, MAX_CHECKPOINTS, with
    their measured reasons). A plan past them would validate, then spend hours at chunk
    boundaries, gigabytes of events, or memory for its list of chunks before the first step."""
    every = data["summaries"]["every"]
    points = -(-steps // every) + 1  # and the untrained model at step 0
    if points > MAX_SUMMARY_POINTS:
        least = -(-steps // (MAX_SUMMARY_POINTS - 1))
        problems.append(
            loaded.problem(
                ("summaries", "every"),
                (
                    f"{steps} steps with a summary every {every} steps are {points} summary points; a run writes at most "
                    f"{MAX_SUMMARY_POINTS} (each is a pause of the device for the host to write scalars and histograms, and "
                    f"TensorBoard shows 1,000 points of a chart by default). Set summaries.every to {least} or more"
                ),
            )
        )
        return  # eval.every and checkpoint.every are multiples of it: their counts follow from this one
    for section, bound, what, cost in (
        (
            "eval",
            MAX_EVALUATIONS,
            "evaluations",
            "each passes over the whole evaluated split and writes its metrics and a confusion-matrix image",
        ),
        ("checkpoint", MAX_CHECKPOINTS, "checkpoints", "each writes the whole training state to disk"),
    ):
        interval = data[section]["every"]
        if (
            interval is not None and not interval % every and steps // interval > bound
        ):  # (not a multiple: said already)
            least = -(-steps // bound)
            least = -(-least // every) * every  # a multiple of summaries.every, as it must be
            problems.append(
                loaded.problem(
                    (section, "every"),
                    (
                        f"{steps} steps with {section}.every {interval} are {steps // interval} {what}; a run makes at most {bound} "
                        f"({cost}). Set {section}.every to {least} or more"
                    ),
                )
            )


def _depth_problem(loaded: Loaded) -> Problem | None:
    """The number of layers, within what XLA compiles on this kind of machine (`cost.MAX_LAYERS`,
    with its measured reason); checked first, before the schema pass walks every layer."""
    model = loaded.data.get("model") if isinstance(loaded.data, dict) else None
    layers = model.get("layers") if isinstance(model, dict) else None
    n = len(layers) if isinstance(layers, list) else 0
    if n > MAX_LAYERS:
        return loaded.problem(
            ("model", "layers"),
            (
                f"the model has {n} layers; netspec compiles at most {MAX_LAYERS}: XLA compiles the training step's forward "
                f"and backward pass layer by layer, and its time and memory grow faster than the depth (measured on a 2-core "
                f"CPU: {DEPTH_MEASURED}; benchmarks/RESULTS.md). Use fewer, wider layers"
            ),
        )
    return None


def _check_memory(
    loaded: Loaded,
    data: dict[str, Any],
    layers: list[Layer],
    info: DataInfo | None,
    num_examples: int | None,
    steps: int | None,
    problems: list[Problem],
) -> None:
    """The memory training needs at least (`netspec.spec.cost.training_memory`: parameters, gradients,
    optimizer state, the activations of one batch, the data on the device) within the budget
    (`netspec.machine.memory_budget`: NETSPEC_MEMORY_BUDGET, a GPU's memory, or this host's). One
    problem, at the key behind the largest share, with the estimate, the budget and the fix."""
    budget = memory_budget()
    costs, parts = memory_parts(data, layers, info, num_examples, steps, budget.kind)
    total = sum(p.bytes for p in parts)
    if total <= budget.bytes:
        return
    weights: dict[
        tuple[str, ...], int
    ] = {}  # the share each key stands for: the parameters' own, their gradients' and the optimizer's go together
    for p in parts:
        key = ("model", "layers") if p.key in (("model", "layers"), ("optimizer", "type")) else p.key
        weights[key] = weights.get(key, 0) + p.bytes
    largest = max(weights, key=lambda key: weights[key])
    listed = ", ".join(f"{p.what} {format_bytes(p.bytes)}" for p in sorted(parts, key=lambda p: -p.bytes) if p.bytes)
    at, fix = _memory_fix(data, largest, costs, info)
    override = (
        ""
        if budget.origin.startswith(BUDGET_ENV)
        else f"; to train on a device with more, set {BUDGET_ENV} to its memory, e.g. {BUDGET_ENV}=80GiB"
    )
    problems.append(
        loaded.problem(
            at,
            (
                f"training this spec needs at least {format_bytes(total)} of memory, more than the budget of "
                f"{format_bytes(budget.bytes)} ({budget.origin}{override}): {listed}. {fix}"
            ),
        )
    )


def memory_parts(
    data: Mapping[str, Any],
    layers: list[Layer],
    info: DataInfo | None,
    num_examples: int | None,
    steps: int | None,
    budget_kind: str = "device",
) -> tuple[list[LayerCost], list[Part]]:
    """(per-layer `cost.LayerCost`s, `cost.Part`s of the memory training needs at least) for a
    defaulted spec `data` (as `_meaning` holds it, eval.split resolved), its checked layers and
    its data's description (None: the data is left out)."""
    compute = dtype_bytes(data["precision"]["compute"])
    costs = model_costs(layers, compute)
    train, ev = data["train"], data["eval"]
    num_eval = None
    if info is not None:
        limit = data["data"]["limit"]
        stored = min(info.num_train, limit) if limit else info.num_train
        num_eval = {
            "validation": stored - (num_examples or 0) if data["data"]["validation_split"] else None,
            "test": min(info.num_test, limit) if (limit and info.num_test) else info.num_test,
        }.get(ev["split"])
    example = prod(info.x_shape) * dtype_bytes(info.x_dtype) if info is not None else 0
    label = (
        max(prod(info.y_shape), 1) * (1 if info is not None and info.source in STANDARD else 4)
        if info is not None
        else 0
    )
    parts = training_memory(
        costs,
        input_shape=tuple(data["model"]["input"]),
        optimizer=data["optimizer"],
        batch_size=train["batch_size"],
        devices=data["distribute"]["devices"],
        example_bytes=example,
        label_bytes=label,
        num_train=num_examples,
        num_eval=num_eval,
        eval_batch_size=ev["batch_size"],
        chunk_steps=min(data["summaries"]["every"], steps or 1),
        max_resident_bytes=data["data"]["max_resident_mb"] * 2**20,
        budget_kind=budget_kind,
        steps=steps,
        steps_key=("train", "steps" if train.get("steps") is not None else "epochs"),
    )
    return costs, parts


def _memory_fix(
    data: dict[str, Any], key: tuple[str, ...], costs: list[LayerCost], info: DataInfo | None
) -> tuple[Key, str]:
    """Where to point a memory problem, and what to change, for the largest share `key`."""
    if key == ("model", "layers"):
        index, biggest = max(enumerate(costs), key=lambda ic: ic[1].param_count)
        shapes = ", ".join(f"{name} {list(shape)}" for name, shape in biggest.params.items())
        return ("model", "layers", index), (
            f"The parameters take the most: layer {biggest.name!r} ({biggest.type}) alone holds "
            f"{biggest.param_count} ({shapes}); use fewer units or filters, or a smaller input"
        )
    if key == ("train", "batch_size"):
        index, biggest = max(enumerate(costs), key=lambda ic: ic[1].saved_bytes)
        return key, (
            f"The activations take the most: each example keeps {format_bytes(sum(c.saved_bytes for c in costs))} for the "
            f"backward pass (layer {biggest.name!r} {format_bytes(biggest.saved_bytes)}); use a smaller batch_size, "
            "or precision.compute: bfloat16 to halve them"
        )
    if key == ("data",):
        source = next(k for k in SOURCES if k in data["data"])
        return ("data", source), (
            "The data takes the most: use fewer examples (data.limit), or lower data.max_resident_mb "
            "so the training data streams from the host chunk by chunk"
        )
    if key in (("train", "steps"), ("train", "epochs")):
        return key, "The record of every step's loss takes the most: train for fewer steps"
    if key == ("summaries", "every"):
        return key, "The batches of one chunk take the most: use a smaller summaries.every (steps per compiled chunk)"
    if key == ("eval", "batch_size"):
        return (
            key,
            "The evaluated split takes the most: evaluate fewer examples (data.limit) or use a smaller eval.batch_size",
        )
    return key, "Make the model or the batch smaller"


def _check_selection(loaded: Loaded, data: dict[str, Any], info: DataInfo | None, problems: list[Problem]) -> None:
    """Early stopping and the best checkpoint choose a model by its evaluations: on the validation
    split, never silently on the test split, whose metrics would then overstate how the chosen
    model does on new data."""
    early, ckpt = data["train"]["early_stopping"], data["checkpoint"]
    _check_selection_tags(loaded, data, problems)
    selector = (
        ("train", "early_stopping")
        if early is not None
        else ("checkpoint", "best")
        if ckpt["best"] is not None
        else None
    )
    if early is not None and ckpt["best"] is None:
        ckpt["best"] = early["metric"]
    if selector is None or info is None or data["eval"]["split"] == "validation":
        return
    problems.append(_selection_problem(loaded, data, selector))


def _check_selection_tags(loaded: Loaded, data: dict[str, Any], problems: list[Problem]) -> None:
    """Early stopping's metric and checkpoint.best name eval scalars; resolves early stopping's `auto` mode."""
    early, ckpt = data["train"]["early_stopping"], data["checkpoint"]
    tags = ["loss", *(metric_name(m) for m in data["metrics"])]
    if early is not None:
        if early["metric"] not in tags:
            problems.append(
                loaded.problem(
                    ("train", "early_stopping", "metric"),
                    f"expected an eval scalar ({', '.join(tags)}); found {early['metric']!r}{did_you_mean(early['metric'], tags)}",
                )
            )
        if early["mode"] == "auto":
            early["mode"] = metric_mode(early["metric"])
    if ckpt["best"] is not None and ckpt["best"] not in tags:
        problems.append(
            loaded.problem(
                ("checkpoint", "best"),
                f"expected an eval scalar ({', '.join(tags)}); found {ckpt['best']!r}{did_you_mean(ckpt['best'], tags)}",
            )
        )


def _selection_problem(loaded: Loaded, data: dict[str, Any], selector: Key) -> Problem:
    """The problem with a selection (by `selector`) that is not made on a validation split."""
    what = "early stopping" if selector[0] == "train" else "checkpoint.best"
    if data["data"]["validation_split"] > 0:
        return loaded.problem(
            ("eval", "split"),
            (
                f"{what} chooses the model by the evaluations of eval.split, and eval.split is test: the test metrics of the "
                "chosen model would overstate how it does on new data. Use eval.split: validation (the test split is still "
                "evaluated once, at the end)"
            ),
        )
    if data["eval"]["split"] is None:
        return loaded.problem(
            selector,
            f"{what} needs evaluations, and this data has no test or validation split: "
            "hold out a validation split, e.g. data.validation_split: 0.1",
            key=True,
        )
    return loaded.problem(
        selector,
        (
            f"{what} chooses the model by its evaluations, and this spec has no validation split, so it would choose on the "
            "test split, whose metrics would then overstate how the chosen model does on new data. Hold out a validation "
            "split: data.validation_split: 0.1 (evaluations during training run on it; the test split is evaluated once, at "
            "the end)"
        ),
        key=True,
    )


_RATE: Key = ("optimizer", "learning_rate")


def _check_schedule(loaded: Loaded, rate: float | Mapping[str, Any], steps: int, problems: list[Problem]) -> None:
    """A learning-rate schedule's arguments agree with each other and with the run: what optax
    would refuse at run time, a rate that is negative, zero throughout or not finite at some step
    of the run, and a phase the run never reaches."""
    if not isinstance(rate, dict):
        return  # a number: the schema requires it > 0
    kind = rate["type"]
    last = steps - 1  # optax counts steps from 0: step k of the run uses schedule(k - 1)
    if kind == "warmup_cosine_decay" and not _check_warmup(loaded, rate, steps, problems):
        return
    if kind == "exponential_decay" and not _check_decay_rate(loaded, rate, problems):
        return
    if kind in ("exponential_decay", "linear") and rate["transition_begin"] > last:
        problems.append(
            loaded.problem(
                _RATE + ("transition_begin",),
                f"the schedule starts changing at step {rate['transition_begin']}, after the run's last step ({steps}): the learning rate would stay init_value",
            )
        )
    points = {0, last, *(round(last * i / 256) for i in range(257))}
    if kind == "piecewise_constant":
        points |= _check_boundaries(loaded, rate, steps, problems)
        if problems and problems[-1].path.startswith("$.optimizer.learning_rate"):
            return
    for name in ("warmup_steps", "decay_steps", "transition_begin"):
        if isinstance(rate.get(name), int):
            points |= {rate[name] - 1, rate[name], rate[name] + rate.get("transition_steps", 0)}
    _check_rate_values(loaded, rate, sorted(p for p in points if 0 <= p <= last), problems)


def _check_warmup(loaded: Loaded, rate: Mapping[str, Any], steps: int, problems: list[Problem]) -> bool:
    """warmup_cosine_decay: decay_steps (warmup included) longer than the warmup, and the warmup
    shorter than the run; False where the schedule has no decay at all, so nothing more is checked."""
    if rate["decay_steps"] <= rate["warmup_steps"]:
        problems.append(
            loaded.problem(
                _RATE + ("decay_steps",),
                (
                    f"decay_steps ({rate['decay_steps']}) is the length of the whole schedule, warmup included (optax's "
                    f"warmup_cosine_decay_schedule), so it must be larger than warmup_steps ({rate['warmup_steps']}); e.g. "
                    f"decay_steps: {rate['warmup_steps'] + max(steps - rate['warmup_steps'], 1)} decays over the rest of the run"
                ),
            )
        )
        return False
    if rate["warmup_steps"] >= steps:
        problems.append(
            loaded.problem(
                _RATE + ("warmup_steps",),
                f"warmup_steps ({rate['warmup_steps']}) is not shorter than the run ({steps} steps): the learning rate would never reach peak_value",
            )
        )
    return True


def _check_decay_rate(loaded: Loaded, rate: Mapping[str, Any], problems: list[Problem]) -> bool:
    """exponential_decay: a positive decay_rate; False (with the problem) where it is 0 or less."""
    if rate["decay_rate"] <= 0:
        problems.append(
            loaded.problem(
                _RATE + ("decay_rate",),
                (
                    f"decay_rate must be positive: {'0 makes optax return a constant schedule' if rate['decay_rate'] == 0 else 'a negative rate flips the sign of the learning rate'}"
                    "; e.g. 0.96 multiplies the rate by 0.96 every transition_steps"
                ),
            )
        )
        return False
    return True


def _check_boundaries(loaded: Loaded, rate: Mapping[str, Any], steps: int, problems: list[Problem]) -> set[int]:
    """piecewise_constant: each boundary a step of the run, each scale >= 0; returns the steps
    around the good boundaries, where the rate is to be sampled."""
    points: set[int] = set()
    for key, scale in (rate["boundaries_and_scales"] or {}).items():
        boundary = int(key) if str(key).lstrip("+").isdigit() else None
        if boundary is None:
            problems.append(
                loaded.problem(
                    _RATE + ("boundaries_and_scales", key),
                    f"a boundary is a step number (a whole number >= 0), found {key!r}",
                    key=True,
                )
            )
        elif scale < 0:
            problems.append(
                loaded.problem(
                    _RATE + ("boundaries_and_scales", key),
                    f"a scale must be >= 0 (optax refuses negative ones), found {scale:g}",
                )
            )
        elif boundary > steps - 1:
            problems.append(
                loaded.problem(
                    _RATE + ("boundaries_and_scales", key),
                    f"the boundary at step {boundary} is after the run's last step ({steps}): its scale would never apply",
                    key=True,
                )
            )
        else:
            points |= {boundary - 1, boundary}
    return points


def _check_rate_values(loaded: Loaded, rate: Mapping[str, Any], counts: list[int], problems: list[Problem]) -> None:
    """The rate at each of `counts` (optax's step counts) is finite and >= 0, and not 0 at all of them."""
    values = [(t, _schedule_value(rate, t)) for t in counts]
    bad = next(((t, v) for t, v in values if not (v >= 0 and v < math.inf)), None)
    if bad is not None:
        t, v = bad
        why = (
            "not a finite number"
            if v != v or abs(v) == math.inf
            else "negative: the optimizer would climb the loss instead of descending it"
        )
        problems.append(
            loaded.problem(
                _RATE,
                f"this schedule gives a learning rate of {v:g} at step {t + 1} of the run, which is {why}; check init_value, end_value, alpha and exponent",
            )
        )
    elif all(v == 0 for _, v in values):
        problems.append(
            loaded.problem(
                _RATE, "this schedule gives a learning rate of 0 at every step of the run: nothing would train"
            )
        )


_FLOAT32_MAX = 3.4028234663852886e38


def _schedule_value(rate: Mapping[str, Any], t: int) -> float:
    """The learning rate optax's schedule named by `rate` gives at count `t`, in pure Python (the
    same formulas as optax's exponential_decay, cosine_decay_schedule, warmup_cosine_decay_schedule,
    linear_schedule, piecewise_constant_schedule); NaN where the formula has no value, and
    infinite past float32's range, as the compiled step computes it."""
    value = _formula(rate, t)
    return value if abs(value) <= _FLOAT32_MAX or value != value else math.copysign(math.inf, value)


def _formula(rate: Mapping[str, Any], t: int) -> float:
    kind = rate["type"]
    try:
        if kind == "constant":
            return float(rate["value"])
        if kind == "exponential_decay":
            count = t - max(rate["transition_begin"], 0)
            p = count / rate["transition_steps"]
            value = (
                rate["init_value"]
                if count <= 0
                else rate["init_value"] * rate["decay_rate"] ** (math.floor(p) if rate["staircase"] else p)
            )
            if rate["end_value"] is not None:
                value = max(value, rate["end_value"]) if rate["decay_rate"] < 1 else min(value, rate["end_value"])
            return float(value)
        if kind == "cosine_decay":
            return _cosine(rate["init_value"], rate["decay_steps"], rate["alpha"], rate["exponent"], t)
        if kind == "warmup_cosine_decay":
            warmup, peak = rate["warmup_steps"], rate["peak_value"]
            if t < warmup:
                return float(rate["init_value"] + (peak - rate["init_value"]) * t / warmup)
            alpha = 0.0 if peak == 0 else rate["end_value"] / peak
            return _cosine(peak, rate["decay_steps"] - warmup, alpha, rate["exponent"], t - warmup)
        if kind == "linear":
            count = min(max(t - max(rate["transition_begin"], 0), 0), rate["transition_steps"])
            return float(
                (rate["init_value"] - rate["end_value"]) * (1 - count / rate["transition_steps"]) + rate["end_value"]
            )
        if kind == "piecewise_constant":
            value = rate["init_value"]
            for key, scale in sorted((int(k), s) for k, s in (rate["boundaries_and_scales"] or {}).items()):
                if t >= key:
                    value *= scale
            return float(value)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError):
        return math.nan
    raise AssertionError(kind)


def _cosine(init_value: float, decay_steps: int, alpha: float, exponent: float, t: int) -> float:
    count = min(t, decay_steps)
    decayed = 0.5 * (1 + math.cos(math.pi * count / decay_steps))
    value = (1 - alpha) * decayed**exponent + alpha
    if isinstance(value, complex):
        return math.nan
    return float(init_value * value)


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value
