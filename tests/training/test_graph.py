"""Tests for netspec.graph: the step drawn as one box per layer, read back as TensorBoard reads it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from netspec.training.graph import _scope, step_graph, write_graph


def _names(tree, prefix=""):
    """`{"layer1": {"kernel": ...}}` -> `{"layer1": {"kernel": "layer1/kernel"}}`."""
    return jax.tree_util.tree_map_with_path(lambda path, _: prefix + "/".join(str(key.key) for key in path), tree)


def _dense(params, x, activation):
    return activation(x @ params["kernel"] + params["bias"])


def _mlp_step(activation=jax.nn.sigmoid, out_activation=jax.nn.sigmoid):
    """A 2-2-1 MLP's SGD step, scoped as a TF1 tutorial would: layer1, hypothesis, cost, train."""

    def loss(params, batch):
        with jax.named_scope("layer1"):
            h = _dense(params["layer1"], batch["x"], activation)
        with jax.named_scope("hypothesis"):
            y_hat = _dense(params["hypothesis"], h, out_activation)
        with jax.named_scope("cost"):
            return jnp.mean((y_hat - batch["y"]) ** 2)

    def step(params, batch):
        cost, grads = jax.value_and_grad(loss)(params, batch)
        with jax.named_scope("train"):
            params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return params, cost

    return step


def _mlp_args():
    params = {
        "layer1": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)},
        "hypothesis": {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)},
    }
    batch = {
        "x": jax.ShapeDtypeStruct((4, 2), jnp.float32),
        "y": jax.ShapeDtypeStruct((4, 1), jnp.float32),
    }
    return (params, batch), (_names(params), _names(batch, "input/"))


def _read_back(graph, logdir):
    with SummaryWriter(logdir=str(logdir)) as writer:
        write_graph(writer, graph)
    return EventAccumulator(str(logdir)).Reload().Graph()


def _assert_well_formed(graph):
    names = [node.name for node in graph.node]
    assert len(names) == len(set(names)), "node names must be unique"
    for node in graph.node:
        for ref in node.input:
            assert ref.split(":")[0] in names, f"{node.name} reads {ref}, which is no node"
        assert "_output_shapes" in node.attr, node.name


def test_mlp_step_draws_one_box_per_layer(tmp_path):
    args, arg_names = _mlp_args()
    graph = _read_back(step_graph(_mlp_step(), *args, arg_names=arg_names), tmp_path)

    _assert_well_formed(graph)
    nodes = {node.name: node for node in graph.node}
    assert nodes["layer1/kernel"].op == "VariableV2"
    assert nodes["input/x"].op == "Placeholder"
    ops = [name for name, node in nodes.items() if node.op not in ("VariableV2", "Placeholder", "Const")]
    boxes = ("layer1/", "hypothesis/", "gradients/layer1/", "gradients/hypothesis/", "cost/", "train/")
    for box in boxes:
        assert any(name.startswith(box) for name in ops), f"no op in {box}"
    assert nodes["layer1/logistic_0"].input == ["layer1/add_0"]
    # TensorBoard writes the producer's shape on each edge.
    kernel_shape = nodes["layer1/kernel"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in kernel_shape.dim] == [2, 2]


def test_jit_boundaries_do_not_change_the_graph():
    args, arg_names = _mlp_args()
    plain = step_graph(_mlp_step(), *args, arg_names=arg_names)
    jitted = step_graph(jax.jit(_mlp_step()), *args, arg_names=arg_names)
    assert [n.name for n in jitted.node] == [n.name for n in plain.node]


@pytest.mark.parametrize(
    "activation, out_activation",
    [
        (jax.nn.relu, jax.nn.sigmoid),
        (jax.nn.relu, jax.nn.log_softmax),
        (jax.nn.softplus, jax.nn.sigmoid),
    ],
)
def test_library_activations_are_inlined_into_their_layer(activation, out_activation, tmp_path):
    args, arg_names = _mlp_args()
    step = _mlp_step(activation, out_activation)
    graph = _read_back(step_graph(step, *args, arg_names=arg_names), tmp_path)

    _assert_well_formed(graph)
    ops = {node.op for node in graph.node}
    assert not ops & {"jit", "pjit", "custom_jvp_call", "custom_vjp_call"}
    layer1_ops = {node.op for node in graph.node if node.name.startswith("layer1/")}
    assert layer1_ops & {"max", "log1p", "exp"}, "the activation's own ops sit in its layer's box"


def test_checkpointed_layer_is_not_scoped_twice():
    def step(w, x):
        def loss(w):
            with jax.named_scope("model"), jax.named_scope("layer1"):
                return jax.checkpoint(lambda x: jnp.tanh(x @ w))(x).sum()

        return jax.grad(loss)(w)

    graph = step_graph(step, jnp.ones((3, 3)), jnp.ones((2, 3)), arg_names=("model/layer1/w", "input/x"))
    _assert_well_formed(graph)
    names = [node.name for node in graph.node]
    assert any(name.startswith("gradients/model/layer1/rematted_computation/") for name in names)
    assert not any("layer1/model" in name for name in names)


@pytest.mark.parametrize("loop", ["scan", "while", "cond"])
def test_loops_and_branches_stay_one_node(loop, tmp_path):
    def body(c, x):
        with jax.named_scope("cell"):
            c = jnp.tanh(c * x)
        return c, c

    def step(w, xs):
        with jax.named_scope("rnn"):
            if loop == "scan":
                c, _ = lax.scan(body, w, xs)
            elif loop == "while":
                c = lax.while_loop(lambda c: c.sum() < 3.0, lambda c: c * 2.0, w * xs[0])
            else:
                c = lax.cond(w.sum() > 0, lambda w: w * 2.0, lambda w: w - 1.0, w)
        return c.sum()

    if loop == "scan":
        step = jax.value_and_grad(step)
    graph = step_graph(step, jnp.ones(3), jnp.ones((5, 3)), arg_names=("rnn/w", "input/xs"))
    graph = _read_back(graph, tmp_path)

    _assert_well_formed(graph)
    assert any(node.name == f"rnn/{loop}_0" and node.op == loop for node in graph.node)
    assert not any("cell" in node.name for node in graph.node)


def test_constants_land_in_their_users_box():
    table = np.arange(40.0, dtype=np.float32).reshape(4, 10)

    def step(x):
        with jax.named_scope("embed"):
            return (x * jnp.asarray(table) + 1.0).sum()

    graph = step_graph(step, jnp.ones((4, 10)), arg_names=("input/x",))
    _assert_well_formed(graph)
    consts = [node for node in graph.node if node.op == "Const"]
    assert consts and all(node.name.startswith("embed/Const_") for node in consts)
    # The literal shows its value; the 40-element table only its shape.
    assert any(node.attr["value"].s == b"1.0" for node in consts)


def test_arg_names_must_match_args():
    args, (param_names, _) = _mlp_args()
    with pytest.raises(ValueError, match="structure of args"):
        step_graph(_mlp_step(), *args, arg_names=(param_names, {"x": "input/x"}))


@pytest.mark.parametrize(
    "name_stack, scope",
    [
        ("", ()),
        ("layer1", ("layer1",)),
        ("jvp(layer1)", ("layer1",)),
        ("transpose(jvp(layer1))", ("gradients", "layer1")),
        ("train", ("train",)),
        ("transpose(jvp())", ("gradients",)),
        # jax wraps only the outermost scope in the transform.
        ("transpose(jvp(model))/layer1", ("gradients", "model", "layer1")),
        ("a/vmap()", ("a",)),
        ("jvp(a/b)/c", ("a", "b", "c")),
        # jax.checkpoint's backward pass repeats the stack.
        ("transpose(jvp(model))/layer2/jvp(model)/layer2", ("gradients", "model", "layer2")),
    ],
)
def test_name_stack_to_scope(name_stack, scope):
    assert _scope(name_stack) == scope
