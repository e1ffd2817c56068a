"""Tests for netspec.docs: README's spec reference is generated from the schema and cannot drift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.scipy.special import erf
from support import README

from netspec.model.layers import activation, build, initializer
from netspec.model.losses import loss_fn
from netspec.spec import docs
from netspec.spec.check import check
from netspec.spec.choices import (
    ACTIVATION_DOCS,
    ACTIVATIONS,
    INITIALIZER_DOCS,
    INITIALIZERS,
    LOSS_DOCS,
    LOSSES,
    METRIC_DOCS,
    METRICS,
)
from netspec.spec.layers import LAYERS
from netspec.spec.load import parse
from netspec.spec.schema import SCHEMA


def test_readme_reference_is_the_rendered_schema():
    text = README.read_text()
    assert text.count(docs.BEGIN) == 1 and text.count(docs.END) == 1, "README must hold the reference markers once"
    section = text[text.index(docs.BEGIN) : text.index(docs.END) + len(docs.END)]
    assert section == docs.render(), "README is out of date: run `python -m netspec.spec.docs --write README.md`"


def test_write_replaces_only_the_reference():
    rewritten = docs.replace_section("before\n" + docs.BEGIN + "\nold\n" + docs.END + "\nafter\n", docs.render())
    assert rewritten == "before\n" + docs.render() + "\nafter\n"


def test_every_top_level_key_is_documented():
    text = README.read_text()
    missing = [key for key in SCHEMA["properties"] if f"| `{key}` |" not in text]
    assert not missing, f"README documents no row for: {missing}"


# -- the conventions the tables state -------------------------------------------------------------
# A Keras or PyTorch user reads the layer, activation, initializer and loss tables for what netspec
# does where those libraries differ. Each statement is checked here against what the code does.


@pytest.mark.parametrize(
    "table, described",
    [
        (ACTIVATIONS, ACTIVATION_DOCS),
        (INITIALIZERS, INITIALIZER_DOCS),
        (LOSSES, LOSS_DOCS),
        (METRICS, METRIC_DOCS),
        (LAYERS, {name: kind.doc for name, kind in LAYERS.items()}),
    ],
    ids=["activations", "initializers", "losses", "metrics", "layers"],
)
def test_every_name_says_what_it_computes(table, described):
    assert set(described) == set(table) and all(described.values())
    assert all(described[name] in docs_section() for name in table)


def docs_section() -> str:
    return docs.render().replace("\\|", "|")


@pytest.mark.parametrize(
    "words",
    [
        "`momentum=0.99`, `epsilon=0.001`",
        "running = momentum * running + (1 - momentum) * batch",
        "PyTorch's momentum 0.1 weighs the new batch",
        "`epsilon=1e-05`",
        "`approximate=true`",
        "tanh approximation",
        "`negative_slope=0.01`",
        "Keras clips p to [1e-7, 1 - 1e-7]",
        "log_sigmoid",
        "log_softmax",
        "(1 - a) y + a / classes",
        "count_include_pad",
        "1 / (1 - rate)",
        "glorot_uniform",
        "sqrt(6 / (fan_in + fan_out))",
        "truncated at 2 standard deviations",
        "channels-last",
        "TensorFlow's SAME",
    ],
)
def test_the_tables_state_the_conventions(words):
    assert words in docs_section()


def _checked_layers(layers: str):
    """A checked spec with `layers` between a [4, 4, 1] input and a sigmoid output."""
    text = (
        "name: conventions\ndata:\n  inline:\n    x: "
        + str([[[[float(i + r + c)] for c in range(4)] for r in range(4)] for i in range(4)])
        + "\n    y: [[0], [1], [1], [0]]\nmodel:\n  input: [4, 4, 1]\n  layers:\n"
        + layers
        + "    - {name: flat, type: flatten}\n    - {name: out, type: dense, units: 1, activation: sigmoid}\n"
        + "loss: binary_crossentropy\noptimizer: {type: sgd, learning_rate: 0.1}\ntrain: {steps: 1, batch_size: 4}\n"
    )
    return check(parse(text, "spec.yaml"))


def _run(layer, x, *, train=True):
    init, apply = build(layer)
    params, state = init(jax.random.key(0))
    return apply(params, state, [x], train=train, key=jax.random.key(1))


def test_batch_norm_keeps_keras_running_statistics():
    spec = _checked_layers("    - {name: bn, type: batch_norm}\n")
    bn = spec.layers[0]
    assert (bn.args["momentum"], bn.args["epsilon"]) == (0.99, 1e-3)
    x = jnp.arange(4 * 16, dtype=jnp.float32).reshape(4, 4, 4, 1)
    _, state = _run(bn, x)
    assert jnp.allclose(state["mean"], 0.01 * x.mean()) and jnp.allclose(
        state["var"], 0.99 + 0.01 * x.var()
    )  # biased variance


def test_layer_norm_epsilon_and_avg_pool_padding_and_dropout_scaling():
    spec = _checked_layers(
        "    - {name: ln, type: layer_norm}\n    - {name: pool, type: avg_pool, pool_size: 3, strides: 1, padding: same}\n"
        "    - {name: drop, type: dropout, rate: 0.5}\n"
    )
    ln, pool, drop = spec.layers[:3]
    assert ln.args["epsilon"] == 1e-5
    ones = jnp.ones((2, 4, 4, 1))
    assert jnp.allclose(_run(pool, ones)[0], 1.0)  # padded cells not counted: a corner is the mean of 4 ones, not 4/9
    y, _ = _run(drop, ones)
    assert set(jnp.unique(y).tolist()) <= {0.0, 2.0}  # kept units scaled by 1 / (1 - rate)
    assert jnp.array_equal(_run(drop, ones, train=False)[0], ones)


def test_activation_defaults():
    x = jnp.linspace(-3, 3, 7)
    gelu = activation({"type": "gelu", "approximate": ACTIVATIONS["gelu"]["approximate"]["default"]})
    assert jnp.allclose(gelu(x), jax.nn.gelu(x, approximate=True)) and not jnp.allclose(
        gelu(x), x * (1 + erf(x / jnp.sqrt(2.0))) / 2
    )
    leaky = activation({"type": "leaky_relu", "negative_slope": ACTIVATIONS["leaky_relu"]["negative_slope"]["default"]})
    assert float(leaky(jnp.array(-1.0))) == pytest.approx(-0.01)


def test_glorot_uniform_is_the_kernel_default_and_bounded_by_the_fans():
    spec = _checked_layers("    - {name: conv, type: conv2d, filters: 5, kernel_size: 3}\n")
    conv = spec.layers[0]
    assert conv.args["kernel_init"]["type"] == "glorot_uniform" and conv.args["bias_init"]["type"] == "zeros"
    kernel = initializer(conv.args["kernel_init"])(jax.random.key(0), (3, 3, 1, 5), jnp.float32)
    bound = (6 / (3 * 3 * 1 + 3 * 3 * 5)) ** 0.5
    assert float(jnp.abs(kernel).max()) <= bound and float(jnp.abs(kernel).max()) > 0.8 * bound


def test_cross_entropies_take_logits_without_clipping():
    spec = _checked_layers("")
    assert spec.fused_loss
    far = loss_fn(spec)(jnp.array([[-100.0]]), jnp.array([[1.0]]))
    assert float(far[0]) == pytest.approx(100.0)  # Keras's clipping at 1e-7 would give -log(1e-7) = 16.1
    z, y, a = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([[0.0, 1.0, 0.0]]), 0.1
    smoothed = -jnp.sum(((1 - a) * y + a / 3) * jax.nn.log_softmax(z), -1)  # the README's form of label_smoothing
    assert jnp.allclose(loss_fn(_checked_cce(a))(z, y), smoothed)


def _checked_cce(smoothing: float):
    text = (
        "name: cce\ndata:\n  inline:\n    x: [[0, 0], [0, 1], [1, 0]]\n    y: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n"
        "model:\n  input: [2]\n  layers:\n    - {name: out, type: dense, units: 3, activation: softmax}\n"
        f"loss: {{type: categorical_crossentropy, label_smoothing: {smoothing}}}\noptimizer: {{type: sgd, learning_rate: 0.1}}\n"
        "train: {steps: 1, batch_size: 3}\n"
    )
    return check(parse(text, "spec.yaml"))
