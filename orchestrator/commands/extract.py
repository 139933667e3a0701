"""``mer-orch extract DATASET --root DIR``: build the dlib landmark cache once, with a progress bar."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from mer_model.data.dataset import REAL_DATASETS
from mer_model.errors import InputError
from orchestrator.store.contract import cache_dir as home_cache_dir


@contextlib.contextmanager
def progress_bar():
    """Yields ``start(total) -> advance()`` for ``load_or_extract``; the bar shows once extraction starts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as progress:

        def start(total: int):
            task = progress.add_task("dlib landmarks", total=total)
            return lambda: progress.advance(task)

        yield start


@click.command(name="extract")
@click.argument("dataset", type=click.Choice(list(REAL_DATASETS)))
@click.option("--root", type=click.Path(path_type=Path), required=True,
              help="Dataset folder: coding spreadsheet + subject frame folders, as released.")
@click.option("--spreadsheet", type=click.Path(path_type=Path), default=None,
              help="Coding spreadsheet (.xlsx / .csv) if not in --root under its released name.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Landmark cache folder (real datasets) [default: <home>/cache].")
@click.option("--crop-scales", default="1.3,1.6,2.0", show_default=True,
              help="Crop sizes (x face box) for the augmentation views; '' for none.")
@click.option("--upsample", type=int, default=0, show_default=True,
              help="dlib detector upsampling (1 finds faces down to ~40 px, ~4x slower).")
def command(dataset: str, root: Path, spreadsheet: Path | None, cache_dir: Path | None, crop_scales: str,
            upsample: int) -> None:
    """Extract onset/apex/offset landmarks of DATASET with dlib and store them in the cache."""
    from mer_model.data.cache import load_or_extract

    try:
        scales = tuple(float(s) for s in crop_scales.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--crop-scales: {crop_scales!r}; expected comma-separated numbers") from None
    if spreadsheet is None and root.is_dir():  # said here, naming the option as typed (the library can't)
        from mer_model.data.cache import find_spreadsheet

        try:
            find_spreadsheet(dataset, root)
        except InputError as e:
            raise InputError(f"{e}: --spreadsheet PATH") from None
    with progress_bar() as start:
        raw = load_or_extract(dataset, root, cache_dir=cache_dir or home_cache_dir(), spreadsheet=spreadsheet,
                              crop_scales=scales, upsample=upsample, progress=start)
    state = "reused" if raw.meta.get("cache_hit") else "built"
    click.echo(f"{state} {raw.meta['cache_file']}: {len(raw.clips)} clips, {len(set(raw.subjects))} subjects")
    for note in raw.meta.get("repairs", []):
        click.echo(f"repaired {note}", err=True)
