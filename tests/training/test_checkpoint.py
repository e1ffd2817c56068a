"""Checkpoints (netspec/checkpoint.py): a TrainState-like pytree to one safetensors file and back,
bit for bit; atomic writes that never damage the previous checkpoint; clear errors for a
checkpoint of another model or a damaged file; `Checkpoints` keeping the latest k and best."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import SPECS

from netspec.compile.state import TrainState
from netspec.errors import NetspecError
from netspec.training import checkpoint


def train_state(seed: int = 0) -> TrainState:
    """A TrainState as compile.py builds one: nested dicts of float32 params, optax's NamedTuple
    state with 0-d int32 counts, 0-d step/skipped, and model state holding other dtypes and a
    typed PRNG key. Host arrays (no device work): these tests are about the file, not jax."""
    rng = np.random.default_rng(seed)

    def normal(*shape, dtype=np.float32):
        return rng.normal(size=shape).astype(dtype)

    params = {
        "layer1": {"kernel": normal(2, 10), "bias": normal(10)},
        "hypothesis": {"kernel": normal(10, 1), "bias": normal(1)},
    }
    model_state = {
        "norm": {"mean": normal(10), "count": np.asarray(7, np.int32)},
        "half": normal(3, dtype=np.float16),
        "bf16": normal(2, 2, dtype=jnp.bfloat16),
        "pixels": rng.integers(0, 255, size=(4,)).astype(np.uint8),
        "key": jax.random.key(seed + 11),
        "empty": {},  # a layer without state: no leaf, no entry
    }
    opt_state = optax.inject_hyperparams(optax.adam)(learning_rate=0.01).init(params)
    # moments and counts that are not zeros, of the dtypes optax gave them
    opt_state = jax.tree_util.tree_map(
        lambda leaf: np.asarray(
            rng.integers(1, 1000) if np.issubdtype(leaf.dtype, np.integer) else rng.normal(size=leaf.shape), leaf.dtype
        ),
        opt_state,
    )
    return TrainState(np.asarray(1234, np.int32), params, model_state, opt_state, np.asarray(2, np.int32))


def leaves_with_paths(tree) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            out[jax.tree_util.keystr(path) + ":key"] = np.asarray(jax.random.key_data(leaf))
        else:
            out[jax.tree_util.keystr(path)] = np.asarray(leaf)
    return out


def assert_bit_identical(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    left, right = leaves_with_paths(a), leaves_with_paths(b)
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype, key
        assert left[key].shape == right[key].shape, key
        assert left[key].tobytes() == right[key].tobytes(), key


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- save / load ----------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(tmp_path):
    state = train_state()
    path = checkpoint.save(tmp_path / "ck" / "step-00001234.safetensors", state, {"step": 1234})
    assert path.is_file()
    restored = checkpoint.load(path, train_state(seed=99))  # the template's values do not matter, only its shape
    assert isinstance(restored, TrainState)
    assert isinstance(restored.opt_state.inner_state[0], optax.ScaleByAdamState)
    assert_bit_identical(restored, state)
    # 0-d leaves stay 0-d, and a typed key comes back a typed key of the same implementation
    assert np.shape(restored.step) == () and np.shape(restored.opt_state.inner_state[0].count) == ()
    key = restored.model_state["key"]
    assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    assert jax.random.key_impl(key) == jax.random.key_impl(state.model_state["key"])
    assert np.array_equal(jax.random.uniform(key, (4,)), jax.random.uniform(state.model_state["key"], (4,)))


@pytest.mark.slow
def test_round_trip_of_a_compiled_program_state(tmp_path):
    """The real thing: a spec's initial TrainState saved and loaded into a fresh init()."""
    from netspec.compile.program import compile_spec
    from netspec.spec.check import check
    from netspec.spec.load import load

    spec_file = SPECS / "xor_wide.yaml"
    program = compile_spec(check(load(spec_file)))
    state = program.init()
    path = checkpoint.save(tmp_path / "init.safetensors", state)
    assert_bit_identical(checkpoint.load(path, program.init(jax.random.key(5))), state)


def test_no_pickle_in_the_file(tmp_path):
    path = checkpoint.save(tmp_path / "a.safetensors", train_state())
    from safetensors.numpy import load_file

    stored = load_file(str(path))  # plain safetensors, readable without netspec
    assert ".params['layer1']['kernel']" in stored
    assert b"pickle" not in path.read_bytes() and b"\x80\x04\x95" not in path.read_bytes()[:64]


def test_metadata_round_trip(tmp_path):
    meta = {
        "spec": "xor_wide",
        "step": 1200,
        "tracking": {"best": 0.875, "best_step": 600, "early_best": None, "bad_evals": 1},
        "text": "ünïcode ✓",
        "list": [1, 2.5, "three"],
    }
    path = checkpoint.save(tmp_path / "a.safetensors", train_state(), meta)
    assert checkpoint.metadata(path) == meta
    assert checkpoint.metadata(checkpoint.save(tmp_path / "b.safetensors", train_state())) == {}


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_leaves_no_temp_file_and_the_old_checkpoint_intact(tmp_path, monkeypatch, failing):
    directory = tmp_path / "checkpoints"
    path = checkpoint.save(directory / "step-00000100.safetensors", train_state(0), {"step": 100})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, train_state(1), {"step": 200})  # the same name: must not clobber it
    with pytest.raises(OSError):
        checkpoint.save(directory / "step-00000200.safetensors", train_state(1), {"step": 200})
    monkeypatch.undo()
    assert files_in(directory) == ["step-00000100.safetensors"]  # no .tmp left behind, no half file
    assert path.read_bytes() == before
    assert_bit_identical(checkpoint.load(path, train_state(5)), train_state(0))
    assert checkpoint.metadata(path) == {"step": 100}


def test_an_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) in the middle of a write: the temp file goes too."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "step-00000001.safetensors", train_state())
    assert files_in(tmp_path) == []


# -- a checkpoint that does not fit ---------------------------------------------------------------


def test_a_leaf_of_another_shape_is_named(tmp_path):
    path = checkpoint.save(tmp_path / "a.safetensors", train_state())
    template = train_state()
    wider = template._replace(
        params={
            **template.params,
            "layer1": {"kernel": np.zeros((2, 12), np.float32), "bias": np.zeros((12,), np.float32)},
        }
    )
    with pytest.raises(NetspecError) as e:
        checkpoint.load(path, wider)
    message = str(e.value)
    assert "does not fit" in message and "['layer1']" in message
    assert "[2, 10]" in message or "[10]" in message  # what it has
    assert "[2, 12]" in message or "[12]" in message  # what the model needs
    assert str(path) in message


def test_a_missing_leaf_is_named(tmp_path):
    state = train_state()
    smaller = state._replace(params={"hypothesis": state.params["hypothesis"]}, opt_state=optax.sgd(0.1).init({}))
    path = checkpoint.save(tmp_path / "a.safetensors", smaller)
    with pytest.raises(NetspecError, match=r"has no .*\['layer1'\]\['(kernel|bias)'\].*different model"):
        checkpoint.load(path, state)


def test_a_leaf_of_another_dtype_is_refused(tmp_path):
    state = train_state()
    path = checkpoint.save(tmp_path / "a.safetensors", state)
    as_int = state._replace(
        params={
            **state.params,
            "hypothesis": {"kernel": np.zeros((10, 1), np.int32), "bias": state.params["hypothesis"]["bias"]},
        }
    )
    with pytest.raises(NetspecError, match=r"\['hypothesis'\]\['kernel'\] is float32, the model needs int32"):
        checkpoint.load(path, as_int)


def test_a_leaf_the_model_has_not_is_named(tmp_path):
    """A checkpoint of a deeper model whose other shapes happen to agree is still another model's."""
    state = train_state()
    deeper = state._replace(params={**state.params, "layer2": {"kernel": np.zeros((10, 10), np.float32)}})
    path = checkpoint.save(tmp_path / "a.safetensors", deeper)
    with pytest.raises(NetspecError, match=r"has .*\['layer2'\]\['kernel'\], which the model has not"):
        checkpoint.load(path, state)


@pytest.mark.parametrize("damage", ["truncated", "header", "empty", "text", "tail"])
def test_a_damaged_file_is_a_netspec_error(tmp_path, damage):
    path = checkpoint.save(tmp_path / "a.safetensors", train_state())
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "header": b"\xff" * 8 + data[8:],
        "empty": b"",
        "text": b"this is not a checkpoint\n",
        "tail": data[:-7],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(NetspecError, match="damaged or not a netspec checkpoint"):
        checkpoint.load(path, train_state())
    with pytest.raises(NetspecError, match="damaged or not a netspec checkpoint"):
        checkpoint.metadata(path)


def test_a_missing_file_is_a_netspec_error(tmp_path):
    with pytest.raises(NetspecError, match="No checkpoint at"):
        checkpoint.load(tmp_path / "nothing.safetensors", train_state())
    with pytest.raises(NetspecError, match="No checkpoint at"):
        checkpoint.metadata(tmp_path / "nothing.safetensors")


# -- Checkpoints: the run's directory ---------------------------------------------------------------


def tiny(step: int) -> dict:
    return {"w": np.full((3,), float(step), np.float32), "step": np.asarray(step, np.int32)}


def test_keeps_the_last_k_and_never_deletes_best(tmp_path):
    saved = checkpoint.Checkpoints(tmp_path / "checkpoints", keep=2)
    assert saved.latest() is None and saved.best() is None and saved.steps() == []  # no directory yet
    saved.save_best(tiny(100), 100, {"spec": "s", "accuracy": 0.5})
    for step in (100, 200, 300, 400, 500):
        path = saved.save(tiny(step), step, {"spec": "s"})
        assert path.name == f"step-{step:08d}.safetensors"
    assert files_in(saved.directory) == ["best.safetensors", "step-00000400.safetensors", "step-00000500.safetensors"]
    assert saved.latest() == saved.directory / "step-00000500.safetensors"
    assert [s for s, _ in saved.steps()] == [400, 500]
    assert saved.best() == saved.directory / "best.safetensors"
    assert checkpoint.metadata(saved.best()) == {"spec": "s", "accuracy": 0.5, "step": 100}
    assert checkpoint.metadata(saved.latest()) == {"spec": "s", "step": 500}
    assert float(checkpoint.load(saved.best(), tiny(0))["w"][0]) == 100.0
    saved.save_best(tiny(400), 400, {"spec": "s", "accuracy": 0.75})  # a better one replaces it
    assert checkpoint.metadata(saved.best())["step"] == 400
    assert "best.safetensors" in files_in(saved.directory)


def test_latest_is_by_step_number_not_by_name_or_time(tmp_path):
    saved = checkpoint.Checkpoints(tmp_path, keep=10)
    for step in (100000000, 900, 20000):  # 9 digits: wider than the 8-digit padding
        saved.save(tiny(step), step, {})
    assert saved.latest().name == "step-100000000.safetensors"
    assert [s for s, _ in saved.steps()] == [900, 20000, 100000000]


def test_stray_files_are_ignored(tmp_path):
    saved = checkpoint.Checkpoints(tmp_path, keep=1)
    saved.save(tiny(100), 100, {})
    (tmp_path / "step-latest.safetensors").write_bytes(b"x")  # not a step number
    (tmp_path / ".step-00000200.safetensors.abc123.tmp").write_bytes(b"half")  # a write killed by kill -9
    (tmp_path / "notes.txt").write_text("mine")
    assert saved.latest().name == "step-00000100.safetensors"
    saved.save(tiny(200), 200, {})
    assert saved.latest().name == "step-00000200.safetensors"
    assert not (tmp_path / "step-00000100.safetensors").exists()
    assert (tmp_path / "notes.txt").is_file() and (tmp_path / "step-latest.safetensors").is_file()


def test_a_failed_save_deletes_no_older_checkpoint(tmp_path, monkeypatch):
    saved = checkpoint.Checkpoints(tmp_path, keep=1)
    saved.save(tiny(100), 100, {})

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        saved.save(tiny(200), 200, {})
    monkeypatch.undo()
    assert files_in(tmp_path) == ["step-00000100.safetensors"]
    assert float(checkpoint.load(saved.latest(), tiny(0))["w"][0]) == 100.0
