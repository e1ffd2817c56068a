"""Tests for netspec.registry against its JAX side (netspec.layers, netspec.compile) and optax.

One parametrized test per registry walks every entry. A new layer type fails
`test_every_layer_has_examples` until it gets rows in LAYER_EXAMPLES (tests/support.py), so no
layer ships with a shape rule that nobody compared against what its apply really produces.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import support
from support import LAYER_EXAMPLES, checked, probe_spec

from netspec.compile import optim as C
from netspec.errors import SpecError
from netspec.model import layers as L
from netspec.spec.choices import ACTIVATIONS, INITIALIZERS, OPTAX_SKIPPED, OPTIMIZERS, SCHEDULES
from netspec.spec.fields import defaults_of
from netspec.spec.layers import LAYERS

BATCH = 3


# -- the JAX side has exactly the registry's keys -----------------------------------------------


@pytest.mark.parametrize(
    "jax_side, registry",
    [
        (L.BUILDERS, LAYERS),
        (L.ACTIVATIONS, ACTIVATIONS),
        (L.INITIALIZERS, INITIALIZERS),
    ],
    ids=["layers", "activations", "initializers"],
)
def test_jax_side_has_the_registry_keys(jax_side, registry):
    assert sorted(jax_side) == sorted(registry)


# -- layers: the pure-Python shape rule equals jax.eval_shape of apply --------------------------
# (the examples are support.LAYER_EXAMPLES)


def test_every_layer_has_examples():
    missing = sorted(set(LAYERS) - set(LAYER_EXAMPLES))
    assert not missing, f"add shape examples to LAYER_EXAMPLES in {support.__file__} for: {', '.join(missing)}"
    stale = sorted(set(LAYER_EXAMPLES) - set(LAYERS))
    assert not stale, f"LAYER_EXAMPLES names layer types the registry no longer has: {stale}"


LAYER_CASES = [
    pytest.param(t, i, id=f"{t}-{i}") for t, examples in sorted(LAYER_EXAMPLES.items()) for i in range(len(examples))
]


@pytest.mark.parametrize("layer_type, index", LAYER_CASES)
def test_layer_shape_rule_equals_eval_shape(layer_type, index):
    if layer_type not in LAYERS:
        pytest.fail(f"{layer_type} has examples but is not in the registry")
    input_shape, before, layer = LAYER_EXAMPLES[layer_type][index]
    spec = checked(probe_spec(input_shape, before, layer))
    (probe,) = [layer for layer in spec.layers if layer.name == "probe"]
    assert probe.type == layer_type
    # check() computed out_shape with the registry's pure-Python rule; say so, then compare with jax.
    assert probe.out_shape == tuple(LAYERS[layer_type].shape(dict(probe.args), [list(s) for s in probe.in_shapes]))

    init, apply = L.build(probe)
    key = jax.random.key(0)
    params, state = jax.eval_shape(init, key)
    xs = [jax.ShapeDtypeStruct((BATCH, *s), jnp.float32) for s in probe.in_shapes]
    for train in (False, True):
        y, new_state = jax.eval_shape(
            lambda p, s, xs, train=train: apply(p, s, list(xs), train=train, key=key), params, state, xs
        )
        assert y.shape == (BATCH, *probe.out_shape), (
            f"train={train}: apply gives {y.shape[1:]}, the shape rule {probe.out_shape}"
        )
        assert y.dtype == jnp.float32
        assert jax.tree.structure(new_state) == jax.tree.structure(state)

    # and it really runs (on random numbers of those shapes: numpy's, so no PRNG kernels to compile)
    rng = np.random.default_rng(0)

    def real(s):
        return rng.normal(size=s.shape).astype(s.dtype)

    params, state = jax.tree.map(real, params), jax.tree.map(lambda s: np.abs(real(s)) + 0.5, state)  # e.g. a variance
    y, _ = apply(params, state, [real(x) for x in xs], train=False, key=key)
    assert y.shape == (BATCH, *probe.out_shape)
    assert np.all(np.isfinite(np.asarray(y)))


# -- activations and initializers ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_builds_with_its_defaults(name):
    fn = L.activation({"type": name, **defaults_of(ACTIVATIONS[name])})
    x = 3 * np.random.default_rng(0).normal(size=(BATCH, 5)).astype(np.float32)
    for f in (fn, jax.jit(fn)):
        y = np.asarray(f(x))
        assert y.shape == x.shape
        assert np.all(np.isfinite(y))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_builds_with_its_defaults(name):
    init = L.initializer({"type": name, **defaults_of(INITIALIZERS[name])})
    for shape in [(4, 5), (3, 3, 2, 4)]:  # dense and conv kernels
        value = np.asarray(init(jax.random.key(0), shape, jnp.float32))
        assert value.shape == shape
        assert value.dtype == np.float32
        assert np.all(np.isfinite(value))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_every_initializer_a_spec_may_give_as_bias_init_runs(name):
    """validate says ok => init works: a bias is 1-D, which jax's fan-based initializers refuse."""
    spec = probe_spec([2], [], {"type": "dense", "units": 7, "bias_init": name})
    try:
        checked_spec = checked(spec)
    except SpecError:
        return  # refused with a clear error: fine too
    (probe,) = [layer for layer in checked_spec.layers if layer.name == "probe"]
    init, _ = L.build(probe)
    params, _ = init(jax.random.key(0))
    assert params["bias"].shape == (7,)
    assert np.all(np.isfinite(np.asarray(params["bias"])))


# -- optimizers: optax's own arguments and defaults ----------------------------------------------


def _optax_arguments(fn, skipped=()) -> dict:
    """name -> default ('<required>' when it has none), in optax's order."""
    return {
        k: (p.default if p.default is not inspect.Parameter.empty else "<required>")
        for k, p in inspect.signature(fn).parameters.items()
        if k not in skipped
    }


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_arguments_are_optax_own(name):
    assert hasattr(optax, name), f"optax has no {name}"
    want = _optax_arguments(getattr(optax, name), OPTAX_SKIPPED)
    fields = OPTIMIZERS[name]
    got = {k: s.get("default", "<required>") for k, s in fields.items()}
    assert got == want
    assert list(got) == list(want), "same arguments, but not in optax's order (the docs list them in order)"


def _quadratic():
    target = {"kernel": jnp.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 2.0]]), "bias": jnp.array([0.5, -0.5])}
    params = {"kernel": jnp.full((3, 2), 0.1), "bias": jnp.full((2,), 0.1)}

    def loss(p):
        return sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)

    return params, loss


def _spec_optimizer(name: str, **extra) -> dict:
    """The optimizer mapping as a checked spec holds it: every default filled in."""
    return {"type": name, "learning_rate": 0.01, "clip_global_norm": None, **defaults_of(OPTIMIZERS[name]), **extra}


@pytest.mark.parametrize("clip", [None, 1.0], ids=["plain", "clip_global_norm"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_builds_and_steps(name, clip):
    tx = C.optimizer(_spec_optimizer(name, clip_global_norm=clip))
    params, loss = _quadratic()

    def step(p, s):
        g = jax.grad(loss)(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    @jax.jit
    def three_steps(p, s):
        first = step(p, s)
        return first, step(*step(*first))

    (p_first, _), (p_jit, s_jit) = three_steps(params, tx.init(params))
    if clip is None:  # jitted and not: the same optimizer
        p_eager, _ = step(params, tx.init(params))
        for a, b in zip(jax.tree.leaves(p_eager), jax.tree.leaves(p_first), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the whole state stays finite: on_nonfinite: stop takes a NaN or Inf anywhere in it for a bad chunk
    for leaf in jax.tree.leaves((p_jit, s_jit)):
        assert not jnp.issubdtype(leaf.dtype, jnp.floating) or np.all(np.isfinite(np.asarray(leaf)))
    assert not all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p_jit), strict=True)
    ), "params did not change"
    assert float(loss(p_jit)) < float(loss(params)), "three steps did not lower a quadratic"
    # the learning rate is injected state, where train reads it for its scalar
    assert float(C.current_learning_rate(s_jit)) == pytest.approx(0.01)


def test_clip_global_norm_clips():
    grads = {"w": jnp.array([30.0, 40.0])}  # global norm 50
    params = {"w": jnp.zeros(2)}
    for clip, norm in [(None, 50.0), (2.0, 2.0)]:
        tx = C.optimizer(_spec_optimizer("sgd", learning_rate=1.0, clip_global_norm=clip))
        updates, _ = tx.update(grads, tx.init(params), params)
        assert float(np.linalg.norm(np.asarray(updates["w"]))) == pytest.approx(norm)


# -- schedules ------------------------------------------------------------------------------------

SCHEDULE_REQUIRED = {  # sensible values for each schedule's required arguments
    "init_value": 0.1,
    "value": 0.1,
    "peak_value": 0.5,
    "end_value": 0.001,
    "transition_steps": 100,
    "decay_rate": 0.5,
    "decay_steps": 500,
    "warmup_steps": 10,
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_arguments_are_optax_own(name):
    fn_name, fields, required = SCHEDULES[name]
    assert hasattr(optax, fn_name), f"optax has no {fn_name}"
    want = _optax_arguments(getattr(optax, fn_name))
    got = {k: "<required>" if k in required else s.get("default", "<required>") for k, s in fields.items()}
    assert got == want
    assert list(got) == list(want)
    assert set(required) <= set(fields)
    for k in required:
        assert "default" not in fields[k], f"{k} is required and also has a default"


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_builds_and_gives_finite_values(name):
    _, fields, required = SCHEDULES[name]
    value = {"type": name, **defaults_of(fields), **{k: SCHEDULE_REQUIRED[k] for k in required}}
    if name == "piecewise_constant":
        value["boundaries_and_scales"] = {"5": 0.5, "100": 0.1}  # keys are strings in YAML/JSON
    schedule = C.learning_rate(value)
    assert callable(schedule)
    values = {step: float(schedule(step)) for step in (0, 10, 1000)}
    assert all(math.isfinite(v) for v in values.values()), values
    assert values[0] == pytest.approx(SCHEDULE_REQUIRED["value" if name == "constant" else "init_value"])
    # as an optimizer's learning rate: the injected value follows the schedule
    tx = C.optimizer(_spec_optimizer("sgd", learning_rate=value))
    params, loss = _quadratic()
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p)[1])
    for _ in range(11):
        state = step(params, state)
    assert float(C.current_learning_rate(state)) == pytest.approx(values[10], rel=1e-5)


def test_a_number_is_a_constant_learning_rate():
    assert C.learning_rate(0.25) == 0.25


# -- the schema built from the registry ------------------------------------------------------------


def test_unknown_optimizer_argument_names_the_valid_ones():
    spec = probe_spec([2], [], {"type": "dense", "units": 1})
    spec["optimizer"] = {"type": "adam", "learning_rate": 0.01, "beta1": 0.9}
    with pytest.raises(SpecError) as e:
        checked(spec)
    (problem,) = e.value.problems
    assert problem.path == "$.optimizer.beta1"
    assert "unknown key 'beta1'" in problem.message
    for valid in ["b1", "b2", "eps", "eps_root", "nesterov", "learning_rate", "clip_global_norm"]:
        assert valid in problem.message
    assert problem.line is not None and problem.source == "test.yaml"


def test_a_near_miss_optimizer_argument_gets_a_suggestion():
    spec = probe_spec([2], [], {"type": "dense", "units": 1})
    spec["optimizer"] = {"type": "adam", "learning_rate": 0.01, "epsilon": 1e-7}
    with pytest.raises(SpecError) as e:
        checked(spec)
    assert "did you mean 'eps'" in str(e.value) or "did you mean 'eps_root'" in str(e.value)


@pytest.mark.parametrize("layer_type", sorted(LAYERS))
def test_each_layer_builder_takes_its_spec_fields_as_keyword_arguments(layer_type):
    """The builder's signature documents the layer: its keyword-only arguments are exactly the
    registry's fields (all but `activation`, which the network applies), as optax's signatures
    are checked against the optimizer registry above."""
    parameters = inspect.signature(L.BUILDERS[layer_type]).parameters
    positional = [n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = {n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert positional == ["in_shapes", "out_shape"]
    # beside its fields, a conv2d builder takes how this backend computes it (`compile.chunk.conv_policy`)
    backend_choices = {"lowering"} if layer_type == "conv2d" else set()
    assert keywords == (set(LAYERS[layer_type].fields) - {"activation"}) | backend_choices
    assert sorted(L.BUILDERS) == sorted(LAYERS)
