"""The training step as a TensorBoard graph: one box per layer, as TensorFlow 1's name scopes drew it.

`step_graph(fn, *args, arg_names=...)` traces `fn` with `jax.make_jaxpr` and returns a tensorboardX
`GraphDef`; `write_graph(writer, graph)` puts it in the writer's event file, where TensorBoard's
Graphs tab and `EventAccumulator.Graph()` read it. TensorBoard draws one box per '/'-separated name
prefix, so everything here is about names:

- Inputs are named by `arg_names`, one string per leaf of `args`. A name under `input/` is data fed
  each step (op `Placeholder`); any other name is state the step carries from one call to the next
  (params, optimizer state, rng key: op `VariableV2`). So `layer1/kernel` sits in the `layer1` box.
- Each equation becomes `<scope>/<primitive>_<n>` with op `<primitive>`, `n` counting from 0 per
  scope and primitive. The scope is the equation's `jax.named_scope` stack with the transforms
  peeled off: `layer1`, `jvp(layer1)`, `vmap(layer1)` give `layer1`. A stack with `transpose(...)`
  anywhere is the backward pass and goes under `gradients/` (`transpose(jvp(layer1))` gives
  `gradients/layer1`), as TF1's gradients box did. An empty stack is the top level.
- Literals become `Const` nodes in the scope of the equation that uses them; a closed-over constant
  becomes one `Const` node, in the scope of its first user.
- Call-like primitives (jit, custom_jvp/custom_vjp, remat, closed_call) are inlined with the caller's
  scope as a prefix, so a jitted helper adds no box and a jitted step looks like an unjitted one.
  Loops and branches (`scan`, `while`, `cond`) and any other primitive that carries a jaxpr stay one
  node: their bodies run many times or not at all, so drawn inline their edges would show the shapes
  of one iteration as if they were the loop's.
- An input names its producer, `name:k` for the producer's k-th output (TF's convention). Every node
  carries `_output_shapes`, which TensorBoard writes on edges, and `T`, its first output's dtype.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend import core as jcore
from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2
from tensorboardX.proto.attr_value_pb2 import AttrValue
from tensorboardX.proto.graph_pb2 import GraphDef
from tensorboardX.proto.node_def_pb2 import NodeDef
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.proto.types_pb2 import DataType
from tensorboardX.proto.versions_pb2 import VersionDef

DATA_PREFIX = "input/"


GRADIENTS_SCOPE = "gradients"


# Primitive name -> the params that may hold its body, newest jax first. The body's invars and
# outvars are the equation's, one to one, which is what makes inlining sound.
_INLINED_BODY_PARAMS: dict[str, tuple[str, ...]] = {
    "jit": ("jaxpr",),
    "pjit": ("jaxpr",),  # jax < 0.7 named the jit primitive `pjit`
    "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",),
    "remat2": ("jaxpr",),  # jax.checkpoint
    "checkpoint": ("jaxpr",),
    "custom_jvp_call": ("call_jaxpr",),
    "custom_vjp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call_jaxpr": ("fun_jaxpr",),
}


_DTYPES = {
    "float16": DataType.DT_HALF,
    "bfloat16": DataType.DT_BFLOAT16,
    "float32": DataType.DT_FLOAT,
    "float64": DataType.DT_DOUBLE,
    "int8": DataType.DT_INT8,
    "int16": DataType.DT_INT16,
    "int32": DataType.DT_INT32,
    "int64": DataType.DT_INT64,
    "uint8": DataType.DT_UINT8,
    "uint16": DataType.DT_UINT16,
    "bool": DataType.DT_BOOL,
    "complex64": DataType.DT_COMPLEX64,
    "complex128": DataType.DT_COMPLEX128,
}


_TRANSFORM = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)


Scope = tuple[str, ...]  # the box path of a node, e.g. ("gradients", "layer1")


def step_graph(fn: Callable, *args: Any, arg_names: Any) -> GraphDef:
    """GraphDef of `jax.make_jaxpr(fn)(*args)`, nodes scoped by jax.named_scope names."""
    tree = jax.tree.structure(args)
    names, names_tree = jax.tree.flatten(tuple(arg_names))
    if names_tree != tree:  # type: ignore[operator]  # jaxlib has no stub for PyTreeDef (C++), which has ==
        raise ValueError(
            f"arg_names must have the structure of args, one name per array;\n"
            f"  args:      {tree}\n  arg_names: {names_tree}"
        )
    bad = [n for n in names if not isinstance(n, str) or not n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if bad or duplicates:
        raise ValueError(f"arg_names must be distinct non-empty strings; bad: {bad}, repeated: {duplicates}")

    closed = jax.make_jaxpr(fn)(*args)
    builder = _Builder()
    inputs = [builder.add_input(name, var.aval) for name, var in zip(names, closed.jaxpr.invars, strict=True)]
    builder.inline(closed.jaxpr, closed.consts, inputs, scope=())
    return GraphDef(node=builder.nodes, versions=VersionDef(producer=22))


def write_graph(writer: SummaryWriter, graph: GraphDef) -> None:
    """Write `graph` into the writer's event file, where TensorBoard's Graphs tab reads it."""
    # SummaryWriter.add_graph only takes torch modules; its FileWriter writes any Event, and an Event
    # with `graph_def` set is exactly what TensorBoard looks for.
    event = event_pb2.Event(graph_def=graph.SerializeToString())
    writer._get_file_writer().add_event(event)
    writer.flush()  # written once per run; TensorBoard should see it before the first summary


def _scope(name_stack: Any) -> Scope:
    """The box path of one equation: named scopes without transforms, under `gradients` if backward."""
    scopes: list[str] = []
    backward = False
    for part in _split_top_level(str(name_stack)):
        while match := _TRANSFORM.match(part):
            backward |= match.group(1) == "transpose"
            part = match.group(2)
        # A transform wraps only the scope after it, but that scope may itself contain '/'.
        scopes += [p for p in _split_top_level(part) if p]
    # The backward pass of jax.checkpoint repeats the whole stack (`transpose(jvp(m))/l/jvp(m)/l`).
    half = len(scopes) // 2
    if half and scopes[:half] == scopes[half:]:
        scopes = scopes[:half]
    return (GRADIENTS_SCOPE, *scopes) if backward else tuple(scopes)


def _split_top_level(text: str) -> list[str]:
    """Split on the '/' outside parentheses: `jvp(a/b)/c` is two parts, not three."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "/" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class _Builder:
    """Accumulates NodeDefs and keeps their names unique."""

    def __init__(self) -> None:
        self.nodes: list[NodeDef] = []
        self._taken: set[str] = set()
        self._counts: dict[tuple[Scope, str], int] = {}

    def add_input(self, name: str, aval: Any) -> str:
        op = "Placeholder" if name.startswith(DATA_PREFIX) else "VariableV2"
        attr = {"dtype": _dtype_attr(aval), "shape": AttrValue(shape=_shape(aval))}
        return self._add(name, op, [], [aval], attr)

    def inline(self, jaxpr: Any, consts: Any, inputs: list[str], scope: Scope) -> list[str]:
        """Add the equations of `jaxpr` fed by `inputs`; returns the references to its outputs."""
        env: dict[Any, Any] = dict(zip(jaxpr.invars, inputs, strict=True))
        # Closed-over constants get their node on first use, so it lands in its user's box.
        env.update((var, _Pending(value)) for var, value in zip(jaxpr.constvars, consts, strict=True))
        for eqn in jaxpr.eqns:
            eqn_scope = (*scope, *_scope(eqn.source_info.name_stack))
            ins = [self._resolve(env, v, eqn_scope) for v in eqn.invars]
            body = _inlined_body(eqn)
            if body is not None:
                outs = self.inline(body.jaxpr, body.consts, ins, eqn_scope)
            else:
                avals = [v.aval for v in eqn.outvars]
                name = self._add_op(eqn_scope, eqn.primitive.name, ins, avals, _param_attrs(eqn.params))
                outs = [_ref(name, k) for k in range(len(avals))]
            for var, out in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jcore.DropVar):
                    env[var] = out
        return [self._resolve(env, v, scope) for v in jaxpr.outvars]

    def _resolve(self, env: dict[Any, Any], var: Any, scope: Scope) -> str:
        if isinstance(var, jcore.Literal):
            return self._add_op(scope, "Const", [], [var.aval], _value_attr(var.val))
        found = env[var]
        if isinstance(found, _Pending):
            found = env[var] = self._add_op(scope, "Const", [], [var.aval], _value_attr(found.value))
        return found

    def _add_op(self, scope: Scope, op: str, inputs: list[str], avals: list, attr: dict) -> str:
        n = self._counts.get((scope, op), 0)
        while (name := "/".join((*scope, f"{op}_{n}"))) in self._taken:
            n += 1  # a user scope or input may already be called e.g. `add_0`
        self._counts[(scope, op)] = n + 1
        attr = {"T": _dtype_attr(avals[0]), **attr} if avals else attr
        return self._add(name, op, inputs, avals, attr)

    def _add(self, name: str, op: str, inputs: list[str], avals: list, attr: dict) -> str:
        shapes = AttrValue(list=AttrValue.ListValue(shape=[_shape(a) for a in avals]))
        attr = {**attr, "_output_shapes": shapes}
        self.nodes.append(NodeDef(name=name, op=op, input=inputs, attr=attr))
        self._taken.add(name)
        return name


class _Pending(NamedTuple):
    """A closed-over constant whose node is not made yet."""

    value: Any


def _inlined_body(eqn: Any) -> Any:
    """The ClosedJaxpr to inline in place of `eqn`, or None to draw `eqn` as one node."""
    for key in _INLINED_BODY_PARAMS.get(eqn.primitive.name, ()):
        body = eqn.params.get(key)
        if isinstance(body, jcore.Jaxpr) and not body.constvars:  # remat's body is an open Jaxpr
            body = jcore.ClosedJaxpr(body, ())
        if (
            isinstance(body, jcore.ClosedJaxpr)
            and len(body.jaxpr.invars) == len(eqn.invars)
            and len(body.jaxpr.outvars) == len(eqn.outvars)
        ):
            return body
    return None  # unknown primitives, and known ones whose params changed shape, stay one node


def _ref(name: str, index: int) -> str:
    return name if index == 0 else f"{name}:{index}"


def _shape(aval: Any) -> TensorShapeProto:
    shape = getattr(aval, "shape", None)
    if shape is None:  # tokens and other shapeless values
        return TensorShapeProto(unknown_rank=True)
    # A symbolic (shape-polymorphic) dimension is unknown to TensorBoard: -1.
    dims = [TensorShapeProto.Dim(size=d if isinstance(d, int) else -1) for d in shape]
    return TensorShapeProto(dim=dims)


def _dtype_attr(aval: Any) -> AttrValue:
    dtype = str(getattr(aval, "dtype", "")) or type(aval).__name__
    # TF's DataType has no uint32 or PRNG key types; their name still tells the reader what flows.
    return AttrValue(type=_DTYPES[dtype]) if dtype in _DTYPES else AttrValue(s=dtype.encode())


def _value_attr(value: Any) -> dict[str, AttrValue]:
    """A constant's value for its info card; big arrays only show their shape."""
    array = value if isinstance(value, jax.Array) else np.asarray(value)
    # PRNG keys (an extended dtype) have no numpy form.
    if array.size > 16 or jax.dtypes.issubdtype(array.dtype, jax.dtypes.extended):
        return {}
    return {"value": AttrValue(s=repr(np.asarray(array).tolist()).encode())}


def _param_attrs(params: dict[str, Any]) -> dict[str, AttrValue]:
    """The equation's plain params (axes, dimension numbers, scan length) for its info card."""
    return {key: AttrValue(s=str(value).encode()) for key, value in params.items() if _is_plain(value)}


def _is_plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, (bool, int, float, str, np.dtype)) or (
        isinstance(value, type) and issubclass(value, np.generic)
    )
