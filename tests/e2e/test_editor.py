"""Issue 11, kind 9: the schema works in a real editor.

`netspec schema` is served to yaml-language-server, the YAML language server of VS Code and other
editors, driven over LSP (JSON-RPC on stdio) as an editor drives it: a broken spec's diagnostics
land on the lines `netspec validate` names, with the same words for the rules between keys; names
complete wherever a name is expected; a layer or optimizer is offered the keys of its own type;
every completion item inserts a valid skeleton; hover shows a key's description.

The server is pinned and installed from npm by `.ci/run` into the git-ignored .yls/ (or named by
$NETSPEC_YAML_LANGUAGE_SERVER). Without it these tests skip locally, and fail when $CI is set,
which `.ci/run` sets: CI never skips them silently. The schema-only tests at the end need no server.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from support import BASE, LOSS, LR, ROOT, SHIPPED, STEPS, UNITS0, UNITS1, X, Y, edit, netspec

from netspec.data.sources import SOURCES
from netspec.errors import SpecError
from netspec.spec.check import check
from netspec.spec.choices import (
    ACTIVATIONS,
    HISTOGRAMS,
    INITIALIZERS,
    LOSSES,
    MATRIX_INITIALIZERS,
    METRICS,
    OPTIMIZERS,
    SCHEDULES,
)
from netspec.spec.layers import LAYERS
from netspec.spec.load import parse
from netspec.spec.messages import schema_problems
from netspec.spec.schema import BIAS_INITIALIZERS, SCHEMA, TAGS

SERVER = os.environ.get("NETSPEC_YAML_LANGUAGE_SERVER") or str(
    ROOT / ".yls" / "node_modules" / ".bin" / "yaml-language-server"
)
TIMEOUT = 30.0  # seconds for one reply; the server answers in milliseconds once started


class LanguageServer:
    """A yaml-language-server process, and the editor's side of the protocol."""

    def __init__(self, command: str, schema: Path, workdir: Path):
        self.workdir = workdir
        self.process = subprocess.Popen(
            [command, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.replies: queue.Queue = queue.Queue()
        self.published: dict[str, list] = {}
        self.changed = threading.Condition()
        self.next_id = 0
        self.documents = 0
        self.schema = schema
        self.settings = {
            "validate": True,
            "completion": True,
            "hover": True,
            "format": {"enable": False},
            "schemas": {schema.as_uri(): "*.yaml"},
        }
        threading.Thread(target=self._read, daemon=True).start()
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": workdir.as_uri(),
                "capabilities": {
                    "workspace": {"configuration": True},
                    "textDocument": {
                        "completion": {"completionItem": {"snippetSupport": True}},
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "publishDiagnostics": {},
                    },
                },
            },
        )
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": {"yaml": self.settings}})
        self._wait_for_the_schema()

    def _wait_for_the_schema(self) -> None:
        """The settings reach the server after the first documents may have been checked without them."""
        deadline = time.monotonic() + TIMEOUT
        while not any("sead" in d["message"] for d in self.diagnostics("sead: 1\n")):
            assert time.monotonic() < deadline, "the server never applied the schema"
            time.sleep(0.1)

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    return
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            message = json.loads(stream.read(int(headers["content-length"])))
            if "method" in message and "id" in message:  # the server asks the editor
                result = (
                    [self.settings for _ in message["params"]["items"]]
                    if message["method"] == "workspace/configuration"
                    else None
                )
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            elif message.get("method") == "textDocument/publishDiagnostics":
                with self.changed:
                    self.published[message["params"]["uri"]] = message["params"]["diagnostics"]
                    self.changed.notify_all()
            elif "id" in message:
                self.replies.put(message)

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict):
        self.next_id += 1
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            reply = self.replies.get(timeout=TIMEOUT)
            if reply["id"] == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def open(self, text: str, suffix: str = ".yaml") -> str:
        """Open `text` as a new document; its uri."""
        self.documents += 1
        uri = (self.workdir / f"spec{self.documents}{suffix}").as_uri()
        self.notify(
            "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}
        )
        return uri

    def diagnostics(self, text: str, suffix: str = ".yaml") -> list[dict]:
        uri = self.open(text, suffix)
        with self.changed:
            assert self.changed.wait_for(lambda: uri in self.published, timeout=TIMEOUT), "no diagnostics published"
            return self.published[uri]

    def completions(self, text: str) -> tuple[str, int, int, list[dict]]:
        """`text` with '|' at the cursor: (text without it, line, character, completion items)."""
        at = text.index("|")
        text = text[:at] + text[at + 1 :]
        line, character = text.count("\n", 0, at), at - (text.rfind("\n", 0, at) + 1)
        uri = self.open(text)
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        return text, line, character, result["items"] if isinstance(result, dict) else result

    def hover(self, text: str) -> str:
        at = text.index("|")
        text = text[:at] + text[at + 1 :]
        line, character = text.count("\n", 0, at), at - (text.rfind("\n", 0, at) + 1)
        uri = self.open(text)
        result = self.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        )
        return result["contents"]["value"] if result else ""

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (shutil.which(SERVER) or Path(SERVER).is_file()):
        message = f"yaml-language-server is not installed at {SERVER} (.ci/run installs it: npm install --prefix .yls yaml-language-server@<pin>)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so this test may not skip")
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("editor")
    schema = workdir / "netspec.schema.json"
    result = netspec("schema")
    assert result.exit_code == 0, result.output
    schema.write_text(result.output)
    language_server = LanguageServer(SERVER, schema, workdir)
    yield language_server
    language_server.close()


def labels(items) -> set[str]:
    return {item["label"] for item in items}


# -- diagnostics ----------------------------------------------------------------------------------


def _messages(node) -> set[str]:
    """Every errorMessage in the schema."""
    if isinstance(node, dict):
        return ({node["errorMessage"]} if "errorMessage" in node else set()) | set().union(
            *map(_messages, node.values())
        )
    if isinstance(node, list):
        return set().union(*map(_messages, node))
    return set()


def _rule(words: str) -> str:
    """The one errorMessage of the schema with these words: the editor and validate both say it."""
    (message,) = {m for m in _messages(SCHEMA) if words in m}
    return message


# (id, spec text, lines the editor marks, the line validate names, words both say)
DIAGNOSED = [
    ("unknown_key", edit(("seed: 777", "sead: 777")), {2}, 2, "sead"),
    ("below_minimum", edit((UNITS0, "      units: 0")), {13}, 13, ""),
    ("misspelt_name", edit(("{activation: sigmoid", "{activation: sigmod")), {9}, 9, "sigmoid"),
    ("steps_and_epochs", edit((STEPS, STEPS + "\n  epochs: 3")), {24}, 22, "give either steps or epochs, not both"),
    ("neither_steps_nor_epochs", edit((STEPS + "\n", "")), {22}, 22, "missing required key 'steps' (or 'epochs')"),
    (
        "no_data_source",
        edit(("  inline:\n" + X + "\n" + Y + "\n", "  validation_split: 0.5\n")),
        {3},
        3,
        "data needs exactly one source",
    ),
    # the editor marks data and both sources; validate names data once
    (
        "two_data_sources",
        edit(("  inline:\n", "  mnist: {download: false}\n  inline:\n")),
        {3, 4, 6},
        3,
        "data needs exactly one source",
    ),
    ("unroll_with_loop_steps", edit((STEPS, STEPS + "\n  loop: steps\n  unroll: 2")), {25}, 25, _rule("unroll sets")),
    ("fsdp_devices_without_fsdp", BASE + "distribute:\n  fsdp_devices: 2\n", {26}, 26, _rule("fsdp_devices groups")),
    (
        "early_stopping_without_eval",
        BASE + "  early_stopping:\n    metric: accuracy\n",
        {26},
        26,
        _rule("early stopping needs"),
    ),
    ("validation_split_missing", BASE + "eval:\n  split: validation\n", {26}, 26, _rule("eval.split is validation")),
    (
        "accuracy_with_a_regression_loss",
        edit((LOSS, "loss: mean_squared_error")),
        {18},
        18,
        _rule("accuracy needs a classification"),
    ),
    (
        "top_k_with_binary_crossentropy",
        edit(("metrics: [accuracy]", "metrics: [accuracy, top_k_accuracy]")),
        {18},
        18,
        _rule("top_k_accuracy needs"),
    ),
    (
        "matrix_bias_initializer",
        edit(("bias_init: random_normal}", "bias_init: glorot_uniform}")),
        {9},
        9,
        _rule("a bias is a vector"),
    ),
    ("input_as_a_layer_name", edit(("    - name: layer1", "    - name: input")), {11}, 11, _rule("other than 'input'")),
    ("text_in_x", edit((X, '    x: [[0, 0], [0, "a"], [1, 0], [1, 1]]')), {5}, 5, "expected a number in x"),
    (
        "schedule_step_not_a_number",
        edit(
            (
                LR,
                "  learning_rate:\n    type: piecewise_constant\n    init_value: 0.1\n    boundaries_and_scales:\n      abc: 0.5",
            )
        ),
        {25},
        25,
        _rule("as the key"),
    ),
    (
        "two_inferred_sizes",
        edit((UNITS0, UNITS0 + "\n    - name: r\n      type: reshape\n      shape: [-1, -1]")),
        {16},
        16,
        _rule("at most one -1"),
    ),
    ("two_inputs_to_dense", edit((UNITS1, UNITS1 + "      inputs: [layer1, input]\n")), {17}, 17, ""),
]


@pytest.mark.parametrize("case, text, editor_lines, line, words", DIAGNOSED, ids=[c[0] for c in DIAGNOSED])
def test_a_broken_spec_is_marked_where_validate_says(server, case, text, editor_lines, line, words):
    marked = server.diagnostics(text)
    assert {d["range"]["start"]["line"] + 1 for d in marked} == editor_lines, marked
    assert all(words in d["message"] for d in marked), marked
    assert not [d for d in marked if d["message"].startswith("Matches")], marked  # the generic wording of oneOf and not
    with pytest.raises(SpecError) as refused:
        check(parse(text, "spec.yaml"))
    first = refused.value.problems[0]
    assert first.line == line, refused.value
    assert words in first.message, refused.value


def test_a_modeline_names_the_schema(server):
    """The README's way: the spec's first line names the schema file (here a .yml, which no setting maps)."""
    marked = server.diagnostics(
        f"# yaml-language-server: $schema={server.schema.as_uri()}\n" + BASE.replace("seed: 777", "sead: 777"), ".yml"
    )
    assert [(d["range"]["start"]["line"], d["message"]) for d in marked] == [(2, "Property sead is not allowed.")]


def test_a_valid_spec_has_no_diagnostics(server):
    for spec in SHIPPED:
        assert server.diagnostics(spec.read_text()) == [], spec


# -- completion -----------------------------------------------------------------------------------


def test_the_top_level_offers_every_key(server):
    *_, items = server.completions("name: x\n|\n")
    assert labels(items) >= set(SCHEMA["properties"]) - {"name"}


def test_data_offers_every_source_and_option(server):
    *_, items = server.completions("name: x\ndata:\n  |\n")
    assert labels(items) >= set(SCHEMA["properties"]["data"]["properties"])
    assert labels(items) >= set(SOURCES)


LAYER = "name: x\nmodel:\n  layers:\n    - name: a\n      type: {type}\n      {key}: |\n"
NAMES = [
    ("activation", "name: x\nmodel:\n  defaults:\n    activation: |\n", set(ACTIVATIONS)),
    ("layer_activation", LAYER.format(type="dense", key="activation"), set(ACTIVATIONS)),
    ("kernel_init", LAYER.format(type="conv2d", key="kernel_init"), set(INITIALIZERS)),
    ("bias_init", LAYER.format(type="dense", key="bias_init"), set(BIAS_INITIALIZERS)),
    ("layer_type", "name: x\nmodel:\n  layers:\n    - name: a\n      type: |\n", set(LAYERS)),
    ("padding", LAYER.format(type="max_pool", key="padding"), {"valid", "same"}),
    ("loss", "name: x\nloss: |\n", set(LOSSES)),
    ("loss_type", "name: x\nloss:\n  type: |\n", set(LOSSES)),
    ("metric", "name: x\nmetrics:\n  - |\n", set(METRICS)),
    ("optimizer_type", "name: x\noptimizer:\n  type: |\n", set(OPTIMIZERS)),
    ("schedule_type", "name: x\noptimizer:\n  type: sgd\n  learning_rate:\n    type: |\n", set(SCHEDULES)),
    ("activation_type", "name: x\nmodel:\n  defaults:\n    activation:\n      type: |\n", set(ACTIVATIONS)),
    ("on_nonfinite", "name: x\ntrain:\n  on_nonfinite: |\n", {"stop", "skip_step", "ignore"}),
    ("early_stopping_metric", "name: x\ntrain:\n  early_stopping:\n    metric: |\n", set(TAGS)),
    ("checkpoint_best", "name: x\ncheckpoint:\n  best: |\n", set(TAGS)),
    ("precision", "name: x\nprecision:\n  compute: |\n", {"float32", "bfloat16", "float16"}),
    ("histograms", "name: x\nsummaries:\n  histograms:\n    - |\n", set(HISTOGRAMS)),
]


@pytest.mark.parametrize("where, text, names", NAMES, ids=[n[0] for n in NAMES])
def test_names_complete_wherever_a_name_is_expected(server, where, text, names):
    *_, items = server.completions(text)
    assert labels(items) >= names
    if where == "bias_init":  # only the initializers a bias vector can take
        assert not labels(items) & MATRIX_INITIALIZERS


@pytest.mark.parametrize("layer_type", sorted(LAYERS))
def test_a_layer_is_offered_the_keys_of_its_type(server, layer_type):
    *_, items = server.completions(f"name: x\nmodel:\n  layers:\n    - name: a\n      type: {layer_type}\n      |\n")
    own = set(LAYERS[layer_type].fields) | {"inputs"}
    others = {f for kind in LAYERS.values() for f in kind.fields} - own
    assert labels(items) >= own
    assert not labels(items) & others


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_an_optimizer_is_offered_its_own_arguments(server, optimizer):
    *_, items = server.completions(f"name: x\noptimizer:\n  type: {optimizer}\n  |\n")
    own = set(OPTIMIZERS[optimizer]) | {"learning_rate", "clip_global_norm"}
    others = {a for args in OPTIMIZERS.values() for a in args} - own
    assert labels(items) >= own
    assert not labels(items) & others  # `type: adam` is not offered adamw's weight_decay


def expand(snippet: str) -> str:
    """A snippet as an editor inserts it with every tab stop left as it is: a placeholder's text,
    a choice's first option, an empty stop empty; a stop numbered twice mirrors its text."""
    stops: dict[str, str] = {}
    for number, text, choices in re.findall(r"\$\{(\d+)(?::((?:\\.|[^}\\])*)|\|([^|]*)\|)\}", snippet):
        stops.setdefault(number, text if not choices else choices.split(",")[0])

    def stop(match):
        number = match.group(1) or match.group(2)
        return re.sub(r"\\(.)", r"\1", stops.get(number, ""))

    text = re.sub(r"\$(\d+)|\$\{(\d+)(?::(?:\\.|[^}\\])*|\|[^|]*\|)\}", stop, snippet)
    return re.sub(r"\\([$}\\])", r"\1", text)


def insert(text: str, line: int, item: dict) -> tuple[str, range]:
    """`text` with the completion `item` applied as an editor applies it; the lines it wrote (1-based)."""
    edit_ = item.get("textEdit") or {
        "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}},
        "newText": item.get("insertText", item["label"]),
    }
    new = expand(edit_["newText"]) if item.get("insertTextFormat", 1) == 2 else edit_["newText"]
    lines = text.split("\n")
    start, end = edit_["range"]["start"], edit_["range"]["end"]
    indent = re.match(
        r"[ \t]*", lines[start["line"]]
    ).group()  # the editor indents a multi-line insert like its first line
    new = new.replace("\n", "\n" + indent)
    before = "\n".join(lines[: start["line"]] + [lines[start["line"]][: start["character"]]])
    after = "\n".join([lines[end["line"]][end["character"] :]] + lines[end["line"] + 1 :])
    return before + new + after, range(start["line"] + 1, start["line"] + new.count("\n") + 2)


def _rule_messages() -> set[str]:
    """The words of the rules between keys (a completion cannot see the other keys) and of the
    exactly-one groups (no completion can choose the data source, or steps or epochs, for you)."""
    out = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("doNotSuggest") and "errorMessage" in node:
                out.add(node["errorMessage"])
            out.update(branch["errorMessage"] for branch in node.get("oneOf", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SCHEMA)
    return out


SKELETONS = {
    "top_level": "name: x\n|\n",
    "data": "name: x\ndata:\n  |\n",
    "layer_item": "name: x\nmodel:\n  input: [2]\n  layers:\n    - |\n",
    "conv2d_keys": "name: x\nmodel:\n  input: [2]\n  layers:\n    - name: c\n      type: conv2d\n      |\n",
    "reshape_keys": "name: x\nmodel:\n  input: [2]\n  layers:\n    - name: r\n      type: reshape\n      |\n",
    "optimizer": "name: x\noptimizer:\n  |\n",
    "adafactor": "name: x\noptimizer:\n  type: adafactor\n  |\n",
    "schedule": "name: x\noptimizer:\n  type: sgd\n  learning_rate:\n    type: warmup_cosine_decay\n    |\n",
    "piecewise": "name: x\noptimizer:\n  type: sgd\n  learning_rate:\n    type: piecewise_constant\n    |\n",
    "train": "name: x\ntrain:\n  |\n",
    "eval": "name: x\neval:\n  |\n",
    "checkpoint": "name: x\ncheckpoint:\n  |\n",
    "summaries": "name: x\nsummaries:\n  |\n",
    "precision": "name: x\nprecision:\n  |\n",
    "distribute": "name: x\ndistribute:\n  |\n",
    "loss_mapping": "name: x\nloss:\n  type: categorical_crossentropy\n  |\n",
    "activation_mapping": "name: x\nmodel:\n  defaults:\n    activation:\n      type: leaky_relu\n      |\n",
    "csv": "name: x\ndata:\n  csv:\n    |\n",
}


@pytest.mark.parametrize("where", sorted(SKELETONS))
def test_every_completion_inserts_a_valid_skeleton(server, where):
    """What a completion writes is valid where it writes it: a value it fills in is one the key
    takes, a mapping it writes has its required keys. What it leaves empty (a tab stop with
    no text) is the writer's to fill, and which data source, or steps or epochs, is their choice."""
    text, line, _, items = server.completions(SKELETONS[where])
    assert items, "no completions"
    allowed = _rule_messages()
    for item in items:
        written, lines = insert(text, line, item)
        try:
            loaded = parse(written, "spec.yaml")
        except SpecError as e:  # not even YAML
            pytest.fail(f"{item['label']!r} inserts text that does not parse: {e}\n{written}")
        # the mapping the completion writes into: completing one key of it does not write the others
        keys = [path for path, (_, at, _) in loaded.key_positions.items() if at in lines]
        around = loaded.problem(min(keys, key=len)[:-1], "").path if keys else None
        wrong = [
            p
            for p in schema_problems(loaded)
            if p.line in lines
            and p.path != around
            and "nothing (null)" not in p.message
            and not any(m in p.message for m in allowed)
        ]
        assert not wrong, f"{item['label']!r} inserts an invalid skeleton:\n{written}\n" + "\n".join(map(str, wrong))


# -- hover ----------------------------------------------------------------------------------------

HOVERS = [
    ("units", BASE.replace("      units: 2", "      un|its: 2"), LAYERS["dense"].fields["units"]["description"]),
    (
        "steps",
        BASE.replace(STEPS, "  st|eps: 100"),
        SCHEMA["properties"]["train"]["properties"]["steps"]["description"],
    ),
    (
        "momentum",
        "name: x\nmodel:\n  layers:\n    - name: b\n      type: batch_norm\n      mome|ntum: 0.9\n",
        "momentum * running + (1 - momentum) * batch",
    ),
    (
        "layer_type",
        BASE.replace("      type: dense\n      units: 2", "      type: de|nse\n      units: 2"),
        "fully connected",
    ),
    ("optimizer_argument", "name: x\noptimizer:\n  type: adam\n  b|1: 0.9\n", OPTIMIZERS["adam"]["b1"]["description"]),
]


@pytest.mark.parametrize("key, text, words", HOVERS, ids=[h[0] for h in HOVERS])
def test_hover_shows_what_a_key_means(server, key, text, words):
    shown = server.hover(text).replace("\\", "")  # markdown escapes
    assert words in shown, shown


# -- the schema itself (no server) ----------------------------------------------------------------


def _properties(node, path="$"):
    """(path, property name, schema) of every key the schema describes; rule schemas left out."""
    if isinstance(node, dict):
        if node.get("doNotSuggest"):
            return
        for name, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and not sub.get("doNotSuggest"):
                yield path, name, sub
        for key, value in node.items():
            if key != "errorMessage":
                yield from _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{path}/{i}")


def test_every_key_has_a_description():
    # the conditions of if/then name keys only to test them; they are not where a key is written
    missing = sorted(
        f"{path}/properties/{name}"
        for path, name, s in _properties(SCHEMA)
        if not s.get("description") and "/if" not in path
    )
    assert not missing, missing


def test_every_default_and_example_is_valid_for_its_key():
    validator = jsonschema.Draft202012Validator
    for path, name, s in _properties(SCHEMA):
        for value in ([s["default"]] if "default" in s else []) + s.get("examples", []):
            errors = list(validator({**s, "$defs": SCHEMA["$defs"]}).iter_errors(value))
            assert not errors, (path, name, value, [e.message for e in errors])


def test_every_number_without_a_default_has_an_example():
    """An editor inserts the example as the value to type over; without one it writes 0, often out of range."""
    missing = [
        (path, name)
        for path, name, s in _properties(SCHEMA)
        if s.get("type") in ("integer", "number")
        and "default" not in s
        and not s.get("examples")
        and "/if/" not in path
    ]
    assert not missing, missing
