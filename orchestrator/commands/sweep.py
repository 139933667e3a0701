"""``mer-orch sweep FILE``: run (or resume) every LOSO fold x config of a search-space file on Ray.

Exit codes: 0 every config complete (or pruned by Optuna); 2 bad input (one line on stderr, before Ray
starts); 1 anything else, including a sweep that ran to the end with incomplete / failed configs (their
names are printed; rerunning the same command retries just their failed folds).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import click

from mer_model.errors import InputError


@click.command(name="sweep")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to attach to (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--resume", is_flag=True,
              help="Finish an interrupted sweep. Same as rerunning the command: the sweep id comes from the "
                   "file's contents, done folds are never rerun. Fails if the sweep never started.")
@click.option("--dry-run", is_flag=True, help="Print the configs and the unit count; run nothing.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (over the file's tracking.uri).")
@click.option("--storage", "storage_url", default=None,
              help="Optuna storage URL or journal:<path> (over the file's storage.url).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="At most this many folds at once (default: as many as the resources allow).")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="CPUs of the local Ray (default: all); ignored with --address.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a key of FILE (dotted, e.g. train.epochs=5, 'grid[0].beta=0.2'; the value is "
                   "YAML); validated like the file. Repeatable.")
@click.option("--no-reuse", is_flag=True,
              help="Train every unit this sweep has not done, even when the tracking store already holds "
                   "an identical one (same config, seed, subject and data).")
def command(file: str, address: str | None, resume: bool, dry_run: bool, tracking_uri: str | None,
            storage_url: str | None, max_concurrent: int | None, num_cpus: int | None,
            no_reuse: bool, sets: tuple[str, ...]) -> None:
    """Run every LOSO fold x configuration of search-space FILE (see docs/sweep.md)."""
    from orchestrator.spec import load_spec

    spec = load_spec(file, sets)  # bad input: InputError, one line and exit 2 (orchestrator.cli)
    if dry_run:
        _dry_run(spec, tracking_uri, reuse=not no_reuse)
        if sets:  # what will be hashed and stored as spec.yaml
            _console().print(f"resolved spec ({len(sets)} --set):\n{spec.text}", highlight=False,
                             markup=False)
        return
    if resume:
        _require_started(spec, tracking_uri)
    sys.exit(_run(spec, address, tracking_uri, storage_url, max_concurrent, num_cpus, reuse=not no_reuse))


def _dry_run(spec, tracking_uri: str | None, reuse: bool) -> None:  # noqa: ANN001
    from rich.table import Table

    from mer_model.config import EXTENSION_DEFAULTS, SUMMARY_KEYS
    from orchestrator.spec.plan import check_au_supervision, grid_configs, sweep_folds, sweep_id
    from orchestrator.sweep.inputs import load_data

    ds = load_data(spec)
    folds = sweep_folds(spec, ds)  # LOSO subjects, the composite's prefixed subjects, or dataset pairs
    subjects = folds.ids
    dh = ds.content_hash()
    plans = grid_configs(spec, dh)
    check_au_supervision(spec, plans, folds, ds.au_mask)  # refused here as in the sweep, before Ray
    t = Table(title=f"sweep {sweep_id(spec, dh)} · experiment {spec.experiment!r} · {ds.name} ({ds.setup})")
    keys = [k for k in SUMMARY_KEYS if k != "epochs"  # epochs: the same for every arm, printed below
            # a non-paper option gets a column only when some arm turns it on
            and (k not in EXTENSION_DEFAULTS or any(p.config[k] != EXTENSION_DEFAULTS[k] for p in plans))]
    for col in ("arm", "table", "hash", *keys):
        t.add_column(col)
    for p in plans:
        c = p.config
        cells = {k: f"{c[k]:g}" if isinstance(c[k], float) else str(c[k]) for k in keys}
        if c["model"] != "gts_gn":
            cells["fusion_layer"] = "-"  # one-stream models have no fusion layer
        t.add_row(p.arm, p.table, p.config_hash, *cells.values())
    console = _console()
    console.print(t)
    n_trials = spec.search.n_trials if spec.search else 0
    if spec.search:
        console.print(f"search {spec.search.name!r}: {n_trials} Optuna trials over "
                      f"{', '.join(spec.search.params)} ({spec.search.sampler}, "
                      f"pruner {spec.search.pruner.type})")
    if spec.search and spec.search.selection == "nested":
        n_trials = 0  # its units are counted (and priced) apart
        console.print(_nested_cost(spec, ds, subjects, tracking_uri))
    n_cfg, seeds = len(plans) + n_trials, spec.protocol.seed_list
    per_seed = f"{len(seeds)} seeds ({', '.join(map(str, seeds))}) x " if len(seeds) > 1 else ""
    if n_cfg or not spec.search:  # a nested-only file: its units were counted above
        unit = {"cross_dataset": "dataset pairs", "composite": "composite LOSO folds"}.get(
            spec.protocol.scheme, "LOSO folds")
        console.print(f"{n_cfg} configs x {per_seed}{len(subjects)} {unit} = "
                      f"{n_cfg * len(seeds) * len(subjects)} units ({spec.train.epochs} epochs each)")
        console.print(_reuse_plan(spec, ds, plans, subjects, tracking_uri, reuse))
    if spec.tracking.save_models:
        console.print(_model_storage(spec, ds, plans, len(seeds) * len(subjects)))


def _nested_cost(spec, ds, subjects: list[str], tracking_uri: str | None) -> str:  # noqa: ANN001
    """Units of a nested search and a time estimate, before anything runs (issue 13): per outer subject,
    ``trials x inner folds x seeds`` inner units plus ``seeds`` outer units for the chosen config."""
    from orchestrator.search.study import n_configs
    from orchestrator.spec.folds import inner_folds, subject_index

    s, seeds = spec.search, spec.protocol.seed_list
    idx = subject_index(ds.loso_splits())
    n_inner = len(inner_folds(idx, subjects[0], s.inner, spec.source).ids)  # exit 2 if k does not fit
    trials = n_configs(s)
    inner = len(subjects) * trials * n_inner * len(seeds)
    outer = len(subjects) * len(seeds)
    plain = trials * len(subjects) * len(seeds)
    scheme = "LOSO" if s.inner.scheme == "loso" else f"group {n_inner}-fold"
    lines = [f"nested selection: {len(subjects)} outer subjects x {trials} trials x {n_inner} inner folds "
             f"({scheme}) x {len(seeds)} seeds = {inner} inner units, + {outer} outer units (chosen config, "
             f"every seed) = {inner + outer} units, {(inner + outer) / plain:.1f}x the {plain} units of "
             "the same search selected on the test subjects (before pruning and reuse)"]
    lines.append(_time_estimate(spec, ds, tracking_uri, inner + outer))
    return "\n".join(lines)


def _time_estimate(spec, ds, tracking_uri: str | None, n_units: int) -> str:  # noqa: ANN001
    """``n_units`` at the mean training time of the newest sweep of this dataset's fold runs
    (reuse.seconds_per_unit, as the reuse plan's estimate) on this machine's workers."""
    import os

    from orchestrator.store import reuse as R

    client = _existing_store(spec, tracking_uri)
    per = R.seconds_per_unit(client, ds.name) if client is not None else None
    if per is None:
        return f"time: no estimate, the store holds no earlier fold run of {ds.name}"
    workers = max(1, int((os.cpu_count() or 1) // max(1e-9, spec.resources.cpu_per_fold)))
    hours = n_units * per[0] / workers / 3600
    return (f"time: about {hours:.2f} h on {workers} workers ({per[0]:.1f} s per unit, the mean of {per[1]} "
            f"fold runs of the newest sweep of {ds.name}; inner units train on fewer subjects, so this is an "
            "upper estimate; start-up not included)")


def _reuse_plan(spec, ds, plans, subjects, tracking_uri: str | None, reuse: bool) -> str:  # noqa: ANN001
    """Arms, distinct configs, units to train / reused (store/reuse.py) and an estimated time from
    the newest sweep of this dataset's fold runs. Optuna trials are counted as trained (a nested search's
    units are counted apart, by _nested_cost)."""
    import os

    from orchestrator.spec.plan import units_for
    from orchestrator.store import reuse as R

    client = _existing_store(spec, tracking_uri)
    sizes = {"num_classes": ds.num_classes, "num_aus": len(ds.au_names)}
    seeds = spec.protocol.seed_list
    scheme = spec.protocol.seed_scheme
    configs = [({**p.config, **sizes}, units_for(p, subjects, seeds, scheme)) for p in plans]
    data_hash = ds.content_hash()  # a pass over every landmark: once
    index: dict = {}
    if reuse and client is not None:  # the stored units of these configs only, as the sweep looks them up
        store = R.StoreIndex(client).open(write=False)
        for cfg, _ in configs:
            store.group(R.reuse_group(cfg, data_hash))
        index = store.index
    n_train, n_reused = R.plan_units(configs, data_hash, index) if reuse else (
        len(configs) * len(seeds) * len(subjects), 0)
    if spec.search and spec.search.selection != "nested":
        n_train += spec.search.n_trials * len(seeds) * len(subjects)
    distinct = len({p.config_hash for p in plans})
    line = (f"{len(plans)} arms, {distinct} distinct configs: {n_train} units to train, {n_reused} reused"
            + ("" if reuse else " (--no-reuse)"))
    per = R.seconds_per_unit(client, ds.name) if client is not None else None
    if per is None:
        return line + f"; no time estimate: the store holds no earlier fold run of {ds.name}"
    workers = max(1, int((os.cpu_count() or 1) // max(1e-9, spec.resources.cpu_per_fold)))
    hours = n_train * per[0] / workers / 3600
    return (line + f"; about {hours:.1f} h on {workers} workers ({per[0]:.1f} s per unit, the mean of "
            f"{per[1]} fold runs of the newest sweep of {ds.name} in the store; start-up not included)")


def _model_storage(spec, ds, plans, n_folds: int) -> str:  # noqa: ANN001
    """``tracking.save_models``: what the kept fold models cost in the artifact store. Search trials are
    priced like the search's base config (their sizes differ only by the fusion layer)."""
    from mer_model.predict import model_bytes
    from orchestrator.spec.plan import search_config

    sizes = {"num_classes": ds.num_classes, "num_aus": len(ds.au_names)}
    per = [model_bytes({**p.config, **sizes}) for p in plans]
    n_trials = spec.search.n_trials if spec.search else 0
    if n_trials:
        base = search_config(spec, 0, {})
        per += [model_bytes({**base.config, **sizes})] * n_trials
    total = sum(per) * n_folds
    return (f"save_models: {len(per) * n_folds} fold models, about {total / 1e6:.1f} MB of artifacts "
            f"({min(per) / 1e3:.0f}-{max(per) / 1e3:.0f} kB each)")


def _console():  # noqa: ANN202
    """Stdout console; wide when not a terminal so logs keep whole arm names on one line."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=200)


def _existing_store(spec, tracking_uri: str | None):  # noqa: ANN001, ANN202
    """An MlflowClient on the sweep's tracking store, or None for a local store that does not exist yet
    (looking must not create an empty store)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.store.contract import sqlite_path
    from orchestrator.sweep.inputs import resolve

    uri = resolve(spec, tracking_uri, None).tracking_uri
    db = sqlite_path(uri)
    return MlflowClient(uri) if db is None or db.exists() else None


def _require_started(spec, tracking_uri: str | None) -> None:  # noqa: ANN001
    from orchestrator.spec.plan import sweep_id
    from orchestrator.store.contract import SWEEP, run_filter
    from orchestrator.sweep.inputs import load_data, resolve

    svc = resolve(spec, tracking_uri, None)
    sid = sweep_id(spec, load_data(spec).content_hash())
    runs: list = []
    client = _existing_store(spec, tracking_uri)
    if client is not None:
        exp = client.get_experiment_by_name(spec.experiment)
        runs = [] if exp is None else client.search_runs(
            [exp.experiment_id], run_filter(SWEEP, sweep_id=sid), max_results=1)
    if not runs:
        raise InputError(f"{spec.source}: --resume: sweep {sid} was never started at {svc.tracking_uri}; "
                         "allowed: drop --resume to start it")


class _Terminated(BaseException):
    """SIGTERM, raised in the driver like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


@contextlib.contextmanager
def _signals_raise() -> Iterator[Callable[[], None]]:
    """Inside the block SIGTERM raises :class:`_Terminated` and SIGINT ``KeyboardInterrupt`` (main thread
    only; elsewhere, as before), and the check it yields raises the same again once either came.

    Why the check: Python drops an exception a handler raises while a weakref callback or ``__del__`` runs
    ("Exception ignored in ..."). Seen once in the suite, SIGTERM landing in a ThreadPoolExecutor's weakref
    callback: the sweep ran on to the end and exited 0. The sweep loop calls the check at least every
    second (``driver._Sweep.loop``), so such a signal still stops it."""
    came: list[type[BaseException]] = []

    def check() -> None:
        if came:
            raise came[0]()

    if threading.current_thread() is not threading.main_thread():
        yield check
        return

    def handler(signum: int, frame: object) -> None:
        came.append(_Terminated if signum == signal.SIGTERM else KeyboardInterrupt)
        raise came[-1]()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield check
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _run(spec, address, tracking_uri, storage_url, max_concurrent, num_cpus, reuse: bool) -> int:  # noqa: ANN001
    from mer_model.data.dataset import is_synthetic
    from orchestrator.sweep.driver import run_sweep
    from orchestrator.sweep.progress import SweepProgress, selection_lines, summary_table

    direction = spec.search.direction if spec.search is not None else "maximize"
    prog = SweepProgress(objective=spec.protocol.objective, direction=direction)
    try:
        with _signals_raise() as stop:
            result = run_sweep(spec, address=address, num_cpus=num_cpus, max_concurrent=max_concurrent,
                               tracking_uri=tracking_uri, storage_url=storage_url, progress=prog, reuse=reuse,
                               stop=stop)
    except (KeyboardInterrupt, _Terminated, SystemError) as caught:
        # a signal that lands inside Ray's C++ ray.wait comes back as a SystemError whose cause is what the
        # handler raised (seen with SIGTERM under load): the same interrupt, not a crash
        e = caught.__cause__ if isinstance(caught, SystemError) else caught
        if not isinstance(e, (KeyboardInterrupt, _Terminated)):
            raise
        # run_sweep's own finally has released the pool and shut the local Ray down by now; what finished
        # is in the store as done fold runs, which the same command picks up (resume)
        prog.stop()
        click.echo(f"interrupted: {prog.folds_done} units finished and kept; run the same command to resume",
                   err=True)
        return 143 if isinstance(e, _Terminated) else 130  # 128 + SIGTERM / SIGINT, as a shell reports
    finally:
        prog.stop()
    console = _console()
    console.print(summary_table(result.rows(), spec.protocol.objective, direction))
    for line in selection_lines(result.rows(), result.nested, spec.protocol.objective, direction):
        console.print(line, markup=False)
    console.print(f"sweep {result.sweep_id}: {len(result.configs)} configs, {result.folds_run} folds trained "
                  f"by this run, {result.folds_reused} reused (linked to identical earlier units); "
                  f"MLflow experiment {result.experiment!r}; dataset {spec.dataset_name}")
    if is_synthetic(spec.dataset_name):
        # Said where the numbers are first seen, not only in the README and the report.
        console.print("SynthME is synthetic: these are not CASME II, SAMM or any other real dataset's "
                      "numbers.")
    if result.nested and not result.nested["complete"]:
        missing = [c["outer_subject"] for c in result.nested["choices"] if c["status"] != "complete"]
        click.echo(f"nested estimate incomplete: no complete chosen config for outer subjects "
                   f"{', '.join(missing)}; a rerun retries a chosen config's failed folds ('no choice': "
                   "every inner trial failed or was pruned, nothing to retrain)", err=True)
        return 1
    if result.incomplete:
        click.echo(f"{len(result.incomplete)} configs incomplete (failed folds, no pooled value): "
                   f"{', '.join(result.incomplete)}; rerun the same command to retry their failed folds",
                   err=True)
        return 1
    return 0
