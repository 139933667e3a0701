"""``mer-orch`` entry point: a thin click group; each sub-command lives in ``orchestrator/commands/``.

Every :class:`~mer_model.errors.InputError` a sub-command raises is printed here, once, as one line on
stderr with exit code 2 (docs/architecture.md, "Errors and exit codes").

Sub-commands are imported lazily so ``mer-orch --help`` and config errors stay fast (no torch/ray import).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path

import click

from mer_model.errors import InputError

# MLflow's own INFO lines ("Creating initial MLflow database tables...") are not the user's business; set
# before any sub-command imports mlflow, and inherited by the local Ray workers. A user's setting wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per fold read on resume

# name -> module under orchestrator.commands exposing ``command`` (a click.Command or click.Group)
_COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("sweep", "Run every LOSO fold x configuration of a search-space file on Ray."),
    "data": ("data", "Inspect datasets (SynthME presets, CASME II, SAMM)."),
    "extract": ("extract", "Build the dlib landmark cache for a real dataset."),
    "report": ("report", "Paper-style tables, figures and significance tests from an MLflow experiment."),
    "services": ("services", "Start / check the tracking server and study storage."),
    "predict": ("predict", "Predict classes of landmark clips with a fold model a sweep logged."),
    "ls": ("ls", "List the sweeps of the tracking store: status, units done / total, best objective."),
    "status": ("status", "One sweep's configs and their units (no Ray)."),
}


class LazyGroup(click.Group):
    """Sub-commands imported on first use; the one place bad input becomes one stderr line and exit 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InputError as err:  # raised anywhere below a sub-command: message already names file/field
            click.echo(str(err), err=True)
            ctx.exit(2)
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module = importlib.import_module(f"orchestrator.commands.{_COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="mer-orch")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where every command keeps and finds its local state: mlflow.db, artifacts/, optuna.db, "
                   "cache/, reports/ [default: $MER_HOME, else ./mer-runs]. Options naming one store "
                   "(--tracking-uri, --storage, --cache-dir) still win.")
def main(home: Path | None) -> None:
    """mer-orch: run, compare and trust GTS-GN micro-expression recognition ablations."""
    if home is not None:
        _set_home(home)


def _set_home(home: Path) -> None:
    """``$MER_HOME`` for this command only (absolute, so any working directory resolves the same stores);
    restored when the command ends (an in-process caller, e.g. a test, keeps its own environment)."""
    from orchestrator.store.contract import ENV_HOME

    old = os.environ.get(ENV_HOME)
    os.environ[ENV_HOME] = str(home.expanduser().resolve())

    def restore() -> None:
        if old is None:
            os.environ.pop(ENV_HOME, None)
        else:
            os.environ[ENV_HOME] = old

    click.get_current_context().call_on_close(restore)


def run() -> None:
    """The console entry (``mer-orch``, ``python -m orchestrator.cli``): :func:`main`, then an exit that
    skips the interpreter's teardown of every module torch, Ray and MLflow loaded (1-2 s of a short
    command's wall time, measured in ``benchmarks/bench_startup.py``). What a normal exit does first still
    happens, in the same order: threads that are not daemons are joined, ``atexit`` handlers run (logging,
    MLflow, Ray), stdout and stderr are flushed (``tests/test_cli_exit.py``). In-process callers (tests,
    ``CliRunner``) call ``main``."""
    try:
        main()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if not isinstance(code, int):  # SystemExit("message") prints the message and exits 1, as Python does
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    # the interpreter's own first steps: executors' exit hooks, then every non-daemon thread joined (a
    # plain join of an idle ThreadPoolExecutor worker would wait forever), then atexit
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (``| head``) loses nothing more
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
