"""Take a trained model anywhere: `netspec export RUN_DIR --format stablehlo|onnx`.

Contract.

    export_run(run_dir, *, format="stablehlo", output=None, notice=None) -> Exported
    export_ensemble(sweep_dir, *, format="stablehlo", output=None, notice=None) -> Exported
    serving(run_dirs, *, notice=None) -> Serving          the function both formats export
    load_stablehlo(path) -> (jax.export.Exported, manifest)   netspec's own loading path

What is exported is the model as `netspec predict` meets it: raw examples, float32 [batch,
*model.input] as `inference.read_inputs` reads them (pixels 0-255 for images), -> the training
scaling (`(x - shift) * scale`, the run's preprocess.npz) -> the model in evaluation mode (dropout
off, batch_norm's running statistics) -> its output: probabilities for a classification loss (a
`loss.from_logits` model's logits through their sigmoid or softmax, as `predict --member ensemble`
does), the values for a regression loss. The batch axis is symbolic. The parameters are those
`inference.finished_state` restores (the best checkpoint if the run kept one, else the latest),
baked into the artifact as constants. `export_ensemble` is `predict --member ensemble`: the mean of
every finished member's probabilities, each member scaling the inputs as it trained.

Convolutions are exported as XLA's native convolution whatever `train.conv` chose: im2col is how
netspec trains fast on a CPU (`netspec.model.conv`), not a form to ship, and it is equal to float32
rounding.

- StableHLO: `jax.export`, serialized (no dependency beyond jax), lowered for CPU, CUDA and TPU.
  `jax.export.deserialize` loads it in any process with jax (netspec not needed); jax loads
  artifacts of older versions for six months, never of newer ones. `load_stablehlo` is that load
  with one clear message, naming both jax versions, when it fails.
- ONNX: jax2onnx, the optional extra `netspec[onnx]` (`netspec.export.onnx`: the conversion, what
  onnxruntime refuses of it rewritten first, an operation it cannot express named with its layer).

Beside the artifact, `<artifact>.json`, the manifest (`MANIFEST_SUFFIX`): the input and output
names, shapes and dtypes, the class names and how a class is decided, the scaling, the runs and
checkpoints it came from, the netspec, jax and jaxlib (and jax2onnx, onnx) versions, the date.
Both are written whole or not at all. Problems are NetspecErrors naming the file.
"""

from __future__ import annotations

import datetime
import errno
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from netspec.errors import NetspecError
from netspec.spec.choices import LOSS_KINDS
from netspec.spec.types import Spec

FORMATS = ("stablehlo", "onnx")
SUFFIXES = {"stablehlo": ".stablehlo", "onnx": ".onnx"}
MANIFEST_SUFFIX = ".json"  # model.stablehlo -> model.stablehlo.json
PLATFORMS = ("cpu", "cuda", "tpu")  # what the StableHLO is lowered for: jax picks its platform's branch when loaded
BATCH = "batch"  # the symbolic batch axis's name, in both formats
INPUT, OUTPUT = "x", "y"  # the input's and the output's names (in the manifest; the ONNX graph's)
MANIFEST_VERSION = 1


class Serving(NamedTuple):
    """The function an export writes, and what its manifest says of it."""

    fn: Callable[[Any], Any]  # float32 [batch, *input] raw examples -> float32 [batch, *output]; jax-traceable
    name: str  # the spec's name
    input_shape: tuple[int, ...]  # one example's, without the batch axis
    output_shape: tuple[int, ...]
    manifest: dict  # the format-independent part of the manifest


class Exported(NamedTuple):
    """What `export_run` and `export_ensemble` wrote."""

    path: Path  # the artifact
    manifest_path: Path  # <path>.json
    manifest: dict
    size: int  # the artifact's bytes
    seconds: float  # from reading the run to the written files


def export_run(
    run_dir: str | Path, *, format: str = "stablehlo", output: str | Path | None = None, notice=None
) -> Exported:
    """`netspec export RUN_DIR`: the run's model (see the module docstring) as `format`
    ("stablehlo" or "onnx") into `output` (default: RUN_DIR/export/model.<format>), its manifest
    beside it. A sweep directory's member: `inference.sweep_member(dir, ...).run_dir`. Raises
    NetspecError for a run that cannot be read (no checkpoint, a damaged file), a missing extra,
    or a layer the format cannot express (named)."""
    return _export([Path(run_dir)], Path(run_dir), format=format, output=output, notice=notice)


def export_ensemble(
    sweep_dir: str | Path, *, format: str = "stablehlo", output: str | Path | None = None, notice=None
) -> Exported:
    """`netspec export SWEEP_DIR --member ensemble`: the mean of the probabilities (outputs, for
    regression) of every finished member of the sweep (`inference.ensemble_members`; the others are
    left out, said to `notice`), as `predict --member ensemble` computes it; default output
    SWEEP_DIR/export/ensemble.<format>. Refused, as predict refuses it, when the members do not
    predict the same thing from the same inputs."""
    from netspec.inference import _require_alike, ensemble_members
    from netspec.training.rundir import load_run_spec

    sweep_dir = Path(sweep_dir)
    require_format(format)
    members = ensemble_members(sweep_dir, notice=notice)
    _require_alike(sweep_dir, members, [load_run_spec(m.run_dir, recorded_data=True) for m in members])
    return _export(
        [m.run_dir for m in members],
        sweep_dir,
        format=format,
        output=output,
        notice=notice,
        stem="ensemble",
        members=[m.name for m in members],
    )


def require_format(format: str) -> None:
    """Refuse an unknown format, or onnx without its extra (one line naming it), before jax loads."""
    if format not in FORMATS:
        raise NetspecError(f"Unknown export format {format!r}: choose {' or '.join(FORMATS)}.")
    if format == "onnx":
        from netspec.export.onnx import require_extra

        require_extra()


def _export(
    run_dirs: list[Path],
    where: Path,
    *,
    format: str,
    output: str | Path | None,
    notice,
    stem: str = "model",
    members: list[str] | None = None,
) -> Exported:
    started = time.perf_counter()
    require_format(format)  # before jax loads: a missing extra answers at once
    path = Path(output) if output is not None else where / "export" / f"{stem}{SUFFIXES[format]}"
    served = serving(run_dirs, notice=notice)
    manifest = dict(served.manifest)
    if members is not None:
        manifest["ensemble"] = {"members": members, "of": "the mean of the members' outputs"}
    if format == "stablehlo":
        data, details = _stablehlo(served)
    else:
        from netspec.export.onnx import convert

        data, details = convert(served.fn, name=served.name, input_shape=served.input_shape)
    converter = details.pop("versions", {})
    manifest = {
        "netspec_export": MANIFEST_VERSION,
        "format": format,
        "file": path.name,
        **manifest,
        format: details,
        "versions": {**_versions(), **converter},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
    _write(path, data)
    _write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return Exported(path, manifest_path, manifest, len(data), time.perf_counter() - started)


def _write(path: Path, data: bytes | str) -> None:
    from netspec.training.rundir import write_atomically

    blocking = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # mkdir would say "File exists" or "Not a directory" of another path
        raise NetspecError(f"Cannot write {path}: {blocking} is a file, not a folder. Choose another --output.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        advice = "Free some space, or choose another --output." if full else "Choose another --output."
        raise NetspecError(f"Cannot write {e.filename or path}: {e.strerror or e}. {advice}") from None


def _versions() -> dict[str, str]:
    import jax
    import jaxlib

    import netspec

    return {
        "netspec": netspec.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
    }


# -- the function both formats export ------------------------------------------------------------------


def serving(run_dirs: list[Path], *, notice=None) -> Serving:
    """The model of each run in `run_dirs` as `netspec predict` meets it (the module docstring),
    the mean of their outputs when there are several (an ensemble: the caller has checked that
    they predict alike). Reads each run's spec, preprocess.npz and best (else latest) checkpoint."""
    from netspec.model.losses import num_classes
    from netspec.training.rundir import load_run_spec, read_preprocess

    forwards: list[Callable[[Any], Any]] = []
    sources: list[dict] = []
    scalings: list[dict] = []
    spec: Spec | None = None
    class_names: list[str] = []
    for run_dir in run_dirs:
        spec = load_run_spec(run_dir, recorded_data=True, notice=notice)
        pre = read_preprocess(run_dir, spec)
        if forwards and pre.class_names != class_names:
            raise NetspecError(
                f"{run_dirs[0]} and {run_dir} name their classes differently ({', '.join(class_names) or 'none'}; "
                f"{', '.join(pre.class_names) or 'none'}), so their probabilities cannot be averaged. Export one "
                "member instead (--member best, K or NAME)."
            )
        class_names = pre.class_names
        forward, source = _forward(spec, run_dir, pre.shift, pre.scale, notice=notice)
        forwards.append(forward)
        sources.append(source)
        scalings.append(_scaling(pre.shift, pre.scale))
    assert spec is not None
    kind = LOSS_KINDS[spec.loss["type"]]

    def fn(x):
        import jax

        outputs = [forward(x) for forward in forwards]
        if len(outputs) == 1:
            return outputs[0]
        with jax.named_scope("ensemble_mean"):
            return sum(outputs[1:], outputs[0]) / len(outputs)

    decided = bool(num_classes(spec)) and kind.classification
    decision = None
    if decided:
        decision = (
            "class 1 where a probability > 0.5, per unit" if kind.targets == "binary" else "argmax over the last axis"
        )
    manifest = {
        "model": spec.name,
        "input": {
            "name": INPUT,
            "shape": [BATCH, *spec.input_shape],
            "dtype": "float32",
            "is": "raw examples as netspec predict reads them (an image's pixels 0-255), before the training scaling",
        },
        "output": {
            "name": OUTPUT,
            "shape": [BATCH, *spec.output_shape],
            "dtype": "float32",
            "is": "probabilities" if kind.classification else "values (regression)",
        },
        "classes": class_names,
        "decision": decision,
        "scaling": scalings[0] if len(scalings) == 1 else scalings,
        "source": sources[0] if len(sources) == 1 else sources,
    }
    return Serving(fn, spec.name, tuple(spec.input_shape), tuple(spec.output_shape), manifest)


def _forward(spec: Spec, run_dir: Path, shift: np.ndarray, scale: np.ndarray, *, notice=None):
    """(raw examples [b, *input] -> the model's probabilities or values [b, *output], where the
    parameters came from), one run's."""
    import jax
    import jax.numpy as jnp

    from netspec.inference import finished_state
    from netspec.model.network import network

    _, state = finished_state(spec, run_dir, notice=notice)
    params, model_state = jax.device_get((state.params, state.model_state))
    _, apply = network(spec.layers)  # every conv2d native: see the module docstring
    stored, input_shape = tuple(spec.data_info.x_shape), tuple(spec.input_shape)
    kind = LOSS_KINDS[spec.loss["type"]]
    squash = None
    if kind.classification and spec.from_logits:
        squash = jax.nn.sigmoid if kind.targets == "binary" else jax.nn.softmax

    def forward(x):
        n = x.shape[0]
        with jax.named_scope("scaling"):  # as `compile.step.prepare_batch` scales a stored batch
            x = ((x.reshape((n, *stored)) - shift) * scale).reshape((n, *input_shape))
        # evaluation mode draws no randomness; the key is only the signature's
        y = apply(params, model_state, x, train=False, key=jax.random.key(0))[0].astype(jnp.float32)
        if squash is not None:
            with jax.named_scope("probabilities"):
                y = squash(y)
        return y

    return forward, {"run_dir": str(run_dir.resolve()), **_checkpoint_of(run_dir, int(state.step))}


def _checkpoint_of(run_dir: Path, step: int) -> dict:
    """{"checkpoint": its file name, "step": step}: the checkpoint `finished_state` restored, the
    first of best.safetensors and the step checkpoints (newest first) of that step."""
    from netspec.training import checkpoint

    found = checkpoint.Checkpoints(run_dir / "checkpoints", keep=1)
    for path in [found.best(), *(p for _, p in reversed(found.steps()))]:
        try:
            if path is not None and int(checkpoint.metadata(path).get("step", -1)) == step:
                return {"checkpoint": path.name, "step": step}
        except (NetspecError, OSError, ValueError, TypeError):
            continue
    return {"checkpoint": None, "step": step}


def _scaling(shift: np.ndarray, scale: np.ndarray) -> dict:
    def plain(a: np.ndarray):
        return float(a) if a.ndim == 0 else a.tolist()

    return {"formula": "(x - shift) * scale", "shift": plain(shift), "scale": plain(scale)}


# -- StableHLO ----------------------------------------------------------------------------------------------


def _stablehlo(served: Serving) -> tuple[bytes, dict]:
    import jax
    import jax.numpy as jnp
    from jax import export

    (batch,) = export.symbolic_shape(BATCH)
    exported = export.export(jax.jit(served.fn), platforms=PLATFORMS)(
        jax.ShapeDtypeStruct((batch, *served.input_shape), jnp.float32)
    )
    details = {
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "load": "jax.export.deserialize(bytearray(data)).call(x)",
    }
    return bytes(exported.serialize()), details


def load_stablehlo(path: str | Path):
    """(jax.export.Exported, its manifest) of a `netspec export --format stablehlo` artifact: call
    it with `.call(x)`, x float32 [batch, *input]. Raises NetspecError when the artifact does not
    load: across jax versions (jax loads older artifacts, not newer ones) one message naming the
    version that exported it and this one."""
    import jax
    import jaxlib
    from jax import export

    path = Path(path)
    manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NetspecError(f"Cannot read {path}: {e.strerror or e}.") from None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        made_by = manifest["versions"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        manifest, made_by = None, {}
        why = getattr(e, "strerror", None) or e
    here = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    try:
        exported = export.deserialize(bytearray(data))
        version = exported.calling_convention_version
        lowest, highest = (
            export.minimum_supported_calling_convention_version,
            export.maximum_supported_calling_convention_version,
        )
        if not lowest <= version <= highest:
            raise ValueError(f"calling convention {version}, where this jax takes {lowest} to {highest}")
    except Exception as e:  # jax's own: a flatbuffer, MLIR or version error, whatever its type
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if made_by.get("jax") not in (None, here["jax"]):
            raise NetspecError(
                f"{path} was exported with jax {made_by['jax']} (jaxlib {made_by.get('jaxlib', '?')}) and this is jax "
                f"{here['jax']} (jaxlib {here['jaxlib']}), which cannot load it ({detail}). jax loads what an older "
                f"version exported for six months and never what a newer one did: load it with jax {made_by['jax']}, "
                f"or export the run again here (netspec export RUN_DIR --format stablehlo)."
            ) from None
        raise NetspecError(
            f"{path} does not load as a jax.export artifact ({detail}); "
            + (f"it was exported with this jax ({here['jax']}), so the file is damaged: " if made_by else "")
            + "export the run again (netspec export RUN_DIR --format stablehlo)."
        ) from None
    if manifest is None:
        raise NetspecError(f"{manifest_path}, the manifest of {path}, does not read ({why}); export the run again.")
    return exported, manifest
