"""The spec's optimizer as an optax transformation, and its learning rate.

Contract: `optimizer(spec_optimizer, seed=...) -> optax.GradientTransformation` is optax's own
optimizer of that name (`optax.<type>(**its arguments)`, optax's defaults), with the learning
rate (a number, or the optax schedule `learning_rate(...)` names) injected as state by
`optax.inject_hyperparams`, so the rate is an argument of the compiled chunk, not a constant: it
can be logged (`current_learning_rate`) and varied without compiling again. With
`clip_global_norm` the gradients are first clipped (`optax.clip_by_global_norm`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import jax
import optax

from netspec.spec.choices import OPTIMIZERS, SCHEDULES


def learning_rate(value: float | jax.Array | Mapping[str, Any]) -> float | jax.Array | optax.Schedule:
    """A number, or the optax schedule a `{type, args}` mapping names (`SCHEDULES`: spec name ->
    optax function)."""
    if not isinstance(value, Mapping):
        return value  # a checked spec's number, or a sweep member's traced one (netspec.compile.members)
    fn_name, fields, _ = SCHEDULES[value["type"]]
    args = {k: v for k, v in value.items() if k != "type" and k in fields}
    if value["type"] == "piecewise_constant":
        args["boundaries_and_scales"] = {int(k): float(v) for k, v in (args["boundaries_and_scales"] or {}).items()}
    schedule: optax.Schedule = getattr(optax, fn_name)(**args)
    return schedule


def optimizer(spec_optimizer: Mapping[str, Any], *, seed: int = 0) -> optax.GradientTransformation:
    """The optax transformation of the spec's `optimizer` section (see the module docstring);
    `seed` keys noisy_sgd's noise unless the spec names its own."""
    name = spec_optimizer["type"]
    args = {k: spec_optimizer[k] for k in OPTIMIZERS[name] if k in spec_optimizer}
    if "seed" in OPTIMIZERS[name]:  # noisy_sgd: its noise follows the spec's seed unless it names its own
        chosen = args.pop("seed")
        args["key"] = jax.random.key(seed if chosen is None else chosen)
    factory = getattr(optax, name)
    # inject_hyperparams takes any callable default for a schedule: adafactor's dtype_momentum
    # (jnp.float32) was called as one, and adafactor with momentum crashed at its first step
    dtypes = tuple(
        n for n, p in inspect.signature(factory).parameters.items() if n != "learning_rate" and callable(p.default)
    )
    tx = optax.inject_hyperparams(factory, static_args=tuple(args) + dtypes)(
        learning_rate=learning_rate(spec_optimizer["learning_rate"]), **args
    )
    clip = spec_optimizer["clip_global_norm"]
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip is not None else tx


def with_spec_rate(restored: optax.OptState, fresh: optax.OptState) -> optax.OptState:
    """`restored` (an optimizer state read from a checkpoint) with the constant learning rate of
    `fresh` (the state the resuming spec's optimizer starts with). optax.inject_hyperparams keeps
    a constant rate in its state and reads it from there at every update, so a checkpoint would
    bring back the rate it was written with, whatever `--set optimizer.learning_rate` a resume
    asks for. A schedule is recomputed from the spec at every update and is left as restored;
    the same rate (an unchanged spec) gives the same state bit for bit."""

    def is_injected(node: Any) -> bool:
        return isinstance(node, optax.InjectStatefulHyperparamsState)

    def pick(old: Any, new: Any) -> Any:
        if not is_injected(old) or "learning_rate" in old.hyperparams_states:
            return old
        return old._replace(hyperparams={**old.hyperparams, "learning_rate": new.hyperparams["learning_rate"]})

    picked: optax.OptState = jax.tree_util.tree_map(pick, restored, fresh, is_leaf=is_injected)
    return picked


def current_learning_rate(opt_state: optax.OptState) -> jax.Array:
    """The learning rate the optimizer used at its last step (inject_hyperparams keeps it)."""
    # With a schedule, inject_hyperparams also keeps the schedule's own state under the same name.
    rate: jax.Array = optax.tree_utils.tree_get(
        opt_state, "learning_rate", filtering=lambda _, value: isinstance(value, jax.Array)
    )
    return rate
