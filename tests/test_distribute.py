"""Data parallelism and sharded parameters on forced host devices (XLA_FLAGS), in subprocesses:
the device count is fixed when jax starts, and this test process has one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support import free_port, netspec, run_netspec, start_netspec

SPEC = """
name: dp
seed: 3
data: {npz: {path: data.npz}, scale: 1/255}
model:
  input: [64]
  defaults: {activation: relu}
  layers:
    - {name: layer1, type: dense, units: 256}
    - {name: layer2, type: dense, units: 256}
    - {name: output, type: dense, units: 4, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.001}
train: {steps: 20, batch_size: 16}
eval: {every: 10}
summaries: {every: 10, histograms: [], graph: false}
checkpoint: {every: 10}
"""

RUN = textwrap.dedent("""
    import json, sys
    import numpy as np
    from netspec import distribute
    from netspec.spec.check import check
    from netspec.spec.load import load
    from netspec.training.loop import run
    spec_path, logdir, devices, params, group = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    spec = check(load(spec_path, [f"distribute.params={params}", f"distribute.fsdp_devices={group}"]))
    asked = spec.resolved["distribute"]
    mesh = distribute.mesh_for(devices or asked["devices"], batch_size=spec.train["batch_size"], params=asked["params"],
                               fsdp_devices=asked["fsdp_devices"])
    from netspec.compile.program import compile_spec
    state = compile_spec(spec, mesh).init()
    per_device = None
    if mesh is not None:
        state = distribute.place(state, distribute.state_shardings(state, mesh, params))
        per_device = distribute.bytes_per_device(state.params)
    result = run(spec, logdir=logdir, quiet=True, devices=devices, run_name=f"d{devices}-{params}-{group}")
    print(json.dumps({"losses": result.losses, "per_device": per_device, "run_dir": str(result.run_dir)}))
""")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dp")
    rng = np.random.default_rng(0)
    np.savez(
        d / "data.npz",
        x_train=rng.integers(0, 256, (256, 64), dtype=np.uint8),
        y_train=rng.integers(0, 4, 256).astype(np.int32),
        x_test=rng.integers(0, 256, (50, 64), dtype=np.uint8),
        y_test=rng.integers(0, 4, 50).astype(np.int32),
    )
    (d / "spec.yaml").write_text(SPEC)
    return d


def _run(workdir, devices: int, params: str = "replicated", host_devices: int = 4, fsdp_devices: int | None = None):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={host_devices}", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            str(workdir / "spec.yaml"),
            str(workdir / "runs"),
            str(devices),
            params,
            "null" if fsdp_devices is None else str(fsdp_devices),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_and_four_devices_agree(workdir):
    one, four = _run(workdir, 1), _run(workdir, 4)
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fsdp_shards_parameters_and_matches_replicated(workdir):
    replicated = _run(workdir, 4, "replicated")
    sharded = {n: _run(workdir, n, "fsdp") for n in (2, 4)}
    assert sharded[4]["per_device"] < sharded[2]["per_device"] < replicated["per_device"]
    np.testing.assert_allclose(sharded[4]["losses"], replicated["losses"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_hybrid_sharding_splits_within_groups_and_replicates_across(workdir):
    """fsdp_devices: 2 on 4 devices: a mesh of 2 groups x 2; each parameter is split within a group."""
    replicated, full = _run(workdir, 4, "replicated"), _run(workdir, 4, "fsdp")
    hybrid = _run(workdir, 4, "fsdp", fsdp_devices=2)
    assert full["per_device"] < hybrid["per_device"] < replicated["per_device"]
    np.testing.assert_allclose(hybrid["losses"], replicated["losses"], rtol=1e-5, atol=1e-6)


def test_fsdp_devices_needs_fsdp_and_must_divide_the_devices(workdir):
    for extra, message in [
        ("distribute: {fsdp_devices: 2}\n", "it needs distribute.params: fsdp"),
        (
            "distribute: {params: fsdp, devices: 4, fsdp_devices: 3}\n",
            "does not divide the 4 devices into equal groups",
        ),
    ]:
        spec = workdir / "group.yaml"
        spec.write_text(SPEC + extra)
        result = netspec("validate", spec)
        assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.slow
def test_resume_on_another_device_count(workdir):
    first = _run(workdir, 4)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = run_netspec(
        "resume", first["run_dir"], "--devices", "1", "--set", "train.steps=30", "--quiet", env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((Path(first["run_dir"]) / "result.json").read_text())["steps"] == 30


# SGD whose learning rate jumps 1e8-fold after step 10: the weights overflow a few steps later
NAN_SETS = [
    "--set",
    "optimizer={type: sgd, learning_rate: {type: piecewise_constant, init_value: 0.01, boundaries_and_scales: {10: 1.0e+8}}}",
    "--set",
    "summaries.every=5",
    "--set",
    "eval.every=null",
]
NAMED = r"Training stopped at step (\d+): the gradients of layer '(\w+)'"


@pytest.fixture(scope="module")
def nan_on_one_device(workdir) -> tuple[str, str]:
    """(step, layer) that a NaN run names on one device."""
    import re

    one = netspec("run", workdir / "spec.yaml", "--logdir", workdir / "nan1", "--quiet", *NAN_SETS)
    assert one.exit_code == 1, one.output
    named = re.search(NAMED, one.output)
    assert named and 10 < int(named.group(1)) <= 20, one.output
    return named.groups()


@pytest.mark.slow
def test_nan_on_four_sharded_devices_is_located_as_on_one(workdir, nan_on_one_device):
    """A NaN in a run on 4 devices with sharded parameters: the chunk that went bad runs again
    from the checkpoint on the same mesh, and names the step and layer one device names."""
    import re

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    four = run_netspec(
        "run",
        workdir / "spec.yaml",
        "--logdir",
        workdir / "nan4",
        "--quiet",
        "--devices",
        "4",
        *NAN_SETS,
        "--set",
        "distribute.params=fsdp",
        env=env,
        timeout=300,
    )
    assert four.returncode == 1, four.stderr
    named = re.search(NAMED, four.stderr)
    assert named and named.groups() == nan_on_one_device, four.stderr
    assert "Traceback" not in four.stderr


def test_batch_must_split_evenly_over_the_devices(workdir):
    spec = workdir / "uneven.yaml"
    spec.write_text(SPEC.replace("batch_size: 16", "batch_size: 10") + "distribute: {devices: 4}\n")
    result = netspec("validate", spec)
    assert result.exit_code == 1
    assert "does not split evenly over 4 devices" in result.output and "(distribute.devices is 4)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_run_on_more_devices_than_there_are_is_a_clear_error(workdir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = run_netspec(
        "run", workdir / "spec.yaml", "--devices", "8", "--logdir", workdir / "runs2", "--quiet", env=env, timeout=300
    )
    assert out.returncode == 1
    assert "asks for 8 devices" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["scan", "steps"])
def test_two_processes_match_one_process_on_two_devices(workdir, loop):
    """2 processes on 127.0.0.1 (gloo collectives), one CPU device each, vs 1 process with 2
    devices; with the fused scan and with one jitted call per step (convolutions on CPU)."""
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    base.pop("XLA_FLAGS", None)
    logdir = workdir / f"multi-{loop}"
    port = free_port()
    procs = [
        start_netspec(
            "run",
            workdir / "spec.yaml",
            "--logdir",
            logdir,
            "--run-name",
            "mh",
            "--quiet",
            "--set",
            "summaries.histograms=[weights]",  # histograms gather across the processes
            "--set",
            f"train.loop={loop}",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            i,
            env=base,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    runs = sorted(p.name for p in (logdir / "dp").iterdir())
    assert runs == ["mh"], runs  # only process 0 wrote a run
    two_process = json.loads((logdir / "dp" / "mh" / "result.json").read_text())
    one_process = json.loads((Path(_run(workdir, 2, host_devices=2)["run_dir"]) / "result.json").read_text())
    assert set(two_process["final"]) == set(one_process["final"]) >= {"loss", "accuracy", "test_loss", "test_accuracy"}
    for key, value in one_process["final"].items():
        assert two_process["final"][key] == pytest.approx(value, rel=1e-5), key
    # the 2-process run's checkpoint goes on in one process with one device
    out = run_netspec("resume", logdir / "dp" / "mh", "--set", "train.steps=30", "--quiet", env=base, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((logdir / "dp" / "mh" / "result.json").read_text())["steps"] == 30


@pytest.mark.slow
def test_nan_in_two_processes_is_located_as_in_one(workdir, nan_on_one_device):
    """Both processes notice the chunk that went bad, run it again from their own copy of the
    checkpoint (collectives and all) and stop with the same step and layer as one process."""
    import re

    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    base.pop("XLA_FLAGS", None)
    port = free_port()
    procs = [
        start_netspec(
            "run",
            workdir / "spec.yaml",
            "--logdir",
            workdir / "nan-multi",
            "--quiet",
            *NAN_SETS,
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            i,
            env=base,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], [o[1][-2000:] for o in outs]
    for _, err in outs:
        named = re.search(NAMED, err)
        assert named and named.groups() == nan_on_one_device, err[-2000:]
        assert "Traceback" not in err


FEED = textwrap.dedent("""
    import json
    import numpy as np
    import jax
    from jax.sharding import Mesh
    from netspec import distribute

    class Recorder(np.ndarray):  # an array that notes which rows are read from it
        def __getitem__(self, index):
            if isinstance(index, np.ndarray):
                READS.append(index.size)
            return np.asarray(self)[index]

    READS = []
    data = np.arange(100 * 3, dtype=np.float32).reshape(100, 3).view(Recorder)
    idx = np.random.default_rng(0).permutation(100)[:2 * 8].reshape(2, 8).astype(np.int32)  # 2 steps of batch 8
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "fsdp"))  # as mesh_for makes it
    batches = distribute.rows_from_host(mesh, data, idx)
    shards = sorted((s.index[1].start, np.asarray(s.data).tolist()) for s in batches.addressable_shards)
    print(json.dumps({"reads": READS, "whole": np.asarray(batches).tolist(), "expected": np.asarray(data)[idx].tolist(),
                      "shards": shards, "shape": list(batches.shape)}))
""")


def test_each_device_is_fed_only_its_own_rows():
    """The host gathers for each device only the rows it trains on: with 4 devices and a batch of
    8, four reads of 2 steps x 2 rows, never the whole batch."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", FEED], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["shape"] == [2, 8, 3]
    assert got["whole"] == got["expected"]
    assert got["reads"] == [4, 4, 4, 4]
    assert [start for start, _ in got["shards"]] == [0, 2, 4, 6]


def test_to_host_reads_what_device_get_reads():
    """The per-chunk read (`to_host`) gives what jax.device_get gives, for every kind of leaf a
    chunk's outputs or state hold: float and integer arrays, booleans, a PRNG key, Python numbers, None."""
    import jax
    import jax.numpy as jnp

    from netspec.distribute import to_host

    tree = {
        "loss": jnp.arange(6.0).reshape(2, 3),
        "step": jnp.int32(7),
        "flags": jnp.array([True, False]),
        "key": jax.random.key(3),
        "number": 1.5,
        "nothing": None,
    }
    read, expected = to_host(tree), jax.device_get(tree)
    assert jax.tree_util.tree_structure(read) == jax.tree_util.tree_structure(expected)
    for got, want in zip(jax.tree_util.tree_leaves(read), jax.tree_util.tree_leaves(expected), strict=True):
        if isinstance(want, jax.Array) and jax.dtypes.issubdtype(want.dtype, jax.dtypes.extended):
            assert jnp.array_equal(jax.random.key_data(got), jax.random.key_data(want))
        else:
            assert (
                type(got) is type(want)
                and np.array_equal(got, want)
                and np.asarray(got).dtype == np.asarray(want).dtype
            )


def test_a_coordinator_that_cannot_work_is_refused_before_jax_tries_it():
    """jax's runtime aborts the process (exit 134, a C++ stack) after its timeout for these;
    netspec says what is wrong first."""
    import socket

    from netspec.distribute import _check_coordinator
    from netspec.errors import NetspecError

    with pytest.raises(NetspecError, match="--coordinator is HOST:PORT"):
        _check_coordinator("host0", 0)
    with pytest.raises(NetspecError, match=r"'host0\.invalid' cannot be found from here"):
        _check_coordinator("host0.invalid:12355", 1)
    with socket.socket() as taken:
        taken.bind(("", 0))
        port = taken.getsockname()[1]
        with pytest.raises(NetspecError, match=f"cannot listen on port {port} .*another program holds it"):
            _check_coordinator(f"localhost:{port}", 0)
        _check_coordinator(f"localhost:{port}", 1)  # only process 0 listens there
