"""What the test modules share, in one place: `from support import cli, write, XOR`.

Fixtures live in conftest.py (pytest finds them by name); everything a test imports by name lives
here. Sections: where things are; specs to start from; the command in this process (`cli`,
`netspec`, `validate` and the assertions on what they did); the command as a process; files; run
directories read back; the network (a free port, a TensorBoard server and its HTTP API); every
layer type's examples; compiled programs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner, Result
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from netspec.cli import main
from netspec.spec.check import check
from netspec.spec.load import parse

# -- where things are ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent  # the repository
SPECS = ROOT / "specs"  # the shipped specs' directory
SHIPPED = sorted(SPECS.glob("*.yaml"))  # the shipped specs
README = ROOT / "README.md"
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (.ci/run installs it)
NETSPEC = Path(sys.executable).parent / "netspec"  # the installed command
TENSORBOARD = Path(sys.executable).parent / "tensorboard"

# -- specs to start from ------------------------------------------------------------------------------

XOR = """\
name: xor
seed: 0
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
model:
  input: [2]
  defaults: {activation: sigmoid, kernel_init: random_normal, bias_init: random_normal}
  layers:
    - {name: layer1, type: dense, units: 2}
    - {name: hypothesis, type: dense, units: 1}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
summaries: {every: 10, graph: false}
"""

# BASE: a valid spec in block style, so every key has its own line (spec/test_check.py's catalogue
# and e2e/test_editor.py break it one way at a time with `edit`). Line numbers:   col 1 ...
BASE = """\
name: xor_nn
seed: 777
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
model:
  input: [2]
  defaults: {activation: sigmoid, kernel_init: random_normal, bias_init: random_normal}
  layers:
    - name: layer1
      type: dense
      units: 2
    - name: hypothesis
      type: dense
      units: 1
loss: binary_crossentropy
metrics: [accuracy]
optimizer:
  type: sgd
  learning_rate: 0.1
train:
  steps: 100
  batch_size: 4
"""
#  1 name   2 seed   3 data   4 inline   5 x   6 y   7 model   8 input   9 defaults   10 layers
# 11 - name: layer1   12 type   13 units   14 - name: hypothesis   15 type   16 units
# 17 loss   18 metrics   19 optimizer   20 type   21 learning_rate   22 train   23 steps   24 batch_size

# lines of BASE, for `edit`
X = "    x: [[0, 0], [0, 1], [1, 0], [1, 1]]"
Y = "    y: [[0], [1], [1], [0]]"
UNITS0 = "      units: 2"
UNITS1 = "      units: 1\n"
LR = "  learning_rate: 0.1"
STEPS = "  steps: 100"
BATCH = "  batch_size: 4"
LOSS = "loss: binary_crossentropy"


def edit(*pairs: tuple[str, str]) -> str:
    """BASE with each `old` replaced (once) by `new`; `old` must be in BASE."""
    text = BASE
    for old, new in pairs:
        assert text.count(old) == 1, f"{old!r} is not in the base spec exactly once"
        text = text.replace(old, new)
    return text


def checked(spec: dict, source: str = "test.yaml"):
    """A Spec from a plain dict, through the real load (YAML text) and check."""
    return check(parse(yaml.safe_dump(spec, sort_keys=False), source))


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """YAML whose aliases expand to width**levels items (a billion, by default)."""
    lines = ["lol0: &lol0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# -- the command in this process (click's runner) -------------------------------------------------------
# `cli` gives an Outcome: the exit code and everything printed, a traceback included; `netspec`
# gives click's Result, for a test that reads stdout and stderr apart or the exception raised.


@dataclass
class Outcome:
    """A finished `netspec` command: its exit code and everything it printed (stdout + stderr).
    It unpacks as `code, output = cli(...)`."""

    exit_code: int
    output: str

    def __iter__(self):
        return iter((self.exit_code, self.output))

    def assert_clean_failure(self, *words: str) -> None:
        """Exit 1, no traceback, and every one of `words` in the output."""
        assert self.exit_code == 1, self.output
        assert "Traceback" not in self.output and "unexpectedly" not in self.output, self.output
        for word in words:
            assert word in self.output, (word, self.output)


def cli(*args, env: dict | None = None) -> Outcome:
    """Run `netspec ARGS` in this process (click's runner) and return what it did."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, output)


def netspec(*args, env: dict | None = None, catch_exceptions: bool = True) -> Result:
    """Run `netspec ARGS` in this process; click's Result (exit code, stdout, stderr, exception)."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=catch_exceptions)


def netspec_ok(*args, catch_exceptions: bool = True) -> str:
    """Run `netspec ARGS` in this process, fail with its output unless it exits 0; its output."""
    result = netspec(*args, catch_exceptions=catch_exceptions)
    assert result.exit_code == 0, result.output
    return result.output


def validate(spec: Path, *args) -> Result:
    """`netspec validate SPEC ARGS` in this process."""
    return netspec("validate", spec, *args)


def run_spec(spec: str, logdir: Path, *extra, catch_exceptions: bool = True) -> Path:
    """`netspec run specs/<spec>.yaml --logdir logdir --quiet EXTRA`, which must exit 0; the new run directory."""
    before = set(logdir.glob("*/*"))
    netspec_ok("run", SPECS / f"{spec}.yaml", "--logdir", logdir, "--quiet", *extra, catch_exceptions=catch_exceptions)
    (run_dir,) = set(logdir.glob("*/*")) - before
    return run_dir


def problem_lines(output: str) -> list[str]:
    """The problems `netspec validate` listed (its indented lines), stripped."""
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


def assert_one_paragraph(result: Result, *words: str, single_line: bool = True) -> str:
    """Exit 1, no traceback, one paragraph on stderr holding every word; returns the paragraph.
    The paragraph is one line, or with `single_line=False` any lines without a blank one."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "unexpectedly" not in result.output, result.output
    message = result.stderr.strip()
    assert message and ("\n" if single_line else "\n\n") not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


# -- the command as a process (the installed `netspec`) ---------------------------------------------------


def run_netspec(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `netspec ARGS` to its end; its exit code and output (text)."""
    return subprocess.run(
        [str(NETSPEC), *(str(a) for a in args)], capture_output=True, text=True, env=env, timeout=timeout
    )


def start_netspec(*args, env: dict | None = None) -> subprocess.Popen:
    """Start the installed `netspec ARGS`; its stdout and stderr are pipes (text)."""
    return subprocess.Popen(
        [str(NETSPEC), *(str(a) for a in args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


# -- files -------------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def damage(path: Path, how: str) -> None:
    """Damage a file of a run directory: missing, truncated (half), garbage (random bytes),
    garbage_text (text, but not what was written) or incomplete (an empty JSON object)."""
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    elif how == "garbage_text":
        path.write_text("{[: not what was written\n")
    elif how == "incomplete":
        path.write_text("{}\n")
    else:
        raise ValueError(how)


# -- run directories read back, as TensorBoard and result.json show them -----------------------------------

EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 0}  # keep every event, not a sample


def accumulator(path: Path) -> EventAccumulator:
    """TensorBoard's own reader over the event files under `path`, every event loaded."""
    ea = EventAccumulator(str(path), size_guidance=EVERYTHING)
    ea.Reload()
    return ea


def result_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def run_dirs(logdir: Path) -> list[Path]:
    """The run directories under `logdir` (<spec name>/<run name>)."""
    return sorted(p for p in logdir.glob("*/*") if p.is_dir())


def assert_complete(run_dir: Path, steps: int) -> None:
    """A finished run of `steps` steps: result.json, spec.yaml, run.json and a checkpoint."""
    result = result_of(run_dir)
    assert result["steps"] == steps
    assert (run_dir / "spec.yaml").is_file() and (run_dir / "run.json").is_file()
    assert list((run_dir / "checkpoints").glob("*.safetensors"))


# -- the network -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HPARAMS_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


class TensorBoardServer:
    """A running `tensorboard --logdir DIR` on 127.0.0.1 and its HTTP API, asked as its dashboards
    ask (the HParams plugin's requests are POSTs of JSON). `close()` stops it; so does leaving a
    `with` block."""

    def __init__(self, directory: Path, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115  # held for the server's life, closed in close()
        self.process = subprocess.Popen(
            [str(TENSORBOARD), "--logdir", str(directory), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> TensorBoardServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, route: str, **query):
        """GET `route`: its JSON answer, or the bytes of an image (`individualImage`)."""
        url = f"{self.base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
        return body if route.endswith("individualImage") else json.loads(body)

    def post(self, route: str, body: dict):
        """As the HParams dashboard sends its requests: POST, a JSON body."""
        request = urllib.request.Request(
            f"{self.base}{route}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_until(self, loaded: Callable[[TensorBoardServer], object], expected: object, timeout: float = 120) -> None:
        """Until `loaded(self)` (what the server shows so far) equals `expected`; a server that
        has not started yet (refused, half an answer) is asked again."""
        deadline, seen = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(OSError, ValueError, LookupError):
                seen = loaded(self)
                if seen == expected:
                    return
            time.sleep(0.3)
        raise AssertionError(
            f"TensorBoard did not show {expected} within {timeout} s (last seen {seen}): {self.log.read_text()}"
        )

    def experiment(self) -> dict:
        """The HParams experiment as the dashboard asks for it (at most 1,000 hyperparameters)."""
        return self.post("/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000})

    def session_groups(self, experiment: dict) -> dict[str, dict]:
        """Every session group by name, with every hyperparameter and metric the experiment
        names (the columns the dashboard asks for)."""
        columns = [{"hparam": h["name"], "includeInResult": True} for h in experiment["hparamInfos"]]
        columns += [{"metric": m["name"], "includeInResult": True} for m in experiment["metricInfos"]]
        answer = self.post(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": HPARAMS_STATUSES,
                "colParams": columns,
                "startIndex": 0,
                "sliceSize": 1000,
            },
        )
        return {group["name"]: group for group in answer["sessionGroups"]}

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


# -- every layer type's examples (model/test_registry.py, spec/test_cost.py) ----------------------------------
# type -> examples; each example is (model input shape, layers before it, the layer under test).
# The layer under test is named `probe`; `before` layers let multi-input layers read several. A new
# layer type fails model/test_registry.py's test_every_layer_has_examples until it has rows here.

LAYER_EXAMPLES: dict[str, list[tuple[list[int], list[dict], dict]]] = {
    "dense": [
        ([2], [], {"type": "dense", "units": 3}),
        ([4, 5], [], {"type": "dense", "units": 7, "use_bias": False}),
    ],
    "activation": [
        ([5], [], {"type": "activation", "activation": "relu"}),
        ([3, 4], [], {"type": "activation", "activation": "softmax"}),
    ],
    "flatten": [
        ([5], [], {"type": "flatten"}),
        ([2, 3, 4], [], {"type": "flatten"}),
    ],
    "reshape": [
        ([2, 6], [], {"type": "reshape", "shape": [3, -1]}),
        ([2, 3], [], {"type": "reshape", "shape": [6]}),
        ([12], [], {"type": "reshape", "shape": [2, 3, 2]}),
    ],
    "conv2d": [
        ([8, 8, 3], [], {"type": "conv2d", "filters": 4, "kernel_size": 3}),
        (
            [9, 7, 4],
            [],
            {"type": "conv2d", "filters": 6, "kernel_size": [3, 2], "strides": 2, "padding": "same", "groups": 2},
        ),
        ([10, 10, 1], [], {"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": [1, 2], "dilation": 2}),
    ],
    "max_pool": [
        ([8, 8, 3], [], {"type": "max_pool"}),
        ([7, 5, 2], [], {"type": "max_pool", "pool_size": 3, "strides": 2, "padding": "same"}),
        ([7, 5, 2], [], {"type": "max_pool", "pool_size": [3, 2], "strides": 1}),
    ],
    "avg_pool": [
        ([8, 8, 3], [], {"type": "avg_pool"}),
        ([7, 5, 2], [], {"type": "avg_pool", "pool_size": 3, "strides": 2, "padding": "same"}),
        ([7, 5, 2], [], {"type": "avg_pool", "pool_size": [3, 2], "strides": 1}),
    ],
    "global_avg_pool": [
        ([5, 5, 3], [], {"type": "global_avg_pool"}),
        ([7, 2], [], {"type": "global_avg_pool"}),
    ],
    "dropout": [
        ([4], [], {"type": "dropout", "rate": 0.5}),
        ([2, 3, 5], [], {"type": "dropout", "rate": 0.1}),
    ],
    "batch_norm": [
        ([4], [], {"type": "batch_norm"}),
        ([3, 3, 2], [], {"type": "batch_norm", "center": False}),
    ],
    "layer_norm": [
        ([4], [], {"type": "layer_norm"}),
        ([2, 5], [], {"type": "layer_norm", "scale": False}),
    ],
    "add": [
        ([4], [{"name": "a", "type": "dense", "units": 4}], {"type": "add", "inputs": ["input", "a"]}),
        ([2, 3, 4], [], {"type": "add", "inputs": ["input", "input", "input"]}),
    ],
    "concat": [
        ([5], [{"name": "a", "type": "dense", "units": 3}], {"type": "concat", "inputs": ["input", "a"]}),
        (
            [2, 3, 4],
            [{"name": "a", "type": "dense", "units": 2}],
            {"type": "concat", "inputs": ["a", "input"], "axis": 2},
        ),
        ([2, 3], [{"name": "a", "type": "dense", "units": 3}], {"type": "concat", "inputs": ["input", "a"], "axis": 0}),
    ],
}


def probe_spec(input_shape, before, layer) -> dict:
    """A valid spec whose layer `probe` is the one under test; a flatten + dense tail gives a known output."""
    return {
        "name": "probe",
        "data": {"inline": {"x": [np.zeros(input_shape).tolist()], "y": [[0.0]]}},
        "model": {
            "input": input_shape,
            "layers": [
                *before,
                {"name": "probe", **layer},
                {"name": "tail_flatten", "type": "flatten"},
                {"name": "tail_out", "type": "dense", "units": 1},
            ],
        },
        "loss": "mean_squared_error",
        "metrics": [],
        "optimizer": {"type": "sgd", "learning_rate": 0.1},
        "train": {"steps": 1, "batch_size": 1},
    }


# -- compiled programs (compile/test_compile.py, compile/test_precision.py) -------------------------------


def all_eqns(jaxpr):
    """Every equation, those of sub-jaxprs (jit, custom_jvp, scan bodies...) after their parent's."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from all_eqns(inner)


def on_device(spec):
    """The spec's training data as the compiled chunk takes it."""
    from netspec.training.feed import device_data, load_arrays

    arrays = load_arrays(spec)
    return device_data(arrays.train, arrays)


def batches_of(spec, start: int, length: int):
    """The chunk's batch argument as `netspec.training` makes it: example indices of steps
    start+1..start+length, or None when every step takes the whole data set."""
    from netspec.data.arrays import BatchOrder

    if spec.train["batch_size"] == spec.num_examples:
        return None
    return BatchOrder(
        spec.num_examples, spec.train["batch_size"], seed=spec.seed, shuffle=spec.train["shuffle"]
    ).indices(start, length)


def train_in_chunks(spec, program, lengths):
    """Train `spec` through compiled chunks of the given lengths, fed as `netspec.training` feeds them."""
    import jax

    data = on_device(spec)
    state, step, losses = program.init(), 0, []
    for n in lengths:
        state, outputs = program.train_chunk(n)(state, data, batches_of(spec, step, n), program.keys)
        step += n
        losses.extend(np.asarray(outputs.loss).tolist())
    assert int(state.step) == step
    return jax.device_get(state), losses, jax.device_get(program.init())
