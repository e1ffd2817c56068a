"""What the host does between chunks, one class per concern (Keras callbacks, Levanter's hooks).

Contract. The loop (`netspec.training.loop`) dispatches a chunk, then asks every callback what it
needs of the state it just got, before the next chunk takes (donates) it:

    callback.needs(end) -> Needs(state, params)        copies to take on the device at `end`
    callback.dispatch(state, end) -> device value | None  work to start on the device at `end`

and once the chunk is done (the next one running meanwhile) hands each, in order, the chunk's
results read back to the host:

    callback.on_chunk_end(chunk: FinishedChunk, stopping) -> a stop reason or None

`stopping` is the reason an earlier callback gave for this chunk (early stopping: the checkpoint
of this step is then the closing one). The callbacks, in the order they run:

    NonfiniteGuard   on_nonfinite: stop: a NaN or Inf noticed in the chunk ends the run, naming the
                     step and layer (found by running the chunk again with the per-step check)
    TrainingSummaries  one event a chunk: loss, metrics, learning rate, steps/s (and loss scale,
                     skipped steps); histograms of the weights, biases, and the activations and
                     gradients on the sample batch
    Evaluation       the eval split every eval.every steps; the best checkpoint; early stopping
    Checkpointing    a checkpoint every checkpoint.every steps, the events up to it on disk first
    ProgressBar      the terminal's progress bar

Each owns its state; the Evaluation's (`tracking`: the best value and step, early stopping's
count) is saved inside every checkpoint, so a resume continues it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from netspec import distribute
from netspec.compile.state import ChunkOutputs
from netspec.errors import NetspecError
from netspec.spec.types import Spec, metric_mode
from netspec.training import wire
from netspec.training.feed import split_means
from netspec.training.histograms import Drawn
from netspec.training.interrupts import pause


class Needs(NamedTuple):
    """What a callback needs copied of the state a chunk hands back (the next chunk donates it)."""

    state: bool = False  # the whole TrainState (a checkpoint, a best checkpoint)
    params: bool = False  # the parameters (histograms)


class DispatchedChunk(NamedTuple):
    """A chunk the loop has dispatched, and the device values the host will read once it is done."""

    end: int  # steps done after it
    length: int
    dispatched: float  # time.perf_counter() when dispatched
    outputs: ChunkOutputs  # on the device
    state: Any  # a copy of the whole TrainState, when a callback needs it, else None
    params: Any  # a copy of the parameters, when a callback needs them, else None
    work: dict[str, Any]  # callback name -> what its `dispatch` started on the device


class FinishedChunk(NamedTuple):
    """A chunk done, its outputs on the host."""

    end: int
    length: int
    outputs: ChunkOutputs  # numpy
    values: dict[str, float]  # loss (the last step's), metrics, learning_rate, (loss_scale, skipped_steps)
    steps_per_second: float | None
    state: Any
    params: Any
    work: dict[str, Any]
    histograms: Any = None  # the `histograms.Drawn` made already for this run (a sweep group's), or None


class Callback:
    """The interface; each method's default does nothing."""

    name = "callback"

    def needs(self, end: int) -> Needs:
        """Which copies of the state just made (steps up to `end`) this callback will read."""
        return Needs()

    def dispatch(self, state, end: int):
        """Device work to start on the state at `end` before the next chunk takes it, or None."""
        return None

    def on_chunk_end(self, chunk: FinishedChunk, stopping: str | None) -> str | None:
        """Act on a finished chunk's results; a reason to stop the run, or None."""
        return None


@jax.jit
def device_copy(tree):
    """A copy of `tree` on the device, taken before the next chunk donates it (jitted once for the
    process; `warm_copies` compiles it before training)."""
    return jax.tree_util.tree_map(jnp.copy, tree)


def warm_copies(state) -> None:
    """Compile `device_copy` for `state` and its parameters (what `Needs` asks for), so that its
    first use in the training loop is not a compilation counted in the training time."""
    jax.block_until_ready((device_copy(state), device_copy(state.params)))


def start_work(callbacks: list, state, end: int) -> dict[str, Any]:
    """{callback name: the device work its `dispatch` started on `state` at `end`}, for the callbacks
    that started any (a run's loop, and each member of a sweep group's)."""
    work = {}
    for callback in callbacks:
        started = callback.dispatch(state, end)
        if started is not None:
            work[callback.name] = started
    return work


def chunk_values(spec: Spec, outputs: ChunkOutputs) -> dict[str, float]:
    """The scalars of a finished chunk, in the order they are written: the last step's loss, the
    metrics, the learning rate, and with a dynamic loss scale (or skip_step) the scale and the
    steps skipped so far."""
    values = {
        "loss": float(outputs.loss[-1]),
        **{k: float(v) for k, v in outputs.metrics.items()},
        "learning_rate": float(outputs.learning_rate),
    }
    if outputs.loss_scale is not None:
        values["loss_scale"] = float(outputs.loss_scale)
    if spec.train["on_nonfinite"] == "skip_step" or outputs.loss_scale is not None:
        values["skipped_steps"] = float(outputs.skipped_steps)
    return values


def member_columns(spec: Spec, outputs: ChunkOutputs) -> dict[str, list[float]]:
    """`chunk_values` of a sweep group's chunk as columns, {name: [one value a member]} (`outputs`
    stacked: [members, ...] each field), read in one `tolist` a field rather than one float() a value."""
    columns = {
        "loss": outputs.loss[:, -1].tolist(),
        **{k: np.asarray(v, np.float64).tolist() for k, v in outputs.metrics.items()},
        "learning_rate": np.asarray(outputs.learning_rate, np.float64).tolist(),
    }
    if outputs.loss_scale is not None:
        columns["loss_scale"] = np.asarray(outputs.loss_scale, np.float64).tolist()
    if spec.train["on_nonfinite"] == "skip_step" or outputs.loss_scale is not None:
        columns["skipped_steps"] = np.asarray(outputs.skipped_steps, np.float64).tolist()
    return columns


def nonfinite_noticed(spec: Spec, outputs: ChunkOutputs) -> np.ndarray:
    """bool, the shape of `outputs.nonfinite_layer` ([] for a run's chunk, [members] for a group's):
    whether `NonfiniteGuard` has to act on the chunk (on_nonfinite: stop, and its per-step check
    named a layer, or it noticed a NaN or Inf)."""
    layer = np.asarray(outputs.nonfinite_layer)
    if spec.train["on_nonfinite"] != "stop":
        return np.zeros(layer.shape, bool)
    noticed = layer >= 0
    if outputs.nonfinite is not None:
        noticed = noticed | np.asarray(outputs.nonfinite, bool)
    return noticed


class NonfiniteGuard(Callback):
    """on_nonfinite: stop. A chunk whose per-step check named a bad step, or whose losses or final
    state hold a NaN or Inf, ends the run with an error naming the step and the first layer (spec
    order) whose gradients went non-finite; `locate(end, length)` (the loop's) runs the chunk again
    with the per-step check to name them when the chunk only noticed."""

    name = "nonfinite"

    def __init__(self, spec: Spec, run_dir: Path, latest_checkpoint: Callable, locate: Callable):
        self.spec, self.run_dir, self.latest_checkpoint, self.locate = spec, run_dir, latest_checkpoint, locate

    def on_chunk_end(self, chunk, stopping):
        outputs = chunk.outputs
        if not nonfinite_noticed(self.spec, outputs):
            return None
        layer, step = int(outputs.nonfinite_layer), int(outputs.nonfinite_step)
        if layer < 0:
            step, layer = self.locate(chunk.end, chunk.length)
        raise nonfinite_error(
            self.spec, self.run_dir, step, layer, self.latest_checkpoint(), chunk.end, chunk.length, outputs.loss
        )


def nonfinite_error(
    spec: Spec, run_dir: Path, step: int, layer_index: int, kept: Path | None, end: int, length: int, losses
) -> NetspecError:
    """The error for a NaN or Inf with on_nonfinite: stop, at `step` in `layer_index` (len(layers):
    the loss alone; -1: not found again, so only the chunk ending at `end` and its losses can be named)."""
    if layer_index < 0:
        bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
        first_loss = f" (the loss first at step {end - length + 1 + bad[0]})" if bad.size else ""
        what = (
            f"Training stopped: a NaN or Inf appeared in steps {end - length + 1}-{end}{first_loss}, and running them again "
            "did not show the step and layer."
        )
    elif layer_index < len(spec.layers):
        what = (
            f"Training stopped at step {step}: the gradients of layer {spec.layers[layer_index].name!r} (the first, in spec "
            "order, to go non-finite) became NaN or Inf."
        )
    else:
        what = f"Training stopped at step {step}: the loss became NaN or Inf."
    kept_text = (
        f"The last good checkpoint is kept: {kept}."
        if kept
        else "No checkpoint had been written yet (see checkpoint.every)."
    )
    return NetspecError(
        f"{what} {kept_text} "
        f"Lower optimizer.learning_rate, clip the gradients (optimizer.clip_global_norm), or set "
        f"train.on_nonfinite: skip_step to skip such steps. Run directory: {run_dir}"
    )


class TrainingSummaries(Callback):
    """The training run's summaries at every chunk's end, one event for them all: the scalars
    `summaries.scalars` asks for (loss, metrics, learning_rate, steps_per_second, plus the loss
    scale and skipped steps where they exist) and the histograms `summaries.histograms` asks for
    (the parameters, and with activations or gradients asked, those of the sample batch:
    `extras(params, model_state)`, started on the device by `dispatch`)."""

    name = "summaries"

    def __init__(self, spec: Spec, summaries, extras: Callable | None):
        self.scalars, self.histograms = set(spec.summaries["scalars"]), set(spec.summaries["histograms"])
        self.summaries, self.extras = summaries, extras

    def needs(self, end):
        return Needs(params=bool(self.histograms & {"weights", "biases"}))

    def dispatch(self, state, end):
        return self.extras(state.params, state.model_state) if self.extras is not None else None

    def scalar_tags(self, names: Sequence[str], steps_per_second: bool) -> list[str]:
        """The tags written of the values named `names` (`chunk_values`' keys, in their order), as
        `summaries.scalars` asks: loss, the metrics, learning_rate, steps_per_second."""
        wanted = self.scalars
        tags = ["loss"] if "loss" in wanted else []
        if "metrics" in wanted:
            tags += [k for k in names if k not in ("loss", "learning_rate")]
        if "learning_rate" in wanted:
            tags.append("learning_rate")
        if "steps_per_second" in wanted and steps_per_second:
            tags.append("steps_per_second")
        return tags

    def write(
        self,
        step: int,
        values: dict[str, float],
        steps_per_second: float | None,
        params,
        extras,
        made=None,
        hold: bool = False,
    ) -> None:
        """Write step `step`: `values` as `chunk_values` gives them, `params` (on the device or the
        host; None with `made`, the parameters' `histograms.Drawn` made already: a sweep group's)
        and what `dispatch` started; `hold`: the event is kept for the file's next write (a sweep's
        members, `write_members`)."""
        every = {**values, "steps_per_second": steps_per_second}
        scalars = {tag: every[tag] for tag in self.scalar_tags(list(values), steps_per_second is not None)}
        activations, gradients = distribute.to_host(extras) if extras is not None else (None, None)
        if made is None and params is not None:
            params = distribute.gather(params)
        self.summaries.training(
            step, scalars, params, activations=activations, gradients=gradients, made=made, hold=hold
        )

    @staticmethod
    def write_members(
        writers: Sequence[TrainingSummaries],
        slots: Sequence[int],
        step: int,
        columns: Mapping[str, list[float]],
        steps_per_second: float | None,
        made: list[Drawn] | None,
        work: Mapping[int, dict],
        hold: bool = False,
    ) -> None:
        """`write` for members of a sweep group at once: `writers[i]` is the member in slot
        `slots[i]` of `columns` (`member_columns`), `made` (`member_histograms`) and `work` (each
        slot's dispatched work); the writers alike (`groups` puts only members of one
        `summaries` block together). Their scalars are encoded in one numpy pass
        (`wire.scalar_rows`): 16 members' events, one at a time, cost more host time than the
        chunk that trains them. `hold`: the events are kept for each file's next write
        (`EventFile.add_serialized`; the group's loop says when they are written)."""
        if not writers:
            return
        if writers[0].extras is not None:  # each member's own activations and gradients: one at a time
            for writer, slot in zip(writers, slots, strict=True):
                values = {name: column[slot] for name, column in columns.items()}
                mine = None if made is None else made[slot]
                writer.write(step, values, steps_per_second, None, work[slot].get(writer.name), mine, hold)
            return
        tags = writers[0].scalar_tags(list(columns), steps_per_second is not None)
        every = {**columns, "steps_per_second": [steps_per_second] * len(next(iter(columns.values())))}
        fields = [b""] * len(slots)  # summaries.scalars: [], or nothing to write
        if tags:
            table = np.array([every[tag] for tag in tags], np.float64).T  # [members, tags]
            fields = wire.scalar_rows(tags, table[list(slots)])
        none, now = Drawn(), time.time()  # the members' events are of one moment
        for writer, slot, scalars in zip(writers, slots, fields, strict=True):
            writer.summaries.training_event(step, scalars, none if made is None else made[slot], now, hold=hold)

    def on_chunk_end(self, chunk, stopping):
        self.write(
            chunk.end, chunk.values, chunk.steps_per_second, chunk.params, chunk.work.get(self.name), chunk.histograms
        )


def better(value: float, than: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `value` improves on `than` (None: anything does) by more than `min_delta`, as Keras's
    EarlyStopping compares (`mode` "max" or "min")."""
    return than is None or (value > than + min_delta if mode == "max" else value < than - min_delta)


class Evaluation(Callback):
    """The eval split every `eval.every` steps (not at the last step: the closing evaluates it),
    into its evaluation run; the best checkpoint by `checkpoint.best`; early stopping by
    `train.early_stopping` (Keras's EarlyStopping: `patience` evaluations without an improvement
    of more than `min_delta`). `tracking` is its state, saved in every checkpoint."""

    name = "evaluation"

    def __init__(
        self, spec: Spec, summaries, checkpoints, evaluate: Callable | None, class_names, tracking: dict | None
    ):
        self.spec, self.summaries, self.checkpoints, self.evaluate, self.class_names = (
            spec,
            summaries,
            checkpoints,
            evaluate,
            class_names,
        )
        self.every = spec.eval["every"]
        self.best_tag = spec.checkpoint["best"]
        self.best_mode: str | None = metric_mode(self.best_tag) if self.best_tag else None  # set with best_tag
        self.early = spec.train["early_stopping"]
        self.tracking = tracking or {"best": None, "best_step": None, "early_best": None, "bad_evals": 0}

    def due(self, end: int) -> bool:
        return bool(self.evaluate is not None and self.every and end % self.every == 0 and end != self.spec.steps)

    def needs(self, end):
        return Needs(state=self.due(end) and self.best_tag is not None)

    def dispatch(self, state, end):
        if self.evaluate is None or not self.due(end):  # (due is False without evaluate)
            return None
        return self.evaluate(state)

    def keep_best(self, value: float, step: int, state) -> None:
        """Save `state` as the best checkpoint when `value` of the best tag beats the best so far."""
        if not self.best_tag:
            return
        assert self.best_mode is not None  # set with best_tag
        if better(value, self.tracking["best"], self.best_mode):
            self.tracking.update(best=value, best_step=step)
            self.checkpoints.save_best(state, step, {"spec": self.spec.name, self.best_tag: value})

    def on_chunk_end(self, chunk, stopping):
        evaluation = chunk.work.get(self.name)
        if evaluation is None:
            return None
        values, confusion = split_means(evaluation)
        if self.best_tag:
            self.keep_best(values[self.best_tag], chunk.end, chunk.state)
        reason = None
        if self.early is not None:
            early = self.early
            if better(values[early["metric"]], self.tracking["early_best"], early["mode"], early["min_delta"]):
                self.tracking.update(early_best=values[early["metric"]], bad_evals=0)
            else:
                self.tracking["bad_evals"] += 1
                if self.tracking["bad_evals"] >= early["patience"]:
                    reason = "early_stopping"
        if reason is None:  # an early stop's evaluation is the final one: the closing writes it, once
            self.summaries.evaluation(chunk.end, values, confusion, self.class_names, split=self.spec.eval["split"])
        return reason


class Checkpointing(Callback):
    """A checkpoint every `checkpoint.every` steps (not at the last step: the closing checkpoints
    it), the evaluation's tracking inside; the events up to its step are on disk (fsynced) before
    it is, so a resume after kill -9 has no gap."""

    name = "checkpointing"

    def __init__(self, spec: Spec, summaries, checkpoints, tracking: Callable[[], dict]):
        self.spec, self.summaries, self.checkpoints, self.tracking = spec, summaries, checkpoints, tracking
        self.every = spec.checkpoint["every"]

    def due(self, end: int) -> bool:
        return bool(self.every and end % self.every == 0 and end != self.spec.steps)

    def needs(self, end):
        return Needs(state=self.due(end))

    def save(self, state, step: int, **more) -> Path:
        self.summaries.sync()
        return self.checkpoints.save(state, step, {"spec": self.spec.name, "tracking": self.tracking(), **more})

    def on_chunk_end(self, chunk, stopping):
        if self.due(chunk.end) and stopping is None:  # an early stop's checkpoint is the closing one, which says so
            self.save(chunk.state, chunk.end)


class ProgressBar(Callback):
    """The terminal's progress bar (`netspec.training.report.Progress`), and the test-only pause
    point `chunk:<step>` (`netspec.training.interrupts.pause`)."""

    name = "progress"

    def __init__(self, progress):
        self.progress = progress

    def on_chunk_end(self, chunk, stopping):
        self.progress.update(chunk.length, "  ".join(f"{k} {v:.4g}" for k, v in chunk.values.items()))
        pause(f"chunk:{chunk.end}")


class Timing:
    """Seconds per chunk as the host sees them (a chunk runs while the host finishes the one
    before), and the time to the first step since the process started. Host work that is not
    training, done before a chunk is read back (a new run's step 0, written after its first chunk
    has run: `exclude`), is not counted in that chunk's time, and `excluded` sums it for the loop's."""

    def __init__(self, started: float):
        self.started = started
        self.previous: float | None = None  # when the last chunk ended
        self.first: float | None = None  # seconds to the first step
        self.excluded = 0.0  # seconds of the loop's that were not training (`exclude`)
        self._pending = 0.0  # of which the next chunk's time has not yet left out

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` of host work done since the running chunk's dispatch out of its time."""
        self.excluded += seconds
        self._pending += seconds

    def steps_per_second(self, dispatched: float, length: int) -> float | None:
        now = time.perf_counter()
        elapsed = now - max(dispatched, self.previous or 0.0) - self._pending
        self._pending = 0.0
        self.previous = now
        if self.first is None:
            self.first = dispatched - self.started + max(elapsed, 0.0) / length
        return length / elapsed if elapsed > 0 else None
