"""Check a loaded spec and produce the `Spec` every later stage reads.

Contract: `check(loaded) -> Spec` or raises `SpecError` listing every problem found, each with
file:line:col, key path, what was expected and what was found. Two passes:

1. the JSON Schema (`netspec.schema.SCHEMA`): types, ranges, names, unknown keys;
2. meaning, only once the schema passes: layer names unique, `inputs` name earlier layers,
   shapes agree through the whole model (the registry's pure-Python shape rules), the data's
   shape fits the model's input, the loss fits the output and the labels, metrics fit the loss.

After `check` the Spec is frozen and fully defaulted: `model.defaults` are pushed into the
layers, every default from the schema is filled in, every "name or {type, args}" choice is a
mapping with all its arguments. No later stage re-validates, guesses or mutates it; `resolved`
is what ran and is what the run directory saves. No jax here: `validate` must stay fast.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from netspec import registry as R
from netspec.defaults import fill_defaults, push_model_defaults
from netspec.errors import NetspecError, Problem, SpecError
from netspec.load import Loaded
from netspec.messages import did_you_mean, found, schema_problems
from netspec.schema import SCHEMA

@dataclass(frozen=True)
class DataInfo:
    source: str
    num_train: int
    num_test: int | None
    x_shape: tuple[int, ...]  # one example
    x_dtype: str
    y_shape: tuple[int, ...]  # one label, () for a class index
    classes: int | None  # number of classes, when the data set says
    max_label: int | None = None  # the largest integer label, when labels are integers


@dataclass(frozen=True)
class Layer:
    """One layer as it will be compiled."""

    name: str
    type: str
    inputs: tuple[str, ...]  # "input" is the model input
    args: Mapping[str, Any]  # the layer type's fields, defaulted
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class Spec:
    """A checked spec: frozen, fully defaulted, the only thing compile and train read."""

    name: str
    seed: int
    source: str
    data: Mapping[str, Any]
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    loss: Mapping[str, Any]
    output_activation: str  # the activation of the model's output ("linear" if none)
    metrics: tuple[Mapping[str, Any], ...]  # each {type, args}
    optimizer: Mapping[str, Any]
    train: Mapping[str, Any]
    steps: int  # total optimizer steps (from train.steps or train.epochs)
    num_examples: int  # training examples (after the validation split)
    data_info: Any  # netspec.data.DataInfo of the whole training split as stored
    eval: Mapping[str, Any]  # eval.split resolved: "test", "validation" or None
    base_dir: str  # the spec file's directory; relative data paths start here
    checkpoint: Mapping[str, Any]  # every, keep, best (an eval scalar or None)
    summaries: Mapping[str, Any]
    resolved: Mapping[str, Any]  # the whole spec as it ran (plain data; see `plain`)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def fused_loss(self) -> bool:
        """True when the output activation is folded into the loss as logits (the stable form)."""
        return R.FUSED_ACTIVATION.get(self.loss["type"]) == self.output_activation and not self.loss.get("from_logits")


def check(loaded: Loaded) -> Spec:
    """Validate `loaded` against the schema and for meaning; return the Spec or raise SpecError."""
    problems = schema_problems(loaded)
    if problems:
        raise SpecError(problems)
    data = copy.deepcopy(loaded.data)
    push_model_defaults(data)
    loss = data["loss"]
    if "metrics" not in data and (loss if isinstance(loss, str) else loss.get("type")) not in R.FUSED_ACTIVATION:
        data["metrics"] = []  # accuracy, the default, means nothing for a regression loss
    data = fill_defaults(SCHEMA, data)
    spec, problems = _meaning(loaded, data)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line or 0, p.col or 0)))  # file order, like the schema's
    return spec


# -- pass 1: the schema -----------------------------------------------------------------------

# -- pass 2: meaning --------------------------------------------------------------------------

def _shape_of(value, path, loaded, problems, what) -> tuple | None:
    """The shape of a nested list of numbers, or None (with a problem) if ragged or not numeric."""
    if isinstance(value, bool) or value is None or isinstance(value, str) or isinstance(value, dict):
        problems.append(loaded.problem(path, f"expected a number in {what}, found {found(value)}"))
        return None
    if not isinstance(value, list):
        return ()
    shapes = [_shape_of(v, path + (i,), loaded, problems, what) for i, v in enumerate(value)]
    if any(s is None for s in shapes):
        return None
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            problems.append(loaded.problem(path + (i,), f"rows of {what} must all have the same shape: item 0 has shape {list(shapes[0])}, item {i} has {list(s)}"))
            return None
    return (len(value),) + (shapes[0] if shapes else ())


def _meaning(loaded: Loaded, data: dict) -> tuple[Spec | None, list[Problem]]:
    problems: list[Problem] = []
    model = data["model"]
    input_shape = tuple(model["input"])
    shapes: dict[str, tuple] = {"input": input_shape}
    first_seen: dict[str, int] = {}
    layers: list[Layer] = []
    previous = "input"
    for i, layer in enumerate(model["layers"]):
        at = ("model", "layers", i)
        name, kind = layer["name"], R.LAYERS[layer["type"]]
        if name == "input":
            problems.append(loaded.problem(at + ("name",), "'input' names the model's input; choose another layer name"))
        elif name in first_seen:
            line = loaded.where(("model", "layers", first_seen[name], "name"))[1]
            problems.append(loaded.problem(at + ("name",), f"duplicate layer name {name!r} (first used by layers[{first_seen[name]}], line {line}); layer names must be unique"))
        else:
            first_seen[name] = i
        inputs = layer.get("inputs", previous)
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        ok = True
        for j, ref in enumerate(inputs):
            ref_at = at + ("inputs",) if isinstance(layer.get("inputs"), str) else at + ("inputs", j)
            if ref not in shapes:
                later = [l["name"] for l in model["layers"][i:]]
                if ref in later:
                    problems.append(loaded.problem(ref_at, f"{ref!r} is this layer or a later one; inputs must name earlier layers (or 'input')"))
                else:
                    earlier = ["input", *[l["name"] for l in model["layers"][:i]]]
                    problems.append(loaded.problem(ref_at, f"no earlier layer is named {ref!r}{did_you_mean(ref, earlier)} (earlier: {', '.join(earlier)})"))
                ok = False
        if kind.inputs == "one" and len(inputs) != 1:
            problems.append(loaded.problem(at + ("inputs",), f"a {layer['type']} layer takes one input, found {len(inputs)}"))
            ok = False
        args = {k: v for k, v in layer.items() if k not in ("name", "type", "inputs")}
        bias_init = args.get("bias_init", {}).get("type")
        if bias_init in R.MATRIX_INITIALIZERS:
            problems.append(loaded.problem(at + ("bias_init",), f"{bias_init} scales by fan-in/fan-out and needs a weight matrix, not a bias vector; for bias_init use one of {', '.join(sorted(set(R.INITIALIZERS) - R.MATRIX_INITIALIZERS))}"))
        out_shape = None
        if ok:
            in_shapes = tuple(shapes[r] for r in inputs)
            try:
                out_shape = tuple(kind.shape(args, list(in_shapes)))
            except R.ShapeMismatch as e:
                field_at = at + (e.field,) if e.field and e.field in layer else at
                problems.append(loaded.problem(field_at, f"layer {name!r} ({layer['type']}): {e}"))
        if out_shape is None:
            # keep going so later, independent problems are still found
            shapes.setdefault(name, ())
            previous = name
            continue
        shapes[name] = out_shape
        layers.append(Layer(name, layer["type"], inputs, _freeze(args), in_shapes, out_shape))
        previous = name
    if problems:
        return None, problems

    out_shape = layers[-1].out_shape
    last = model["layers"][-1]
    output_activation = last.get("activation", {"type": "linear"})["type"]
    loss = data["loss"]
    _check_loss_output(loaded, loss, output_activation, out_shape, len(model["layers"]) - 1, problems)
    info = _check_data(loaded, data, input_shape, out_shape, loss, problems)
    num_examples = None
    if info is not None:
        num_examples = info.num_train
        if data["data"].get("limit"):
            num_examples = min(num_examples, data["data"]["limit"])
        if data["data"]["validation_split"]:
            num_examples -= max(1, int(round(data["data"]["validation_split"] * num_examples)))
    metrics = tuple(data["metrics"])
    for i, m in enumerate(metrics):
        if m["type"] in ("accuracy", "top_k_accuracy") and loss["type"] not in R.FUSED_ACTIVATION:
            problems.append(loaded.problem(("metrics", i), f"{m['type']} needs a classification loss (binary_crossentropy, categorical_crossentropy or sparse_categorical_crossentropy); the loss is {loss['type']}"))
        elif m["type"] == "top_k_accuracy" and (loss["type"] == "binary_crossentropy" or m["k"] >= out_shape[-1]):
            problems.append(loaded.problem(("metrics", i), f"top_k_accuracy with k={m['k']} needs a categorical output of more than {m['k']} classes; the output has shape {list(out_shape)}"))
    names = [metric_name(m) for m in metrics]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(loaded.problem(("metrics", i), f"the metric {name} is listed twice"))
    train = data["train"]
    steps = train.get("steps")
    if num_examples is not None:
        devices = data["distribute"]["devices"]
        if devices and train["batch_size"] % devices:
            problems.append(loaded.problem(("train", "batch_size"), f"batch_size {train['batch_size']} does not split evenly over distribute.devices = {devices}; make it a multiple of {devices}"))
        if train["batch_size"] > num_examples:
            problems.append(loaded.problem(("train", "batch_size"), f"batch_size {train['batch_size']} is larger than the {num_examples} training examples"))
        elif steps is None:
            steps = train["epochs"] * (num_examples // train["batch_size"])
    if train["unroll"] is not None and train["loop"] == "steps":
        problems.append(loaded.problem(("train", "unroll"), "unroll sets how many steps one iteration of the scan loop runs; train.loop: steps has no scan loop (one jitted call per step): remove unroll or use loop: scan"))
    group = data["distribute"]["fsdp_devices"]
    if group is not None:
        if data["distribute"]["params"] != "fsdp":
            problems.append(loaded.problem(("distribute", "fsdp_devices"), "fsdp_devices groups the devices that share the parameters: it needs distribute.params: fsdp"))
        elif data["distribute"]["devices"] and data["distribute"]["devices"] % group:
            problems.append(loaded.problem(("distribute", "fsdp_devices"), f"fsdp_devices {group} does not divide distribute.devices = {data['distribute']['devices']} into equal groups"))
    evaluation = dict(data["eval"])
    if info is not None:
        has_val = data["data"]["validation_split"] > 0
        if evaluation["split"] is None:
            evaluation["split"] = "test" if info.num_test else ("validation" if has_val else None)
        elif evaluation["split"] == "test" and not info.num_test:
            problems.append(loaded.problem(("eval", "split"), f"this {info.source} data has no test split; use eval.split: validation with data.validation_split (e.g. 0.1)"))
        elif evaluation["split"] == "validation" and not has_val:
            problems.append(loaded.problem(("eval", "split"), "eval.split is validation but data.validation_split is 0; set it, e.g. data.validation_split: 0.1"))
    every = evaluation["every"]
    if every is not None and every % data["summaries"]["every"]:
        problems.append(loaded.problem(("eval", "every"), f"eval.every ({every}) must be a multiple of summaries.every ({data['summaries']['every']}): evaluations run between compiled chunks"))
    if every is not None and info is not None and evaluation["split"] is None:
        problems.append(loaded.problem(("eval", "every"), "there is nothing to evaluate on: the data has no test split and data.validation_split is 0"))
    data["eval"] = evaluation
    every = data["summaries"]["every"]
    ckpt = data["checkpoint"]
    if ckpt["every"] is not None and ckpt["every"] % every:
        problems.append(loaded.problem(("checkpoint", "every"), f"checkpoint.every ({ckpt['every']}) must be a multiple of summaries.every ({every}): checkpoints are written between compiled chunks"))
    tags = ["loss", *names]
    early = train.get("early_stopping")
    if early is not None:
        if evaluation["every"] is None:
            problems.append(loaded.problem(("train", "early_stopping"), "early stopping needs evaluations during training: set eval.every (e.g. 600)", key=True))
        if early["metric"] not in tags:
            problems.append(loaded.problem(("train", "early_stopping", "metric"), f"expected an eval scalar ({', '.join(tags)}); found {early['metric']!r}{did_you_mean(early['metric'], tags)}"))
        if early["mode"] == "auto":
            early["mode"] = metric_mode(early["metric"])
        if ckpt["best"] is None:
            ckpt["best"] = early["metric"]
    if ckpt["best"] is not None:
        if ckpt["best"] not in tags:
            problems.append(loaded.problem(("checkpoint", "best"), f"expected an eval scalar ({', '.join(tags)}); found {ckpt['best']!r}{did_you_mean(ckpt['best'], tags)}"))
        elif evaluation["split"] is None:
            problems.append(loaded.problem(("checkpoint", "best"), "the best checkpoint needs evaluations: the data has no test split and data.validation_split is 0"))
    if problems:
        return None, problems
    spec = Spec(
        name=data["name"], seed=data["seed"], source=loaded.source, data=_freeze(data["data"]),
        input_shape=input_shape, layers=tuple(layers), loss=_freeze(loss), output_activation=output_activation,
        metrics=metrics, optimizer=_freeze(data["optimizer"]), train=_freeze(train), steps=steps,
        num_examples=num_examples, data_info=info, eval=_freeze(evaluation), base_dir=str(Path(loaded.source).resolve().parent),
        checkpoint=_freeze(ckpt), summaries=_freeze(data["summaries"]), resolved=_freeze(data),
    )
    return spec, []


def _check_loss_output(loaded, loss, activation, out_shape, last_index, problems):
    kind = loss["type"]
    at = ("model", "layers", last_index, "activation")
    written = loaded.data["model"]["layers"][last_index]
    origin = ""
    if isinstance(written, dict) and "activation" not in written and "activation" in (loaded.data["model"].get("defaults") or {}):
        at, origin = ("model", "defaults", "activation"), " (from model.defaults)"  # point where it is written
    fused = R.FUSED_ACTIVATION.get(kind)
    if fused:
        if loss["from_logits"] and activation in ("sigmoid", "softmax"):
            problems.append(loaded.problem(at, f"the loss has from_logits: true, but the output goes through {activation}{origin}; use activation: linear for the last layer, or drop from_logits"))
        elif not loss["from_logits"] and activation != fused:
            problems.append(loaded.problem(at, f"{kind} expects {'probabilities from a sigmoid' if fused == 'sigmoid' else 'a probability distribution from a softmax'} output, but the last layer's activation is {activation}{origin}; use activation: {fused}, or set loss.from_logits: true with activation: linear"))
    if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") and (len(out_shape) != 1 or out_shape[0] < 2):
        units_at = ("model", "layers", last_index) + (("units",) if isinstance(written, dict) and "units" in written else ())
        problems.append(loaded.problem(units_at, f"{kind} needs an output of shape [classes] with at least 2 classes; the model's output has shape {list(out_shape)}; give the last layer one unit per class (for two classes, binary_crossentropy with one sigmoid unit also works)"))


def _check_data(loaded, data, input_shape, out_shape, loss, problems):
    """The data's DataInfo, after checking it fits the model's input, output and loss (None if it can't be read)."""
    sources = [k for k in R.SOURCES if k in data["data"]]
    if len(sources) != 1:
        found = ", ".join(sources) if sources else "none"
        problems.append(loaded.problem(("data",), f"data needs exactly one source ({', '.join(R.SOURCES)}); found {found}", key=True))
        return None
    source = sources[0]
    at = ("data", source)
    if source == "inline":
        inline = data["data"]["inline"]
        x_shape = _shape_of(inline["x"], at + ("x",), loaded, problems, "x")
        y_shape = _shape_of(inline["y"], at + ("y",), loaded, problems, "y")
        if x_shape is None or y_shape is None:
            return None
        if y_shape[0] != x_shape[0]:
            problems.append(loaded.problem(at + ("y",), f"y has {y_shape[0]} rows but x has {x_shape[0]}; they must match"))
            return None
        info = DataInfo(source, x_shape[0], None, x_shape[1:], "float32", y_shape[1:], None)
    elif source in R.STANDARD:  # known without its files (run downloads them): nothing to read, no numpy
        n_train, n_test, shape, classes = R.STANDARD[source]
        info = DataInfo(source, n_train, n_test, shape, "uint8", (), classes)
    else:
        from netspec.data import describe  # numpy and file reading: only for data in files

        try:
            info = describe(data["data"], Path(loaded.source).resolve().parent)
        except NetspecError as e:
            problems.append(loaded.problem(at, str(e)))
            return None
    if _prod(info.x_shape) != _prod(input_shape) or (source == "inline" and info.x_shape != input_shape):
        problems.append(loaded.problem(at if source != "inline" else at + ("x",),
                                       f"each example has shape {list(info.x_shape)} ({_prod(info.x_shape)} values), but model.input is {list(input_shape)}"
                                       + ("" if source == "inline" else f" ({_prod(input_shape)} values); make model.input {list(info.x_shape)} (or another shape of {_prod(info.x_shape)} values)")))
    kind = loss["type"]
    y_at = at + ("y",) if source == "inline" else at
    if info.y_shape in ((), (1,)) and kind in ("sparse_categorical_crossentropy", "categorical_crossentropy") and len(out_shape) == 1 and (source != "inline" or kind == "sparse_categorical_crossentropy"):
        classes = info.classes
        if classes is not None and classes != out_shape[0]:
            problems.append(loaded.problem(y_at, f"the data has {classes} classes but the model's output has {out_shape[0]} units; make the last layer units: {classes}"))
        elif info.max_label is not None and info.max_label >= out_shape[0]:
            problems.append(loaded.problem(y_at, f"the labels go up to class {info.max_label}, but the model's output has {out_shape[0]} units; make the last layer units: {info.max_label + 1} (or more)"))
        if source == "inline":
            flat = [v[0] if isinstance(v, list) else v for v in data["data"]["inline"]["y"]]
            for i, v in enumerate(flat):
                if not isinstance(v, (int, float)) or v != int(v) or not 0 <= v < out_shape[0]:
                    problems.append(loaded.problem(y_at + (i,), f"expected a class index from 0 to {out_shape[0] - 1}, found {v!r}"))
                    break
    elif kind == "sparse_categorical_crossentropy":
        problems.append(loaded.problem(y_at, f"sparse_categorical_crossentropy needs one integer class per example (y of shape [{info.num_train}]), found labels of shape {list(info.y_shape)}"))
    elif info.y_shape != out_shape and not (info.y_shape == () and out_shape == (1,)):
        problems.append(loaded.problem(y_at, f"each target of y has shape {list(info.y_shape)}, but the model's output has shape {list(out_shape)} and {kind} needs them equal"))
    elif source == "inline" and kind in ("binary_crossentropy", "categorical_crossentropy"):
        for i, v in enumerate(_flatten(data["data"]["inline"]["y"])):
            if not 0 <= v <= 1:
                problems.append(loaded.problem(y_at, f"{kind} needs targets between 0 and 1; found {v!r} (item {i} in reading order)"))
                break
    return info


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def metric_mode(tag: str) -> str:
    """'min' for losses and errors, 'max' for accuracies: which way is better."""
    return "min" if tag == "loss" or tag.endswith("_error") else "max"


def metric_name(metric: Mapping) -> str:
    """The scalar tag of a metric: `accuracy`, `top_5_accuracy`, ..."""
    return f"top_{metric['k']}_accuracy" if metric["type"] == "top_k_accuracy" else metric["type"]


def _flatten(value):
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def _freeze(value):
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def plain(value):
    """A frozen spec value back as plain dicts and lists (for YAML, JSON and hparams)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
