"""`netspec export --format onnx`: a jax function -> ONNX through jax2onnx (the extra `netspec[onnx]`).

Contract.

    require_extra() -> (jax2onnx, onnx), or the one-line NetspecError naming the extra
    convert(fn, *, name, input_shape) -> (the ONNX model's bytes, the manifest's "onnx" details)

`fn` is `netspec.export.serving`'s: float32 [batch, *input_shape] -> float32 [batch, *output], the
batch symbolic (`BATCH`), the input named `x` and the output `y`. The model passes
`onnx.checker` (full check). Around jax2onnx 0.17:

- What it converts into ONNX that onnxruntime refuses is rewritten first, in the jaxpr, into an
  equivalent (`REWRITES`: `reduce_window_max`, a max_pool's overlapping or padded windows, as the
  maximum of strided slices; exact). Each equation keeps its name stack.
- Only its plugins for JAX's own operations are loaded (`_jax_plugins_only`): loading the others
  costs 4 s; a conversion that fails so is tried again with all of them.
- An operation it cannot express is one paragraph naming the layer it is in (`_unconvertible`:
  `network` runs each layer under `jax.named_scope(<its name>)`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.errors import NetspecError

BATCH = "batch"  # the symbolic batch axis (netspec.export.BATCH)
INPUT, OUTPUT = "x", "y"
EXTRA = "pip install 'netspec[onnx]'"


def require_extra():
    """(jax2onnx, onnx), or the one-line NetspecError naming the extra."""
    try:
        import jax2onnx
        import onnx
    except ImportError as e:
        raise NetspecError(
            f"--format onnx needs the optional extra onnx ({EXTRA}: jax2onnx, onnx and onnxruntime), which is "
            f"not installed here ({e.name or e} is missing); --format stablehlo needs nothing more."
        ) from None
    return jax2onnx, onnx


def convert(fn: Callable[[Any], Any], *, name: str, input_shape: tuple[int, ...]) -> tuple[bytes, dict]:
    """(the ONNX model of `fn`, serialized; {"opset", "load", "versions"}). Raises NetspecError for
    an operation jax2onnx cannot express (naming its layer) or a model onnx.checker refuses."""
    import logging

    jax2onnx, onnx = require_extra()
    # onnx_ir warns about every shape-less constant it leaves out of value_info: noise, not news
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)

    def convert():
        return jax2onnx.to_onnx(
            _for_onnx(fn),
            [(BATCH, *input_shape)],
            model_name=name,
            input_names=[INPUT],
            output_names=[OUTPUT],
        )

    model: Any = None  # an onnx.ModelProto
    failed: Exception | None = None
    with _jax_plugins_only() as limited:
        try:
            model = convert()
        except Exception as e:
            if not limited:
                raise _unconvertible(name, e) from None
            failed = e
    if failed is not None:
        _all_plugins()  # the converter as it comes, every plugin: what it cannot do then is the answer
        try:
            model = convert()
        except Exception as e:
            raise _unconvertible(name, e) from None
    try:
        onnx.checker.check_model(model, full_check=True)
        data = model.SerializeToString()
    except (onnx.checker.ValidationError, ValueError) as e:
        raise NetspecError(
            f"jax2onnx {jax2onnx_version()} made an ONNX model of {name} that onnx {onnx.__version__} refuses "
            f"({str(e).strip().splitlines()[0][:300]}). Export it as StableHLO (--format stablehlo) instead, and "
            "report it to jax2onnx with the run's spec."
        ) from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    details = {
        "opset": opset,
        "load": "onnxruntime.InferenceSession(path).run(None, {'x': x})[0]",
        "versions": {"jax2onnx": jax2onnx_version(), "onnx": onnx.__version__},
    }
    return data, details


def _for_onnx(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn` with the operations jax2onnx converts into ONNX that onnxruntime refuses written as
    equivalents it runs (`REWRITES`), equation by equation of its jaxpr; `fn` itself when it has
    none. Each equation keeps its name stack, so an error still names its layer."""
    import jax

    def rewritten(x):
        closed = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct(x.shape, x.dtype))
        if not _uses(closed.jaxpr, REWRITES):
            return fn(x)
        (y,) = _evaluate(closed.jaxpr, closed.consts, [x])
        return y

    return rewritten


def _uses(jaxpr, names) -> bool:
    import jax.extend as jex

    return any(eqn.primitive.name in names for eqn in jaxpr.eqns) or any(
        _uses(sub, names) for sub in jex.core.subjaxprs(jaxpr)
    )


def _evaluate(jaxpr, consts, args) -> list:
    """jax's own `eval_jaxpr`, with `REWRITES` applied and a `jit` holding one inlined."""
    import jax
    import jax.extend as jex

    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jex.core.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        scope = str(eqn.source_info.name_stack)
        with jax.named_scope(scope) if scope else contextlib.nullcontext():
            name = eqn.primitive.name
            inner = eqn.params.get("jaxpr")
            if name in REWRITES:
                outs = REWRITES[name](*values, **eqn.params)
            elif name in ("jit", "pjit") and inner is not None and _uses(inner.jaxpr, REWRITES):
                outs = _evaluate(inner.jaxpr, inner.consts, values)
            else:  # as jax's eval_jaxpr binds it: a call's (jit, custom_jvp) params hold functions, not jaxprs
                params = eqn.primitive.get_bind_params(eqn.params)
                if isinstance(params, tuple):  # jax before 0.7: (subfuns, params)
                    outs = eqn.primitive.bind(*params[0], *values, **params[1])
                else:
                    outs = eqn.primitive.bind(*values, **params)
        env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs], strict=True))
    return [read(v) for v in jaxpr.outvars]


def _max_by_slices(x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation):
    """`lax.reduce_window_max` as the maximum of one strided slice per window position, of the
    input padded with -inf: exact. jax2onnx 0.17 makes every such window a MaxPool over all of its
    axes (an NHWC max_pool's 4), which onnx.checker passes and onnxruntime refuses ("Unsupported
    pooling size": it pools over 1 to 3 axes); netspec's max_pool with overlapping windows or
    'same' padding is one (non-overlapping 'valid' ones are a reshape and a max already)."""
    import itertools

    import jax.numpy as jnp
    from jax import lax

    if any(d != 1 for d in base_dilation):
        return lax.reduce_window_max_p.bind(
            x,
            window_dimensions=window_dimensions,
            window_strides=window_strides,
            padding=padding,
            base_dilation=base_dilation,
            window_dilation=window_dilation,
        )
    if any(lo or hi for lo, hi in padding):  # jnp.pad, which jax2onnx converts with a symbolic batch (lax.pad: not)
        x = jnp.pad(x, [(lo, hi) for lo, hi in padding], constant_values=-jnp.inf)
    out = [
        (size - (w - 1) * d - 1) // s + 1
        for size, w, d, s in zip(x.shape, window_dimensions, window_dilation, window_strides, strict=True)
    ]
    result = None
    for offsets in itertools.product(*(range(w) for w in window_dimensions)):
        start = [o * d for o, d in zip(offsets, window_dilation, strict=True)]
        limit = [b + (n - 1) * s + 1 for b, n, s in zip(start, out, window_strides, strict=True)]
        piece = lax.slice(x, start, limit, window_strides)
        result = piece if result is None else jnp.maximum(result, piece)
    return result


REWRITES = {"reduce_window_max": _max_by_slices}  # primitive -> an equivalent that converts and runs


@contextlib.contextmanager
def _jax_plugins_only():
    """Within: jax2onnx has loaded only its plugins for JAX's own operations; yields whether that
    was done here (False: it had loaded them all already, or its plugin system is not as expected).

    On its first conversion jax2onnx imports every plugin module it has, Flax's, Equinox's and
    its examples' too, and some of those build models as they are imported: 4.2 s of XLA
    compilations on a 2-core CPU, most of a fashion_cnn export. A netspec model is plain jax, so
    the plugins under jax2onnx.plugins.jax are those it needs. This reaches into jax2onnx's plugin
    system (0.17); where that is not as expected, nothing is changed and jax2onnx loads everything
    itself. On the way out jax2onnx is left to load the rest on its next conversion, as it would
    have (another caller in this process may convert a Flax model); a conversion that failed
    within is tried again with every plugin (`_all_plugins`)."""
    try:
        from jax2onnx.plugins import plugin_system

        limited = not plugin_system._already_imported_plugins
        if limited:
            plugin_system._import_tree(Path(plugin_system.__file__).parent / "jax", "jax2onnx.plugins.jax")
            plugin_system._already_imported_plugins = True
    except (ImportError, AttributeError, TypeError):
        limited = False
    try:
        yield limited
    finally:
        if limited:
            plugin_system._already_imported_plugins = False


def _all_plugins() -> None:
    from jax2onnx.plugins import plugin_system

    plugin_system.import_all_plugins()


def jax2onnx_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jax2onnx")
    except PackageNotFoundError:
        return "unknown"


def _unconvertible(name: str, error: Exception) -> NetspecError:
    """The converter's failure as one paragraph naming the layer: the JAX equations it was lowering
    when it failed are in its traceback, and the outermost one's name stack starts with the layer's
    name (`network` runs each layer under `jax.named_scope(<its name>)`)."""
    stacks, primitive = [], None
    tb = error.__traceback__
    while tb is not None:
        eqn = tb.tb_frame.f_locals.get("eqn")
        if eqn is not None and hasattr(eqn, "primitive") and hasattr(eqn, "source_info"):
            primitive = str(eqn.primitive)
            stacks.append(str(eqn.source_info.name_stack))
        tb = tb.tb_next
    scope = next((s.split("/")[0] for s in stacks if s), None)
    where = {"scaling": "the input scaling", "probabilities": "the output's sigmoid or softmax"}.get(scope or "")
    if where is None and scope is not None:
        where = f"the layer {scope!r}"
    detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    what = f"the JAX operation {primitive!r}" if primitive else "an operation"
    return NetspecError(
        f"{name} cannot be exported to ONNX: {where or 'the model'} uses {what}, which jax2onnx "
        f"{jax2onnx_version()} cannot convert ({type(error).__name__}: {detail}). --format stablehlo exports "
        "every layer netspec has; or change that layer in the spec and train again."
    )
