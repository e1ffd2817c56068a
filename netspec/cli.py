"""The `netspec` command: validate, run, schema.

Each command is a thin function whose docstring is its help. A user's mistake (a bad spec, a
missing file) is a `NetspecError`: printed as a paragraph on stderr, exit 1, no traceback.
A bad command line is click's own UsageError (exit 2). `validate` and `schema` never import jax.
"""

from __future__ import annotations

import json
import sys

import click

from netspec.errors import NetspecError

SET_HELP = "Override a spec value: dotted.key=value (YAML value), e.g. --set optimizer.learning_rate=0.01. Repeatable."


def _fail(error: NetspecError) -> None:
    click.echo(str(error), err=True)
    sys.exit(error.exit_code)


def _load_and_check(path: str, overrides):
    from netspec.check import check
    from netspec.load import load

    return check(load(path, list(overrides)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspec")
def main():
    """netspec: declarative deep learning. A YAML spec in, a trained JAX model and a TensorBoard run out.

    \b
    Example:
      netspec validate specs/xor_wide.yaml     # check a spec, with file:line:col for every mistake
      netspec run specs/xor_wide.yaml          # train it; writes runs/xor_wide/<run-id>/
      tensorboard --logdir runs                # look at the run
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(specs, overrides):
    """Check spec files without training: prints one line per valid file, every mistake otherwise.

    Exit status 0 when all are valid, 1 when any is not.

    \b
    Example:
      netspec validate specs/*.yaml
      netspec validate specs/xor_wide.yaml --set train.steps=100
    """
    from netspec.errors import SpecError

    failed = False
    for path in specs:
        try:
            spec = _load_and_check(path, overrides)
        except SpecError as e:
            failed = True
            n = len(e.problems)
            click.echo(f"{path}: {n} problem{'s' if n != 1 else ''}", err=True)
            for p in e.problems:
                click.echo(f"  {p}", err=True)
            continue
        except NetspecError as e:
            failed = True
            click.echo(f"{path}: {e}", err=True)
            continue
        shape = lambda s: "x".join(map(str, s))
        click.echo(f"{path}: ok ({spec.name}: {len(spec.layers)} layers, {shape(spec.input_shape)} -> {shape(spec.output_shape)}, "
                   f"{spec.loss['type']}, {spec.optimizer['type']}, {spec.steps} steps)")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--logdir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Root directory of runs.")
@click.option("--run-name", default=None, help="Name of the run directory (default: the start time). Never overwrites: a suffix is added if taken.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Where to look first for mnist / fashion_mnist files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no report.")
def run(spec, overrides, logdir, run_name, data_dir, quiet):
    """Train a spec and write its run directory <logdir>/<name>/<run-id>/.

    The run directory holds the resolved spec (spec.yaml), TensorBoard events (train/) and
    result.json with the final metrics.

    \b
    Example:
      netspec run specs/xor_wide.yaml
      netspec run specs/xor_nn.yaml --set optimizer.learning_rate=0.5 --run-name lr0.5
      tensorboard --logdir runs
    """
    try:
        checked = _load_and_check(spec, overrides)
        from netspec.train import run as train_run

        train_run(checked, logdir=logdir, run_name=run_name, quiet=quiet, data_dir=data_dir, echo=click.echo)
    except NetspecError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except OSError as e:  # a full disk, a read-only or vanished run directory
        where = f" ({e.filename})" if e.filename else ""
        _fail(NetspecError(f"Cannot write the run{where}: {e.strerror or e}. Free some space or choose another --logdir; earlier runs are untouched."))


@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["test", "validation", "train"]), default=None, help="Default: the spec's eval.split (test when the data has one).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Where to look first for mnist / fashion_mnist files.")
def evaluate(run_dir, split, data_dir):
    """Evaluate a finished run's final parameters on a split and print the metrics.

    \b
    Example:
      netspec eval runs/fashion_mlp/20261127-101500 --split test
    """
    try:
        from netspec.train import evaluate_run

        values = evaluate_run(run_dir, split=split, data_dir=data_dir)
    except NetspecError as e:
        _fail(e)
    click.echo("  ".join(f"{k} {v:.6g}" for k, v in values.items()))


@main.command()
def schema():
    """Print the spec's JSON Schema (Draft 2020-12), for editors and tools.

    \b
    Example (VS Code / yaml-language-server):
      netspec schema > netspec.schema.json
      # then, at the top of a spec:  # yaml-language-server: $schema=netspec.schema.json
    """
    from netspec.schema import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


if __name__ == "__main__":
    main()
