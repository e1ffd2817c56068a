"""What a run shows in TensorBoard, as tensorboardX's protos (the training event of each chunk
encoded by `netspec.training.wire`, to the same bytes).

Contract: `Summaries(run_dir, spec)` owns the event files of one run. The run directory is one
TensorBoard run, with one more beside it for each split it evaluates:

    <run_dir>/              training: scalars (loss, metrics, learning_rate, steps_per_second),
                            histograms `<layer>/<param>` (weights, biases), `<layer>/activations`,
                            `<layer>/<param>/gradients`, the graph, the spec as text (tag `spec`),
                            sample images; and `HPARAMS_FILE`, the HParams session: the spec's
                            hyperparameters (`hparams_of`)
    <run_dir>/test/         evaluations on that split: the training scalars' tags (so the curves
    <run_dir>/validation/   overlay), the confusion matrix as a labelled image, and at the end as
                            a table (text tag `confusion_counts`)

Why this layout. TensorBoard's HParams plugin, when no run writes an `_hparams_/experiment`
summary (netspec never does: each run wrote its own, and TensorBoard used one of them for every
run), infers the experiment from all runs' session_start_info: the union of their
hyperparameters, `differs` where the values differ, and as metrics every scalar tag of a
session's run and the runs below it, valued at its last point. So the session lives in the
training run itself (no extra run that holds only it), the final metrics are the last points of
the curves a run draws anyway (no `hparam/*` charts of one point each), and a logdir of any mix
of specs shows every run. The evaluation runs are named after their split, so `test/accuracy`
is one HParams column for every run that measured it, whichever split it watched while training.

TensorBoard keeps the first summary metadata of a tag in a run, and the session's
hyperparameters are that metadata; so `HPARAMS_FILE` is rewritten whole, atomically, when a run
starts, is resumed (`--set train.steps=N` changes `steps`) and ends (its status), and never
holds two sessions. The host calls this module only at chunk boundaries.

Durability. Events are written by `EventFile`, synchronously: each record in one write() of its
own, so once a call returns its events are in the file (a kill -9 loses none of them; tensorboardX's
writer queued them for a thread, and its flush() did not write the queue), and a write cut off
by a full disk is cut back to the last whole record. A sweep's members hold their training events
(`hold`) and write them together about once a second (`netspec.training.members`): one write a
member and chunk cost a small model's group more host time than its chunk trains. `sync()` writes
what is held and fsyncs every file; the training loop calls it before each checkpoint, so a
checkpoint is never on disk before the events up to its step, and a kill -9 loses only held events
of steps after the last checkpoint, which a resume writes again. The files are named and begin as
tensorboardX's (`events.out.tfevents.<second>.<host><suffix>`, a file_version event, and with
`purge_step` a SessionLog START at that step, after which TensorBoard drops the steps >=
purge_step that earlier files hold): a resumed run's new files hide what the stopped one wrote
after its checkpoint. A new file is named after every file
already in its directory (the next second, if one of this second is there): TensorBoard reads a
run's files in name order, and a purge acts on what it read before.

The closing's evaluations (`evaluation(..., final=True)`) go into a file of their own in each
evaluation run, `events.out.tfevents.<second>.<host><suffix>.closing`, written under a temporary
name and renamed by `commit_closing()`: a run interrupted before result.json is finished by a
resume that replaces that file whole (`replace_closing`), rather than purging it: TensorBoard's
EventAccumulator purges scalars, histograms and images at a purge step, but not text.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

import google_crc32c
import numpy as np
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary

from netspec.spec.load import split_override
from netspec.spec.types import Spec, plain
from netspec.training import histograms, wire
from netspec.training.rundir import sync_directory, write_all

# The session's event file. A fixed name, so a resume replaces it; "0" sorts before every
# timestamped file: TensorBoard's Python loader reads a run's files once each, in name order, so
# even one already watching reads the session (written before the run's other files are opened).
HPARAMS_FILE = "events.out.tfevents.0.hparams"


SPLITS = ("test", "validation")  # the evaluation runs beside the training run


def hparams_of(spec: Spec) -> dict:
    """The spec's hyperparameters flattened to `section.key` -> number/string/bool (what HParams
    shows). A sweep member's also holds each key its sweep set (`spec.swept`), named as the sweep
    writes it (a mapping of only a `type`, as `activation: tanh` resolves to, as that type; another
    list or mapping as JSON text), in place of the names this flattening gives the same value
    (`model.layers[0].units` is not also `hidden.units`, `train.batch_size` not also `batch_size`,
    `model.defaults.activation` not also the activation of each layer that took it): so what
    differs between a sweep's members is its keys, once each. The HParams dashboard shows five
    hyperparameters before anyone picks (TensorBoard 2.21's tf-hparams-query-pane): those that
    differ first, by name; a second name for a swept value would take one of the five and push a
    swept key out of view."""
    resolved = plain(spec.resolved)
    out: dict = {}
    source: dict[str, tuple] = {}  # a name -> where its value is in `resolved`

    def put(name, value, at):
        out[name], source[name] = value, at

    put("seed", spec.seed, ("seed",))
    put("steps", spec.steps, ("train", "steps"))
    put("batch_size", spec.train["batch_size"], ("train", "batch_size"))
    put("loss", spec.loss["type"], ("loss", "type"))

    def walk(prefix, value, at):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, (*at, k))
        elif isinstance(value, (int, float, str, bool)):
            put(prefix, value, at)

    walk("optimizer", resolved["optimizer"], ("optimizer",))
    for i, layer in enumerate(spec.layers):
        for key in ("units", "activation", "rate"):
            if key in layer.args:
                value = layer.args[key]
                put(
                    f"{layer.name}.{key}",
                    value["type"] if hasattr(value, "get") else value,
                    ("model", "layers", i, key),
                )
    for key in spec.swept:
        path = split_override(f"{key}=")[0]
        found, value = _at(resolved, path)
        if not found:
            continue
        for name in [n for n in source if n != key and _sets(path, source[n], resolved)]:
            del out[name], source[name]
        if isinstance(value, dict) and set(value) == {"type"}:
            value = value["type"]
        out[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


def _sets(swept: tuple, at: tuple, resolved) -> bool:
    """Whether a sweep key at key path `swept` sets the value at `at` (both paths in `resolved`):
    one path holds the other, or `swept` is (in) `model.defaults.<k>` and `at` is a layer's `<k>`
    that equals it (a layer that does not set `<k>` takes the default; one that sets the same
    value is taken for one that does not, and only differs from it in name)."""
    n = min(len(swept), len(at))
    if swept[:n] == at[:n]:
        return True
    if swept[:2] != ("model", "defaults") or len(at) != 4 or at[:2] != ("model", "layers"):
        return False
    default = ("model", "defaults", at[3])
    if swept[: len(default)] != default[: len(swept)]:
        return False
    found, value = _at(resolved, default)
    return found and _at(resolved, at) == (True, value)


def _at(data, path) -> tuple[bool, object]:
    """(True, the value at key path `path` of plain data), or (False, None) where there is none."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


class EventFile:
    """One TensorBoard event file, written synchronously (see "Durability" in the module
    docstring). With `pending` it is written under a temporary name (no "tfevents" in it, so
    TensorBoard does not read it) until `commit()` renames it. Raises OSError when the file
    cannot be created or written."""

    def __init__(self, directory: Path, *, suffix: str = "", purge_step: int | None = None, pending: bool = False):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # TensorBoard reads a run's files in name order, and a purge acts on what was read before
        # it: a new file sorts after every file there, even one of the same second (a resume
        # right after a kill), by taking the next second then.
        stamps = [
            int(part)
            for part in (p.name.split(".")[3] for p in directory.glob("events.out.tfevents.*"))
            if part.isdigit()
        ]
        stamp = max([int(time.time()), *(t + 1 for t in stamps)])
        base = f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}{suffix}"
        for i in range(100):  # never truncate another file, even one of the same second and suffix
            self.path = directory / (base if i == 0 else f"{base}-{i}")
            if pending and self.path.exists():
                continue
            written = directory / f".events{suffix}.{os.getpid()}.tmp" if pending else self.path
            # a temporary name is this process's own (the run is held): one left by a process of
            # the same pid long ago is written over
            fresh = os.O_TRUNC if pending else os.O_EXCL
            try:
                self._fd: int | None = os.open(
                    written, os.O_WRONLY | os.O_CREAT | fresh | os.O_APPEND | os.O_CLOEXEC, 0o666
                )
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"{base} and 99 more exist in {directory}")
        self._written = written
        self._size = 0
        self._held: list[bytes] = []  # records kept for the next write (`add_serialized`'s hold)
        if not pending:
            sync_directory(directory)  # the new name survives a power loss with the events in it
        self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:  # as tensorboardX's SummaryWriter(purge_step=...) begins a file
            self.add_event(Event(step=purge_step, file_version="brain.Event:2"))
            self.add_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add_event(self, event: Event) -> None:
        """Append one event (stamped now unless it has a wall time) as one whole record."""
        if not event.wall_time:
            event.wall_time = time.time()
        self.add_serialized(event.SerializeToString())

    def add_serialized(self, event: bytes, *, hold: bool = False) -> None:
        """Append one serialized Event (`netspec.training.wire.event`) as one whole record, with
        the records held before it in the same write; `hold`: keep it for the next write (an
        event not held, `flush`, `sync`, `close`), as a sweep's members do (see "Durability")."""
        assert self._fd is not None, "an event after close"
        self._held.append(_record(event))
        if not hold:
            self.flush()

    def flush(self) -> None:
        """Write the records held, in one write. Raises OSError (a full disk: the file is cut back
        to the records written before, whole)."""
        if not self._held:
            return
        fd = self._fd
        assert fd is not None, "an event after close"
        records = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()  # written or not, never twice
        try:
            write_all(fd, records, self.path)  # named as it will be: a temporary name would mean nothing to a reader
        except BaseException:
            # a write cut off part way (a full disk) leaves no half record for a reader to stop at
            with suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(records)

    def add_summary(self, summary: Summary, step: int) -> None:
        """Append `summary` at `step`, as tensorboardX's FileWriter.add_summary does."""
        self.add_event(Event(summary=summary, step=int(step)))

    def sync(self) -> None:
        """Write the records held and fsync: the events so far survive a power loss, not only the
        process's end."""
        if self._fd is not None:
            self.flush()
            os.fsync(self._fd)

    def commit(self) -> None:
        """fsync, close and give a `pending` file its name: TensorBoard reads it whole or not at all."""
        self.sync()
        self.close()
        if self._written != self.path:
            os.replace(self._written, self.path)
            self._written = self.path
            sync_directory(self.path.parent)

    def close(self) -> None:
        """Write the records held and close the file (a `pending` one stays under its temporary
        name: see `commit`)."""
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None


CLOSING_SUFFIX = ".closing"  # the file of a run's closing evaluations, in each evaluation run


CHANGES_SUFFIX = ".changes"  # the file of the settings one resume changed, named by the step it resumed from


class Summaries:
    """The event writers of one run (see the module docstring for the layout). Creating it
    writes the run's HParams session and opens the training run's event file (unless not
    `training`: then at its first use) and those of the evaluation runs named in `splits`;
    raises OSError when the run directory cannot be written. `purge_step` begins every new file
    with a purge at that step (a resumed run: its checkpoint's step + 1). `replace_closing`
    deletes the closing files an interrupted closing left (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        spec: Spec,
        *,
        purge_step: int | None = None,
        splits=(),
        training: bool = True,
        replace_closing: bool = False,
    ):
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.config = spec.summaries
        # A resumed run opens new event files beside the old ones; the suffix keeps a resume that
        # starts within the same second from truncating them (files are named by the second).
        self._purge_step = purge_step
        self._suffix = f".{os.getpid()}.{purge_step or 0}"
        if replace_closing:
            for split in SPLITS:
                for path in (self.run_dir / split).glob(f"events.out.tfevents.*{CLOSING_SUFFIX}"):
                    path.unlink()
        self._started = time.time()
        self._files: list[EventFile] = []
        self.session()  # before the training events' file exists: see HPARAMS_FILE
        self._train = self._writer(self.run_dir, self._purge_step) if training else None
        self._evals: dict[str, EventFile] = {}
        self._closing: dict[str, EventFile] = {}
        for name in splits:  # opened now, so their purge hides a stopped run's later evaluations at once
            self.split(name)
        self.dropped: dict[str, list[int]] = {}  # histogram tag -> steps whose NaN or Inf values were left out

    @property
    def train(self) -> EventFile:
        """The training run's event file."""
        if self._train is None:
            self._train = self._writer(self.run_dir, self._purge_step)
        return self._train

    def _writer(self, directory: Path, purge_step: int | None) -> EventFile:
        writer = EventFile(directory, suffix=self._suffix, purge_step=purge_step)
        self._files.append(writer)
        return writer

    def split(self, name: str) -> EventFile:
        """The `<run_dir>/<name>/` run of evaluations on split `name` ("test" or "validation"),
        created at its first evaluation unless named in `splits`; same scalar tags as training,
        so charts overlay."""
        if name not in SPLITS:
            raise ValueError(f"no evaluation run for split {name!r}; expected one of {SPLITS}")
        if name not in self._evals:
            self._evals[name] = self._writer(self.run_dir / name, self._purge_step)
        return self._evals[name]

    # -- per chunk --------------------------------------------------------------------------

    def scalars(self, step: int, values: Mapping[str, float], writer: EventFile | None = None) -> None:
        """One point per tag at `step` (in the training run unless `writer` says otherwise). A NaN
        or Inf is written as it is: TensorBoard draws it, and it is the truth about that step."""
        writer = writer or self.train
        # the Summary proto directly: tensorboardX's add_scalar logs a bare warning for each NaN
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()])
        writer.add_summary(summary, step)

    def training(
        self,
        step: int,
        scalars: Mapping[str, float],
        params,
        *,
        activations=None,
        gradients=None,
        made=None,
        hold: bool = False,
    ) -> None:
        """The training run's summaries of step `step` as one event (a sweep writes one per member
        and chunk): the `scalars` (written as `scalars` writes them), and the histograms
        `summaries.histograms` asks for, of host arrays keyed layer -> name -> array. `made`: the
        parameters' `histograms.Drawn` made already, in place of `params` (a sweep group's, for
        all its members at once: `netspec.training.histograms.member_histograms`). NaN or Inf
        values are left out of histograms, and recorded in `dropped` for `dropped_note`. `hold`:
        the event is kept for the file's next write (`EventFile.add_serialized`)."""
        if made is None or activations is not None or gradients is not None:
            found = histograms.tensors(
                None if made is not None else params, self.config["histograms"], activations, gradients
            )
            if found:  # a plain run's, and a sweep member's activations and gradients: made together
                drawn = histograms.tagged({tag: np.asarray(value)[None] for tag, value in found.items()})[0]
                made = drawn if made is None else made.then(drawn)
        scalar_fields = b"".join(wire.scalar_value(tag, value) for tag, value in scalars.items())
        self.training_event(step, scalar_fields, made or histograms.Drawn(), time.time(), hold=hold)

    def training_event(
        self, step: int, scalars: bytes, made: histograms.Drawn, wall_time: float, *, hold: bool = False
    ) -> None:
        """Write the training event of step `step` at `wall_time` (seconds since the epoch):
        `scalars` its scalars' Summary fields encoded (`wire.scalar_value`, or a group's
        `wire.scalar_rows`), `made` its histograms; the tags that left out a NaN or Inf are
        recorded in `dropped`; `hold`: kept for the file's next write (`EventFile.add_serialized`)."""
        for tag in made.dropped:
            self.dropped.setdefault(tag, []).append(step)
        if scalars or made.fields:
            self.train.add_serialized(wire.event(wall_time, int(step), (scalars, made.fields)), hold=hold)

    def dropped_note(self) -> str | None:
        """One line naming the histograms NaN or Inf values were left out of, and at which steps;
        None when there were none."""
        if not self.dropped:
            return None
        tags = list(self.dropped)
        shown = ", ".join(tags[:8]) + (f" and {len(tags) - 8} more" if len(tags) > 8 else "")
        steps = sorted({s for at in self.dropped.values() for s in at})
        when = (
            f"step {steps[0]}"
            if len(steps) == 1
            else (
                f"steps {', '.join(map(str, steps))}"
                if len(steps) <= 4
                else f"{len(steps)} summary steps, {steps[0]} to {steps[-1]}"
            )
        )
        return (
            f"NaN or Inf values were left out of the histogram{'s' if len(tags) > 1 else ''} {shown} at {when}: "
            f"TensorBoard cannot draw them (the scalars keep them; train.on_nonfinite is {self.spec.train['on_nonfinite']})."
        )

    def evaluation(
        self,
        step: int,
        values: Mapping[str, float],
        confusion,
        class_names,
        *,
        split: str,
        final: bool = False,
        scalars: bool = True,
    ) -> None:
        """An evaluation on `split`, into its run: scalars under the training run's tags, and
        the confusion matrix (counts [true, predicted]) as an image; at the end (`final`: into
        the closing file, see `commit_closing`) also as a table."""
        from tensorboardX.summary import image

        if final:
            if split not in self._closing:
                if split not in SPLITS:
                    raise ValueError(f"no evaluation run for split {split!r}; expected one of {SPLITS}")
                self._closing[split] = EventFile(
                    self.run_dir / split, suffix=self._suffix + CLOSING_SUFFIX, pending=True
                )
                self._files.append(self._closing[split])
            writer = self._closing[split]
        else:
            writer = self.split(split)
        if scalars:
            self.scalars(step, values, writer)
        if confusion is not None and self.spec.eval["confusion_matrix"] and (scalars or final):
            counts = np.asarray(confusion)
            writer.add_summary(image("confusion_matrix", confusion_image(counts, class_names), dataformats="HWC"), step)
            if final:
                self.text("confusion_counts", confusion_text(counts, class_names), step, writer)

    # -- once per run -----------------------------------------------------------------------

    def sample_images(self, x: np.ndarray, info) -> None:
        """A grid of input examples, once per run, when the examples are images ([h, w] or [h, w, 1|3])."""
        shape = tuple(info.x_shape)
        if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))) or min(shape[:2]) < 8:
            return
        images = np.asarray(x, np.float32)
        if images.ndim == 3:
            images = images[..., None]
        low, high = images.min(), images.max()
        images = (images - low) / (high - low) if high > low else np.zeros_like(images)
        from tensorboardX.summary import image

        self.train.add_summary(image("input/samples", images, dataformats="NHWC"), 0)

    def text(self, tag: str, markdown: str, step: int, writer: EventFile | None = None) -> None:
        """Markdown under exactly `tag` in the Text tab (tensorboardX's add_text appends
        `/text_summary` to every tag, so the summary is built here from its protos)."""
        from tensorboardX.proto.plugin_text_pb2 import TextPluginData
        from tensorboardX.proto.summary_pb2 import SummaryMetadata
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name="text", content=TextPluginData(version=0).SerializeToString()
            )
        )
        tensor = TensorProto(
            dtype="DT_STRING",
            string_val=[markdown.encode("utf-8")],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
        )
        (writer or self.train).add_summary(
            Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)]), step
        )

    def changes_text(self, markdown: str, start_step: int) -> None:
        """The settings a resume changed, as text at the first step that ran with them, in a file
        of its own (`CHANGES_SUFFIX`): EventAccumulator never purges text, so a resume from the
        same checkpoint (or an earlier one) deletes the files of the resumes it replaces instead,
        and a run shows each change once."""
        for old in self.run_dir.glob(f"events.out.tfevents.*{CHANGES_SUFFIX}-*"):
            if int(old.name.rsplit("-", 1)[1]) >= start_step:
                old.unlink()
        writer = EventFile(self.run_dir, suffix=f"{self._suffix}{CHANGES_SUFFIX}-{start_step:010d}", pending=True)
        self.text("spec_changes", markdown, start_step + 1, writer)
        writer.commit()

    def spec_text(self, yaml_text: str) -> None:
        if self.config["text"]:
            self.text("spec", "```yaml\n" + yaml_text + "\n```", 0)

    def model_summary_text(self, conv=None) -> None:
        """The model's summary (`netspec.spec.summary`, as `netspec summary --format markdown`
        prints it; `conv`: the Program's lowering of each conv2d) as text, tag `model_summary`."""
        if self.config["text"]:
            from netspec.spec.summary import render, summarize

            self.text("model_summary", render([summarize(self.spec, conv)], "markdown"), 0)

    def graph(self, graph_def) -> None:
        # an Event with graph_def set is what TensorBoard's Graphs tab reads (as graph.write_graph writes it)
        self.train.add_event(Event(graph_def=graph_def.SerializeToString()))

    def session(self, *, status: str | None = None) -> None:
        """(Re)write the run's HParams session (`HPARAMS_FILE`): the spec's hyperparameters, and
        with `status` ("success" or "failure") how it ended. Written when a run starts or is
        resumed (by `Summaries()`: the spec's values now, as a resume may change `steps`) and,
        with its status, when it ends. The file
        is written under another name and renamed over the old one, so a reader never sees two
        sessions or half of one. Raises OSError when it cannot be written."""
        if not self.config["hparams"]:
            return
        from netspec.training.rundir import write_atomically

        events = [
            Event(wall_time=self._started, file_version="brain.Event:2"),
            Event(wall_time=self._started, step=0, summary=_session_start(hparams_of(self.spec), self._started)),
        ]
        if status is not None:
            events.append(Event(wall_time=time.time(), step=0, summary=_session_end(status)))
        # Written under a temporary name with no "tfevents" in it (TensorBoard never reads a file
        # still being written), fsynced, then renamed: never an empty file after a crash.
        write_atomically(
            self.run_dir / HPARAMS_FILE, b"".join(_record(e.SerializeToString()) for e in events), tmp_prefix="hparams"
        )

    def commit_closing(self) -> None:
        """Put the closing's evaluations in place, each evaluation run's file whole (see the
        module docstring). Raises OSError."""
        for writer in self._closing.values():
            writer.commit()

    def flush(self) -> None:
        """Write the events every file holds (`EventFile.add_serialized`'s hold), without fsync."""
        for writer in self._files:
            writer.flush()

    def sync(self) -> None:
        """Write what is held and fsync every event file: the events so far are on disk (see
        "Durability")."""
        for writer in self._files:
            writer.sync()

    def close(self) -> None:
        """Write what is held, fsync and close every event file; raises the first OSError."""
        try:
            self.sync()
        except BaseException:
            for writer in self._files:  # the error raised is sync's: closing the others must not hide it
                with suppress(OSError):
                    writer.close()
            raise
        for writer in self._files:
            writer.close()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (TensorFlow's crc32c::Mask: rotate right by 15, add
    0xa282ead8), computed by google-crc32c's C code: the pure-Python CRC tensorboardX carries took
    50 us a record, half of a 16-member sweep's host time per chunk."""
    x = google_crc32c.value(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def _record_header(length: int) -> bytes:
    """A TFRecord's length and its masked CRC-32C (a run's records are of few lengths)."""
    header = length.to_bytes(8, "little")
    return header + masked_crc32c(header).to_bytes(4, "little")


def _record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C (what TensorBoard reads)."""
    return b"".join((_record_header(len(data)), data, masked_crc32c(data).to_bytes(4, "little")))


def _hparams_summary(tag: str, **data) -> Summary:
    """A Summary holding one HParamsPluginData message, as TensorBoard's own hparams summaries
    are (metadata plus an empty tensor, which every TensorBoard data loader accepts)."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    from tensorboardX.proto.summary_pb2 import SummaryMetadata
    from tensorboardX.proto.tensor_pb2 import TensorProto
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

    content = HParamsPluginData(version=0, **data).SerializeToString()
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
    empty = TensorProto(dtype="DT_FLOAT", tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=0)]))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=empty)])


def _session_start(hparams: Mapping[str, object], started: float) -> Summary:
    from tensorboardX.proto.plugin_hparams_pb2 import SessionStartInfo

    info = SessionStartInfo(start_time_secs=started)
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: a bool is an int to Python
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = str(value)
    return _hparams_summary("_hparams_/session_start_info", session_start_info=info)


def _session_end(status: str) -> Summary:
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo

    info = SessionEndInfo(status=Status.Value(f"STATUS_{status.upper()}"), end_time_secs=time.time())
    return _hparams_summary("_hparams_/session_end_info", session_end_info=info)


def _class_names(class_names, n: int) -> list[str]:
    return (
        [str(c) for c in class_names]
        if class_names is not None and len(class_names) == n
        else [str(i) for i in range(n)]
    )


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:
        return ImageFont.load_default()


def confusion_image(counts: np.ndarray, class_names=None) -> np.ndarray:
    """The confusion matrix (counts [true, predicted]) as a labelled RGB image, uint8 [h, w, 3]:
    one row per true class and one column per predicted class, each named; each cell holds its
    count, shaded by its share of the row (white 0 to dark blue 1); axis titles "true class" (left)
    and "predicted class" (top)."""
    from PIL import Image, ImageDraw

    counts = np.asarray(counts)
    n = counts.shape[0]
    names = _class_names(class_names, n)
    font, title_font = _font(11), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text, f=font):
        left, top, right, bottom = probe.textbbox((0, 0), text, font=f)
        return right - left, bottom - top

    cell = max(24, max(size(str(int(v)))[0] for v in counts.reshape(-1)) + 8) if counts.size else 24
    name_width = max((size(name)[0] for name in names), default=0)
    title_height = size("predicted class", title_font)[1]
    pad = 6
    left = pad + title_height + pad + name_width + pad  # "true class" (turned), then the row names
    top = pad + title_height + pad + name_width + pad  # "predicted class", then the column names (turned)
    # a small matrix is narrower than its axis titles: the titles set the image's size then
    across, down = (
        max(n * cell, size("predicted class", title_font)[0]),
        max(n * cell, size("true class", title_font)[0]),
    )
    width, height = left + across + pad, top + down + pad

    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            fill = tuple(round(c) for c in (white + share[i, j] * (blue - white)).tolist())
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=fill, outline=(200, 200, 200))
            text = str(int(counts[i, j]))
            w, h = size(text)
            draw.text(
                (x0 + (cell - w) // 2, y0 + (cell - h) // 2),
                text,
                font=font,
                anchor="lt",
                fill="white" if share[i, j] > 0.5 else "black",
            )
    for i, name in enumerate(names):  # row names, right-aligned against the matrix
        w, h = size(name)
        draw.text((left - pad - w, top + i * cell + (cell - h) // 2), name, font=font, anchor="lt", fill="black")
    # column names read bottom to top: drawn on their own strip, turned, pasted above each column
    strip = Image.new("RGB", (max(1, name_width), n * cell), "white")
    strip_draw = ImageDraw.Draw(strip)
    for j, name in enumerate(names):
        w, h = size(name)
        strip_draw.text((0, j * cell + (cell - h) // 2), name, font=font, anchor="lt", fill="black")
    image.paste(strip.rotate(90, expand=True), (left, top - pad - name_width))
    w, h = size("predicted class", title_font)
    draw.text((left + max(0, n * cell - w) // 2, pad), "predicted class", font=title_font, anchor="lt", fill="black")
    w, h = size("true class", title_font)
    label = Image.new("RGB", (w, h + 2), "white")
    ImageDraw.Draw(label).text((0, 0), "true class", font=title_font, anchor="lt", fill="black")
    image.paste(label.rotate(90, expand=True), (pad, top + max(0, n * cell - w) // 2))
    return np.asarray(image, np.uint8)


def confusion_text(counts: np.ndarray, class_names) -> str:
    """The confusion matrix as a Markdown table (rows: true class, columns: predicted)."""
    n = counts.shape[0]
    names = _class_names(class_names, n)
    head = "| true \\ predicted | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (n + 1)]
    for i in range(n):
        lines.append(f"| {names[i]} | " + " | ".join(str(int(v)) for v in counts[i]) + " |")
    return "\n".join(lines)
