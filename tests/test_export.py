"""`netspec export`: the model as `netspec predict` meets it, as StableHLO (jax.export) and ONNX
(jax2onnx), with its manifest.

Every shipped spec, trained a few steps, exported as StableHLO and loaded in a fresh process that
imports only jax and numpy (the README's own loader), reproduces `netspec predict` within 1e-6
with the same classes at batch 1 and 1,000; as ONNX, with specs that use every layer type and
activation besides, onnxruntime's CPU provider reproduces it within 1e-5. Also: the manifest,
`--member` on a sweep, the time of a fashion_cnn export, and each refusal as one paragraph. The
runs are trained once per module.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from support import FASHION, NETSPEC, README, SHIPPED, assert_one_paragraph, netspec, netspec_ok, run_dirs, write

from netspec.spec.choices import ACTIVATIONS
from netspec.spec.layers import LAYERS

# The ONNX tests need the onnx extra (pip install -e '.[onnx]'; CI installs it); the StableHLO ones do not.
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None, reason="the onnx extra: pip install -e '.[onnx]' (CI installs it)"
)

STEPS = ["--set", "train.steps=3", "--set", "train.epochs=null"]
IMAGES = ("fashion_", "mnist_")  # specs of 28x28 images: trained on 1,000 examples, asked about the test images
BATCHES = (1, 1000)

# How close the StableHLO must be to `netspec predict`: 1e-6 for every shipped spec.
STABLEHLO_TOLERANCE: dict[str, float] = {}
ONNX_TOLERANCE = 1e-5

# -- specs that use every layer type and every activation, for the ONNX converter ------------------------

RNG = np.random.default_rng(0)

EVERY_LAYER = {
    "name": "every_layer",
    "seed": 1,
    "data": {
        "inline": {
            "x": RNG.uniform(-1, 1, (8, 6, 6, 2)).round(3).tolist(),
            "y": [0, 1, 2, 0, 1, 2, 0, 1],
        }
    },
    "model": {
        "input": [6, 6, 2],
        "layers": [
            {"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {
                "name": "strided",
                "type": "conv2d",
                "filters": 4,
                "kernel_size": [3, 2],
                "strides": 2,
                "padding": "same",
                "groups": 2,
                "inputs": ["conv"],
            },
            {"name": "dilated", "type": "conv2d", "filters": 2, "kernel_size": 2, "dilation": 2, "inputs": ["input"]},
            {"name": "max_tiles", "type": "max_pool", "pool_size": 2, "inputs": ["conv"]},
            {
                "name": "max_window",
                "type": "max_pool",
                "pool_size": 3,
                "strides": 2,
                "padding": "same",
                "inputs": ["conv"],
            },
            {"name": "avg_tiles", "type": "avg_pool", "pool_size": 2, "inputs": ["conv"]},
            {
                "name": "avg_window",
                "type": "avg_pool",
                "pool_size": 3,
                "strides": 2,
                "padding": "same",
                "inputs": ["conv"],
            },
            {"name": "sum", "type": "add", "inputs": ["strided", "max_tiles", "max_window", "avg_tiles", "avg_window"]},
            {"name": "bn", "type": "batch_norm", "momentum": 0.5, "inputs": ["conv"]},
            {"name": "gap", "type": "global_avg_pool", "inputs": ["bn"]},
            {"name": "flat", "type": "flatten", "inputs": ["sum"]},
            {"name": "ln", "type": "layer_norm", "inputs": ["flat"]},
            {"name": "drop", "type": "dropout", "rate": 0.5},
            {"name": "hidden", "type": "dense", "units": 6},
            {"name": "grid", "type": "reshape", "shape": [2, -1]},
            {"name": "act", "type": "activation", "activation": "relu6"},
            {"name": "flat_act", "type": "flatten"},
            {"name": "flat_dilated", "type": "flatten", "inputs": ["dilated"]},
            {"name": "joined", "type": "concat", "inputs": ["flat_act", "gap", "flat_dilated"]},
            {"name": "output", "type": "dense", "units": 3, "activation": "softmax"},
        ],
    },
    "loss": "sparse_categorical_crossentropy",
    "metrics": ["accuracy"],
    "optimizer": {"type": "adam", "learning_rate": 0.01},
    "train": {"steps": 3, "batch_size": 4, "conv": "native"},  # native trains it faster here: fewer to compile
}

ACTIVATION_ARGS = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.5}}


def _every_activation() -> dict:
    """A branch per activation (and gelu's exact form) off one dense layer, concatenated, into a
    from_logits binary output: the export adds the sigmoid."""
    branches = [(name, {"type": name, **ACTIVATION_ARGS.get(name, {})}) for name in ACTIVATIONS]
    branches.append(("gelu_exact", {"type": "gelu", "approximate": False}))
    layers = [{"name": "hidden", "type": "dense", "units": 3}]
    layers += [
        {"name": f"a_{name}", "type": "activation", "activation": act, "inputs": ["hidden"]} for name, act in branches
    ]
    layers.append({"name": "joined", "type": "concat", "inputs": [f"a_{name}" for name, _ in branches]})
    layers.append({"name": "output", "type": "dense", "units": 1})
    return {
        "name": "every_activation",
        "seed": 2,
        "data": {"inline": {"x": RNG.normal(0, 1, (8, 4)).round(3).tolist(), "y": [[0], [1]] * 4}},
        "model": {"input": [4], "layers": layers},
        "loss": {"type": "binary_crossentropy", "from_logits": True},
        "metrics": ["accuracy"],
        "optimizer": {"type": "sgd", "learning_rate": 0.5},
        "train": {"steps": 3, "batch_size": 8},
    }


REGRESSION = {
    "name": "regression",
    "seed": 3,
    "data": {
        "inline": {
            "x": RNG.normal(0, 1, (8, 3)).round(3).tolist(),
            "y": RNG.uniform(-0.9, 0.9, (8, 2)).round(3).tolist(),
        }
    },
    "model": {"input": [3], "layers": [{"name": "out", "type": "dense", "units": 2, "activation": "tanh"}]},
    "loss": "mean_squared_error",
    "metrics": [],
    "optimizer": {"type": "sgd", "learning_rate": 0.1},
    "train": {"steps": 3, "batch_size": 8},
}

COVERAGE = [EVERY_LAYER, _every_activation(), REGRESSION]


def test_the_coverage_specs_use_every_layer_type_and_activation():
    """A layer type or activation added to netspec fails here until the ONNX test exports it."""
    layers = [layer for spec in COVERAGE for layer in spec["model"]["layers"]]
    assert {layer["type"] for layer in layers} == set(LAYERS)
    used = {
        layer["activation"]["type"] if isinstance(layer.get("activation"), dict) else layer.get("activation")
        for layer in layers
    }
    assert set(ACTIVATIONS) <= used


# -- the runs, trained once ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{spec name: run directory}: every shipped spec trained 3 steps (the MNIST specs on the
    Fashion-MNIST files, which have MNIST's names and shapes), and the coverage specs."""
    if not FASHION.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    logdir = tmp_path_factory.mktemp("runs")
    for spec in SHIPPED:
        data = ["--set", "data.limit=1000"] if spec.stem.startswith(IMAGES) else []
        data += ["--data-dir", FASHION] if spec.stem.startswith("mnist_") else []
        netspec_ok("run", spec, "--logdir", logdir, "--quiet", *STEPS, *data)
    for spec in COVERAGE:
        path = write(logdir / "specs" / f"{spec['name']}.yaml", yaml.safe_dump(spec, sort_keys=False))
        netspec_ok("run", path, "--logdir", logdir, "--quiet")
    found = {p.parent.name: p for p in run_dirs(logdir) if p.parent.name != "specs"}
    assert set(found) == {s.stem for s in SHIPPED} | {s["name"] for s in COVERAGE}
    return found


def fashion_test_images(count: int) -> np.ndarray:
    """The first Fashion-MNIST test images, pixels 0-255 as float32 [count, 28, 28]."""
    import gzip

    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(16 + 784 * count), np.uint8, offset=16).reshape(count, 28, 28).astype(np.float32)


@pytest.fixture(scope="module")
def cases(runs, tmp_path_factory) -> dict:
    """{(spec name, batch): (raw inputs, `netspec predict`'s outputs, its classes)}, at batch 1 and
    1,000: the test images for the image specs, numbers near the training data's for the others.
    A from_logits model's outputs are its logits' sigmoid or softmax, as the export gives them."""
    from netspec.inference import _probabilities, predict_run
    from netspec.training.rundir import load_run_spec

    directory = tmp_path_factory.mktemp("inputs")
    found = {}
    for name, run_dir in runs.items():
        spec = load_run_spec(run_dir, recorded_data=True)
        for batch in BATCHES:
            if name.startswith(IMAGES):
                x = fashion_test_images(batch).reshape(batch, *spec.input_shape)
            else:
                x = np.random.default_rng(batch).uniform(-1.5, 1.5, (batch, *spec.input_shape)).astype(np.float32)
            np.save(directory / f"{name}-{batch}.npy", x)
            outputs, classes, _ = predict_run(run_dir, directory / f"{name}-{batch}.npy")
            found[name, batch] = (x, _probabilities(spec, outputs), classes)
    return found


def classes_of(manifest: dict, y: np.ndarray):
    if manifest["decision"] is None:
        return None
    if manifest["decision"].startswith("argmax"):
        return y.argmax(-1)
    return (y > 0.5).astype(np.int32).reshape(len(y))


def agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max absolute, max relative) difference."""
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(diff.max()), float((diff / np.maximum(np.abs(want), 1e-30)).max())


# -- StableHLO: every shipped spec, in a process with jax and numpy alone ------------------------------------


def readme_block(marker: str) -> str:
    """The README's Python block holding `marker`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def jax_only(script: str, tmp_path) -> subprocess.CompletedProcess:
    """`script` after the README's jax-only loader (its `load`), in a fresh Python where netspec
    cannot be imported."""
    loader = readme_block("export.deserialize").split("model, manifest = load(")[0]
    code = "import sys\nsys.modules['netspec'] = None  # not importable: the model must not need it\n" + loader + script
    code += "\nassert sorted(m for m in sys.modules if m.startswith('netspec')) == ['netspec'], 'netspec was used'\n"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_stablehlo_reproduces_predict_in_a_process_with_jax_alone(runs, cases, tmp_path):
    from netspec.export import export_run

    shipped = sorted(s.stem for s in SHIPPED)
    for name in shipped:
        done = export_run(runs[name], format="stablehlo", output=tmp_path / f"{name}.stablehlo")
        assert done.manifest["stablehlo"]["platforms"] == ["cpu", "cuda", "tpu"]
        for batch in BATCHES:
            np.save(tmp_path / f"{name}-{batch}.npy", cases[name, batch][0])
    jobs = [(name, batch) for name in shipped for batch in BATCHES]
    script = (
        "import numpy as np\n"
        f"for name, batch in {jobs!r}:\n"
        "    model, manifest = load(f'{name}.stablehlo')\n"
        "    np.save(f'{name}-{batch}-out.npy', np.asarray(model.call(np.load(f'{name}-{batch}.npy'))))\n"
    )
    done = jax_only(script, tmp_path)
    assert done.returncode == 0, done.stderr
    for name, batch in jobs:
        _, want, want_classes = cases[name, batch]
        got = np.load(tmp_path / f"{name}-{batch}-out.npy")
        manifest = json.loads((tmp_path / f"{name}.stablehlo.json").read_text())
        assert got.shape == want.shape and got.dtype == np.float32
        absolute, relative = agreement(got, want)
        print(f"stablehlo {name} batch {batch}: max abs {absolute:.3g}, max rel {relative:.3g}")
        assert absolute <= STABLEHLO_TOLERANCE.get(name, 1e-6), (name, batch, absolute)
        assert np.array_equal(classes_of(manifest, got), want_classes), name


# -- ONNX: every layer type and activation, and the shipped specs ---------------------------------------------


@pytest.mark.slow
@needs_onnx
def test_onnx_matches_predict_for_every_layer_and_activation(runs, cases, tmp_path):
    import onnx
    import onnxruntime

    from netspec.export import export_run

    for name, run_dir in sorted(runs.items()):
        done = export_run(run_dir, format="onnx", output=tmp_path / f"{name}.onnx")
        onnx.checker.check_model(str(done.path), full_check=True)
        session = onnxruntime.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
        for batch in BATCHES:
            x, want, want_classes = cases[name, batch]
            (got,) = session.run(None, {"x": x})
            absolute, relative = agreement(got, want)
            print(f"onnx {name} batch {batch}: max abs {absolute:.3g}, max rel {relative:.3g}")
            assert got.shape == want.shape and absolute <= ONNX_TOLERANCE, (name, batch, absolute)
            assert np.array_equal(classes_of(done.manifest, got), want_classes), name


@pytest.mark.slow
@needs_onnx
def test_the_readme_serves_an_onnx_export_with_onnxruntime(runs, tmp_path):
    # the README's second export command names its file fashion_cnn.onnx, as its block reads it
    out = netspec_ok("export", runs["fashion_cnn"], "--format", "onnx", "--output", tmp_path / "fashion_cnn.onnx")
    assert "fashion_cnn.onnx" in out and "probabilities" in out
    namespace: dict = {}
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(readme_block("onnxruntime.InferenceSession"), namespace)
    finally:
        os.chdir(here)
    assert namespace["probabilities"].shape == (5, 10)


# -- the manifest ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_onnx
def test_the_manifest_says_what_goes_in_and_comes_out(runs, tmp_path):
    import jax
    import jaxlib

    import netspec
    from netspec.data.sources import FASHION_CLASSES
    from netspec.export import export_run

    done = export_run(runs["fashion_cnn"], format="onnx", output=tmp_path / "m.onnx")
    manifest = json.loads(done.manifest_path.read_text())
    assert done.manifest_path == tmp_path / "m.onnx.json" and manifest == done.manifest
    assert manifest["format"] == "onnx" and manifest["file"] == "m.onnx" and manifest["model"] == "fashion_cnn"
    assert manifest["input"] == {
        "name": "x",
        "shape": ["batch", 28, 28, 1],
        "dtype": "float32",
        "is": manifest["input"]["is"],
    }
    assert manifest["output"]["shape"] == ["batch", 10] and manifest["output"]["is"] == "probabilities"
    assert manifest["classes"] == list(FASHION_CLASSES) and manifest["decision"].startswith("argmax")
    assert manifest["scaling"]["shift"] == 0.0 and abs(manifest["scaling"]["scale"] - 1 / 255) < 1e-9
    assert manifest["source"]["step"] == 3 and manifest["source"]["checkpoint"] == "step-00000003.safetensors"
    versions = manifest["versions"]
    assert (versions["netspec"], versions["jax"], versions["jaxlib"]) == (
        netspec.__version__,
        jax.__version__,
        jaxlib.__version__,
    )
    assert versions["jax2onnx"] and versions["onnx"] and manifest["onnx"]["opset"] >= 17
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", manifest["created"])

    regression = export_run(runs["regression"], format="stablehlo").manifest  # the default place, too
    assert (runs["regression"] / "export" / "model.stablehlo.json").is_file()
    assert regression["output"]["is"] == "values (regression)" and regression["decision"] is None
    assert regression["classes"] == [] and regression["stablehlo"]["calling_convention_version"] >= 9


# -- a sweep's members ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_member_chooses_as_predict_does_and_ensemble_is_the_mean(tmp_path):
    from netspec.export import load_stablehlo
    from netspec.inference import predict_ensemble, predict_run, sweep_member

    spec = write(
        tmp_path / "sweep.yaml", (SHIPPED[0].parent / "xor_nn.yaml").read_text() + "sweep: {seed: [0, 1, 2]}\n"
    )
    netspec_ok("run", spec, "--logdir", tmp_path / "runs", "--quiet", "--set", "train.steps=30")
    (sweep_dir,) = (tmp_path / "runs" / "xor_nn").iterdir()
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.save(tmp_path / "x.npy", x)

    result = netspec("export", sweep_dir, "--output", tmp_path / "best.stablehlo")
    assert result.exit_code == 0 and "using its best member" in result.stderr, result.output
    best = sweep_member(sweep_dir, "best")
    model, manifest = load_stablehlo(tmp_path / "best.stablehlo")
    assert manifest["source"]["run_dir"] == str(best.run_dir.resolve())
    np.testing.assert_allclose(np.asarray(model.call(x)), predict_run(best.run_dir, tmp_path / "x.npy")[0], atol=1e-6)

    netspec_ok("export", sweep_dir, "--member", "2", "--output", tmp_path / "second.stablehlo")
    model, manifest = load_stablehlo(tmp_path / "second.stablehlo")
    second = sweep_member(sweep_dir, "2").run_dir
    assert manifest["source"]["run_dir"] == str(second.resolve())
    np.testing.assert_allclose(np.asarray(model.call(x)), predict_run(second, tmp_path / "x.npy")[0], atol=1e-6)

    netspec_ok("export", sweep_dir, "--member", "ensemble", "--output", tmp_path / "all.stablehlo")
    model, manifest = load_stablehlo(tmp_path / "all.stablehlo")
    assert manifest["ensemble"]["members"] == ["seed=0", "seed=1", "seed=2"] and len(manifest["source"]) == 3
    mean, classes, _ = predict_ensemble(sweep_dir, tmp_path / "x.npy")
    got = np.asarray(model.call(x))
    np.testing.assert_allclose(got, mean, atol=1e-6)
    assert np.array_equal((got > 0.5).astype(np.int32).ravel(), classes)


# -- across jax versions --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_artifact_of_another_jax_names_both_versions(runs, tmp_path, monkeypatch):
    import jax
    from jax import export

    from netspec.errors import NetspecError
    from netspec.export import export_run, load_stablehlo

    done = export_run(runs["xor_nn"], format="stablehlo", output=tmp_path / "m.stablehlo")
    load_stablehlo(done.path)  # loads as it is
    manifest = json.loads(done.manifest_path.read_text())
    manifest["versions"]["jax"], manifest["versions"]["jaxlib"] = "99.1.0", "99.1.0"
    done.manifest_path.write_text(json.dumps(manifest))

    def newer(data):  # what jax says of an artifact it cannot read
        raise ValueError("Unsupported serialization version 99")

    monkeypatch.setattr(export, "deserialize", newer)
    with pytest.raises(NetspecError) as caught:
        load_stablehlo(done.path)
    message = str(caught.value)
    assert "99.1.0" in message and jax.__version__ in message and "Unsupported serialization version" in message
    assert "\n" not in message
    monkeypatch.undo()

    # the README's loader, in a process with jax alone, on a file this jax cannot read
    (tmp_path / "m.stablehlo").write_bytes(b"\x07" * 64)
    done = jax_only("load('m.stablehlo')\n", tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError") and "jax 99.1.0" in last and f"this is jax {jax.__version__}" in last

    manifest["versions"]["jax"] = jax.__version__  # the same jax: a damaged file, said so
    done_path = tmp_path / "m.stablehlo.json"
    done_path.write_text(json.dumps(manifest))
    with pytest.raises(NetspecError, match="damaged"):
        load_stablehlo(tmp_path / "m.stablehlo")


# -- how long -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("format", ["stablehlo", pytest.param("onnx", marks=needs_onnx)])
def test_a_fashion_cnn_export_takes_under_10_s(runs, tmp_path, format):
    """The whole `netspec export` process, jax's import included (5 s for onnx, 4 s for stablehlo,
    measured on 2 cores)."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(NETSPEC), "export", str(runs["fashion_cnn"]), "--format", format, "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    print(f"{format} export of fashion_cnn: {seconds:.1f} s, {(tmp_path / 'm').stat().st_size} bytes")
    assert seconds < 10, seconds


# -- refusals: one paragraph each --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_without_a_checkpoint_is_one_paragraph(runs, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["xor_nn"], run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    assert_one_paragraph(netspec("export", run_dir), "has no checkpoint", "netspec run")
    assert not (run_dir / "export").exists()


@pytest.mark.slow
def test_an_output_that_cannot_be_written_says_why_without_blaming_the_disk(runs, tmp_path):
    """A path under a file: the message says to choose another --output, not to free space (that
    is for a full disk), and nothing is written."""
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "model.stablehlo"
    message = assert_one_paragraph(
        netspec("export", runs["xor_nn"], "--output", target),
        f"Cannot write {target}: {tmp_path / 'a_file'} is a file, not a folder. Choose another --output.",
    )
    assert "space" not in message
    deeper = tmp_path / "a_file" / "sub" / "model.stablehlo"  # the file named, not the folder mkdir stopped at
    assert_one_paragraph(netspec("export", runs["xor_nn"], "--output", deeper), f"{tmp_path / 'a_file'} is a file")
    assert not (runs["xor_nn"] / "export").exists() or not any((runs["xor_nn"] / "export").glob("*.tmp"))


def test_a_bad_format_is_a_usage_error(tmp_path):
    result = netspec("export", tmp_path, "--format", "tflite")
    assert result.exit_code == 2 and "'stablehlo'" in result.output and "'onnx'" in result.output
    assert "Traceback" not in result.output


def test_onnx_without_the_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as if not installed: importing it fails
    message = assert_one_paragraph(netspec("export", tmp_path, "--format", "onnx"), "pip install 'netspec[onnx]'")
    assert "\n" not in message


def test_member_on_a_plain_run_is_refused(tmp_path):
    write(tmp_path / "spec.yaml", "")
    assert_one_paragraph(netspec("export", tmp_path, "--member", "2"), "--member chooses a member of a sweep")


@pytest.mark.slow
@needs_onnx
def test_a_layer_onnx_cannot_express_is_named(runs, tmp_path, monkeypatch):
    """jax2onnx expresses every operation netspec uses; one it cannot (random bits of a symbolic
    shape, put into the tanh activation here) is named with its layer, after a second try with
    every plugin jax2onnx has."""
    import jax

    from netspec.model import layers

    monkeypatch.setitem(
        layers.ACTIVATIONS, "tanh", lambda x: x + jax.random.uniform(jax.random.key(0), x.shape, x.dtype)
    )
    result = netspec("export", runs["regression"], "--format", "onnx", "--output", tmp_path / "m.onnx")
    message = assert_one_paragraph(
        result, "cannot be exported to ONNX", "the layer 'out'", "random_bits", "--format stablehlo"
    )
    assert "\n" not in message and not (tmp_path / "m.onnx").exists()
