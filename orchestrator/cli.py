"""``mer-orch`` entry point: a thin click group; each sub-command lives in ``orchestrator/commands/``.

Every :class:`~mer_model.errors.InputError` a sub-command raises is printed here, once, as one line on
stderr with exit code 2 (docs/architecture.md, "Errors and exit codes").

Sub-commands are imported lazily so ``mer-orch --help`` and config errors stay fast (no torch/ray import).
"""

from __future__ import annotations

import importlib

import click

from mer_model.errors import InputError

# name -> module under orchestrator.commands exposing ``command`` (a click.Command or click.Group)
_COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": ("sweep", "Run every LOSO fold x configuration of a search-space file on Ray."),
    "data": ("data", "Inspect datasets (SynthME presets, CASME II, SAMM)."),
    "extract": ("extract", "Build the dlib landmark cache for a real dataset."),
    "report": ("report", "Paper-style tables, figures and significance tests from an MLflow experiment."),
    "services": ("services", "Start / check the tracking server and study storage."),
    "predict": ("predict", "Predict classes of landmark clips with a fold model a sweep logged."),
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
def main() -> None:
    """mer-orch: run, compare and trust GTS-GN micro-expression recognition ablations."""


if __name__ == "__main__":
    main()
