"""The spec's layers wired into one model: itself an `(init, apply)` pair, as a layer is.

Contract (stax's `serial`, generalised to a graph): `network(layers) -> (init, apply)` with

    init(key) -> (params, model_state)      {layer name: {name: array}} each, float32
    apply(params, model_state, x, *, train, key, logits=False, collect=None) -> (y, model_state)

`x` is one batch shaped [batch, *model.input]; each layer reads the outputs of its `inputs` ("input"
is `x`) and runs under `jax.named_scope(<its name>)`, so the jaxpr and TensorBoard's graph are
grouped by the spec's names. `logits` stops before the last layer's activation (a cross-entropy
fuses it into the stable logits form: `netspec.model.losses`); `collect`, a dict, receives every
layer's output (the activation histograms). Layer `i` draws its randomness from
`fold_in(key, i)`, at init and at every step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax

from netspec.model.conv import Lowering
from netspec.model.layers import Activation, Arrays, Init, activation, build
from netspec.spec.types import Layer, plain

Tree = dict[str, Arrays]  # {layer name: {name: array}}: the model's params, or its state


class NetworkApply(Protocol):
    """The model's forward pass (see the module docstring)."""

    def __call__(
        self,
        params: Tree,
        state: Tree,
        x: jax.Array,
        *,
        train: bool,
        key: jax.Array,
        logits: bool = False,
        collect: dict[str, jax.Array] | None = None,
    ) -> tuple[jax.Array, Tree]: ...


_INITIALIZERS: dict[tuple[Any, ...], Init] = {}  # (type, arguments, shapes) -> its jitted initializer


def _initializer(layer: Layer, layer_init: Init) -> Init:
    """The jitted initializer of layers like `layer` (its own `layer_init` for the first one);
    one whose arguments are traced (a sweep member's, under jit) is jitted on its own."""
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(plain(layer.args))):
        return jax.jit(layer_init)
    key = (layer.type, json.dumps(plain(layer.args), sort_keys=True, default=str), layer.in_shapes, layer.out_shape)
    if key not in _INITIALIZERS:
        _INITIALIZERS[key] = jax.jit(layer_init)
    return _INITIALIZERS[key]


def network(
    layers: Sequence[Layer], *, conv: Mapping[str, Lowering] | None = None
) -> tuple[Callable[[jax.Array], tuple[Tree, Tree]], NetworkApply]:
    """`(init, apply)` of the model the checked `layers` describe (see the module docstring).
    `conv`: {conv2d layer name: "native" or "im2col"}, how each convolution is computed on this
    backend (`netspec.compile.chunk.conv_policy`); a layer not named is native. The parameters
    (and so `init`) are the same whichever lowering is chosen."""
    conv = conv or {}
    built = [
        (layer, *build(layer, lowering=conv.get(layer.name, "native") if layer.type == "conv2d" else None))
        for layer in layers
    ]
    activations: list[Activation | None] = [
        activation(layer.args["activation"]) if "activation" in layer.args else None for layer in layers
    ]
    # One compiled initializer per kind of layer (type, arguments, shapes), shared by the layers
    # alike: XLA compiles one program holding every layer's random initializers in time that grows
    # faster than the depth (100 dense layers of 4 units: 17.5 s, against 1.1 s this way, the
    # values bit for bit the same; benchmarks/compile_depth.py). Shared by every network of the
    # process too (`_INITIALIZERS`): a sweep's 16 members compile each kind once, not 16 times.
    inits = [_initializer(layer, layer_init) for layer, layer_init, _ in built]
    output = layers[-1].name

    def init(key: jax.Array) -> tuple[Tree, Tree]:
        params: Tree = {}
        state: Tree = {}
        for i, ((layer, _, _), layer_init) in enumerate(zip(built, inits, strict=True)):
            with jax.named_scope(layer.name):
                params[layer.name], state[layer.name] = layer_init(jax.random.fold_in(key, i))
        return params, state

    def apply(
        params: Tree,
        state: Tree,
        x: jax.Array,
        *,
        train: bool,
        key: jax.Array,
        logits: bool = False,
        collect: dict[str, jax.Array] | None = None,
    ) -> tuple[jax.Array, Tree]:
        """The output (or its logits when `logits`) and the new model state; `collect` (a dict)
        receives every layer's output."""
        values = {"input": x}
        new_state: Tree = {}
        last = len(built) - 1
        for i, ((layer, _, layer_apply), act) in enumerate(zip(built, activations, strict=True)):
            with jax.named_scope(layer.name):
                y, new_state[layer.name] = layer_apply(
                    params[layer.name],
                    state[layer.name],
                    [values[r] for r in layer.inputs],
                    train=train,
                    key=jax.random.fold_in(key, i),
                )
                if act is not None and not (logits and i == last):
                    y = act(y)
            values[layer.name] = y
            if collect is not None:
                collect[layer.name] = y
        return values[output], new_state

    return init, apply
