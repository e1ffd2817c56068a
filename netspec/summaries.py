"""What a run shows in TensorBoard, written through tensorboardX.

Contract: `Summaries(run_dir, spec)` owns the event writers of one run:

    <run_dir>/train/   scalars (loss, metrics, learning_rate, steps_per_second), histograms
                       `<layer>/<param>` (weights, biases), `<layer>/activations`,
                       `<layer>/<param>/gradients`, the graph, the spec as text
    <run_dir>/         hparams: the spec's hyperparameters with the final metrics

Scalar tags are plain names (`loss`, `accuracy`), so runs and the `eval/` run of later issues
overlay in one chart. The host calls it only at chunk boundaries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter

from netspec.check import Spec, plain

_BIAS_NAMES = {"bias", "beta", "offset"}
HISTOGRAM_BINS = 30  # as tf.summary.histogram; tensorboardX's default ("tensorflow") costs 20x more per call


def hparams_of(spec: Spec) -> dict:
    """The spec's hyperparameters flattened to `section.key` -> number/string/bool (what HParams shows)."""
    resolved = plain(spec.resolved)
    out: dict = {"seed": spec.seed, "steps": spec.steps, "batch_size": spec.train["batch_size"], "loss": spec.loss["type"]}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)):
            out[prefix] = value

    walk("optimizer", resolved["optimizer"])
    for layer in spec.layers:
        for key in ("units", "activation", "rate"):
            if key in layer.args:
                value = layer.args[key]
                out[f"{layer.name}.{key}"] = value["type"] if hasattr(value, "get") else value
    return out


class Summaries:
    """The event writers of one run."""

    def __init__(self, run_dir: Path, spec: Spec, *, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.config = spec.summaries
        # A resumed run opens new event files beside the old ones; the suffix keeps a resume that
        # starts within the same second from truncating them (tensorboardX names files by second).
        self._suffix = f".{os.getpid()}.{purge_step or 0}"
        self._purge_step = purge_step
        self.train = self._writer("train")
        self._eval: SummaryWriter | None = None

    def _writer(self, name: str) -> SummaryWriter:
        return SummaryWriter(str(self.run_dir / name), purge_step=self._purge_step, flush_secs=30, filename_suffix=self._suffix)

    @property
    def eval(self) -> SummaryWriter:
        """The eval/ run, created at the first evaluation; same tags as train/, so charts overlay."""
        if self._eval is None:
            self._eval = self._writer("eval")
        return self._eval

    # -- per chunk --------------------------------------------------------------------------

    def scalars(self, step: int, values: Mapping[str, float], writer: SummaryWriter | None = None) -> None:
        writer = writer or self.train
        for tag, value in values.items():
            writer.add_scalar(tag, float(value), step)

    def histograms(self, step: int, params, *, activations=None, gradients=None) -> None:
        wanted = set(self.config["histograms"])
        for layer, tensors in params.items():
            for name, value in tensors.items():
                kind = "biases" if name in _BIAS_NAMES else "weights"
                if kind in wanted:
                    self._histogram(f"{layer}/{name}", value, step)
        if activations and "activations" in wanted:
            for layer, value in activations.items():
                self._histogram(f"{layer}/activations", value, step)
        if gradients and "gradients" in wanted:
            for layer, tensors in gradients.items():
                for name, value in tensors.items():
                    self._histogram(f"{layer}/{name}/gradients", value, step)

    def _histogram(self, tag: str, value, step: int) -> None:
        """A histogram of the finite values (a diverging run must still be summarised, not crash)."""
        values = np.asarray(value, np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        try:
            self.train.add_histogram(tag, values, step, bins=HISTOGRAM_BINS)
        except ValueError:  # a range too narrow to cut into bins at this magnitude: one bucket
            self.train.add_histogram_raw(tag, min=float(values.min()), max=float(values.max()), num=int(values.size),
                                         sum=float(values.sum()), sum_squares=float(np.square(values).sum()),
                                         bucket_limits=[float(values.max())], bucket_counts=[int(values.size)], global_step=step)

    def evaluation(self, step: int, values: Mapping[str, float], confusion, class_names, *, final: bool = False,
                   scalars: bool = True) -> None:
        """An evaluation: scalars under the train run's tags, and the confusion matrix as an image."""
        if scalars:
            self.scalars(step, values, self.eval)
        if confusion is not None and self.spec.eval["confusion_matrix"] and (scalars or final):
            self.eval.add_image("confusion_matrix", confusion_image(np.asarray(confusion)), step, dataformats="HWC")
            if final:
                self.eval.add_text("confusion_matrix", confusion_text(np.asarray(confusion), class_names), step)
        self.eval.flush()

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
        self.train.add_images("input/samples", images, 0, dataformats="NHWC")

    def spec_text(self, yaml_text: str) -> None:
        if self.config["text"]:
            self.train.add_text("spec", "```yaml\n" + yaml_text + "\n```", 0)

    def graph(self, graph_def) -> None:
        from netspec.graph import write_graph

        write_graph(self.train, graph_def)

    def hparams(self, final: Mapping[str, float]) -> None:
        """HParams: the spec's hyperparameters with the final metrics (as `hparam/<metric>`)."""
        if not self.config["hparams"]:
            return
        from tensorboardX.summary import hparams as hparams_summary

        metrics = {f"hparam/{k}": float(v) for k, v in final.items()}
        exp, ssi, sei = hparams_summary(hparams_of(self.spec), metrics)
        with SummaryWriter(str(self.run_dir), filename_suffix=self._suffix) as root:
            writer = root._get_file_writer()
            writer.add_summary(exp)
            writer.add_summary(ssi)
            writer.add_summary(sei)
            for tag, value in metrics.items():
                root.add_scalar(tag, value, self.spec.steps)

    def flush(self) -> None:
        self.train.flush()
        if self._eval is not None:
            self._eval.flush()

    def close(self) -> None:
        self.train.close()
        if self._eval is not None:
            self._eval.close()


def confusion_image(counts: np.ndarray, cell: int = 24) -> np.ndarray:
    """The confusion matrix as an RGB image (rows: true class, columns: predicted), each row
    normalised, white (0) to dark blue (1), a `cell`-pixel square per entry."""
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts, dtype=np.float64), where=rows > 0)
    white, blue = np.array([1.0, 1.0, 1.0]), np.array([0.03, 0.19, 0.42])
    rgb = white + share[..., None] * (blue - white)
    return np.kron(rgb, np.ones((cell, cell, 1))).astype(np.float32)


def confusion_text(counts: np.ndarray, class_names) -> str:
    """The confusion matrix as a Markdown table (rows: true class, columns: predicted)."""
    n = counts.shape[0]
    names = list(class_names) if class_names is not None and len(class_names) == n else [str(i) for i in range(n)]
    head = "| true \\ predicted | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (n + 1)]
    for i in range(n):
        lines.append(f"| {names[i]} | " + " | ".join(str(int(v)) for v in counts[i]) + " |")
    return "\n".join(lines)
