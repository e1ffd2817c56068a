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
        self.train = SummaryWriter(str(self.run_dir / "train"), purge_step=purge_step, flush_secs=30)

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
                    self.train.add_histogram(f"{layer}/{name}", np.asarray(value), step, bins=HISTOGRAM_BINS)
        if activations and "activations" in wanted:
            for layer, value in activations.items():
                self.train.add_histogram(f"{layer}/activations", np.asarray(value), step, bins=HISTOGRAM_BINS)
        if gradients and "gradients" in wanted:
            for layer, tensors in gradients.items():
                for name, value in tensors.items():
                    self.train.add_histogram(f"{layer}/{name}/gradients", np.asarray(value), step, bins=HISTOGRAM_BINS)

    # -- once per run -----------------------------------------------------------------------

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
        with SummaryWriter(str(self.run_dir)) as root:
            writer = root._get_file_writer()
            writer.add_summary(exp)
            writer.add_summary(ssi)
            writer.add_summary(sei)
            for tag, value in metrics.items():
                root.add_scalar(tag, value, self.spec.steps)

    def flush(self) -> None:
        self.train.flush()

    def close(self) -> None:
        self.train.close()
