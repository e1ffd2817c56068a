"""Issue 11, kind 1: a spec is read with YAML 1.2 core-schema meaning, as JSON tools and editors
read it, not PyYAML's YAML 1.1: `1e-3` is a number wherever a number is expected, `no`/`yes`/`on`/
`off` are strings, `0777` is 777; the same through `--set`; and the resolved spec.yaml a run
writes reads back as what was read (under YAML 1.2 and 1.1 both)."""

from __future__ import annotations

import json

import pytest
import yaml
from support import XOR, cli, write

from netspec.spec.check import check
from netspec.spec.choices import ACTIVATIONS, INITIALIZERS, OPTIMIZERS
from netspec.spec.layers import LAYERS
from netspec.spec.load import dump, parse


def checked(text: str):
    return check(parse(text, "spec.yaml"))


def with_optimizer(text: str, optimizer: str) -> str:
    return text.replace("optimizer: {type: sgd, learning_rate: 0.1}", f"optimizer: {optimizer}")


def exponent_form(value: float) -> str:
    """0.1 -> '1e-1', 0.999 -> '999e-3', 2048 -> '2048e0': the form YAML 1.1 reads as text."""
    mantissa, exponent = f"{value:e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    return f"{digits}e{int(exponent) - (len(digits) - 1)}"


def test_exponent_form_is_a_number_of_the_same_value():
    for value in (0.1, 0.999, 1e-8, 2048.0, 0.0, 1.0, 5.0):
        assert float(exponent_form(value)) == value
        assert "." not in exponent_form(value) and "+" not in exponent_form(value)


# every number field a spec has, with a value inside its range, written as 1e-1 is written
_NUMBER_FIELDS = (
    [
        ("optimizer", name, arg, spec["default"])
        for name, args in OPTIMIZERS.items()
        for arg, spec in args.items()
        if "number" in spec.get("type", ()) and spec.get("default") is not None
    ]
    + [
        ("layer", name, field, spec["default"])
        for name, kind in LAYERS.items()
        for field, spec in kind.fields.items()
        if spec.get("type") == "number" and spec.get("default") is not None
    ]
    + [
        ("activation", name, arg, spec["default"])
        for name, args in ACTIVATIONS.items()
        for arg, spec in args.items()
        if spec.get("type") == "number"
    ]
    + [
        ("initializer", name, arg, spec["default"])
        for name, args in INITIALIZERS.items()
        for arg, spec in args.items()
        if spec.get("type") == "number"
    ]
)


@pytest.mark.parametrize(
    "where, name, field, value", _NUMBER_FIELDS, ids=[f"{w}.{n}.{f}" for w, n, f, _ in _NUMBER_FIELDS]
)
def test_an_exponent_without_a_dot_is_a_number_in_every_registry_field(where, name, field, value):
    written = exponent_form(value)
    if where == "optimizer":
        spec = checked(with_optimizer(XOR, f"{{type: {name}, learning_rate: 1e-1, {field}: {written}}}"))
        assert spec.optimizer[field] == value and spec.optimizer["learning_rate"] == 0.1
    elif where == "layer":
        layer = {"dropout": "{name: extra, type: dropout, rate: 5e-1}"}.get(
            name, f"{{name: extra, type: {name}, {field}: {written}}}"
        )
        spec = checked(XOR.replace("    - {name: hypothesis", f"    - {layer}\n    - {{name: hypothesis"))
        assert spec.layers[1].args[field] == (0.5 if name == "dropout" else value)
    elif where == "activation":
        spec = checked(
            XOR.replace(
                "{name: layer1, type: dense, units: 2}",
                f"{{name: layer1, type: dense, units: 2, activation: {{type: {name}, {field}: {written}}}}}",
            )
        )
        assert spec.layers[0].args["activation"][field] == value
    else:
        spec = checked(
            XOR.replace(
                "{name: layer1, type: dense, units: 2}",
                f"{{name: layer1, type: dense, units: 2, kernel_init: {{type: {name}, {field}: {written}}}}}",
            )
        )
        assert spec.layers[0].args["kernel_init"][field] == value


@pytest.mark.parametrize(
    "line, key, value",
    [
        ("data:\n  validation_split: 25e-2\n", ("data", "validation_split"), 0.25),  # with batch_size 3 below
        ("data:\n  scale: 1e-1\n", ("data", "scale"), 0.1),
        ("data:\n  max_resident_mb: 1e3\n", ("data", "max_resident_mb"), 1000.0),
        ("precision:\n  loss_scale: 1e2\n", ("precision", "loss_scale"), 100.0),
        (
            "optimizer: {type: sgd, learning_rate: 1e-3, clip_global_norm: 1E0}\n",
            ("optimizer", "clip_global_norm"),
            1.0,
        ),
        (
            "optimizer: {type: sgd, learning_rate: {type: exponential_decay, init_value: 1e-1, transition_steps: 10, decay_rate: 9e-1}}\n",
            ("optimizer", "learning_rate", "decay_rate"),
            0.9,
        ),
    ],
)
def test_an_exponent_without_a_dot_is_a_number_in_every_section(line, key, value):
    text = XOR
    section = line.split(":")[0]
    if section == "data":
        text = text.replace("data:\n", line).replace("batch_size: 4", "batch_size: 3")
    elif section == "optimizer":
        text = with_optimizer(text, line.split(": ", 1)[1].rstrip("\n"))
    else:
        text += line
    resolved = checked(text).resolved
    for part in key:
        resolved = resolved[part]
    assert resolved == value


@pytest.mark.parametrize(
    "written, read",
    [
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("No", "No"),
        ("OFF", "OFF"),
    ],
)
def test_yaml_1_1_booleans_are_strings(written, read):
    spec = checked(
        XOR.replace("name: xor", f"name: {written}")
        .replace("{name: layer1,", f"{{name: {written},")
        .replace(
            "\n    - {name: hypothesis, type: dense, units: 1}",
            f"\n    - {{name: hypothesis, type: dense, units: 1, inputs: {written}}}",
        )
    )
    assert spec.name == read and spec.layers[0].name == read and spec.layers[1].inputs == (read,)


@pytest.mark.parametrize("written, read", [("0777", 777), ("0o777", 511), ("0x1F", 31), ("010", 10), ("+12", 12)])
def test_integers_are_decimal_unless_marked(written, read):
    assert checked(XOR.replace("seed: 0", f"seed: {written}")).seed == read


@pytest.mark.parametrize("written", ["1_000", "12:30", "0b101"])
def test_yaml_1_1_only_numbers_are_text(written):
    """YAML 1.1 reads these as numbers (1000, 750 by base 60, 5); YAML 1.2 as text, refused where a number is expected."""
    with pytest.raises(Exception) as excinfo:
        checked(XOR.replace("seed: 0", f"seed: {written}"))
    assert "expected an integer" in str(excinfo.value) and f"'{written}' (string)" in str(excinfo.value)


def test_booleans_are_only_true_and_false():
    assert (
        checked(
            XOR.replace("train: {steps: 20, batch_size: 4}", "train: {steps: 20, batch_size: 4, shuffle: False}")
        ).train["shuffle"]
        is False
    )
    with pytest.raises(Exception) as excinfo:
        checked(XOR.replace("train: {steps: 20, batch_size: 4}", "train: {steps: 20, batch_size: 4, shuffle: no}"))
    assert "expected true or false, found 'no' (string)" in str(excinfo.value)


@pytest.mark.parametrize(
    "setting, key, value",
    [
        ("optimizer.learning_rate=1e-3", ("optimizer", "learning_rate"), 0.001),
        ("name=no", ("name",), "no"),
        ("seed=0777", ("seed",), 777),
        ("data.scale=1e-1", ("data", "scale"), 0.1),
    ],
)
def test_overrides_are_read_the_same_way(tmp_path, setting, key, value):
    spec = write(tmp_path / "spec.yaml", XOR)
    outcome = cli("validate", spec, "--set", setting)
    assert outcome.exit_code == 0, outcome.output
    from netspec.spec.load import load

    loaded = load(spec, [setting])
    data = loaded.data
    for part in key:
        data = data[part]
    assert data == value and type(data) is type(value)


@pytest.mark.slow
def test_the_resolved_spec_yaml_shows_what_was_read(tmp_path):
    spec = write(
        tmp_path / "spec.yaml",
        XOR.replace("name: xor", "name: no")
        .replace("seed: 0", "seed: 0777")
        .replace("learning_rate: 0.1", "learning_rate: 1e-1")
        + "description: on\n",
    )
    outcome = cli("run", spec, "--logdir", tmp_path / "runs", "--quiet")
    assert outcome.exit_code == 0, outcome.output
    (run_dir,) = (tmp_path / "runs" / "no").iterdir()
    text = (run_dir / "spec.yaml").read_text()
    for reader in (
        lambda t: parse(t, "spec.yaml").data,
        yaml.safe_load,
    ):  # YAML 1.2 (netspec, editors) and 1.1 (PyYAML)
        resolved = reader(text)
        assert resolved["name"] == "no" and resolved["seed"] == 777 and resolved["description"] == "on"
        assert resolved["optimizer"]["learning_rate"] == 0.1
    assert json.loads((run_dir / "result.json").read_text())["name"] == "no"


@pytest.mark.parametrize(
    "value", ["no", "1e3", "0o17", "0x1F", "12:30", "1_000", "", "~", "null", "True", "2024-01-01", ".inf", "-1", "+.5"]
)
def test_dump_quotes_every_string_either_yaml_would_misread(value):
    text = dump({"a": value})
    assert parse(text, "x").data == {"a": value} and yaml.safe_load(text) == {"a": value}, text
