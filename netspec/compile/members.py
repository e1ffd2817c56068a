"""A sweep's members trained together: grouped by shape, one vmapped program per group.

Contract.

    groups(specs, starts) -> [[member index, ...], ...]   members that can train in one program
    traced_keys(specs) -> {key: path}                        what varies within a group, traced
    substitute(spec, {path: value}) -> Spec                  the spec with those values put in
    compile_group(specs, mesh=None) -> Group                 the members' views and the group's chunk
    members_loop(spec, backend) -> "vmap" | "map"            how the chunk runs its members here
    untraceable(specs, sample) -> [key], split(specs, keys)  numbers optax cannot take traced: apart

Members share a program when their specs are equal except in number fields (floats) of the
sections the compiled step reads (`TRACED_SECTIONS`: the optimizer and its learning-rate schedule,
the layers' arguments, the loss, the metrics) and in the seed. Everything else (units, filters,
layers, batch size, integer fields such as a schedule's transition_steps, the training and
summary settings, the data) must be equal, and so must the seed where it chooses the data (a
validation split), and the step a member starts from: members that differ there form groups of
their own (`groups`).

The float fields that differ within a group are traced: inside the group's program they are
arguments (`Hyper`, float32 [members] each), put into the spec in place of the numbers
(`substitute`), and the step is built from that spec exactly as a plain run builds it from its
own (`netspec.compile.program.step_config`). The optimizer's learning rate already is an argument
(optax.inject_hyperparams keeps it in the optimizer state); a schedule's arguments, the
optimizer's own (weight decay, betas), dropout rates, label smoothing and activation arguments
become traced numbers the same way. The seed is not traced: each member's initial state is made
by its own spec's initializer (its plain run's, the same numbers), its per-step key and its batch
order are its own arguments.

The group's chunk is `jax.vmap` of the plain chunk (`chunk.scan_steps`, or a stepwise chunk's
step and outputs) over the members' stacked TrainStates, traced values, keys and, when their
batch orders differ (different seeds), their batches; the training data is one argument shared
by all (resident once). On a CPU a model with a conv2d loops over its members inside the program
instead (`jax.lax.map`; `members_loop` says why). With a mesh (`netspec.distribute.members_mesh`:
axes "members" and "data") the members' states, traced values and keys are split over the
"members" axis, each device training its members, the data replicated; XLA's partitioner does
the rest. A member can be frozen: `MemberStates.active` False keeps its state as it was (an
early-stopped member, or one whose loss went non-finite), while the others train on.

Each member also gets a Program of its own (`Group.members`): its spec's plain Program, whose
evaluation, step-0 metrics and histogram extras are the group's one compiled function applied
to the member's traced values (so a group of 16 compiles each once, not 16 times), for the host
loop's per-member work (`netspec.training.members`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from functools import partial
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from netspec.compile.chunk import Batches, Chunk, StepwiseChunk, chunk_outputs, one_step, scan_steps
from netspec.compile.optim import optimizer
from netspec.compile.program import (
    Hyper,
    Program,
    compile_spec,
    conv_lowerings,
    functions,
    initializer,
    step_config,
)
from netspec.compile.state import ChunkOutputs, Data, Keys, TrainState
from netspec.compile.step import StepConfig
from netspec.model.network import network
from netspec.spec.types import Spec, plain

Path = tuple[str | int, ...]  # a field of a Spec: attribute names, mapping keys, tuple indices

# The Spec attributes the compiled step reads and whose number fields may differ within a group.
TRACED_SECTIONS = ("optimizer", "layers", "loss", "metrics")


class MemberStates(NamedTuple):
    """A group's state: every member's TrainState stacked on a leading axis [members, ...], the
    members' traced values, and which members still train."""

    train: TrainState  # each leaf [members, ...]
    hyper: Hyper  # {key: float32 [members]}
    active: jax.Array  # bool [members]: False keeps a member's state as it is


def _leaves(value: Any, path: Path) -> list[tuple[Path, Any]]:
    """(path, value) of every leaf under `value` (Mappings, tuples, dataclasses such as Layer)."""
    if isinstance(value, Mapping):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, tuple):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    if is_dataclass(value):
        return [leaf for f in fields(value) for leaf in _leaves(getattr(value, f.name), (*path, f.name))]
    return [(path, value)]


def _compiled_leaves(spec: Spec) -> list[tuple[Path, Any]]:
    return [leaf for name in TRACED_SECTIONS for leaf in _leaves(getattr(spec, name), (name,))]


def _is_number(value: Any) -> bool:
    return isinstance(value, float)


def shape_key(spec: Spec, start: int = 0) -> str:
    """What members of one group share: the spec with the traceable numbers blanked and the
    seed left out (kept where it chooses the data: a validation split), and the start step."""
    compiled = {
        ".".join(map(str, path)): "<number>" if _is_number(value) else value for path, value in _compiled_leaves(spec)
    }
    rest = {k: v for k, v in plain(spec.resolved).items() if k not in ("model", "loss", "metrics", "optimizer", "seed")}
    return json.dumps(
        {
            "compiled": compiled,
            "rest": rest,
            "input": spec.input_shape,
            # the seed where it chooses the data (a validation split) or noisy_sgd's noise (kept in
            # the optimizer state that a member's shared initializer makes)
            "seed": spec.seed if spec.data.get("validation_split") or spec.optimizer.get("seed", 0) is None else None,
            "start": start,
        },
        sort_keys=True,
        default=str,
    )


def groups(specs: Sequence[Spec], starts: Sequence[int] | None = None) -> list[list[int]]:
    """The members (indices into `specs`) that train together, in order of their first member;
    `starts`: each member's first step (a resumed member's checkpoint step; default 0)."""
    found: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        found.setdefault(shape_key(spec, starts[i] if starts is not None else 0), []).append(i)
    return list(found.values())


def traced_keys(specs: Sequence[Spec]) -> dict[str, Path]:
    """{key: path} of the number fields whose values differ among `specs` (one group's)."""
    values: dict[Path, set[float]] = {}
    for spec in specs:
        for path, value in _compiled_leaves(spec):
            if _is_number(value):
                values.setdefault(path, set()).add(value)
    return {".".join(map(str, path)): path for path, seen in values.items() if len(seen) > 1}


# What jax raises when a traced number meets Python that needs a concrete one (an `if` on it).
TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def untraceable(specs: Sequence[Spec], sample: Any) -> list[str]:
    """The keys of `traced_keys(specs)` that the step cannot take traced: optax decides something
    in Python on a few numbers (exponential_decay's clip direction on decay_rate with an
    end_value, warmup_cosine_decay's alpha on peak_value, piecewise_constant's check of its
    scales). Found by tracing the step (`jax.eval_shape`, nothing compiled) on `sample`, a
    prepared batch (x, y) of the members' data: all keys at once, then, only if that fails, each
    alone. Members that differ in such a key train in groups of their own (`split`)."""
    from netspec.compile.step import train_step

    keys = traced_keys(specs)
    if not keys:
        return []
    template = specs[0]
    conv, _ = conv_lowerings(template, jax.default_backend())
    plain = compile_spec(template)
    state = jax.eval_shape(plain.init)

    def traces(names: Sequence[str]) -> bool:
        configure = configurer(template, {k: keys[k] for k in names}, conv)

        def probe(hyper: Hyper, state: TrainState, sample: Any) -> Any:
            config = configure(hyper)
            return train_step(config, state, sample, plain.keys.step), config.tx.init(state.params)

        try:
            scalars = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in names}  # type: ignore[no-untyped-call]  # jax leaves it unannotated
            jax.eval_shape(probe, scalars, state, sample)
        except TRACE_ERRORS:
            return False
        return True

    if traces(list(keys)):
        return []
    return [k for k in keys if not traces([k])]


def split(specs: Sequence[Spec], names: Sequence[str]) -> list[list[int]]:
    """The members (indices into `specs`) grouped by their values at the keys `names` (`untraceable`'s)."""
    paths = [traced_keys(specs)[k] for k in names]
    found: dict[tuple[Any, ...], list[int]] = {}
    for i, spec in enumerate(specs):
        found.setdefault(tuple(_get(spec, path) for path in paths), []).append(i)
    return list(found.values())


def _put(value: Any, path: Path, leaf: Any) -> Any:
    """`value` with the field at `path` replaced by `leaf` (copies along the path, nothing mutated)."""
    if not path:
        return leaf
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {**value, head: _put(value[head], rest, leaf)}
    if isinstance(value, tuple):
        assert isinstance(head, int)
        return (*value[:head], _put(value[head], rest, leaf), *value[head + 1 :])
    assert is_dataclass(value) and isinstance(head, str)
    return replace(value, **{head: _put(getattr(value, head), rest, leaf)})  # type: ignore[type-var]  # a dataclass instance


def substitute(spec: Spec, values: Mapping[Path, Any]) -> Spec:
    """`spec` with each field at a path of `values` replaced by its value (under jit and vmap a
    tracer: a member's traced number)."""
    for path, value in values.items():
        spec = _put(spec, path, value)
    return spec


def configurer(spec: Spec, keys: Mapping[str, Path], conv: Mapping[str, Any]) -> Callable[[Hyper], StepConfig]:
    """configure(hyper) -> the StepConfig of `spec` with the traced values `hyper` ({key: value})
    put in at `keys`' paths, built as a plain run builds its own."""

    def configure(hyper: Hyper) -> StepConfig:
        member = substitute(spec, {keys[k]: v for k, v in hyper.items()})
        _, net_apply = network(member.layers, conv=dict(conv))
        return step_config(member, net_apply, optimizer(member.optimizer, seed=spec.seed))

    return configure


class Group(NamedTuple):
    """A group of members compiled as one (see the module docstring)."""

    members: list[Program]  # each member's own Program, its evaluation etc. the group's compiled ones
    hyper: Hyper  # {key: float32 [members]}: the traced values
    keys: Keys  # each member's, stacked [members]
    train_chunk: Callable[..., Chunk]  # (length, *, streamed=False) -> chunk over MemberStates
    shared_batches: bool  # every member sees the same batches (one seed, or the whole set each step)
    mesh: jax.sharding.Mesh | None  # ("members", "data"), or None on one device
    across: str  # "vmap" or "map": how the chunk runs its members (`members_loop`)

    def states(self, states: Sequence[TrainState]) -> MemberStates:
        """The members' states stacked, all of them training, placed on the mesh."""
        stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)
        placed: MemberStates = self.place(MemberStates(stacked, self.hyper, jnp.ones((len(states),), bool)))
        return placed

    def place(self, tree: Any) -> Any:
        """A tree of stacked [members, ...] arrays split over the mesh's "members" axis (as it is
        without a mesh): where the compiled chunk takes them."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, _member_sharding(self.mesh))


def _member_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    from netspec.distribute import MEMBERS

    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(MEMBERS))  # type: ignore[no-untyped-call]  # jax leaves it unannotated


def compile_group(specs: Sequence[Spec], mesh: jax.sharding.Mesh | None = None) -> Group:
    """Compile the members `specs` (one group's, `groups`) as one program (see the module
    docstring); `mesh`: `netspec.distribute.members_mesh`'s, or None for one device."""
    template = specs[0]
    keys = traced_keys(specs)
    conv, _ = conv_lowerings(template, jax.default_backend())
    configure = configurer(template, keys, conv)
    hyper = {k: jnp.asarray([float(_get(s, path)) for s in specs], jnp.float32) for k, path in keys.items()}
    plains = [compile_spec(spec) for spec in specs]
    shared = functions(template, configure, plains[0].keys.step)
    opt_init = jax.jit(lambda hyper, params: configure(hyper).tx.init(params))  # one compilation for all
    members = [
        program._replace(
            init=initializer(
                network(spec.layers, conv=conv)[0],  # its layers' initializers: compiled once per kind, shared
                program.tx,
                dynamic_scale=spec.precision.dynamic_scale,
                default_key=program.init_key,
                opt_init=partial(opt_init, _member(hyper, i)),
            ),
            loss_and_metrics=partial(shared.loss_and_metrics, _member(hyper, i)),
            evaluate=partial(shared.evaluate, _member(hyper, i)),
            extras=partial(shared.extras, _member(hyper, i)),
        )
        for i, (spec, program) in enumerate(zip(specs, plains, strict=True))
    ]
    full_batch = template.train["batch_size"] == template.num_examples
    shared_batches = full_batch or len({s.seed for s in specs}) == 1
    first = plains[0]
    across = members_loop(template, jax.default_backend())
    cache: dict[tuple[int, bool, bool], Chunk] = {}
    checks = configure({}).check_each_step  # the spec's: every member's alike

    def train_chunk(length: int, *, streamed: bool = False, diagnose: bool = False) -> Chunk:
        check = checks or diagnose
        if (length, streamed, check) not in cache:
            cache[length, streamed, check] = group_chunk(
                configure,
                length,
                streamed=streamed,
                check=check,
                full_batch=full_batch,
                loop=first.loop,
                unroll=first.unroll,
                shared_batches=shared_batches,
                mesh=mesh,
                across=across,
            )
        return cache[length, streamed, check]

    stacked_keys = Keys(step=jnp.stack([p.keys.step for p in plains]))
    group = Group(members, hyper, stacked_keys, train_chunk, shared_batches, mesh, across)
    return group._replace(keys=group.place(stacked_keys))


def _get(spec: Spec, path: Path) -> Any:
    value: Any = spec
    for part in path:
        value = getattr(value, part) if isinstance(part, str) and is_dataclass(value) else value[part]
    return value


def _member(hyper: Hyper, i: int) -> Hyper:
    return {k: v[i] for k, v in hyper.items()}


def group_chunk(
    configure: Callable[[Hyper], StepConfig],
    length: int,
    *,
    streamed: bool,
    check: bool,
    full_batch: bool,
    loop: str,
    unroll: int,
    shared_batches: bool,
    mesh: jax.sharding.Mesh | None = None,
    across: str = "vmap",
) -> Chunk:
    """The group's chunk: (MemberStates, data, batches, keys) -> (MemberStates, ChunkOutputs with
    a leading [members] axis), the plain chunk vmapped (see the module docstring). `batches`:
    shared, as a plain chunk takes them; else per member, [length, members, batch]."""
    batch_axis = None if shared_batches else 1

    def frozen(active: jax.Array, new: TrainState, old: TrainState) -> TrainState:
        return cast(TrainState, jax.tree_util.tree_map(lambda n, o: jnp.where(active, n, o), new, old))

    def kept(states: MemberStates) -> MemberStates:
        """On a mesh, the states stay split over its members axis, where the next chunk takes them."""
        if mesh is None:
            return states
        placed: MemberStates = jax.lax.with_sharding_constraint(states, _member_sharding(mesh))  # type: ignore[no-untyped-call]  # jax leaves it unannotated
        return placed

    if loop == "scan":

        def member(
            hyper: Hyper, state: TrainState, active: jax.Array, data: Data, batches: Batches, keys: Keys
        ) -> tuple[TrainState, ChunkOutputs]:
            run = scan_steps(
                configure(hyper), length, streamed=streamed, check=check, full_batch=full_batch, unroll=unroll
            )
            new, outputs = run(state, data, batches, keys)
            return frozen(active, new, state), outputs

        vmapped = over_members(member, (0, 0, 0, None, batch_axis, 0), across)

        def chunk(states: MemberStates, data: Data, batches: Batches, keys: Keys) -> tuple[MemberStates, ChunkOutputs]:
            train, outputs = vmapped(states.hyper, states.train, states.active, data, batches, keys)
            return kept(states._replace(train=train)), outputs

        return cast(Chunk, jax.jit(chunk, donate_argnums=0))

    step_axis = None if shared_batches else 0  # one step's batches: [members, batch]

    def step(
        hyper: Hyper, state: TrainState, active: jax.Array, data: Data, batch: Batches, keys: Keys
    ) -> tuple[TrainState, jax.Array]:
        new, row = one_step(configure(hyper), state, data, batch, keys, streamed=streamed, check=check)
        return frozen(active, new, state), row

    vstep = over_members(step, (0, 0, 0, None, step_axis, 0), across)

    def outputs(
        hyper: Hyper, state: TrainState, rows: jax.Array, data: Data, last: Batches, keys: Keys
    ) -> tuple[TrainState, ChunkOutputs]:
        return chunk_outputs(configure(hyper), state, rows, data, last, keys, streamed=streamed, check=check)

    voutputs = over_members(outputs, (0, 0, 1, None, step_axis, 0), across)

    def group_step(states: MemberStates, data: Data, batch: Batches, keys: Keys) -> tuple[MemberStates, jax.Array]:
        train, row = vstep(states.hyper, states.train, states.active, data, batch, keys)
        return kept(states._replace(train=train)), row

    def group_outputs(
        states: MemberStates, rows: jax.Array, data: Data, last: Batches, keys: Keys
    ) -> tuple[MemberStates, ChunkOutputs]:
        train, out = voutputs(states.hyper, states.train, rows, data, last, keys)
        return kept(states._replace(train=train)), out

    return cast(
        Chunk,
        StepwiseChunk(
            jax.jit(group_step, donate_argnums=0),
            jax.jit(group_outputs, donate_argnums=0),
            length,
        ),
    )


def over_members(fn: Callable[..., Any], in_axes: Sequence[int | None], across: str) -> Callable[..., Any]:
    """`fn` applied to each member: `jax.vmap(fn, in_axes)` ("vmap"), or ("map") `jax.lax.map`,
    a loop over the members inside the program, each member's arithmetic unbatched, the outputs
    stacked on a leading axis as vmap's are. An argument with axis None is shared by all."""
    if across == "vmap":
        return jax.vmap(fn, in_axes=tuple(in_axes))

    def mapped(*args: Any) -> Any:
        per_member = tuple(
            jax.tree_util.tree_map(lambda a, axis=axis: jnp.moveaxis(a, axis, 0), arg)
            for arg, axis in zip(args, in_axes, strict=True)
            if axis is not None
        )

        def one(sliced: tuple[Any, ...]) -> Any:
            parts = iter(sliced)
            return fn(*(arg if axis is None else next(parts) for arg, axis in zip(args, in_axes, strict=True)))

        return jax.lax.map(one, per_member)

    return mapped


def members_loop(spec: Spec, backend: str) -> str:
    """How a group runs its members: "vmap" (batched: one kernel over every member) or "map" (a
    loop over them inside the program). XLA:CPU runs a convolution's batched matrix products (its
    im2col's, or a native conv vmapped into a grouped one) far slower than one member's: 2
    members of fashion_cnn's first layer took 5x one member's time, forward and backward. So a
    model with a conv2d loops over its members on a CPU; everything else, and every model on a
    GPU or TPU, is vmapped."""
    conv = any(layer.type == "conv2d" for layer in spec.layers)
    return "map" if backend == "cpu" and conv else "vmap"


def member_batches(per_member: Sequence[Any]) -> Any:
    """The members' batches of a chunk ([length, batch] each, or streamed (x, y) each) as one
    argument of the group's chunk: [length, members, batch, ...]."""
    return jax.tree_util.tree_map(lambda *a: np.stack(a, axis=1), *per_member)


def take(tree: Any, i: int) -> Any:
    """Member `i`'s slice of a stacked tree (numpy or device arrays)."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def unstack(tree: Any, n: int) -> list[Any]:
    """Each of the `n` members' slices of a stacked tree ([n, ...] leaves), as `take` gives them,
    made in one pass over the leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (
        [jax.tree_util.tree_unflatten(treedef, row) for row in zip(*(list(leaf) for leaf in leaves), strict=True)]
        if leaves
        else [tree] * n
    )
