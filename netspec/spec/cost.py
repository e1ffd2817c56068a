"""What a model costs, from the pure-Python shape rules: parameters, arithmetic, memory.

Contract. Pure Python (no jax, no numpy): `check` uses it to refuse, before anything is compiled,
a model too deep to compile, a run plan past what a run may write, and a model whose training
cannot fit the memory budget (the budget itself is `netspec.machine`'s: a device's or this
host's memory). It only counts; the messages are `check`'s.

    layer_cost(layer, compute_bytes, *, conv="im2col") -> LayerCost   one checked layer (netspec.spec.types.Layer)
    model_costs(layers, compute_bytes, conv=None) -> [LayerCost]      conv: {conv2d layer: "native" or "im2col"}
    optimizer_state_elements(optimizer, param_shapes) -> int
    training_memory(...) -> [Part]                   what one training process holds at least
    MAX_LAYERS, MAX_SUMMARY_POINTS, MAX_EVALUATIONS, MAX_CHECKPOINTS   the bounds, with their measured reasons

A layer's cost, per example (no batch axis):
- `params`: its trainable arrays by name and shape, exactly those `netspec.model.layers` creates
  (`kernel`, `bias`, `scale`, `offset`); `state`: its non-trainable arrays (`batch_norm`'s
  running `mean` and `var`). A registry test walks every layer type to prove they agree.
- `macs`: multiply-accumulates of its matrix products and convolutions (dense:
  positions x inputs x units; conv2d: output positions x filters x kernel area x channels per
  group, the padding's zeros included: the matrix multiply im2col does), 0 for every other layer.
  A conv2d computed natively (`layer_cost(..., conv="native")`) counts only the taps inside the
  input, as XLA's own count of a convolution does (fashion_cnn's padded 3x3 convolutions: 8 %
  fewer).
- `flops` and `transcendentals`: the forward pass at evaluation (dropout the identity, batch_norm
  with its running statistics), counted as XLA's cost analysis (`HloCostAnalysis`, the
  `cost_analysis()` of a compiled function) counts them: 2 per multiply-accumulate, 1 per
  elementwise add, multiply, compare or select (a bias, max(x, 0), the steps of a
  normalisation, one comparison or sum per pooling window element), and every exp, log, tanh or
  rsqrt not among the flops but among the transcendentals. An activation function costs what
  XLA:CPU expands it to (`ACTIVATION_OPS`: sigmoid is -x, exp, +1, 1/: 3 flops and 1
  transcendental). Work done once per batch, not per example (batch_norm's rsqrt of its running
  variance), is left out. tests/spec/test_summary.py holds every layer example and activation
  to XLA's count.
- `activation_bytes`: its output in the compute dtype; `saved_bytes`: what training keeps of it
  for the backward pass (0 for flatten and reshape, which XLA does as a view of their input).

Memory (`training_memory`) adds, for one device: parameters, their gradients and the optimizer's
state (float32: `precision.params` is float32 only), the activations of one training batch saved
for the backward pass, the resident training data or the streamed chunks, the evaluated split
and one evaluation batch, and each chunk's batch indices; when the device is this machine's CPU,
also the data as read on the host, its copy on the way to the device, and the JAX runtime itself.
It is a lower bound of what XLA needs,
not an exact figure (XLA adds workspace and may keep more): a model it says cannot fit cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from netspec.spec.fields import as_pair
from netspec.spec.types import Layer

Shape = tuple[int, ...]
Arrays = dict[str, Shape]  # array name -> shape
# a layer type's rule: (its fields, in_shapes, out_shape) -> (params, state, macs, flops, transcendentals)
Rule = Callable[[Mapping[str, Any], Sequence[Shape], Shape], tuple[Arrays, Arrays, int, int, int]]


DTYPE_BYTES = {
    "bool": 1,
    "uint8": 1,
    "int8": 1,
    "uint16": 2,
    "int16": 2,
    "float16": 2,
    "bfloat16": 2,
    "uint32": 4,
    "int32": 4,
    "float32": 4,
    "uint64": 8,
    "int64": 8,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}


PARAM_BYTES = 4  # float32 parameters, gradients and optimizer state (precision.params: float32 only)


def dtype_bytes(name: str) -> int:
    """Bytes of one element of the dtype named `name` (numpy's names); 8 for one not listed."""
    return DTYPE_BYTES.get(name, 8)


def prod(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# Layers a model may have. XLA compiles the training step's forward and backward pass layer by
# layer, and its compile time and memory grow faster than the depth, as about depth**1.8: cold, to
# the first step, N dense layers of 4 units took 14 s at 400 layers, 60 s and 1.3 GB at 1,000,
# 197 s and 3.3 GB at 2,000 (a hand-written JAX loop: 17 s and 38 s), and 10,000 ended in
# std::bad_alloc (benchmarks/compile_depth.py; RESULTS.md, "Start-up against depth"). Since, the
# start-up's own part has come down to the hand-written loop's: 1,000 layers now take 14-15 s and
# 1.0 GB (the hand-written loop 8-9 s; RESULTS.md, "Start-up: a small model trains first"). The
# bound keeps a model's start within about a quarter of a minute and 1 GB on a 2-core machine.
MAX_LAYERS = 1000


DEPTH_MEASURED = (
    "1,000 layers of 4 units take 15 s and 1.0 GB to the first step, and 2,000 took 197 s and 3.3 GB "
    "when 1,000 took 60 s"
)


# Summary points a run may write (steps / summaries.every, and step 0). Each is a chunk boundary:
# the host waits for the device, and writes scalars and histograms (measured: about 1 ms and 2 KB
# of events per point for xor_nn's two layers). TensorBoard shows 1,000 points of a scalar chart
# and 500 histograms by default, so more are never seen; 10**9 points would be a list of 10**9
# chunk lengths (8 GB) before the first step.
MAX_SUMMARY_POINTS = 100_000


# Evaluations during a run (steps / eval.every): each one passes over the whole evaluated split and
# writes its metrics and a confusion-matrix image (about 25 KB of events for fashion_mlp).
MAX_EVALUATIONS = 10_000


# Checkpoints written during a run (steps / checkpoint.every): each writes the whole training state.
MAX_CHECKPOINTS = 10_000


class LayerCost(NamedTuple):
    """One layer's cost per example; see the module docstring for each field's meaning."""

    name: str
    type: str
    out_shape: tuple[int, ...]
    params: Arrays
    state: Arrays
    macs: int
    flops: int
    activation_bytes: int
    saved_bytes: int
    transcendentals: int = 0

    @property
    def param_count(self) -> int:
        return sum(prod(s) for s in self.params.values())

    @property
    def state_count(self) -> int:
        return sum(prod(s) for s in self.state.values())


def _elementwise_ops(flops: int, transcendentals: int = 0) -> Callable[[Mapping[str, Any], int], tuple[int, int]]:
    """An activation applied value by value: (flops, transcendentals) per row of `width` values."""
    return lambda args, width: (flops * width, transcendentals * width)


# activation -> (its arguments, the width of a row: the last axis) -> (flops, transcendentals) per
# row, as XLA:CPU expands the jax function and HloCostAnalysis counts it (jax 0.10): sigmoid
# 1 / (1 + exp(-x)); leaky_relu a compare, a multiply and a select; softmax a max and a sum over
# the row (width - 1 each), a subtraction and a division per value (XLA counts one more per row),
# an exp per value; exact gelu's erf a rational polynomial of 60-odd operations. XLA:CPU counts
# reductions over wider rows somewhat higher (softmax over 100 values: 4.55 per value, not 3.99).
ACTIVATION_OPS: dict[str, Callable[[Mapping[str, Any], int], tuple[int, int]]] = {
    "linear": _elementwise_ops(0),
    "sigmoid": _elementwise_ops(3, 1),
    "tanh": _elementwise_ops(0, 1),
    "relu": _elementwise_ops(1),
    "relu6": _elementwise_ops(1),  # a clamp
    "leaky_relu": _elementwise_ops(3),
    "elu": lambda args, width: ((3 + (args.get("alpha", 1.0) != 1.0)) * width, width),
    "selu": _elementwise_ops(5, 1),
    "gelu": lambda args, width: ((8 if args.get("approximate", True) else 64) * width, width),
    "softplus": _elementwise_ops(6, 2),  # log1p(exp(-|x|)) + max(x, 0)
    "swish": _elementwise_ops(4, 1),
    "silu": _elementwise_ops(4, 1),
    "softmax": lambda args, width: (4 * width - 1, width),
    "log_softmax": lambda args, width: (5 * width - 2, width + 1),  # x - max - log(sum(exp(x - max)))
}


def activation_ops(choice: Mapping[str, Any] | str | None, out_shape: Shape) -> tuple[int, int]:
    """(flops, transcendentals) of an activation (a checked {type, args} mapping, a name, or None:
    none) over one example's output of `out_shape` (`ACTIVATION_OPS`)."""
    if choice is None:
        return 0, 0
    name, args = (choice, {}) if isinstance(choice, str) else (choice["type"], choice)
    width = out_shape[-1] if out_shape else 1
    flops, transcendentals = ACTIVATION_OPS[name](args, width)
    rows = prod(out_shape) // width if width else 0
    return rows * flops, rows * transcendentals


def _dense(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    (shape,) = in_shapes
    inputs, units = shape[-1], args["units"]
    params = {"kernel": (inputs, units), **({"bias": (units,)} if args["use_bias"] else {})}
    macs = prod(shape[:-1]) * inputs * units
    act, trans = activation_ops(args.get("activation"), out_shape)
    return params, {}, macs, 2 * macs + prod(out_shape) * bool(args["use_bias"]) + act, trans


def _conv2d(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    (_, _, channels) = in_shapes[0]
    kh, kw = as_pair(args["kernel_size"])
    per_group, filters = channels // args["groups"], args["filters"]
    params = {"kernel": (kh, kw, per_group, filters), **({"bias": (filters,)} if args["use_bias"] else {})}
    macs = prod(out_shape) * kh * kw * per_group
    act, trans = activation_ops(args.get("activation"), out_shape)
    return params, {}, macs, 2 * macs + prod(out_shape) * bool(args["use_bias"]) + act, trans


def _taps_inside(size: int, window: int, stride: int, dilation: int, padding: str) -> int:
    """Along one axis: the (output position, kernel tap) pairs whose input lies inside the input,
    not in the padding (XLA's SAME rule: the extra padding at the end)."""
    out = -(-size // stride) if padding == "same" else (size - dilation * (window - 1) - 1) // stride + 1
    before = max((out - 1) * stride + dilation * (window - 1) + 1 - size, 0) // 2 if padding == "same" else 0
    inside = 0
    for tap in range(window):  # output o reads input o * stride + shift: inside for o in [first, last]
        shift = tap * dilation - before
        first, last = max(0, -(shift // stride)), min(out - 1, (size - 1 - shift) // stride)
        inside += max(0, last - first + 1)
    return inside


def conv_macs_inside(layer: Layer) -> int:
    """A checked conv2d's multiply-accumulates over the taps inside its input only: what XLA's
    native convolution is counted as (`layer_cost(..., conv="native")`)."""
    height, width, channels = layer.in_shapes[0]
    args = layer.args
    (kh, kw), (sh, sw), (dh, dw) = as_pair(args["kernel_size"]), as_pair(args["strides"]), as_pair(args["dilation"])
    taps = _taps_inside(height, kh, sh, dh, args["padding"]) * _taps_inside(width, kw, sw, dw, args["padding"])
    per_group, filters = channels // int(args["groups"]), int(args["filters"])
    return taps * per_group * filters


def _norm_params(args: Mapping[str, Any], size: int) -> Arrays:
    return {**({"scale": (size,)} if args["scale"] else {}), **({"offset": (size,)} if args["center"] else {})}


def _affine_ops(args: Mapping[str, Any]) -> int:
    return bool(args["scale"]) + bool(args["center"])


def _batch_norm(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    size = in_shapes[0][-1]
    # at evaluation (x - mean) * rsqrt(var + epsilon), then scale and offset; the rsqrt is per batch
    return _norm_params(args, size), {"mean": (size,), "var": (size,)}, 0, (2 + _affine_ops(args)) * prod(out_shape), 0


def _layer_norm(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    # per value: the mean's sum, x - mean and its square and their sum (the variance), x - mean
    # again and the rsqrt's product, then scale and offset; per row: two divisions and one rsqrt
    rows = prod(out_shape) // out_shape[-1]
    flops = (6 + _affine_ops(args)) * prod(out_shape) + 2 * rows
    return _norm_params(args, in_shapes[0][-1]), {}, 0, flops, rows


def _pool(kind: str) -> Rule:
    def rule(
        args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
    ) -> tuple[Arrays, Arrays, int, int, int]:
        ph, pw = as_pair(args["pool_size"])
        # max: window - 1 comparisons per output; avg: window - 1 sums and one division
        return {}, {}, 0, prod(out_shape) * (ph * pw - (kind == "max")), 0

    return rule


def _elementwise(ops: int) -> Rule:
    def rule(
        args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
    ) -> tuple[Arrays, Arrays, int, int, int]:
        return {}, {}, 0, ops * prod(out_shape) if ops >= 0 else sum(prod(s) for s in in_shapes) - prod(out_shape), 0

    return rule


def _activation(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    return {}, {}, 0, *activation_ops(args.get("activation"), out_shape)


def _global_pool(
    args: Mapping[str, Any], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[Arrays, Arrays, int, int, int]:
    return {}, {}, 0, prod(in_shapes[0]), 0  # the sums and one division per channel


# type -> rule(args, in_shapes, out_shape) -> (params, state, macs, flops, transcendentals)
RULES: dict[str, Rule] = {
    "dense": _dense,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "max_pool": _pool("max"),
    "avg_pool": _pool("avg"),
    "global_avg_pool": _global_pool,
    "activation": _activation,
    "dropout": _elementwise(0),  # the identity at evaluation
    "add": _elementwise(-1),  # (inputs - 1) additions per output value
    "concat": _elementwise(0),
    "flatten": _elementwise(0),
    "reshape": _elementwise(0),
}


VIEWS = {"flatten", "reshape"}  # no new buffer: XLA reshapes in place


def layer_cost(layer: Layer, compute_bytes: int = 4, *, conv: str = "im2col") -> LayerCost:
    """The cost of one checked layer (`netspec.spec.types.Layer`: type, args, in_shapes, out_shape),
    its activations in a compute dtype of `compute_bytes` bytes per value; a conv2d computed as
    `conv` ("im2col": its matrix multiply, every tap; "native": the taps inside the input)."""
    params, state, macs, flops, transcendentals = RULES[layer.type](layer.args, layer.in_shapes, layer.out_shape)
    if layer.type == "conv2d" and conv == "native":  # XLA's convolution skips the padding's taps
        skipped = macs - conv_macs_inside(layer)
        macs, flops = macs - skipped, flops - 2 * skipped
    out = prod(layer.out_shape) * compute_bytes
    saved = (
        0 if layer.type in VIEWS else out + (prod(layer.out_shape) if layer.type == "dropout" else 0)
    )  # dropout keeps its mask
    return LayerCost(
        layer.name, layer.type, tuple(layer.out_shape), params, state, macs, flops, out, saved, transcendentals
    )


def model_costs(
    layers: Iterable[Layer], compute_bytes: int = 4, conv: Mapping[str, str] | None = None
) -> list[LayerCost]:
    """`layer_cost` of every layer, in order; `conv`: {conv2d layer: "native" or "im2col"} (a layer
    not named: "im2col")."""
    return [layer_cost(layer, compute_bytes, conv=(conv or {}).get(layer.name, "im2col")) for layer in layers]


def _factored(shape: Shape, args: Mapping[str, Any]) -> bool:
    """Whether optax's adafactor factors this parameter's second moment (optax `_factored_dims`:
    at least 2 axes, and the second largest at least min_dim_size_to_factor)."""
    return bool(args["factored"]) and len(shape) >= 2 and sorted(shape)[-2] >= args["min_dim_size_to_factor"]


def _adafactor(args: Mapping[str, Any], shape: Shape) -> int:
    n = prod(shape)
    if _factored(shape, args):
        largest = sorted(shape)
        second_moment = (
            n // largest[-1] + n // largest[-2] + 1
        )  # row and column statistics, a placeholder for the full one
    else:
        second_moment = n + 2  # the full statistic, placeholders for the factored ones
    return second_moment + (n if args["momentum"] is not None else 0)


# optimizer -> copies of the parameters it keeps (optax's state, counted from its `init`), or a
# function (args, param shape) -> elements for those whose state is not a whole number of copies
OPTIMIZER_COPIES: dict[str, int | Callable[[Mapping[str, Any], Shape], int]] = {
    "sgd": lambda args, shape: prod(shape) * (args["momentum"] is not None),
    "adam": 2,
    "adamw": 2,
    "adamax": 2,
    "adamaxw": 2,
    "nadam": 2,
    "nadamw": 2,
    "radam": 2,
    "rmsprop": lambda args, shape: prod(shape) * (1 + bool(args["centered"]) + (args["momentum"] is not None)),
    "adagrad": 1,
    "adadelta": 2,
    "adafactor": _adafactor,
    "lamb": 2,
    "lars": 1,
    "lion": 1,
    "novograd": 1,
    "fromage": 0,
    "yogi": 2,
    "amsgrad": 3,
    "adabelief": 2,
    "adan": 4,  # m, v, n and the previous gradient
    "sm3": lambda args, shape: prod(shape) + sum(shape),  # momentum, and one accumulator per axis
    "noisy_sgd": 0,
    "sign_sgd": 0,
    "optimistic_gradient_descent": 1,  # the previous gradient
    "rprop": 2,  # step sizes and previous updates
}


def optimizer_state_elements(optimizer: Mapping[str, Any], param_shapes: Iterable[Sequence[int]]) -> int:
    """Elements (float32) of the state optax's optimizer `optimizer` ({type, its arguments}) keeps
    for parameters of these shapes: its per-parameter arrays, not its scalar counters."""
    rule = OPTIMIZER_COPIES[optimizer["type"]]
    if callable(rule):
        return sum(rule(optimizer, tuple(s)) for s in param_shapes)
    return rule * sum(prod(s) for s in param_shapes)


class Part(NamedTuple):
    """One share of the memory estimate: what, bytes, and the spec key that sets it."""

    what: str
    bytes: int
    key: tuple[str, ...]  # the spec key that sets it: ("train", "batch_size")


# What the JAX runtime holds before the model's first byte, measured for a tiny run on the CPU
# (jax 0.10, 2 cores): about 250 MiB resident, and 1.5 GiB of address space (thread stacks and
# reserved arenas), which a `ulimit -v` counts.
RUNTIME_RESIDENT = 256 * 2**20


LOSS_RECORD_BYTES = 32  # netspec.training keeps every step's loss: a float object (24 bytes) and its list slot (8)


RUNTIME_ADDRESS_SPACE = 1536 * 2**20


def training_memory(
    costs: list[LayerCost],
    *,
    input_shape: Shape,
    optimizer: Mapping[str, Any],
    batch_size: int,
    devices: int | None,
    example_bytes: int,
    label_bytes: int,
    num_train: int | None,
    num_eval: int | None,
    eval_batch_size: int,
    chunk_steps: int,
    max_resident_bytes: float,
    budget_kind: str = "device",
    steps: int | None = None,
    steps_key: tuple[str, ...] = ("train", "steps"),
) -> list[Part]:
    """The memory one device needs at least to train, as `Part`s (see the module docstring).

    `example_bytes` and `label_bytes`: one example and its label as stored (e.g. 784 uint8 pixels);
    `num_train`, `num_eval`: examples in the training split and the evaluated one (None: unknown,
    left out); `chunk_steps`: steps per compiled chunk (`summaries.every`, at most the run);
    `devices`: the spec's distribute.devices (None: all, counted as one, since their number is
    not known before JAX starts). Parameters are replicated on every device; the batch is split.
    `budget_kind` (`Budget.kind`): for "host" and "address space" the device is this machine's
    CPU, so the data as read on the host, the JAX runtime and the host's record of the loss of
    each of the run's `steps` (a Python float in a list: 32 bytes a step; netspec.training) count too.
    """
    per_device = -(-batch_size // (devices or 1))
    example = example_bytes + label_bytes
    parts = _model_parts(costs, optimizer)
    saved = sum(c.saved_bytes for c in costs) + prod(input_shape) * 4  # the scaled float32 input too
    parts.append(
        Part(
            f"the activations of one batch of {per_device} kept for the backward pass",
            per_device * saved,
            ("train", "batch_size"),
        )
    )
    if num_train is not None:
        parts += _training_data_parts(num_train, batch_size, per_device, example, chunk_steps, max_resident_bytes)
    if num_eval:
        parts.append(_eval_part(costs, num_eval, eval_batch_size, example))
    if budget_kind in ("host", "address space"):  # a CPU device: the host's own copies share its memory
        parts += _host_parts(budget_kind, num_train, num_eval, example, steps, steps_key)
    return parts


def _model_parts(costs: list[LayerCost], optimizer: Mapping[str, Any]) -> list[Part]:
    """The parameters, their gradients, the optimizer's state and the layers' running statistics."""
    shapes = [s for c in costs for s in c.params.values()]
    n_params = sum(prod(s) for s in shapes)
    n_state = sum(c.state_count for c in costs)
    parts = [
        Part(f"parameters ({_count(n_params)} float32)", n_params * PARAM_BYTES, ("model", "layers")),
        Part("their gradients", n_params * PARAM_BYTES, ("model", "layers")),
    ]
    opt = optimizer_state_elements(optimizer, shapes)
    if opt:
        parts.append(
            Part(
                f"{optimizer['type']}'s state ({opt / n_params:.3g} x the parameters)"
                if n_params
                else f"{optimizer['type']}'s state",
                opt * PARAM_BYTES,
                ("optimizer", "type"),
            )
        )
    if n_state:
        parts.append(Part("the layers' running statistics", n_state * PARAM_BYTES, ("model", "layers")))
    return parts


def _training_data_parts(
    num_train: int, batch_size: int, per_device: int, example: int, chunk_steps: int, max_resident_bytes: float
) -> list[Part]:
    """The training data on the device (or two chunks of streamed batches), and a chunk's batch indices."""
    parts = []
    data = num_train * example
    if data <= max_resident_bytes:
        parts.append(Part(f"the training data ({num_train} examples)", data, ("data",)))
    else:  # streamed: the host gathers each chunk's batches, the next chunk's while this one runs
        parts.append(
            Part(
                f"two chunks of streamed batches ({chunk_steps} steps of {per_device})",
                2 * chunk_steps * per_device * example,
                ("summaries", "every"),
            )
        )
    if batch_size and batch_size < num_train:
        parts.append(
            Part(
                f"the batch indices of one chunk ({chunk_steps} steps)",
                chunk_steps * batch_size * 4,
                ("summaries", "every"),
            )
        )
    return parts


def _eval_part(costs: list[LayerCost], num_eval: int, eval_batch_size: int, example: int) -> Part:
    """The evaluated split, padded to whole batches, and one evaluation batch's activations."""
    eval_batch = min(eval_batch_size, num_eval)
    padded = -(-num_eval // eval_batch) * eval_batch
    biggest = max((c.activation_bytes for c in costs), default=0)
    return Part(
        f"the evaluated split ({num_eval} examples) and one evaluation batch",
        padded * example + eval_batch * 2 * biggest,
        ("eval", "batch_size"),
    )


def _host_parts(
    budget_kind: str,
    num_train: int | None,
    num_eval: int | None,
    example: int,
    steps: int | None,
    steps_key: tuple[str, ...],
) -> list[Part]:
    """What a CPU device's host holds besides: the data as read, the JAX runtime, the loss record."""
    parts = []
    if num_train is not None:
        # measured (jax 0.10, CPU): 256 MiB of data read, then put on the device, took the
        # process from 296 MB to 953 MB: one more copy than the device's while it moves there
        parts.append(
            Part(
                "the data as read, on the host, and its copy on the way to the device",
                2 * (num_train + (num_eval or 0)) * example,
                ("data",),
            )
        )
    runtime = RUNTIME_ADDRESS_SPACE if budget_kind == "address space" else RUNTIME_RESIDENT
    parts.append(Part("the JAX runtime", runtime, ("model",)))
    if steps:
        parts.append(
            Part(f"the loss of each of the {steps} steps, kept on the host", steps * LOSS_RECORD_BYTES, steps_key)
        )
    return parts


def _count(n: int) -> str:
    """1234567 -> '1.23 million'; small counts as they are."""
    for size, word in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million")):
        if n >= size:
            return f"{n / size:.3g} {word}"
    return f"{n:,}"
