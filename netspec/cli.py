"""The `netspec` command: validate, run, resume, eval, predict, export, lr-find, schema.

Each command is a thin function whose docstring is its help, under one error policy
(`_one_error_policy`): a user's mistake (a bad spec, a missing or damaged file) is a
`NetspecError`, printed as one paragraph on stderr with its exit code (1), never a traceback; an
OSError nobody explained is "cannot read or write <file>"; Ctrl-C is exit 130; anything else is
the "bug in netspec" paragraph. `run` and `resume` handle SIGINT and SIGTERM themselves, from
their first line (`_train`): a `Stopped` paragraph saying what was kept, exit 130 / 143. A bad
command line is click's own UsageError (exit 2).
`validate`, `summary` and `schema` never import jax.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from pathlib import Path

import click

from netspec.errors import NetspecError, quoted

STARTED = time.perf_counter()  # the process's start, near enough: result.json's first_step_seconds counts from it

SET_HELP = "Override a spec value: dotted.key=value (YAML value), e.g. --set optimizer.learning_rate=0.01. Repeatable."


def _run_name(value):
    """--run-name is one directory inside <logdir>/<name>/: '../x' or 'a/b' would leave it."""
    if value is not None and (value in (".", "..") or "/" in value or "\\" in value or "\0" in value):
        raise click.BadParameter(
            f"{value!r}: a run name is one directory name (no '/', not '.' or '..')", param_hint="'--run-name'"
        )
    return value


def _run_dir(value):
    """A run or sweep directory given as '.' or '..' (or ending so) is used by its absolute path: every
    message names it so ("kept in ." reads as "kept in .."), and a sweep's members are found from it."""
    if value is not None and Path(value).name in ("", ".", ".."):
        return str(Path(value).resolve())
    return value


def _output_file(value):
    """--output names the file to write: 'out/' (a directory, as a shell completes one) would be
    written as a file named 'out'."""
    if value is not None and value.endswith(("/", "\\")):
        raise click.BadParameter(
            f"{value!r} ends in '/', a directory; --output is the file to write: give its name in it ({value}NAME)",
            param_hint="'--output'",
        )
    return value


def _fail(error: NetspecError) -> None:
    from netspec.training.interrupts import workers_left

    click.echo(str(error), err=True)
    if workers_left():  # a compilation a signal left running: a normal exit would abort inside XLA
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(error.exit_code)
    sys.exit(error.exit_code)


def _bug(error: Exception) -> None:
    """An exception no user input should cause: one paragraph, not a traceback (NETSPEC_DEBUG=1 shows it)."""
    import os

    if os.environ.get("NETSPEC_DEBUG"):
        raise error
    _fail(
        NetspecError(
            f"netspec failed unexpectedly ({type(error).__name__}: {error}). This is a bug in netspec, "
            "not in your spec; run again with NETSPEC_DEBUG=1 to see the traceback, and report it."
        )
    )


def _one_error_policy(command):
    """Wrap a command so that it ends in one paragraph and an exit status, never a traceback:
    NetspecError -> its message, its exit code; KeyboardInterrupt -> 130; OSError -> "cannot
    read or write <file>" (1); any other exception -> `_bug` (1). click's own exceptions (usage
    errors, --help) pass through to click."""

    @functools.wraps(command)
    def guarded(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except NetspecError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except OSError as e:  # one that no code path turned into a NetspecError: at least name the file
            what = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "") if e.filename else "a file"
            _fail(
                NetspecError(
                    f"Cannot read or write {what}: {e.strerror or e}. Check that it exists, that you may read or "
                    "write it, and that the disk has space."
                )
            )
        except MemoryError:
            _fail(NetspecError(_OUT_OF_MEMORY.format(what="the host's memory")))
        except Exception as e:
            if "RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e):  # XLA's own out-of-memory (XlaRuntimeError)
                _fail(
                    NetspecError(
                        _OUT_OF_MEMORY.format(what="the device's memory") + f" (XLA: {str(e).splitlines()[0][:200]})"
                    )
                )
            _bug(e)

    return guarded


_OUT_OF_MEMORY = (
    "The run ran out of {what}: validate's estimate (netspec.spec.cost: parameters, optimizer state, one batch's "
    "activations, the data on the device) is a lower bound, and XLA's working memory comes on top. Lower "
    "train.batch_size or eval.batch_size, make the model smaller, stream the data (data.max_resident_mb), or "
    "set NETSPEC_MEMORY_BUDGET to what this machine can really give so validate refuses such a spec. A "
    "checkpoint already written is kept: netspec resume continues from it."
)


def _load_and_check(path: str, overrides):
    """The checked Spec of a plain spec, the checked Sweep (every member's Spec) of a sweep spec."""
    from netspec.spec.sweep import load_checked

    return load_checked(path, overrides)


def _dims(shape) -> str:
    """(28, 28, 1) -> 28x28x1"""
    return "x".join(map(str, shape))


class _Netspec(click.Group):
    """The `netspec` group. Its console script calls it with no arguments (it reads sys.argv), in
    a process of its own: once the command's watched work is over, and while the process exits
    (jax's exit hooks tear its runtime down, a second or more with a large device state), SIGINT
    and SIGTERM are ignored (`interrupts.calm_after`, `interrupts.ignore_signals`). A signal there
    came out as a traceback, "Interrupted." after a finished run, "Exception ignored in atexit
    callback ... KeyboardInterrupt", or killed the process. A caller that passes the arguments
    (click's test runner, a program running netspec in its own process) keeps its handlers."""

    def __call__(self, *args, **kwargs):
        if args or "args" in kwargs:
            return super().__call__(*args, **kwargs)
        from netspec.training import interrupts

        interrupts.calm_after()
        try:
            return super().__call__(*args, **kwargs)
        finally:  # the process only exits now
            interrupts.ignore_signals()


@click.group(cls=_Netspec, context_settings={"help_option_names": ["-h", "--help"]})
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
@_one_error_policy
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
        if not hasattr(spec, "layers"):  # a sweep: every member was checked
            click.echo(f"{path}: ok ({len(spec.members)} members)")
            continue
        click.echo(
            f"{path}: ok ({spec.name}: {len(spec.layers)} layer{'s' if len(spec.layers) != 1 else ''}, {_dims(spec.input_shape)} -> {_dims(spec.output_shape)}, "
            f"{spec.loss['type']}, {spec.optimizer['type']}, {spec.steps} steps)"
        )
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "json"]),
    default="table",
    show_default=True,
    help="An aligned text table, a Markdown table, or JSON (exact counts, every field).",
)
@_one_error_policy
def summary(spec, overrides, fmt):
    """What a model costs, without training it: per layer its output shape, parameters,
    multiply-accumulates (MACs), forward FLOPs and activation bytes per example; then the
    parameters and their bytes, the optimizer's state, training FLOPs per step (3 x forward x
    batch) and steps per epoch.

    FLOPs are counted as XLA's cost analysis counts them (2 per MAC, 1 per elementwise
    operation; exp, log and tanh apart). A spec with a sweep gets one table per group of members
    whose tables agree, naming them. A spec that does not validate: validate's messages, exit 1.
    Never imports jax.

    \b
    Example:
      netspec summary specs/fashion_cnn.yaml
      netspec summary specs/xor_wide.yaml --set model.layers[0].units=32 --format markdown
    """
    from netspec.errors import SpecError
    from netspec.spec.summary import render, summarize, summarize_sweep
    from netspec.spec.sweep import Sweep

    try:
        checked = _load_and_check(spec, overrides)
    except SpecError as e:
        n = len(e.problems)
        click.echo(f"{spec}: {n} problem{'s' if n != 1 else ''}", err=True)
        for p in e.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    except NetspecError as e:
        click.echo(f"{spec}: {e}", err=True)
        sys.exit(1)
    click.echo(render(summarize_sweep(checked) if isinstance(checked, Sweep) else [summarize(checked)], fmt))


def _training_options(command):
    """The options `run` and `resume` share: where data is, how many devices and processes, how quiet."""
    options = [
        click.option(
            "--data-dir",
            default=None,
            type=click.Path(file_okay=False),
            help="Where to look first for mnist / fashion_mnist files.",
        ),
        click.option(
            "--devices",
            type=click.IntRange(min=1),
            default=None,
            help="How many devices to train on (default: the spec's distribute.devices, else all; a checkpoint restores on any count).",
        ),
        click.option(
            "--coordinator",
            envvar="NETSPEC_COORDINATOR",
            default=None,
            metavar="HOST:PORT",
            help="Join a multi-process run (jax.distributed): process 0's address. Env: NETSPEC_COORDINATOR.",
        ),
        click.option(
            "--num-processes",
            envvar="NETSPEC_NUM_PROCESSES",
            type=click.IntRange(min=1),
            default=None,
            help="Processes in the multi-process run. Env: NETSPEC_NUM_PROCESSES.",
        ),
        click.option(
            "--process-id",
            envvar="NETSPEC_PROCESS_ID",
            type=click.IntRange(min=0),
            default=None,
            help="This process's rank, 0 writes the run. Env: NETSPEC_PROCESS_ID.",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar and no report."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option(
    "--logdir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Root directory of runs."
)
@click.option(
    "--run-name",
    default=None,
    callback=lambda ctx, param, value: _run_name(value),
    help="Name of the run directory (default: the start time). Never overwrites: a suffix is added if taken.",
)
@click.option(
    "--resume",
    "resume_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    callback=lambda ctx, param, value: _run_dir(value),
    help="Continue the run in this directory from its latest checkpoint (then SPEC is not given).",
)
@_training_options
@_one_error_policy
def run(spec, overrides, logdir, run_name, resume_dir, **training):
    """Train a spec and write its run directory <logdir>/<name>/<run-id>/.

    The run directory holds the resolved spec (spec.yaml), TensorBoard events (training's at its
    top, each evaluated split's in test/ or validation/), checkpoints/ and result.json with the
    final metrics. Ctrl-C (or SIGTERM) finishes the
    current chunk, saves a checkpoint and says how to resume. A spec with a sweep trains each
    member as its own run in <logdir>/<name>/<run-id>/<member>/ and ranks them at the end.

    \b
    Example:
      netspec run specs/xor_wide.yaml
      netspec run specs/xor_nn.yaml --set optimizer.learning_rate=0.5 --run-name lr0.5
      netspec run --resume runs/fashion_cnn/20261127-101500
      tensorboard --logdir runs
    """
    if (spec is None) == (resume_dir is None):
        raise click.UsageError("give a SPEC to start a run, or --resume RUN_DIR to continue one (not both)")
    _train(spec, resume_dir, overrides, logdir=logdir, run_name=run_name, **training)


@main.command()
@click.argument(
    "run_dir", type=click.Path(file_okay=False, exists=True), callback=lambda ctx, param, value: _run_dir(value)
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help=SET_HELP + " E.g. --set train.steps=20000 to train longer.",
)
@click.option(
    "--allow-setting-changes",
    is_flag=True,
    help="Let this resume change training settings (learning rate and schedule, optimizer arguments, clipping, "
    "early stopping, evaluation, checkpoint and summary settings, metrics), recorded in changes.json with the step. "
    "The model, data, loss, seed, batch, optimizer type and precision can never change.",
)
@_training_options
@_one_error_policy
def resume(run_dir, overrides, allow_setting_changes, **training):
    """Continue a stopped run (or sweep) in its own directory, from its latest checkpoint that loads.

    Summaries continue at the right steps; a run stopped and resumed ends exactly as if it
    had never stopped. A resume continues the same run: changes to spec.yaml or by --set that
    alter what the parameters mean or which data they learn from are refused, with the
    differences listed; the run's length (train.steps, train.epochs) may change; training
    settings only with --allow-setting-changes. A sweep directory resumes each member that has
    not finished, and starts those that had not started.

    \b
    Example:
      netspec resume runs/fashion_cnn/20261127-101500
      netspec resume runs/fashion_cnn/20261127-101500 --set train.epochs=12
      netspec resume runs/fashion_cnn/20261127-101500 --set optimizer.learning_rate=0.0001 --allow-setting-changes
    """
    _train(
        None, run_dir, overrides, logdir=None, run_name=None, allow_setting_changes=allow_setting_changes, **training
    )


def _train(spec_path, resume_dir, overrides, **options):
    """`run` and `resume`. SIGINT and SIGTERM are handled from the start (`netspec.interrupts`):
    each ends in one paragraph and exit 130 / 143, whenever it comes; before training takes over
    (loading jax, checking the spec) it stops at once, nothing written."""
    from netspec.training.interrupts import Interrupted, Interrupts, Stopped, describe

    with Interrupts():
        try:
            _start(spec_path, resume_dir, overrides, **options)
        except Interrupted as e:
            if resume_dir is None:
                then = "No run directory was created. Run the same netspec run command to start again."
            else:
                then = f"Nothing in {resume_dir} was changed. Continue it with: netspec resume {quoted(resume_dir)}"
            raise Stopped(
                f"{describe(e.signum, e.count)}: stopped before the {'run' if resume_dir is None else 'resume'} started. {then}",
                e.signum,
            ) from None


def _start(
    spec_path,
    resume_dir,
    overrides,
    *,
    logdir,
    run_name,
    data_dir,
    quiet,
    devices,
    coordinator,
    num_processes,
    process_id,
    allow_setting_changes=False,
):
    try:
        if coordinator is not None:
            from netspec.distribute import initialize

            initialize(coordinator, num_processes, process_id)
        from netspec.spec.sweep import Sweep
        from netspec.training.loop import run as train_run
        from netspec.training.rundir import SWEEP_FILE, load_run_spec
        from netspec.training.sweep import resume_sweep, run_sweep

        options = dict(quiet=quiet, data_dir=data_dir, echo=click.echo, devices=devices, started=STARTED)
        if resume_dir is not None and (Path(resume_dir) / SWEEP_FILE).is_file():  # a sweep directory
            resume_sweep(resume_dir, overrides, allow_setting_changes=allow_setting_changes, **options)
            return
        checked = _load_and_check(spec_path, overrides) if resume_dir is None else load_run_spec(resume_dir, overrides)
        if isinstance(checked, Sweep):  # its members, one after another
            run_sweep(checked, logdir=logdir, run_name=run_name, **options)
            return
        train_run(
            checked,
            logdir=logdir,
            run_name=run_name,
            quiet=quiet,
            data_dir=data_dir,
            echo=click.echo,
            resume=resume_dir,
            devices=devices,
            allow_setting_changes=allow_setting_changes,
            started=STARTED,
        )
    except OSError as e:  # a full disk, a read-only or vanished run directory
        where = (
            f" ({e.filename})" if e.filename else f" in {resume_dir or logdir}"
        )  # a writer thread's error may name no file
        raise NetspecError(
            f"Cannot write the run{where}: {e.strerror or e}. Free some space or choose another --logdir; earlier runs are untouched."
        ) from None


@main.command("lr-find")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--min-lr", type=float, default=1e-6, show_default=True, help="The smallest learning rate tried.")
@click.option("--max-lr", type=float, default=1.0, show_default=True, help="The largest learning rate tried.")
@click.option(
    "--members", type=int, default=16, show_default=True, help="How many rates, log-spaced from --min-lr to --max-lr."
)
@click.option(
    "--steps",
    type=int,
    default=None,
    help="Steps each rate trains (default: 300, or the spec's own steps when fewer).",
)
@click.option(
    "--logdir", default="runs", show_default=True, type=click.Path(file_okay=False), help="Root directory of runs."
)
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to look first for mnist / fashion_mnist files.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the suggestion and where the test is.")
@_one_error_policy
def lr_find(spec, overrides, min_lr, max_lr, members, steps, logdir, data_dir, quiet):
    """A learning-rate range test: train N constant rates together, plot the loss, suggest a rate.

    The rates are log-spaced from --min-lr to --max-lr; a schedule in the spec is replaced by each
    constant rate. They train together, one vmapped program, as the members of a sweep of the
    spec over optimizer.learning_rate, into <logdir>/<name>/lr-find-<time>/ with lr_find.png (the
    loss of each rate: the mean over the last fifth of its steps; a rate whose loss went NaN or
    Inf is drawn as diverged), the same image in TensorBoard and lr_find.json. The suggestion is
    fastai's minimum rule: the rate of the lowest loss divided by 10. A spec with a sweep is
    refused: --set sweep=null tests its plain spec.

    \b
    Example:
      netspec lr-find specs/fashion_mlp.yaml
      netspec lr-find specs/xor_nn.yaml --min-lr 1e-4 --max-lr 10 --members 24 --steps 500
      tensorboard --logdir runs/fashion_mlp/lr-find-20261130-101500
    """
    from netspec.training.interrupts import Interrupted, Interrupts, Stopped, describe
    from netspec.training.lr_find import lr_find as find
    from netspec.training.lr_find import validate_options

    validate_options(min_lr, max_lr, members, steps)  # before jax loads: a mistyped option answers at once
    with Interrupts():
        try:
            result = find(
                spec,
                overrides,
                min_lr=min_lr,
                max_lr=max_lr,
                members=members,
                steps=steps,
                logdir=logdir,
                data_dir=data_dir,
                quiet=quiet,
                echo=click.echo,
                started=STARTED,
            )
        except Interrupted as e:  # before the test's directory existed (the sweep's own stops say more)
            raise Stopped(
                f"{describe(e.signum, e.count)}: stopped before the learning-rate test started. Nothing was written; "
                "run the same netspec lr-find command to start again.",
                e.signum,
            ) from None
    if not quiet:
        click.echo(f"Each rate's loss after {result.steps} steps (the mean over the last fifth of them):")
        click.echo(f"  {'learning rate':>13}  {'loss':>12}")
        for rate, loss in zip(result.rates, result.losses, strict=True):
            shown = f"{loss:.6g}" if loss != float("inf") else "diverged"
            mark = "  <- lowest" if rate == result.minimum else ""
            click.echo(f"  {rate:>13.3g}  {shown:>12}{mark}")
    click.echo(f"Suggested learning rate: {result.suggestion:g} ({result.reason}).")
    click.echo(
        f"The curve is {result.image}; tensorboard --logdir {quoted(result.directory)} shows it beside every rate's run."
    )


MEMBER_HELP = (
    "Which member of a sweep directory to use: best (rank 1 of its result.json, chosen on the validation "
    "or training figure, never the test split's; the default for a sweep), K (the K-th member in sweep.json's "
    "order, counting from 1: a grid's order, its last key varying fastest; not the rank), NAME (a member's "
    "directory name), or ensemble (every finished member, their predicted probabilities averaged). Only for a "
    "sweep directory."
)


def _member_option(command):
    return click.option("--member", default=None, metavar="best|K|NAME|ensemble", help=MEMBER_HELP)(command)


def _chosen_run(command: str, run_dir: str, member: str | None, notice):
    """The run directory `eval` or `predict` uses: `run_dir` itself, or the member of the sweep in
    it that `member` names (said in one line to `notice`), or None for `--member ensemble`."""
    from netspec.inference import ENSEMBLE, is_sweep, sweep_member

    if not is_sweep(run_dir):
        if member is None:
            return run_dir
        own = (Path(run_dir) / "spec.yaml").is_file()
        parent, name = Path(run_dir).parent, Path(run_dir).name  # `_run_dir`: never '.' or '..'
        hint = ""
        if own and is_sweep(parent):
            hint = f" It is the member {name} of the sweep {parent}: netspec {command} {quoted(parent)} --member {name} is the same run."
        raise NetspecError(
            f"--member chooses a member of a sweep directory (one holding sweep.json, as netspec run of a spec "
            f"with a sweep writes it), and {run_dir} is {'a run directory of its own' if own else 'not a sweep directory'}. "
            f"Drop --member to use {run_dir} as it is.{hint}"
        )
    if member is not None and member.strip().lower() == ENSEMBLE:
        return None
    chosen = sweep_member(run_dir, "best" if member is None else member)
    ranked = f"rank {chosen.rank} of {chosen.total} by {chosen.ranked_by}" if chosen.rank is not None else "unranked"
    if member is None:
        notice(
            f"{run_dir} is a sweep: using its best member, {chosen.name} ({ranked}); --member K, NAME or "
            f"{ENSEMBLE} chooses another."
        )
    else:
        notice(
            f"Using member {chosen.name} of the sweep {run_dir}: {chosen.position} of {chosen.total} in sweep.json's order, {ranked}."
        )
    return chosen.run_dir


@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False), callback=lambda ctx, param, value: _run_dir(value))
@click.option(
    "--split",
    type=click.Choice(["test", "validation", "train"]),
    default=None,
    help="Default: test when the data has one, else the spec's eval.split, else validation, else train.",
)
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to look first for mnist / fashion_mnist files.",
)
@_member_option
@_one_error_policy
def evaluate(run_dir, split, data_dir, member):
    """Evaluate a finished run (its best checkpoint, else its latest) on a split and print the metrics.

    RUN_DIR may be a sweep directory: --member chooses its best member (the default), the K-th
    (from 1) or one by name, printed as for a run. --member ensemble averages every finished
    member's predicted probabilities (outputs, for regression) and prints the ensemble's
    figures on them (loss: the members' loss of the average, its cross-entropy or regression
    loss; accuracy: the class of the average), the mean of the members' own figures, then
    each member's.

    \b
    Example:
      netspec eval runs/fashion_mlp/20261127-101500 --split test
      netspec eval runs/xor_nn/20261130-101500 --member ensemble
    """
    from netspec.inference import evaluate_ensemble, evaluate_run

    def notice(text):
        click.echo(text, err=True)

    chosen = _chosen_run("eval", run_dir, member, notice)
    if chosen is not None:
        values = evaluate_run(chosen, split=split, data_dir=data_dir, notice=notice)
        click.echo("  ".join(f"{k} {v:.6g}" for k, v in values.items()))
        return
    result = evaluate_ensemble(run_dir, split=split, data_dir=data_dir, notice=notice)
    notice(
        f"Evaluated an ensemble of {len(result.members)} members of the sweep {run_dir} on the {result.split} "
        "split: the figures of their averaged probabilities (outputs, for regression), then the mean of the members' "
        "own figures, then each member's."
    )
    rows = [(f"ensemble of {len(result.members)}", result.ensemble), ("mean of members", result.mean)]
    rows += list(result.members.items())
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        click.echo(f"{label:<{width}}  " + "  ".join(f"{k} {v:.6g}" for k, v in values.items()))


@main.command()
@click.argument(
    "run_dir", type=click.Path(file_okay=False, exists=True), callback=lambda ctx, param, value: _run_dir(value)
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Examples: .npy, .npz, .csv, or an image file for image models.",
)
@click.option(
    "--output",
    "output_path",
    default=None,
    type=click.Path(dir_okay=False),
    callback=lambda ctx, param, value: _output_file(value),
    help="Write .csv or .npy (default: CSV on stdout); its folder is made if missing.",
)
@_member_option
@_one_error_policy
def predict(run_dir, input_path, output_path, member):
    """Predict with a finished run's parameters (its best checkpoint if it kept one).

    Inputs are scaled as the training data was. CSV output: the predicted class (its name when
    the data set names classes) and the model's output for each example. RUN_DIR may be a sweep
    directory: --member chooses its best member (the default), the K-th (from 1) or one by
    name; --member ensemble averages every finished member's probabilities (outputs, for
    regression) and predicts the class of the average.

    \b
    Example:
      netspec predict runs/fashion_cnn/20261127-101500 --input shoe.png
      netspec predict runs/xor_wide/20261127-101500 --input points.csv --output predictions.csv
      netspec predict runs/xor_nn/20261130-101500 --member ensemble --input points.csv
    """
    import numpy as np

    from netspec.inference import predict_ensemble, predict_run

    def notice(text):
        click.echo(text, err=True)

    chosen = _chosen_run("predict", run_dir, member, notice)
    if chosen is not None:
        outputs, classes, names = predict_run(chosen, input_path, notice=notice)
    else:
        outputs, classes, names = predict_ensemble(run_dir, input_path, notice=notice)
        notice(
            f"Predicted with an ensemble of the finished members of the sweep {run_dir}: the mean of their "
            "probabilities (outputs, for regression)" + ("" if classes is None else " and the class of that mean") + "."
        )
    flat = outputs.reshape(len(outputs), -1)
    try:
        if output_path:  # its folder, as export makes its output's (a file in its place: the write says so)
            with contextlib.suppress(FileExistsError):
                Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        if output_path and output_path.endswith(".npy"):
            np.save(output_path, outputs)
            return
        header = ([] if classes is None else ["prediction"]) + [f"output_{i}" for i in range(flat.shape[1])]
        lines = [",".join(header)]
        for i, row in enumerate(flat):
            cells = (
                []
                if classes is None
                else [names[classes[i]] if names and classes[i] < len(names) else str(int(classes[i]))]
            )
            lines.append(",".join(cells + [f"{v:.6g}" for v in row]))
        text = "\n".join(lines) + "\n"
        if output_path:
            with open(output_path, "w") as f:
                f.write(text)
        else:
            click.echo(text, nl=False)
    except OSError as e:
        raise NetspecError(f"Cannot write {e.filename or output_path}: {e.strerror or e}.") from None


@main.command("export")
@click.argument(
    "run_dir", type=click.Path(file_okay=False, exists=True), callback=lambda ctx, param, value: _run_dir(value)
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["stablehlo", "onnx"]),
    default="stablehlo",
    show_default=True,
    help="stablehlo: jax.export's serialized StableHLO, loaded by jax alone; onnx: through jax2onnx, for "
    "onnxruntime and other ONNX runtimes (needs pip install 'netspec[onnx]').",
)
@click.option(
    "--output",
    "output_path",
    default=None,
    type=click.Path(dir_okay=False),
    callback=lambda ctx, param, value: _output_file(value),
    help="Where to write the model (default: RUN_DIR/export/model.stablehlo or model.onnx); its manifest is "
    "written beside it, PATH.json.",
)
@_member_option
@_one_error_policy
def export_(run_dir, format_, output_path, member):
    """Export a finished run's model for serving without netspec: StableHLO or ONNX.

    The model as predict meets it: raw inputs (float32 [batch, *model.input], as predict reads
    them) -> the training scaling -> the model in evaluation mode -> probabilities (values, for
    regression), with a symbolic batch axis, from the best checkpoint (else the latest). Beside
    it, PATH.json: input and output shapes and dtypes, class names, the scaling, the versions,
    the date. RUN_DIR may be a sweep directory: --member as for predict (ensemble: the mean of
    every finished member's probabilities, as one model).

    \b
    Example:
      netspec export runs/fashion_cnn/20261127-101500
      netspec export runs/fashion_cnn/20261127-101500 --format onnx --output fashion_cnn.onnx
      netspec export runs/xor_nn/20261130-101500 --member ensemble
    """
    from netspec.export import export_ensemble, export_run, require_format

    def notice(text):
        click.echo(text, err=True)

    require_format(format_)  # before jax loads: a missing extra answers at once
    chosen = _chosen_run("export", run_dir, member, notice)
    if chosen is not None:
        done = export_run(chosen, format=format_, output=output_path, notice=notice)
    else:
        done = export_ensemble(run_dir, format=format_, output=output_path, notice=notice)
    size = done.size / 2**20
    click.echo(
        f"Wrote {done.path} ({size:.2f} MiB, {format_}, input {done.manifest['input']['shape']}, output "
        f"{done.manifest['output']['shape']} {done.manifest['output']['is']}) and its manifest {done.manifest_path} "
        f"in {done.seconds:.1f} s."
    )


@main.command()
@_one_error_policy
def schema():
    """Print the spec's JSON Schema (Draft 2020-12), for editors and tools.

    \b
    Example (VS Code / yaml-language-server):
      netspec schema > netspec.schema.json
      # then, at the top of a spec:  # yaml-language-server: $schema=netspec.schema.json
    """
    from netspec.spec.schema import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


if __name__ == "__main__":
    main()
