"""The `netspec` command: validate every shipped spec, stay light (no jax for validate), print a
schema editors accept, help with examples, exit statuses (0 ok, 1 bad spec, 2 bad command line)."""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys

import jsonschema
import pytest
from click.testing import CliRunner
from support import ROOT, SHIPPED, SPECS, netspec, run_netspec

from netspec.cli import main
from netspec.errors import NetspecError
from netspec.training import loop as T

BROKEN = """\
name: broken
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
model:
  input: [2]
  layers:
    - {name: out, type: dense, unit: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 10, batch_size: 4}
"""


def test_there_are_shipped_specs():
    assert len(SHIPPED) >= 4, SHIPPED


def test_validate_every_shipped_spec():
    result = netspec("validate", *SHIPPED)
    assert result.exit_code == 0, result.output
    ok = [line for line in result.output.splitlines() if ": ok (" in line]
    assert len(ok) == len(SHIPPED), result.output
    for spec, line in zip(SHIPPED, ok, strict=True):
        assert line.startswith(f"{spec}: ok ("), line


@pytest.mark.parametrize("spec", ["xor_wide.yaml", "fashion_cnn.yaml"])
def test_validate_does_not_import_jax_or_numpy(spec):
    """validate is quick: inline data and the named data sets (known without their files) need
    neither jax nor numpy."""
    code = (
        "import sys\n"
        "from netspec.cli import main\n"
        f"sys.argv = ['netspec', 'validate', 'specs/{spec}']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print('heavy', sorted(m for m in ('jax', 'optax', 'tensorboardX', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{spec}: ok" in out.stdout
    assert "exit 0" in out.stdout
    assert "heavy []" in out.stdout, out.stdout


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_process_tears_jax_down_changes_nothing(signum):
    """A command's work done, the process's exit runs jax's hooks (clear_backends: a second or
    more with a large device state); a Ctrl-C there printed "Exception ignored in atexit callback
    ... KeyboardInterrupt" and exited 0, or killed the process (-2). The signal is ignored there:
    the command's own exit status, nothing printed."""
    code = (
        "import atexit, os, signal, sys, time\n"
        "import jax\n"  # its exit hooks first
        f"atexit.register(lambda: (os.kill(os.getpid(), signal.{signum}), time.sleep(0.2)))\n"  # runs before them
        "from netspec.cli import main\n"
        "sys.argv = ['netspec', 'validate', 'specs/xor_wide.yaml']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert "xor_wide.yaml: ok" in out.stdout and out.stderr == "", out.stderr


def test_a_program_calling_netspec_with_its_arguments_keeps_its_signal_handlers():
    """Only the console script (no arguments: it reads sys.argv) ignores signals once its work is
    done; a program, or a test, that runs netspec in its own process keeps its handlers."""
    from netspec.training import interrupts

    with pytest.raises(SystemExit) as done:
        main(["validate", str(ROOT / "specs" / "xor_wide.yaml")])
    assert done.value.code == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not interrupts._calm


def test_schema_is_a_valid_draft_2020_12_schema():
    result = netspec("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_accepts_every_shipped_spec():
    import yaml

    schema = json.loads(netspec("schema").output)
    validator = jsonschema.Draft202012Validator(schema)
    for spec in SHIPPED:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(spec.read_text()))]
        assert errors == [], (spec, errors)


@pytest.mark.parametrize(
    "args", [["--help"], *[[name, "--help"] for name in sorted(main.commands)]], ids=lambda args: " ".join(args)
)
def test_help_has_an_example(args):
    result = netspec(*args)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"], prog_name="netspec")
    assert result.exit_code == 0 and "netspec, version" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--bogus", "specs/xor_nn.yaml"],
        ["validate"],
        ["run", "--bogus", "specs/xor_nn.yaml"],
        ["no-such-command"],
    ],
)
def test_a_wrong_command_line_exits_2(args):
    result = netspec(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_run_on_a_broken_spec_exits_1_without_a_traceback(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    logdir = tmp_path / "runs"
    out = run_netspec("run", spec, "--logdir", logdir, "--quiet", timeout=120)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    assert f"{spec}:9:32: $.model.layers[0].unit: unknown key 'unit'; did you mean 'units'?" in out.stderr
    assert not logdir.exists()  # a refused spec leaves nothing behind


def test_run_with_a_bad_set_exits_1(tmp_path):
    logdir = tmp_path / "runs"
    out = run_netspec(
        "run", SPECS / "xor_nn.yaml", "--set", "train.steps=-5", "--logdir", logdir, "--quiet", timeout=120
    )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "--set train.steps=-5: $.train.steps: expected a value >= 1" in out.stderr
    assert "Traceback" not in out.stderr
    assert not logdir.exists()


def test_run_on_a_missing_file_exits_1(tmp_path):
    result = netspec("run", tmp_path / "nope.yaml", "--logdir", tmp_path / "runs")
    assert result.exit_code == 1
    assert "no such file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_command_has_the_one_error_policy():
    for name, command in sorted(main.commands.items()):
        assert getattr(command.callback, "__wrapped__", None) is not None, (
            f"netspec {name} is not under _one_error_policy"
        )


FAILURES = {  # what a command raised -> exit code, words of the one paragraph on stderr
    "NetspecError": (lambda: NetspecError("The run is broken: fix it."), 1, ("The run is broken: fix it.",)),
    "OSError": (
        lambda: PermissionError(13, "Permission denied", "/runs/x/checkpoints"),
        1,
        ("Cannot", "/runs/x/checkpoints", "Permission denied"),
    ),
    "KeyboardInterrupt": (lambda: KeyboardInterrupt(), 130, ("Interrupted.",)),
    "bug": (lambda: ZeroDivisionError("division by zero"), 1, ("ZeroDivisionError", "This is a bug in netspec")),
}
COMMANDS = {  # command line -> the function it calls that the test makes fail
    "eval": (["eval", "runs/x/y"], "netspec.inference.evaluate_run"),
    "predict": (["predict", ".", "--input", "x.npy"], "netspec.inference.predict_run"),
    "validate": (["validate", "specs/xor_nn.yaml"], "netspec.cli._load_and_check"),
    "run": (["run", "specs/xor_nn.yaml"], "netspec.cli._load_and_check"),
    "resume": (["resume", "."], "netspec.training.rundir.load_run_spec"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failing_command_ends_in_one_paragraph(monkeypatch, command, failure):
    """Whatever a command meets, it ends with one paragraph and an exit status, never a traceback."""
    args, target = COMMANDS[command]
    make, code, words = FAILURES[failure]
    module, name = target.rsplit(".", 1)

    def fail(*args, **kwargs):
        raise make()

    monkeypatch.setattr(importlib.import_module(module), name, fail)
    monkeypatch.delenv("NETSPEC_DEBUG", raising=False)
    result = netspec(*args)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert all(word in message for word in words) and "\n" not in message, message


@pytest.mark.parametrize(
    "error",
    [RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4294967296 bytes."), MemoryError()],
    ids=["xla", "host"],
)
def test_running_out_of_memory_is_one_paragraph_not_a_bug(error, monkeypatch, tmp_path):
    """XLA's out-of-memory (an XlaRuntimeError) and a host MemoryError say what to change, not 'a bug in netspec'."""

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(T, "run", out_of_memory)
    result = netspec("run", SPECS / "xor_nn.yaml", "--logdir", tmp_path, "--quiet")
    assert result.exit_code == 1, result.output
    assert "ran out of" in result.output and "train.batch_size" in result.output and "bug" not in result.output
