"""What flows through the compiled program: the training state, its keys and data, and what a chunk
hands back to the host.

Contract. Every type here is a NamedTuple, so a pytree that `jax.jit`, `lax.scan` and
`jax.vmap` carry as they are:

    TrainState   everything that changes in a step; a chunk takes it and gives it back (donated)
    LossScale    the dynamic loss scale of float16 training (part of TrainState)
    Keys         the run's random keys, arguments of the chunk (never constants of it)
    Data         a split on the device as stored (uint8 images stay uint8), with its scaling
    ChunkOutputs what the host reads after a chunk: the typed contract between compile and train

A checkpoint holds a TrainState under its field names (`netspec.training.checkpoint`): renaming a
field renames the arrays in every checkpoint file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from netspec.model.network import Tree


class LossScale(NamedTuple):
    """Dynamic loss scaling (float16; Micikevicius et al. 2018, as Keras's LossScaleOptimizer and
    jmp do): the scale halves at a step whose gradients overflow (that step is skipped) and
    doubles after `precision.loss_scale_period` steps in a row without overflow."""

    scale: jax.Array  # float32 []
    good_steps: jax.Array  # int32 []: steps in a row without overflow since the scale last changed


LOSS_SCALE_START = 2.0**15  # Keras's and jmp's starting scale
LOSS_SCALE_MAX = 2.0**24  # a loss times this stays finite in float32


class TrainState(NamedTuple):
    """Everything that changes during training; passed through jit and scan, donated."""

    step: jax.Array  # int32 []: steps done (skipped ones included)
    params: Tree  # {layer name: {param name: float32 array}}
    model_state: Tree  # {layer name: {name: array}}: batch_norm's running statistics
    opt_state: optax.OptState  # optax's state of the spec's optimizer, its learning rate injected
    skipped: jax.Array  # int32 []: steps whose loss or gradients were non-finite, so their update was not applied
    scaler: LossScale | None = None  # the dynamic loss scale, when the spec asks for one


class Keys(NamedTuple):
    """Per-run random keys, arguments of the compiled chunk (so a sweep can vmap seeds)."""

    step: jax.Array  # dropout and other per-step randomness: step k uses fold_in(step, k)


HostOrDevice = jax.Array | np.ndarray[Any, Any]  # a jitted function takes numpy too, and places it on the device


class Data(NamedTuple):
    """A split resident on the device as stored (images uint8), with its scaling arguments:
    the model sees `(x - shift) * scale` (float32, per feature for `standardize`)."""

    x: HostOrDevice  # [N, *example shape as stored]
    y: HostOrDevice  # [N, *label shape as stored]
    shift: HostOrDevice  # float32, [] or per feature
    scale: HostOrDevice  # float32, [] or per feature


class ChunkOutputs(NamedTuple):
    """What the host reads after a chunk of K steps (`netspec.compile.chunk`). Every field is a
    device array of its own (the state is donated to the next chunk), or None where the spec
    has no such thing."""

    loss: jax.Array  # float32 [K]: every step's training loss
    metrics: dict[str, jax.Array]  # {tag: float32 []}: the metrics on the last step's batch, after its update
    learning_rate: jax.Array  # float32 []: the rate the last step used
    skipped_steps: jax.Array  # int32 []: steps skipped so far (on_nonfinite: skip_step, loss-scale overflows)
    loss_scale: jax.Array | None  # float32 []: the dynamic loss scale after the chunk
    nonfinite_layer: jax.Array  # int32 []: from the per-step check, the first layer (spec order) whose
    #                             gradients went non-finite in the chunk's first bad step; len(layers): the
    #                             loss alone; -1: no bad step (or no per-step check)
    nonfinite_step: jax.Array  # int32 []: that step
    nonfinite: jax.Array | None  # bool []: on_nonfinite: stop without a per-step check: whether any loss or
    #                             anything in the final state is NaN or Inf (the host then finds the step)
