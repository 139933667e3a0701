"""``mer-orch data show DATASET [--setup S] [--json] [--root DIR]``: subjects, clips, clips per class."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.store.contract import cache_dir as home_cache_dir


def summary(ds) -> dict:
    """JSON-safe description of a LandmarkDataset."""
    import numpy as np

    subjects, per_subject = np.unique(ds.subjects, return_counts=True)
    return {
        "dataset": ds.name,
        "setup": ds.setup,
        "subjects": int(len(subjects)),
        "clips": int(len(ds)),
        "classes": ds.class_counts(),
        "clips_per_subject": {str(s): int(n) for s, n in zip(subjects, per_subject, strict=True)},
        "au_names": list(ds.au_names),
        "au_counts": {a: int(n) for a, n in zip(ds.au_names, ds.aus.sum(0), strict=True)},
        "augment_views": 0 if ds.augment is None else int(ds.augment.shape[1]),
        "meta": {k: v for k, v in ds.meta.items() if isinstance(v, str | int | float | bool | dict | list)},
    }


@click.group(name="data")
def command() -> None:
    """Inspect datasets (SynthME presets, CASME II, SAMM, SMIC, CAS(ME)^3, MMEW)."""


@command.command("show")
@click.argument("dataset", required=False)
@click.option("--setup", default=None,
              help="Class setup: objective | objective5 | self5 | megc3 | emotion4 | emotion7 "
                   "[default: objective, or megc3 where the dataset has no objective classes (SMIC)].")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Dataset folder (real datasets: coding spreadsheet + frame folders).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Landmark cache folder (real datasets) [default: <home>/cache].")
@click.option("--seed", type=int, default=0, show_default=True, help="SynthME seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show(dataset: str | None, setup: str | None, root: Path | None, cache_dir: Path | None, seed: int,
         as_json: bool) -> None:
    """Print subjects, clips and clips per class of DATASET under a class setup; without DATASET, list the
    datasets."""
    if dataset is None:
        _list_datasets(as_json)
        return
    from mer_model.data import load_dataset
    from mer_model.data.dataset import default_setup, is_synthetic
    from orchestrator.commands.extract import progress_bar

    setup = setup or default_setup(dataset)
    with progress_bar() as start:  # only real datasets without a cache entry show a bar
        ds = load_dataset(dataset, setup=setup, root=root, seed=seed, cache_dir=cache_dir or home_cache_dir(),
                          progress=start)
    info = summary(ds)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{ds.name}[/bold]  setup={ds.setup}  subjects={info['subjects']}  "
                  f"clips={info['clips']}")
    if is_synthetic(ds.name):
        console.print("[yellow]synthetic (SynthME): not CASME II or SAMM (or any real) results[/yellow]")
    table = Table("class", "clips", "share")
    for name, n in info["classes"].items():
        table.add_row(name, str(n), f"{n / max(1, info['clips']):.1%}")
    console.print(table)
    console.print("clips per subject: " + ", ".join(f"{s}={n}" for s, n in info["clips_per_subject"].items()))


def _list_datasets(as_json: bool) -> None:
    """The dataset names ``load_dataset`` knows, generated (SynthME) or real (needing ``--root``)."""
    from mer_model.data.dataset import dataset_names, is_synthetic

    rows = [{"name": n, "kind": "SynthME (generated; not real-dataset numbers)" if is_synthetic(n)
             else "real (your licensed copy: --root DIR)"} for n in dataset_names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:20s} {r['kind']}")
    click.echo("mer-orch data show NAME [--setup SETUP] [--root DIR]: subjects, clips, clips per class")
